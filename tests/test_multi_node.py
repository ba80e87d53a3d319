"""Sweeps on a multi-node Ray cluster (a local one: a head and two worker nodes on loopback, from
``ray.cluster_utils.Cluster``), and surviving faults:

- the trials of a sweep land on more than one node;
- a worker node killed mid-sweep loses no trial: Tune restarts the trial that ran there from its last
  checkpoint (``tune.max_failures``) on a node that is left, and the sweep completes;
- a killed EnvRunner is replaced and training goes on (RLlib's ``restart_failed_env_runners``).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import ray
from ray import tune
from ray.cluster_utils import Cluster

from rllib_grsn.experiment import build_experiment
from rllib_grsn.training import run_experiment

pytestmark = pytest.mark.slow

ITERATIONS = 6
TINY_PPO = {
    "train_batch_size": 256,
    "minibatch_size": 128,
    "num_epochs": 1,
    "model_config": {"core": "grsn", "hidden": 16},
}


def record_node(*, algorithm: Any, result: dict, **kwargs: Any) -> None:
    """RLlib on_train_result callback: the node the trial's Algorithm runs on."""
    result["node_id"] = ray.get_runtime_context().get_node_id()


class KillNodeOnce(tune.Callback):
    """Removes ``node`` from ``cluster`` when a trial first reports a result from it (iteration 2+,
    so a checkpoint exists), and counts the trials Tune restarts afterwards."""

    def __init__(self, cluster: Cluster, node: Any) -> None:
        self.cluster, self.node = cluster, node
        self.killed_trial: str | None = None
        self.recovered: list[str] = []
        self.nodes_seen: set[str] = set()

    def __getstate__(self) -> dict[str, Any]:
        # Tune saves its callbacks with the experiment state; the cluster handle (locks, processes)
        # stays with the live object in this process.
        return {**self.__dict__, "cluster": None, "node": None}

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        self.nodes_seen.add(result["node_id"])
        on_node = result["node_id"] == self.node.node_id
        if self.killed_trial is None and on_node and result["training_iteration"] >= 2:
            self.killed_trial = trial.trial_id
            self.cluster.remove_node(self.node, allow_graceful=False)

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.recovered.append(trial.trial_id)


@pytest.fixture
def cluster():
    # Functions of this test module go to the workers by value (they cannot import tests/).
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address)
    try:
        yield cluster, workers
    finally:
        ray.shutdown()
        cluster.shutdown()
        ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def test_sweep_spreads_over_nodes_and_survives_losing_one(cluster, tmp_path: Path):
    cluster, workers = cluster
    spec = {
        "env": "CartPole-P",
        "run": "PPO",
        "stop": {"training_iteration": ITERATIONS},
        "checkpoint_freq": 1,
        "tune": {"max_failures": 3},
        "config": {**TINY_PPO, "num_env_runners": 0, "seed": {"grid_search": [0, 1, 2]}},
    }
    exp = build_experiment("multi-node", spec)
    exp.algo_config.callbacks(on_train_result=record_node)
    killer = KillNodeOnce(cluster, workers[0])
    outcome = run_experiment(exp, storage_path=str(tmp_path), callbacks=[killer])

    head = cluster.head_node.node_id
    print(f"nodes: {len(killer.nodes_seen)}; killed: {killer.killed_trial}; restarted: {killer.recovered}")
    assert len(killer.nodes_seen) == 3 and head in killer.nodes_seen  # one trial per node (1 CPU each)
    assert killer.killed_trial is not None and killer.killed_trial in killer.recovered
    # Nothing lost: every trial reached its stop criterion, none failed for good.
    assert outcome.trials == 3 and outcome.failed == 0 and not outcome.interrupted
    grid = tune.Tuner.restore(outcome.experiment_path, trainable="PPO").get_results()
    assert sorted(r.metrics["training_iteration"] for r in grid) == [ITERATIONS] * 3
    assert all(r.error is None for r in grid)


def test_killed_env_runner_is_replaced_and_training_continues(cluster):
    config = build_experiment(
        "env-runner-fault", {"env": "CartPole-P", "run": "PPO", "config": {**TINY_PPO, "num_env_runners": 1}}
    ).algo_config
    algo = config.build_algo()
    try:
        algo.train()
        group = algo.env_runner_group
        (runner_id,) = group.healthy_env_runner_ids()
        # As a crash would: Ray restarts the actor process (RLlib asks for max_restarts), RLlib then
        # finds it healthy again and syncs its weights.
        ray.kill(group._worker_manager._actors[runner_id], no_restart=False)
        deadline = time.monotonic() + 120
        while True:  # the restarted actor builds its env and module again before it answers
            result = algo.train()
            if group.num_healthy_remote_workers() == 1 or time.monotonic() > deadline:
                break
        before = result["num_env_steps_sampled_lifetime"]
        result = algo.train()  # ... and samples again
        assert group.num_healthy_remote_workers() == 1
        assert group.num_remote_worker_restarts() >= 1
        assert result["num_env_steps_sampled_lifetime"] >= before + 256
    finally:
        algo.stop()


def test_qmix_team_runners_on_two_nodes_sample_and_one_killed_is_replaced(cluster):
    """QMIX's team EnvRunners scale out: two remote runners (one per worker node, 1 CPU each) both
    sample with the learner's weights; one killed is restarted and sampling goes on."""
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    from rllib_grsn.algorithms.qmix import QMixConfig

    config = (
        QMixConfig()
        .environment("two_step_game")
        .env_runners(num_env_runners=2, num_envs_per_env_runner=2, num_cpus_per_env_runner=1)
        .rl_module(rl_module_spec=RLModuleSpec(model_config={"core": "grsn", "hidden": 8, "obs_embed": 8}))
        .training(train_batch_size_per_learner=4, num_episodes_before_learning_starts=4)
        .reporting(min_sample_timesteps_per_iteration=40)
        .debugging(seed=0)
    )
    algo = config.build_algo()
    try:
        algo.train()
        group = algo.env_runner_group
        nodes = group.foreach_env_runner(
            lambda r: ray.get_runtime_context().get_node_id(), local_env_runner=False
        )
        assert len(set(nodes)) == 2  # a runner on each worker node (the head's CPU runs the algorithm)
        weights = algo.learner_group.get_weights()
        (module_id,) = weights.keys()
        acting = group.foreach_env_runner(lambda r: r.module[module_id].get_state(), local_env_runner=False)
        for state in acting:
            for name, value in state.items():
                np.testing.assert_array_equal(value, weights[module_id][name])
        runner_id = group.healthy_env_runner_ids()[0]
        ray.kill(group._worker_manager._actors[runner_id], no_restart=False)
        deadline = time.monotonic() + 120
        while True:
            result = algo.train()
            if group.num_healthy_remote_workers() == 2 or time.monotonic() > deadline:
                break
        before = result["num_env_steps_sampled_lifetime"]
        result = algo.train()
        assert group.num_healthy_remote_workers() == 2 and group.num_remote_worker_restarts() >= 1
        assert result["num_env_steps_sampled_lifetime"] >= before + 40
    finally:
        algo.stop()
