"""RLlib's PPO loss plus the firing-rate penalty, for :class:`SpikingActorCriticModule`.

The experiment sets this learner for every PPO run on our module (``_build_algo_config``), whatever
the penalty: with ``firing_rate_penalty: 0`` the loss is RLlib's, bit for bit, and the learner still
logs the core's ``firing_rate``, so energy can be followed in any spiking PPO run.
"""

from __future__ import annotations

from typing import Any

from ray.rllib.algorithms.ppo.ppo import PPOConfig
from ray.rllib.algorithms.ppo.torch.ppo_torch_learner import PPOTorchLearner
from ray.rllib.core.columns import Columns
from ray.rllib.core.learner.torch.torch_learner import TorchLearner
from ray.rllib.utils.annotations import override
from ray.rllib.utils.typing import ModuleID, TensorType

from rllib_grsn.algorithms.firing_rate import add_firing_rate_penalty, firing_rate_penalty_coeff
from rllib_grsn.modules.backbone import SPIKE_RATE


class SpikingPPOLearner(PPOTorchLearner):
    """PPO (clipped surrogate + value + entropy, RLlib's) ``+ firing_rate_penalty * firing rate``.

    The rate is the shared core's (policy and value heads read the same core), from the module's
    ``forward_train`` output ``spike_rate``, averaged over the steps of ``loss_mask`` as PPO averages
    its own terms (zero-padding of recurrent chunks and PPO's artificial bootstrap step excluded).
    """

    @override(TorchLearner)
    def compute_loss_for_module(
        self,
        *,
        module_id: ModuleID,
        config: PPOConfig,
        batch: dict[str, Any],
        fwd_out: dict[str, TensorType],
    ) -> TensorType:
        loss = super().compute_loss_for_module(
            module_id=module_id, config=config, batch=batch, fwd_out=fwd_out
        )
        return add_firing_rate_penalty(
            self,
            module_id,
            loss,
            fwd_out.get(SPIKE_RATE),
            batch.get(Columns.LOSS_MASK),
            firing_rate_penalty_coeff(self.module[module_id].unwrapped()),
        )
