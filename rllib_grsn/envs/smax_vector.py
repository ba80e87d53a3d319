"""Many SMAX battles of one map stepped in one ``jax.vmap``-ed call: an RLlib ``VectorMultiAgentEnv``.

RLlib 2.60's ``MultiAgentEnvRunner`` always wraps its sub-envs in a ``SyncVectorMultiAgentEnv``: one
Python ``step`` per sub-env, so ``num_envs`` SMAX battles cost ``num_envs`` jitted calls and
``num_envs`` device-to-host transfers per vector step, each mostly fixed overhead on CPU (see
:mod:`rllib_grsn.envs.smax`). :class:`SMAXVectorEnv` runs all of them as one batch: the very same
reset and step functions as :class:`~rllib_grsn.envs.smax.SMAXEnv` (``_CompiledSMAX.reset_fn`` /
``step_fn``, packing the normalised state identically) under ``jax.vmap``, one jit per map and
batch size, one transfer per vector step. :class:`~rllib_grsn.envs.team_env_runner.TeamEnvRunner`
builds it for the ``smac`` env on the SMAX backend (env_config ``vectorize``).

To the EnvRunner it is indistinguishable from ``SyncVectorMultiAgentEnv`` over ``SMAXEnv``s:

- **Returns.** ``reset`` gives a list of per-sub-env observation dicts and a list of info dicts;
  ``step`` gives that list of observations and numpy object arrays of per-sub-env reward,
  terminated, truncated and info dicts (``SyncVectorMultiAgentEnv`` returns ``np.copy`` of its
  lists). Every per-agent value has SMAXEnv's layout, types and ``backend``/``battle_won`` infos.
- **Autoreset** (``next_step``, as ``SyncVectorMultiAgentEnv``): a sub-env that terminated or was
  truncated is reset on the *next* ``step``; its action is ignored, its observation and infos are
  the reset's, its rewards are ``0.0``, its ``terminated``/``truncated`` flags (``"__all__"``
  included) are ``False``. The reset is part of the same jitted call (``lax.cond`` skips it when no
  sub-env is being reset).
- **Episode ends** are per sub-env: a wiped-out team terminates, ``episode_limit`` steps truncate.
- **Seeds.** Sub-env ``i`` has its own JAX key chain, split exactly as SMAXEnv splits its key, so
  sub-env ``i`` replays what a SMAXEnv seeded alike would. ``reset(seed=s)`` seeds sub-env ``i``
  with ``s + i`` (``SyncVectorMultiAgentEnv``'s convention; a list gives one seed per sub-env,
  ``None`` entries continue that sub-env's chain); ``reset()`` continues every chain, and the very
  first one starts sub-env ``i`` from env_config ``seed + i`` (or fresh entropy). Deliberate
  difference: ``SyncVectorMultiAgentEnv`` over SMAXEnvs starts *every* sub-env from the same
  env_config ``seed`` in that case (identical battles); RLlib's runner passes ``config.seed +
  worker_index`` to its first reset whenever ``config.debugging(seed=...)`` is set, and then both
  agree.
- **Sub-envs.** The runner reads agent ids and spaces through ``env.envs[i].unwrapped``; ``envs``
  holds one :class:`SMAXSubEnvView` per sub-env for that (and for ``get_attr``), which refuses
  ``reset``/``step``: the battles' state lives batched on the JAX side.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from ray.rllib.env.multi_agent_env import MultiAgentEnv
from ray.rllib.env.vector.vector_multi_agent_env import VectorMultiAgentEnv
from ray.rllib.utils.typing import MultiAgentDict

from rllib_grsn.envs.multi_agent import check_joint_action
from rllib_grsn.envs.smax import BACKEND, STOP_ACTION, SMAXEnv, _compiled_smax, battle_outcome

# SyncVectorMultiAgentEnv's only autoreset mode, written into its metadata the same way.
AUTORESET_MODE = "next_step"


@dataclass(frozen=True)
class _BatchedSMAX:
    """SMAXEnv's jitted reset and step, ``vmap``-ed over sub-envs (one per map, shared by instances).

    ``reset(keys) -> (keys, states, packed)`` resets every sub-env; ``step(keys, states, actions,
    reset_mask) -> (keys, states, packed)`` steps every sub-env, except those in ``reset_mask``,
    which are reset instead (their actions ignored). Both split each sub-env's key exactly as
    SMAXEnv's reset and step split theirs. jit compiles once per batch size.
    """

    reset: Callable[[Any], tuple[Any, Any, Any]]
    step: Callable[[Any, Any, Any, Any], tuple[Any, Any, Any]]


@functools.cache
def _batched_smax(map_name: str) -> _BatchedSMAX:
    """``vmap``-s :func:`~rllib_grsn.envs.smax._compiled_smax`'s un-jitted functions and jits them."""
    import jax
    import jax.numpy as jnp

    compiled = _compiled_smax(map_name)
    reset_all = jax.vmap(compiled.reset_fn)
    step_all = jax.vmap(compiled.step_fn)

    def step(keys: Any, states: Any, actions: Any, reset_mask: Any) -> tuple[Any, Any, Any]:
        # Every sub-env steps (a resetting one's result is discarded); the batch's reset runs only on
        # vector steps where some sub-env needs one. Under vmap, a per-sub-env branch would compute
        # both sides anyway, and stepping outside the cond compiles the step once, not twice.
        stepped = step_all(keys, states, actions)

        def with_resets() -> tuple[Any, Any, Any]:
            fresh = reset_all(keys)

            def pick(new: Any, old: Any) -> Any:
                mask = reset_mask.reshape(reset_mask.shape + (1,) * (new.ndim - 1))
                return jnp.where(mask, new, old)

            return jax.tree.map(pick, fresh, stepped)

        return jax.lax.cond(reset_mask.any(), with_resets, lambda: stepped)

    return _BatchedSMAX(reset=jax.jit(reset_all), step=jax.jit(step))


