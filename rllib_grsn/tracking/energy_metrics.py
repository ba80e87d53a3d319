"""Energy per decision logged at every evaluation (paper Section 5.4, Eq. 15-16).

:class:`EnergyMetricsCallback` runs in the evaluation EnvRunners: after each ``sample()`` of greedy
test episodes it measures the module on those very episodes (the inputs it received, state carried
from each episode's start as in acting) with :func:`~rllib_grsn.energy.episodes.episodes_energy`,
and logs, under ``evaluation/env_runners/`` in the algorithm's result:

- ``energy/pj_per_decision``: Eq. 15 + Eq. 16 energy of one decision (one agent, one env step);
- ``energy/sop_spiking``: spike-driven accumulates per decision (Eq. 15, 0.9 pJ each);
- ``energy/mac_dense``: multiply-accumulates per decision (Eq. 16, 4.6 pJ each);
- ``energy/firing_rate/<core>``: spikes per neuron per update of each spiking core.

Runs with several modules log ``energy/<module id>/...`` instead. Training episodes are not measured
(exploration changes the inputs, and it would cost every iteration); a run without evaluation
(``evaluation_interval``) logs no energy. QMIX's mixer is left out here: it runs on the learner, and
its MACs follow from the state size alone (``rllib energy CHECKPOINT`` reports it).
"""

from __future__ import annotations

import logging
from typing import Any

from ray.rllib.callbacks.callbacks import RLlibCallback

from rllib_grsn.energy.episodes import episodes_energy

logger = logging.getLogger(__name__)

ENERGY = "energy"
# Decisions averaged per evaluation and module: enough for a stable mean (firing rates vary far
# less between decisions than between episodes), small enough to cost well under a second.
SAMPLES_PER_EVALUATION = 256


def _starts_at_zero(episode: Any) -> bool:
    """A finished episode recorded from its first step (a chunk cut mid-episode cannot be replayed
    from the zero state: its recurrent state came from the chunk before)."""
    start = getattr(episode, "env_t_started", getattr(episode, "t_started", 0))
    return bool(episode.is_done) and start == 0


class EnergyMetricsCallback(RLlibCallback):
    """Logs the Eq. 15/16 energy of the acting module on each evaluation's greedy episodes."""

    samples: int = SAMPLES_PER_EVALUATION

    def on_sample_end(
        self, *, env_runner: Any = None, metrics_logger: Any = None, samples: Any = None, **kwargs: Any
    ) -> None:
        if env_runner is None or metrics_logger is None or not env_runner.config.in_evaluation:
            return
        episodes = [e for e in samples or [] if _starts_at_zero(e)]
        if not episodes:
            return
        try:
            results = episodes_energy(
                env_runner.module, episodes, samples=self.samples, require_samples=False
            )
        except TypeError as err:  # not one of this package's modules: nothing to count
            logger.debug("no energy metrics: %s", err)
            return
        for mid, measured in results.items():
            prefix: tuple[str, ...] = (ENERGY,) if len(results) == 1 else (ENERGY, mid)
            report = measured.agent
            values = {
                "pj_per_decision": report.pj_per_decision,
                "sop_spiking": report.sop_spiking,
                "mac_dense": report.mac_dense,
            }
            values |= {f"firing_rate/{core}": rate for core, rate in report.core_firing_rates.items()}
            for key, value in values.items():
                # window=1: each evaluation reports its own measurement, not a running mean.
                metrics_logger.log_value((*prefix, *key.split("/")), float(value), reduce="mean", window=1)
