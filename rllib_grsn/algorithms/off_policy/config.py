"""AlgorithmConfigs of recurrent TD3 and SAC (settings and their checks, no training code).

Defaults are pomdp-baselines' (Ni et al. 2022), which the paper follows: Adam lr 3e-4 for actor
and critic, batches of 32 windows of ``model_config.max_seq_len`` (64) steps, soft target updates
tau 0.005, one gradient step per env step. Discount, budgets and evaluation are set per task in
``tuned_examples/`` (gamma 0.9 there, as in pomdp-baselines' CartPole/Pendulum configs).
"""

from __future__ import annotations

from typing import Any

from ray.rllib.algorithms.algorithm_config import NotProvided

from rllib_grsn.algorithms.config_checks import SelfCheckingConfig, integer_errors, set_provided
from rllib_grsn.algorithms.replay import START_STATES
from rllib_grsn.modules.twin_q import EXPLORATION_NOISE, RANDOM_STEPS


class RecurrentOffPolicyConfig(SelfCheckingConfig):
    """Settings shared by recurrent TD3 and SAC.

    Training (:meth:`training`):
        actor_lr, critic_lr: Adam learning rates (pomdp-baselines: 3e-4 both).
        tau: Polyak coefficient of the soft target updates.
        train_batch_size_per_learner: windows per gradient step (32).
        num_updates_per_env_step: gradient steps per sampled env step (1.0, as pomdp-baselines).
        num_steps_sampled_before_learning_starts: env steps collected before the first update.
        num_random_steps: first env steps acted uniformly at random (pomdp-baselines' initial
            random rollouts); counted over all env runners.
        replay_capacity: env steps the sequence replay keeps (oldest episodes evicted first).
        replay_start_state: ``zero`` (every window starts from the initial state, Ni et al.) or
            ``stored`` (from the state recorded while acting, R2D2).
        burn_in: steps at the start of each window that only warm up the cores (no loss); mostly
            useful with ``replay_start_state: stored``.
        store_buffer_in_checkpoints: save the replay buffer with each checkpoint so a resumed run
            continues on the same data (on by default; the buffers here are small).
    """

    def __init__(self, algo_class: type | None = None):
        super().__init__(algo_class=algo_class)
        self.actor_lr = 3e-4
        self.critic_lr = 3e-4
        self.tau = 0.005
        self.train_batch_size_per_learner = 32
        self.num_updates_per_env_step = 1.0
        self.num_steps_sampled_before_learning_starts = 1000
        self.num_random_steps = 1000
        self.replay_capacity = 1_000_000
        self.replay_start_state = "zero"
        self.burn_in = 0
        self.store_buffer_in_checkpoints = True
        self.grad_clip = None
        # Acting: one env on the driver, short fragments so the policy acting is at most a few
        # dozen updates old; one training iteration (and evaluation) per 1000 env steps.
        self.num_env_runners = 0
        self.rollout_fragment_length = 25
        self.min_sample_timesteps_per_iteration = 1000
        self.min_time_s_per_iteration = None
        self.gamma = 0.99

    def training(  # type: ignore[override]
        self,
        *,
        actor_lr: float | None = NotProvided,
        critic_lr: float | None = NotProvided,
        tau: float | None = NotProvided,
        num_updates_per_env_step: float | None = NotProvided,
        num_steps_sampled_before_learning_starts: int | None = NotProvided,
        num_random_steps: int | None = NotProvided,
        replay_capacity: int | None = NotProvided,
        replay_start_state: str | None = NotProvided,
        burn_in: int | None = NotProvided,
        store_buffer_in_checkpoints: bool | None = NotProvided,
        **kwargs: Any,
    ) -> RecurrentOffPolicyConfig:
        super().training(**kwargs)
        set_provided(
            self,
            actor_lr=actor_lr,
            critic_lr=critic_lr,
            tau=tau,
            num_updates_per_env_step=num_updates_per_env_step,
            num_steps_sampled_before_learning_starts=num_steps_sampled_before_learning_starts,
            num_random_steps=num_random_steps,
            replay_capacity=replay_capacity,
            replay_start_state=replay_start_state,
            burn_in=burn_in,
            store_buffer_in_checkpoints=store_buffer_in_checkpoints,
        )
        return self

    @property
    def _model_config_auto_includes(self) -> dict[str, Any]:
        return super()._model_config_auto_includes | {RANDOM_STEPS: self.num_random_steps}

    def off_policy_errors(self) -> list[str]:
        """One message per bad setting (checked by ``validate`` and before Ray starts)."""
        errors = []
        for key in ("actor_lr", "critic_lr"):
            value = getattr(self, key)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value >= 0:
                errors.append(f"{key} must be a number >= 0 (0 freezes that network), got {value!r}")
        value = self.num_updates_per_env_step
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
            errors.append(f"num_updates_per_env_step must be a number > 0, got {value!r}")
        if not isinstance(self.tau, (int, float)) or not 0.0 < self.tau <= 1.0:
            errors.append(f"tau must be in (0, 1], got {self.tau!r}")
        if not 0.0 <= self.gamma <= 1.0:
            errors.append(f"gamma must be in [0, 1], got {self.gamma!r}")
        if self.replay_start_state not in START_STATES:
            allowed = ", ".join(START_STATES)
            errors.append(f"replay_start_state must be one of: {allowed}; got {self.replay_start_state!r}")
        errors += integer_errors(
            self,
            {
                "burn_in": 0,
                "replay_capacity": 1,
                "num_random_steps": 0,
                "num_steps_sampled_before_learning_starts": 0,
                "train_batch_size_per_learner": 1,
            },
        )
        if self.num_learners > 1:
            errors.append("num_learners > 1 is not supported by recurrent TD3/SAC yet; use 0 or 1")
        return errors

    @property
    def window_length(self) -> int:
        """Steps per replayed window that carry a loss: ``max_seq_len`` of the module's model_config
        (the RLModuleSpec's, where `rllib train file` puts a spiking core's settings), default 64."""
        spec_config = getattr(self._rl_module_spec, "model_config", None) or {}
        return int({**self.model_config, **spec_config}.get("max_seq_len", 64))


