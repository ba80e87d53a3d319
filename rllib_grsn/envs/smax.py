"""SMAX (JaxMARL's SMAC re-implementation in JAX) as an RLlib 2.60 new-API-stack :class:`MultiAgentEnv`.

SMAX (``jaxmarl==0.2.0``, ``HeuristicEnemySMAX``) re-implements SMAC's micromanagement scenarios in JAX,
so the same maps run on any CPU without StarCraft II. It is **not** SMAC: unit dynamics, observation
and state features, the action set and the enemy AI (a scripted heuristic instead of SC2's built-in
AI) all differ, so results on it are reported as SMAX, never as SMAC.

The adapter has exactly the layout of :class:`rllib_grsn.envs.smac.SMACEnv`, the contract the QMIX
RLModule and learner rely on:

- **Agents.** SMAX's ``ally_i`` becomes ``"agent_i"``; only the allies are controlled, the enemies are
  JaxMARL's heuristic. Every agent stays in every step's dicts until the episode ends; a dead unit's
  mask allows only the stop action (index 4), which SMAX always allows.
- **Observations.** A ``Dict`` per agent with ``"obs"`` (SMAX's ``unit_list`` observation of
  ``ally_i``), ``"action_mask"`` (``get_avail_actions``, 0/1 ``float32``) and ``"state"``
  (SMAX's ``world_state`` with positions, cooldowns and unit types scaled into [0, 1] like SMAC's
  state; identical in every agent's observation). All are numpy ``float32``.
- **Actions.** ``Discrete(n_actions)`` per agent: 0-3 move (N/E/S/W), 4 stop, ``5 + j`` attack enemy
  ``j``. Missing agents and unavailable actions raise ``ValueError``.
- **Rewards.** SMAX's ally team reward (normalised enemy health lost plus a win bonus of 1) is given
  to every agent, as a Python float: unchanged by default, so a battle's return is at most
  :data:`SMAX_MAX_RETURN` (2). With env_config ``reward_scale_rate: R`` it is scaled by
  ``R / SMAX_MAX_RETURN`` so that the most a battle can return is ``R``, as SMAC's own
  ``reward_scale_rate`` (default 20) normalises StarCraft II's rewards. The same key means the same
  thing on both backends, and pymarl's QMIX settings were tuned on SMAC's 0-20 scale.
- **Episode ends.** SMAX's ``done`` merges three cases; the adapter tells them apart itself: all
  enemies dead or all allies dead -> ``terminated`` (a battle won, lost or drawn), ``episode_limit``
  steps without either -> ``truncated`` (QMIX bootstraps there). Per-agent flags equal ``"__all__"``.
  The limit is counted here, not by SMAX: JaxMARL 0.2.0 evaluates ``step >= max_steps`` *before*
  incrementing ``step``, so its own episodes run ``max_steps + 1`` steps (101 by default).
- **Infos.** Every agent's info holds ``backend: "smax"`` and ``battle_won`` (all enemies dead while
  at least one ally lives, SMAX's own win condition; ``False`` until then and on a draw).

Speed. SMAX's public ``step`` auto-resets (JaxMARL's convention for ``vmap``-ed rollouts), which would
hide the final observation from RLlib, so the adapter calls ``step_env`` instead. Step, action masks
and the packing of all outputs into one float32 vector are one ``jax.jit`` per map, shared by every
env instance of a process (JaxMARL's own methods jit with ``self`` as a static
argument, which would recompile for each instance). Measured on this project's CPU machine (2-core
AMD EPYC VM, jax 0.10.2 on CPU, 8m, one env, random masked actions): ``SMAXEnv.step`` takes about
0.4 ms (0.37-0.44 ms over runs), of which the jitted step is ~0.2-0.28 ms, the one device-to-host
transfer and unpacking ~0.1 ms and action checks plus RLlib's per-agent dicts ~0.05 ms; that is
~2,500 env steps/s per env. Compilation costs ~1 s (reset) + ~2 s (step) once per map and process;
27m_vs_30m steps in ~0.9 ms. Many battles per EnvRunner: :class:`~rllib_grsn.envs.smax_vector.SMAXVectorEnv`
runs this module's reset and step under ``jax.vmap``, one jitted call for all sub-envs.

``jaxmarl`` is imported lazily (:func:`_jaxmarl`), so this module imports without it. Before that
import, JAX is pointed at the CPU unless the user chose a platform (:func:`_prefer_cpu_for_jax`): one
env's step is a batch of one and faster on CPU, and the GPU stays with the torch learner.
"""

