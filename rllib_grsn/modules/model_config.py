"""The ``model_config`` keys every spiking RLModule reads, validated in one place.

Users write these under ``config.model_config`` (or the classic ``config.model``) in a
tuned_examples YAML. Validation runs before Ray starts, so a typo in a key or a value outside its
range fails with a message naming the key and what is allowed.

Fields are strict: a size is an integer (``hidden: true`` or ``hidden: 24.0`` is refused, not read as
1 or 24), a flag is ``true``/``false``, and a float field takes a number (an integer too) but no
boolean or string.
"""

from __future__ import annotations

import math
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, field_validator

from rllib_grsn.neurons import CORE_NAMES

CoreName = Literal[CORE_NAMES]  # the neuron registry's names, so a new core needs no edit here


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
    alpha: float = Field(2.0, strict=True, gt=0.0, description="ATan surrogate width (Eq. 6)")
    time_steps: int = Field(
        4, strict=True, gt=0, description="neuron steps per decision of the *_notap cores"
    )
    obs_embed: int = Field(32, strict=True, gt=0, description="observation embedding size")
    action_embed: int = Field(8, strict=True, ge=0, description="previous-action embedding size (0: not fed)")
    reward_embed: int = Field(8, strict=True, ge=0, description="previous-reward embedding size (0: not fed)")
    head_hiddens: list[StrictInt] = Field([128, 128], description="hidden sizes of the decoder MLP heads")
    max_seq_len: int = Field(32, strict=True, gt=0, description="training chunk length (RLlib's max_seq_len)")
    prev_action_reward: bool = Field(
        True, strict=True, description="feed a_{t-1} and r_{t-1} (Ni et al. 2022)"
    )

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
