"""Per-decision synaptic-operation counter for torch networks (paper Section 5.4, Eq. 15-16).

:class:`OpCounter` instruments a network with forward hooks while it runs on real inputs and
counts, for every row of the batch (one row = one decision: one agent at one env step), the
operations each layer performed:

* **Eq. 15 (spike-driven accumulates, 0.9 pJ each).** An ``nn.Linear`` whose input columns carry the
  output of a spiking core does one accumulate per emitted spike and outgoing connection:
  ``SOP = (number of spikes in its input) x out_features``, measured from the actual spikes of
  this decision, not from the shapes. The layer's bias is not counted for these columns (Eq. 15
  sums spikes x fan-out only).
* **Eq. 16 (multiply-accumulates, 4.6 pJ each).** Every other ``nn.Linear`` (embeddings, encoders,
  the GRSN gates F and J of Eq. 14, which read the layer input, decoders fed by non-spiking
  cores, mixers and hypernetworks) costs ``in_features x out_features`` MACs per row, plus
  ``out_features`` for the bias add when ``count_bias`` (default on).
* **Recurrent ANN cores** (``nn.GRU``/``nn.LSTM``/``nn.RNN`` and their ``*Cell`` forms; our
  :class:`~rllib_grsn.neurons.GRUCore` wraps an ``nn.GRU``) cost, per row and time step,
  ``gates x (in x h + h x h)`` MACs (GRU: 3 gates), plus ``2 x gates x h`` bias adds when
  ``count_bias`` (input and recurrent biases).
* **QMIX mixing products.** :class:`~rllib_grsn.mixers.QMixer` mixes the agent values with two
  batched matrix products (no ``nn.Linear``): ``n_agents x embed + embed`` MACs per team step,
  counted when ``count_mixing`` (default on); its hypernetworks are ordinary Linear layers.

What is *not* a synaptic operation: element-wise neuron updates (leak ``beta * u``, the GRSN
current update ``F * c + (1 - F) * J`` of Eq. 13, threshold comparison, reset) and activation
functions. The paper's Eq. 15/16 count connections between neurons, and its Table 4 numbers are
reproduced without them (see :mod:`rllib_grsn.energy.table`). GRSN has no weight matrix on its
recurrent current or on its own spikes (Eq. 13 is element-wise), so in our cores the only
"non-spiking connections inside spiking neurons" are the gates' ``nn.Linear`` layers, charged as
MACs at 4.6 pJ, as the paper does. A future cell with a recurrent weight matrix would be counted
by the same rule (a Linear whose input is not a spike tensor is a MAC layer).

How spike inputs are recognised (structural rule, checked on the data):

* A spiking core is an ``nn.Module`` with ``is_spiking = True`` (the attribute every core in
  :mod:`rllib_grsn.neurons` declares). The counter wraps the outermost such modules' ``forward`` and
  ``unroll`` to record their output of the current decision.
* A Linear layer reads spikes if it is named in ``spike_inputs`` (columns ``[start, stop)`` of its
  input are the named core's output; the rest of its input is dense), or if its input tensor *is*
  the tensor a spiking core just returned (identity, e.g. ``head(core_out)``). One-hot inputs
  (agent ids, last actions) are therefore dense, although their values are 0/1.
* With ``check_spikes`` (default on) the counter asserts that every spiking core's output holds
  spikes (0/1, or multiples of ``1/T`` for a rate-coded core) and that the declared columns equal
  the named core's output of this decision; a wrong declaration raises :class:`SpikeCheckError`.

Rate-coded cores (``*_notap``, :class:`~rllib_grsn.neurons.RateCodedCore`) output the firing rate of
a ``T``-update window; the decoder then does ``rate x T`` accumulates per neuron (Eq. 15 summed
over the window's ``t``). Their gates run once per decision in our code (the input is identical
at every update), and are counted once, as executed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from rllib_grsn.mixers.qmix import QMixer
from rllib_grsn.neurons.rate_coded import RateCodedCore

__all__ = [
    "MAC_PJ",
    "SOP_PJ",
    "DecisionCounts",
    "Group",
    "Kind",
    "LayerCount",
    "OpCounter",
    "SpikeCheckError",
    "SpikeInput",
    "is_spiking_core",
    "recurrent_step_macs",
    "spike_steps",
]

# Energy per operation (paper Section 5.4, after Han et al. 2015, 32-bit float).
SOP_PJ = 0.9  # spike-driven accumulate (Eq. 15)
MAC_PJ = 4.6  # multiply-accumulate (Eq. 16)

Kind = Literal["sop_spiking", "mac_dense"]
# Table 4 column of a count: "mlp" dense layers (incl. GRSN gates), "rnn" recurrent ANN cores,
# "snn" spike-driven accumulates.
Group = Literal["mlp", "rnn", "snn"]

_RNN_GATES = {"GRU": 3, "LSTM": 4, "RNN_TANH": 1, "RNN_RELU": 1}
_CELL_GATES: dict[type[nn.Module], int] = {nn.GRUCell: 3, nn.LSTMCell: 4, nn.RNNCell: 1}
_WRAPPED_METHODS = ("forward", "unroll")


class SpikeCheckError(ValueError):
    """A tensor declared (or detected) as spikes does not hold spikes of the core it names."""


@dataclass(frozen=True)
class SpikeInput:
    """Columns ``[start, stop)`` of a Linear layer's input that carry spiking core ``core``'s output.

    ``core`` is the core's module path relative to the counted root module (e.g. ``"core"`` or
    ``"backbone.core"``); ``stop=None`` means up to the layer's ``in_features``. The remaining
    columns are dense (Eq. 16), e.g. the observation shortcut concatenated after the spikes.
    """

    core: str
    start: int = 0
    stop: int | None = None


@dataclass
class LayerCount:
    """Counts of one reported layer for the rows of one decision batch.

    ``ops[r]`` is the number of operations of row ``r``; for spike inputs ``events[r]`` is the
    number of spikes the layer read and ``slots`` the number of (neuron, update) pairs that could
    have spiked per row, so ``events / slots`` is its input firing rate.
    """

    kind: Kind
    group: Group
    ops: Tensor
    events: Tensor | None = None
    slots: int = 0


@dataclass
class DecisionCounts:
    """Everything counted during one decision batch of ``rows`` rows.

    ``layers`` maps a reported layer name (module path, with ``[spikes]``/``[dense]`` when one
    Linear reads both) to its :class:`LayerCount`; ``cores`` maps a spiking core's path to
    ``(spike events per row, slots per row)``.
    """

    rows: int
    layers: dict[str, LayerCount]
    cores: dict[str, tuple[Tensor, int]]


def is_spiking_core(module: nn.Module) -> bool:
    """True for a module that emits spikes (``is_spiking = True``, as declared by the neuron cores)."""
    return bool(getattr(module, "is_spiking", False))


def spike_steps(core: nn.Module) -> int:
    """Neuron updates per decision behind one output value: ``T`` for a rate-coded core, else 1."""
    return int(core.time_steps) if isinstance(core, RateCodedCore) else 1


def recurrent_step_macs(module: nn.Module, *, count_bias: bool = True) -> int:
    """Eq. 16 MACs of one time step of one sample of a recurrent ANN layer.

    ``gates x (in x h + h x h)`` per layer and direction (GRU: 3 gates, LSTM: 4, Elman RNN: 1),
    plus ``2 x gates x h`` bias adds (input and recurrent biases) when ``count_bias``.
    """
    if isinstance(module, nn.RNNBase):
        if getattr(module, "proj_size", 0):
            raise NotImplementedError("LSTM with proj_size is not supported by the energy counter")
        gates = _RNN_GATES[module.mode]
        hidden = module.hidden_size
        dirs = 2 if module.bidirectional else 1
        total = 0
        for layer in range(module.num_layers):
            in_size = module.input_size if layer == 0 else hidden * dirs
            per_dir = gates * (in_size * hidden + hidden * hidden)
            if module.bias and count_bias:
                per_dir += 2 * gates * hidden
            total += dirs * per_dir
        return total
    for cell_type, gates in _CELL_GATES.items():
        if isinstance(module, cell_type):
            ops = gates * (module.input_size * module.hidden_size + module.hidden_size**2)
            if module.bias and count_bias:
                ops += 2 * gates * module.hidden_size
            return ops
    raise TypeError(f"not a recurrent layer: {type(module).__name__}")


def _spike_slots_check(name: str, values: Tensor, steps: int) -> None:
    """Raise unless ``values`` are spikes: 0/1, or multiples of ``1/steps`` in [0, 1] (rate-coded)."""
    if values.numel() == 0:
        return
    scaled = values.detach() * steps
    ok = bool(((scaled - scaled.round()).abs() <= 1e-4).all()) and bool(((values >= 0) & (values <= 1)).all())
    if not ok:
        what = "0/1 spikes" if steps == 1 else f"firing rates in multiples of 1/{steps}"
        raise SpikeCheckError(f"{name}: expected {what}, got values such as {values.flatten()[:6].tolist()}")


class OpCounter:
    """Counts Eq. 15/16 operations per row while ``root`` runs (see the module docstring for the rules).

    Use as a context manager around one decision batch, then :meth:`take` the counts::

        with OpCounter(net) as counter:
            net(x_t, state)
            counts = counter.take(rows=x_t.shape[0])

    Args:
        root: the network; reported names are module paths relative to it.
        spike_inputs: Linear layer path -> :class:`SpikeInput`, for layers whose input
            concatenates a spiking core's output with other features (the identity rule cannot
            see through ``torch.cat``).
        count_bias: count one MAC per output element for the bias of dense Linear layers and of
            recurrent ANN cores (the paper's Table 4 numbers include them: its GRU column 24.96K
            is ``3 x (64 x 64 + 64 x 64) + 6 x 64`` for a 64-unit GRU). Never counted on spike
            columns.
        count_mixing: count the QMIX mixer's two batched mixing products (the paper's mixer
            column counts its Linear layers only).
        check_spikes: assert that spike tensors hold spikes and match the declared core.
    """

    def __init__(
        self,
        root: nn.Module,
        *,
        spike_inputs: Mapping[str, SpikeInput] | None = None,
        count_bias: bool = True,
        count_mixing: bool = True,
        check_spikes: bool = True,
    ) -> None:
        self.root = root
        self.spike_inputs = dict(spike_inputs or {})
        self.count_bias = count_bias
        self.count_mixing = count_mixing
        self.check_spikes = check_spikes
        modules = dict(root.named_modules())
        for layer in self.spike_inputs:
            if not isinstance(modules.get(layer), nn.Linear):
                raise ValueError(f"spike_inputs: {layer!r} is not an nn.Linear of {type(root).__name__}")
        self._cores = self._outermost_spiking_cores(root)
        for layer, spec in self.spike_inputs.items():
            if spec.core not in self._cores:
                raise ValueError(
                    f"spike_inputs[{layer!r}]: {spec.core!r} is not a spiking core of "
                    f"{type(root).__name__} (its spiking cores: {sorted(self._cores)})"
                )
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._patched: list[tuple[nn.Module, str]] = []
        self._depth: dict[str, int] = {}
        self._last_output: dict[str, Tensor] = {}
        self._layers: dict[str, LayerCount] = {}
        self._core_counts: dict[str, tuple[Tensor, int]] = {}

    # ------------------------------------------------------------------ set-up

    @staticmethod
    def _outermost_spiking_cores(root: nn.Module) -> dict[str, nn.Module]:
        cores: dict[str, nn.Module] = {}
        for name, module in root.named_modules():
            inside = any(name.startswith(f"{outer}.") or outer == "" for outer in cores)
            if is_spiking_core(module) and not inside:
                cores[name] = module
        return cores

    @property
    def spiking_cores(self) -> dict[str, nn.Module]:
        """The spiking cores whose outputs are recorded, by path."""
        return dict(self._cores)

    def __enter__(self) -> OpCounter:
        self.attach()
        return self

    def __exit__(self, *exc: object) -> None:
        self.detach()

    def attach(self) -> None:
        """Install the hooks (idempotent)."""
        if self._handles or self._patched:
            return
        for name, module in self.root.named_modules():
            label = name or type(module).__name__
            if isinstance(module, nn.Linear):
                self._handles.append(module.register_forward_hook(self._linear_hook(name, label)))
            elif isinstance(module, nn.RNNBase | nn.RNNCellBase):
                self._handles.append(module.register_forward_hook(self._recurrent_hook(label)))
            elif isinstance(module, QMixer) and self.count_mixing:
                mixing = f"{name}.mixing" if name else "mixing"
                self._handles.append(module.register_forward_hook(self._mixing_hook(mixing)))
        for name, core in self._cores.items():
            self._depth[name] = 0
            for method in _WRAPPED_METHODS:
                if callable(getattr(core, method, None)) and method not in vars(core):
                    setattr(core, method, self._wrap_core(name, core, getattr(core, method)))
                    self._patched.append((core, method))

    def detach(self) -> None:
        """Remove the hooks and restore the cores' methods."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        for core, method in self._patched:
            delattr(core, method)
        self._patched.clear()

    # ------------------------------------------------------------------ results

    def take(self, rows: int | None = None) -> DecisionCounts:
        """Counts since the last :meth:`take`, then reset.

        Args:
            rows: the number of decisions in the batch; every counted layer must have seen
                exactly this many rows (otherwise the per-decision sums would mix up rows).
                ``None``: inferred (all layers must agree).
        """
        sizes = {c.ops.shape[0] for c in self._layers.values()}
        sizes |= {events.shape[0] for events, _ in self._core_counts.values()}
        if rows is None:
            if len(sizes) > 1:
                raise ValueError(f"layers saw different numbers of rows {sorted(sizes)}; pass rows=")
            rows = sizes.pop() if sizes else 0
        elif sizes - {rows}:
            bad = [n for n, c in self._layers.items() if c.ops.shape[0] != rows]
            raise ValueError(
                f"expected {rows} rows (decisions) per call, but {bad or 'a spiking core'} saw "
                f"{sorted(sizes - {rows})}: run one time step of the batch per decision"
            )
        counts = DecisionCounts(rows=rows, layers=self._layers, cores=self._core_counts)
        self._layers, self._core_counts, self._last_output = {}, {}, {}
        return counts

    # ------------------------------------------------------------------ hooks

    def _add(
        self, name: str, kind: Kind, group: Group, ops: Tensor, events: Tensor | None = None, slots: int = 0
    ) -> None:
        ops = ops.detach().to("cpu", torch.float64)
        events = None if events is None else events.detach().to("cpu", torch.float64)
        prev = self._layers.get(name)
        if prev is None:
            self._layers[name] = LayerCount(kind, group, ops, events, slots)
            return
        if prev.ops.shape != ops.shape:
            raise ValueError(
                f"{name} ran twice in one decision with {prev.ops.shape[0]} and {ops.shape[0]} rows"
            )
        prev.ops = prev.ops + ops
        if events is not None:
            prev.events = events if prev.events is None else prev.events + events
            prev.slots += slots

    def _spike_spec(self, name: str, x: Tensor, in_features: int) -> tuple[str, int, int] | None:
        spec = self.spike_inputs.get(name)
        if spec is not None:
            stop = in_features if spec.stop is None else spec.stop
            if not 0 <= spec.start < stop <= in_features:
                raise ValueError(
                    f"spike_inputs[{name!r}]: bad columns [{spec.start}, {stop}) for "
                    f"in_features={in_features}"
                )
            return spec.core, spec.start, stop
        for core, out in self._last_output.items():
            if x is out:
                return core, 0, in_features
        return None

    def _linear_hook(self, name: str, label: str) -> Callable[..., None]:
        def hook(module: nn.Linear, args: tuple[Any, ...], output: Tensor) -> None:
            x = args[0]
            in_f, out_f = module.in_features, module.out_features
            rows = x.reshape(-1, in_f)
            n = rows.shape[0]
            bias = out_f if (module.bias is not None and self.count_bias) else 0
            spec = self._spike_spec(name, x, in_f)
            if spec is None:  # Eq. 16: f_in x N (+ bias adds)
                self._add(label, "mac_dense", "mlp", torch.full((n,), float(in_f * out_f + bias)))
                return
            core, start, stop = spec
            spikes = rows[:, start:stop]
            steps = spike_steps(self._cores[core])
            if self.check_spikes:
                _spike_slots_check(f"{label} input columns [{start}, {stop})", spikes, steps)
                recorded = self._last_output.get(core)
                if recorded is None:
                    raise SpikeCheckError(
                        f"{label}: its spike input names core {core!r}, which did not "
                        "run before it in this decision"
                    )
                recorded = recorded.reshape(-1, recorded.shape[-1])
                if recorded.shape != spikes.shape or not torch.equal(recorded, spikes):
                    raise SpikeCheckError(
                        f"{label}: input columns [{start}, {stop}) are not the output of core {core!r}"
                    )
            # Eq. 15: one accumulate per spike and outgoing connection (fan-out = out_features).
            events = (spikes.detach().to(torch.float64) * steps).round().sum(dim=-1)
            cols = stop - start
            dense_cols = in_f - cols
            self._add(
                label if dense_cols == 0 else f"{label}[spikes]",
                "sop_spiking",
                "snn",
                events * out_f,
                events,
                cols * steps,
            )
            if dense_cols:
                self._add(
                    f"{label}[dense]", "mac_dense", "mlp", torch.full((n,), float(dense_cols * out_f + bias))
                )

        return hook

    def _recurrent_hook(self, label: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            x = args[0]
            data = x.data if isinstance(x, PackedSequence) else x
            in_size = module.input_size
            n = data.numel() // in_size  # rows x time steps; one decision = one step per row
            per_step = recurrent_step_macs(module, count_bias=self.count_bias)
            self._add(label, "mac_dense", "rnn", torch.full((n,), float(per_step)))

        return hook

    def _mixing_hook(self, label: str) -> Callable[..., None]:
        def hook(module: QMixer, args: tuple[Any, ...], output: Tensor) -> None:
            n = args[0].numel() // module.n_agents
            per_row = module.n_agents * module.embed_dim + module.embed_dim
            self._add(label, "mac_dense", "mlp", torch.full((n,), float(per_row)))

        return hook

    def _wrap_core(self, name: str, core: nn.Module, method: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            self._depth[name] += 1
            try:
                result = method(*args, **kwargs)
            finally:
                self._depth[name] -= 1
            if self._depth[name] == 0:
                out = result[0] if isinstance(result, tuple) else result
                self._record_core(name, core, out)
            return result

        return wrapper

    def _record_core(self, name: str, core: nn.Module, out: Tensor) -> None:
        steps = spike_steps(core)
        if self.check_spikes:
            _spike_slots_check(f"output of spiking core {name!r}", out, steps)
        self._last_output[name] = out
        rows = out.detach().reshape(-1, out.shape[-1]).to(torch.float64)
        events = (rows * steps).round().sum(dim=-1).cpu()
        slots = rows.shape[-1] * steps
        prev = self._core_counts.get(name)
        if prev is not None and prev[0].shape == events.shape:
            events, slots = prev[0] + events, prev[1] + slots
        self._core_counts[name] = (events, slots)
