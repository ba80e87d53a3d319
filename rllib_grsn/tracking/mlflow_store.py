"""Reaching an MLflow tracking store without hanging: the pre-flight check of a tracking URI, and the
cross-process safe opening of a shared sqlite store.

:func:`tracking_uri_problem` runs before Ray starts, so that a wrong ``--mlflow-uri`` (or a stale
``$MLFLOW_TRACKING_URI``) stops the command at once with one line saying what is wrong, instead of
surfacing as a stalled or crashed trial minutes later. It is bounded in time: every check runs in a
daemon thread that is given up after ``timeout_s``.

:func:`open_experiment` connects a client and finds or creates the experiment. Several ``rllib train
file`` runs started together into one storage path share ``sqlite:///<storage>/mlflow.db``; MLflow
creates a new database's schema by running its migrations, which are not safe against another process
doing the same at the same time (they fail with "table ... already exists" and can leave a half-migrated
database). A file lock next to the database (``mlflow.db.lock``) makes one process create the schema
and the experiment while the others wait, for a bounded time. Creating the experiment by name can also
race on a tracking server (no lock there): the loser of the race reads the winner's experiment.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

if TYPE_CHECKING:
    import requests
    from mlflow import MlflowClient

# Schemes MLflow's SQLAlchemy store serves (a "+driver" suffix is allowed: postgresql+psycopg2).
DATABASE_SCHEMES = ("postgresql", "mysql", "mssql")
# Hosted stores that cannot be probed without their credentials and network: accepted unchecked.
HOSTED_SCHEMES = ("databricks", "databricks-uc", "uc")
SUPPORTED = (
    "http(s)://host:port (a tracking server), sqlite:///path/mlflow.db, postgresql://, mysql://, mssql://, "
    "databricks"
)
# The MLflow REST call of the pre-flight check: cheap, read-only, answered by every MLflow server,
# and the keys of its answer.
PROBE_ENDPOINT = "/api/2.0/mlflow/experiments/search"
PROBE_ANSWER = frozenset({"experiments", "next_page_token"})
SQLITE_HEADER = b"SQLite format 3\x00"
# How long a run waits for another one to set up a shared sqlite database (its migrations take
# seconds, several runs starting together queue behind one another).
LOCK_TIMEOUT_S = 60.0
# After this long waiting for the lock, say what is being waited for.
LOCK_NOTICE_S = 1.0
NO_MLFLOW = "or pass --no-mlflow"


class TrackingStoreBusy(RuntimeError):
    """Another process held the sqlite store's lock for longer than the timeout."""


# ---------------------------------------------------------------------------------------- URIs


def uri_scheme(uri: str) -> str:
    """The tracking URI's scheme, lower case: ``http``, ``sqlite``, ``file`` ('' for a plain path)."""
    if uri in HOSTED_SCHEMES:
        return uri
    scheme = urlsplit(uri).scheme.lower()
    return scheme if len(scheme) > 1 else ""  # one letter: a Windows drive (C:/runs)


