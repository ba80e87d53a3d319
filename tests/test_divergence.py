"""A run whose training diverges stops with a clear error and keeps its last good checkpoint."""

from __future__ import annotations

import math
import sys
from typing import Any

import pytest
import ray
import torch
from ray.rllib.callbacks.callbacks import RLlibCallback
from ray.rllib.core.rl_module.rl_module import RLModule

from rllib_grsn.algorithms.callbacks import callback_classes
from rllib_grsn.algorithms.divergence import DivergenceGuard, nonfinite_losses, nonfinite_weights
from rllib_grsn.experiment import build_experiment
from rllib_grsn.training import run_experiment

POISONED_ITERATION = 3


def test_nonfinite_losses_name_the_metric():
    result = {
        "learners": {
            "default_policy": {"total_loss": math.nan, "vf_loss": 1.0, "entropy": math.inf},
            "__all_modules__": {"num_env_steps_trained": 5},
        }
    }
    assert nonfinite_losses(result) == ["learners/default_policy/total_loss = nan"]  # entropy is no loss
    assert nonfinite_losses({"learners": {"m": {"loss": 0.5}}}) == []


def test_nonfinite_weights_name_the_parameter():
    class Learner:
        module = {"m": torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))}

    assert nonfinite_weights(Learner()) == []
    with torch.no_grad():
        Learner.module["m"][1].bias.fill_(math.inf)
    assert nonfinite_weights(Learner()) == ["m: 1.bias"]


def test_every_experiment_is_guarded_last():
    for spec in (
        {"env": "CartPole-P", "run": "PPO", "config": {"model_config": {"core": "grsn"}}},
        {"env": "CartPole-v1", "run": "PPO"},
        {"env": "two_step_game", "run": "QMIX", "config": {"model_config": {"core": "gru"}}},
    ):
        assert callback_classes(build_experiment("e", spec).algo_config)[-1] is DivergenceGuard


def _poison(learner: Any) -> None:
    with torch.no_grad():
        next(iter(learner.module["default_policy"].parameters())).fill_(math.nan)


class PoisonWeights(RLlibCallback):
    """Fault injection: the learner's weights turn NaN at the end of iteration 3."""

    def on_train_result(self, *, algorithm: Any, result: dict, **kwargs: Any) -> None:
        if result["training_iteration"] == POISONED_ITERATION:
            algorithm.learner_group.foreach_learner(_poison)


@pytest.mark.slow
def test_diverged_training_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(tmp_path, capsys):
    spec = {
        "env": "CartPole-P",
        "run": "PPO",
        "stop": {"training_iteration": 6},
        "checkpoint_freq": 1,
        "config": {
            "train_batch_size": 256,
            "minibatch_size": 128,
            "num_epochs": 1,
            "num_env_runners": 0,
            "model_config": {"core": "grsn", "hidden": 16},
        },
    }
    exp = build_experiment("diverges", spec)
    # The poison runs before the experiment's own callbacks, as a divergence inside training would.
    exp.algo_config.callbacks(callbacks_class=[PoisonWeights, *callback_classes(exp.algo_config)])
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)  # see conftest
    try:
        outcome = run_experiment(exp, storage_path=str(tmp_path))
    finally:
        ray.shutdown()
        ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    out = capsys.readouterr().out

    assert outcome.failed == 1
    assert (
        f"diverges: trial failed: rllib_grsn.algorithms.divergence.TrainingDivergedError: training diverged "
        f"in iteration {POISONED_ITERATION}"
        in out
        or f"TrainingDivergedError: training diverged in iteration {POISONED_ITERATION}" in out
    ), out[-3000:]
    assert "weights not finite in default_policy: " in out
    # Iterations 1 and 2 were checkpointed; the diverged third never reported, so never saved.
    assert outcome.checkpoint is not None and outcome.checkpoint.endswith("checkpoint_000001")
    assert f"its latest checkpoint, saved before the failure: {outcome.checkpoint}" in out
    module = RLModule.from_checkpoint(f"{outcome.checkpoint}/learner_group/learner/rl_module/default_policy")
    assert all(torch.isfinite(p).all() for p in module.parameters())
