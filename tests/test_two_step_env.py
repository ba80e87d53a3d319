"""The QMIX two-step game (``rllib_grsn.envs.two_step.TwoStepGameEnv``): payoffs and layout."""

from __future__ import annotations

import itertools

import gymnasium as gym
import numpy as np
import pytest
from ray.rllib.utils.pre_checks.env import check_multiagent_environments

from rllib_grsn.envs.two_step import OPTIMAL_RETURN, TwoStepGameEnv

STATE_1, STATE_2A, STATE_2B = [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]


def play(env: TwoStepGameEnv, first: tuple[int, int], second: tuple[int, int]):
    obs, infos = env.reset()
    steps = [(obs, None, None, None, infos)]
    for a_0, a_1 in (first, second):
        obs, rewards, terminateds, truncateds, infos = env.step({"agent_0": a_0, "agent_1": a_1})
        steps.append((obs, rewards, terminateds, truncateds, infos))
    return steps


@pytest.mark.parametrize(("a_0", "a_1", "payoff"), [(0, 0, 0.0), (0, 1, 1.0), (1, 0, 1.0), (1, 1, 8.0)])
def test_state_2b_payoffs(a_0: int, a_1: int, payoff: float) -> None:
    steps = play(TwoStepGameEnv(), (1, a_1), (a_0, a_1))
    obs, rewards, terminateds, truncateds, _ = steps[1]
    np.testing.assert_array_equal(obs["agent_0"]["state"], STATE_2B)
    assert rewards == {"agent_0": 0.0, "agent_1": 0.0}
    assert terminateds == {"agent_0": False, "agent_1": False, "__all__": False}
    _, rewards, terminateds, truncateds, infos = steps[2]
    assert rewards == {"agent_0": payoff, "agent_1": payoff}
    assert terminateds == {"agent_0": True, "agent_1": True, "__all__": True}
    assert truncateds == {"agent_0": False, "agent_1": False, "__all__": False}
    assert infos == {"agent_0": {"backend": "two_step"}, "agent_1": {"backend": "two_step"}}


def test_state_2a_pays_7_whatever_the_actions() -> None:
    for agent_1_first, second in itertools.product((0, 1), itertools.product((0, 1), (0, 1))):
        steps = play(TwoStepGameEnv(), (0, agent_1_first), second)
        np.testing.assert_array_equal(steps[1][0]["agent_1"]["state"], STATE_2A)
        assert steps[2][1] == {"agent_0": 7.0, "agent_1": 7.0} and steps[2][2]["__all__"]
    best = max(
        sum(step[1]["agent_0"] for step in play(TwoStepGameEnv(), first, second)[1:])
        for first in itertools.product((0, 1), (0, 1))
        for second in itertools.product((0, 1), (0, 1))
    )
    assert best == OPTIMAL_RETURN == 8.0


def test_observations_and_spaces() -> None:
    env = TwoStepGameEnv()
    obs, infos = env.reset(seed=3)
    assert env.possible_agents == env.agents == ["agent_0", "agent_1"]
    assert infos == {"agent_0": {"backend": "two_step"}, "agent_1": {"backend": "two_step"}}
    np.testing.assert_array_equal(obs["agent_0"]["obs"], [*STATE_1, 1.0, 0.0])
    np.testing.assert_array_equal(obs["agent_1"]["obs"], [*STATE_1, 0.0, 1.0])
    for aid in env.agents:
        assert env.observation_spaces[aid].contains(obs[aid])
        assert env.get_action_space(aid) == gym.spaces.Discrete(2)
        np.testing.assert_array_equal(obs[aid]["state"], STATE_1)
        np.testing.assert_array_equal(obs[aid]["action_mask"], [1.0, 1.0])
        assert all(obs[aid][key].dtype == np.float32 for key in ("obs", "state", "action_mask"))
    no_id = TwoStepGameEnv({"agent_id_in_obs": False})
    obs, _ = no_id.reset()
    assert no_id.observation_spaces["agent_0"]["obs"].shape == (3,)
    np.testing.assert_array_equal(obs["agent_1"]["obs"], STATE_1)


def test_errors() -> None:
    env = TwoStepGameEnv()
    env.reset()
    with pytest.raises(ValueError, match=r"missing actions for \['agent_1'\]"):
        env.step({"agent_0": 1})
    with pytest.raises(ValueError, match=r"agent agent_0 chose action 2"):
        env.step({"agent_0": 2, "agent_1": 0})
    env.step({"agent_0": 1, "agent_1": 1})
    env.step({"agent_0": 1, "agent_1": 1})
    with pytest.raises(RuntimeError, match="reset"):
        env.step({"agent_0": 1, "agent_1": 1})
    with pytest.raises(ValueError, match="unknown env_config"):
        TwoStepGameEnv({"one_hot_state_encoding": True})


def test_rllib_env_checker_accepts_it() -> None:
    env = TwoStepGameEnv()
    for aid in env.agents:
        env.get_action_space(aid).seed(0)
    check_multiagent_environments(env)
