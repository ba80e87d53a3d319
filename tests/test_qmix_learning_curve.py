"""The QMIX learning-curve harness (issue #4): marks, the 90% threshold, the summary and table built
from hand-made records, its options, and one tiny end-to-end grid on SMAX."""

from __future__ import annotations

import json
import math

import pytest

from benchmarks import qmix_learning_curve as harness

NAN = float("nan")


def record(core: str, seed: int, steps: list[int], win_rates: list[float], complete: bool = True) -> dict:
    """A trial record as train_trial writes it (NaN where an iteration ran no test)."""
    return {
        "map": "8m",
        "core": core,
        "seed": seed,
        "backend_requested": "smax",
        "backend": "smax",
        "target_env_steps": 2_000_000,
        "env_steps": steps,
        "test_win_rates": win_rates,
        "test_team_returns": [NAN if math.isnan(w) else 20 * w for w in win_rates],
        "train_win_rates": [0.0] * len(steps),
        "complete": complete,
        "wall_s": 600.0,
    }


STEPS = [250_400, 500_100, 751_000, 1_000_300, 1_500_000, 2_000_900]
ROWS = [
    record("grsn", 0, STEPS, [0.25, NAN, 0.75, 0.875, 0.9375, 1.0]),
    record("grsn", 1, STEPS, [0.5, 0.5, 0.5, 0.75, 0.75, 0.8125]),
    record("gru", 0, STEPS, [0.0, 0.25, 0.5, 0.9, 0.5, 0.5]),
    # An interrupted trial never counts, however good its tests.
    record("gru", 1, STEPS[:2], [1.0, 1.0], complete=False),
]


def test_marks_are_an_eighth_a_quarter_half_and_the_budget():
    assert harness.marks_for(2_000_000) == [250_000, 500_000, 1_000_000, 2_000_000]
    assert harness.marks_for(20_000) == [2500, 5000, 10_000, 20_000]
    labels = [harness.format_steps(s) for s in (250_000, 2_000_000, 2500, 1_234_567, 999)]
    assert labels == ["250k", "2M", "2.5k", "1.235M", "999"]


def test_win_rate_at_a_mark_is_the_first_test_at_or_after_it():
    grsn0 = ROWS[0]
    assert harness.win_rate_at(grsn0, 250_000) == 0.25
    # The iteration at 500k ran no test: the next one (751k) stands for 500k.
    assert harness.win_rate_at(grsn0, 500_000) == 0.75
    # The budget's test comes a few steps past the budget (iterations end on whole episodes).
    assert harness.win_rate_at(grsn0, 2_000_000) == 1.0
    assert harness.win_rate_at(grsn0, 3_000_000) is None


def test_first_env_step_at_the_target_win_rate():
    assert harness.first_reaching(ROWS[0], 0.9) == 1_500_000
    assert harness.first_reaching(ROWS[1], 0.9) is None
    assert harness.first_reaching(ROWS[2], 0.9) == 1_000_300  # reached once, then lost: still counts


def test_only_test_iterations_and_the_budget_count_as_tests():
    # As the harness recorded before it dropped RLlib's repeats: each test (iterations 2 and 4, every
    # 2nd) again in the next iteration, and the last iteration (5) holding the copy of iteration 4's.
    legacy = dict(record("grsn", 0, [10, 20, 30, 40, 50], [NAN, 0.5, 0.5, 0.75, 0.75]), eval_interval=2)
    assert harness.evaluations(legacy) == [(20, 0.5), (40, 0.75), (50, 0.75)]
    assert harness.first_reaching(legacy, 0.6) == 40
    assert harness.final_win_rate(legacy, 50, fraction=0.5) == pytest.approx(0.75)


class _FakeAlgo:
    """What _after_iteration uses of an Algorithm: evaluate() runs a fresh greedy test."""

    def __init__(self) -> None:
        self.evaluations = 0

    def evaluate(self) -> dict:
        self.evaluations += 1
        return {"env_runners": {"win_rate": 0.25, "team_return_mean": 1.0}}


def _iteration(record_: dict, iteration: int, env_steps: int, win_rate: float) -> dict:
    """One iteration as train_recorded appends it: the result's test (or RLlib's repeat of one)."""
    record_["env_steps"].append(env_steps)
    record_["test_win_rates"].append(win_rate)
    record_["test_team_returns"].append(2 * win_rate)
    return {"training_iteration": iteration, "backend": "smax"}


