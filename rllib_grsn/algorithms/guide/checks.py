"""Whether a ``guide:`` can act in the experiment's env, checked before Ray starts.

The guide is loaded (imported, or its checkpoint read), the env built and reset once, and the guide
asked for one action on the observation it will see: a guide that cannot be loaded, observes the
wrong thing or answers with the wrong action shape fails here, as one line, not inside an EnvRunner.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from rllib_grsn.algorithms.guide.policies import CheckpointGuide, GuideError, GuidePolicy, load_guide
from rllib_grsn.algorithms.guide.settings import GuideSettings
from rllib_grsn.envs.po_control import FULL_OBS_KEY, PO_CONTROL_ENVS, make_po_control


def guide_observation(settings: GuideSettings, observation: Any, info: dict[str, Any]) -> np.ndarray:
    """What the guide sees: the env's full observation (``info[FULL_OBS_KEY]``) or the learner's own
    (without the previous action and reward a connector added)."""
    if settings.observation == "full":
        if FULL_OBS_KEY not in info:
            raise KeyError(FULL_OBS_KEY)
        return np.asarray(info[FULL_OBS_KEY])
    if isinstance(observation, dict):
        observation = observation.get("_orig_obs", observation)
    return np.asarray(observation)


def _build_env(env: Any, env_config: dict[str, Any]) -> gym.Env:
    if isinstance(env, str) and env in PO_CONTROL_ENVS:
        return make_po_control(env, env_config)
    return gym.make(env)


def guide_problems(value: Any, env: Any, env_config: dict[str, Any] | None) -> list[str]:
    """``guide.<key>: problem`` lines for a guide that cannot act in ``env`` (none when it can)."""
    settings = GuideSettings.model_validate(value) if not isinstance(value, GuideSettings) else value
    key = "guide.callable" if settings.callable is not None else "guide.checkpoint"
    try:
        instance = _build_env(env, dict(env_config or {}))
    except Exception:  # the env's own problems are reported by the env checks
        return []
    try:
        try:
            guide = load_guide(settings, instance.action_space)
        except GuideError as err:
            return [f"{key}: {err}"]
        observation, info = instance.reset(seed=0)
        try:
            seen = guide_observation(settings, observation, info)
        except KeyError:
            return [
                f"guide.observation: full needs an env that reports info[{FULL_OBS_KEY!r}] (the partially "
                f"observed {', '.join(PO_CONTROL_ENVS)}); {env} does not; use observation: learner"
            ]
        return _action_problems(key, guide, seen, instance.action_space)
    finally:
        instance.close()


def _action_problems(key: str, guide: GuidePolicy, seen: np.ndarray, space: gym.spaces.Box) -> list[str]:
    if isinstance(guide, CheckpointGuide) and guide.observation_shape() != seen.shape:
        return [
            f"{key}: the policy observes shape {guide.observation_shape()}, the guide's observation has "
            f"shape {seen.shape}; set guide.observation to what it was trained on (full or learner)"
        ]
    try:
        raw = guide.function(seen) if hasattr(guide, "function") else guide.act(seen, None)
        action = np.asarray(raw, dtype=np.float64)
    except Exception as err:  # a user's function can fail in any way
        return [f"{key}: failed on the env's first observation ({type(err).__name__}: {err})"]
    if action.size != int(np.prod(space.shape)):
        return [
            f"{key}: returned an action of shape {action.shape}; the env's actions are {space} "
            f"(shape {space.shape})"
        ]
    if not np.all(np.isfinite(action)):
        return [f"{key}: returned a non-finite action {action.tolist()}"]
    return []
