"""Tests of the neuron cores against the paper's equations (arXiv 2404.15597).

Expected numbers in the hand-computed tests are written out literally; the comments show the
arithmetic, so a wrong sign, reset rule or gate would change them.
"""

from __future__ import annotations

import math

import pytest
import torch

from rllib_grsn.neurons import (
    CORE_NAMES,
    SPIKING_CORES,
    GRSNCell,
    GRUCore,
    LIFCell,
    MLPCore,
    RateCodedCore,
    atan_spike,
    build_core,
)

DT = torch.float64


def t64(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=DT)


def surrogate(x: float, alpha: float) -> float:
    """Closed form of Eq. 6's derivative, written independently of the package."""
    return alpha / (2.0 * (1.0 + (math.pi / 2.0 * alpha * x) ** 2))


# --------------------------------------------------------------------------- surrogate (Eq. 5-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_atan_spike_forward_is_heaviside_with_theta0_equal_1(dtype):
    x = torch.tensor([-1.0, -1e-9, 0.0, 0.5], dtype=dtype)
    out = atan_spike(x)
    assert out.dtype == dtype
    assert out.tolist() == [0.0, 0.0, 1.0, 1.0]


@pytest.mark.parametrize("alpha", [0.5, 2.0, 4.0])
def test_atan_spike_grad_matches_closed_form(alpha):
    xs = [-1.0, -0.3, 0.0, 0.2, 1.5]
    x = torch.tensor(xs, dtype=DT, requires_grad=True)
    atan_spike(x, alpha).sum().backward()
    expected = t64(*[surrogate(v, alpha) for v in xs])
    torch.testing.assert_close(x.grad, expected, rtol=1e-12, atol=0.0)
    # Peak of the surrogate at x = 0 is alpha / 2.
    assert x.grad[2].item() == pytest.approx(alpha / 2.0)


def test_atan_spike_tensor_alpha_and_upstream_grad():
    x = torch.tensor([-0.4, 0.1], dtype=DT, requires_grad=True)
    alpha = t64(1.0, 3.0)
    upstream = t64(2.0, -0.5)
    (atan_spike(x, alpha) * upstream).sum().backward()
    expected = t64(2.0 * surrogate(-0.4, 1.0), -0.5 * surrogate(0.1, 3.0))
    torch.testing.assert_close(x.grad, expected, rtol=1e-12, atol=0.0)


# --------------------------------------------------------------------------- LIF (Eq. 1-5)


def test_lif_three_steps_by_hand():
    cell = LIFCell(2, 2, decay=0.5, threshold=1.0).double()
    with torch.no_grad():
        cell.fc.weight.copy_(torch.eye(2, dtype=DT))
        cell.fc.bias.zero_()
    state = cell.initial_state(1)

    # t=1: c = [1, 3]; u = 0.5*0 + 0.5*c = [0.5, 1.5]; o = [0, 1]; hard reset -> [0.5, 0]
    o, state = cell(t64(1.0, 3.0)[None], state)
    assert o.tolist() == [[0.0, 1.0]]
    assert state["u"].tolist() == [[0.5, 0.0]]
    assert state["c"].tolist() == [[1.0, 3.0]]

    # t=2: c = [1.5, 1]; u = 0.5*[0.5, 0] + 0.5*[1.5, 1] = [1.0, 0.5]
    #      o = [1, 0] (u == theta fires, Θ(0) = 1); reset -> [0, 0.5]
    o, state = cell(t64(1.5, 1.0)[None], state)
    assert o.tolist() == [[1.0, 0.0]]
    assert state["u"].tolist() == [[0.0, 0.5]]

    # t=3: c = [0.5, 2]; u = 0.5*[0, 0.5] + 0.5*[0.5, 2] = [0.25, 1.25]; o = [0, 1]
    #      hard reset -> [0.25, 0] (a soft reset would leave 0.25 in the second neuron)
    o, state = cell(t64(0.5, 2.0)[None], state)
    assert o.tolist() == [[0.0, 1.0]]
    assert state["u"].tolist() == [[0.25, 0.0]]
    assert state["c"].tolist() == [[0.5, 2.0]]


def test_lif_has_constant_decay():
    cell = LIFCell(3, 4, decay=0.25)
    assert [name for name, _ in cell.named_parameters()] == ["fc.weight", "fc.bias"]
    assert float(cell.beta) == 0.25


# --------------------------------------------------------------------------- GRSN (Eq. 12-14)


