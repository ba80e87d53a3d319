"""Partially observable classic control, as in Ni et al. 2022 (pomdp-baselines).

The GRSN paper evaluates on these four tasks (its Table 1). Each hides part of the Markov state,
so a memory-less agent cannot solve it:

- ``CartPole-P`` keeps the positions (cart position, pole angle): obs dims [0, 2].
- ``CartPole-V`` keeps the velocities (cart velocity, pole angular velocity): obs dims [1, 3].
- ``Pendulum-P`` keeps the angle as (cos, sin): obs dims [0, 1].
- ``Pendulum-V`` keeps the angular velocity: obs dim [2].

CartPole uses the v0 setting, a 200-step limit (built from ``CartPole-v1``, whose dynamics are the same as
v0's, without gymnasium's "v0 is out of date" warning); Pendulum-v1 already stops at 200 steps.
Rewards are left raw so returns compare directly with the paper (CartPole maximum 200).

Every env built here carries exactly one time limit, so any limit may be chosen, above 200 too:

- ``gym.make("CartPole-P", max_episode_steps=N)``: the ids are registered with a 200-step limit and the
  entry point masks the base task *without* its own limit, so gymnasium's TimeLimit is the only one.
- ``make_po_control(name, {"max_episode_steps": N})`` (also RLlib's ``env_config``, through the Tune
  creator): the base task is built with that limit, then masked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np


@dataclass(frozen=True)
class POControlSpec:
    """Which gymnasium task a partially observable variant wraps and which obs dims it keeps."""

    base_id: str
    kept_dims: tuple[int, ...]
    max_episode_steps: int = 200


PO_CONTROL_ENVS: dict[str, POControlSpec] = {
    "CartPole-P": POControlSpec("CartPole-v1", (0, 2)),
    "CartPole-V": POControlSpec("CartPole-v1", (1, 3)),
    "Pendulum-P": POControlSpec("Pendulum-v1", (0, 1)),
    "Pendulum-V": POControlSpec("Pendulum-v1", (2,)),
}


# ``info`` key holding the unmasked observation: what a privileged guide policy may read
# (rllib_grsn.algorithms.guide); the learner's observation stays the masked one.
FULL_OBS_KEY = "full_obs"


class ObservationMask(gym.ObservationWrapper):
    """Keeps only ``kept_dims`` of a Box observation (the rest of the state becomes hidden).

    The full observation is still handed out in ``info[FULL_OBS_KEY]`` (a copy), for privileged
    guides (jump-start RL, Uchendu et al. 2023); RLlib keeps infos in the episodes, never in the
    learner's input.
    """

    def __init__(self, env: gym.Env, kept_dims: tuple[int, ...]):
        super().__init__(env)
        space = env.observation_space
        if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
            raise TypeError(f"ObservationMask needs a 1-D Box observation space, got {space}")
        self.kept_dims = np.asarray(kept_dims, dtype=np.int64)
        self.observation_space = gym.spaces.Box(
            low=space.low[self.kept_dims], high=space.high[self.kept_dims], dtype=space.dtype
        )

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return observation[self.kept_dims]

    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        return self.observation(obs), {**info, FULL_OBS_KEY: np.array(obs, copy=True)}

    def step(self, action: Any) -> tuple[np.ndarray, Any, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return (
            self.observation(obs),
            reward,
            terminated,
            truncated,
            {**info, FULL_OBS_KEY: np.array(obs, copy=True)},
        )


def _spec(name: str) -> POControlSpec:
    if name not in PO_CONTROL_ENVS:
        raise ValueError(f"unknown env {name!r}; choose one of: {', '.join(PO_CONTROL_ENVS)}")
    return PO_CONTROL_ENVS[name]


def make_po_control(name: str, config: dict[str, Any] | None = None) -> gym.Env:
    """Builds one of :data:`PO_CONTROL_ENVS` by name, with one time limit.

    ``config`` is RLlib's ``env_config``; ``max_episode_steps`` may override the 200-step limit.
    """
    spec = _spec(name)
    config = dict(config or {})
    max_steps = config.pop("max_episode_steps", spec.max_episode_steps)
    if config:
        raise ValueError(
            f"unknown env_config key(s) for {name}: {sorted(config)}; allowed: max_episode_steps"
        )
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
        raise ValueError(f"max_episode_steps for {name}: must be an integer >= 1, got {max_steps!r}")
    env = gym.make(spec.base_id, max_episode_steps=max_steps)
    return ObservationMask(env, spec.kept_dims)


def _make_unlimited(name: str, **kwargs: Any) -> gym.Env:
    """The masked task with no time limit of its own: the gymnasium entry point.

    ``gym.make`` wraps it in the registered (or its ``max_episode_steps``) TimeLimit. ``render_mode``
    is handed to the base task; any other keyword is refused.
    """
    spec = _spec(name)
    render_mode = kwargs.pop("render_mode", None)
    if kwargs:
        raise ValueError(
            f"unknown keyword(s) for gym.make({name!r}): {sorted(kwargs)}; allowed: max_episode_steps, "
            "render_mode"
        )
    base = gym.make(spec.base_id, render_mode=render_mode).unwrapped
    return ObservationMask(base, spec.kept_dims)


def register_po_control_envs() -> None:
    """Registers the four tasks with gymnasium (``gym.make``) and with Ray Tune (RLlib's env names).

    Tune's registry reaches every Ray worker process, so remote EnvRunners can build the envs
    without importing this package first. Tune keeps registrations in the running Ray session's
    key-value store, so they are lost at ``ray.shutdown()``; the registration is therefore also
    repeated at every later ``ray.init()`` of this process (tests, notebooks, sweeps in a loop).
    """
    for name in PO_CONTROL_ENVS:
        if name not in gym.envs.registry:
            gym.register(
                name,
                entry_point=_gym_entry_point(name),
                max_episode_steps=PO_CONTROL_ENVS[name].max_episode_steps,
            )
    _register_with_tune()
    import ray._private.worker as ray_worker

    if _register_with_tune not in ray_worker._post_init_hooks:
        ray_worker._post_init_hooks.append(_register_with_tune)


def _register_with_tune() -> None:
    from ray.tune.registry import register_env

    for name in PO_CONTROL_ENVS:
        register_env(name, _tune_creator(name))


def _gym_entry_point(name: str):
    def entry_point(**kwargs: Any) -> gym.Env:
        return _make_unlimited(name, **kwargs)

    return entry_point


def _tune_creator(name: str):
    def creator(env_config: dict[str, Any]) -> gym.Env:
        return make_po_control(name, dict(env_config))

    return creator
