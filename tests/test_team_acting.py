"""Team acting (``QMixConfig.team_acting``, on by default) records exactly what RLlib's per-agent
episodes record, faster: for the same seed and weights, ``TeamEnvRunner`` produces the same team
episodes (inputs, masks, states, actions, rewards, ends), counts and episode metrics, whether it acts
for every battle x agent in one batched pass or through RLlib's connectors and episodes. Checked on
SMAX (the vmap vector env) and on the sync vector envs (MPE, TwoStepGame), across ``sample()`` calls
that cut battles, and for greedy test episodes. No Ray cluster except in the last test."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import ray
import torch
from ray.rllib.core.rl_module.rl_module import RLModuleSpec

import rllib_grsn.envs
from rllib_grsn.algorithms.qmix import QMixConfig, TeamEpisode, TeamEpisodeReplay
from rllib_grsn.envs.team_env_runner import TeamEnvRunner

AGENT = {"core": "grsn", "hidden": 16, "obs_embed": 16, "head_hiddens": []}
ENVS = {
    "smax_8m": ("smac", {"map_name": "8m", "backend": "smax", "episode_limit": 40}),
    "mpe": ("mpe_simple_spread", {}),
    "two_step": ("two_step_game", {}),
}
ARRAYS = ("inputs", "masks", "states", "actions", "rewards")


@pytest.fixture(autouse=True)
def registered_envs() -> None:
    rllib_grsn.envs.register_multi_agent_envs()


def runner(env: str, env_config: dict, *, team_acting: bool, seed: int = 3) -> TeamEnvRunner:
    config = (
        QMixConfig()
        .environment(env, env_config=env_config)
        .env_runners(num_envs_per_env_runner=4)
        .rl_module(rl_module_spec=RLModuleSpec(model_config=AGENT))
        .training(team_acting=team_acting, epsilon_anneal_steps=300)
        .debugging(seed=seed)
    )
    return TeamEnvRunner(config=config)


def team_episodes(samples: list[list[Any]]) -> list[TeamEpisode]:
    """The whole episodes of several ``sample()`` calls, chunks joined as the QMIX replay joins them."""
    replay = TeamEpisodeReplay(100_000)
    for episodes in samples:
        replay.add(episodes)
    return list(replay._episodes)


def run_both(env: str, env_config: dict, sample: Any) -> tuple[Any, Any]:
    """``sample(runner)`` on RLlib's episodes and on team acting, same seed and same weights."""
    rllib_path, team = runner(env, env_config, team_acting=False), runner(env, env_config, team_acting=True)
    try:
        team.module.set_state(rllib_path.module.get_state())
        torch.manual_seed(0)
        expected = sample(rllib_path)
        torch.manual_seed(0)
        got = sample(team)
    finally:
        rllib_path.stop()
        team.stop()
    return expected, got


def reduced(metrics: dict) -> dict:
    """An EnvRunner's metrics as plain values (``{key: value}``, nested per agent/module)."""
    return {
        k: reduced(v) if isinstance(v, dict) else (v.peek() if hasattr(v, "peek") else v)
        for k, v in metrics.items()
    }


def assert_same_episodes(expected: list[TeamEpisode], got: list[TeamEpisode]) -> None:
    assert len(got) == len(expected) > 0
    for a, b in zip(expected, got, strict=True):
        for name in ARRAYS:
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
        assert (a.terminated, a.won, a.backend) == (b.terminated, b.won, b.backend)


@pytest.mark.parametrize("name", list(ENVS))
def test_exploring_samples_equal_rllibs_episodes_across_calls(name: str) -> None:
    env, env_config = ENVS[name]

    def sample(r: TeamEnvRunner) -> tuple[list[TeamEpisode], dict]:
        calls = [r.sample(num_timesteps=90, explore=True) for _ in range(4)]  # battles cut between calls
        return team_episodes(calls), reduced(r.get_metrics())

    (expected, rllib_metrics), (got, team_metrics) = run_both(env, env_config, sample)
    assert_same_episodes(expected, got)
    assert all(isinstance(e, TeamEpisode) for e in got)
    for key in ("num_env_steps_sampled", "num_episodes", "num_env_steps_sampled_lifetime"):
        assert team_metrics[key] == rllib_metrics[key], key
    assert team_metrics["num_agent_steps_sampled"] == rllib_metrics["num_agent_steps_sampled"]
    for key in ("episode_return_mean", "episode_len_mean"):
        assert team_metrics[key] == pytest.approx(rllib_metrics[key], rel=1e-5), key
    if "win_rate" in rllib_metrics:
        assert team_metrics["win_rate"] == pytest.approx(rllib_metrics["win_rate"])
    # The team return of whole episodes: RLlib's episode return (every agent's) over the agents.
    n_agents = got[0].actions.shape[1]
    assert team_metrics["team_return_mean"] == pytest.approx(team_metrics["episode_return_mean"] / n_agents)


