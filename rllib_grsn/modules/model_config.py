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
import math
import re
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, field_validator

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
        problem = alpha_problem(value)
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
    not_names = [key for key in model_config if not isinstance(key, str)]
    if not_names:  # YAML keys such as `1:` or `.nan:`, which cannot name a field
        allowed = ", ".join(SpikingModelConfig.model_fields)
        return [f"{where}.{key}: unknown key; allowed keys: {allowed}" for key in not_names]
    try:
        SpikingModelConfig(**model_config)
    except ValidationError as err:
        return [_describe(where, e) for e in err.errors()]
    return []


def _describe(where: str, error: dict[str, Any]) -> str:
    key = ".".join(str(p) for p in error["loc"])
    if error["type"] == "extra_forbidden":
        allowed = ", ".join(SpikingModelConfig.model_fields)
        return f"{where}.{key}: unknown key; allowed keys: {allowed}"
    if error["loc"] == ("alpha",) and error["type"] == "value_error":
        # alpha_problem's message already shows the value and an example; pydantic's
        # "Value error, " prefix and a second "(got ...)" would only repeat it.
        return f"{where}.{key}: {error['ctx']['error']}"
    value = error.get("input")
    hint = ""
    if error["type"] in ("int_type", "float_type"):
        hint = string_number_hint(value, integer=error["type"] == "int_type")
    return f"{where}.{key}: {error['msg']} (got {value!r}){hint}"


_EXPONENT = re.compile(r"([+-]?)(\d*\.?\d*)[eE]([+-]?)(\d+)")


def string_number_hint(value: Any, *, integer: bool = False) -> str:
    """A hint for a number that arrived as a string, or "".

    YAML 1.1 (PyYAML) reads ``1e-3`` and ``1.0e3`` as strings: a float needs a dot and a signed
    exponent. The hint shows what to write instead: ``" (YAML reads 1e-3 as a string; write 1.0e-3)"``.
    """
    if not isinstance(value, str):
        return ""
    text = value.strip()
    try:
        number = float(text)
    except ValueError:
        return ""
    if not math.isfinite(number):
        return ""
    match = _EXPONENT.fullmatch(text)
    if integer and number.is_integer():
        fix = str(int(number))
    elif match:
        sign, mantissa, exp_sign, digits = match.groups()
        if "." not in mantissa:
            mantissa += ".0"
        fix = f"{sign}{mantissa}e{exp_sign or '+'}{digits}"
    else:
        fix = text
    if fix == text:
        fix += " without quotes"
    return f" (YAML reads {text} as a string; write {fix})"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def alpha_problem(value: Any) -> str | None:
    """What is wrong with an ``alpha`` value (a number > 0 or a schedule), or None.

    Worded like the experiment's checks of RLlib's float settings (``lr``, ``entropy_coeff``), without
    the key, which the caller puts in front: a schedule is 2 or more ``[timestep, value]`` pairs of
    finite numbers, timesteps starting at 0 and increasing, values > 0 (a width of 0 would zero every
    surrogate gradient).
    """
    if _is_number(value):
        if not math.isfinite(value):
            return f"must be a finite number, got {value!r}"
        if value <= 0:
            return f"must be > 0 (the surrogate width of Eq. 6), got {value!r}"
        return None
    pairs_ok = (
        isinstance(value, list | tuple)
        and len(value) >= 2
        and all(isinstance(p, list | tuple) and len(p) == 2 and all(map(_is_number, p)) for p in value)
    )
    if not pairs_ok:
        if isinstance(value, list | tuple):
            strings = [x for p in value if isinstance(p, list | tuple) for x in p if isinstance(x, str)]
        else:
            strings = [value]
        hint = next((h for h in map(string_number_hint, strings) if h), "")
        return (
            "must be a number > 0 or a schedule of 2 or more [timestep, value] number pairs, "
            f"e.g. {ALPHA_SCHEDULE_EXAMPLE}, got {value!r}{hint}"
        )
    if not all(math.isfinite(x) for p in value for x in p):
        return f"schedule numbers must be finite, got {value!r}"
    timesteps = [p[0] for p in value]
    if timesteps[0] != 0:
        return (
            f"a schedule must start at timestep 0 ([[0, initial value], ...]), e.g. "
            f"{ALPHA_SCHEDULE_EXAMPLE}, got {value!r}"
        )
    if any(b <= a for a, b in itertools.pairwise(timesteps)):
        return f"schedule timesteps must increase, e.g. {ALPHA_SCHEDULE_EXAMPLE}, got {value!r}"
    if any(p[1] <= 0 for p in value):
        return f"schedule values must be > 0 (the surrogate width of Eq. 6), got {value!r}"
    return None


def scheduled_value(schedule: float | Sequence[Sequence[float]], timestep: float) -> float:
    """Value of a number-or-schedule setting at ``timestep`` (lifetime env steps sampled).

    A number is constant. A schedule ``[[t_0=0, v_0], [t_1, v_1], ...]`` is linear between its points
    and ``v_last`` from the last point on, as RLlib's ``PiecewiseSchedule`` evaluates ``lr``
    schedules (with ``outside_value`` = the last value).
    """
    if _is_number(schedule):
        return float(schedule)
    for (t0, v0), (t1, v1) in itertools.pairwise(schedule):
        if t0 <= timestep < t1:
            return float(v0 + (timestep - t0) / (t1 - t0) * (v1 - v0))
    return float(schedule[-1][1])
