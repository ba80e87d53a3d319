"""SMAC (StarCraft II micromanagement) as an RLlib 2.60 new-API-stack :class:`MultiAgentEnv`.

SMAC (``oxwhirl/smac``) is a *centralised* multi-agent env: one ``StarCraft2Env`` steps all agents at once
from a list of actions and returns a single team reward. This adapter maps it onto RLlib's
per-agent dicts so QMIX (and any other multi-agent algorithm) can train on it:

- **Agents.** SMAC's agent ``i`` becomes ``"agent_i"``. All agents stay in every step's dicts until the
  episode ends, dead ones included: SMAC needs an action for every agent on every step (a dead agent
  may only take action 0, the no-op), and RLlib 2.60's ``MultiAgentEpisode`` refuses data for an
  agent after that agent was reported done. So an agent's death is signalled only through its action
  mask, never through a per-agent ``terminated`` flag.
- **Observations.** Each agent observes a ``gymnasium.spaces.Dict`` with

  - ``"obs"``: its own partial observation (``get_obs()[i]``), ``float32``, shape ``(obs_shape,)``;
  - ``"action_mask"``: ``get_avail_actions()[i]`` as ``float32`` 0/1, shape ``(n_actions,)``. Masks
    live in the observation because that is the only per-step channel from an env to an RLModule in
    RLlib; QMIX masks its greedy and its target ``argmax`` with it;
  - ``"state"``: the global state (``get_state()``), ``float32``, shape ``(state_shape,)``, repeated
    identically in every agent's observation. QMIX's mixer needs the state at training time, and the
    learner only sees per-agent batches, so the state travels with each agent's observation (the
    key matches RLlib's own ``ray.rllib.env.multi_agent_env.ENV_STATE``). Agent networks must not
    read it: that would break decentralised execution.

- **Actions.** ``Discrete(n_actions)`` per agent. Missing agents and unavailable actions raise
  ``ValueError`` here instead of SMAC's bare ``assert`` deep inside the game loop: a masked policy
  must never choose them, and failing loudly finds the masking bug.
- **Rewards.** SMAC's team reward is given unchanged to every agent (so RLlib's summed
  ``episode_return`` is ``n_agents`` times the team return).
- **Episode ends.** SMAC reports ``terminated=True`` both for a finished battle and for the time limit;
  it tells them apart only with ``info["episode_limit"]``, and only when built with
  ``continuing_episode=True``. The adapter therefore passes ``continuing_episode=True`` unless
  ``env_config`` sets it, and maps the time limit to ``truncateds`` (QMIX then bootstraps there) and a
  finished battle to ``terminateds``. Per-agent flags equal the ``"__all__"`` flag.
- **Infos.** Every agent's info holds ``battle_won`` (``False`` when SMAC does not say),
  ``backend: "sc2"`` and any other keys SMAC reported that step.

``smac`` is imported lazily, through :func:`_starcraft2_env_class` (the seam tests replace with a fake),
so this module imports without StarCraft II. Without it, use the embedded SMAX backend
(``backend: smax``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from ray.rllib.env.multi_agent_env import MultiAgentEnv
from ray.rllib.utils.typing import MultiAgentDict

from rllib_grsn.envs.team_layout import set_team_spaces, unbounded_box

# Map name -> number of (controlled) agents, for the SMAC maps this project supports on StarCraft II.
SMAC_MAPS: dict[str, int] = {
    "8m": 8,
    "2s3z": 5,
    "8m_vs_9m": 8,
    "3s_vs_5z": 3,
    "27m_vs_30m": 27,
    "MMM2": 10,
}

BACKEND = "sc2"

SMAC_INSTALL_HINT = (
    "Install SMAC from its git repository with `pip install git+https://github.com/oxwhirl/smac.git` "
    "and pin `pip install protobuf==3.20.3` (SMAC's pysc2/s2clientprotocol need protobuf 3.x), install "
    "StarCraft II with the SMAC maps (SMAC_Maps under $SC2PATH/Maps) and set the SC2PATH environment "
    "variable to the StarCraft II install directory. The embedded SMAX backend (env_config "
    "`backend: smax`) runs the same maps without StarCraft II."
)


class SMACNotInstalledError(ImportError):
    """``smac`` (or StarCraft II's Python stack) cannot be imported; the message says how to install it."""


def _starcraft2_env_class() -> Callable[..., Any]:
    """Returns ``smac.env.StarCraft2Env``, imported on first use.

    This is the one seam between the adapter and StarCraft II: tests replace it (monkeypatch) with a
    function returning a fake class with SMAC's API.
    """
    try:
        module = importlib.import_module("smac.env")
    except ImportError as exc:
        raise SMACNotInstalledError(
            f"SMAC / StarCraft II is not installed (cannot import `smac.env`: {exc}). {SMAC_INSTALL_HINT}"
        ) from exc
    except TypeError as exc:
        # protobuf >= 4 fails on SMAC's generated *_pb2 modules with this TypeError.
        if "Descriptors cannot be created directly" not in str(exc):
            raise
        raise SMACNotInstalledError(
            "SMAC is installed but its StarCraft II protocol buffers fail to load with this protobuf "
            f"version ({exc.__class__.__name__}: descriptors cannot be created directly); run "
            f"`pip install protobuf==3.20.3`. {SMAC_INSTALL_HINT}"
        ) from exc
    return module.StarCraft2Env


class SMACEnv(MultiAgentEnv):
    """One SMAC ``StarCraft2Env`` battle as an RLlib multi-agent env (see the module docstring).

    ``env_config`` keys:

    - ``map_name``: one of :data:`SMAC_MAPS` (default ``"8m"``);
    - ``seed``: StarCraft II's game seed (``reset(seed=...)`` overrides it, see :meth:`reset`);
    - ``backend``: optional, must be ``"sc2"`` here (``"smax"`` is a different env);
    - anything else is passed to ``StarCraft2Env`` unchanged (``difficulty``, ``reward_sparse``, ...).
      ``continuing_episode`` defaults to ``True`` so that time limits are reported as truncations.
    """

    def __init__(self, env_config: Mapping[str, Any] | None = None):
        super().__init__()
        config = dict(env_config or {})
        backend = config.pop("backend", BACKEND)
        if backend != BACKEND:
            raise ValueError(
                f"SMACEnv is the StarCraft II backend (backend={BACKEND!r}); got backend={backend!r}. "
                "The embedded SMAX backend is a separate env."
            )
        self.map_name: str = str(config.pop("map_name", "8m"))
        if self.map_name not in SMAC_MAPS:
            raise ValueError(f"unknown SMAC map {self.map_name!r}; supported maps: {', '.join(SMAC_MAPS)}")
        self._seed: int | None = config.pop("seed", None)
        config.setdefault("continuing_episode", True)
        self._sc2_kwargs: dict[str, Any] = config

        self._env_class = _starcraft2_env_class()
        self._env: Any = self._make_sc2_env(self._seed)
        # get_env_info() works before StarCraft II is launched (SMAC launches on the first reset()).
        self.env_info: dict[str, Any] = dict(self._env.get_env_info())
        self.n_agents: int = int(self.env_info["n_agents"])
        self.n_actions: int = int(self.env_info["n_actions"])
        self.obs_shape: int = int(self.env_info["obs_shape"])
        self.state_shape: int = int(self.env_info["state_shape"])
        self.episode_limit: int = int(self.env_info["episode_limit"])
        if self.n_agents != SMAC_MAPS[self.map_name]:
            raise RuntimeError(
                f"SMAC reports {self.n_agents} agents on {self.map_name!r}, SMAC_MAPS expects "
                f"{SMAC_MAPS[self.map_name]}; the installed SMAC does not match this adapter."
            )

        set_team_spaces(
            self,
            self.n_agents,
            self.n_actions,
            unbounded_box(self.obs_shape),
            unbounded_box(self.state_shape),
        )

        self._launched = False  # StarCraft II starts on the SC2 env's first reset().
        self._episode_running = False
        self._avail = np.zeros((self.n_agents, self.n_actions), dtype=np.float32)

    def _make_sc2_env(self, seed: int | None) -> Any:
        return self._env_class(map_name=self.map_name, seed=seed, **self._sc2_kwargs)

    def reset(
        self, *, seed: int | None = None, options: dict | None = None
    ) -> tuple[MultiAgentDict, MultiAgentDict]:
        """Starts a new battle; returns every agent's observation and ``{"backend": "sc2"}`` infos.

        StarCraft II takes its seed when its process starts, so ``seed`` rebuilds the SC2 env with that
        seed: free before the first reset, a StarCraft II restart (seconds) after it. RLlib's env
        runners pass a seed only to the first reset, so training does not pay for this.
        """
        super().reset(seed=seed, options=options)
        if self._env is None:  # closed: start over
            self._env = self._make_sc2_env(self._seed)
            self._launched = False
        if seed is not None and (self._launched or seed != self._seed):
            self._env.close()
            self._seed = int(seed)
            self._env = self._make_sc2_env(self._seed)
            self._launched = False
        self._env.reset()  # Recent SMAC returns (obs, state); older returns nothing: use the getters.
        self._launched = True
        self._episode_running = True
        observations = self._observations()
        return observations, {aid: {"backend": BACKEND} for aid in self.agents}

    def step(
        self, action_dict: MultiAgentDict
    ) -> tuple[MultiAgentDict, MultiAgentDict, MultiAgentDict, MultiAgentDict, MultiAgentDict]:
        """Steps all agents at once with the team's actions; see the module docstring for the mapping."""
        if not self._episode_running:
            raise RuntimeError("SMACEnv.step() called before reset() or after the episode ended")
        actions = self._checked_actions(action_dict)
        reward, terminated, info = self._env.step(actions)
        info = dict(info or {})
        time_limit = bool(info.get("episode_limit", False))
        terminated_all = bool(terminated) and not time_limit
        truncated_all = time_limit
        if terminated_all or truncated_all:
            self._episode_running = False

        agent_info = {
            **info,
            "battle_won": bool(info.get("battle_won", False)),
            "backend": BACKEND,
        }
        team_reward = float(reward)
        observations = self._observations()
        rewards = {aid: team_reward for aid in self.agents}
        terminateds = {aid: terminated_all for aid in self.agents}
        terminateds["__all__"] = terminated_all
        truncateds = {aid: truncated_all for aid in self.agents}
        truncateds["__all__"] = truncated_all
        infos = {aid: dict(agent_info) for aid in self.agents}
        return observations, rewards, terminateds, truncateds, infos

    def close(self) -> None:
        """Closes StarCraft II (a no-op when it was never launched)."""
        if self._env is not None:
            self._env.close()
            self._env = None
        self._episode_running = False

    def _observations(self) -> MultiAgentDict:
        obs = self._env.get_obs()
        avail = self._env.get_avail_actions()
        state = np.asarray(self._env.get_state(), dtype=np.float32)
        if len(obs) != self.n_agents or len(avail) != self.n_agents:
            raise RuntimeError(
                f"SMAC returned {len(obs)} observations and {len(avail)} action masks "
                f"for {self.n_agents} agents"
            )
        self._avail = np.asarray(avail, dtype=np.float32).reshape(self.n_agents, self.n_actions)
        return {
            aid: {
                "action_mask": self._avail[i].copy(),
                "obs": np.asarray(obs[i], dtype=np.float32),
                "state": state.copy(),
            }
            for i, aid in enumerate(self.agents)
        }

    def _checked_actions(self, action_dict: MultiAgentDict) -> list[int]:
        missing = [aid for aid in self.agents if aid not in action_dict]
        if missing:
            raise ValueError(
                f"SMAC needs an action for every agent on every step (dead agents take 0, the no-op); "
                f"missing actions for {missing}"
            )
        unknown = sorted(set(action_dict) - set(self.agents), key=str)
        if unknown:
            raise ValueError(f"actions for unknown agents {unknown}; agents are {self.agents}")
        actions = []
        for i, aid in enumerate(self.agents):
            action = _as_int_action(aid, action_dict[aid])
            if not 0 <= action < self.n_actions or self._avail[i, action] != 1.0:
                available = np.flatnonzero(self._avail[i]).tolist()
                raise ValueError(
                    f"agent {aid} chose action {action}, which is not available; available actions: "
                    f"{available} (the action mask must be applied before choosing)"
                )
            actions.append(action)
        return actions


def _as_int_action(aid: str, action: Any) -> int:
    """A Python int from an int / numpy integer / 0-d integer array, else ValueError naming the agent."""
    value = np.asarray(action)
    if value.shape != () or not np.issubdtype(value.dtype, np.integer):
        raise ValueError(
            f"agent {aid}: action must be a single integer, got {action!r} "
            f"(dtype {value.dtype}, shape {value.shape})"
        )
    return int(value)
