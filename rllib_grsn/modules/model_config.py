"""The ``model_config`` keys every spiking RLModule reads, validated in one place.

Users write these under ``config.model_config`` (or the classic ``config.model``) in a
tuned_examples YAML. Validation runs before Ray starts, so a typo in a key or a value outside its
range fails with a message naming the key and what is allowed.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from rllib_grsn.neurons import CORE_NAMES

CoreName = Literal["grsn", "lif", "gru", "mlp", "grsn_notap", "lif_notap"]
assert set(CoreName.__args__) == set(CORE_NAMES), "CoreName must list the neuron registry's cores"


class SpikingModelConfig(BaseModel):
    """Architecture of a spiking recurrent agent (paper Algorithm 1: encoder -> one core -> decoder).

    The defaults are the pomdp-baselines settings the paper follows: hidden 128, embeddings
    o32/a8/r8, heads [128, 128].
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, validate_assignment=True)

    core: CoreName = Field("grsn", description="neuron core: " + ", ".join(CORE_NAMES))
    hidden: int = Field(128, gt=0, description="neurons in the core")
    decay: float = Field(0.5, gt=0.0, lt=1.0, description="membrane decay beta (GRSN: its initial value)")
    threshold: float = Field(1.0, gt=0.0, description="firing threshold theta")
    alpha: float = Field(2.0, gt=0.0, description="ATan surrogate width (Eq. 6)")
    time_steps: int = Field(4, gt=0, description="neuron steps per decision of the *_notap cores")
    obs_embed: int = Field(32, gt=0, description="observation embedding size")
    action_embed: int = Field(8, ge=0, description="previous-action embedding size (0: not fed)")
    reward_embed: int = Field(8, ge=0, description="previous-reward embedding size (0: not fed)")
    head_hiddens: list[int] = Field([128, 128], description="hidden sizes of the decoder MLP heads")
    max_seq_len: int = Field(32, gt=0, description="training chunk length (RLlib's max_seq_len)")
    prev_action_reward: bool = Field(True, description="feed a_{t-1} and r_{t-1} (Ni et al. 2022)")

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
    return f"{where}.{key}: {error['msg']} (got {error.get('input')!r})"
