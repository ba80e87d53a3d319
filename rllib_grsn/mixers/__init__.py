"""Value-mixing networks for cooperative multi-agent Q-learning (QMIX, VDN).

Both mixers take per-agent utilities ``agent_qs`` of shape ``[..., n_agents]`` (any leading dims,
e.g. ``[B, n_agents]`` or ``[B, T, n_agents]``) plus optional global ``states`` ``[..., state_dim]``
and return the joint value ``q_tot`` of shape ``[..., 1]`` (the agent dim is reduced to a trailing
singleton, so it lines up with a ``[..., 1]`` team reward / done tensor without a reshape).
"""

from rllib_grsn.mixers.qmix import QMixer
from rllib_grsn.mixers.vdn import VDNMixer

__all__ = ["QMixer", "VDNMixer"]
