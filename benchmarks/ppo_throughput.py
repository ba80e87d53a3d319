"""PPO training throughput (env steps/s) of spiking cores vs RLlib's built-in LSTM, one process.

All models train PPO on CartPole-P with the same batch (4000 env steps, 6 epochs, minibatch 500),
hidden size, inputs (o_t, a_{t-1}, r_{t-1}) and heads; sampling runs on the local EnvRunner
(``num_env_runners=0``), as in DESIGN.md section 3. The first ``--warmup`` iterations are not
timed; the timed ones alternate between models. Run from the repository root:

    .venv/bin/python -m benchmarks.ppo_throughput --models grsn,lif,gru,lstm --iterations 8
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import ray
import torch

from benchmarks.common import MODELS, ppo_config
from benchmarks.machine import machine_description


def measure(models: list[str], *, iterations: int, warmup: int, hidden: int, num_envs: int = 1) -> list[dict]:
    """Times PPO iterations of every model, interleaved round-robin so that drift in machine
    load (other processes, thermal state) affects all models alike."""
    algos = {
        model: ppo_config(model, hidden=hidden, num_envs_per_env_runner=num_envs).build_algo()
        for model in models
    }
    try:
        lifetime = dict.fromkeys(models, 0)
        for model, algo in algos.items():
            for _ in range(warmup):
                lifetime[model] = algo.train()["num_env_steps_sampled_lifetime"]
        rates: dict[str, list[float]] = {m: [] for m in models}
        for i in range(iterations):
            for model, algo in algos.items():
                start = time.perf_counter()
                result = algo.train()
                elapsed = time.perf_counter() - start
                steps = result["num_env_steps_sampled_lifetime"] - lifetime[model]
                lifetime[model] = result["num_env_steps_sampled_lifetime"]
                rates[model].append(steps / elapsed)
            print(f"  round {i + 1}: " + ", ".join(f"{m} {r[-1]:.0f}" for m, r in rates.items()), flush=True)
        return [
            {
                "model": model,
                "env_steps_per_s": statistics.median(rates[model]),
                "all_rates": rates[model],
                "params": sum(p.numel() for p in algos[model].get_module().parameters()),
            }
            for model in models
        ]
    finally:
        for algo in algos.values():
            algo.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated subset of {MODELS}")
    parser.add_argument("--iterations", type=int, default=8, help="timed PPO iterations per model")
    parser.add_argument("--warmup", type=int, default=1, help="untimed iterations first")
    parser.add_argument("--hidden", type=int, default=128, help="recurrent units (all models)")
    parser.add_argument("--num-cpus", type=int, default=2)
    parser.add_argument("--num-envs", type=int, default=1, help="vectorised envs on the EnvRunner")
    parser.add_argument("--out", default="benchmarks/results/ppo_throughput.json")
    args = parser.parse_args()

    ray.init(address="local", num_cpus=args.num_cpus, include_dashboard=False)  # its own, sized Ray
    try:
        rows = measure(
            args.models.split(","),
            iterations=args.iterations,
            warmup=args.warmup,
            hidden=args.hidden,
            num_envs=args.num_envs,
        )
    finally:
        ray.shutdown()

    base = next((r["env_steps_per_s"] for r in rows if r["model"] == "lstm"), None)
    print(
        f"\nPPO on CartPole-P, hidden {args.hidden}, {args.num_envs} env(s) per EnvRunner, "
        f"{machine_description()}, torch {torch.__version__}, {torch.get_num_threads()} torch threads"
    )
    print("| model | env steps/s (median) | vs RLlib LSTM | min-max | params |")
    print("|---|---|---|---|---|")
    for r in rows:
        ratio = f"{r['env_steps_per_s'] / base:.2f}x" if base else "n/a"
        spread = f"{min(r['all_rates']):.0f}-{max(r['all_rates']):.0f}"
        print(f"| {r['model']} | {r['env_steps_per_s']:.0f} | {ratio} | {spread} | {r['params']} |")
    out = Path(args.out if args.num_envs == 1 else args.out.replace(".json", f"_{args.num_envs}envs.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "machine": machine_description(), "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
