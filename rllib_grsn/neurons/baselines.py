"""Non-spiking baseline cores with the same interface as the spiking cells.

The paper compares GRSN/LIF under TAP against a single-layer GRU ("Recurrent RL") and a
two-layer MLP (Table 1, following Ni, Eysenbach and Salakhutdinov 2022). Here the MLP core is
the single hidden layer between the shared encoder and decoder, so the network as a whole has
the same depth as the recurrent variants.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rllib_grsn.neurons.lif import _check_size

__all__ = ["GRUCore", "MLPCore"]


class GRUCore(nn.Module):
    """Single-layer GRU with state ``{"h": [B, H]}``.

    Both :meth:`forward` (one step) and :meth:`unroll` call the same ``nn.GRU`` so that acting
    and training share one set of weights and one kernel (the fused cuDNN/MKL sequence path).
    """

    state_keys: tuple[str, ...] = ("h",)
    is_spiking: bool = False

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.input_size = _check_size("input_size", input_size)
        self.hidden_size = _check_size("hidden_size", hidden_size)
        self.output_size = hidden_size
        self.gru = nn.GRU(input_size, hidden_size, batch_first=True)

    def initial_state(
        self,
        batch_size: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> dict[str, Tensor]:
        ref = next(self.parameters())
        device = ref.device if device is None else device
        dtype = ref.dtype if dtype is None else dtype
        return {"h": torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype)}

    def forward(self, x_t: Tensor, state: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """One env step: ``x_t[B, input_size]`` -> ``h_t[B, H]`` and ``{"h": h_t}``."""
        out, _ = self.unroll(x_t.unsqueeze(1), state)
        h = out.squeeze(1)
        return h, {"h": h}

    def unroll(self, x: Tensor, state: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """``x[B, T, input_size]`` -> outputs ``[B, T, H]`` and the final ``{"h": h_T}``."""
        # nn.GRU wants the hidden state as [num_layers, B, H] and contiguous.
        out, h_n = self.gru(x, state["h"].unsqueeze(0).contiguous())
        return out, {"h": h_n.squeeze(0)}


class MLPCore(nn.Module):
    """Memory-less baseline: ``relu(W x + b)`` applied to every step independently."""

    state_keys: tuple[str, ...] = ()
    is_spiking: bool = False

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.input_size = _check_size("input_size", input_size)
        self.hidden_size = _check_size("hidden_size", hidden_size)
        self.output_size = hidden_size
        self.fc = nn.Linear(input_size, hidden_size)

    def initial_state(
        self,
        batch_size: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> dict[str, Tensor]:
        return {}

    def forward(self, x_t: Tensor, state: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        return torch.relu(self.fc(x_t)), {}

    def unroll(self, x: Tensor, state: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        return torch.relu(self.fc(x)), {}
