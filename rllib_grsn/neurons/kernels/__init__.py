"""Fused kernels for the spiking cells' recurrence over a whole sequence (CPU C++ and Triton)."""

from rllib_grsn.neurons.kernels.recurrence import (
    KERNEL_MODES,
    FusedKernelUnavailable,
    can_fuse,
    fused_backend_name,
    fused_recurrence,
    kernel_mode,
    use_kernel,
)

__all__ = [
    "KERNEL_MODES",
    "FusedKernelUnavailable",
    "can_fuse",
    "fused_backend_name",
    "fused_recurrence",
    "kernel_mode",
    "use_kernel",
]
