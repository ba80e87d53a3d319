"""The energy metrics an evaluation logs (EnergyMetricsCallback), on in-process EnvRunners (no Ray)."""

from __future__ import annotations

import pytest
from ray.rllib.env.multi_agent_env_runner import MultiAgentEnvRunner
from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner

import rllib_grsn.envs
from rllib_grsn.algorithms.callbacks import callback_classes
from rllib_grsn.energy.episodes import episodes_energy
from rllib_grsn.experiment import build_experiment
from rllib_grsn.tracking.energy_metrics import EnergyMetricsCallback
from rllib_grsn.tracking.team_metrics import TeamMetricsCallback

PPO_SPEC = {
    "env": "CartPole-P",
    "run": "PPO",
    "config": {
        "seed": 0,
        "num_env_runners": 0,
        "evaluation_interval": 1,
        # A low threshold so the untrained core spikes: the SOP part of the energy is not empty.
        "model_config": {"core": "grsn", "hidden": 16, "threshold": 0.05},
    },
}


def _runner(spec: dict, *, evaluation: bool):
    exp = build_experiment("e", spec)
    config = exp.algo_config.get_evaluation_config_object() if evaluation else exp.algo_config
    runner_cls = config.env_runner_cls or (
        MultiAgentEnvRunner if config.is_multi_agent else SingleAgentEnvRunner
    )
    return runner_cls(config=config)


def _floats(tree):
    """The runner's metrics tree with RLlib's Stats objects as plain floats."""
    return {k: _floats(v) for k, v in tree.items()} if isinstance(tree, dict) else float(tree)


def _energy_metrics(runner) -> dict:
    return _floats(runner.get_metrics().get("energy", {}))


def test_experiments_with_our_modules_log_energy_and_keep_their_own_callbacks():
    ppo = build_experiment("e", PPO_SPEC).algo_config
    assert EnergyMetricsCallback in callback_classes(ppo)
    qmix = build_experiment(
        "q", {"env": "two_step_game", "run": "QMIX", "config": {"model_config": {"core": "gru"}}}
    ).algo_config
    assert callback_classes(qmix)[0] is TeamMetricsCallback and EnergyMetricsCallback in callback_classes(
        qmix
    )
    plain = build_experiment("p", {"env": "CartPole-v1", "run": "PPO"}).algo_config
    assert EnergyMetricsCallback not in callback_classes(plain)  # RLlib's own model: no adapter


def test_evaluation_samples_log_the_energy_of_those_episodes():
    runner = _runner(PPO_SPEC, evaluation=True)
    try:
        episodes = runner.sample(num_episodes=2, explore=False)
        logged = _energy_metrics(runner)
        expected = episodes_energy(runner.module, episodes, samples=256, require_samples=False)
    finally:
        runner.stop()
    report = expected["default_policy"].agent
    assert logged["pj_per_decision"] == pytest.approx(report.pj_per_decision)
    assert logged["sop_spiking"] == pytest.approx(report.sop_spiking) and logged["sop_spiking"] > 0
    assert logged["mac_dense"] == pytest.approx(report.mac_dense)
    rate = logged["firing_rate"]["backbone.core"]
    assert rate == pytest.approx(report.core_firing_rates["backbone.core"]) and 0 < rate < 1
    # Eq. 15/16: 0.9 pJ per spike-driven accumulate, 4.6 pJ per multiply-accumulate.
    assert logged["pj_per_decision"] == pytest.approx(0.9 * logged["sop_spiking"] + 4.6 * logged["mac_dense"])


def test_training_samples_are_not_measured():
    runner = _runner(PPO_SPEC, evaluation=False)
    try:
        runner.sample(num_episodes=1)
        assert _energy_metrics(runner) == {}
    finally:
        runner.stop()


def test_team_evaluation_logs_the_shared_agent_network():
    rllib_grsn.envs.register_multi_agent_envs()
    spec = {
        "env": "two_step_game",
        "run": "QMIX",
        "config": {"evaluation_interval": 1, "model_config": {"core": "lif", "hidden": 8, "threshold": 0.05}},
    }
    runner = _runner(spec, evaluation=True)
    try:
        runner.sample(num_episodes=2, explore=False)
        logged = _energy_metrics(runner)
    finally:
        runner.stop()
    assert logged["pj_per_decision"] > 0 and logged["mac_dense"] > 0
    assert set(logged["firing_rate"]) == {"core"}
