"""Training maths for recurrent TD3 and SAC, in plain torch (no RLlib).

The learners sample windows of ``T`` steps from sequence replay, unroll the recurrent actor and critics over
them, and hand the per-step outputs to these functions. Every per-step tensor is shaped ``[B, T]`` (or
``[B, T, A]`` when it carries an action dimension) and comes with a float ``mask`` ``[B, T]``: 1 for a real
step that should train, 0 for padding after an episode end or for burn-in steps (R2D2). Every reduction
over steps goes through :func:`masked_mean`, so a padded step never contributes to a loss or its gradient.

References:
    * TD3: Fujimoto, van Hoof, Meger (2018), "Addressing Function Approximation Error in Actor-Critic
      Methods", ICML. Clipped double Q, target policy smoothing, delayed actor updates.
    * SAC (continuous): Haarnoja et al. (2018), "Soft Actor-Critic Algorithms and Applications",
      arXiv:1812.05905. Tanh-squashed Gaussian policy, automatic entropy temperature.
    * SAC (discrete): Christodoulou (2019), "Soft Actor-Critic for Discrete Action Settings",
      arXiv:1910.07207. Expectations over all actions instead of sampling.
    * Defaults (target entropy ``0.7 * log|A|``, ``log_alpha`` parametrisation, summed twin-critic loss)
      follow Ni, Eysenbach, Salakhutdinov (2022), "Recurrent Model-Free RL Can Be a Strong Baseline for Many
      POMDPs" (pomdp-baselines), which the paper's code builds on.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "alpha_loss",
    "clipped_double_q",
    "continuous_target_entropy",
    "critic_loss",
    "discrete_entropy",
    "discrete_target_entropy",
    "masked_mean",
    "sac_continuous_actor_loss",
    "sac_continuous_next_value",
    "sac_discrete_actor_loss",
    "sac_discrete_next_value",
    "smoothed_target_action",
    "soft_update_",
    "squashed_gaussian",
    "td3_actor_loss",
    "td_target",
]

# SAC reference implementations clamp log_std to this range: below -20 the std underflows to a Dirac and the
# log-density explodes; above 2 (std ~7.4) tanh saturates and the policy stops learning.
LOG_STD_MIN = -20.0
LOG_STD_MAX = 2.0


# ----------------------------------------------------------------------------------------------------
# Validation helpers
# ----------------------------------------------------------------------------------------------------


def _check_same_shape(name: str, x: Tensor, ref_name: str, ref: Tensor) -> None:
    if x.shape != ref.shape:
        raise ValueError(f"`{name}` has shape {tuple(x.shape)} but `{ref_name}` has {tuple(ref.shape)}")


def _check_mask(mask: Tensor, values: Tensor, *, values_name: str, per_action: bool = False) -> None:
    """``mask`` must be [B, T] and match ``values`` ([B, T], or [B, T, A] when ``per_action``)."""
    steps_shape = values.shape[:-1] if per_action else values.shape
    if mask.shape != steps_shape:
        raise ValueError(
            f"`mask` has shape {tuple(mask.shape)} but `{values_name}` has {tuple(values.shape)}; "
            f"expected mask shape {tuple(steps_shape)}"
        )


def _check_gamma(gamma: float) -> None:
    if not 0.0 <= float(gamma) <= 1.0:
        raise ValueError(f"`gamma` must be in [0, 1], got {gamma}")


def _check_alpha(alpha: float | Tensor) -> None:
    value = alpha.detach() if isinstance(alpha, Tensor) else torch.tensor(float(alpha))
    if bool((value < 0).any()):
        raise ValueError(f"`alpha` (entropy temperature) must be >= 0, got {alpha}")


def _const(alpha: float | Tensor) -> float | Tensor:
    # The temperature is a constant for the actor and critic losses; only alpha_loss trains it.
    return alpha.detach() if isinstance(alpha, Tensor) else alpha


# ----------------------------------------------------------------------------------------------------
# Generic pieces
# ----------------------------------------------------------------------------------------------------


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``x`` over the steps where ``mask`` is 1: ``sum(x * mask) / max(sum(mask), 1)``.

    The denominator counts real steps, not padded ones, so the loss scale does not depend on how much
    padding a batch holds; the ``max(., 1)`` keeps an all-padding batch at 0 instead of NaN.
    """
    _check_same_shape("x", x, "mask", mask)
    mask = mask.to(x.dtype)
    return (x * mask).sum() / mask.sum().clamp(min=1.0)


