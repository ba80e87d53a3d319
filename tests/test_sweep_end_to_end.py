"""A seed sweep through `rllib train file`, interrupted with Ctrl+C and continued with --resume, as a
user runs it: every trial is one MLflow run (params, tags, per-iteration metrics with energy, artifacts),
and the end prints the table grouped by everything but the seed."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from ray_output import driver_output

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
ITERATIONS = 3
SWEEP = {
    "seed-sweep": {
        "env": "CartPole-P",
        "run": "PPO",
        "stop": {"training_iteration": ITERATIONS},
        "checkpoint_freq": 1,
        # One trial at a time, so an interrupt leaves one trial half done and one not started.
        "tune": {"max_concurrent_trials": 1, "metric": "eval_return"},
        "config": {
            "seed": {"grid_search": [0, 1]},
            "train_batch_size": 256,
            "minibatch_size": 128,
            "num_epochs": 1,
            "num_env_runners": 0,
            "evaluation_interval": 1,
            "evaluation_duration": 1,
            "evaluation_duration_unit": "episodes",
            # A low threshold so the untrained core spikes and the energy has an SOP part.
            "model_config": {"core": "grsn", "hidden": 16, "threshold": 0.05},
        },
    }
}


def _env(ray_tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "COLUMNS", "LINES")}
    env.pop("MLFLOW_TRACKING_URI", None)
    env["RAY_TMPDIR"] = str(ray_tmp)
    return env


def _command(path: Path, storage: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "rllib_grsn.cli", "train", "file", str(path),
        "--storage-path", str(storage), "--num-cpus", "1", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, ray_tmp_module):
    """Starts the sweep, sends SIGINT after the first trial's second iteration, then resumes it."""
    root = tmp_path_factory.mktemp("sweep")
    path = root / "sweep.yaml"
    path.write_text(yaml.safe_dump(SWEEP))
    storage = root / "results"
    env = _env(ray_tmp_module)

    proc = subprocess.Popen(
        _command(path, storage),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
        env=env,
    )
    first: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        first.append(line)
        if re.search(r"\] iter 2 \|", line):
            proc.send_signal(signal.SIGINT)
            break
    first.append(proc.communicate(timeout=300)[0])
    interrupted = subprocess.CompletedProcess(proc.args, proc.returncode, "".join(first), "")

    resumed = subprocess.run(
        _command(path, storage, "--resume"), capture_output=True, text=True, timeout=600, cwd=REPO, env=env
    )
    return interrupted, resumed, storage


