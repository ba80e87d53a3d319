"""Every neuron core trains PPO through RLlib's full learner pipeline (one small iteration each).

The EnvRunner tests cover acting; this covers what only training exercises: RLlib's chunking of
stateful modules, the flat batches of stateless ones (mlp, *_notap), GAE's value pass, the loss
and the weight sync back to the EnvRunner.
"""

from __future__ import annotations

import pytest
import torch

from rllib_grsn.experiment import build_experiment
from rllib_grsn.neurons import CORE_NAMES

pytestmark = pytest.mark.slow

SMALL = {"train_batch_size": 256, "minibatch_size": 128, "num_epochs": 1, "num_env_runners": 0, "seed": 0}


@pytest.mark.parametrize(
    ("core", "env"),
    [(core, "CartPole-P") for core in CORE_NAMES] + [("grsn", "Pendulum-V"), ("lif", "Pendulum-V")],
)
def test_one_ppo_iteration_updates_the_weights(ray_session, core, env):
    spec = {"env": env, "run": "PPO", "config": {**SMALL, "model_config": {"core": core, "hidden": 16}}}
    algo = build_experiment(f"{core}-{env}", spec).algo_config.build_algo()
    try:
        before = {k: v.clone() for k, v in algo.get_module().state_dict().items()}
        result = algo.train()
        after = algo.get_module().state_dict()
        assert result["num_env_steps_sampled_lifetime"] >= 256
        assert all(torch.isfinite(v).all() for v in after.values())
        core_params = [k for k in after if ".core." in k]
        assert core_params, "the neuron core's parameters must be part of the trained module"
        assert any(not torch.equal(before[k], after[k]) for k in core_params), "the core was not trained"
        # The EnvRunner acts with the weights the learner just produced.
        acting = algo.env_runner.module.state_dict()
        for key, value in acting.items():
            torch.testing.assert_close(value, after[key], msg=key)
    finally:
        algo.stop()
