"""The table printed at the end of a sweep: trials grouped by everything but the seed.

Each trial contributes its final value of each column (the last iteration that reported it:
evaluation metrics appear only in iterations that evaluate); a group shows the mean +- standard
deviation (population, ``ddof=0``) over its seeds and how many trials it holds. The same rows are
written as JSON next to the Tune results (``sweep_summary.json``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rllib_grsn.sweep.search_space import SEED_PATH, SearchDomain, sampled_values
from rllib_grsn.sweep.search_space import Path as KeyPath
from rllib_grsn.sweep.settings import METRIC_ALIASES

# Column label -> result keys, the first one a trial reported wins (team envs: the team return,
# not RLlib's sum over agents).
COLUMNS: dict[str, tuple[str, ...]] = {
    "return": (METRIC_ALIASES["team_return"], METRIC_ALIASES["return"]),
    "eval return": (METRIC_ALIASES["eval_team_return"], METRIC_ALIASES["eval_return"]),
    "win rate %": (METRIC_ALIASES["win_rate"],),
    "eval win rate %": (METRIC_ALIASES["eval_win_rate"],),
    "energy KpJ/decision": (METRIC_ALIASES["energy_pj"],),
    "env steps": ("num_env_steps_sampled_lifetime",),
}
# Shown scaled: win rates as percentages, energy in KpJ (Table 4's unit).
SCALE = {"win rate %": 100.0, "eval win rate %": 100.0, "energy KpJ/decision": 1e-3}
# Identical across seeds by construction, so a mean without a spread.
NO_SPREAD = ("env steps",)


@dataclass
class TrialRow:
    """One trial: what it sampled, its seed, and its final value of each column."""

    trial: str
    setting: dict[KeyPath, Any]
    seed: Any
    values: dict[str, float]
    error: str | None = None


@dataclass
class Group:
    """Trials that differ only in their seed."""

    setting: dict[KeyPath, Any]
    rows: list[TrialRow] = field(default_factory=list)

    def stats(self, column: str) -> tuple[float, float, int] | None:
        """Mean, std and count of ``column`` over the group's trials that reported it."""
        values = [r.values[column] for r in self.rows if column in r.values]
        if not values:
            return None
        return float(np.mean(values)), float(np.std(values)), len(values)


def metric_column(metric_key: str | None) -> str | None:
    """The column that shows the sweep's ``tune.metric`` (result key), or None without one."""
    if metric_key is None:
        return None
    return next((c for c, keys in COLUMNS.items() if metric_key in keys), metric_key)


def last_reported(history: Any, key: str) -> float | None:
    """The last value that ``key`` (a "/"-separated result key) took in a trial's metrics history (a
    pandas DataFrame, or None), or None when no iteration reported it (e.g. evaluation metrics of
    a run whose iterations did not test)."""
    if history is None or key not in getattr(history, "columns", ()):
        return None
    series = history[key].dropna()
    value = series.iloc[-1] if len(series) else None
    return float(value) if isinstance(value, int | float | np.number) else None


def last_values(
    history: Any, fallback: dict[str, Any] | None = None, metric_key: str | None = None
) -> dict[str, float]:
    """Each column's last finite value in a trial's metrics history (a pandas DataFrame, or None:
    then the trial's last result ``fallback``, flattened with "/"); a ``metric_key`` that no column
    shows gets a column of its own."""
    out: dict[str, float] = {}
    columns = dict(COLUMNS)
    if metric_key is not None and metric_column(metric_key) == metric_key:
        columns[metric_key] = (metric_key,)
    for column, keys in columns.items():
        for key in keys:
            value = None
            if history is not None and key in getattr(history, "columns", ()):
                value = last_reported(history, key)
            elif fallback is not None:
                value = fallback.get(key)
            if isinstance(value, int | float | np.number) and math.isfinite(float(value)):
                out[column] = float(value) * SCALE.get(column, 1.0)
                break
    return out


