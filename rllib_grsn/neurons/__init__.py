"""Neuron cores: spiking cells under TAP (LIF, GRSN), baselines (GRU, MLP), and the rate-coded
"without TAP" wrapper, all behind one interface (``initial_state``, ``forward``, ``unroll``)."""

from rllib_grsn.neurons.baselines import GRUCore, MLPCore
from rllib_grsn.neurons.grsn import GRSNCell
from rllib_grsn.neurons.lif import LIFCell, SpikingCell
from rllib_grsn.neurons.rate_coded import RateCodedCore
from rllib_grsn.neurons.registry import CORE_NAMES, SPIKING_CORES, build_core
from rllib_grsn.neurons.spiking_cells import set_surrogate_alpha, spiking_cells
from rllib_grsn.neurons.surrogate import ATanSpike, atan_spike, atan_surrogate_grad

__all__ = [
    "CORE_NAMES",
    "SPIKING_CORES",
    "ATanSpike",
    "GRSNCell",
    "GRUCore",
    "LIFCell",
    "MLPCore",
    "RateCodedCore",
    "SpikingCell",
    "atan_spike",
    "atan_surrogate_grad",
    "build_core",
    "set_surrogate_alpha",
    "spiking_cells",
]