def _grsn_fixed_gates(threshold: float = 1.0) -> GRSNCell:
    """GRSN with F(x) = [0.5, 0.75] constant and J(x) = relu(x)."""
    cell = GRSNCell(2, 2, decay=0.5, threshold=threshold).double()
    with torch.no_grad():
        cell.forget_gate.weight.zero_()
        cell.forget_gate.bias.copy_(t64(0.0, math.log(3.0)))  # sigmoid(0)=1/2, sigmoid(ln 3)=3/4
        cell.input_gate.weight.copy_(torch.eye(2, dtype=DT))
        cell.input_gate.bias.zero_()
    return cell


def test_grsn_three_steps_by_hand():
    cell = _grsn_fixed_gates()
    state = cell.initial_state(1)
    close = {"rtol": 0.0, "atol": 1e-12}

    # t=1: J = [2, 4]; c = F*0 + (1-F)*J = [0.5*2, 0.25*4] = [1, 1]
    #      u = 0.5*0 + 0.5*c = [0.5, 0.5]; o = [0, 0]; u_hat = [0.5, 0.5]
    o, state = cell(t64(2.0, 4.0)[None], state)
    assert o.tolist() == [[0.0, 0.0]]
    torch.testing.assert_close(state["c"], t64(1.0, 1.0)[None], **close)
    torch.testing.assert_close(state["u"], t64(0.5, 0.5)[None], **close)

    # t=2: J = [4, 8]; c = [0.5*1 + 0.5*4, 0.75*1 + 0.25*8] = [2.5, 2.75]
    #      u = 0.5*[0.5, 0.5] + 0.5*[2.5, 2.75] = [1.5, 1.625]; o = [1, 1]
    #      soft reset (Eq. 12): u_hat = u - 1 = [0.5, 0.625] (a hard reset would give 0)
    o, state = cell(t64(4.0, 8.0)[None], state)
    assert o.tolist() == [[1.0, 1.0]]
    torch.testing.assert_close(state["c"], t64(2.5, 2.75)[None], **close)
    torch.testing.assert_close(state["u"], t64(0.5, 0.625)[None], **close)

    # t=3: J = relu([-2, 0]) = [0, 0]; c = [0.5*2.5, 0.75*2.75] = [1.25, 2.0625]
    #      u = 0.5*[0.5, 0.625] + 0.5*[1.25, 2.0625] = [0.875, 1.34375]; o = [0, 1]
    #      u_hat = [0.875, 0.34375]
    o, state = cell(t64(-2.0, 0.0)[None], state)
    assert o.tolist() == [[0.0, 1.0]]
    torch.testing.assert_close(state["c"], t64(1.25, 2.0625)[None], **close)
    torch.testing.assert_close(state["u"], t64(0.875, 0.34375)[None], **close)


def test_grsn_soft_reset_subtracts_threshold():
    cell = GRSNCell(1, 1, decay=0.5, threshold=0.5).double()
    with torch.no_grad():
        for p in cell.parameters():
            if p is not cell.decay_logit:
                p.zero_()
    # F = sigmoid(0) = 0.5, J = relu(0) = 0: c = 0.5*0.6 = 0.3
    # u = 0.5*0.8 + 0.5*0.3 = 0.55 >= 0.5 -> spike; u_hat = 0.55 - 0.5 = 0.05
    u_prev = t64(0.8)[None].requires_grad_()
    o, state = cell(t64(0.0)[None], {"u": u_prev, "c": t64(0.6)[None]})
    assert o.item() == 1.0
    assert state["c"].item() == pytest.approx(0.3, abs=1e-12)
    assert state["u"].item() == pytest.approx(0.05, abs=1e-12)
    # The reset is not detached: du_hat/du_prev = beta - theta * h'(u - theta) * beta
    #                                          = 0.5 - 0.5 * h'(0.05) * 0.5
    state["u"].sum().backward()
    assert u_prev.grad.item() == pytest.approx(0.5 - 0.25 * surrogate(0.05, 2.0), rel=1e-12)


@pytest.mark.parametrize("direction", [1.0, -1.0])
def test_grsn_decay_stays_inside_unit_interval(direction):
    cell = GRSNCell(3, 5, decay=0.5)
    opt = torch.optim.SGD([cell.decay_logit], lr=1e6)
    for _ in range(20):
        opt.zero_grad()
        (-direction * cell.beta.sum()).backward()
        opt.step()
    beta = cell.beta
    assert beta.shape == (5,)
    # The optimiser pushed the logit far past saturation, yet beta never hits 0 or 1 exactly.
    assert abs(cell.decay_logit.detach()).min().item() > 100.0
    assert bool(((beta > 0.0) & (beta < 1.0)).all())
    assert (beta > 0.99).all() if direction > 0 else (beta < 0.01).all()


