"""The spiking actor-critic inside a real RLlib EnvRunner and learner connector pipeline.

What users rely on (DESIGN.md section 2, TAP): the core's state {u, c} starts at zeros at every
episode start, is carried from one env step to the next while acting, and training chunks of
``max_seq_len`` steps reproduce exactly what acting computed (no train/act mismatch).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner

from rllib_grsn.experiment import build_experiment
from rllib_grsn.modules import SpikingActorCriticModule

MAX_SEQ_LEN = 8


def _runner(core: str, env: str = "CartPole-P") -> SingleAgentEnvRunner:
    # A low threshold makes the untrained neurons fire, so the logits depend on the carried state
    # (with theta=1 a fresh network can stay silent and a state bug would go unseen).
    model_config = {"core": core, "hidden": 16, "max_seq_len": MAX_SEQ_LEN}
    if core != "gru":
        model_config["threshold"] = 0.05
    spec = {"env": env, "run": "PPO", "config": {"seed": 3, "model_config": model_config}}
    config = build_experiment("test", spec).algo_config
    config.env_runners(num_envs_per_env_runner=1)
    return SingleAgentEnvRunner(config=config)


def _episode_tensors(episode) -> dict[str, torch.Tensor]:
    """Episode observations (one per action) as a [1, T, ...] batch."""
    obs = episode.get_observations(slice(0, len(episode)))
    return {k: torch.as_tensor(np.asarray(v))[None] for k, v in obs.items()}


def _replay(module: SpikingActorCriticModule, episode, state: dict | None = None) -> dict:
    batch = {
        Columns.OBS: _episode_tensors(episode),
        Columns.STATE_IN: state
        or {k: torch.as_tensor(v)[None] for k, v in module.get_initial_state().items()},
    }
    with torch.no_grad():
        return module.forward_exploration(batch)


@pytest.fixture(
    scope="module",
    params=[("grsn", "CartPole-P"), ("lif", "CartPole-P"), ("gru", "CartPole-P"), ("grsn", "Pendulum-P")],
    ids=lambda p: f"{p[0]}-{p[1]}",
)
def sampled(request):
    core, env = request.param
    runner = _runner(core, env=env)
    # Pendulum episodes are 200 steps; 3 of them keep the test fast enough.
    episodes = runner.sample(num_episodes=3, explore=True)
    yield core, runner, episodes
    runner.stop()


def test_initial_state_is_zeros(sampled):
    core, runner, _ = sampled
    state = runner.module.get_initial_state()
    assert set(state) == ({"h"} if core == "gru" else {"u", "c"})
    assert all(np.all(v == 0) for v in state.values())


def test_state_carried_across_steps_and_reset_at_episode_start(sampled):
    """Replaying each episode from a zero state reproduces every logit and state acting produced.

    Holds for the 2nd and 3rd episode of the same runner only if the state was reset to zeros at
    their start; holds past step 0 only if the state was carried from step to step.
    """
    _, runner, episodes = sampled
    assert len(episodes) == 3 and all(len(ep) > 2 for ep in episodes)
    for episode in episodes:
        replay = _replay(runner.module, episode)
        recorded = np.asarray(
            episode.get_extra_model_outputs(Columns.ACTION_DIST_INPUTS, slice(0, len(episode)))
        )
        np.testing.assert_allclose(
            replay[Columns.ACTION_DIST_INPUTS][0].numpy(), recorded, rtol=1e-5, atol=1e-5
        )
        for key, values in episode.get_extra_model_outputs(Columns.STATE_OUT, slice(0, len(episode))).items():
            np.testing.assert_allclose(
                replay[Columns.STATE_OUT][key][0].numpy(), np.asarray(values)[-1], atol=1e-5
            )


def test_replay_detects_a_core_that_forgets_its_state(sampled):
    """Control for the test above: acting step by step from zeros each time gives other logits.

    This is the bug DESIGN.md warns about (resetting u inside every call); if it went unnoticed
    the carried-state test would be vacuous.
    """
    _, runner, episodes = sampled
    episode = max(episodes, key=len)
    module = runner.module
    obs = _episode_tensors(episode)
    zero = {k: torch.as_tensor(v)[None] for k, v in module.get_initial_state().items()}
    forgetful = []
    with torch.no_grad():
        for t in range(len(episode)):
            step = {k: v[:, t : t + 1] for k, v in obs.items()}
            out = module.forward_exploration({Columns.OBS: step, Columns.STATE_IN: zero})
            forgetful.append(out[Columns.ACTION_DIST_INPUTS][0, 0].numpy())
    recorded = np.asarray(episode.get_extra_model_outputs(Columns.ACTION_DIST_INPUTS, slice(0, len(episode))))
    assert not np.allclose(np.stack(forgetful), recorded, atol=1e-4)


def test_training_chunks_match_acting(sampled):
    """RLlib's learner connectors cut episodes into max_seq_len chunks with the recorded state_in;
    the module's forward_train on those chunks must give the logits acting used."""
    _, runner, episodes = sampled
    acting = runner.module
    # The EnvRunner holds an inference-only copy; the Learner trains a full one with its weights.
    module = SpikingActorCriticModule(
        observation_space=acting.observation_space,
        action_space=acting.action_space,
        model_config=acting.model_config,
    )
    module.set_state(acting.get_state())
    pipeline = runner.config.build_learner_connector(
        input_observation_space=module.observation_space, input_action_space=module.action_space
    )
    # A single-agent RLModule gets a flat batch (a Learner's MultiRLModule would be keyed by id).
    batch = pipeline(rl_module=module, batch={}, episodes=episodes)
    assert batch[Columns.OBS]["_orig_obs"].shape[1] == MAX_SEQ_LEN  # [B, T, ...] chunks
    with torch.no_grad():
        out = module.forward_train(batch)
    mask = batch[Columns.LOSS_MASK].bool()
    assert int(mask.sum()) == sum(len(ep) for ep in episodes)
    torch.testing.assert_close(
        out[Columns.ACTION_DIST_INPUTS][mask], batch[Columns.ACTION_DIST_INPUTS][mask], rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("core", ["mlp", "grsn_notap"])
def test_stateless_cores_make_a_stateless_module(core):
    runner = _runner(core)
    try:
        assert not runner.module.is_stateful()
        episodes = runner.sample(num_episodes=1, explore=True)
        assert len(episodes[0]) > 0
    finally:
        runner.stop()


def test_continuous_actions_on_pendulum():
    runner = _runner("grsn", env="Pendulum-P")
    try:
        episodes = runner.sample(num_timesteps=50, explore=True)
        actions = np.concatenate([np.asarray(ep.get_actions(slice(0, len(ep)))) for ep in episodes])
        assert actions.shape[-1] == 1
        dist_inputs = episodes[0].get_extra_model_outputs(Columns.ACTION_DIST_INPUTS, 0)
        assert np.asarray(dist_inputs).shape == (2,)  # mean and log-std of a 1-D Gaussian
    finally:
        runner.stop()