@pytest.fixture(scope="module")
def ray_tmp_module(tmp_path_factory):
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="rg", dir="/tmp"))  # short: Ray's unix sockets live under it
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _mlflow_runs(storage: Path) -> list:
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{storage.resolve() / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("seed-sweep")
    assert experiment is not None
    return client, client.search_runs([experiment.experiment_id], order_by=["tags.seed ASC"])


def test_interrupt_says_how_to_continue_and_exits_130(sweep):
    interrupted, _, storage = sweep
    assert interrupted.returncode == 130, interrupted.stdout[-3000:]
    assert re.search(r"seed-sweep: interrupted after 0 of 2 trials finished", interrupted.stdout)
    assert "--resume" in interrupted.stdout
    # The interrupted trial's MLflow run exists (the resume below re-opens it, not a new one).
    _, runs = _mlflow_runs(storage)
    assert len(runs) >= 1


def test_resume_finishes_every_trial_and_prints_the_seed_summary(sweep):
    _, resumed, storage = sweep
    out = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, out[-5000:]
    assert "resuming seed-sweep" in out
    assert "Traceback" not in driver_output(out)
    # One table row for the setting, both seeds in it, mean ± std columns.
    assert "seed-sweep: 2 trials, final values, mean ± std over seeds, best eval return first" in out
    row = next(line for line in out.splitlines() if re.search(r"│\s+0,1\s+│", line))
    assert row.count("±") >= 3, row  # return, eval return, energy
    summary = json.loads((storage / "seed-sweep" / "sweep_summary.json").read_text())
    assert len(summary) == 1 and [t["seed"] for t in summary[0]["trials"]] == [0, 1]
    assert set(summary[0]["mean_std_n"]) >= {"return", "eval return", "energy KpJ/decision"}


def test_every_trial_is_one_finished_mlflow_run_with_params_tags_metrics_and_artifacts(sweep):
    _, resumed, storage = sweep
    assert resumed.returncode == 0
    assert f"mlflow ui --backend-store-uri sqlite:///{storage.resolve() / 'mlflow.db'}" in resumed.stdout
    client, runs = _mlflow_runs(storage)
    assert len(runs) == 2  # the interrupted trial continued in its own run, not a new one
    assert [r.info.status for r in runs] == ["FINISHED", "FINISHED"]
    assert [r.data.tags["seed"] for r in runs] == ["0", "1"]
    for run in runs:
        tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
        assert (tags["algorithm"], tags["env"], tags["core"]) == ("PPO", "CartPole-P", "grsn")
        assert re.fullmatch(r"[0-9a-f]{40}", tags["git_commit"])
        assert params["model_config.hidden"] == "16" and params["model_config.decay"] == "0.5"  # default
        assert params["seed"] == tags["seed"] and params["stop.training_iteration"] == str(ITERATIONS)
        assert params["rllib.lr"]  # RLlib's own settings, defaults included
        assert metrics["training_iteration"] == ITERATIONS
        for key in ("return", "eval_return", "episode_len", "env_steps", "energy/pj_per_decision",
                    "energy/sop_spiking", "energy/mac_dense", "energy/firing_rate/backbone.core",
                    "learners/default_policy/policy_loss"):  # fmt: skip
            assert key in metrics, (key, sorted(metrics))
        assert metrics["energy/sop_spiking"] > 0 and 0 < metrics["energy/firing_rate/backbone.core"] < 1
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "training_iteration")]
        assert sorted(set(steps)) == [256, 512, 768]  # env steps are the step axis
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"experiment.yaml", "checkpoint.txt", "learning_curve.png", "source"} <= artifacts
        logged = yaml.safe_load(
            Path(client.download_artifacts(run.info.run_id, "experiment.yaml")).read_text()
        )
        assert logged["seed-sweep"]["config"]["seed"] == int(tags["seed"])
        assert Path(tags["checkpoint"]).is_dir()
    # Artifacts sit beside the database, not in ./mlruns of wherever the command ran.
    assert (storage / "mlartifacts").is_dir() and not (REPO / "mlruns").exists()


def test_no_ray_process_outlives_the_commands(sweep, ray_tmp_module):
    deadline = time.monotonic() + 15
    while True:
        left = [
            p.name
            for p in Path("/proc").iterdir()
            if p.name.isdigit() and _cmdline(p).find(str(ray_tmp_module)) >= 0
        ]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert not left


def _cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def test_optuna_search_with_asha_runs_its_trials(rllib, tmp_path):
    """`tune: {search_alg: optuna, scheduler: asha}`: Optuna draws from the ranges, ASHA may stop trials."""
    pytest.importorskip("optuna")
    spec = json.loads(json.dumps(SWEEP["seed-sweep"]))
    spec["stop"] = {"training_iteration": 2}
    spec["tune"] = {
        "num_samples": 3,
        "max_concurrent_trials": 1,
        "metric": "return",
        "search_alg": {"type": "optuna", "seed": 0},
        "scheduler": {"type": "asha", "grace_period": 1, "max_t": 2},
    }
    spec["config"]["seed"] = 0
    spec["config"]["lr"] = {"loguniform": [1.0e-4, 1.0e-2]}
    spec["config"]["model_config"]["decay"] = {"uniform": [0.3, 0.9]}
    path = tmp_path / "optuna.yaml"
    path.write_text(yaml.safe_dump({"optuna-sweep": spec}))
    run = rllib(
        "train", "file", path, "--storage-path", tmp_path / "results", "--num-cpus", "1", "--no-mlflow"
    )
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-5000:]
    assert "optuna-sweep: 3 trials, final values" in out and "best return first" in out
    lrs = {float(m) for m in re.findall(r"^│ (\d\.\d+e-0\d|0\.\d+)\s+│", run.stdout, re.M)}
    assert len(lrs) == 3 and all(1e-4 <= lr <= 1e-2 for lr in lrs), run.stdout[-3000:]
    folders = [p.name for p in (tmp_path / "results" / "optuna-sweep").iterdir() if p.is_dir()]
    assert len(folders) == 3 and all(len(name) < 40 for name in folders), folders
    assert not (tmp_path / "results" / "mlflow.db").exists()  # --no-mlflow
