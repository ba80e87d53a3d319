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

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from rllib_grsn.energy.episodes import ModuleEnergy, decisions_per_module, episodes_energy
from rllib_grsn.energy.estimate import EnergyReport
from rllib_grsn.energy.table import PAPER_TABLE4, format_table4

__all__ = ["CheckpointEnergy", "ModuleEnergy", "checkpoint_energy"]

# Stop rolling out after this many episodes even if fewer decisions were recorded (a module that
# never acts would otherwise loop forever).
MAX_EPISODES = 100_000


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
def _env_label(config: Any) -> str:
    """The env's name, or its SMAC map (Table 4 rows are named by map) with the backend that runs it:
    ``8m [smax]`` is JaxMARL's SMAX, not StarCraft II, whatever the paper's row beside it says."""
    env_config = dict(config.env_config or {})
    map_name = env_config.get("map_name")
    if map_name is None:
        return str(config.env)
    from rllib_grsn.envs.multi_agent import resolve_smac_backend

    return f"{map_name} [{resolve_smac_backend(env_config)}]"


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
        counts = decisions_per_module(collected)
        fewest = min(counts.values(), default=0)
        if counts and fewest >= target:
            return collected
        per_episode = max(fewest / max(len(collected), 1), 1.0)
        chunk = int(min(max((target - fewest) / per_episode * 1.1, 1), 1024)) + 1
    return collected


def _learner_module(modules_dir: Path, module_id: str) -> nn.Module:
    """The learner's full module (mixer and targets included) as the checkpoint saved it.

    Raises:
        rllib_grsn.evaluation.CheckpointError: a file of the module's folder is missing or damaged, or the
            saved module has no mixer (RLlib falls back to a bare RLModule when it cannot unpickle the
            module's class).
    """
    from ray.rllib.core.rl_module.rl_module import RLModule

    from rllib_grsn.evaluation import CheckpointError, restoring

    path = modules_dir / module_id
    with restoring(path):
        module = RLModule.from_checkpoint(path)
        if getattr(module, "mixer", None) is None:
            raise CheckpointError(f"{path}: the saved learner module has no mixer")
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
        rllib_grsn.evaluation.CheckpointError: ``checkpoint`` is not a checkpoint directory, or a file
            it needs is missing or damaged (the message names it).
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
        modules_dir = modules_dir_of(path)
        results = episodes_energy(
            runner.module,
            rolled,
            samples=samples,
            seed=0 if seed is None else int(seed),
            learner_module_of=lambda mid: _learner_module(modules_dir, mid),
        )
    finally:
        runner.stop()
    if not results:
        raise ValueError(f"{path}: the rollouts recorded no decision")
    return CheckpointEnergy(path, _env_label(config), len(rolled), results)
