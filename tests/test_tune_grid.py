"""The grid harnesses (benchmarks/tune_grid.py): the per-trial progress line, and trials that resume
from their checkpoint after an interruption."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import pytest

from benchmarks.machine import machine_description
from benchmarks.tune_grid import (
    CHECKPOINT_RECORD,
    REPO,
    TrialProgress,
    _resumable,
    checkpoint_dir,
    describe_machines,
    experiment_for_trial,
    remove_checkpoint,
    saved_checkpoint,
    train_recorded,
    trial_machines,
)


def test_progress_line_reports_the_trials_own_time_apart_from_the_grids(capsys):
    progress = TrialProgress(17, lambda cell, result: f"{cell['task']} seed {cell['seed']}")
    progress.start = time.time() - 7457.0  # the grid has run for two trials' worth of time
    trial = SimpleNamespace(
        config={"cell": {"task": "pendulum_p", "seed": 1}}, last_result={"time_total_s": 4002.4}
    )
    progress.on_trial_complete(0, [], trial)
    line = capsys.readouterr().out.strip()
    assert line.startswith("[1/17] pendulum_p seed 1 (trial 4002 s, grid 745")


def test_running_trials_report_their_latest_test_rate_and_time_left_every_interval(capsys):
    clock = [1000.0]
    progress = TrialProgress(
        6,
        lambda cell, result: f"grsn seed {cell['seed']}: {result['win']:.2f}",
        every_s=600,
        clock=lambda: clock[0],
    )
    trial = SimpleNamespace(trial_id="a1", config={"cell": {"seed": 0}})

    def report(at_s: float, env_steps: int, win: float) -> str:
        clock[0] = at_s
        result = {"env_steps": env_steps, "win": win, "target_env_steps": 2_000_000}
        progress.on_trial_result(0, [], trial, result)
        return capsys.readouterr().out

    assert report(1000.0, 50_000, 0.25) == ""  # the first result only starts the trial's clock
    assert report(1300.0, 110_000, float("nan")) == ""  # within the interval
    # 600 s on: the last test's 0.25 stands for the NaN of a result without one; 200 env steps/s.
    line = report(1600.0, 170_000, float("nan"))
    assert line == "  grsn seed 0: 0.25 [170,000 of 2,000,000 env steps, 200 env steps/s, about 2h32m left]\n"
    assert report(1900.0, 230_000, 0.5) == ""  # the next line is due 600 s after the last one
    assert "seed 0: 0.50 [290,000 of" in report(2200.0, 290_000, 0.5)


def test_the_report_counts_records_by_the_machines_they_trained_on_not_by_its_own():
    rows = [
        {"machines": ["AMD EPYC 7B13, 2 cores"]},
        {"machines": ["AMD EPYC 7B13, 2 cores"]},
        {"machines": ["AMD EPYC 7B13, 2 cores", "Intel(R) Xeon(R) Processor, 2 cores"]},  # resumed elsewhere
        {"seed": 0},  # written before records named their machine
    ]
    counts = trial_machines(rows)
    assert counts == {
        "AMD EPYC 7B13, 2 cores": 2,
        "AMD EPYC 7B13, 2 cores + Intel(R) Xeon(R) Processor, 2 cores": 1,
        "not recorded": 1,
    }
    assert describe_machines({"trial_machines": counts}).startswith("AMD EPYC 7B13, 2 cores (2), AMD")


def _fake_checkpoint(directory, record):
    directory.mkdir(parents=True)
    (directory / CHECKPOINT_RECORD).write_text(json.dumps(record))


def test_a_checkpoint_of_another_trial_is_not_resumed_from(tmp_path, capsys):
    path = tmp_path / "pendulum_p_grsn_td3_seed3.json"
    _fake_checkpoint(checkpoint_dir(path), {"seed": 4, "target_env_steps": 50000, "env_steps": [1000]})
    assert _resumable(path, {"seed": 3, "target_env_steps": 50000, "env_steps": []}) is None
    assert "seed differs" in capsys.readouterr().out
    assert _resumable(path, {"seed": 4, "target_env_steps": 50000, "env_steps": []}) is not None


def test_a_trial_killed_while_replacing_its_checkpoint_finds_the_new_one(tmp_path):
    path = tmp_path / "t_seed0.json"
    # Killed after the old checkpoint was removed, before the new one was renamed into place.
    _fake_checkpoint(tmp_path / "t_seed0.ckpt.tmp", {"seed": 0, "env_steps": [5000]})
    directory, record = saved_checkpoint(path)
    assert directory.name == "t_seed0.ckpt.tmp" and record["env_steps"] == [5000]
    # Killed while writing the new one: it has no record yet, so the previous one is used.
    _fake_checkpoint(checkpoint_dir(path), {"seed": 0, "env_steps": [4000]})
    (tmp_path / "t_seed0.ckpt.tmp" / CHECKPOINT_RECORD).unlink()
    assert saved_checkpoint(path)[1]["env_steps"] == [4000]
    remove_checkpoint(path)
    assert saved_checkpoint(path) is None and not list(tmp_path.iterdir())


class Interrupted(Exception):
    """Stands in for the Ctrl+C that stops a grid between two iterations."""


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`report` is meant to only be called")
def test_an_interrupted_trial_resumes_from_its_checkpoint_not_from_zero(ray_session, tmp_path):
    small = {
        "train_batch_size_per_learner": 4,
        "min_sample_timesteps_per_iteration": 100,
        "num_random_steps": 50,
        "num_updates_per_env_step": 0.1,  # the test is about resuming, not learning
        "num_steps_sampled_before_learning_starts": 50,
        "evaluation_interval": None,
        "model_config": {"hidden": 16, "max_seq_len": 8},
    }
    tuned = REPO / "tuned_examples" / "cartpole_v_grsn_sac.yaml"
    path = tmp_path / "cartpole_v_grsn_sac_seed0.json"
    series = {"returns": ("env_runners", "episode_return_mean")}

    def fresh() -> dict:
        return {"seed": 0, "target_env_steps": 600, "env_steps": [], "returns": [], "complete": False}

    def interrupt_past_400(algo, record, result):
        if record["env_steps"][-1] >= 400:
            raise Interrupted

    first = fresh()
    with pytest.raises(Interrupted):
        experiment = experiment_for_trial(tuned, small, 0)
        train_recorded(experiment, first, path, 600, series, interrupt_past_400, checkpoint_every=200)
    _, saved = saved_checkpoint(path)
    at = saved["env_steps"][-1]
    assert 200 <= at < 400 and saved["env_steps"] == first["env_steps"][: len(saved["env_steps"])]

    second = fresh()
    train_recorded(experiment_for_trial(tuned, small, 0), second, path, 600, series, checkpoint_every=200)
    assert second["resumed_at_env_steps"] == [at]
    assert second["env_steps"][: len(saved["env_steps"])] == saved["env_steps"]  # the curve so far is kept
    # The restored algorithm counts on from the checkpoint: one more iteration, not a run from zero.
    resumed = second["env_steps"][len(saved["env_steps"])]
    assert at < resumed <= at + 300
    assert second["complete"] and second["env_steps"][-1] >= 600
    assert second["wall_s"] >= saved["wall_s"]  # the first run's time still counts
    assert second["machines"] == [machine_description()]  # both runs on this machine: named once
    assert json.loads(path.read_text()) == second
    assert saved_checkpoint(path) is None  # a complete trial keeps no checkpoint
