"""Name -> core factory, so configs can pick the recurrent core by a string."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from rllib_grsn.neurons.baselines import GRUCore, MLPCore
from rllib_grsn.neurons.grsn import GRSNCell
from rllib_grsn.neurons.lif import LIFCell
from rllib_grsn.neurons.rate_coded import RateCodedCore

__all__ = ["CORE_NAMES", "SPIKING_CORES", "build_core"]

# factory(input_size, hidden_size, spiking_kwargs, time_steps) -> core.
# spiking_kwargs = {"decay", "threshold", "alpha"}; non-spiking cores ignore it.
_Factory = Callable[[int, int, dict, int], nn.Module]

_FACTORIES: dict[str, _Factory] = {
    "grsn": lambda i, h, sp, ts: GRSNCell(i, h, **sp),
    "lif": lambda i, h, sp, ts: LIFCell(i, h, **sp),
    "gru": lambda i, h, sp, ts: GRUCore(i, h),
    "mlp": lambda i, h, sp, ts: MLPCore(i, h),
    "grsn_notap": lambda i, h, sp, ts: RateCodedCore(GRSNCell(i, h, **sp), time_steps=ts),
    "lif_notap": lambda i, h, sp, ts: RateCodedCore(LIFCell(i, h, **sp), time_steps=ts),
}

CORE_NAMES: tuple[str, ...] = tuple(_FACTORIES)
SPIKING_CORES: frozenset[str] = frozenset({"grsn", "lif", "grsn_notap", "lif_notap"})


def build_core(
    name: str,
    input_size: int,
    hidden_size: int,
    *,
    decay: float = 0.5,
    threshold: float = 1.0,
    alpha: float = 2.0,
    time_steps: int = 4,
) -> nn.Module:
    """Build the core called ``name`` (one of :data:`CORE_NAMES`).

    Args:
        name: ``grsn`` (Eq. 12-14), ``lif`` (Eq. 1-5), ``gru``, ``mlp``, or ``grsn_notap`` /
            ``lif_notap`` (rate-coded "without TAP" baseline, paper Table 3 footnote).
        input_size: features per env step.
        hidden_size: neurons / hidden units ``H``.
        decay: initial (GRSN) or constant (LIF) beta of Eq. 1; spiking cores only.
        threshold: theta of Eq. 4; spiking cores only.
        alpha: surrogate width of Eq. 6; spiking cores only.
        time_steps: window length of the ``*_notap`` cores.

    Raises:
        ValueError: unknown ``name`` (the message lists the allowed names) or a bad
            hyper-parameter.
    """
    try:
        factory = _FACTORIES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown core {name!r}; choose one of: {', '.join(CORE_NAMES)}") from None
    spiking = {"decay": decay, "threshold": threshold, "alpha": alpha}
    return factory(input_size, hidden_size, spiking, time_steps)
