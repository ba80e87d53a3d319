"""The QMIX RLModule: masked epsilon-greedy acting, epsilon schedule, inference-only copies, agent order."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from ray.rllib.core.columns import Columns

from rllib_grsn.modules.connectors import AgentIdPrevAction, agent_order
from rllib_grsn.modules.qmix import SpikingQMixModule, agent_inputs, epsilon_at, select_actions

N_AGENTS, N_ACTIONS, OBS, STATE = 3, 5, 4, 6


def _agent_space() -> gym.spaces.Dict:
    return gym.spaces.Dict(
        {
            "obs": gym.spaces.Box(-1, 1, (OBS,), np.float32),
            "action_mask": gym.spaces.Box(0, 1, (N_ACTIONS,), np.float32),
            "state": gym.spaces.Box(-1, 1, (STATE,), np.float32),
        }
    )


def _module_space() -> gym.spaces.Space:
    agents = [f"agent_{i}" for i in range(N_AGENTS)]
    connector = AgentIdPrevAction(
        gym.spaces.Dict({a: _agent_space() for a in agents}),
        gym.spaces.Dict({a: gym.spaces.Discrete(N_ACTIONS) for a in agents}),
    )
    return connector.observation_space["agent_0"]


def _module(core: str = "grsn", inference_only: bool = False, **model_config) -> SpikingQMixModule:
    return SpikingQMixModule(
        observation_space=_module_space(),
        action_space=gym.spaces.Discrete(N_ACTIONS),
        inference_only=inference_only,
        model_config={"core": core, "hidden": 16, "obs_embed": 16, "head_hiddens": [], **model_config},
    )


def _batch(module: SpikingQMixModule, mask: np.ndarray) -> dict:
    batch_size = mask.shape[0]
    obs = {
        "obs": torch.randn(batch_size, 1, OBS),
        "action_mask": torch.as_tensor(mask, dtype=torch.float32)[:, None],
        "state": torch.randn(batch_size, 1, STATE),
        "agent_id": torch.eye(N_AGENTS)[torch.arange(batch_size) % N_AGENTS][:, None],
        "prev_action": torch.zeros(batch_size, 1, N_ACTIONS),
    }
    state = {k: torch.as_tensor(np.stack([v] * batch_size)) for k, v in module.get_initial_state().items()}
    return {Columns.OBS: obs, Columns.STATE_IN: state}


@pytest.mark.parametrize("epsilon", [0.0, 0.5, 1.0])
def test_acting_never_picks_an_unavailable_action(epsilon):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    mask = (rng.random((512, N_ACTIONS)) < 0.4).astype(np.float32)
    mask[np.arange(512), rng.integers(0, N_ACTIONS, 512)] = 1.0  # at least one available
    q = torch.randn(512, 1, N_ACTIONS) * 100  # large Q on masked actions must not win
    actions = select_actions(q, torch.as_tensor(mask)[:, None], epsilon).squeeze(1).numpy()
    assert mask[np.arange(512), actions].all()


def test_random_choice_covers_every_available_action():
    torch.manual_seed(0)
    mask = torch.tensor([[1.0, 0.0, 1.0, 1.0, 0.0]]).repeat(3000, 1)
    actions = select_actions(torch.zeros(3000, N_ACTIONS), mask, epsilon=1.0)
    counts = np.bincount(actions.numpy(), minlength=N_ACTIONS)
    assert counts[1] == counts[4] == 0
    assert all(abs(c / 3000 - 1 / 3) < 0.05 for c in counts[[0, 2, 3]])


def test_greedy_takes_the_best_available_action():
    q = torch.tensor([[5.0, 9.0, 1.0, 3.0, 0.0]])
    mask = torch.tensor([[1.0, 0.0, 1.0, 1.0, 0.0]])
    assert select_actions(q, mask, epsilon=0.0).item() == 0


def test_all_masked_row_is_an_error():
    with pytest.raises(ValueError, match="no available action"):
        select_actions(torch.zeros(2, N_ACTIONS), torch.zeros(2, N_ACTIONS), epsilon=0.0)


def test_epsilon_anneals_linearly_then_stays():
    assert epsilon_at(0, 1.0, 0.05, 1000) == 1.0
    assert epsilon_at(500, 1.0, 0.05, 1000) == pytest.approx(0.525)
    assert epsilon_at(1000, 1.0, 0.05, 1000) == pytest.approx(0.05)
    assert epsilon_at(10**6, 1.0, 0.05, 1000) == pytest.approx(0.05)


@pytest.mark.parametrize("core", ["grsn", "lif", "gru", "mlp", "grsn_notap"])
def test_module_acts_within_masks_and_carries_state(core):
    module = _module(core, inference_only=True, epsilon_start=0.0, epsilon_finish=0.0)
    mask = np.zeros((6, N_ACTIONS), np.float32)
    mask[:, 2] = 1.0  # only action 2
    batch = _batch(module, mask)
    if not module.is_stateful():
        batch = {Columns.OBS: {k: v.squeeze(1) for k, v in batch[Columns.OBS].items()}}
    out = module.forward_exploration(batch, t=0)
    assert (out[Columns.ACTIONS].reshape(-1) == 2).all()
    if module.is_stateful():
        assert set(out[Columns.STATE_OUT]) == set(module.get_initial_state())


def test_inference_only_copy_holds_no_mixer_and_loads_learner_weights():
    learner_copy = _module()
    learner_copy.make_target_networks()
    runner_copy = _module(inference_only=True)
    assert runner_copy.mixer is None and learner_copy.mixer is not None
    runner_copy.set_state(learner_copy.get_state(inference_only=True))
    for name, tensor in runner_copy.agent.state_dict().items():
        torch.testing.assert_close(tensor, learner_copy.agent.state_dict()[name])


def test_vdn_mixer_sums_agent_values():
    module = _module(mixer="vdn")
    qs = torch.randn(2, 4, N_AGENTS)
    torch.testing.assert_close(module.mix(qs, torch.randn(2, 4, STATE)), qs.sum(-1))


def test_unknown_mixer_names_the_choices():
    with pytest.raises(ValueError, match="qmix, vdn"):
        _module(mixer="qtran")


def test_agent_order_is_numeric():
    assert agent_order(["agent_10", "agent_2", "agent_1"]) == ["agent_1", "agent_2", "agent_10"]


def test_connector_adds_one_hot_id_and_previous_action_spaces():
    space = _module_space()
    assert space["agent_id"].shape == (N_AGENTS,) and space["prev_action"].shape == (N_ACTIONS,)
    assert set(space.spaces) == {"obs", "action_mask", "state", "agent_id", "prev_action"}


def test_q_shortcut_lets_q_read_the_observation_when_no_neuron_fires():
    """pymarl's agent (the default) sees the observation only through the core's spikes; with
    ``q_shortcut`` the Q head also reads the encoder's embedding."""
    plain, shortcut = _module(threshold=1e6), _module(threshold=1e6, q_shortcut=True)  # no neuron fires
    assert shortcut.agent.head.out.in_features == plain.agent.head.out.in_features + 16
    for module, varies in ((plain, False), (shortcut, True)):
        batch = _batch(module, np.ones((4, N_ACTIONS), np.float32))
        q, _, _ = module.agent.unroll(agent_inputs(batch[Columns.OBS]), batch[Columns.STATE_IN])
        assert bool((q - q[:1]).abs().max() > 1e-6) is varies


