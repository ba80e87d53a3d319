"""Greedy (or exploring) rollouts of a checkpoint written by `rllib train file`.

The checkpoint's own AlgorithmConfig rebuilds one local EnvRunner (env, connectors, RLModule);
the module's weights come from the learner's copy in the checkpoint. No Ray cluster is needed:
the EnvRunner runs in this process, carrying the module's recurrent state from step to step
exactly as during training.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner

import rllib_grsn.envs  # noqa: F401  (env names used in checkpoints)


class CheckpointError(ValueError):
    """The path is not a checkpoint this command can load."""


@dataclass
class EvaluationSummary:
    """Returns and lengths of the evaluated episodes."""

    env: str
    episodes: int
    returns: list[float]
    lengths: list[int]

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


def build_evaluation_runner(checkpoint: Path, *, seed: int | None = None) -> SingleAgentEnvRunner:
    """A local EnvRunner with the checkpoint's env, connectors and the learner's module weights."""
    checkpoint = Path(checkpoint).expanduser().resolve()
    config = load_checkpoint_config(checkpoint)
    if config.is_multi_agent:
        raise CheckpointError(
            f"{checkpoint}: multi-agent checkpoints are not supported by `rllib evaluate` yet"
        )
    config = config.copy(copy_frozen=False)
    config.env_runners(num_env_runners=0, num_envs_per_env_runner=1)
    if seed is not None:
        config.debugging(seed=seed)
    module_dir = checkpoint / "learner_group" / "learner" / "rl_module" / DEFAULT_MODULE_ID
    if not module_dir.is_dir():
        raise CheckpointError(f"{checkpoint}: no module weights at {module_dir}")

    runner = SingleAgentEnvRunner(config=config)
    env_runner_dir = checkpoint / "env_runner"
    if env_runner_dir.is_dir():
        runner.restore_from_path(env_runner_dir)  # connector state (e.g. observation filters)
    # The EnvRunner's own copy is not in the checkpoint; the learner's is the trained one.
    runner.module.restore_from_path(module_dir)
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
    return EvaluationSummary(
        env=str(runner.config.env),
        episodes=len(finished),
        returns=[float(ep.get_return()) for ep in finished],
        lengths=[len(ep) for ep in finished],
    )
