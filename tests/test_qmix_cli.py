"""`rllib train file` and `rllib evaluate` on the QMIX tuned examples, as a user runs them (the main job).

(Restoring a QMIX algorithm from a checkpoint is tested in test_qmix_algorithm.py.)"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from ray_output import driver_output

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
# One short iteration with a learning update and greedy test episodes; the network stays as tuned.
SHORT = {
    "train_batch_size_per_learner": 8,
    "num_episodes_before_learning_starts": 8,
    "min_sample_timesteps_per_iteration": 300,
    "evaluation_interval": 1,
    "evaluation_duration": 2,
}


def test_main_job_trains_on_smax_without_starcraft_and_evaluates_win_rate(rllib, tmp_path):
    run = rllib(
        "train", "file", REPO / "tuned_examples" / "smac_8m_grsn.yaml",
        "--stop", json.dumps({"training_iteration": 1}),
        "--config", json.dumps(SHORT), "--storage-path", tmp_path, "--num-cpus", "2",
    )  # fmt: skip
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-5000:]
    assert "Traceback" not in driver_output(out)
    assert "running backend smax" in out and "not SMAC" in out  # says loudly which simulator runs
    line = r"\] iter 1 \| env steps \d+ \| return [\d.]+ \| eval [\d.]+ \| win \d+% \| eval win \d+% \|"
    assert re.search(line, out), out[-3000:]
    assert re.search(
        r"done after 1 iterations, \d+ env steps, return [\d.]+, win rate [\d.]+%.*\(backend smax\)", out
    )
    match = re.search(r"^smac-8m-grsn: final checkpoint (\S+)$", out, re.MULTILINE)
    assert match, out[-3000:]
    result = json.loads((Path(match.group(1)).parent / "result.json").read_text().splitlines()[-1])
    assert result["backend"] == "smax"
    _assert_mlflow_run_of_the_main_job(tmp_path)

    run = rllib("evaluate", match.group(1), "--episodes", "2", "--seed", "0")
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    assert re.search(
        r"^smac \[backend smax\]: 2 episodes, return [\d.]+ \+- [\d.]+ .*win rate [\d.]+%", run.stdout, re.M
    )


def _assert_mlflow_run_of_the_main_job(storage: Path) -> None:
    """The run is in MLflow by default (sqlite next to the results): tags, params, team metrics, energy."""
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{storage.resolve() / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("smac-8m-grsn").experiment_id])
    tags, metrics = run.data.tags, run.data.metrics
    assert run.info.status == "FINISHED"
    assert (tags["algorithm"], tags["env"], tags["map"], tags["backend"]) == ("QMIX", "smac", "8m", "smax")
    assert (tags["core"], tags["seed"]) == ("grsn", "0")
    assert run.data.params["env_config.map_name"] == "8m" and run.data.params["model_config.hidden"] == "64"
    for key in ("team_return", "win_rate", "eval_team_return", "eval_win_rate", "env_steps",
                "energy/pj_per_decision", "energy/sop_spiking", "energy/mac_dense"):  # fmt: skip
        assert key in metrics, (key, sorted(metrics))
    assert 0.0 <= metrics["eval_win_rate"] <= 1.0 and metrics["energy/pj_per_decision"] > 0


def test_mpe_team_run_end_to_end(rllib, tmp_path):
    experiment = {
        "mpe-grsn-qmix": {
            "env": "mpe_simple_spread",
            "run": "QMIX",
            "config": {
                **SHORT,
                "model_config": {"core": "grsn", "hidden": 32, "obs_embed": 32, "head_hiddens": []},
            },
        }
    }
    path = tmp_path / "mpe.yaml"
    path.write_text(json.dumps(experiment))  # JSON is YAML
    run = rllib(
        "train", "file", path, "--stop", json.dumps({"training_iteration": 1}),
        "--storage-path", tmp_path / "results", "--num-cpus", "2",
    )  # fmt: skip
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-5000:]
    assert re.search(r"\] iter 1 \| env steps \d+ \| return -[\d.]+ \| eval -[\d.]+ \| len 25.0", out), out[
        -3000:
    ]
    assert "win" not in out.split("mpe-grsn-qmix: done after")[1].splitlines()[0]  # no battles, no win rate
