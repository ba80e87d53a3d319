"""A new user's mistakes end in seconds with exit code 2 and one line per problem, before Ray starts:
misspelled stop keys and values, RLlib's own cross-field rules, ranges RLlib does not check, resources
the machine does not have, a storage path or tracking server that cannot be used, and YAML files that
are not what they seem (encodings, duplicate keys, alias bombs, huge files).

Most cases run ``rllib_grsn.cli.main`` in-process with ``ray.init`` replaced by a function that fails
the test; the headline cases of each class also run the real command in a subprocess, bounded in time.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import ray
import torch

from rllib_grsn.cli import main

REPO = Path(__file__).resolve().parents[1]
CARTPOLE = REPO / "tuned_examples" / "cartpole_p_grsn.yaml"
RAY_STARTED = "Started a local Ray instance"
# The acceptance bound: a bad input exits within this many seconds, Python's start included.
FAIL_FAST_S = 30
HAS_GPU = torch.cuda.device_count() > 0

GOOD = """\
exp:
  env: CartPole-P
  run: PPO
  stop: {training_iteration: 1}
  config:
    num_env_runners: 0
    train_batch_size: 400
    minibatch_size: 100
    model_config: {core: grsn, hidden: 16}
"""


def good_with(old: str, new: str) -> str:
    assert old in GOOD
    return GOOD.replace(old, new)


@pytest.fixture(autouse=True)
def no_ray(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("ray.init was called: the input passed every check")

    monkeypatch.setattr(ray, "init", refuse)


@pytest.fixture
def write(tmp_path):
    def _write(text: str | bytes, name: str = "exp.yaml") -> Path:
        path = tmp_path / name
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)
        return path

    return _write


def run_cli(argv: list[object], capsys) -> tuple[int, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return rc, err


def assert_refused(rc: int, err: str, *fragments: str) -> None:
    assert rc == 2, err
    assert err.startswith("rllib: error: "), err
    for fragment in fragments:
        assert fragment in err, f"{fragment!r} missing from:\n{err}"


def run_subprocess(
    args: list[object], env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess, float]:
    environ = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "rllib_grsn.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env=environ | (env or {}),
    )
    return proc, time.monotonic() - start


# ----------------------------------------------------------------------------- stop criteria


@pytest.mark.parametrize(
    ("stop", "fragments"),
    [
        (
            "{trainig_iteration: 1}",
            ["exp.stop.trainig_iteration", "never stop", "did you mean: training_iteration"],
        ),
        (
            "{env_runners/episode_retrun_mean: 150}",
            ["episode_retrun_mean", "env_runners/episode_return_mean"],
        ),
        ("{evaluation/win_rate: 0.9}", ["exp.stop.evaluation/win_rate", "never stop"]),
        ("{training_iteration: -1}", ["exp.stop.training_iteration", "budget must be > 0"]),
        ("{num_env_steps_sampled_lifetime: 0}", ["num_env_steps_sampled_lifetime", "budget must be > 0"]),
        ("{timesteps_total: -100}", ["exp.stop.timesteps_total", "budget must be > 0"]),
    ],
)
def test_stop_keys_a_run_never_reports_and_non_positive_budgets_are_refused(stop, fragments, write, capsys):
    rc, err = run_cli(["train", "file", write(good_with("{training_iteration: 1}", stop)), "--check"], capsys)
    assert_refused(rc, err, *fragments)


@pytest.mark.parametrize(
    "stop",
    [
        '{"eval_win_rate": 0.9}',
        '{"episode_reward_mean": 150}',
        '{"env_runners/episode_return_mean": -150}',
        '{"evaluation/env_runners/energy/pj_per_decision": 1e9}',
        '{"learners/default_policy/total_loss": 100}',
        '{"time_total_s": 3600, "num_env_steps_sampled_lifetime": 100000}',
    ],
)
def test_stop_keys_runs_report_are_accepted(stop, write, capsys):
    rc, err = run_cli(["train", "file", write(GOOD), "--check", "--stop", stop], capsys)
    assert rc == 0, err


def test_an_empty_stop_option_is_refused_not_ignored(write, capsys):
    rc, err = run_cli(["train", "file", write(GOOD), "--check", "--stop", ""], capsys)
    assert_refused(rc, err, "--stop", "empty")
    rc, err = run_cli(["train", "file", write(GOOD), "--check", "--stop", "{}"], capsys)
    assert rc == 0, err  # '{}' is how to say "no stop criteria"


# ----------------------------------------------------------------------------- RLlib's settings


@pytest.mark.parametrize(
    ("old", "new", "fragments"),
    [
        # RLlib's own validate(), run in the CLI process and put under the key it names.
        ("minibatch_size: 100", "minibatch_size: 1000", ["exp.config.minibatch_size", "must be <="]),
        # Ranges and allowed values RLlib does not check.
        ("num_env_runners: 0", "num_env_runners: 0\n    gamma: 1.5", ["exp.config.gamma", "<= 1"]),
        ("num_env_runners: 0", "num_env_runners: 0\n    lambda: -0.1", ["exp.config.lambda", ">= 0"]),
        (
            "num_env_runners: 0",
            "num_env_runners: 0\n    batch_mode: complete_episode",
            ["exp.config.batch_mode", "truncate_episodes, complete_episodes", "'complete_episode'"],
        ),
        (
            "num_env_runners: 0",
            "num_env_runners: 0\n    evaluation_interval: 1\n    evaluation_duration_unit: episode",
            ["exp.config.evaluation_duration_unit", "episodes, timesteps"],
        ),
        (
            "num_env_runners: 0",
            "num_env_runners: 0\n    framework: pytorch",
            ["exp.config.framework", "torch"],
        ),
        (
            "num_env_runners: 0",
            "num_env_runners: 0\n    lr: [[100, 0.001], [1000, 0.0001]]",
            ["exp.config.lr", "timestep 0"],
        ),
        # Keys inside evaluation_config are settings of the same algorithm.
        (
            "num_env_runners: 0",
            "num_env_runners: 0\n    evaluation_config: {explor: false}",
            ["exp.config.evaluation_config.explor", "did you mean: explore"],
        ),
        (
            "num_env_runners: 0",
            "num_env_runners: 0\n    evaluation_config: {num_envs_per_env_runner: two}",
            ["exp.config.evaluation_config.num_envs_per_env_runner", "integer"],
        ),
    ],
    ids=[
        "minibatch_above_batch",
        "gamma_above_1",
        "negative_lambda",
        "batch_mode_typo",
        "duration_unit_typo",
        "framework_typo",
        "schedule_not_from_0",
        "evaluation_config_key_typo",
        "evaluation_config_value_type",
    ],
)
def test_settings_rllib_would_refuse_or_misread_are_refused(old, new, fragments, write, capsys):
    rc, err = run_cli(["train", "file", write(good_with(old, new)), "--check"], capsys)
    assert_refused(rc, err, *fragments)


def test_qmix_and_ppo_refuse_the_same_discount(write, capsys):
    """One range check for every algorithm: PPO refuses gamma 1.5 as QMIX does."""
    qmix = "exp:\n  env: two_step_game\n  run: QMIX\n  config: {gamma: 1.5}\n"
    for text in (qmix, good_with("num_env_runners: 0", "num_env_runners: 0\n    gamma: 1.5")):
        rc, err = run_cli(["train", "file", write(text), "--check"], capsys)
        assert_refused(rc, err, "exp.config.gamma", "must be <= 1")


def test_a_sweep_is_checked_at_every_corner_of_its_search_space(write, capsys):
    """Each value alone is fine; one combination breaks RLlib's rule minibatch_size <= batch."""
    text = good_with(
        "train_batch_size: 400\n    minibatch_size: 100",
        "train_batch_size: {grid_search: [400, 200]}\n    minibatch_size: {grid_search: [100, 300]}",
    )
    rc, err = run_cli(["train", "file", write(text), "--check"], capsys)
    assert_refused(
        rc, err, "exp.config.minibatch_size: ", "(with train_batch_size = 200, minibatch_size = 300)"
    )
    assert err.count("\n  ") == 1, err  # one combination fails: one line


