"""Recurrent TD3 and SAC inside RLlib: replayed windows reproduce acting, each optimiser steps only its
network, targets follow by Polyak averaging, every core trains, and checkpoints restore the run.

Each test builds a small Algorithm (hidden 16, windows of 8, batches of 4) in one shared Ray session.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.utils.torch_utils import convert_to_torch_tensor
from stop_keys import assert_every_result_key_can_stop_a_run

from rllib_grsn.evaluation import evaluate_checkpoint
from rllib_grsn.experiment import build_experiment
from rllib_grsn.neurons import CORE_NAMES

SMALL = {
    "seed": 0,
    "train_batch_size_per_learner": 4,
    "num_steps_sampled_before_learning_starts": 50,
    "num_random_steps": 50,
    "min_sample_timesteps_per_iteration": 100,
}
TASKS = {"TD3": "Pendulum-P", "RecurrentSAC": "CartPole-V"}


def build(run: str, env: str | None = None, core: str = "grsn", model: dict | None = None, **config):
    model_config = {"core": core, "hidden": 16, "head_hiddens": [32], "max_seq_len": 8, **(model or {})}
    spec = {"env": env or TASKS[run], "run": run, "config": {**SMALL, **config, "model_config": model_config}}
    return build_experiment(f"{run}-{core}", spec).algo_config.build_algo()


def learner_of(algo):
    return algo.learner_group._learner


def params(modules) -> list[torch.Tensor]:
    return [p.detach().clone() for m in modules for p in m.parameters()]


def changed(before: list[torch.Tensor], modules) -> bool:
    return any(
        not torch.equal(b, p)
        for b, p in zip(before, (p for m in modules for p in m.parameters()), strict=True)
    )


def fill_buffer(algo, steps: int = 200) -> None:
    episodes = algo.env_runner.sample(num_timesteps=steps, random_actions=False)
    algo.replay_buffer.add(episodes)


def update(algo) -> None:
    batch = algo.sample_train_batch()
    tensors = convert_to_torch_tensor(dict(batch.policy_batches[DEFAULT_MODULE_ID]))
    learner_of(algo)._uncompiled_update({DEFAULT_MODULE_ID: tensors})


def test_replayed_window_reproduces_the_actions_taken(ray_session):
    """A window that starts at the episode start, unrolled from the zero state as the learner does,
    gives exactly the actions the EnvRunner took step by step (TAP: one neuron update per step,
    previous action and reward as acting saw them)."""
    algo = build("TD3", model={"max_seq_len": 256}, exploration_noise=0.0, num_random_steps=0)
    try:
        algo.env_runner.module.set_state(algo.learner_group.get_weights()[DEFAULT_MODULE_ID])
        episodes = algo.env_runner.sample(num_episodes=1, explore=True)
        algo.replay_buffer.add(episodes)
        windows = algo.replay_buffer.sample(2, seq_len=256)
        assert (windows["seq_lens"] == 200).all()  # Pendulum: 200 steps, one window from step 0
        module = learner_of(algo).module[DEFAULT_MODULE_ID].unwrapped()
        obs = convert_to_torch_tensor(windows["obs"])
        state = convert_to_torch_tensor(windows["state_in"])
        with torch.no_grad():
            actions = module.policy_action(module.unroll_actor(obs, state["actor"]))
        taken = torch.as_tensor(windows["actions"])
        torch.testing.assert_close(actions[:, :200], taken[:, :200], atol=1e-5, rtol=1e-5)
    finally:
        algo.stop()


def test_td3_delays_actor_and_target_updates(ray_session):
    algo = build("TD3", policy_delay=2, tau=0.5)
    try:
        fill_buffer(algo)
        # Zero-state replay (the default) does not keep the recorded states.
        assert all("state_out" not in eps.extra_model_outputs for eps in algo.replay_buffer.episodes)
        module = learner_of(algo).module[DEFAULT_MODULE_ID].unwrapped()
        actor, critic = [module.actor, module.pi_head], [module.critic, module.q1, module.q2]
        target_critic = [module.target_critic]

        # Step 0 is an actor step: everything moves, targets by tau toward the new online weights.
        a0, c0, t0 = params(actor), params(critic), params(target_critic)
        update(algo)
        assert changed(a0, actor) and changed(c0, critic)
        for old, new_target, online in zip(
            t0, module.target_critic.parameters(), module.critic.parameters(), strict=True
        ):
            torch.testing.assert_close(new_target, 0.5 * old + 0.5 * online.detach())

        # Step 1 trains the critics only; actor and targets stay.
        a1, c1, t1 = params(actor), params(critic), params(target_critic)
        update(algo)
        assert changed(c1, critic)
        assert not changed(a1, actor), "TD3 must not step the actor between delayed updates"
        assert not changed(t1, target_critic), "TD3 updates targets with the actor only"
    finally:
        algo.stop()


def test_sac_losses_train_only_their_own_networks(ray_session):
    algo = build("RecurrentSAC", critic_lr=0.0, alpha_lr=0.0)
    try:
        fill_buffer(algo)
        module = learner_of(algo).module[DEFAULT_MODULE_ID].unwrapped()
        actor, critic = [module.actor, module.pi_head], [module.critic, module.q1, module.q2]
        a0, c0 = params(actor), params(critic)
        update(algo)
        assert changed(a0, actor)
        assert not changed(c0, critic), "the actor loss leaked into the critic (critic_lr is 0)"
    finally:
        algo.stop()


def test_sac_temperature_falls_while_the_policy_is_more_random_than_the_target(ray_session):
    # A fresh discrete policy is near uniform: entropy ~ log 2 > target 0.7 * log 2, so alpha must fall.
    algo = build("RecurrentSAC", alpha_lr=0.01)
    try:
        fill_buffer(algo)
        module = learner_of(algo).module[DEFAULT_MODULE_ID].unwrapped()
        assert module.log_alpha.item() == pytest.approx(0.0)
        for _ in range(3):
            update(algo)
        assert module.log_alpha.item() < -0.02
    finally:
        algo.stop()


def test_stored_start_state_with_burn_in_trains(ray_session):
    """R2D2 replay: windows start from the actor's and critic's states recorded while acting."""
    algo = build("RecurrentSAC", replay_start_state="stored", burn_in=3)
    try:
        fill_buffer(algo)
        batch = algo.sample_train_batch().policy_batches[DEFAULT_MODULE_ID]
        assert batch["obs"]["_orig_obs"].shape[1] == 3 + 8  # burn-in + window
        assert (batch["loss_mask"][:, :3] == 0).all()
        # Some window starts mid-episode, so its start state is a recorded, non-zero one.
        assert np.abs(batch["state_in"]["critic"]["c"]).sum() > 0
        module = learner_of(algo).module[DEFAULT_MODULE_ID].unwrapped()
        c0 = params([module.critic])
        update(algo)
        assert changed(c0, [module.critic])
    finally:
        algo.stop()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("run", "core", "env"),
    [(run, core, TASKS[run]) for run in ("TD3", "RecurrentSAC") for core in CORE_NAMES]
    + [("RecurrentSAC", "grsn", "Pendulum-P")],  # continuous SAC
)
def test_one_iteration_trains_every_core(ray_session, run, core, env):
    algo = build(run, env=env, core=core)
    try:
        before = {k: v.clone() for k, v in algo.get_module().state_dict().items()}
        result = algo.train()
        learner_module = learner_of(algo).module[DEFAULT_MODULE_ID].unwrapped()
        after = learner_module.state_dict()
        assert result["num_env_steps_sampled_lifetime"] >= 100
        assert all(torch.isfinite(v).all() for v in after.values())
        for part in ("actor.core.", "critic.core."):
            keys = [k for k in after if k.startswith(part)]
            assert keys and any(not torch.equal(before[k], after[k]) for k in keys), f"{part} was not trained"
        # The EnvRunner acts with the weights the learner just produced.
        for key, value in algo.env_runner.module.state_dict().items():
            torch.testing.assert_close(value, after[key], msg=key)
        losses = result["learners"][DEFAULT_MODULE_ID]
        assert np.isfinite(losses["critic_loss"]) and np.isfinite(losses["actor_loss"])
        assert_every_result_key_can_stop_a_run(result)
    finally:
        algo.stop()


@pytest.mark.slow
def test_checkpoint_restores_weights_replay_and_evaluates(ray_session, tmp_path):
    algo = build("RecurrentSAC", evaluation_interval=1, evaluation_duration=2)
    try:
        result = algo.train()
        assert "episode_return_mean" in result["evaluation"]["env_runners"]
        assert_every_result_key_can_stop_a_run(result)
        stored = algo.replay_buffer.num_timesteps()
        weights = algo.learner_group.get_weights()[DEFAULT_MODULE_ID]
        window = algo.replay_buffer.sample(4, seq_len=8)
        algo.replay_buffer.rng = np.random.default_rng(123)  # make the next draws comparable
        algo.save_to_path(tmp_path)
        next_window = algo.replay_buffer.sample(4, seq_len=8)
    finally:
        algo.stop()

    restored = build("RecurrentSAC", evaluation_interval=1, evaluation_duration=2)
    try:
        restored.restore_from_path(tmp_path)
        assert restored.replay_buffer.num_timesteps() == stored > 0
        for key, value in restored.learner_group.get_weights()[DEFAULT_MODULE_ID].items():
            np.testing.assert_array_equal(value, weights[key], err_msg=key)
        again = restored.replay_buffer.sample(4, seq_len=8)
        np.testing.assert_array_equal(again["actions"], next_window["actions"])
        assert window["actions"].shape == again["actions"].shape
        steps_before = restored.metrics.peek(("env_runners", "num_env_steps_sampled_lifetime"), default=0)
        restored.train()
        assert restored.metrics.peek(("env_runners", "num_env_steps_sampled_lifetime")) > steps_before
    finally:
        restored.stop()

    summary = evaluate_checkpoint(tmp_path, episodes=2)
    assert summary.episodes == 2 and all(1 <= n <= 200 for n in summary.lengths)
