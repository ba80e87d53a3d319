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

Each trial is one Tune trial on one CPU (torch pinned to one thread) and writes its record (the
evaluation curve) after every iteration to ``<out>_trials/``. Running the same command again skips
trials whose record is complete, so an interrupted grid resumes where it stopped (an unfinished
trial starts again); ``--report-only`` prints the table from the records. ``--out`` gets the table
and every record.
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

from tuned_examples.generate_table1 import ALGO_SUFFIX, CORES
from tuned_examples.generate_table1 import TASKS as GRID

REPO = Path(__file__).resolve().parents[1]
TUNED = REPO / "tuned_examples"
# The grid is the one generate_table1.py writes the tuned examples from.
TASKS = tuple(GRID)
TASK_TITLES = {task: env for task, (env, *_) in GRID.items()}
TASK_ALGO = {task: ALGO_SUFFIX[run] for task, (_, run, *_) in GRID.items()}
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


def trial_path(trials_dir: Path, task: str, core: str, seed: int) -> Path:
    return trials_dir / f"{tuned_example(task, core).stem}_seed{seed}.json"


def train_cell(config: dict[str, Any]) -> None:
    """Tune function trainable: one tuned example, one seed; writes its evaluation curve after every
    iteration to ``trials_dir`` (so an interrupted grid keeps every finished iteration)."""
    import torch
    from ray import tune

    torch.set_num_threads(1)  # one core per trial, so parallel trials do not oversubscribe
    from rllib_grsn.experiment import deep_merge, load_experiments

    task, core, seed = config["cell"]["task"], config["cell"]["core"], int(config["cell"]["seed"])
    overrides = deep_merge(config.get("overrides") or {}, {"seed": seed})
    (experiment,) = load_experiments(tuned_example(task, core), config=overrides)
    steps = int(experiment.stop["num_env_steps_sampled_lifetime"] * config["steps_scale"])
    record = {
        "task": task,
        "core": core,
        "algorithm": TASK_ALGO[task],
        "seed": seed,
        "target_env_steps": steps,
        "env_steps": [],
        "eval_returns": [],
        "final_eval_return": None,
        "complete": False,
        "wall_s": 0.0,
    }
    path = trial_path(Path(config["trials_dir"]), task, core, seed)
    start = time.time()
    algo = experiment.algo_config.build_algo()
    try:
        while not record["env_steps"] or record["env_steps"][-1] < steps:
            result = algo.train()
            eval_return = _nested(result, EVAL_RETURN)
            eval_return = float("nan") if eval_return is None else float(eval_return)
            record["env_steps"].append(int(result["num_env_steps_sampled_lifetime"]))
            record["eval_returns"].append(eval_return)
            record["final_eval_return"] = eval_return
            record["complete"] = record["env_steps"][-1] >= steps
            record["wall_s"] = round(time.time() - start, 1)
            path.write_text(json.dumps(record))
            tune.report({"env_steps": record["env_steps"][-1], "eval_return": eval_return})
    finally:
        algo.stop()


def run_grid(args: argparse.Namespace) -> None:
    import ray
    from ray import tune

    cells = [(task, core) for task in args.tasks for core in args.cores]
    args.trials_dir.mkdir(parents=True, exist_ok=True)
    # Seed-major order: with fewer CPUs than trials, whole seeds of the table finish first.
    grid = [
        {"task": t, "core": c, "seed": seed}
        for seed in args.seed_list
        for t, c in cells
        if args.rerun or not _complete(trial_path(args.trials_dir, t, c, seed))
    ]
    if not grid:
        print(f"every requested trial already has a complete record in {args.trials_dir}")
        return
    ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False)
    try:
        storage = str(Path(args.storage_path).resolve())
        tuner = tune.Tuner(
            tune.with_resources(train_cell, {"cpu": 1}),
            param_space={
                "cell": tune.grid_search(grid),
                "steps_scale": args.steps_scale,
                "overrides": args.config,
                "trials_dir": str(args.trials_dir.resolve()),
            },
            tune_config=tune.TuneConfig(max_concurrent_trials=args.num_cpus),
            run_config=tune.RunConfig(
                name="reproduce_table1", storage_path=storage, verbose=0, callbacks=[TrialProgress(len(grid))]
            ),
        )
        tuner.fit()
    finally:
        ray.shutdown()


def _complete(path: Path) -> bool:
    try:
        return bool(json.loads(path.read_text()).get("complete"))
    except (OSError, ValueError):
        return False