def test_a_search_space_over_the_whole_config_is_refused(write, capsys):
    text = "exp:\n  env: CartPole-P\n  run: PPO\n  config: {grid_search: [{lr: 0.001}, {lr: 0.01}]}\n"
    rc, err = run_cli(["train", "file", write(text), "--check"], capsys)
    assert_refused(rc, err, "exp.config", "search space over the whole config", "lr: {grid_search")


# ----------------------------------------------------------------------------- the YAML file itself


def test_utf16_and_byte_order_marks_are_read(write, capsys):
    for encoding in ("utf-16", "utf-8-sig", "utf-32"):
        rc, err = run_cli(["train", "file", write(GOOD.encode(encoding)), "--check"], capsys)
        assert rc == 0, (encoding, err)


def test_a_file_that_is_not_utf8_is_refused_naming_the_byte(write, capsys):
    rc, err = run_cli(["train", "file", write(("# café\n" + GOOD).encode("latin-1")), "--check"], capsys)
    assert_refused(rc, err, "not UTF-8 text", "0xe9", "offset 5")


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        (
            GOOD.replace("  run: PPO\n", "  run: PPO\n  run: DQN\n"),
            ["line 4", "duplicate key 'run'", "line 3"],
        ),
        (GOOD + GOOD.replace("CartPole-P", "CartPole-V"), ["duplicate key 'exp'", "line 1"]),
        (GOOD.replace("hidden: 16}", "hidden: 16, hidden: 32}"), ["duplicate key 'hidden'"]),
    ],
    ids=["key_in_an_experiment", "experiment_name", "key_in_a_flow_mapping"],
)
def test_duplicate_keys_are_errors_not_silently_the_last(text, fragments, write, capsys):
    rc, err = run_cli(["train", "file", write(text), "--check"], capsys)
    assert_refused(rc, err, *fragments)


