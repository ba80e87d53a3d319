"""TD3 / SAC training maths on tiny hand-made batches (rllib_grsn.algorithms.losses).

Expected numbers are worked out by hand in the comments, never by calling the function under test.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from rllib_grsn.algorithms import losses as L

LN2 = math.log(2.0)  # 0.693147
LN4 = math.log(4.0)  # 1.386294


def t(x, **kw) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float32, **kw)


# ----------------------------------------------------------------------------------- masked_mean


def test_masked_mean_ignores_padding():
    mask = t([[1.0, 1.0], [1.0, 0.0]])
    # (1 + 2 + 3) / 3 real steps = 2; the padded 100 must not count, nor in the denominator.
    assert L.masked_mean(t([[1.0, 2.0], [3.0, 100.0]]), mask).item() == pytest.approx(2.0)
    assert L.masked_mean(t([[1.0, 2.0], [3.0, -7.0]]), mask).item() == pytest.approx(2.0)
    # All padding: 0 / max(0, 1) = 0, not NaN.
    assert L.masked_mean(t([[5.0, 6.0]]), t([[0.0, 0.0]])).item() == 0.0


def test_masked_mean_no_gradient_to_padded_steps():
    x = t([[1.0, 2.0, 3.0]], requires_grad=True)
    L.masked_mean(x, t([[1.0, 1.0, 0.0]])).backward()
    # d/dx of (x0 + x1) / 2 = [0.5, 0.5, 0].
    assert x.grad.tolist() == [[0.5, 0.5, 0.0]]


# ----------------------------------------------------------------------------------- TD target


def test_td_target_terminated_zeroes_bootstrap_and_has_no_grad():
    reward = t([[1.0, 2.0]])
    terminated = t([[0.0, 1.0]])
    next_value = t([[10.0, 10.0]], requires_grad=True)
    y = L.td_target(reward, terminated, next_value, gamma=0.9)
    # step 0: 1 + 0.9 * 1 * 10 = 10;  step 1 (terminal): 2 + 0.9 * 0 * 10 = 2.
    assert y[0].tolist() == pytest.approx([10.0, 2.0])
    assert not y.requires_grad
    assert y.grad_fn is None


def test_clipped_double_q_is_elementwise_min():
    assert L.clipped_double_q(t([[1.0, 5.0]]), t([[3.0, 2.0]])).tolist() == [[1.0, 2.0]]


# ----------------------------------------------------------------------------------- critic loss


def test_critic_loss_2x2_value_and_padding():
    q1 = t([[1.0, 2.0], [3.0, 4.0]])
    q2 = t([[2.0, 2.0], [0.0, 4.0]])
    target = t([[1.0, 1.0], [1.0, 1.0]])
    # per step (q1-y)^2 + (q2-y)^2:  [[0+1, 1+1], [4+1, 9+9]] = [[1, 2], [5, 18]]
    full = L.critic_loss(q1, q2, target, t([[1.0, 1.0], [1.0, 1.0]]))
    assert full.item() == pytest.approx(26.0 / 4.0)
    # Last step padded: (1 + 2 + 5) / 3 = 8/3, and changing the padded values changes nothing.
    mask = t([[1.0, 1.0], [1.0, 0.0]])
    assert L.critic_loss(q1, q2, target, mask).item() == pytest.approx(8.0 / 3.0)
    q1b, q2b = q1.clone(), q2.clone()
    q1b[1, 1], q2b[1, 1] = -50.0, 123.0
    assert L.critic_loss(q1b, q2b, target, mask).item() == pytest.approx(8.0 / 3.0)


def test_critic_loss_no_gradient_into_target():
    target = t([[1.0]], requires_grad=True)
    q1 = t([[2.0]], requires_grad=True)
    L.critic_loss(q1, t([[1.0]]), target, t([[1.0]])).backward()
    assert target.grad is None
    # d/dq1 (q1 - 1)^2 = 2 * (2 - 1) = 2.
    assert q1.grad.item() == pytest.approx(2.0)


# ----------------------------------------------------------------------------------- TD3


def test_smoothed_target_action_noise_is_clipped():
    next_action = torch.zeros(8, 64, 1)
    g = torch.Generator().manual_seed(0)
    # noise_std = 10 so almost every draw exceeds the clip of 0.5; bounds wide enough not to bite.
    out = L.smoothed_target_action(
        next_action, noise_std=10.0, noise_clip=0.5, low=-5.0, high=5.0, generator=g
    )
    noise = out - next_action
    assert noise.abs().max().item() <= 0.5 + 1e-7
    assert (noise == 0.5).any() and (noise == -0.5).any()  # clipping did happen on both sides
    assert not out.requires_grad


def test_smoothed_target_action_clipped_to_bounds_and_seeded():
    next_action = torch.full((8, 64, 2), 0.8)
    low, high = t([-1.0, 0.0]), t([1.0, 0.9])
    out = L.smoothed_target_action(
        next_action, noise_std=10.0, low=low, high=high, generator=torch.Generator().manual_seed(1)
    )
    # dim 0: 0.8 + [-0.5, 0.5] = [0.3, 1.3] -> clipped to [0.3, 1.0]; dim 1: [0.3, 1.3] -> [0.3, 0.9].
    assert out[..., 0].max().item() == pytest.approx(1.0)
    assert out[..., 0].min().item() == pytest.approx(0.3)
    assert out[..., 1].max().item() == pytest.approx(0.9)
    again = L.smoothed_target_action(
        next_action, noise_std=10.0, low=low, high=high, generator=torch.Generator().manual_seed(1)
    )
    assert torch.equal(out, again)
    # noise_std = 0 leaves the action alone (within bounds).
    assert torch.equal(L.smoothed_target_action(t([[0.25]]), noise_std=0.0, low=-1.0, high=1.0), t([[0.25]]))


def test_td3_actor_loss_is_negative_masked_q1():
    q = t([[1.0, 2.0], [3.0, 50.0]])
    # -(1 + 2 + 3) / 3 = -2; the padded 50 is ignored.
    assert L.td3_actor_loss(q, t([[1.0, 1.0], [1.0, 0.0]])).item() == pytest.approx(-2.0)


# ----------------------------------------------------------------------------------- SAC continuous


def test_squashed_gaussian_matches_float64_reference():
    torch.manual_seed(0)
    mean = torch.randn(2, 3, 2, dtype=torch.float64) * 2.0
    log_std = torch.randn(2, 3, 2, dtype=torch.float64) * 0.5
    action, log_prob = L.squashed_gaussian(mean, log_std, generator=torch.Generator().manual_seed(7))
    assert action.shape == (2, 3, 2) and log_prob.shape == (2, 3)
    assert (action.abs() < 1.0).all()
    # Reference: replay the same standard-normal draw, then Normal log-density minus the naive tanh Jacobian.
    eps = torch.randn(mean.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    std = log_std.exp()
    u = mean + std * eps
    ref = torch.distributions.Normal(mean, std).log_prob(u) - torch.log(1.0 - torch.tanh(u) ** 2)
    torch.testing.assert_close(action, torch.tanh(u))
    torch.testing.assert_close(log_prob, ref.sum(-1), rtol=1e-6, atol=1e-6)


def test_squashed_gaussian_reparameterised_and_actions_inside_bounds_float32():
    mean = (torch.randn(4, 5, 3) * 1.5).requires_grad_()
    g = torch.Generator().manual_seed(3)
    action, _ = L.squashed_gaussian(mean, torch.zeros(4, 5, 3), generator=g)
    assert (action.abs() < 1.0).all()
    action.sum().backward()
    assert mean.grad is not None and (mean.grad != 0).all()


def test_squashed_gaussian_deterministic_and_stable_when_saturated():
    mean = t([[[0.3, -1.2]]])
    action, _ = L.squashed_gaussian(mean, t([[[0.0, 0.0]]]), deterministic=True)
    torch.testing.assert_close(action, torch.tanh(mean))
    # u = mean = 30, std = 1, one action dim, float32 where tanh(30) == 1 and log(1 - tanh^2) would be -inf:
    # Normal log-density at its mean = -0.5*ln(2*pi) = -0.918939;
    # log(1 - tanh^2(30)) = 2*(ln2 - 30 - softplus(-60)) = 2*(0.693147 - 30) = -58.613706;
    # log_prob = -0.918939 + 58.613706 = 57.694767.
    _, logp = L.squashed_gaussian(t([[[30.0]]]), t([[[0.0]]]), deterministic=True)
    assert logp.item() == pytest.approx(57.694767, rel=1e-5)
    # log_std is clamped to [-20, 2]: log_std 5 behaves as 2.
    _, lp5 = L.squashed_gaussian(mean, t([[[5.0, 5.0]]]), deterministic=True)
    _, lp2 = L.squashed_gaussian(mean, t([[[2.0, 2.0]]]), deterministic=True)
    torch.testing.assert_close(lp5, lp2)


def test_sac_continuous_next_value_and_actor_loss():
    q1 = t([[1.0, 3.0]], requires_grad=True)
    q2 = t([[2.0, 1.0]])
    logp = t([[-1.0, 2.0]])
    # min q = [1, 1]; - 0.2 * logp = [0.2, -0.4]  ->  [1.2, 0.6]
    assert L.sac_continuous_next_value(q1, q2, logp, 0.2)[0].tolist() == pytest.approx([1.2, 0.6])
    # alpha * logp - min q = [-0.2 - 1, 0.4 - 1] = [-1.2, -0.6]; step 1 padded -> -1.2
    loss = L.sac_continuous_actor_loss(q1, q2, logp, 0.2, t([[1.0, 0.0]]))
    assert loss.item() == pytest.approx(-1.2)
    loss.backward()
    # Q is not detached (reparameterisation): q1 is the min at step 0 -> grad -1; padded step -> 0.
    assert q1.grad.tolist() == [[-1.0, 0.0]]


# ----------------------------------------------------------------------------------- SAC discrete


def _three_action_batch():
    # pi = [0.5, 0.25, 0.25] at step 0; step 1 holds different junk that is padded in the loss tests.
    probs = t([[[0.5, 0.25, 0.25], [0.1, 0.1, 0.8]]], requires_grad=True)
    log_probs = probs.log()
    q1 = t([[[1.0, 2.0, 3.0], [9.0, 9.0, 9.0]]], requires_grad=True)
    q2 = t([[[2.0, 1.0, 4.0], [9.0, 9.0, 9.0]]])
    return probs, log_probs, q1, q2


def test_sac_discrete_next_value_three_actions():
    probs, log_probs, q1, q2 = _three_action_batch()
    v = L.sac_discrete_next_value(probs, log_probs, q1, q2, 0.5)
    assert v.shape == (1, 2)
    # min q = [1, 1, 3];  E_pi[min q] = 0.5 + 0.25 + 0.75 = 1.5
    # entropy = 0.5*ln2 + 2*0.25*ln4 = 0.346574 + 0.693147 = 1.039721;  alpha * H = 0.519860
    # V = 1.5 + 0.519860 = 2.019860
    assert v[0, 0].item() == pytest.approx(2.019860, abs=1e-5)


def test_sac_discrete_actor_loss_three_actions():
    probs, log_probs, q1, q2 = _three_action_batch()
    mask = t([[1.0, 0.0]])
    loss = L.sac_discrete_actor_loss(probs, log_probs, q1, q2, 0.5, mask)
    # sum_a pi * (alpha log pi - min q) = -alpha*H - E[min q] = -0.519860 - 1.5 = -2.019860
    assert loss.item() == pytest.approx(-2.019860, abs=1e-5)
    loss.backward()
    assert q1.grad is None  # Q is detached in the discrete actor loss
    assert probs.grad is not None and (probs.grad[0, 1] == 0).all()  # padded step gets no gradient
    # Padded values do not matter.
    probs2, log_probs2, q1b, q2b = _three_action_batch()
    q1b = q1b.detach().clone()
    q1b[0, 1] = -100.0
    loss2 = L.sac_discrete_actor_loss(probs2, log_probs2, q1b, q2b, 0.5, mask)
    assert loss2.item() == pytest.approx(-2.019860, abs=1e-5)


def test_discrete_entropy():
    p = t([[[0.5, 0.25, 0.25]]])
    # 0.5*ln2 + 0.5*ln4 = 1.039721
    assert L.discrete_entropy(p, p.log()).item() == pytest.approx(1.039721, abs=1e-5)


# ----------------------------------------------------------------------------------- temperature


def _alpha_after_one_step(values, target_entropy, *, discrete, mask=None):
    log_alpha = torch.zeros((), requires_grad=True)
    vals = t(values)
    mask = torch.ones_like(vals) if mask is None else t(mask)
    L.alpha_loss(log_alpha, vals, target_entropy, mask, discrete=discrete).backward()
    grad = log_alpha.grad.item()
    with torch.no_grad():
        log_alpha -= 0.1 * log_alpha.grad  # one plain gradient-descent step
    return log_alpha.item(), grad


def test_alpha_loss_discrete_sign():
    # Entropy 0.2, 0.3 below target 1.0 -> grad = mean(H - target) = (-0.8 - 0.7) / 2 = -0.75;
    # the padded 99 is ignored.
    new, grad = _alpha_after_one_step([[0.2, 0.3, 99.0]], 1.0, discrete=True, mask=[[1.0, 1.0, 0.0]])
    assert grad == pytest.approx(-0.75)
    assert new > 0.0  # alpha raised
    # Entropy 2.0 above target 1.0 -> grad +1 -> alpha lowered.
    new, grad = _alpha_after_one_step([[2.0]], 1.0, discrete=True)
    assert grad == pytest.approx(1.0)
    assert new < 0.0


def test_alpha_loss_continuous_sign():
    # target -1 (one action dim). logp = 2 -> entropy estimate -2 < -1 -> grad = -(2 + (-1)) = -1 -> alpha up.
    new, grad = _alpha_after_one_step([[2.0]], -1.0, discrete=False)
    assert grad == pytest.approx(-1.0)
    assert new > 0.0
    # logp = -3 -> entropy estimate 3 > -1 -> grad = -(-3 - 1) = 4 -> alpha down.
    new, grad = _alpha_after_one_step([[-3.0]], -1.0, discrete=False)
    assert grad == pytest.approx(4.0)
    assert new < 0.0


def test_alpha_loss_does_not_train_the_policy():
    logp = t([[0.5]], requires_grad=True)
    L.alpha_loss(torch.zeros((), requires_grad=True), logp, -1.0, t([[1.0]]), discrete=False).backward()
    assert logp.grad is None


def test_target_entropies():
    assert L.discrete_target_entropy(2) == pytest.approx(0.7 * 0.693147, abs=1e-6)  # 0.485203
    assert L.discrete_target_entropy(4, scale=0.5) == pytest.approx(0.693147, abs=1e-6)  # 0.5 * ln4 = ln2
    assert L.continuous_target_entropy(3) == -3.0


# ----------------------------------------------------------------------------------- soft update


class _Net(nn.Module):
    def __init__(self, value: float):
        super().__init__()
        self.lin = nn.Linear(2, 2)
        self.register_buffer("stat", torch.full((2,), value))
        self.register_buffer("count", torch.tensor(int(value)))
        with torch.no_grad():
            self.lin.weight.fill_(value)
            self.lin.bias.fill_(value)


def test_soft_update_tau_one_copies():
    target, source = _Net(0.0), _Net(2.0)
    L.soft_update_(target, source, tau=1.0)
    assert torch.equal(target.lin.weight, source.lin.weight)
    assert torch.equal(target.lin.bias, source.lin.bias)
    assert torch.equal(target.stat, source.stat)
    assert target.count.item() == 0  # integer buffers are left alone


def test_soft_update_tau_half_averages():
    target, source = _Net(0.0), _Net(2.0)
    L.soft_update_(target, source, tau=0.5)
    # 0.5 * 2 + 0.5 * 0 = 1
    assert target.lin.weight.tolist() == [[1.0, 1.0], [1.0, 1.0]]
    assert target.lin.bias.tolist() == [1.0, 1.0]
    assert target.stat.tolist() == [1.0, 1.0]
    assert source.lin.weight.tolist() == [[2.0, 2.0], [2.0, 2.0]]  # source untouched
    assert not target.lin.weight.grad_fn  # no autograd history


# ----------------------------------------------------------------------------------- validation


@pytest.mark.parametrize("gamma", [-0.1, 1.5])
def test_td_target_rejects_bad_gamma(gamma):
    with pytest.raises(ValueError, match="gamma"):
        L.td_target(t([[0.0]]), t([[0.0]]), t([[0.0]]), gamma)


@pytest.mark.parametrize("tau", [0.0, -0.5, 1.5])
def test_soft_update_rejects_bad_tau(tau):
    with pytest.raises(ValueError, match="tau"):
        L.soft_update_(_Net(0.0), _Net(1.0), tau)


def test_argument_validation():
    with pytest.raises(ValueError, match="noise_std"):
        L.smoothed_target_action(t([[0.0]]), noise_std=-1.0, low=-1.0, high=1.0)
    with pytest.raises(ValueError, match="noise_clip"):
        L.smoothed_target_action(t([[0.0]]), noise_clip=-1.0, low=-1.0, high=1.0)
    with pytest.raises(ValueError, match="mask"):
        L.critic_loss(t([[1.0, 2.0]]), t([[1.0, 2.0]]), t([[1.0, 2.0]]), t([[1.0]]))
    with pytest.raises(ValueError, match="mask"):
        L.masked_mean(t([[1.0, 2.0]]), t([[1.0, 1.0, 1.0]]))
    with pytest.raises(ValueError, match="mask"):
        L.td3_actor_loss(t([[1.0, 2.0]]), t([1.0, 1.0]))
    with pytest.raises(ValueError, match="mask"):
        p = torch.full((1, 2, 3), 1.0 / 3.0)
        L.sac_discrete_actor_loss(p, p.log(), p, p, 0.1, t([[1.0, 1.0, 1.0]]))
    with pytest.raises(ValueError, match="next_value"):
        L.td_target(t([[0.0, 1.0]]), t([[0.0, 0.0]]), t([[0.0]]), 0.9)
    with pytest.raises(ValueError, match="alpha"):
        L.sac_continuous_next_value(t([[0.0]]), t([[0.0]]), t([[0.0]]), -0.1)
    with pytest.raises(ValueError, match="tau"):
        L.soft_update_(nn.Linear(2, 2), nn.Linear(2, 2), 2.0)
    with pytest.raises(ValueError, match="n_actions"):
        L.discrete_target_entropy(0)
