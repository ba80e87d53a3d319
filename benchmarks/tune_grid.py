"""A Ray Tune grid of tuned examples over seeds, with one resumable JSON record per trial.

Shared by the benchmarks that train many (tuned example, seed) trials: ``reproduce_table1.py``
(the paper's Table 1) and ``qmix_learning_curve.py`` (issue #4's SMAX 8m learning curves). Both
need the same things, and they are kept here so that a fix reaches both:

- each trial is a Tune *function* trainable on one CPU with torch pinned to one thread, so N CPUs
  run N trials side by side without oversubscribing (:func:`experiment_for_trial`);
- a trial writes its record (the curve so far) after every iteration (:func:`train_recorded`), so
  a grid killed after hours keeps every finished iteration, and running the same command again
  skips the trials whose record is ``complete`` (:func:`run_grid`, :func:`is_complete`);
- with ``--checkpoint-every`` a trial also saves an Algorithm checkpoint (weights, optimisers, replay
  where the algorithm stores it, counters) beside its record, and an interrupted trial resumes from
  it instead of from zero (:func:`checkpoint_dir`);
- a line per running trial every 10 minutes and one per finished trial (:class:`TrialProgress`),
  since a full grid runs for hours;
- the same command-line options, parsed the same way (:func:`add_grid_options`,
  :func:`check_grid_args`, :func:`csv_choices`, :func:`json_object`), and the same report file
  (:func:`train_and_collect`, :func:`write_report`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray.tune import Callback

from benchmarks.machine import machine_description

# ``result[k0][k1]...``, or None where a level is missing (evaluation runs only some iterations).
from rllib_grsn.sweep.search_space import get_path as nested

if TYPE_CHECKING:
    from rllib_grsn.experiment import Experiment

REPO = Path(__file__).resolve().parents[1]
ENV_STEPS = "num_env_steps_sampled_lifetime"
# The record as it was when a resume checkpoint was saved, inside the checkpoint's folder.
CHECKPOINT_RECORD = "trial_record.json"
# Record keys that must agree between a checkpoint and the trial about to resume from it.
RESUME_IDENTITY = ("seed", "target_env_steps")

# Record key -> result key path; the value of every iteration is appended to the record's list.
Series = dict[str, tuple[str, ...]]
# Called after each iteration's values are appended, before the record is written.
AfterIteration = Callable[[Any, dict[str, Any], dict[str, Any]], None]


def is_complete(path: Path) -> bool:
    """Whether ``path`` is a trial record that reached its env-step budget (unreadable: no)."""
    try:
        return bool(json.loads(path.read_text()).get("complete"))
    except (OSError, ValueError):
        return False


def load_records(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """The records (complete or not) among ``paths`` that exist, in the order given."""
    return [json.loads(path.read_text()) for path in paths if path.is_file()]


def experiment_for_trial(path: Path, overrides: dict[str, Any], seed: int) -> Experiment:
    """One tuned example with ``overrides`` deep-merged and ``seed`` set, inside a Tune trial.

    torch is pinned first to as many threads as the trial has CPUs (``--cpus-per-trial``; one outside
    Ray): torch's default, one thread per core, would make parallel trials fight over every core.
    """
    import torch

    torch.set_num_threads(trial_cpus())
    from rllib_grsn.experiment import deep_merge, load_experiments

    (experiment,) = load_experiments(path, config=deep_merge(overrides, {"seed": seed}))
    return experiment


def trial_cpus() -> int:
    """The CPUs Ray gave the calling trial (``--cpus-per-trial``), or 1 outside a Ray worker."""
    import ray

    # The driver (a script or a test with Ray running) has no assigned resources to ask about.
    if not ray.is_initialized() or ray.get_runtime_context().worker.mode != ray.WORKER_MODE:
        return 1
    return max(1, int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1)))


def checkpoint_dir(path: Path) -> Path:
    """The resume checkpoint of the trial whose record is ``path``: ``<record stem>.ckpt/`` beside it."""
    return path.parent / f"{path.stem}.ckpt"


def _staging_dir(path: Path) -> Path:
    return path.parent / f"{path.stem}.ckpt.tmp"


def saved_checkpoint(path: Path) -> tuple[Path, dict[str, Any]] | None:
    """The newest whole resume checkpoint of the trial recorded at ``path`` and its record, or None.

    A checkpoint counts once its record is written, which is the last step of saving one; the
    staging folder is looked at too, for a trial killed between removing the old checkpoint and
    renaming the new one into place.
    """
    for directory in (checkpoint_dir(path), _staging_dir(path)):
        try:
            return directory, json.loads((directory / CHECKPOINT_RECORD).read_text())
        except (OSError, ValueError):
            continue
    return None


def remove_checkpoint(path: Path) -> None:
    """Deletes the resume checkpoint (and any half-written one) of the trial recorded at ``path``."""
    for directory in (checkpoint_dir(path), _staging_dir(path)):
        shutil.rmtree(directory, ignore_errors=True)


def _save_checkpoint(algo: Any, record: dict[str, Any], path: Path) -> None:
    # Written aside and renamed into place, so a trial killed mid-save still has its previous one.
    staging, final = _staging_dir(path), checkpoint_dir(path)
    shutil.rmtree(staging, ignore_errors=True)
    algo.save_to_path(staging)
    (staging / CHECKPOINT_RECORD).write_text(json.dumps(record))
    shutil.rmtree(final, ignore_errors=True)
    staging.rename(final)


def _resumable(path: Path, record: dict[str, Any]) -> tuple[Path, dict[str, Any]] | None:
    """The checkpoint to resume the trial from, or None (none saved, or saved for another trial)."""
    saved = saved_checkpoint(path)
    if saved is None:
        return None
    directory, saved_record = saved
    mismatched = [key for key in RESUME_IDENTITY if saved_record.get(key) != record.get(key)]
    if mismatched or not saved_record.get("env_steps"):
        why = ", ".join(mismatched) or "empty record"
        print(f"{directory}: not this trial's checkpoint ({why} differs); training from zero", flush=True)
        return None
    return saved


def train_recorded(
    experiment: Experiment,
    record: dict[str, Any],
    path: Path,
    steps: int,
    series: Series,
    after_iteration: AfterIteration | None = None,
    checkpoint_every: int = 0,
) -> None:
    """Trains ``experiment`` to ``steps`` env steps, writing ``record`` to ``path`` after every iteration.

    ``record`` needs an ``env_steps`` list and one list per key of ``series``; each iteration appends
    the env steps so far and each series' value (NaN where the result lacks it, e.g. an iteration
    without evaluation), calls ``after_iteration(algo, record, result)``, then sets ``complete``
    and ``wall_s`` (build time included) and writes the file. Tune gets the latest values too.
    ``torch_threads`` and ``machines`` (the CPU and core count of each run of the trial) are recorded
    beside ``wall_s``, which means little without them.

    With ``checkpoint_every`` > 0 env steps, the algorithm is also checkpointed (:func:`checkpoint_dir`)
    each time the env steps pass the next multiple of it. A trial that finds a checkpoint of
    itself (same ``seed`` and ``target_env_steps``) restores it and carries on from the record saved
    with it: ``resumed_at_env_steps`` lists where, and ``wall_s`` keeps counting the earlier runs'
    time. The checkpoint is deleted once the trial completes.
    """
    import torch
    from ray import tune

    # Resumed whenever a checkpoint is there: checkpoint_every only says how often to save one.
    resume = _resumable(path, record)
    if resume is not None:
        record.clear()
        record.update(resume[1])
        record["resumed_at_env_steps"] = [*record.get("resumed_at_env_steps", []), record["env_steps"][-1]]
    record["torch_threads"] = torch.get_num_threads()
    # Appended, not set: a resumed trial may go on on another machine.
    record["machines"] = list(dict.fromkeys([*record.get("machines", []), machine_description()]))

    start = time.time() - float(record.get("wall_s") or 0.0)
    algo = experiment.algo_config.build_algo()
    try:
        if resume is not None:
            algo.restore_from_path(resume[0])
            print(f"resumed {path.name} at {record['env_steps'][-1]} env steps from {resume[0]}", flush=True)
        while not record["env_steps"] or record["env_steps"][-1] < steps:
            before = record["env_steps"][-1] if record["env_steps"] else 0
            result = algo.train()
            record["env_steps"].append(int(result[ENV_STEPS]))
            for key, keys in series.items():
                value = nested(result, keys)
                record[key].append(float("nan") if value is None else float(value))
            if after_iteration is not None:
                after_iteration(algo, record, result)
            record["complete"] = record["env_steps"][-1] >= steps
            record["wall_s"] = round(time.time() - start, 1)
            path.write_text(json.dumps(record))
            # Saved on passing a multiple of checkpoint_every (iterations need not end on one).
            checkpoint_due = checkpoint_every > 0 and not record["complete"]
            if checkpoint_due and record["env_steps"][-1] // checkpoint_every > before // checkpoint_every:
                _save_checkpoint(algo, record, path)
            latest = {key: record[key][-1] for key in ("env_steps", *series)}
            tune.report({**latest, "wall_s": record["wall_s"], "target_env_steps": steps})
    finally:
        algo.stop()
    if record["complete"]:
        remove_checkpoint(path)


class TrialProgress(Callback):
    """Progress of a grid that runs for hours: a line per running trial every ``every_s`` seconds,
    and a line per finished trial.

    A finished trial's line has the count, ``describe(cell, last_result)``, then the trial's own
    training time and the time since the grid started. Both are shown because with several trials at
    once the grid's clock says nothing about one trial's cost. The trial's time is its record's
    ``wall_s`` (earlier runs of a resumed trial included), or Tune's ``time_total_s`` without one.

    A running trial's line has ``describe`` of its latest values (a NaN, e.g. an iteration without
    a test, keeps the value before it), its env steps of ``target_env_steps``, its env steps/s since
    this grid started it, and the time left at that rate.
    """

    def __init__(
        self,
        total: int,
        describe: Callable[[dict[str, Any], dict[str, Any]], str],
        every_s: float = 600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.total = total
        self.describe = describe
        self.every_s = every_s
        self.clock = clock
        self.done = 0
        self.start = clock()
        # Per trial id: the latest non-NaN value of each result key, and when and at which env
        # steps the trial first reported in this grid (a resumed trial starts past zero).
        self._latest: dict[str, dict[str, Any]] = {}
        self._first: dict[str, tuple[float, int]] = {}
        self._printed: dict[str, float] = {}

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        latest = self._latest.setdefault(trial.trial_id, {})
        latest.update({k: v for k, v in result.items() if not (isinstance(v, float) and v != v)})
        now, steps = self.clock(), int(result.get("env_steps", 0))
        first_s, first_steps = self._first.setdefault(trial.trial_id, (now, steps))
        if now - self._printed.get(trial.trial_id, first_s) < self.every_s:
            return
        self._printed[trial.trial_id] = now
        rate = (steps - first_steps) / (now - first_s)
        target = int(result.get("target_env_steps", 0))
        left = f", about {_duration((target - steps) / rate)} left" if rate > 0 and target > steps else ""
        print(
            f"  {self.describe(trial.config['cell'], latest)} [{steps:,} of {target:,} env steps, "
            f"{rate:.0f} env steps/s{left}]",
            flush=True,
        )

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.done += 1
        line = self.describe(trial.config["cell"], trial.last_result or {})
        last = trial.last_result or {}
        trial_s = last.get("wall_s", last.get("time_total_s", float("nan")))
        grid_s = self.clock() - self.start
        print(f"[{self.done}/{self.total}] {line} (trial {trial_s:.0f} s, grid {grid_s:.0f} s)", flush=True)


def _duration(seconds: float) -> str:
    """4980 -> '1h23m', 300 -> '5m': a time left as a person reads it."""
    minutes = round(seconds / 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"


def run_grid(
    trainable: Callable[[dict[str, Any]], None],
    cells: list[dict[str, Any]],
    shared: dict[str, Any],
    *,
    path_of: Callable[[dict[str, Any]], Path],
    rerun: bool,
    name: str,
    num_cpus: int,
    storage_path: str,
    describe: Callable[[dict[str, Any], dict[str, Any]], str],
    cpus_per_trial: int = 1,
) -> None:
    """Runs ``trainable`` once per cell (``config["cell"]``, plus ``shared``), ``cpus_per_trial`` CPUs
    each, ``num_cpus // cpus_per_trial`` at a time.

    Cells whose record ``path_of(cell)`` is complete are skipped unless ``rerun``: that is how an
    interrupted grid resumes (an unfinished trial from its resume checkpoint, if it saved one;
    ``rerun`` deletes those first, so every trial starts from zero). Ray is started here with
    ``num_cpus`` and shut down here, also on errors, so a caller (or a test) never inherits a running Ray.
    """
    import ray
    from ray import tune

    todo = [cell for cell in cells if rerun or not is_complete(path_of(cell))]
    if not todo:
        print(f"every requested trial already has a complete record in {path_of(cells[0]).parent}")
        return
    resuming = []
    for cell in todo:
        if rerun:
            remove_checkpoint(path_of(cell))
        elif (saved := saved_checkpoint(path_of(cell))) is not None and saved[1].get("env_steps"):
            resuming.append(f"{path_of(cell).stem} at {saved[1]['env_steps'][-1]}")
    if resuming:
        print(f"resuming from checkpoints: {', '.join(resuming)} env steps", flush=True)
    path_of(todo[0]).parent.mkdir(parents=True, exist_ok=True)
    # address="local": the grid is sized by --num-cpus on this machine, so it starts its own Ray rather
    # than joining one named in /tmp/ray/ray_current_cluster (which would refuse num_cpus).
    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    try:
        tuner = tune.Tuner(
            tune.with_resources(trainable, {"cpu": cpus_per_trial}),
            param_space={"cell": tune.grid_search(todo), **shared},
            tune_config=tune.TuneConfig(max_concurrent_trials=num_cpus // cpus_per_trial),
            run_config=tune.RunConfig(
                name=name,
                storage_path=str(Path(storage_path).resolve()),
                verbose=0,
                callbacks=[TrialProgress(len(todo), describe)],
            ),
        )
        tuner.fit()
    finally:
        ray.shutdown()


def train_and_collect(
    args: argparse.Namespace,
    train: Callable[[argparse.Namespace], None],
    collect: Callable[[argparse.Namespace], list[dict[str, Any]]],
) -> list[dict[str, Any]]:
    """Trains the grid unless ``--report-only``, then reads back every requested record, earlier
    runs' included: the report always covers the whole requested grid, not just this run."""
    if not args.report_only:
        train(args)
    return collect(args)


