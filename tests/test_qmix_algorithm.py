"""QMIX and VDN end to end on RLlib: episode replay, TwoStepGame, every core, checkpoints, evaluate."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import ray
import torch
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.env.multi_agent_env_runner import MultiAgentEnvRunner
from stop_keys import assert_every_result_key_can_stop_a_run

import rllib_grsn.envs
from rllib_grsn.algorithms.qmix import SHARED_MODULE_ID, QMixConfig, TeamEpisodeReplay, team_episode
from rllib_grsn.checks.rllib_settings import config_problems
from rllib_grsn.evaluation import evaluate_checkpoint
from rllib_grsn.modules.qmix import masked_q

SMALL_AGENT = {"hidden": 32, "obs_embed": 32, "head_hiddens": []}


def _config(env: str = "two_step_game", core: str = "gru", **training) -> QMixConfig:
    settings = {
        "lr": 5e-3,
        "train_batch_size_per_learner": 32,
        "num_episodes_before_learning_starts": 32,
        "num_updates_per_episode": 0.5,
        "target_update_interval": 50,
        "td_lambda": 0.0,
        **training,
    }
    return (
        QMixConfig()
        .environment(env)
        .training(**settings)
        .rl_module(rl_module_spec=RLModuleSpec(model_config={"core": core, **SMALL_AGENT}))
        .reporting(min_sample_timesteps_per_iteration=500)
        .debugging(seed=0)
    )


@pytest.fixture
def registered_envs():
    """The team env names, registered again: an earlier test's ray.shutdown() drops Tune's registry,
    and these tests build EnvRunners in-process without a ray.init (whose hook re-registers)."""
    rllib_grsn.envs.register_multi_agent_envs()


@pytest.fixture
def local_ray():
    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)  # see conftest
    yield
    ray.shutdown()


def test_replay_holds_what_acting_saw(registered_envs):
    """Team arrays line agents up by id, with a_{t-1} one-hot, and a greedy unroll of the replayed
    inputs from the zero state reproduces every action the EnvRunner took step by step."""
    config = _config(env="mpe_simple_spread", core="grsn", epsilon_start=0.0, epsilon_finish=0.0)
    config.env_runners(num_envs_per_env_runner=1)
    runner = MultiAgentEnvRunner(config=config)
    try:
        episodes = runner.sample(num_episodes=2, explore=True)
        module = runner.module[SHARED_MODULE_ID]
        teams = [team_episode(e) for e in episodes]
    finally:
        runner.stop()
    team = teams[0]
    steps, n_agents = team.actions.shape
    assert team.inputs.shape[:2] == (steps + 1, n_agents) and team.states.shape[0] == steps + 1
    n_actions = team.masks.shape[-1]
    ids = team.inputs[..., -(n_agents + n_actions) : -n_actions]
    prev = team.inputs[..., -n_actions:]
    np.testing.assert_array_equal(ids[0], np.eye(n_agents))
    np.testing.assert_array_equal(prev[0], 0.0)
    np.testing.assert_array_equal(prev[1:].argmax(-1), team.actions)
    assert not team.terminated  # simple_spread ends at its time limit: truncated, bootstrapped

    with torch.no_grad():
        x = torch.as_tensor(team.inputs).permute(1, 0, 2)  # [N, T+1, D]
        q = module.agent_q_values(x, module.agent.initial_state(n_agents))
        greedy = masked_q(q, torch.as_tensor(team.masks).permute(1, 0, 2)).argmax(-1)[:, :-1]
    np.testing.assert_array_equal(greedy.T.numpy(), team.actions)


def test_episode_batches_pad_to_the_longest_episode(registered_envs):
    config = _config(env="smac", core="gru")
    config.environment(env_config={"map_name": "3s_vs_5z", "backend": "smax"})
    config.env_runners(num_envs_per_env_runner=1)
    runner = MultiAgentEnvRunner(config=config)
    try:
        episodes = runner.sample(num_episodes=4, explore=True)
    finally:
        runner.stop()
    replay = TeamEpisodeReplay(capacity=3, seed=0)
    replay.add(episodes)
    assert len(replay) == 3 and replay.num_added == 4  # FIFO: the oldest was evicted
    batch = replay.sample(5)
    lengths = batch["filled"].sum(1).astype(int)
    t_max = batch["actions"].shape[1]
    assert t_max == lengths.max()
    assert batch["inputs"].shape[:3] == (5, t_max + 1, 3) and batch["states"].shape[:2] == (5, t_max + 1)
    assert batch["masks"].shape == (5, t_max + 1, 3, 10)  # 3 stalkers: 5 moves + attack 5 zealots
    for b, n in enumerate(lengths):
        assert batch["filled"][b, :n].all() and not batch["filled"][b, n:].any()
        assert batch["terminateds"][b, n:].sum() == 0 and batch["terminateds"][b, : n - 1].sum() == 0
        assert (batch["masks"][b, n + 1 :] == 1).all()  # padding: everything available, max stays finite


def _team_arrays(team) -> dict:
    return {k: getattr(team, k) for k in ("inputs", "masks", "states", "actions", "rewards", "terminated")}


def test_chunks_of_running_battles_join_into_the_episodes_one_long_call_samples(registered_envs):
    """Sampled in calls of 10 steps per env, episodes of 25 steps arrive in chunks; the replay stores
    exactly the whole episodes that one call of 310 steps per env gives for the same seeds."""

    def sample(calls: int, steps: int) -> list:
        # Constant epsilon: a bare EnvRunner restarts its step count t at every call.
        config = _config(env="mpe_simple_spread", core="grsn", epsilon_start=0.5, epsilon_finish=0.5)
        config.env_runners(num_envs_per_env_runner=3)
        runner = MultiAgentEnvRunner(config=config)
        torch.manual_seed(0)
        try:
            return [runner.sample(num_timesteps=3 * steps, explore=True) for _ in range(calls)]
        finally:
            runner.stop()

    chunked = TeamEpisodeReplay(capacity=100, seed=0)
    stored = [chunked.add(chunks) for chunks in sample(calls=31, steps=10)]
    assert chunked.num_unfinished == 3  # the 13th episode of each env is 10 steps in
    (whole,) = sample(calls=1, steps=310)
    expected = [team_episode(e) for e in whole if e.is_done]
    assert sum(stored) == len(chunked) == len(expected) == 36 and 0 in stored  # 3 envs x 12 episodes
    for got, want in zip(chunked._episodes, expected, strict=True):
        assert len(got) == 25
        for key, value in _team_arrays(want).items():
            np.testing.assert_array_equal(_team_arrays(got)[key], value, err_msg=key)


def test_replay_stores_only_whole_episodes(registered_envs):
    """A chunk whose continuation never came (its env was reset) is dropped, and so is a continuation
    whose beginning the replay never saw (restored mid-episode); chunks that do not meet are an error."""
    config = _config(env="mpe_simple_spread", core="gru")
    config.env_runners(num_envs_per_env_runner=1)
    runner = MultiAgentEnvRunner(config=config)
    try:
        first, second, third = (runner.sample(num_timesteps=10, explore=True) for _ in range(3))
    finally:
        runner.stop()
    replay = TeamEpisodeReplay(capacity=10, seed=0)
    assert replay.add(first) == 0 and replay.num_unfinished == 1
    assert replay.add([]) == 0 and replay.num_unfinished == 0  # no continuation: dropped
    # 25-step episodes: `second` continues the dropped one, `third` ends it and starts the next.
    assert replay.add(second) == 0 and replay.add(third) == 0 and len(replay) == 0
    assert replay.num_unfinished == 1 and third[-1].env_t_started == 0
    a, b = team_episode(first[0]), team_episode(second[0])
    joined = a.followed_by(b)
    assert len(joined) == len(a) + len(b) == 20 and joined.inputs.shape[0] == 21
    with pytest.raises(ValueError, match="do not join"):
        b.followed_by(a)


@pytest.mark.parametrize("team_acting", [True, False], ids=["team", "rllib_episodes"])
def test_every_sampled_env_step_reaches_the_replay(local_ray, team_acting):
    """No sampled step is thrown away: stored episodes plus the running battles are every env step
    the EnvRunner counted (RLlib's complete_episodes would drop the unfinished battles). Team acting
    keeps a running battle in the EnvRunner; RLlib's episodes hand it over in chunks the replay joins."""
    config = _config(env="smac", core="gru", num_episodes_before_learning_starts=100_000)
    config.environment(env_config={"map_name": "3s_vs_5z", "backend": "smax"})
    config.env_runners(num_envs_per_env_runner=4, rollout_fragment_length=7)  # battles of any length
    config.training(team_acting=team_acting)
    algo = config.build_algo()
    held = []
    try:
        for _ in range(3):
            result = algo.train()
            replay = algo.replay_buffer
            sampled = result["env_runners"]["num_env_steps_sampled_lifetime"]
            running = replay.num_unfinished_env_steps + algo.env_runner.num_unfinished_env_steps
            assert replay.num_env_steps + running == sampled
            assert_every_result_key_can_stop_a_run(result)
            assert replay.num_added == len(replay)
            held.append(running)
    finally:
        algo.stop()
    assert max(held) > 0, held


@pytest.mark.slow
@pytest.mark.parametrize(("mixer", "expected"), [("qmix", 8.0), ("vdn", 7.0)])
def test_two_step_game_qmix_finds_8_vdn_settles_for_7(local_ray, mixer, expected):
    """Rashid et al. 2018, Sec. 6.1: trained under uniform exploration, QMIX's greedy policy takes the
    joint action worth 8; VDN's additive value cannot represent state 2B and picks 2A's safe 7."""
    config = _config(mixer=mixer, epsilon_start=1.0, epsilon_finish=1.0)
    # Greedy test episodes after the 6th iteration (RLlib's evaluation, explore=False).
    config.evaluation(evaluation_interval=6, evaluation_duration=4, evaluation_duration_unit="episodes")
    algo = config.build_algo()
    try:
        for _ in range(6):
            result = algo.train()
        assert result["evaluation"]["env_runners"]["team_return_mean"] == expected
        assert_every_result_key_can_stop_a_run(result)
    finally:
        algo.stop()


@pytest.mark.slow
@pytest.mark.parametrize("core", ["grsn", "lif", "gru", "mlp", "grsn_notap", "lif_notap"])
def test_every_core_trains(local_ray, core):
    algo = _config(
        core=core, num_episodes_before_learning_starts=8, train_batch_size_per_learner=8
    ).build_algo()
    try:
        result = algo.train()
    finally:
        algo.stop()
    learner = result["learners"][SHARED_MODULE_ID]
    assert np.isfinite(learner["loss"]) and result["num_env_steps_sampled_lifetime"] >= 500


@pytest.mark.slow
def test_checkpoint_restores_weights_counters_and_evaluates_win_rate(local_ray, tmp_path):
    config = _config(
        env="smac", core="grsn", num_episodes_before_learning_starts=8, train_batch_size_per_learner=8
    )
    # Battles of at most 20 steps end inside the first sample() call (25 steps per env), so the
    # first iteration already has finished episodes to report win rate and backend from.
    config.environment(env_config={"map_name": "3s_vs_5z", "backend": "smax", "episode_limit": 20})
    config.training(store_buffer_in_checkpoints=True)
    config.reporting(min_sample_timesteps_per_iteration=200)
    algo = config.build_algo()
    try:
        result = algo.train()
        assert result["backend"] == "smax" and 0.0 <= result["env_runners"]["win_rate"] <= 1.0
        checkpoint = algo.save_to_path(tmp_path / "ckpt")
        weights = algo.learner_group.get_weights()[SHARED_MODULE_ID]
        replay_len, gradient_steps = len(algo.replay_buffer), algo.num_gradient_steps
    finally:
        algo.stop()
    assert gradient_steps > 0

    restored = config.build_algo()
    try:
        restored.restore_from_path(checkpoint)
        assert len(restored.replay_buffer) == replay_len and restored.num_gradient_steps == gradient_steps
        for name, value in restored.learner_group.get_weights()[SHARED_MODULE_ID].items():
            np.testing.assert_array_equal(np.asarray(value), np.asarray(weights[name]))
    finally:
        restored.stop()

    summary = evaluate_checkpoint(checkpoint, episodes=3)
    assert summary.episodes == 3 and summary.backend == "smax"
    assert summary.win_rate is not None and 0.0 <= summary.win_rate <= 1.0


@pytest.mark.parametrize(
    ("lr", "problem"),
    [
        ([[0, 1e-3]], "2 or more [timestep, value]"),
        ([[100, 1e-3], [1000, 1e-4]], "must start at timestep 0"),
        ([[0, 1e-3], [1000, -1e-4]], "values must be >= 0"),
        ("fast", "lr: must be a number >= 0 or a schedule"),
        (-1e-3, "lr: must be >= 0"),
    ],
)
def test_a_bad_lr_or_lr_schedule_is_refused_naming_lr(lr, problem):
    config = QMixConfig().training(lr=[[0, 1e-3], [2_000_000, 1e-4]])
    assert config_problems(config) == []
    errors = config_problems(config.training(lr=lr))
    assert len(errors) == 1 and "lr" in errors[0] and problem in errors[0], errors


@pytest.mark.slow
def test_the_learning_rate_follows_an_lr_schedule(local_ray):
    """RLlib's lr schedules work for QMIX: the Learner moves Adam's lr with the lifetime env steps
    sampled, linearly between the points and constant after the last, and reports it."""
    schedule = [[0, 5e-3], [1500, 1e-3]]
    algo = _config(lr=schedule).build_algo()
    try:
        optimizer = algo.learner_group._learner.get_optimizer(SHARED_MODULE_ID)
        first = algo.train()
        lr = optimizer.param_groups[0]["lr"]
        assert first["num_env_steps_sampled_lifetime"] < 1500 and 1e-3 < lr < 5e-3
        assert 1e-3 < first["learners"][SHARED_MODULE_ID]["default_optimizer_learning_rate"] < 5e-3
        for _ in range(3):
            result = algo.train()
    finally:
        algo.stop()
    assert result["num_env_steps_sampled_lifetime"] >= 2000
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)
    assert result["learners"][SHARED_MODULE_ID]["default_optimizer_learning_rate"] == pytest.approx(1e-3)


