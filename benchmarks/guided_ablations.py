"""Learning curves and final test returns of the guided-training ablations (issue #34).

Reads the Tune results of ``rllib train file tuned_examples/sweeps/pendulum_guide_ablations.yaml`` (one
experiment per task x core, each a grid of the four variants of the ``guide:`` section x seeds) and
reports, per task and core:

* **learning curves**: the greedy test return (10 episodes of the spiking policy alone, after every
  iteration) against env steps, mean +- std over seeds, one line per variant (a PNG, 2 x 2 panels);
* **final test return**: the last test (as Table 1 counts a cell) and the mean of the tests in the last
  ``--window`` env steps (less noisy), each as mean +- std over the seeds whose trial reached the stop;
* **env steps to TD3's final return**: the target is plain TD3's final return in the window sense (mean
  over its seeds of each seed's mean test return in the last ``--window`` env steps); a variant reaches
  it at the first env-step mark where its seed-mean curve, averaged over the tests of the preceding
  ``--window`` env steps, is at least the target (the same smoothing on both sides, so one lucky test
  does not count). TD3's own mark is shown too: a guided variant helps when its mark comes earlier.
* the env steps the guide acted (``num_env_steps_guide_lifetime``) per variant.

Trials still running or interrupted are drawn up to where they are and left out of the final numbers
(the table says how many seeds finished). The JSON written to ``--out`` holds every trial's curve, so
``--report-only`` redraws the table and figure without the Tune folders. Run from the repository root:

    python -m benchmarks.guided_ablations                        # ~/ray_results, or $RLLIB_GRSN_STORAGE
    python -m benchmarks.guided_ablations --storage-path DIR     # where `rllib train file` wrote them
    python -m benchmarks.guided_ablations --report-only          # from the JSON only
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SWEEP = REPO / "tuned_examples" / "sweeps" / "pendulum_guide_ablations.yaml"
OUT = REPO / "benchmarks" / "results" / "guided_ablations" / "pendulum.json"
STOP_KEY = "num_env_steps_sampled_lifetime"
EVAL_RETURN = ("evaluation", "env_runners", "episode_return_mean")
GUIDE_STEPS = ("env_runners", "num_env_steps_guide_lifetime")


class ReportError(Exception):
    """A problem with the inputs, reported as one line and exit status 2."""


@dataclass
class TrialCurve:
    """One trial of the sweep: its cell, variant and seed, and its test returns over env steps."""

    experiment: str
    trial: str
    env: str
    core: str
    variant: str
    seed: int | None
    env_steps: list[int]  # at each test
    test_return: list[float]
    guide_env_steps: int  # the guide's acting steps over the whole trial so far
    last_env_steps: int  # the last iteration's, tested or not
    complete: bool  # reached the sweep's stop

    @property
    def cell(self) -> str:
        return f"{self.env} {self.core.upper()}"


def _get(result: dict[str, Any], path: Sequence[str]) -> Any:
    for key in path:
        if not isinstance(result, dict):
            return None
        result = result.get(key)
    return result


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def variant_name(guide: Any) -> str:
    """The ablation variant of a trial's ``config.guide`` (None: plain TD3)."""
    from rllib_grsn.algorithms.guide import ABLATION_NAMES, guide_settings

    settings = guide_settings(guide)
    return ABLATION_NAMES[0] if settings is None else settings.ablation


