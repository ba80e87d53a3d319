"""QMIX learning curves on SMAX 8m (issue #4): greedy test win rate vs env steps, GRSN vs GRU agents.

Issue #4 asks for "a learning curve (win rate vs env steps, 3 seeds) of QMIX-GRSN vs QMIX-GRU on
SMAX 8m" against the target "QMIX-GRSN test win rate on SMAX 8m >= 90% (3 seeds) within 2M env
steps, GRU alongside". Each trial is the tuned example ``tuned_examples/smac_{map}_{core}.yaml``
(pymarl2's QMIX settings, see generate_smac.py) with its seed set and ``env_config.backend`` forced
to ``smax`` (JaxMARL's re-implementation: no StarCraft II needed, but not SMAC, so everything here
says SMAX), trained to ``--steps`` env steps. The test win rate is RLlib's evaluation:
``--eval-episodes`` greedy episodes every ``--eval-interval`` training iterations (about 2000 env
steps each: the default, 32 episodes every 5 iterations, is pymarl's 32 every 10k steps), plus one
more at the budget when the last iteration had none, so the final mark always has a fresh test.
The backend that actually ran is read from every result and recorded. Run from the repository root:

    # issue #4's grid, 2 cores x 3 seeds = 6 one-CPU trials: a 16-core machine, hours
    .venv/bin/python -m benchmarks.qmix_learning_curve --seeds 3 --num-cpus 6
    # 2-core smoke check: 1 seed, GRSN and GRU, 20k env steps, a test of 8 episodes every iteration
    .venv/bin/python -m benchmarks.qmix_learning_curve --smoke

As with reproduce_table1.py (machinery in tune_grid.py), every trial writes its record after every
iteration to ``<out>_trials*/``; running the same command again skips complete trials and
restarts unfinished ones, and ``--report-only`` rebuilds the outputs from the records: a markdown
table (test win rate mean +- std over seeds at four env-step marks, each seed's first env step at
the target win rate, the final win rate over every test in the last tenth of the budget), the
JSON report (``--out``) and a figure next to it (``.png``: mean over seeds with a min-max band
per core).
"""

from __future__ import annotations

import argparse
import math
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
    nested,
    run_grid,
    set_trials_dir,
    train_and_collect,
    train_recorded,
    write_report,
)
from tuned_examples.generate_smac import CORES, MAPS

TUNED = REPO / "tuned_examples"
BACKENDS = ("smax", "sc2", "auto")
# Names for tables and figures: a SMAX number must never read as a StarCraft II (SMAC) one.
BACKEND_TITLES = {"smax": "SMAX", "sc2": "SMAC", "auto": "SMAC or SMAX (backend auto)"}
CORE_TITLES = {"grsn": "QMIX-GRSN", "gru": "QMIX-GRU", "lif": "QMIX-LIF"}
FULL_STEPS = 2_000_000  # issue #4's budget
SMOKE_STEPS = 20_000
# pymarl's test: 32 greedy episodes every 10k env steps (5 iterations of >= 2000 env steps here).
EVAL_INTERVAL, EVAL_EPISODES = 5, 32
SMOKE_EVAL_INTERVAL, SMOKE_EVAL_EPISODES = 1, 8
TARGET_WIN_RATE = 0.9
MARK_FRACTIONS = (0.125, 0.25, 0.5, 1.0)  # of --steps: 250k, 500k, 1M and 2M for issue #4
# The final win rate pools every test in the last tenth of the budget (1.8M-2M: ~20 tests, ~640
# battles): one test of 32 battles has a binomial std of ~5 points at 90%, and consecutive tests
# swing by 10-30 points, so a single final test says little about where a trial ended.
FINAL_FRACTION = 0.1
DEFAULT_OUT = REPO / "benchmarks" / "results" / "qmix_learning_curve_{map}.json"
# Record list -> metric of rllib_grsn.tracking.team_metrics in the greedy test episodes.
TEST_SERIES = {"test_win_rates": "win_rate", "test_team_returns": "team_return_mean"}
# Record list -> result key path, appended every iteration (NaN where an iteration had no test).
SERIES = {
    **{key: ("evaluation", "env_runners", metric) for key, metric in TEST_SERIES.items()},
    "train_win_rates": ("env_runners", "win_rate"),  # the exploring (epsilon-greedy) episodes
}