def _weights(algo) -> dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in algo.learner_group.get_weights()[SHARED_MODULE_ID].items()}


def test_overlapped_updates_are_the_same_gradient_steps_one_training_step_later(local_ray):
    """``overlap_updates`` runs the gradient steps owed for earlier episodes in a learner thread while
    the next ones are sampled. Under uniform exploration the episodes do not depend on the weights, so
    k + 1 overlapped training steps must apply exactly the updates (same batches, same targets) that
    k sequential ones apply, and k overlapped ones one training step's fewer."""
    torch.set_num_threads(1)
    steps = 6
    config = _config(
        core="grsn",
        epsilon_start=1.0,
        epsilon_finish=1.0,
        num_episodes_before_learning_starts=8,
        train_batch_size_per_learner=8,
        target_update_interval=20,
    )
    runs = {}
    for overlap in (False, True):
        torch.manual_seed(0)
        algo = config.copy(copy_frozen=False).training(overlap_updates=overlap).build_algo()
        try:
            initial = _weights(algo)
            history = []
            for _ in range(steps + overlap):
                algo.training_step()
                history.append((algo.num_gradient_steps, _weights(algo)))
            runs[overlap] = (initial, history)
        finally:
            algo.stop()
    initial, sequential = runs[False]
    _, overlapped = runs[True]
    gradient_steps, weights = sequential[-1]
    assert gradient_steps > 4 and any(not np.array_equal(v, weights[k]) for k, v in initial.items())
    # One training step behind: after step i+1 overlapped == after step i sequential, at every step.
    for i in range(steps):
        assert overlapped[i + 1][0] == sequential[i][0]
        for name, value in sequential[i][1].items():
            np.testing.assert_array_equal(overlapped[i + 1][1][name], value, err_msg=f"step {i}: {name}")
    assert overlapped[steps - 1][0] < gradient_steps


def test_an_error_in_the_learner_thread_fails_the_training_step(local_ray, monkeypatch):
    from rllib_grsn.algorithms.qmix.learner import QMixLearner

    def broken(self, *args, **kwargs):
        raise RuntimeError("loss exploded")

    algo = _config(
        num_episodes_before_learning_starts=8, train_batch_size_per_learner=8, overlap_updates=True
    )
    algo = algo.build_algo()
    try:
        monkeypatch.setattr(QMixLearner, "update", broken)
        with pytest.raises(RuntimeError, match="loss exploded"):
            for _ in range(4):
                algo.training_step()
    finally:
        algo.stop()
    # stop() ends the learner thread.
    assert not [t for t in threading.enumerate() if t.name.startswith("qmix-learner")]
