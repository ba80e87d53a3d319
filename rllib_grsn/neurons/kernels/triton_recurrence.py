"""Fused LIF/GRSN recurrence as Triton kernels, for CUDA tensors (paper Eq. 1, 3-6, 12-14).

Inputs are ``drive`` (J of Eq. 14, or LIF's current of Eq. 2) and GRSN's ``forget`` gate, each
``[B, T, H]`` with any batch and time strides. One program owns ``BLOCK`` neurons (flattened over
batch rows and hidden units, so neighbouring lanes read neighbouring memory) and walks all ``T``
steps in registers: every input element is read once and every output written once, forward and
backward. The per-step maths is the reference ``SpikingCell.dynamics`` (``torch.lerp`` as one
fused multiply-add); the backward pass is the same chain rule as ``spiking_recurrence.cpp``.

Importing this module needs ``triton``; :func:`available` says whether it can run here. Under
``TRITON_INTERPRET=1`` the same kernels run on CPU tensors, which is how the tests check them on a
machine without a GPU.
"""

from __future__ import annotations

import math
import os

import torch
import triton
import triton.language as tl
from torch import Tensor

__all__ = ["available", "spiking_backward", "spiking_forward"]

BLOCK = 256
IS_GRSN = 1


def available() -> bool:
    """True when the kernels can run: a CUDA device, or Triton's CPU interpreter."""
    return torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1"


@triton.jit
def _lerp(start, end, weight):
    # torch.lerp: start + w (end - start), fused, with the exact branch for w near 1.
    small = tl.abs(weight) < 0.5
    coeff = tl.where(small, weight, weight - 1.0)
    base = tl.where(small, start, end)
    return tl.fma(coeff, end - start, base)


@triton.jit
def _reset(u, spike, threshold, GRSN: tl.constexpr):
    if GRSN:
        out = tl.where(spike, u - threshold, u)  # Eq. 12, soft reset
    else:
        out = tl.where(spike, 0.0, u)  # Eq. 3, hard reset to u_r = 0
    return out


@triton.jit
def _forward_kernel(
    drive, forget, u0, c0, beta, spikes, membrane, current, u_last,
    n_neurons, steps, hidden, stride_b, stride_t, f_stride_b, f_stride_t, threshold,
    GRSN: tl.constexpr, BLOCK_SIZE: tl.constexpr,
):  # fmt: skip
    n = tl.program_id(0).to(tl.int64) * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    mask = n < n_neurons
    b = n // hidden
    h = n % hidden
    u_hat = tl.load(u0 + n, mask=mask, other=0.0)
    c = tl.load(c0 + n, mask=mask, other=0.0)
    bt = tl.load(beta + h, mask=mask, other=0.0)
    j_row = b * stride_b + h
    f_row = b * f_stride_b + h
    o_row = b * steps * hidden + h
    for t in range(steps):
        j = tl.load(drive + j_row + t * stride_t, mask=mask, other=0.0)
        if GRSN:
            f = tl.load(forget + f_row + t * f_stride_t, mask=mask, other=0.0)
            c = _lerp(j, c, f)  # Eq. 13
        else:
            c = j  # Eq. 2
        u = _lerp(c, u_hat, bt)  # Eq. 1
        spike = (u - threshold) >= 0.0  # Eq. 4-5
        tl.store(spikes + o_row + t * hidden, tl.where(spike, 1.0, 0.0), mask=mask)
        tl.store(membrane + o_row + t * hidden, u, mask=mask)
        tl.store(current + o_row + t * hidden, c, mask=mask)
        u_hat = _reset(u, spike, threshold, GRSN)
    tl.store(u_last + n, u_hat, mask=mask)


