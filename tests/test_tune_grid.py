"""The grid harnesses' per-trial progress line (benchmarks/tune_grid.py)."""

from __future__ import annotations

import time
from types import SimpleNamespace

from benchmarks.tune_grid import TrialProgress


def test_progress_line_reports_the_trials_own_time_apart_from_the_grids(capsys):
    progress = TrialProgress(17, lambda cell, result: f"{cell['task']} seed {cell['seed']}")
    progress.start = time.time() - 7457.0  # the grid has run for two trials' worth of time
    trial = SimpleNamespace(
        config={"cell": {"task": "pendulum_p", "seed": 1}}, last_result={"time_total_s": 4002.4}
    )
    progress.on_trial_complete(0, [], trial)
    line = capsys.readouterr().out.strip()
    assert line.startswith("[1/17] pendulum_p seed 1 (trial 4002 s, grid 745")
