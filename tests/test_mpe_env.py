"""The mpe2 simple_spread adapter (``rllib_grsn.envs.mpe.SimpleSpreadEnv``): SMAC-style layout on mpe2.

Runs the real ``mpe2.simple_spread_v3`` (cheap, pure numpy); skipped when mpe2 is not installed
(``pip install "rllib_grsn[mpe]"``). No Ray cluster is started.
"""

from __future__ import annotations

import importlib.util

import gymnasium as gym
import numpy as np
import pytest
from ray.rllib.env.multi_agent_episode import MultiAgentEpisode
from ray.rllib.utils.pre_checks.env import check_multiagent_environments

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("mpe2") is None, reason='needs mpe2 (pip install "rllib_grsn[mpe]")'
)

from rllib_grsn.envs.mpe import SimpleSpreadEnv  # noqa: E402


def random_actions(env: SimpleSpreadEnv, rng: np.random.Generator) -> dict[str, int]:
    return {aid: int(rng.integers(env.n_actions)) for aid in env.agents}


@pytest.mark.parametrize(("n_agents", "obs_dim", "state_dim"), [(3, 18, 54), (4, 24, 96)])
def test_spaces(n_agents: int, obs_dim: int, state_dim: int) -> None:
    env = SimpleSpreadEnv({"n_agents": n_agents})
    assert env.possible_agents == env.agents == [f"agent_{i}" for i in range(n_agents)]
    for aid in env.agents:
        space = env.observation_spaces[aid]
        assert isinstance(space, gym.spaces.Dict)
        assert space["obs"].shape == (obs_dim,) and space["state"].shape == (state_dim,)
        assert space["action_mask"].shape == (5,)
        assert all(space[key].dtype == np.float32 for key in ("obs", "state", "action_mask"))
        assert env.get_action_space(aid) == gym.spaces.Discrete(5)
    obs, infos = env.reset(seed=0)
    assert all(env.observation_spaces[aid].contains(obs[aid]) for aid in env.agents)
    assert infos == {aid: {"backend": "mpe"} for aid in env.agents}


def test_episode_layout_team_reward_and_truncation() -> None:
    env = SimpleSpreadEnv({"max_cycles": 7, "seed": 0})
    rng = np.random.default_rng(0)
    obs, _ = env.reset()
    for t in range(1, 8):
        obs, rewards, terminateds, truncateds, infos = env.step(random_actions(env, rng))
        assert list(obs) == list(rewards) == list(infos) == env.agents
        state = obs["agent_0"]["state"]
        # mpe2's state() is all agents' observations, concatenated.
        np.testing.assert_allclose(state, np.concatenate([obs[aid]["obs"] for aid in env.agents]))
        for aid in env.agents:
            assert type(obs[aid]["obs"]) is np.ndarray and obs[aid]["obs"].dtype == np.float32
            np.testing.assert_array_equal(obs[aid]["action_mask"], np.ones(5, np.float32))
            np.testing.assert_array_equal(obs[aid]["state"], state)
            assert type(rewards[aid]) is float and rewards[aid] == rewards["agent_0"] < 0.0
            assert terminateds[aid] == terminateds["__all__"] is False
            assert truncateds[aid] == truncateds["__all__"] == (t == 7)
            assert infos[aid] == {"backend": "mpe"}
    # The team reward is mpe2's global reward: minus the sum over landmarks of the closest agent's distance.
    world = env._env.unwrapped.world
    expected = -sum(
        min(np.linalg.norm(a.state.p_pos - lm.state.p_pos) for a in world.agents) for lm in world.landmarks
    )
    assert rewards["agent_0"] == pytest.approx(expected)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(random_actions(env, rng))


def test_seeded_reset_is_reproducible() -> None:
    def rollout(env: SimpleSpreadEnv, seed: int | None) -> list[np.ndarray]:
        obs, _ = env.reset(seed=seed)
        rng = np.random.default_rng(3)
        trace = [obs["agent_1"]["state"]]
        for _ in range(5):
            obs, rewards, *_ = env.step(random_actions(env, rng))
            trace += [obs["agent_1"]["state"], np.array([rewards["agent_1"]])]
        return trace

    env = SimpleSpreadEnv()
    a, b = rollout(env, 4), rollout(SimpleSpreadEnv(), 4)
    rollout(env, None)
    c = rollout(env, 4)
    for x, y, z in zip(a, b, c, strict=True):
        np.testing.assert_array_equal(x, y)
        np.testing.assert_array_equal(x, z)
    np.testing.assert_array_equal(rollout(SimpleSpreadEnv({"seed": 4}), None)[0], a[0])
    assert not np.array_equal(rollout(env, 5)[0], a[0])


def test_bad_actions_and_config() -> None:
    env = SimpleSpreadEnv()
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"missing actions for \['agent_2'\]"):
        env.step({"agent_0": 0, "agent_1": 0})
    with pytest.raises(ValueError, match=r"agent agent_1 chose action 5"):
        env.step({"agent_0": 0, "agent_1": 5, "agent_2": 0})
    with pytest.raises(ValueError, match=r"local_ratio.*allowed: n_agents, max_cycles, seed"):
        SimpleSpreadEnv({"local_ratio": 0.5})
    with pytest.raises(ValueError, match="max_cycles"):
        SimpleSpreadEnv({"max_cycles": 0})


def test_rllib_checker_and_episode_accept_it() -> None:
    env = SimpleSpreadEnv({"max_cycles": 5})
    for aid in env.agents:
        env.get_action_space(aid).seed(0)
    check_multiagent_environments(env)
    episode = MultiAgentEpisode(observation_space=env.observation_space, action_space=env.action_space)
    obs, infos = env.reset(seed=1)
    episode.add_env_reset(observations=obs, infos=infos)
    rng = np.random.default_rng(0)
    team_return = 0.0
    while not episode.is_done:
        actions = random_actions(env, rng)
        obs, rewards, terminateds, truncateds, infos = env.step(actions)
        team_return += rewards["agent_0"]
        episode.add_env_step(obs, actions, rewards, infos, terminateds=terminateds, truncateds=truncateds)
    assert episode.env_t == 5 and episode.is_truncated
    assert episode.get_return() == pytest.approx(3 * team_return)
