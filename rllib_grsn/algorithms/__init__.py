"""Algorithms the `rllib` command runs by name, and which spiking RLModule each one trains."""

from rllib_grsn.algorithms.registry import ALGORITHM_NAMES, get_algorithm_class, spiking_module_class

__all__ = ["ALGORITHM_NAMES", "get_algorithm_class", "spiking_module_class"]
