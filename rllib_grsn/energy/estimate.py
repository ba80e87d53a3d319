"""Energy per decision, averaged over sampled decisions with the state carried (paper Section 5.4).

:func:`estimate_energy` runs a network through observation sequences one env step at a time, as
acting does (the core's state is carried from step to step, TAP), counts the Eq. 15/16 operations
of every decision with :class:`~rllib_grsn.energy.counter.OpCounter`, and averages them over
``num_decisions`` decisions sampled from all (sequence, step) pairs (the paper: 1024 samples).
Energy is ``0.9 pJ x SOP + 4.6 pJ x MAC``.

Nothing here depends on RLlib: it takes a torch module and a callable that runs one decision.
:mod:`rllib_grsn.energy.adapters` builds those callables for our RLModules.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from rllib_grsn.energy.counter import (
    MAC_PJ,
    SOP_PJ,
    DecisionCounts,
    Group,
    Kind,
    OpCounter,
    SpikeInput,
)

__all__ = ["EnergyReport", "LayerEnergy", "count_ops", "estimate_energy", "report_from_counts"]

State = Any  # a dict of tensors (possibly nested), whatever ``decide`` carries
Decide = Callable[[Any, State], State]


@dataclass(frozen=True)
class LayerEnergy:
    """One reported layer, averaged per decision.

    Attributes:
        name: module path relative to the counted root (``[spikes]``/``[dense]`` suffix when one
            Linear reads a spiking core's output next to dense features).
        kind: ``"sop_spiking"`` (Eq. 15, 0.9 pJ) or ``"mac_dense"`` (Eq. 16, 4.6 pJ).
        group: Table 4 column: ``"snn"`` (spike accumulates), ``"rnn"`` (recurrent ANN core MACs) or
            ``"mlp"`` (every other dense layer, GRSN gates included).
        ops: operations per decision.
        input_firing_rate: for ``sop_spiking`` layers, the fraction of (input neuron, update)
            pairs that spiked; ``None`` for dense layers.
    """

    name: str
    kind: Kind
    group: Group
    ops: float
    input_firing_rate: float | None = None

    @property
    def pj(self) -> float:
        """Energy per decision in pJ: ``0.9 x ops`` (Eq. 15) or ``4.6 x ops`` (Eq. 16)."""
        return self.ops * (SOP_PJ if self.kind == "sop_spiking" else MAC_PJ)


@dataclass(frozen=True)
class EnergyReport:
    """Operations and energy of one network per decision.

    Attributes:
        layers: per-layer counts, in the order the layers first ran.
        core_firing_rates: spiking core path -> spikes per neuron per neuron update.
        num_decisions: how many decisions were averaged.
    """

    layers: tuple[LayerEnergy, ...]
    core_firing_rates: dict[str, float] = field(default_factory=dict)
    num_decisions: int = 0

    def _sum(self, *, kind: Kind | None = None, group: Group | None = None) -> float:
        return float(
            sum(
                layer.ops
                for layer in self.layers
                if (kind is None or layer.kind == kind) and (group is None or layer.group == group)
            )
        )

    @property
    def sop_spiking(self) -> float:
        """Spike-driven accumulates per decision (Eq. 15)."""
        return self._sum(kind="sop_spiking")

    @property
    def mac_dense(self) -> float:
        """Multiply-accumulates per decision (Eq. 16), recurrent ANN cores included."""
        return self._sum(kind="mac_dense")

    @property
    def mac_mlp(self) -> float:
        """Dense MACs outside recurrent ANN cores: Table 4's "MLP" column (GRSN gates included)."""
        return self._sum(kind="mac_dense", group="mlp")

    @property
    def mac_rnn(self) -> float:
        """MACs of recurrent ANN cores (GRU): Table 4's "RNN" column."""
        return self._sum(kind="mac_dense", group="rnn")

    @property
    def pj_per_decision(self) -> float:
        """``0.9 pJ x SOP + 4.6 pJ x MAC`` per decision."""
        return SOP_PJ * self.sop_spiking + MAC_PJ * self.mac_dense

    @property
    def kpj_per_decision(self) -> float:
        """:attr:`pj_per_decision` in thousands of pJ (Table 4's unit)."""
        return self.pj_per_decision / 1000.0

    @property
    def spiking(self) -> bool:
        """Whether the network has a spiking core."""
        return bool(self.core_firing_rates)

    def layer(self, name: str) -> LayerEnergy:
        """The layer called ``name`` (``KeyError`` listing the names otherwise)."""
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"no layer {name!r}; layers: {[lay.name for lay in self.layers]}")

    def to_dict(self) -> dict[str, Any]:
        """Plain numbers for logging (JSON/MLflow friendly)."""
        return {
            "num_decisions": self.num_decisions,
            "sop_spiking": self.sop_spiking,
            "mac_dense": self.mac_dense,
            "mac_mlp": self.mac_mlp,
            "mac_rnn": self.mac_rnn,
            "pj_per_decision": self.pj_per_decision,
            "core_firing_rates": dict(self.core_firing_rates),
            "layers": [
                {
                    "name": layer.name,
                    "kind": layer.kind,
                    "group": layer.group,
                    "ops": layer.ops,
                    "pj": layer.pj,
                    "input_firing_rate": layer.input_firing_rate,
                }
                for layer in self.layers
            ],
        }


