"""Greedy (or exploring) rollouts of a checkpoint written by `rllib train file`.

The checkpoint's own AlgorithmConfig rebuilds one local EnvRunner (env, connectors, RLModule);
the module's weights come from the learner's copy in the checkpoint. No Ray cluster is needed:
the EnvRunner runs in this process, carrying the module's recurrent state from step to step
exactly as during training. Multi-agent (team) checkpoints run on a ``MultiAgentEnvRunner`` and
report the team return and, on battle envs, the win rate.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.env.multi_agent_env_runner import MultiAgentEnvRunner
from ray.rllib.env.multi_agent_episode import MultiAgentEpisode
from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner

import rllib_grsn.envs  # noqa: F401  (env names used in checkpoints)
from rllib_grsn.tracking.team_metrics import episode_team_metrics


class CheckpointError(ValueError):
    """The path is not a checkpoint this command can load."""


@dataclass
class EvaluationSummary:
    """Returns and lengths of the evaluated episodes (team returns for team envs), and wins.

    ``won`` holds each episode's ``battle_won`` on battle envs, and is empty elsewhere.
    """

    env: str
    episodes: int
    returns: list[float]
    lengths: list[int]
    won: list[bool] = field(default_factory=list)
    backend: str | None = None

    @property
    def win_rate(self) -> float | None:
        return float(np.mean(self.won)) if self.won else None

    @property
    def mean(self) -> float:
        return float(np.mean(self.returns))

    @property
    def std(self) -> float:
        return float(np.std(self.returns))

    @property
    def min(self) -> float:
        return float(np.min(self.returns))

    @property
    def max(self) -> float:
        return float(np.max(self.returns))

    @property
    def mean_length(self) -> float:
        return float(np.mean(self.lengths))


def load_checkpoint_config(checkpoint: Path) -> AlgorithmConfig:
    """The AlgorithmConfig an Algorithm checkpoint was written with."""
    ctor_file = checkpoint / "class_and_ctor_args.pkl"
    if not (checkpoint / "rllib_checkpoint.json").is_file() or not ctor_file.is_file():
        raise CheckpointError(
            f"{checkpoint}: not an RLlib algorithm checkpoint (expected rllib_checkpoint.json and "
            "class_and_ctor_args.pkl; pass the checkpoint_000NNN directory)"
        )
    with ctor_file.open("rb") as f:
        ctor = pickle.load(f)
    args, _ = ctor["ctor_args_and_kwargs"]
    state = args[0]
    if isinstance(state, AlgorithmConfig):
        return state
    return AlgorithmConfig.from_state(state)


def modules_dir_of(checkpoint: Path) -> Path:
    """Where an Algorithm checkpoint keeps the learner's RLModules (one folder per module id)."""
    return Path(checkpoint) / "learner_group" / "learner" / "rl_module"


def build_evaluation_runner(
    checkpoint: Path, *, seed: int | None = None
) -> SingleAgentEnvRunner | MultiAgentEnvRunner:
    """A local EnvRunner with the checkpoint's env, connectors and the learner's module weights."""
    checkpoint = Path(checkpoint).expanduser().resolve()
    config = load_checkpoint_config(checkpoint)
    config = config.copy(copy_frozen=False)
    config.env_runners(num_env_runners=0, num_envs_per_env_runner=1)
    if seed is not None:
        config.debugging(seed=seed)
    modules_dir = modules_dir_of(checkpoint)
    module_ids = sorted(config.policies) if config.is_multi_agent else [DEFAULT_MODULE_ID]
    missing = [m for m in module_ids if not (modules_dir / m).is_dir()]
    if missing:
        raise CheckpointError(
            f"{checkpoint}: no module weights at {', '.join(str(modules_dir / m) for m in missing)}"
        )

    default_cls = MultiAgentEnvRunner if config.is_multi_agent else SingleAgentEnvRunner
    runner_cls = config.env_runner_cls or default_cls  # e.g. QMIX's TeamEnvRunner
    runner = runner_cls(config=config)
    env_runner_dir = checkpoint / "env_runner"
    if env_runner_dir.is_dir():
        runner.restore_from_path(env_runner_dir)  # connector state (e.g. observation filters)
    # The EnvRunner's own copy is not in the checkpoint; the learner's is the trained one.
    if config.is_multi_agent:
        for module_id in module_ids:
            runner.module[module_id].restore_from_path(modules_dir / module_id)
    else:
        runner.module.restore_from_path(modules_dir / DEFAULT_MODULE_ID)
    return runner


def evaluate_checkpoint(
    checkpoint: Path, *, episodes: int = 10, explore: bool = False, seed: int | None = None
) -> EvaluationSummary:
    """Runs ``episodes`` full episodes of the checkpoint's policy and summarises their returns."""
    runner = build_evaluation_runner(checkpoint, seed=seed)
    try:
        done = runner.sample(num_episodes=episodes, explore=explore, random_actions=False)
    finally:
        runner.stop()
    finished = [ep for ep in done if ep.is_done][:episodes]
    if finished and isinstance(finished[0], MultiAgentEpisode):
        team = [episode_team_metrics(ep) for ep in finished]
        backends = sorted({t["backend"] for t in team if "backend" in t})
        return EvaluationSummary(
            env=str(runner.config.env),
            episodes=len(finished),
            returns=[t["team_return"] for t in team],
            lengths=[len(ep) for ep in finished],
            won=[t["battle_won"] for t in team if "battle_won" in t],
            backend=",".join(backends) or None,
        )
    return EvaluationSummary(
        env=str(runner.config.env),
        episodes=len(finished),
        returns=[float(ep.get_return()) for ep in finished],
        lengths=[len(ep) for ep in finished],
    )
