"""Damaged or misplaced checkpoints: `rllib evaluate` / `rllib energy` fail fast with one line naming the
file, exit code 2, and no traceback.

A tiny QMIX (TwoStepGame) and PPO (CartPole-P, GRSN core) checkpoint are trained in-process once per
module; each test damages a copy of one in one way.
"""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from tiny_checkpoints import train_and_save

from rllib_grsn.algorithms.qmix import QMixConfig
from rllib_grsn.cli import main
from rllib_grsn.energy.checkpoint import checkpoint_energy
from rllib_grsn.evaluation import CheckpointError, evaluate_checkpoint

QMIX_MODULE = "learner_group/learner/rl_module/shared"
PPO_MODULE = "learner_group/learner/rl_module/default_policy"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``qmix`` and ``ppo`` checkpoints after one training iteration each."""
    from rllib_grsn.experiment import build_experiment

    root = tmp_path_factory.mktemp("faults")
    qmix = (
        QMixConfig()
        .environment("two_step_game")
        .training(train_batch_size_per_learner=8, num_episodes_before_learning_starts=4, td_lambda=0.0)
        .rl_module(
            rl_module_spec=RLModuleSpec(
                model_config={"core": "grsn", "hidden": 8, "obs_embed": 8, "head_hiddens": []}
            )
        )
        .reporting(min_sample_timesteps_per_iteration=8)
    )
    qmix.env_runners(num_env_runners=0)
    ppo_spec = {
        "env": "CartPole-P",
        "run": "PPO",
        "config": {
            "train_batch_size": 32,
            "minibatch_size": 32,
            "num_epochs": 1,
            "num_env_runners": 0,
            "model_config": {"core": "grsn", "hidden": 8},
        },
    }
    configs = {"qmix": qmix, "ppo": build_experiment("ppo-grsn", ppo_spec).algo_config}
    return train_and_save(configs, root)


@pytest.fixture
def copy_of(trained: dict[str, Path], tmp_path: Path) -> Callable[[str], Path]:
    """A fresh copy of a trained checkpoint, free to damage."""

    def copy(name: str) -> Path:
        return Path(shutil.copytree(trained[name], tmp_path / name / "checkpoint_000000"))

    return copy


# ----------------------------------------------------------------------------- ways to damage a file


def _empty(file: Path) -> None:
    file.write_bytes(b"")


def _truncate(file: Path) -> None:
    data = file.read_bytes()
    file.write_bytes(data[: len(data) // 2])


def _random_bytes(file: Path) -> None:
    file.write_bytes(random.Random(0).randbytes(512))


def _remove(file: Path) -> None:
    if file.is_dir():
        shutil.rmtree(file)
    else:
        file.unlink()


def _replace(old: bytes, new: bytes) -> Callable[[Path], None]:
    """Renames a class or module the pickle refers to (same length, so the pickle stays well-formed)."""
    assert len(old) == len(new)

    def damage(file: Path) -> None:
        data = file.read_bytes()
        assert old in data, f"{old!r} not in {file}"
        file.write_bytes(data.replace(old, new))

    return damage


def _not_json(file: Path) -> None:
    file.write_text('{"class_and_ctor_args_file": "class_and_')


# (checkpoint, file relative to it, damage, words the message must hold besides the file's path)
DAMAGES = {
    "ctor_empty": ("qmix", "class_and_ctor_args.pkl", _empty, ["empty or truncated"]),
    "ctor_truncated": ("qmix", "class_and_ctor_args.pkl", _truncate, ["empty or truncated"]),
    "ctor_random_bytes": ("qmix", "class_and_ctor_args.pkl", _random_bytes, ["corrupted"]),
    "ctor_class_gone": (
        "qmix",
        "class_and_ctor_args.pkl",
        _replace(b"\x8c\x04QMix\x94\x93", b"\x8c\x04QMiX\x94\x93"),
        ["refers to code this installation lacks", "QMiX", "versions that wrote it"],
    ),
    "ctor_module_gone": (
        "qmix",
        "class_and_ctor_args.pkl",
        _replace(b"rllib_grsn.algorithms.qmix.algorithm", b"rllib_grsn.algorithms.qmix.algorithX"),
        ["refers to code this installation lacks", "ModuleNotFoundError"],
    ),
    "ctor_missing": ("qmix", "class_and_ctor_args.pkl", _remove, ["missing"]),
    "json_missing": ("qmix", "rllib_checkpoint.json", _remove, ["missing"]),
    "json_not_json": ("qmix", "rllib_checkpoint.json", _not_json, ["not valid JSON"]),
    "json_random_bytes": ("qmix", "rllib_checkpoint.json", _random_bytes, ["not valid JSON"]),
    "module_state_truncated": ("qmix", f"{QMIX_MODULE}/module_state.pkl", _truncate, ["empty or truncated"]),
    "module_state_random_bytes": ("qmix", f"{QMIX_MODULE}/module_state.pkl", _random_bytes, ["corrupted"]),
    "module_state_missing": ("qmix", f"{QMIX_MODULE}/module_state.pkl", _remove, ["missing"]),
    "module_folder_missing": ("qmix", QMIX_MODULE, _remove, ["missing", "no learner weights"]),
    "ppo_module_state_empty": ("ppo", f"{PPO_MODULE}/module_state.pkl", _empty, ["empty or truncated"]),
    "ppo_module_folder_missing": ("ppo", PPO_MODULE, _remove, ["missing", "no learner weights"]),
    "env_runner_state_truncated": ("qmix", "env_runner/state.pkl", _truncate, ["empty or truncated"]),
    "connector_state_random_bytes": (
        "ppo",
        "env_runner/env_to_module_connector/state.pkl",
        _random_bytes,
        ["corrupted"],
    ),
    "env_runner_state_missing": ("ppo", "env_runner/state.pkl", _remove, ["missing"]),
}


def _assert_one_line_naming(err: CheckpointError, path: Path, words: list[str]) -> None:
    message = str(err)
    assert "\n" not in message
    assert message.startswith(f"{path}: "), message
    for word in words:
        assert word in message, message


def _assert_cli_fails(argv: list[str], name: str, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(argv) == 2
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("rllib: error:")]
    assert len(errors) == 1 and name in errors[0], captured.err
    assert "Traceback" not in captured.out + captured.err


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("ckpt", "relative", "damage", "words"), DAMAGES.values(), ids=DAMAGES.keys())
def test_damaged_checkpoint_fails_naming_the_file(
    ckpt: str,
    relative: str,
    damage: Callable[[Path], None],
    words: list[str],
    copy_of: Callable[[str], Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    checkpoint = copy_of(ckpt)
    damaged = checkpoint / relative
    damage(damaged)
    with pytest.raises(CheckpointError) as info:
        evaluate_checkpoint(checkpoint, episodes=1)
    _assert_one_line_naming(info.value, damaged, words)
    with pytest.raises(CheckpointError) as info:
        checkpoint_energy(checkpoint, samples=8)
    _assert_one_line_naming(info.value, damaged, words)
    _assert_cli_fails(["evaluate", str(checkpoint)], relative, capsys)
    _assert_cli_fails(["energy", str(checkpoint), "--samples", "8"], relative, capsys)


@pytest.mark.timeout(120)
def test_the_learners_module_class_file_is_read_by_energy_only(copy_of: Callable[[str], Path]) -> None:
    """QMIX energy loads the learner's full module (with the mixer) from its own class file."""
    checkpoint = copy_of("qmix")
    damaged = checkpoint / QMIX_MODULE / "class_and_ctor_args.pkl"
    _truncate(damaged)
    assert evaluate_checkpoint(checkpoint, episodes=1).episodes == 1
    with pytest.raises(CheckpointError) as info:
        checkpoint_energy(checkpoint, samples=8)
    _assert_one_line_naming(info.value, damaged, ["empty or truncated"])


