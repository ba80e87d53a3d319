"""Env-to-module connector pipelines the spiking modules expect."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from ray.rllib.connectors.env_to_module import PrevActionsPrevRewards


class PrevActionReward(PrevActionsPrevRewards):
    """RLlib's PrevActionsPrevRewards, extended to Box action spaces, with float32 outputs.

    RLlib 2.60's version declares its output space from ``action_space.n`` and so fails on
    continuous actions (Pendulum). It also writes the previous reward as float64 at the first step
    of an episode chunk and as float32 elsewhere; the replay buffers then refuse to join the chunks
    of an ongoing episode (``concat_episode`` compares the boundary observations exactly). Here
    both previous actions and rewards are always flat float32 arrays, matching the declared space.
    """

    def __call__(
        self,
        *,
        rl_module: Any,
        batch: dict[str, Any] | None,
        episodes: list[Any],
        explore: bool | None = None,
        shared_data: dict | None = None,
        **kwargs: Any,
    ) -> Any:
        for episode in self.single_agent_episode_iterator(episodes, agents_that_stepped_only=True):
            augmented = {self.ORIG_OBS_KEY: episode.get_observations(-1)}
            if self.n_prev_actions:
                actions = episode.get_actions(
                    indices=slice(-self.n_prev_actions, None), fill=0.0, one_hot_discrete=True
                )
                augmented[self.PREV_ACTIONS_KEY] = np.asarray(actions, dtype=np.float32).reshape(-1)
            if self.n_prev_rewards:
                rewards = episode.get_rewards(indices=slice(-self.n_prev_rewards, None), fill=0.0)
                augmented[self.PREV_REWARDS_KEY] = np.asarray(rewards, dtype=np.float32).reshape(-1)
            # Written back into the episode, so training sees exactly what acting saw.
            episode.set_observations(at_indices=-1, new_data=augmented)
            episode.observation_space = self.observation_space
        return batch

    def _convert_individual_space(self, obs_space: gym.Space, act_space: gym.Space) -> gym.Space:
        if isinstance(act_space, gym.spaces.Discrete):
            return super()._convert_individual_space(obs_space, act_space)
        if not isinstance(act_space, gym.spaces.Box):
            raise ValueError(f"previous actions need a Discrete or Box action space, got {act_space}")
        # Unbounded: episodes record the policy's raw (unclipped) sample, which may leave the
        # env's action bounds.
        size = int(np.prod(act_space.shape)) * self.n_prev_actions
        return gym.spaces.Dict(
            {
                self.ORIG_OBS_KEY: obs_space,
                self.PREV_ACTIONS_KEY: gym.spaces.Box(-np.inf, np.inf, (size,), np.float32),
                self.PREV_REWARDS_KEY: gym.spaces.Box(-np.inf, np.inf, (self.n_prev_rewards,), np.float32),
            }
        )


def prev_action_reward_connector(env: Any = None, spaces: Any = None, device: Any = None) -> list:
    """Adds a_{t-1} (one-hot when discrete) and r_{t-1} to each observation (Ni et al. 2022).

    RLlib writes the extended observation back into the episode, so training chunks see exactly
    what acting saw. Module-level so it pickles to remote EnvRunners.
    """
    return [PrevActionReward(n_prev_actions=1, n_prev_rewards=1)]
