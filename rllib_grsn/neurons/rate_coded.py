"""The paper's "without TAP" baseline: repeated input and rate decoding (Table 3 footnote).

Conventional spiking RL maps ONE decision to a whole window of ``T`` neuron updates: the
observation is presented ``T`` times (T = 4 in the paper) to a freshly reset neuron and the
firing rate over the window is the output. Nothing is remembered between env steps, which is
the temporal mismatch that TAP removes (paper Section 1 and 4.1).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rllib_grsn.neurons.lif import SpikingCell

__all__ = ["RateCodedCore"]


class RateCodedCore(nn.Module):
    """Wrap a :class:`SpikingCell` so each decision is a rate-coded window of ``time_steps``.

    Output per decision: ``mean_k o_k`` over ``k = 1..time_steps`` updates of ``cell`` started
    from ``cell.initial_state`` and fed the same input every update; values are therefore
    multiples of ``1 / time_steps`` in ``[0, 1]``. No state is carried between env steps.

    Args:
        cell: the spiking neuron (e.g. :class:`LIFCell` or :class:`GRSNCell`).
        time_steps: window length ``T`` of the repeated input (paper: 4).
    """

    state_keys: tuple[str, ...] = ()
    is_spiking: bool = True

    def __init__(self, cell: SpikingCell, time_steps: int = 4) -> None:
        super().__init__()
        if isinstance(time_steps, bool) or not isinstance(time_steps, int) or time_steps < 1:
            raise ValueError(f"time_steps must be an int >= 1, got {time_steps!r}")
        self.cell = cell
        self.time_steps = time_steps
        self.input_size = cell.input_size
        self.hidden_size = cell.hidden_size
        self.output_size = cell.output_size

    # Delegated so a surrogate-width schedule can treat every spiking core alike.
    @property
    def alpha(self) -> float:
        return self.cell.alpha

    @alpha.setter
    def alpha(self, value: float) -> None:
        self.cell.alpha = value

    @property
    def threshold(self) -> float:
        return self.cell.threshold

    @threshold.setter
    def threshold(self, value: float) -> None:
        self.cell.threshold = value

    @property
    def beta(self) -> Tensor:
        return self.cell.beta

    def initial_state(
        self,
        batch_size: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> dict[str, Tensor]:
        return {}

    def _rate(self, x: Tensor) -> Tensor:
        """Firing rate for independent decisions ``x[N, input_size]`` -> ``[N, H]``."""
        # The input is identical at every update, so project it once and only repeat the
        # element-wise neuron dynamics.
        proj = self.cell.project(x)
        window = proj.unsqueeze(1).expand(proj.shape[0], self.time_steps, proj.shape[-1])
        fresh = self.cell.initial_state(x.shape[0], device=x.device, dtype=proj.dtype)
        spikes, _ = self.cell.unroll_projected(window, fresh)
        return spikes.mean(dim=1)

    def forward(self, x_t: Tensor, state: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """One decision: ``x_t[B, input_size]`` -> firing rates ``[B, H]``; state stays ``{}``."""
        return self._rate(x_t), {}

    def unroll(self, x: Tensor, state: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """``T`` independent decisions ``x[B, T, input_size]`` -> rates ``[B, T, H]``."""
        batch, steps = x.shape[0], x.shape[1]
        rates = self._rate(x.reshape(batch * steps, x.shape[-1]))
        return rates.reshape(batch, steps, rates.shape[-1]), {}

    def extra_repr(self) -> str:
        return f"time_steps={self.time_steps}"
