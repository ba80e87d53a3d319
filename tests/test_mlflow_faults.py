"""MLflow faults never stop or stall training, and fail fast before it: the pre-flight check of a tracking
URI, several runs creating one sqlite store at once, a tracking server killed mid-run (a real MLflow
server app in a subprocess) or one that stops answering, and ``--resume`` replaying logged steps.

No Ray: the Tune callback is driven directly with fake trials. Every test has a timeout, and every
process or server it starts is stopped when it ends, failed or not.
"""

from __future__ import annotations

import http.server
import json
import os
import pickle
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from rllib_grsn.experiment import build_experiment
from rllib_grsn.tracking.mlflow_guard import (
    HTTP_BOUNDS,
    TrackingGuard,
    bounded_http_requests,
    failure_summary,
)
from rllib_grsn.tracking.mlflow_store import (
    TrackingStoreBusy,
    _within,
    experiment_id,
    open_experiment,
    sqlite_database,
    store_lock,
    tracking_uri_problem,
)
from rllib_grsn.tracking.mlflow_tracking import MLflowTracking

EXPERIMENT = "faults"


@dataclass
class FakeTrial:
    """What the callback reads of a Tune trial."""

    trial_id: str
    config: dict[str, Any] = field(default_factory=lambda: {"seed": 0, "lr": 1e-3})
    status: str = "RUNNING"
    last_result: dict[str, Any] = field(default_factory=dict)
    checkpoint: Any = None

    def __str__(self) -> str:
        return f"PPO_{self.trial_id}"


def _experiment():
    return build_experiment(EXPERIMENT, {"env": "CartPole-P", "run": "PPO", "config": {"lr": 1e-3}})


def _result(iteration: int, value: float | None = None) -> dict[str, Any]:
    return {
        "training_iteration": iteration,
        "num_env_steps_sampled_lifetime": 1000 * iteration,
        "env_runners": {"episode_return_mean": float(iteration) if value is None else value},
    }


@pytest.fixture(autouse=True)
def _mlflows_http_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bounds under test, whatever the environment running the tests sets."""
    for key in HTTP_BOUNDS:
        monkeypatch.delenv(key, raising=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------- servers


class _Handler(http.server.BaseHTTPRequestHandler):
    status = 200
    body = b'{"experiments": []}'
    content_type = "application/json"

    def do_GET(self) -> None:
        self.send_response(self.status)
        self.send_header("Content-Type", self.content_type)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[Any]:
    """Starts a local HTTP server answering every GET with (status, body, content type)."""
    servers = []

    def start(status: int, body: bytes, content_type: str = "application/json") -> str:
        handler = type("H", (_Handler,), {"status": status, "body": body, "content_type": content_type})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A port that accepts TCP connections (the kernel's backlog) but never answers a request."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        yield f"http://127.0.0.1:{s.getsockname()[1]}"


# The MLflow tracking server's own app (REST API and artifact proxy), without `mlflow server`'s
# process manager and job runners, which take much longer to start and to stop.
SERVER = textwrap.dedent("""
    import os, sys
    port, store, artifacts = sys.argv[1:4]
    os.environ["_MLFLOW_SERVER_FILE_STORE"] = store
    os.environ["_MLFLOW_SERVER_ARTIFACT_ROOT"] = "mlflow-artifacts:/"
    os.environ["_MLFLOW_SERVER_SERVE_ARTIFACTS"] = "true"
    os.environ["_MLFLOW_SERVER_ARTIFACT_DESTINATION"] = artifacts
    from werkzeug.serving import make_server
    from mlflow.server import app
    make_server("127.0.0.1", int(port), app, threaded=True).serve_forever()
""")


class MlflowServer:
    """A real MLflow tracking server on a loopback port, in a subprocess that can be killed and
    started again on the same port and database."""

    def __init__(self, database: Path, workdir: Path) -> None:
        self.database, self.workdir = database, workdir
        self.port = _free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 60.0) -> None:
        log = (self.workdir / "server.log").open("a")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(self.port), f"sqlite:///{self.database}", str(self.workdir)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        while (problem := tracking_uri_problem(self.uri, timeout_s=1.0)) is not None:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                log_text = (self.workdir / "server.log").read_text()[-2000:]
                raise RuntimeError(f"MLflow server did not start: {problem}\n{log_text}")
            time.sleep(0.1)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def migrated_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow sqlite database with its schema created once (the migrations take seconds); tests
    work on copies."""
    database = tmp_path_factory.mktemp("template") / "mlflow.db"
    open_experiment(f"sqlite:///{database}", "Default")
    return database


