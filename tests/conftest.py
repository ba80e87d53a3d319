"""Test ordering for parallel runs, and fixtures for the tests that run the `rllib` command as a user does."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Runs the files with the most ``slow`` tests first, each file's tests together and in order.

    ``make test`` hands whole files to two workers in collection order (``--dist loadfile
    --no-loadscope-reorder``). The end-to-end files hold a few long tests each; queued last (as
    alphabetical order or xdist's tests-per-file order put them), one worker ran them alone for
    minutes while the other sat idle. Longest jobs first is the usual remedy, and the slow marker is
    the cost estimate we have; files with more tests go first among equals.
    """
    by_file: dict[str, list[pytest.Item]] = {}
    for item in items:
        by_file.setdefault(item.nodeid.split("::", 1)[0], []).append(item)

    def cost(path: str) -> tuple[int, int]:
        tests = by_file[path]
        return sum(t.get_closest_marker("slow") is not None for t in tests), len(tests)

    # sorted() is stable, so files of equal cost keep pytest's order and the run is reproducible.
    items[:] = [t for path in sorted(by_file, key=cost, reverse=True) for t in by_file[path]]


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
