"""End-to-end training throughput with the fused spiking kernels vs the step-by-step loop.

Builds one Algorithm from a tuned_examples file (every EnvRunner in this process, evaluation off,
so that both acting and learning run under the kernel mode being timed), trains ``--warmup``
untimed iterations, then alternates the kernel mode every iteration (``fused``, ``reference``,
``fused``, ...) on the same run: both modes see the same training state and the same machine load.
The two paths compute the same numbers, so switching mid-run does not change the experiment.
Reports env steps sampled per second of ``Algorithm.train()``, median per mode. From the
repository root:

    python -m benchmarks.kernel_speedup tuned_examples/cartpole_p_grsn.yaml --iterations 6
    python -m benchmarks.kernel_speedup tuned_examples/pendulum_p_grsn_td3.yaml --iterations 4
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import ray
import torch

import rllib_grsn.envs  # noqa: F401  (registers our env names)
from benchmarks.machine import machine_description
from rllib_grsn.experiment import load_experiments
from rllib_grsn.neurons.kernels import fused_backend_name, use_kernel

MODES = ("fused", "reference")


def env_steps(result: dict) -> float:
    return float(result["env_runners"]["num_env_steps_sampled_lifetime"])


def measure(path: str, *, iterations: int, warmup: int, config: dict) -> dict:
    experiment = load_experiments(path, config=config)[0]
    algo_config = experiment.algo_config.copy(copy_frozen=False)
    algo_config.env_runners(num_env_runners=0).evaluation(evaluation_interval=None)
    algo = algo_config.build_algo()
    try:
        last = 0.0
        for _ in range(warmup):
            last = env_steps(algo.train())
        per_mode: dict[str, list[float]] = {mode: [] for mode in MODES}
        for i in range(iterations * len(MODES)):
            mode = MODES[i % len(MODES)]
            with use_kernel(mode):
                start = time.perf_counter()
                result = algo.train()
                seconds = time.perf_counter() - start
            steps = env_steps(result)
            per_mode[mode].append((steps - last) / seconds)
            last = steps
            rate = per_mode[mode][-1]
            print(f"iteration {warmup + i + 1:>3} {mode:>9}: {rate:8.1f} env steps/s", flush=True)
    finally:
        algo.stop()
    medians = {mode: statistics.median(values) for mode, values in per_mode.items()}
    return {
        "experiment": path,
        "run": experiment.run,
        "env_steps_per_s": per_mode,
        "median_env_steps_per_s": medians,
        "speedup": medians["fused"] / medians["reference"],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("experiment", help="a tuned_examples YAML (its first experiment is used)")
    parser.add_argument("--iterations", type=int, default=4, help="timed iterations per kernel mode")
    parser.add_argument("--warmup", type=int, default=1, help="untimed iterations first")
    parser.add_argument("--config", default="{}", help="JSON merged into the experiment's config")
    parser.add_argument("--num-cpus", type=int, default=2)
    parser.add_argument("--out", default=None, help="JSON file to write (default: benchmarks/results/...)")
    args = parser.parse_args(argv)

    if fused_backend_name("cpu") is None:
        parser.error("the fused CPU kernel cannot be built here (see the log line above)")
    ray.init(address="local", num_cpus=args.num_cpus, include_dashboard=False)  # its own, sized Ray
    try:
        record = measure(
            args.experiment, iterations=args.iterations, warmup=args.warmup, config=json.loads(args.config)
        )
    finally:
        ray.shutdown()
    record.update(machine=machine_description(), torch_threads=torch.get_num_threads())
    medians = record["median_env_steps_per_s"]
    print(
        f"{record['experiment']}: fused {medians['fused']:.1f} vs step loop {medians['reference']:.1f} "
        f"env steps/s (median of {args.iterations}): {record['speedup']:.2f}x on {record['machine']}"
    )
    out = Path(args.out or f"benchmarks/results/kernel_speedup_{Path(args.experiment).stem}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