def csv_choices(value: str, allowed: tuple[str, ...], option: str) -> tuple[str, ...]:
    """A comma-separated option value as a tuple, refused (naming what is allowed) if empty or unknown."""
    items = tuple(v.strip() for v in value.split(",") if v.strip())
    bad = [v for v in items if v not in allowed]
    if bad or not items:
        raise argparse.ArgumentTypeError(f"{option}: unknown {bad or value!r}; allowed: {', '.join(allowed)}")
    return items


def json_object(text: str) -> dict[str, Any]:
    """A ``--config`` value: a JSON object, or an argparse error that says what is wrong."""
    try:
        value = json.loads(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"--config: not JSON: {err}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("--config: must be a JSON object")
    return value


def add_grid_options(
    parser: argparse.ArgumentParser,
    *,
    seeds: int,
    storage_path: Path,
    out: Any,
    checkpoint_every: int,
    checkpoint_note: str = "",
) -> None:
    """The options every grid benchmark has: seeds, Ray CPUs, where results go, overrides, resume."""
    parser.add_argument(
        "--seeds", type=int, default=seeds, help="seeds first-seed .. first-seed+N-1 per cell"
    )
    parser.add_argument("--first-seed", type=int, default=0, help="first seed of the range")
    parser.add_argument(
        "--num-cpus",
        type=int,
        default=os.cpu_count() or 2,
        help="CPUs for Ray: num-cpus / cpus-per-trial trials run at once",
    )
    parser.add_argument(
        "--cpus-per-trial",
        type=int,
        default=1,
        help="CPUs, and torch threads, per trial: fewer trials at a time, each one sooner done",
    )
    parser.add_argument("--storage-path", default=str(storage_path), help="Tune results directory")
    parser.add_argument(
        "--out",
        type=Path,
        default=out,
        help="JSON report (every trial's record and the table); the figure goes next to it as .png "
        "and the per-trial records into <out>_trials*/",
    )
    parser.add_argument(
        "--config",
        type=json_object,
        default={},
        help="JSON deep-merged into every tuned example's config, e.g. '{\"num_learners\": 1}'",
    )
    parser.add_argument(
        "--checkpoint-every",
        type=int,
        default=checkpoint_every,
        metavar="STEPS",
        help="checkpoint each trial every STEPS env steps beside its record, so an interrupted trial "
        f"resumes from there instead of from zero (0: never){checkpoint_note}",
    )
    parser.add_argument(
        "--rerun",
        action="store_true",
        help="train trials again, from zero, even when a complete record or a checkpoint exists",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="train nothing: rebuild the table, JSON and figure from the records in --out's folder",
    )


def check_grid_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuses impossible grid options and sets ``args.seed_list``."""
    if args.seeds < 1 or args.first_seed < 0 or args.num_cpus < 1:
        parser.error("--seeds and --num-cpus must be >= 1 and --first-seed >= 0")
    if args.checkpoint_every < 0:
        parser.error("--checkpoint-every must be >= 0 (0: no checkpoints)")
    if not 1 <= args.cpus_per_trial <= args.num_cpus:
        parser.error(f"--cpus-per-trial must be between 1 and --num-cpus ({args.num_cpus})")
    args.seed_list = list(range(args.first_seed, args.first_seed + args.seeds))


def set_trials_dir(args: argparse.Namespace, tag: str) -> None:
    """``args.trials_dir``: ``<out>_trials<tag>[_custom]`` next to ``--out``. Records of another budget
    or override (``tag``, ``--config``) get their own folder, so one never passes for another."""
    tag += "_custom" if args.config else ""
    args.trials_dir = args.out.parent / f"{args.out.stem}_trials{tag}"


def write_report(
    args: argparse.Namespace,
    argv: list[str] | None,
    module: str,
    report: dict[str, Any],
    rows: list[dict[str, Any]],
    plot: Callable[[Path], None],
) -> dict[str, Any]:
    """Writes ``--out`` (the machines, the command and ``report``, then every record) and its figure.

    The machines and the exact command go first because a number is only comparable with others
    measured on the same CPU with the same options. ``machine`` is where the report was written;
    ``trial_machines`` counts the records by the machines they trained on (a grid that ran over
    several sessions may have run on several).
    """
    command = " ".join([f"python -m {module}", *(sys.argv[1:] if argv is None else argv)])
    report = {
        "machine": machine_description(),
        "trial_machines": trial_machines(rows),
        "command": command,
        **report,
        "trials": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    if rows:
        try:
            plot(args.out.with_suffix(".png"))
        except ImportError:
            print("matplotlib is not installed (pip install -e .[bench]); no plot written")
    return report


def trial_machines(rows: list[dict[str, Any]]) -> dict[str, int]:
    """How many records trained on each machine; a record written before records named their
    machine counts as ``"not recorded"``, and one that ran on several names them joined by ``" + "``."""
    counts: dict[str, int] = {}
    for row in rows:
        name = " + ".join(row.get("machines") or ["not recorded"])
        counts[name] = counts.get(name, 0) + 1
    return counts


def describe_machines(report: dict[str, Any]) -> str:
    """``trial_machines`` of a report in words: ``"<machine> (number of records), ..."``."""
    return ", ".join(f"{name} ({n})" for name, n in report["trial_machines"].items()) or "no machine"


def count_incomplete(rows: list[dict[str, Any]], expected: int, trials_dir: Path) -> int:
    """How many of the ``expected`` trials lack a complete record, said aloud when any do."""
    incomplete = expected - sum(1 for r in rows if r["complete"])
    if incomplete:
        print(f"{incomplete} of {expected} trials have no complete record (see {trials_dir})")
    return incomplete
