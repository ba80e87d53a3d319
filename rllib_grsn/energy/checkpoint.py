"""Energy per decision of a trained checkpoint, measured on its own greedy rollouts (Table 4).

:func:`checkpoint_energy` rebuilds the checkpoint's local EnvRunner
(:func:`rllib_grsn.evaluation.build_evaluation_runner`: env, connectors, the learner's weights), rolls
out greedy episodes until at least ``samples`` decisions per module are recorded, and takes the
observations each module actually received from the returned episodes (our env-to-module connectors,
``PrevActionReward`` and ``AgentIdPrevAction``, write the extended observation back into the
episode). Each episode is then replayed through the module's acting path with the state carried
from the episode's start (TAP) by :func:`~rllib_grsn.energy.estimate.estimate_energy`, which counts
the Eq. 15/16 operations and averages ``samples`` decisions sampled from all recorded ones.

QMIX checkpoints also report the mixer, per team step: the EnvRunner's module is inference-only,
so the learner's full module (with mixer) is loaded from ``learner_group/learner/rl_module/<id>``
and fed the recorded global states and the agents' Q-values of the actions taken.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from rllib_grsn.energy.adapters import (
    EnergyTarget,
    actor_critic_target,
    qmix_agent_target,
    qmix_mixer_target,
    twin_q_actor_target,
)
from rllib_grsn.energy.estimate import EnergyReport
from rllib_grsn.energy.table import PAPER_TABLE4, Table4Row, format_table4

__all__ = ["CheckpointEnergy", "ModuleEnergy", "checkpoint_energy"]

# Stop rolling out after this many episodes even if fewer decisions were recorded (a module that
# never acts would otherwise loop forever).
MAX_EPISODES = 100_000


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


@dataclass(frozen=True)
class CheckpointEnergy:
    """What :func:`checkpoint_energy` measured: one :class:`ModuleEnergy` per module id."""

    checkpoint: Path
    env: str
    episodes: int
    modules: dict[str, ModuleEnergy] = field(default_factory=dict)

    @property
    def reports(self) -> dict[str, EnergyReport]:
        """Module id -> the per-decision :class:`EnergyReport` of its agent network."""
        return {mid: m.agent for mid, m in self.modules.items()}

    def format(self) -> str:
        """Table 4 row(s) (one table per module), firing rates per spiking core and pJ per decision."""
        blocks = []
        for mid, m in self.modules.items():
            core = m.core.upper()
            table = format_table4(
                [m.table4_row(self.env)],
                rnn_label=core if not m.agent.spiking else "GRU",
                snn_label=core if m.agent.spiking else "GRSN",
                with_paper=self.env.split(" [")[0] in PAPER_TABLE4,
            )
            lines = [
                f"module {mid} ({m.family}, core {m.core}): {m.agent.num_decisions} decisions sampled "
                f"from {self.episodes} greedy episodes",
                table,
            ]
            for name, rate in m.agent.core_firing_rates.items():
                lines.append(f"firing rate {name}: {rate:.4f} spikes per neuron per update")
            lines.append(
                f"energy: {m.agent.pj_per_decision:.1f} pJ per decision "
                f"({m.agent.sop_spiking:.1f} SOP x 0.9 pJ + {m.agent.mac_dense:.1f} MAC x 4.6 pJ)"
            )
            if m.mixer is not None:
                lines.append(
                    f"mixer: {m.mixer.mac_dense:.1f} MAC, {m.mixer.pj_per_decision:.1f} pJ per team step "
                    f"({m.mixer.num_decisions} team steps sampled)"
                )
            blocks.append("\n".join(lines))
        return "\n\n".join(blocks)


# --------------------------------------------------------------------------- helpers


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


def _env_label(config: Any) -> str:
    """The env's name, or its SMAC map (Table 4 rows are named by map) with the backend that runs it:
    ``8m [smax]`` is JaxMARL's SMAX, not StarCraft II, whatever the paper's row beside it says."""
    env_config = dict(config.env_config or {})
    map_name = env_config.get("map_name")
    if map_name is None:
        return str(config.env)
    from rllib_grsn.envs.multi_agent import resolve_smac_backend

    return f"{map_name} [{resolve_smac_backend(env_config)}]"


def _agent_episodes(episode: Any) -> list[tuple[str, Any]]:
    """``(module id, single-agent episode)`` pairs of a single- or multi-agent episode."""
    from ray.rllib.core import DEFAULT_MODULE_ID
    from ray.rllib.env.multi_agent_episode import MultiAgentEpisode

    if isinstance(episode, MultiAgentEpisode):
        return [(str(sa.module_id), sa) for sa in episode.agent_episodes.values()]
    return [(DEFAULT_MODULE_ID, episode)]


def _decisions(episodes: list[Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for episode in episodes:
        for mid, sa in _agent_episodes(episode):
            counts[mid] = counts.get(mid, 0) + len(sa)
    return counts


def _roll_out(runner: Any, samples: int | None, episodes: int | None) -> list[Any]:
    """Greedy finished episodes: exactly ``episodes``, or until every module made ``samples`` decisions."""
    if episodes is not None:
        done = runner.sample(num_episodes=episodes, explore=False, random_actions=False)
        return [e for e in done if e.is_done][:episodes]
    target = 1 if samples is None else samples
    collected: list[Any] = []
    chunk = 4
    while len(collected) < MAX_EPISODES:
        new = runner.sample(num_episodes=chunk, explore=False, random_actions=False)
        collected += [e for e in new if e.is_done]
        counts = _decisions(collected)
        fewest = min(counts.values(), default=0)
        if counts and fewest >= target:
            return collected
        per_episode = max(fewest / max(len(collected), 1), 1.0)
        chunk = int(min(max((target - fewest) / per_episode * 1.1, 1), 1024)) + 1
    return collected


def _check_enough(name: str, available: int, samples: int | None) -> None:
    if samples is not None and available < samples:
        raise ValueError(
            f"module {name}: {available} decisions recorded, fewer than --samples {samples}; "
            "roll out more episodes or lower samples"
        )


# --------------------------------------------------------------------------- per family


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


def _learner_module(modules_dir: Path, module_id: str) -> nn.Module:
    """The learner's full module (mixer and targets included) as the checkpoint saved it."""
    from ray.rllib.core.rl_module.rl_module import RLModule

    module = RLModule.from_checkpoint(modules_dir / module_id)
    if getattr(module, "mixer", None) is None:
        raise ValueError(f"{modules_dir / module_id}: the saved learner module has no mixer")
    module.eval()
    return module


