"""Learners of recurrent TD3 and SAC: unroll actor and critics over replayed windows, step each
network with its own optimiser, soft-update the targets.

A batch holds ``B`` windows of ``T`` steps from :class:`SequenceReplayBuffer`: ``obs`` o_s..o_{s+T-1},
``new_obs`` o_{s+1}..o_{s+T}, actions, rewards, terminateds, ``loss_mask`` and the start state.
As in pomdp-baselines, every network is unrolled once over the ``T + 1`` observations
``o_s, o_{s+1}, .., o_{s+T}`` from the start state: outputs at ``:T`` are the current step's and
outputs at ``1:`` the next step's, so the TD target at step t uses the recurrent state that has
seen the whole window up to t+1. (The previous action and reward ride inside each observation,
written there by the PrevActionReward connector while acting.)

The maths is in :mod:`rllib_grsn.algorithms.losses`; this file wires it to RLlib's Learner:
optimisers registered per network (``critic``, ``actor``, SAC's ``alpha``), gradients taken with
``torch.autograd.grad`` per loss so no loss leaks into another network's parameters, and
RLlib's ``apply_gradients`` / ``postprocess_gradients`` (``grad_clip``) doing the steps.

With ``model_config.firing_rate_penalty > 0`` the actor loss also carries ``penalty * firing rate`` of
the actor's core (:mod:`rllib_grsn.algorithms.firing_rate`). Only the actor's: it is the network that
is deployed and whose spikes cost energy at run time (the energy count of a decision covers the
actor too); the critic exists for training only, and a penalty there would bias the value estimates
the actor learns from without saving any deployed spike. The critic core's rate is logged
(``critic_firing_rate``) for reference.

With a ``guide`` (TD3BC+JSRL), TD3's actor loss becomes TD3+BC's
(:func:`~rllib_grsn.algorithms.losses.td3_bc_actor_loss`), and continuous SAC's gains the same cloning
term (:class:`SACLearner`): behaviour cloning toward the guide's action on the labelled steps (the
batch's ``bc_label`` and ``guide_action`` columns, recorded while acting: the steps the guide acted,
or every training step with ``guide.bc_on: all``), with the weight ``guide.bc_weight`` at the lifetime
env steps the algorithm passes to every update.
"""

from __future__ import annotations

from typing import Any

import torch
import tree
from ray.rllib.core.columns import Columns
from ray.rllib.core.learner.torch.torch_learner import TorchLearner
from ray.rllib.core.rl_module.apis import TargetNetworkAPI
from ray.rllib.utils.annotations import override
from ray.rllib.utils.metrics import NUM_ENV_STEPS_SAMPLED_LIFETIME
from ray.rllib.utils.typing import ModuleID
from torch import Tensor

from rllib_grsn.algorithms import losses as L
from rllib_grsn.algorithms.firing_rate import (
    FIRING_RATE_KEY,
    add_firing_rate_penalty,
    firing_rate_penalty_coeff,
    mean_firing_rate,
)
from rllib_grsn.algorithms.guide import BC_LABEL, GUIDE_ACTION, GUIDED
from rllib_grsn.algorithms.off_policy.config import RecurrentOffPolicyConfig, RecurrentSACConfig, TD3Config
from rllib_grsn.modules.twin_q import RecurrentTwinQModule, SpikingSACModule, SpikingTD3Module

LOSS_MASK = Columns.LOSS_MASK


def _extend(obs: Any, next_obs: Any) -> Any:
    """``[o_s, next_obs...]``: the window's T+1 observations (leaves [B, T+1, ...])."""
    return tree.map_structure(lambda o, n: torch.cat([o[:, :1], n], dim=1), obs, next_obs)


def _start_state(batch: dict[str, Any], part: str) -> dict[str, Tensor]:
    state = batch.get(Columns.STATE_IN)
    return dict(state[part]) if state else {}


