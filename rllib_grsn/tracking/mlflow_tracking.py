"""MLflow tracking of `rllib train file` runs: one MLflow run per Tune trial.

:class:`MLflowTracking` is a Ray Tune ``LoggerCallback`` on the driver (Ray's own
``MLflowLoggerCallback`` logs every one of the hundreds of new-stack result keys, steps by iteration,
and opens a second MLflow run for a trial that ``--resume`` continues; this one does not):

- experiment: the YAML experiment's name; run name: the Tune trial's name;
- params: the experiment's config as written, flattened (``model_config.decay``), with the values this
  trial sampled, plus ``run``, ``env`` and ``stop.*``; cut to MLflow's limits;
- tags: ``algorithm``, ``env``, ``core``, ``seed``, ``backend`` (``sc2`` / ``smax`` / ...; from the
  results), ``map``, ``git_commit`` (also as MLflow's ``mlflow.source.git.commit``), and the sweep
  group (every sampled value but the seed) so seeds of one setting can be compared in the MLflow UI;
- metrics per iteration, with the env steps as MLflow's step: :data:`METRICS` (return, episode length,
  win rates, ...), the energy metrics of each evaluation (``energy/...``), ``surrogate_alpha``, a guide's
  env steps, horizon and labelled steps (``guide_env_steps``, ``policy_env_steps``, ``guide_horizon``,
  ``bc_label_env_steps``), and
  the learners' numeric metrics (``learners/<module>/...``);
- artifacts when the trial ends: ``experiment.yaml`` (what this trial trained), the source YAML, the
  final checkpoint's path (``checkpoint.txt`` and the ``checkpoint`` tag) and ``learning_curve.png``.

A trial continued by ``--resume`` logs into its existing MLflow run (found by its Tune trial id). Tune
restores such a trial from its last checkpoint, so the iterations after that checkpoint run again and
report the same env-step counts: the callback reads the run's last logged step when it re-attaches and
skips every result whose step the run has already. Each step appears once in every metric's history,
and the values kept are those the run logged before the interruption (the replayed iterations are a new
draw of the same steps, not a correction). A trial that Tune restarts after a failure in the same
process is handled the same way.

The store never stops or stalls training (:mod:`rllib_grsn.tracking.mlflow_guard`): every call is
bounded in time, a failure is one warning and a count of what was not logged (printed when the
experiment ends), calls pause for a while after a failure and resume when the store answers again. A
shared sqlite database is created under a file lock (:mod:`rllib_grsn.tracking.mlflow_store`), and the
CLI checks the tracking URI with :func:`tracking_uri_problem` before Ray starts.
"""

from __future__ import annotations

import logging
import math
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from ray.tune.logger import LoggerCallback
from ray.tune.utils import flatten_dict

from rllib_grsn.sweep.search_space import SEED_PATH, get_path, sampled_values, with_value
from rllib_grsn.sweep.settings import METRIC_ALIASES
from rllib_grsn.tracking.mlflow_guard import RETRY_AFTER_S, TrackingGuard, bounded_http_requests
from rllib_grsn.tracking.mlflow_store import open_experiment
from rllib_grsn.tracking.mlflow_store import tracking_uri_problem as tracking_uri_problem  # for the CLI

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from rllib_grsn.experiment import Experiment

logger = logging.getLogger(__name__)

