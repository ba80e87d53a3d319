"""QMIX / VDN value mixers (rllib_grsn.mixers): shapes, monotonicity, greedy decomposition, validation.

Pure PyTorch on tiny tensors; no Ray.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from rllib_grsn.mixers import QMixer, VDNMixer

N_AGENTS = 3
STATE_DIM = 5


def make_qmixer(seed: int = 0, **kw) -> QMixer:
    torch.manual_seed(seed)
    kw.setdefault("embed_dim", 8)
    kw.setdefault("hypernet_hidden", 16)
    return QMixer(N_AGENTS, STATE_DIM, **kw)


def perturb_(module: torch.nn.Module, scale: float, seed: int) -> None:
    # Large signed noise on every parameter: monotonicity must come from the architecture (abs on the
    # hypernet outputs), not from a lucky non-negative initialisation.
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen))


# ------------------------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("mixer_cls", ["qmix", "vdn"])
@pytest.mark.parametrize("lead", [(7,), (4, 6)], ids=["B", "BT"])
def test_output_shape_keeps_leading_dims_with_trailing_singleton(mixer_cls, lead):
    mixer = make_qmixer() if mixer_cls == "qmix" else VDNMixer()
    q = torch.randn(*lead, N_AGENTS)
    s = torch.randn(*lead, STATE_DIM)
    assert mixer(q, s).shape == (*lead, 1)


@pytest.mark.parametrize("hypernet_layers", [1, 2])
def test_qmixer_rows_are_mixed_independently(hypernet_layers):
    # [B, T, n] must equal mixing each (b, t) row on its own: the flatten/reshape must not mix rows.
    mixer = make_qmixer(hypernet_layers=hypernet_layers)
    q = torch.randn(2, 3, N_AGENTS)
    s = torch.randn(2, 3, STATE_DIM)
    out = mixer(q, s)
    for b in range(2):
        for t in range(3):
            single = mixer(q[b, t].unsqueeze(0), s[b, t].unsqueeze(0))
            torch.testing.assert_close(out[b, t], single[0])


def test_qmixer_parameter_count_matches_architecture():
    # n=3, S=5, embed E=4, hypernet hidden H=6.
    # 2 layers: w1 (5*6+6) + (6*12+12) = 120; b1 5*4+4 = 24; w2 (5*6+6) + (6*4+4) = 64;
    #           V (5*4+4) + (4*1+1) = 29  -> 237.
    # 1 layer:  w1 5*12+12 = 72; b1 24; w2 5*4+4 = 24; V 29 -> 149.
    def n_params(m):
        return sum(p.numel() for p in m.parameters())

    assert n_params(QMixer(3, 5, embed_dim=4, hypernet_hidden=6, hypernet_layers=2)) == 237
    assert n_params(QMixer(3, 5, embed_dim=4, hypernet_hidden=6, hypernet_layers=1)) == 149


# ------------------------------------------------------------------------------------- monotonicity


@pytest.mark.parametrize("hypernet_layers", [1, 2])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_qmixer_monotonic_under_large_random_weights(hypernet_layers, seed):
    mixer = make_qmixer(seed=seed, hypernet_layers=hypernet_layers)
    perturb_(mixer, scale=10.0, seed=100 + seed)
    gen = torch.Generator().manual_seed(200 + seed)
    q = (50.0 * torch.randn(64, N_AGENTS, generator=gen)).requires_grad_(True)
    s = 5.0 * torch.randn(64, STATE_DIM, generator=gen)
    # Each q_tot row depends only on its own agent_qs row, so grad of the sum = per-row gradients.
    (grad,) = torch.autograd.grad(mixer(q, s).sum(), q)
    assert torch.all(grad >= 0), f"negative dQ_tot/dQ_a: min {grad.min().item()}"
    # Guard against a vacuous pass (e.g. a mixer that ignores agent_qs).
    assert torch.any(grad > 0)


def test_qmixer_depends_on_state():
    mixer = make_qmixer()
    q = torch.randn(1, N_AGENTS).expand(2, N_AGENTS)
    s = torch.randn(2, STATE_DIM)
    out = mixer(q, s)
    assert not torch.allclose(out[0], out[1]), "same agent_qs, different states -> same q_tot"
    # And it is not secretly VDN.
    assert not torch.allclose(out, q.sum(-1, keepdim=True))


# -------------------------------------------------------------------------------------------------- VDN


def test_vdn_is_exact_sum_and_has_no_parameters():
    vdn = VDNMixer()
    assert list(vdn.parameters()) == []
    q = torch.randn(4, 5, N_AGENTS)
    out = vdn(q)
    assert torch.equal(out, q.sum(-1, keepdim=True))
    # states is ignored (but accepted), so passing it changes nothing.
    assert torch.equal(vdn(q, torch.randn(4, 5, STATE_DIM)), out)
    # Hand-worked: 1 + 2 + 3 = 6, -1 + 0.5 + 4 = 3.5.
    torch.testing.assert_close(
        vdn(torch.tensor([[1.0, 2.0, 3.0], [-1.0, 0.5, 4.0]])), torch.tensor([[6.0], [3.5]])
    )


# ------------------------------------------------------------------------- greedy decomposition (IGM)


@pytest.mark.parametrize("mixer_kind", ["qmix-1", "qmix-2", "vdn"])
@pytest.mark.parametrize("seed", range(5))
def test_greedy_joint_action_is_tuple_of_per_agent_argmaxes(mixer_kind, seed):
    n_actions = 4
    if mixer_kind == "vdn":
        mixer = VDNMixer()
        torch.manual_seed(seed)
    else:
        mixer = make_qmixer(seed=seed, hypernet_layers=int(mixer_kind[-1]))
    gen = torch.Generator().manual_seed(1000 + seed)
    q_tables = torch.randn(N_AGENTS, n_actions, generator=gen)  # [agent, action]
    state = torch.randn(STATE_DIM, generator=gen)

    joint = list(itertools.product(range(n_actions), repeat=N_AGENTS))  # 4**3 = 64 joint actions
    idx = torch.tensor(joint)  # [64, n_agents]
    agent_qs = q_tables[torch.arange(N_AGENTS), idx]  # [64, n_agents]
    with torch.no_grad():
        q_tot = mixer(agent_qs, state.expand(len(joint), STATE_DIM)).squeeze(-1)

    best_joint = joint[int(q_tot.argmax())]
    greedy = tuple(int(a) for a in q_tables.argmax(dim=1))
    assert best_joint == greedy, f"argmax Q_tot {best_joint} != per-agent argmaxes {greedy}"


# ------------------------------------------------------------------------------------------ gradients


@pytest.mark.parametrize("hypernet_layers", [1, 2])
def test_gradients_reach_every_hypernetwork_parameter(hypernet_layers):
    mixer = make_qmixer(hypernet_layers=hypernet_layers)
    gen = torch.Generator().manual_seed(7)
    q = torch.randn(32, N_AGENTS, generator=gen)
    s = torch.randn(32, STATE_DIM, generator=gen)
    mixer(q, s).sum().backward()
    names = [name for name, _ in mixer.named_parameters()]
    # All four hypernetworks must be trainable parameters of the mixer.
    for prefix in ("hyper_w1", "hyper_b1", "hyper_w2", "hyper_b2"):
        assert any(n.startswith(prefix) for n in names), f"no parameters under {prefix}"
    for name, p in mixer.named_parameters():
        assert p.grad is not None, f"{name}: no gradient"
        assert p.grad.abs().sum() > 0, f"{name}: all-zero gradient"


# ------------------------------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"n_agents": 0}, "n_agents"),
        ({"n_agents": 2.0}, "n_agents"),
        ({"n_agents": True}, "n_agents"),
        ({"state_dim": -1}, "state_dim"),
        ({"embed_dim": 0}, "embed_dim"),
        ({"hypernet_hidden": 0}, "hypernet_hidden"),
        ({"hypernet_layers": 0}, "hypernet_layers"),
        ({"hypernet_layers": 3}, "hypernet_layers"),
    ],
)
def test_qmixer_rejects_bad_constructor_args(kwargs, name):
    args = {"n_agents": N_AGENTS, "state_dim": STATE_DIM} | kwargs
    with pytest.raises(ValueError, match=name):
        QMixer(**args)


@pytest.mark.parametrize(
    ("q_shape", "s_shape", "pattern"),
    [
        ((4, N_AGENTS + 1), (4, STATE_DIM), r"agent_qs.*\[\.\.\., 3\].*\(4, 4\)"),
        ((), (STATE_DIM,), r"agent_qs.*\(\)"),
        ((4, N_AGENTS), (4, STATE_DIM + 2), r"states.*\(4, 5\).*\(4, 7\)"),
        ((4, 6, N_AGENTS), (4, STATE_DIM), r"states.*\(4, 6, 5\).*\(4, 5\)"),
        ((4, N_AGENTS), (5, STATE_DIM), r"states.*\(4, 5\).*\(5, 5\)"),
        ((4, N_AGENTS), None, r"states.*None"),
    ],
    ids=["agents-last-dim", "scalar-qs", "state-dim", "missing-T", "batch-mismatch", "no-state"],
)
def test_qmixer_rejects_bad_input_shapes(q_shape, s_shape, pattern):
    mixer = make_qmixer()
    states = None if s_shape is None else torch.zeros(s_shape)
    with pytest.raises(ValueError, match=pattern):
        mixer(torch.zeros(q_shape), states)


def test_vdn_rejects_bad_input_shapes():
    vdn = VDNMixer()
    with pytest.raises(ValueError, match=r"agent_qs.*\(\)"):
        vdn(torch.tensor(1.0))
    with pytest.raises(ValueError, match=r"states.*\(5, 2\)"):
        vdn(torch.zeros(4, N_AGENTS), torch.zeros(5, 2))
