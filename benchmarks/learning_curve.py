"""Learning curves (mean training return vs env steps) of PPO with spiking cores vs RLlib's LSTM.

Each (model, seed) trains in its own Ray task with the configs of ``benchmarks.common`` (same
inputs, hidden size, heads and PPO settings for every model). Writes the curves as JSON, a PNG
plot and a markdown table of return at fixed env-step marks (mean +- std over seeds). Run from
the repository root:

    .venv/bin/python -m benchmarks.learning_curve --models grsn,lstm --seeds 3 --env-steps 200000
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import ray

from benchmarks.common import MODELS
from benchmarks.machine import machine_description


@ray.remote(num_cpus=1)
def train_curve(
    model: str,
    seed: int,
    env: str,
    env_steps: int,
    hidden: int,
    vf_loss_coeff: float,
    threshold: float,
    max_wall_s: float,
    out_dir: str,
) -> dict:
    import torch

    torch.set_num_threads(1)  # one core per task, so parallel tasks do not oversubscribe
    from benchmarks.common import ppo_config

    algo = ppo_config(
        model, env=env, hidden=hidden, seed=seed, vf_loss_coeff=vf_loss_coeff, threshold=threshold
    ).build_algo()
    curve = {"model": model, "seed": seed, "steps": [], "returns": [], "wall_s": 0.0, "complete": False}
    start = time.time()
    partial = Path(out_dir) / f"partial_{model}_{seed}.json"
    try:
        while not curve["steps"] or curve["steps"][-1] < env_steps:
            if curve["steps"] and time.time() - start > max_wall_s:
                break
            result = algo.train()
            curve["steps"].append(int(result["num_env_steps_sampled_lifetime"]))
            curve["returns"].append(float(result["env_runners"].get("episode_return_mean", float("nan"))))
            curve["wall_s"] = time.time() - start
            partial.write_text(json.dumps(curve))  # survives a killed benchmark
        curve["complete"] = curve["steps"][-1] >= env_steps
    finally:
        algo.stop()
    partial.unlink(missing_ok=True)
    return curve


def value_at(curve: dict, mark: int) -> float:
    """Return of the last iteration at or before ``mark`` env steps."""
    idx = [i for i, s in enumerate(curve["steps"]) if s <= mark]
    return curve["returns"][idx[-1]] if idx else float("nan")


def summarise(curves: list[dict], marks: list[int]) -> str:
    models = sorted({c["model"] for c in curves}, key=lambda m: MODELS.index(m) if m in MODELS else 99)
    lines = ["| model | " + " | ".join(f"{m // 1000}k steps" for m in marks) + " | wall s/run |"]
    lines.append("|---" * (len(marks) + 2) + "|")
    for model in models:
        runs = [c for c in curves if c["model"] == model]
        cells = []
        for mark in marks:
            vals = np.array([value_at(c, mark) for c in runs])
            vals = vals[~np.isnan(vals)]
            cells.append(f"{vals.mean():.1f} +- {vals.std():.1f}" if len(vals) else "n/a")
        wall = np.mean([c["wall_s"] for c in runs])
        lines.append(f"| {model} ({len(runs)} seeds) | " + " | ".join(cells) + f" | {wall:.0f} |")
    return "\n".join(lines)


def plot(curves: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, model in enumerate(sorted({c["model"] for c in curves})):
        runs = [c for c in curves if c["model"] == model]
        grid = np.linspace(0, min(max(c["steps"]) for c in runs), 50)
        ys = np.array([np.interp(grid, c["steps"], np.nan_to_num(c["returns"], nan=0.0)) for c in runs])
        color = f"C{i}"
        ax.plot(grid, ys.mean(0), color=color, label=f"{model} ({len(runs)} seeds)")
        ax.fill_between(grid, ys.mean(0) - ys.std(0), ys.mean(0) + ys.std(0), color=color, alpha=0.2)
    ax.set_xlabel("env steps")
    ax.set_ylabel("mean training episode return")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="grsn,lstm", help=f"comma-separated subset of {MODELS}")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--env", default="CartPole-P")
    parser.add_argument("--env-steps", type=int, default=200_000)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--num-cpus", type=int, default=os.cpu_count())
    parser.add_argument(
        "--max-wall-s", type=float, default=float("inf"), help="stop each run after this long"
    )
    parser.add_argument(
        "--vf-loss-coeff", type=float, default=0.01, help="PPO value-loss weight (all models)"
    )
    parser.add_argument("--threshold", type=float, default=1.0, help="firing threshold of spiking cores")
    parser.add_argument("--label", default="", help="suffix of the output file names")
    parser.add_argument("--out-dir", default="benchmarks/results")
    args = parser.parse_args()

    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ray.init(address="local", num_cpus=args.num_cpus, include_dashboard=False)  # its own, sized Ray
    try:
        jobs = [
            train_curve.remote(
                model,
                seed,
                args.env,
                args.env_steps,
                args.hidden,
                args.vf_loss_coeff,
                args.threshold,
                args.max_wall_s,
                str(out.resolve()),
            )
            for model in args.models.split(",")
            for seed in range(args.seeds)
        ]
        curves = []
        stem = f"learning_curve_{args.env.lower().replace('-', '_')}{args.label and '_' + args.label}"
        while jobs:
            done, jobs = ray.wait(jobs, num_returns=1)
            curve = ray.get(done[0])
            curves.append(curve)
            # Written after every run, so an interrupted benchmark keeps what finished.
            (out / f"{stem}.json").write_text(
                json.dumps({"args": vars(args), "machine": machine_description(), "curves": curves}, indent=1)
            )
            print(
                f"done {curve['model']} seed {curve['seed']}: final return {curve['returns'][-1]:.1f} "
                f"after {curve['steps'][-1]} steps in {curve['wall_s']:.0f} s",
                flush=True,
            )
    finally:
        ray.shutdown()

    plot(curves, out / f"{stem}.png", f"PPO on {args.env}, hidden {args.hidden}")
    step = max(args.env_steps // 4, 1)
    marks = [int(math.ceil(m / 1000) * 1000) for m in range(step, args.env_steps + 1, step)]
    print(summarise(curves, marks))
    print(f"wrote {out / stem}.json and .png")


if __name__ == "__main__":
    main()
