"""Settings that take a number or a schedule over lifetime env steps, in RLlib's format for ``lr``:
``[[timestep, value], ...]``, piecewise linear between the points and constant after the last."""

from __future__ import annotations

import itertools
import math
from typing import Any

from rllib_grsn.checks.problems import shown, value_hint

# How RLlib's float settings (lr, entropy_coeff) are written as a schedule.
SCHEDULE_EXAMPLE = "[[0, 0.001], [100000, 0.0001]]"


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def number_or_schedule_problem(
    value: Any, *, positive: bool, example: str = SCHEDULE_EXAMPLE, meaning: str = ""
) -> str | None:
    """What is wrong with a number-or-schedule ``value`` (worded without its key), or None.

    A number must be finite and > 0 (``positive``) or >= 0. A schedule is 2 or more
    ``[timestep, value]`` pairs of finite numbers, timesteps starting at 0 and increasing, values in
    the same range as the number. ``meaning`` follows the range, e.g. " (the surrogate width of Eq. 6)".
    """
    bound = "> 0" if positive else ">= 0"
    if is_number(value):
        if not math.isfinite(value):
            return f"must be a finite number, got {shown(value)}"
        if value < 0 or (positive and value == 0):
            return f"must be {bound}{meaning}, got {shown(value)}"
        return None
    pairs_ok = (
        isinstance(value, list | tuple)
        and len(value) >= 2
        and all(isinstance(p, list | tuple) and len(p) == 2 and all(map(is_number, p)) for p in value)
    )
    if not pairs_ok:
        return (
            f"must be a number {bound} or a schedule of 2 or more [timestep, value] number pairs, "
            f"e.g. {example}, got {shown(value)}{value_hint(value)}"
        )
    if not all(math.isfinite(x) for p in value for x in p):
        return f"schedule numbers must be finite, got {shown(value)}"
    timesteps = [p[0] for p in value]
    if timesteps[0] != 0:
        return (
            f"a schedule must start at timestep 0 ([[0, initial value], ...]), e.g. {example}, "
            f"got {shown(value)}"
        )
    if any(b <= a for a, b in itertools.pairwise(timesteps)):
        return f"schedule timesteps must increase, e.g. {example}, got {shown(value)}"
    if any(p[1] < 0 or (positive and p[1] == 0) for p in value):
        return f"schedule values must be {bound}{meaning}, got {shown(value)}"
    return None
