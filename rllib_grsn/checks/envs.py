"""Env names, ``env_config`` and algorithm/env pairs, checked before Ray starts.

This package's envs are built once with the experiment's ``env_config`` (a bad key, map or backend
fails here, not inside an EnvRunner); each (env, env_config) pair is built once per process, however
many experiments and search-space values use it.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import gymnasium as gym

from rllib_grsn.envs import MULTI_AGENT_ENVS, PO_CONTROL_ENVS, make_multi_agent_env, make_po_control

OWN_ENVS = (*PO_CONTROL_ENVS, *MULTI_AGENT_ENVS)
# Algorithms that train a team of agents on one of MULTI_AGENT_ENVS (and nothing else).
TEAM_ALGORITHMS = ("QMIX", "VDN")
# Algorithms that only act in continuous (Box) action spaces, and what to use instead.
CONTINUOUS_ONLY = {"TD3": "RecurrentSAC (discrete SAC) or PPO"}


def known_env_names() -> list[str]:
    """Our envs first, then gymnasium's and anything registered with Ray Tune."""
    from ray.tune.registry import ENV_CREATOR, _global_registry

    names = list(OWN_ENVS)
    names += [n for n in gym.envs.registry if n not in PO_CONTROL_ENVS]
    names += [key for cat, key in _global_registry._to_flush if cat == ENV_CREATOR and key not in names]
    return names


def env_known(name: str) -> bool:
    from ray.tune.registry import ENV_CREATOR, _global_registry

    # Our own envs first: after a Ray session ends in this process, Tune's registry answers from
    # the session's (gone) key-value store, and would call them unknown until Ray starts again.
    if name in OWN_ENVS:
        return True
    return name in gym.envs.registry or _global_registry.contains(ENV_CREATOR, name)


@functools.cache
def _probe(env: str, env_config_json: str) -> tuple[str | None, gym.Space | None]:
    """Builds ``env`` once: (what went wrong or None, its action space or None)."""
    env_config = json.loads(env_config_json)
    try:
        if env in MULTI_AGENT_ENVS:
            instance = make_multi_agent_env(env, env_config)
        elif env in PO_CONTROL_ENVS:
            instance = make_po_control(env, env_config)
        else:
            instance = gym.make(env)
    except Exception as err:  # any error here would otherwise surface inside the EnvRunners
        return (str(err) if isinstance(err, ValueError) else f"{type(err).__name__}: {err}"), None
    space = getattr(instance, "action_space", None)
    instance.close()
    return None, space


def _probed(env: str, env_config: dict[str, Any]) -> tuple[str | None, gym.Space | None]:
    return _probe(env, json.dumps(env_config, sort_keys=True, default=repr))


def env_config_problem(env: str, env_config: dict[str, Any]) -> str | None:
    """What is wrong with building one of this package's envs with ``env_config``, or None."""
    return _probed(env, env_config)[0] if env in OWN_ENVS else None


def pairing_problem(run: str, env: str, env_config: dict[str, Any]) -> str | None:
    """An algorithm that cannot train on ``env``: a team algorithm on a single-agent env or the
    reverse, or TD3 on discrete actions."""
    if run in TEAM_ALGORITHMS and (env in PO_CONTROL_ENVS or env in gym.envs.registry):
        return f"{run} trains a team of agents; use a multi-agent env: {', '.join(MULTI_AGENT_ENVS)}"
    if env in MULTI_AGENT_ENVS and run not in TEAM_ALGORITHMS:
        return f"{env} is a multi-agent team env; train it with {' or '.join(TEAM_ALGORITHMS)}"
    if run in CONTINUOUS_ONLY and (env in PO_CONTROL_ENVS or env in gym.envs.registry):
        problem, space = _probed(env, env_config if env in PO_CONTROL_ENVS else {})
        if problem is None and not isinstance(space, gym.spaces.Box):
            return f"{run} needs continuous (Box) actions but {env} has {space}; use {CONTINUOUS_ONLY[run]}"
    return None