@triton.jit
def _backward_kernel(
    grad_spikes, grad_u, grad_c, drive, forget, u0, c0, beta, membrane, current,
    grad_drive, grad_forget, grad_u0, grad_c0, grad_beta,
    n_neurons, steps, hidden, stride_b, stride_t, f_stride_b, f_stride_t, threshold, alpha, slope,
    GRSN: tl.constexpr, BLOCK_SIZE: tl.constexpr,
):  # fmt: skip
    n = tl.program_id(0).to(tl.int64) * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    mask = n < n_neurons
    b = n // hidden
    h = n % hidden
    g_u = tl.load(grad_u + n, mask=mask, other=0.0)  # d u_hat_t, carried backwards
    g_c = tl.load(grad_c + n, mask=mask, other=0.0)  # d c_t, carried backwards (GRSN)
    g_c_last = g_c
    bt = tl.load(beta + h, mask=mask, other=0.0)
    u_first = tl.load(u0 + n, mask=mask, other=0.0)
    c_first = tl.load(c0 + n, mask=mask, other=0.0)
    g_bt = tl.zeros_like(bt)
    j_row = b * stride_b + h
    f_row = b * f_stride_b + h
    o_row = b * steps * hidden + h
    for i in range(steps):
        t = steps - 1 - i
        u = tl.load(membrane + o_row + t * hidden, mask=mask, other=0.0)
        x = u - threshold
        spike = x >= 0.0
        g_o = tl.load(grad_spikes + o_row + t * hidden, mask=mask, other=0.0)
        if GRSN:
            du = g_u
            d_spike = g_o - threshold * g_u
        else:
            du = tl.where(spike, 0.0, g_u)
            d_spike = g_o - u * g_u
        z = slope * x
        du += d_spike * (alpha / (2.0 * (1.0 + z * z)))  # Eq. 6 surrogate
        c = tl.load(current + o_row + t * hidden, mask=mask, other=0.0)
        # Step t-1's row (step 0 re-reads its own, unused): a full-width condition, not a scalar
        # one, because masks and selects must be vectors in every Triton version.
        has_prev = (h * 0 + t) > 0
        prev = tl.maximum(t - 1, 0)
        u_prev = tl.load(membrane + o_row + prev * hidden, mask=mask, other=0.0)
        u_hat_prev = tl.where(has_prev, _reset(u_prev, (u_prev - threshold) >= 0.0, threshold, GRSN), u_first)
        if GRSN:
            d_c = g_c + du * (1.0 - bt)
        else:
            d_c = tl.where((h * 0 + t) == steps - 1, g_c_last, 0.0) + du * (1.0 - bt)
        g_bt += du * (u_hat_prev - c)
        g_u = du * bt
        if GRSN:
            f = tl.load(forget + f_row + t * f_stride_t, mask=mask, other=0.0)
            j = tl.load(drive + j_row + t * stride_t, mask=mask, other=0.0)
            c_prev = tl.load(current + o_row + prev * hidden, mask=mask, other=0.0)
            c_prev = tl.where(has_prev, c_prev, c_first)
            tl.store(grad_forget + o_row + t * hidden, d_c * (c_prev - j), mask=mask)
            tl.store(grad_drive + o_row + t * hidden, d_c * (1.0 - f), mask=mask)
            g_c = d_c * f
        else:
            tl.store(grad_drive + o_row + t * hidden, d_c, mask=mask)
    tl.store(grad_u0 + n, g_u, mask=mask)
    if GRSN:
        tl.store(grad_c0 + n, g_c, mask=mask)
    else:
        tl.store(grad_c0 + n, tl.zeros_like(g_c), mask=mask)  # LIF never reads c_{t-1}
    tl.store(grad_beta + n, g_bt, mask=mask)


def _grid(n_neurons: int) -> tuple[int]:
    return (triton.cdiv(n_neurons, BLOCK),)


def _inner_contiguous(x: Tensor) -> Tensor:
    return x if x.stride(-1) == 1 else x.contiguous()


def spiking_forward(
    drive: Tensor, forget: Tensor | None, u0: Tensor, c0: Tensor, beta: Tensor, threshold: float, kind: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Same contract as the CPU op: (spikes, membrane before reset, current, u_hat_T)."""
    drive = _inner_contiguous(drive)
    forget = drive if forget is None else _inner_contiguous(forget)
    u0, c0, beta = (x.contiguous() for x in (u0, c0, beta))
    batch, steps, hidden = drive.shape
    spikes = drive.new_empty(batch, steps, hidden)
    membrane = torch.empty_like(spikes)
    current = torch.empty_like(spikes)
    u_last = torch.empty_like(u0)
    n_neurons = batch * hidden
    _forward_kernel[_grid(n_neurons)](
        drive, forget, u0, c0, beta, spikes, membrane, current, u_last,
        n_neurons, steps, hidden, drive.stride(0), drive.stride(1), forget.stride(0), forget.stride(1),
        float(threshold), GRSN=kind == IS_GRSN, BLOCK_SIZE=BLOCK,
    )  # fmt: skip
    return spikes, membrane, current, u_last


def spiking_backward(
    grad_spikes: Tensor, grad_u_last: Tensor, grad_c_last: Tensor, drive: Tensor, forget: Tensor | None,
    u0: Tensor, c0: Tensor, beta: Tensor, membrane: Tensor, current: Tensor, threshold: float,
    alpha: float, kind: int,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:  # fmt: skip
    """Same contract as the CPU op: (d drive, d forget (GRSN, else empty), d u0, d c0,
    d beta per batch row ``[B, H]``)."""
    drive = _inner_contiguous(drive)
    grsn = kind == IS_GRSN
    forget = _inner_contiguous(forget) if grsn else drive
    tensors = (grad_spikes, grad_u_last, grad_c_last, u0, c0, beta, membrane, current)
    grad_spikes, grad_u_last, grad_c_last, u0, c0, beta, membrane, current = (x.contiguous() for x in tensors)
    batch, steps, hidden = drive.shape
    grad_drive = drive.new_empty(batch, steps, hidden)
    grad_forget = torch.empty_like(grad_drive) if grsn else drive.new_empty(0)
    grad_u0 = torch.empty_like(u0)
    grad_c0 = torch.empty_like(c0)
    grad_beta = torch.empty_like(u0)
    n_neurons = batch * hidden
    _backward_kernel[_grid(n_neurons)](
        grad_spikes, grad_u_last, grad_c_last, drive, forget, u0, c0, beta, membrane, current,
        grad_drive, grad_forget if grsn else grad_drive, grad_u0, grad_c0, grad_beta,
        n_neurons, steps, hidden, drive.stride(0), drive.stride(1), forget.stride(0), forget.stride(1),
        float(threshold), float(alpha), math.pi / 2.0 * float(alpha),
        GRSN=grsn, BLOCK_SIZE=BLOCK,
    )  # fmt: skip
    return grad_drive, grad_forget, grad_u0, grad_c0, grad_beta
