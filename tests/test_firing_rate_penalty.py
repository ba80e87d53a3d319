"""The firing-rate penalty (``model_config.firing_rate_penalty``): every learner of a spiking module adds
``penalty * mean firing rate`` of its (deployed) spiking core to the loss, which lowers the spike count
(fewer synaptic operations, Eq. 15); with 0 the losses are what they were, and non-spiking cores
accept the key without effect. Learners are built in-process (no Ray) except the one slow end-to-end run.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import pytest
import torch
from ray.rllib.algorithms.ppo.torch.ppo_torch_learner import PPOTorchLearner
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.env.multi_agent_env_runner import MultiAgentEnvRunner
from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner
from ray.rllib.utils.metrics.metrics_logger import MetricsLogger
from ray.rllib.utils.torch_utils import convert_to_torch_tensor

import rllib_grsn.envs
from rllib_grsn.algorithms.firing_rate import (
    FIRING_RATE_KEY,
    FIRING_RATE_PENALTY_LOSS_KEY,
    add_firing_rate_penalty,
    mean_firing_rate,
)
from rllib_grsn.algorithms.off_policy.algorithm import _BATCH_COLUMNS
from rllib_grsn.algorithms.ppo_learner import SpikingPPOLearner
from rllib_grsn.algorithms.qmix import SHARED_MODULE_ID, QMixConfig, TeamEpisodeReplay
from rllib_grsn.algorithms.replay.sequence_replay import SequenceReplayBuffer
from rllib_grsn.experiment import ExperimentError, build_experiment
from rllib_grsn.modules import SpikingActorCriticModule, SpikingModelConfig, model_config_errors
from rllib_grsn.modules.backbone import SPIKE_RATE

# A low threshold makes untrained neurons fire, so there are spikes to penalise.
SPIKY = {"hidden": 16, "threshold": 0.05, "max_seq_len": 8}


# --------------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("value", "expected"),
    [(-0.1, "must be >= 0"), (True, "must be a number"), ("1e-3", "write 1.0e-3")],
)
def test_bad_penalty_is_reported_with_its_key(value, expected):
    (problem,) = model_config_errors(
        {"core": "lif", "firing_rate_penalty": value}, where="exp.config.model_config"
    )
    assert problem.startswith("exp.config.model_config.firing_rate_penalty: ")
    assert expected in problem


def test_negative_penalty_fails_the_experiment():
    model = {"core": "lif", "firing_rate_penalty": -1.0}
    with pytest.raises(ExperimentError) as info:
        build_experiment("exp", {"env": "CartPole-P", "run": "PPO", "config": {"model_config": model}})
    assert any("model_config.firing_rate_penalty" in p for p in info.value.problems)


def test_penalty_defaults_to_off_and_is_accepted_for_non_spiking_cores():
    assert SpikingModelConfig().firing_rate_penalty == 0.0
    # Accepted (not refused) so one config can compare cores, e.g. a sweep over core: [gru, grsn];
    # a core without spikes has nothing to penalise (see the gru test below).
    assert model_config_errors({"core": "gru", "firing_rate_penalty": 0.1}) == []
    assert model_config_errors({"core": "mlp", "firing_rate_penalty": 2}) == []


# ----------------------------------------------------------------------- the module's output


def _module(core: str, **model_config: Any) -> SpikingActorCriticModule:
    torch.manual_seed(0)
    return SpikingActorCriticModule(
        observation_space=gym.spaces.Box(-1, 1, (3,)),
        action_space=gym.spaces.Discrete(2),
        model_config={"core": core, **SPIKY, **model_config},
    )


def _batch(module: SpikingActorCriticModule, batch_size: int = 6, steps: int = 5) -> dict[str, Any]:
    torch.manual_seed(1)
    if not module.is_stateful():
        return {Columns.OBS: torch.randn(batch_size * steps, 3)}
    state = {
        k: torch.as_tensor(v).expand(batch_size, *v.shape).clone()
        for k, v in module.get_initial_state().items()
    }
    return {Columns.OBS: torch.randn(batch_size, steps, 3), Columns.STATE_IN: state}


@pytest.mark.parametrize("core", ["grsn", "lif", "grsn_notap", "lif_notap"])
def test_forward_train_exposes_the_cores_firing_rate_and_acting_is_unchanged(core):
    module = _module(core)
    batch = _batch(module)
    out = module.forward_train(batch)
    features = out[Columns.EMBEDDINGS]
    rate = out[SPIKE_RATE]
    assert rate.shape == features.shape[:-1]  # [B, T] (stateful) or [B] (stateless)
    torch.testing.assert_close(rate, features[..., :16].mean(-1))
    assert 0.0 < float(rate.mean()) <= 1.0
    with torch.no_grad():
        acting = module.forward_exploration(batch)
    assert SPIKE_RATE not in acting
    torch.testing.assert_close(acting[Columns.ACTION_DIST_INPUTS], out[Columns.ACTION_DIST_INPUTS])


@pytest.mark.parametrize("core", ["gru", "mlp"])
def test_non_spiking_cores_expose_no_rate(core):
    module = _module(core, firing_rate_penalty=1.0)
    assert SPIKE_RATE not in module.forward_train(_batch(module))


# ---------------------------------------------------------------------------- the loss term


class _Learner:
    """What add_firing_rate_penalty uses of a Learner: its metrics."""

    def __init__(self) -> None:
        self.metrics = MetricsLogger()


def test_zero_penalty_returns_the_loss_itself_and_still_logs_the_rate():
    learner, loss = _Learner(), torch.tensor(1.25, requires_grad=True)
    rate = torch.tensor([[0.5, 1.0], [0.25, 0.0]])
    mask = torch.tensor([[True, True], [True, False]])
    assert add_firing_rate_penalty(learner, "m", loss, rate, mask, 0.0) is loss
    assert add_firing_rate_penalty(learner, "m", loss, None, mask, 3.0) is loss  # no spiking core
    assert float(learner.metrics.peek(("m", FIRING_RATE_KEY))) == pytest.approx(0.5833333)  # padded step out
    penalised = add_firing_rate_penalty(learner, "m", loss, rate, mask, 0.3)
    assert float(penalised) == pytest.approx(1.25 + 0.3 * 0.5833333)
    assert float(learner.metrics.peek(("m", FIRING_RATE_PENALTY_LOSS_KEY))) == pytest.approx(0.3 * 0.5833333)


def test_mean_firing_rate_counts_every_agent_of_a_valid_step():
    rate = torch.tensor([[[1.0, 0.0], [0.5, 0.5]], [[1.0, 1.0], [0.0, 0.0]]])  # [B, T, N]
    filled = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    assert float(mean_firing_rate(rate, filled.unsqueeze(-1))) == pytest.approx(4.0 / 6.0)
    assert float(mean_firing_rate(rate, None)) == pytest.approx(0.5)


@pytest.mark.parametrize(("core", "bias"), [("lif", "fc.bias"), ("grsn", "input_gate.bias")])
def test_penalty_gradient_reaches_the_core_and_points_to_fewer_spikes(core, bias):
    """One step from rest: raising the input bias raises u_t, hence (through the surrogate, Eq. 6) the
    spikes, so d(rate)/d(bias) >= 0 everywhere and > 0 somewhere; gradient descent lowers the bias."""
    module = _module(core)
    batch = _batch(module, steps=1)
    rate = module.forward_train(batch)[SPIKE_RATE].mean()
    core_params = dict(module.backbone.core.named_parameters())
    grads = dict(zip(core_params, torch.autograd.grad(rate, list(core_params.values())), strict=True))
    assert all(float(g.abs().sum()) > 0 for name, g in grads.items() if name != "decay_logit")
    assert bool((grads[bias] >= 0).all()) and bool((grads[bias] > 0).any())


@pytest.mark.parametrize("core", ["grsn", "lif", "lif_notap"])
def test_a_few_penalty_steps_reduce_the_firing_rate(core):
    module = _module(core)
    batch = _batch(module, steps=8)
    params = list(module.backbone.parameters())
    optimiser = torch.optim.Adam(params, lr=1e-2)

    def rate() -> torch.Tensor:
        return module.forward_train(batch)[SPIKE_RATE].mean()

    before = float(rate())
    for _ in range(15):
        optimiser.zero_grad()
        (0.5 * rate()).backward()
        optimiser.step()
    after = float(rate())
    assert after < 0.5 * before, (before, after)


# --------------------------------------------------------------------------------- learners


def _spaces(runner: SingleAgentEnvRunner) -> dict[str, Any]:
    env, module = runner.env, runner.module
    return {
        "__env__": (env.single_observation_space, env.single_action_space),
        DEFAULT_MODULE_ID: (module.observation_space, module.action_space),
    }


class _CapturingPPOLearner(SpikingPPOLearner):
    """Keeps the last (batch, forward outputs) its loss saw, to recompute losses on exactly them."""

    def compute_loss_for_module(self, *, module_id, config, batch, fwd_out):
        self.captured = (config, batch, fwd_out)
        return super().compute_loss_for_module(
            module_id=module_id, config=config, batch=batch, fwd_out=fwd_out
        )


def _ppo_learner(core: str, penalty: float):
    model = {"core": core, **SPIKY, "firing_rate_penalty": penalty}
    config = build_experiment(
        "t", {"env": "CartPole-P", "run": "PPO", "config": {"seed": 0, "model_config": model}}
    )
    config = config.algo_config
    assert config.learner_class is SpikingPPOLearner  # what the experiment trains PPO with
    config.learners(learner_class=_CapturingPPOLearner)
    config.env_runners(num_envs_per_env_runner=1)
    runner = SingleAgentEnvRunner(config=config)
    learner = config.build_learner(spaces=_spaces(runner))
    episodes = runner.sample(num_episodes=3, explore=True)
    runner.stop()
    results = learner.update(
        episodes=episodes, timesteps={"num_env_steps_sampled_lifetime": 0}, num_epochs=1, minibatch_size=4096
    )
    return learner, results


@pytest.mark.parametrize("core", ["lif", "grsn_notap"])
def test_ppo_loss_is_rllibs_with_zero_penalty_and_adds_the_rate_term_otherwise(core):
    learner, results = _ppo_learner(core, 0.0)
    config, batch, fwd_out = learner.captured
    args = {"module_id": DEFAULT_MODULE_ID, "config": config, "batch": batch, "fwd_out": fwd_out}
    rllib_loss = PPOTorchLearner.compute_loss_for_module(learner, **args)
    assert torch.equal(learner.compute_loss_for_module(**args), rllib_loss)  # bit-identical
    assert FIRING_RATE_KEY in results[DEFAULT_MODULE_ID]
    assert FIRING_RATE_PENALTY_LOSS_KEY not in results[DEFAULT_MODULE_ID]

    module = learner.module[DEFAULT_MODULE_ID].unwrapped()
    module.spiking_config.firing_rate_penalty = 0.25
    rate = mean_firing_rate(fwd_out[SPIKE_RATE], batch[Columns.LOSS_MASK])
    assert 0.0 < float(rate) < 1.0
    torch.testing.assert_close(learner.compute_loss_for_module(**args), rllib_loss + 0.25 * rate)


def test_ppo_with_a_gru_core_accepts_the_penalty_without_effect():
    learner, results = _ppo_learner("gru", 1.0)
    config, batch, fwd_out = learner.captured
    args = {"module_id": DEFAULT_MODULE_ID, "config": config, "batch": batch, "fwd_out": fwd_out}
    assert torch.equal(
        learner.compute_loss_for_module(**args), PPOTorchLearner.compute_loss_for_module(learner, **args)
    )
    assert FIRING_RATE_KEY not in results[DEFAULT_MODULE_ID]


def _off_policy_learner(run: str, env: str, core: str):
    model = {"core": core, **SPIKY, "head_hiddens": [32]}
    config = build_experiment("t", {"env": env, "run": run, "config": {"seed": 0, "model_config": model}})
    config = config.algo_config
    config.env_runners(num_envs_per_env_runner=1)
    runner = SingleAgentEnvRunner(config=config)
    learner = config.build_learner(spaces=_spaces(runner))
    replay = SequenceReplayBuffer(
        capacity=1000, seed=0, initial_state=runner.module.get_initial_state() or None
    )
    replay.add(runner.sample(num_timesteps=100, random_actions=True))
    runner.stop()
    windows = replay.sample(4, seq_len=8)
    columns = {column: windows[key] for key, column in _BATCH_COLUMNS.items()}
    if not columns[Columns.STATE_IN]:
        del columns[Columns.STATE_IN]
    return learner, convert_to_torch_tensor(columns)


@pytest.mark.parametrize(
    ("run", "env", "core"),
    [
        ("TD3", "Pendulum-P", "lif"),
        ("RecurrentSAC", "CartPole-V", "grsn"),
        ("RecurrentSAC", "CartPole-V", "lif_notap"),
    ],
)
def test_off_policy_penalty_enters_the_actor_loss_only(run, env, core):
    learner, batch = _off_policy_learner(run, env, core)
    module = learner.module[DEFAULT_MODULE_ID].unwrapped()
    config = learner.config.get_config_for_module(DEFAULT_MODULE_ID)

    def losses(penalty: float) -> tuple[dict, dict]:
        module.spiking_config.firing_rate_penalty = penalty
        torch.manual_seed(3)  # target smoothing noise / policy samples
        learner.num_gradient_steps = 0  # TD3: an actor step
        terms, params, _ = learner.compute_off_policy_losses(DEFAULT_MODULE_ID, module, config, batch)
        grads = {
            name: torch.autograd.grad(loss, params[name], retain_graph=True, allow_unused=True)
            for name, loss in terms.items()
        }
        return terms, grads

    plain, plain_grads = losses(0.0)
    metrics = learner.metrics.peek(DEFAULT_MODULE_ID)
    rate = float(metrics[FIRING_RATE_KEY])
    assert 0.0 < rate < 1.0 and "critic_firing_rate" in metrics
    penalised, penalised_grads = losses(2.0)
    assert torch.equal(penalised["critic_loss"], plain["critic_loss"])  # the critic is not penalised
    for a, b in zip(penalised_grads["critic_loss"], plain_grads["critic_loss"], strict=True):
        assert (a is None and b is None) or torch.equal(a, b)
    assert float(penalised["actor_loss"] - plain["actor_loss"]) == pytest.approx(2.0 * rate, rel=1e-5)
    assert float(learner.metrics.peek((DEFAULT_MODULE_ID, FIRING_RATE_PENALTY_LOSS_KEY))) == pytest.approx(
        2 * rate
    )
    core_grads = zip(penalised_grads["actor_loss"], plain_grads["actor_loss"], strict=True)
    assert any(a is not None and not torch.equal(a, b) for a, b in core_grads)


def test_qmix_penalty_enters_the_team_loss():
    rllib_grsn.envs.register_multi_agent_envs()
    model = {"core": "lif", "hidden": 16, "obs_embed": 16, "head_hiddens": [], "threshold": 0.05}
    config = (
        QMixConfig()
        .environment("two_step_game")
        .rl_module(rl_module_spec=RLModuleSpec(model_config=model))
        .env_runners(num_envs_per_env_runner=1)
        .debugging(seed=0)
    )
    runner = MultiAgentEnvRunner(config=config)
    replay = TeamEpisodeReplay(10, seed=0)
    replay.add(runner.sample(num_episodes=4, explore=True))
    acting = runner.module[SHARED_MODULE_ID]
    runner.stop()
    spaces = {"__env__": (None, None), SHARED_MODULE_ID: (acting.observation_space, acting.action_space)}
    learner = config.build_learner(spaces=spaces)
    module = learner.module[SHARED_MODULE_ID].unwrapped()
    batch = convert_to_torch_tensor(replay.sample(4))

    plain = learner.compute_qmix_loss(SHARED_MODULE_ID, module, batch)
    rate = float(learner.metrics.peek((SHARED_MODULE_ID, FIRING_RATE_KEY)))
    assert 0.0 < rate < 1.0
    module.spiking_config.firing_rate_penalty = 0.5
    penalised = learner.compute_qmix_loss(SHARED_MODULE_ID, module, batch)
    assert float(penalised - plain) == pytest.approx(0.5 * rate, rel=1e-5)
    agent_core = [p for p in module.agent.core.parameters() if p.requires_grad]
    diff = torch.autograd.grad(penalised - plain, agent_core, allow_unused=True)
    assert any(g is not None and float(g.abs().sum()) > 0 for g in diff)


# ------------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_ppo_run_logs_the_firing_rate_and_its_penalty(ray_session):
    small = {"train_batch_size": 256, "minibatch_size": 128, "num_epochs": 1, "num_env_runners": 0, "seed": 0}
    model = {"core": "grsn", **SPIKY, "firing_rate_penalty": 0.5}
    spec = {"env": "CartPole-P", "run": "PPO", "config": {**small, "model_config": model}}
    algo = build_experiment("penalty", spec).algo_config.build_algo()
    try:
        learner_results = algo.train()["learners"][DEFAULT_MODULE_ID]
    finally:
        algo.stop()
    rate = float(learner_results[FIRING_RATE_KEY])
    assert 0.0 < rate < 1.0
    assert float(learner_results[FIRING_RATE_PENALTY_LOSS_KEY]) == pytest.approx(0.5 * rate, rel=1e-5)
