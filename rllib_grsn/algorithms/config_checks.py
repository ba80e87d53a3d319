"""The base of this package's AlgorithmConfigs: their own settings are a pydantic model.

A subclass names its model in ``settings`` (fields, defaults, types and ranges in one place). The
config starts with the model's defaults, ``training(**kwargs)`` sets the model's fields next to
RLlib's own, and ``validate()`` checks them, with :class:`~rllib_grsn.checks.rllib_settings.CommonRanges`,
after RLlib's own checks. ``rllib train file`` runs the same checks before Ray starts.
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig, NotProvided

from rllib_grsn.checks.rllib_settings import range_problems

# Strict types (a size is an integer, ``true`` is not 1), no NaN or infinity, no unknown fields.
SETTINGS = ConfigDict(strict=True, allow_inf_nan=False, extra="forbid")


def set_provided(config: AlgorithmConfig, **values: Any) -> None:
    """RLlib's ``training(**kwargs)`` convention: only arguments the caller gave change the config."""
    for key, value in values.items():
        if value is not NotProvided:
            setattr(config, key, value)


class SelfCheckingConfig(AlgorithmConfig):
    """An AlgorithmConfig whose own settings are the fields of its ``settings`` model."""

    settings: ClassVar[type[BaseModel]]

    def __init__(self, algo_class: type | None = None):
        super().__init__(algo_class=algo_class)
        set_provided(self, **self.settings().model_dump())

    def training(self, **kwargs: Any) -> Self:
        """RLlib's ``training`` settings plus the fields of ``settings`` (see its descriptions)."""
        own = {k: kwargs.pop(k) for k in list(kwargs) if k in self.settings.model_fields}
        super().training(**kwargs)
        set_provided(self, **own)
        return self

    def validate(self) -> None:
        super().validate()
        errors = range_problems(self, "", {})
        errors = errors or self.cross_field_problems()
        if errors:
            self._value_error("; ".join(errors))

    def cross_field_problems(self) -> list[str]:
        """Rules between settings (``key: problem`` lines); none by default."""
        return []
