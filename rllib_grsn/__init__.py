"""rllib_grsn: spiking recurrent RL agents (GRSN, LIF) on Ray RLlib's new API stack."""

__version__ = "0.1.0"
