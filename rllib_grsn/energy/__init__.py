"""Synaptic-operation (SOP) counting and energy estimates (paper Section 5.4, Eq. 15-16, Table 4).

* :mod:`~rllib_grsn.energy.counter` - :class:`OpCounter`: per-decision Eq. 15 spike accumulates
  (0.9 pJ) and Eq. 16 multiply-accumulates (4.6 pJ) of any torch network, from forward hooks while
  it runs on real inputs.
* :mod:`~rllib_grsn.energy.estimate` - :func:`estimate_energy`: averages over sampled decisions of
  observation sequences with the state carried (TAP); :class:`EnergyReport`.
* :mod:`~rllib_grsn.energy.adapters` - what one acting decision runs in our RLModules (QMIX agent,
  QMIX mixer, actor-critic, TD3/SAC actor).
* :mod:`~rllib_grsn.energy.table` - the paper's Table 4 layout and numbers.
"""

from rllib_grsn.energy.adapters import (
    EnergyTarget,
    actor_critic_target,
    qmix_agent_target,
    qmix_mixer_target,
    twin_q_actor_target,
)
from rllib_grsn.energy.counter import (
    MAC_PJ,
    SOP_PJ,
    OpCounter,
    SpikeCheckError,
    SpikeInput,
    recurrent_step_macs,
)
from rllib_grsn.energy.estimate import EnergyReport, LayerEnergy, count_ops, estimate_energy
from rllib_grsn.energy.table import PAPER_TABLE4, Table4Row, format_table4

__all__ = [
    "MAC_PJ",
    "PAPER_TABLE4",
    "SOP_PJ",
    "EnergyReport",
    "EnergyTarget",
    "LayerEnergy",
    "OpCounter",
    "SpikeCheckError",
    "SpikeInput",
    "Table4Row",
    "actor_critic_target",
    "count_ops",
    "estimate_energy",
    "format_table4",
    "qmix_agent_target",
    "qmix_mixer_target",
    "recurrent_step_macs",
    "twin_q_actor_target",
]
