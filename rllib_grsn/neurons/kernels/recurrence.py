"""Fused sequence recurrence of the spiking cells: one kernel forward, one backward.

:func:`fused_recurrence` runs the element-wise part of ``T`` neuron updates (Eq. 13 for GRSN,
Eq. 1, the spike of Eq. 4-5 with the surrogate of Eq. 6, the reset of Eq. 12 or Eq. 3) on
projections the caller computed for all steps at once (the synaptic layers read only the input,
Eq. 2 and 14, so that is one matrix product over B*T rows). The backend follows the device:

* CPU: the C++ kernel in ``spiking_recurrence.cpp`` (built on first use, see :mod:`.cpu`);
* CUDA: the Triton kernels in :mod:`.triton_recurrence`.

Where neither can run (no compiler, no Triton, another device or dtype) :func:`can_fuse` says so
and logs once why; the cell then takes its step-by-step reference loop, which is also the tests'
oracle. ``RLLIB_GRSN_KERNEL`` (or :func:`use_kernel`) chooses: ``auto`` (default: fused where it
can run), ``reference`` (always the loop) or ``fused`` (fail loudly instead of falling back).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any, Protocol

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

__all__ = [
    "KERNEL_MODES",
    "FusedKernelUnavailable",
    "can_fuse",
    "fused_backend_name",
    "fused_recurrence",
    "kernel_mode",
    "use_kernel",
]

logger = logging.getLogger(__name__)

KERNEL_ENV = "RLLIB_GRSN_KERNEL"
KERNEL_MODES = ("auto", "fused", "reference")
KINDS = {"lif": 0, "grsn": 1}
_DTYPES = (torch.float32, torch.float64)

_mode_override: str | None = None
_warned: set[str] = set()


class FusedKernelUnavailable(RuntimeError):
    """``RLLIB_GRSN_KERNEL=fused`` was asked for where no fused kernel can run."""


class _Backend(Protocol):
    def spiking_forward(self, *args: Any) -> tuple[Tensor, Tensor, Tensor, Tensor]: ...
    def spiking_backward(self, *args: Any) -> tuple[Tensor, ...]: ...


def kernel_mode() -> str:
    """The active mode: :func:`use_kernel`'s, else ``$RLLIB_GRSN_KERNEL``, else ``auto``."""
    mode = _mode_override or os.environ.get(KERNEL_ENV, "auto").strip().lower() or "auto"
    if mode not in KERNEL_MODES:
        raise ValueError(f"{KERNEL_ENV}={mode!r}; choose one of: {', '.join(KERNEL_MODES)}")
    return mode


@contextlib.contextmanager
def use_kernel(mode: str) -> Iterator[None]:
    """Within the block, unrolls use ``mode`` (``auto`` | ``fused`` | ``reference``)."""
    global _mode_override
    if mode not in KERNEL_MODES:
        raise ValueError(f"unknown kernel mode {mode!r}; choose one of: {', '.join(KERNEL_MODES)}")
    previous, _mode_override = _mode_override, mode
    try:
        yield
    finally:
        _mode_override = previous


def _backend_for(device: torch.device) -> tuple[_Backend | None, str]:
    """The kernels for ``device``, or ``None`` and the reason they cannot run there."""
    if device.type == "cpu":
        from rllib_grsn.neurons.kernels.cpu import load_cpu_ops

        ops = load_cpu_ops()
        return (ops, "") if ops is not None else (None, "the C++ kernel could not be built")
    if device.type == "cuda":
        try:
            from rllib_grsn.neurons.kernels import triton_recurrence
        except ImportError as exc:
            return None, f"triton is not installed ({exc})"
        return triton_recurrence, ""
    return None, f"no fused kernel for device type {device.type!r}"


def fused_backend_name(device: torch.device | str = "cpu") -> str | None:
    """``"cpp"`` / ``"triton"`` when a fused kernel can run on ``device``, else ``None``."""
    device = torch.device(device)
    backend, _ = _backend_for(device)
    if backend is None:
        return None
    return "cpp" if device.type == "cpu" else "triton"


def _fallback(reason: str) -> None:
    if kernel_mode() == "fused":
        raise FusedKernelUnavailable(f"{KERNEL_ENV}=fused, but {reason}")
    if reason not in _warned:
        _warned.add(reason)
        logger.warning("fused spiking kernel not used: %s; unrolling step by step (reference path)", reason)


