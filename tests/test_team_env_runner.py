"""QMIX's acting path is cheaper than RLlib's defaults but samples exactly what they would.

``TeamEnvRunner`` counts sampled steps once per ``sample()`` call, and ``QMixConfig`` leaves RLlib's
time-axis connector out of the env-to-module pipeline (``SpikingQMixModule`` adds the axis itself)
and switches off action normalisation (Discrete actions). Each test runs the same seeds through
our runner and through one that uses RLlib 2.60's own code for the part in question, and asserts
the same episodes and metrics (the RLlib variants are ``benchmarks/qmix_sampling.py``'s, which
times both). No Ray cluster: EnvRunners are built in-process.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.rl_module import RLModuleSpec

import rllib_grsn.envs
from benchmarks.qmix_sampling import RLlibCountingRunner, RLlibPipelineConfig
from rllib_grsn.algorithms.qmix import QMixConfig
from rllib_grsn.envs.team_env_runner import TeamEnvRunner

AGENT = {"core": "grsn", "hidden": 16, "obs_embed": 16, "head_hiddens": []}
COUNTED = ("num_env_steps_sampled", "num_agent_steps_sampled", "num_module_steps_sampled", "num_episodes")


@pytest.fixture(autouse=True)
def registered_envs() -> None:
    """Tune's registry is lost at an earlier test's ray.shutdown(); these runners build envs without Ray."""
    rllib_grsn.envs.register_multi_agent_envs()


def build(runner_cls: type = TeamEnvRunner, config_cls: type = QMixConfig, **settings: Any) -> TeamEnvRunner:
    """A runner on RLlib's per-agent episodes (``team_acting`` off): what these tests compare with
    RLlib's own code (tests/test_team_acting.py compares team acting with this path)."""
    settings.setdefault("team_acting", False)
    config = (
        config_cls()
        .environment("mpe_simple_spread", env_config={})
        .env_runners(num_envs_per_env_runner=3)
        .rl_module(rl_module_spec=RLModuleSpec(model_config=AGENT))
        .debugging(seed=0)
    )
    for key, value in settings.items():
        setattr(config, key, value)
    return runner_cls(config=config)


def sample(runner: TeamEnvRunner, calls: int) -> tuple[list, dict]:
    torch.manual_seed(0)  # epsilon-greedy draws
    episodes = [e for _ in range(calls) for e in runner.sample(num_timesteps=60, explore=True)]
    return episodes, runner.get_metrics()


def counts(metrics: dict) -> dict:
    """The reduced values of every sampled-steps counter, lifetime ones included."""
    out = {}
    for name, value in metrics.items():
        if not name.startswith(COUNTED):
            continue
        for key, stat in value.items() if isinstance(value, dict) else [(None, value)]:
            out[(name, key)] = stat.peek() if hasattr(stat, "peek") else stat
    return out


def actions(episodes: list) -> list:
    return [
        {aid: np.asarray(sa.get_actions()).tolist() for aid, sa in e.agent_episodes.items()} for e in episodes
    ]


def test_step_counters_equal_rllibs_per_step_logging() -> None:
    ours, rllibs = build(), build(RLlibCountingRunner)
    try:
        (ours_eps, ours_metrics), (rllib_eps, rllib_metrics) = sample(ours, 3), sample(rllibs, 3)
    finally:
        ours.stop()
        rllibs.stop()
    assert actions(ours_eps) == actions(rllib_eps)
    expected = counts(rllib_metrics)
    assert len(expected) == 2 * (2 + 3 + 1)  # env steps, episodes, 3 agents, 1 module; and lifetime
    assert counts(ours_metrics) == expected
    assert expected[("num_env_steps_sampled", None)] == sum(len(e) for e in ours_eps)


def test_acting_without_the_time_axis_connector_takes_the_same_actions_and_states() -> None:
    ours = build()
    rllibs = build(config_cls=RLlibPipelineConfig, normalize_actions=True)
    try:
        pipeline = [type(c).__name__ for c in ours._env_to_module.connectors]
        assert "AddTimeDimToBatchAndZeroPad" not in pipeline
        assert "AddTimeDimToBatchAndZeroPad" in [type(c).__name__ for c in rllibs._env_to_module.connectors]
        (ours_eps, _), (rllib_eps, _) = sample(ours, 2), sample(rllibs, 2)
    finally:
        ours.stop()
        rllibs.stop()
    assert actions(ours_eps) == actions(rllib_eps)
    for mine, theirs in zip(ours_eps, rllib_eps, strict=True):
        for aid, sa in mine.agent_episodes.items():
            state = sa.get_extra_model_outputs(Columns.STATE_OUT, slice(None))
            expected = theirs.agent_episodes[aid].get_extra_model_outputs(Columns.STATE_OUT, slice(None))
            for key in state:
                np.testing.assert_array_equal(state[key], expected[key], err_msg=f"{aid} {key}")


def test_qmix_module_acts_on_single_steps_and_on_length_one_sequences_alike() -> None:
    runner = build()
    try:
        module = runner.module["shared"]
        obs_space = module.observation_space
        rng = np.random.default_rng(0)
        obs = {
            k: torch.as_tensor(rng.random((5, *s.shape)), dtype=torch.float32) for k, s in obs_space.items()
        }
        obs["action_mask"] = torch.ones_like(obs["action_mask"])
        state = {k: torch.as_tensor(np.stack([v] * 5)) for k, v in module.get_initial_state().items()}
        flat = module.forward_inference({Columns.OBS: obs, Columns.STATE_IN: state})
        timed = module.forward_inference(
            {Columns.OBS: {k: v.unsqueeze(1) for k, v in obs.items()}, Columns.STATE_IN: state}
        )
    finally:
        runner.stop()
    assert flat[Columns.ACTIONS].shape == (5,) and timed[Columns.ACTIONS].shape == (5, 1)
    assert torch.equal(flat[Columns.ACTIONS], timed[Columns.ACTIONS].squeeze(1))
    for key in flat[Columns.STATE_OUT]:
        assert torch.equal(flat[Columns.STATE_OUT][key], timed[Columns.STATE_OUT][key])


@pytest.mark.parametrize("config_cls", [QMixConfig, RLlibPipelineConfig])
def test_same_seed_samples_the_same_actions_whatever_order_rllib_walks_the_agents_in(
    config_cls: type, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RLlib walks ``get_agents_that_stepped()``, a set whose order follows the process's string-hash
    seed; here that order is forced (first as agent_order, then reversed), as two processes with
    different ``PYTHONHASHSEED`` would see it. The epsilon-greedy draws (epsilon 1 at the start)
    must still reach the same agents."""
    from ray.rllib.env.multi_agent_episode import MultiAgentEpisode

    from rllib_grsn.modules.connectors import agent_order

    def walked_in(order: Any) -> Any:
        return lambda episode: order(agent_order(episode.get_observations(-1).keys()))

    sampled = []
    for order in (list, lambda agents: list(reversed(agents))):
        monkeypatch.setattr(MultiAgentEpisode, "get_agents_that_stepped", walked_in(order))
        runner = build(config_cls=config_cls)
        try:
            episodes, _ = sample(runner, 2)
        finally:
            runner.stop()
        sampled.append(actions(episodes))
    assert sampled[0] == sampled[1]
    assert sum(len(a) for e in sampled[0] for a in e.values()) >= 360  # 2 calls x >= 60 env steps x 3 agents