class RecurrentOffPolicyLearner(TorchLearner):
    """Shared update loop; subclasses return the losses of one gradient step."""

    @override(TorchLearner)
    def build(self) -> None:
        super().build()
        # Target networks exist only on the learner's copy (EnvRunners act with the online actor).
        self.module.foreach_module(
            lambda _, module: module.make_target_networks() if isinstance(module, TargetNetworkAPI) else None
        )
        self.num_gradient_steps = 0
        # Lifetime env steps sampled, as the algorithm passes them to `update` (schedules read it).
        self.lifetime_env_steps = 0

    @override(TorchLearner)
    def before_gradient_based_update(self, *, timesteps: dict[str, Any]) -> None:
        super().before_gradient_based_update(timesteps=timesteps)
        self.lifetime_env_steps = int(timesteps.get(NUM_ENV_STEPS_SAMPLED_LIFETIME, self.lifetime_env_steps))

    @override(TorchLearner)
    def configure_optimizers_for_module(
        self, module_id: ModuleID, config: RecurrentOffPolicyConfig = None
    ) -> None:
        module = self._off_policy_module(module_id)
        for name, params, lr in self._optimizer_groups(module, config):
            self.register_optimizer(
                module_id=module_id,
                optimizer_name=name,
                optimizer=torch.optim.Adam(params),
                params=params,
                lr_or_lr_schedule=lr,
            )

    def _optimizer_groups(
        self, module: RecurrentTwinQModule, config: RecurrentOffPolicyConfig
    ) -> list[tuple[str, list[torch.nn.Parameter], float]]:
        return [
            ("critic", module.critic_parameters(), config.critic_lr),
            ("actor", module.actor_parameters(), config.actor_lr),
        ]

    def _off_policy_module(self, module_id: ModuleID) -> Any:
        module = self.module[module_id].unwrapped()
        if not isinstance(module, RecurrentTwinQModule):
            raise TypeError(
                f"{type(self).__name__} trains RecurrentTwinQModule subclasses, got {type(module).__name__} "
                f"for module {module_id!r}"
            )
        return module

    @override(TorchLearner)
    def _uncompiled_update(self, batch: dict[str, Any], **kwargs) -> tuple[dict, dict, dict]:
        for optim in self._optimizer_parameters:
            optim.zero_grad(set_to_none=True)
        gradients: dict[Any, Tensor] = {}
        loss_per_module: dict[ModuleID, Tensor] = {}
        soft_update_targets = False
        for module_id, module_batch in batch.items():
            module = self._off_policy_module(module_id)
            config = self.config.get_config_for_module(module_id)
            terms, params_of, update_targets = self.compute_off_policy_losses(
                module_id, module, config, module_batch
            )
            soft_update_targets |= update_targets
            for name, loss in terms.items():
                params = params_of.get(name)
                if params is None:
                    continue
                grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
                for param, grad in zip(params, grads, strict=True):
                    if grad is not None:
                        gradients[self.get_param_ref(param)] = grad
                self.metrics.log_value((module_id, name), loss.detach(), window=1)
            loss_per_module[module_id] = sum(terms.values())
        self.apply_gradients(self.postprocess_gradients(gradients))
        if soft_update_targets:
            for module_id in batch:
                module = self._off_policy_module(module_id)
                tau = self.config.get_config_for_module(module_id).tau
                for source, target in module.get_target_network_pairs():
                    L.soft_update_(target, source, tau)
        self.num_gradient_steps += 1
        return {}, loss_per_module, {}

    @override(TorchLearner)
    def compute_loss_for_module(
        self, *, module_id: ModuleID, config: Any, batch: dict, fwd_out: dict
    ) -> Tensor:
        # RLlib's one-loss-per-module path is not used: each network has its own loss and optimiser,
        # computed in `compute_off_policy_losses` and differentiated separately in `_uncompiled_update`.
        raise NotImplementedError(f"{type(self).__name__} computes its losses in compute_off_policy_losses")

    def compute_off_policy_losses(
        self, module_id: ModuleID, module: Any, config: Any, batch: dict[str, Any]
    ) -> tuple[dict[str, Tensor], dict[str, list[torch.nn.Parameter]], bool]:
        """``(losses by name, parameters each loss trains, whether to soft-update targets now)``."""
        raise NotImplementedError

    # ----------------------------------------------------------------- helpers

    def _critic_pass(
        self, module: RecurrentTwinQModule, batch: dict[str, Any]
    ) -> tuple[Any, Tensor, Tensor, Tensor]:
        """Extended observations, online critic features [B, T+1, F], target ones, and the mask."""
        ext = _extend(batch[Columns.OBS], batch[Columns.NEXT_OBS])
        state = _start_state(batch, "critic")
        features = module.unroll_critic(ext, state)
        with torch.no_grad():
            target_features = module.unroll_critic(ext, state, target=True)
        return ext, features, target_features, batch[LOSS_MASK]

    def _log_critic_firing_rate(
        self, module_id: ModuleID, module: RecurrentTwinQModule, features: Tensor, mask: Tensor
    ) -> None:
        """The critic core's firing rate over the window's valid steps (a metric, not penalised)."""
        rate = module.critic.spike_rate(features[:, :-1].detach())
        if rate is not None:
            self.metrics.log_value(
                (module_id, "critic_" + FIRING_RATE_KEY), mean_firing_rate(rate, mask), window=1
            )

    def _penalise_actor(
        self,
        module_id: ModuleID,
        module: RecurrentTwinQModule,
        actor_loss: Tensor,
        features: Tensor,
        mask: Tensor,
    ) -> Tensor:
        """``actor_loss`` plus the firing-rate penalty of the actor core over ``features`` ``[B, T, F]``.

        Added to the actor loss itself rather than returned as a term of its own: the update loop
        takes one gradient per term and parameter, so a second term on the actor's parameters would
        replace the actor loss's gradient instead of adding to it.
        """
        return add_firing_rate_penalty(
            self,
            module_id,
            actor_loss,
            module.actor.spike_rate(features),
            mask,
            firing_rate_penalty_coeff(module),
        )

    @staticmethod
    def _rewards_and_dones(batch: dict[str, Any]) -> tuple[Tensor, Tensor]:
        return batch[Columns.REWARDS].float(), batch[Columns.TERMINATEDS].float()

    def _with_behaviour_cloning(
        self,
        module_id: ModuleID,
        config: RecurrentOffPolicyConfig,
        batch: dict[str, Any],
        q_pi: Tensor,
        action: Tensor,
        mask: Tensor,
        rl_loss: Tensor | None = None,
    ) -> Tensor:
        """The actor loss plus the guide's behaviour-cloning term on the batch's labelled steps
        (``bc_label``, labels in ``guide_action``) at the ``bc_weight`` of the lifetime env steps
        (:func:`~rllib_grsn.algorithms.losses.td3_bc_actor_loss`); logs the term, the weight, and the
        fractions of valid steps the guide acted on (``guided_fraction``) and that carry a label
        (``bc_label_fraction``)."""
        settings = config.guide_settings
        assert settings is not None
        labelled = batch[BC_LABEL].to(mask.dtype)
        weight = settings.bc_weight_at(self.lifetime_env_steps)
        loss, bc = L.td3_bc_actor_loss(
            q_pi, action, batch[GUIDE_ACTION], labelled, mask, weight, rl_loss=rl_loss
        )
        self.metrics.log_value((module_id, "bc_loss"), bc.detach(), window=1)
        self.metrics.log_value((module_id, "bc_weight"), weight, window=1)
        guided = batch[GUIDED].to(mask.dtype)
        self.metrics.log_value((module_id, "guided_fraction"), L.masked_mean(guided, mask), window=1)
        self.metrics.log_value((module_id, "bc_label_fraction"), L.masked_mean(labelled, mask), window=1)
        return loss