def td_target(reward: Tensor, terminated: Tensor, next_value: Tensor, gamma: float) -> Tensor:
    """One-step TD target ``r + gamma * (1 - terminated) * V(s')``, without gradient.

    ``terminated`` (true termination, not truncation) zeroes the bootstrap: there is no value after a
    terminal state, while a time-limit truncation still bootstraps. The result is detached because the target
    is a fixed regression label (the target networks are trained only through Polyak averaging).
    """
    _check_gamma(gamma)
    _check_same_shape("terminated", terminated, "reward", reward)
    _check_same_shape("next_value", next_value, "reward", reward)
    with torch.no_grad():
        not_done = 1.0 - terminated.to(reward.dtype)
        return (reward + gamma * not_done * next_value).detach()


def clipped_double_q(q1: Tensor, q2: Tensor) -> Tensor:
    """Elementwise ``min(q1, q2)`` (Fujimoto et al. 2018, Eq. 10).

    Taking the smaller of two independently trained critics counters the overestimation bias that a max over
    (or gradient ascent on) a noisy Q estimate produces.
    """
    _check_same_shape("q2", q2, "q1", q1)
    return torch.minimum(q1, q2)


def critic_loss(q1: Tensor, q2: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Twin-critic regression loss: ``masked_mean((q1 - y)^2 + (q2 - y)^2)``.

    Convention: the *sum* of the two critics' MSEs (not their average), as in the TD3 reference code
    (``F.mse_loss(q1, y) + F.mse_loss(q2, y)``) and pomdp-baselines. Each critic's gradient then equals
    that of its own MSE, so learning rates carry over from those implementations unchanged. ``target`` is
    detached defensively: gradient must never flow into the label.
    """
    _check_same_shape("q1", q1, "target", target)
    _check_same_shape("q2", q2, "target", target)
    _check_mask(mask, target, values_name="target")
    target = target.detach()
    return masked_mean((q1 - target).pow(2) + (q2 - target).pow(2), mask)


# ----------------------------------------------------------------------------------------------------
# TD3 (Fujimoto et al. 2018)
# ----------------------------------------------------------------------------------------------------


def smoothed_target_action(
    next_action: Tensor,
    *,
    noise_std: float = 0.2,
    noise_clip: float = 0.5,
    low: float | Tensor,
    high: float | Tensor,
    generator: torch.Generator | None = None,
) -> Tensor:
    """TD3 target policy smoothing (Fujimoto et al. 2018, Eq. 14).

    ``a' = clip(mu'(s') + clip(eps, -c, c), low, high)`` with ``eps ~ N(0, noise_std^2)``. Smoothing the
    target over nearby actions keeps the critic from fitting narrow peaks of its own error; the noise is
    clipped so the target action stays close to the policy's, and the result is clipped to the
    valid action box.

    ``noise_std`` and ``noise_clip`` are in the units of ``next_action``: with a tanh actor in [-1, 1] the
    defaults are the paper's; for an unscaled action box pass them multiplied by the action scale, as the
    reference code does (``policy_noise * max_action``). Returns a tensor without gradient.
    """
    if noise_std < 0:
        raise ValueError(f"`noise_std` must be >= 0, got {noise_std}")
    if noise_clip < 0:
        raise ValueError(f"`noise_clip` must be >= 0, got {noise_clip}")
    low_t = torch.as_tensor(low, dtype=next_action.dtype, device=next_action.device)
    high_t = torch.as_tensor(high, dtype=next_action.dtype, device=next_action.device)
    if bool((low_t > high_t).any()):
        raise ValueError(f"`low` must be <= `high`, got low={low}, high={high}")
    with torch.no_grad():
        eps = torch.randn(
            next_action.shape, generator=generator, dtype=next_action.dtype, device=next_action.device
        )
        noise = (eps * noise_std).clamp(-noise_clip, noise_clip)
        return torch.clamp(next_action.detach() + noise, min=low_t, max=high_t)


def td3_actor_loss(q1_of_policy_action: Tensor, mask: Tensor) -> Tensor:
    """Deterministic policy gradient loss ``-masked_mean(Q1(s, mu(s)))`` (Fujimoto et al. 2018, Alg. 1).

    TD3 ascends only the first critic; using Q1 (not the min) matches the paper and reference code. The
    critic's parameters must not be stepped by the actor optimiser; gradient flows through the action into
    the actor.
    """
    _check_mask(mask, q1_of_policy_action, values_name="q1_of_policy_action")
    return -masked_mean(q1_of_policy_action, mask)


def td3_bc_actor_loss(
    q1_of_policy_action: Tensor,
    policy_action: Tensor,
    guide_action: Tensor,
    labelled: Tensor,
    mask: Tensor,
    bc_weight: float,
    *,
    rl_loss: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """TD3+BC's actor loss with behaviour cloning on the labelled steps only; ``(loss, bc term)``.

    Fujimoto & Gu 2021 minimise ``-lambda * Q(s, pi(s)) + (pi(s) - a)^2`` with
    ``lambda = alpha / mean|Q|`` (the mean over the batch, without gradient). Divided by lambda (a
    positive per-batch scale) this is ``-Q + beta * mean|Q| * (pi(s) - a)^2`` with ``beta = 1 / alpha``,
    which is plain TD3 at ``beta = 0``, so annealing beta to 0 anneals the cloning away (their alpha = 2.5
    is beta = 0.4). The Q term averages over the valid steps (``mask``); the cloning term averages the
    squared error summed over action dimensions over the labelled valid steps (``labelled * mask``:
    where the guide acted, or every step when it labels the policy's steps too), and is exactly 0 (with
    no gradient) where no step is labelled; ``guide_action`` of unlabelled steps is never read.

    ``rl_loss`` replaces the ``-Q`` term by another actor loss on the same steps, with
    ``q1_of_policy_action`` the Q that scales the cloning: continuous SAC passes its
    ``alpha log pi - min(Q1, Q2)`` loss and ``min(Q1, Q2)``, and clones its greedy ``tanh(mean)`` action
    (see :class:`~rllib_grsn.algorithms.off_policy.learner.SACLearner`).
    """
    _check_mask(mask, q1_of_policy_action, values_name="q1_of_policy_action")
    _check_same_shape("labelled", labelled, "mask", mask)
    _check_same_shape("guide_action", guide_action, "policy_action", policy_action)
    rl_term = -masked_mean(q1_of_policy_action, mask) if rl_loss is None else rl_loss
    weights = labelled.to(policy_action.dtype) * mask.to(policy_action.dtype)
    # An unlabelled step's label is the policy's own action: no error, and nothing read from guide_action.
    label = torch.where(
        weights.unsqueeze(-1) > 0, guide_action.to(policy_action.dtype), policy_action.detach()
    )
    squared_error = ((policy_action - label) ** 2).sum(dim=-1)
    bc = masked_mean(squared_error, weights)
    scale = masked_mean(q1_of_policy_action.detach().abs(), mask)
    return rl_term + bc_weight * scale * bc, bc


# ----------------------------------------------------------------------------------------------------
# SAC, continuous actions (Haarnoja et al. 2018)
# ----------------------------------------------------------------------------------------------------


def squashed_gaussian(
    mean: Tensor,
    log_std: Tensor,
    *,
    generator: torch.Generator | None = None,
    deterministic: bool = False,
) -> tuple[Tensor, Tensor]:
    """Reparameterised tanh-squashed Gaussian (Haarnoja et al. 2018, Appendix C).

    ``u = mean + std * eps`` (``eps ~ N(0, I)``, so the sample is differentiable in ``mean`` and ``log_std``),
    ``a = tanh(u)`` in (-1, 1). By change of variables
    ``log pi(a) = log N(u; mean, std) - sum_i log(1 - tanh(u_i)^2)``. The correction is computed as
    ``log(1 - tanh(u)^2) = 2 * (log 2 - u - softplus(-2u))``, which is exact and never takes ``log(0)`` when
    tanh saturates (the naive form needs an epsilon and is then biased).

    Args:
        mean, log_std: ``[..., A]``; ``log_std`` is clamped to ``[-20, 2]``.
        deterministic: return ``tanh(mean)`` (evaluation); the log-prob is then the density at ``u = mean``.

    Returns:
        ``(action [..., A], log_prob [...])`` with the log-prob summed over the action dimension.
    """
    _check_same_shape("log_std", log_std, "mean", mean)
    log_std = log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)
    std = log_std.exp()
    if deterministic:
        u = mean
    else:
        eps = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
        u = mean + std * eps
    # Normal log-density written out (same as torch.distributions.Normal.log_prob), per dimension.
    gauss_logp = -0.5 * ((u - mean) / std).pow(2) - log_std - 0.5 * math.log(2.0 * math.pi)
    log_det = 2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))
    log_prob = (gauss_logp - log_det).sum(dim=-1)
    return torch.tanh(u), log_prob


def sac_continuous_next_value(
    next_q1: Tensor, next_q2: Tensor, next_log_prob: Tensor, alpha: float | Tensor
) -> Tensor:
    """Soft state value ``V(s') = min(Q1', Q2')(s', a') - alpha * log pi(a'|s')`` with ``a' ~ pi(.|s')``.

    Feed the result to :func:`td_target`. The min is TD3's clipped double Q, which SAC also uses.
    """
    _check_alpha(alpha)
    _check_same_shape("next_log_prob", next_log_prob, "next_q1", next_q1)
    return clipped_double_q(next_q1, next_q2) - _const(alpha) * next_log_prob


def sac_continuous_actor_loss(
    q1: Tensor, q2: Tensor, log_prob: Tensor, alpha: float | Tensor, mask: Tensor
) -> Tensor:
    """Policy loss ``masked_mean(alpha * log pi(a|s) - min(Q1, Q2)(s, a))`` with reparameterised ``a ~ pi``.

    Q is *not* detached: the gradient reaches the actor through the action (reparameterisation trick); only
    the actor's optimiser should step. ``alpha`` is treated as a constant here.
    """
    _check_alpha(alpha)
    _check_same_shape("log_prob", log_prob, "q1", q1)
    _check_mask(mask, log_prob, values_name="log_prob")
    return masked_mean(_const(alpha) * log_prob - clipped_double_q(q1, q2), mask)


# ----------------------------------------------------------------------------------------------------
# SAC, discrete actions (Christodoulou 2019)
# ----------------------------------------------------------------------------------------------------


def discrete_entropy(probs: Tensor, log_probs: Tensor) -> Tensor:
    """Policy entropy ``H = -sum_a pi(a) log pi(a)`` over the last (action) dim: ``[B, T, A] -> [B, T]``."""
    _check_same_shape("log_probs", log_probs, "probs", probs)
    return -(probs * log_probs).sum(dim=-1)


def sac_discrete_next_value(
    next_probs: Tensor,
    next_log_probs: Tensor,
    next_q1: Tensor,
    next_q2: Tensor,
    alpha: float | Tensor,
) -> Tensor:
    """Soft value as an exact expectation over actions (Christodoulou 2019, Eq. 10).

    ``V(s') = sum_a pi(a|s') * (min(Q1', Q2')(s', a) - alpha * log pi(a|s'))`` over the last dim,
    ``[B, T, A] -> [B, T]``. With a discrete action set the expectation is cheap, so no sampling noise.
    """
    _check_alpha(alpha)
    _check_same_shape("next_log_probs", next_log_probs, "next_probs", next_probs)
    _check_same_shape("next_q1", next_q1, "next_probs", next_probs)
    min_q = clipped_double_q(next_q1, next_q2)
    return (next_probs * (min_q - _const(alpha) * next_log_probs)).sum(dim=-1)


def sac_discrete_actor_loss(
    probs: Tensor,
    log_probs: Tensor,
    q1: Tensor,
    q2: Tensor,
    alpha: float | Tensor,
    mask: Tensor,
) -> Tensor:
    """Policy loss ``masked_mean(sum_a pi(a|s) * (alpha * log pi(a|s) - min(Q1, Q2)(s, a)))``
    (Christodoulou 2019, Eq. 12).

    The expectation over actions replaces the reparameterisation trick, so the gradient flows through ``pi``;
    Q is detached (it is a fixed weighting here, the critics are trained by :func:`critic_loss`).
    """
    _check_alpha(alpha)
    _check_same_shape("log_probs", log_probs, "probs", probs)
    _check_same_shape("q1", q1, "probs", probs)
    _check_mask(mask, probs, values_name="probs", per_action=True)
    min_q = clipped_double_q(q1, q2).detach()
    per_step = (probs * (_const(alpha) * log_probs - min_q)).sum(dim=-1)
    return masked_mean(per_step, mask)


# ----------------------------------------------------------------------------------------------------
# Entropy temperature
# ----------------------------------------------------------------------------------------------------


def alpha_loss(
    log_alpha: Tensor,
    entropy_or_logp: Tensor,
    target_entropy: float,
    mask: Tensor,
    *,
    discrete: bool,
) -> Tensor:
    """Automatic entropy temperature loss (Haarnoja et al. 2018, Eq. 18; Christodoulou 2019, Eq. 11).

    We optimise ``log_alpha`` (so ``alpha = exp(log_alpha) > 0`` without constraints), as pomdp-baselines
    and the SAC reference code do, and multiply it (not ``alpha``) into the loss; both give gradients of the
    same sign.

    * continuous (``discrete=False``): pass ``log pi(a|s)`` of a fresh sample ``[B, T]``;
      ``loss = -log_alpha * (log pi + H_target)``. ``-log pi`` is a one-sample entropy estimate, so
      ``d loss / d log_alpha = -(log pi + H_target) = H_est - H_target``.
    * discrete (``discrete=True``): pass the exact entropy ``H = -sum_a pi log pi`` ``[B, T]``
      (:func:`discrete_entropy`); ``loss = log_alpha * (H - H_target)``, gradient ``H - H_target``.

    In both cases the gradient is (entropy - target): when the policy's entropy is below target the gradient
    is negative and a descent step *raises* alpha (more entropy bonus); above target it lowers alpha. The
    policy term is detached so this loss only trains the temperature.
    """
    if log_alpha.numel() != 1:
        raise ValueError(f"`log_alpha` must be a scalar tensor, got shape {tuple(log_alpha.shape)}")
    _check_mask(mask, entropy_or_logp, values_name="entropy_or_logp")
    if discrete:
        per_step = log_alpha * (entropy_or_logp - target_entropy).detach()
    else:
        per_step = -log_alpha * (entropy_or_logp + target_entropy).detach()
    return masked_mean(per_step, mask)


def discrete_target_entropy(n_actions: int, scale: float = 0.7) -> float:
    """Target entropy ``scale * log(n_actions)`` for discrete SAC.

    ``log|A|`` is the entropy of the uniform policy (the maximum); ``scale = 0.7`` is pomdp-baselines'
    default (Christodoulou 2019 used 0.98, which keeps CartPole-like tasks too random).
    """
    if int(n_actions) < 1:
        raise ValueError(f"`n_actions` must be >= 1, got {n_actions}")
    if not 0.0 <= scale <= 1.0:
        raise ValueError(f"`scale` must be in [0, 1], got {scale}")
    return float(scale) * math.log(int(n_actions))


def continuous_target_entropy(action_dim: int) -> float:
    """Target entropy ``-action_dim`` for continuous SAC (Haarnoja et al. 2018, heuristic ``-dim(A)``)."""
    if int(action_dim) < 1:
        raise ValueError(f"`action_dim` must be >= 1, got {action_dim}")
    return -float(action_dim)


# ----------------------------------------------------------------------------------------------------
# Target networks
# ----------------------------------------------------------------------------------------------------


def soft_update_(target: nn.Module, source: nn.Module, tau: float) -> None:
    """Polyak averaging in place: ``theta_target <- tau * theta_source + (1 - tau) * theta_target``.

    Applied to parameters and floating-point buffers (e.g. running statistics); integer buffers (such as
    BatchNorm's ``num_batches_tracked``) are left alone, since averaging counts is meaningless. ``tau = 1``
    is a hard copy. Runs under ``no_grad`` so the update is not recorded by autograd.
    """
    if not 0.0 < tau <= 1.0:
        raise ValueError(f"`tau` must be in (0, 1], got {tau}")
    target_tensors = dict(target.named_parameters()) | dict(target.named_buffers())
    source_tensors = dict(source.named_parameters()) | dict(source.named_buffers())
    if target_tensors.keys() != source_tensors.keys():
        raise ValueError(
            "`target` and `source` have different parameters/buffers: "
            f"{sorted(target_tensors.keys() ^ source_tensors.keys())}"
        )
    with torch.no_grad():
        for name, t in target_tensors.items():
            s = source_tensors[name]
            if t.shape != s.shape:
                raise ValueError(f"`target` and `source` disagree on the shape of {name!r}")
            if not t.is_floating_point():
                continue
            t.lerp_(s.to(t.dtype), tau)
