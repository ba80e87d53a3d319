"""Energy per decision of RLModules on recorded episodes (paper Section 5.4, Eq. 15-16).

Shared by ``rllib energy CHECKPOINT`` (:mod:`rllib_grsn.energy.checkpoint`, greedy rollouts of a
checkpoint) and the training-time :class:`~rllib_grsn.tracking.energy_metrics.EnergyMetricsCallback`
(the evaluation EnvRunners' own episodes). Both hand over finished episodes that start at t=0; the
observations each module received (our connectors write the extended observation back into the
episode) are replayed through the module's acting path with the state carried from the start (TAP),
and ``samples`` decisions drawn from all recorded ones are averaged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from ray.rllib.core.rl_module.multi_rl_module import MultiRLModule
from torch import Tensor, nn

from rllib_grsn.energy.adapters import (
    EnergyTarget,
    actor_critic_target,
    qmix_agent_target,
    qmix_mixer_target,
    twin_q_actor_target,
)
from rllib_grsn.energy.estimate import EnergyReport
from rllib_grsn.energy.table import Table4Row

__all__ = ["ModuleEnergy", "decisions_per_module", "energy_family", "episodes_energy"]


@dataclass(frozen=True)
class ModuleEnergy:
    """Energy of one RLModule of a checkpoint.

    Attributes:
        module_id: the RLModule id (``default_policy`` for single-agent runs, ``shared`` for QMIX).
        family: ``"qmix"``, ``"actor_critic"`` (PPO) or ``"twin_q"`` (TD3/SAC actor).
        core: the neuron core of ``model_config`` (``grsn``, ``gru``, ``lif``, ...).
        agent: per agent decision (one agent at one env step).
        mixer: QMIX only: the mixer per team step (it runs on the learner, not when acting).
    """

    module_id: str
    family: str
    core: str
    agent: EnergyReport
    mixer: EnergyReport | None = None

    def table4_row(self, env: str) -> Table4Row:
        """This module as one Table 4 row: the RNN slot for non-spiking cores, else the SNN slot."""
        if self.agent.spiking:
            return Table4Row(env, snn=self.agent, mixer=self.mixer)
        return Table4Row(env, rnn=self.agent, mixer=self.mixer)


def _tree_map(fn: Callable[..., Any], *trees: Any) -> Any:
    first = trees[0]
    if isinstance(first, Mapping):
        return {k: _tree_map(fn, *(t[k] for t in trees)) for k in first}
    return fn(*trees)


def _to_tensor(array: np.ndarray) -> Tensor:
    tensor = torch.as_tensor(np.asarray(array))
    return tensor.float() if tensor.dtype == torch.float64 else tensor


def _pad_stack(sequences: list[Any]) -> tuple[Any, Tensor]:
    """``[T_i, ...]`` trees -> a ``[B, T_max, ...]`` tree (zero padded) and the ``[B, T_max]`` valid mask."""
    lengths = [len(_first_leaf(s)) for s in sequences]
    t_max = max(lengths)

    def pad(*arrays: np.ndarray) -> Tensor:
        out = []
        for a in arrays:
            a = np.asarray(a)
            padded = np.zeros((t_max, *a.shape[1:]), dtype=a.dtype)
            padded[: len(a)] = a
            out.append(padded)
        return _to_tensor(np.stack(out))

    valid = torch.zeros(len(sequences), t_max, dtype=torch.bool)
    for b, n in enumerate(lengths):
        valid[b, :n] = True
    return _tree_map(pad, *sequences), valid


def _first_leaf(tree: Any) -> Any:
    while isinstance(tree, Mapping):
        tree = next(iter(tree.values()))
    return tree


def _family(module: nn.Module) -> str:
    if hasattr(module, "agent") and hasattr(module, "mixer"):
        return "qmix"
    if all(hasattr(module, a) for a in ("actor", "critic", "pi_head")):
        return "twin_q"
    if hasattr(module, "backbone") and hasattr(module, "pi_head"):
        return "actor_critic"
    raise TypeError(f"no energy adapter for {type(module).__name__} (expected a rllib_grsn module)")


def _target(module: nn.Module, family: str) -> EnergyTarget:
    if family == "qmix":
        return qmix_agent_target(module)
    if family == "twin_q":
        return twin_q_actor_target(module)
    return actor_critic_target(module)


def _core_name(module: nn.Module) -> str:
    cfg = getattr(module, "spiking_config", None)
    if cfg is not None:
        return str(cfg.core)
    return str(dict(getattr(module, "model_config", None) or {}).get("core", "?"))


def _agent_episodes(episode: Any) -> list[tuple[str, Any]]:
    """``(module id, single-agent episode)`` pairs of a single- or multi-agent episode; a QMIX
    :class:`~rllib_grsn.algorithms.qmix.TeamEpisode` is one entry for its shared module."""
    from ray.rllib.core import DEFAULT_MODULE_ID
    from ray.rllib.env.multi_agent_episode import MultiAgentEpisode

    from rllib_grsn.algorithms.qmix import SHARED_MODULE_ID, TeamEpisode

    if isinstance(episode, MultiAgentEpisode):
        return [(str(sa.module_id), sa) for sa in episode.agent_episodes.values()]
    if isinstance(episode, TeamEpisode):
        return [(SHARED_MODULE_ID, episode)]
    return [(DEFAULT_MODULE_ID, episode)]


def _decisions(agent_episode: Any) -> int:
    """Decisions in one entry of :func:`_agent_episodes`: every agent's steps of a team episode."""
    actions = getattr(agent_episode, "actions", None)
    return int(actions.size) if isinstance(actions, np.ndarray) else len(agent_episode)


