"""Environments, registered on import.

- Partially observable control (``CartPole-P`` ...): gymnasium ids and Ray Tune names.
- Multi-agent envs for QMIX (``smac``, ``mpe_simple_spread``, ``two_step_game``): Ray Tune names.
  Their simulators (StarCraft II, JaxMARL, mpe2) are imported only when an env is built.
"""

from rllib_grsn.envs.multi_agent import (
    MULTI_AGENT_ENVS,
    make_multi_agent_env,
    register_multi_agent_envs,
    resolve_smac_backend,
)
from rllib_grsn.envs.po_control import (
    PO_CONTROL_ENVS,
    ObservationMask,
    make_po_control,
    register_po_control_envs,
)

register_po_control_envs()
register_multi_agent_envs()

__all__ = [
    "MULTI_AGENT_ENVS",
    "PO_CONTROL_ENVS",
    "ObservationMask",
    "make_multi_agent_env",
    "make_po_control",
    "register_multi_agent_envs",
    "register_po_control_envs",
    "resolve_smac_backend",
]
