"""Recurrent actor and twin-Q critic on spiking cores, for recurrent TD3 and SAC.

pomdp-baselines' "separate" design (Ni et al. 2022), which the paper's code builds on: the actor
and the critic each own an encoder of (o_t, a_{t-1}, r_{t-1}) and a neuron core, both updated
once per env step (TAP). The critic's core feeds two Q heads (the twin critics share the
recurrent part, as in pomdp-baselines); with continuous actions the current action a_t enters
only after the core, through its own embedding, so the critic's recurrent state does not depend
on the action being evaluated.

State is ``{"actor": {...}, "critic": {...}}``: acting advances both cores, so the state RLlib
records in the episodes can start a replayed window for either network (R2D2's stored state);
cores without state (``mlp``, ``*_notap``) make the module stateless.

Settings that belong to the algorithm (exploration noise, uniform-random warm-up steps) reach the
module through ``model_config``: the algorithm configs add them with
``_model_config_auto_includes``, as RLlib's own algorithms do.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.apis import InferenceOnlyAPI, TargetNetworkAPI
from ray.rllib.core.rl_module.torch import TorchRLModule
from ray.rllib.utils.annotations import override
from torch import Tensor

from rllib_grsn.algorithms.losses import squashed_gaussian
from rllib_grsn.modules.actor_critic import SteadyTrainModeMixin
from rllib_grsn.modules.backbone import MLP, RecurrentBackbone
from rllib_grsn.modules.model_config import SpikingModelConfig

# model_config keys the algorithm configs add (see `_model_config_auto_includes`).
EXPLORATION_NOISE = "exploration_noise"
RANDOM_STEPS = "num_random_steps"

TARGET_PREFIX = "target_"


def _unsqueeze_time(x: Any) -> Any:
    return {k: _unsqueeze_time(v) for k, v in x.items()} if isinstance(x, dict) else x.unsqueeze(1)


def _squeeze_time(x: Any) -> Any:
    return {k: _squeeze_time(v) for k, v in x.items()} if isinstance(x, dict) else x.squeeze(1)


class RecurrentTwinQModule(SteadyTrainModeMixin, TorchRLModule, TargetNetworkAPI, InferenceOnlyAPI):
    """Actor: encoder -> core -> policy head. Critic: encoder -> core -> twin Q heads.

    Subclasses define the policy head: :class:`SpikingTD3Module` (deterministic, tanh) and
    :class:`SpikingSACModule` (tanh-squashed Gaussian, or categorical for Discrete actions).
    Continuous actions live in [-1, 1]; RLlib's ``normalize_actions`` (on by default) maps them
    to the env's bounds, so the replay holds the normalised actions the networks produced.
    """

    # TD3 bootstraps with a target actor; SAC samples the next action from the online actor.
    uses_target_actor: bool = False

    @override(TorchRLModule)
    def setup(self) -> None:
        self.spiking_config = cfg = SpikingModelConfig.from_model_config(self.model_config or {})
        self.discrete = isinstance(self.action_space, gym.spaces.Discrete)
        if not self.discrete and not isinstance(self.action_space, gym.spaces.Box):
            raise ValueError(
                f"{type(self).__name__} needs a Discrete or Box action space, got {self.action_space}"
            )
        self.action_dim = int(self.action_space.n) if self.discrete else int(np.prod(self.action_space.shape))
        self.exploration_noise = float((self.model_config or {}).get(EXPLORATION_NOISE, 0.1))
        self.num_random_steps = int((self.model_config or {}).get(RANDOM_STEPS, 0))
        heads = cfg.head_hiddens

        self.actor = RecurrentBackbone(self.observation_space, cfg)
        self.pi_head = MLP(self.actor.output_size, heads, self._policy_output_size())
        # The critic core also runs while acting (it is cheap), so its state is recorded.
        self.critic = RecurrentBackbone(self.observation_space, cfg)
        if self.discrete:
            q_in, q_out = self.critic.output_size, self.action_dim
            self.q_action_embed = None
        else:
            embed = cfg.action_embed or 8
            self.q_action_embed = MLP(self.action_dim, [embed])
            q_in, q_out = self.critic.output_size + embed, 1
        self.q1 = MLP(q_in, heads, q_out)
        self.q2 = MLP(q_in, heads, q_out)
        if self.inference_only:
            for name in ("q1", "q2", "q_action_embed"):
                setattr(self, name, None)
            self.eval()

    def _policy_output_size(self) -> int:
        raise NotImplementedError

    # ----------------------------------------------------------------- RLlib API

    @override(TorchRLModule)
    def get_initial_state(self) -> dict[str, Any]:
        actor = self.actor.initial_state(1, device="cpu")
        if not actor:
            return {}
        critic = self.critic.initial_state(1, device="cpu")
        return {
            "actor": {k: v.squeeze(0).numpy() for k, v in actor.items()},
            "critic": {k: v.squeeze(0).numpy() for k, v in critic.items()},
        }

    @override(InferenceOnlyAPI)
    def get_non_inference_attributes(self) -> list[str]:
        names = ["q1", "q2", "q_action_embed"]
        return names + [TARGET_PREFIX + n for n in ("actor", "pi_head", "critic", *names)]

    @override(TargetNetworkAPI)
    def make_target_networks(self) -> None:
        for name in self._target_sources():
            setattr(self, TARGET_PREFIX + name, copy.deepcopy(getattr(self, name)).requires_grad_(False))

    @override(TargetNetworkAPI)
    def get_target_network_pairs(self) -> list[tuple[torch.nn.Module, torch.nn.Module]]:
        return [(getattr(self, n), getattr(self, TARGET_PREFIX + n)) for n in self._target_sources()]

    def _target_sources(self) -> list[str]:
        names = ["critic", "q1", "q2"] + ([] if self.q_action_embed is None else ["q_action_embed"])
        return names + (["actor", "pi_head"] if self.uses_target_actor else [])

    @override(TorchRLModule)
    def _forward_inference(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        with torch.no_grad():
            return self._act(batch, explore=False, t=None)

    @override(TorchRLModule)
    def _forward_exploration(self, batch: dict[str, Any], t: int | None = None, **kwargs) -> dict[str, Any]:
        with torch.no_grad():
            return self._act(batch, explore=True, t=t)

    @override(TorchRLModule)
    def _forward_train(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        # Training needs several unrolls (online and target networks, over T+1 observations); the
        # learner calls `unroll_actor` / `unroll_critic` / `q_values` itself.
        raise NotImplementedError(
            f"{type(self).__name__} trains through its learner (RecurrentOffPolicyLearner), which calls "
            "unroll_actor/unroll_critic directly"
        )

    @override(TargetNetworkAPI)
    def forward_target(self, batch: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError("use unroll_critic(..., target=True)")

    # ------------------------------------------------------------------ acting

    def _act(self, batch: dict[str, Any], *, explore: bool, t: int | None) -> dict[str, Any]:
        obs = batch[Columns.OBS]
        stateful = self.is_stateful()
        if not stateful:  # RLlib gives [B, ...] to a stateless module; run it as length-1 sequences
            obs = _unsqueeze_time(obs)
        state = batch[Columns.STATE_IN] if stateful else {"actor": {}, "critic": {}}
        features, actor_state = self.actor(obs, state["actor"])
        head = self.pi_head(features)
        if explore and t is not None and t < self.num_random_steps:
            actions = self._random_actions(head)
        else:
            actions = self._actions_from_head(head, explore=explore)
        out: dict[str, Any] = {Columns.ACTIONS: actions if stateful else _squeeze_time(actions)}
        if stateful:
            _, critic_state = self.critic(obs, state["critic"])
            out[Columns.STATE_OUT] = {"actor": actor_state, "critic": critic_state}
        return out

    def _random_actions(self, head: Tensor) -> Tensor:
        """Uniform over the (normalised) action space: pomdp-baselines' random warm-up rollouts."""
        shape = head.shape[:-1]
        if self.discrete:
            return torch.randint(0, self.action_dim, shape, device=head.device)
        return torch.rand(*shape, self.action_dim, device=head.device) * 2.0 - 1.0

    def _actions_from_head(self, head: Tensor, *, explore: bool) -> Tensor:
        raise NotImplementedError

    # --------------------------------------------------------------- training

    def unroll_actor(self, obs: Any, state: dict[str, Tensor], *, target: bool = False) -> Tensor:
        """Policy head outputs ``[B, T, P]`` over a window, from start state ``state`` (actor part)."""
        prefix = TARGET_PREFIX if target else ""
        return getattr(self, prefix + "pi_head")(self.actor_features(obs, state, target=target))

    def actor_features(self, obs: Any, state: dict[str, Tensor], *, target: bool = False) -> Tensor:
        """Actor backbone features ``[B, T, F]`` over a window (what ``pi_head`` reads).

        The learner unrolls through this when it also needs the actor core's firing rate
        (``self.actor.spike_rate(features)``) besides the policy head.
        """
        features, _ = getattr(self, (TARGET_PREFIX if target else "") + "actor")(obs, state)
        return features

    def unroll_critic(self, obs: Any, state: dict[str, Tensor], *, target: bool = False) -> Tensor:
        """Critic core features ``[B, T, F]`` over a window (before the current action enters)."""
        prefix = TARGET_PREFIX if target else ""
        features, _ = getattr(self, prefix + "critic")(obs, state)
        return features

    def q_values(
        self, features: Tensor, actions: Tensor | None = None, *, target: bool = False
    ) -> tuple[Tensor, Tensor]:
        """Twin Q values. Continuous: ``Q(h_t, a_t)`` ``[B, T]`` for ``actions`` ``[B, T, A]``.
        Discrete: Q of every action ``[B, T, |A|]`` (``actions`` unused)."""
        prefix = TARGET_PREFIX if target else ""
        q_in = self._q_input(features, actions, prefix)
        return self._q_head(prefix + "q1", q_in), self._q_head(prefix + "q2", q_in)

    def q1_value(self, features: Tensor, actions: Tensor | None = None) -> Tensor:
        """The first online Q head alone, as :meth:`q_values` computes it.

        TD3's actor maximises Q1 only (Fujimoto et al. 2018, Algorithm 1); skipping Q2 there saves
        one head's forward pass on every actor step.
        """
        return self._q_head("q1", self._q_input(features, actions, ""))

    def _q_input(self, features: Tensor, actions: Tensor | None, prefix: str) -> Tensor:
        if self.discrete:
            return features
        if actions is None:
            raise ValueError("continuous Q values need the actions")
        embed = getattr(self, prefix + "q_action_embed")(actions)
        return torch.cat([features, embed], dim=-1)

    def _q_head(self, name: str, q_in: Tensor) -> Tensor:
        q = getattr(self, name)(q_in)
        return q if self.discrete else q.squeeze(-1)

    def actor_parameters(self) -> list[torch.nn.Parameter]:
        return [*self.actor.parameters(), *self.pi_head.parameters()]

    def critic_parameters(self) -> list[torch.nn.Parameter]:
        parts = [self.critic, self.q1, self.q2] + (
            [] if self.q_action_embed is None else [self.q_action_embed]
        )
        return [p for m in parts for p in m.parameters()]


