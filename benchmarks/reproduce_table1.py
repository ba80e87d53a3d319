"""Reproduces the paper's Table 1 (partially observable control) through Ray Tune.

Every cell is a tuned_examples file, ``{task}_{core}_{sac|td3}.yaml`` (recurrent discrete SAC on
CartPole, TD3 on Pendulum, pomdp-baselines settings), trained once per seed. A cell's score is the
final evaluation return (10 greedy episodes after the last 1000 env steps); the table shows its
mean +- std over seeds next to the paper's number. Run from the repository root:

    # the full grid (5 seeds, 4 tasks, GRSN/LIF/GRU/MLP): a 16-core machine, hours on CPU
    .venv/bin/python -m benchmarks.reproduce_table1 --seeds 5 --num-cpus 16
    # the GRSN and LIF rows only
    .venv/bin/python -m benchmarks.reproduce_table1 --cores grsn,lif --seeds 5 --num-cpus 16
    # 1-seed smoke version for 2 cores: a tenth of each budget
    .venv/bin/python -m benchmarks.reproduce_table1 --smoke

Each trial is one Tune trial on one CPU (torch pinned to one thread). Tune keeps every trial's
results under ``--storage-path``; ``--resume`` continues an interrupted grid there (finished trials
are kept, unfinished ones start again). ``--out`` gets every trial's evaluation curve and the table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from ray.tune import Callback

REPO = Path(__file__).resolve().parents[1]
TUNED = REPO / "tuned_examples"
TASKS = ("cartpole_v", "cartpole_p", "pendulum_v", "pendulum_p")
TASK_TITLES = {
    "cartpole_v": "CartPole-V",
    "cartpole_p": "CartPole-P",
    "pendulum_v": "Pendulum-V",
    "pendulum_p": "Pendulum-P",
}
TASK_ALGO = {"cartpole_v": "sac", "cartpole_p": "sac", "pendulum_v": "td3", "pendulum_p": "td3"}
CORES = ("grsn", "lif", "gru", "mlp")
CORE_TITLES = {"grsn": "GRSN (TAP)", "lif": "LIF (TAP)", "gru": "GRU", "mlp": "MLP"}
# Paper Table 1 (shared/DESIGN.md section 5): mean, std over 5 seeds.
PAPER = {
    "mlp": {"cartpole_v": (21.6, 1.49), "cartpole_p": (21.2, 1.95), "pendulum_v": (-1502.8, 61.09),
            "pendulum_p": (-1380.1, 47.45)},
    "gru": {"cartpole_v": (200.0, 0.0), "cartpole_p": (196.7, 6.30), "pendulum_v": (-181.3, 15.47),
            "pendulum_p": (-203.5, 16.36)},
    "lif": {"cartpole_v": (200.0, 0.0), "cartpole_p": (152.2, 21.21), "pendulum_v": (-942.4, 92.19),
            "pendulum_p": (-824.8, 178.80)},
    "grsn": {"cartpole_v": (200.0, 0.0), "cartpole_p": (199.9, 0.20), "pendulum_v": (-189.4, 17.64),
             "pendulum_p": (-195.8, 43.99)},
}  # fmt: skip
EVAL_RETURN = ("evaluation", "env_runners", "episode_return_mean")


def tuned_example(task: str, core: str) -> Path:
    return TUNED / f"{task}_{core}_{TASK_ALGO[task]}.yaml"


def _nested(result: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        if not isinstance(result, dict) or key not in result:
            return None
        result = result[key]
    return result


def train_cell(config: dict[str, Any]) -> None:
    """Tune function trainable: one tuned_examples file, one seed, evaluation return per iteration."""
    import torch
    from ray import tune

    torch.set_num_threads(1)  # one core per trial, so parallel trials do not oversubscribe
    from rllib_grsn.experiment import load_experiments

    overrides = {"seed": int(config["seed"])}
    (experiment,) = load_experiments(config["file"], config=overrides)
    steps = int(experiment.stop["num_env_steps_sampled_lifetime"] * config["steps_scale"])
    algo = experiment.algo_config.build_algo()
    try:
        sampled = 0
        while sampled < steps:
            result = algo.train()
            sampled = int(result["num_env_steps_sampled_lifetime"])
            eval_return = _nested(result, EVAL_RETURN)
            tune.report(
                {
                    "env_steps": sampled,
                    "eval_return": float("nan") if eval_return is None else float(eval_return),
                    "train_return": float(result["env_runners"].get("episode_return_mean", float("nan"))),
                    "done_steps": steps,
                }
            )
    finally:
        algo.stop()


def run_grid(args: argparse.Namespace) -> list[dict[str, Any]]:
    import ray
    from ray import tune

    cells = [(task, core) for task in args.tasks for core in args.cores]
    missing = [str(tuned_example(t, c)) for t, c in cells if not tuned_example(t, c).is_file()]
    if missing:
        raise SystemExit(f"missing tuned examples: {', '.join(missing)}")
    ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False)
    try:
        storage = str(Path(args.storage_path).resolve())
        name = "reproduce_table1"
        trainable = tune.with_resources(train_cell, {"cpu": 1})
        if args.resume and tune.Tuner.can_restore(os.path.join(storage, name)):
            tuner = tune.Tuner.restore(os.path.join(storage, name), trainable=trainable, resume_errored=True)
        else:
            param_space = {
                "file": tune.grid_search([str(tuned_example(t, c)) for t, c in cells]),
                "seed": tune.grid_search(list(range(args.seeds))),
                "steps_scale": args.steps_scale,
            }
            tuner = tune.Tuner(
                trainable,
                param_space=param_space,
                tune_config=tune.TuneConfig(max_concurrent_trials=args.num_cpus),
                run_config=tune.RunConfig(
                    name=name,
                    storage_path=storage,
                    verbose=0,
                    callbacks=[TrialProgress(len(cells) * args.seeds)],
                ),
            )
        results = tuner.fit()
    finally:
        ray.shutdown()
    rows = []
    for res in results:
        if res.config is None:
            continue
        history = res.metrics_dataframe
        rows.append(_row(res.config, history, res.error))
    return rows


def _row(config: dict[str, Any], history: Any, error: Any) -> dict[str, Any]:
    stem = Path(config["file"]).stem  # e.g. cartpole_v_grsn_sac
    task = "_".join(stem.split("_")[:2])
    core = stem.split("_")[2]
    curve_steps = [] if history is None else [int(x) for x in history["env_steps"]]
    curve = [] if history is None else [float(x) for x in history["eval_return"]]
    return {
        "task": task,
        "core": core,
        "algorithm": TASK_ALGO[task],
        "seed": int(config["seed"]),
        "env_steps": curve_steps,
        "eval_returns": curve,
        "final_eval_return": curve[-1] if curve else None,
        "complete": bool(curve_steps) and curve_steps[-1] >= int(history["done_steps"].iloc[-1]),
        "error": None if error is None else str(error)[:500],
    }


class TrialProgress(Callback):
    """One line per finished trial (a full grid runs for hours)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.start = time.time()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.done += 1
        final = (trial.last_result or {}).get("eval_return", float("nan"))
        print(
            f"[{self.done}/{self.total}] {Path(trial.config['file']).stem} seed {trial.config['seed']}: "
            f"final eval return {final:.1f} ({time.time() - self.start:.0f} s)",
            flush=True,
        )