def read_trial(experiment: str, trial_dir: Path, stop_env_steps: int) -> tuple[TrialCurve | None, list[str]]:
    """A trial folder written by Tune (``params.json``: the config; ``result.json``: one JSON object per
    iteration) as a :class:`TrialCurve`, and notes on what was skipped. A trial that has not reported
    yet gives None."""
    notes: list[str] = []
    path = trial_dir / "result.json"
    try:
        config = json.loads((trial_dir / "params.json").read_text())
        if not isinstance(config, dict):
            raise ValueError("not a JSON object")
        variant = variant_name(config.get("guide"))
        lines = path.read_text().splitlines() if path.is_file() else []
    except (OSError, ValueError) as err:  # pydantic's ValidationError is a ValueError
        problem = " ".join(str(err).split())[:200]
        return None, [f"{trial_dir}: unreadable ({type(err).__name__}: {problem}); trial skipped"]
    model_config = config.get("model_config") or config.get("_model_config") or {}
    steps: list[int] = []
    returns: list[float] = []
    guide_steps = last_steps = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            result = json.loads(line)
        except ValueError:
            result = None
        if not isinstance(result, dict):
            # Tune appends a line per iteration: a line cut by a kill is the last one.
            notes.append(f"{path}: line {number} is not a JSON object (cut by an interrupt?); skipped")
            continue
        env_steps = result.get(STOP_KEY)
        if not _finite(env_steps):
            continue
        # A resumed trial (--resume) goes on from its last checkpoint and appends the iterations after
        # it again: the later lines replace the earlier ones from that point.
        while steps and steps[-1] >= env_steps:
            steps.pop()
            returns.pop()
        last_steps = int(env_steps)
        guided = _get(result, GUIDE_STEPS)
        guide_steps = int(guided) if _finite(guided) else guide_steps
        value = _get(result, EVAL_RETURN)
        if _finite(value):
            steps.append(int(env_steps))
            returns.append(float(value))
    if not lines:
        return None, notes
    curve = TrialCurve(
        experiment=experiment,
        trial=trial_dir.name,
        env=str(config.get("env")),
        core=str(model_config.get("core", "?") if isinstance(model_config, dict) else "?"),
        variant=variant,
        seed=config.get("seed"),
        env_steps=steps,
        test_return=returns,
        guide_env_steps=guide_steps,
        last_env_steps=last_steps,
        complete=last_steps >= stop_env_steps,
    )
    return curve, notes


def sweep_experiments(sweep: Path) -> dict[str, int]:
    """Each experiment of the sweep file and its stop in env steps."""
    from rllib_grsn.checks.problems import ExperimentError
    from rllib_grsn.checks.yaml_file import read_yaml

    try:
        data = read_yaml(sweep)
    except ExperimentError as err:
        raise ReportError(str(err)) from None
    if not isinstance(data, dict) or not data:
        raise ReportError(f"{sweep}: expected a mapping of experiments")
    out = {}
    for name, spec in data.items():
        stop = spec.get("stop") if isinstance(spec, dict) else None
        stop = stop if isinstance(stop, dict) else {}
        if not _finite(stop.get(STOP_KEY)):
            raise ReportError(f"{sweep}: {name}.stop must give {STOP_KEY} (the curves are over env steps)")
        out[str(name)] = int(stop[STOP_KEY])
    return out


def read_sweep(storage: Path, experiments: dict[str, int]) -> tuple[list[TrialCurve], list[str]]:
    """Every trial of the sweep's experiments found under ``storage``, and notes on what is missing."""
    trials: list[TrialCurve] = []
    notes: list[str] = []
    for name, stop in experiments.items():
        folder = storage / name
        trial_dirs = sorted(p.parent for p in folder.glob("*/params.json"))
        if not trial_dirs:
            notes.append(f"{name}: no trials in {folder}")
            continue
        for trial_dir in trial_dirs:
            curve, trial_notes = read_trial(name, trial_dir, stop)
            notes += trial_notes
            if curve is not None:
                trials.append(curve)
    return trials, notes


# ------------------------------------------------------------------------------------------ analysis


def on_marks(curve: TrialCurve, marks: np.ndarray) -> np.ndarray:
    """The trial's test return at each env-step mark: the latest test at or before the mark (NaN before
    its first test and after its last iteration)."""
    out = np.full(len(marks), np.nan)
    steps = np.asarray(curve.env_steps)
    if len(steps) == 0:
        return out
    index = np.searchsorted(steps, marks, side="right") - 1
    valid = (index >= 0) & (marks <= curve.last_env_steps)
    out[valid] = np.asarray(curve.test_return)[index[valid]]
    return out


def window_mean(curve: TrialCurve, end: float, window: float) -> float | None:
    """The mean of the trial's tests in ``(end - window, end]`` env steps."""
    values = [r for s, r in zip(curve.env_steps, curve.test_return, strict=True) if end - window < s <= end]
    return float(np.mean(values)) if values else None


