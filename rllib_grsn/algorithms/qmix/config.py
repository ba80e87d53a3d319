"""AlgorithmConfig of QMIX and VDN (settings and their checks, no training code).

Defaults are pymarl2's ``qmix.yaml`` (Hu et al. 2021), whose numbers the paper's Table 2 builds on:
Adam lr 1e-3, batches of 128 whole episodes from a replay of 5000 episodes, TD(lambda) 0.6, gamma
0.99, epsilon 1.0 -> 0.05 over 100k env steps, target networks copied every 200 episodes, mixing
embed 32 with hypernetworks of 64, gradient-norm clip 10, 8 envs acting in parallel and one
gradient step per 8 episodes. ``mixer: vdn`` gives VDN (Sunehag et al. 2018) with everything else
the same.
"""

from __future__ import annotations

from typing import Any, Literal, Self

from pydantic import BaseModel, Field, NonNegativeInt, PositiveFloat, PositiveInt, model_validator

from rllib_grsn.algorithms.config_checks import SETTINGS, SelfCheckingConfig
from rllib_grsn.checks.rllib_settings import UnitInterval
from rllib_grsn.modules.connectors import AgentRowOrder, agent_inputs_connector
from rllib_grsn.modules.qmix import MIXERS
from rllib_grsn.tracking.team_metrics import TeamMetricsCallback

# All agents of the team act through this one module (parameter sharing, as pymarl's agents).
SHARED_MODULE_ID = "shared"


def map_agents_to_shared_module(agent_id: Any, episode: Any = None, **kwargs: Any) -> str:
    """RLlib policy_mapping_fn: every agent uses the shared module. Module-level so it pickles."""
    return SHARED_MODULE_ID


def with_agent_row_order(pipeline: Any) -> Any:
    """``pipeline`` (an env-to-module ConnectorPipelineV2) with :class:`AgentRowOrder` inserted just
    before RLlib's ``AgentToModuleMapping`` (a pipeline without one is returned as it is)."""
    from ray.rllib.connectors.common import AgentToModuleMapping

    if AgentToModuleMapping in {type(c) for c in pipeline.connectors}:
        pipeline.insert_before(AgentToModuleMapping, AgentRowOrder())
    return pipeline


class QMixSettings(BaseModel):
    """QMIX's own settings (``config:`` keys), pymarl2's ``qmix.yaml`` values by default."""

    model_config = SETTINGS

    mixer: Literal[MIXERS] = Field(  # type: ignore[valid-type]
        "qmix", description="qmix (monotonic hypernetwork mixer over the global state) or vdn (sum)"
    )
    mixing_embed_dim: PositiveInt = Field(32, description="QMixer's mixing embedding size")
    hypernet_hidden: PositiveInt = Field(64, description="hidden size of QMixer's hypernetworks")
    double_q: bool = Field(True, description="pick the next action online, value it with the target")
    td_lambda: UnitInterval = Field(0.6, description="lambda of the TD(lambda) targets (0: one-step)")
    epsilon_start: UnitInterval = Field(1.0, description="epsilon-greedy: first value")
    epsilon_finish: UnitInterval = Field(0.05, description="epsilon-greedy: value after the anneal")
    epsilon_anneal_steps: NonNegativeInt = Field(100_000, description="linear anneal over global env steps")
    replay_capacity: PositiveInt = Field(5000, description="whole episodes kept (oldest evicted first)")
    num_episodes_before_learning_starts: NonNegativeInt = Field(
        128, description="replay size before the first update"
    )
    num_updates_per_episode: PositiveFloat = Field(
        0.125, description="gradient steps per sampled episode (1/8: one per 8 episodes)"
    )
    target_update_interval: PositiveInt = Field(
        200, description="episodes between hard copies into the target networks"
    )
    length_buckets: PositiveInt = Field(
        4,
        description="the learner unrolls a batch's episodes in this many groups of similar length, each "
        "only as far as it needs (1: one unroll padded to the longest episode)",
    )
    team_acting: bool = Field(
        True,
        description="act for every battle x agent in one batched forward pass and record the replay's "
        "team arrays directly (TeamEnvRunner); false: RLlib's per-agent episodes (same episodes, slower)",
    )
    overlap_updates: bool = Field(
        False,
        description="run the gradient steps owed so far in a learner thread while the EnvRunners sample "
        "the next steps, so acting and learning share the cores (the acting weights are then one "
        "training step older); off: sample, then update",
    )
    store_buffer_in_checkpoints: bool = Field(
        False,
        description="save the replay with each checkpoint (off: a full SMAC replay is gigabytes; a "
        "resumed run refills it while epsilon stays where it was)",
    )

    @model_validator(mode="after")
    def _epsilon_decreases(self) -> Self:
        if self.epsilon_finish > self.epsilon_start:
            raise ValueError(
                f"epsilon_finish ({self.epsilon_finish}) must not exceed epsilon_start ({self.epsilon_start})"
            )
        return self


