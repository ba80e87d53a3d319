"""Ray Tune sweeps of tuned_examples experiments: search spaces in the YAML's ``config``, the ``tune:``
section, and the seed-grouped summary printed at the end."""

from rllib_grsn.sweep.search_space import SearchDomain, param_space, sampled_values, split_search_space
from rllib_grsn.sweep.settings import METRIC_ALIASES, TuneSettings, parse_tune_settings

__all__ = [
    "METRIC_ALIASES",
    "SearchDomain",
    "TuneSettings",
    "param_space",
    "parse_tune_settings",
    "sampled_values",
    "split_search_space",
]