# --------------------------------------------------------------------------- entry point


def checkpoint_energy(
    checkpoint: str | Path,
    samples: int | None = 1024,
    episodes: int | None = None,
    seed: int | None = None,
) -> CheckpointEnergy:
    """Eq. 15/16 operations and energy per decision of a checkpoint's modules, on its own rollouts.

    Args:
        checkpoint: an Algorithm checkpoint directory (``.../checkpoint_000NNN``).
        samples: decisions averaged per module (sampled uniformly from all recorded decisions);
            ``None`` averages every recorded decision.
        episodes: roll out exactly this many greedy episodes (``ValueError`` if they hold fewer
            than ``samples`` decisions); by default, as many as it takes to record ``samples``.
        seed: seeds the evaluation envs and the decision sample (default 0 for the sample).

    Raises:
        rllib_grsn.evaluation.CheckpointError: ``checkpoint`` is not a loadable checkpoint.
        ValueError: bad ``samples``/``episodes``, or too few decisions were recorded.
    """
    from rllib_grsn.evaluation import build_evaluation_runner, modules_dir_of

    if samples is not None and samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    if episodes is not None and episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    path = Path(checkpoint).expanduser().resolve()
    runner = build_evaluation_runner(path, seed=seed)
    try:
        rolled = _roll_out(runner, samples, episodes)
        config = runner.config
        modules = runner.module
        by_module: dict[str, list[Any]] = {}
        for episode in rolled:
            for mid, sa in _agent_episodes(episode):
                by_module.setdefault(mid, []).append(sa)
        sample_seed = 0 if seed is None else int(seed)
        results: dict[str, ModuleEnergy] = {}
        for mid in sorted(by_module):
            module = modules[mid] if config.is_multi_agent else modules
            family = _family(module)
            if family == "qmix":
                learner = _learner_module(modules_dir_of(path), mid)
                team_eps = [e for e in rolled if any(m == mid for m, _ in _agent_episodes(e))]
                agent, mixer = _qmix_energy(module, learner, team_eps, samples, sample_seed)
            else:
                agent = _observation_energy(module, family, by_module[mid], samples, sample_seed)
                mixer = None
            results[mid] = ModuleEnergy(mid, family, _core_name(module), agent, mixer)
    finally:
        runner.stop()
    if not results:
        raise ValueError(f"{path}: the rollouts recorded no decision")
    return CheckpointEnergy(path, _env_label(config), len(rolled), results)
