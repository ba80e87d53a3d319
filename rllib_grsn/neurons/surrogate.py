"""Heaviside firing function with the arc-tangent surrogate gradient (paper Eq. 5-6).

The forward pass is the exact step function Θ of Eq. 5 (Θ(0) = 1, so a neuron whose membrane
sits exactly on the threshold fires). The backward pass replaces Θ' (zero almost everywhere)
by the derivative of the smooth ATan surrogate h of Eq. 6:

    h(x)  = arctan(pi/2 * alpha * x) / pi + 1/2
    h'(x) = alpha / (2 * (1 + (pi/2 * alpha * x)**2))
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

__all__ = ["ATanSpike", "atan_spike", "atan_surrogate_grad"]

_HALF_PI = math.pi / 2.0


def atan_surrogate_grad(x: Tensor, alpha: float | Tensor) -> Tensor:
    """h'(x) of Eq. 6: the surrogate derivative used in place of Θ'(x)."""
    return alpha / (2.0 * (1.0 + (_HALF_PI * alpha * x) ** 2))


class ATanSpike(torch.autograd.Function):
    """Θ(x) forward (Eq. 5), ATan surrogate derivative backward (Eq. 6).

    Only ``x`` receives a gradient: ``alpha`` is a hyper-parameter (possibly scheduled during
    training), not something the optimiser should tune through the spike non-linearity.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, alpha: float | Tensor) -> Tensor:
        if isinstance(alpha, Tensor):
            ctx.save_for_backward(x, alpha)
            ctx.alpha_is_tensor = True
        else:
            ctx.save_for_backward(x)
            ctx.alpha = float(alpha)
            ctx.alpha_is_tensor = False
        # ``>=`` rather than ``>``: Eq. 5 defines Θ(0) = 1.
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor | None, None]:
        if ctx.alpha_is_tensor:
            x, alpha = ctx.saved_tensors
        else:
            (x,) = ctx.saved_tensors
            alpha = ctx.alpha
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = grad_output * atan_surrogate_grad(x, alpha).to(grad_output.dtype)
        return grad_x, None


def atan_spike(x: Tensor, alpha: float | Tensor = 2.0) -> Tensor:
    """Spike function Θ(x) (Eq. 5) whose gradient is the ATan surrogate h'(x) (Eq. 6).

    Args:
        x: membrane potential minus threshold, ``u_t - theta`` (any shape, float32 or float64).
        alpha: surrogate width (Eq. 6); larger means a sharper, more step-like gradient.
            A tensor must broadcast against ``x``.

    Returns:
        Tensor of 0./1. spikes with the dtype and shape of ``x``.
    """
    if not (torch.is_grad_enabled() and x.requires_grad):
        # Acting (no_grad) needs only the forward pass; skipping the autograd.Function machinery
        # matters because RLlib calls the module once per env step.
        return (x >= 0).to(x.dtype)
    return ATanSpike.apply(x, alpha)
