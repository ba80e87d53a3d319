"""The Table 1 reproduction harness: its grid, records, resume-by-record and the table it prints."""

from __future__ import annotations

import json

import pytest

from benchmarks import reproduce_table1 as harness


def test_every_cell_has_a_tuned_example_with_the_papers_algorithm():
    for task in harness.TASKS:
        for core in harness.CORES:
            path = harness.tuned_example(task, core)
            assert path.is_file(), path
            text = path.read_text()
            assert ("run: TD3" if harness.TASK_ALGO[task] == "td3" else "run: RecurrentSAC") in text
            assert f"core: {core}" in text


def test_summary_shows_mean_std_over_complete_seeds_next_to_the_paper():
    rows = [
        {"task": "cartpole_p", "core": "grsn", "complete": True, "final_eval_return": 190.0},
        {"task": "cartpole_p", "core": "grsn", "complete": True, "final_eval_return": 200.0},
        # An interrupted trial never counts as a final score.
        {"task": "cartpole_p", "core": "grsn", "complete": False, "final_eval_return": 20.0},
    ]
    table = harness.summarise(rows, ("cartpole_p", "pendulum_p"), ("grsn", "lif"))
    lines = table.splitlines()
    assert lines[0] == "| method | CartPole-P (SAC) | Pendulum-P (TD3) |"
    grsn = "| GRSN (TAP) | 195.0 ± 5.0 (n=2) [paper 199.9 ± 0.20] | n/a [paper -195.8 ± 43.99] |"
    assert lines[2] == grsn
    assert lines[3].startswith("| LIF (TAP) | n/a [paper 152.2 ± 21.21]")


def test_smoke_flag_is_one_seed_of_grsn_and_lif_at_a_tenth_of_the_budget(tmp_path):
    args = harness.parse_args(["--smoke", "--out", str(tmp_path / "t.json")])
    assert args.seed_list == [0] and args.steps_scale == 0.1 and args.cores == ("grsn", "lif")
    assert args.trials_dir != harness.parse_args(["--out", str(tmp_path / "t.json")]).trials_dir


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--cores", "grsn,lstm"], "allowed: grsn, lif, gru, mlp"),
        (["--config", "[1]"], "JSON object"),
        (["--num-cpus", "2", "--cpus-per-trial", "3"], "--cpus-per-trial must be between 1 and --num-cpus"),
        (["--checkpoint-every", "-1"], "--checkpoint-every must be >= 0"),
    ],
)
def test_bad_options_name_the_problem(argv, message, capsys):
    with pytest.raises(SystemExit):
        harness.parse_args(argv)
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_one_small_trial_end_to_end_then_report_only(tmp_path, capsys):
    out = tmp_path / "table1.json"
    small = {
        "train_batch_size_per_learner": 4,
        "num_steps_sampled_before_learning_starts": 900,
        "model_config": {"hidden": 16, "max_seq_len": 8},
    }
    argv = [
        "--tasks", "cartpole_v", "--cores", "grsn", "--seeds", "1", "--steps-scale", "0.1",
        "--num-cpus", "2", "--cpus-per-trial", "2", "--out", str(out),
        "--storage-path", str(tmp_path / "tune"), "--config", json.dumps(small),
    ]  # fmt: skip
    assert harness.main(argv) == 0
    report = json.loads(out.read_text())
    (trial,) = report["trials"]
    assert trial["complete"] and trial["env_steps"][-1] >= 1000
    assert trial["torch_threads"] == 2  # the trial's two CPUs, not torch's one-per-core default
    assert trial["final_eval_return"] == trial["eval_returns"][-1] > 0  # 10 greedy CartPole episodes ran
    assert "(n=1)" in report["table_markdown"]
    assert out.with_suffix(".png").stat().st_size > 0  # the learning-curve figure
    # A complete record is not trained again; --report-only rebuilds the same table.
    capsys.readouterr()
    assert harness.main([*argv, "--report-only"]) == 0
    assert report["table_markdown"] in capsys.readouterr().out