from __future__ import annotations

import functools
import io
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
from ray.rllib.env.multi_agent_env import MultiAgentEnv
from ray.rllib.utils.typing import MultiAgentDict

from rllib_grsn.envs.multi_agent import check_joint_action, check_vectorize
from rllib_grsn.envs.smac import SMAC_MAPS
from rllib_grsn.envs.team_layout import check_env_config_keys, set_team_spaces, unbounded_box

BACKEND = "smax"

# Map name -> (allies, enemies) for the SMAC maps that SMAX runs. 8m_vs_9m is not in JaxMARL's table;
# it is registered on first use (see _jaxmarl).
SMAX_MAPS: dict[str, tuple[int, int]] = {
    "8m": (8, 8),
    "2s3z": (5, 5),
    "3s_vs_5z": (3, 5),
    "27m_vs_30m": (27, 30),
    "8m_vs_9m": (8, 9),
}

# SMAX's action layout: 4 moves, then stop (always available, the dead units' only action), then attacks.
STOP_ACTION = 4

SMAX_INSTALL_HINT = (
    'Install the SMAX backend with `pip install "rllib_grsn[smax]"` (or `pip install jaxmarl==0.2.0`; '
    "it brings JAX for CPU)."
)

ENV_CONFIG_KEYS = ("map_name", "episode_limit", "seed", "backend", "vectorize", "reward_scale_rate")

# The most one SMAX battle returns: all enemy health (normalised to 1 over the team) + the win bonus 1.
SMAX_MAX_RETURN = 2.0


def reward_scale(rate: Any) -> float:
    """The factor on SMAX's rewards for env_config ``reward_scale_rate`` (None: 1, raw rewards)."""
    if rate is None:
        return 1.0
    if isinstance(rate, bool) or not isinstance(rate, int | float | np.number) or not 0 < rate < float("inf"):
        raise ValueError(
            f"reward_scale_rate for SMAX: must be a number > 0 (the most a battle returns; SMAC's default "
            f"is 20), got {rate!r}"
        )
    return float(rate) / SMAX_MAX_RETURN


class SMAXNotInstalledError(ImportError):
    """``jaxmarl`` cannot be imported; the message says how to install it."""


def _prefer_cpu_for_jax() -> None:
    """Runs JAX on CPU unless the user chose a platform or JAX already started its backends.

    One env's step is a batch of one, dispatch-bound, and faster on CPU; and a JAX GPU backend would
    preallocate most of the GPU memory in the process, next to the torch learner. ``JAX_PLATFORMS``
    (or ``jax.config.jax_platforms``) set by the user wins. Importing ``jaxmarl`` starts JAX's backends
    (it builds arrays at import), so this must run before that.
    """
    try:
        import jax
        from jax._src import xla_bridge
    except ImportError:
        return  # jaxmarl's own import then fails with the install hint.
    if jax.config.jax_platforms or os.environ.get("JAX_PLATFORMS"):
        return
    backends_started = getattr(xla_bridge, "backends_are_initialized", lambda: True)
    if not backends_started():
        jax.config.update("jax_platforms", "cpu")


