"""VDN: value decomposition by summation (Sunehag et al., 2018).

Sunehag, P., Lever, G., Gruslys, A., et al. "Value-Decomposition Networks For Cooperative
Multi-Agent Learning Based On Team Reward." AAMAS 2018 (arXiv:1706.05296).
"""

from __future__ import annotations

import torch
from torch import nn


class VDNMixer(nn.Module):
    """``Q_tot = sum_a Q_a`` over the agent dimension; no parameters, no state conditioning.

    The sum is trivially monotonic (``dQ_tot/dQ_a = 1``), so the greedy joint action is the tuple
    of per-agent greedy actions, exactly as for :class:`~rllib_grsn.mixers.QMixer`, of which VDN is
    the special case with unit weights and zero biases.

    Call signature and output convention match ``QMixer`` so the two are interchangeable:
    ``forward(agent_qs [..., n_agents], states=None) -> q_tot [..., 1]``. ``states`` is accepted
    and ignored, but its leading dims are still checked against ``agent_qs`` so that a batch
    mix-up is caught even while running the VDN baseline.
    """

    def forward(self, agent_qs: torch.Tensor, states: torch.Tensor | None = None) -> torch.Tensor:
        if agent_qs.dim() < 1:
            raise ValueError(
                f"agent_qs: expected shape [..., n_agents] (at least 1 dim), got {tuple(agent_qs.shape)}"
            )
        if states is not None and (states.dim() < 1 or states.shape[:-1] != agent_qs.shape[:-1]):
            raise ValueError(
                f"states: expected shape [{', '.join(map(str, agent_qs.shape[:-1]))}, state_dim] "
                f"(leading dims of agent_qs), got {tuple(states.shape)}"
            )
        return agent_qs.sum(dim=-1, keepdim=True)