class SMAXSubEnvView(MultiAgentEnv):
    """Sub-env ``index`` of a :class:`SMAXVectorEnv` as RLlib's runner sees it: ids, spaces, map facts.

    ``MultiAgentEnvRunner`` builds each episode from ``env.envs[i].unwrapped``'s ``possible_agents``
    and ``get_observation_space``/``get_action_space`` (and samples random actions from the latter).
    The battle itself is stepped by the vector env, so ``reset`` and ``step`` raise.
    """

    def __init__(self, template: SMAXEnv, index: int):
        super().__init__()
        self.index = index
        self.map_name = template.map_name
        self.episode_limit = template.episode_limit
        self.n_agents = template.n_agents
        self.n_enemies = template.n_enemies
        self.n_actions = template.n_actions
        self.obs_shape = template.obs_shape
        self.state_shape = template.state_shape
        self.possible_agents = list(template.possible_agents)
        self.agents = list(template.agents)
        self.observation_spaces = template.observation_spaces
        self.action_spaces = template.action_spaces
        self.observation_space = template.observation_space
        self.action_space = template.action_space

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[Any, Any]:
        raise RuntimeError(
            f"sub-env {self.index} of a SMAXVectorEnv is stepped by the vector env; call its reset()"
        )

    def step(self, action_dict: MultiAgentDict) -> tuple[Any, ...]:
        raise RuntimeError(
            f"sub-env {self.index} of a SMAXVectorEnv is stepped by the vector env; call its step()"
        )


def _object_array(items: Sequence[Any]) -> np.ndarray:
    """A 1-d numpy object array of ``items`` (what ``np.copy`` makes of SyncVectorMultiAgentEnv's lists)."""
    array = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):
        array[i] = item
    return array


