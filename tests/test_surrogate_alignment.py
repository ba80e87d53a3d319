"""benchmarks.surrogate_alignment: the finite-difference reference and the per-width surrogate cosines.

The reference is only trustworthy if, on a network without spikes, the finite differences reproduce
autograd's gradient; and the surrogate width must change the backward pass only (the review in
shared/seeds/adaptive_surrogate_review.md compares widths on the same forward pass).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from benchmarks import surrogate_alignment as S
from rllib_grsn.modules.backbone import ORIG_OBS, PREV_ACTIONS, PREV_REWARDS
from rllib_grsn.modules.twin_q import SpikingTD3Module
from rllib_grsn.neurons.spiking_cells import set_surrogate_alpha

ALPHAS = (0.5, 2.0, 16.0)


def _module(core: str, seed: int = 0) -> SpikingTD3Module:
    torch.manual_seed(seed)
    obs = gym.spaces.Dict(
        {
            ORIG_OBS: gym.spaces.Box(-np.inf, np.inf, (2,), np.float32),
            PREV_ACTIONS: gym.spaces.Box(-np.inf, np.inf, (1,), np.float32),
            PREV_REWARDS: gym.spaces.Box(-np.inf, np.inf, (1,), np.float32),
        }
    )
    module = SpikingTD3Module(
        observation_space=obs,
        action_space=gym.spaces.Box(-2.0, 2.0, (1,), np.float32),
        inference_only=False,
        # threshold 0.05: an untrained LIF layer of this size spikes often enough to have flips.
        model_config={"core": core, "hidden": 16, "head_hiddens": [16], "threshold": 0.05},
    )
    return module.double().eval()


def _windows(module: SpikingTD3Module, batch: int = 4, steps: int = 12, seed: int = 1) -> dict:
    rng = np.random.default_rng(seed)

    def obs() -> dict[str, np.ndarray]:
        return {
            ORIG_OBS: rng.normal(size=(batch, steps, 2)).astype(np.float32),
            PREV_ACTIONS: rng.uniform(-1, 1, size=(batch, steps, 1)).astype(np.float32),
            PREV_REWARDS: rng.normal(size=(batch, steps, 1)).astype(np.float32),
        }

    init = module.get_initial_state()
    state = {part: {k: np.repeat(v[None], batch, axis=0) for k, v in s.items()} for part, s in init.items()}
    mask = np.ones((batch, steps), np.float32)
    mask[0, steps // 2 :] = 0.0  # a short window, as the replay pads one
    return {"obs": obs(), "next_obs": obs(), "loss_mask": mask, "state_in": state}


def _flat_params(module: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in module.parameters()])


def test_finite_differences_reproduce_autograd_on_a_smooth_gru_actor() -> None:
    module = _module("gru")
    with S.float64_backbones():
        loss, _, _ = S.td3_actor_loss_fn(module, _windows(module))
        res = S.alignment(
            loss,
            S.actor_groups(module),
            lambda a: set_surrogate_alpha(module.actor, a),
            alphas=ALPHAS,
            num_directions=24,
            rel_h=(1e-5, 1e-4),
        )
    assert set(res) == {"encoder", "core", "shortcut", "head", "all"}
    for name, entry in res.items():
        for rel_h, fd in entry["fd"].items():
            for alpha, cos in fd["cos"].items():
                assert cos > 0.99, (name, rel_h, alpha, cos)
        assert entry["fd_h_consistency"]["1e-05|0.0001"] > 0.99, name


def test_spiking_actor_gets_a_cosine_per_width_and_the_width_leaves_the_forward_pass_alone() -> None:
    module = _module("lif")
    before = _flat_params(module)
    with S.float64_backbones():
        loss, _, _ = S.td3_actor_loss_fn(module, _windows(module))
        values = []
        for alpha in ALPHAS:
            set_surrogate_alpha(module.actor, alpha)
            values.append(float(loss().detach()))
        assert values == [values[0]] * len(values)
        res = S.alignment(
            loss,
            S.actor_groups(module),
            lambda a: set_surrogate_alpha(module.actor, a),
            alphas=ALPHAS,
            num_directions=16,
            rel_h=(1e-3, 1e-2),
        )
    # The finite differences restore the weights exactly.
    assert torch.equal(_flat_params(module), before)
    widths = {str(a) for a in ALPHAS}
    core_grads = []
    for name, entry in res.items():
        assert set(entry["grad_norm"]) == widths
        for fd in entry["fd"].values():
            assert set(fd["cos"]) == widths
            assert all(-1.0 <= c <= 1.0 and np.isfinite(c) for c in fd["cos"].values())
            assert all(0.0 <= s <= 1.0 for s in fd["sign_agreement"].values())
        if name in ("shortcut", "head"):  # no spike on their gradient path: exact at every width
            assert all(c > 0.99 for fd in entry["fd"].values() for c in fd["cos"].values()), name
        if name == "core":
            core_grads = [entry["grad_norm"][w] for w in sorted(widths, key=float)]
    # The width does change the backward pass of the spiking layer.
    assert len(set(core_grads)) == len(ALPHAS)


def test_membrane_window_shrinks_as_the_surrogate_sharpens() -> None:
    module = _module("lif")
    with S.float64_backbones():
        _, features, mask = S.td3_actor_loss_fn(module, _windows(module))
        reach = S.membrane_reach(features, mask, (0.25, *ALPHAS))
        with torch.no_grad():
            rate = module.actor.spike_rate(features())
    assert reach["firing_rate"] == pytest.approx(float(rate[mask.bool()].mean()))
    for key in ("window_fraction", "neurons_in_window"):
        fractions = [reach[key][str(a)] for a in (0.25, *ALPHAS)]
        assert all(0.0 <= f <= 1.0 for f in fractions)
        assert fractions == sorted(fractions, reverse=True)
        assert fractions[0] > fractions[-1]


def test_cosine_of_a_zero_vector_is_zero_and_directions_are_unit() -> None:
    assert S.cosine(torch.zeros(3), torch.ones(3)) == 0.0
    assert S.cosine(torch.ones(3), 2 * torch.ones(3)) == pytest.approx(1.0)
    d = S.random_directions(10, 5, torch.Generator().manual_seed(0), torch.float64)
    assert torch.allclose(d.norm(dim=1), torch.ones(5, dtype=torch.float64))


def test_help_exits_cleanly(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        S.main(["--help"])
    assert exc.value.code == 0
    assert "--num-directions" in capsys.readouterr().out
