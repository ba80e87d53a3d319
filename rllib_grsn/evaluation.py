"""Greedy (or exploring) rollouts of a checkpoint written by `rllib train file`.

The checkpoint's own AlgorithmConfig rebuilds one local EnvRunner (env, connectors, RLModule);
the module's weights come from the learner's copy in the checkpoint. No Ray cluster is needed:
the EnvRunner runs in this process, carrying the module's recurrent state from step to step
exactly as during training. Multi-agent (team) checkpoints run on a ``MultiAgentEnvRunner`` and
report the team return and, on battle envs, the win rate.

A path that is not a checkpoint, and a checkpoint file that is missing, unreadable or does not unpickle,
raise :class:`CheckpointError` with one line naming the path or file (the CLI prints it and exits 2).
"""

from __future__ import annotations

import json
import os
import pickle
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import ray
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.env.multi_agent_env_runner import MultiAgentEnvRunner
from ray.rllib.env.multi_agent_episode import MultiAgentEpisode
from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner

import rllib_grsn.envs  # noqa: F401  (env names used in checkpoints)
from rllib_grsn.algorithms.qmix.episode_replay import TeamEpisode, team_episode
from rllib_grsn.resume import SET_ASIDE_PREFIX


class CheckpointError(ValueError):
    """The path is not a checkpoint this command can load; the message is one line naming the file."""


CHECKPOINT_FILE = "rllib_checkpoint.json"
CTOR_FILE = "class_and_ctor_args.pkl"


@dataclass
class EvaluationSummary:
    """Returns and lengths of the evaluated episodes (team returns for team envs), and wins.

    ``won`` holds each episode's ``battle_won`` on battle envs, and is empty elsewhere.
    """

    env: str
    episodes: int
    returns: list[float]
    lengths: list[int]
    won: list[bool] = field(default_factory=list)
    backend: str | None = None

    @property
    def win_rate(self) -> float | None:
        return float(np.mean(self.won)) if self.won else None

    @property
    def mean(self) -> float:
        return float(np.mean(self.returns))

    @property
    def std(self) -> float:
        return float(np.std(self.returns))

    @property
    def min(self) -> float:
        return float(np.min(self.returns))

    @property
    def max(self) -> float:
        return float(np.max(self.returns))

    @property
    def mean_length(self) -> float:
        return float(np.mean(self.lengths))


def _one_line(err: BaseException, limit: int = 160) -> str:
    """``Type: message`` of ``err`` on one line, shortened to about ``limit`` characters."""
    text = " ".join(str(err).split())
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _what_is_wrong(err: BaseException) -> str:
    """What an error reading a checkpoint file says about that file, and what to do about it."""
    if isinstance(err, FileNotFoundError):
        return "missing; the checkpoint is incomplete (was it written or copied completely?)"
    if isinstance(err, PermissionError):
        return "permission denied; check its permissions"
    if isinstance(err, ImportError) or (
        isinstance(err, AttributeError) and "Can't get attribute" in str(err)
    ):
        return (
            f"refers to code this installation lacks ({_one_line(err)}); load it with the rllib_grsn and "
            "Ray versions that wrote it"
        )
    if isinstance(err, EOFError) or "truncated" in str(err):
        return f"empty or truncated ({_one_line(err)}); the checkpoint was not written or copied completely"
    return f"corrupted ({_one_line(err)})"


def _enclosing_checkpoint(path: Path) -> Path | None:
    """The checkpoint directory ``path`` lies inside, if any (a file or subfolder of a checkpoint)."""
    return next((p for p in path.parents if (p / CHECKPOINT_FILE).is_file()), None)


def _checkpoints_in(folder: Path) -> list[Path]:
    """Checkpoint folders in a Tune trial folder (depth 1) or experiment folder (depth 2), newest first."""
    found = {f.parent for pattern in ("*", "*/*") for f in folder.glob(f"{pattern}/{CHECKPOINT_FILE}")}
    found = {p for p in found if not p.name.startswith(SET_ASIDE_PREFIX)}  # cut short by a kill
    return sorted(found, key=lambda p: ((p / CHECKPOINT_FILE).stat().st_mtime, str(p)), reverse=True)