def report_from_counts(steps: list[DecisionCounts], index: Tensor | None = None) -> EnergyReport:
    """Average per-row counts of several decision batches into an :class:`EnergyReport`.

    Args:
        steps: the counts of consecutive calls, each with the same number of rows ``B``; row
            ``b`` of call ``t`` is decision ``b * len(steps) + t``.
        index: flat indices (into ``B x len(steps)``) of the decisions to average; all if None.
    """
    if not steps:
        raise ValueError("no decisions were counted")
    batch, n_steps = steps[0].rows, len(steps)
    if any(s.rows != batch for s in steps):
        raise ValueError("every step must count the same number of rows")

    def grid(values: list[Tensor | None]) -> Tensor:
        # [B, T] per-decision values; a layer absent from a step did nothing there.
        cols = [torch.zeros(batch, dtype=torch.float64) if v is None else v for v in values]
        return torch.stack(cols, dim=1).reshape(-1)

    pick = torch.arange(batch * n_steps) if index is None else index
    layers: list[LayerEnergy] = []
    seen: dict[str, tuple[Kind, Group]] = {}
    for step in steps:
        for name, count in step.layers.items():
            if name in seen and seen[name] != (count.kind, count.group):
                raise ValueError(f"{name} changed kind between steps")
            seen.setdefault(name, (count.kind, count.group))
    for name, (kind, group) in seen.items():
        counts = [s.layers.get(name) for s in steps]
        ops = grid([c.ops if c is not None else None for c in counts])[pick]
        rate = None
        if kind == "sop_spiking":
            events = grid([c.events if c is not None else None for c in counts])[pick]
            slots = torch.tensor([c.slots if c is not None else 0 for c in counts], dtype=torch.float64)
            slots = slots.expand(batch, n_steps).reshape(-1)[pick]
            rate = float(events.sum() / slots.sum()) if float(slots.sum()) > 0 else 0.0
        layers.append(LayerEnergy(name, kind, group, float(ops.mean()), rate))

    core_rates: dict[str, float] = {}
    core_names = dict.fromkeys(name for s in steps for name in s.cores)
    for name in core_names:
        entries = [s.cores.get(name) for s in steps]
        events = grid([e[0] if e is not None else None for e in entries])[pick]
        slots = torch.tensor([e[1] if e is not None else 0 for e in entries], dtype=torch.float64)
        slots = slots.expand(batch, n_steps).reshape(-1)[pick]
        core_rates[name] = float(events.sum() / slots.sum()) if float(slots.sum()) > 0 else 0.0
    return EnergyReport(tuple(layers), core_rates, int(pick.numel()))


def count_ops(
    module: nn.Module,
    run: Callable[[], Any],
    *,
    spike_inputs: Mapping[str, SpikeInput] | None = None,
    count_bias: bool = True,
    count_mixing: bool = True,
    check_spikes: bool = True,
) -> EnergyReport:
    """Operations of ONE call of ``run()`` (a decision batch), averaged over its rows.

    Useful for a single forward pass; :func:`estimate_energy` is the version that carries state
    over sequences. Arguments as in :class:`~rllib_grsn.energy.counter.OpCounter`.
    """
    with (
        torch.no_grad(),
        OpCounter(
            module,
            spike_inputs=spike_inputs,
            count_bias=count_bias,
            count_mixing=count_mixing,
            check_spikes=check_spikes,
        ) as counter,
    ):
        run()
        counts = counter.take()
    return report_from_counts([counts])