def tuned_example(map_name: str, core: str) -> Path:
    return TUNED / f"smac_{map_name}_{core}.yaml"


def trial_path(trials_dir: Path, map_name: str, core: str, seed: int) -> Path:
    return trials_dir / f"{tuned_example(map_name, core).stem}_seed{seed}.json"


def train_trial(config: dict[str, Any]) -> None:
    """Tune function trainable: one (core, seed) of the grid, trained to ``steps`` env steps; writes
    its record after every iteration to ``trials_dir`` (an interrupted grid keeps its iterations)."""
    from rllib_grsn.experiment import deep_merge

    map_name, core, seed = config["map"], config["cell"]["core"], int(config["cell"]["seed"])
    # The named options win over --config: they are what the record and the trials folder say.
    forced = {
        "env_config": {"backend": config["backend"]},
        "evaluation_interval": config["eval_interval"],
        "evaluation_duration": config["eval_episodes"],
        "evaluation_duration_unit": "episodes",
    }
    overrides = deep_merge(config.get("overrides") or {}, forced)
    experiment = experiment_for_trial(tuned_example(map_name, core), overrides, seed)
    steps = int(config["steps"])
    record: dict[str, Any] = {
        "map": map_name,
        "core": core,
        "seed": seed,
        "backend_requested": config["backend"],
        "backend": None,  # what ran, from result["backend"]
        "target_env_steps": steps,
        "eval_interval": config["eval_interval"],
        "eval_episodes": config["eval_episodes"],
        "env_steps": [],
        **{key: [] for key in SERIES},
        "complete": False,
        "wall_s": 0.0,
    }
    path = trial_path(Path(config["trials_dir"]), map_name, core, seed)
    train_recorded(
        experiment, record, path, steps, SERIES, _after_iteration,
        checkpoint_every=int(config.get("checkpoint_every", 0)),
    )  # fmt: skip


def _after_iteration(algo: Any, record: dict[str, Any], result: dict[str, Any]) -> None:
    """Records the backend that ran and, at the budget, tests the final agents if the last
    iteration did not (evaluation runs every ``eval_interval`` iterations only; the experiment's
    :class:`~rllib_grsn.tracking.stale_evaluation.DropStaleEvaluation` keeps RLlib's repeat of the
    test before out of the iterations in between)."""
    if result.get("backend"):
        record["backend"] = result["backend"]
    if record["env_steps"][-1] < record["target_env_steps"] or not math.isnan(record["test_win_rates"][-1]):
        return
    runners = nested(algo.evaluate(), ("env_runners",)) or {}  # evaluate() returns result["evaluation"]
    for key, metric in TEST_SERIES.items():
        if runners.get(metric) is not None:
            record[key][-1] = float(runners[metric])


def _describe(cell: dict[str, Any], last_result: dict[str, Any]) -> str:
    win_rate = last_result.get("test_win_rates", float("nan"))  # the budget's test once done
    return f"{cell['core']} seed {cell['seed']}: latest test win rate {100 * win_rate:.1f}%"


