"""Runs one validated experiment (one trial, or a sweep) through Ray Tune and reports the outcome.

A plain experiment is one trial; one with search spaces in its config or ``tune.num_samples > 1`` is
a sweep, which ends with a table grouped by everything but the seed (:mod:`rllib_grsn.sweep.summary`).
With ``tracking_uri`` every trial is also an MLflow run (:class:`MLflowTracking`).

``resume`` continues the run from Tune's saved experiment state, repaired first from the trial folders
(:func:`prepare_resume`): a driver killed at any moment leaves checkpoints that state does not list yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray import tune

from rllib_grsn.experiment import Experiment
from rllib_grsn.resume import CheckpointCompleteMarker, prepare_resume
from rllib_grsn.sweep.search_space import param_space
from rllib_grsn.sweep.summary import (
    group_rows,
    last_reported,
    metric_column,
    print_summary,
    trial_rows,
    write_summary,
)
from rllib_grsn.tracking.mlflow_tracking import MLflowTracking, ui_command
from rllib_grsn.tracking.progress import EVAL_WIN_RATE_KEY, ProgressPrinter, result_summary


@dataclass
class RunOutcome:
    """What a finished experiment left behind."""

    name: str
    experiment_path: str
    checkpoint: str | None
    last_result: dict[str, Any]
    failed: int
    trials: int = 1
    # Stopped before every trial finished (Ctrl+C / SIGTERM): `--resume` continues it.
    interrupted: bool = False


def error_line(error: BaseException) -> str:
    """The line that says what went wrong: a trial's error arrives wrapped with the remote traceback,
    whose last line is the original exception (``TrainingDivergedError: training diverged ...``)."""
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(error).__name__


def _storage_uri(storage_path: str) -> str:
    # Tune accepts URIs (s3://, gs://) as they are; local paths must be absolute.
    return storage_path if "://" in storage_path else str(Path(storage_path).expanduser().resolve())


def run_experiment(
    exp: Experiment,
    *,
    storage_path: str,
    resume: bool = False,
    callbacks: list[tune.Callback] | None = None,
    tracking_uri: str | None = None,
    source: str | None = None,
) -> RunOutcome:
    """Trains ``exp`` with Tune; with ``resume`` continues an interrupted run of the same name.

    ``tracking_uri``: log every trial to MLflow there (None: no MLflow); ``source``: the YAML file,
    logged with each run.
    """
    storage = _storage_uri(storage_path)
    experiment_path = f"{storage.rstrip('/')}/{exp.name}"
    trainable = exp.algorithm_class
    callbacks = list(callbacks or [])
    if tracking_uri:
        callbacks.append(MLflowTracking(tracking_uri, exp, source))
    run_config = tune.RunConfig(
        name=exp.name,
        storage_path=storage,
        stop=exp.stop or None,
        checkpoint_config=tune.CheckpointConfig(
            checkpoint_frequency=exp.checkpoint_freq, checkpoint_at_end=exp.checkpoint_at_end
        ),
        callbacks=[ProgressPrinter(), CheckpointCompleteMarker(), *callbacks],
        # A trial that fails (its node lost, an env crash) restarts from its last checkpoint.
        failure_config=tune.FailureConfig(max_failures=exp.tune.max_failures),
        verbose=0,
    )
    # A resume first adds to Tune's saved state the checkpoints written after its last save.
    plan = prepare_resume(experiment_path) if resume else None
    if plan is not None and not plan.restorable:
        for line in plan.notes:
            print(f"{exp.name}: {line}")
        if plan.refused:
            print(f"{exp.name}: cannot resume: {plan.refused}")
            return RunOutcome(exp.name, experiment_path, None, {}, failed=1, trials=0)
    if plan is not None and plan.restorable:
        print(f"resuming {exp.name} from {experiment_path}")
        for line in plan.notes:
            print(f"{exp.name}: {line}")
        # The original run's config and settings are restored with it (the CLI warns that new
        # --stop/--config values are not applied). The param_space is given again because Tune
        # saved the objects in it (callback and module classes, connectors) as references that
        # only a re-given param_space resolves: without it, a sweep's trials that had not started
        # could not be created. It must have the same keys as the original (Tune checks).
        tuner = tune.Tuner.restore(
            experiment_path,
            trainable=trainable,
            resume_errored=True,
            param_space=param_space(exp.algo_config, exp.search_space),
        )
    else:
        if resume:
            print(f"nothing to resume at {experiment_path}; starting {exp.name} afresh")
        sweep = ""
        if exp.is_sweep:
            sweep = f"; sweep of {exp.num_trials} trials over " + ", ".join(
                f"{'.'.join(p)} ({d.describe()})" for p, d in exp.search_space.items()
            )
        print(
            f"training {exp.name}: {exp.run} on {exp.env}, stop {exp.stop or 'never'}{sweep}; "
            f"results in {experiment_path}"
        )
        tuner = tune.Tuner(
            trainable,
            param_space=param_space(exp.algo_config, exp.search_space),
            tune_config=exp.tune.tune_config(),
            run_config=run_config,
        )
    grid = tuner.fit()
    # Tune returns normally after Ctrl+C; a trial that ended has failed or reported `done` (reached
    # its stop criteria, or was stopped by the scheduler), one that was interrupted has neither.
    finished = sum(1 for r in grid if r.error is not None or (r.metrics or {}).get("done"))
    interrupted = finished < exp.num_trials
    if (len(grid) > 1 or exp.is_sweep) and not interrupted:
        metric = exp.tune.metric_key
        column = metric_column(metric)
        groups = group_rows(trial_rows(grid, exp.search_space, metric), sort_by=column, mode=exp.tune.mode)
        title = f"{exp.name}: {len(grid)} trials, final values, mean ± std over seeds"
        print_summary(groups, title=title + (f", best {column} first" if column else ""))
        if "://" not in experiment_path:
            write_summary(groups, Path(experiment_path) / "sweep_summary.json")
            print(f"{exp.name}: summary written to {experiment_path}/sweep_summary.json")
    if tracking_uri:
        print(f"{exp.name}: MLflow runs in {tracking_uri}; browse them with: {ui_command(tracking_uri)}")

    failed = sum(1 for r in grid if r.error is not None)
    if interrupted:
        print(
            f"{exp.name}: interrupted after {finished} of {exp.num_trials} trials finished; the state is "
            f"saved in {experiment_path}. Continue with the same command and --resume."
        )
        return RunOutcome(exp.name, experiment_path, None, {}, failed, len(grid), interrupted=True)
    if len(grid) > 1:
        return _sweep_outcome(exp, grid, experiment_path, failed)
    last = grid[0] if len(grid) else None
    checkpoint = last.checkpoint.path if last is not None and last.checkpoint is not None else None
    metrics = dict(last.metrics or {}) if last is not None else {}
    summary = result_summary(metrics)
    if failed:
        for r in grid:
            if r.error is not None:
                print(f"{exp.name}: trial failed: {error_line(r.error)} (full traceback: {r.path}/error.txt)")
        if checkpoint:
            print(f"{exp.name}: its latest checkpoint, saved before the failure: {checkpoint}")
    ret = "n/a" if summary["return"] is None else f"{summary['return']:.2f}"
    wins = "" if summary["win_rate"] is None else f", win rate {100 * summary['win_rate']:.1f}%"
    if summary["eval_win_rate"] is not None:
        wins += f", test win rate {100 * summary['eval_win_rate']:.1f}%"
    elif last is not None:
        # The last iteration ran no test (evaluation_interval > 1): name the latest one instead.
        latest = last_reported(last.metrics_dataframe, EVAL_WIN_RATE_KEY)
        if latest is not None:
            wins += f", latest test win rate {100 * latest:.1f}%"
    backend = f" (backend {metrics['backend']})" if metrics.get("backend") else ""
    print(
        f"{exp.name}: {'failed' if failed else 'done'} after {summary['iteration']} iterations, "
        f"{int(summary['env_steps'] or 0)} env steps, return {ret}{wins}{backend}"
    )
    if checkpoint:
        if not failed:
            print(f"{exp.name}: final checkpoint {checkpoint}")
        print(f"  evaluate it with: rllib evaluate {checkpoint}")
    return RunOutcome(exp.name, experiment_path, checkpoint, metrics, failed, trials=len(grid))


def _sweep_outcome(exp: Experiment, grid: Any, experiment_path: str, failed: int) -> RunOutcome:
    """One line per trial (its sampled values and final checkpoint) after the sweep's table."""
    from rllib_grsn.sweep.search_space import sampled_values

    first = None
    for result in grid:
        values = sampled_values(result.config or {}, exp.search_space)
        setting = ", ".join(f"{'.'.join(p)}={v}" for p, v in values.items()) or "-"
        status = "failed" if result.error is not None else "done"
        where = result.checkpoint.path if result.checkpoint is not None else "no checkpoint"
        print(f"  {Path(result.path).name} [{setting}] {status}: {where}")
        if first is None and result.checkpoint is not None:
            first = result
    print(
        f"{exp.name}: {len(grid)} trials, {failed} failed; results in {experiment_path}; evaluate one "
        "with: rllib evaluate <checkpoint>"
    )
    # The outcome's checkpoint and metrics: the first trial that saved one.
    metrics = dict(first.metrics or {}) if first is not None else {}
    checkpoint = first.checkpoint.path if first is not None else None
    return RunOutcome(exp.name, experiment_path, checkpoint, metrics, failed, trials=len(grid))