def _check_checkpoint_dir(path: Path) -> None:
    """Raises CheckpointError unless ``path`` is a readable directory that looks like a checkpoint.

    A directory with only one of the two top-level files passes: the missing one is named when read.
    """
    not_one = f"{path}: not an RLlib algorithm checkpoint"
    try:
        if not path.exists():
            raise CheckpointError(f"{not_one} (no such file or directory)")
        enclosing = _enclosing_checkpoint(path)
        inside = f"it lies inside the checkpoint {enclosing}; pass that directory" if enclosing else ""
        if not path.is_dir():
            raise CheckpointError(f"{not_one} (a file, not a directory{'; ' + inside if inside else ''})")
        if not os.access(path, os.R_OK | os.X_OK):
            raise CheckpointError(f"{path}: permission denied; cannot read the checkpoint directory")
        if inside and not (path / CHECKPOINT_FILE).is_file():
            raise CheckpointError(f"{not_one} ({inside})")
        if (path / CHECKPOINT_FILE).is_file() or (path / CTOR_FILE).is_file():
            return
        found = [str(p.relative_to(path)) for p in _checkpoints_in(path)]
    except PermissionError as err:
        raise CheckpointError(f"{err.filename or path}: permission denied; check its permissions") from None
    if found:
        more = f" and {len(found) - 5} more" if len(found) > 5 else ""
        raise CheckpointError(
            f"{not_one} itself; it holds {len(found)} checkpoint{'s' if len(found) > 1 else ''}, newest "
            f"first: {', '.join(found[:5])}{more}; pass one of them"
        )
    raise CheckpointError(
        f"{not_one} (expected {CHECKPOINT_FILE} and {CTOR_FILE}; pass the checkpoint_000NNN directory)"
    )


def load_checkpoint_config(checkpoint: Path) -> AlgorithmConfig:
    """The AlgorithmConfig an Algorithm checkpoint was written with.

    Raises:
        CheckpointError: ``checkpoint`` is not a checkpoint directory, or its ``rllib_checkpoint.json``
            or ``class_and_ctor_args.pkl`` is missing, unreadable or damaged.
    """
    checkpoint = Path(checkpoint).expanduser().resolve()
    _check_checkpoint_dir(checkpoint)
    meta_file = checkpoint / CHECKPOINT_FILE
    try:
        meta = json.loads(meta_file.read_text())
    except OSError as err:
        raise CheckpointError(f"{meta_file}: {_what_is_wrong(err)}") from None
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError
        raise CheckpointError(
            f"{meta_file}: not valid JSON ({_one_line(err)}); the checkpoint is damaged"
        ) from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{meta_file}: not an RLlib checkpoint description (a JSON object expected)")

    ctor_file = checkpoint / CTOR_FILE
    try:
        with ctor_file.open("rb") as f:
            ctor = pickle.load(f)
    except Exception as err:  # damaged bytes make unpickling raise nearly any exception type
        why = _what_is_wrong(err)
        written = meta.get("ray_version")
        if isinstance(err, (ImportError, AttributeError)) and written and written != ray.__version__:
            why += f" (it was written with Ray {written}, this is Ray {ray.__version__})"
        raise CheckpointError(f"{ctor_file}: {why}") from None
    try:
        args, _ = ctor["ctor_args_and_kwargs"]
        state = args[0]
    except (LookupError, TypeError, ValueError):
        state = None
    if isinstance(state, AlgorithmConfig):
        return state
    if not isinstance(state, dict):
        raise CheckpointError(f"{ctor_file}: holds no algorithm config; the checkpoint is damaged")
    return AlgorithmConfig.from_state(state)


def _damaged_file(directory: Path, err: Exception) -> tuple[Path, str] | None:
    """The file under ``directory`` that made a restore fail with ``err``, and what is wrong with it.

    None when every pickle there loads: then ``err`` is not about the checkpoint's files.
    """
    if isinstance(err, OSError):
        # pyarrow names the file only in its message: "Failed to open local file '<path>'. Detail: ..."
        named = err.filename or next(iter(re.findall(r"'(/[^']+)'", str(err))), None)
        return (Path(named) if named else directory), _what_is_wrong(err)
    for file in sorted(directory.rglob("*.pkl")):
        try:
            with file.open("rb") as f:
                pickle.load(f)
        except Exception as file_err:  # damaged bytes make unpickling raise nearly any exception type
            return file, _what_is_wrong(file_err)
    return None