def sqlite_database(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, resolved (None: not sqlite, or an in-memory one).

    ``sqlite:////abs/mlflow.db`` is an absolute path, ``sqlite:///rel/mlflow.db`` one relative to the
    current directory; a query string (``?timeout=20``) is not part of the path.
    """
    if not uri.lower().startswith("sqlite:///"):
        return None
    path = unquote(uri[len("sqlite:///") :].split("?", 1)[0])
    if not path or path == ":memory:":
        return None
    return Path(path).expanduser().resolve()


def file_store_directory(uri: str) -> Path:
    """The directory of a file-store URI (``file:///x`` or a plain path)."""
    if uri.lower().startswith("file:"):
        return Path(url2pathname(urlsplit(uri).path)).expanduser().resolve()
    return Path(uri).expanduser().resolve()


# ---------------------------------------------------------------------------------------- pre-flight


def tracking_uri_problem(uri: str, timeout_s: float = 5.0) -> str | None:
    """What makes ``uri`` unusable as an MLflow tracking URI, in one line (None: usable).

    An ``http(s)://`` server must answer an MLflow REST call within ``timeout_s``; a sqlite database
    must be a database file in a directory that exists or can be created, and is writable; a directory
    (MLflow's file store) is refused by MLflow 3 unless ``MLFLOW_ALLOW_FILE_STORE=true``; hosted and
    database-server schemes are accepted unchecked. The whole check takes at most about ``timeout_s``.
    """
    uri = uri.strip()
    if not uri:
        return f"empty tracking URI: give one ({SUPPORTED}) {NO_MLFLOW}"
    scheme = uri_scheme(uri)
    check = _check_for(uri, scheme, timeout_s)
    if isinstance(check, str) or check is None:
        return check
    late = (
        _no_answer(uri, timeout_s)
        if scheme in ("http", "https")
        else f"checking it took more than {timeout_s:g} s (a hung network file system?)"
    )
    return _within(timeout_s, check, late)


def _check_for(uri: str, scheme: str, timeout_s: float) -> Callable[[], str | None] | str | None:
    """The check of ``uri`` to run in time, or its verdict when no check is needed."""
    if scheme in ("http", "https"):
        return lambda: _http_problem(uri, timeout_s)
    if scheme == "sqlite":
        return lambda: _sqlite_problem(uri)
    if scheme in ("", "file"):
        return lambda: _file_store_problem(file_store_directory(uri))
    if scheme in HOSTED_SCHEMES or scheme.split("+", 1)[0] in DATABASE_SCHEMES:
        return None
    if scheme in {ep.name for ep in entry_points(group="mlflow.tracking_store")}:
        return None  # an installed MLflow plugin serves it
    return f"unknown scheme '{scheme}://': supported are {SUPPORTED}, or pass --no-mlflow"


def _within(timeout_s: float, check: Callable[[], str | None], late: str) -> str | None:
    """``check()``'s verdict, or ``late`` when it has not come within ``timeout_s`` (the daemon thread
    that runs it is left behind: a hung socket or file system must not hang the command)."""
    verdict: list[str | None] = []

    def target() -> None:
        try:
            verdict.append(check())
        except Exception as err:  # a check that breaks reports it rather than hang the caller
            verdict.append(f"cannot be checked: {type(err).__name__}: {err}")

    thread = threading.Thread(target=target, name="mlflow-uri-check", daemon=True)
    thread.start()
    thread.join(timeout_s)
    return verdict[0] if verdict else late


def _http_problem(uri: str, timeout_s: float) -> str | None:
    import requests

    address = urlsplit(uri).netloc or uri
    url = uri.rstrip("/") + PROBE_ENDPOINT
    try:
        response = requests.get(url, params={"max_results": 1}, timeout=timeout_s, **_request_options())
    except requests.exceptions.Timeout:
        return _no_answer(uri, timeout_s)
    except requests.exceptions.SSLError as err:
        return (
            f"TLS error talking to {address} ({_short(err)}): set MLFLOW_TRACKING_SERVER_CERT_PATH "
            f"(or MLFLOW_TRACKING_INSECURE_TLS=true) {NO_MLFLOW}"
        )
    except requests.exceptions.RequestException as err:
        return _connection_problem(uri, err)
    return _response_problem(address, response)


def _no_answer(uri: str, timeout_s: float) -> str:
    address = urlsplit(uri).netloc or uri
    return f"{address} did not answer in {timeout_s:g} s: check the host and port {NO_MLFLOW}"


def _connection_problem(uri: str, err: BaseException) -> str:
    parts = urlsplit(uri)
    text = str(err)
    if "refused" in text.lower():
        port = parts.port or (443 if parts.scheme == "https" else 80)
        start = f"mlflow server --host {parts.hostname} --port {port}"
        return f"connection refused by {parts.netloc}: start the tracking server ({start}) {NO_MLFLOW}"
    if any(s in text for s in ("Failed to resolve", "Name or service not known", "name resolution")):
        return f"cannot resolve the host {parts.hostname}: check the URI {NO_MLFLOW}"
    return f"cannot connect to {parts.netloc} ({_short(err)}) {NO_MLFLOW}"


def _response_problem(address: str, response: requests.Response) -> str | None:
    status = response.status_code
    if status == 200 and _is_mlflow_answer(response):
        return None
    if status in (401, 403):
        if os.environ.get("MLFLOW_TRACKING_AUTH"):
            return None  # an auth plugin signs MLflow's own requests; this probe cannot
        return (
            f"{address} answered HTTP {status} (not authorized): set MLFLOW_TRACKING_TOKEN or "
            f"MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD {NO_MLFLOW}"
        )
    if status >= 500:
        return f"{address} answered HTTP {status} to an MLflow REST call: check the server's log {NO_MLFLOW}"
    return (
        f"{address} answered HTTP {status} to an MLflow REST call ({PROBE_ENDPOINT}): not an MLflow "
        f"tracking server? check the URI {NO_MLFLOW}"
    )


def _is_mlflow_answer(response: requests.Response) -> bool:
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and set(body) <= PROBE_ANSWER


def _request_options() -> dict[str, object]:
    """The authentication and TLS settings MLflow's client takes from the environment."""
    env = os.environ
    options: dict[str, object] = {}
    if env.get("MLFLOW_TRACKING_TOKEN"):
        options["headers"] = {"Authorization": f"Bearer {env['MLFLOW_TRACKING_TOKEN']}"}
    elif env.get("MLFLOW_TRACKING_USERNAME") and env.get("MLFLOW_TRACKING_PASSWORD"):
        options["auth"] = (env["MLFLOW_TRACKING_USERNAME"], env["MLFLOW_TRACKING_PASSWORD"])
    if env.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() in ("true", "1"):
        options["verify"] = False
    elif env.get("MLFLOW_TRACKING_SERVER_CERT_PATH"):
        options["verify"] = env["MLFLOW_TRACKING_SERVER_CERT_PATH"]
    if env.get("MLFLOW_TRACKING_CLIENT_CERT_PATH"):
        options["cert"] = env["MLFLOW_TRACKING_CLIENT_CERT_PATH"]
    return options


def _short(err: BaseException, limit: int = 160) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _sqlite_problem(uri: str) -> str | None:
    database = sqlite_database(uri)
    if database is None:
        return None  # in memory
    if database.is_dir():
        return f"{database} is a directory: name the database file, e.g. sqlite:///{database}/mlflow.db"
    if database.exists():
        if not os.access(database, os.R_OK | os.W_OK):
            return f"the database {database} is not readable and writable"
        with database.open("rb") as f:
            header = f.read(len(SQLITE_HEADER))
        if header and header != SQLITE_HEADER:
            return (
                f"{database} is not an SQLite database: name another file, e.g. {database.parent}/mlflow.db"
            )
    return _directory_problem(database.parent, "the MLflow database")


def _file_store_problem(directory: Path) -> str | None:
    if os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").strip().lower() not in ("true", "1"):
        return (
            f"a directory ({directory}) is MLflow's file store, which MLflow 3 refuses unless "
            f"MLFLOW_ALLOW_FILE_STORE=true; use a database instead: sqlite:///{directory}/mlflow.db"
        )
    if directory.exists() and not directory.is_dir():
        return f"{directory} is a file, not a directory"
    return _directory_problem(directory, "the MLflow file store")


def _directory_problem(directory: Path, what: str) -> str | None:
    """Why ``directory`` cannot hold ``what``: it cannot be created, or is not writable."""
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"cannot create {directory} for {what}: {existing} is a file, not a directory"
    if not _writable(existing):
        if existing == directory:
            return f"cannot write {what} in {directory}: the directory is not writable"
        return f"cannot create {directory} for {what}: {existing} is not writable"
    return None


def _writable(directory: Path) -> bool:
    """Whether a file can be created in ``directory`` (tried for real: permission bits do not tell
    for root, read-only mounts or ACLs)."""
    try:
        with tempfile.TemporaryFile(dir=directory, prefix=".rllib-write-check-"):
            return True
    except OSError:
        return False


# ---------------------------------------------------------------------------------------- the store


@contextmanager
def store_lock(tracking_uri: str, timeout_s: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Holds ``<database>.lock`` for a sqlite store (nothing for other stores), so that one process at a
    time sets up a shared database; says what it waits for after a second, gives up after ``timeout_s``
    with :class:`TrackingStoreBusy`. The lock is an OS file lock: a process that dies releases it."""
    database = sqlite_database(tracking_uri)
    if database is None:
        yield
        return
    from filelock import FileLock, Timeout

    database.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(f"{database}.lock")
    try:
        lock.acquire(timeout=min(LOCK_NOTICE_S, timeout_s))
    except Timeout:
        print(
            f"rllib: waiting up to {timeout_s:g} s for {lock.lock_file}: another run is setting up the "
            f"MLflow database {database}",
            file=sys.stderr,
            flush=True,
        )
        try:
            lock.acquire(timeout=max(timeout_s - LOCK_NOTICE_S, 0.0))
        except Timeout:
            raise TrackingStoreBusy(
                f"{lock.lock_file} still held by another process after {timeout_s:g} s: another run is "
                f"using {database}; give this run its own --storage-path or --mlflow-uri"
            ) from None
    try:
        yield
    finally:
        lock.release()


def open_experiment(
    tracking_uri: str,
    name: str,
    artifact_location: str | None = None,
    lock_timeout_s: float = LOCK_TIMEOUT_S,
) -> tuple[MlflowClient, str]:
    """A client of ``tracking_uri`` and the id of the experiment ``name`` there, created if missing.

    Safe when several processes open one fresh sqlite database at once (see :func:`store_lock`) and
    when they race to create the experiment on a server.
    """
    with store_lock(tracking_uri, lock_timeout_s):
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=tracking_uri)
        return client, experiment_id(client, name, artifact_location)


def experiment_id(client: MlflowClient, name: str, artifact_location: str | None = None) -> str:
    """The id of the experiment ``name``, created if missing; when another process creates it first
    ("already exists"), that one's id."""
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_location)
    except MlflowException as err:
        if err.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id
