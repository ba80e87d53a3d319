"""`rllib train file` / `rllib evaluate` reject bad input before Ray starts: exit code 2, one line per
problem naming the key, no traceback.

Most cases call ``rllib_grsn.cli.main`` in-process with ``ray.init`` replaced by a function that fails
the test, so a file that slips through validation cannot start a real training run. A few cases run
the real command in a subprocess to prove there is no traceback and no Ray start.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import ray

from rllib_grsn.cli import main
from rllib_grsn.experiment import ExperimentError, load_experiments

REPO = Path(__file__).resolve().parents[1]
TUNED_EXAMPLES = REPO / "tuned_examples"
TUNED_FILES = sorted([*TUNED_EXAMPLES.glob("*.yaml"), *TUNED_EXAMPLES.glob("*.yml")])
CORE_NAMES = ["grsn", "lif", "gru", "mlp", "grsn_notap", "lif_notap"]
PO_NAMES = ["CartPole-P", "CartPole-V", "Pendulum-P", "Pendulum-V"]
RAY_STARTED = "Started a local Ray instance"

GOOD = """\
exp:
  env: CartPole-P
  run: PPO
  stop:
    training_iteration: 1
  config:
    lr: 0.0003
    train_batch_size: 400
    model_config:
      core: grsn
      hidden: 24
      decay: 0.7