def test_grsn_decay_initialised_and_learnable():
    cell = GRSNCell(3, 4, decay=0.3)
    torch.testing.assert_close(cell.beta.detach(), torch.full((4,), 0.3))
    assert any(p is cell.decay_logit for p in cell.parameters())
    u = cell.unroll(torch.randn(2, 3, 3) * 5.0, cell.initial_state(2))[1]["u"]
    u.sum().backward()
    assert cell.decay_logit.grad is not None and cell.decay_logit.grad.abs().sum() > 0


def test_grsn_fixed_decay_is_not_trained():
    cell = GRSNCell(3, 4, decay=0.3, learnable_decay=False)
    assert all(p is not cell.decay_logit for p in cell.parameters())
    assert not cell.decay_logit.requires_grad
    assert "decay_logit" in cell.state_dict()
    _, state = cell.unroll(torch.randn(2, 3, 3) * 5.0, cell.initial_state(2))
    state["u"].sum().backward()
    assert cell.decay_logit.grad is None
    torch.testing.assert_close(cell.beta, torch.full((4,), 0.3))


# --------------------------------------------------------------------------- surrogate through cells


@pytest.mark.parametrize("alpha", [2.0, 5.0])
def test_lif_surrogate_gradient_chain_rule(alpha):
    cell = LIFCell(1, 1, decay=0.5, threshold=1.0, alpha=2.0).double()
    cell.alpha = alpha  # set at runtime, as a width schedule would
    with torch.no_grad():
        cell.fc.weight.fill_(2.0)
        cell.fc.bias.zero_()
    x = t64(0.8)[None].requires_grad_()
    o, _ = cell(x, cell.initial_state(1))
    o.sum().backward()
    # c = 2*0.8 = 1.6; u = 0.5*1.6 = 0.8; o = Θ(-0.2) = 0
    # do/dx = h'(u - theta) * (1 - beta) * w = h'(-0.2) * 0.5 * 2
    assert o.item() == 0.0
    assert x.grad.item() == pytest.approx(surrogate(-0.2, alpha) * 0.5 * 2.0, rel=1e-12)


def test_lif_hard_reset_is_not_detached():
    cell = LIFCell(1, 1, decay=0.5, threshold=1.0, alpha=2.0).double()
    with torch.no_grad():
        cell.fc.weight.fill_(2.0)
        cell.fc.bias.zero_()
    x = t64(1.2)[None].requires_grad_()
    _, state = cell(x, cell.initial_state(1))
    state["u"].sum().backward()
    # c = 2.4; u = 1.2; o = Θ(0.2) = 1; u_hat = 0*o + (1 - o)*u = 0
    # du_hat/dx = (1 - o) * du/dx - u * do/dx = 0 - 1.2 * h'(0.2) * (0.5 * 2)
    # (a detached reset would give 0)
    assert state["u"].item() == 0.0
    assert x.grad.item() == pytest.approx(-1.2 * surrogate(0.2, 2.0), rel=1e-12)


def test_grsn_surrogate_gradient_chain_rule():
    cell = GRSNCell(1, 1, decay=0.5, threshold=1.0, alpha=2.0).double()
    with torch.no_grad():
        cell.forget_gate.weight.zero_()
        cell.forget_gate.bias.zero_()  # F = 0.5
        cell.input_gate.weight.fill_(2.0)
        cell.input_gate.bias.zero_()
    x = t64(0.8)[None].requires_grad_()
    u_prev = t64(0.4)[None].requires_grad_()
    o, _ = cell(x, {"u": u_prev, "c": t64(0.0)[None]})
    o.sum().backward()
    # J = relu(1.6) = 1.6; c = 0.5*0 + 0.5*1.6 = 0.8; u = 0.5*0.4 + 0.5*0.8 = 0.6; o = Θ(-0.4) = 0
    # do/dx = h'(-0.4) * (1 - beta) * (1 - F) * W_i = h'(-0.4) * 0.5 * 0.5 * 2
    # do/du_prev = h'(-0.4) * beta
    assert o.item() == 0.0
    assert x.grad.item() == pytest.approx(surrogate(-0.4, 2.0) * 0.5, rel=1e-12)
    assert u_prev.grad.item() == pytest.approx(surrogate(-0.4, 2.0) * 0.5, rel=1e-12)


# --------------------------------------------------------------------------- unroll == stepping