def _copy_db(template: Path, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(template, directory / "mlflow.db")
    return directory / "mlflow.db"


@pytest.fixture
def mlflow_server(migrated_db: Path, tmp_path: Path) -> Iterator[MlflowServer]:
    server = MlflowServer(_copy_db(migrated_db, tmp_path / "server"), tmp_path / "server")
    try:
        server.start()
        yield server
    finally:
        server.kill()


# ---------------------------------------------------------------------------------------- pre-flight


@pytest.mark.timeout(30)
def test_a_closed_port_is_refused_at_once_with_what_to_do():
    port = _free_port()
    start = time.monotonic()
    problem = tracking_uri_problem(f"http://127.0.0.1:{port}")
    assert time.monotonic() - start < 3
    assert problem is not None and "connection refused" in problem and f"127.0.0.1:{port}" in problem
    assert "--no-mlflow" in problem and "mlflow server" in problem


@pytest.mark.timeout(30)
def test_a_server_that_does_not_answer_is_given_up_after_the_timeout(silent_server):
    start = time.monotonic()
    problem = tracking_uri_problem(silent_server, timeout_s=1.0)
    assert time.monotonic() - start < 2.5
    assert problem is not None and "did not answer in 1 s" in problem and "--no-mlflow" in problem


@pytest.mark.timeout(30)
def test_a_hung_check_returns_after_the_timeout():
    start = time.monotonic()
    assert _within(0.3, lambda: time.sleep(30) or "late", "gave up") == "gave up"
    assert time.monotonic() - start < 1.5


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("status", "body", "content_type", "expected"),
    [
        (404, b"<html>Not Found</html>", "text/html", "HTTP 404 to an MLflow REST call"),
        (200, b"<html>welcome</html>", "text/html", "not an MLflow tracking server"),
        (503, b"", "text/plain", "HTTP 503"),
        (401, b'{"error_code": "UNAUTHENTICATED"}', "application/json", "MLFLOW_TRACKING_TOKEN"),
    ],
)
def test_a_server_that_is_not_a_working_mlflow_is_refused(http_server, status, body, content_type, expected):
    problem = tracking_uri_problem(http_server(status, body, content_type), timeout_s=3)
    assert problem is not None and expected in problem and "--no-mlflow" in problem


@pytest.mark.timeout(30)
def test_a_server_that_answers_mlflows_rest_api_is_accepted(http_server):
    assert tracking_uri_problem(http_server(200, b'{"experiments": []}'), timeout_s=3) is None


@pytest.mark.timeout(30)
def test_sqlite_paths(tmp_path):
    assert tracking_uri_problem(f"sqlite:///{tmp_path}/new/dirs/mlflow.db") is None  # created on use
    assert not (tmp_path / "new").exists()  # the check creates nothing
    (tmp_path / "file").write_text("x")
    problem = tracking_uri_problem(f"sqlite:///{tmp_path}/file/mlflow.db")
    assert problem == (
        f"cannot create {tmp_path}/file for the MLflow database: {tmp_path}/file is a file, not a directory"
    )
    assert "is a directory" in tracking_uri_problem(f"sqlite:///{tmp_path}")
    (tmp_path / "notes.db").write_text("not a database")
    assert "not an SQLite database" in tracking_uri_problem(f"sqlite:///{tmp_path}/notes.db")
    assert tracking_uri_problem("sqlite:///:memory:") is None
    assert sqlite_database("sqlite:///rel/m.db?timeout=20") == Path("rel/m.db").resolve()


@pytest.mark.timeout(30)
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs Linux's /proc")
def test_sqlite_in_a_directory_nobody_can_write():
    assert "/proc" in tracking_uri_problem("sqlite:////proc/mlflow.db")
    assert "not writable" in tracking_uri_problem("sqlite:////proc/runs/mlflow.db")


@pytest.mark.timeout(30)
@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only directories")
def test_sqlite_in_a_read_only_directory(tmp_path):
    readonly = tmp_path / "ro"
    readonly.mkdir(mode=0o555)
    try:
        assert "not writable" in tracking_uri_problem(f"sqlite:///{readonly}/mlflow.db")
    finally:
        readonly.chmod(0o755)