"""


def good_with(old: str, new: str) -> str:
    assert old in GOOD
    return GOOD.replace(old, new)


class RayStarted(AssertionError):
    pass


@pytest.fixture(autouse=True)
def no_ray(monkeypatch):
    """Any attempt to start Ray from these tests is a failure (validation must come first)."""

    def refuse(*args, **kwargs):
        raise RayStarted("ray.init was called: the input passed validation")

    monkeypatch.setattr(ray, "init", refuse)


@pytest.fixture
def write(tmp_path):
    def _write(text: str, name: str = "exp.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return _write


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def run_subprocess(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    # "Fails fast" is asserted as "before Ray starts" (RAY_STARTED absent), not as a wall-clock bound:
    # the suite runs two files at a time, and a clock bound fails on a busy machine, not on slow code.
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return subprocess.run(
        [sys.executable, "-m", "rllib_grsn.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env=env,
    )


# ----------------------------------------------------------------------------- bad files, in-process

BAD_FILES = {
    # id: (yaml text, substrings stderr must contain)
    "malformed_yaml": ("exp: [unclosed\n  a: b\n", ["not valid YAML", "line"]),
    "top_level_list": ("- env: CartPole-P\n- run: PPO\n", ["mapping", "top level"]),
    "top_level_scalar": ("just a string\n", ["mapping", "top level"]),
    "empty_file": ("", ["mapping", "top level"]),
    "experiment_not_mapping": ("exp: 3\n", ["exp:", "mapping"]),
    "missing_run": (
        "exp:\n  env: CartPole-P\n  config: {lr: 0.001}\n",
        ["exp.run", "missing", "PPO", "IMPALA"],
    ),
    "unknown_run": (good_with("run: PPO", "run: PPOO"), ["exp.run", "PPOO", "PPO", "APPO", "IMPALA"]),
    "core_with_an_algorithm_without_spiking_module": (
        good_with("run: PPO", "run: DQN"),
        ["exp.config.model_config.core", "DQN", "no spiking RLModule", "PPO"],
    ),
    "missing_env": ("exp:\n  run: PPO\n", ["exp.env", "missing", *PO_NAMES]),
    "unknown_env": (good_with("env: CartPole-P", "env: CartPole-X"), ["exp.env", "CartPole-X", *PO_NAMES]),
    "unknown_core": (good_with("core: grsn", "core: lstm"), ["model_config.core", "lstm", *CORE_NAMES]),
    "decay_above_1": (good_with("decay: 0.7", "decay: 1.5"), ["model_config.decay", "1.5"]),
    "decay_nan": (good_with("decay: 0.7", "decay: .nan"), ["model_config.decay"]),
    "lr_nan": (good_with("lr: 0.0003", "lr: .nan"), ["config.lr", "nan"]),
    "lr_inf": (good_with("lr: 0.0003", "lr: .inf"), ["config.lr", "inf"]),
    "lr_string": (good_with("lr: 0.0003", 'lr: "fast"'), ["config.lr", "fast"]),
    "batch_string": (
        good_with("train_batch_size: 400", 'train_batch_size: "big"'),
        ["config.train_batch_size", "big"],
    ),
    "batch_float": (
        good_with("train_batch_size: 400", "train_batch_size: 400.5"),
        ["config.train_batch_size", "400.5"],
    ),
    "batch_negative": (
        good_with("train_batch_size: 400", "train_batch_size: -5"),
        ["config.train_batch_size", "-5"],
    ),
    "hidden_negative": (good_with("hidden: 24", "hidden: -3"), ["model_config.hidden", "-3"]),
    "hidden_string": (good_with("hidden: 24", "hidden: many"), ["model_config.hidden", "many"]),
    "config_key_typo": (
        good_with("lr: 0.0003", "num_enw_runners: 2"),
        ["config.num_enw_runners", "num_env_runners"],
    ),
    "model_config_key_typo": (good_with("hidden: 24", "hiden: 24"), ["model_config.hiden", "hidden"]),
    "default_model_key_typo": (
        "exp:\n  env: CartPole-P\n  run: PPO\n  config:\n    model_config: {fcnet_hidens: [8]}\n",
        ["model_config.fcnet_hidens", "fcnet_hiddens"],
    ),
    "model_and_model_config": (
        good_with("lr: 0.0003", "model: {fcnet_hiddens: [8]}"),
        ["config.model", "model_config"],
    ),
    "model_config_not_mapping": (
        "exp:\n  env: CartPole-P\n  run: PPO\n  config:\n    model_config: grsn\n",
        ["config.model_config", "mapping"],
    ),
    "config_not_mapping": (
        "exp:\n  env: CartPole-P\n  run: PPO\n  config: [1, 2]\n",
        ["exp.config", "mapping"],
    ),
    "experiment_key_typo": (good_with("stop:", "stopp:"), ["exp.stopp", "stop"]),
    "stop_not_number": (
        good_with("training_iteration: 1", "training_iteration: soon"),
        ["stop.training_iteration", "soon"],
    ),
    "stop_nan": (good_with("training_iteration: 1", "training_iteration: .nan"), ["stop.training_iteration"]),
    "checkpoint_freq_negative": (
        good_with("  stop:", "  checkpoint_freq: -1\n  stop:"),
        ["exp.checkpoint_freq", "-1"],
    ),
    "checkpoint_at_end_not_bool": (
        good_with("  stop:", "  checkpoint_at_end: sometimes\n  stop:"),
        ["exp.checkpoint_at_end", "sometimes"],
    ),
    "td3_on_discrete_actions": (
        good_with("run: PPO", "run: TD3").replace("    lr: 0.0003\n    train_batch_size: 400\n", ""),
        ["run: TD3 needs continuous (Box) actions", "CartPole-P", "RecurrentSAC"],
    ),
    "bad_replay_start_state": (
        good_with("run: PPO", "run: RecurrentSAC").replace(
            "    lr: 0.0003\n    train_batch_size: 400\n", "    replay_start_state: recorded\n"
        ),
        ["replay_start_state: must be one of: zero, stored", "'recorded'"],
    ),
    "core_on_algorithm_without_spiking_module": (
        good_with("run: PPO", "run: DQN").replace("    lr: 0.0003\n    train_batch_size: 400\n", ""),
        ["model_config.core", "DQN", "PPO"],
    ),
}


@pytest.mark.parametrize(("text", "expected"), list(BAD_FILES.values()), ids=list(BAD_FILES))
def test_bad_file_exits_2_naming_the_key(text, expected, write, capsys):
    path = write(text)
    rc, out, err = run_cli(["train", "file", path], capsys)
    assert rc == 2, (out, err)
    assert err.startswith("rllib: error: "), err
    assert str(path) in err
    for fragment in expected:
        assert fragment in err, f"{fragment!r} missing from:\n{err}"
    assert "Traceback" not in out + err
    assert "OK" not in out


@pytest.mark.parametrize(("text", "expected"), list(BAD_FILES.values())[:6], ids=list(BAD_FILES)[:6])
def test_check_flag_reports_the_same_errors(text, expected, write, capsys):
    rc, _, err = run_cli(["train", "file", write(text), "--check"], capsys)
    assert rc == 2
    for fragment in expected:
        assert fragment in err


def test_missing_file(tmp_path, capsys):
    rc, _, err = run_cli(["train", "file", tmp_path / "nope.yaml"], capsys)
    assert rc == 2
    assert "nope.yaml" in err and "not found" in err


# ----------------------------------------------------------------------------- bad options, in-process

BAD_OPTIONS = {
    "stop_not_json": (["--stop", "{training_iteration: 1"], ["--stop", "JSON"]),
    "stop_not_object": (["--stop", "[1, 2]"], ["--stop", "object"]),
    "stop_value_not_number": (["--stop", '{"training_iteration": "x"}'], ["stop.training_iteration"]),
    "config_not_json": (["--config", "{'lr': 1}"], ["--config", "JSON"]),
    "config_not_object": (["--config", '"lr"'], ["--config", "object"]),
    "config_bad_value": (["--config", '{"lr": "fast"}'], ["config.lr", "fast"]),
    "config_bad_core": (["--config", '{"model_config": {"core": "lstm"}}'], ["model_config.core", "lstm"]),
    "config_unknown_key": (["--config", '{"num_enw_runners": 1}'], ["config.num_enw_runners"]),
    "checkpoint_freq_negative": (["--checkpoint-freq", "-1"], ["--checkpoint-freq"]),
}


@pytest.mark.parametrize(("extra", "expected"), list(BAD_OPTIONS.values()), ids=list(BAD_OPTIONS))
def test_bad_option_exits_2_naming_it(extra, expected, write, capsys):
    rc, out, err = run_cli(["train", "file", write(GOOD), *extra], capsys)
    assert rc == 2, (out, err)
    for fragment in expected:
        assert fragment in err, f"{fragment!r} missing from:\n{err}"
    assert "Traceback" not in out + err


def test_negative_num_cpus_rejected_before_ray(write, capsys):
    rc, _, err = run_cli(["train", "file", write(GOOD), "--num-cpus", "-1"], capsys)
    assert rc == 2 and "--num-cpus" in err


def test_all_problems_of_a_file_are_reported_together(write, capsys):
    text = (
        good_with("lr: 0.0003", "lr: .nan\n    num_enw_runners: 2")
        .replace("hidden: 24", "hidden: -3")
        .replace("decay: 0.7", "decay: 1.5")
    )
    text += "other:\n  env: Nope-v0\n  run: XXX\n"
    rc, _, err = run_cli(["train", "file", write(text)], capsys)
    assert rc == 2
    for key in (
        "exp.config.lr",
        "exp.config.num_enw_runners",
        "exp.config.model_config.hidden",
        "exp.config.model_config.decay",
        "other.env",
        "other.run",
    ):
        assert key in err, f"{key} missing from:\n{err}"


# ----------------------------------------------------------------------------- load_experiments directly


def test_load_experiments_collects_every_problem_one_message_each(write):
    text = (
        good_with("lr: 0.0003", "lr: .nan\n    num_enw_runners: 2\n    train_batch_size: -5")
        .replace("    train_batch_size: 400\n", "")
        .replace("hidden: 24", "hiden: 24")
        .replace("core: grsn", "core: lstm")
    )
    text += "second:\n  env: CartPole-X\n  run: PPO\n  stopp: {}\n"
    with pytest.raises(ExperimentError) as info:
        load_experiments(write(text))
    problems = info.value.problems
    expected_keys = [
        "exp.config.lr",
        "exp.config.num_enw_runners",
        "exp.config.train_batch_size",
        "exp.config.model_config.core",
        "exp.config.model_config.hiden",
        "second.stopp",
        "second.env",
    ]
    assert len(problems) == len(expected_keys), problems
    for key in expected_keys:
        assert sum(p.startswith(key + ":") for p in problems) == 1, (key, problems)
    assert isinstance(info.value, ValueError)


def test_load_experiments_good_file_builds_the_spiking_module_config(write):
    (exp,) = load_experiments(write(GOOD))
    assert (exp.name, exp.run, exp.env) == ("exp", "PPO", "CartPole-P")
    assert exp.stop == {"training_iteration": 1}
    config = exp.algo_config
    assert config.env == "CartPole-P"
    assert config.lr == pytest.approx(0.0003)
    assert config.train_batch_size == 400
    spec = config.rl_module_spec
    assert spec.module_class.__name__ == "SpikingActorCriticModule"
    assert config.model_config["core"] == "grsn"
    assert config.model_config["hidden"] == 24
    assert config.model_config["decay"] == pytest.approx(0.7)


def test_config_override_deep_merges_model_config(write):
    (exp,) = load_experiments(write(GOOD), config={"model_config": {"core": "lif"}, "lr": 0.001})
    model = exp.algo_config.model_config
    assert model["core"] == "lif"  # changed by the override
    assert model["hidden"] == 24  # kept from the file (not the default 128)
    assert model["decay"] == pytest.approx(0.7)
    assert exp.algo_config.lr == pytest.approx(0.001)
    assert exp.algo_config.train_batch_size == 400  # untouched file key


def test_config_override_deep_merges_on_the_tuned_example():
    (exp,) = load_experiments(
        TUNED_EXAMPLES / "cartpole_p_grsn.yaml", config={"model_config": {"core": "lif", "hidden": 16}}
    )
    model = exp.algo_config.model_config
    assert (model["core"], model["hidden"], model["max_seq_len"]) == ("lif", 16, 32)
    assert exp.algo_config.train_batch_size == 4000


def test_stop_override_replaces_the_files_stop_and_maps_classic_keys(write):
    (exp,) = load_experiments(write(GOOD), stop={"timesteps_total": 5000, "episode_reward_mean": 150})
    assert exp.stop == {"num_env_steps_sampled_lifetime": 5000, "env_runners/episode_return_mean": 150}


def test_classic_model_alias_is_model_config(write):
    (exp,) = load_experiments(write(GOOD.replace("model_config:", "model:")))
    model = exp.algo_config.model_config
    assert (model["core"], model["hidden"]) == ("grsn", 24)
    assert exp.algo_config.rl_module_spec.module_class.__name__ == "SpikingActorCriticModule"


def test_classic_model_alias_without_core_goes_to_rllibs_default_model(write):
    text = "exp:\n  env: CartPole-v1\n  run: PPO\n  config:\n    model: {fcnet_hiddens: [8, 8]}\n"
    (exp,) = load_experiments(write(text))
    assert exp.algo_config.model_config["fcnet_hiddens"] == [8, 8]


def test_classic_model_alias_accepted_by_the_cli(write, capsys):
    rc, out, err = run_cli(
        ["train", "file", write(GOOD.replace("model_config:", "model:")), "--check"], capsys
    )
    assert rc == 0, err
    assert "exp: PPO on CartPole-P" in out and "OK" in out


def test_model_config_override_merges_into_a_file_using_the_model_alias(write):
    (exp,) = load_experiments(
        write(GOOD.replace("model_config:", "model:")), config={"model_config": {"core": "lif"}}
    )
    model = exp.algo_config.model_config
    assert (model["core"], model["hidden"]) == ("lif", 24)


def test_learning_rate_schedule_is_accepted(write):
    (exp,) = load_experiments(write(good_with("lr: 0.0003", "lr: [[0, 0.001], [100000, 0.0001]]")))
    assert exp.algo_config.lr == [[0, 0.001], [100000, 0.0001]]


def test_boolean_size_is_rejected(write):
    with pytest.raises(ExperimentError) as info:
        load_experiments(write(good_with("hidden: 24", "hidden: true")))
    assert any("model_config.hidden" in p for p in info.value.problems)


def test_unknown_env_config_key_is_rejected_before_ray(write):
    text = good_with("    lr: 0.0003\n", "    lr: 0.0003\n    env_config: {max_steps: 50}\n")
    with pytest.raises(ExperimentError) as info:
        load_experiments(write(text))
    assert any("env_config" in p and "max_steps" in p for p in info.value.problems)


def test_env_config_max_episode_steps_passes_validation(write):
    text = good_with("    lr: 0.0003\n", "    lr: 0.0003\n    env_config: {max_episode_steps: 50}\n")
    (exp,) = load_experiments(write(text))
    assert exp.algo_config.env_config == {"max_episode_steps": 50}


# ----------------------------------------------------------------------------- env, --resume, YAML numbers


def test_env_in_config_override_replaces_the_experiments_env(write, capsys):
    (exp,) = load_experiments(write(GOOD), config={"env": "CartPole-V"})
    assert exp.env == "CartPole-V"
    assert exp.algo_config.env == "CartPole-V"
    rc, out, err = run_cli(
        ["train", "file", write(GOOD), "--config", '{"env": "Pendulum-P"}', "--check"], capsys
    )
    assert rc == 0, err
    assert "exp: PPO on Pendulum-P" in out


def test_env_in_config_override_is_validated(write, capsys):
    rc, _, err = run_cli(["train", "file", write(GOOD), "--config", '{"env": "CartPole-X"}'], capsys)
    assert rc == 2
    assert "exp.env" in err and "CartPole-X" in err


def test_top_level_env_and_a_different_config_env_is_an_error(write):
    text = good_with("    lr: 0.0003\n", "    lr: 0.0003\n    env: CartPole-V\n")
    with pytest.raises(ExperimentError) as info:
        load_experiments(write(text))
    (problem,) = info.value.problems
    assert "exp.env" in problem and "exp.config.env" in problem
    assert "CartPole-P" in problem and "CartPole-V" in problem


def test_top_level_env_and_the_same_config_env_is_fine(write):
    text = good_with("    lr: 0.0003\n", "    lr: 0.0003\n    env: CartPole-P\n")
    (exp,) = load_experiments(write(text))
    assert exp.env == exp.algo_config.env == "CartPole-P"


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (["--stop", '{"training_iteration": 2}'], ["--stop"]),
        (["--config", '{"lr": 0.001}', "--checkpoint-freq", "1"], ["--config", "--checkpoint-freq"]),
    ],
    ids=["stop", "config_and_checkpoint_freq"],
)
def test_resume_warns_that_stop_config_and_checkpoint_freq_are_ignored(extra, named, write, capsys):
    with pytest.raises(RayStarted):  # the warning comes before Ray starts
        main(["train", "file", str(write(GOOD)), "--num-cpus", "3", "--resume", *extra])
    err = capsys.readouterr().err
    assert "warning" in err and "ignored" in err and "resume" in err
    for option in named:
        assert option in err
    assert "--stop" in named or "--stop" not in err


def test_resume_alone_does_not_warn(write, capsys):
    with pytest.raises(RayStarted):
        main(["train", "file", str(write(GOOD)), "--num-cpus", "3", "--resume"])
    assert "warning" not in capsys.readouterr().err


def test_options_without_resume_do_not_warn(write, capsys):
    with pytest.raises(RayStarted):
        main(["train", "file", str(write(GOOD)), "--num-cpus", "3", "--stop", '{"training_iteration": 2}'])
    assert "warning" not in capsys.readouterr().err


YAML_NUMBER_HINTS = {
    "lr": (
        good_with("lr: 0.0003", "lr: 1e-3"),
        "exp.config.lr",
        "(YAML reads 1e-3 as a string; write 1.0e-3)",
    ),
    "batch": (
        good_with("train_batch_size: 400", "train_batch_size: 4e3"),
        "exp.config.train_batch_size",
        "(YAML reads 4e3 as a string; write 4000)",
    ),
    "stop": (
        good_with("training_iteration: 1", "timesteps_total: 1e6"),
        "exp.stop.timesteps_total",
        "(YAML reads 1e6 as a string; write 1.0e+6)",
    ),
    "model_config": (
        good_with("decay: 0.7", "decay: 7e-1"),
        "exp.config.model_config.decay",
        "(YAML reads 7e-1 as a string; write 7.0e-1)",
    ),
    "quoted": (good_with("lr: 0.0003", 'lr: "0.001"'), "exp.config.lr", "write 0.001 without quotes"),
}


@pytest.mark.parametrize(
    ("text", "key", "hint"), list(YAML_NUMBER_HINTS.values()), ids=list(YAML_NUMBER_HINTS)
)
def test_number_read_as_a_string_gets_a_yaml_hint(text, key, hint, write):
    with pytest.raises(ExperimentError) as info:
        load_experiments(write(text))
    (problem,) = info.value.problems
    assert problem.startswith(key + ":") and hint in problem, problem


def test_the_yaml_hint_spelling_is_read_as_a_number():
    import yaml

    for spelling in ("1.0e-3", "1.0e+6", "7.0e-1"):
        assert isinstance(yaml.safe_load(f"x: {spelling}")["x"], float)


def test_a_word_gets_no_yaml_hint(write):
    with pytest.raises(ExperimentError) as info:
        load_experiments(write(good_with("lr: 0.0003", 'lr: "fast"')))
    assert "YAML reads" not in info.value.problems[0]


# ----------------------------------------------------------------------------- tuned_examples


def test_tuned_examples_folder_is_not_empty():
    assert (TUNED_EXAMPLES / "cartpole_p_grsn.yaml") in TUNED_FILES


# Maps that exist only on StarCraft II fail the check without it (test_tuned_examples.py).
CHECKABLE_HERE = [p for p in TUNED_FILES if "MMM2" not in p.name]


@pytest.mark.parametrize("path", CHECKABLE_HERE, ids=[p.name for p in CHECKABLE_HERE])
def test_every_tuned_example_passes_check(path, capsys):
    rc, out, err = run_cli(["train", "file", path, "--check"], capsys)
    assert rc == 0, err
    lines = [line for line in out.splitlines() if line.strip()]
    assert lines and all(line.endswith(": OK") for line in lines), out


# ----------------------------------------------------------------------------- evaluate


def test_evaluate_a_directory_that_is_not_a_checkpoint(tmp_path, capsys):
    (tmp_path / "some_file.txt").write_text("hello")
    rc, out, err = run_cli(["evaluate", tmp_path], capsys)
    assert rc == 2
    assert str(tmp_path) in err
    assert "not an RLlib algorithm checkpoint" in err
    assert "checkpoint_000" in err  # tells the user which directory to pass
    assert "Traceback" not in out + err


def test_evaluate_a_missing_path(tmp_path, capsys):
    rc, _, err = run_cli(["evaluate", tmp_path / "missing"], capsys)
    assert rc == 2 and "missing" in err and "checkpoint" in err


def test_evaluate_rejects_zero_episodes(tmp_path, capsys):
    rc, _, err = run_cli(["evaluate", tmp_path, "--episodes", "0"], capsys)
    assert rc == 2 and "--episodes" in err


# ----------------------------------------------------------------------------- argparse, help


@pytest.mark.parametrize(
    "argv",
    [[], ["train"], ["train", "file"], ["evaluate"], ["fly"], ["evaluate", "x", "--episodes", "many"]],
    ids=["nothing", "train", "train_file", "evaluate", "unknown_command", "episodes_not_int"],
)
def test_usage_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert "usage: rllib" in capsys.readouterr().err


def _console_script() -> Path:
    script = Path(sys.executable).parent / "rllib"
    assert script.is_file(), f"console script missing at {script} (pyproject [project.scripts])"
    return script


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--help"], ["train", "evaluate", "rllib train file tuned_examples/"]),
        (
            ["train", "file", "--help"],
            "--stop --config --storage-path --checkpoint-freq --resume --num-cpus --address --check".split(),
        ),
        (["evaluate", "--help"], ["checkpoint", "--episodes", "--explore", "--seed"]),
    ],
    ids=["rllib", "train_file", "evaluate"],
)
def test_help_exits_0_and_explains_options(argv, expected):
    proc = subprocess.run(
        [str(_console_script()), *argv], capture_output=True, text=True, timeout=60, cwd=REPO
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: rllib")
    for fragment in expected:
        assert fragment in proc.stdout


# ----------------------------------------------------------------------------- real subprocess runs

SUBPROCESS_CASES = {
    "malformed_yaml": (BAD_FILES["malformed_yaml"][0], [], ["not valid YAML"]),
    "unknown_core": (BAD_FILES["unknown_core"][0], [], ["model_config.core", "lstm"]),
    "config_key_typo": (BAD_FILES["config_key_typo"][0], [], ["config.num_enw_runners", "num_env_runners"]),
    "bad_stop_json": (GOOD, ["--stop", "{oops"], ["--stop"]),
}


@pytest.mark.parametrize(
    ("text", "extra", "expected"), list(SUBPROCESS_CASES.values()), ids=list(SUBPROCESS_CASES)
)
def test_subprocess_fails_fast_without_traceback_or_ray(text, extra, expected, write, tmp_path):
    path = write(text)
    proc = run_subprocess(["train", "file", path, "--storage-path", tmp_path / "results", *extra])
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output
    for fragment in expected:
        assert fragment in proc.stderr
    assert "Traceback" not in output
    assert RAY_STARTED not in output
    assert not (tmp_path / "results").exists()


def test_subprocess_evaluate_not_a_checkpoint(tmp_path):
    proc = run_subprocess(["evaluate", tmp_path])
    assert proc.returncode == 2
    assert "not an RLlib algorithm checkpoint" in proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert RAY_STARTED not in proc.stdout + proc.stderr


def test_subprocess_check_on_the_tuned_example_does_not_start_ray():
    proc = run_subprocess(["train", "file", TUNED_EXAMPLES / "cartpole_p_grsn.yaml", "--check"])
    assert proc.returncode == 0, proc.stderr
    assert "cartpole-p-grsn-ppo: PPO on CartPole-P" in proc.stdout
    assert RAY_STARTED not in proc.stdout + proc.stderr


def test_json_options_round_trip():
    """The stop/config flags take JSON objects: what `json.dumps` writes must be accepted."""
    from rllib_grsn.experiment import parse_json_option

    value = {"model_config": {"core": "lif", "head_hiddens": [64, 64]}, "lr": 1e-3}
    assert parse_json_option(json.dumps(value), "--config") == value
    assert parse_json_option(None, "--config") == {}


@pytest.mark.parametrize(
    ("setting", "ok"),
    [
        ("rollout_fragment_length: 50", True),
        ("rollout_fragment_length: auto", True),
        # RLlib takes "auto" only for evaluation parallel to training (its validate() says so).
        (
            "evaluation_duration: auto\n    evaluation_parallel_to_training: true\n"
            "    evaluation_num_env_runners: 1",
            True,
        ),
        ("evaluation_duration: 5", True),
        ("rollout_fragment_length: 0", False),
        ("evaluation_duration: -3", False),
        ("rollout_fragment_length: fifty", False),
    ],
)
def test_settings_that_take_an_integer_or_auto(setting, ok, write):
    """RLlib's default is "auto" for one and 10 for the other; both forms are valid for both (where
    RLlib's own rules allow "auto")."""
    text = good_with("    lr: 0.0003\n", f"    lr: 0.0003\n    {setting}\n")
    if ok:
        load_experiments(write(text))
        return
    with pytest.raises(ExperimentError) as err:
        load_experiments(write(text))
    key = setting.split(":")[0]
    assert err.value.problems[0].startswith(f'exp.config.{key}: must be an integer > 0 or "auto"')
