"""Adding RLlib callbacks to an AlgorithmConfig without replacing the ones it has.

``AlgorithmConfig.callbacks(callbacks_class=...)`` replaces: QMIX's own ``TeamMetricsCallback``
would be lost when the experiment adds the energy or surrogate-schedule callbacks. RLlib 2.60
accepts a list of classes (it builds one object of each and calls them in order), so this keeps
the existing classes first and appends the new ones once.
"""

from __future__ import annotations

from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.callbacks.callbacks import RLlibCallback


def callback_classes(config: AlgorithmConfig) -> list[type[RLlibCallback]]:
    """The callback classes ``config`` runs, as a list (RLlib's default class left out)."""
    current = config.callbacks_class
    classes = list(current) if isinstance(current, list | tuple) else [current]
    return [c for c in classes if c is not None and c is not RLlibCallback]


def add_callbacks(config: AlgorithmConfig, *classes: type[RLlibCallback]) -> AlgorithmConfig:
    """Appends ``classes`` to ``config``'s callbacks (each at most once); returns ``config``."""
    merged = callback_classes(config)
    merged += [c for c in classes if c not in merged]
    config.callbacks(callbacks_class=merged if len(merged) != 1 else merged[0])
    return config