def test_an_alias_bomb_is_refused_in_one_short_line(write, capsys):
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 10)]
    lines.append("exp: {env: CartPole-P, run: PPO, config: {lr: *a9}}")
    start = time.monotonic()
    rc, err = run_cli(["train", "file", write("\n".join(lines) + "\n"), "--check"], capsys)
    assert_refused(rc, err, "expands to more than")
    assert len(err) < 500 and time.monotonic() - start < 5


def test_a_huge_file_is_refused_before_it_is_parsed(write, capsys):
    rc, err = run_cli(["train", "file", write(GOOD + "#" * (2 << 20) + "\n"), "--check"], capsys)
    assert_refused(rc, err, "bytes, more than the")


def test_values_shown_in_messages_are_cut(write, capsys):
    text = good_with("num_env_runners: 0", "num_env_runners: 0\n    seed: [" + ", ".join(["1"] * 5000) + "]")
    rc, err = run_cli(["train", "file", write(text), "--check"], capsys)
    assert_refused(rc, err, "exp.config.seed", "chars)")
    assert len(err) < 1000


def test_a_large_sweep_file_is_checked_in_seconds(write, capsys):
    values = ", ".join(str(round(0.05 + 0.009 * i, 3)) for i in range(100))
    text = good_with("hidden: 16}", f"hidden: 16, decay: {{grid_search: [{values}]}}}}")
    text = text.replace("minibatch_size: 100", "minibatch_size: {grid_search: [50, 100, 200, 400]}")
    start = time.monotonic()
    rc, err = run_cli(["train", "file", write(text), "--check"], capsys)
    assert rc == 0, err
    assert time.monotonic() - start < FAIL_FAST_S


def test_a_generated_file_with_thousands_of_bad_keys_is_checked_in_seconds(write, capsys):
    keys = "\n".join(f"    unknown_key_{i}: {i}" for i in range(20_000))
    start = time.monotonic()
    rc, err = run_cli(["train", "file", write(good_with("    num_env_runners: 0", keys)), "--check"], capsys)
    assert time.monotonic() - start < FAIL_FAST_S
    assert_refused(rc, err, "exp.config.unknown_key_0: unknown key", "... and 19950 more problems")
    assert err.count("\n") < 60


# ----------------------------------------------------------------------------- pre-flight


def test_a_trial_larger_than_num_cpus_is_refused(capsys):
    rc, err = run_cli(["train", "file", CARTPOLE, "--num-cpus", "1"], capsys)
    assert_refused(
        rc, err, "cartpole-p-grsn-ppo: a trial needs 2 CPUs", "num_env_runners 1", "--num-cpus gives 1"
    )


def test_a_trial_larger_than_the_machine_is_refused(capsys):
    rc, err = run_cli(["train", "file", CARTPOLE, "--config", '{"num_env_runners": 1000}'], capsys)
    assert_refused(rc, err, "needs 1001 CPUs", "num_env_runners 1000", "this machine has")


