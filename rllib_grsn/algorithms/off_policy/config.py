"""AlgorithmConfigs of recurrent TD3 and SAC (settings and their checks, no training code).

Defaults are pomdp-baselines' (Ni et al. 2022), which the paper follows: Adam lr 3e-4 for actor
and critic, batches of 32 windows of ``model_config.max_seq_len`` (64) steps, soft target updates
tau 0.005, one gradient step per env step. Discount, budgets and evaluation are set per task in
``tuned_examples/`` (gamma 0.9 there, as in pomdp-baselines' CartPole/Pendulum configs).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt

from rllib_grsn.algorithms.config_checks import SETTINGS, SelfCheckingConfig
from rllib_grsn.algorithms.guide import GuideSettings, guide_settings
from rllib_grsn.algorithms.replay import START_STATES
from rllib_grsn.checks.rllib_settings import NumberOrAuto, UnitInterval
from rllib_grsn.modules.twin_q import EXPLORATION_NOISE, RANDOM_STEPS


class RecurrentOffPolicySettings(BaseModel):
    """Settings shared by recurrent TD3 and SAC (``config:`` keys)."""

    model_config = SETTINGS

    actor_lr: NonNegativeFloat = Field(3e-4, description="actor's Adam learning rate (0 freezes it)")
    critic_lr: NonNegativeFloat = Field(3e-4, description="critics' Adam learning rate (0 freezes them)")
    tau: float = Field(0.005, gt=0.0, le=1.0, description="Polyak coefficient of the soft target updates")
    num_updates_per_env_step: PositiveFloat = Field(1.0, description="gradient steps per sampled env step")
    num_steps_sampled_before_learning_starts: NonNegativeInt = Field(
        1000, description="env steps collected before the first update"
    )
    num_random_steps: NonNegativeInt = Field(
        1000, description="first env steps acted uniformly at random, over all env runners"
    )
    replay_capacity: PositiveInt = Field(1_000_000, description="env steps kept (oldest episodes evicted)")
    replay_start_state: Literal[START_STATES] = Field(  # type: ignore[valid-type]
        "zero",
        description="zero: every window starts from the initial state (Ni et al.); stored: from the state "
        "recorded while acting (R2D2)",
    )
    burn_in: NonNegativeInt = Field(
        0, description="steps at the start of each window that only warm up the cores (no loss)"
    )
    store_buffer_in_checkpoints: bool = Field(
        True, description="save the replay with each checkpoint, so a resumed run keeps its data"
    )
    guide: GuideSettings | None = Field(
        None,
        description="a guide that acts the first steps of training episodes, with behaviour cloning on "
        "its actions (TD3BC+JSRL; continuous actions only; see rllib_grsn.algorithms.guide)",
    )


class TD3Settings(RecurrentOffPolicySettings):
    """TD3's settings: target policy smoothing and noise in normalised action units."""

    policy_delay: PositiveInt = Field(2, description="actor and target updates every N critic updates")
    target_noise: NonNegativeFloat = Field(0.2, description="target policy smoothing noise")
    target_noise_clip: NonNegativeFloat = Field(0.5, description="clip of the smoothing noise")
    exploration_noise: NonNegativeFloat = Field(0.1, description="Gaussian exploration noise")


class RecurrentSACSettings(RecurrentOffPolicySettings):
    """SAC's settings: the automatically tuned temperature."""

    alpha_lr: NonNegativeFloat = Field(3e-4, description="temperature learning rate (0 keeps it fixed)")
    initial_alpha: PositiveFloat = Field(1.0, description="initial temperature (pomdp-baselines: 1)")
    target_entropy: NumberOrAuto = Field(
        "auto", description="auto: 0.7 log|A| (Discrete) or -dim(A) (Box); or a number"
    )
    target_entropy_scale: UnitInterval = Field(0.7, description="the 0.7 of the Discrete auto target")


