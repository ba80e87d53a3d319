"""mpe2's ``simple_spread_v3`` (cooperative navigation) as an RLlib 2.60 :class:`MultiAgentEnv` for QMIX.

A cheap, CI-sized cooperative task: ``N`` agents must cover ``N`` landmarks. It is built with
``local_ratio=0``, so every agent's reward is the *global* reward only (minus the sum over landmarks of
the closest agent's distance); the per-agent collision penalty, mpe2's local term, has weight 0. That
makes it a proper team-reward task for value factorisation.

The layout is that of :class:`rllib_grsn.envs.smac.SMACEnv` (the contract the QMIX RLModule relies on):

- **Agents** ``agent_0 .. agent_{N-1}`` (mpe2's own names), fixed order, all present until the end.
- **Observations**: a ``Dict`` per agent with ``"obs"`` (mpe2's observation: own velocity and position,
  landmark and other agents' relative positions, communication), ``"action_mask"`` (all ones: every
  move is always legal) and ``"state"`` (the parallel env's ``state()``: all agents' observations
  concatenated), numpy ``float32``. For N=3: obs 18, state 54, 5 actions.
- **Actions**: ``Discrete(5)`` (no-op, left, right, down, up); missing agents or out-of-range actions
  raise ``ValueError``.
- **Rewards**: the team reward is the *mean* of mpe2's per-agent rewards, given to every agent. With
  ``local_ratio=0`` these are all equal, so the mean *is* the common value; taking the mean keeps the
  reward defined even if mpe2 ever adds per-agent terms.
- **Episode ends**: ``max_cycles`` steps -> ``truncated`` (not terminated; the task has no terminal
  state, so QMIX must bootstrap). Per-agent flags equal ``"__all__"``.
- **Infos**: ``{"backend": "mpe"}`` for every agent.

``mpe2`` (``pip install "rllib_grsn[mpe]"``) is imported lazily, so this module imports without it.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

import numpy as np
from ray.rllib.env.multi_agent_env import MultiAgentEnv
from ray.rllib.utils.typing import MultiAgentDict

from rllib_grsn.envs.multi_agent import check_joint_action
from rllib_grsn.envs.team_layout import agent_id, check_env_config_keys, set_team_spaces, unbounded_box

BACKEND = "mpe"

ENV_CONFIG_KEYS = ("n_agents", "max_cycles", "seed")

MPE_INSTALL_HINT = 'Install it with `pip install "rllib_grsn[mpe]"` (or `pip install mpe2==1.1.1`).'


class MPENotInstalledError(ImportError):
    """``mpe2`` cannot be imported; the message says how to install it."""


def _simple_spread_module() -> Any:
    """Returns ``mpe2.simple_spread_v3``, imported on first use."""
    try:
        return importlib.import_module("mpe2.simple_spread_v3")
    except ImportError as exc:
        raise MPENotInstalledError(
            f"mpe_simple_spread needs mpe2 (cannot import `mpe2.simple_spread_v3`: {exc}). {MPE_INSTALL_HINT}"
        ) from exc


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} for mpe_simple_spread: must be an integer >= 1, got {value!r}")
    return int(value)


class SimpleSpreadEnv(MultiAgentEnv):
    """mpe2 ``simple_spread_v3`` with a shared team reward (see the module docstring).

    ``env_config`` keys: ``n_agents`` (agents and landmarks, default 3), ``max_cycles`` (episode
    length, default 25), ``seed`` (seeds the first reset when :meth:`reset` gets no seed). Anything
    else raises ``ValueError``.
    """

    def __init__(self, env_config: Mapping[str, Any] | None = None):
        super().__init__()
        config = dict(env_config or {})
        check_env_config_keys(config, ENV_CONFIG_KEYS, "mpe_simple_spread")
        self.n_agents: int = _positive_int("n_agents", config.get("n_agents", 3))
        if self.n_agents < 2:
            raise ValueError(f"n_agents for mpe_simple_spread: needs at least 2 agents, got {self.n_agents}")
        self.max_cycles: int = _positive_int("max_cycles", config.get("max_cycles", 25))
        seed = config.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int | np.integer)):
            raise ValueError(f"seed for mpe_simple_spread: must be an integer or None, got {seed!r}")
        self._seed: int | None = None if seed is None else int(seed)

        self._env: Any = _simple_spread_module().parallel_env(
            N=self.n_agents, local_ratio=0.0, max_cycles=self.max_cycles, continuous_actions=False
        )
        names = list(self._env.possible_agents)
        expected = [agent_id(i) for i in range(self.n_agents)]
        if names != expected:
            raise RuntimeError(f"mpe2 names its agents {names}, this adapter expects {expected}")
        mpe_obs_space = self._env.observation_space(names[0])
        mpe_action_space = self._env.action_space(names[0])
        self.obs_shape: int = int(np.prod(mpe_obs_space.shape))
        self.n_actions: int = int(mpe_action_space.n)
        self._has_state = True
        try:
            self.state_shape: int = int(np.prod(self._env.state_space.shape))
        except (AttributeError, NotImplementedError):
            self._has_state = False
            self.state_shape = self.obs_shape * self.n_agents

        set_team_spaces(
            self,
            self.n_agents,
            self.n_actions,
            unbounded_box(self.obs_shape),
            unbounded_box(self.state_shape),
        )

        self._mask = np.ones((self.n_agents, self.n_actions), dtype=np.float32)
        self._first_reset = True
        self._episode_running = False

    def reset(
        self, *, seed: int | None = None, options: dict | None = None
    ) -> tuple[MultiAgentDict, MultiAgentDict]:
        """Starts an episode. ``seed`` reseeds mpe2's generator; without one the first reset uses
        ``env_config["seed"]`` (if any) and later resets continue the generator."""
        super().reset(seed=seed, options=options)
        if seed is None and self._first_reset:
            seed = self._seed
        self._first_reset = False
        obs, _ = self._env.reset(seed=None if seed is None else int(seed))
        self._episode_running = True
        return self._observations(obs), {aid: {"backend": BACKEND} for aid in self.agents}

    def step(
        self, action_dict: MultiAgentDict
    ) -> tuple[MultiAgentDict, MultiAgentDict, MultiAgentDict, MultiAgentDict, MultiAgentDict]:
        """Steps all agents at once; the mean reward is the team reward given to every agent."""
        if not self._episode_running:
            raise RuntimeError("SimpleSpreadEnv.step() called before reset() or after the episode ended")
        actions = check_joint_action(self.agents, action_dict, self._mask, env_name="mpe_simple_spread")
        obs, mpe_rewards, mpe_terminateds, mpe_truncateds, _ = self._env.step(
            dict(zip(self.agents, actions, strict=True))
        )
        terminated_all = any(bool(mpe_terminateds.get(aid, False)) for aid in self.agents)
        truncated_all = not terminated_all and any(
            bool(mpe_truncateds.get(aid, False)) for aid in self.agents
        )
        if terminated_all or truncated_all:
            self._episode_running = False

        team_reward = float(np.mean([float(mpe_rewards[aid]) for aid in self.agents]))
        rewards = {aid: team_reward for aid in self.agents}
        terminateds = {aid: terminated_all for aid in self.agents}
        terminateds["__all__"] = terminated_all
        truncateds = {aid: truncated_all for aid in self.agents}
        truncateds["__all__"] = truncated_all
        infos = {aid: {"backend": BACKEND} for aid in self.agents}
        return self._observations(obs), rewards, terminateds, truncateds, infos

    def close(self) -> None:
        self._env.close()
        self._episode_running = False

    def _observations(self, obs: Mapping[str, Any]) -> MultiAgentDict:
        per_agent = [np.asarray(obs[aid], dtype=np.float32).reshape(self.obs_shape) for aid in self.agents]
        if self._has_state:
            state = np.asarray(self._env.state(), dtype=np.float32).reshape(self.state_shape)
        else:
            state = np.concatenate(per_agent)
        return {
            aid: {"action_mask": self._mask[i].copy(), "obs": per_agent[i], "state": state.copy()}
            for i, aid in enumerate(self.agents)
        }
