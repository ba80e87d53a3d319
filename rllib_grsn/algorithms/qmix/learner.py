"""Learner of QMIX / VDN: unroll the shared agent network over whole episodes, mix, TD(lambda).

A batch holds ``B`` padded team episodes from :class:`~rllib_grsn.algorithms.qmix.episode_replay.
TeamEpisodeReplay`. Each agent's sequence of ``T + 1`` inputs is unrolled from the zero state
(every episode starts there while acting too), all ``B x N`` agent sequences in one batch, one
neuron update per env step (TAP). Then (Rashid et al. 2018, Eq. 1 and Sec. 4):

- ``Q_a(tau_t, u_t)`` of the actions taken, mixed with the state ``s_t`` into ``Q_tot``;
- the target: per agent the best *available* next action (chosen by the online network with
  ``double_q``, by the target network otherwise), valued by the target network and mixed by the
  target mixer with ``s_{t+1}``, then TD(lambda) (:func:`~rllib_grsn.algorithms.qmix.targets.
  td_lambda_targets`);
- loss: mean squared TD error over real (not padded) steps. One Adam optimiser trains agent
  network and mixer together; RLlib's ``postprocess_gradients`` clips the global norm
  (``grad_clip``, 10).

Target networks are hard copies, refreshed by the algorithm every ``target_update_interval``
episodes through :meth:`QMixLearner.update_target_networks`.

With ``model_config.firing_rate_penalty > 0`` the loss also carries ``penalty * firing rate`` of the
agent network's core over every agent and real step (:mod:`rllib_grsn.algorithms.firing_rate`); the
mixer does not spike and runs only in training.
"""

from __future__ import annotations

from typing import Any

import torch
from ray.rllib.core.learner.torch.torch_learner import TorchLearner
from ray.rllib.utils.annotations import override
from ray.rllib.utils.typing import ModuleID
from torch import Tensor

from rllib_grsn.algorithms.firing_rate import add_firing_rate_penalty, firing_rate_penalty_coeff
from rllib_grsn.algorithms.qmix.config import QMixConfig
from rllib_grsn.algorithms.qmix.targets import td_lambda_targets
from rllib_grsn.modules.qmix import SpikingQMixModule, masked_q