def test_q_shortcut_must_be_a_flag():
    with pytest.raises(ValueError, match="q_shortcut"):
        _module(q_shortcut="yes")


@pytest.mark.parametrize("core", ["grsn", "gru"])
def test_length_bucketed_unroll_equals_the_padded_batch_on_every_real_step(core):
    """The learner unrolls episodes in groups of similar length, each only as far as it needs: every
    real step's online and target Q and firing rate, and the gradients of a loss over real steps, are
    those of one unroll of the whole padded batch."""
    from rllib_grsn.algorithms.qmix.learner import QMixLearner

    torch.manual_seed(0)
    module = _module(core)
    module.make_target_networks()
    lengths = torch.tensor([3, 9, 1, 6, 9, 2, 5])
    batch, steps = len(lengths), int(lengths.max()) + 1
    width = sum(
        int(gym.spaces.flatdim(module.observation_space[k])) for k in ("obs", "agent_id", "prev_action")
    )
    inputs = torch.randn(batch, steps, N_AGENTS, width)
    real = (torch.arange(steps)[None, :] <= lengths[:, None]).float()  # observations 0..L of each episode

    def loss_and_grads(with_lengths: bool):
        module.zero_grad()
        q, target_q, rate = QMixLearner.agent_q_values_and_spike_rate(
            module, inputs, lengths if with_lengths else None
        )
        loss = (q.pow(2).sum(-1) * real[..., None]).sum()
        loss.backward()
        grads = {n: p.grad.clone() for n, p in module.agent.named_parameters() if p.grad is not None}
        return (
            q.detach() * real[..., None, None],
            target_q * real[..., None, None],
            rate,
            loss.detach(),
            grads,
        )

    q, target_q, rate, loss, grads = loss_and_grads(False)
    q_b, target_q_b, rate_b, loss_b, grads_b = loss_and_grads(True)
    torch.testing.assert_close(q_b, q)
    torch.testing.assert_close(target_q_b, target_q)
    if rate is not None:
        torch.testing.assert_close(rate_b * real[..., None], rate * real[..., None])
    torch.testing.assert_close(loss_b, loss)
    assert grads.keys() == grads_b.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(grads_b[name], grad, msg=name)