class TD3Config(RecurrentOffPolicyConfig):
    """Recurrent TD3 (Fujimoto et al. 2018) on a spiking or GRU core.

    Extra settings: ``policy_delay`` (actor and target updates every 2nd critic update),
    ``target_noise`` / ``target_noise_clip`` (target policy smoothing, 0.2 / 0.5 in the normalised
    action units), ``exploration_noise`` (0.1, Gaussian, normalised units).
    """

    def __init__(self, algo_class: type | None = None):
        from rllib_grsn.algorithms.off_policy.algorithm import TD3

        super().__init__(algo_class=algo_class or TD3)
        self.policy_delay = 2
        self.target_noise = 0.2
        self.target_noise_clip = 0.5
        self.exploration_noise = 0.1

    def training(  # type: ignore[override]
        self,
        *,
        policy_delay: int | None = NotProvided,
        target_noise: float | None = NotProvided,
        target_noise_clip: float | None = NotProvided,
        exploration_noise: float | None = NotProvided,
        **kwargs: Any,
    ) -> TD3Config:
        super().training(**kwargs)
        set_provided(
            self,
            policy_delay=policy_delay,
            target_noise=target_noise,
            target_noise_clip=target_noise_clip,
            exploration_noise=exploration_noise,
        )
        return self

    @property
    def _model_config_auto_includes(self) -> dict[str, Any]:
        return super()._model_config_auto_includes | {EXPLORATION_NOISE: self.exploration_noise}

    def off_policy_errors(self) -> list[str]:
        errors = super().off_policy_errors()
        if (
            isinstance(self.policy_delay, bool)
            or not isinstance(self.policy_delay, int)
            or self.policy_delay < 1
        ):
            errors.append(f"policy_delay must be an integer >= 1, got {self.policy_delay!r}")
        for key in ("target_noise", "target_noise_clip", "exploration_noise"):
            value = getattr(self, key)
            if not isinstance(value, (int, float)) or value < 0:
                errors.append(f"{key} must be a number >= 0, got {value!r}")
        return errors

    def get_default_rl_module_spec(self):
        from ray.rllib.core.rl_module.rl_module import RLModuleSpec

        from rllib_grsn.modules.twin_q import SpikingTD3Module

        return RLModuleSpec(module_class=SpikingTD3Module)

    def get_default_learner_class(self) -> type:
        from rllib_grsn.algorithms.off_policy.learner import TD3Learner

        return TD3Learner


class RecurrentSACConfig(RecurrentOffPolicyConfig):
    """Recurrent SAC, discrete (Christodoulou 2019) or continuous (Haarnoja et al. 2018).

    Extra settings: ``alpha_lr`` (3e-4), ``initial_alpha`` (1.0, pomdp-baselines' log_alpha = 0),
    ``target_entropy`` (``auto``: 0.7 * log|A| for Discrete as pomdp-baselines, -dim(A) for Box,
    or a number), ``target_entropy_scale`` (the 0.7).
    """

    def __init__(self, algo_class: type | None = None):
        from rllib_grsn.algorithms.off_policy.algorithm import RecurrentSAC

        super().__init__(algo_class=algo_class or RecurrentSAC)
        self.alpha_lr = 3e-4
        self.initial_alpha = 1.0
        self.target_entropy = "auto"
        self.target_entropy_scale = 0.7

    def training(  # type: ignore[override]
        self,
        *,
        alpha_lr: float | None = NotProvided,
        initial_alpha: float | None = NotProvided,
        target_entropy: str | float | None = NotProvided,
        target_entropy_scale: float | None = NotProvided,
        **kwargs: Any,
    ) -> RecurrentSACConfig:
        super().training(**kwargs)
        set_provided(
            self,
            alpha_lr=alpha_lr,
            initial_alpha=initial_alpha,
            target_entropy=target_entropy,
            target_entropy_scale=target_entropy_scale,
        )
        return self

    @property
    def _model_config_auto_includes(self) -> dict[str, Any]:
        return super()._model_config_auto_includes | {"initial_alpha": self.initial_alpha}

    def off_policy_errors(self) -> list[str]:
        errors = super().off_policy_errors()
        if not isinstance(self.alpha_lr, (int, float)) or not self.alpha_lr >= 0:
            errors.append(f"alpha_lr must be a number >= 0 (0 keeps alpha fixed), got {self.alpha_lr!r}")
        if not isinstance(self.initial_alpha, (int, float)) or not self.initial_alpha > 0:
            errors.append(f"initial_alpha must be a number > 0, got {self.initial_alpha!r}")
        if self.target_entropy != "auto" and not isinstance(self.target_entropy, (int, float)):
            errors.append(f"target_entropy must be 'auto' or a number, got {self.target_entropy!r}")
        if not isinstance(self.target_entropy_scale, (int, float)) or not 0 <= self.target_entropy_scale <= 1:
            errors.append(f"target_entropy_scale must be in [0, 1], got {self.target_entropy_scale!r}")
        return errors

    def get_default_rl_module_spec(self):
        from ray.rllib.core.rl_module.rl_module import RLModuleSpec

        from rllib_grsn.modules.twin_q import SpikingSACModule

        return RLModuleSpec(module_class=SpikingSACModule)

    def get_default_learner_class(self) -> type:
        from rllib_grsn.algorithms.off_policy.learner import SACLearner

        return SACLearner
