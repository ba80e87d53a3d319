"""`rllib train file` -> checkpoint -> `rllib evaluate` -> `rllib train file --resume`, as a user runs them.

One short PPO run of the GRSN tuned example (one iteration, 400 env steps) is shared by the tests of
this module. Each command runs in a subprocess with its own Ray temp dir, so the tests can check that
no Ray process of theirs outlives the command.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from ray_output import driver_output

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
TUNED = REPO / "tuned_examples" / "cartpole_p_grsn.yaml"
EXPERIMENT = "cartpole-p-grsn-ppo"
SMALL = {"train_batch_size": 400, "minibatch_size": 100, "num_epochs": 1}
TIMEOUT_S = 300


@dataclass
class Run:
    returncode: int
    output: str
    stdout: str


def _ray_processes(ray_tmp: Path) -> list[str]:
    """Command lines of live processes started for the Ray session under ``ray_tmp``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(ray_tmp) in cmdline:
            found.append(f"{proc.name}: {cmdline[:200]}")
    return found


def _assert_no_ray_left(ray_tmp: Path, grace_s: float = 15.0) -> None:
    deadline = time.monotonic() + grace_s
    left = _ray_processes(ray_tmp)
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = _ray_processes(ray_tmp)
    assert not left, "Ray processes outlived the command:\n" + "\n".join(left)


@pytest.fixture(scope="module")
def ray_tmp():
    # Short path: Ray's unix sockets live under it (108-byte limit).
    path = Path(tempfile.mkdtemp(prefix="rg", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def rllib(ray_tmp):
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "COLUMNS", "LINES")}
    env["RAY_TMPDIR"] = str(ray_tmp)

    def _run(*args: object) -> Run:
        proc = subprocess.run(
            [sys.executable, "-m", "rllib_grsn.cli", *map(str, args)],
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            cwd=REPO,
            env=env,
        )
        return Run(proc.returncode, proc.stdout + proc.stderr, proc.stdout)

    return _run


@pytest.fixture(scope="module")
def storage(tmp_path_factory):
    return tmp_path_factory.mktemp("results")


def _train_args(storage: Path, *extra: str) -> list[str]:
    return [
        "train",
        "file",
        TUNED,
        "--stop",
        json.dumps({"training_iteration": 1}),
        "--storage-path",
        storage,
        "--num-cpus",
        "2",
        "--config",
        json.dumps(SMALL),
        *extra,
    ]


@pytest.fixture(scope="module")
def trained(rllib, storage, ray_tmp):
    run = rllib(*_train_args(storage))
    assert run.returncode == 0, run.output[-5000:]
    _assert_no_ray_left(ray_tmp)
    return run


def _final_checkpoint(output: str) -> Path:
    match = re.search(rf"^{re.escape(EXPERIMENT)}: final checkpoint (\S+)$", output, re.MULTILINE)
    assert match, output[-5000:]
    return Path(match.group(1))


def test_train_one_iteration_prints_progress_and_writes_a_checkpoint(trained, storage):
    out = trained.output
    assert re.search(r"\] iter 1 \| env steps 400 \|", out), out[-5000:]
    assert f"{EXPERIMENT}: done after 1 iterations, 400 env steps" in out
    checkpoint = _final_checkpoint(out)
    assert checkpoint.is_dir()
    assert checkpoint.resolve().is_relative_to(storage.resolve() / EXPERIMENT)
    assert (checkpoint / "rllib_checkpoint.json").is_file()
    assert (checkpoint / "learner_group").is_dir()
    assert f"rllib evaluate {checkpoint}" in out
    assert "Traceback" not in driver_output(out)


def test_checkpoint_records_the_spiking_module_and_overrides(trained):
    from rllib_grsn.evaluation import load_checkpoint_config

    config = load_checkpoint_config(_final_checkpoint(trained.output))
    assert config.env == "CartPole-P"
    assert config.train_batch_size == 400  # from --config, over the file's 4000
    assert config.model_config["core"] == "grsn"


def test_checkpoint_saved_line_keeps_the_path_on_one_line(trained):
    checkpoint = _final_checkpoint(trained.output)
    assert f"checkpoint saved: {checkpoint}" in trained.output


def test_evaluation_runner_acts_with_the_trained_weights(trained):
    """`rllib evaluate` must act with the learner's trained weights, not a fresh initialisation."""
    import torch
    from ray.rllib.core.rl_module.rl_module import RLModule

    from rllib_grsn.evaluation import build_evaluation_runner

    checkpoint = _final_checkpoint(trained.output)
    trained_module = RLModule.from_checkpoint(
        checkpoint / "learner_group" / "learner" / "rl_module" / "default_policy"
    )
    runner = build_evaluation_runner(checkpoint)
    try:
        acting = runner.module.state_dict()
        trained_state = trained_module.state_dict()
        assert set(acting) <= set(trained_state)
        for name, tensor in acting.items():
            torch.testing.assert_close(tensor, trained_state[name], msg=name)
        fresh = type(runner.module)(
            observation_space=runner.module.observation_space,
            action_space=runner.module.action_space,
            model_config=runner.module.model_config,
        ).state_dict()
        assert any(not torch.equal(acting[n], fresh[n]) for n in acting)
    finally:
        runner.stop()


def test_evaluate_the_checkpoint(trained, rllib, ray_tmp):
    checkpoint = _final_checkpoint(trained.output)
    run = rllib("evaluate", checkpoint, "--episodes", "2", "--seed", "0")
    assert run.returncode == 0, run.output[-5000:]
    match = re.search(
        r"^CartPole-P: 2 episodes, return (-?[\d.]+) \+- ([\d.]+) .*mean length ([\d.]+)$",
        run.stdout,
        re.MULTILINE,
    )
    assert match, run.output[-5000:]
    mean_return, mean_length = float(match.group(1)), float(match.group(3))
    assert 1 <= mean_return <= 200
    assert mean_return == pytest.approx(mean_length)  # CartPole: +1 per step
    assert "Traceback" not in driver_output(run.output)
    _assert_no_ray_left(ray_tmp)


def test_resume_the_finished_experiment(trained, rllib, storage, ray_tmp):
    checkpoint = _final_checkpoint(trained.output)
    run = rllib(*_train_args(storage, "--resume"))
    assert run.returncode == 0, run.output[-5000:]
    assert f"resuming {EXPERIMENT}" in run.output
    assert "Traceback" not in driver_output(run.output)
    assert _final_checkpoint(run.output) == checkpoint  # nothing left to do: same final checkpoint
    _assert_no_ray_left(ray_tmp)