def collect(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The requested trials' records (complete or not) from ``trials_dir``."""
    rows = []
    for seed in args.seed_list:
        for task in args.tasks:
            for core in args.cores:
                path = trial_path(args.trials_dir, task, core, seed)
                if path.is_file():
                    rows.append(json.loads(path.read_text()))
    return rows


class TrialProgress(Callback):
    """One line per finished trial (a full grid runs for hours)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.start = time.time()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.done += 1
        final = (trial.last_result or {}).get("eval_return", float("nan"))
        cell = trial.config["cell"]
        print(
            f"[{self.done}/{self.total}] {cell['task']} {cell['core']} seed {cell['seed']}: "
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


def plot(rows: list[dict[str, Any]], tasks: tuple[str, ...], cores: tuple[str, ...], path: Path) -> None:
    """Greedy evaluation return vs env steps, one panel per task: mean over seeds, band of +- std."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.4), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        for core in cores:
            # Complete trials only, like the table (an interrupted one would cut every curve short).
            curves = [r for r in rows if r["task"] == task and r["core"] == core and r["complete"]]
            if not curves:
                continue
            length = min(len(r["env_steps"]) for r in curves)
            steps = np.array(curves[0]["env_steps"][:length])
            returns = np.array([r["eval_returns"][:length] for r in curves], dtype=float)
            mean, std = np.nanmean(returns, axis=0), np.nanstd(returns, axis=0)
            ax.plot(steps, mean, label=f"{CORE_TITLES[core]} (n={len(curves)})")
            ax.fill_between(steps, mean - std, mean + std, alpha=0.2)
        ax.set_title(f"{TASK_TITLES[task]} ({TASK_ALGO[task].upper()})")
        ax.set_xlabel("env steps")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("greedy eval return (10 episodes)")
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


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
    parser.add_argument("--seeds", type=int, default=5, help="seeds first-seed .. first-seed+N-1 per cell")
    parser.add_argument("--first-seed", type=int, default=0, help="first seed of the range")
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
        "--config",
        type=_json_object,
        default={},
        help="JSON deep-merged into every tuned example's config, e.g. '{\"num_learners\": 1}'",
    )
    parser.add_argument(
        "--rerun", action="store_true", help="train trials again even when a complete record exists"
    )
    parser.add_argument(
        "--report-only", action="store_true", help="print the table from the records in --out's folder"
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.seeds, args.steps_scale = 1, 0.1
        if args.cores == CORES:
            args.cores = ("grsn", "lif")
    if args.seeds < 1 or args.first_seed < 0 or not 0 < args.steps_scale <= 1 or args.num_cpus < 1:
        parser.error("--seeds and --num-cpus must be >= 1, --first-seed >= 0 and --steps-scale in (0, 1]")
    args.seed_list = list(range(args.first_seed, args.first_seed + args.seeds))
    # One record per trial next to --out; a different budget or override gets its own folder.
    tag = "" if args.steps_scale == 1.0 and not args.config else f"_scale{args.steps_scale:g}"
    tag += "_custom" if args.config else ""
    args.trials_dir = args.out.parent / f"{args.out.stem}_trials{tag}"
    return args


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"--config: not JSON: {err}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("--config: must be a JSON object")
    return value


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(REPO))
    from benchmarks.common import machine_description

    start = time.time()
    if not args.report_only:
        run_grid(args)
    rows = collect(args)
    table = summarise(rows, args.tasks, args.cores)
    report = {
        "machine": machine_description(),
        "command": " ".join(
            ["python -m benchmarks.reproduce_table1", *(sys.argv[1:] if argv is None else argv)]
        ),
        "seeds": args.seed_list,
        "steps_scale": args.steps_scale,
        "config": args.config,
        "wall_s": round(time.time() - start, 1),
        "table_markdown": table,
        "trials": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    if rows:
        try:
            plot(rows, args.tasks, args.cores, args.out.with_suffix(".png"))
        except ImportError:
            print("matplotlib is not installed (pip install -e .[bench]); no plot written")
    print(table)
    print(f"\n{len(rows)} trial records ({report['machine']}); written to {args.out}")
    expected = len(args.seed_list) * len(args.tasks) * len(args.cores)
    incomplete = expected - sum(1 for r in rows if r["complete"])
    if incomplete:
        print(f"{incomplete} of {expected} trials have no complete record (see {args.trials_dir})")
    return 1 if incomplete else 0


if __name__ == "__main__":
    sys.exit(main())
