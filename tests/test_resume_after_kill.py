"""`rllib train file --resume` after the driver was killed with SIGKILL, at the moments that matter.

Tune writes its experiment state (which lists each trial's checkpoints) at its first step and then every
10 s or more, while trainables write checkpoints whenever they are due; `--resume` must continue each
trial from its newest complete checkpoint all the same, never from scratch while one exists, never
writing over a saved one and never restoring a half-written one (rllib_grsn.resume.prepare_resume).

The fast tests lay experiment folders out as a killed run leaves them; the slow ones kill the real
command. Each driver runs in a session of its own, so every process it starts (Ray's gcs_server,
raylet and workers, some in process groups of their own) can be found, killed and checked gone.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rllib_grsn.resume import COMPLETE_MARKER, CheckpointCompleteMarker, ResumePlan, prepare_resume

REPO = Path(__file__).resolve().parents[1]
TUNED = REPO / "tuned_examples" / "cartpole_p_grsn.yaml"
EXPERIMENT = "cartpole-p-grsn-ppo"
BATCH = 200  # env steps per iteration
ITERATIONS = 4
SMALL = {"train_batch_size": BATCH, "minibatch_size": 100, "num_epochs": 1, "num_env_runners": 0}
WAIT_S = 180  # for a trigger (a file appearing) or a command to end
GONE_S = 30  # for a killed command's processes to go

# ----------------------------------------------------------------------------- folders as a kill leaves them

SESSION = "2026-01-01_00-00-00"


def _trial(root: Path, trial_id: str, *, registered: tuple[int, ...] = (), status: str = "RUNNING") -> Any:
    """A Tune trial of the experiment at ``root`` as its saved state holds it."""
    from ray.train._internal.session import _TrainingResult
    from ray.train._internal.storage import StorageContext
    from ray.tune import Checkpoint, PlacementGroupFactory
    from ray.tune.experiment.trial import Trial

    storage = StorageContext(
        storage_path=str(root.parent), experiment_dir_name=root.name, trial_dir_name=f"PPO_env_{trial_id}"
    )
    trial = Trial(
        "PPO",
        config={"lr": 1e-3},
        trial_id=trial_id,
        stub=True,
        storage=storage,
        placement_group_factory=PlacementGroupFactory([{"CPU": 1}]),
    )
    trial.create_placement_group_factory()
    for index in registered:
        path = f"{storage.trial_fs_path}/checkpoint_{index:06d}"
        trial.on_checkpoint(_TrainingResult(Checkpoint(path), {"training_iteration": index + 1}))
    trial.set_status(status)
    trial.stub = False
    return trial


def _write_state(root: Path, trials: list[Any], session: str = SESSION) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "tuner.pkl").write_bytes(b"tuner")
    state = {"trial_data": [list(t.get_json_state()) for t in trials], "runner_data": {}, "stats": {}}
    path = root / f"experiment_state-{session}.json"
    path.write_text(json.dumps(state))
    (root / f"basic-variant-state-{session}.json").write_text("{}")
    return path


def _checkpoint(root: Path, trial_id: str, index: int, *, marked: bool = True, done: bool = False) -> Path:
    folder = root / f"PPO_env_{trial_id}" / f"checkpoint_{index:06d}"
    (folder / "learner_group").mkdir(parents=True)
    (folder / "rllib_checkpoint.json").write_text("{}")
    (folder / "learner_group" / "state.pkl").write_bytes(os.urandom(64))
    if marked:
        result = {"training_iteration": index + 1, "num_env_steps_sampled_lifetime": BATCH * (index + 1)}
        result["done"] = done
        (folder / COMPLETE_MARKER).write_text(json.dumps({"trial_id": trial_id, "result": result}))
    return folder


def _saved_trials(state_path: Path) -> dict[str, Any]:
    from ray.tune.experiment.trial import Trial

    saved = {}
    for trial_json, metadata_json in json.loads(state_path.read_text())["trial_data"]:
        assert json.loads(trial_json)["stub"] is False  # Tune restores it as a real trial
        trial = Trial.from_json_state(trial_json, stub=True)
        trial.restore_run_metadata(metadata_json)
        saved[trial.trial_id] = trial
    return saved


def _latest(trial: Any) -> str | None:
    result = trial.run_metadata.checkpoint_manager.latest_checkpoint_result
    return Path(result.checkpoint.path).name if result is not None else None


def test_marked_checkpoints_the_state_lacks_are_registered_and_a_half_written_one_set_aside(tmp_path):
    root = tmp_path / "exp"
    state = _write_state(root, [_trial(root, "a_00000", registered=[0])])
    for index in (0, 1, 2):
        _checkpoint(root, "a_00000", index)
    half = _checkpoint(root, "a_00000", 3, marked=False)

    plan = prepare_resume(str(root))

    assert plan.restorable and plan.refused is None
    trial = _saved_trials(state)["a_00000"]
    assert _latest(trial) == "checkpoint_000002"
    assert trial.storage.current_checkpoint_index == 2  # the next checkpoint is checkpoint_000003
    metrics = trial.run_metadata.checkpoint_manager.latest_checkpoint_result.metrics
    assert metrics["training_iteration"] == 3 and metrics["num_env_steps_sampled_lifetime"] == 3 * BATCH
    assert trial.status == "PENDING"  # Tune resumes it
    assert (
        not half.exists()
        and (half.parent / "incomplete_checkpoint_000003" / "rllib_checkpoint.json").is_file()
    )
    assert "trial a_00000: resumes from checkpoint_000002 (iteration 3)" in plan.notes
    assert any("checkpoint_000003 was not completely written" in n for n in plan.notes), plan.notes


def test_a_sweep_trial_whose_final_checkpoint_is_marked_is_recorded_as_finished(tmp_path):
    root = tmp_path / "exp"
    trials = [_trial(root, "s_00000"), _trial(root, "s_00001"), _trial(root, "s_00002", status="PENDING")]
    state = _write_state(root, trials)
    _checkpoint(root, "s_00000", 0)
    _checkpoint(root, "s_00000", 1, done=True)
    _checkpoint(root, "s_00001", 0)

    plan = prepare_resume(str(root))

    saved = _saved_trials(state)
    assert saved["s_00000"].status == "TERMINATED" and _latest(saved["s_00000"]) == "checkpoint_000001"
    assert saved["s_00000"].last_result["done"] is True  # the run's summary counts it as finished
    assert saved["s_00001"].status == "PENDING" and _latest(saved["s_00001"]) == "checkpoint_000000"
    assert _latest(saved["s_00002"]) is None
    assert "trial s_00000: had finished before the kill (checkpoint_000001)" in plan.notes
    assert "no checkpoint yet, so starting from the beginning: trial s_00002" in plan.notes


def test_trial_folders_the_state_does_not_list_are_named(tmp_path):
    root = tmp_path / "exp"
    _write_state(root, [_trial(root, "a_00000")])
    _checkpoint(root, "a_00000", 0)
    _checkpoint(root, "b_00001", 0)  # started after Tune's last save of its state

    plan = prepare_resume(str(root))

    assert any(n.startswith("PPO_env_b_00001 holds checkpoints but") for n in plan.notes), plan.notes


def test_an_unreadable_state_is_set_aside_with_its_session_and_the_previous_one_used(tmp_path):
    root = tmp_path / "exp"
    older = _write_state(root, [_trial(root, "a_00000")], session="2026-01-01_00-00-00")
    newer = _write_state(root, [_trial(root, "a_00000")], session="2026-01-01_00-10-00")
    newer.write_text(newer.read_text()[:100])  # cut short by the kill
    _checkpoint(root, "a_00000", 0)

    plan = prepare_resume(str(root))

    assert plan.restorable
    assert not newer.exists() and (root / f"incomplete_{newer.name}").is_file()
    assert not (root / "basic-variant-state-2026-01-01_00-10-00.json").exists()
    assert (root / "basic-variant-state-2026-01-01_00-00-00.json").exists()
    assert _latest(_saved_trials(older)["a_00000"]) == "checkpoint_000000"


def test_without_tune_state_it_starts_afresh_but_not_over_checkpoints(tmp_path):
    assert prepare_resume(str(tmp_path / "never-run")) == ResumePlan(restorable=False)

    root = tmp_path / "exp"
    root.mkdir()
    (root / "tuner.pkl").write_bytes(b"tuner")  # killed before Tune's first save of its state
    plan = prepare_resume(str(root))
    assert not plan.restorable and plan.refused is None
    assert plan.notes == ["the run was stopped before Tune saved its state (no trial had started)"]

    _checkpoint(root, "a_00000", 0)
    plan = prepare_resume(str(root))
    assert not plan.restorable and plan.refused and "PPO_env_a_00000" in plan.refused


def test_the_marker_is_written_atomically_and_a_failure_only_warns(tmp_path, caplog):
    from ray.tune import Checkpoint

    class Trial:
        trial_id = "a_00000"
        last_result = {"training_iteration": 2, "config": {"not": "kept"}, "x": np.float32(1.5)}

    folder = tmp_path / "checkpoint_000001"
    folder.mkdir()
    CheckpointCompleteMarker().on_checkpoint(0, [], Trial(), Checkpoint(str(folder)))
    assert [p.name for p in folder.iterdir()] == [COMPLETE_MARKER]
    marker = json.loads((folder / COMPLETE_MARKER).read_text())
    assert marker == {"trial_id": "a_00000", "result": {"training_iteration": 2, "x": 1.5}}

    CheckpointCompleteMarker().on_checkpoint(0, [], Trial(), Checkpoint(str(tmp_path / "gone" / "x")))
    assert "could not mark" in caplog.text


# ----------------------------------------------------------------------------- the real command, killed


class Driver:
    """One ``rllib train file`` command in a session of its own, its output in a file."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path):
        self.log = log
        with log.open("w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "rllib_grsn.cli", *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=REPO,
                env=env,
                start_new_session=True,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def processes(self) -> list[str]:
        """``pid command`` of each live process of the command's session (``ps``; zombies are gone)."""
        ps = subprocess.run(
            ["ps", "-e", "-ww", "-o", "pid=,sid=,stat=,args="], capture_output=True, text=True, timeout=30
        ).stdout
        found = []
        for line in ps.splitlines():
            pid, sid, stat, *args = [*line.split(None, 3), ""]
            if sid == str(self.proc.pid) and not stat.startswith("Z"):
                found.append(f"{pid} {args[0][:150]}")
        return found

    def wait_for(self, ready: Callable[[], bool], what: str, poll_s: float = 0.05) -> None:
        deadline = time.monotonic() + WAIT_S
        while not ready():
            assert self.proc.poll() is None, (
                f"ended (code {self.proc.returncode}) before {what}:\n{self.tail()}"
            )
            assert time.monotonic() < deadline, f"no {what} after {WAIT_S} s:\n{self.tail()}"
            time.sleep(poll_s)

    def wait(self) -> int:
        try:
            return self.proc.wait(timeout=WAIT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running after {WAIT_S} s:\n{self.tail()}")

    def gone(self, grace_s: float) -> list[str]:
        """Waits up to ``grace_s`` for the session's processes to end; returns those left."""
        deadline = time.monotonic() + grace_s
        left = self.processes()
        while left and time.monotonic() < deadline:
            time.sleep(0.5)
            left = self.processes()
        return left

    def kill(self) -> list[str]:
        """SIGKILLs every process of the session; returns those that outlived ``GONE_S``."""
        try:  # the driver's process group first, at once; then whatever of the session is left
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + GONE_S
        left = self.processes()
        while left and time.monotonic() < deadline:
            for entry in left:
                try:
                    os.kill(int(entry.split()[0]), signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.2)
            left = self.processes()
        try:
            self.proc.wait(timeout=GONE_S)
        except subprocess.TimeoutExpired:
            left.append(f"{self.proc.pid} (the driver)")
        return left

    def tail(self) -> str:
        return self.output()[-6000:]


@pytest.fixture
def rllib(tmp_path: Path) -> Iterator[Callable[..., Driver]]:
    """Starts ``rllib train file`` on the tiny PPO run; every process of every command is gone after."""
    ray_tmp = Path(tempfile.mkdtemp(prefix="rk", dir="/tmp"))  # short: Ray's unix sockets live under it
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "COLUMNS", "LINES")}
    env.pop("MLFLOW_TRACKING_URI", None)
    env["RAY_TMPDIR"] = str(ray_tmp)
    drivers: list[Driver] = []

    def start(*extra: str) -> Driver:
        args = [
            "train", "file", str(TUNED), "--storage-path", str(tmp_path / "results"), "--num-cpus", "2",
            "--no-mlflow", "--checkpoint-freq", "1", "--stop", json.dumps({"training_iteration": ITERATIONS}),
            "--config", json.dumps(SMALL), *extra,
        ]  # fmt: skip
        drivers.append(Driver(args, env, tmp_path / f"run{len(drivers)}.log"))
        return drivers[-1]

    try:
        yield start
    finally:
        left = [entry for driver in drivers for entry in driver.kill()]
        shutil.rmtree(ray_tmp, ignore_errors=True)
        assert not left, "processes outlived the test:\n" + "\n".join(left)