def _random_state(core, batch, gen):
    return {k: torch.randn(batch, core.hidden_size, dtype=DT, generator=gen) for k in core.state_keys}


@pytest.mark.parametrize("name", CORE_NAMES)
def test_unroll_equals_step_loop(name):
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    batch, steps, n_in, hidden = 3, 6, 4, 5
    core = build_core(name, n_in, hidden).double()
    x = 3.0 * torch.randn(batch, steps, n_in, dtype=DT, generator=gen)
    state0 = _random_state(core, batch, gen)
    out_w = torch.randn(batch, steps, hidden, dtype=DT, generator=gen)
    state_w = _random_state(core, batch, gen)

    def loss_and_grads(run):
        xx = x.clone().requires_grad_()
        s0 = {k: v.clone().requires_grad_() for k, v in state0.items()}
        out, final = run(xx, s0)
        loss = (out * out_w).sum() + sum((final[k] * state_w[k]).sum() for k in core.state_keys)
        params = list(core.parameters())
        grads = torch.autograd.grad(loss, [xx, *s0.values(), *params], allow_unused=True)
        return out, final, grads

    def step_loop(xx, s):
        outs = []
        for t in range(steps):
            o, s = core(xx[:, t], s)
            outs.append(o)
        return torch.stack(outs, dim=1), s

    out_u, final_u, grads_u = loss_and_grads(core.unroll)
    out_s, final_s, grads_s = loss_and_grads(step_loop)

    assert out_u.shape == (batch, steps, hidden)
    torch.testing.assert_close(out_u, out_s, rtol=1e-12, atol=1e-12)
    assert final_u.keys() == final_s.keys() == set(core.state_keys)
    for k in core.state_keys:
        torch.testing.assert_close(final_u[k], final_s[k], rtol=1e-12, atol=1e-12)
    for gu, gs in zip(grads_u, grads_s, strict=True):
        assert (gu is None) == (gs is None)
        if gu is not None:
            torch.testing.assert_close(gu, gs, rtol=1e-10, atol=1e-12)
    if name in SPIKING_CORES:
        # Otherwise the comparison above would be vacuous (all-zero spikes and gradients).
        assert 0.0 < out_u.mean().item() < 1.0


def test_unroll_of_zero_steps_keeps_state():
    cell = GRSNCell(2, 3)
    state = {"u": torch.ones(1, 3), "c": torch.ones(1, 3)}
    out, final = cell.unroll(torch.zeros(1, 0, 2), state)
    assert out.shape == (1, 0, 3)
    assert torch.equal(final["u"], state["u"]) and torch.equal(final["c"], state["c"])


# --------------------------------------------------------------------------- TAP: state is carried


@pytest.mark.parametrize("name", ["grsn", "lif", "gru"])
def test_state_is_carried_between_env_steps(name):
    torch.manual_seed(0)
    core = build_core(name, 4, 8).double()
    x = 0.3 * torch.randn(2, 4, dtype=DT)
    key = "h" if name == "gru" else "u"
    _, s1 = core(x, core.initial_state(2))
    _, s2 = core(x, s1)
    # A core that reset itself inside forward (the authors' train/act mismatch) would return
    # the same state for the same input regardless of history.
    assert not torch.allclose(s1[key], s2[key])
    # And acting step by step must match training on the window [x, x].
    _, s_unroll = core.unroll(torch.stack([x, x], dim=1), core.initial_state(2))
    torch.testing.assert_close(s_unroll[key], s2[key], rtol=1e-12, atol=1e-12)


def test_initial_state_zeros_dtype_device():
    cell = GRSNCell(3, 4).double()
    state = cell.initial_state(5)
    assert set(state) == {"u", "c"}
    for v in state.values():
        assert v.shape == (5, 4) and v.dtype == DT and not v.any()
    assert cell.initial_state(2, dtype=torch.float32)["u"].dtype == torch.float32
    assert GRUCore(3, 4).initial_state(2)["h"].shape == (2, 4)
    assert MLPCore(3, 4).initial_state(2) == {}


# --------------------------------------------------------------------------- rate-coded ("without TAP")


