"""Keeps a test's results out of the training iterations that did not run it.

RLlib 2.60's ``Algorithm.evaluate`` reads its results with ``MetricsLogger.peek`` and leaves them in
the logger, so the reduce at the end of the *next* training iteration returns them once more, under
``result["evaluation"]``, as if that iteration had tested too. With ``evaluation_interval: 5`` a
learning curve then shows every test twice (iterations 5 and 6, 10 and 11, ...), the progress lines
print an ``eval win`` for iterations that played no greedy episode, MLflow logs each test at two
steps, and a run whose budget ends right after a test reports that stale test as its last.

:class:`DropStaleEvaluation` removes ``result["evaluation"]`` from every iteration that RLlib's
``Algorithm.step`` did not evaluate in (the same trigger: ``training_iteration`` a multiple of
``evaluation_interval`` or of ``offline_evaluation_interval``). The experiment loader adds it to
every run.
"""

from __future__ import annotations

from typing import Any

from ray.rllib.callbacks.callbacks import RLlibCallback
from ray.rllib.utils.metrics import EVALUATION_RESULTS


def evaluates_in(config: Any, iteration: int) -> bool:
    """Whether ``Algorithm.step`` runs an (online or offline) evaluation in training iteration
    ``iteration`` (1-based, ``result["training_iteration"]``)."""
    intervals = (config.evaluation_interval, getattr(config, "offline_evaluation_interval", None))
    return any(interval and iteration % interval == 0 for interval in intervals)


class DropStaleEvaluation(RLlibCallback):
    """Removes the repeat of the previous test from the results of an iteration that ran none."""

    def on_train_result(self, *, algorithm: Any, result: dict, **kwargs: Any) -> None:
        # on_train_result runs in Algorithm.log_result, before Tune, the progress lines and MLflow
        # see the result, and after Trainable.train has set training_iteration.
        if not evaluates_in(algorithm.config, int(result["training_iteration"])):
            result.pop(EVALUATION_RESULTS, None)
