"""The surrogate-width schedule: ``model_config.alpha: [[timestep, value], ...]`` is validated before Ray
starts, evaluated like RLlib's ``lr`` schedules, reaches every spiking cell of the Learners' modules
(changing the surrogate gradient of Eq. 6 and nothing else), is logged as ``surrogate_alpha`` and
continues from a restored checkpoint's env-step count."""

from __future__ import annotations

import math

import pytest
import torch
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.utils.schedules.piecewise_schedule import PiecewiseSchedule

from rllib_grsn.algorithms.callbacks import callback_classes
from rllib_grsn.algorithms.ppo_learner import SpikingPPOLearner
from rllib_grsn.algorithms.surrogate_schedule import (
    SURROGATE_ALPHA_KEY,
    SurrogateAlphaSchedule,
    apply_alpha_schedule,
    sync_surrogate_alpha,
)
from rllib_grsn.experiment import ExperimentError, build_experiment
from rllib_grsn.modules import SpikingActorCriticModule, SpikingModelConfig, model_config_errors
from rllib_grsn.modules.model_config import scheduled_value
from rllib_grsn.neurons import (
    GRSNCell,
    LIFCell,
    atan_surrogate_grad,
    build_core,
    set_surrogate_alpha,
    spiking_cells,
)

SCHEDULE = [[0, 1.0], [512, 5.0]]
EXAMPLE = "[[0, 1.0], [100000, 4.0]]"


# --------------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("alpha", "expected"),
    [
        ("wide", ["must be a number > 0 or a schedule", EXAMPLE, "'wide'"]),
        ("1e-3", ["YAML reads 1e-3 as a string; write 1.0e-3"]),
        (True, ["must be a number > 0 or a schedule", "True"]),
        (0.0, ["must be > 0", "Eq. 6"]),
        (-2, ["must be > 0", "-2"]),
        (math.inf, ["finite"]),
        ([[0, 1.0]], ["2 or more [timestep, value] number pairs", EXAMPLE]),
        ([1.0, 2.0], ["2 or more [timestep, value] number pairs", EXAMPLE]),
        ([[0, 1.0], [10, "2"]], ["number pairs", EXAMPLE]),
        ([[0, 1.0], [10, math.nan]], ["finite"]),
        ([[100, 1.0], [200, 2.0]], ["must start at timestep 0", EXAMPLE]),
        ([[0, 1.0], [500, 2.0], [500, 3.0]], ["timesteps must increase", EXAMPLE]),
        ([[0, 1.0], [500, 2.0], [400, 3.0]], ["timesteps must increase"]),
        ([[0, 1.0], [500, 0.0]], ["values must be > 0"]),
    ],
)
def test_bad_alpha_is_reported_with_its_key_and_an_example(alpha, expected):
    (problem,) = model_config_errors({"core": "grsn", "alpha": alpha}, where="exp.config.model_config")
    assert problem.startswith("exp.config.model_config.alpha: ")
    assert "Value error" not in problem  # pydantic's prefix would only repeat what the message says
    for part in expected:
        assert part in problem


def test_bad_alpha_schedule_fails_the_experiment_before_ray_starts():
    model = {"core": "grsn", "alpha": [[10, 1.0], [100, 2.0]]}
    with pytest.raises(ExperimentError) as info:
        build_experiment("exp", {"env": "CartPole-P", "run": "PPO", "config": {"model_config": model}})
    assert any(
        p.startswith("exp.config.model_config.alpha: a schedule must start") for p in info.value.problems
    )


@pytest.mark.parametrize("alpha", [2, 2.5, [[0, 1], [1000, 4.0]], ([0, 3.0], [10, 1.0], [20.5, 2.0])])
def test_good_alpha_values_are_accepted(alpha):
    assert model_config_errors({"alpha": alpha}) == []


def test_a_schedule_keeps_its_points_and_gives_the_initial_value():
    cfg = SpikingModelConfig(alpha=[[0, 1.5], [1000, 4.0]])
    assert cfg.alpha_schedule == [[0, 1.5], [1000, 4.0]]
    assert cfg.model_dump()["alpha"] == [[0, 1.5], [1000, 4.0]]  # what RLlib hands to the modules
    assert cfg.initial_surrogate_alpha == 1.5
    fixed = SpikingModelConfig(alpha=3)
    assert fixed.alpha_schedule is None and fixed.initial_surrogate_alpha == 3.0


# ---------------------------------------------------------------------------- value function


def test_schedule_is_piecewise_linear_then_constant():
    schedule = [[0, 1.0], [100, 3.0], [300, 2.0]]
    assert scheduled_value(schedule, 0) == 1.0
    assert scheduled_value(schedule, 50) == pytest.approx(2.0)
    assert scheduled_value(schedule, 100) == 3.0
    assert scheduled_value(schedule, 200) == pytest.approx(2.5)
    assert scheduled_value(schedule, 300) == 2.0
    assert scheduled_value(schedule, 10**9) == 2.0  # constant after the last point
    assert scheduled_value(2.5, 12345) == 2.5  # a number is a constant schedule