@pytest.mark.parametrize("name", ["smax_8m", "mpe"])
def test_greedy_test_episodes_equal_rllibs(name: str) -> None:
    env, env_config = ENVS[name]

    def sample(r: TeamEnvRunner) -> list[TeamEpisode]:
        return team_episodes([r.sample(num_episodes=6, explore=False) for _ in range(2)])

    expected, got = run_both(env, env_config, sample)
    assert_same_episodes(expected, got)


def test_a_battle_starts_from_the_zero_state_and_no_previous_action() -> None:
    env, env_config = ENVS["smax_8m"]
    r = runner(env, env_config, team_acting=True)
    try:
        episodes = r.sample(num_episodes=5, explore=True)
        held = r.num_unfinished_env_steps
        state = {k: v.clone() for k, v in r._team_state.items()}
    finally:
        r.stop()
    for episode in episodes:
        n = episode.actions.shape[1]
        previous = episode.inputs[:, :, -episode.masks.shape[-1] :]
        assert not previous[0].any()  # a_{-1}: none
        np.testing.assert_array_equal(previous[1:].argmax(-1), episode.actions)  # a_{t-1} one-hot
        np.testing.assert_array_equal(
            episode.inputs[0, :, -episode.masks.shape[-1] - n : -episode.masks.shape[-1]], np.eye(n)
        )
    assert held >= 0 and all(torch.isfinite(v).all() for v in state.values())


@pytest.mark.slow
def test_qmix_trains_with_remote_team_runners_and_evaluates(tmp_path) -> None:
    """Remote EnvRunners (weights synced to them), evaluation runners and their metrics."""
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        config = (
            QMixConfig()
            .environment("two_step_game")
            .env_runners(num_env_runners=1, num_envs_per_env_runner=2)
            .rl_module(rl_module_spec=RLModuleSpec(model_config=AGENT))
            .training(train_batch_size_per_learner=4, num_episodes_before_learning_starts=4)
            .reporting(min_sample_timesteps_per_iteration=40)
            .evaluation(evaluation_interval=1, evaluation_duration=4, evaluation_duration_unit="episodes")
            .debugging(seed=0)
        )
        algo = config.build_algo()
        try:
            results = [algo.train() for _ in range(3)]
        finally:
            algo.stop()
    finally:
        ray.shutdown()
    last = results[-1]
    assert last["env_runners"]["num_env_steps_sampled_lifetime"] >= 120
    assert last["env_runners"]["team_return_mean"] > 0
    assert last["evaluation"]["env_runners"]["num_episodes"] >= 4
    assert "learners" in last and algo.replay_buffer is not None


@pytest.mark.slow
def test_training_is_bit_identical_to_rllibs_episodes_for_the_same_seed() -> None:
    """Same seed, same code but the acting path: after several iterations of learning on SMAX 8m the
    learner's weights are exactly equal, so every learning curve measured on RLlib's episodes holds
    for team acting too."""
    torch.set_num_threads(1)

    def config(team_acting: bool) -> QMixConfig:
        return (
            QMixConfig()
            .environment("smac", env_config={"map_name": "8m", "backend": "smax"})
            .env_runners(num_envs_per_env_runner=4)
            .rl_module(rl_module_spec=RLModuleSpec(model_config=AGENT))
            .training(
                team_acting=team_acting,
                train_batch_size_per_learner=8,
                num_episodes_before_learning_starts=8,
                num_updates_per_episode=0.5,
                target_update_interval=20,
                epsilon_anneal_steps=2000,
            )
            .reporting(min_sample_timesteps_per_iteration=400)
            .debugging(seed=5)
        )

    weights = {}
    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        for team_acting in (False, True):
            torch.manual_seed(0)
            algo = config(team_acting).build_algo()
            try:
                initial = algo.learner_group.get_weights()
                for _ in range(4):
                    algo.train()
                weights[team_acting] = algo.learner_group.get_weights()
            finally:
                algo.stop()
            (module_id,) = initial.keys()
            trained = weights[team_acting][module_id]
            assert any(not np.array_equal(v, trained[k]) for k, v in initial[module_id].items())
    finally:
        ray.shutdown()
    (module_id,) = weights[True].keys()
    for name, value in weights[False][module_id].items():
        np.testing.assert_array_equal(weights[True][module_id][name], value, err_msg=name)
