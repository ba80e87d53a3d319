"""Sweeps written in a tuned_examples YAML: search spaces in ``config``, the ``tune:`` section,
``--num-samples``, and what Tune receives. Nothing here starts Ray."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
from ray import tune

from rllib_grsn.cli import main
from rllib_grsn.experiment import ExperimentError, load_experiments
from rllib_grsn.sweep.search_space import (
    SearchDomain,
    config_dict_path,
    param_space,
    sampled_values,
    split_search_space,
)
from rllib_grsn.sweep.settings import parse_tune_settings
from rllib_grsn.sweep.summary import TrialRow, group_rows, last_reported, last_values, summary_table

REPO = Path(__file__).resolve().parents[1]

SWEEP = """\
sw:
  env: CartPole-P
  run: PPO
  stop: {training_iteration: 1}
  tune: {max_concurrent_trials: 2, metric: eval_return}
  config:
    seed: {grid_search: [0, 1, 2]}
    train_batch_size: 256
    lambda: {uniform: [0.9, 0.99]}
    env_config: {}
    model_config:
      core: grsn
      hidden: 16
      decay: {grid_search: [0.3, 0.8]}
      alpha: {choice: [1.0, 4.0]}
"""


@pytest.fixture
def write(tmp_path):
    def _write(text: str) -> str:
        path = tmp_path / "exp.yaml"
        path.write_text(text)
        return str(path)

    return _write


def _problems(path: str, **kwargs) -> list[str]:
    with pytest.raises(ExperimentError) as err:
        load_experiments(path, **kwargs)
    return err.value.problems


def test_split_search_space_replaces_markers_by_their_first_value():
    config = {"seed": {"grid_search": [3, 4]}, "lr": {"loguniform": [1e-4, 1e-3]}, "x": {"y": {"z": 1}}}
    plain, space, problems = split_search_space(config, "e.config")
    assert problems == []
    assert plain == {"seed": 3, "lr": 1e-4, "x": {"y": {"z": 1}}}
    assert space == {
        ("seed",): SearchDomain("grid_search", (3, 4)),
        ("lr",): SearchDomain("loguniform", (1e-4, 1e-3)),
    }


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        ({"grid_search": []}, "needs a non-empty list"),
        ({"choice": 3}, "needs a non-empty list"),
        ({"uniform": [1.0]}, "needs [low, high]"),
        ({"uniform": [2.0, 1.0]}, "low < high"),
        ({"loguniform": [0.0, 1.0]}, "0 < low < high"),
        ({"loguniform": [0.5, "1e-3"]}, "(YAML reads 1e-3 as a string; write 1.0e-3)"),
        ({"randint": [0.5, 3]}, "integers"),
        ({"random_search": [1, 2]}, "unknown search space 'random_search'; use one of: grid_search"),
    ],
)
def test_malformed_search_spaces_name_the_key_and_what_is_allowed(marker, message):
    _, space, problems = split_search_space({"model_config": {"decay": marker}}, "e.config")
    assert space == {}
    assert len(problems) == 1 and problems[0].startswith("e.config.model_config.decay: ")
    assert message in problems[0]


def test_sweep_experiment_counts_trials_and_keeps_settings(write):
    (exp,) = load_experiments(write(SWEEP))
    assert exp.is_sweep and exp.num_trials == 6  # 3 seeds x 2 decays; the choice is drawn per trial
    assert exp.tune.max_concurrent_trials == 2
    assert exp.tune.metric_key == "evaluation/env_runners/episode_return_mean"
    # The experiment is built with each space's first value.
    assert exp.algo_config.seed == 0 and exp.algo_config.model_config["decay"] == 0.3


def test_param_space_puts_each_search_space_where_the_trial_config_reads_it(write):
    (exp,) = load_experiments(write(SWEEP))
    space = param_space(exp.algo_config, exp.search_space)
    assert space["seed"] == {"grid_search": [0, 1, 2]}
    assert isinstance(space["lambda"], tune.search.sample.Float)  # the YAML's `lambda` is RLlib's lambda_
    assert space["_model_config"]["decay"] == {"grid_search": [0.3, 0.8]}
    assert isinstance(space["_model_config"]["alpha"], tune.search.sample.Categorical)
    assert space["_model_config"]["hidden"] == 16  # unsampled keys stay as written
    # Read back from a trial's (resolved) config.
    trial = {**space, "seed": 2, "lambda": 0.95, "_model_config": {"decay": 0.8, "alpha": 4.0}}
    assert sampled_values(trial, exp.search_space) == {
        ("seed",): 2,
        ("lambda",): 0.95,
        ("model_config", "decay"): 0.8,
        ("model_config", "alpha"): 4.0,
    }


def test_config_dict_path_follows_rllib_renames():
    assert config_dict_path(("model", "decay")) == ("_model_config", "decay")
    assert config_dict_path(("lambda",)) == ("lambda",)
    assert config_dict_path(("num_workers",)) == ("num_env_runners",)
    assert config_dict_path(("env_config", "map_name")) == ("env_config", "map_name")


def test_every_grid_and_choice_value_is_validated_before_ray_starts(write):
    problems = _problems(
        write(SWEEP.replace("[1.0, 4.0]", "[1.0, -4.0]").replace("16", "{grid_search: [16, 0]}"))
    )
    assert any(p.startswith("sw.config.model_config.alpha = -4.0: ") and "got -4.0" in p for p in problems), (
        problems
    )
    assert any(p.startswith("sw.config.model_config.hidden = 0: ") for p in problems), problems


def test_range_bounds_are_validated(write):
    text = SWEEP.replace("alpha: {choice: [1.0, 4.0]}", "threshold: {uniform: [0.5, 1000.0]}")
    load_experiments(write(text))  # a huge threshold is allowed
    problems = _problems(
        write(SWEEP.replace("decay: {grid_search: [0.3, 0.8]}", "decay: {uniform: [0.5, 1.5]}"))
    )
    assert any(p.startswith("sw.config.model_config.decay = 1.5: ") and "must be < 1" in p for p in problems)


def test_num_samples_without_a_seed_search_becomes_a_seed_grid(write):
    text = SWEEP.replace("seed: {grid_search: [0, 1, 2]}", "seed: 7")
    (exp,) = load_experiments(write(text), num_samples=3)
    assert exp.search_space[("seed",)] == SearchDomain("grid_search", (7, 8, 9))
    assert exp.tune.num_samples == 1 and exp.num_trials == 6
    # A seed grid already present: samples repeat the grid, as in Tune.
    (exp,) = load_experiments(write(SWEEP), num_samples=2)
    assert exp.tune.num_samples == 2 and exp.num_trials == 12


def test_tune_section_problems_name_the_key(write):
    assert _problems(write(SWEEP.replace("max_concurrent_trials: 2", "max_trials: 2"))) == [
        "sw.tune.max_trials: unknown key (did you mean: max_concurrent_trials, max_failures?); allowed keys: "
        "num_samples, max_concurrent_trials, max_failures, "
        "metric, mode, scheduler, search_alg"
    ]
    problems = _problems(write(SWEEP.replace("metric: eval_return", "metric: eval_return, mode: best")))
    assert problems[0].startswith("sw.tune.mode: must be one of: max, min (got 'best')")
    problems = _problems(write(SWEEP.replace("tune: {", "tune: {search_alg: optuna, ")))
    assert any("Optuna cannot sample grid_search; use choice" in p for p in problems)
    problems = _problems(write(SWEEP.replace("tune: {", "tune: {scheduler: asha, ")))
    assert any("reported only in iterations that evaluate" in p for p in problems)


def test_asha_scheduler_settings_reach_tune():
    settings, problems = parse_tune_settings(
        {"scheduler": {"type": "asha", "grace_period": 2, "max_t": 20}, "metric": "return"}, "e.tune"
    )
    assert problems == []
    config = settings.tune_config()
    assert config.metric == "env_runners/episode_return_mean" and config.mode == "max"
    assert type(config.scheduler).__name__ == "AsyncHyperBandScheduler"
    _, problems = parse_tune_settings({"scheduler": {"type": "asha", "grace": 2}}, "e.tune")
    assert problems[0].startswith("e.tune.scheduler.grace: unknown key; allowed keys: type, time_attr")


def test_cli_check_reports_the_number_of_trials(write, capsys):
    assert main(["train", "file", write(SWEEP), "--check"]) == 0
    assert "sw: PPO on CartPole-P, stop {'training_iteration': 1}, 6 trials: OK" in capsys.readouterr().out
    assert main(["train", "file", write(SWEEP), "--check", "--num-samples", "0"]) == 2
    assert "--num-samples: must be >= 1" in capsys.readouterr().err


@pytest.mark.parametrize(
    "name", ["smac_8m_grsn_5seeds", "cartpole_p_grsn_neuron_grid", "cartpole_p_energy_tradeoff"]
)
def test_the_sweeps_in_tuned_examples_validate(name, capsys):
    path = REPO / "tuned_examples" / "sweeps" / f"{name}.yaml"
    assert main(["train", "file", str(path), "--check"]) == 0
    trials = {"smac_8m_grsn_5seeds": 5, "cartpole_p_grsn_neuron_grid": 27, "cartpole_p_energy_tradeoff": 8}[
        name
    ]
    assert f"{trials} trials: OK" in capsys.readouterr().out


def test_summary_groups_seeds_and_reports_mean_and_std():
    rows = [
        TrialRow("a", {("model_config", "decay"): 0.3}, 0, {"return": 10.0, "eval win rate %": 50.0}),
        TrialRow("b", {("model_config", "decay"): 0.3}, 1, {"return": 20.0, "eval win rate %": 70.0}),
        TrialRow("c", {("model_config", "decay"): 0.8}, 0, {"return": 5.0}),
    ]
    groups = group_rows(rows)
    assert [len(g.rows) for g in groups] == [2, 1]
    mean, std, n = groups[0].stats("return")
    assert (mean, std, n) == (15.0, 5.0, 2)
    assert groups[1].stats("eval win rate %") is None
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(summary_table(groups, "t"))
    text = console.export_text()
    assert "decay" in text and "0,1" in text and "15.0 ± 5.0" in text and "60.0 ± 10.0" in text


def test_last_values_take_the_last_reported_value_of_each_column():
    history = pd.DataFrame(
        {
            "env_runners/episode_return_mean": [1.0, 2.0, 3.0],
            "evaluation/env_runners/episode_return_mean": [math.nan, 9.0, math.nan],
            "evaluation/env_runners/win_rate": [math.nan, 0.25, math.nan],
            "evaluation/env_runners/energy/pj_per_decision": [math.nan, 2000.0, math.nan],
        }
    )
    values = last_values(history)
    assert values == {"return": 3.0, "eval return": 9.0, "eval win rate %": 25.0, "energy KpJ/decision": 2.0}
    # What the single-run "done" line names when the last iteration ran no test.
    assert last_reported(history, "evaluation/env_runners/win_rate") == 0.25
    assert last_reported(history, "evaluation/env_runners/missing") is None
    assert last_reported(None, "evaluation/env_runners/win_rate") is None


def test_search_space_values_are_checked_with_the_env_and_stop_as_overridden(write):
    """`--config '{"env": ...}'` and `--stop` reach the per-value checks too."""
    text = SWEEP.replace("  env: CartPole-P\n", "").replace(
        "stop: {training_iteration: 1}", "stop: {x: .nan}"
    )
    (exp,) = load_experiments(write(text), config={"env": "CartPole-P"}, stop={"training_iteration": 2})
    assert exp.env == "CartPole-P" and exp.num_trials == 6