def _tree_map(fn: Callable[[Tensor], Tensor], tree: Any) -> Any:
    if isinstance(tree, Tensor):
        return fn(tree)
    if isinstance(tree, Mapping):
        return {k: _tree_map(fn, v) for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        return type(tree)(_tree_map(fn, v) for v in tree)
    raise TypeError(f"sequences must hold tensors (in dicts/lists/tuples), got {type(tree).__name__}")


def _first_leaf(tree: Any) -> Tensor:
    if isinstance(tree, Tensor):
        return tree
    values = list(tree.values()) if isinstance(tree, Mapping) else list(tree)
    if not values:
        raise ValueError("sequences hold no tensor")
    return _first_leaf(values[0])


def estimate_energy(
    module: nn.Module,
    decide: Decide,
    sequences: Any,
    *,
    initial_state: State | Callable[[int], State] | None = None,
    valid: Tensor | None = None,
    num_decisions: int | None = 1024,
    seed: int = 0,
    spike_inputs: Mapping[str, SpikeInput] | None = None,
    count_bias: bool = True,
    count_mixing: bool = True,
    check_spikes: bool = True,
) -> EnergyReport:
    """Average Eq. 15/16 operations and energy per decision of ``module`` over observation sequences.

    Each row of ``sequences`` is one episode from its start: step ``t`` of all rows is one call
    ``state = decide(inputs_t, state)`` (inputs sliced to ``[B, ...]``, no time axis), starting
    from ``initial_state``, so the state is carried exactly as acting carries it. Every (row, step)
    is one decision; ``num_decisions`` of them are sampled uniformly without replacement (seeded)
    and averaged (the paper averages 1024).

    Args:
        module: the network whose layers are counted (``decide`` must run it, or parts of it).
        decide: runs one decision for a batch and returns the next state.
        sequences: a tensor or a dict/list/tuple of tensors, each ``[B, T, ...]``.
        initial_state: the state at ``t = 0``, or a function of the batch size returning it
            (e.g. ``module.initial_state``); ``None`` means ``{}`` (a stateless network).
        valid: optional ``[B, T]`` bool mask of real (not padded) steps; only those are sampled.
        num_decisions: how many decisions to average; ``None`` averages all valid ones. Asking
            for more than there are raises ``ValueError``.
        seed: seed of the sample.
        spike_inputs, count_bias, count_mixing, check_spikes: see
            :class:`~rllib_grsn.energy.counter.OpCounter`.
    """
    leaf = _first_leaf(sequences)
    if leaf.dim() < 2:
        raise ValueError(f"sequences must be [B, T, ...], got a leaf of shape {tuple(leaf.shape)}")
    batch, n_steps = int(leaf.shape[0]), int(leaf.shape[1])
    if callable(initial_state):
        state = initial_state(batch)
    else:
        state = {} if initial_state is None else initial_state

    mask = torch.ones(batch, n_steps, dtype=torch.bool) if valid is None else valid.bool().cpu()
    if tuple(mask.shape) != (batch, n_steps):
        raise ValueError(f"valid must be [B, T] = {(batch, n_steps)}, got {tuple(mask.shape)}")
    candidates = torch.nonzero(mask.reshape(-1)).squeeze(-1)
    if num_decisions is None:
        index = candidates
    else:
        if num_decisions <= 0:
            raise ValueError(f"num_decisions must be > 0, got {num_decisions}")
        if num_decisions > candidates.numel():
            raise ValueError(
                f"asked for {num_decisions} decisions but the sequences hold {candidates.numel()} "
                f"({batch} sequences x {n_steps} steps, valid only); pass more or num_decisions=None"
            )
        generator = torch.Generator().manual_seed(seed)
        index = candidates[torch.randperm(candidates.numel(), generator=generator)[:num_decisions]]

    steps: list[DecisionCounts] = []
    counter = OpCounter(
        module,
        spike_inputs=spike_inputs,
        count_bias=count_bias,
        count_mixing=count_mixing,
        check_spikes=check_spikes,
    )
    with torch.no_grad(), counter:
        for t in range(n_steps):
            inputs_t = _tree_map(lambda x, t=t: x[:, t], sequences)
            state = decide(inputs_t, state)
            steps.append(counter.take(rows=batch))
    return report_from_counts(steps, index)