def test_the_budget_right_after_a_test_gets_a_test_of_the_final_agents():
    trial = dict(record("grsn", 0, [], []), target_env_steps=5000, eval_interval=2)
    algo = _FakeAlgo()
    # As results arrive with DropStaleEvaluation: a test every 2nd iteration, nothing in between.
    for iteration, win_rate in [(1, NAN), (2, 0.5), (3, NAN), (4, 0.75)]:
        harness._after_iteration(algo, trial, _iteration(trial, iteration, 1000 * iteration, win_rate))
    assert algo.evaluations == 0  # before the budget nothing is tested outside the test iterations
    harness._after_iteration(algo, trial, _iteration(trial, 5, 5000, NAN))
    assert algo.evaluations == 1
    assert harness.evaluations(trial) == [(2000, 0.5), (4000, 0.75), (5000, 0.25)]
    assert trial["test_team_returns"][-1] == 1.0 and trial["backend"] == "smax"


def test_final_win_rate_pools_every_test_in_the_last_tenth_of_the_budget():
    steps = [1_700_000, 1_790_000, 1_800_400, 1_850_000, 1_900_000, 2_000_700]
    rates = [1.0, 1.0, 0.75, NAN, 0.875, 1.0]  # 1.7M and 1.79M are before 1.8M; 1.85M ran no test
    trial = record("grsn", 0, steps, rates)
    assert harness.final_win_rate(trial, 2_000_000) == pytest.approx(0.875)
    assert harness.final_win_rate(trial, 2_000_000, fraction=0.2) == pytest.approx(0.925)
    assert harness.final_win_rate(record("grsn", 0, steps[:2], rates[:2]), 2_000_000) is None


def test_summary_is_mean_std_min_max_over_complete_seeds():
    marks = harness.marks_for(2_000_000)
    summary = harness.summarise(ROWS, ("grsn", "gru", "lif"), marks, 0.9)
    grsn = summary["grsn"]
    assert grsn["n_seeds"] == 2 and grsn["seeds"] == [0, 1]
    at_1m = grsn["win_rate_at"]["1000000"]
    assert at_1m["n"] == 2 and at_1m["mean"] == pytest.approx(0.8125)
    assert at_1m["std"] == pytest.approx(0.0625) and (at_1m["min"], at_1m["max"]) == (0.75, 0.875)
    assert grsn["first_env_steps_at_target"] == {"0": 1_500_000, "1": None}
    assert grsn["seeds_reaching_target"] == 1
    final = grsn["final_win_rate"]
    assert final["per_seed"] == {"0": 1.0, "1": 0.8125}
    assert final["mean"] == pytest.approx(0.90625) and final["std"] == pytest.approx(0.09375)
    assert grsn["seeds_final_at_target"] == 1  # seed 1 ends at 81%
    assert grsn["team_return_at_budget"]["mean"] == pytest.approx(20 * 0.90625)
    assert summary["gru"]["n_seeds"] == 1  # seed 1 is unfinished
    assert summary["lif"] == {
        "n_seeds": 0,
        "seeds": [],
        "win_rate_at": {str(m): {"n": 0, "mean": None, "std": None, "min": None, "max": None} for m in marks},
        "first_env_steps_at_target": {},
        "seeds_reaching_target": 0,
        "final_win_rate": {"n": 0, "mean": None, "std": None, "min": None, "max": None, "per_seed": {}},
        "seeds_final_at_target": 0,
        "team_return_at_budget": {"n": 0, "mean": None, "std": None, "min": None, "max": None},
        "wall_s_mean": None,
    }
    json.dumps(summary, allow_nan=False)  # the JSON summary is strict JSON


def test_table_names_smax_and_shows_percentages_and_the_threshold_per_seed():
    marks = harness.marks_for(2_000_000)
    env = harness.env_title(ROWS, "8m", "smax")
    assert env == "SMAX 8m"
    text = harness.table(harness.summarise(ROWS, ("grsn", "gru"), marks, 0.9), env, marks, 0.9)
    lines = text.splitlines()
    assert lines[0] == (
        "| SMAX 8m: test win rate at | 250k | 500k | 1M | 2M | first test >= 90% (per seed) "
        "| final: all tests from 1.8M (seeds >= 90%) | team return at 2M | seeds | min/trial |"
    )
    assert lines[2] == (
        "| QMIX-GRSN | 37.5 ± 12.5% | 62.5 ± 12.5% | 81.2 ± 6.2% | 90.6 ± 9.4% "
        "| s0 1.5M, s1 not reached | 90.6 ± 9.4% (1/2) | 18.12 ± 1.88 | 2 | 10.0 |"
    )
    assert lines[3].startswith("| QMIX-GRU | 0.0 ± 0.0% |")
    assert "| s0 1M | 50.0 ± 0.0% (0/1) | 10.00 ± 0.00 | 1 |" in lines[3]
    assert "SMAC" not in text


