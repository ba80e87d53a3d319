"""The guide's acting: a module-to-env connector piece that replaces the spiking policy's action on
the first ``horizon`` steps of every training episode (jump-start RL, Uchendu et al. 2023).

It is put first in RLlib's module-to-env pipeline (before ``GetActions``, by
:meth:`~rllib_grsn.algorithms.off_policy.config.TD3Config.build_module_to_env_connector`), where the
RLModule's output is still one batched tensor per column:

- the spiking actor has already run on this step, so its recurrent state (``state_out``) advances on
  the guide's steps too and is warm when the policy takes over;
- it rewrites ``actions`` (normalised units, what RLlib stores in the episode and the replay) before
  RLlib's ``NormalizeAndClipActions`` makes the env's action from it;
- it adds the column ``guided`` (True on the guide's steps) and the behaviour-cloning label columns
  ``guide_action`` (the guide's action, normalised; zeros where there is no label) and ``bc_label``
  (True where there is one: the guided steps with ``bc_on: guided``, every training step with
  ``bc_on: all``, where the guide is asked on the policy's steps too); RLlib's EnvRunner records every
  column of the module-to-env output it does not consume in the episode's ``extra_model_outputs``, and
  :class:`~rllib_grsn.algorithms.replay.SequenceReplayBuffer` hands them to the learner's batch.

It acts only when ``explore`` is on and its ``horizon`` is above 0, and labels only when ``explore`` is
on. The horizon starts at 0 and is set
by the algorithm on its training EnvRunners (:func:`set_guide_horizon`) from the schedule at the
lifetime env steps; evaluation EnvRunners are never given one (and their config,
``in_evaluation``, builds no guide at all). Env-step counts of guide and policy are logged through the
EnvRunner's metrics logger: ``num_env_steps_guide`` / ``num_env_steps_policy`` per iteration and their
``_lifetime`` sums; ``num_env_steps_bc_label`` counts the labelled steps the same way.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from ray.rllib.connectors.connector_v2 import ConnectorV2
from ray.rllib.core.columns import Columns

from rllib_grsn.algorithms.guide.checks import guide_observation
from rllib_grsn.algorithms.guide.policies import CheckpointGuide, load_guide
from rllib_grsn.algorithms.guide.settings import BC_LABEL, GUIDE_ACTION, GUIDED, GuideSettings

GUIDE_STEPS = "num_env_steps_guide"
POLICY_STEPS = "num_env_steps_policy"
LABEL_STEPS = "num_env_steps_bc_label"
LIFETIME = "_lifetime"


class GuideActions(ConnectorV2):
    """Replaces the policy's action with the guide's while ``episode.t < horizon`` (training only)."""

    def __init__(
        self,
        input_observation_space: gym.Space | None = None,
        input_action_space: gym.Space | None = None,
        *,
        guide: dict[str, Any] | GuideSettings,
        **kwargs: Any,
    ):
        super().__init__(input_observation_space, input_action_space, **kwargs)
        self.settings = guide if isinstance(guide, GuideSettings) else GuideSettings.model_validate(guide)
        self.guide = load_guide(self.settings, input_action_space)
        self.horizon = 0

    def __call__(
        self,
        *,
        rl_module: Any,
        batch: dict[str, Any],
        episodes: list[Any],
        explore: bool | None = None,
        shared_data: dict | None = None,
        metrics: Any = None,
        **kwargs: Any,
    ) -> Any:
        actions = batch[Columns.ACTIONS]
        tensor = isinstance(actions, torch.Tensor)
        # An episode the vector env will reset at this step (autoreset) has no observation yet: the
        # env ignores its action, so it is neither a guide's nor the policy's step.
        stepping = np.array([episode.is_reset for episode in episodes], dtype=bool)
        guided = np.zeros(len(episodes), dtype=bool)
        labelled = np.zeros(len(episodes), dtype=bool)
        if explore and self.horizon > 0:
            guided = stepping & np.array([episode.t < self.horizon for episode in episodes], dtype=bool)
        if explore:
            labelled = stepping.copy() if self.settings.bc_on == "all" else guided.copy()
        labels = np.zeros(tuple(actions.shape), dtype=np.float32)
        for row in np.flatnonzero(labelled | guided):
            episode = episodes[row]
            seen = guide_observation(self.settings, episode.get_observations(-1), episode.get_infos(-1) or {})
            labels[row] = self.guide.act(seen, episode).reshape(labels[row].shape)
        if guided.any():
            actions = actions.clone() if tensor else np.array(actions, copy=True)
            for row in np.flatnonzero(guided):
                actions[row] = torch.as_tensor(labels[row], dtype=actions.dtype) if tensor else labels[row]
            batch[Columns.ACTIONS] = actions
        if isinstance(self.guide, CheckpointGuide):
            self.guide.forget({episode.id_ for episode in episodes})
        # One flag per row, shaped like the actions without their last (action) dimension, so RLlib's
        # later pieces (time rank removal, unbatching) treat it like any module output.
        lead = tuple(actions.shape[:-1])

        def column(values: np.ndarray) -> Any:
            shaped = values.reshape(lead) if len(lead) == 1 else values.reshape(len(episodes), *lead[1:])
            return torch.as_tensor(shaped) if tensor else shaped

        batch[GUIDED] = column(guided)
        batch[BC_LABEL] = column(labelled)
        batch[GUIDE_ACTION] = torch.as_tensor(labels).to(actions.device) if tensor else labels
        if metrics is not None:
            counts = {
                GUIDE_STEPS: int(guided.sum()),
                POLICY_STEPS: int((stepping & ~guided).sum()),
                LABEL_STEPS: int(labelled.sum()),
            }
            for key, value in counts.items():
                metrics.log_value(key, value, reduce="sum")
                metrics.log_value(key + LIFETIME, value, reduce="lifetime_sum")
        return batch


def set_guide_horizon(env_runner: Any, horizon: int) -> bool:
    """Sets the horizon of the GuideActions piece of ``env_runner``'s module-to-env pipeline; whether
    it has one. Module-level so Ray can ship it to remote EnvRunners."""
    pipeline = getattr(env_runner, "_module_to_env", None)
    pieces = [c for c in getattr(pipeline, "connectors", []) if isinstance(c, GuideActions)]
    for piece in pieces:
        piece.horizon = int(horizon)
    return bool(pieces)


def guide_horizons(env_runner: Any) -> list[int]:
    """The horizons ``env_runner``'s GuideActions pieces hold (empty: no guide there)."""
    pipeline = getattr(env_runner, "_module_to_env", None)
    return [c.horizon for c in getattr(pipeline, "connectors", []) if isinstance(c, GuideActions)]