@pytest.mark.timeout(60)
def test_a_directory_is_refused_unless_mlflows_file_store_is_allowed(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    for uri in (str(tmp_path / "mlruns"), (tmp_path / "mlruns").as_uri()):
        problem = tracking_uri_problem(uri)
        assert (
            "MLFLOW_ALLOW_FILE_STORE=true" in problem and f"sqlite:///{tmp_path}/mlruns/mlflow.db" in problem
        )
    # The installed MLflow does refuse it (what the message says).
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException, match="MLFLOW_ALLOW_FILE_STORE"):
        MlflowClient(str(tmp_path / "mlruns")).search_experiments()
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    assert tracking_uri_problem(str(tmp_path / "mlruns")) is None


@pytest.mark.timeout(30)
def test_schemes_that_cannot_be_probed_are_accepted_and_unknown_ones_named():
    start = time.monotonic()
    for uri in (
        "databricks",
        "databricks://profile",
        "postgresql://u@db.invalid/mlflow",
        "mysql+pymysql://h/m",
    ):
        assert tracking_uri_problem(uri) is None, uri
    assert time.monotonic() - start < 1
    problem = tracking_uri_problem("ftp://host/mlflow")
    assert "unknown scheme 'ftp://'" in problem and "sqlite:///" in problem and "http(s)://" in problem
    assert "empty" in tracking_uri_problem("  ")


# ---------------------------------------------------------------------------------------- sqlite races

# One process of the concurrency test: for each round, says it is ready, waits for the go, then opens
# the round's fresh database (schema and experiment) and logs a run, as a starting `rllib train` does.
RACER = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from mlflow.entities import Metric
    from rllib_grsn.tracking.mlflow_store import open_experiment
    root, rounds, me = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    for r in range(rounds):
        (root / f"ready-{r}-{me}").touch()
        deadline = time.monotonic() + 120
        while not (root / f"go-{r}").exists():
            if time.monotonic() > deadline:
                sys.exit("no go")
            time.sleep(0.005)
        client, exp_id = open_experiment(f"sqlite:///{root}/round{r}/mlflow.db", "shared")
        run = client.create_run(exp_id, run_name=me)
        client.log_batch(run.info.run_id, metrics=[Metric("x", 1.0, 0, 1)])
        print(json.dumps({"round": r, "experiment": exp_id, "run": run.info.run_id}), flush=True)
