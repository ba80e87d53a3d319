"""What runs per decision in our RLModules, as :class:`EnergyTarget`\\ s for :func:`estimate_energy`.

Each adapter names the network to count, the callable that runs one acting decision (state carried),
its initial state and the Linear layers that read a spiking core's output next to dense features:

* :func:`qmix_agent_target` - the shared agent network of ``SpikingQMixModule`` (encoder -> core ->
  head) per agent decision; sequences are the agent inputs ``[o_t, agent id, a_{t-1}]`` ``[B, T, D]``
  (or the agent observation dict).
* :func:`qmix_mixer_target` - the QMIX mixer per team step, reported separately as in the paper's
  Table 4 (it runs on the learner, not when acting); sequences ``{"agent_qs": [B, T, n_agents],
  "state": [B, T, S]}``.
* :func:`actor_critic_target` - ``SpikingActorCriticModule``'s acting path: backbone (embeddings,
  core, shortcut) and policy head (value head optional: PPO computes values on the learner).
* :func:`twin_q_actor_target` - the actor of ``SpikingTD3Module``/``SpikingSACModule``: actor backbone
  and policy head. Our modules also advance the critic's core while acting, only to record its
  state for replay; ``include_critic_core=True`` adds that (the Q heads never run when acting).

The adapters read attributes (duck typing) and import no RLlib code, so they also work on the bare
networks (``AgentQNetwork``, a ``QMixer``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from rllib_grsn.energy.counter import SpikeInput, is_spiking_core
from rllib_grsn.energy.estimate import EnergyReport, State, estimate_energy

__all__ = [
    "EnergyTarget",
    "actor_critic_target",
    "qmix_agent_target",
    "qmix_mixer_target",
    "twin_q_actor_target",
]


@dataclass(frozen=True)
class EnergyTarget:
    """A network and how one acting decision runs it (arguments of :func:`estimate_energy`)."""

    module: nn.Module
    decide: Callable[[Any, State], State]
    initial_state: Callable[[int], State]
    spike_inputs: Mapping[str, SpikeInput] = field(default_factory=dict)

    def estimate(self, sequences: Any, **kwargs: Any) -> EnergyReport:
        """:func:`estimate_energy` of this target over ``sequences`` ``[B, T, ...]``."""
        return estimate_energy(
            self.module,
            self.decide,
            sequences,
            initial_state=self.initial_state,
            spike_inputs=self.spike_inputs,
            **kwargs,
        )


def _first_linear(mlp: nn.Module, prefix: str) -> str:
    for name, module in mlp.named_modules():
        if isinstance(module, nn.Linear):
            return f"{prefix}.{name}" if prefix else name
    raise ValueError(f"{prefix or type(mlp).__name__} has no nn.Linear")


def _time_axis(tree: Any) -> Any:
    if isinstance(tree, Mapping):
        return {k: _time_axis(v) for k, v in tree.items()}
    return tree.unsqueeze(1)


def _backbone_spikes(backbone: nn.Module, backbone_path: str, heads: Mapping[str, nn.Module]) -> dict:
    """The heads' first layers read ``cat([core output, shortcut])``: the first H columns are spikes."""
    core = backbone.core
    if not is_spiking_core(core):
        return {}
    spec = SpikeInput(f"{backbone_path}.core", 0, int(core.output_size))
    return {_first_linear(head, path): spec for path, head in heads.items()}


