"""The QMIX RLModule: one agent Q-network on a neuron core, shared by a team, plus the mixer.

pymarl's agent (Rashid et al. 2018; Hu et al. 2021) with the GRU swapped for any neuron core:
``x = relu(W [o_t, one_hot(agent id), one_hot(a_{t-1})])`` -> core (one update per env step, TAP)
-> decoder -> ``Q(tau, .)`` over the agent's actions. Every agent of the team maps to this one
module (parameter sharing), so RLlib's EnvRunners batch all agents of a step into one forward pass
and carry each agent's ``(u, c)`` in its own episode, like an LSTM's ``(h, c)``.

The mixer (:class:`~rllib_grsn.mixers.QMixer` or :class:`~rllib_grsn.mixers.VDNMixer`) and the
target copies live in the same module but only on the learner (``InferenceOnlyAPI``): execution is
decentralised, EnvRunners never hold them.

Acting is epsilon-greedy over the *available* actions (``action_mask`` in each agent's
observation): greedy among available actions with probability ``1 - eps``, otherwise uniform among
them; ``eps`` anneals linearly with the global env step count RLlib passes to
``forward_exploration``. The settings come through ``model_config`` (the QMIX config adds them
with ``_model_config_auto_includes``).
"""

from __future__ import annotations

import copy
from typing import Any

import gymnasium as gym
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.apis import InferenceOnlyAPI, TargetNetworkAPI
from ray.rllib.core.rl_module.torch import TorchRLModule
from ray.rllib.utils.annotations import override
from torch import Tensor, nn

from rllib_grsn.mixers import QMixer, VDNMixer
from rllib_grsn.modules.actor_critic import SteadyTrainModeMixin
from rllib_grsn.modules.backbone import MLP
from rllib_grsn.modules.connectors import AGENT_ID_KEY, PREV_ACTION_KEY
from rllib_grsn.modules.model_config import SpikingModelConfig
from rllib_grsn.neurons import build_core

# The agent network's input, in this order; the replay concatenates the same keys.
AGENT_INPUT_KEYS = ("obs", AGENT_ID_KEY, PREV_ACTION_KEY)
ACTION_MASK_KEY = "action_mask"
STATE_KEY = "state"

MIXERS = ("qmix", "vdn")
# model_config keys the QMIX config adds (see QMixConfig._model_config_auto_includes).
MIXER_SETTINGS = ("mixer", "mixing_embed_dim", "hypernet_hidden")
EPSILON_SETTINGS = ("epsilon_start", "epsilon_finish", "epsilon_anneal_steps")

TARGET_PREFIX = "target_"
# Q of unavailable actions in every max/argmax (pymarl uses -9999999 the same way).
MASKED_Q = -1e9


def agent_inputs(obs: dict[str, Tensor]) -> Tensor:
    """``[o_t, agent id, a_{t-1}]`` as one float tensor (leaves [..., D_i] -> [..., sum D_i])."""
    return torch.cat([obs[k].float() for k in AGENT_INPUT_KEYS], dim=-1)


def masked_q(q: Tensor, mask: Tensor) -> Tensor:
    """``q`` with unavailable actions (``mask == 0``) pushed to ``MASKED_Q``."""
    return q.masked_fill(mask <= 0, MASKED_Q)


def epsilon_at(t: int | None, start: float, finish: float, anneal_steps: int) -> float:
    """Linear anneal from ``start`` to ``finish`` over ``anneal_steps`` env steps (pymarl)."""
    if t is None or anneal_steps <= 0:
        return finish
    return max(finish, start - (start - finish) * min(1.0, t / anneal_steps))


def build_mixer(name: str, n_agents: int, state_dim: int, embed_dim: int, hypernet_hidden: int) -> nn.Module:
    if name == "qmix":
        return QMixer(n_agents, state_dim, embed_dim=embed_dim, hypernet_hidden=hypernet_hidden)
    if name == "vdn":
        return VDNMixer()
    raise ValueError(f"mixer: unknown mixer {name!r}; choose one of: {', '.join(MIXERS)}")