def summarise(rows: list[dict[str, Any]], tasks: tuple[str, ...], cores: tuple[str, ...]) -> str:
    """Markdown table in the paper's layout: ours mean +- std (n) and the paper's, per cell."""
    header = "| method | " + " | ".join(f"{TASK_TITLES[t]} ({TASK_ALGO[t].upper()})" for t in tasks) + " |"
    lines = [header, "|---" * (len(tasks) + 1) + "|"]
    for core in cores:
        cells = []
        for task in tasks:
            finals = [
                r["final_eval_return"]
                for r in rows
                if r["task"] == task
                and r["core"] == core
                and r["complete"]
                and r["final_eval_return"] is not None
            ]
            paper_mean, paper_std = PAPER[core][task]
            ours = f"{np.mean(finals):.1f} ± {np.std(finals):.1f} (n={len(finals)})" if finals else "n/a"
            cells.append(f"{ours} [paper {paper_mean:.1f} ± {paper_std:.2f}]")
        lines.append(f"| {CORE_TITLES[core]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _csv(value: str, allowed: tuple[str, ...], option: str) -> tuple[str, ...]:
    items = tuple(v.strip() for v in value.split(",") if v.strip())
    bad = [v for v in items if v not in allowed]
    if bad or not items:
        raise argparse.ArgumentTypeError(f"{option}: unknown {bad or value!r}; allowed: {', '.join(allowed)}")
    return items


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Train the paper's Table 1 grid (tuned_examples/*_{sac,td3}.yaml) over seeds with "
        "Ray Tune and print mean +- std of the final greedy evaluation return next to the paper's numbers.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--tasks",
        type=lambda v: _csv(v, TASKS, "--tasks"),
        default=TASKS,
        help=f"comma-separated subset of {', '.join(TASKS)}",
    )
    parser.add_argument(
        "--cores",
        type=lambda v: _csv(v, CORES, "--cores"),
        default=CORES,
        help=f"comma-separated subset of {', '.join(CORES)}",
    )
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 per cell")
    parser.add_argument(
        "--steps-scale",
        type=float,
        default=1.0,
        help="fraction of each tuned example's env-step budget (1.0: the paper's budget)",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="1 seed, GRSN and LIF, a tenth of each budget: a check that fits 2 cores",
    )
    parser.add_argument(
        "--num-cpus", type=int, default=os.cpu_count() or 2, help="CPUs for Ray (one trial each)"
    )
    parser.add_argument(
        "--storage-path", default=str(REPO / "results" / "table1"), help="Tune results directory"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=REPO / "benchmarks" / "results" / "table1.json",
        help="JSON with every trial's evaluation curve and the table",
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue an interrupted grid in --storage-path"
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.seeds, args.steps_scale = 1, 0.1
        if args.cores == CORES:
            args.cores = ("grsn", "lif")
    if args.seeds < 1 or not 0 < args.steps_scale <= 1 or args.num_cpus < 1:
        parser.error("--seeds and --num-cpus must be >= 1 and --steps-scale in (0, 1]")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(REPO))
    from benchmarks.common import machine_description

    start = time.time()
    rows = run_grid(args)
    table = summarise(rows, args.tasks, args.cores)
    report = {
        "machine": machine_description(),
        "command": " ".join(
            ["python -m benchmarks.reproduce_table1", *(argv if argv is not None else sys.argv[1:])]
        ),
        "seeds": args.seeds,
        "steps_scale": args.steps_scale,
        "wall_s": round(time.time() - start, 1),
        "table_markdown": table,
        "trials": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1, allow_nan=True))
    print(table)
    print(f"\n{len(rows)} trials in {report['wall_s']:.0f} s on {report['machine']}; written to {args.out}")
    failed = [r for r in rows if r["error"] or not r["complete"]]
    for r in failed:
        print(f"incomplete: {r['task']} {r['core']} seed {r['seed']}: {r['error'] or 'stopped early'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
