"""Actor / twin-Q RLModules of recurrent TD3 and SAC, without Ray: state, acting, inference-only copies."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from ray.rllib.core.columns import Columns

from rllib_grsn.modules.backbone import ORIG_OBS, PREV_ACTIONS, PREV_REWARDS
from rllib_grsn.modules.twin_q import SpikingSACModule, SpikingTD3Module

BOX = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)
DISCRETE = gym.spaces.Discrete(2)


def obs_space(action_size: int) -> gym.spaces.Dict:
    return gym.spaces.Dict(
        {
            ORIG_OBS: gym.spaces.Box(-np.inf, np.inf, (2,), np.float32),
            PREV_ACTIONS: gym.spaces.Box(-np.inf, np.inf, (action_size,), np.float32),
            PREV_REWARDS: gym.spaces.Box(-np.inf, np.inf, (1,), np.float32),
        }
    )


def make(cls, action_space, core="grsn", inference_only=False, **extra):
    size = action_space.n if isinstance(action_space, gym.spaces.Discrete) else 1
    return cls(
        observation_space=obs_space(size),
        action_space=action_space,
        inference_only=inference_only,
        model_config={"core": core, "hidden": 8, "head_hiddens": [16], **extra},
    )


def batch(module, B=3, T=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    size = module.action_dim if module.discrete else 1
    obs = {
        ORIG_OBS: torch.randn(B, T, 2, generator=g),
        PREV_ACTIONS: torch.randn(B, T, size, generator=g),
        PREV_REWARDS: torch.randn(B, T, 1, generator=g),
    }
    out = {Columns.OBS: obs}
    if module.is_stateful():
        init = module.get_initial_state()
        out[Columns.STATE_IN] = {
            part: {k: torch.as_tensor(v).expand(B, *v.shape).clone() for k, v in s.items()}
            for part, s in init.items()
        }
    return out


def test_state_holds_actor_and_critic_cores_and_stateless_cores_have_none():
    module = make(SpikingSACModule, DISCRETE)
    state = module.get_initial_state()
    assert set(state) == {"actor", "critic"}
    assert set(state["actor"]) == {"u", "c"} and state["actor"]["u"].shape == (8,)
    assert make(SpikingSACModule, DISCRETE, core="gru").get_initial_state()["critic"].keys() == {"h"}
    mlp = make(SpikingTD3Module, BOX, core="mlp")
    assert mlp.get_initial_state() == {} and not mlp.is_stateful()


def test_acting_advances_both_cores():
    module = make(SpikingTD3Module, BOX)
    b = batch(module)
    out = module.forward_exploration(b, t=10_000)
    assert out[Columns.ACTIONS].shape == (3, 1, 1)
    for part in ("actor", "critic"):
        # A fresh state with non-zero inputs must change after one neuron update.
        assert not torch.equal(out[Columns.STATE_OUT][part]["c"], b[Columns.STATE_IN][part]["c"])


def test_td3_greedy_action_is_deterministic_and_exploration_stays_in_bounds():
    module = make(SpikingTD3Module, BOX, exploration_noise=0.5)
    b = batch(module, B=64)
    greedy1 = module.forward_inference(b)[Columns.ACTIONS]
    greedy2 = module.forward_inference(b)[Columns.ACTIONS]
    torch.testing.assert_close(greedy1, greedy2)
    noisy = module.forward_exploration(b, t=10_000)[Columns.ACTIONS]
    assert not torch.allclose(noisy, greedy1)
    assert noisy.abs().max() <= 1.0


def test_random_warm_up_covers_the_action_space_then_stops():
    module = make(SpikingSACModule, DISCRETE, num_random_steps=100)
    b = batch(module, B=256)
    early = module.forward_exploration(b, t=99)[Columns.ACTIONS]
    assert set(early.unique().tolist()) == {0, 1}
    box = make(SpikingTD3Module, BOX, num_random_steps=100, exploration_noise=0.0)
    bb = batch(box, B=256)
    random_actions = box.forward_exploration(bb, t=0)[Columns.ACTIONS]
    assert random_actions.min() < -0.8 and random_actions.max() > 0.8
    # After the warm-up the actor acts (noise 0: exactly the greedy action).
    torch.testing.assert_close(
        box.forward_exploration(bb, t=100)[Columns.ACTIONS], box.forward_inference(bb)[Columns.ACTIONS]
    )


def test_sac_greedy_acting_takes_the_mode():
    module = make(SpikingSACModule, DISCRETE)
    b = batch(module, B=16)
    head = module.unroll_actor(b[Columns.OBS], b[Columns.STATE_IN]["actor"])
    torch.testing.assert_close(module.forward_inference(b)[Columns.ACTIONS], head.argmax(-1))
    box = make(SpikingSACModule, BOX)
    bb = batch(box, B=16)
    mean, _ = box.policy_distribution(box.unroll_actor(bb[Columns.OBS], bb[Columns.STATE_IN]["actor"]))
    torch.testing.assert_close(box.forward_inference(bb)[Columns.ACTIONS], torch.tanh(mean))


def test_stateless_core_acts_on_batches_without_time_axis():
    module = make(SpikingSACModule, DISCRETE, core="mlp")
    b = batch(module, B=5)
    b[Columns.OBS] = {k: v[:, 0] for k, v in b[Columns.OBS].items()}
    out = module.forward_inference(b)
    assert out[Columns.ACTIONS].shape == (5,) and Columns.STATE_OUT not in out


def test_q_values_shapes():
    disc = make(SpikingSACModule, DISCRETE)
    feats = torch.randn(4, 6, disc.critic.output_size)
    q1, q2 = disc.q_values(feats)
    assert q1.shape == q2.shape == (4, 6, 2)
    box = make(SpikingTD3Module, BOX)
    q1, q2 = box.q_values(torch.randn(4, 6, box.critic.output_size), torch.zeros(4, 6, 1))
    assert q1.shape == (4, 6)
    with pytest.raises(ValueError, match="need the actions"):
        box.q_values(torch.randn(4, 6, box.critic.output_size))


def test_q1_value_is_the_first_twin_q_exactly():
    # TD3's actor loss reads q1_value; it must be the critic's Q1, not an approximation of it.
    box = make(SpikingTD3Module, BOX)
    feats, actions = torch.randn(4, 6, box.critic.output_size), torch.rand(4, 6, 1) * 2 - 1
    q1, q2 = box.q_values(feats, actions)
    assert torch.equal(box.q1_value(feats, actions), q1) and not torch.equal(q1, q2)
    disc = make(SpikingSACModule, DISCRETE)
    feats = torch.randn(4, 6, disc.critic.output_size)
    assert torch.equal(disc.q1_value(feats), disc.q_values(feats)[0])


def test_inference_only_copy_has_no_critic_heads_and_loads_the_learner_state():
    learner_copy = make(SpikingSACModule, DISCRETE)
    learner_copy.make_target_networks()
    acting_copy = make(SpikingSACModule, DISCRETE, inference_only=True)
    assert acting_copy.q1 is None and not hasattr(acting_copy, "log_alpha")
    state = learner_copy.get_state(inference_only=True)
    assert not any(k.startswith(("q1.", "q2.", "target_", "log_alpha")) for k in state)
    acting_copy.set_state(state)
    b = batch(learner_copy, B=4)
    torch.testing.assert_close(
        acting_copy.forward_inference(b)[Columns.ACTIONS], learner_copy.forward_inference(b)[Columns.ACTIONS]
    )


def test_targets_start_as_frozen_copies():
    module = make(SpikingTD3Module, BOX)
    module.make_target_networks()
    pairs = module.get_target_network_pairs()
    assert {type(src).__name__ for src, _ in pairs} >= {"RecurrentBackbone", "MLP"}
    for source, target in pairs:
        for (name, p), (_, tp) in zip(source.named_parameters(), target.named_parameters(), strict=True):
            torch.testing.assert_close(p, tp, msg=name)
            assert not tp.requires_grad


def test_td3_refuses_discrete_actions():
    with pytest.raises(ValueError, match="RecurrentSAC"):
        make(SpikingTD3Module, DISCRETE)