@pytest.mark.parametrize("time_steps", [3, 4])
@pytest.mark.parametrize("cell_cls", [LIFCell, GRSNCell])
def test_rate_coded_outputs_firing_rates_without_state(cell_cls, time_steps):
    torch.manual_seed(0)
    core = RateCodedCore(cell_cls(4, 16), time_steps=time_steps).double()
    assert core.initial_state(3) == {} and core.state_keys == () and core.is_spiking
    x = 4.0 * torch.randn(3, 4, dtype=DT)
    rate, state = core(x, {})
    assert state == {}
    assert rate.shape == (3, 16)
    assert bool(((rate >= 0) & (rate <= 1)).all())
    torch.testing.assert_close(rate, torch.round(rate * time_steps) / time_steps, rtol=0, atol=1e-12)
    assert 0.0 < rate.mean().item() < 1.0
    # The same input gives the same rate: nothing leaks from the previous decision.
    rate_again, _ = core(x, state)
    assert torch.equal(rate, rate_again)
    # Reference: repeat the input through a freshly reset cell and average the spikes.
    s = core.cell.initial_state(3)
    spikes = []
    for _ in range(time_steps):
        o, s = core.cell(x, s)
        spikes.append(o)
    torch.testing.assert_close(rate, torch.stack(spikes).mean(0), rtol=0, atol=1e-12)


def test_rate_coded_alpha_reaches_cell_and_rejects_bad_steps():
    core = RateCodedCore(LIFCell(2, 3), time_steps=2)
    core.alpha = 3.5
    assert core.cell.alpha == 3.5
    with pytest.raises(ValueError, match="time_steps"):
        RateCodedCore(LIFCell(2, 3), time_steps=0)


# --------------------------------------------------------------------------- registry


@pytest.mark.parametrize("name", CORE_NAMES)
def test_registry_builds_every_core(name):
    core = build_core(name, 5, 7)
    o, state = core(torch.randn(2, 5), core.initial_state(2))
    assert o.shape == (2, 7)
    assert core.input_size == 5 and core.hidden_size == 7 and core.output_size == 7
    assert set(state) == set(core.state_keys)
    assert core.is_spiking == (name in SPIKING_CORES)


def test_registry_names():
    assert CORE_NAMES == ("grsn", "lif", "gru", "mlp", "grsn_notap", "lif_notap")
    assert SPIKING_CORES == {"grsn", "lif", "grsn_notap", "lif_notap"}
    assert isinstance(build_core("gru", 2, 3), GRUCore)
    assert isinstance(build_core("mlp", 2, 3), MLPCore)


def test_registry_unknown_name_lists_choices():
    with pytest.raises(ValueError) as err:
        build_core("gsrn", 3, 4)
    msg = str(err.value)
    assert "'gsrn'" in msg
    for name in CORE_NAMES:
        assert name in msg


def test_registry_passes_spiking_hyperparameters():
    grsn = build_core("grsn", 3, 4, decay=0.3, threshold=0.7, alpha=3.0)
    assert isinstance(grsn, GRSNCell)
    torch.testing.assert_close(grsn.beta.detach(), torch.full((4,), 0.3))
    assert grsn.threshold == 0.7 and grsn.alpha == 3.0

    lif = build_core("lif", 3, 4, decay=0.2, threshold=0.9, alpha=1.5)
    assert isinstance(lif, LIFCell)
    assert float(lif.beta) == pytest.approx(0.2) and lif.threshold == 0.9 and lif.alpha == 1.5

    notap = build_core("lif_notap", 3, 4, decay=0.2, threshold=0.9, alpha=1.5, time_steps=2)
    assert isinstance(notap, RateCodedCore) and isinstance(notap.cell, LIFCell)
    assert notap.time_steps == 2 and notap.cell.threshold == 0.9 and notap.cell.alpha == 1.5
    # Non-spiking cores accept (and ignore) the spiking hyper-parameters.
    assert isinstance(build_core("gru", 3, 4, decay=0.9, threshold=2.0, alpha=9.0), GRUCore)


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize("cell_cls", [LIFCell, GRSNCell])
@pytest.mark.parametrize(
    ("kwargs", "arg"),
    [
        ({"decay": 0.0}, "decay"),
        ({"decay": 1.0}, "decay"),
        ({"decay": -0.2}, "decay"),
        ({"decay": 1.5}, "decay"),
        ({"decay": float("nan")}, "decay"),
        ({"threshold": 0.0}, "threshold"),
        ({"threshold": -1.0}, "threshold"),
        ({"alpha": 0.0}, "alpha"),
        ({"alpha": -2.0}, "alpha"),
    ],
)
def test_invalid_hyperparameters_raise(cell_cls, kwargs, arg):
    with pytest.raises(ValueError, match=arg):
        cell_cls(3, 4, **kwargs)


def test_runtime_alpha_validation():
    cell = GRSNCell(3, 4)
    cell.alpha = 0.5
    assert cell.alpha == 0.5
    with pytest.raises(ValueError, match="alpha"):
        cell.alpha = 0.0