ENV_STEPS = "num_env_steps_sampled_lifetime"
ENERGY_PREFIX = "evaluation/env_runners/energy/"
# MLflow metric name -> Tune's flattened result key.
METRICS = {
    **{k: v for k, v in METRIC_ALIASES.items() if not v.startswith(ENERGY_PREFIX)},
    "env_steps": ENV_STEPS,
    "time_total_s": "time_total_s",
    "training_iteration": "training_iteration",
    "surrogate_alpha": "surrogate_alpha",
    # Guided training (TD3BC+JSRL): env steps the guide acted vs the learning policy, the horizon, and
    # the steps that carry a behaviour-cloning label (all training steps with guide.bc_on: all).
    "guide_env_steps": "env_runners/num_env_steps_guide_lifetime",
    "policy_env_steps": "env_runners/num_env_steps_policy_lifetime",
    "bc_label_env_steps": "env_runners/num_env_steps_bc_label_lifetime",
    "guide_horizon": "guide_horizon",
}
LEARNER_PREFIX = "learners/"
# Learner bookkeeping that would swamp the losses in the MLflow UI (connector timers, throughputs).
LEARNER_SKIP = ("learner_connector", "throughput", "weights_seq_no", "num_trainable", "num_non_trainable")
# Curves drawn into learning_curve.png, when the run logged them.
CURVES = ("return", "eval_return", "team_return", "eval_team_return", "win_rate", "eval_win_rate")
# MLflow's limits (mlflow.utils.validation): values cut, keys longer than this skipped.
MAX_PARAM_VALUE = 6000
MAX_KEY = 250
MAX_PARAMS_PER_BATCH = 100
TRIAL_ID_TAG = "ray.trial_id"


def default_tracking_uri(storage_path: str) -> str:
    """``sqlite:///<storage>/mlflow.db`` next to the Tune results (a local file, no server needed).

    For a remote storage URI (``s3://``) a local ``./mlflow.db`` is used instead: sqlite needs a file
    system; on a cluster pass a tracking server with ``--mlflow-uri``. Nothing is created here: the
    directory is made when the store is first opened (:func:`tracking_uri_problem` tells beforehand
    whether it can be).
    """
    if "://" in storage_path:
        return f"sqlite:///{Path('mlflow.db').resolve()}"
    return f"sqlite:///{Path(storage_path).expanduser().resolve() / 'mlflow.db'}"


def artifact_location(tracking_uri: str) -> str | None:
    """Where a new experiment's artifacts go: ``mlartifacts/`` beside a sqlite database (MLflow's own
    default is ``./mlruns`` in whatever directory the command ran from); None: the store decides."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    # sqlite:////abs/mlflow.db is an absolute path, sqlite:///rel/mlflow.db a relative one.
    database = Path(tracking_uri.removeprefix("sqlite:///")).resolve()
    return (database.parent / "mlartifacts").as_uri()


def ui_command(tracking_uri: str) -> str:
    """The command that shows ``tracking_uri``'s runs in MLflow's web UI."""
    if tracking_uri.startswith(("http://", "https://", "databricks")):
        return f"open {tracking_uri} in a browser"
    return f"mlflow ui --backend-store-uri {tracking_uri}"


def git_commit(path: Path | None = None) -> str | None:
    """The commit checked out where this package lives (None outside a git checkout)."""
    where = path or Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def flatten_params(tree: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": "1"}``; lists stay one value; values cut to MLflow's limit."""
    out: dict[str, str] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out |= flatten_params(value, f"{name}.")
        elif len(name) <= MAX_KEY:
            out[name] = str(value)[:MAX_PARAM_VALUE]
    return out


def result_metrics(result: dict[str, Any]) -> dict[str, float]:
    """The metrics logged per iteration, by their MLflow names (only finite numbers)."""
    flat = flatten_dict(result, delimiter="/")
    out = {name: flat.get(key) for name, key in METRICS.items()}
    for key, value in flat.items():
        if key.startswith(ENERGY_PREFIX):
            out["energy/" + key.removeprefix(ENERGY_PREFIX)] = value
        elif key.startswith(LEARNER_PREFIX) and not any(skip in key for skip in LEARNER_SKIP):
            out[key] = value
    return {
        k: float(v)
        for k, v in out.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and len(k) <= MAX_KEY
    }


def result_step(result: dict[str, Any]) -> int:
    """MLflow's step of a result: the env steps sampled so far (the training iteration without them)."""
    return int(result.get(ENV_STEPS) or result.get("training_iteration") or 0)


