"""Builds and loads the fused CPU recurrence (``spiking_recurrence.cpp``) as a torch extension.

The C++ source ships inside the package and is compiled on first use with the machine's C++
compiler (``torch.utils.cpp_extension.load``, which caches the build under
``$TORCH_EXTENSIONS_DIR`` or ``~/.cache/torch_extensions``, so later processes, Ray workers
included, only load the shared library). A machine without a compiler gets ``None`` and the
caller falls back to the step-by-step reference.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from pathlib import Path

import torch

__all__ = ["CPU_OPS_NAMESPACE", "load_cpu_ops"]

logger = logging.getLogger(__name__)

CPU_OPS_NAMESPACE = "rllib_grsn_cpu"
_SOURCE = Path(__file__).with_name("spiking_recurrence.cpp")


def _compile_flags() -> list[str]:
    # -ffp-contract=off: the kernel chooses its fused multiply-adds itself (to match torch.lerp).
    # -fno-trapping-math lets the compiler turn the per-neuron selects into vector blends (results
    # unchanged: it only drops floating-point exception traps). -mfma makes std::fma one instruction
    # where the CPU has it, instead of a libm call.
    flags = ["-O3", "-ffp-contract=off", "-fno-trapping-math", "-fopenmp"]
    if torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512"):
        flags += ["-mavx2", "-mfma"]
    return flags


@functools.cache
def load_cpu_ops() -> object | None:
    """The ``torch.ops.rllib_grsn_cpu`` namespace, building the extension if needed; ``None`` when it
    cannot be built here (the reason is logged once)."""
    flags = _compile_flags()
    # The name carries the source and flags, so an edited kernel or a different CPU never loads a
    # stale build from the shared cache.
    digest = hashlib.sha1(_SOURCE.read_bytes() + " ".join(flags).encode()).hexdigest()[:12]
    try:
        from torch.utils import cpp_extension

        cpp_extension.load(
            name=f"rllib_grsn_spiking_{digest}",
            sources=[str(_SOURCE)],
            extra_cflags=flags,
            extra_ldflags=["-fopenmp"],
            is_python_module=False,
            verbose=False,
        )
    except Exception as exc:  # a missing compiler or headers, a failed build: all mean "no kernel"
        logger.warning("fused CPU spiking kernel could not be built (%s: %s)", type(exc).__name__, exc)
        return None
    return getattr(torch.ops, CPU_OPS_NAMESPACE)
