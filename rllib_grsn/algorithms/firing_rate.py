"""The firing-rate penalty every learner of a spiking module adds to its loss, and its metrics.

Energy of a spiking network grows with its spikes: each spike costs one synaptic operation per
outgoing connection (paper Eq. 15). With ``model_config.firing_rate_penalty = lambda > 0`` a learner
minimises ``loss + lambda * r``, where ``r`` is the mean firing rate of the penalised core (spikes per
neuron per neuron update) over the valid (unmasked) steps of the batch, so users can trade some
return for fewer spikes. The gradient of ``r`` reaches the weights through the ATan surrogate
(Eq. 6), lowering the membrane potentials that drive the spikes.

Learner metrics (per module): ``firing_rate`` whenever the module's core spikes, and
``firing_rate_penalty_loss`` (``lambda * r``) when the penalty is on.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from rllib_grsn.algorithms.losses import masked_mean

FIRING_RATE_KEY = "firing_rate"
FIRING_RATE_PENALTY_LOSS_KEY = "firing_rate_penalty_loss"


def firing_rate_penalty_coeff(module: Any) -> float:
    """``model_config.firing_rate_penalty`` of one of our modules (0 for any other module)."""
    spiking_config = getattr(module, "spiking_config", None)
    return float(spiking_config.firing_rate_penalty) if spiking_config is not None else 0.0


def mean_firing_rate(spike_rate: Tensor, mask: Tensor | None) -> Tensor:
    """Mean of per-step rates ``spike_rate`` over the steps where ``mask`` is set (all if None).

    ``mask`` may be boolean (RLlib's ``loss_mask``) or 0/1 floats, and broadcasts against
    ``spike_rate`` (e.g. one mask per step for all agents of a team).
    """
    if mask is None:
        return spike_rate.mean()
    return masked_mean(spike_rate, mask.to(spike_rate.dtype).expand_as(spike_rate))


def add_firing_rate_penalty(
    learner: Any,
    module_id: str,
    loss: Tensor,
    spike_rate: Tensor | None,
    mask: Tensor | None,
    coeff: float,
) -> Tensor:
    """``loss + coeff * mean_firing_rate(spike_rate, mask)``, logging the terms on ``learner.metrics``.

    ``loss`` comes back as the very same tensor when the core does not spike (``spike_rate`` None)
    or ``coeff`` is 0, so a run without the penalty computes exactly what it did before.
    """
    if spike_rate is None:
        return loss
    rate = mean_firing_rate(spike_rate, mask)
    learner.metrics.log_value((module_id, FIRING_RATE_KEY), rate.detach(), window=1)
    if coeff <= 0.0:
        return loss
    penalty = coeff * rate
    learner.metrics.log_value((module_id, FIRING_RATE_PENALTY_LOSS_KEY), penalty.detach(), window=1)
    return loss + penalty
