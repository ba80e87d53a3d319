"""Leaky integrate-and-fire cell under the Temporal Alignment Paradigm (paper Eq. 1-5).

Under TAP one call of :meth:`SpikingCell.forward` is ONE neuron update per environment step,
and the neuron state ``{"u": u_hat_t, "c": c_t}`` is handed back to the caller (RLlib) so it
can be carried to the next env step instead of being reset inside the cell.

This module also holds :class:`SpikingCell`, the base class shared by the LIF and GRSN cells:
it owns the interface (initial state, one step, unroll) while subclasses only define the
input projection and the element-wise neuron dynamics.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor, nn

from rllib_grsn.neurons.kernels import can_fuse, fused_recurrence
from rllib_grsn.neurons.surrogate import atan_spike

__all__ = ["LIFCell", "SpikingCell"]

# Eq. 3 reset potential u_r; the paper fixes it at 0.
U_RESET = 0.0


def _check_open_unit(name: str, value: float) -> float:
    # Written as ``not (0 < v < 1)`` so that NaN is rejected too.
    if not 0.0 < float(value) < 1.0:
        raise ValueError(f"{name} must lie strictly inside (0, 1), got {value!r}")
    return float(value)


def _check_positive(name: str, value: float) -> float:
    if not float(value) > 0.0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return float(value)


def _check_size(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


class SpikingCell(nn.Module):
    """Base class of single-layer spiking cells updated once per env step (TAP).

    Subclasses implement two hooks:

    * :meth:`project` - every term that depends on the input only (the synaptic FC layers).
      It has no recurrent dependency, so :meth:`unroll` evaluates it for all ``T`` steps in one
      matmul over ``B*T`` rows before the time loop.
    * :meth:`dynamics` - the element-wise neuron update for one step (current, membrane, spike,
      reset). Both :meth:`forward` and :meth:`unroll` go through it, so stepping and unrolling
      cannot drift apart.

    State is ``{"u": u_hat_t, "c": c_t}``: the membrane potential *after* reset and the input
    current, both ``[B, H]``.
    """

    state_keys: tuple[str, ...] = ("u", "c")
    is_spiking: bool = True
    # Which fused kernel implements this class's `dynamics` ("lif" | "grsn"); None: only the loop.
    fused_kind: str | None = None

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        *,
        decay: float,
        threshold: float,
        alpha: float,
    ) -> None:
        super().__init__()
        self.input_size = _check_size("input_size", input_size)
        self.hidden_size = _check_size("hidden_size", hidden_size)
        self.output_size = hidden_size
        self.decay = _check_open_unit("decay", decay)
        self.threshold = threshold
        self.alpha = alpha

    # ``alpha`` and ``threshold`` stay plain Python floats (not buffers) so a schedule can
    # reassign them mid-training; the setters only refuse values that would silently break
    # learning (alpha <= 0 zeroes every surrogate gradient).
    @property
    def alpha(self) -> float:
        """Surrogate-gradient width of Eq. 6."""
        return self._alpha

    @alpha.setter
    def alpha(self, value: float) -> None:
        self._alpha = _check_positive("alpha", value)

    @property
    def threshold(self) -> float:
        """Firing threshold theta of Eq. 4."""
        return self._threshold

    @threshold.setter
    def threshold(self, value: float) -> None:
        self._threshold = _check_positive("threshold", value)

    @property
    def beta(self) -> Tensor:
        """Membrane decay beta of Eq. 1, broadcastable to ``[H]``."""
        raise NotImplementedError

    def project_parts(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """Input-only part of the update for ``x[N, input_size]``: ``(drive, forget)``, each ``[N, H]``.

        ``drive`` is what enters the current (LIF: ``c_t`` itself, Eq. 2; GRSN: J(x), Eq. 14),
        ``forget`` GRSN's forget gate F(x) (``None`` for LIF). The fused kernels read these.
        """
        raise NotImplementedError

    def project(self, x: Tensor) -> Tensor:
        """The same as one ``[N, P]`` tensor, the form :meth:`dynamics` reads: ``drive`` (LIF) or
        ``[F(x) | J(x)]`` (GRSN, ``P = 2H``)."""
        drive, forget = self.project_parts(x)
        return drive if forget is None else torch.cat((forget, drive), dim=-1)

    def dynamics(self, proj_t: Tensor, u: Tensor, c: Tensor, beta: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One element-wise neuron update; returns ``(o_t, u_hat_t, c_t)``."""
        raise NotImplementedError

    def initial_state(
        self,
        batch_size: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> dict[str, Tensor]:
        """Zero membrane and current (Algorithm 1, line 4), used at every episode start."""
        ref = next(self.parameters())
        device = ref.device if device is None else device
        dtype = ref.dtype if dtype is None else dtype
        return {
            key: torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype)
            for key in self.state_keys
        }

    def forward(self, x_t: Tensor, state: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """One env step: ``x_t[B, input_size]`` -> spikes ``o_t[B, H]`` and the new state."""
        o, u, c = self.dynamics(self.project(x_t), state["u"], state["c"], self.beta)
        return o, {"u": u, "c": c}

    def unroll(self, x: Tensor, state: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """Run ``T`` env steps: ``x[B, T, input_size]`` -> spikes ``[B, T, H]`` and final state.

        Equal to ``T`` chained :meth:`forward` calls: the same spikes, and the same state and
        gradients up to float rounding.
        """
        batch, steps = x.shape[0], x.shape[1]
        flat = x.reshape(batch * steps, x.shape[-1])
        if steps > 0 and self._fused_kind() is not None and can_fuse(flat):
            # The parts go to the kernel as they are: no [B*T, 2H] concatenation to build.
            drive, forget = (
                None if part is None else part.reshape(batch, steps, self.hidden_size)
                for part in self.project_parts(flat)
            )
            return self._fused_unroll(drive, forget, state)
        proj = self.project(flat)
        return self.reference_unroll_projected(proj.reshape(batch, steps, proj.shape[-1]), state)

    def unroll_projected(self, proj: Tensor, state: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """Time loop over already-projected inputs ``proj[B, T, P]`` (see :meth:`project`).

        Runs the fused kernel of :mod:`rllib_grsn.neurons.kernels` (one pass forward, one backward)
        where it can, else :meth:`reference_unroll_projected`. Exposed so wrappers that feed the
        same input repeatedly (rate coding) project it once.
        """
        if proj.shape[1] > 0 and self._fused_kind() is not None and can_fuse(proj):
            if self.fused_kind == "grsn":  # [F | J] views, read in place by the kernel
                forget, drive = proj.split(self.hidden_size, dim=-1)
                return self._fused_unroll(drive, forget, state)
            return self._fused_unroll(proj, None, state)
        return self.reference_unroll_projected(proj, state)

    def _fused_unroll(
        self, drive: Tensor, forget: Tensor | None, state: dict[str, Tensor]
    ) -> tuple[Tensor, dict[str, Tensor]]:
        spikes, u, c = fused_recurrence(
            self.fused_kind, drive, forget, state["u"], state["c"], self.beta,
            threshold=self.threshold, alpha=self.alpha,
        )  # fmt: skip
        return spikes, {"u": u, "c": c}

    def _fused_kind(self) -> str | None:
        return _class_fused_kind(type(self))

    def reference_unroll_projected(
        self, proj: Tensor, state: dict[str, Tensor]
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Step-by-step loop of :meth:`dynamics`: the fused kernels' oracle and fallback."""
        u, c = state["u"], state["c"]
        if proj.shape[1] == 0:
            return proj.new_zeros(proj.shape[0], 0, self.hidden_size), {"u": u, "c": c}
        # beta is loop-invariant; for GRSN it costs a sigmoid, so evaluate it once.
        beta = self.beta
        spikes = []
        for t in range(proj.shape[1]):
            o, u, c = self.dynamics(proj[:, t], u, c, beta)
            spikes.append(o)
        return torch.stack(spikes, dim=1), {"u": u, "c": c}

    def extra_repr(self) -> str:
        return (
            f"input_size={self.input_size}, hidden_size={self.hidden_size}, "
            f"decay={self.decay}, threshold={self.threshold}, alpha={self.alpha}"
        )


@functools.cache
def _class_fused_kind(cls: type[SpikingCell]) -> str | None:
    """The kernel for ``cls``, or None if it changed what the kernel computes: a subclass that
    redefines ``dynamics`` (or ``project``, which the fused path bypasses for ``project_parts``)
    must not silently get its parent's kernel."""
    owner = next((k for k in cls.__mro__ if "fused_kind" in vars(k)), SpikingCell)
    if cls.dynamics is not owner.dynamics or cls.project is not SpikingCell.project:
        return None
    return cls.fused_kind


class LIFCell(SpikingCell):
    """LIF neuron with a constant decay and hard reset (paper Eq. 1-5).

    * Eq. 2: ``c_t = W x_t + b`` (``self.fc``); no recurrence on the current.
    * Eq. 1: ``u_t = beta * u_hat_{t-1} + (1 - beta) * c_t``.
    * Eq. 4-5: ``o_t = Θ(u_t - theta)`` with Θ(0) = 1, ATan surrogate gradient (Eq. 6).
    * Eq. 3: hard reset ``u_hat_t = u_r * o_t + (1 - o_t) * u_t`` with ``u_r = 0``.

    The reset is not detached: the gradient also flows through ``o_t`` into ``u_hat_t``.
    ``c_t`` is carried in the state only to share the interface with GRSN; LIF never reads it.

    Args:
        input_size: features of ``x_t``.
        hidden_size: number of neurons ``H``.
        decay: constant beta of Eq. 1, strictly inside (0, 1).
        threshold: theta of Eq. 4, > 0.
        alpha: surrogate width of Eq. 6, > 0.
    """

    fused_kind = "lif"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        *,
        decay: float = 0.5,
        threshold: float = 1.0,
        alpha: float = 2.0,
    ) -> None:
        super().__init__(input_size, hidden_size, decay=decay, threshold=threshold, alpha=alpha)
        self.fc = nn.Linear(input_size, hidden_size)

    @property
    def beta(self) -> Tensor:
        """Constant decay of Eq. 1 as a 0-dim tensor on the cell's device and dtype."""
        weight = self.fc.weight
        return torch.tensor(self.decay, dtype=weight.dtype, device=weight.device)

    def project_parts(self, x: Tensor) -> tuple[Tensor, None]:
        """Eq. 2: the input current ``c_t`` itself; LIF has no forget gate."""
        return self.fc(x), None

    def dynamics(self, proj_t: Tensor, u: Tensor, c: Tensor, beta: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        c = proj_t
        u = torch.lerp(c, u, beta)  # Eq. 1: beta * u_hat_{t-1} + (1 - beta) * c_t (one op, see GRSN)
        o = atan_spike(u - self.threshold, self.alpha)  # Eq. 4-6
        u_hat = U_RESET * o + (1.0 - o) * u  # Eq. 3
        return o, u_hat, c
