"""Compare QMIX trial records on the mean of their greedy tests per env-step window (issue #4 tuning).

A single test of 32 battles swings by 10-30 points from one test to the next, so the learning-curve
table's single-test marks cannot tell two settings apart on one seed. This pools every test in a
window of env steps (about 10 tests of 32 battles per 100k steps) and, for a longer stretch, reports
the pooled mean with its standard error over the tests. Records are the trial JSONs that
``benchmarks.qmix_learning_curve`` writes (``<out>_trials*/smac_<map>_<core>_seed<N>.json``); the
label of each is given on the command line, because a trial record does not hold its overrides
(the report JSON next to the trials folder does, under ``config``). Run from the repository root:

    T=benchmarks/results/qmix_8m_tuning
    .venv/bin/python -m benchmarks.qmix_screen \\
        baseline=benchmarks/results/qmix_learning_curve_8m_trials/smac_8m_grsn_seed0.json \\
        head64=$T/grsn_head64_trials_steps500000_custom/smac_8m_grsn_seed0.json \\
        --window 100000 --until 500000 --pooled-from 250000
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path
from typing import Any

from benchmarks.qmix_learning_curve import evaluations, format_steps


def window_means(record: dict[str, Any], window: int, until: int) -> list[tuple[float | None, int]]:
    """(mean test win rate, number of tests) for each window ``(k * window, min((k + 1) * window, until)]``
    of env steps; (None, 0) for a window without a test (not reached, or no test)."""
    tests = evaluations(record)
    out = []
    for start in range(0, until, window):
        rates = [rate for step, rate in tests if start < step <= min(start + window, until)]
        out.append((statistics.fmean(rates) if rates else None, len(rates)))
    return out


def pooled(record: dict[str, Any], start: int, until: int) -> tuple[float | None, float | None, int]:
    """(mean, standard error of the mean, number of tests) of the tests in ``(start, until]``.

    The standard error is the tests' sample std over sqrt(n): it includes the swings between tests,
    not only the binomial noise of 32 battles (None with fewer than two tests)."""
    rates = [rate for step, rate in evaluations(record) if start < step <= until]
    if not rates:
        return None, None, 0
    sem = statistics.stdev(rates) / math.sqrt(len(rates)) if len(rates) > 1 else None
    return statistics.fmean(rates), sem, len(rates)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def screen_table(rows: list[tuple[str, dict[str, Any]]], *, window: int, until: int, pooled_from: int) -> str:
    """Markdown: one row per labelled record, a column per window and the pooled stretch."""
    starts = range(0, until, window)
    head = [f"{format_steps(s)}-{format_steps(min(s + window, until))}" for s in starts]
    stretch = f"pooled {format_steps(pooled_from)}-{format_steps(until)} (tests)"
    lines = [
        "| record | env steps run | " + " | ".join(head) + f" | {stretch} |",
        "|---" * (len(head) + 3) + "|",
    ]
    for label, record in rows:
        cells = [_pct(mean) for mean, _ in window_means(record, window, until)]
        mean, sem, n = pooled(record, pooled_from, until)
        spread = "" if sem is None else f" ± {100 * sem:.1f}"
        run = record["env_steps"][-1] if record["env_steps"] else 0
        lines.append(
            f"| {label} | {format_steps(run)} | " + " | ".join(cells) + f" | {_pct(mean)}{spread} ({n}) |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Window means of QMIX trial records' greedy test win rates (one row per record).",
    )
    parser.add_argument(
        "records",
        nargs="+",
        metavar="LABEL=PATH",
        help="a label and a trial record JSON of qmix_learning_curve",
    )
    parser.add_argument("--window", type=int, default=100_000, help="env steps per window [default: 100000]")
    parser.add_argument("--until", type=int, default=500_000, help="last env step compared [default: 500000]")
    parser.add_argument(
        "--pooled-from",
        type=int,
        default=250_000,
        help="start of the stretch whose tests are pooled into one mean +- standard error [default: 250000]",
    )
    args = parser.parse_args(argv)
    if args.window < 1 or args.until < 1 or not 0 <= args.pooled_from < args.until:
        parser.error("need --window >= 1, --until >= 1 and 0 <= --pooled-from < --until")
    labelled = []
    for item in args.records:
        label, sep, path = item.partition("=")
        if not sep or not label or not path:
            parser.error(f"record {item!r} is not LABEL=PATH")
        if not Path(path).is_file():
            parser.error(f"record {label}: no file {path}")
        labelled.append((label, Path(path)))
    args.records = labelled
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rows = [(label, json.loads(path.read_text())) for label, path in args.records]
    print(screen_table(rows, window=args.window, until=args.until, pooled_from=args.pooled_from))
    return 0


if __name__ == "__main__":
    sys.exit(main())
