"""QMIX and VDN as an RLlib Algorithm (new API stack, multi-agent).

One ``training_step`` (pymarl's parallel runner loop): the EnvRunners act ``rollout_fragment_length``
steps in each sub-env with the shared agent module (epsilon-greedy over available actions, each
agent's ``(u, c)`` carried by RLlib's connectors), the episodes that finished go into a
:class:`TeamEpisodeReplay` as team arrays (the chunks of battles still running wait there for the
rest), then ``num_updates_per_episode`` gradient steps per finished episode each train on
``train_batch_size_per_learner`` whole episodes, targets are copied every ``target_update_interval``
episodes, and the new agent weights go back to the EnvRunners. With ``overlap_updates`` the gradient steps
owed for earlier steps' episodes run in a learner thread while the EnvRunners sample (same batches and
updates, the acting weights one step older). RLlib's ``Algorithm.train`` repeats this until
``min_sample_timesteps_per_iteration`` env steps make an iteration, and runs the greedy test
episodes (``evaluation_interval``), which report ``win_rate`` through
:class:`~rllib_grsn.tracking.team_metrics.TeamMetricsCallback`.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.policy.sample_batch import MultiAgentBatch, SampleBatch
from ray.rllib.utils.annotations import override
from ray.rllib.utils.metrics import (
    ENV_RUNNER_RESULTS,
    LEARNER_RESULTS,
    LEARNER_UPDATE_TIMER,
    NUM_ENV_STEPS_SAMPLED_LIFETIME,
    REPLAY_BUFFER_ADD_DATA_TIMER,
    REPLAY_BUFFER_SAMPLE_TIMER,
    TIMERS,
)

from rllib_grsn.algorithms.qmix.config import SHARED_MODULE_ID, QMixConfig
from rllib_grsn.algorithms.qmix.episode_replay import TeamEpisodeReplay
from rllib_grsn.algorithms.sampling import sample_episodes, sync_acting_weights

REPLAY_STATE_KEY = "team_episode_replay"
COUNTERS_KEY = "qmix_counters"


class QMix(Algorithm):
    """QMIX (``mixer: qmix``) or VDN (``mixer: vdn``); registered as ``QMIX`` and ``VDN``."""

    config: QMixConfig

    @classmethod
    @override(Algorithm)
    def get_default_config(cls) -> QMixConfig:
        return QMixConfig(cls)

    @override(Algorithm)
    def setup(self, config: QMixConfig) -> None:
        super().setup(config)
        self.replay_buffer = TeamEpisodeReplay(self.config.replay_capacity, seed=self.config.seed)
        # Fractional updates carried between iterations (num_updates_per_episode need not be whole).
        self._update_credit = 0.0
        self._episodes_at_target_update = 0
        self.num_gradient_steps = 0
        # overlap_updates: one thread runs the gradient steps while this one samples.
        self._learner_thread = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="qmix-learner")
            if self.config.overlap_updates
            else None
        )

    @override(Algorithm)
    def training_step(self) -> None:
        cfg = self.config
        in_flight = None
        if self._learner_thread is not None:
            # The gradient steps owed for the episodes of earlier steps run while this step samples;
            # their batches are drawn first, so the replay is not read while episodes are added.
            batches = self._owed_batches()
            if batches:
                in_flight = self._learner_thread.submit(
                    self._gradient_steps, batches, self._sampled_lifetime()
                )
        episodes = sample_episodes(self)
        if in_flight is not None:
            self._after_gradient_steps(in_flight.result())

        with self.metrics.log_time((TIMERS, REPLAY_BUFFER_ADD_DATA_TIMER)):
            finished = self.replay_buffer.add(episodes)  # whole episodes; chunks of running ones wait
        self.metrics.log_value("replay_episodes", len(self.replay_buffer), window=1)
        if len(self.replay_buffer) < max(cfg.num_episodes_before_learning_starts, 1):
            return
        self._update_credit += finished * cfg.num_updates_per_episode
        if self._learner_thread is None:
            batches = self._owed_batches()
            if batches:
                self._after_gradient_steps(self._gradient_steps(batches, self._sampled_lifetime()))

    def _owed_batches(self) -> list[MultiAgentBatch]:
        """One replay batch per whole gradient step of the update credit (the fraction stays owed)."""
        num_updates = int(self._update_credit)
        self._update_credit -= num_updates
        with self.metrics.log_time((TIMERS, REPLAY_BUFFER_SAMPLE_TIMER)):
            return [self.replay_batch() for _ in range(num_updates)]

    def _sampled_lifetime(self) -> int:
        return self.metrics.peek((ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME), default=0)

    def _gradient_steps(
        self, batches: list[MultiAgentBatch], sampled_lifetime: int
    ) -> list[tuple[Any, float]]:
        """One learner update per batch: their results and seconds. Runs in the learner thread with
        ``overlap_updates``, so it touches only the learner, not the Algorithm's metrics."""
        out = []
        for batch in batches:
            start = time.perf_counter()
            results = self.learner_group.update(
                batch=batch, timesteps={NUM_ENV_STEPS_SAMPLED_LIFETIME: sampled_lifetime}
            )
            out.append((results, time.perf_counter() - start))
        return out

    def _after_gradient_steps(self, steps: list[tuple[Any, float]]) -> None:
        """Logs the updates' results, copies the target networks when due, sends the new weights out."""
        for learner_results, seconds in steps:
            self.metrics.log_value((TIMERS, LEARNER_UPDATE_TIMER), seconds)
            self.metrics.aggregate(learner_results, key=LEARNER_RESULTS)
            self.num_gradient_steps += 1
        if (
            self.replay_buffer.num_added - self._episodes_at_target_update
            >= self.config.target_update_interval
        ):
            self.learner_group.foreach_learner(lambda learner: learner.update_target_networks())
            self._episodes_at_target_update = self.replay_buffer.num_added
        sync_acting_weights(self, [SHARED_MODULE_ID])

    @override(Algorithm)
    def cleanup(self) -> None:
        if self._learner_thread is not None:
            self._learner_thread.shutdown(wait=True)
        super().cleanup()

    def replay_batch(self) -> MultiAgentBatch:
        """``train_batch_size_per_learner`` whole episodes from the replay, for the shared module."""
        arrays = self.replay_buffer.sample(self.config.train_batch_size_per_learner)
        env_steps = int(arrays["filled"].sum())
        return MultiAgentBatch({SHARED_MODULE_ID: SampleBatch(arrays)}, env_steps=env_steps)

    @override(Algorithm)
    def get_state(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        state = super().get_state(*args, **kwargs)
        if self.config.store_buffer_in_checkpoints:
            state[REPLAY_STATE_KEY] = self.replay_buffer.get_state()
        state[COUNTERS_KEY] = {
            "update_credit": self._update_credit,
            "episodes_added": self.replay_buffer.num_added,
            "episodes_at_target_update": self._episodes_at_target_update,
            "num_gradient_steps": self.num_gradient_steps,
        }
        return state

    @override(Algorithm)
    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        if REPLAY_STATE_KEY in state:
            self.replay_buffer.set_state(state[REPLAY_STATE_KEY])
        counters = state.get(COUNTERS_KEY)
        if counters:
            self._update_credit = float(counters["update_credit"])
            self.replay_buffer.num_added = max(self.replay_buffer.num_added, int(counters["episodes_added"]))
            self._episodes_at_target_update = int(counters["episodes_at_target_update"])
            self.num_gradient_steps = int(counters["num_gradient_steps"])


class VDN(QMix):
    """VDN (Sunehag et al. 2018): QMix with the sum mixer; registered as ``VDN``."""

    @classmethod
    @override(Algorithm)
    def get_default_config(cls) -> QMixConfig:
        return QMixConfig(cls).training(mixer="vdn")
