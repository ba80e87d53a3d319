"""What a reader needs to compare wall-clock figures: the CPU model and its core count.

Kept free of Ray imports so that benchmarks which run where Ray is not installed (the GPU machine's
``bench_cores``) can name their machine the same way as the others.
"""

from __future__ import annotations

import contextlib
import os
import platform
from pathlib import Path

__all__ = ["cpu_model", "machine_description"]


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (else what ``platform`` knows)."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return cpu


def machine_description() -> str:
    """CPU model and core count."""
    return f"{cpu_model()}, {os.cpu_count()} cores"
