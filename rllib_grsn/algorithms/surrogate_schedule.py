"""Scheduling the surrogate-gradient width ``alpha`` (paper Eq. 6) over training.

How sharp the ATan surrogate is trades how many neurons receive a gradient (wide, small ``alpha``)
against how faithfully it follows the true step function (sharp, large ``alpha``); scheduling it
during training tends to match the best fixed width without sweeping it (the adaptive-surrogate
study in the shared notes). ``model_config.alpha: [[0, 1.0], [500000, 4.0]]`` is written like
RLlib's ``lr`` schedules and read over the lifetime env steps sampled.

:class:`SurrogateAlphaSchedule` sets the width on the Learners' modules, the only copies that
compute gradients: ``alpha`` shapes only the backward pass (the spikes of Eq. 5 do not depend on
it), so the EnvRunners, which act with forward passes only, are left alone.
"""

from __future__ import annotations

from typing import Any

from ray.rllib.callbacks.callbacks import RLlibCallback
from ray.rllib.utils.metrics import ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME

from rllib_grsn.modules.model_config import scheduled_value
from rllib_grsn.neurons import set_surrogate_alpha

SURROGATE_ALPHA_KEY = "surrogate_alpha"
# Only written when modules follow different schedules (multi-agent specs of their own).
SURROGATE_ALPHA_PER_MODULE_KEY = "surrogate_alpha_per_module"


def apply_alpha_schedule(learner: Any, timestep: float) -> dict[str, float]:
    """On one Learner: sets every module whose ``alpha`` is a schedule to its value at ``timestep``.

    Returns the value set per module id (modules with a fixed ``alpha``, or without spiking cells,
    are left out). Module-level so Ray can ship it to remote Learners.
    """
    values = {}
    for module_id in learner.module.keys():
        module = learner.module[module_id]
        spiking_config = getattr(module.unwrapped(), "spiking_config", None)
        schedule = None if spiking_config is None else spiking_config.alpha_schedule
        if schedule is None:
            continue
        value = scheduled_value(schedule, timestep)
        if set_surrogate_alpha(module, value):
            values[module_id] = value
    return values


def lifetime_env_steps(algorithm: Any) -> int:
    """Env steps sampled over the algorithm's lifetime (restored with a checkpoint's metrics)."""
    return int(algorithm.metrics.peek((ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME), default=0))


def sync_surrogate_alpha(algorithm: Any, timestep: float | None = None) -> dict[str, float]:
    """Sets every Learner's scheduled ``alpha`` for ``timestep`` (default: the lifetime env steps).

    Call it after ``Algorithm.from_checkpoint()`` / ``restore_from_path()``: RLlib 2.60 runs the
    ``on_checkpoint_loaded`` callback only from ``Algorithm.restore()`` (Tune's resume path), so
    otherwise the first iteration after such a restore would train with the t=0 width.
    """
    t = lifetime_env_steps(algorithm) if timestep is None else timestep
    results = algorithm.learner_group.foreach_learner(apply_alpha_schedule, timestep=t)
    per_learner = []
    for call in results:
        value = call.get()
        if not call.ok:  # a remote Learner failed; raise its error rather than train on stale widths
            raise value
        per_learner.append(value)
    # Every Learner holds the same modules and the same schedule: the first one speaks for all.
    return per_learner[0] if per_learner else {}


class SurrogateAlphaSchedule(RLlibCallback):
    """Moves the Learners' surrogate width along ``model_config.alpha``'s schedule.

    * ``on_algorithm_init``: the value at the lifetime env steps, i.e. t=0 for a new algorithm;
    * ``on_train_result``: the value at the iteration's ``num_env_steps_sampled_lifetime``, for the
      next iteration's updates, and ``result["surrogate_alpha"]`` (a top-level float that the
      trackers pick up);
    * ``on_checkpoint_loaded``: the value at the restored env-step count, so a resumed run continues
      the schedule where it stopped (the width itself is not checkpointed; it follows from the steps).

    Modules whose ``alpha`` is a number are left alone, so the callback is harmless in runs without
    a schedule.
    """

    def on_algorithm_init(self, *, algorithm: Any, metrics_logger: Any = None, **kwargs: Any) -> None:
        sync_surrogate_alpha(algorithm)

    def on_checkpoint_loaded(self, *, algorithm: Any, **kwargs: Any) -> None:
        sync_surrogate_alpha(algorithm)

    def on_train_result(
        self, *, algorithm: Any, metrics_logger: Any = None, result: dict, **kwargs: Any
    ) -> None:
        values = sync_surrogate_alpha(algorithm, result.get(NUM_ENV_STEPS_SAMPLED_LIFETIME))
        if not values:
            return
        # One schedule for all modules is the usual case (the experiment gives every module the same
        # model_config); modules on different schedules get their mean here and their own values below.
        result[SURROGATE_ALPHA_KEY] = sum(values.values()) / len(values)
        if len(set(values.values())) > 1:
            result[SURROGATE_ALPHA_PER_MODULE_KEY] = dict(values)
