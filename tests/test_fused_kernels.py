"""The fused sequence kernels of the spiking cells against the step-by-step reference loop.

The reference (`SpikingCell.reference_unroll_projected`, which chains the cell's `dynamics`, and
which test_neurons.py checks against hand-computed Eq. 1-14) is the oracle: the fused unroll must
give the same spikes, the same state and the same surrogate gradients, for every shape a training
path produces (T = 1 acting, B = 1, padded sequences, rate-coded windows).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from rllib_grsn.neurons import GRSNCell, LIFCell, RateCodedCore
from rllib_grsn.neurons.kernels import (
    FusedKernelUnavailable,
    fused_backend_name,
    fused_recurrence,
    kernel_mode,
    use_kernel,
)
from rllib_grsn.neurons.kernels import recurrence as recurrence_module

CELLS = {"grsn": GRSNCell, "lif": LIFCell}


def make_cell(kind: str, inputs: int, hidden: int, dtype: torch.dtype, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    cell = CELLS[kind](inputs, hidden, decay=0.6, threshold=0.5, alpha=3.0).to(dtype)
    with torch.no_grad():  # wide weights: about half the neurons fire, so resets matter
        for name, param in cell.named_parameters():
            if name != "decay_logit":
                param.normal_(0.0, 1.0)
        if kind == "grsn":
            cell.decay_logit.uniform_(-2.0, 2.0)  # a different beta per neuron
    return cell


def run(cell, x, state, weights, mode: str):
    """Spikes, final state and every gradient of a loss touching spikes and both state parts."""
    leaves = [x, state["u"], state["c"], *cell.parameters()]
    for leaf in leaves:
        leaf.grad = None
    with use_kernel(mode):
        spikes, out = cell.unroll(x, state)
    loss = (spikes * weights).sum() + (out["u"] ** 2).sum() + (1.5 * out["c"]).sum()
    loss.backward()
    grads = [None if leaf.grad is None else leaf.grad.clone() for leaf in leaves]
    return spikes.detach(), out["u"].detach(), out["c"].detach(), grads


def assert_close_rel(actual: torch.Tensor, expected: torch.Tensor, rel: float) -> None:
    scale = expected.abs().max().clamp_min(1.0)
    assert (actual - expected).abs().max().item() <= rel * scale.item()


def inputs(cell, batch: int, steps: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    dtype = next(cell.parameters()).dtype
    x = torch.randn(batch, steps, cell.input_size, generator=gen, dtype=dtype).requires_grad_()
    state = {
        key: torch.randn(batch, cell.hidden_size, generator=gen, dtype=dtype).requires_grad_()
        for key in ("u", "c")
    }
    weights = torch.randn(batch, steps, cell.hidden_size, generator=gen, dtype=dtype)
    return x, state, weights


@pytest.mark.parametrize("kind", ["grsn", "lif"])
@pytest.mark.parametrize(
    ("batch", "steps", "inputs_", "hidden"),
    [(1, 1, 1, 1), (1, 1, 6, 16), (4, 1, 5, 32), (1, 40, 5, 9), (7, 23, 11, 33), (16, 64, 24, 128)],
)
def test_fused_equals_reference_float32(kind, batch, steps, inputs_, hidden):
    cell = make_cell(kind, inputs_, hidden, torch.float32, seed=batch * 100 + steps)
    x, state, weights = inputs(cell, batch, steps, seed=hidden)
    ref = run(cell, x, state, weights, "reference")
    fused = run(cell, x, state, weights, "fused")
    assert torch.equal(fused[0], ref[0]), "spikes differ"
    assert 0.0 < ref[0].mean().item() < 1.0 or batch * steps * hidden < 8  # resets exercised
    assert_close_rel(fused[1], ref[1], 1e-5)
    assert_close_rel(fused[2], ref[2], 1e-5)
    for got, want in zip(fused[3], ref[3], strict=True):
        if want is None:  # LIF never reads c0
            assert got is None or not got.any()
        else:
            assert_close_rel(got, want, 1e-5)


@pytest.mark.parametrize("kind", ["grsn", "lif"])
def test_fused_gradients_match_the_surrogate_reference_in_float64(kind):
    """Same surrogate chain rule: in float64 the fused backward equals autograd of the loop to 1e-12."""
    cell = make_cell(kind, 7, 19, torch.float64, seed=3)
    x, state, weights = inputs(cell, 5, 30, seed=4)
    ref = run(cell, x, state, weights, "reference")
    fused = run(cell, x, state, weights, "fused")
    assert torch.equal(fused[0], ref[0])
    for got, want in zip(fused[3], ref[3], strict=True):
        if want is not None:
            assert_close_rel(got, want, 1e-12)
    # The decay is learnt in GRSN: its gradient is summed over batch and time inside the kernel.
    if kind == "grsn":
        assert fused[3][3 + [n for n, _ in cell.named_parameters()].index("decay_logit")].abs().sum() > 0


def test_fused_gradcheck_of_the_input_current_path():
    """torch.autograd.gradcheck (finite differences) of the fused op's current output c_T (Eq. 13)
    with respect to the gates and c0: that path has no spike, so its exact gradient is checkable."""
    gen = torch.Generator().manual_seed(0)
    batch, steps, hidden = 3, 6, 4
    drive = torch.rand(batch, steps, hidden, generator=gen, dtype=torch.float64).requires_grad_()
    forget = torch.rand(batch, steps, hidden, generator=gen, dtype=torch.float64).requires_grad_()
    c0 = torch.randn(batch, hidden, generator=gen, dtype=torch.float64).requires_grad_()
    u0 = torch.randn(batch, hidden, generator=gen, dtype=torch.float64)
    beta = torch.full((hidden,), 0.7, dtype=torch.float64)

    def current(drive, forget, c0):
        _, _, c_last = fused_recurrence("grsn", drive, forget, u0, c0, beta, threshold=1.0, alpha=2.0)
        return c_last

    assert torch.autograd.gradcheck(current, (drive, forget, c0))


@pytest.mark.parametrize("kind", ["grsn", "lif"])
def test_padded_sequences_with_masks(kind):
    """RLlib pads episode chunks to max_seq_len and masks the loss: the valid steps of each padded
    sequence get the same spikes and the masked loss the same gradients as the reference."""
    cell = make_cell(kind, 6, 32, torch.float32, seed=11)
    lengths = torch.tensor([20, 1, 13, 7])
    x, state, weights = inputs(cell, 4, 20, seed=12)
    mask = (torch.arange(20)[None, :] < lengths[:, None]).float()
    with torch.no_grad():
        x.mul_(mask[..., None])  # zero padding, as RLlib's pad_batch_to_sequences_len writes
    results = {}
    for mode in ("reference", "fused"):
        for leaf in [x, *state.values(), *cell.parameters()]:
            leaf.grad = None
        with use_kernel(mode):
            spikes, _ = cell.unroll(x, state)
        ((spikes * weights).sum(-1) * mask).sum().backward()
        results[mode] = (spikes.detach() * mask[..., None], x.grad.clone(), state["u"].grad.clone())
    assert torch.equal(results["fused"][0], results["reference"][0])
    assert_close_rel(results["fused"][1], results["reference"][1], 1e-5)
    assert_close_rel(results["fused"][2], results["reference"][2], 1e-5)
    assert not results["fused"][1][1, 1:].any(), "padding steps must get no gradient"


@pytest.mark.parametrize("kind", ["grsn", "lif"])
def test_chained_single_steps_equal_one_fused_unroll(kind):
    """Acting (one step at a time, state carried by RLlib) and training (one unroll) agree."""
    cell = make_cell(kind, 5, 24, torch.float32, seed=21)
    x, state, _ = inputs(cell, 3, 17, seed=22)
    with torch.no_grad(), use_kernel("fused"):
        spikes, final = cell.unroll(x, state)
        carried = {k: v.detach() for k, v in state.items()}
        stepped = []
        for t in range(x.shape[1]):
            o, carried = cell.unroll(x[:, t : t + 1], carried)
            stepped.append(o)
    # The projection of 3 rows and of 51 rows may round differently (GEMM blocking), hence the
    # tolerance on the state; the spikes are the same.
    assert torch.equal(torch.cat(stepped, dim=1), spikes)
    assert_close_rel(carried["u"], final["u"], 1e-5)
    assert_close_rel(carried["c"], final["c"], 1e-5)


@pytest.mark.parametrize("kind", ["grsn", "lif"])
def test_rate_coded_core_uses_the_kernel_on_its_expanded_window(kind):
    """`*_notap` cores feed one projection T times (a stride-0 view): same rates either way."""
    core = RateCodedCore(make_cell(kind, 8, 16, torch.float32, seed=5), time_steps=4)
    x = torch.randn(6, 3, 8, requires_grad=True)
    out = {}
    for mode in ("reference", "fused"):
        x.grad = None
        with use_kernel(mode):
            rates, _ = core.unroll(x, {})
        rates.square().sum().backward()
        out[mode] = (rates.detach(), x.grad.clone())
    assert torch.equal(out["fused"][0], out["reference"][0])
    assert_close_rel(out["fused"][1], out["reference"][1], 1e-5)


def test_empty_sequence_returns_the_state_unchanged():
    cell = make_cell("grsn", 3, 4, torch.float32, seed=0)
    state = cell.initial_state(2)
    spikes, out = cell.unroll(torch.zeros(2, 0, 3), state)
    assert spikes.shape == (2, 0, 4) and out["u"] is state["u"]


def test_cpu_kernel_is_built_here():
    """This machine has a C++ compiler: the CPU path must be the fused one, not the fallback."""
    assert fused_backend_name("cpu") == "cpp"


def test_fallback_logs_once_and_matches_the_reference(monkeypatch, caplog):
    monkeypatch.setattr(recurrence_module, "_backend_for", lambda device: (None, "no compiler here"))
    monkeypatch.setattr(recurrence_module, "_warned", set())
    cell = make_cell("grsn", 4, 8, torch.float32, seed=1)
    x, state, _ = inputs(cell, 2, 5, seed=2)
    with caplog.at_level(logging.WARNING, logger=recurrence_module.__name__):
        first, _ = cell.unroll(x, state)
        cell.unroll(x, state)
    lines = [r.getMessage() for r in caplog.records if "fused spiking kernel not used" in r.getMessage()]
    expected_line = "fused spiking kernel not used: no compiler here; unrolling step by step (reference path)"
    assert lines == [expected_line]
    with use_kernel("reference"):
        expected, _ = cell.unroll(x, state)
    assert torch.equal(first, expected)
    with use_kernel("fused"), pytest.raises(FusedKernelUnavailable, match="no compiler here"):
        cell.unroll(x, state)


def test_kernel_mode_from_environment(monkeypatch):
    monkeypatch.setenv("RLLIB_GRSN_KERNEL", "reference")
    assert kernel_mode() == "reference"
    monkeypatch.setenv("RLLIB_GRSN_KERNEL", "fast")
    with pytest.raises(ValueError, match="RLLIB_GRSN_KERNEL='fast'; choose one of: auto, fused, reference"):
        kernel_mode()
    with pytest.raises(ValueError, match="unknown kernel mode 'cuda'"):
        with use_kernel("cuda"):
            pass


def test_unsupported_dtype_falls_back_to_the_loop():
    cell = make_cell("lif", 4, 8, torch.float32, seed=1).to(torch.bfloat16)
    x = torch.randn(2, 3, 4, dtype=torch.bfloat16)
    with use_kernel("auto"):
        spikes, _ = cell.unroll(x, cell.initial_state(2))
    with use_kernel("reference"):
        expected, _ = cell.unroll(x, cell.initial_state(2))
    assert torch.equal(spikes, expected)


def test_subclass_with_other_dynamics_keeps_its_own_loop():
    """A cell that redefines `dynamics` or `project` must not be run by its parent's kernel."""

    class DoubleDriveGRSN(GRSNCell):
        def dynamics(self, proj_t, u, c, beta):
            return super().dynamics(proj_t * 2.0, u, c, beta)

    cell = DoubleDriveGRSN(3, 5)
    base = GRSNCell(3, 5)
    base.load_state_dict(cell.state_dict())
    x = torch.rand(2, 4, 3)
    with use_kernel("fused"):  # would raise if the subclass asked for a kernel it cannot use
        mine, _ = cell.unroll(x, cell.initial_state(2))
    expected, _ = base.reference_unroll_projected(
        base.project(x.reshape(8, 3)).reshape(2, 4, 10) * 2.0, base.initial_state(2)
    )
    assert torch.equal(mine, expected)

    class ScaledProjectionLIF(LIFCell):
        def project(self, x):
            return super().project(x) * 3.0

    cell = ScaledProjectionLIF(3, 5)
    with use_kernel("fused"):
        mine, _ = cell.unroll(x, cell.initial_state(2))
    expected, _ = cell.reference_unroll_projected(
        cell.project(x.reshape(8, 3)).reshape(2, 4, 5), cell.initial_state(2)
    )
    assert torch.equal(mine, expected)


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")
def test_triton_kernels_match_the_reference_in_the_interpreter(tmp_path):
    """The CUDA kernels' code, run by Triton's CPU interpreter (no GPU needed): same spikes, and
    state and gradients within float32 rounding of the reference."""
    script = tmp_path / "check_triton.py"
    script.write_text(
        textwrap.dedent(
            """
            import torch
            from rllib_grsn.neurons import GRSNCell, LIFCell
            from rllib_grsn.neurons.kernels import triton_recurrence
            from rllib_grsn.neurons.kernels.recurrence import KINDS, _FusedSpikingRecurrence

            assert triton_recurrence.available()
            for cls in (GRSNCell, LIFCell):
                for dtype, tol in ((torch.float32, 1e-5), (torch.float64, 1e-12)):
                    torch.manual_seed(0)
                    cell = cls(6, 20, decay=0.6, threshold=0.5).to(dtype)
                    with torch.no_grad():
                        for p in cell.parameters():
                            p.normal_(0.0, 1.0)
                    # 300 neurons = two programs of 256 lanes, the second one masked.
                    x = torch.randn(15, 9, 6, dtype=dtype, requires_grad=True)
                    state = {k: torch.randn(15, 20, dtype=dtype, requires_grad=True) for k in "uc"}
                    w = torch.randn(15, 9, 20, dtype=dtype)
                    results = []
                    for fused in (False, True):
                        for leaf in (x, *state.values(), *cell.parameters()):
                            leaf.grad = None
                        if fused:
                            drive, forget = (
                                None if p is None else p.reshape(15, 9, 20)
                                for p in cell.project_parts(x.reshape(-1, 6))
                            )
                            beta = cell.beta.expand(20)
                            o, u, c = _FusedSpikingRecurrence.apply(
                                drive, forget, state["u"], state["c"], beta, cell.threshold,
                                cell.alpha, KINDS[cell.fused_kind], triton_recurrence)
                        else:
                            proj = cell.project(x.reshape(-1, 6)).reshape(15, 9, -1)
                            o, s = cell.reference_unroll_projected(proj, state)
                            u, c = s["u"], s["c"]
                        ((o * w).sum() + (u ** 2).sum() + (1.5 * c).sum()).backward()
                        grads = [x.grad, state["u"].grad] + [p.grad for p in cell.parameters()]
                        results.append((o.detach(), u.detach(), c.detach(), [g.clone() for g in grads]))
                    (ro, ru, rc, rg), (fo, fu, fc, fg) = results
                    assert torch.equal(ro, fo), cls.__name__
                    assert 0.1 < ro.mean() < 0.9
                    for a, b in [(ru, fu), (rc, fc), *zip(rg, fg)]:
                        assert (a - b).abs().max() <= tol * a.abs().max().clamp_min(1.0), (cls, dtype)
            # A rate-coded window: one projection seen T times (time stride 0), [F | J] views.
            cell = GRSNCell(6, 20, decay=0.6, threshold=0.5)
            with torch.no_grad():
                for p in cell.parameters():
                    p.normal_(0.0, 1.0)
            proj = cell.project(torch.randn(15, 6)).unsqueeze(1).expand(15, 4, 40)
            fresh = cell.initial_state(15)
            forget, drive = proj.split(20, dim=-1)
            o, u, c = _FusedSpikingRecurrence.apply(
                drive, forget, fresh["u"], fresh["c"], cell.beta.detach(), cell.threshold, cell.alpha,
                KINDS["grsn"], triton_recurrence)
            ro, rs = cell.reference_unroll_projected(proj, fresh)
            assert torch.equal(o, ro.detach()) and torch.allclose(u, rs["u"], atol=1e-6)
            print("triton interpreter ok")
            """
        )
    )
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "triton interpreter ok" in proc.stdout


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("kind", ["grsn", "lif"])
def test_cuda_fused_equals_reference(kind):
    cell = make_cell(kind, 24, 128, torch.float32, seed=7).cuda()
    x, state, weights = inputs(cell.cpu(), 32, 64, seed=8)
    cell = cell.cuda()
    x = x.detach().cuda().requires_grad_()
    state = {k: v.detach().cuda().requires_grad_() for k, v in state.items()}
    weights = weights.cuda()
    assert fused_backend_name("cuda") == "triton"
    ref = run(cell, x, state, weights, "reference")
    fused = run(cell, x, state, weights, "fused")
    assert torch.equal(fused[0], ref[0])
    for got, want in zip(fused[3], ref[3], strict=True):
        if want is not None:
            assert_close_rel(got, want, 1e-5)
