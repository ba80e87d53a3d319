"""The settings of an ``AlgorithmConfig``, checked before Ray starts, with RLlib's own checks first.

Three layers, for every algorithm (RLlib's and this package's):

1. **Keys and types** (:func:`settings_model`): a key is known when it is a keyword of one of
   RLlib's setter methods (``training``, ``env_runners``, ``evaluation``, ...) or an attribute of the
   algorithm's default config; its value must fit the annotation RLlib gives that keyword. None is
   allowed only where RLlib's default is None. ``evaluation_config`` holds settings of the same
   algorithm and is checked the same way.
2. **Ranges and allowed values RLlib does not check** (:class:`CommonRanges`: discounts in [0, 1],
   budgets > 0, enumerations such as ``batch_mode``), and the algorithm's own settings when it is one
   of this package's (``settings`` of :class:`~rllib_grsn.algorithms.config_checks.SelfCheckingConfig`).
3. **RLlib's cross-field checks**: ``AlgorithmConfig.validate()``, with every error it finds collected
   (it raises at the first) and put under the key it names (:func:`validate_problems`).
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
import re
import types
import typing
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PlainValidator,
    PositiveInt,
    TypeAdapter,
    ValidationError,
    create_model,
    field_validator,
)
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig, NotProvided

from rllib_grsn.checks.problems import pydantic_problems, shown, value_hint
from rllib_grsn.checks.schedules import is_number, number_or_schedule_problem

# Keys validated elsewhere (model_config: the spiking model or RLlib's DefaultModelConfig).
NOT_HERE = ("model_config", "env")
STRICT = ConfigDict(strict=True, allow_inf_nan=False, arbitrary_types_allowed=True, extra="forbid")


def attribute(key: str) -> str:
    """The AlgorithmConfig attribute a config key sets (``lambda`` -> ``lambda_``, ...)."""
    return AlgorithmConfig._translate_special_keys(key, warn_deprecated=False)


@functools.cache
def settings_model(config_cls: type[AlgorithmConfig]) -> type[BaseModel]:
    """The settings of ``config_cls`` as a pydantic model of RLlib's own declarations: every keyword of
    its setter methods (``training``, ``env_runners``, ... : the keywords that default to NotProvided)
    typed as RLlib annotates it, None allowed only where RLlib's default is None, plus the config's
    other public attributes (deprecated keys, this package's own settings) untyped; nothing else."""
    default = config_cls()
    fields: dict[str, Any] = {a: (Any, None) for a in vars(default) if not a.startswith("_")}
    for klass in reversed(config_cls.__mro__):
        for method in vars(klass).values():
            params = inspect.signature(method).parameters if inspect.isfunction(method) else {}
            for name in [n for n, p in params.items() if p.default is NotProvided]:
                attr = attribute(name)
                annotation = _hint(method, name)
                if getattr(default, attr, None) is not None:
                    annotation = _without_none(annotation)
                fields[attr] = (annotation if _checkable(annotation) else Any, None)
    for name in [*getattr(config_cls, "settings", BaseModel).model_fields, *NOT_HERE]:
        fields[name] = (Any, None)  # checked by their own models
    return create_model(f"{config_cls.__name__}Keys", __config__=STRICT, **fields)


def _hint(method: Any, name: str) -> Any:
    """The resolved annotation of one parameter; ``Any`` where it names a class RLlib imports only for
    type checkers (resolving one at a time keeps every other parameter's type)."""
    holder = types.SimpleNamespace(__annotations__={name: method.__annotations__.get(name, Any)})
    try:
        return typing.get_type_hints(holder, globalns=method.__globals__)[name]
    except Exception:
        return Any


def _without_none(annotation: Any) -> Any:
    if typing.get_origin(annotation) not in (typing.Union, types.UnionType):
        return annotation
    rest = tuple(a for a in typing.get_args(annotation) if a is not type(None))
    return typing.Union[rest] if len(rest) > 1 else rest[0]  # noqa: UP007 (a tuple built at run time)


def _checkable(annotation: Any) -> bool:
    """Whether pydantic can check values against ``annotation`` (not: a forward reference it cannot
    resolve, a class it has no schema for; RLlib checks those values when it uses them)."""
    try:
        TypeAdapter(annotation, config=ConfigDict(strict=True, arbitrary_types_allowed=True)).validate_python(
            ...
        )
    except ValidationError:
        return True
    except Exception:
        return False
    return True


def key_problems(default: AlgorithmConfig, raw: Mapping[Any, Any], where: str) -> list[str]:
    """Unknown keys and values of the wrong type in ``raw``, a config of ``default``'s algorithm;
    ``evaluation_config`` holds settings of the same algorithm."""
    model = settings_model(type(default))
    names = {attribute(k): k for k in raw if isinstance(k, str)}
    try:
        model.model_validate({attribute(k) if isinstance(k, str) else k: v for k, v in raw.items()})
        problems = []
    except ValidationError as err:
        problems = pydantic_problems(err, where, model, names=names)
    inner = raw.get("evaluation_config")
    if isinstance(inner, dict):
        problems += key_problems(default, inner, f"{where}.evaluation_config")
    return problems


UnitInterval = Annotated[float, Field(ge=0.0, le=1.0)]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def number_or_auto(description: str, number_ok: Callable[[Any], bool]) -> Any:
    """A setting RLlib takes as a number or "auto"; refused values are described as a whole."""

    def check(value: Any) -> Any:
        if value == "auto" or number_ok(value):
            return value
        hint = value_hint(value, integer=description.startswith("an integer"))
        raise ValueError(f'must be {description} or "auto", got {shown(value)}{hint}')

    return Annotated[Any, PlainValidator(check)]


PositiveIntOrAuto = number_or_auto("an integer > 0", lambda v: _is_int(v) and v > 0)
NonNegativeOrAuto = number_or_auto("a number >= 0", lambda v: is_number(v) and math.isfinite(v) and v >= 0)


class CommonRanges(BaseModel):
    """What RLlib accepts without a check but cannot train with, for whichever of these settings an
    algorithm has: discounts and lambdas in [0, 1], sizes and budgets > 0, counts and rates >= 0, and
    the allowed values of RLlib's string settings (a misspelled one would silently mean another)."""

    model_config = ConfigDict(strict=True, allow_inf_nan=False, extra="ignore")

    gamma: UnitInterval | None = None
    lambda_: UnitInterval | None = None
    tau: UnitInterval | None = None
    lr: float | list | None = None
    entropy_coeff: float | list | None = None
    train_batch_size: PositiveInt | None = None
    train_batch_size_per_learner: PositiveInt | None = None
    minibatch_size: PositiveInt | None = None
    num_epochs: PositiveInt | None = None
    num_envs_per_env_runner: PositiveInt | None = None
    rollout_fragment_length: PositiveIntOrAuto = None
    evaluation_duration: PositiveIntOrAuto = None
    num_env_runners: NonNegativeInt | None = None
    num_learners: NonNegativeInt | None = None
    evaluation_num_env_runners: NonNegativeInt | None = None
    evaluation_interval: NonNegativeInt | None = None
    min_sample_timesteps_per_iteration: NonNegativeInt | None = None
    min_train_timesteps_per_iteration: NonNegativeInt | None = None
    seed: NonNegativeInt | None = None
    num_cpus_per_env_runner: NonNegativeFloat | None = None
    num_gpus_per_env_runner: NonNegativeFloat | None = None
    num_cpus_per_learner: NonNegativeOrAuto = None
    num_gpus_per_learner: NonNegativeFloat | None = None
    num_cpus_for_main_process: NonNegativeFloat | None = None
    min_time_s_per_iteration: NonNegativeFloat | None = None
    grad_clip: float | None = Field(None, gt=0.0)
    vf_loss_coeff: NonNegativeFloat | None = None
    kl_coeff: NonNegativeFloat | None = None
    clip_param: NonNegativeFloat | None = None
    vf_clip_param: NonNegativeFloat | None = None
    batch_mode: Literal["truncate_episodes", "complete_episodes"] | None = None
    evaluation_duration_unit: Literal["episodes", "timesteps"] | None = None
    framework_str: Literal["torch"] | None = None
    count_steps_by: Literal["env_steps", "agent_steps"] | None = None
    grad_clip_by: Literal["value", "norm", "global_norm"] | None = None
    observation_filter: Literal["NoFilter", "MeanStdFilter", "ConcurrentMeanStdFilter"] | None = None
    log_level: Literal["DEBUG", "INFO", "WARN", "WARNING", "ERROR"] | None = None

    @field_validator("lr", "entropy_coeff", mode="before")
    @classmethod
    def _number_or_schedule(cls, value: Any) -> Any:
        problem = None if value is None else number_or_schedule_problem(value, positive=False)
        if problem:
            raise ValueError(problem)
        return value


# Where a setting's own value is kept: RLlib's property of the same name derives one when it is unset.
READ_AS = {"train_batch_size_per_learner": "_train_batch_size_per_learner"}


def range_problems(config: AlgorithmConfig, where: str, names: Mapping[str, str]) -> list[str]:
    """:class:`CommonRanges` and the algorithm's own ``settings`` model on ``config``'s values.

    ``names`` maps an attribute to the key the user wrote for it (``lambda_`` -> ``lambda``)."""
    problems = []
    own = getattr(config, "settings", None)
    for model in [CommonRanges, own] if own is not None else [CommonRanges]:
        fields = [f for f in model.model_fields if hasattr(config, f)]
        if model is CommonRanges and own is not None:
            fields = [f for f in fields if f not in own.model_fields]  # the algorithm's own rule wins
        try:
            model(**{f: getattr(config, READ_AS.get(f, f)) for f in fields})
        except ValidationError as err:
            problems += pydantic_problems(err, where, model, names=names)
    return problems


def _is_setting(config: AlgorithmConfig, name: str) -> bool:
    return hasattr(config, name) and not callable(getattr(config, name))


_QUOTED = re.compile(r"`([^`]+)`")
_NAME = re.compile(r"[A-Za-z_]\w*")
_SUPPRESS = "\nTo suppress all validation errors"


def validate_problems(config: AlgorithmConfig, where: str, names: Mapping[str, str]) -> list[str]:
    """Every error of RLlib's ``validate()`` on a copy of ``config``, one line each, under the key it
    names: a key the user wrote if the message names one (in backticks, as RLlib writes them)."""
    probe = config.copy(copy_frozen=False)
    messages: list[str] = []
    probe._value_error = messages.append  # collect each error instead of raising at the first
    quiet = logging.getLogger("ray.rllib")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # RLlib's notices (e.g. "running PPO on the new API stack")
    try:
        probe.validate()
    except Exception as err:  # checks that raise directly (schedules), or stop at a value already bad
        messages.append(str(err))
    finally:
        quiet.setLevel(level)
    lines = []
    for message in dict.fromkeys(messages):
        text = " ".join(message.split(_SUPPRESS)[0].split())
        quoted = [n for q in _QUOTED.findall(text) for n in _NAME.findall(q) if _is_setting(config, n)]
        written = [n for n in quoted if n in names]
        key = names.get(written[0], written[0]) if written else (quoted[0] if quoted else "")
        lines.append(f"{where}{'.' + key if key else ''}: {text}")
    return lines
