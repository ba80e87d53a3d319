"""The ``model_config`` keys every spiking RLModule reads, validated in one place.

Users write these under ``config.model_config`` (or the classic ``config.model``) in a
tuned_examples YAML. Validation runs before Ray starts, so a typo in a key or a value outside its
range fails with a message naming the key and what is allowed.

Fields are strict: a size is an integer (``hidden: true`` or ``hidden: 24.0`` is refused, not read as
1 or 24), a flag is ``true``/``false``, and a float field takes a number (an integer too) but no
boolean or string.

``alpha`` (the surrogate width of Eq. 6) may also be a schedule in RLlib's format for ``lr``:
``[[timestep, value], ...]`` over the lifetime env steps sampled, piecewise linear between the
points and constant after the last (:func:`scheduled_value`). Modules are built with its t=0 value;
:class:`~rllib_grsn.algorithms.surrogate_schedule.SurrogateAlphaSchedule` moves it during training.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, field_validator

from rllib_grsn.checks.problems import pydantic_problems
from rllib_grsn.checks.schedules import is_number, number_or_schedule_problem
from rllib_grsn.neurons import CORE_NAMES

CoreName = Literal[CORE_NAMES]  # the neuron registry's names, so a new core needs no edit here

# RLlib's schedule format, [[timestep, value], ...]; ints stay ints so a dumped config reads as written.
Schedule = list[list[int | float]]
ALPHA_SCHEDULE_EXAMPLE = "[[0, 1.0], [100000, 4.0]]"


class SpikingModelConfig(BaseModel):
    """Architecture of a spiking recurrent agent (paper Algorithm 1: encoder -> one core -> decoder).

    The defaults are the pomdp-baselines settings the paper follows: hidden 128, embeddings
    o32/a8/r8, heads [128, 128].
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, validate_assignment=True)

    core: CoreName = Field("grsn", description="neuron core: " + ", ".join(CORE_NAMES))
    hidden: int = Field(128, strict=True, gt=0, description="neurons in the core")
    decay: float = Field(
        0.5, strict=True, gt=0.0, lt=1.0, description="membrane decay beta (GRSN: its initial value)"
    )
    threshold: float = Field(1.0, strict=True, gt=0.0, description="firing threshold theta")
    alpha: float | Schedule = Field(
        2.0,
        description="ATan surrogate width (Eq. 6): a number > 0, or a schedule [[timestep, value], ...] "
        "over lifetime env steps (piecewise linear, like RLlib's lr schedules)",
    )
    time_steps: int = Field(
        4, strict=True, gt=0, description="neuron steps per decision of the *_notap cores"
    )
    obs_embed: int = Field(32, strict=True, gt=0, description="observation embedding size")
    action_embed: int = Field(8, strict=True, ge=0, description="previous-action embedding size (0: not fed)")
    reward_embed: int = Field(8, strict=True, ge=0, description="previous-reward embedding size (0: not fed)")
    head_hiddens: list[StrictInt] = Field([128, 128], description="hidden sizes of the decoder MLP heads")
    q_shortcut: bool = Field(
        False,
        strict=True,
        description="QMIX agent only: its Q head also reads the encoder's embedding next to the core's "
        "output, as the actor-critic and twin-Q heads read their shortcut; false is pymarl's agent "
        "(encoder -> core -> head)",
    )
    max_seq_len: int = Field(32, strict=True, gt=0, description="training chunk length (RLlib's max_seq_len)")
    prev_action_reward: bool = Field(
        True, strict=True, description="feed a_{t-1} and r_{t-1} (Ni et al. 2022)"
    )
    firing_rate_penalty: float = Field(
        0.0,
        strict=True,
        ge=0.0,
        description="loss weight of the mean firing rate of the spiking cores (fewer spikes, fewer "
        "synaptic operations, Eq. 15); no effect on gru/mlp cores, which do not spike",
    )

    @field_validator("alpha", mode="before")
    @classmethod
    def _alpha_number_or_schedule(cls, value: Any) -> Any:
        problem = number_or_schedule_problem(
            value, positive=True, example=ALPHA_SCHEDULE_EXAMPLE, meaning=" (the surrogate width of Eq. 6)"
        )
        if problem:
            raise ValueError(problem)
        return value

    @property
    def alpha_schedule(self) -> Schedule | None:
        """``alpha`` when it is a schedule, else None."""
        return self.alpha if isinstance(self.alpha, list) else None

    @property
    def initial_surrogate_alpha(self) -> float:
        """The surrogate width modules are built with: ``alpha`` itself, or the schedule's t=0 value."""
        return scheduled_value(self.alpha, 0)

    @field_validator("head_hiddens")
    @classmethod
    def _positive_sizes(cls, sizes: list[int]) -> list[int]:
        if any(s <= 0 for s in sizes):
            raise ValueError(f"every head size must be > 0, got {sizes}")
        return sizes

    @classmethod
    def from_model_config(cls, model_config: dict[str, Any]) -> SpikingModelConfig:
        """Reads our keys from a module's ``model_config``.

        Other keys are ignored here because RLlib adds its own (PPO adds ``vf_share_layers``);
        the user's YAML is checked strictly by :func:`model_config_errors` instead.
        """
        return cls(**{k: v for k, v in dict(model_config).items() if k in cls.model_fields})


def model_config_errors(model_config: dict[str, Any], where: str = "config.model_config") -> list[str]:
    """Human-readable problems with ``model_config`` (empty when valid), one per bad key."""
    allowed = list(SpikingModelConfig.model_fields)
    not_names = [key for key in model_config if not isinstance(key, str)]
    if not_names:  # YAML keys such as `1:` or `.nan:`, which cannot name a field
        return [f"{where}.{key}: unknown key; allowed keys: {', '.join(allowed)}" for key in not_names]
    try:
        SpikingModelConfig(**model_config)
    except ValidationError as err:
        return pydantic_problems(err, where, SpikingModelConfig)
    return []


def scheduled_value(schedule: float | Sequence[Sequence[float]], timestep: float) -> float:
    """Value of a number-or-schedule setting at ``timestep`` (lifetime env steps sampled).

    A number is constant. A schedule ``[[t_0=0, v_0], [t_1, v_1], ...]`` is linear between its points
    and ``v_last`` from the last point on, as RLlib's ``PiecewiseSchedule`` evaluates ``lr``
    schedules (with ``outside_value`` = the last value).
    """
    if is_number(schedule):
        return float(schedule)
    for (t0, v0), (t1, v1) in itertools.pairwise(schedule):
        if t0 <= timestep < t1:
            return float(v0 + (timestep - t0) / (t1 - t0) * (v1 - v0))
    return float(schedule[-1][1])