@pytest.mark.timeout(120)
def test_an_intact_copy_still_evaluates(copy_of: Callable[[str], Path]) -> None:
    checkpoint = copy_of("ppo")
    assert evaluate_checkpoint(checkpoint, episodes=1).episodes == 1
    assert checkpoint_energy(checkpoint, samples=8).modules


# ----------------------------------------------------------------------------- the wrong path


def _check_misplaced(path: Path, words: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    for call in (lambda: evaluate_checkpoint(path), lambda: checkpoint_energy(path, samples=8)):
        with pytest.raises(CheckpointError) as info:
            call()
        _assert_one_line_naming(info.value, path, ["not an RLlib algorithm checkpoint", *words])
    _assert_cli_fails(["evaluate", str(path)], path.name, capsys)
    _assert_cli_fails(["energy", str(path), "--samples", "8"], path.name, capsys)


@pytest.mark.timeout(60)
def test_a_file_of_the_checkpoint(copy_of: Callable[[str], Path], capsys: pytest.CaptureFixture[str]) -> None:
    checkpoint = copy_of("qmix")
    _check_misplaced(
        checkpoint / "rllib_checkpoint.json",
        ["a file, not a directory", f"inside the checkpoint {checkpoint}"],
        capsys,
    )


@pytest.mark.timeout(60)
def test_a_folder_inside_the_checkpoint(
    copy_of: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = copy_of("qmix")
    _check_misplaced(checkpoint / "learner_group", [f"inside the checkpoint {checkpoint}"], capsys)


@pytest.mark.timeout(60)
def test_a_trial_folder_lists_its_checkpoints_newest_first(
    trained: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trial = tmp_path / "QMix_two_step_game_00000"
    for i in range(3):
        shutil.copytree(trained["qmix"], trial / f"checkpoint_00000{i}")
        os.utime(trial / f"checkpoint_00000{i}" / "rllib_checkpoint.json", (1e9 + i, 1e9 + i))
    (trial / "result.json").write_text("{}")
    _check_misplaced(
        trial,
        ["3 checkpoints, newest first: checkpoint_000002, checkpoint_000001, checkpoint_000000"],
        capsys,
    )
    # An experiment folder: one level more, paths relative to it.
    _check_misplaced(tmp_path, ["3 checkpoints", f"first: {trial.name}/checkpoint_000002,"], capsys)


@pytest.mark.timeout(60)
def test_a_missing_path_and_an_empty_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _check_misplaced(tmp_path / "nothing_here", ["no such file or directory"], capsys)
    _check_misplaced(tmp_path, ["pass the checkpoint_000NNN directory"], capsys)


@pytest.mark.timeout(60)
@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every directory: permissions are not enforced")
def test_a_directory_without_read_permission(
    copy_of: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = copy_of("qmix")
    checkpoint.chmod(0o000)
    try:
        for call in (lambda: evaluate_checkpoint(checkpoint), lambda: checkpoint_energy(checkpoint)):
            with pytest.raises(CheckpointError) as info:
                call()
            _assert_one_line_naming(info.value, checkpoint, ["permission denied"])
        _assert_cli_fails(["evaluate", str(checkpoint)], checkpoint.name, capsys)
    finally:
        checkpoint.chmod(0o755)


@pytest.mark.timeout(120)
def test_an_error_that_is_not_the_files_keeps_its_traceback(
    copy_of: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only a file that does not load becomes a CheckpointError; a failure with intact files is a bug."""
    from ray.rllib.core.rl_module.torch.torch_rl_module import TorchRLModule

    def broken_set_state(self: TorchRLModule, state: dict) -> None:
        raise RuntimeError("a bug in set_state")

    checkpoint = copy_of("ppo")
    monkeypatch.setattr(TorchRLModule, "set_state", broken_set_state)
    with pytest.raises(RuntimeError, match="a bug in set_state"):
        evaluate_checkpoint(checkpoint, episodes=1)