def _unroll_agents(module: SpikingQMixModule, inputs: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
    """Online and target Q ``[B, T, N, A]`` and the online firing rate ``[B, T, N]`` (or None) of
    every agent sequence of ``inputs`` ``[B, T, N, D]``, each from the zero state."""
    batch_size, steps, n_agents, width = inputs.shape
    # [B, T, N, D] -> [B*N, T, D]: every agent of every episode is one sequence.
    sequences = inputs.permute(0, 2, 1, 3).reshape(batch_size * n_agents, steps, width)
    state = module.agent.initial_state(batch_size * n_agents, device=inputs.device)
    q, rate = module.agent_q_values_and_spike_rate(sequences, state)
    with torch.no_grad():
        target_q = module.agent_q_values(sequences, state, target=True)

    def per_agent(x: Tensor) -> Tensor:
        return x.reshape(batch_size, n_agents, steps, -1).permute(0, 2, 1, 3)

    spike_rate = None if rate is None else per_agent(rate.unsqueeze(-1)).squeeze(-1)
    return per_agent(q), per_agent(target_q), spike_rate


class QMixLearner(TorchLearner):
    """TD(lambda) QMIX / VDN over episode batches; see the module docstring."""

    @override(TorchLearner)
    def build(self) -> None:
        super().build()
        # Target networks exist only on the learner's copy (EnvRunners act with the online agent).
        self.module.foreach_module(lambda _, module: module.make_target_networks())

    def _qmix_module(self, module_id: ModuleID) -> SpikingQMixModule:
        module = self.module[module_id].unwrapped()
        if not isinstance(module, SpikingQMixModule):
            raise TypeError(
                f"QMixLearner trains SpikingQMixModule, got {type(module).__name__} for {module_id!r}"
            )
        return module

    @override(TorchLearner)
    def _uncompiled_update(self, batch: dict[str, Any], **kwargs: Any) -> tuple[dict, dict, dict]:
        loss_per_module = {
            module_id: self.compute_qmix_loss(module_id, self._qmix_module(module_id), module_batch)
            for module_id, module_batch in batch.items()
        }
        gradients = self.compute_gradients(loss_per_module)
        self.apply_gradients(self.postprocess_gradients(gradients))
        return {}, loss_per_module, {}

    @override(TorchLearner)
    def compute_loss_for_module(
        self, *, module_id: ModuleID, config: Any, batch: dict, fwd_out: dict
    ) -> Tensor:
        # RLlib's forward_train -> loss path does not fit: QMIX needs online and target unrolls of
        # every agent plus both mixers, computed in compute_qmix_loss.
        raise NotImplementedError("QMixLearner computes its loss in compute_qmix_loss")

    def compute_qmix_loss(
        self, module_id: ModuleID, module: SpikingQMixModule, batch: dict[str, Tensor]
    ) -> Tensor:
        config: QMixConfig = self.config.get_config_for_module(module_id)
        inputs, masks, states = batch["inputs"].float(), batch["masks"].float(), batch["states"].float()
        actions = batch["actions"].long()
        rewards, terminateds, filled = (batch[k].float() for k in ("rewards", "terminateds", "filled"))
        lengths = filled.sum(dim=1).long()  # real steps per episode
        # [B, T+1, N, A] each, the episodes unrolled in groups of similar length (see the method).
        q, target_q, spike_rate = self.agent_q_values_and_spike_rate(
            module, inputs, lengths, buckets=config.length_buckets
        )

        chosen = q[:, :-1].gather(-1, actions.unsqueeze(-1)).squeeze(-1)  # [B, T, N]
        q_tot = module.mix(chosen, states[:, :-1])
        with torch.no_grad():
            next_masks = masks[:, 1:]
            picker = q[:, 1:] if config.double_q else target_q[:, 1:]
            next_actions = masked_q(picker.detach(), next_masks).argmax(-1, keepdim=True)
            next_agent_values = target_q[:, 1:].gather(-1, next_actions).squeeze(-1)
            next_values = module.mix(next_agent_values, states[:, 1:], target=True)
            targets = td_lambda_targets(
                rewards, terminateds, filled, next_values, gamma=config.gamma, td_lambda=config.td_lambda
            )
        td_error = (q_tot - targets) * filled
        steps = filled.sum().clamp(min=1.0)
        loss = td_error.pow(2).sum() / steps

        for name, value in (
            ("td_error_abs", td_error.abs().sum() / steps),
            ("q_tot_mean", (q_tot * filled).sum() / steps),
            ("target_mean", (targets * filled).sum() / steps),
        ):
            self.metrics.log_value((module_id, name), value.detach(), window=1)
        self.metrics.log_value((module_id, "loss"), loss.detach(), window=1)
        if spike_rate is not None:
            # Steps :T are the transitions; every agent of a real (filled) step counts.
            loss = add_firing_rate_penalty(
                self,
                module_id,
                loss,
                spike_rate[:, :-1],
                filled.unsqueeze(-1),
                firing_rate_penalty_coeff(module),
            )
        return loss

    @staticmethod
    def agent_q_values(module: SpikingQMixModule, inputs: Tensor) -> tuple[Tensor, Tensor]:
        """Online and target Q ``[B, T+1, N, A]`` of every agent, each sequence from the zero state."""
        q, target_q, _ = QMixLearner.agent_q_values_and_spike_rate(module, inputs)
        return q, target_q

    @staticmethod
    def agent_q_values_and_spike_rate(
        module: SpikingQMixModule, inputs: Tensor, lengths: Tensor | None = None, buckets: int = 4
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """Online and target Q ``[B, T+1, N, A]`` of every agent, each sequence from the zero state,
        and the online core's firing rate ``[B, T+1, N]`` (None when the core does not spike).

        With ``lengths`` (each episode's real steps), the episodes are unrolled in ``buckets`` groups
        of similar length (``length_buckets``), each only as far as its longest episode's
        last observation: a batch padded to its longest episode would otherwise spend a good part of
        the unroll on padding. Each sequence's values are the same either way (it starts from the zero
        state and runs alone); the steps past an episode's end are zeros, which the loss masks out.
        """
        steps = inputs.shape[1]
        if lengths is None or buckets <= 1:
            return _unroll_agents(module, inputs)
        order = torch.argsort(lengths)
        groups = [g for g in torch.tensor_split(order, min(buckets, len(order))) if len(g)]
        parts = []
        for group in groups:
            needed = int(lengths[group].max()) + 1  # observations: the steps and the final one
            parts.append((group, _unroll_agents(module, inputs[group, :needed])))
        spiking = parts[0][1][2] is not None

        def gathered(i: int) -> Tensor:
            padded = [
                torch.nn.functional.pad(out[i], (0, 0) * (out[i].dim() - 2) + (0, steps - out[i].shape[1]))
                for _, out in parts
            ]
            inverse = torch.argsort(torch.cat([group for group, _ in parts]))
            return torch.cat(padded)[inverse]

        return gathered(0), gathered(1), gathered(2) if spiking else None

    def update_target_networks(self) -> None:
        """Hard copy of the online agent network and mixer into the targets (pymarl)."""
        for module_id in self.module.keys():
            for source, target in self._qmix_module(module_id).get_target_network_pairs():
                target.load_state_dict(source.state_dict())
