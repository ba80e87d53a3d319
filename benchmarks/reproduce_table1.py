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
evaluation curve) after every iteration to ``<out>_trials/``, and every ``--checkpoint-every`` env
steps (5000 by default) an Algorithm checkpoint, replay buffer included, beside it. Running the same
command again skips trials whose record is complete and resumes unfinished ones from their last
checkpoint, so an interrupted grid loses at most a few thousand env steps per running trial;
``--report-only`` prints the table from the records. ``--out`` gets the table and every record.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.tune_grid import (
    REPO,
    add_grid_options,
    check_grid_args,
    count_incomplete,
    csv_choices,
    describe_machines,
    experiment_for_trial,
    load_records,
    run_grid,
    set_trials_dir,
    train_and_collect,
    train_recorded,
    write_report,
)
from tuned_examples.generate_table1 import ALGO_SUFFIX, CORES
from tuned_examples.generate_table1 import TASKS as GRID

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
# Env steps between a trial's resume checkpoints: 5 of Pendulum's 50 iterations, a few minutes each on
# one CPU. The replay buffer (TD3/SAC store it by default) is a few MB at these budgets.
CHECKPOINT_EVERY = 5000


def tuned_example(task: str, core: str) -> Path:
    return TUNED / f"{task}_{core}_{TASK_ALGO[task]}.yaml"


def trial_path(trials_dir: Path, task: str, core: str, seed: int) -> Path:
    return trials_dir / f"{tuned_example(task, core).stem}_seed{seed}.json"


def train_cell(config: dict[str, Any]) -> None:
    """Tune function trainable: one tuned example, one seed; writes its evaluation curve after every
    iteration to ``trials_dir`` (so an interrupted grid keeps every finished iteration)."""
    task, core, seed = config["cell"]["task"], config["cell"]["core"], int(config["cell"]["seed"])
    experiment = experiment_for_trial(tuned_example(task, core), config.get("overrides") or {}, seed)
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
    train_recorded(
        experiment, record, path, steps, {"eval_returns": EVAL_RETURN}, _final_eval_return,
        checkpoint_every=int(config.get("checkpoint_every", CHECKPOINT_EVERY)),
    )  # fmt: skip


def _final_eval_return(algo: Any, record: dict[str, Any], result: dict[str, Any]) -> None:
    record["final_eval_return"] = record["eval_returns"][-1]


def _describe(cell: dict[str, Any], last_result: dict[str, Any]) -> str:
    latest = last_result.get("eval_returns", float("nan"))  # the final one once the trial is done
    return f"{cell['task']} {cell['core']} seed {cell['seed']}: eval return {latest:.1f}"


def train_grid(args: argparse.Namespace) -> None:
    """Trains every requested (task, core, seed) without a complete record, ``--num-cpus`` at a time."""
    # Seed-major order: with fewer CPUs than trials, whole seeds of the table finish first.
    cells = [
        {"task": task, "core": core, "seed": seed}
        for seed in args.seed_list
        for task in args.tasks
        for core in args.cores
    ]
    shared = {
        "steps_scale": args.steps_scale,
        "overrides": args.config,
        "trials_dir": str(args.trials_dir.resolve()),
        "checkpoint_every": args.checkpoint_every,
    }
    run_grid(
        train_cell, cells, shared,
        path_of=lambda c: trial_path(args.trials_dir, c["task"], c["core"], c["seed"]), rerun=args.rerun,
        name="reproduce_table1", num_cpus=args.num_cpus, cpus_per_trial=args.cpus_per_trial,
        storage_path=args.storage_path, describe=_describe,
    )  # fmt: skip


def collect(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The requested trials' records (complete or not) from ``trials_dir``."""
    return load_records(
        trial_path(args.trials_dir, task, core, seed)
        for seed in args.seed_list
        for task in args.tasks
        for core in args.cores
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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Train the paper's Table 1 grid (tuned_examples/*_{sac,td3}.yaml) over seeds with "
        "Ray Tune and print mean +- std of the final greedy evaluation return next to the paper's numbers.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--tasks",
        type=lambda v: csv_choices(v, TASKS, "--tasks"),
        default=TASKS,
        help=f"comma-separated subset of {', '.join(TASKS)}",
    )
    parser.add_argument(
        "--cores",
        type=lambda v: csv_choices(v, CORES, "--cores"),
        default=CORES,
        help=f"comma-separated subset of {', '.join(CORES)}",
    )
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
    add_grid_options(
        parser,
        seeds=5,
        storage_path=REPO / "results" / "table1",
        out=REPO / "benchmarks" / "results" / "table1.json",
        checkpoint_every=CHECKPOINT_EVERY,
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.seeds, args.steps_scale = 1, 0.1
        if args.cores == CORES:
            args.cores = ("grsn", "lif")
    check_grid_args(parser, args)
    if not 0 < args.steps_scale <= 1:
        parser.error("--steps-scale must be in (0, 1]")
    set_trials_dir(args, "" if args.steps_scale == 1.0 and not args.config else f"_scale{args.steps_scale:g}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.time()
    rows = train_and_collect(args, train_grid, collect)
    table = summarise(rows, args.tasks, args.cores)
    report = {
        "seeds": args.seed_list,
        "steps_scale": args.steps_scale,
        "config": args.config,
        "wall_s": round(time.time() - start, 1),
        "table_markdown": table,
    }
    report = write_report(
        args, argv, "benchmarks.reproduce_table1", report, rows,
        lambda path: plot(rows, args.tasks, args.cores, path),
    )  # fmt: skip
    print(table)
    print(f"\n{len(rows)} trial records, trained on {describe_machines(report)}; written to {args.out}")
    expected = len(args.seed_list) * len(args.tasks) * len(args.cores)
    return 1 if count_incomplete(rows, expected, args.trials_dir) else 0


if __name__ == "__main__":
    sys.exit(main())