def trial_experiment(exp: Experiment, trial_config: dict[str, Any]) -> dict[str, Any]:
    """The experiment this trial trained, as a tuned_examples mapping (sampled values filled in)."""
    config = exp.raw.get("config", {})
    for path, value in sampled_values(trial_config, exp.search_space).items():
        config = with_value(config, path, value)
    return {exp.name: {"env": exp.env, "run": exp.run, "stop": dict(exp.stop), "config": config}}


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, bool | int | float | str)


class MLflowTracking(LoggerCallback):
    """Logs every Tune trial of ``experiment`` as one MLflow run at ``tracking_uri``.

    Every call to the store goes through :attr:`guard` (a :class:`TrackingGuard`): a store that fails or
    goes away never stops or stalls training; what was not logged is counted and reported when the
    experiment ends.

    Args:
        tracking_uri: an MLflow tracking URI (``sqlite:///...``, ``http://host:5000``, a directory).
        experiment: the validated experiment the trials run.
        source: the tuned_examples YAML file (logged as an artifact).
        retry_after_s: the pause in calls to the store after it failed (doubling while it stays down).
    """

    def __init__(
        self,
        tracking_uri: str,
        experiment: Experiment,
        source: str | Path | None = None,
        *,
        retry_after_s: float = RETRY_AFTER_S,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.source = Path(source) if source else None
        self.commit = git_commit()
        self.guard = TrackingGuard(tracking_uri, retry_after_s=retry_after_s)
        self._client: MlflowClient | None = None
        self._experiment_id: str | None = None
        self._runs: dict[str, str] = {}  # Tune trial id -> MLflow run id
        self._last_step: dict[str, int] = {}  # Tune trial id -> the last step logged to its run
        self._started: set[str] = set()  # trials this process saw start
        self._backend_tagged: set[str] = set()

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its callbacks with the experiment state (``--resume`` restores them); the
        # client is rebuilt on first use, and runs are found again by their trial-id tag.
        state = dict(self.__dict__)
        state.update(
            _client=None,
            _experiment_id=None,
            _runs={},
            _last_step={},
            _started=set(),
            _backend_tagged=set(),
            guard=self.guard.restarted(),
        )
        return state

    # ------------------------------------------------------------------ MLflow plumbing

    @property
    def client(self) -> MlflowClient:
        """The client, connected on first use (raises when the store cannot be opened)."""
        if self._client is None:
            with bounded_http_requests():
                self._client, self._experiment_id = self._open()
        return self._client

    def _open(self) -> tuple[MlflowClient, str]:
        for name in ("alembic", "mlflow.store.db.utils"):  # schema set-up chatter of a new sqlite db
            logging.getLogger(name).setLevel(logging.WARNING)
        return open_experiment(self.tracking_uri, self.experiment.name, artifact_location(self.tracking_uri))

    def _connected(self) -> MlflowClient | None:
        """The client, connecting through the guard (None: the store cannot be reached now)."""
        if self._client is None:
            opened = self.guard.fetch(self._open)
            if opened is None:
                return None
            self._client, self._experiment_id = opened
        return self._client

    def run_id(self, trial: Any) -> str | None:
        """The MLflow run of ``trial`` (None before it started, or while the store cannot be reached)."""
        return self._runs.get(trial.trial_id)

    def _ensure_run(self, trial: Any) -> str | None:
        """The run of ``trial``: found by its trial-id tag (a trial continued by ``--resume``), else
        created; None while the store cannot be reached (tried again on the trial's next event)."""
        run_id = self._runs.get(trial.trial_id)
        if run_id is not None:
            return run_id
        client = self._connected()
        if client is None:
            return None
        found = self.guard.fetch(
            client.search_runs,
            [self._experiment_id],
            filter_string=f"tags.`{TRIAL_ID_TAG}` = '{trial.trial_id}'",
            max_results=1,
        )
        if found is None:
            return None
        run_id = self._attach(client, trial, found[0]) if found else self._create(client, trial)
        if run_id is not None:
            self._runs[trial.trial_id] = run_id
        return run_id

    def _attach(self, client: MlflowClient, trial: Any, run: Any) -> str | None:
        """Continues ``run``: reads the last step it logged (later results at or before it are not
        logged again) and marks it running."""
        run_id = run.info.run_id
        history = self.guard.fetch(client.get_metric_history, run_id, "training_iteration")
        if history is None:
            return None  # without the last step, replayed results would be logged twice
        self._last_step[trial.trial_id] = max((m.step for m in history), default=-1)
        self.guard.call(client.update_run, run_id, status="RUNNING", lost={"status updates": 1})
        if not run.data.params:  # created while its answer was lost, or its params were dropped
            self._log_params(client, trial, run_id)
        return run_id

    def _create(self, client: MlflowClient, trial: Any) -> str | None:
        tags = self._tags(trial)
        run = self.guard.fetch(client.create_run, self._experiment_id, run_name=str(trial), tags=tags)
        if run is None:
            return None
        self._log_params(client, trial, run.info.run_id)
        return run.info.run_id

    def _log_params(self, client: MlflowClient, trial: Any, run_id: str) -> None:
        from mlflow.entities import Param

        items = [Param(k, v) for k, v in sorted(self._params(trial).items())]
        for start in range(0, len(items), MAX_PARAMS_PER_BATCH):
            batch = items[start : start + MAX_PARAMS_PER_BATCH]
            self.guard.call(client.log_batch, run_id, params=batch, lost={"params": len(batch)})

    def _params(self, trial: Any) -> dict[str, str]:
        trial_exp = trial_experiment(self.experiment, trial.config)[self.experiment.name]
        params = flatten_params({k: v for k, v in trial_exp.items() if k != "config"})
        # Every setting RLlib ran with (defaults included), then the YAML's own keys on top.
        params |= flatten_params({f"rllib.{k}": v for k, v in trial.config.items() if _is_scalar(v)})
        params |= flatten_params(trial_exp["config"])
        model = trial.config.get("_model_config")
        if isinstance(model, dict) and "core" in model:  # the spiking model, defaults filled in
            params |= flatten_params({"model_config": model})
        return params

    def _tags(self, trial: Any) -> dict[str, str]:
        exp = self.experiment
        trial_exp = trial_experiment(exp, trial.config)[exp.name]
        config = trial_exp["config"]
        sampled = sampled_values(trial.config, exp.search_space)
        group = ", ".join(f"{'.'.join(p)}={v}" for p, v in sampled.items() if p != SEED_PATH)
        tags = {
            TRIAL_ID_TAG: trial.trial_id,
            "algorithm": exp.run,
            "env": exp.env,
            "core": str(get_path(config, ("model_config", "core")) or "rllib-default"),
            "seed": str(trial.config.get("seed")),
            "sweep_group": group or "-",
        }
        map_name = get_path(config, ("env_config", "map_name"))
        if map_name is not None:
            tags["map"] = str(map_name)
        if self.commit:
            tags["git_commit"] = tags["mlflow.source.git.commit"] = self.commit
        return tags

    # ------------------------------------------------------------------ LoggerCallback

    def log_trial_start(self, trial: Any) -> None:
        self._started.add(trial.trial_id)
        self._ensure_run(trial)

    def log_trial_result(self, iteration: int, trial: Any, result: dict[str, Any]) -> None:
        values = result_metrics(result)
        run_id = self._ensure_run(trial)
        if run_id is None:
            self.guard.drop({"results": 1, "metric values": len(values)})
            return
        step = result_step(result)
        if step <= self._last_step.get(trial.trial_id, -1):
            return  # replayed after a restore from a checkpoint: the run has this step already
        from mlflow.entities import Metric

        now = int(1000 * float(result.get("timestamp") or 0))
        metrics = [Metric(k, v, now, step) for k, v in values.items()]
        lost = {"results": 1, "metric values": len(metrics)}
        if metrics and self.guard.call(self._client.log_batch, run_id, metrics=metrics, lost=lost):
            self._last_step[trial.trial_id] = step
        backend = result.get("backend")
        if backend and trial.trial_id not in self._backend_tagged:
            if self.guard.call(self._client.set_tag, run_id, "backend", str(backend), lost={"tags": 1}):
                self._backend_tagged.add(trial.trial_id)

    def log_trial_end(self, trial: Any, failed: bool = False) -> None:
        run_id = self._ensure_run(trial)
        if run_id is None:
            return  # counted with the runs not logged at the experiment's end
        self._log_artifacts(trial, run_id)
        status = "FAILED" if failed else "FINISHED"
        self.guard.call(self._client.set_terminated, run_id, status=status, lost={"status updates": 1})

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        # Trials left unfinished (Ctrl+C, a lost driver) end as KILLED; --resume reopens them.
        for trial in trials:
            run_id = self.run_id(trial)
            ended = trial.status == "ERROR" or (trial.last_result or {}).get("done")
            if run_id is not None and not ended:
                lost = {"status updates": 1}
                self.guard.call(self._client.set_terminated, run_id, status="KILLED", lost=lost)
        self.guard.drop({"runs": len(self._started - self._runs.keys())})
        if line := self.guard.summary():
            print(line, file=sys.stderr, flush=True)
        super().on_experiment_end(trials, **info)

    def _log_artifacts(self, trial: Any, run_id: str) -> None:
        client = self._client
        checkpoint = getattr(getattr(trial, "checkpoint", None), "path", None)
        if checkpoint:
            self.guard.call(client.set_tag, run_id, "checkpoint", str(checkpoint), lost={"tags": 1})
        with tempfile.TemporaryDirectory() as tmp:
            for path, artifact_path in self._artifact_files(trial, run_id, Path(tmp), checkpoint):
                self.guard.call(client.log_artifact, run_id, str(path), artifact_path, lost={"artifacts": 1})

    def _artifact_files(
        self, trial: Any, run_id: str, folder: Path, checkpoint: str | None
    ) -> list[tuple[Path, str | None]]:
        """The files logged when a trial ends, written into ``folder``: (path, artifact directory)."""
        trained = folder / "experiment.yaml"
        trained.write_text(yaml.safe_dump(trial_experiment(self.experiment, trial.config), sort_keys=False))
        files: list[tuple[Path, str | None]] = [(trained, None)]
        if self.source is not None and self.source.is_file():
            files.append((self.source, "source"))
        if checkpoint:
            (folder / "checkpoint.txt").write_text(f"{checkpoint}\n")
            files.append((folder / "checkpoint.txt", None))
        png = folder / "learning_curve.png"
        histories = self._curve_histories(run_id)
        if histories is None:
            self.guard.drop({"artifacts": 1})
        elif histories and self._plot_learning_curve(histories, png, title=str(trial)):
            files.append((png, None))
        return files

    def _curve_histories(self, run_id: str) -> dict[str, list[tuple[int, float]]] | None:
        """The run's own history of each of :data:`CURVES` it logged (None: the store failed)."""
        histories = {}
        for name in CURVES:
            history = self.guard.fetch(self._client.get_metric_history, run_id, name)
            if history is None:
                return None
            if history:
                histories[name] = sorted((m.step, m.value) for m in history)
        return histories

    @staticmethod
    def _plot_learning_curve(histories: dict[str, list[tuple[int, float]]], path: Path, title: str) -> bool:
        """Returns and win rates against env steps into ``path``; False when the plot failed (it must
        not cost the run its other artifacts)."""
        try:
            _draw_curves(histories, path, title)
        except Exception as err:
            logger.warning("learning curve of %s not drawn: %s", title, err)
            return False
        return True


def _draw_curves(histories: dict[str, list[tuple[int, float]]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates = {k: v for k, v in histories.items() if "win_rate" in k}
    returns = {k: v for k, v in histories.items() if k not in rates}
    panels = [p for p in (returns, rates) if p]
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        for name, points in panel.items():
            steps, values = zip(*points, strict=True)
            ax.plot(steps, values, label=name, marker="." if len(points) < 30 else None)
        ax.set_xlabel("env steps")
        ax.legend()
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
