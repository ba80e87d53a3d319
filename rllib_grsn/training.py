"""Runs one validated experiment through Ray Tune and reports where its checkpoint went."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray import tune

from rllib_grsn.experiment import Experiment
from rllib_grsn.tracking.progress import ProgressPrinter, result_summary


@dataclass
class RunOutcome:
    """What a finished experiment left behind."""

    name: str
    experiment_path: str
    checkpoint: str | None
    last_result: dict[str, Any]
    failed: int


def _storage_uri(storage_path: str) -> str:
    # Tune accepts URIs (s3://, gs://) as they are; local paths must be absolute.
    return storage_path if "://" in storage_path else str(Path(storage_path).expanduser().resolve())


def run_experiment(
    exp: Experiment,
    *,
    storage_path: str,
    resume: bool = False,
    callbacks: list[tune.Callback] | None = None,
) -> RunOutcome:
    """Trains ``exp`` with Tune; with ``resume`` continues an interrupted run of the same name."""
    storage = _storage_uri(storage_path)
    experiment_path = f"{storage.rstrip('/')}/{exp.name}"
    trainable = exp.algorithm_class
    run_config = tune.RunConfig(
        name=exp.name,
        storage_path=storage,
        stop=exp.stop or None,
        checkpoint_config=tune.CheckpointConfig(
            checkpoint_frequency=exp.checkpoint_freq, checkpoint_at_end=exp.checkpoint_at_end
        ),
        callbacks=[ProgressPrinter(), *(callbacks or [])],
        verbose=0,
    )
    if resume and tune.Tuner.can_restore(experiment_path):
        print(f"resuming {exp.name} from {experiment_path}")
        # The original run's config and settings are restored with it (the CLI warns that new
        # --stop/--config values are not applied); a param_space would have to match it key for key.
        tuner = tune.Tuner.restore(experiment_path, trainable=trainable, resume_errored=True)
    else:
        if resume:
            print(f"nothing to resume at {experiment_path}; starting {exp.name} afresh")
        print(
            f"training {exp.name}: {exp.run} on {exp.env}, stop {exp.stop or 'never'}; "
            f"results in {experiment_path}"
        )
        tuner = tune.Tuner(trainable, param_space=exp.algo_config, run_config=run_config)
    grid = tuner.fit()

    failed = sum(1 for r in grid if r.error is not None)
    last = grid[0] if len(grid) else None
    checkpoint = last.checkpoint.path if last is not None and last.checkpoint is not None else None
    metrics = dict(last.metrics or {}) if last is not None else {}
    summary = result_summary(metrics)
    if failed:
        print(f"{exp.name}: {failed} trial(s) failed: {[str(r.error) for r in grid if r.error is not None]}")
    ret = "n/a" if summary["return"] is None else f"{summary['return']:.2f}"
    wins = ""
    for key, label in (("win_rate", "win rate"), ("eval_win_rate", "test win rate")):
        if summary[key] is not None:
            wins += f", {label} {100 * summary[key]:.1f}%"
    backend = f" (backend {metrics['backend']})" if metrics.get("backend") else ""
    print(
        f"{exp.name}: done after {summary['iteration']} iterations, "
        f"{int(summary['env_steps'] or 0)} env steps, return {ret}{wins}{backend}"
    )
    if checkpoint:
        print(f"{exp.name}: final checkpoint {checkpoint}")
        print(f"  evaluate it with: rllib evaluate {checkpoint}")
    return RunOutcome(exp.name, experiment_path, checkpoint, metrics, failed)
