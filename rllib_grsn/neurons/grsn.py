"""Gated recurrent spiking neuron (GRSN, paper Section 4.3, Eq. 12-14 with Eq. 1, 4-6).

GRSN changes the LIF neuron in three ways (paper Section 4.3): a learnable per-neuron decay,
a soft reset (Eq. 12) and a gated recurrent input current (Eq. 13-14). The paper's analysis
(Section 4.2) shows the gradient flows mostly through the current ``c``, which is why the
memory is added there rather than on the membrane.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from rllib_grsn.neurons.lif import SpikingCell
from rllib_grsn.neurons.surrogate import atan_spike

__all__ = ["GRSNCell"]

# The decay is evaluated as sigmoid(clamp(logit)). Without the clamp a large optimiser step
# can saturate sigmoid to exactly 0.0 or 1.0 in float32, which freezes the membrane (beta=1)
# or erases it every step (beta=0). sigmoid(+-15) is still strictly inside (0, 1) in float32.
DECAY_LOGIT_LIMIT = 15.0


class GRSNCell(SpikingCell):
    """Gated recurrent spiking neuron, one update per env step (TAP).

    * Eq. 14: ``F(x) = sigmoid(W_f x + b_f)`` (``self.forget_gate``),
      ``J(x) = relu(W_i x + b_i)`` (``self.input_gate``).
    * Eq. 13: ``c_t = F(x_t) * c_{t-1} + (1 - F(x_t)) * J(x_t)``.
    * Eq. 1: ``u_t = beta * u_hat_{t-1} + (1 - beta) * c_t`` with a per-neuron decay ``beta[H]``.
    * Eq. 4-6: ``o_t = Θ(u_t - theta)``, Θ(0) = 1, ATan surrogate gradient.
    * Eq. 12: soft reset ``u_hat_t = u_t - theta * o_t`` (not detached).

    ``beta = sigmoid(decay_logit)`` so that it stays inside (0, 1) whatever the optimiser does.

    Args:
        input_size: features of ``x_t``.
        hidden_size: number of neurons ``H``.
        decay: initial beta of every neuron, strictly inside (0, 1).
        threshold: theta of Eq. 4, > 0.
        alpha: surrogate width of Eq. 6, > 0.
        learnable_decay: if False ``decay_logit`` is a (saved) buffer and beta stays constant.
    """

    fused_kind = "grsn"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        *,
        decay: float = 0.5,
        threshold: float = 1.0,
        alpha: float = 2.0,
        learnable_decay: bool = True,
    ) -> None:
        super().__init__(input_size, hidden_size, decay=decay, threshold=threshold, alpha=alpha)
        self.learnable_decay = learnable_decay
        self.forget_gate = nn.Linear(input_size, hidden_size)
        self.input_gate = nn.Linear(input_size, hidden_size)
        logit = torch.full((hidden_size,), math.log(self.decay / (1.0 - self.decay)))
        if learnable_decay:
            self.decay_logit = nn.Parameter(logit)
        else:
            self.register_buffer("decay_logit", logit)

    @property
    def beta(self) -> Tensor:
        """Per-neuron decay of Eq. 1, ``sigmoid(decay_logit)``, shape ``[H]``, inside (0, 1)."""
        logit = self.decay_logit
        clamped = logit.clamp(-DECAY_LOGIT_LIMIT, DECAY_LOGIT_LIMIT)
        # Straight-through clamp: the value is bounded but the gradient is kept, so an
        # over-shot logit can still be pulled back by the optimiser.
        return torch.sigmoid(logit + (clamped - logit).detach())

    def project_parts(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Eq. 14 for both gates over all rows at once: ``(J(x), F(x))``, each ``[N, H]``
        (:meth:`project` concatenates them as ``[F(x) | J(x)]``)."""
        return torch.relu(self.input_gate(x)), torch.sigmoid(self.forget_gate(x))

    def dynamics(self, proj_t: Tensor, u: Tensor, c: Tensor, beta: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        forget, drive = proj_t.split(self.hidden_size, dim=-1)
        # lerp(a, b, w) = a + w * (b - a) = w * b + (1 - w) * a: one op instead of four, which
        # matters because this runs once per env step when acting and T times per training chunk.
        c = torch.lerp(drive, c, forget)  # Eq. 13: F * c_{t-1} + (1 - F) * J
        u = torch.lerp(c, u, beta)  # Eq. 1: beta * u_hat_{t-1} + (1 - beta) * c_t
        o = atan_spike(u - self.threshold, self.alpha)  # Eq. 4-6
        u_hat = torch.add(u, o, alpha=-self.threshold)  # Eq. 12: u_t - theta * o_t
        return o, u_hat, c

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, learnable_decay={self.learnable_decay}"
