"""Fixtures shared by the tests: a Ray session for the tests that build algorithms in-process, and the
`rllib` command run as a user does (in a subprocess)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import ray

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ray_session() -> Iterator[None]:
    """Ray on 2 CPUs for one test module (its trials and actors), shut down after the module's last test.

    ``address="local"``: without it ray.init joins the cluster named in /tmp/ray/ray_current_cluster,
    e.g. the one tests/test_multi_node.py runs at the same time on the other pytest-xdist worker.
    """
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture
def ray_tmp() -> Iterator[Path]:
    """A Ray temp dir of the test's own; short, because Ray's unix sockets live under it (108 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="rg", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def rllib(ray_tmp: Path) -> Callable[..., subprocess.CompletedProcess]:
    """Runs ``rllib ARGS...`` from the repository root, without a cluster address from the caller's shell."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "COLUMNS", "LINES")}
    env["RAY_TMPDIR"] = str(ray_tmp)

    def run(*args: object, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "rllib_grsn.cli", *map(str, args)],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=REPO,
            env=env,
        )

    return run
