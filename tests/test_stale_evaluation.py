"""DropStaleEvaluation: a test's results appear in the iteration that ran it, not in the next one."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from stop_keys import assert_every_result_key_can_stop_a_run

from rllib_grsn.tracking.stale_evaluation import DropStaleEvaluation, evaluates_in


def _config(evaluation_interval, offline_evaluation_interval=None):
    return SimpleNamespace(
        evaluation_interval=evaluation_interval, offline_evaluation_interval=offline_evaluation_interval
    )


@pytest.mark.parametrize(
    ("config", "iterations"),
    [
        (_config(5), [5, 10]),
        (_config(1), list(range(1, 11))),
        (_config(None), []),
        (_config(0), []),
        (_config(None, offline_evaluation_interval=4), [4, 8]),
        (_config(3, offline_evaluation_interval=4), [3, 4, 6, 8, 9]),
    ],
)
def test_evaluation_iterations_follow_rllibs_trigger(config, iterations):
    assert [i for i in range(1, 11) if evaluates_in(config, i)] == iterations


def test_only_iterations_that_evaluated_keep_their_evaluation_results():
    algorithm = SimpleNamespace(config=_config(5))
    callback = DropStaleEvaluation()
    kept = {"training_iteration": 5, "evaluation": {"env_runners": {"win_rate": 0.5}}, "env_runners": {}}
    callback.on_train_result(algorithm=algorithm, metrics_logger=None, result=kept)
    assert kept["evaluation"] == {"env_runners": {"win_rate": 0.5}}
    repeat = {"training_iteration": 6, "evaluation": {"env_runners": {"win_rate": 0.5}}, "env_runners": {}}
    callback.on_train_result(algorithm=algorithm, metrics_logger=None, result=repeat)
    assert repeat == {"training_iteration": 6, "env_runners": {}}


@pytest.mark.slow
def test_a_real_run_reports_each_test_in_its_own_iteration_only(ray_session, tmp_path):
    """RLlib 2.60 repeats iteration 2's test in iteration 3's result; the experiment loader's runs
    report it once."""
    from rllib_grsn.experiment import load_experiments

    spec = tmp_path / "ppo.yaml"
    spec.write_text(
        "cartpole_ppo:\n"
        "  env: CartPole-v1\n"
        "  run: PPO\n"
        "  config:\n"
        "    num_env_runners: 0\n"
        "    train_batch_size_per_learner: 64\n"
        "    minibatch_size: 32\n"
        "    num_epochs: 1\n"
        "    evaluation_interval: 2\n"
        "    evaluation_duration: 1\n"
        "    evaluation_duration_unit: episodes\n"
    )
    (experiment,) = load_experiments(spec)
    algo = experiment.algo_config.build_algo()
    try:
        results = [algo.train() for _ in range(3)]
    finally:
        algo.stop()
    assert ["evaluation" in r for r in results] == [False, True, False]
    assert_every_result_key_can_stop_a_run(results[1])
