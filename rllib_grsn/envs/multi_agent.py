"""Multi-agent env names for YAML configs, their Ray Tune registration and SMAC's backend choice.

Names (``env:`` in a tuned example, RLlib's ``config.environment(env=...)``):

- ``smac``: a SMAC battle (``env_config``: ``map_name``, ``backend: auto | sc2 | smax``,
  ``vectorize: auto | sync | jax`` (see :func:`check_vectorize`), other keys passed to the chosen
  backend). ``sc2`` is StarCraft II (:class:`~rllib_grsn.envs.smac.SMACEnv`),
  ``smax`` is JaxMARL's JAX re-implementation (:class:`~rllib_grsn.envs.smax.SMAXEnv`), ``auto`` (the
  default) picks StarCraft II when it is installed, else SMAX; see :func:`resolve_smac_backend`.
- ``mpe_simple_spread``: mpe2's cooperative navigation with a shared team reward
  (:class:`~rllib_grsn.envs.mpe.SimpleSpreadEnv`).
- ``two_step_game``: the QMIX paper's two-step matrix game
  (:class:`~rllib_grsn.envs.two_step.TwoStepGameEnv`).

They are RLlib ``MultiAgentEnv`` classes, not gymnasium envs, so they are registered with Ray Tune only. The
env classes are imported when an env is built, so importing this module needs neither StarCraft II,
JaxMARL nor mpe2.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from ray.rllib.env.multi_agent_env import MultiAgentEnv
from ray.rllib.utils.typing import MultiAgentDict

from rllib_grsn.envs.smac import _as_int_action

logger = logging.getLogger(__name__)

MULTI_AGENT_ENVS: dict[str, str] = {
    "smac": "SMAC battle; env_config map_name, backend auto|sc2|smax (StarCraft II or JaxMARL's SMAX)",
    "mpe_simple_spread": "mpe2 simple_spread_v3, shared team reward (local_ratio=0), discrete actions",
    "two_step_game": "QMIX two-step matrix game (Rashid et al. 2018): optimal team return 8, VDN gets 7",
}

SMAC_BACKENDS: tuple[str, ...] = ("auto", "sc2", "smax")

# How an EnvRunner batches the sub-envs of the ``smac`` env (env_config ``vectorize``); read by
# rllib_grsn.envs.team_env_runner.TeamEnvRunner.
VECTORIZE_MODES: tuple[str, ...] = ("auto", "sync", "jax")

# Messages already logged by resolve_smac_backend: the choice is logged once per process, not per env.
_logged_backend_messages: set[str] = set()


def check_joint_action(
    agents: Sequence[str], action_dict: MultiAgentDict, avail: np.ndarray, env_name: str
) -> list[int]:
    """Validates a joint action against the action masks; returns the actions in ``agents`` order.

    The centralised multi-agent envs here step all agents together, so every agent needs an action;
    a missing agent, an unknown agent or an action its mask forbids is a masking bug upstream and
    raises ``ValueError`` naming the agent and the action, instead of silently doing something else.
    ``avail`` is the ``(n_agents, n_actions)`` 0/1 mask of the last observation.
    """
    missing = [aid for aid in agents if aid not in action_dict]
    if missing:
        raise ValueError(
            f"{env_name} needs an action for every agent on every step (dead units take their mask's "
            f"only action); missing actions for {missing}"
        )
    unknown = sorted(set(action_dict) - set(agents), key=str)
    if unknown:
        raise ValueError(f"{env_name}: actions for unknown agents {unknown}; agents are {list(agents)}")
    n_actions = avail.shape[1]
    actions = []
    for i, aid in enumerate(agents):
        action = _as_int_action(aid, action_dict[aid])
        if not 0 <= action < n_actions or avail[i, action] != 1.0:
            available = np.flatnonzero(avail[i]).tolist()
            raise ValueError(
                f"{env_name}: agent {aid} chose action {action}, which is not available; available "
                f"actions: {available} (the action mask must be applied before choosing)"
            )
        actions.append(action)
    return actions


def check_vectorize(env_config: Mapping[str, Any] | None) -> str:
    """The ``vectorize`` mode of an ``env_config`` (default ``"auto"``); raises ``ValueError`` if unknown.

    - ``sync``: RLlib's ``SyncVectorMultiAgentEnv``, one Python ``step`` per sub-env;
    - ``jax``: :class:`~rllib_grsn.envs.smax_vector.SMAXVectorEnv`, all sub-envs in one ``jax.vmap``-ed
      call (SMAX backend only);
    - ``auto``: ``jax`` for SMAX with more than one env per EnvRunner, else ``sync``.

    The key configures the EnvRunner (:class:`~rllib_grsn.envs.team_env_runner.TeamEnvRunner`), not one
    battle, so the env classes only check it; the ``smac`` creator drops it before StarCraft II, whose
    options are passed on verbatim.
    """
    mode = dict(env_config or {}).get("vectorize", "auto")
    if mode not in VECTORIZE_MODES:
        raise ValueError(
            f"unknown env_config vectorize {mode!r}; choose one of: {', '.join(VECTORIZE_MODES)}"
        )
    return str(mode)


def _smac_importable() -> bool:
    """Whether the ``smac`` package is installed (found without importing StarCraft II's Python stack)."""
    try:
        return importlib.util.find_spec("smac") is not None
    except (ImportError, ValueError):
        return False


def _starcraft2_dir() -> Path | None:
    """The StarCraft II install SMAC would use: ``$SC2PATH``, else SMAC's default ``~/StarCraftII``.

    Returns it only if that directory exists. Like SMAC (pysc2), an ``SC2PATH`` that is set wins over
    the default, even when it points nowhere.
    """
    sc2path = os.environ.get("SC2PATH")
    path = Path(sc2path).expanduser() if sc2path else Path("~/StarCraftII").expanduser()
    return path if path.is_dir() else None


def _log_backend_once(message: str) -> None:
    if message in _logged_backend_messages:
        return
    _logged_backend_messages.add(message)
    # One warning; without a configured handler Python's last-resort handler prints it to stderr
    # (the CLI, Ray workers), so it is never silent and never printed twice.
    logger.warning(message)


def resolve_smac_backend(env_config: Mapping[str, Any] | None) -> str:
    """Which backend runs the ``smac`` env for this ``env_config``: ``"sc2"`` or ``"smax"``.

    - ``backend: sc2`` forces StarCraft II (fails loudly if it is missing);
    - ``backend: smax`` forces JaxMARL's SMAX;
    - ``backend: auto`` (default) uses StarCraft II when ``smac`` is installed *and* the game is found
      (``$SC2PATH`` is an existing directory, or ``~/StarCraftII`` when ``SC2PATH`` is unset),
      otherwise SMAX.

    SMAX is a different simulator (see :mod:`rllib_grsn.envs.smax`): a silent fallback would let SMAX
    results pass as SMAC ones, so the choice and its reason are logged as a warning and printed to
    stderr (once per process and message).
    """
    config = dict(env_config or {})
    backend = config.get("backend", "auto")
    map_name = config.get("map_name", "8m")
    if backend not in SMAC_BACKENDS:
        raise ValueError(f"unknown SMAC backend {backend!r}; choose one of: {', '.join(SMAC_BACKENDS)}")
    if backend == "sc2":
        reason = "forced by env_config backend: sc2"
    elif backend == "smax":
        reason = "forced by env_config backend: smax"
    elif not _smac_importable():
        backend, reason = "smax", "backend: auto and the `smac` package is not installed"
    else:
        sc2_dir = _starcraft2_dir()
        if sc2_dir is None:
            where = f"SC2PATH={os.environ['SC2PATH']!r}" if os.environ.get("SC2PATH") else "~/StarCraftII"
            backend = "smax"
            reason = f"backend: auto, `smac` is installed but StarCraft II is not found at {where}"
        else:
            backend, reason = "sc2", f"backend: auto, `smac` is installed and StarCraft II is at {sc2_dir}"
    if backend == "smax":
        what = "smax (JaxMARL SMAX, a JAX re-implementation; report results as SMAX, not SMAC)"
    else:
        what = "sc2 (StarCraft II SMAC)"
    _log_backend_once(f"smac env, map {map_name}: running backend {what}; {reason}")
    return backend


def make_multi_agent_env(name: str, env_config: Mapping[str, Any] | None = None) -> MultiAgentEnv:
    """Builds one of :data:`MULTI_AGENT_ENVS` by name (the Tune creators call this)."""
    config = dict(env_config or {})
    if name == "smac":
        check_vectorize(config)
        backend = resolve_smac_backend(config)
        config["backend"] = backend
        if backend == "sc2":
            from rllib_grsn.envs.smac import SMACEnv

            # An EnvRunner option, not a StarCraft II one: sub-envs of sc2 always step one by one.
            if config.pop("vectorize", "auto") == "jax":
                raise ValueError(
                    "env_config vectorize: jax batches SMAX battles with jax.vmap and needs backend smax; "
                    "this smac env runs StarCraft II (use vectorize: auto or sync)"
                )
            return SMACEnv(config)
        from rllib_grsn.envs.smax import SMAXEnv

        return SMAXEnv(config)
    if name == "mpe_simple_spread":
        from rllib_grsn.envs.mpe import SimpleSpreadEnv

        return SimpleSpreadEnv(config)
    if name == "two_step_game":
        from rllib_grsn.envs.two_step import TwoStepGameEnv

        return TwoStepGameEnv(config)
    raise ValueError(f"unknown multi-agent env {name!r}; choose one of: {', '.join(MULTI_AGENT_ENVS)}")


def register_multi_agent_envs() -> None:
    """Registers :data:`MULTI_AGENT_ENVS` with Ray Tune (RLlib's env names).

    As for the partially observable control envs, Tune's registry lives in the running Ray session and
    is lost at ``ray.shutdown()``, so the registration is repeated at every later ``ray.init()`` of
    this process through Ray's post-init hooks.
    """
    _register_with_tune()
    import ray._private.worker as ray_worker

    if _register_with_tune not in ray_worker._post_init_hooks:
        ray_worker._post_init_hooks.append(_register_with_tune)


def _register_with_tune() -> None:
    from ray.tune.registry import register_env

    for name in MULTI_AGENT_ENVS:
        register_env(name, _tune_creator(name))


def _tune_creator(name: str) -> Callable[[Mapping[str, Any]], MultiAgentEnv]:
    def creator(env_config: Mapping[str, Any]) -> MultiAgentEnv:
        return make_multi_agent_env(name, dict(env_config))

    return creator