class QMixConfig(SelfCheckingConfig):
    """QMIX (Rashid et al. 2018) / VDN on a shared recurrent agent network.

    Its own settings are :class:`QMixSettings`; of RLlib's, ``lr`` (Adam's, for agent network and
    mixer; a number or RLlib's schedule over lifetime env steps, which RLlib's Learner applies),
    ``train_batch_size_per_learner`` (whole episodes per gradient step), ``gamma`` and ``grad_clip``
    (global norm) carry pymarl2's values.
    """

    settings = QMixSettings

    def __init__(self, algo_class: type | None = None):
        from rllib_grsn.algorithms.qmix.algorithm import QMix
        from rllib_grsn.envs.team_env_runner import TeamEnvRunner

        super().__init__(algo_class=algo_class or QMix)
        self.lr = 1e-3
        self.gamma = 0.99
        self.train_batch_size_per_learner = 128
        self.grad_clip = 10.0
        self.grad_clip_by = "global_norm"
        # Acting: 8 envs on the driver's EnvRunner, 25 steps each per sample() call. Battles still
        # running then go on in the next call, and the replay joins their chunks into whole episodes
        # (RLlib's complete_episodes would reset every env at each call and drop the unfinished
        # battles' steps, about a fifth of them on 8m, which still count as sampled).
        self.num_env_runners = 0
        self.num_envs_per_env_runner = 8
        self.batch_mode = "truncate_episodes"
        self.rollout_fragment_length = 25
        # SMAX's sub-envs step in one jax.vmap-ed call (env_config vectorize); other envs as RLlib's.
        self.env_runner_cls = TeamEnvRunner
        self.min_sample_timesteps_per_iteration = 2000
        self.min_time_s_per_iteration = None
        # Every agent maps to the one shared module; the team adapters pass their own checks.
        self.policies = {SHARED_MODULE_ID}
        self.policy_mapping_fn = map_agents_to_shared_module
        self._env_to_module_connector = agent_inputs_connector
        # Discrete actions: nothing to unsquash or clip, so RLlib's NormalizeAndClipActions (a deep
        # copy and a walk over every agent's action per step) is switched off.
        self.normalize_actions = False
        self.clip_actions = False
        self.disable_env_checking = True
        self.callbacks_class = TeamMetricsCallback
        # Greedy test episodes (pymarl's test_nepisode 32) report win rate and return.
        self.evaluation_config = {"explore": False}

    @property
    def _model_config_auto_includes(self) -> dict[str, Any]:
        return super()._model_config_auto_includes | {
            "mixer": self.mixer,
            "mixing_embed_dim": self.mixing_embed_dim,
            "hypernet_hidden": self.hypernet_hidden,
            "epsilon_start": self.epsilon_start,
            "epsilon_finish": self.epsilon_finish,
            "epsilon_anneal_steps": self.epsilon_anneal_steps,
        }

    def cross_field_problems(self) -> list[str]:
        problems = []
        if self.replay_capacity < self.train_batch_size_per_learner:
            problems.append(
                f"replay_capacity: {self.replay_capacity} episodes cannot hold one batch "
                f"(train_batch_size_per_learner = {self.train_batch_size_per_learner})"
            )
        if self.num_learners > 1:
            problems.append("num_learners: QMIX trains on one learner; use 0 or 1")
        return problems

    def build_env_to_module_connector(self, env: Any = None, spaces: Any = None, device: Any = None) -> Any:
        """RLlib's pipeline without ``AddTimeDimToBatchAndZeroPad``, with the agents' rows in a fixed order.

        ``AgentRowOrder`` goes just before ``AgentToModuleMapping``: RLlib lines the rows up in a
        per-process hash order, which made same-seed runs diverge (see its docstring).

        ``AddTimeDimToBatchAndZeroPad`` gives a stateful module's inputs a time axis of one step,
        leaf by leaf and agent by agent (8 battles of 8 marines, 5 observation leaves each: ~320
        ``np.expand_dims`` per vector step, the largest single connector cost of QMIX's sampling);
        ``SpikingQMixModule`` adds the axis to the batched tensors itself. Without it,
        ``RemoveSingleTsTimeRankFromBatch`` in the module-to-env pipeline has nothing to remove and
        passes the batch through (RLlib tells it so through ``shared_data``).
        """
        from ray.rllib.connectors.common import AddTimeDimToBatchAndZeroPad

        pipeline = super().build_env_to_module_connector(env=env, spaces=spaces, device=device)
        if AddTimeDimToBatchAndZeroPad in {type(c) for c in pipeline.connectors}:
            pipeline.remove(AddTimeDimToBatchAndZeroPad)
        return with_agent_row_order(pipeline)

    def get_default_rl_module_spec(self):
        from ray.rllib.core.rl_module.rl_module import RLModuleSpec

        from rllib_grsn.modules.qmix import SpikingQMixModule

        return RLModuleSpec(module_class=SpikingQMixModule)

    def get_default_learner_class(self) -> type:
        from rllib_grsn.algorithms.qmix.learner import QMixLearner

        return QMixLearner
