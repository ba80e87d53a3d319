"""The two-step matrix game of the QMIX paper (Rashid et al. 2018, Fig. 1) as a :class:`MultiAgentEnv`.

The classic sanity check for value factorisation: two agents, two actions, two steps.

- Step 1 (state 1): agent 0's action picks the next state, ``0 -> 2A``, ``1 -> 2B``; agent 1's action
  does not matter. Reward 0.
- Step 2: in 2A every joint action pays 7; in 2B the payoff matrix is ``[[0, 1], [1, 8]]`` (rows agent
  0's action, columns agent 1's). The episode then terminates.

The optimal team return is 8 (go to 2B, both take action 1). VDN's additive value cannot represent
2B's matrix and settles for the safe 7 of 2A; QMIX's monotonic mixer should find 8.

RLlib ships the same game (``ray.rllib.examples.envs.classes.multi_agent.two_step_game.TwoStepGame``),
but it does not fit the QMIX contract here: integer agent ids, half the team reward per agent, no action
mask or per-agent done flags and a global ``np.random.seed``. So it is re-implemented with
:class:`rllib_grsn.envs.smac.SMACEnv`'s layout:

- agents ``agent_0``, ``agent_1``; ``Discrete(2)`` actions; ``action_mask`` all ones;
- ``obs``: one-hot of the current state (1, 2A, 2B), followed by the agent's one-hot id (length 2)
  unless ``env_config["agent_id_in_obs"]`` is ``False`` (then length 3). RLlib's version appends the id
  too; with parameter sharing it lets the agents' utilities differ;
- ``state``: the state's one-hot (3), identical for both agents;
- the team reward is given unchanged to both agents; ``terminated`` after step 2; infos
  ``{"backend": "two_step"}``. After the last step the observation stays at 2A/2B.

The game is deterministic; ``seed`` (``env_config`` or ``reset``) is accepted for a uniform interface.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np
from ray.rllib.env.multi_agent_env import MultiAgentEnv
from ray.rllib.utils.typing import MultiAgentDict

from rllib_grsn.envs.multi_agent import check_joint_action
from rllib_grsn.envs.team_layout import check_env_config_keys, set_team_spaces

BACKEND = "two_step"

ENV_CONFIG_KEYS = ("agent_id_in_obs", "seed")

N_AGENTS = 2
N_ACTIONS = 2
N_STATES = 3
STATE_1, STATE_2A, STATE_2B = 0, 1, 2

# Step-2 payoffs, indexed [state][a_0][a_1]; state 1 pays nothing.
PAYOFF_2A = np.full((N_ACTIONS, N_ACTIONS), 7.0)
PAYOFF_2B = np.array([[0.0, 1.0], [1.0, 8.0]])
OPTIMAL_RETURN = 8.0


class TwoStepGameEnv(MultiAgentEnv):
    """The QMIX paper's two-step game with the SMAC-style observation layout (see the module docstring)."""

    def __init__(self, env_config: Mapping[str, Any] | None = None):
        super().__init__()
        config = dict(env_config or {})
        check_env_config_keys(config, ENV_CONFIG_KEYS, "two_step_game")
        agent_id_in_obs = config.get("agent_id_in_obs", True)
        if not isinstance(agent_id_in_obs, bool):
            raise ValueError(
                f"agent_id_in_obs for two_step_game: must be true or false, got {agent_id_in_obs!r}"
            )
        self.agent_id_in_obs: bool = agent_id_in_obs
        self.n_agents: int = N_AGENTS
        self.n_actions: int = N_ACTIONS
        self.state_shape: int = N_STATES
        self.obs_shape: int = N_STATES + (N_AGENTS if agent_id_in_obs else 0)

        set_team_spaces(
            self,
            N_AGENTS,
            self.n_actions,
            gym.spaces.Box(0.0, 1.0, (self.obs_shape,), np.float32),
            gym.spaces.Box(0.0, 1.0, (self.state_shape,), np.float32),
        )

        self._mask = np.ones((self.n_agents, self.n_actions), dtype=np.float32)
        self._state = STATE_1
        self._episode_running = False

    def reset(
        self, *, seed: int | None = None, options: dict | None = None
    ) -> tuple[MultiAgentDict, MultiAgentDict]:
        """Back to state 1."""
        super().reset(seed=seed, options=options)
        self._state = STATE_1
        self._episode_running = True
        return self._observations(), {aid: {"backend": BACKEND} for aid in self.agents}

    def step(
        self, action_dict: MultiAgentDict
    ) -> tuple[MultiAgentDict, MultiAgentDict, MultiAgentDict, MultiAgentDict, MultiAgentDict]:
        """Step 1 moves to 2A/2B by agent 0's action (reward 0); step 2 pays and terminates."""
        if not self._episode_running:
            raise RuntimeError("TwoStepGameEnv.step() called before reset() or after the episode ended")
        a_0, a_1 = check_joint_action(self.agents, action_dict, self._mask, env_name="two_step_game")
        if self._state == STATE_1:
            self._state = STATE_2A if a_0 == 0 else STATE_2B
            team_reward, terminated = 0.0, False
        else:
            payoff = PAYOFF_2A if self._state == STATE_2A else PAYOFF_2B
            team_reward, terminated = float(payoff[a_0, a_1]), True
            self._episode_running = False
        rewards = {aid: team_reward for aid in self.agents}
        terminateds = {aid: terminated for aid in self.agents}
        terminateds["__all__"] = terminated
        truncateds = {aid: False for aid in self.agents}
        truncateds["__all__"] = False
        infos = {aid: {"backend": BACKEND} for aid in self.agents}
        return self._observations(), rewards, terminateds, truncateds, infos

    def _observations(self) -> MultiAgentDict:
        state = np.zeros(N_STATES, dtype=np.float32)
        state[self._state] = 1.0
        observations = {}
        for i, aid in enumerate(self.agents):
            obs = state
            if self.agent_id_in_obs:
                obs = np.concatenate([state, np.eye(N_AGENTS, dtype=np.float32)[i]])
            observations[aid] = {
                "action_mask": self._mask[i].copy(),
                "obs": obs.copy(),
                "state": state.copy(),
            }
        return observations
