"""The acting half of a training step, shared by this package's replay-based algorithms."""

from __future__ import annotations

from typing import Any

from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.execution.rollout_ops import synchronous_parallel_sample
from ray.rllib.utils.metrics import (
    ENV_RUNNER_RESULTS,
    ENV_RUNNER_SAMPLING_TIMER,
    SYNCH_WORKER_WEIGHTS_TIMER,
    TIMERS,
)


def sample_episodes(algorithm: Algorithm) -> list[Any]:
    """Episodes from every EnvRunner (one ``sample()`` each), their metrics aggregated into the results."""
    with algorithm.metrics.log_time((TIMERS, ENV_RUNNER_SAMPLING_TIMER)):
        episodes, env_runner_results = synchronous_parallel_sample(
            worker_set=algorithm.env_runner_group,
            concat=True,
            sample_timeout_s=algorithm.config.sample_timeout_s,
            _uses_new_env_runners=True,
            _return_metrics=True,
        )
    algorithm.metrics.aggregate(env_runner_results, key=ENV_RUNNER_RESULTS)
    return episodes


def sync_acting_weights(algorithm: Algorithm, module_ids: list[str]) -> None:
    """Sends the learner's weights of ``module_ids`` to the EnvRunners (their inference-only parts)."""
    with algorithm.metrics.log_time((TIMERS, SYNCH_WORKER_WEIGHTS_TIMER)):
        algorithm.env_runner_group.sync_weights(
            from_worker_or_learner_group=algorithm.learner_group,
            policies=module_ids,
            inference_only=True,
        )