class AgentQNetwork(nn.Module):
    """``relu(W x_t)`` -> neuron core (one update per env step) -> MLP decoder -> Q per action.

    With ``q_shortcut`` the decoder reads ``cat([core output, relu(W x_t)])``: the spikes first (the
    energy count reads them from the head's first H columns), then the dense embedding, so a Q value
    is no longer limited to what H binary spikes carry of the current observation.
    """

    def __init__(self, input_size: int, n_actions: int, cfg: SpikingModelConfig):
        super().__init__()
        self.encoder = MLP(input_size, [cfg.obs_embed])
        self.core = build_core(
            cfg.core,
            cfg.obs_embed,
            cfg.hidden,
            decay=cfg.decay,
            threshold=cfg.threshold,
            alpha=cfg.initial_surrogate_alpha,  # a schedule's t=0 value; SurrogateAlphaSchedule moves it
            time_steps=cfg.time_steps,
        )
        self.q_shortcut = cfg.q_shortcut
        head_in = self.core.output_size + (cfg.obs_embed if self.q_shortcut else 0)
        self.head = MLP(head_in, cfg.head_hiddens, n_actions)

    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> dict[str, Tensor]:
        return self.core.initial_state(batch_size, device=device)

    def forward(self, x: Tensor, state: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """``x`` [B, T, D] -> Q [B, T, |A|] and the core state after step T."""
        # Not through unroll(): acting runs this once per env step and has no use for the rate.
        q, _, state_out = self._q(x, state)
        return q, state_out

    def _q(self, x: Tensor, state: dict[str, Tensor]) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """Q, the core's output and its state after step T."""
        embedded = self.encoder(x)
        out, state_out = self.core.unroll(embedded, state)
        features = torch.cat([out, embedded], dim=-1) if self.q_shortcut else out
        return self.head(features), out, state_out

    def unroll(self, x: Tensor, state: dict[str, Tensor]) -> tuple[Tensor, Tensor | None, dict[str, Tensor]]:
        """``x`` [B, T, D] -> Q [B, T, |A|], the core's firing rate per step [B, T] (None for a core
        that does not spike: gru, mlp) and the core state after step T."""
        q, out, state_out = self._q(x, state)
        # Spikes per neuron per neuron update; the mean over H is cheap next to the unroll itself.
        rate = out.mean(dim=-1) if getattr(self.core, "is_spiking", False) else None
        return q, rate, state_out


class SpikingQMixModule(SteadyTrainModeMixin, TorchRLModule, TargetNetworkAPI, InferenceOnlyAPI):
    """Shared agent Q-network on a neuron core, with the team's mixer and targets on the learner.

    The observation space is one agent's ``Dict`` after :class:`~rllib_grsn.modules.connectors.
    AgentIdPrevAction`: ``obs``, ``action_mask``, ``state``, ``agent_id``, ``prev_action``.
    """

    @override(TorchRLModule)
    def setup(self) -> None:
        model_config = dict(self.model_config or {})
        self.spiking_config = cfg = SpikingModelConfig.from_model_config(model_config)
        space = self.observation_space
        needed = (*AGENT_INPUT_KEYS, ACTION_MASK_KEY, STATE_KEY)
        if not isinstance(space, gym.spaces.Dict) or any(k not in space.spaces for k in needed):
            raise ValueError(
                f"{type(self).__name__} needs each agent to observe a Dict with keys {list(needed)} "
                "(a team env adapter plus the AgentIdPrevAction connector), got "
                f"{space}"
            )
        if not isinstance(self.action_space, gym.spaces.Discrete):
            raise ValueError(f"QMIX needs Discrete actions per agent, got {self.action_space}")
        self.n_actions = int(self.action_space.n)
        self.n_agents = int(space[AGENT_ID_KEY].shape[0])
        self.state_dim = int(gym.spaces.flatdim(space[STATE_KEY]))
        input_size = sum(int(gym.spaces.flatdim(space[k])) for k in AGENT_INPUT_KEYS)
        self.agent = AgentQNetwork(input_size, self.n_actions, cfg)

        self.epsilon_start = float(model_config.get("epsilon_start", 1.0))
        self.epsilon_finish = float(model_config.get("epsilon_finish", 0.05))
        self.epsilon_anneal_steps = int(model_config.get("epsilon_anneal_steps", 50_000))
        self.mixer_name = str(model_config.get("mixer", "qmix"))
        if self.inference_only:
            self.mixer = None
            self.eval()
        else:
            self.mixer = build_mixer(
                self.mixer_name,
                self.n_agents,
                self.state_dim,
                int(model_config.get("mixing_embed_dim", 32)),
                int(model_config.get("hypernet_hidden", 64)),
            )

    # ----------------------------------------------------------------- RLlib API

    @override(TorchRLModule)
    def get_initial_state(self) -> dict[str, Any]:
        return {k: v.squeeze(0).numpy() for k, v in self.agent.initial_state(1, device="cpu").items()}

    @override(InferenceOnlyAPI)
    def get_non_inference_attributes(self) -> list[str]:
        return ["mixer", TARGET_PREFIX + "agent", TARGET_PREFIX + "mixer"]

    @override(TargetNetworkAPI)
    def make_target_networks(self) -> None:
        for name in ("agent", "mixer"):
            setattr(self, TARGET_PREFIX + name, copy.deepcopy(getattr(self, name)).requires_grad_(False))

    @override(TargetNetworkAPI)
    def get_target_network_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return [(getattr(self, n), getattr(self, TARGET_PREFIX + n)) for n in ("agent", "mixer")]

    @override(TargetNetworkAPI)
    def forward_target(self, batch: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError("use agent_q_values(..., target=True) and mix(..., target=True)")

    @override(TorchRLModule)
    def _forward_inference(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        with torch.no_grad():
            return self._act(batch, epsilon=0.0)

    @override(TorchRLModule)
    def _forward_exploration(
        self, batch: dict[str, Any], t: int | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        epsilon = epsilon_at(t, self.epsilon_start, self.epsilon_finish, self.epsilon_anneal_steps)
        with torch.no_grad():
            return self._act(batch, epsilon=epsilon)

    @override(TorchRLModule)
    def _forward_train(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        raise NotImplementedError(
            f"{type(self).__name__} trains through QMixLearner, which unrolls whole episodes with "
            "agent_q_values() and mixes them with mix()"
        )

    # ------------------------------------------------------------------ acting

    def _act(self, batch: dict[str, Any], *, epsilon: float) -> dict[str, Any]:
        """One decision per agent row. ``obs`` leaves are ``[B, 1, ...]`` (RLlib's time axis for a
        stateful module) or ``[B, ...]``: a stateless module, or QMIX's EnvRunners, whose pipeline
        leaves the time axis out (see ``QMixConfig.build_env_to_module_connector``); the actions
        then come back without it too."""
        obs = batch[Columns.OBS]
        stateful = self.is_stateful()
        single_step = obs[ACTION_MASK_KEY].dim() == 2  # [B, |A|]: no time axis
        if single_step:  # run as length-1 sequences
            obs = {k: v.unsqueeze(1) for k, v in obs.items()}
        q, state_out = self.agent(agent_inputs(obs), batch[Columns.STATE_IN] if stateful else {})
        actions = select_actions(q, obs[ACTION_MASK_KEY], epsilon)
        out: dict[str, Any] = {Columns.ACTIONS: actions.squeeze(1) if single_step else actions}
        if stateful:
            out[Columns.STATE_OUT] = state_out
        return out

    # --------------------------------------------------------------- training

    def agent_q_values(self, inputs: Tensor, state: dict[str, Tensor], *, target: bool = False) -> Tensor:
        """Q ``[B, T, |A|]`` of agent sequences ``inputs`` ``[B, T, D]`` unrolled from ``state``."""
        q, _ = getattr(self, (TARGET_PREFIX if target else "") + "agent")(inputs, state)
        return q

    def agent_q_values_and_spike_rate(
        self, inputs: Tensor, state: dict[str, Tensor]
    ) -> tuple[Tensor, Tensor | None]:
        """Online Q ``[B, T, |A|]`` and the agent core's firing rate per step ``[B, T]`` (None when the
        core does not spike), from one unroll: the learner's firing-rate penalty needs both."""
        q, rate, _ = self.agent.unroll(inputs, state)
        return q, rate

    def mix(self, agent_qs: Tensor, states: Tensor, *, target: bool = False) -> Tensor:
        """``Q_tot`` ``[B, T]`` from per-agent values ``[B, T, n_agents]`` and states ``[B, T, S]``."""
        mixer = getattr(self, (TARGET_PREFIX if target else "") + "mixer")
        return mixer(agent_qs, states).squeeze(-1)


def select_actions(q: Tensor, mask: Tensor, epsilon: float) -> Tensor:
    """Epsilon-greedy over available actions: never an action whose mask is 0.

    Greedy takes the best available action; the random choice is uniform over the available ones
    (pymarl's ``EpsilonGreedyActionSelector``). A row with no available action is an env bug and
    raises.
    """
    available = mask > 0
    if not bool(available.any(dim=-1).all()):
        raise ValueError("an agent has no available action (its action_mask is all zeros)")
    greedy = masked_q(q, mask).argmax(dim=-1)
    if epsilon <= 0.0:
        return greedy
    random = torch.multinomial(available.reshape(-1, available.shape[-1]).float(), 1).reshape(greedy.shape)
    explore = torch.rand(greedy.shape, device=q.device) < epsilon
    return torch.where(explore, random, greedy)