class TD3Learner(RecurrentOffPolicyLearner):
    """Recurrent TD3: clipped double Q, target policy smoothing, delayed actor and target updates."""

    def compute_off_policy_losses(
        self, module_id: ModuleID, module: SpikingTD3Module, config: TD3Config, batch: dict[str, Any]
    ) -> tuple[dict[str, Tensor], dict[str, list[torch.nn.Parameter]], bool]:
        ext, h, h_target, mask = self._critic_pass(module, batch)
        self._log_critic_firing_rate(module_id, module, h, mask)
        rewards, dones = self._rewards_and_dones(batch)
        actor_state = _start_state(batch, "actor")
        with torch.no_grad():
            next_action = module.policy_action(module.unroll_actor(ext, actor_state, target=True))[:, 1:]
            next_action = L.smoothed_target_action(
                next_action,
                noise_std=config.target_noise,
                noise_clip=config.target_noise_clip,
                low=-1.0,
                high=1.0,
            )
            q1_next, q2_next = module.q_values(h_target[:, 1:], next_action, target=True)
            target = L.td_target(rewards, dones, L.clipped_double_q(q1_next, q2_next), config.gamma)
        q1, q2 = module.q_values(h[:, :-1], batch[Columns.ACTIONS].float())
        terms = {"critic_loss": L.critic_loss(q1, q2, target, mask)}
        params = {"critic_loss": module.critic_parameters()}
        self.metrics.log_value((module_id, "q_mean"), L.masked_mean(q1.detach(), mask), window=1)

        actor_step = self.num_gradient_steps % config.policy_delay == 0
        if actor_step:
            features = module.actor_features(batch[Columns.OBS], actor_state)
            action = module.policy_action(module.pi_head(features))
            q1_pi = module.q1_value(h[:, :-1].detach(), action)
            actor_loss = self._actor_loss(module_id, config, batch, q1_pi, action, mask)
            terms["actor_loss"] = self._penalise_actor(module_id, module, actor_loss, features, mask)
            params["actor_loss"] = module.actor_parameters()
        return terms, params, actor_step

    def _actor_loss(
        self,
        module_id: ModuleID,
        config: TD3Config,
        batch: dict[str, Any],
        q1_pi: Tensor,
        action: Tensor,
        mask: Tensor,
    ) -> Tensor:
        """TD3's actor loss; TD3+BC's on the labelled steps when the config has a guide."""
        if config.guide_settings is None:
            return L.td3_actor_loss(q1_pi, mask)
        return self._with_behaviour_cloning(module_id, config, batch, q1_pi, action, mask)


