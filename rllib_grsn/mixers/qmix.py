"""QMIX monotonic value-mixing network (Rashid et al., 2018).

Rashid, T., Samvelyan, M., Schroeder de Witt, C., Farquhar, G., Foerster, J., Whiteson, S.
"QMIX: Monotonic Value Function Factorisation for Deep Multi-Agent Reinforcement Learning."
ICML 2018 (arXiv:1803.11485).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _check_positive_int(name: str, value: object) -> int:
    # bool is a subclass of int; QMixer(3, True) is almost certainly a mistake, not state_dim=1.
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def _weight_hypernet(state_dim: int, hidden: int, out: int, layers: int) -> nn.Module:
    if layers == 1:
        return nn.Linear(state_dim, out)
    return nn.Sequential(nn.Linear(state_dim, hidden), nn.ReLU(), nn.Linear(hidden, out))


class QMixer(nn.Module):
    """Monotonic mixing network: ``Q_tot = f_s(Q_1, ..., Q_n)`` with ``dQ_tot/dQ_a >= 0``.

    Two mixing layers act on the agent utilities::

        h     = ELU(Q @ |W1(s)| + b1(s))          W1: [n_agents, embed_dim], b1: [embed_dim]
        Q_tot = h @ |W2(s)| + V(s)                W2: [embed_dim, 1],        V: scalar

    The mixing weights and biases are not parameters but outputs of hypernetworks fed with the
    global state ``s``, so ``Q_tot`` can depend on the state in arbitrary (non-monotonic) ways
    while staying monotonic in every agent utility.

    Why monotonic: if ``Q_tot`` is non-decreasing in each ``Q_a``, then the joint action that
    maximises ``Q_tot`` is the tuple of per-agent ``argmax_u Q_a(tau_a, u)``. Decentralised greedy
    execution is therefore consistent with the centralised value used for training, and the max
    over the exponential joint-action space in the TD target costs ``n_agents`` independent maxes.
    The constraint is enforced by taking ``abs()`` of the hypernetwork outputs for ``W1`` and
    ``W2`` and by using a monotonic activation (ELU); the biases are unconstrained because they do
    not multiply any ``Q_a``.

    Args:
        n_agents: number of agents (size of the last dim of ``agent_qs``).
        state_dim: size of the last dim of ``states``.
        embed_dim: width of the mixing hidden layer.
        hypernet_hidden: hidden width of the weight hypernetworks when ``hypernet_layers == 2``
            (pymarl2's ``hypernet_embed``); validated but unused when ``hypernet_layers == 1``.
        hypernet_layers: 1 -> each weight hypernet is a single ``Linear(state_dim, out)``;
            2 -> ``Linear(state_dim, hypernet_hidden) -> ReLU -> Linear(hypernet_hidden, out)``.

    Shapes:
        ``forward(agent_qs [..., n_agents], states [..., state_dim]) -> q_tot [..., 1]``; the
        leading dims (e.g. ``[B]`` or ``[B, T]``) must be identical for both inputs.
    """

    def __init__(
        self,
        n_agents: int,
        state_dim: int,
        embed_dim: int = 32,
        hypernet_hidden: int = 64,
        hypernet_layers: int = 2,
    ) -> None:
        super().__init__()
        self.n_agents = _check_positive_int("n_agents", n_agents)
        self.state_dim = _check_positive_int("state_dim", state_dim)
        self.embed_dim = _check_positive_int("embed_dim", embed_dim)
        self.hypernet_hidden = _check_positive_int("hypernet_hidden", hypernet_hidden)
        _check_positive_int("hypernet_layers", hypernet_layers)
        if hypernet_layers not in (1, 2):
            raise ValueError(f"hypernet_layers must be 1 or 2, got {hypernet_layers!r}")
        self.hypernet_layers = hypernet_layers

        self.hyper_w1 = _weight_hypernet(state_dim, hypernet_hidden, n_agents * embed_dim, hypernet_layers)
        self.hyper_b1 = nn.Linear(state_dim, embed_dim)
        self.hyper_w2 = _weight_hypernet(state_dim, hypernet_hidden, embed_dim, hypernet_layers)
        # The final bias is a small MLP rather than a Linear so the state-value offset V(s) can be
        # non-linear in s; it never multiplies a Q_a, so it needs no sign constraint.
        self.hyper_b2 = nn.Sequential(nn.Linear(state_dim, embed_dim), nn.ReLU(), nn.Linear(embed_dim, 1))

    def forward(self, agent_qs: torch.Tensor, states: torch.Tensor | None = None) -> torch.Tensor:
        """Mix ``agent_qs [..., n_agents]`` conditioned on ``states [..., state_dim]`` into ``[..., 1]``."""
        if states is None:
            raise ValueError(
                f"states: expected shape [..., {self.state_dim}], got None (QMIX needs the state)"
            )
        if agent_qs.dim() < 1 or agent_qs.shape[-1] != self.n_agents:
            raise ValueError(
                f"agent_qs: expected shape [..., {self.n_agents}] (n_agents last), "
                f"got {tuple(agent_qs.shape)}"
            )
        lead = agent_qs.shape[:-1]
        expected_states = (*lead, self.state_dim)
        if tuple(states.shape) != expected_states:
            raise ValueError(f"states: expected shape {expected_states}, got {tuple(states.shape)}")

        # Flatten all leading dims into one batch so one bmm handles [B], [B, T], ... alike.
        qs = agent_qs.reshape(-1, 1, self.n_agents)
        s = states.reshape(-1, self.state_dim)

        w1 = torch.abs(self.hyper_w1(s)).view(-1, self.n_agents, self.embed_dim)
        b1 = self.hyper_b1(s).view(-1, 1, self.embed_dim)
        hidden = F.elu(torch.bmm(qs, w1) + b1)

        w2 = torch.abs(self.hyper_w2(s)).view(-1, self.embed_dim, 1)
        b2 = self.hyper_b2(s).view(-1, 1, 1)
        q_tot = torch.bmm(hidden, w2) + b2
        return q_tot.reshape(*lead, 1)
