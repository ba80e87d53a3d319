"""Multi-agent env names (``rllib_grsn.envs.multi_agent``): SMAC backend choice, builders, Tune registry.

StarCraft II is faked at two seams: ``importlib.util.find_spec("smac")`` (is the package installed?) and
the ``SC2PATH`` / ``HOME`` directories (is the game there?); building a ``SMACEnv`` uses a minimal fake
``StarCraft2Env`` at ``rllib_grsn.envs.smac._starcraft2_env_class``. No Ray cluster is started.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

import pytest
from ray.rllib.env.env_context import EnvContext
from ray.tune.registry import ENV_CREATOR, _global_registry

import rllib_grsn.envs.multi_agent as multi_agent
import rllib_grsn.envs.smac as smac_adapter
from rllib_grsn.envs import MULTI_AGENT_ENVS, make_multi_agent_env, resolve_smac_backend
from rllib_grsn.envs.smac import SMACEnv
from rllib_grsn.envs.two_step import TwoStepGameEnv

HAS_JAXMARL = importlib.util.find_spec("jaxmarl") is not None
HAS_MPE2 = importlib.util.find_spec("mpe2") is not None


class FakeStarCraft2Env:
    """Enough of ``smac.env.StarCraft2Env`` for ``SMACEnv.__init__`` (8m's real sizes)."""

    def __init__(self, map_name: str, seed: int | None = None, **kwargs: Any):
        self.map_name = map_name

    def get_env_info(self) -> dict[str, int]:
        return {"n_agents": 8, "n_actions": 14, "obs_shape": 80, "state_shape": 168, "episode_limit": 120}

    def close(self) -> None:
        pass


@pytest.fixture
def starcraft(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """Returns ``setup(smac_installed, sc2_at)``; ``sc2_at`` is "SC2PATH", "home", "missing" or None.

    Each test sees a fresh "log once" memory, a HOME without StarCraft II and no SC2PATH unless set up.
    """
    monkeypatch.setattr(multi_agent, "_logged_backend_messages", set())
    monkeypatch.setattr(smac_adapter, "_starcraft2_env_class", lambda: FakeStarCraft2Env)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SC2PATH", raising=False)
    real_find_spec = importlib.util.find_spec

    def setup(smac_installed: bool, sc2_at: str | None) -> None:
        def find_spec(name: str, *args: Any, **kwargs: Any) -> Any:
            if name == "smac":
                return object() if smac_installed else None
            return real_find_spec(name, *args, **kwargs)

        monkeypatch.setattr(importlib.util, "find_spec", find_spec)
        if sc2_at == "SC2PATH":
            game = tmp_path / "StarCraftII"
            game.mkdir()
            monkeypatch.setenv("SC2PATH", str(game))
        elif sc2_at == "home":
            (home / "StarCraftII").mkdir()
        elif sc2_at == "missing":
            monkeypatch.setenv("SC2PATH", str(tmp_path / "nowhere"))

    return setup


@pytest.mark.parametrize(
    ("smac_installed", "sc2_at", "expected", "reason"),
    [
        (True, "SC2PATH", "sc2", "StarCraft II is at"),
        (True, "home", "sc2", "StarCraft II is at"),
        (True, None, "smax", "not found at ~/StarCraftII"),
        (True, "missing", "smax", "not found at SC2PATH="),
        (False, "SC2PATH", "smax", "`smac` package is not installed"),
        (False, None, "smax", "`smac` package is not installed"),
    ],
)
def test_auto_backend(
    starcraft, caplog, smac_installed: bool, sc2_at: str | None, expected: str, reason: str
) -> None:
    starcraft(smac_installed, sc2_at)
    with caplog.at_level(logging.WARNING, logger=multi_agent.__name__):
        assert resolve_smac_backend({"map_name": "2s3z"}) == expected
        assert resolve_smac_backend({"map_name": "2s3z", "backend": "auto"}) == expected
    (record,) = caplog.records  # logged once per process, not once per env
    assert f"running backend {expected}" in record.getMessage() and reason in record.getMessage()
    assert "map 2s3z" in record.getMessage()
    if expected == "smax":
        assert "not SMAC" in record.getMessage()


@pytest.mark.parametrize("backend", ["sc2", "smax"])
def test_forced_backend_wins(starcraft, caplog, backend: str) -> None:
    starcraft(smac_installed=backend == "smax", sc2_at="SC2PATH" if backend == "smax" else None)
    with caplog.at_level(logging.WARNING, logger=multi_agent.__name__):
        assert resolve_smac_backend({"backend": backend}) == backend
    assert f"forced by env_config backend: {backend}" in caplog.text


def test_unknown_backend(starcraft) -> None:
    starcraft(True, "SC2PATH")
    with pytest.raises(ValueError, match=r"unknown SMAC backend 'starcraft'; choose one of: auto, sc2, smax"):
        resolve_smac_backend({"backend": "starcraft"})
    with pytest.raises(ValueError, match="auto, sc2, smax"):
        make_multi_agent_env("smac", {"backend": "SMAX"})


def test_smac_name_builds_the_resolved_backend(starcraft) -> None:
    starcraft(True, "SC2PATH")
    env = make_multi_agent_env("smac", {"map_name": "8m"})
    assert isinstance(env, SMACEnv) and env.map_name == "8m"
    # Keys other than map_name/backend reach the backend unchanged.
    env = make_multi_agent_env("smac", {"map_name": "8m", "backend": "sc2", "difficulty": "7"})
    assert isinstance(env, SMACEnv) and env._sc2_kwargs["difficulty"] == "7"


@pytest.mark.skipif(not HAS_JAXMARL, reason="needs jaxmarl")
def test_smac_name_falls_back_to_smax(starcraft) -> None:
    from rllib_grsn.envs.smax import SMAXEnv

    starcraft(False, None)
    env = make_multi_agent_env("smac", {"map_name": "3s_vs_5z", "episode_limit": 30})
    assert isinstance(env, SMAXEnv) and env.map_name == "3s_vs_5z" and env.episode_limit == 30
    with pytest.raises(ValueError, match="needs backend sc2"):
        make_multi_agent_env("smac", {"map_name": "MMM2"})
    with pytest.raises(ValueError, match="difficulty"):
        make_multi_agent_env("smac", {"map_name": "8m", "difficulty": "7"})


def test_names_and_builders() -> None:
    assert set(MULTI_AGENT_ENVS) == {"smac", "mpe_simple_spread", "two_step_game"}
    assert isinstance(make_multi_agent_env("two_step_game", {}), TwoStepGameEnv)
    with pytest.raises(ValueError, match="smac, mpe_simple_spread, two_step_game"):
        make_multi_agent_env("simple_spread", {})


def test_tune_registration_and_reregistration_hook() -> None:
    import ray._private.worker as ray_worker

    multi_agent.register_multi_agent_envs()
    multi_agent.register_multi_agent_envs()  # idempotent
    assert ray_worker._post_init_hooks.count(multi_agent._register_with_tune) == 1
    for name in MULTI_AGENT_ENVS:
        assert _global_registry.contains(ENV_CREATOR, name)
    env = _global_registry.get(ENV_CREATOR, "two_step_game")(EnvContext({"agent_id_in_obs": False}, 0))
    assert isinstance(env, TwoStepGameEnv) and not env.agent_id_in_obs
    if HAS_MPE2:
        from rllib_grsn.envs.mpe import SimpleSpreadEnv

        env = _global_registry.get(ENV_CREATOR, "mpe_simple_spread")(EnvContext({"n_agents": 2}, 0))
        assert isinstance(env, SimpleSpreadEnv) and env.agents == ["agent_0", "agent_1"]