class RecurrentOffPolicyConfig(SelfCheckingConfig):
    """What recurrent TD3 and SAC share; their own settings are the ``settings`` model's fields."""

    settings: type[RecurrentOffPolicySettings] = RecurrentOffPolicySettings

    def __init__(self, algo_class: type | None = None):
        super().__init__(algo_class=algo_class)
        self.train_batch_size_per_learner = 32
        self.grad_clip = None
        # Acting: one env on the driver, short fragments so the policy acting is at most a few
        # dozen updates old; one training iteration (and evaluation) per 1000 env steps.
        self.num_env_runners = 0
        self.rollout_fragment_length = 25
        self.min_sample_timesteps_per_iteration = 1000
        self.min_time_s_per_iteration = None
        self.gamma = 0.99

    @property
    def _model_config_auto_includes(self) -> dict[str, Any]:
        return super()._model_config_auto_includes | {RANDOM_STEPS: self.num_random_steps}

    @property
    def guide_settings(self) -> GuideSettings | None:
        """``guide`` as :class:`GuideSettings` (None without a guide)."""
        return guide_settings(self.guide)

    def cross_field_problems(self) -> list[str]:
        if self.num_learners > 1:
            return ["num_learners: recurrent TD3/SAC train on one learner; use 0 or 1"]
        if self.guide is not None:
            from rllib_grsn.algorithms.guide.checks import guide_problems

            return guide_problems(self.guide, self.env, self.env_config)
        return []

    def build_module_to_env_connector(self, env=None, spaces=None):
        """RLlib's pipeline, with the guide's :class:`GuideActions` first (training EnvRunners only:
        an evaluation config, ``in_evaluation``, never acts with the guide)."""
        pipeline = super().build_module_to_env_connector(env, spaces)
        settings = self.guide_settings
        if settings is not None and not self.in_evaluation:
            from rllib_grsn.algorithms.guide.connector import GuideActions

            pipeline.prepend(
                GuideActions(
                    input_observation_space=pipeline.input_observation_space,
                    input_action_space=pipeline.input_action_space,
                    guide=settings,
                )
            )
        return pipeline

    @property
    def window_length(self) -> int:
        """Steps per replayed window that carry a loss: ``max_seq_len`` of the module's model_config
        (the RLModuleSpec's, where `rllib train file` puts a spiking core's settings), default 64."""
        spec_config = getattr(self._rl_module_spec, "model_config", None) or {}
        return int({**self.model_config, **spec_config}.get("max_seq_len", 64))


class TD3Config(RecurrentOffPolicyConfig):
    """Recurrent TD3 (Fujimoto et al. 2018) on a spiking or GRU core (settings: :class:`TD3Settings`)."""

    settings = TD3Settings

    def __init__(self, algo_class: type | None = None):
        from rllib_grsn.algorithms.off_policy.algorithm import TD3

        super().__init__(algo_class=algo_class or TD3)

    @property
    def _model_config_auto_includes(self) -> dict[str, Any]:
        return super()._model_config_auto_includes | {EXPLORATION_NOISE: self.exploration_noise}

    def get_default_rl_module_spec(self):
        from ray.rllib.core.rl_module.rl_module import RLModuleSpec

        from rllib_grsn.modules.twin_q import SpikingTD3Module

        return RLModuleSpec(module_class=SpikingTD3Module)

    def get_default_learner_class(self) -> type:
        from rllib_grsn.algorithms.off_policy.learner import TD3Learner

        return TD3Learner


class RecurrentSACConfig(RecurrentOffPolicyConfig):
    """Recurrent SAC, discrete (Christodoulou 2019) or continuous (Haarnoja et al. 2018); settings:
    :class:`RecurrentSACSettings`."""

    settings = RecurrentSACSettings

    def __init__(self, algo_class: type | None = None):
        from rllib_grsn.algorithms.off_policy.algorithm import RecurrentSAC

        super().__init__(algo_class=algo_class or RecurrentSAC)

    @property
    def _model_config_auto_includes(self) -> dict[str, Any]:
        return super()._model_config_auto_includes | {"initial_alpha": self.initial_alpha}

    def get_default_rl_module_spec(self):
        from ray.rllib.core.rl_module.rl_module import RLModuleSpec

        from rllib_grsn.modules.twin_q import SpikingSACModule

        return RLModuleSpec(module_class=SpikingSACModule)

    def get_default_learner_class(self) -> type:
        from rllib_grsn.algorithms.off_policy.learner import SACLearner

        return SACLearner
