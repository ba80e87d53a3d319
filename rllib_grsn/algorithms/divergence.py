"""Stopping a run whose training diverged, before a checkpoint can save the damage.

:class:`DivergenceGuard` checks, after every training iteration, every weight of every learner module.
On the first NaN or infinity it raises :class:`TrainingDivergedError` from inside ``Algorithm.train()``,
naming the weights and the losses that are not finite, so the iteration never reports: Tune saves no
checkpoint of it, the trial ends with that error, and its latest checkpoint is the last good one (Tune's
``max_failures`` may restart from it). Without the guard a NaN loss trains on silently: the weights turn
NaN, every later checkpoint holds them, and the return collapses for no stated reason.

The weights decide, not the losses: a NaN loss reaches the weights through its gradients in the same
update, while RLlib also reports NaN losses for an update that had no samples (an iteration whose
EnvRunner crashed), which changes nothing and must not end the run.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from ray.rllib.callbacks.callbacks import RLlibCallback
from ray.rllib.utils.metrics import LEARNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME
from ray.tune.utils import flatten_dict


class TrainingDivergedError(RuntimeError):
    """A learner loss or weight stopped being finite."""


def nonfinite_losses(result: dict[str, Any]) -> list[str]:
    """``learners/<module>/<...loss...> = value`` for every loss in ``result`` that is NaN or inf."""
    flat = flatten_dict({LEARNER_RESULTS: result.get(LEARNER_RESULTS) or {}}, delimiter="/")
    return [
        f"{key} = {value}"
        for key, value in flat.items()
        if "loss" in key.rsplit("/", 1)[-1]
        and isinstance(value, int | float)
        and not isinstance(value, bool)
        and not math.isfinite(value)
    ]


def nonfinite_weights(learner: Any) -> list[str]:
    """``<module>: <parameter>`` for every weight tensor of ``learner`` holding a NaN or inf.

    Module-level so Ray can ship it to remote Learners.
    """
    bad = []
    for module_id in learner.module.keys():
        for name, param in learner.module[module_id].named_parameters():
            if not torch.isfinite(param).all():
                bad.append(f"{module_id}: {name}")
    return bad


class DivergenceGuard(RLlibCallback):
    """Raises :class:`TrainingDivergedError` at the end of the first iteration whose weights are not
    finite; registered for every experiment (keep it last among the callbacks, so the check sees what
    the others did)."""

    def on_train_result(self, *, algorithm: Any, result: dict, **kwargs: Any) -> None:
        weights: list[str] = []
        for call in algorithm.learner_group.foreach_learner(nonfinite_weights):
            if call.ok:
                weights += call.get()
        if not weights:
            return
        problems = [f"weights not finite in {w}" for w in weights[:5]] + nonfinite_losses(result)
        steps = int(result.get(NUM_ENV_STEPS_SAMPLED_LIFETIME) or 0)
        raise TrainingDivergedError(
            f"training diverged in iteration {result.get('training_iteration')} "
            f"({steps} env steps): {'; '.join(problems[:8])}. Nothing of this iteration was saved: the "
            "trial's latest checkpoint is the last good one. Lower lr, set grad_clip, or change the "
            "model, then start again (or resume from that checkpoint)."
        )
