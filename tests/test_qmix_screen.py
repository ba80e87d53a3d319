"""Window means of QMIX trial records (benchmarks/qmix_screen.py): what a tuning screen is read from."""

from __future__ import annotations

import json
import math

import pytest

from benchmarks.qmix_screen import main, parse_args, pooled, screen_table, window_means

NAN = float("nan")


def record(steps: list[int], rates: list[float], eval_interval: int = 2) -> dict:
    return {"env_steps": steps, "test_win_rates": rates, "eval_interval": eval_interval}


# Tests at iterations 2, 4 and 6 (every 2nd); iterations 3 and 5 repeat the test before them, as
# records written before DropStaleEvaluation do, and must not count twice.
LEGACY = record(
    [50_000, 100_000, 150_000, 200_000, 250_000, 300_000],
    [NAN, 0.25, 0.25, 0.75, 0.75, 0.5],
)


def test_window_means_count_each_test_once_and_mark_windows_without_tests():
    assert window_means(LEGACY, 100_000, 400_000) == [(0.25, 1), (0.75, 1), (0.5, 1), (None, 0)]


def test_windows_are_closed_at_their_end_and_stop_at_until():
    rec = record([100_000, 200_000, 250_000], [0.5, 1.0, 0.0], eval_interval=1)
    assert window_means(rec, 100_000, 200_000) == [(0.5, 1), (1.0, 1)]
    # The last window is cut at --until, as its column header says.
    assert window_means(rec, 150_000, 200_000) == [(0.5, 1), (1.0, 1)]


def test_pooled_mean_and_standard_error_over_tests():
    mean, sem, n = pooled(LEGACY, 0, 300_000)
    assert n == 3
    assert mean == pytest.approx(0.5)
    assert sem == pytest.approx(math.sqrt(0.0625 / 3))
    assert pooled(LEGACY, 250_000, 300_000) == (0.5, None, 1)
    assert pooled(LEGACY, 300_000, 400_000) == (None, None, 0)


def test_table_has_a_row_per_label_with_windows_and_pooled_stretch():
    text = screen_table([("a", LEGACY)], window=100_000, until=300_000, pooled_from=100_000)
    header, rule, row = text.splitlines()
    assert header.startswith("| record | env steps run | 0-100k | 100k-200k | 200k-300k | pooled 100k-300k")
    assert rule.count("|---") == 6
    assert row == "| a | 300k | 25.0% | 75.0% | 50.0% | 62.5% ± 12.5 (2) |"


def test_cli_prints_the_table(tmp_path, capsys):
    path = tmp_path / "r.json"
    path.write_text(json.dumps(LEGACY))
    assert main([f"base={path}", "--window", "150000", "--until", "300000", "--pooled-from", "0"]) == 0
    out = capsys.readouterr().out
    assert "| base | 300k | 25.0% | 62.5% | 50.0% ± 14.4 (3) |" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["nolabel.json"], "is not LABEL=PATH"),
        (["a=/does/not/exist.json"], "record a: no file"),
    ],
)
def test_cli_names_the_bad_record(argv, message, capsys):
    with pytest.raises(SystemExit):
        parse_args(argv)
    assert message in capsys.readouterr().err


def test_cli_rejects_a_pooled_stretch_outside_the_budget(tmp_path, capsys):
    path = tmp_path / "r.json"
    path.write_text(json.dumps(LEGACY))
    with pytest.raises(SystemExit):
        parse_args([f"a={path}", "--until", "100000", "--pooled-from", "100000"])
    assert "--pooled-from" in capsys.readouterr().err