def test_outputs_name_the_backend_that_ran():
    sc2 = [dict(ROWS[0], backend="sc2", backend_requested="auto")]
    assert harness.env_title(sc2, "8m", "auto") == "SMAC 8m"
    assert harness.env_title([], "8m", "smax") == "SMAX 8m"  # nothing ran yet: the requested one


def test_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "curve.png"
    harness.plot(ROWS, ("grsn", "gru"), "SMAX 8m", 0.9, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_defaults_are_issue_4s_grid_and_smoke_is_small(tmp_path):
    args = harness.parse_args([])
    assert (args.map, args.cores, args.backend, args.seed_list) == ("8m", ("grsn", "gru"), "smax", [0, 1, 2])
    assert (args.steps, args.eval_interval, args.eval_episodes) == (2_000_000, 5, 32)
    assert args.out.name == "qmix_learning_curve_8m.json"
    assert args.trials_dir.name == "qmix_learning_curve_8m_trials"
    smoke = harness.parse_args(["--smoke", "--out", str(tmp_path / "lc.json")])
    assert smoke.seed_list == [0] and smoke.cores == ("grsn", "gru") and smoke.steps == 20_000
    assert (smoke.eval_interval, smoke.eval_episodes) == (1, 8)
    # Another budget or test gets its own records: a 20k record must not pass for a 2M one.
    assert smoke.trials_dir == tmp_path / "lc_trials_steps20000_eval1x8"
    assert harness.parse_args(["--smoke", "--steps", "5000"]).steps == 5000


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--cores", "grsn,lstm"], "allowed: grsn, gru, lif"),
        (["--map", "MMM2"], "does not exist on SMAX"),
        (["--backend", "jax"], "invalid choice"),
        (["--steps", "0"], "--steps, --eval-interval and --eval-episodes must be >= 1"),
        (["--eval-episodes", "0"], "must be >= 1"),
        (["--target-win-rate", "90"], "--target-win-rate must be in (0, 1]"),
        (["--seeds", "0"], "--seeds and --num-cpus must be >= 1"),
        (["--config", "[1]"], "JSON object"),
    ],
)
def test_bad_options_name_the_problem(argv, message, capsys):
    with pytest.raises(SystemExit):
        harness.parse_args(argv)
    assert message in capsys.readouterr().err


def test_mmm2_is_allowed_on_starcraft():
    assert harness.parse_args(["--map", "MMM2", "--backend", "sc2"]).trials_dir.name.endswith("_trials_sc2")


@pytest.mark.slow
def test_tiny_grid_on_smax_end_to_end_then_report_only(tmp_path, capsys):
    import ray

    out = tmp_path / "lc.json"
    small = {
        "min_sample_timesteps_per_iteration": 1000,
        "train_batch_size_per_learner": 8,
        "num_episodes_before_learning_starts": 8,
        "model_config": {"hidden": 16, "obs_embed": 16},
    }
    argv = [
        "--cores", "grsn", "--seeds", "1", "--steps", "3000", "--eval-interval", "2", "--eval-episodes", "2",
        "--num-cpus", "1", "--out", str(out), "--storage-path", str(tmp_path / "tune"),
        "--config", json.dumps(small),
    ]  # fmt: skip
    assert harness.main(argv) == 0
    assert not ray.is_initialized()  # the harness shut its Ray down
    report = json.loads(out.read_text())
    (trial,) = report["trials"]
    assert trial["complete"] and trial["backend"] == "smax" and trial["env_steps"][-1] >= 3000
    assert trial["torch_threads"] == 1  # one CPU per trial by default
    assert len(trial["env_steps"]) == len(trial["test_win_rates"]) == len(trial["train_win_rates"])
    # Tests every 2nd iteration, and at the budget even when the last iteration was not one of them.
    assert math.isnan(trial["test_win_rates"][0]) and 0 <= trial["test_win_rates"][1] <= 1
    assert 0 <= trial["test_win_rates"][-1] <= 1 and not math.isnan(trial["test_team_returns"][-1])
    assert report["env"] == "SMAX 8m" and report["backends"] == ["smax"]
    assert report["summary"]["grsn"]["n_seeds"] == 1
    assert report["table_markdown"].startswith("| SMAX 8m: test win rate at | 375 | 750 | 1.5k | 3k |")
    assert "| QMIX-GRSN |" in report["table_markdown"] and "| 1 |" in report["table_markdown"]
    assert out.with_suffix(".png").stat().st_size > 0
    # A complete record is not trained again; --report-only rebuilds the same table.
    capsys.readouterr()
    assert harness.main(argv) == 0
    assert "already has a complete record" in capsys.readouterr().out
    assert harness.main([*argv, "--report-only"]) == 0
    assert report["table_markdown"] in capsys.readouterr().out
