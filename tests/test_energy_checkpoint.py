"""``checkpoint_energy`` and ``rllib energy``: Table 4 numbers of trained checkpoints, on their own rollouts.

Tiny checkpoints are trained in-process (one iteration, no remote EnvRunners): QMIX on TwoStepGame
with a GRSN and a GRU agent, and PPO on CartPole-P with GRSN.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from tiny_checkpoints import train_and_save

from rllib_grsn.algorithms.qmix import SHARED_MODULE_ID, QMixConfig
from rllib_grsn.energy.checkpoint import checkpoint_energy
from rllib_grsn.evaluation import CheckpointError

REPO = Path(__file__).resolve().parents[1]
SMALL_AGENT = {"hidden": 32, "obs_embed": 32, "head_hiddens": []}


def _qmix_config(core: str) -> QMixConfig:
    config = (
        QMixConfig()
        .environment("two_step_game")
        .training(
            lr=5e-3,
            train_batch_size_per_learner=8,
            num_episodes_before_learning_starts=8,
            num_updates_per_episode=0.5,
            target_update_interval=50,
            td_lambda=0.0,
        )
        .rl_module(rl_module_spec=RLModuleSpec(model_config={"core": core, **SMALL_AGENT}))
        .reporting(min_sample_timesteps_per_iteration=50)
        .debugging(seed=0)
    )
    config.env_runners(num_env_runners=0)
    return config


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``qmix_grsn``, ``qmix_gru`` and ``ppo_grsn`` checkpoints after one training iteration each."""
    from rllib_grsn.experiment import build_experiment

    root = tmp_path_factory.mktemp("energy_ckpt")
    configs = {f"qmix_{core}": _qmix_config(core) for core in ("grsn", "gru")}
    spec = {
        "env": "CartPole-P",
        "run": "PPO",
        "config": {
            "train_batch_size": 128,
            "minibatch_size": 64,
            "num_epochs": 1,
            "num_env_runners": 0,
            "seed": 0,
            "model_config": {"core": "grsn", "hidden": 16},
        },
    }
    configs["ppo_grsn"] = build_experiment("ppo-grsn", spec).algo_config
    return train_and_save(configs, root)


@pytest.mark.slow
def test_qmix_grsn_counts_spikes_and_the_mixer(checkpoints: dict[str, Path]) -> None:
    result = checkpoint_energy(checkpoints["qmix_grsn"], samples=64, seed=0)
    m = result.modules[SHARED_MODULE_ID]
    assert m.family == "qmix" and m.core == "grsn" and result.env == "two_step_game"
    report = m.agent
    assert report.num_decisions == 64
    assert report.spiking and report.sop_spiking >= 0.0 and report.mac_rnn == 0.0
    assert report.mac_mlp > 0.0  # encoder and the GRSN gates F, J (Eq. 14)
    assert all(0.0 <= rate <= 1.0 for rate in report.core_firing_rates.values())
    assert m.mixer is not None and m.mixer.mac_dense > 0.0 and not m.mixer.spiking
    # TwoStepGame: 2 agents, 2 steps per episode -> 4 agent decisions, 2 team steps per episode.
    assert m.mixer.num_decisions == min(64, 2 * result.episodes)
    assert "GRSN SNN (K)" in result.format()


@pytest.mark.slow
def test_qmix_gru_fills_the_rnn_column(checkpoints: dict[str, Path]) -> None:
    result = checkpoint_energy(checkpoints["qmix_gru"], samples=64, seed=0)
    m = result.modules[SHARED_MODULE_ID]
    report = m.agent
    assert report.num_decisions == 64 and not report.spiking
    assert report.sop_spiking == 0.0 and report.mac_rnn > 0.0
    h = SMALL_AGENT["hidden"]
    assert report.mac_rnn == 3 * (SMALL_AGENT["obs_embed"] * h + h * h) + 6 * h
    assert m.mixer is not None and m.mixer.mac_dense > 0.0
    grsn_mixer = checkpoint_energy(checkpoints["qmix_grsn"], samples=8).modules[SHARED_MODULE_ID].mixer
    assert grsn_mixer is not None and m.mixer.mac_dense == grsn_mixer.mac_dense  # same mixer shape


@pytest.mark.slow
def test_ppo_grsn_checkpoint(checkpoints: dict[str, Path]) -> None:
    result = checkpoint_energy(checkpoints["ppo_grsn"], samples=64, seed=1)
    (m,) = result.modules.values()
    assert m.family == "actor_critic" and m.core == "grsn" and m.mixer is None
    assert result.env == "CartPole-P"
    assert m.agent.num_decisions == 64 and m.agent.spiking and m.agent.mac_rnn == 0.0
    assert all(0.0 <= rate <= 1.0 for rate in m.agent.core_firing_rates.values())
    assert "CartPole-P (paper)" in result.format()


@pytest.mark.slow
def test_sampling_is_seeded_and_checks_the_rollouts(checkpoints: dict[str, Path]) -> None:
    a = checkpoint_energy(checkpoints["qmix_grsn"], samples=16, seed=3).reports[SHARED_MODULE_ID]
    b = checkpoint_energy(checkpoints["qmix_grsn"], samples=16, seed=3).reports[SHARED_MODULE_ID]
    assert a.to_dict() == b.to_dict()
    with pytest.raises(ValueError, match="fewer than"):
        checkpoint_energy(checkpoints["qmix_grsn"], samples=64, episodes=2)
    with pytest.raises(CheckpointError):
        checkpoint_energy(checkpoints["qmix_grsn"] / "learner_group", samples=8)


def _cli(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rllib_grsn.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )


@pytest.mark.slow
def test_cli_prints_table4(checkpoints: dict[str, Path]) -> None:
    proc = _cli("energy", checkpoints["qmix_grsn"], "--samples", 64)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "Energy (KpJ)" in out and "Mixer (K)" in out and "two_step_game" in out
    assert "firing rate core:" in out and "pJ per decision" in out


def test_cli_rejects_bad_input(tmp_path: Path) -> None:
    proc = _cli("energy", tmp_path / "missing")
    assert proc.returncode == 2 and "not an RLlib algorithm checkpoint" in proc.stderr
    proc = _cli("energy", tmp_path, "--samples", 0)
    assert proc.returncode == 2 and "--samples" in proc.stderr


def test_cli_help_explains_the_counting_rules() -> None:
    proc = _cli("energy", "--help")
    assert proc.returncode == 0
    assert "Eq. 15" in proc.stdout and "0.9 pJ" in proc.stdout and "4.6 pJ" in proc.stdout