def qmix_agent_target(module: nn.Module) -> EnergyTarget:
    """The agent Q-network of a ``SpikingQMixModule`` (or an ``AgentQNetwork``), per agent decision.

    ``decide(x_t, state)`` runs ``agent(x_t[:, None], state)`` as acting does; ``x_t`` is the agent
    input ``[B, D]`` or the agent observation dict (``obs``, ``agent_id``, ``prev_action``).
    """
    agent = getattr(module, "agent", module)
    if not all(hasattr(agent, a) for a in ("encoder", "core", "head")):
        raise TypeError(f"expected a SpikingQMixModule or AgentQNetwork, got {type(module).__name__}")

    def decide(x_t: Any, state: State) -> State:
        if isinstance(x_t, Mapping):
            from rllib_grsn.modules.qmix import agent_inputs  # imports RLlib; only for dict inputs

            x_t = agent_inputs(x_t)
        _, state = agent(x_t.unsqueeze(1), state)
        return state

    spikes = {}
    if is_spiking_core(agent.core):
        spikes[_first_linear(agent.head, "head")] = SpikeInput("core", 0, int(agent.core.output_size))
    return EnergyTarget(agent, decide, lambda batch: agent.initial_state(batch), spikes)


def qmix_mixer_target(module: nn.Module) -> EnergyTarget:
    """The team's mixer (a ``QMixer``, or the ``mixer`` of a learner-side ``SpikingQMixModule``).

    Sequences: ``{"agent_qs": [B, T, n_agents], "state": [B, T, state_dim]}``; one team step is one
    decision.
    """
    mixer = getattr(module, "mixer", module)
    if mixer is None:
        raise ValueError("this module has no mixer (an inference-only copy); use the learner's module")

    def decide(inputs: Mapping[str, Tensor], state: State) -> State:
        mixer(inputs["agent_qs"], inputs["state"])
        return state

    return EnergyTarget(mixer, decide, lambda batch: {})


def actor_critic_target(module: nn.Module, *, include_value_head: bool = False) -> EnergyTarget:
    """``SpikingActorCriticModule``'s acting decision: backbone and policy head.

    Sequences are the module's observations with a time axis: a ``[B, T, obs]`` tensor or the
    dict of ``[B, T, ...]`` leaves that RLlib's ``PrevActionsPrevRewards`` connector produces.

    Args:
        module: a ``SpikingActorCriticModule`` (anything with ``backbone`` and ``pi_head``).
        include_value_head: also run the value head (PPO computes values on the learner, so it is
            not part of a decision).
    """
    backbone, pi_head = module.backbone, module.pi_head
    vf_head = module.vf_head if include_value_head else None

    def decide(obs_t: Any, state: State) -> State:
        features, state = backbone(_time_axis(obs_t), state)
        pi_head(features)
        if vf_head is not None:
            vf_head(features)
        return state

    heads = {"pi_head": pi_head} | ({"vf_head": vf_head} if vf_head is not None else {})
    spikes = _backbone_spikes(backbone, "backbone", heads)
    return EnergyTarget(module, decide, lambda batch: backbone.initial_state(batch), spikes)


def twin_q_actor_target(module: nn.Module, *, include_critic_core: bool = False) -> EnergyTarget:
    """The actor of ``SpikingTD3Module``/``SpikingSACModule`` per decision (actor backbone + policy head).

    The state is ``{"actor": ..., "critic": ...}`` as the module carries it (``{}`` parts for
    stateless cores); sequences as for :func:`actor_critic_target`.

    Args:
        module: a ``RecurrentTwinQModule`` (anything with ``actor``, ``pi_head`` and ``critic``).
        include_critic_core: also run the critic backbone, which our modules advance while acting
            to record its state (the Q heads do not run).
    """
    actor, pi_head, critic = module.actor, module.pi_head, module.critic

    def decide(obs_t: Any, state: State) -> State:
        obs = _time_axis(obs_t)
        features, actor_state = actor(obs, state["actor"])
        pi_head(features)
        critic_state = state["critic"]
        if include_critic_core:
            _, critic_state = critic(obs, critic_state)
        return {"actor": actor_state, "critic": critic_state}

    def initial_state(batch: int) -> State:
        return {"actor": actor.initial_state(batch), "critic": critic.initial_state(batch)}

    spikes = _backbone_spikes(actor, "actor", {"pi_head": pi_head})
    return EnergyTarget(module, decide, initial_state, spikes)