def _experiment(tmp_path: Path) -> Path:
    return tmp_path / "results" / EXPERIMENT


def _checkpoints(experiment: Path) -> list[Path]:
    return sorted(experiment.glob("*/checkpoint_*"))


def _fingerprint(folder: Path) -> dict[str, str]:
    return {
        str(f.relative_to(folder)): hashlib.sha1(f.read_bytes()).hexdigest()
        for f in sorted(folder.rglob("*"))
        if f.is_file()
    }


def _saved_trial_ids(experiment: Path) -> list[str] | None:
    """The trial ids in Tune's saved state; None until a state file has been written in full."""
    for state in experiment.glob("experiment_state-*.json"):
        try:
            return [json.loads(t)["trial_id"] for t, _ in json.loads(state.read_text())["trial_data"]]
        except (OSError, ValueError):  # still being copied
            pass
    return None


def _iterations(output: str) -> list[tuple[str, int, int]]:
    """``(trial id, iteration, env steps)`` of each progress line."""
    lines = re.findall(r"^\[(\w+)\] iter (\d+) \| env steps (\d+) \|", output, re.MULTILINE)
    return [(trial, int(i), int(steps)) for trial, i, steps in lines]


def _resume(rllib: Callable[..., Driver]) -> Driver:
    resumed = rllib("--resume")
    code = resumed.wait()
    assert code == 0, resumed.tail()
    left = resumed.gone(grace_s=15)  # a clean exit shuts Ray down
    assert not left, "processes outlived the resumed command:\n" + "\n".join(left)
    out = resumed.output()
    assert f"resuming {EXPERIMENT} from " in out
    assert f"{EXPERIMENT}: done after {ITERATIONS} iterations, {ITERATIONS * BATCH} env steps" in out
    return resumed


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_killed_as_a_checkpoint_is_written_it_resumes_from_the_newest_complete_one(rllib, tmp_path):
    experiment = _experiment(tmp_path)
    first = rllib()
    first.wait_for(lambda: any(experiment.glob("*/checkpoint_000000")), "checkpoint_000000")
    # The driver marks checkpoint_000000 complete before the trial trains on, so when the next folder
    # appears the first is complete and the second is being written, or just was.
    second = next(experiment.glob("*/checkpoint_000000")).parent / "checkpoint_000001"
    first.wait_for(second.exists, "checkpoint_000001", poll_s=0.001)
    left = first.kill()
    assert not left, "SIGKILL left processes behind:\n" + "\n".join(left)
    complete = {p: _fingerprint(p) for p in _checkpoints(experiment) if (p / COMPLETE_MARKER).is_file()}
    unmarked = [p for p in _checkpoints(experiment) if p not in complete]
    assert complete, first.tail()
    newest = max(int(p.name.removeprefix("checkpoint_")) for p in complete)

    out = _resume(rllib).output()

    trial = next(iter(complete)).parent.name
    iterations = _iterations(out)
    # It goes on from the checkpoint: iteration and env steps continue from those it was saved at.
    assert iterations[0][1:] == (newest + 2, (newest + 2) * BATCH), out[-5000:]
    assert f": resumes from checkpoint_{newest:06d} (iteration {newest + 1})" in out
    for folder, fingerprint in complete.items():
        assert _fingerprint(folder) == fingerprint, f"{folder} was written over"
    for folder in unmarked:  # what the kill interrupted is set aside, and written again in full
        assert f"{folder.name} was not completely written before the kill" in out
        assert (folder.parent / f"incomplete_{folder.name}").is_dir()
    final = _checkpoints(experiment)
    assert [p.name for p in final] == [f"checkpoint_{i:06d}" for i in range(ITERATIONS)]
    assert all((p / COMPLETE_MARKER).is_file() and p.parent.name == trial for p in final)


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_killed_before_any_checkpoint_the_same_trial_starts_afresh_and_says_so(rllib, tmp_path):
    experiment = _experiment(tmp_path)
    first = rllib()
    # Tune saves its state at its first step, when it creates the trial and before the trial trains.
    first.wait_for(lambda: _saved_trial_ids(experiment) is not None, "Tune's experiment state")
    left = first.kill()
    assert not left, "SIGKILL left processes behind:\n" + "\n".join(left)
    assert not _checkpoints(experiment), "a checkpoint was written before the kill"
    (trial_id,) = _saved_trial_ids(experiment) or ()

    out = _resume(rllib).output()

    assert f"no checkpoint yet, so starting from the beginning: trial {trial_id}" in out
    assert _iterations(out)[0] == (trial_id, 1, BATCH), out[-5000:]
    # One trial folder: the trial started again in its own, not beside it under a new id.
    folders = [p for p in experiment.iterdir() if p.is_dir()]
    assert len(folders) == 1 and trial_id in folders[0].name, folders
    assert [p.name for p in _checkpoints(experiment)] == [f"checkpoint_{i:06d}" for i in range(ITERATIONS)]
