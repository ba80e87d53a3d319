"""TD targets of QMIX: one-step and TD(lambda) over padded episode batches."""

from __future__ import annotations

import torch
from torch import Tensor


def td_lambda_targets(
    rewards: Tensor,
    terminateds: Tensor,
    filled: Tensor,
    next_values: Tensor,
    *,
    gamma: float,
    td_lambda: float,
) -> Tensor:
    """lambda-returns ``G_t = r_t + gamma (1 - d_t) [(1 - lambda) V_{t+1} + lambda G_{t+1}]``.

    All tensors are ``[B, T]``; ``next_values[:, t]`` is the target network's ``Q_tot`` at step
    ``t + 1``. At an episode's last step ``G_{t+1}`` does not exist and the bootstrap is ``V_{t+1}``
    alone (zero after termination through ``d_t``; a truncated episode bootstraps from its final
    observation). ``td_lambda = 0`` gives the one-step target ``r_t + gamma (1 - d_t) V_{t+1}``;
    ``td_lambda = 1`` the discounted return (plus the final bootstrap). Padded steps
    (``filled == 0``) get arbitrary values the loss masks out.
    """
    if not 0.0 <= td_lambda <= 1.0:
        raise ValueError(f"td_lambda must be in [0, 1], got {td_lambda}")
    continues = gamma * (1.0 - terminateds)
    if td_lambda == 0.0:
        return rewards + continues * next_values
    returns = torch.empty_like(rewards)
    for t in range(rewards.shape[1] - 1, -1, -1):
        if t + 1 < rewards.shape[1]:
            # Only a real next step (filled) carries a lambda-return; otherwise the episode ended at t.
            later = torch.where(filled[:, t + 1] > 0, returns[:, t + 1], next_values[:, t])
        else:  # the batch's last step: nothing after it, bootstrap from V
            later = next_values[:, t]
        blend = (1.0 - td_lambda) * next_values[:, t] + td_lambda * later
        returns[:, t] = rewards[:, t] + continues[:, t] * blend
    return returns
