"""The observation/action layout every team env adapter shares (the contract QMIX relies on).

Agents ``agent_0 .. agent_{n-1}``, each observing ``Dict(action_mask, obs, state)`` and acting in
``Discrete(n_actions)``; see :mod:`rllib_grsn.envs.smac` for why masks and the global state ride in
each agent's observation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import gymnasium as gym
import numpy as np
from ray.rllib.env.multi_agent_env import MultiAgentEnv


def agent_id(index: int) -> str:
    """RLlib AgentID of a team's agent ``index``."""
    return f"agent_{index}"


def set_team_spaces(
    env: MultiAgentEnv, n_agents: int, n_actions: int, obs_space: gym.spaces.Box, state_space: gym.spaces.Box
) -> None:
    """Sets ``possible_agents``/``agents`` and every agent's spaces on ``env``."""
    env.possible_agents = [agent_id(i) for i in range(n_agents)]
    env.agents = list(env.possible_agents)
    agent_obs_space = gym.spaces.Dict(
        {
            "action_mask": gym.spaces.Box(0.0, 1.0, (n_actions,), np.float32),
            "obs": obs_space,
            "state": state_space,
        }
    )
    agent_action_space = gym.spaces.Discrete(n_actions)
    # New API stack: RLlib reads per-agent spaces from these dicts (get_observation_space(aid)).
    env.observation_spaces = {aid: agent_obs_space for aid in env.agents}
    env.action_spaces = {aid: agent_action_space for aid in env.agents}
    # The same, as gym Dicts keyed by AgentID, for code that still reads the old attributes.
    env.observation_space = gym.spaces.Dict(env.observation_spaces)
    env.action_space = gym.spaces.Dict(env.action_spaces)


def unbounded_box(size: int) -> gym.spaces.Box:
    return gym.spaces.Box(-np.inf, np.inf, (size,), np.float32)


def check_env_config_keys(
    config: Mapping[str, Any], allowed: Iterable[str], env_name: str, hint: str = ""
) -> None:
    """``ValueError`` naming the unknown ``env_config`` keys of ``env_name`` and the allowed ones."""
    allowed = tuple(allowed)
    unknown = sorted(set(config) - set(allowed), key=str)
    if unknown:
        raise ValueError(
            f"unknown env_config key(s) for {env_name}: {unknown}; allowed: {', '.join(allowed)}{hint}"
        )
