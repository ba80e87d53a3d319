"""What MLflowTracking sends to MLflow, checked without Ray (the end-to-end runs are in
test_sweep_end_to_end.py and test_qmix_cli.py)."""

from __future__ import annotations

import math
import pickle

from rllib_grsn.cli import build_parser
from rllib_grsn.experiment import build_experiment
from rllib_grsn.tracking.mlflow_tracking import (
    MAX_PARAM_VALUE,
    MLflowTracking,
    artifact_location,
    default_tracking_uri,
    flatten_params,
    result_metrics,
    result_step,
    tracking_uri_problem,
    trial_experiment,
    ui_command,
)

RESULT = {
    "training_iteration": 4,
    "num_env_steps_sampled_lifetime": 8000,
    "time_total_s": 12.5,
    "surrogate_alpha": 3.0,
    "env_runners": {"episode_return_mean": 1.5, "team_return_mean": 0.2, "win_rate": 0.25},
    "evaluation": {
        "env_runners": {
            "episode_return_mean": 2.0,
            "win_rate": 0.5,
            "energy": {"pj_per_decision": 1234.5, "firing_rate": {"core": 0.1}},
        }
    },
    "learners": {
        "shared": {"loss": 0.3, "weights_seq_no": 7.0},
        "__all_modules__": {"learner_connector": {"timers": {"x": 1.0}}, "num_env_steps_trained": 5.0},
    },
    "backend": "smax",
    "perf": {"cpu_util_percent": 50.0},
    "nan": math.nan,
}


def test_result_metrics_keep_what_users_read_under_short_names():
    assert result_metrics(RESULT) == {
        "return": 1.5,
        "team_return": 0.2,
        "win_rate": 0.25,
        "eval_return": 2.0,
        "eval_win_rate": 0.5,
        "env_steps": 8000.0,
        "time_total_s": 12.5,
        "training_iteration": 4.0,
        "surrogate_alpha": 3.0,
        "energy/pj_per_decision": 1234.5,
        "energy/firing_rate/core": 0.1,
        "learners/shared/loss": 0.3,
        "learners/__all_modules__/num_env_steps_trained": 5.0,
    }


def test_the_step_is_the_env_steps_else_the_iteration():
    assert result_step(RESULT) == 8000 and result_step({"training_iteration": 3}) == 3


def test_params_are_flattened_and_cut_to_mlflows_limits():
    params = flatten_params({"a": {"b": 1, "c": [1, 2]}, "long": "x" * 10_000, "k" * 300: 1, "empty": {}})
    assert params["a.b"] == "1" and params["a.c"] == "[1, 2]" and params["empty"] == "{}"
    assert len(params["long"]) == MAX_PARAM_VALUE
    assert not any(len(k) > 250 for k in params)


def test_trial_experiment_fills_in_the_sampled_values():
    exp = build_experiment(
        "sw",
        {
            "env": "CartPole-P",
            "run": "PPO",
            "config": {"seed": {"grid_search": [0, 1]}, "model_config": {"core": "grsn", "decay": 0.5}},
        },
    )
    trial_config = {"seed": 1, "_model_config": {"core": "grsn", "decay": 0.5}}
    (logged,) = trial_experiment(exp, trial_config).values()
    assert logged["config"]["seed"] == 1 and logged["run"] == "PPO" and logged["env"] == "CartPole-P"


def test_default_tracking_uri_is_a_sqlite_file_next_to_the_results(tmp_path):
    assert default_tracking_uri(str(tmp_path / "r")) == f"sqlite:///{tmp_path / 'r' / 'mlflow.db'}"
    assert default_tracking_uri("s3://bucket/results").endswith("/mlflow.db")
    assert artifact_location(f"sqlite:///{tmp_path}/r/mlflow.db") == (tmp_path / "r" / "mlartifacts").as_uri()
    assert artifact_location("http://mlflow:5000") is None  # a server keeps its own artifact store
    assert tracking_uri_problem(default_tracking_uri(str(tmp_path / "r"))) is None
    assert ui_command("sqlite:////x/mlflow.db") == "mlflow ui --backend-store-uri sqlite:////x/mlflow.db"
    assert "browser" in ui_command("http://mlflow:5000")


def test_tracking_uri_option_defaults_to_the_environment(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking:5000")
    args = build_parser().parse_args(["train", "file", "x.yaml"])
    assert args.mlflow_uri == "http://tracking:5000" and not args.no_mlflow
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    args = build_parser().parse_args(["train", "file", "x.yaml", "--no-mlflow"])
    assert args.mlflow_uri is None and args.no_mlflow


def test_the_callback_pickles_without_its_client(tmp_path):
    """Tune pickles callbacks with the experiment state, which --resume restores."""
    exp = build_experiment(
        "e", {"env": "CartPole-P", "run": "PPO", "config": {"model_config": {"core": "grsn"}}}
    )
    callback = MLflowTracking(f"sqlite:///{tmp_path / 'm.db'}", exp)
    assert callback.client is not None  # creates the experiment in the database
    callback.guard.drop({"results": 1})
    restored = pickle.loads(pickle.dumps(callback))
    assert restored._client is None and restored.experiment.name == "e"
    assert not restored.guard.dropped and not restored.guard.paused  # a resumed run starts afresh
    assert restored.client.get_experiment_by_name("e") is not None
