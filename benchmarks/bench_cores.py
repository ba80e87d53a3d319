"""Forward+backward time of one recurrent layer over a sequence: GRSN fused vs its step loop, LIF,
``nn.GRU`` and ``nn.LSTM`` (cuDNN on a GPU), for T x B x H shapes, with GRSN's memory floor.

Every model maps ``x[B, T, H]`` to ``[B, T, H]`` from a zero state; one timed call is the forward
pass, a sum-of-outputs backward, and (on a GPU) a synchronisation. Times are medians over
repeats. The memory floor is the traffic the fused GRSN design cannot avoid, divided by the
bandwidth of a large device-to-device copy measured in the same run:

* forward: read x (H), write both gates (2H), the kernel reads the gates and writes spikes,
  membrane and current (2H + 3H);
* backward: the kernel reads the spike gradient, membrane, current and gates and writes the gate
  gradients (5H + 2H); the projection's backward reads the gate gradients and x and writes x's
  gradient (2H + 2H);

i.e. 19 H floats per (b, t). Runs without Ray (the GPU machine has none). From the repository root:

    python -m benchmarks.bench_cores                     # the whole grid on a GPU, capped on a CPU
    python -m benchmarks.bench_cores --steps 64 --batch 256 --hidden 128
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from benchmarks.machine import cpu_model
from rllib_grsn.neurons import GRSNCell, LIFCell
from rllib_grsn.neurons.kernels import fused_backend_name, use_kernel

MODELS = ("grsn_fused", "grsn_loop", "lif_fused", "gru", "lstm")
FLOATS_PER_STEP_PER_NEURON = 19  # the fused GRSN traffic counted in the module docstring


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    return f"{cpu_model()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_ms(fn: Callable[[], None], device: torch.device, *, min_time: float, max_repeats: int) -> float:
    """Median wall time of ``fn`` in ms: 2 warm-up calls, then repeats until ``min_time`` seconds."""
    for _ in range(2):
        fn()
    _sync(device)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < 3 or (time.perf_counter() - start < min_time and len(times) < max_repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def copy_bandwidth(device: torch.device) -> float:
    """Bytes/s of a 256 MiB tensor copy on ``device`` (read + write counted)."""
    src = torch.empty(64 * 2**20, dtype=torch.float32, device=device).uniform_()
    dst = torch.empty_like(src)
    ms = median_ms(lambda: dst.copy_(src), device, min_time=0.5, max_repeats=50)
    return 2 * src.numel() * 4 / (ms / 1e3)


def build(model: str, hidden: int, device: torch.device) -> tuple[nn.Module, Callable]:
    """The layer and a callable ``x -> output [B, T, H]`` running it under the right kernel mode."""
    if model in ("grsn_fused", "grsn_loop", "lif_fused"):
        cell = (GRSNCell if model.startswith("grsn") else LIFCell)(hidden, hidden).to(device)
        mode = "reference" if model.endswith("loop") else "fused"

        def spiking(x: torch.Tensor) -> torch.Tensor:
            with use_kernel(mode):
                return cell.unroll(x, cell.initial_state(x.shape[0], device=x.device))[0]

        return cell, spiking
    rnn = (nn.GRU if model == "gru" else nn.LSTM)(hidden, hidden, batch_first=True).to(device)
    return rnn, lambda x: rnn(x)[0]


def time_shape(
    model: str, steps: int, batch: int, hidden: int, device: torch.device, min_time: float
) -> float:
    torch.manual_seed(0)
    _, layer = build(model, hidden, device)
    x = torch.randn(batch, steps, hidden, device=device, requires_grad=True)

    def step() -> None:
        x.grad = None
        layer(x).sum().backward()

    return median_ms(step, device, min_time=min_time, max_repeats=50)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", default="16,64,256", help="comma-separated T values")
    parser.add_argument("--batch", default="32,256,4096", help="comma-separated B values")
    parser.add_argument("--hidden", default="64,128,256", help="comma-separated H values")
    parser.add_argument("--models", default=",".join(MODELS), help=f"subset of {', '.join(MODELS)}")
    parser.add_argument(
        "--max-elements",
        type=float,
        default=None,
        help="skip shapes with B*T*H above this (default: no cap on a GPU, 2**24 on a CPU, where the "
        "largest shapes take minutes per call)",
    )
    parser.add_argument("--min-time", type=float, default=1.0, help="seconds of repeats per cell")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--out", default="benchmarks/results/bench_cores.json")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        parser.error(f"unknown models {unknown}; choose from {', '.join(MODELS)}")
    cap = args.max_elements if args.max_elements is not None else (None if device.type == "cuda" else 2**24)
    backend = fused_backend_name(device)
    if backend is None and any(m.endswith("fused") for m in models):
        parser.error(f"no fused kernel can run on {device} here (see the log line above)")
    bandwidth = copy_bandwidth(device)
    machine = device_description(device)
    print(f"device: {machine}; fused backend: {backend}; copy bandwidth {bandwidth / 1e9:.1f} GB/s")

    rows = []
    header = f"{'T':>4} {'B':>5} {'H':>4} " + " ".join(f"{m:>11}" for m in models)
    print(header + f" {'floor':>8} {'fused/floor':>11} {'loop/fused':>10} {'gru/fused':>9}  (ms)")
    for steps in (int(v) for v in args.steps.split(",")):
        for batch in (int(v) for v in args.batch.split(",")):
            for hidden in (int(v) for v in args.hidden.split(",")):
                elements = steps * batch * hidden
                if cap is not None and elements > cap:
                    print(f"{steps:>4} {batch:>5} {hidden:>4} skipped: B*T*H = {elements} > {cap:.0f}")
                    continue
                times = {m: time_shape(m, steps, batch, hidden, device, args.min_time) for m in models}
                floor = FLOATS_PER_STEP_PER_NEURON * elements * 4 / bandwidth * 1e3
                fused = times.get("grsn_fused")
                row = {"T": steps, "B": batch, "H": hidden, "ms": times, "memory_floor_ms": floor}
                ratios = ""
                if fused:
                    row["fused_over_floor"] = fused / floor
                    ratios = f" {floor:8.3f} {fused / floor:11.2f}"
                    for other in ("grsn_loop", "gru"):
                        if other in times:
                            row[f"{other}_over_fused"] = times[other] / fused
                            ratios += f" {times[other] / fused:{10 if other == 'grsn_loop' else 9}.2f}"
                cells = " ".join(f"{times[m]:11.3f}" for m in models)
                print(f"{steps:>4} {batch:>5} {hidden:>4} {cells}{ratios}")
                rows.append(row)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "device": machine,
        "fused_backend": backend,
        "copy_bandwidth_bytes_per_s": bandwidth,
        "threads": torch.get_num_threads(),
        "command": "python -m benchmarks.bench_cores " + " ".join(argv if argv is not None else sys.argv[1:]),
        "rows": rows,
    }
    out.write_text(json.dumps(record, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