class SACLearner(RecurrentOffPolicyLearner):
    """Recurrent SAC: discrete (exact expectations over actions) or continuous (reparameterised).

    With a ``guide`` (continuous actions only), the actor loss adds TD3+BC's cloning term on the
    labelled steps to SAC's ``alpha log pi - min(Q1, Q2)``, scaled by ``mean|min(Q1, Q2)|`` as TD3+BC
    scales it by ``mean|Q|`` (Fujimoto & Gu 2021), on the policy's greedy action ``tanh(mean)``: a
    squared error on the deterministic action, as the BC terms added to off-policy actors by Nair et
    al. 2018 ("Overcoming exploration in RL with demonstrations") and Fujimoto & Gu 2021. Not the
    log-likelihood of the guide's action under the squashed Gaussian (the BC of e.g. AWAC, Nair et al.
    2020): a guide that acts at the action bounds (the privileged Pendulum swing-up is bang-bang, +-1
    in normalised units) has ``atanh(+-1) = inf`` there, so its log-likelihood is unbounded, and it
    would also pull the policy's spread, which SAC's temperature already controls. The sampled
    action's entropy term is left to SAC. Discrete SAC takes no guide (refused before Ray starts).
    """

    @override(RecurrentOffPolicyLearner)
    def _optimizer_groups(self, module: SpikingSACModule, config: RecurrentSACConfig) -> list:
        return [*super()._optimizer_groups(module, config), ("alpha", [module.log_alpha], config.alpha_lr)]

    @staticmethod
    def target_entropy(module: SpikingSACModule, config: RecurrentSACConfig) -> float:
        if config.target_entropy != "auto":
            return float(config.target_entropy)
        if module.discrete:
            return L.discrete_target_entropy(module.action_dim, config.target_entropy_scale)
        return L.continuous_target_entropy(module.action_dim)

    def compute_off_policy_losses(
        self, module_id: ModuleID, module: SpikingSACModule, config: RecurrentSACConfig, batch: dict[str, Any]
    ) -> tuple[dict[str, Tensor], dict[str, list[torch.nn.Parameter]], bool]:
        ext, h, h_target, mask = self._critic_pass(module, batch)
        self._log_critic_firing_rate(module_id, module, h, mask)
        rewards, dones = self._rewards_and_dones(batch)
        actor_features = module.actor_features(ext, _start_state(batch, "actor"))  # [B, T+1, F]
        head = module.pi_head(actor_features)  # [B, T+1, P]
        alpha = module.log_alpha.exp().detach()
        target_entropy = self.target_entropy(module, config)

        if module.discrete:
            probs, log_probs = module.policy_distribution(head)
            with torch.no_grad():
                q1_next, q2_next = module.q_values(h_target[:, 1:], target=True)
                next_value = L.sac_discrete_next_value(
                    probs[:, 1:], log_probs[:, 1:], q1_next, q2_next, alpha
                )
                target = L.td_target(rewards, dones, next_value, config.gamma)
            q1_all, q2_all = module.q_values(h[:, :-1])
            taken = batch[Columns.ACTIONS].long().unsqueeze(-1)
            q1, q2 = q1_all.gather(-1, taken).squeeze(-1), q2_all.gather(-1, taken).squeeze(-1)
            actor_loss = L.sac_discrete_actor_loss(
                probs[:, :-1], log_probs[:, :-1], q1_all.detach(), q2_all.detach(), alpha, mask
            )
            entropy = L.discrete_entropy(probs[:, :-1], log_probs[:, :-1])
            temperature_loss = L.alpha_loss(module.log_alpha, entropy, target_entropy, mask, discrete=True)
        else:
            mean, log_std = module.policy_distribution(head)
            action, log_prob = L.squashed_gaussian(mean, log_std)
            with torch.no_grad():
                q1_next, q2_next = module.q_values(h_target[:, 1:], action[:, 1:], target=True)
                next_value = L.sac_continuous_next_value(q1_next, q2_next, log_prob[:, 1:], alpha)
                target = L.td_target(rewards, dones, next_value, config.gamma)
            q1, q2 = module.q_values(h[:, :-1], batch[Columns.ACTIONS].float())
            q1_pi, q2_pi = module.q_values(h[:, :-1].detach(), action[:, :-1])
            actor_loss = L.sac_continuous_actor_loss(q1_pi, q2_pi, log_prob[:, :-1], alpha, mask)
            if config.guide_settings is not None:
                actor_loss = self._with_behaviour_cloning(
                    module_id,
                    config,
                    batch,
                    L.clipped_double_q(q1_pi, q2_pi),
                    torch.tanh(mean[:, :-1]),
                    mask,
                    rl_loss=actor_loss,
                )
            entropy = -log_prob[:, :-1].detach()
            temperature_loss = L.alpha_loss(
                module.log_alpha, log_prob[:, :-1], target_entropy, mask, discrete=False
            )

        # The actor loss reads steps :T (step T+1 only feeds the target), so the penalty does too.
        actor_loss = self._penalise_actor(module_id, module, actor_loss, actor_features[:, :-1], mask)
        self.metrics.log_value((module_id, "alpha"), alpha, window=1)
        self.metrics.log_value((module_id, "entropy"), L.masked_mean(entropy.detach(), mask), window=1)
        self.metrics.log_value((module_id, "q_mean"), L.masked_mean(q1.detach(), mask), window=1)
        terms = {
            "critic_loss": L.critic_loss(q1, q2, target, mask),
            "actor_loss": actor_loss,
            "alpha_loss": temperature_loss,
        }
        params = {
            "critic_loss": module.critic_parameters(),
            "actor_loss": module.actor_parameters(),
            "alpha_loss": [module.log_alpha] if config.alpha_lr > 0 else None,
        }
        return terms, {k: v for k, v in params.items() if v is not None}, True
