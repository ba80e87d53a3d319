"""Recurrent off-policy algorithms (TD3, SAC) for spiking and GRU cores, on RLlib's new API stack."""

from rllib_grsn.algorithms.off_policy.algorithm import TD3, RecurrentOffPolicy, RecurrentSAC
from rllib_grsn.algorithms.off_policy.config import RecurrentOffPolicyConfig, RecurrentSACConfig, TD3Config

__all__ = [
    "TD3",
    "RecurrentOffPolicy",
    "RecurrentOffPolicyConfig",
    "RecurrentSAC",
    "RecurrentSACConfig",
    "TD3Config",
]