def first_mark_reaching(
    mean_curve: np.ndarray, marks: np.ndarray, target: float, window: float
) -> int | None:
    """The first mark at which the mean of ``mean_curve`` over the marks in the preceding ``window`` env
    steps is at least ``target`` (None: never)."""
    for mark in marks:
        recent = mean_curve[(marks > mark - window) & (marks <= mark)]
        recent = recent[np.isfinite(recent)]
        if len(recent) and float(np.mean(recent)) >= target:
            return int(mark)
    return None


def _stats(values: Sequence[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "n": len(values)}


def analyse(trials: list[TrialCurve], mark_every: int, window: int) -> dict[str, Any]:
    """Per cell (task x core) and variant: seed-mean curves on env-step marks, final returns and the
    mark where the (window-averaged) curve reaches TD3's final return."""
    from rllib_grsn.algorithms.guide import ABLATION_NAMES

    cells: dict[str, Any] = {}
    for cell in sorted({t.cell for t in trials}):
        members = [t for t in trials if t.cell == cell]
        stop = max(t.last_env_steps for t in members)
        marks = np.arange(mark_every, stop + 1, mark_every)
        variants: dict[str, Any] = {}
        order = [*ABLATION_NAMES, *sorted({t.variant for t in members} - set(ABLATION_NAMES))]
        for variant in order:
            runs = sorted(
                (t for t in members if t.variant == variant), key=lambda t: (t.seed is None, t.seed)
            )
            if not runs:
                continue
            grid = np.stack([on_marks(t, marks) for t in runs])
            with warnings.catch_warnings():
                # Marks no seed has reached yet are all-NaN columns: NaN in the curve, no warning.
                warnings.simplefilter("ignore", category=RuntimeWarning)
                mean, std = np.nanmean(grid, axis=0), np.nanstd(grid, axis=0)
            done = [t for t in runs if t.complete]
            windows = [w for t in done if (w := window_mean(t, t.last_env_steps, window)) is not None]
            variants[variant] = {
                "seeds": [t.seed for t in runs],
                "complete_seeds": [t.seed for t in done],
                "marks": marks.tolist(),
                "mean": [None if not math.isfinite(v) else float(v) for v in mean],
                "std": [None if not math.isfinite(v) else float(v) for v in std],
                "final_last_test": _stats([t.test_return[-1] for t in done if t.test_return]),
                "final_window": _stats(windows),
                "guide_env_steps": _stats([t.guide_env_steps for t in done]),
            }
        td3 = variants.get(ABLATION_NAMES[0], {}).get("final_window")
        target = None if td3 is None else td3["mean"]
        for entry in variants.values():
            curve = np.array([np.nan if v is None else v for v in entry["mean"]])
            entry["env_steps_to_td3_final"] = (
                None if target is None else first_mark_reaching(curve, marks, target, window)
            )
        cells[cell] = {"td3_final": target, "variants": variants}
    return cells


# -------------------------------------------------------------------------------------------- output


def _cell_text(stats: dict[str, float] | None, expected: int) -> str:
    if stats is None:
        return "-"
    seeds = "" if stats["n"] == expected else f" ({stats['n']} seeds)"
    return f"{stats['mean']:.1f} ± {stats['std']:.1f}{seeds}"


def markdown_table(cells: dict[str, Any], window: int) -> str:
    """One row per task x core x variant."""
    head = (
        "| task, core | variant | seeds done | final test return (last test) | "
        f"test return, last {window:,} env steps | env steps to TD3's final | guide env steps |"
    )
    lines = [head, "|" + "---|" * 7]
    for cell, data in cells.items():
        for variant, entry in data["variants"].items():
            expected = len(entry["seeds"])
            reach = entry["env_steps_to_td3_final"]
            reach_text = (
                "-" if data["td3_final"] is None else ("not reached" if reach is None else f"{reach:,}")
            )
            guide = "-" if entry["guide_env_steps"] is None else f"{entry['guide_env_steps']['mean']:,.0f}"
            lines.append(
                f"| {cell} | {variant} | {len(entry['complete_seeds'])}/{expected} | "
                f"{_cell_text(entry['final_last_test'], expected)} | "
                f"{_cell_text(entry['final_window'], expected)} | "
                f"{reach_text} | {guide} |"
            )
    return "\n".join(lines)


def plot(cells: dict[str, Any], path: Path, window: int) -> None:
    """2 x 2 panels (or fewer): each variant's seed-mean test return with a +-std band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(cells)
    cols = min(2, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 4 * rows), squeeze=False, sharey=True)
    for ax, cell in zip(axes.flat, names, strict=False):
        data = cells[cell]
        for variant, entry in data["variants"].items():
            marks = np.asarray(entry["marks"])
            mean = np.array([np.nan if v is None else v for v in entry["mean"]])
            std = np.array([np.nan if v is None else v for v in entry["std"]])
            (line,) = ax.plot(marks, mean, label=f"{variant} ({len(entry['seeds'])} seeds)")
            ax.fill_between(marks, mean - std, mean + std, alpha=0.15, color=line.get_color())
        if data["td3_final"] is not None:
            ax.axhline(
                data["td3_final"],
                color="k",
                linestyle="--",
                linewidth=0.8,
                label=f"TD3 final (its last {window} env steps)",
            )
        ax.set_title(cell)
        ax.set_xlabel("env steps")
        ax.set_ylabel("test return (10 greedy episodes)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    for ax in list(axes.flat)[len(names) :]:
        ax.set_visible(False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    from rllib_grsn.cli import default_storage_path

    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.guided_ablations",
        description="Learning curves, final test returns and env steps to TD3's final return of the "
        "guided-training ablation sweep (tuned_examples/sweeps/pendulum_guide_ablations.yaml).",
    )
    parser.add_argument(
        "--storage-path",
        metavar="DIR",
        default=default_storage_path(),
        help="the --storage-path the sweep ran with (default: ~/ray_results or $RLLIB_GRSN_STORAGE)",
    )
    parser.add_argument(
        "--sweep", metavar="YAML", default=str(SWEEP), help="the sweep file: its experiment names and stop"
    )
    parser.add_argument("--out", metavar="JSON", default=str(OUT), help="curves and table (a PNG beside it)")
    parser.add_argument(
        "--mark-every", type=int, default=1000, metavar="N", help="env steps between curve points (1000)"
    )
    parser.add_argument(
        "--window",
        type=int,
        default=5000,
        metavar="N",
        help="env steps of tests averaged for the final return and the reach mark (5000: 5 tests)",
    )
    parser.add_argument("--report-only", action="store_true", help="table and figure from --out's JSON")
    args = parser.parse_args(argv)
    for option in ("mark_every", "window"):
        if getattr(args, option) < 1:
            parser.error(f"--{option.replace('_', '-')}: must be >= 1, got {getattr(args, option)}")
    return args


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if args.report_only:
        try:
            data = json.loads(out.read_text())
            trials = [TrialCurve(**t) for t in data["trials"]]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ReportError(f"{out}: not a report of this module ({type(err).__name__}: {err})") from None
        notes: list[str] = []
    else:
        experiments = sweep_experiments(Path(args.sweep))
        storage = Path(args.storage_path).expanduser()
        trials, notes = read_sweep(storage, experiments)
        if not trials:
            raise ReportError(
                f"no trials of {', '.join(experiments)} under {storage}; run the sweep first "
                f"(rllib train file {args.sweep} --storage-path {storage}) or give its --storage-path"
            )
    for note in notes:
        print(f"note: {note}")
    cells = analyse(trials, args.mark_every, args.window)
    report = {
        "command": "python -m benchmarks.guided_ablations " + " ".join(sys.argv[1:]),
        "mark_every": args.mark_every,
        "window": args.window,
        "cells": cells,
        "trials": [asdict(t) for t in trials],
    }
    if not args.report_only:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=1))
        print(f"curves and table: {out}")
    figure = out.with_suffix(".png")
    plot(cells, figure, args.window)
    print(f"figure: {figure}")
    print(markdown_table(cells, args.window))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except ReportError as err:
        print(f"guided_ablations: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