def test_schedule_matches_rllibs_piecewise_schedule():
    schedule = [[0, 4.0], [1000, 1.0], [2500, 2.0]]
    rllib = PiecewiseSchedule(schedule, outside_value=schedule[-1][-1], framework=None)
    for t in range(0, 4000, 37):
        assert scheduled_value(schedule, t) == pytest.approx(rllib.value(t), rel=1e-12)


# ------------------------------------------------------------------------ cells and gradients


SPIKING = ["grsn", "lif", "grsn_notap", "lif_notap"]


def _input_grad(core: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    out, _ = core.unroll(x, core.initial_state(x.shape[0]))
    out.sum().backward()
    return x.grad


@pytest.mark.parametrize("name", SPIKING)
def test_setting_alpha_changes_only_the_surrogate_gradient(name):
    torch.manual_seed(0)
    core = build_core(name, 6, 16, threshold=0.3, alpha=2.0)
    x = torch.randn(4, 5, 6)
    with torch.no_grad():
        spikes_before, _ = core.unroll(x, core.initial_state(4))
    grad_before = _input_grad(core, x)

    assert set_surrogate_alpha(core, 5.0) == 1
    assert [c.alpha for c in spiking_cells(core)] == [5.0]
    with torch.no_grad():
        spikes_after, _ = core.unroll(x, core.initial_state(4))
    torch.testing.assert_close(spikes_after, spikes_before, rtol=0, atol=0)  # Eq. 5 ignores alpha
    grad_after = _input_grad(core, x)
    assert not torch.allclose(grad_after, grad_before)

    # Same gradient as a core built with that width from the start: nothing else changed.
    fresh = build_core(name, 6, 16, threshold=0.3, alpha=5.0)
    fresh.load_state_dict(core.state_dict())
    torch.testing.assert_close(_input_grad(fresh, x), grad_after)


@pytest.mark.parametrize("alpha", [0.5, 5.0])
def test_lif_surrogate_gradient_follows_eq6_with_the_new_alpha(alpha):
    """One LIF step from u=0: u = (1-beta) c, o = Θ(u - theta), so do/dc = (1-beta) h'(u - theta)."""
    cell = LIFCell(3, 8, decay=0.5, threshold=0.2, alpha=2.0)
    set_surrogate_alpha(cell, alpha)
    c = torch.linspace(-1.0, 1.5, 8).repeat(2, 1).unsqueeze(1).requires_grad_(True)  # [B=2, T=1, H]
    spikes, _ = cell.unroll_projected(c, cell.initial_state(2))
    spikes.sum().backward()
    u = 0.5 * c.detach()
    expected = 0.5 * atan_surrogate_grad(u - 0.2, alpha)
    torch.testing.assert_close(c.grad, expected)


def test_grsn_surrogate_gradient_follows_eq6_with_the_new_alpha():
    """One GRSN step from zero state: c = (1-F) J, u = (1-beta) c, do/dJ = (1-F)(1-beta) h'(u - theta)."""
    alpha = 4.0
    cell = GRSNCell(3, 6, decay=0.5, threshold=0.1, alpha=2.0)
    set_surrogate_alpha(cell, alpha)
    forget = torch.full((1, 1, 6), 0.25)
    drive = torch.linspace(0.0, 1.0, 6).reshape(1, 1, 6).requires_grad_(True)
    spikes, _ = cell.unroll_projected(torch.cat([forget, drive], dim=-1), cell.initial_state(1))
    spikes.sum().backward()
    beta = cell.beta.detach()
    u = (1 - beta) * 0.75 * drive.detach()
    torch.testing.assert_close(drive.grad, 0.75 * (1 - beta) * atan_surrogate_grad(u - 0.1, alpha))


def test_set_surrogate_alpha_counts_cells_and_refuses_bad_widths():
    assert set_surrogate_alpha(build_core("gru", 4, 8), 3.0) == 0
    assert set_surrogate_alpha(build_core("mlp", 4, 8), 3.0) == 0
    both = torch.nn.ModuleList([build_core("lif", 4, 8), build_core("grsn_notap", 4, 8)])
    assert set_surrogate_alpha(both, 3.0) == 2
    with pytest.raises(ValueError, match="alpha"):
        set_surrogate_alpha(both, 0.0)
    assert [c.alpha for c in spiking_cells(both)] == [3.0, 3.0]  # unchanged by the refused value


# ------------------------------------------------------------------- modules and the callback


def _module(core: str = "grsn", alpha=SCHEDULE) -> SpikingActorCriticModule:
    import gymnasium as gym

    return SpikingActorCriticModule(
        observation_space=gym.spaces.Box(-1, 1, (2,)),
        action_space=gym.spaces.Discrete(2),
        model_config={"core": core, "hidden": 8, "alpha": alpha},
    )


class _FakeLearner:
    """What apply_alpha_schedule reads of a Learner: ``module`` keyed by module id."""

    def __init__(self, **modules):
        self.module = modules


def test_modules_start_at_the_schedules_initial_value_and_follow_it():
    learner = _FakeLearner(
        a=_module("grsn"), b=_module("lif_notap"), fixed=_module(alpha=3.0), gru=_module("gru")
    )
    assert [c.alpha for c in spiking_cells(learner.module["a"])] == [1.0]
    values = apply_alpha_schedule(learner, 256)
    assert values == {"a": pytest.approx(3.0), "b": pytest.approx(3.0)}  # fixed alpha and gru left out
    assert [c.alpha for c in spiking_cells(learner.module["b"])] == [pytest.approx(3.0)]
    assert [c.alpha for c in spiking_cells(learner.module["fixed"])] == [3.0]
    assert apply_alpha_schedule(learner, 10_000) == {"a": 5.0, "b": 5.0}


def test_the_experiment_adds_the_callback_to_every_spiking_model():
    def config(alpha):
        model = {"core": "grsn", "hidden": 8, "alpha": alpha}
        return build_experiment(
            "exp", {"env": "CartPole-P", "run": "PPO", "config": {"model_config": model}}
        ).algo_config

    scheduled = config(SCHEDULE)
    assert SurrogateAlphaSchedule in callback_classes(scheduled)
    assert scheduled.model_config["alpha"] == SCHEDULE
    assert scheduled.learner_class is SpikingPPOLearner
    # Also with a number (harmless there): a sweep is built from its first value, so one that
    # samples `alpha: {choice: [2.0, <schedule>]}` must still move its schedule trials along.
    assert SurrogateAlphaSchedule in callback_classes(config(2.0))
    assert SurrogateAlphaSchedule in callback_classes(config({"choice": [2.0, SCHEDULE]}))


# ------------------------------------------------------------------------------- end to end


def _cell_alphas(multi_module) -> list[float]:
    return [c.alpha for module_id in multi_module.keys() for c in spiking_cells(multi_module[module_id])]


def _learner_alphas(algo) -> list[float]:
    return _cell_alphas(algo.learner_group._learner.module)


@pytest.mark.slow
def test_ppo_follows_the_schedule_and_a_restored_run_continues_it(ray_session, tmp_path):
    small = {"train_batch_size": 256, "minibatch_size": 128, "num_epochs": 1, "num_env_runners": 0, "seed": 0}
    model = {"core": "grsn", "hidden": 16, "alpha": SCHEDULE}
    spec = {"env": "CartPole-P", "run": "PPO", "config": {**small, "model_config": model}}
    algo = build_experiment("schedule", spec).algo_config.build_algo()
    try:
        assert _learner_alphas(algo) == [1.0]  # on_algorithm_init: the t=0 value
        first = algo.train()
        t1 = first["num_env_steps_sampled_lifetime"]
        assert 0 < t1 < 512
        alpha1 = scheduled_value(SCHEDULE, t1)
        assert first[SURROGATE_ALPHA_KEY] == pytest.approx(alpha1)
        assert 1.0 < alpha1 < 5.0
        assert _learner_alphas(algo) == [pytest.approx(alpha1)]
        # The EnvRunner only runs forward passes, where alpha plays no part: it is left alone.
        assert [c.alpha for c in spiking_cells(algo.env_runner.module)] == [1.0]
        checkpoint = algo.save_to_path(str(tmp_path / "ckpt"))

        second = algo.train()
        assert second[SURROGATE_ALPHA_KEY] == pytest.approx(
            scheduled_value(SCHEDULE, second["num_env_steps_sampled_lifetime"])
        )
        assert second[SURROGATE_ALPHA_KEY] > first[SURROGATE_ALPHA_KEY]
        algo.train()
        assert _learner_alphas(algo) == [5.0]  # past the last point: constant

        # Tune's resume path (Algorithm.restore -> on_checkpoint_loaded): back to the saved steps.
        algo.restore(checkpoint)
        assert _learner_alphas(algo) == [pytest.approx(alpha1)]
    finally:
        algo.stop()

    restored = Algorithm.from_checkpoint(checkpoint)
    try:
        # RLlib 2.60 calls no callback from from_checkpoint; sync_surrogate_alpha closes that gap.
        assert sync_surrogate_alpha(restored) == {"default_policy": pytest.approx(alpha1)}
        assert _learner_alphas(restored) == [pytest.approx(alpha1)]
        result = restored.train()
        assert result["num_env_steps_sampled_lifetime"] > t1
        assert result[SURROGATE_ALPHA_KEY] == pytest.approx(
            scheduled_value(SCHEDULE, result["num_env_steps_sampled_lifetime"])
        )
    finally:
        restored.stop()
