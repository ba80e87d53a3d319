"""Finding the spiking cells inside any network, and setting their surrogate width (Eq. 6) at runtime.

A surrogate-width schedule must reach every :class:`SpikingCell` of a module, wherever it sits: an
RLModule's backbone, an actor and a critic (and their target copies), a rate-coded ``*_notap``
wrapper. Cells keep ``alpha`` as a plain float with a setter for exactly this.
"""

from __future__ import annotations

from collections.abc import Iterator

from torch import nn

from rllib_grsn.neurons.lif import SpikingCell

__all__ = ["set_surrogate_alpha", "spiking_cells"]


def spiking_cells(module: nn.Module) -> Iterator[SpikingCell]:
    """Every :class:`SpikingCell` in ``module`` (itself included), each once.

    A :class:`~rllib_grsn.neurons.rate_coded.RateCodedCore` is not a cell itself; the cell it wraps
    is found as its child.
    """
    for sub in module.modules():
        if isinstance(sub, SpikingCell):
            yield sub


def set_surrogate_alpha(module: nn.Module, value: float) -> int:
    """Sets the ATan surrogate width ``alpha`` (Eq. 6) of every spiking cell in ``module``.

    Only the backward pass changes (the spikes of Eq. 5 do not depend on ``alpha``), so weights,
    acting and the carried state are untouched. Non-spiking modules (GRU, MLP) have no cell: 0.

    Returns:
        How many cells were set.

    Raises:
        ValueError: ``value`` is not > 0 (checked before any cell changes).
    """
    # Checked up front (the cells' setter checks too) so a bad value cannot leave some cells changed.
    if not float(value) > 0.0:
        raise ValueError(f"alpha must be > 0, got {value!r}")
    cells = list(spiking_cells(module))
    for cell in cells:
        cell.alpha = float(value)
    return len(cells)