class _FusedSpikingRecurrence(torch.autograd.Function):
    """Autograd node of one fused unroll: ``(drive, forget, u0, c0, beta) -> (spikes, u_hat_T, c_T)``."""

    @staticmethod
    def forward(
        ctx: Any,
        drive: Tensor,
        forget: Tensor | None,
        u0: Tensor,
        c0: Tensor,
        beta: Tensor,
        threshold: float,
        alpha: float,
        kind: int,
        backend: _Backend,
    ) -> tuple[Tensor, Tensor, Tensor]:
        spikes, membrane, current, u_last = backend.spiking_forward(
            drive, forget, u0, c0, beta, threshold, kind
        )
        ctx.save_for_backward(drive, forget, u0, c0, beta, membrane, current)
        ctx.threshold, ctx.alpha, ctx.kind, ctx.backend = threshold, alpha, kind, backend
        # A copy, not a view of `current`: autograd refuses in-place use of views of saved tensors.
        return spikes, u_last, current[:, -1].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_spikes: Tensor, grad_u_last: Tensor, grad_c_last: Tensor) -> tuple:
        drive, forget, u0, c0, beta, membrane, current = ctx.saved_tensors
        grad_drive, grad_forget, grad_u0, grad_c0, grad_beta = ctx.backend.spiking_backward(
            grad_spikes, grad_u_last, grad_c_last, drive, forget, u0, c0, beta, membrane, current,
            ctx.threshold, ctx.alpha, ctx.kind,
        )  # fmt: skip
        grad_forget = grad_forget if forget is not None and ctx.needs_input_grad[1] else None
        grad_beta = grad_beta.sum(dim=0) if ctx.needs_input_grad[4] else None
        return grad_drive, grad_forget, grad_u0, grad_c0, grad_beta, None, None, None, None


def can_fuse(reference: Tensor) -> bool:
    """Whether :func:`fused_recurrence` will run for tensors like ``reference`` (mode, device and
    dtype); logs once why not, or raises :class:`FusedKernelUnavailable` in ``fused`` mode."""
    if kernel_mode() == "reference":
        return False
    if reference.dtype not in _DTYPES:
        _fallback(f"fused kernels take float32/float64 tensors, got {reference.dtype}")
        return False
    backend, reason = _backend_for(reference.device)
    if backend is None:
        _fallback(reason)
        return False
    return True


def fused_recurrence(
    kind: str,
    drive: Tensor,
    forget: Tensor | None,
    u0: Tensor,
    c0: Tensor,
    beta: Tensor,
    *,
    threshold: float,
    alpha: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """``T`` fused neuron updates (check :func:`can_fuse` first).

    Args:
        kind: ``"grsn"`` or ``"lif"``.
        drive: ``[B, T, H]``: J(x_t) of Eq. 14 (GRSN) or the current ``c_t`` of Eq. 2 (LIF). Any
            batch and time strides (slices, expanded windows) are read in place.
        forget: ``[B, T, H]`` forget gate F(x_t) of Eq. 14 (GRSN); ``None`` for LIF.
        u0, c0: ``[B, H]`` membrane after reset and current before the first step.
        beta: decay of Eq. 1, ``[H]`` or a scalar tensor.
        threshold: theta of Eq. 4. alpha: surrogate width of Eq. 6.

    Returns:
        ``(spikes [B, T, H], u_hat_T [B, H], c_T [B, H])``, equal to ``T`` calls of the cell's
        ``dynamics`` and differentiable with the same surrogate gradient.
    """
    tensors = [t for t in (drive, forget, u0, c0, beta) if t is not None]
    if any(t.dtype != drive.dtype or t.device != drive.device for t in tensors):
        raise ValueError("fused_recurrence: every tensor must share the dtype and device of `drive`")
    if (forget is None) != (kind == "lif"):
        wanted = "no forget gate" if kind == "lif" else "a forget gate"
        raise ValueError(f"fused_recurrence: kind {kind!r} takes {wanted}")
    backend, reason = _backend_for(drive.device)
    if backend is None:
        raise FusedKernelUnavailable(reason)
    hidden = u0.shape[-1]
    beta = beta.expand(hidden) if beta.dim() == 0 else beta
    if kind == "lif":
        # LIF never reads c_{t-1}: keep c0 out of the graph, so its gradient is None as in the loop.
        c0 = c0.detach()
    return _FusedSpikingRecurrence.apply(
        drive, forget, u0, c0, beta, float(threshold), float(alpha), KINDS[kind], backend
    )
