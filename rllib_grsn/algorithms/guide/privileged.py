"""A privileged guide for Pendulum: an energy-pumping swing-up with a PD controller at the top.

It reads the full Pendulum-v1 state ``[cos theta, sin theta, theta_dot]`` (``info['full_obs']`` of
Pendulum-P and Pendulum-V), which the learner never sees whole: a guide for jump-start RL (Uchendu et
al. 2023), used as ``guide: {callable: rllib_grsn.algorithms.guide.privileged:pendulum_swing_up}``.

Pendulum-v1's pole (mass m = 1, length l = 1, g = 10, theta = 0 upright) has energy
``E = theta_dot^2 / 6 + 5 cos(theta)`` (moment of inertia m l^2 / 3, centre of mass at l / 2), 5 at
rest upright. Away from the top the torque pushes along theta_dot while E < 5 (and against it above),
the classic energy-shaping swing-up (Astrom & Furuta 2000); near the top a PD law holds it.
"""

from __future__ import annotations

import numpy as np

MAX_TORQUE = 2.0
UPRIGHT_ENERGY = 5.0
# Where the PD law takes over (cos theta above this) and its gains, in Pendulum-v1's units.
CATCH_COS = 0.85
KP, KD = 10.0, 2.0


def pendulum_swing_up(observation: np.ndarray) -> np.ndarray:
    """Torque in [-2, 2] for Pendulum-v1's full observation ``[cos theta, sin theta, theta_dot]``."""
    cos_t, sin_t, theta_dot = (float(x) for x in np.asarray(observation, dtype=np.float64)[:3])
    theta = np.arctan2(sin_t, cos_t)
    if cos_t > CATCH_COS:
        torque = -(KP * theta + KD * theta_dot)
    else:
        energy = theta_dot**2 / 6.0 + UPRIGHT_ENERGY * cos_t
        direction = np.sign(theta_dot) if theta_dot != 0.0 else 1.0
        torque = MAX_TORQUE * direction * np.sign(UPRIGHT_ENERGY - energy)
    return np.array([np.clip(torque, -MAX_TORQUE, MAX_TORQUE)], dtype=np.float32)
