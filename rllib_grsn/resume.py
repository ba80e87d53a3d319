"""Resuming a run whose driver was killed at any moment: from each trial's newest complete checkpoint.

Tune records a trial's checkpoints in its experiment state (`experiment_state-<session>.json` next to
`tuner.pkl`), which the driver writes at its first step, before any trial has trained, and then once every
10 s or more (`TUNE_GLOBAL_CHECKPOINT_S`, "auto": max(10 s, 19 x the time a save takes)), copying it to
the storage path in the background; only `CheckpointConfig(num_to_keep)`, which deletes older checkpoints,
makes it save after a trial's checkpoints. A trainable copies each checkpoint straight into its
`checkpoint_NNNNNN` folder, file by file in parallel, before the driver hears of it. A driver killed in
between leaves checkpoints that the saved state does not list; resumed from that state alone, a trial
restarts from an older checkpoint or from scratch and writes its next checkpoints over the ones on disk.
So each checkpoint gets a marker once the driver holds it, and a resume first adds the marked checkpoints
the state lacks (through Tune's own Trial objects).
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
from ray import tune

logger = logging.getLogger(__name__)

# Written into a checkpoint folder once the driver has received the whole checkpoint.
COMPLETE_MARKER = ".checkpoint_complete.json"
# Tune's checkpoint folder names (StorageContext._make_checkpoint_dir_name).
_CHECKPOINT_DIR = re.compile(r"checkpoint_(\d{6})")
_STATE_FILE = re.compile(r"experiment_state-(.+)\.json")
_TUNER_FILE = "tuner.pkl"
# The prefix of what a resume sets aside: a checkpoint a kill left half-written, an unreadable state.
SET_ASIDE_PREFIX = "incomplete_"


class CheckpointCompleteMarker(tune.Callback):
    """Writes :data:`COMPLETE_MARKER` into each checkpoint as soon as the driver receives it.

    Tune calls ``on_checkpoint`` after the trainable has copied the whole checkpoint to storage and
    before it registers it; the marker holds the trial's result at that checkpoint (the counters Tune
    restores a trial's iteration, time and env steps from, and ``done`` for a final checkpoint).
    """

    def on_checkpoint(self, iteration: int, trials: list, trial: Any, checkpoint: Any, **info: Any) -> None:
        try:
            result = {k: v for k, v in (trial.last_result or {}).items() if k != "config"}
            marker = {"trial_id": trial.trial_id, "result": result}
            _write_atomically(
                checkpoint.filesystem,
                f"{checkpoint.path}/{COMPLETE_MARKER}",
                json.dumps(marker, default=_json_default).encode(),
            )
        except Exception as err:  # Tune drops a checkpoint whose callback raises: warn instead
            logger.warning(f"could not mark {checkpoint.path} complete ({err}); --resume will not use it")


@dataclass
class ResumePlan:
    """What :func:`prepare_resume` found in an experiment folder, and what it repaired."""

    restorable: bool  # Tune's saved state is there: continue with Tuner.restore
    refused: str | None = None  # why neither resuming nor starting afresh is right
    notes: list[str] = field(default_factory=list)  # one line per trial and per thing set aside


def prepare_resume(experiment_path: str) -> ResumePlan:
    """Makes Tune's saved state of ``experiment_path`` list every complete checkpoint on disk.

    For each trial of the state that had not finished, the checkpoints marked complete (see
    :class:`CheckpointCompleteMarker`) newer than the last one the state lists are registered with
    the trial, so Tune restores it from the newest and numbers its next checkpoint after it; a trial
    whose newest one was its final checkpoint is recorded as finished. Newer folders without a marker
    (the kill interrupted their copy, or came before the driver received them) are renamed
    ``incomplete_checkpoint_NNNNNN``: none is restored from or written into. An unreadable state
    file (a kill during its upload) is set aside with the files of its session and the previous state
    is used. Without any state (the driver was killed before Tune's first save, which precedes every
    trial) the run starts afresh, unless the folder holds checkpoints that a fresh run would leave
    behind: then it refuses.
    """
    from ray.train._internal.storage import get_fs_and_path

    fs, root = get_fs_and_path(experiment_path)
    entries = {info.base_name: info for info in _list(fs, root)}
    plan = ResumePlan(restorable=False)
    state_path, state = "", None
    for name in sorted((n for n in entries if _STATE_FILE.fullmatch(n)), reverse=True):
        try:
            state, state_path = json.loads(_read(fs, f"{root}/{name}")), f"{root}/{name}"
            if not isinstance(state.get("trial_data"), list):
                raise ValueError("no trial_data list")
            break
        except (OSError, ValueError, AttributeError) as err:
            state = None
            session = name.removeprefix("experiment_state-").removesuffix(".json")
            # experiment_state-, basic-variant-state-, searcher-state-, callback-states-<session>
            for other in sorted(n for n in entries if n.endswith((f"-{session}.json", f"-{session}.pkl"))):
                fs.move(f"{root}/{other}", f"{root}/{SET_ASIDE_PREFIX}{other}")
            plan.notes.append(
                f"Tune's state {name} is unreadable ({err}); set aside with its session's files"
            )
    trial_dirs = sorted(n for n, info in entries.items() if info.type == pafs.FileType.Directory)
    if state is None or _TUNER_FILE not in entries:
        with_checkpoints = [n for n in trial_dirs if _complete_checkpoints(fs, f"{root}/{n}")]
        if with_checkpoints:
            plan.refused = (
                f"{experiment_path} holds checkpoints ({', '.join(with_checkpoints)}) but no readable "
                f"Tune state ({_TUNER_FILE} and experiment_state-*.json) to resume them with; move it "
                "away to start afresh"
            )
        elif entries:
            plan.notes.append("the run was stopped before Tune saved its state (no trial had started)")
        return plan

    plan.restorable = True
    listed: set[str] = set()
    from_scratch: list[str] = []
    changed = False
    for i, (trial_json, metadata_json) in enumerate(state["trial_data"]):
        trial_dir_name, repaired = _repair_trial(
            fs, root, trial_json, metadata_json, plan.notes, from_scratch
        )
        listed.add(trial_dir_name)
        if repaired is not None:
            state["trial_data"][i] = list(repaired)
            changed = True
    if from_scratch:
        shown = ", ".join(from_scratch[:8]) + (
            f" and {len(from_scratch) - 8} more" if len(from_scratch) > 8 else ""
        )
        plan.notes.append(f"no checkpoint yet, so starting from the beginning: trial {shown}")
    if changed:
        _write_atomically(fs, state_path, json.dumps(state).encode())
    for name in trial_dirs:
        if name not in listed and _complete_checkpoints(fs, f"{root}/{name}"):
            # A sweep's trial that started after Tune's last save of the state, or another run's.
            plan.notes.append(
                f"{name} holds checkpoints but Tune's saved state does not list its trial: not resumed"
            )
    return plan


def _repair_trial(
    fs: Any, root: str, trial_json: str, metadata_json: str, notes: list[str], from_scratch: list[str]
) -> tuple[str, tuple[str, str] | None]:
    """Registers the marked checkpoints of one trial that the state lacks.

    Returns the trial's folder name and its new JSON state (None: unchanged); adds a line to ``notes``
    or, for an unfinished trial without a complete checkpoint, its id to ``from_scratch``.
    """
    from ray.train._internal.session import _TrainingResult
    from ray.tune.experiment.trial import Trial

    # A stub: no trainable lookup (the Tuner has not registered it yet).
    trial = Trial.from_json_state(trial_json, stub=True)
    trial.restore_run_metadata(metadata_json)
    folder_name = trial.storage.trial_dir_name or ""
    if trial.status == Trial.TERMINATED:
        return folder_name, None
    if not folder_name:  # Tune names a trial's folder when it first starts it
        from_scratch.append(trial.trial_id)
        return folder_name, None
    trial_dir = f"{root}/{folder_name}"
    name = f"trial {trial.trial_id}"
    registered = trial.run_metadata.checkpoint_manager.latest_checkpoint_result
    latest = _checkpoint_index(registered.checkpoint.path) if registered is not None else -1
    changed = False
    for index, folder in _checkpoint_folders(fs, trial_dir):
        if index <= latest:
            continue
        marker = _read_marker(fs, f"{trial_dir}/{folder}")
        if marker is None:
            what = _set_aside(fs, trial_dir, folder)
            notes.append(f"{name}: {folder} was not completely written before the kill; {what}")
            continue
        # The path as the state records it: Tune rewrites it if the experiment folder has moved.
        checkpoint = tune.Checkpoint(
            path=f"{trial.storage.trial_fs_path}/{folder}", filesystem=trial.storage.storage_filesystem
        )
        metrics = {**marker.get("result", {}), "done": False}
        trial.on_checkpoint(_TrainingResult(checkpoint=checkpoint, metrics=metrics))
        trial.storage.current_checkpoint_index = index
        latest, changed = index, True
    if latest < 0:
        from_scratch.append(trial.trial_id)
        return folder_name, None
    marker = _read_marker(fs, f"{trial_dir}/checkpoint_{latest:06d}") or {}
    result = marker.get("result") or (registered.metrics if registered is not None else {})
    if result.get("done"):
        # Its final checkpoint: it had finished (or the scheduler stopped it) when the driver was killed.
        trial.update_last_result(dict(result))
        trial.set_status(Trial.TERMINATED)
        notes.append(f"{name}: had finished before the kill (checkpoint_{latest:06d})")
        changed = True
    else:
        iteration = result.get("training_iteration", "?")
        notes.append(f"{name}: resumes from checkpoint_{latest:06d} (iteration {iteration})")
    if not changed:
        return folder_name, None
    trial.stub = False  # the state of a real trial: Tune validates its trainable on restore
    trial.invalidate_json_state()
    return folder_name, trial.get_json_state()


def _checkpoint_folders(fs: Any, trial_dir: str) -> list[tuple[int, str]]:
    """``(index, name)`` of the ``checkpoint_NNNNNN`` folders of a trial, oldest first."""
    return sorted(
        (int(m.group(1)), info.base_name)
        for info in _list(fs, trial_dir)
        if info.type == pafs.FileType.Directory and (m := _CHECKPOINT_DIR.fullmatch(info.base_name))
    )


def _complete_checkpoints(fs: Any, trial_dir: str) -> list[str]:
    return [n for _, n in _checkpoint_folders(fs, trial_dir) if _read_marker(fs, f"{trial_dir}/{n}")]


def _checkpoint_index(path: str) -> int:
    match = _CHECKPOINT_DIR.fullmatch(Path(path).name)
    return int(match.group(1)) if match else -1


def _read_marker(fs: Any, checkpoint_dir: str) -> dict[str, Any] | None:
    try:
        marker = json.loads(_read(fs, f"{checkpoint_dir}/{COMPLETE_MARKER}"))
    except (OSError, ValueError):  # absent, or (not atomic on this storage) cut short
        return None
    return marker if isinstance(marker, dict) else None


def _set_aside(fs: Any, trial_dir: str, folder: str) -> str:
    """Renames a half-written checkpoint folder ``incomplete_<name>``, or deletes it where the storage
    cannot rename folders (object stores); returns which it did."""
    taken = {info.base_name for info in _list(fs, trial_dir)}
    aside, n = SET_ASIDE_PREFIX + folder, 1
    while aside in taken:
        aside, n = f"{SET_ASIDE_PREFIX}{folder}_{n}", n + 1
    try:
        fs.move(f"{trial_dir}/{folder}", f"{trial_dir}/{aside}")
    except (OSError, NotImplementedError):
        fs.delete_dir(f"{trial_dir}/{folder}")
        return "deleted it"
    return f"renamed {aside}"


def _list(fs: Any, path: str) -> list[Any]:
    return fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))


def _read(fs: Any, path: str) -> str:
    with fs.open_input_stream(path) as f:
        return f.readall().decode()


def _write_atomically(fs: Any, path: str, data: bytes) -> None:
    """Writes ``path`` through a temporary file renamed over it: a kill never leaves it cut short."""
    tmp = f"{path}.{time.time_ns()}.tmp"
    with fs.open_output_stream(tmp) as f:
        f.write(data)
    fs.move(tmp, path)


def _json_default(value: Any) -> Any:
    # Results hold numpy scalars and arrays; anything else is kept as its text.
    return value.tolist() if hasattr(value, "tolist") else str(value)
