"""TD(lambda) targets of QMIX on hand-made episodes, and against the n-step definition."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rllib_grsn.algorithms.qmix.targets import td_lambda_targets


def _t(*rows: list[float]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


REWARDS = _t([1.0, 2.0, 3.0])
NEXT_V = _t([10.0, 20.0, 30.0])


def test_one_step_targets_stop_at_termination():
    targets = td_lambda_targets(
        REWARDS, _t([0.0, 0.0, 1.0]), _t([1.0, 1.0, 1.0]), NEXT_V, gamma=0.5, td_lambda=0.0
    )
    assert targets.tolist() == [[6.0, 12.0, 3.0]]


def test_lambda_returns_by_hand():
    targets = td_lambda_targets(
        REWARDS, _t([0.0, 0.0, 1.0]), _t([1.0, 1.0, 1.0]), NEXT_V, gamma=0.5, td_lambda=0.5
    )
    # G2 = 3; G1 = 2 + .5 (.5*20 + .5*3) = 7.75; G0 = 1 + .5 (.5*10 + .5*7.75) = 5.4375
    assert targets.tolist() == [[5.4375, 7.75, 3.0]]


def test_padded_steps_never_leak_into_a_shorter_episode():
    # Episode of 2 steps in a batch padded to 3; the padded step carries junk.
    rewards, next_v = _t([1.0, 2.0, 999.0]), _t([10.0, 20.0, 999.0])
    terminated = td_lambda_targets(
        rewards, _t([0.0, 1.0, 0.0]), _t([1.0, 1.0, 0.0]), next_v, gamma=0.5, td_lambda=0.5
    )
    assert terminated[0, :2].tolist() == [4.0, 2.0]  # G1 = 2; G0 = 1 + .5 (5 + 1)
    truncated = td_lambda_targets(
        rewards, _t([0.0, 0.0, 0.0]), _t([1.0, 1.0, 0.0]), next_v, gamma=0.5, td_lambda=0.5
    )
    # Time limit: the last step bootstraps from V of the final observation (20), not from padding.
    assert truncated[0, :2].tolist() == [6.5, 12.0]


def _reference_lambda_return(rewards, values, gamma, lam):
    """(1 - lam) sum_n lam^(n-1) G^(n) + lam^(N-1) G^(N) over the n-step returns of a truncated episode."""
    length = len(rewards)
    out = []
    for t in range(length):
        horizon = length - t
        n_step = []
        for n in range(1, horizon + 1):
            ret = sum(gamma**k * rewards[t + k] for k in range(n)) + gamma**n * values[t + n - 1]
            n_step.append(ret)
        weighted = sum((1 - lam) * lam ** (n - 1) * n_step[n - 1] for n in range(1, horizon))
        out.append(weighted + lam ** (horizon - 1) * n_step[-1])
    return out


@pytest.mark.parametrize("lam", [0.0, 0.3, 0.6, 1.0])
def test_matches_the_n_step_definition(lam):
    rng = np.random.default_rng(0)
    rewards, values = rng.normal(size=7), rng.normal(size=7)  # values[t] = V(s_{t+1})
    got = td_lambda_targets(
        torch.tensor(rewards[None], dtype=torch.float64),
        torch.zeros(1, 7, dtype=torch.float64),
        torch.ones(1, 7, dtype=torch.float64),
        torch.tensor(values[None], dtype=torch.float64),
        gamma=0.9,
        td_lambda=lam,
    )
    np.testing.assert_allclose(
        got[0].numpy(), _reference_lambda_return(rewards, values, 0.9, lam), rtol=1e-10
    )


def test_lambda_outside_unit_interval_is_refused():
    with pytest.raises(ValueError, match="td_lambda"):
        td_lambda_targets(REWARDS, REWARDS, REWARDS, NEXT_V, gamma=0.9, td_lambda=1.5)