def _jaxmarl() -> Any:
    """Imports ``jaxmarl`` on first use and registers the maps SMAX lacks; returns the module.

    Importing jaxmarl 0.2.0 has two side effects on the process's streams, both undone here:
    ``jaxmarl.environments.mabrax`` sets ``sys.stdout``/``sys.stderr`` back to
    ``sys.__stdout__``/``sys.__stderr__`` (it silences brax that way), which would drop any redirection
    installed by the caller (pytest's capture, a notebook, a logger); and ``jaxmarl.environments``
    then prints "Importing submoduled environments..." to that restored stdout. The import therefore
    runs with both stdout objects pointing at a throw-away buffer, and the caller's streams are put
    back afterwards.
    """
    if "jaxmarl" not in sys.modules:
        _prefer_cpu_for_jax()
        saved = (sys.stdout, sys.stderr, sys.__stdout__)
        try:
            sys.stdout = sys.__stdout__ = io.StringIO()
            import jaxmarl
        except ImportError as exc:
            raise SMAXNotInstalledError(
                f"The SMAX backend needs JaxMARL (cannot import `jaxmarl`: {exc}). {SMAX_INSTALL_HINT}"
            ) from exc
        finally:
            sys.stdout, sys.stderr, sys.__stdout__ = saved
    import jax.numpy as jnp
    import jaxmarl
    from jaxmarl.environments.smax import Scenario, register_scenario
    from jaxmarl.environments.smax.smax_env import MAP_NAME_TO_SCENARIO

    if "8m_vs_9m" not in MAP_NAME_TO_SCENARIO:
        # Built like JaxMARL's own "8m": unit types for allies then enemies (0 = marine), no SMACv2
        # random positions or unit types.
        register_scenario("8m_vs_9m", Scenario(jnp.zeros((17,), dtype=jnp.uint8), 8, 9, False, False))
    return jaxmarl


def _check_map_name(map_name: str) -> None:
    if map_name in SMAX_MAPS:
        return
    available = ", ".join(SMAX_MAPS)
    if map_name in SMAC_MAPS:
        raise ValueError(
            f"map {map_name!r} is a SMAC map that SMAX does not implement; it needs backend sc2 "
            f"(StarCraft II, env_config `backend: sc2`). SMAX maps: {available}"
        )
    raise ValueError(f"unknown SMAX map {map_name!r}; SMAX maps: {available}")


def _default_episode_limit() -> int:
    """JaxMARL's default ``max_steps`` for SMAX (100 in 0.2.0), read from its signature, not hard-coded."""
    import inspect

    _jaxmarl()
    from jaxmarl.environments.smax import SMAX

    return int(inspect.signature(SMAX.__init__).parameters["max_steps"].default)


class _Frame(NamedTuple):
    """Outputs unpacked from the jitted functions' float32 vector: one env's, or a batch of them.

    Every field has the batch's leading axes (none for one env, ``(num_envs,)`` for
    :class:`~rllib_grsn.envs.smax_vector.SMAXVectorEnv`) in front of the per-env shape given here.
    """

    obs: np.ndarray  # (n_allies, obs_size)
    state: np.ndarray  # (state_size,)
    avail: np.ndarray  # (n_allies, n_actions), 0/1
    allies_alive: np.ndarray  # (n_allies,), bool
    enemies_alive: np.ndarray  # (n_enemies,), bool
    reward: np.ndarray  # (), the allies' team reward (0 after reset)


def battle_outcome(frame: _Frame) -> tuple[np.ndarray, np.ndarray]:
    """``(terminated, battle_won)`` of every env in ``frame`` (numpy bools with the batch's shape).

    A battle ends when one team is wiped out (both at once is a draw); it is won, SMAX's own win
    condition, when every enemy is dead while an ally lives. SMAX's ``done`` also fires at its time
    limit, so it is not used: the time limit is a truncation, counted by the adapters.
    """
    allies_alive = frame.allies_alive.any(axis=-1)
    enemies_alive = frame.enemies_alive.any(axis=-1)
    return ~allies_alive | ~enemies_alive, allies_alive & ~enemies_alive


