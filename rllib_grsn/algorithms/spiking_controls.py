"""Wires the training controls of ``model_config`` into an AlgorithmConfig that trains our modules.

* ``alpha`` -> :class:`~rllib_grsn.algorithms.surrogate_schedule.SurrogateAlphaSchedule` among the
  callbacks (kept next to the algorithm's own, e.g. QMIX's team metrics). Registered for every
  spiking model, not only when ``alpha`` is a schedule: the experiment is built from the first value
  of each search space, so a sweep that samples ``alpha`` from numbers and schedules would otherwise
  train its schedule trials at their t=0 width. With a number it changes nothing.
* ``firing_rate_penalty`` -> PPO trains with :class:`~rllib_grsn.algorithms.ppo_learner.SpikingPPOLearner`
  (TD3, RecurrentSAC, QMIX and VDN have learners of this package that apply it already).
"""

from __future__ import annotations

from ray.rllib.algorithms.algorithm_config import AlgorithmConfig

from rllib_grsn.algorithms.callbacks import add_callbacks
from rllib_grsn.algorithms.surrogate_schedule import SurrogateAlphaSchedule
from rllib_grsn.modules.model_config import SpikingModelConfig


def add_spiking_training_controls(config: AlgorithmConfig, run: str, spiking: SpikingModelConfig) -> None:
    """Adds what ``spiking``'s training controls need to ``config`` (in place) for algorithm ``run``."""
    add_callbacks(config, SurrogateAlphaSchedule)
    # Set for every PPO run on our module, not only when the penalty is > 0: with 0 the loss is
    # RLlib's bit for bit, the learner logs the firing rate anyway (energy), and a Tune sweep that
    # samples the penalty (the config is built from its first candidate) still trains every trial
    # with the penalty it drew. A learner class the user chose is kept.
    if run == "PPO" and config._learner_class is None:
        from rllib_grsn.algorithms.ppo_learner import SpikingPPOLearner

        config.learners(learner_class=SpikingPPOLearner)
