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


def _must(problem: Callable[[Any], str | None]) -> Any:
    """A type checked by ``problem`` (a value -> what is wrong with it, or None)."""

    def check(value: Any) -> Any:
        if (message := problem(value)) is not None:
            raise ValueError(message)
        return value

    return Annotated[Any, PlainValidator(check)]


def _or_auto(what: str, ok: Callable[[Any], bool]) -> Any:
    """A setting RLlib takes as a number or "auto"; a refused value is described as a whole."""

    def problem(value: Any) -> str | None:
        if value == "auto" or ok(value):
            return None
        return f'must be {what} or "auto", got {shown(value)}{value_hint(value, integer="integer" in what)}'

    return _must(problem)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_finite(value: Any) -> bool:
    return is_number(value) and math.isfinite(value)


NumberOrAuto = _or_auto("a number", _is_finite)
PositiveIntOrAuto = _or_auto("an integer > 0", lambda v: _is_int(v) and v > 0)
NonNegativeOrAuto = _or_auto("a number >= 0", lambda v: _is_finite(v) and v >= 0)
NumberOrSchedule = _must(lambda v: number_or_schedule_problem(v, positive=False))

# What RLlib accepts without a check but cannot train with, for whichever of these settings an
# algorithm has: settings -> what they must be. A misspelled value of a string setting would
# silently mean another.
_RANGES: dict[str, Any] = {
    **dict.fromkeys("gamma lambda_ tau".split(), UnitInterval),
    **dict.fromkeys("lr entropy_coeff".split(), NumberOrSchedule),
    **dict.fromkeys(
        "train_batch_size train_batch_size_per_learner minibatch_size num_epochs "
        "num_envs_per_env_runner".split(),
        PositiveInt,
    ),
    **dict.fromkeys("rollout_fragment_length evaluation_duration".split(), PositiveIntOrAuto),
    **dict.fromkeys(
        "num_env_runners num_learners evaluation_num_env_runners evaluation_interval seed "
        "min_sample_timesteps_per_iteration min_train_timesteps_per_iteration".split(),
        NonNegativeInt,
    ),
    **dict.fromkeys(
        "num_cpus_per_env_runner num_gpus_per_env_runner num_gpus_per_learner num_cpus_for_main_process "
        "min_time_s_per_iteration vf_loss_coeff kl_coeff clip_param vf_clip_param".split(),
        NonNegativeFloat,
    ),
    "num_cpus_per_learner": NonNegativeOrAuto,
    "grad_clip": Annotated[float, Field(gt=0.0)],
    "batch_mode": Literal["truncate_episodes", "complete_episodes"],
    "evaluation_duration_unit": Literal["episodes", "timesteps"],
    "framework_str": Literal["torch"],
    "count_steps_by": Literal["env_steps", "agent_steps"],
    "grad_clip_by": Literal["value", "norm", "global_norm"],
    "observation_filter": Literal["NoFilter", "MeanStdFilter", "ConcurrentMeanStdFilter"],
    "log_level": Literal["DEBUG", "INFO", "WARN", "WARNING", "ERROR"],
}
CommonRanges = create_model(
    "CommonRanges",
    __config__=ConfigDict(strict=True, allow_inf_nan=False, extra="ignore"),
    **{name: (kind | None, None) for name, kind in _RANGES.items()},
)
# Where a setting's own value is kept: RLlib's property of the same name derives one when it is unset.
READ_AS = {"train_batch_size_per_learner": "_train_batch_size_per_learner"}


def config_problems(
    config: AlgorithmConfig, where: str = "", names: Mapping[str, str] | None = None
) -> list[str]:
    """Every problem of a built config, in order, each stage once the previous found none:
    :data:`_RANGES` and the algorithm's own ``settings`` model, its ``cross_field_problems``, then
    RLlib's ``validate()`` (and the ranges of the evaluation config). ``names`` maps an attribute to
    the key the user wrote for it (``lambda_`` -> ``lambda``)."""
    names = names or {}
    problems = range_problems(config, where, names)
    if not problems and hasattr(config, "cross_field_problems"):
        problems = [".".join(filter(None, (where, p))) for p in config.cross_field_problems()]
    if not problems:
        problems = validate_problems(config, where, names)
        if config.evaluation_config:
            inner = ".".join(filter(None, (where, "evaluation_config")))
            problems += range_problems(config.get_evaluation_config_object(), inner, names)
    return problems


def range_problems(config: AlgorithmConfig, where: str, names: Mapping[str, str]) -> list[str]:
    """:data:`_RANGES` and the algorithm's own ``settings`` model (which wins where both name a
    setting) on ``config``'s values."""
    problems = []
    own = getattr(config, "settings", None)
    for model in [CommonRanges, own] if own is not None else [CommonRanges]:
        fields = [f for f in model.model_fields if hasattr(config, f)]
        if model is CommonRanges and own is not None:
            fields = [f for f in fields if f not in own.model_fields]
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