@dataclass(frozen=True)
class _CompiledSMAX:
    """One JaxMARL env and its jitted packed reset/step, shared by all SMAXEnvs on the same map.

    ``reset(key) -> (key, state, packed)`` and ``step(key, state, actions) -> (key, state, packed)``
    keep the JaxMARL state and PRNG key on the JAX side; ``packed`` is one float32 vector that
    :meth:`unpack` splits into a :class:`_Frame`. ``reset_fn`` and ``step_fn`` are the same functions
    before ``jax.jit``: :class:`~rllib_grsn.envs.smax_vector.SMAXVectorEnv` ``vmap``-s them, so one
    env and a batch of envs run the very same reset, step, key splits and packing.
    """

    env: Any
    reset: Callable[[Any], tuple[Any, Any, Any]]
    step: Callable[[Any, Any, Any], tuple[Any, Any, Any]]
    sizes: tuple[int, ...]  # lengths of the packed segments, in _Frame's field order
    reset_fn: Callable[[Any], tuple[Any, Any, Any]]
    step_fn: Callable[[Any, Any, Any], tuple[Any, Any, Any]]

    def unpack(self, packed: Any) -> _Frame:
        """One device-to-host transfer, then numpy views split by :attr:`sizes` (copied by the caller).

        ``packed`` is one env's vector or a batch ``(num_envs, packed_size)``; the leading axes are
        kept on every field.
        """
        import jax

        vector = np.asarray(jax.device_get(packed), dtype=np.float32)
        lead = vector.shape[:-1]
        obs, state, avail, allies_alive, enemies_alive, reward = np.split(
            vector, np.cumsum(self.sizes)[:-1], axis=-1
        )
        n_allies = allies_alive.shape[-1]
        return _Frame(
            obs=obs.reshape(*lead, n_allies, -1),
            state=state,
            avail=avail.reshape(*lead, n_allies, -1),
            allies_alive=allies_alive > 0.5,
            enemies_alive=enemies_alive > 0.5,
            reward=reward[..., 0],
        )


