"""Stop criteria (``stop:`` and ``--stop``): result keys a run reports, each with a number.

Tune stops a trial when ``result[key] >= value`` for any key, and silently never stops on a key the
results do not hold; a misspelled key would train forever. So a key must be one a run can report:

- a short name of this package (``return``, ``win_rate``, ``eval_return``, ... as for
  ``tune.metric``) or a classic old-stack name (``timesteps_total``, ``episode_reward_mean``),
  translated to the new stack's key;
- a top-level counter of Tune or RLlib (``training_iteration``, ``time_total_s``,
  ``num_env_steps_sampled_lifetime``, ...);
- ``env_runners/<metric>`` or ``evaluation/env_runners/<metric>`` with one of RLlib's or this
  package's episode metrics (``episode_return_mean``, ``win_rate``, ``team_return_mean``, ``energy/...``);
- anything under ``learners/``, ``perf/``, ``timers/`` or ``fault_tolerance/`` (their names depend on
  the algorithm and module ids).

Budgets (iterations, time, env steps, episodes) must be > 0: 0 or less would stop after the first
iteration.
"""

from __future__ import annotations

import math
from typing import Any

import ray.rllib.utils.metrics as rllib_metrics

from rllib_grsn.checks.problems import shown, suggest, value_hint
from rllib_grsn.sweep.settings import METRIC_ALIASES

# Classic (old API stack) result keys users still write in `stop:`, and their new-stack names.
CLASSIC_ALIASES = {
    "timesteps_total": "num_env_steps_sampled_lifetime",
    "episode_reward_mean": "env_runners/episode_return_mean",
    "episode_return_mean": "env_runners/episode_return_mean",
    "sampler_results/episode_reward_mean": "env_runners/episode_return_mean",
}
ALIASES = CLASSIC_ALIASES | METRIC_ALIASES


def _constants(module: Any) -> set[str]:
    return {v for k, v in vars(module).items() if k.isupper() and isinstance(v, str)}


# What Tune adds to every result, and the top-level numbers RLlib and this package report.
TUNE_KEYS = {"training_iteration", "time_total_s", "time_this_iter_s", "time_since_restore"}
TUNE_KEYS |= {"iterations_since_restore", "timestamp"}
OWN_TOP_LEVEL = {"replay_episodes", "surrogate_alpha"}
# Episode metrics of the EnvRunners: RLlib's names, two it logs without a constant, and ours.
OWN_EPISODE_METRICS = {"team_return_mean", "win_rate", "energy", "episodes_by_backend"}
EPISODE_METRICS = _constants(rllib_metrics) | {"agent_episode_return_mean", "module_episode_return_mean"}
EPISODE_METRICS |= OWN_EPISODE_METRICS
# How the evaluation EnvRunners fared (RLlib's fault tolerance).
EVALUATION_RUNNER_COUNTS = {
    "actor_manager_num_outstanding_async_reqs",
    "num_env_runners_dropped_lifetime",
    "num_healthy_workers",
    "num_remote_worker_restarts",
}
# Result groups whose keys depend on the algorithm, its modules and connectors.
FREE_GROUPS = ("learners/", "perf/", "timers/", "fault_tolerance/", "env_runner_group/")
BUDGETS = ("training_iteration", "time_total_s", "iterations_since_restore", "time_since_restore")


def reportable(key: str) -> bool:
    """Whether a run can report ``key`` (a new-stack key, aliases already translated)."""
    if "/" not in key:
        return key in TUNE_KEYS or key in OWN_TOP_LEVEL or key in _constants(rllib_metrics)
    if key.startswith(FREE_GROUPS):
        return True
    for prefix in ("env_runners/", "evaluation/env_runners/"):
        if key.startswith(prefix):
            return key.removeprefix(prefix).split("/")[0].removesuffix("_throughput") in EPISODE_METRICS
    return key.removeprefix("evaluation/") in EVALUATION_RUNNER_COUNTS


def _common_keys() -> list[str]:
    """What a suggestion is drawn from: the names users stop on."""
    episode = ["episode_return_mean", "episode_len_mean", "num_episodes_lifetime", *OWN_EPISODE_METRICS]
    counters = ["num_env_steps_sampled_lifetime", "num_episodes_lifetime"]
    groups = ("env_runners/", "evaluation/env_runners/")
    return [*ALIASES, *TUNE_KEYS, *OWN_TOP_LEVEL, *counters, *(g + m for g in groups for m in episode)]


def stop_problems(stop: Any, name: str) -> tuple[dict[str, float], list[str]]:
    """The stop criteria with aliases translated, and one line per bad key or value."""
    where = f"{name}.stop"
    if not isinstance(stop, dict):
        return {}, [f"{where}: must be a mapping of result key -> number, got {type(stop).__name__}"]
    criteria, problems = {}, []
    for key, value in stop.items():
        if not isinstance(key, str) or not reportable(ALIASES.get(key, key)):
            examples = ", ".join(["training_iteration", "num_env_steps_sampled_lifetime", *METRIC_ALIASES])
            problems.append(
                f"{where}.{key}: not a result key a run reports, so it would never stop the run"
                f"{suggest(str(key), _common_keys())}; e.g. {examples}"
            )
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            problems.append(f"{where}.{key}: must be a finite number, got {shown(value)}{value_hint(value)}")
            continue
        target = ALIASES.get(key, key)
        if (target in BUDGETS or target.endswith("_lifetime")) and value <= 0:
            problems.append(
                f"{where}.{key}: a budget must be > 0 (the run would stop after one iteration), got {value}"
            )
            continue
        criteria[target] = value
    return criteria, problems