def trial_rows(
    results: Any, space: dict[KeyPath, SearchDomain], metric_key: str | None = None
) -> list[TrialRow]:
    """One :class:`TrialRow` per ``ray.tune.Result`` of a sweep."""
    from ray.tune.utils import flatten_dict

    rows = []
    for result in results:
        config = result.config or {}
        sampled = sampled_values(config, space)
        setting = {p: v for p, v in sampled.items() if p != SEED_PATH}
        flat_last = flatten_dict(dict(result.metrics or {}), delimiter="/")
        values = last_values(result.metrics_dataframe, flat_last, metric_key)
        trial = str(flat_last.get("trial_id") or Path(result.path).name)
        error = None if result.error is None else type(result.error).__name__
        rows.append(TrialRow(trial, setting, config.get("seed"), values, error))
    return rows


def group_rows(rows: list[TrialRow], sort_by: str | None = None, mode: str = "max") -> list[Group]:
    """Rows grouped by their non-seed setting: best mean of column ``sort_by`` first (``mode``
    max or min; groups without it last), else in first-seen order."""
    groups: dict[str, Group] = {}
    for row in rows:
        key = repr(sorted(row.setting.items()))
        groups.setdefault(key, Group(row.setting)).rows.append(row)
    ordered = list(groups.values())
    if sort_by is not None:
        sign = -1.0 if mode == "max" else 1.0

        def rank(group: Group) -> tuple[bool, float]:
            stats = group.stats(sort_by)
            return (stats is None, 0.0 if stats is None else sign * stats[0])

        ordered.sort(key=rank)
    return ordered


def _cell(stats: tuple[float, float, int] | None, spread: bool = True) -> str:
    if stats is None:
        return "-"
    mean, std, n = stats
    digits = 0 if abs(mean) >= 1000 else 1 if abs(mean) >= 10 else 3
    if not spread:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}" + ("" if n > 1 else " (1)")


def _value(value: Any) -> str:
    """A sampled value for the table: floats to 4 significant digits (1.252e-03, 0.6875)."""
    if isinstance(value, dict):  # a whole mapping sampled (e.g. one model_config per grid point)
        return ", ".join(f"{k}={_value(v)}" for k, v in value.items())
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _labels(keys: list[KeyPath]) -> list[str]:
    """Setting columns by their last key (``decay``), the full path where two would collide."""
    last = [p[-1] for p in keys]
    return [p[-1] if last.count(p[-1]) == 1 else ".".join(p) for p in keys]


def summary_table(groups: list[Group], title: str | None) -> Any:
    """A rich Table: one row per group, mean ± std of each column that any trial reported."""
    from rich.table import Table

    keys = list(dict.fromkeys(p for g in groups for p in g.setting))
    names = list(dict.fromkeys([*COLUMNS, *(c for g in groups for r in g.rows for c in r.values)]))
    columns = [c for c in names if any(g.stats(c) for g in groups)]
    table = Table(title=title)
    for label in _labels(keys):
        table.add_column(label)
    table.add_column("seeds", justify="right")
    for column in columns:
        table.add_column(column, justify="right")
    for group in groups:
        seeds = ",".join(str(r.seed) for r in group.rows)
        failed = sum(1 for r in group.rows if r.error)
        seeds += f" ({failed} failed)" if failed else ""
        table.add_row(
            *(_value(group.setting.get(p, "-")) for p in keys),
            seeds,
            *(_cell(group.stats(c), spread=c not in NO_SPREAD) for c in columns),
        )
    return table


def print_summary(groups: list[Group], title: str) -> None:
    from rich.console import Console

    console = Console()
    if not console.is_terminal:  # a log file or CI: no terminal width to fit, keep rows on one line
        console = Console(width=200)
    # The title on its own line: rich would wrap it to the table's width.
    console.print(title, highlight=False, markup=False)
    console.print(summary_table(groups, title=None))


def write_summary(groups: list[Group], path: Path) -> None:
    """The groups as JSON: setting, the trials' final values and each column's mean/std/n."""
    data = []
    for group in groups:
        columns = {c: group.stats(c) for c in COLUMNS}
        data.append(
            {
                "setting": {".".join(p): v for p, v in group.setting.items()},
                "trials": [
                    {"trial": r.trial, "seed": r.seed, "values": r.values, "error": r.error}
                    for r in group.rows
                ],
                "mean_std_n": {c: s for c, s in columns.items() if s is not None},
            }
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, default=str))