def _movement_table() -> np.ndarray:
    """The movement vectors of SMAX's moves 0-3, as its discrete decoding computes them one env at a time.

    JaxMARL 0.2.0 rotates ``(+-1/sqrt2, +-1/sqrt2)`` by 45 degrees with a 2x2 matrix product, in float32:
    ``[r*v0 - r*v1, r*v0 + r*v1]`` with ``r = 1/sqrt2``, i.e. an exact 0 and ``+-0.99999994``.
    """
    r = np.float32(1.0) / np.sqrt(np.float32(2.0))
    table = np.zeros((4, 2), dtype=np.float32)
    for action in range(4):
        v0 = np.float32((-1) ** (action // 2)) * r
        v1 = np.float32((-1) ** (action // 2 + action % 2)) * r
        table[action] = (r * v0 + (-r) * v1, r * v0 + r * v1)
    return table


def _make_movement_decoding_batch_invariant(smax: Any) -> None:
    """Replaces SMAX's discrete action decoding on ``smax`` (this module's own instance) by a table lookup.

    Why: under ``jax.vmap`` over envs, XLA on CPU emits JaxMARL's 2x2 rotation with fused
    multiply-adds, so the zero component of a move becomes +-1.27e-8 and the ``vmap``-ed envs of
    :mod:`rllib_grsn.envs.smax_vector` would drift (by an ulp in the previous-move observation
    features) from one SMAXEnv. A gather from :func:`_movement_table` gives the same bits batched or
    not, equal to what JaxMARL computes for one env (checked by the tests); attack decoding is
    JaxMARL's, unchanged.
    """
    import jax.numpy as jnp

    table = jnp.asarray(_movement_table())
    stop = smax.num_movement_actions - 1  # actions >= stop: no movement (stop or an attack)

    def decode_discrete_actions(actions: Any) -> tuple[Any, Any]:
        moves = jnp.where((actions < stop)[:, None], table[jnp.clip(actions, 0, stop - 1)], 0.0)
        attacks = jnp.where(actions > stop, actions, jnp.zeros_like(actions))
        return moves, attacks

    smax._decode_discrete_actions = decode_discrete_actions


@functools.cache
def _compiled_smax(map_name: str) -> _CompiledSMAX:
    """Builds ``HeuristicEnemySMAX`` for a map and jits its packed reset and step (compiled on first call).

    Everything an RLlib step needs is concatenated into one float32 vector inside the jit, so the
    Python side pays a single device-to-host transfer per step; JaxMARL's per-agent dicts of small
    arrays would cost one each (together about half of a step's time on CPU).
    """
    jaxmarl = _jaxmarl()
    import jax
    import jax.numpy as jnp
    from jaxmarl.environments.smax import map_name_to_scenario

    env = jaxmarl.make("HeuristicEnemySMAX", scenario=map_name_to_scenario(map_name))
    allies = list(env.agents)
    n_allies, n_enemies = env.num_allies, env.num_enemies
    n_actions = env.action_spaces[allies[0]].n
    sizes = (n_allies * env.obs_size, env.state_size, n_allies * n_actions, n_allies, n_enemies, 1)

    smax = env._env  # the wrapped SMAX: map size, unit tables, feature layout
    _make_movement_decoding_batch_invariant(smax)
    n_units, n_features = smax.num_agents, len(smax.own_features)
    position_scale = jnp.ones(n_features).at[1].set(1.0 / smax.map_width).at[2].set(1.0 / smax.map_height)
    max_type = max(1, len(smax.unit_type_names) - 1)

    def normalized_world_state(world_state: Any, state: Any) -> Any:
        """SMAX's world state with every feature in [0, 1], as SMAC's state is.

        SMAX writes raw positions (0..32), raw weapon cooldowns (seconds) and unit type indices
        (0..5) into it; QMIX's hypernetworks read the state directly, and such scales blow the
        initial mixed values up to ~100 on 8m (the whole episode's return is at most 2).
        Positions are divided by the map size, cooldowns by the unit type's weapon cooldown
        (as SMAX's own observations do) and type indices by the largest index.
        """
        units = world_state[: n_units * n_features].reshape(n_units, n_features) * position_scale
        cooldown = units[:, 3] / smax.unit_type_weapon_cooldowns[state.state.unit_types]
        units = units.at[:, 3].set(jnp.clip(cooldown, 0.0, 1.0))
        teams = world_state[n_units * n_features : n_units * (n_features + 1)]
        types = world_state[n_units * (n_features + 1) :] / max_type
        return jnp.concatenate([units.ravel(), teams, types])

    def pack(obs: dict[str, Any], state: Any, reward: Any) -> Any:
        avail = env.get_avail_actions(state)
        alive = state.state.unit_alive
        parts = [
            jnp.stack([obs[a] for a in allies]).ravel(),
            normalized_world_state(obs["world_state"], state),
            jnp.stack([avail[a] for a in allies]).ravel(),
            alive[:n_allies],
            alive[n_allies:],
            jnp.reshape(reward, (1,)),
        ]
        return jnp.concatenate([part.astype(jnp.float32) for part in parts])

    def reset(key: Any) -> tuple[Any, Any, Any]:
        key, reset_key = jax.random.split(key)
        obs, state = env.reset(reset_key)
        # JaxMARL's reset leaves some leaves weakly typed (the heuristic enemy's last_attacked_enemy),
        # step_env returns them strongly typed: without this cast the first step after every reset
        # would hit a second compilation of `step` (seconds), as the input types differ.
        state = jax.tree.map(lambda leaf: jnp.asarray(leaf, dtype=leaf.dtype), state)
        return key, state, pack(obs, state, 0.0)

    def step(key: Any, state: Any, actions: Any) -> tuple[Any, Any, Any]:
        key, step_key = jax.random.split(key)
        action_dict = {a: actions[i] for i, a in enumerate(allies)}
        # SMAX's `dones` are not used: the adapter derives battle ends from unit_alive and counts the
        # time limit itself (see SMAXEnv.step).
        obs, state, rewards, _, _ = env.step_env(step_key, state, action_dict)
        # Every ally gets the same team reward in SMAX; ally_0's is that reward.
        return key, state, pack(obs, state, rewards[allies[0]])

    return _CompiledSMAX(
        env=env, reset=jax.jit(reset), step=jax.jit(step), sizes=sizes, reset_fn=reset, step_fn=step
    )


class SMAXEnv(MultiAgentEnv):
    """One SMAX battle (allies controlled, heuristic enemies) as an RLlib multi-agent env.

    See the module docstring for the layout. ``env_config`` keys:

    - ``map_name``: one of :data:`SMAX_MAPS` (default ``"8m"``);
    - ``episode_limit``: the episode is truncated after this many steps (default JaxMARL's
      ``max_steps``, 100);
    - ``seed``: seeds the first episode's JAX key when :meth:`reset` gets no seed;
    - ``backend``: optional, ``"smax"`` or ``"auto"`` (accepted so the ``smac`` env name's config
      passes through unchanged);
    - ``vectorize``: optional, ``"auto"``, ``"sync"`` or ``"jax"``; how the EnvRunner batches the
      sub-envs (:func:`~rllib_grsn.envs.multi_agent.check_vectorize`), checked here but without
      effect on one battle;
    - ``reward_scale_rate``: optional number > 0; rewards are scaled so that a battle returns at most
      this much (SMAC's key of the same name; default: SMAX's raw rewards, at most 2);

    anything else raises ``ValueError`` (SMAC's StarCraft II options have no SMAX meaning).
    """

    def __init__(self, env_config: Mapping[str, Any] | None = None):
        super().__init__()
        config = dict(env_config or {})
        check_env_config_keys(
            config, ENV_CONFIG_KEYS, "SMAX", " (StarCraft II options such as `difficulty` need backend sc2)"
        )
        backend = config.get("backend", BACKEND)
        if backend not in (BACKEND, "auto"):
            raise ValueError(f"SMAXEnv is the SMAX backend; got backend={backend!r} (allowed: smax, auto)")
        check_vectorize(config)
        self.map_name: str = str(config.get("map_name", "8m"))
        _check_map_name(self.map_name)
        episode_limit = config.get("episode_limit")
        seed = config.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int | np.integer)):
            raise ValueError(f"seed for SMAX: must be an integer or None, got {seed!r}")
        self._seed: int | None = None if seed is None else int(seed)

        if episode_limit is None:
            episode_limit = _default_episode_limit()
        valid_int = isinstance(episode_limit, int | np.integer) and not isinstance(episode_limit, bool)
        if not valid_int or episode_limit < 1:
            raise ValueError(f"episode_limit for SMAX: must be an integer >= 1, got {episode_limit!r}")
        self.episode_limit: int = int(episode_limit)
        self.reward_scale: float = reward_scale(config.get("reward_scale_rate"))

        # Building the JaxMARL env is cheap; jit compiles on the first reset/step, once per map and process.
        self._compiled = _compiled_smax(self.map_name)
        smax = self._compiled.env
        self.n_agents: int = int(smax.num_allies)
        self.n_enemies: int = int(smax.num_enemies)
        self.n_actions: int = int(smax.action_spaces[smax.agents[0]].n)
        self.obs_shape: int = int(smax.obs_size)
        self.state_shape: int = int(smax.state_size)
        if (self.n_agents, self.n_enemies) != SMAX_MAPS[self.map_name]:
            raise RuntimeError(
                f"SMAX builds {self.n_agents} allies vs {self.n_enemies} enemies on {self.map_name!r}, "
                f"SMAX_MAPS expects {SMAX_MAPS[self.map_name]}; the installed jaxmarl does not match."
            )

        set_team_spaces(
            self,
            self.n_agents,
            self.n_actions,
            unbounded_box(self.obs_shape),
            gym.spaces.Box(0.0, 1.0, (self.state_shape,), np.float32),
        )

        self._key: Any = None  # JAX PRNG key, created at the first reset.
        self._state: Any = None  # JaxMARL state of the running episode.
        self._episode_running = False
        self._t = 0  # steps taken in the running episode
        self._avail = np.zeros((self.n_agents, self.n_actions), dtype=np.float32)

    def reset(
        self, *, seed: int | None = None, options: dict | None = None
    ) -> tuple[MultiAgentDict, MultiAgentDict]:
        """Starts a new battle; returns every agent's observation and ``{"backend": "smax"}`` infos.

        ``seed`` restarts the env's JAX key chain, so the same seed and actions replay the same
        episode. Without it, the first reset uses ``env_config["seed"]`` (or fresh entropy) and later
        resets continue the chain.
        """
        super().reset(seed=seed, options=options)
        import jax

        if seed is not None:
            self._key = jax.random.PRNGKey(int(seed))
        elif self._key is None:
            initial = self._seed if self._seed is not None else int(np.random.SeedSequence().entropy % 2**31)
            self._key = jax.random.PRNGKey(initial)
        self._key, self._state, packed = self._compiled.reset(self._key)
        frame = self._compiled.unpack(packed)
        self._t = 0
        self._episode_running = True
        observations = self._observations(frame)
        return observations, {aid: {"backend": BACKEND, "battle_won": False} for aid in self.agents}

    def step(
        self, action_dict: MultiAgentDict
    ) -> tuple[MultiAgentDict, MultiAgentDict, MultiAgentDict, MultiAgentDict, MultiAgentDict]:
        """Steps all allies at once (the enemies act by heuristic); see the module docstring."""
        if not self._episode_running:
            raise RuntimeError("SMAXEnv.step() called before reset() or after the episode ended")
        actions = check_joint_action(self.agents, action_dict, self._avail, env_name="SMAX")
        self._key, self._state, packed = self._compiled.step(
            self._key, self._state, np.asarray(actions, dtype=np.int32)
        )
        frame = self._compiled.unpack(packed)
        terminated, won = battle_outcome(frame)
        terminated_all, battle_won = bool(terminated), bool(won)
        self._t += 1
        truncated_all = self._t >= self.episode_limit and not terminated_all
        if terminated_all or truncated_all:
            self._episode_running = False

        team_reward = float(frame.reward) * self.reward_scale
        observations = self._observations(frame)
        rewards = {aid: team_reward for aid in self.agents}
        terminateds = {aid: terminated_all for aid in self.agents}
        terminateds["__all__"] = terminated_all
        truncateds = {aid: truncated_all for aid in self.agents}
        truncateds["__all__"] = truncated_all
        infos = {aid: {"backend": BACKEND, "battle_won": battle_won} for aid in self.agents}
        return observations, rewards, terminateds, truncateds, infos

    def close(self) -> None:
        """Drops the episode state (the compiled functions stay cached for other instances)."""
        self._state = None
        self._episode_running = False

    def _observations(self, frame: _Frame) -> MultiAgentDict:
        self._avail = frame.avail.reshape(self.n_agents, self.n_actions).copy()
        # Copies: the frame's arrays are views of one (possibly read-only) buffer; agents must not alias.
        return {
            aid: {
                "action_mask": self._avail[i].copy(),
                "obs": frame.obs[i].copy(),
                "state": frame.state.copy(),
            }
            for i, aid in enumerate(self.agents)
        }