class SMAXVectorEnv(VectorMultiAgentEnv):
    """``num_envs`` SMAX battles of one map, stepped together in one ``jax.vmap``-ed jitted call.

    ``env_config`` is SMAXEnv's (``map_name``, ``episode_limit``, ``seed``, ``backend``,
    ``vectorize``), validated by building one SMAXEnv; see the module docstring for the contract.
    """

    def __init__(self, env_config: Mapping[str, Any] | None = None, num_envs: int = 1):
        super().__init__()
        if isinstance(num_envs, bool) or not isinstance(num_envs, int | np.integer) or num_envs < 1:
            raise ValueError(f"num_envs for SMAXVectorEnv: must be an integer >= 1, got {num_envs!r}")
        # The template validates env_config exactly as the sync path would and owns the spaces; it is
        # never reset or stepped.
        template = SMAXEnv(env_config)
        self.num_envs: int = int(num_envs)
        self.map_name: str = template.map_name
        self.episode_limit: int = template.episode_limit
        self.possible_agents: list[str] = list(template.possible_agents)
        self.envs: list[SMAXSubEnvView] = [SMAXSubEnvView(template, i) for i in range(self.num_envs)]
        self.metadata = {**template.metadata, "autoreset_mode": AUTORESET_MODE}
        self.render_mode = None
        self.single_observation_spaces = template.observation_spaces
        self.single_action_spaces = template.action_spaces
        self.single_observation_space = gym.spaces.Dict(self.single_observation_spaces)
        self.single_action_space = gym.spaces.Dict(self.single_action_spaces)

        self._compiled = template._compiled
        self._batched = _batched_smax(self.map_name)
        self._n_agents, self._n_actions = template.n_agents, template.n_actions
        self._config_seed: int | None = template._seed
        self._reward_scale: float = template.reward_scale
        self._keys: Any = None  # (num_envs, 2) JAX PRNG keys, created at the first reset.
        self._states: Any = None  # the JaxMARL states, batched along axis 0
        self._t = np.zeros(self.num_envs, dtype=np.int64)  # steps taken in each running episode
        self._autoreset = np.zeros(self.num_envs, dtype=bool)  # ended on the last step: reset next
        self._avail = np.zeros((self.num_envs, self._n_agents, self._n_actions), dtype=np.float32)
        self._running = False

    def reset(
        self, *, seed: int | Sequence[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[list[MultiAgentDict], list[MultiAgentDict]]:
        """Resets every sub-env (seeds as in the module docstring); returns observations and infos."""
        super().reset(seed=seed if isinstance(seed, int | np.integer) else None, options=options)
        import jax
        import jax.numpy as jnp

        if seed is None:
            seeds: list[int | None] = [None] * self.num_envs
        elif isinstance(seed, int | np.integer):
            seeds = [int(seed) + i for i in range(self.num_envs)]
        else:
            seeds = list(seed)
            if len(seeds) != self.num_envs:
                raise ValueError(
                    f"If seeds are passed as a list the length must match num_envs={self.num_envs} "
                    f"but got length={len(seeds)}."
                )
        keys = np.zeros((self.num_envs, 2), dtype=np.uint32) if self._keys is None else np.array(self._keys)
        for i, single_seed in enumerate(seeds):
            if single_seed is not None:
                keys[i] = np.asarray(jax.random.PRNGKey(int(single_seed)))
            elif self._keys is None:
                if self._config_seed is not None:
                    initial = self._config_seed + i
                else:
                    initial = int(np.random.SeedSequence().entropy % 2**31)
                keys[i] = np.asarray(jax.random.PRNGKey(initial))
        self._keys, self._states, packed = self._batched.reset(jnp.asarray(keys))
        frame = self._compiled.unpack(packed)
        self._t[:] = 0
        self._autoreset[:] = False
        self._running = True
        observations = self._observations(frame)
        infos = [self._infos(False) for _ in range(self.num_envs)]
        return observations, infos

    def step(
        self, actions: Sequence[MultiAgentDict]
    ) -> tuple[list[MultiAgentDict], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Steps every sub-env at once; sub-envs that ended on the last step are reset instead."""
        if not self._running:
            raise RuntimeError("SMAXVectorEnv.step() called before reset()")
        if len(actions) != self.num_envs:
            raise ValueError(
                f"SMAXVectorEnv needs one action dict per sub-env ({self.num_envs}), got {len(actions)}"
            )
        import jax.numpy as jnp

        resetting = self._autoreset.copy()
        joint = self._joint_actions(actions, resetting)
        self._keys, self._states, packed = self._batched.step(
            self._keys, self._states, jnp.asarray(joint), jnp.asarray(resetting)
        )
        frame = self._compiled.unpack(packed)
        terminated, won = battle_outcome(frame)
        terminated &= ~resetting
        won &= ~resetting
        self._t = np.where(resetting, 0, self._t + 1)
        truncated = (self._t >= self.episode_limit) & ~terminated & ~resetting
        self._autoreset = terminated | truncated

        observations = self._observations(frame)
        agents = self.possible_agents
        rewards, terminateds, truncateds, infos = [], [], [], []
        for i in range(self.num_envs):
            reward = 0.0 if resetting[i] else float(frame.reward[i]) * self._reward_scale
            rewards.append(dict.fromkeys(agents, reward))
            term, trunc = bool(terminated[i]), bool(truncated[i])
            terminateds.append({**dict.fromkeys(agents, term), "__all__": term})
            truncateds.append({**dict.fromkeys(agents, trunc), "__all__": trunc})
            infos.append(self._infos(bool(won[i])))
        return (
            observations,
            _object_array(rewards),
            _object_array(terminateds),
            _object_array(truncateds),
            _object_array(infos),
        )

    def render(self) -> tuple[None, ...]:
        """SMAX has no renderer here; one ``None`` per sub-env, as a sync vector of SMAXEnvs gives."""
        return tuple(None for _ in range(self.num_envs))

    def call(self, name: str, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        """Calls (or reads, if not callable) ``name`` on every :class:`SMAXSubEnvView`."""
        results = []
        for env in self.envs:
            attr = getattr(env, name)
            results.append(attr(*args, **kwargs) if callable(attr) else attr)
        return tuple(results)

    def get_attr(self, name: str) -> tuple[Any, ...]:
        """``name`` of every sub-env (``map_name``, ``episode_limit``, ``n_agents`` ...)."""
        return self.call(name)

    def close_extras(self, **kwargs: Any) -> None:
        """Drops the batched state (the compiled functions stay cached for other instances)."""
        self._states = None
        self._running = False

    def _joint_actions(self, actions: Sequence[MultiAgentDict], resetting: np.ndarray) -> np.ndarray:
        """``(num_envs, n_agents)`` int32 actions, checked against the masks as SMAXEnv checks them.

        A resetting sub-env's action is ignored (``SyncVectorMultiAgentEnv`` does not look at it) and
        replaced by stop. Valid input takes one numpy check for the whole batch; anything else goes
        through :func:`~rllib_grsn.envs.multi_agent.check_joint_action` per sub-env, which raises
        SMAXEnv's errors (missing, unknown or non-integer actions, masked-out choices).
        """
        joint = np.full((self.num_envs, self._n_agents), STOP_ACTION, dtype=np.int32)
        rows = np.flatnonzero(~resetting)
        agents = self.possible_agents
        try:
            if all(len(actions[i]) == self._n_agents for i in rows):
                chosen = np.array([[actions[i][aid] for aid in agents] for i in rows])
                if chosen.shape == (len(rows), self._n_agents) and np.issubdtype(chosen.dtype, np.integer):
                    in_range = (chosen >= 0) & (chosen < self._n_actions)
                    picked = np.take_along_axis(
                        self._avail[rows], np.where(in_range, chosen, 0)[..., None], axis=-1
                    )[..., 0]
                    if (in_range & (picked == 1.0)).all():
                        joint[rows] = chosen
                        return joint
        except (KeyError, TypeError, ValueError):
            pass  # malformed: the per-sub-env check below names the problem
        for i in rows:
            joint[i] = check_joint_action(agents, actions[i], self._avail[i], env_name="SMAX")
        return joint

    def _observations(self, frame: Any) -> list[MultiAgentDict]:
        """Per-sub-env, per-agent observation dicts of a batched frame.

        Three copies in total instead of three per agent: each agent's arrays are disjoint rows of
        fresh arrays (the state repeated per agent), so no two agents, sub-envs or steps alias, and
        the env keeps its own mask copy for checking the next actions.
        """
        self._avail = frame.avail.copy()
        masks = frame.avail.copy()
        obs = frame.obs.copy()
        states = np.repeat(frame.state[:, None, :], self._n_agents, axis=1)
        agents = self.possible_agents
        return [
            {
                aid: {"action_mask": masks[i, j], "obs": obs[i, j], "state": states[i, j]}
                for j, aid in enumerate(agents)
            }
            for i in range(self.num_envs)
        ]

    def _infos(self, battle_won: bool) -> MultiAgentDict:
        return {aid: {"backend": BACKEND, "battle_won": battle_won} for aid in self.possible_agents}
