"""PPO training throughput (env steps/s) of spiking cores vs RLlib's built-in LSTM, one process.

All models train PPO on CartPole-P with the same batch (4000 env steps, 6 epochs, minibatch 500),
hidden size, inputs (o_t, a_{t-1}, r_{t-1}) and heads; sampling runs on the local EnvRunner
(``num_env_runners=0``), as in DESIGN.md section 3. The first ``--warmup`` iterations are not
timed. Run from the repository root:

    .venv/bin/python -m benchmarks.ppo_throughput --models grsn,lif,gru,lstm --iterations 3
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import ray
import torch

from benchmarks.common import MODELS, ppo_config


def measure(model: str, *, iterations: int, warmup: int, hidden: int) -> dict:
    algo = ppo_config(model, hidden=hidden).build_algo()
    try:
        before = 0
        for _ in range(warmup):
            before = algo.train()["num_env_steps_sampled_lifetime"]
        rates, sample_s, learn_s = [], [], []
        for _ in range(iterations):
            start = time.perf_counter()
            result = algo.train()
            elapsed = time.perf_counter() - start
            steps = result["num_env_steps_sampled_lifetime"] - before
            before = result["num_env_steps_sampled_lifetime"]
            rates.append(steps / elapsed)
            timers = result.get("timers", {})
            sample_s.append(timers.get("env_runner_sampling_timer", float("nan")))
            learn_s.append(timers.get("learner_update_timer", float("nan")))
            print(f"  {model}: {steps / elapsed:.1f} env steps/s ({elapsed:.1f} s)", flush=True)
        params = sum(p.numel() for p in algo.get_module().parameters())
    finally:
        algo.stop()
    return {
        "model": model,
        "env_steps_per_s": statistics.median(rates),
        "all_rates": rates,
        "sample_s": statistics.median(sample_s),
        "learn_s": statistics.median(learn_s),
        "params": params,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated subset of {MODELS}")
    parser.add_argument("--iterations", type=int, default=3, help="timed PPO iterations per model")
    parser.add_argument("--warmup", type=int, default=1, help="untimed iterations first")
    parser.add_argument("--hidden", type=int, default=128, help="recurrent units (all models)")
    parser.add_argument("--num-cpus", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results/ppo_throughput.json")
    args = parser.parse_args()

    ray.init(num_cpus=args.num_cpus, include_dashboard=False)
    try:
        rows = []
        for model in args.models.split(","):
            print(f"measuring {model} ...", flush=True)
            rows.append(measure(model, iterations=args.iterations, warmup=args.warmup, hidden=args.hidden))
    finally:
        ray.shutdown()

    base = next((r["env_steps_per_s"] for r in rows if r["model"] == "lstm"), None)
    print(
        f"\nPPO on CartPole-P, hidden {args.hidden}, {platform.processor() or platform.machine()}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} torch threads"
    )
    print("| model | env steps/s | vs RLlib LSTM | sampling s/iter | learner s/iter | params |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        ratio = f"{r['env_steps_per_s'] / base:.2f}x" if base else "n/a"
        print(
            f"| {r['model']} | {r['env_steps_per_s']:.0f} | {ratio} | {r['sample_s']:.2f} | "
            f"{r['learn_s']:.2f} | {r['params']} |"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
