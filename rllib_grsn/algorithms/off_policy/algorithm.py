"""Recurrent TD3 and SAC as RLlib Algorithms (new API stack).

One ``training_step``: the EnvRunners act ``rollout_fragment_length`` steps (states carried by RLlib's
connectors, one neuron update per env step), the episodes go into a :class:`SequenceReplayBuffer`,
then ``num_updates_per_env_step`` gradient steps per sampled env step each train on a fresh batch of
windows, and the new weights go back to the EnvRunners. RLlib's ``Algorithm.train`` repeats this
until ``min_sample_timesteps_per_iteration`` env steps make one iteration (and runs evaluation per
``evaluation_interval``). The replay buffer is saved with every checkpoint (``store_buffer_in_checkpoints``),
so a resumed run continues on the same data.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.columns import Columns
from ray.rllib.policy.sample_batch import MultiAgentBatch, SampleBatch
from ray.rllib.utils.annotations import override
from ray.rllib.utils.metrics import (
    ALL_MODULES,
    ENV_RUNNER_RESULTS,
    LEARNER_RESULTS,
    LEARNER_UPDATE_TIMER,
    NUM_ENV_STEPS_SAMPLED_LIFETIME,
    REPLAY_BUFFER_ADD_DATA_TIMER,
    REPLAY_BUFFER_SAMPLE_TIMER,
    TIMERS,
)

from rllib_grsn.algorithms.guide import BC_LABEL, GUIDE_ACTION, GUIDED
from rllib_grsn.algorithms.guide.connector import set_guide_horizon
from rllib_grsn.algorithms.off_policy.config import RecurrentOffPolicyConfig, RecurrentSACConfig, TD3Config
from rllib_grsn.algorithms.replay import SequenceReplayBuffer
from rllib_grsn.algorithms.sampling import sample_episodes, sync_acting_weights

REPLAY_STATE_KEY = "sequence_replay_buffer"
UPDATE_CREDIT_KEY = "update_credit"

# SequenceReplayBuffer's keys -> RLlib's column names in the train batch.
_BATCH_COLUMNS = {
    "obs": Columns.OBS,
    "next_obs": Columns.NEXT_OBS,
    "actions": Columns.ACTIONS,
    "rewards": Columns.REWARDS,
    "terminateds": Columns.TERMINATEDS,
    "loss_mask": Columns.LOSS_MASK,
    "state_in": Columns.STATE_IN,
    "guided": GUIDED,
    "bc_label": BC_LABEL,
    "guide_action": GUIDE_ACTION,
}
# Result key of the jump-start horizon the guide acted with in the last training step.
GUIDE_HORIZON_KEY = "guide_horizon"


class RecurrentOffPolicy(Algorithm):
    """Shared training loop of :class:`TD3` and :class:`RecurrentSAC`."""

    config: RecurrentOffPolicyConfig

    @override(Algorithm)
    def setup(self, config: RecurrentOffPolicyConfig) -> None:
        super().setup(config)
        initial_state = self._module_initial_state() or None
        self.replay_buffer = SequenceReplayBuffer(
            capacity=self.config.replay_capacity,
            seed=self.config.seed,
            initial_state=initial_state,
            # Zero-state windows never read the recorded states, by far the largest per-step record.
            store_state_out=self.config.replay_start_state == "stored",
        )
        # Fractional updates carried over between steps (num_updates_per_env_step need not be an integer).
        self._update_credit = 0.0
        # The jump-start horizon last sent to the EnvRunners (None: not sent yet).
        self._guide_horizon: int | None = None

    def _module_initial_state(self) -> dict[str, Any]:
        """The module's per-sample initial state ({} when stateless), from wherever a copy lives."""
        module = getattr(self.env_runner, "module", None) if self.env_runner is not None else None
        if module is not None:
            return module.get_initial_state()
        results = self.learner_group.foreach_learner(
            lambda learner: learner.module[DEFAULT_MODULE_ID].unwrapped().get_initial_state()
        )
        return next(iter(results)).get()  # RemoteCallResults: one ResultOrError per learner

    def _sync_guide_horizon(self) -> None:
        """Sends the jump-start horizon at the lifetime env steps to the training EnvRunners (only
        when it changed). Evaluation EnvRunners are a separate group and never receive one."""
        settings = getattr(self.config, "guide_settings", None)
        if settings is None:
            return
        sampled = self.metrics.peek((ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME), default=0)
        horizon = settings.horizon_at(sampled)
        if horizon != self._guide_horizon:
            self.env_runner_group.foreach_env_runner(
                functools.partial(set_guide_horizon, horizon=horizon), local_env_runner=True
            )
            self._guide_horizon = horizon
        self.metrics.log_value(GUIDE_HORIZON_KEY, horizon, window=1)

    @override(Algorithm)
    def training_step(self) -> None:
        cfg = self.config
        self._sync_guide_horizon()
        episodes = sample_episodes(self)
        with self.metrics.log_time((TIMERS, REPLAY_BUFFER_ADD_DATA_TIMER)):
            self.replay_buffer.add(episodes)

        sampled_lifetime = self.metrics.peek((ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME), default=0)
        if sampled_lifetime < cfg.num_steps_sampled_before_learning_starts:
            return
        self._update_credit += sum(len(eps) for eps in episodes) * cfg.num_updates_per_env_step
        num_updates = int(self._update_credit)
        self._update_credit -= num_updates
        if num_updates == 0:
            return

        for _ in range(num_updates):
            with self.metrics.log_time((TIMERS, REPLAY_BUFFER_SAMPLE_TIMER)):
                batch = self.sample_train_batch()
            with self.metrics.log_time((TIMERS, LEARNER_UPDATE_TIMER)):
                learner_results = self.learner_group.update(
                    batch=batch, timesteps={NUM_ENV_STEPS_SAMPLED_LIFETIME: sampled_lifetime}
                )
            self.metrics.aggregate(learner_results, key=LEARNER_RESULTS)

        sync_acting_weights(self, list(set(learner_results[0]) - {ALL_MODULES}))

    def sample_train_batch(self) -> MultiAgentBatch:
        """``train_batch_size_per_learner`` windows from the replay, as RLlib columns."""
        cfg = self.config
        windows = self.replay_buffer.sample(
            cfg.train_batch_size_per_learner,
            seq_len=cfg.window_length,
            burn_in=cfg.burn_in,
            start_state=cfg.replay_start_state,
        )
        columns = {column: windows[key] for key, column in _BATCH_COLUMNS.items()}
        if not columns[Columns.STATE_IN]:
            del columns[Columns.STATE_IN]  # stateless core
        env_steps = int(np.sum(windows["seq_lens"]))
        return MultiAgentBatch({DEFAULT_MODULE_ID: SampleBatch(columns)}, env_steps=env_steps)

    @override(Algorithm)
    def get_state(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        state = super().get_state(*args, **kwargs)
        if self.config.store_buffer_in_checkpoints:
            state[REPLAY_STATE_KEY] = self.replay_buffer.get_state()
        state[UPDATE_CREDIT_KEY] = self._update_credit
        return state

    @override(Algorithm)
    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        if REPLAY_STATE_KEY in state:
            self.replay_buffer.set_state(state[REPLAY_STATE_KEY])
        self._update_credit = float(state.get(UPDATE_CREDIT_KEY, self._update_credit))
        self._guide_horizon = None  # rebuilt EnvRunners hold none; resend it at the next step


class TD3(RecurrentOffPolicy):
    """Recurrent TD3 (Fujimoto et al. 2018) for continuous actions; registered as ``TD3``."""

    @classmethod
    @override(Algorithm)
    def get_default_config(cls) -> TD3Config:
        return TD3Config(cls)


class RecurrentSAC(RecurrentOffPolicy):
    """Recurrent SAC, discrete or continuous; registered as ``RecurrentSAC``."""

    @classmethod
    @override(Algorithm)
    def get_default_config(cls) -> RecurrentSACConfig:
        return RecurrentSACConfig(cls)