def decisions_per_module(episodes: list[Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for episode in episodes:
        for mid, sa in _agent_episodes(episode):
            counts[mid] = counts.get(mid, 0) + _decisions(sa)
    return counts


def _check_enough(name: str, available: int, samples: int | None) -> None:
    if samples is not None and available < samples:
        raise ValueError(
            f"module {name}: {available} decisions recorded, fewer than --samples {samples}; "
            "roll out more episodes or lower samples"
        )


def _observation_energy(
    module: nn.Module, family: str, agent_eps: list[Any], samples: int | None, seed: int
) -> EnergyReport:
    """Actor-critic / twin-Q: replay each agent episode's recorded observations from its start."""
    sequences = []
    for sa in agent_eps:
        # T + 1 observations; the last one was never acted on.
        steps = len(sa)
        obs = sa.get_observations(slice(None))
        sequences.append(_tree_map(lambda a, n=steps: np.asarray(a)[:n], obs))
    batch, valid = _pad_stack(sequences)
    _check_enough(family, int(valid.sum()), samples)
    return _target(module, family).estimate(batch, valid=valid, num_decisions=samples, seed=seed)


def _qmix_energy(
    module: nn.Module,
    learner_module: nn.Module | None,
    team_eps: list[Any],
    samples: int | None,
    seed: int,
) -> tuple[EnergyReport, EnergyReport | None]:
    """QMIX: every agent's input sequence from the episode start; the mixer on the team steps."""
    from rllib_grsn.algorithms.qmix import team_episode

    teams = [team_episode(e) for e in team_eps]
    agent_seqs = [team.inputs[: len(team.actions), n] for team in teams for n in range(team.inputs.shape[1])]
    inputs, valid = _pad_stack(agent_seqs)
    _check_enough("qmix agent", int(valid.sum()), samples)
    agent = qmix_agent_target(module).estimate(inputs, valid=valid, num_decisions=samples, seed=seed)
    if learner_module is None:
        return agent, None

    mixer_seqs = []
    with torch.no_grad():
        for team in teams:
            steps, n_agents = team.actions.shape
            x = torch.as_tensor(team.inputs[:steps]).permute(1, 0, 2)  # [N, T, D]
            q = learner_module.agent_q_values(x, learner_module.agent.initial_state(n_agents))
            taken = q.gather(-1, torch.as_tensor(team.actions).T.unsqueeze(-1)).squeeze(-1)  # [N, T]
            mixer_seqs.append({"agent_qs": taken.T.numpy(), "state": team.states[:steps]})
    mixer_inputs, mixer_valid = _pad_stack(mixer_seqs)
    team_steps = int(mixer_valid.sum())
    mixer_samples = None if samples is None else min(samples, team_steps)
    mixer = qmix_mixer_target(learner_module).estimate(
        mixer_inputs, valid=mixer_valid, num_decisions=mixer_samples, seed=seed
    )
    return agent, mixer


def energy_family(module: nn.Module) -> str:
    """``qmix``, ``twin_q`` or ``actor_critic``; TypeError for a module without an energy adapter."""
    return _family(module)


def episodes_energy(
    modules: Any,
    episodes: list[Any],
    *,
    samples: int | None,
    seed: int = 0,
    require_samples: bool = True,
    learner_module_of: Callable[[str], nn.Module | None] | None = None,
) -> dict[str, ModuleEnergy]:
    """Eq. 15/16 operations per decision of every module that acted in ``episodes``.

    Args:
        modules: a single RLModule (single-agent episodes) or a MultiRLModule / mapping
            ``module id -> RLModule`` (multi-agent episodes).
        episodes: finished (single- or multi-agent) episodes that started at t=0, whose observations
            are what the modules received (after the env-to-module connectors).
        samples: decisions averaged per module (drawn uniformly); ``None``: all of them.
        seed: seeds the decision sample.
        require_samples: ValueError when a module made fewer than ``samples`` decisions; if False,
            all of its decisions are averaged instead (training-time metrics on a few test episodes).
        learner_module_of: QMIX: ``module id -> the learner's full module`` (with the mixer), whose
            mixer is then measured per team step; ``None`` (or returning None) skips the mixer.

    Raises:
        TypeError: a module is not one of this package's RLModules.
    """
    by_module: dict[str, list[Any]] = {}
    for episode in episodes:
        for mid, sa in _agent_episodes(episode):
            by_module.setdefault(mid, []).append(sa)
    results: dict[str, ModuleEnergy] = {}
    for mid in sorted(by_module):
        module = modules[mid] if isinstance(modules, Mapping | MultiRLModule) else modules
        family = _family(module)
        wanted = samples
        if not require_samples and samples is not None:
            wanted = min(samples, sum(_decisions(sa) for sa in by_module[mid]))
        if family == "qmix":
            learner = learner_module_of(mid) if learner_module_of is not None else None
            team_eps = [e for e in episodes if any(m == mid for m, _ in _agent_episodes(e))]
            agent, mixer = _qmix_energy(module, learner, team_eps, wanted, seed)
        else:
            agent = _observation_energy(module, family, by_module[mid], wanted, seed)
            mixer = None
        results[mid] = ModuleEnergy(mid, family, _core_name(module), agent, mixer)
    return results
