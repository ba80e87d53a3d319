"""Environments: partially observable control (``CartPole-P`` ...), registered on import."""

from rllib_grsn.envs.po_control import (
    PO_CONTROL_ENVS,
    ObservationMask,
    make_po_control,
    register_po_control_envs,
)

register_po_control_envs()

__all__ = ["PO_CONTROL_ENVS", "ObservationMask", "make_po_control", "register_po_control_envs"]