def train_grid(args: argparse.Namespace) -> None:
    """Trains every requested (core, seed) without a complete record, ``--num-cpus`` at a time."""
    # Seed-major order: with fewer CPUs than trials, whole seeds of the comparison finish first.
    cells = [{"core": core, "seed": seed} for seed in args.seed_list for core in args.cores]
    shared = {
        "map": args.map,
        "backend": args.backend,
        "steps": args.steps,
        "eval_interval": args.eval_interval,
        "eval_episodes": args.eval_episodes,
        "overrides": args.config,
        "trials_dir": str(args.trials_dir.resolve()),
        "checkpoint_every": args.checkpoint_every,
    }
    run_grid(
        train_trial, cells, shared,
        path_of=lambda c: trial_path(args.trials_dir, args.map, c["core"], c["seed"]), rerun=args.rerun,
        name=f"qmix_learning_curve_{args.map}", num_cpus=args.num_cpus, cpus_per_trial=args.cpus_per_trial,
        storage_path=args.storage_path, describe=_describe,
    )  # fmt: skip


def collect(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The requested trials' records (complete or not) from ``trials_dir``."""
    return load_records(
        trial_path(args.trials_dir, args.map, core, seed) for seed in args.seed_list for core in args.cores
    )


def marks_for(steps: int) -> list[int]:
    """The table's env-step marks: an eighth, a quarter, half and all of the budget (250k, 500k,
    1M, 2M for issue #4's 2M), so a shorter run gets the same columns at its own scale."""
    return sorted({max(1, round(steps * fraction)) for fraction in MARK_FRACTIONS})


def format_steps(steps: float) -> str:
    """250000 -> '250k', 2000000 -> '2M', 2500 -> '2.5k': env steps as a reader scans them."""
    if steps >= 1_000_000:
        return f"{steps / 1_000_000:.4g}M"
    if steps >= 1000:
        return f"{steps / 1000:.4g}k"
    return f"{steps:.0f}"


def evaluations(record: dict[str, Any], key: str = "test_win_rates") -> list[tuple[int, float]]:
    """(env steps, test win rate, or the test's ``key``) of every test the trial ran: the test
    iterations' and the budget's (the last iteration's).

    Records written before runs dropped RLlib's repeated test results (``DropStaleEvaluation``)
    also hold a copy of every test in the iteration after it; only their last entry may be one (it
    stands for the budget's test, one iteration late).
    """
    interval = int(record.get("eval_interval") or 1)
    last = len(record["env_steps"]) - 1
    return [
        (step, value)
        for i, (step, value) in enumerate(zip(record["env_steps"], record[key], strict=True))
        if ((i + 1) % interval == 0 or i == last) and value is not None and not math.isnan(value)
    ]


def win_rate_at(record: dict[str, Any], mark: int, key: str = "test_win_rates") -> float | None:
    """Test win rate (or ``key``) of the first test at or after ``mark`` env steps (None: the trial
    never got there).

    At or after, not before: an iteration stops at the first whole episode past ``min_sample_timesteps``,
    so the budget's own test (the final one) comes a few steps past the budget mark.
    """
    return next((value for step, value in evaluations(record, key) if step >= mark), None)


def first_reaching(record: dict[str, Any], target: float) -> int | None:
    """Env steps of the first test whose win rate reached ``target`` (None: not reached)."""
    return next((step for step, rate in evaluations(record) if rate >= target), None)


def final_win_rate(record: dict[str, Any], budget: int, fraction: float = FINAL_FRACTION) -> float | None:
    """Mean test win rate of the tests at or after ``(1 - fraction) * budget`` env steps (None: none).

    Every test has the same number of episodes, so this is the win rate over all their battles.
    """
    start = (1 - fraction) * budget
    rates = [rate for step, rate in evaluations(record) if step >= start]
    return float(np.mean(rates)) if rates else None


def env_title(rows: list[dict[str, Any]], map_name: str, requested: str) -> str:
    """'SMAX 8m' from the backends that actually ran (the requested one while nothing has run)."""
    backends = sorted({r.get("backend") or r["backend_requested"] for r in rows}) or [requested]
    return f"{' + '.join(BACKEND_TITLES.get(b, b) for b in backends)} {map_name}"


def summarise(
    rows: list[dict[str, Any]], cores: tuple[str, ...], marks: list[int], target: float
) -> dict[str, Any]:
    """Per core, over its complete trials: test win rate mean/std/min/max at each mark, each seed's
    first env step at ``target``, the final win rate (:func:`final_win_rate`) and how many seeds
    end at or above ``target`` by it, the test team return at the budget (it shows learning before
    the first wins do) and the wall time (the JSON summary; the table is drawn from it)."""
    summary: dict[str, Any] = {}
    for core in cores:
        done = sorted((r for r in rows if r["core"] == core and r["complete"]), key=lambda r: r["seed"])
        at = {str(mark): _stats([win_rate_at(r, mark) for r in done]) for mark in marks}
        reached = {str(r["seed"]): first_reaching(r, target) for r in done}
        final = {str(r["seed"]): final_win_rate(r, marks[-1]) for r in done}
        summary[core] = {
            "n_seeds": len(done),
            "seeds": [r["seed"] for r in done],
            "win_rate_at": at,
            "first_env_steps_at_target": reached,
            "seeds_reaching_target": sum(step is not None for step in reached.values()),
            "final_win_rate": {**_stats(list(final.values())), "per_seed": final},
            "seeds_final_at_target": sum(rate is not None and rate >= target for rate in final.values()),
            "team_return_at_budget": _stats([win_rate_at(r, marks[-1], "test_team_returns") for r in done]),
            "wall_s_mean": float(np.mean([r["wall_s"] for r in done])) if done else None,
        }
    return summary


def _stats(values: list[float | None]) -> dict[str, Any]:
    """n, mean, std (over seeds, like reproduce_table1), min and max of the values that exist."""
    present = [v for v in values if v is not None]
    if not present:
        return {"n": 0, "mean": None, "std": None, "min": None, "max": None}
    return {
        "n": len(present),
        "mean": float(np.mean(present)),
        "std": float(np.std(present)),
        "min": float(np.min(present)),
        "max": float(np.max(present)),
    }


def table(summary: dict[str, Any], env: str, marks: list[int], target: float) -> str:
    """Markdown: one row per core, test win rate mean +- std (%) at each mark, the first env step
    at the target per seed, the final win rate (mean +- std, and the seeds at the target by it),
    the test team return at the budget, the number of seeds and minutes per trial."""
    budget = marks[-1]
    final_from = format_steps((1 - FINAL_FRACTION) * budget)
    header = [f"{env}: test win rate at", *(format_steps(m) for m in marks)]
    header += [f"first test >= {100 * target:g}% (per seed)"]
    header += [f"final: all tests from {final_from} (seeds >= {100 * target:g}%)"]
    header += [f"team return at {format_steps(budget)}"]
    header += ["seeds", "min/trial"]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for core, row in summary.items():
        cells = [CORE_TITLES.get(core, core)]
        for mark in marks:
            stat = row["win_rate_at"][str(mark)]
            cells.append(
                "n/a" if stat["mean"] is None else f"{100 * stat['mean']:.1f} ± {100 * stat['std']:.1f}%"
            )
        reached = row["first_env_steps_at_target"]
        cells.append(
            ", ".join(
                f"s{seed} {'not reached' if step is None else format_steps(step)}"
                for seed, step in reached.items()
            )
            or "n/a"
        )
        final = row["final_win_rate"]
        cells.append(
            "n/a"
            if final["mean"] is None
            else f"{100 * final['mean']:.1f} ± {100 * final['std']:.1f}% "
            f"({row['seeds_final_at_target']}/{final['n']})"
        )
        ret = row["team_return_at_budget"]
        cells.append("n/a" if ret["mean"] is None else f"{ret['mean']:.2f} ± {ret['std']:.2f}")
        cells.append(str(row["n_seeds"]))
        cells.append("n/a" if row["wall_s_mean"] is None else f"{row['wall_s_mean'] / 60:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], cores: tuple[str, ...], env: str, target: float, path: Path) -> None:
    """Test win rate (left) and test team return (right: it rises long before the first wins) vs env
    steps per core: mean over seeds, band from the worst to the best seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (wins, returns) = plt.subplots(1, 2, figsize=(10.5, 4.0))
    for core in cores:
        done = [r for r in rows if r["core"] == core and r["complete"]]
        label = f"{CORE_TITLES.get(core, core)} (n={len(done)})"
        _plot_band(wins, [evaluations(r) for r in done], 100, label)
        _plot_band(returns, [evaluations(r, "test_team_returns") for r in done], 1, label)
    wins.axhline(100 * target, color="grey", linestyle=":", linewidth=1, label=f"target {100 * target:g}%")
    wins.set_ylabel("test win rate (%)")
    wins.set_ylim(-2, 102)
    returns.set_ylabel("test team return")
    for ax in (wins, returns):
        ax.set_xlabel("env steps")
        ax.set_xlim(left=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"QMIX on {env}: greedy test episodes (mean, min-max over seeds)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_band(ax: Any, curves: list[list[tuple[int, float]]], scale: float, label: str) -> None:
    """Mean line and min-max band of ``curves`` ((env steps, value) per test, one curve per seed).

    Seeds test at slightly different env steps (iterations end on whole episodes), so each curve is
    interpolated onto the union of the test steps where every seed has one.
    """
    curves = [c for c in curves if c]
    if not curves:
        return
    lo, hi = max(c[0][0] for c in curves), min(c[-1][0] for c in curves)
    grid = np.array(sorted({s for c in curves for s, _ in c if lo <= s <= hi}))
    values = scale * np.array([np.interp(grid, *zip(*c, strict=True)) for c in curves])
    (line,) = ax.plot(grid, values.mean(axis=0), marker="." if len(grid) < 30 else None, label=label)
    ax.fill_between(grid, values.min(axis=0), values.max(axis=0), alpha=0.2, color=line.get_color())


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except None: those options name their default in their help
    (it depends on --smoke)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        return action.help if action.default is None else super()._get_help_string(action)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Train QMIX with GRSN and GRU agents (tuned_examples/smac_<map>_<core>.yaml) over "
        "seeds with Ray Tune, by default on JaxMARL's SMAX, and report the greedy test win rate vs env "
        "steps: a table at four env-step marks with each seed's first step at the target win rate, "
        "a JSON report and a figure. Issue #4: QMIX-GRSN >= 90% on SMAX 8m within 2M env steps, "
        "3 seeds, GRU alongside. Re-running the same command resumes (complete trials are skipped).",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument(
        "--map", choices=MAPS, default="8m", help="map, by its SMAC name (SMAX has all but MMM2)"
    )
    parser.add_argument(
        "--cores",
        type=lambda v: csv_choices(v, CORES, "--cores"),
        default=("grsn", "gru"),
        help=f"comma-separated subset of {', '.join(CORES)}",
    )
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="smax",
        help="env_config.backend of every trial: smax (JaxMARL, no StarCraft II), sc2 (StarCraft II) "
        "or auto (sc2 when installed); the backend that ran is recorded and names the outputs",
    )
    parser.add_argument(
        "--steps", type=int, help=f"env steps per trial [default: {FULL_STEPS}; --smoke: {SMOKE_STEPS}]"
    )
    parser.add_argument(
        "--eval-interval",
        type=int,
        help="training iterations (>= 2000 env steps each) between greedy tests "
        f"[default: {EVAL_INTERVAL}; --smoke: {SMOKE_EVAL_INTERVAL}]",
    )
    parser.add_argument(
        "--eval-episodes",
        type=int,
        help=f"greedy episodes per test [default: {EVAL_EPISODES}; --smoke: {SMOKE_EVAL_EPISODES}]",
    )
    parser.add_argument(
        "--target-win-rate",
        type=float,
        default=TARGET_WIN_RATE,
        help="test win rate whose first env step the table reports per seed",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help=f"1 seed, {SMOKE_STEPS} env steps, a test every iteration: a check that fits 2 cores",
    )
    add_grid_options(
        parser, seeds=3, storage_path=REPO / "results" / "qmix_learning_curve", out=DEFAULT_OUT,
        checkpoint_every=0,
        checkpoint_note="; QMIX checkpoints leave out the replay (GBs on SMAX) unless --config "
        "'{\"store_buffer_in_checkpoints\": true}', so by default a resumed trial refills it from empty",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.smoke:
        args.seeds = 1
    smoke = args.smoke
    args.steps = args.steps if args.steps is not None else SMOKE_STEPS if smoke else FULL_STEPS
    custom_eval = args.eval_interval is not None or args.eval_episodes is not None or smoke
    if args.eval_interval is None:
        args.eval_interval = SMOKE_EVAL_INTERVAL if smoke else EVAL_INTERVAL
    if args.eval_episodes is None:
        args.eval_episodes = SMOKE_EVAL_EPISODES if smoke else EVAL_EPISODES
    check_grid_args(parser, args)
    if args.steps < 1 or args.eval_interval < 1 or args.eval_episodes < 1:
        parser.error("--steps, --eval-interval and --eval-episodes must be >= 1")
    if not 0 < args.target_win_rate <= 1:
        parser.error("--target-win-rate must be in (0, 1]")
    if args.backend == "smax":
        from rllib_grsn.envs.smax import SMAX_MAPS

        if args.map not in SMAX_MAPS:
            parser.error(
                f"--map {args.map} does not exist on SMAX ({', '.join(SMAX_MAPS)}); use --backend sc2"
            )
    if args.out == DEFAULT_OUT:
        args.out = Path(str(DEFAULT_OUT).format(map=args.map))
    # Another backend, budget or test: records of their own.
    tag = "" if args.backend == "smax" else f"_{args.backend}"
    tag += "" if args.steps == FULL_STEPS else f"_steps{args.steps}"
    tag += f"_eval{args.eval_interval}x{args.eval_episodes}" if custom_eval else ""
    set_trials_dir(args, tag)
    args.marks = marks_for(args.steps)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.time()
    rows = train_and_collect(args, train_grid, collect)
    env = env_title(rows, args.map, args.backend)
    summary = summarise(rows, args.cores, args.marks, args.target_win_rate)
    markdown = table(summary, env, args.marks, args.target_win_rate)
    report = {
        "env": env,
        "map": args.map,
        "backend_requested": args.backend,
        "backends": sorted({r["backend"] for r in rows if r.get("backend")}),
        "cores": list(args.cores),
        "seeds": args.seed_list,
        "steps": args.steps,
        "marks": args.marks,
        "eval_interval": args.eval_interval,
        "eval_episodes": args.eval_episodes,
        "target_win_rate": args.target_win_rate,
        "config": args.config,
        "wall_s": round(time.time() - start, 1),
        "summary": summary,
        "table_markdown": markdown,
    }
    report = write_report(
        args, argv, "benchmarks.qmix_learning_curve", report, rows,
        lambda path: plot(rows, args.cores, env, args.target_win_rate, path),
    )  # fmt: skip
    print(
        f"QMIX on {env}, greedy test win rate ({args.eval_episodes} episodes per test), mean ± std over seeds"
    )
    print(markdown)
    print(f"\n{len(rows)} trial records, trained on {describe_machines(report)}; written to {args.out}")
    for row in rows:
        if not row["complete"]:
            reached = row["env_steps"][-1] if row["env_steps"] else 0
            where = f"{reached} of {row['target_env_steps']} env steps"
            tests = evaluations(row)
            last = f", last test {100 * tests[-1][1]:.1f}% at {tests[-1][0]}" if tests else ""
            print(f"unfinished: {row['core']} seed {row['seed']} at {where}{last}")
    expected = len(args.seed_list) * len(args.cores)
    return 1 if count_incomplete(rows, expected, args.trials_dir) else 0


if __name__ == "__main__":
    sys.exit(main())
