"""What the AlgorithmConfigs of this package share: setting only the provided values, and checks
of their own settings that run both in ``validate`` and before Ray starts (``rllib train file``)."""

from __future__ import annotations

import math
from typing import Any

from ray.rllib.algorithms.algorithm_config import AlgorithmConfig, NotProvided

from rllib_grsn.modules.model_config import string_number_hint

# How a float setting of RLlib (lr, entropy_coeff) is written as a schedule over lifetime env steps.
SCHEDULE_EXAMPLE = "[[0, 0.001], [100000, 0.0001]]"


def set_provided(config: AlgorithmConfig, **values: Any) -> None:
    """RLlib's ``training(**kwargs)`` convention: only arguments the caller gave change the config."""
    for key, value in values.items():
        if value is not NotProvided:
            setattr(config, key, value)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def integer_errors(config: AlgorithmConfig, minimums: dict[str, int]) -> list[str]:
    """One message per setting that is not an integer >= its minimum (``True`` is not 1 here)."""
    errors = []
    for key, minimum in minimums.items():
        value = getattr(config, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            errors.append(f"{key} must be an integer >= {minimum}, got {value!r}")
    return errors


def schedule_problem(key: str, schedule: list | tuple, default: float) -> str | None:
    """RLlib's schedule format for float settings (``lr``, ``entropy_coeff``): [[timestep, value], ...].

    Checked as RLlib checks it later (Scheduler.validate, PiecewiseSchedule): two or more pairs of
    finite numbers, timesteps >= 0, starting at 0 and in increasing order.
    """
    pairs_ok = len(schedule) >= 2 and all(
        isinstance(p, (list, tuple)) and len(p) == 2 and all(is_number(x) for x in p) for p in schedule
    )
    if not pairs_ok:
        strings = [x for p in schedule if isinstance(p, (list, tuple)) for x in p if isinstance(x, str)]
        hint = next((h for h in map(string_number_hint, strings) if h), "")
        return (
            f"{key}: must be a number or a schedule of 2 or more [timestep, value] number pairs, "
            f"e.g. {SCHEDULE_EXAMPLE} (RLlib's default is {default!r}), got {schedule!r}{hint}"
        )
    if not all(math.isfinite(x) for p in schedule for x in p):
        return f"{key}: schedule numbers must be finite, got {schedule!r}"
    timesteps = [p[0] for p in schedule]
    if any(t < 0 for t in timesteps):
        return f"{key}: schedule timesteps must be >= 0, got {schedule!r}"
    if timesteps[0] != 0:
        return f"{key}: a schedule must start at timestep 0 ([[0, initial value], ...]), got {schedule!r}"
    if timesteps != sorted(timesteps):
        return f"{key}: schedule timesteps must be in increasing order, got {schedule!r}"
    if default >= 0 and any(p[1] < 0 for p in schedule):
        return f"{key}: schedule values must be >= 0, got {schedule!r}"
    return None


class SelfCheckingConfig(AlgorithmConfig):
    """An AlgorithmConfig whose own settings are checked by :meth:`off_policy_errors`.

    ``rllib train file`` calls it before Ray starts (so a bad value fails in a second, naming the
    key), and ``validate`` calls it again for configs built in Python.
    """

    def validate(self) -> None:
        super().validate()
        errors = self.off_policy_errors()
        if errors:
            self._value_error("; ".join(errors))

    def off_policy_errors(self) -> list[str]:
        """One message per bad setting of this algorithm (empty when all are valid)."""
        return []