""")


@pytest.mark.timeout(240)
def test_runs_started_together_share_one_fresh_sqlite_store(tmp_path):
    processes, rounds = 4, 2
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(tmp_path), str(rounds), str(i)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(processes)
    ]
    try:
        for r in range(rounds):
            deadline = time.monotonic() + 120
            while len(list(tmp_path.glob(f"ready-{r}-*"))) < processes:
                assert time.monotonic() < deadline and all(p.poll() is None for p in procs), r
                time.sleep(0.01)
            (tmp_path / f"go-{r}").touch()  # all at once: the race of a fresh database
        outputs = [p.communicate(timeout=180) for p in procs]
    finally:
        for p in procs:
            p.kill()
            p.wait(timeout=10)
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err[-3000:]
    lines = [json.loads(line) for out, _ in outputs for line in out.splitlines()]
    from mlflow import MlflowClient

    for r in range(rounds):
        mine = [line for line in lines if line["round"] == r]
        assert len(mine) == processes and len({line["experiment"] for line in mine}) == 1
        client = MlflowClient(f"sqlite:///{tmp_path}/round{r}/mlflow.db")
        (experiment,) = client.search_experiments(filter_string="name = 'shared'")
        runs = client.search_runs([experiment.experiment_id])
        assert sorted(run.info.run_id for run in runs) == sorted(line["run"] for line in mine)


@pytest.mark.timeout(30)
def test_the_lock_wait_is_bounded_and_says_what_it_waits_for(tmp_path, capsys):
    from filelock import FileLock

    holder = FileLock(f"{tmp_path / 'mlflow.db'}.lock")
    with holder:
        start = time.monotonic()
        with pytest.raises(TrackingStoreBusy, match=r"mlflow\.db\.lock still held .* after 1\.5 s"):
            with store_lock(f"sqlite:///{tmp_path / 'mlflow.db'}", timeout_s=1.5):
                pass
        assert time.monotonic() - start < 3
    assert "waiting up to 1.5 s for" in capsys.readouterr().err
    with store_lock(f"sqlite:///{tmp_path / 'mlflow.db'}", timeout_s=1.5):
        pass  # free again


@pytest.mark.timeout(30)
def test_an_experiment_created_by_another_process_meanwhile_is_read_back():
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS

    class RacingClient:
        def __init__(self) -> None:
            self.reads = 0

        def get_experiment_by_name(self, name: str) -> Any:
            self.reads += 1
            return None if self.reads == 1 else type("E", (), {"experiment_id": "7"})()

        def create_experiment(self, name: str, artifact_location: str | None = None) -> str:
            raise MlflowException("Experiment(name=x) already exists", error_code=RESOURCE_ALREADY_EXISTS)

    assert experiment_id(RacingClient(), "x") == "7"  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------- the guard


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _fail() -> None:
    raise ConnectionError("API request to http://x failed: [Errno 111] Connection refused")


@pytest.mark.timeout(30)
def test_a_failure_warns_once_pauses_the_calls_and_logging_resumes_when_the_store_is_back(capsys):
    clock = FakeClock()
    guard = TrackingGuard("http://x", retry_after_s=10, max_retry_after_s=25, clock=clock)
    calls = []
    assert not guard.call(_fail, lost={"results": 1, "metric values": 5})
    assert guard.paused
    for _ in range(3):  # paused: not even tried
        assert not guard.call(calls.append, 1, lost={"results": 1, "metric values": 5})
    assert calls == []
    clock.now = 10.5
    assert not guard.call(_fail, lost={"params": 100})  # tried again, down again: a longer pause
    clock.now = 20.5
    assert guard.paused
    clock.now = 30.6
    assert guard.fetch(lambda: "value") == "value" and not guard.paused
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "rllib: warning: MLflow at http://x failed (connection refused); training goes on without it, "
        "retrying in 10 s",
        "rllib: MLflow at http://x answers again; logging resumes",
    ]
    assert guard.summary() == (
        "rllib: warning: MLflow at http://x: not logged: 4 results, 20 metric values, 100 params "
        "(MLflow failed, was unreachable or refused them; training was not affected)"
    )


@pytest.mark.timeout(30)
def test_a_rejected_request_is_dropped_without_pausing_the_others(capsys):
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

    def reject() -> None:
        raise MlflowException("Changing param values is not allowed", error_code=INVALID_PARAMETER_VALUE)

    guard = TrackingGuard("sqlite:///m.db")
    assert not guard.call(reject, lost={"params": 1})
    assert not guard.paused and guard.call(lambda: None)
    assert "rejected a request" in capsys.readouterr().err
    assert guard.summary().startswith("rllib: warning: MLflow at sqlite:///m.db: not logged: 1 param ")


@pytest.mark.timeout(30)
def test_ctrl_c_is_not_swallowed():
    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        TrackingGuard("http://x").call(interrupted)


@pytest.mark.timeout(30)
def test_http_bounds_apply_only_inside_and_respect_the_users_settings(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    with bounded_http_requests():
        from mlflow.environment_variables import MLFLOW_HTTP_REQUEST_MAX_RETRIES, MLFLOW_HTTP_REQUEST_TIMEOUT

        assert MLFLOW_HTTP_REQUEST_MAX_RETRIES.get() == 1 and MLFLOW_HTTP_REQUEST_TIMEOUT.get() == 30
    assert (
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ
        and os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "30"
    )
    assert failure_summary(RuntimeError("API request failed with error code 503 != 200")) == "HTTP 503"


# ---------------------------------------------------------------------------------------- the callback


@pytest.mark.timeout(60)
def test_a_server_that_stops_answering_costs_one_bounded_call(silent_server, capsys):
    """MLflow's defaults would wait 120 s per attempt, 8 attempts; the callback's calls are bounded and
    then paused, so a whole trial against it takes seconds."""
    callback = MLflowTracking(silent_server, _experiment())
    trial = FakeTrial("t1")
    start = time.monotonic()
    callback.log_trial_start(trial)
    first = time.monotonic() - start
    for i in range(1, 11):
        callback.log_trial_result(i, trial, _result(i))
    trial.status, trial.last_result = "TERMINATED", {"done": True}
    callback.log_trial_end(trial)
    callback.on_experiment_end([trial])
    total = time.monotonic() - start
    bound = 2 * int(HTTP_BOUNDS["MLFLOW_HTTP_REQUEST_TIMEOUT"]) + 2
    assert first < bound and total < bound + 1, (first, total)
    err = capsys.readouterr().err
    assert err.count(f"rllib: warning: MLflow at {silent_server} failed (no answer in 3 s)") == 1
    assert "training goes on" in err
    assert f"MLflow at {silent_server}: not logged: 1 run, 10 results, 30 metric values" in err


@pytest.mark.timeout(120)
def test_a_server_killed_mid_run_loses_only_what_came_while_it_was_down(mlflow_server, capsys):
    callback = MLflowTracking(mlflow_server.uri, _experiment(), retry_after_s=0.5)
    trial = FakeTrial("t1")
    callback.log_trial_start(trial)
    for i in range(1, 4):
        callback.log_trial_result(i, trial, _result(i))

    mlflow_server.kill()
    start = time.monotonic()
    for i in range(4, 9):
        callback.log_trial_result(i, trial, _result(i))
    assert time.monotonic() - start < 5  # refused at once, then paused
    warning = f"rllib: warning: MLflow at {mlflow_server.uri} failed (connection refused); training goes on"
    assert capsys.readouterr().err.count(warning) == 1

    mlflow_server.start()
    deadline = time.monotonic() + 10
    while callback.guard.paused:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    for i in range(9, 11):
        callback.log_trial_result(i, trial, _result(i))
    trial.status, trial.last_result = "TERMINATED", {"done": True}
    callback.log_trial_end(trial)
    callback.on_experiment_end([trial])
    err = capsys.readouterr().err
    assert "answers again; logging resumes" in err
    assert f"MLflow at {mlflow_server.uri}: not logged: 5 results, 15 metric values (" in err

    from mlflow import MlflowClient

    client = MlflowClient(mlflow_server.uri)
    run = client.get_run(callback.run_id(trial))
    assert run.info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "return")]
    assert sorted(steps) == [1000, 2000, 3000, 9000, 10000]
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {
        "experiment.yaml",
        "learning_curve.png",
    }


@pytest.mark.timeout(60)
def test_a_store_down_from_the_start_never_raises_and_the_run_is_created_once_it_is_back(
    migrated_db, tmp_path, capsys
):
    callback = MLflowTracking(f"http://127.0.0.1:{_free_port()}", _experiment(), retry_after_s=0.2)
    trial = FakeTrial("t1")
    callback.log_trial_start(trial)
    callback.log_trial_result(1, trial, _result(1))
    assert callback.run_id(trial) is None
    # The "server" comes back as a sqlite store: the same callback, another URI, nothing else changed.
    callback.tracking_uri = callback.guard.uri = f"sqlite:///{_copy_db(migrated_db, tmp_path)}"
    time.sleep(0.3)
    callback.log_trial_result(2, trial, _result(2))
    assert callback.run_id(trial) is not None
    history = callback.client.get_metric_history(callback.run_id(trial), "return")
    assert [m.step for m in history] == [2000]
    assert callback.client.get_run(callback.run_id(trial)).data.params["lr"] == "0.001"
    assert capsys.readouterr().err.count("failed (connection refused)") == 1


@pytest.mark.timeout(60)
def test_resume_never_logs_a_step_twice(migrated_db, tmp_path):
    """Tune continues an interrupted trial from its last checkpoint (here: after iteration 3 of 5), so
    iterations 4 and 5 report again; the run keeps the values logged before the interruption."""
    uri = f"sqlite:///{_copy_db(migrated_db, tmp_path)}"
    callback = MLflowTracking(uri, _experiment())
    trial = FakeTrial("t1")
    callback.log_trial_start(trial)
    for i in range(1, 6):
        callback.log_trial_result(i, trial, _result(i))
    callback.on_experiment_end([trial])  # Ctrl+C: the run ends KILLED
    run_id = callback.run_id(trial)
    assert callback.client.get_run(run_id).info.status == "KILLED"

    resumed = pickle.loads(pickle.dumps(callback))  # as Tune restores its callbacks
    resumed.log_trial_start(trial)
    assert resumed.run_id(trial) == run_id and resumed.client.get_run(run_id).info.status == "RUNNING"
    for i in range(4, 8):  # replayed from the checkpoint after iteration 3, then new ones
        resumed.log_trial_result(i, trial, _result(i, value=100.0 + i))
    # A trial Tune restarts after a failure, in the same process, replays too.
    resumed.log_trial_result(6, trial, _result(6, value=-1.0))
    trial.status, trial.last_result = "TERMINATED", {"done": True}
    resumed.log_trial_end(trial)

    client = resumed.client
    for key in ("return", "training_iteration", "env_steps"):
        steps = [m.step for m in client.get_metric_history(run_id, key)]
        assert sorted(steps) == [1000 * i for i in range(1, 8)], key  # each step once
    values = {m.step: m.value for m in client.get_metric_history(run_id, "return")}
    assert [values[1000 * i] for i in range(1, 8)] == [1, 2, 3, 4, 5, 106, 107]
    assert client.get_run(run_id).info.status == "FINISHED"
    assert len(client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id])) == 1