class SpikingTD3Module(RecurrentTwinQModule):
    """Deterministic recurrent actor ``a = tanh(mu(h_t))`` (TD3, Fujimoto et al. 2018).

    Exploration adds N(0, ``exploration_noise``^2) in the normalised action units and clips to
    [-1, 1] (the reference code's ``expl_noise * max_action`` in env units).
    """

    uses_target_actor = True

    @override(RecurrentTwinQModule)
    def setup(self) -> None:
        super().setup()
        if self.discrete:
            raise ValueError(
                "TD3 needs a continuous (Box) action space; use RecurrentSAC for Discrete actions"
            )

    def _policy_output_size(self) -> int:
        return self.action_dim

    def policy_action(self, head: Tensor) -> Tensor:
        return torch.tanh(head)

    def _actions_from_head(self, head: Tensor, *, explore: bool) -> Tensor:
        action = self.policy_action(head)
        if explore and self.exploration_noise > 0:
            action = (action + self.exploration_noise * torch.randn_like(action)).clamp(-1.0, 1.0)
        return action


class SpikingSACModule(RecurrentTwinQModule):
    """Stochastic recurrent actor for SAC: tanh-squashed Gaussian (Box) or categorical (Discrete).

    Greedy acting (evaluation) takes ``tanh(mean)`` or the most likely action.
    """

    @override(RecurrentTwinQModule)
    def setup(self) -> None:
        super().setup()
        if not self.inference_only:
            # The entropy temperature lives in the module (not the learner) so it is checkpointed
            # and restored with the weights; trained as log(alpha) to keep alpha > 0.
            initial_alpha = float((self.model_config or {}).get("initial_alpha", 1.0))
            self.log_alpha = torch.nn.Parameter(torch.tensor(math.log(initial_alpha)))

    @override(RecurrentTwinQModule)
    def get_non_inference_attributes(self) -> list[str]:
        return [*super().get_non_inference_attributes(), "log_alpha"]

    def _policy_output_size(self) -> int:
        return self.action_dim if self.discrete else 2 * self.action_dim

    def policy_distribution(self, head: Tensor) -> tuple[Tensor, Tensor]:
        """Discrete: ``(probs, log_probs)`` over actions. Continuous: ``(mean, log_std)``."""
        if self.discrete:
            log_probs = torch.log_softmax(head, dim=-1)
            return log_probs.exp(), log_probs
        mean, log_std = head.chunk(2, dim=-1)
        return mean, log_std

    def _actions_from_head(self, head: Tensor, *, explore: bool) -> Tensor:
        if self.discrete:
            if not explore:
                return head.argmax(dim=-1)
            return torch.distributions.Categorical(logits=head).sample()
        mean, log_std = self.policy_distribution(head)
        action, _ = squashed_gaussian(mean, log_std, deterministic=not explore)
        return action