@pytest.mark.skipif(HAS_GPU, reason="this machine has a GPU")
def test_a_gpu_learner_on_a_machine_without_one_is_refused(capsys):
    rc, err = run_cli(["train", "file", CARTPOLE, "--config", '{"num_gpus_per_learner": 1}'], capsys)
    assert_refused(rc, err, "needs 1 GPUs", "num_gpus_per_learner 1", "num_gpus_per_learner: 0")


def test_check_alone_does_not_judge_this_machine(write, capsys):
    """A file meant for a cluster can be checked on a laptop; with --num-cpus the check applies."""
    rc, err = run_cli(["train", "file", CARTPOLE, "--config", '{"num_env_runners": 1000}', "--check"], capsys)
    assert rc == 0, err
    rc, err = run_cli(["train", "file", CARTPOLE, "--num-cpus", "1", "--check"], capsys)
    assert_refused(rc, err, "needs 2 CPUs")


def test_a_storage_path_that_is_a_file_or_unwritable_is_refused(tmp_path, capsys):
    a_file = tmp_path / "results"
    a_file.write_text("not a directory")
    rc, err = run_cli(["train", "file", CARTPOLE, "--storage-path", a_file / "sub", "--no-mlflow"], capsys)
    assert_refused(rc, err, "--storage-path", "is not a directory")
    rc, err = run_cli(
        ["train", "file", CARTPOLE, "--storage-path", "/proc/rllib_grsn", "--no-mlflow"], capsys
    )
    assert_refused(rc, err, "--storage-path /proc/rllib_grsn", "cannot be written")
    rc, err = run_cli(["train", "file", CARTPOLE, "--storage-path", "ftp://host/x", "--no-mlflow"], capsys)
    assert_refused(rc, err, "unknown scheme ftp://")


def test_an_unreachable_cluster_address_is_refused(capsys):
    rc, err = run_cli(["train", "file", CARTPOLE, "--address", "127.0.0.1:9"], capsys)
    assert_refused(rc, err, "--address 127.0.0.1:9", "no Ray cluster answers")


def test_all_preflight_problems_are_reported_together(tmp_path, capsys):
    argv = [
        "train",
        "file",
        CARTPOLE,
        "--num-cpus",
        "1",
        "--storage-path",
        "/proc/x",
        "--mlflow-uri",
        "http://127.0.0.1:9",
    ]
    rc, err = run_cli(argv, capsys)
    assert_refused(rc, err, "--storage-path /proc/x", "--mlflow-uri http://127.0.0.1:9", "needs 2 CPUs")


# ----------------------------------------------------------------------------- the real command


@pytest.mark.parametrize(
    ("args", "env", "fragments"),
    [
        (["--num-cpus", "1"], {}, ["needs 2 CPUs"]),
        (["--config", '{"num_gpus_per_learner": 1}', "--num-cpus", "2"], {}, ["GPUs"]),
        (["--mlflow-uri", "http://127.0.0.1:9"], {}, ["--mlflow-uri http://127.0.0.1:9", "--no-mlflow"]),
        (
            [],
            {"MLFLOW_TRACKING_URI": "http://127.0.0.1:9"},
            ["$MLFLOW_TRACKING_URI http://127.0.0.1:9", "connection refused"],
        ),
        (["--stop", '{"trainig_iteration": 1}'], {}, ["trainig_iteration", "training_iteration"]),
        (
            ["--config", '{"minibatch_size": 100000}'],
            {},
            ["cartpole-p-grsn-ppo.config.minibatch_size", "must be <="],
        ),
    ],
    ids=["one_cpu", "gpu_learner", "dead_tracking_server", "stale_tracking_env", "stop_typo", "rllib_rule"],
)
def test_the_command_fails_fast_without_ray_or_a_traceback(args, env, fragments, tmp_path):
    if "GPUs" in fragments and HAS_GPU:
        pytest.skip("this machine has a GPU")
    proc, seconds = run_subprocess(
        ["train", "file", CARTPOLE, "--storage-path", tmp_path / "results", *args], env=env
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output
    for fragment in fragments:
        assert fragment in proc.stderr, proc.stderr
    assert "Traceback" not in output and RAY_STARTED not in output
    assert seconds < FAIL_FAST_S, seconds
    assert not (tmp_path / "results").exists()
