"""Faults once a command runs: Ctrl+C ends `rllib train file` and `rllib evaluate` within 10 s with
exit code 130, and a cluster too small for one trial is refused right after connecting (exit 2)
instead of waiting forever for resources."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from ray.cluster_utils import Cluster

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
CARTPOLE = REPO / "tuned_examples" / "cartpole_p_grsn.yaml"
TINY = '{"num_env_runners": 0, "train_batch_size": 200, "minibatch_size": 100, "num_epochs": 1}'
CTRL_C_BOUND_S = 10


def start(args: list[object], ray_tmp: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    env["RAY_TMPDIR"] = str(ray_tmp)
    return subprocess.Popen(
        [sys.executable, "-u", "-m", "rllib_grsn.cli", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
        env=env,
        start_new_session=True,  # its own process group: the test's teardown can end everything in it
    )


def wait_for_line(proc: subprocess.Popen, fragment: str, timeout: float) -> list[str]:
    """The output lines up to and including the first that holds ``fragment``."""
    lines, deadline = [], time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        lines.append(line)
        if fragment in line:
            return lines
    raise AssertionError(f"{fragment!r} not seen within {timeout} s:\n{''.join(lines)}")


def ctrl_c(proc: subprocess.Popen) -> tuple[int, float, str]:
    """Sends SIGINT to the command (as a terminal's Ctrl+C does) and times its exit."""
    sent = time.monotonic()
    os.kill(proc.pid, signal.SIGINT)
    try:
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return proc.returncode, time.monotonic() - sent, out


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen]]:
    started: list[subprocess.Popen] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


@pytest.mark.timeout(400)
def test_ctrl_c_ends_training_and_evaluation_within_10_s(tmp_path, ray_tmp, processes):
    storage = tmp_path / "results"
    common = ["--storage-path", storage, "--no-mlflow", "--num-cpus", "1", "--config", TINY]
    train = start(["train", "file", CARTPOLE, *common, "--stop", '{"training_iteration": 1}'], ray_tmp)
    processes.append(train)
    assert train.wait(timeout=300) == 0, train.stdout.read() if train.stdout else ""
    (checkpoint,) = storage.glob("*/*/checkpoint_*")

    # A run without an end, interrupted while it trains.
    endless = start(["train", "file", CARTPOLE, *common, "--stop", "{}"], ray_tmp)
    processes.append(endless)
    wait_for_line(endless, "iter 1 |", timeout=240)
    rc, seconds, out = ctrl_c(endless)
    assert rc == 130, out
    assert seconds < CTRL_C_BOUND_S, (seconds, out)
    assert "--resume" in out and "Traceback" not in out

    evaluation = start(["evaluate", checkpoint, "--episodes", "100000"], ray_tmp)
    processes.append(evaluation)
    time.sleep(15)  # well into the episodes
    assert evaluation.poll() is None, "the evaluation ended before it was interrupted"
    rc, seconds, out = ctrl_c(evaluation)
    assert rc == 130, out
    assert seconds < CTRL_C_BOUND_S, (seconds, out)
    assert "rllib: interrupted" in out and "Traceback" not in out


@pytest.mark.timeout(300)
def test_a_cluster_too_small_for_a_trial_is_refused_after_connecting(tmp_path, ray_tmp):
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    address = cluster.address
    args = ["train", "file", CARTPOLE, "--address", address, "--no-mlflow", "--storage-path", tmp_path]
    try:
        out, _ = (proc := start(args, ray_tmp)).communicate(timeout=120)
    finally:
        cluster.shutdown()
    assert proc.returncode == 2, out
    assert f"the cluster at {address} has 1" in out and "needs 2 CPUs" in out
    assert "Traceback" not in out and "iter 1" not in out


@pytest.mark.timeout(120)
def test_an_address_that_is_not_a_ray_cluster_is_refused_in_seconds(tmp_path, ray_tmp):
    """ray.init would retry for minutes against a service that is not Ray's GCS."""
    import http.server
    import threading

    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    address = f"127.0.0.1:{server.server_address[1]}"
    args = ["train", "file", CARTPOLE, "--address", address, "--no-mlflow", "--storage-path", tmp_path]
    started = time.monotonic()
    try:
        out, _ = (proc := start(args, ray_tmp)).communicate(timeout=60)
    finally:
        server.shutdown()
    assert proc.returncode == 2, out
    assert f"{address} answers but is not a Ray cluster" in out and "Traceback" not in out
    assert time.monotonic() - started < 30