@contextmanager
def restoring(directory: Path) -> Iterator[None]:
    """Turns a failed RLlib restore from ``directory`` into a CheckpointError naming the damaged file.

    RLlib's errors name no file (pickle errors) or name it only in passing (pyarrow's missing file), so
    after a failure the pickles under ``directory`` are read once more to find the one that does not
    load. An error while every file there loads is not the checkpoint's and propagates unchanged.
    """
    try:
        yield
    except Exception as err:
        damaged = _damaged_file(Path(directory), err)
        if damaged is None:
            raise
        file, why = damaged
        raise CheckpointError(f"{file}: {why}") from None


def modules_dir_of(checkpoint: Path) -> Path:
    """Where an Algorithm checkpoint keeps the learner's RLModules (one folder per module id)."""
    return Path(checkpoint) / "learner_group" / "learner" / "rl_module"


def build_evaluation_runner(
    checkpoint: Path, *, seed: int | None = None
) -> SingleAgentEnvRunner | MultiAgentEnvRunner:
    """A local EnvRunner with the checkpoint's env, connectors and the learner's module weights."""
    checkpoint = Path(checkpoint).expanduser().resolve()
    config = load_checkpoint_config(checkpoint)
    config = config.copy(copy_frozen=False)
    config.env_runners(num_env_runners=0, num_envs_per_env_runner=1)
    if seed is not None:
        config.debugging(seed=seed)
    modules_dir = modules_dir_of(checkpoint)
    module_ids = sorted(config.policies) if config.is_multi_agent else [DEFAULT_MODULE_ID]
    missing = [str(modules_dir / m) for m in module_ids if not (modules_dir / m).is_dir()]
    if missing:
        raise CheckpointError(
            f"{', '.join(missing)}: missing; the checkpoint holds no learner weights for "
            f"{'these modules' if len(missing) > 1 else 'this module'} (is it incomplete?)"
        )

    default_cls = MultiAgentEnvRunner if config.is_multi_agent else SingleAgentEnvRunner
    runner_cls = config.env_runner_cls or default_cls  # e.g. QMIX's TeamEnvRunner
    runner = runner_cls(config=config)
    try:
        env_runner_dir = checkpoint / "env_runner"
        if env_runner_dir.is_dir():
            with restoring(env_runner_dir):
                runner.restore_from_path(env_runner_dir)  # connector state (e.g. observation filters)
        # The EnvRunner's own copy is not in the checkpoint; the learner's is the trained one.
        for module_id in module_ids:
            module = runner.module[module_id] if config.is_multi_agent else runner.module
            with restoring(modules_dir / module_id):
                module.restore_from_path(modules_dir / module_id)
    except BaseException:
        runner.stop()
        raise
    return runner


def evaluate_checkpoint(
    checkpoint: Path, *, episodes: int = 10, explore: bool = False, seed: int | None = None
) -> EvaluationSummary:
    """Runs ``episodes`` full episodes of the checkpoint's policy and summarises their returns."""
    runner = build_evaluation_runner(checkpoint, seed=seed)
    try:
        done = runner.sample(num_episodes=episodes, explore=explore, random_actions=False)
    finally:
        runner.stop()
    finished = [ep for ep in done if ep.is_done][:episodes]
    if finished and isinstance(finished[0], MultiAgentEpisode):  # a team run on RLlib's episodes
        finished = [team_episode(ep) for ep in finished]
    if finished and isinstance(finished[0], TeamEpisode):
        return EvaluationSummary(
            env=str(runner.config.env),
            episodes=len(finished),
            returns=[ep.team_return for ep in finished],
            lengths=[len(ep) for ep in finished],
            won=[ep.won for ep in finished if ep.won is not None],
            backend=",".join(sorted({ep.backend for ep in finished if ep.backend})) or None,
        )
    return EvaluationSummary(
        env=str(runner.config.env),
        episodes=len(finished),
        returns=[float(ep.get_return()) for ep in finished],
        lengths=[len(ep) for ep in finished],
    )
