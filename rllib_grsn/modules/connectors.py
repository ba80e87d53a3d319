"""Env-to-module connector pipelines the spiking modules expect."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from ray.rllib.connectors.connector_v2 import ConnectorV2
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


# Keys the team connector adds to each agent's observation (see AgentIdPrevAction).
AGENT_ID_KEY = "agent_id"
PREV_ACTION_KEY = "prev_action"


def agent_order(agent_ids: Any) -> list[Any]:
    """The fixed order of a team's agents: by the number in their name, then by name.

    ``agent_10`` comes after ``agent_9`` (a plain string sort would put it after ``agent_1``). The
    order decides each agent's one-hot id and its column in the mixer, so every part of QMIX that
    lines agents up calls this one function.
    """

    return sorted(agent_ids, key=agent_sort_key)


def agent_sort_key(aid: Any) -> tuple[int, int, str]:
    """The sort key behind :func:`agent_order`: the number at the end of the name, then the name."""
    text = str(aid)
    digits = text[len(text.rstrip("0123456789")) :]
    return (0, int(digits), text) if digits else (1, 0, text)


class AgentRowOrder(ConnectorV2):
    """Lines up every column's rows by episode (as the EnvRunner lists them), then by agent_order.

    RLlib 2.60 adds an agent's items to the batch while walking
    ``MultiAgentEpisode.get_agents_that_stepped()``, a ``set`` of agent-id strings, whose order
    follows the process's string-hash seed (``PYTHONHASHSEED``, random per process).
    ``AgentToModuleMapping`` stacks the shared module's rows in that order, and the module's
    exploration draws one number per row (``epsilon_greedy``), so without this connector the same
    ``seed`` handed the draws to different agents in every process: same-seed runs diverged from
    their first episode. Sits just before ``AgentToModuleMapping``, which keeps the order it finds
    for the way back to the agents.
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
        if not batch:
            return batch
        position = {episode.id_: i for i, episode in enumerate(episodes)}
        order: list[Any] | None = None  # every column holds the same rows: sort once
        for column, rows in batch.items():
            # Columns keyed by module id (written by a connector that mapped them itself) and
            # anything not keyed (episode id, agent id, module id) keep their layout.
            if rl_module is not None and column in rl_module:
                continue
            if not isinstance(rows, dict) or not all(isinstance(k, tuple) and len(k) == 3 for k in rows):
                continue
            if order is None or len(order) != len(rows) or any(key not in rows for key in order):
                ranks = {aid: agent_sort_key(aid) for _, aid, _ in rows}
                order = sorted(rows, key=lambda key: (position.get(key[0], len(position)), ranks[key[1]]))
            batch[column] = {key: rows[key] for key in order}
        return batch


class AgentIdPrevAction(ConnectorV2):
    """Adds each agent's one-hot id and its previous action (one-hot) to its observation (pymarl).

    QMIX shares one agent network between all agents of a team; the id lets it still act
    differently per agent, and the previous action stands in for what the agent did last (Rashid
    et al. 2018, Sec. 6). Multi-agent only: the input observation space maps agent ids to each
    agent's ``Dict`` observation (``obs``, ``action_mask``, ``state``, as the team env adapters
    produce). The extended observation is written back into the episode, so the replay holds
    exactly what the agent saw while acting.
    """

    def __init__(
        self,
        input_observation_space: gym.Space | None = None,
        input_action_space: gym.Space | None = None,
        **kwargs: Any,
    ):
        self._agent_index: dict[Any, int] = {}
        self._agent_spaces: dict[Any, gym.Space] = {}
        super().__init__(input_observation_space, input_action_space, **kwargs)

    def recompute_output_observation_space(
        self, input_observation_space: gym.Space, input_action_space: gym.Space
    ) -> gym.Space:
        if not isinstance(input_observation_space, gym.spaces.Dict) or not all(
            isinstance(s, gym.spaces.Dict) for s in input_observation_space.spaces.values()
        ):
            raise ValueError(
                "AgentIdPrevAction needs a multi-agent env whose agents observe Dict spaces, got "
                f"{input_observation_space}"
            )
        agents = agent_order(input_observation_space.spaces)
        self._agent_index = {aid: i for i, aid in enumerate(agents)}
        out = {}
        for aid in agents:
            act_space = input_action_space[aid]
            if not isinstance(act_space, gym.spaces.Discrete):
                raise ValueError(f"agent {aid!r}: QMIX needs Discrete actions, got {act_space}")
            spaces = dict(input_observation_space[aid].spaces)
            spaces[AGENT_ID_KEY] = gym.spaces.Box(0.0, 1.0, (len(agents),), np.float32)
            spaces[PREV_ACTION_KEY] = gym.spaces.Box(0.0, 1.0, (int(act_space.n),), np.float32)
            out[aid] = gym.spaces.Dict(spaces)
        self._agent_spaces = out
        return gym.spaces.Dict(out)

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
        n_agents = len(self._agent_index)
        for episode in self.single_agent_episode_iterator(episodes, agents_that_stepped_only=True):
            aid = episode.agent_id
            space = self._agent_spaces[aid]
            obs = dict(episode.get_observations(-1))
            one_hot = np.zeros(n_agents, np.float32)
            one_hot[self._agent_index[aid]] = 1.0
            obs[AGENT_ID_KEY] = one_hot
            prev_action = np.zeros(space[PREV_ACTION_KEY].shape, np.float32)  # none yet: zeros (pymarl)
            if len(episode) > 0:
                prev_action[int(episode.get_actions(-1))] = 1.0
            obs[PREV_ACTION_KEY] = prev_action
            episode.set_observations(at_indices=-1, new_data=obs)
            episode.observation_space = space
        return batch


def agent_inputs_connector(env: Any = None, spaces: Any = None, device: Any = None) -> list:
    """QMIX's env-to-module pipeline head: agent id and previous action (see AgentIdPrevAction)."""
    return [AgentIdPrevAction()]
