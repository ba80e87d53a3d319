"""What the AlgorithmConfigs of this package share: setting only the provided values, and checks
of their own settings that run both in ``validate`` and before Ray starts (``rllib train file``)."""

from __future__ import annotations

from typing import Any

from ray.rllib.algorithms.algorithm_config import AlgorithmConfig, NotProvided


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
