"""Guide policies: an importable callable or a checkpoint of this package's TD3/SAC.

Both answer :meth:`GuidePolicy.act` with an action in the learner's normalised units ([-1, 1] per
dimension, what the replay stores: RLlib's ``normalize_actions`` maps it to the env's bounds), given
the guide's observation and the episode (a recurrent checkpoint carries its own state per episode and
reads the previous action and reward from it, as its PrevActionReward connector would have).
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import tree
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.columns import Columns

from rllib_grsn.algorithms.guide.settings import GuideSettings

ORIG_OBS = "_orig_obs"


class GuideError(ValueError):
    """A guide that cannot act for this env; the message is one line naming the setting's value."""


def normalize_action(action: np.ndarray, space: gym.spaces.Box) -> np.ndarray:
    """Env units -> [-1, 1], the inverse of RLlib's ``unsquash_action`` (clipped to the bounds)."""
    low, high = space.low.astype(np.float64), space.high.astype(np.float64)
    scaled = 2.0 * (np.asarray(action, dtype=np.float64) - low) / (high - low) - 1.0
    return np.clip(scaled, -1.0, 1.0).astype(np.float32)


class GuidePolicy:
    """What the connector asks a guide: one normalised action per call."""

    def act(self, observation: Any, episode: Any) -> np.ndarray:
        raise NotImplementedError


class CallableGuide(GuidePolicy):
    """``function(observation) -> action`` in the env's units (a privileged controller, a script)."""

    def __init__(self, function: Callable[[np.ndarray], Any], action_space: gym.spaces.Box):
        self.function = function
        self.action_space = action_space

    def act(self, observation: Any, episode: Any) -> np.ndarray:
        action = np.asarray(self.function(np.asarray(observation)), dtype=np.float64)
        return normalize_action(action.reshape(self.action_space.shape), self.action_space)


class CheckpointGuide(GuidePolicy):
    """The greedy policy of a checkpointed :class:`~rllib_grsn.modules.twin_q.RecurrentTwinQModule`.

    A recurrent module's state is carried per episode id, restarted at every episode start (TAP, as it
    acted when it was trained).
    """

    def __init__(self, module: Any):
        self.module = module
        self.states: dict[Any, Any] = {}
        space = module.observation_space
        self.prev_action_reward = isinstance(space, gym.spaces.Dict) and ORIG_OBS in space.spaces

    def observation_shape(self) -> tuple[int, ...]:
        space = self.module.observation_space
        return tuple((space[ORIG_OBS] if self.prev_action_reward else space).shape)

    def act(self, observation: Any, episode: Any) -> np.ndarray:
        obs: Any = np.asarray(observation, dtype=np.float32)
        if self.prev_action_reward:
            t = episode.t if episode is not None else 0
            prev_action = episode.get_actions(-1) if t > 0 else np.zeros(self.module.action_space.shape)
            prev_reward = episode.get_rewards(-1) if t > 0 else 0.0
            obs = {
                ORIG_OBS: obs,
                "prev_n_actions": np.asarray(prev_action, dtype=np.float32).reshape(-1),
                "prev_n_rewards": np.asarray([prev_reward], dtype=np.float32),
            }
        stateful = self.module.is_stateful()
        lead = (1, 1) if stateful else (1,)
        batch: dict[str, Any] = {
            Columns.OBS: tree.map_structure(lambda x: torch.as_tensor(x).reshape(*lead, *x.shape), obs)
        }
        key = getattr(episode, "id_", None)
        if stateful:
            if episode is None or episode.t == 0 or key not in self.states:
                initial = self.module.get_initial_state()
                self.states[key] = tree.map_structure(lambda x: torch.as_tensor(x).unsqueeze(0), initial)
            batch[Columns.STATE_IN] = self.states[key]
        out = self.module.forward_inference(batch)
        if stateful:
            self.states[key] = out[Columns.STATE_OUT]
        action = out[Columns.ACTIONS].detach().cpu().numpy().reshape(self.module.action_space.shape)
        return np.clip(action, -1.0, 1.0).astype(np.float32)

    def forget(self, keep: set[Any]) -> None:
        """Drops the carried state of episodes not in ``keep`` (finished ones)."""
        for key in [k for k in self.states if k not in keep]:
            del self.states[key]


def import_callable(target: str) -> Callable[..., Any]:
    """``module:function`` -> the function; GuideError naming what is wrong."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise GuideError(
            "must be module:function (e.g. rllib_grsn.algorithms.guide.privileged:pendulum_swing_up), "
            f"got {target!r}"
        )
    try:
        module = importlib.import_module(module_name)
    except Exception as err:  # an import can fail with any error inside the imported module
        raise GuideError(f"cannot import {module_name!r} ({type(err).__name__}: {err})") from None
    function = module
    for part in attr.split("."):
        function = getattr(function, part, None)
        if function is None:
            raise GuideError(f"module {module_name!r} has no {attr!r}")
    if not callable(function):
        raise GuideError(f"{target!r} is not callable (a {type(function).__name__})")
    return function


@functools.cache
def _load_module(path: str, mtime: float) -> Any:
    from ray.rllib.core.rl_module.rl_module import RLModule

    from rllib_grsn.evaluation import CheckpointError, load_checkpoint_config, modules_dir_of, restoring
    from rllib_grsn.modules.twin_q import RecurrentTwinQModule

    checkpoint = Path(path)
    try:
        load_checkpoint_config(checkpoint)
    except CheckpointError as err:
        raise GuideError(str(err)) from None
    module_dir = modules_dir_of(checkpoint) / DEFAULT_MODULE_ID
    if not module_dir.is_dir():
        raise GuideError(
            f"{module_dir}: missing; the checkpoint holds no single-agent policy {DEFAULT_MODULE_ID!r}"
        )
    try:
        with restoring(module_dir):
            module = RLModule.from_checkpoint(module_dir)
    except CheckpointError as err:
        raise GuideError(str(err)) from None
    if not isinstance(module, RecurrentTwinQModule):
        raise GuideError(
            f"{checkpoint}: holds a {type(module).__name__}, not a TD3/SAC policy of this package "
            "(RecurrentTwinQModule)"
        )
    module.eval()
    return module


def load_guide(settings: GuideSettings, action_space: gym.Space) -> GuidePolicy:
    """The guide ``settings`` names, for an env with ``action_space`` (GuideError if it cannot act there)."""
    if not isinstance(action_space, gym.spaces.Box):
        raise GuideError(
            f"a guide needs continuous (Box) actions, the env has {action_space} (guided training is "
            "for continuous TD3 and SAC; discrete SAC takes no guide)"
        )
    if settings.callable is not None:
        return CallableGuide(import_callable(settings.callable), action_space)
    path = Path(settings.checkpoint).expanduser().resolve()
    if not path.exists():
        raise GuideError(f"{path}: not an RLlib algorithm checkpoint (no such file or directory)")
    module = _load_module(str(path), path.stat().st_mtime)
    space = module.action_space
    if (
        not isinstance(space, gym.spaces.Box)
        or space.shape != action_space.shape
        or not (np.allclose(space.low, action_space.low) and np.allclose(space.high, action_space.high))
    ):
        raise GuideError(f"{path}: the policy's action space {space} does not match the env's {action_space}")
    # The module is shared (cached per checkpoint file); the per-episode states live in the guide.
    return CheckpointGuide(module)
