"""AlgorithmConfig of QMIX and VDN (settings and their checks, no training code).

Defaults are pymarl2's ``qmix.yaml`` (Hu et al. 2021), whose numbers the paper's Table 2 builds on:
Adam lr 1e-3, batches of 128 whole episodes from a replay of 5000 episodes, TD(lambda) 0.6, gamma
0.99, epsilon 1.0 -> 0.05 over 100k env steps, target networks copied every 200 episodes, mixing
embed 32 with hypernetworks of 64, gradient-norm clip 10, 8 envs acting in parallel and one
gradient step per 8 episodes. ``mixer: vdn`` gives VDN (Sunehag et al. 2018) with everything else
the same.
"""

from __future__ import annotations

from typing import Any

from ray.rllib.algorithms.algorithm_config import NotProvided

from rllib_grsn.algorithms.config_checks import (
    SCHEDULE_EXAMPLE,
    SelfCheckingConfig,
    integer_errors,
    is_number,
    schedule_problem,
    set_provided,
)
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


def lr_errors(lr: Any) -> list[str]:
    """The problem with ``lr``, a number >= 0 or a schedule in RLlib's format (empty when valid)."""
    if isinstance(lr, (list, tuple)):
        problem = schedule_problem("lr", lr, 1e-3)
        return [] if problem is None else [problem]
    if is_number(lr) and lr >= 0:
        return []
    return [f"lr must be a number >= 0 or a schedule such as {SCHEDULE_EXAMPLE}, got {lr!r}"]


class QMixConfig(SelfCheckingConfig):
    """QMIX (Rashid et al. 2018) / VDN on a shared recurrent agent network.

    Training (:meth:`training`):
        lr: Adam learning rate of agent network and mixer (pymarl2: 1e-3), or RLlib's schedule of
            it over lifetime env steps sampled, e.g. ``[[0, 1e-3], [2000000, 1e-4]]`` (linear
            between the points, constant after the last; RLlib's Learner applies it).
        train_batch_size_per_learner: whole episodes per gradient step (128).
        mixer: ``qmix`` (monotonic hypernetwork mixer over the global state) or ``vdn`` (sum).
        mixing_embed_dim, hypernet_hidden: QMixer sizes (32, 64).
        double_q: pick the next action with the online network, value it with the target (True).
        td_lambda: lambda of the TD(lambda) targets; 0 gives one-step targets (pymarl2: 0.6).
        epsilon_start, epsilon_finish, epsilon_anneal_steps: linear epsilon-greedy schedule over
            global env steps (1.0 -> 0.05 over 100k).
        replay_capacity: whole episodes kept (5000; oldest evicted first).
        num_episodes_before_learning_starts: replay size before the first update (one batch).
        num_updates_per_episode: gradient steps per sampled episode (1/8: one step per 8 episodes).
        target_update_interval: episodes between hard copies into the target networks (200).
        store_buffer_in_checkpoints: save the replay with each checkpoint (off: a full SMAC replay
            is gigabytes; a resumed run refills it while epsilon stays where it was).
        grad_clip: global-norm gradient clip (10).
    """

    def __init__(self, algo_class: type | None = None):
        from rllib_grsn.algorithms.qmix.algorithm import QMix
        from rllib_grsn.envs.team_env_runner import TeamEnvRunner

        super().__init__(algo_class=algo_class or QMix)
        self.lr = 1e-3
        self.gamma = 0.99
        self.train_batch_size_per_learner = 128
        self.mixer = "qmix"
        self.mixing_embed_dim = 32
        self.hypernet_hidden = 64
        self.double_q = True
        self.td_lambda = 0.6
        self.epsilon_start = 1.0
        self.epsilon_finish = 0.05
        self.epsilon_anneal_steps = 100_000
        self.replay_capacity = 5000
        self.num_episodes_before_learning_starts = 128
        self.num_updates_per_episode = 0.125
        self.target_update_interval = 200
        self.store_buffer_in_checkpoints = False
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

    def training(  # type: ignore[override]
        self,
        *,
        mixer: str | None = NotProvided,
        mixing_embed_dim: int | None = NotProvided,
        hypernet_hidden: int | None = NotProvided,
        double_q: bool | None = NotProvided,
        td_lambda: float | None = NotProvided,
        epsilon_start: float | None = NotProvided,
        epsilon_finish: float | None = NotProvided,
        epsilon_anneal_steps: int | None = NotProvided,
        replay_capacity: int | None = NotProvided,
        num_episodes_before_learning_starts: int | None = NotProvided,
        num_updates_per_episode: float | None = NotProvided,
        target_update_interval: int | None = NotProvided,
        store_buffer_in_checkpoints: bool | None = NotProvided,
        **kwargs: Any,
    ) -> QMixConfig:
        super().training(**kwargs)
        set_provided(
            self,
            mixer=mixer,
            mixing_embed_dim=mixing_embed_dim,
            hypernet_hidden=hypernet_hidden,
            double_q=double_q,
            td_lambda=td_lambda,
            epsilon_start=epsilon_start,
            epsilon_finish=epsilon_finish,
            epsilon_anneal_steps=epsilon_anneal_steps,
            replay_capacity=replay_capacity,
            num_episodes_before_learning_starts=num_episodes_before_learning_starts,
            num_updates_per_episode=num_updates_per_episode,
            target_update_interval=target_update_interval,
            store_buffer_in_checkpoints=store_buffer_in_checkpoints,
        )
        return self

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

    def off_policy_errors(self) -> list[str]:
        """One message per bad setting (checked by ``validate`` and before Ray starts)."""
        errors = []
        if self.mixer not in MIXERS:
            errors.append(f"mixer must be one of: {', '.join(MIXERS)}; got {self.mixer!r}")
        for key, low, high in (
            ("gamma", 0.0, 1.0),
            ("td_lambda", 0.0, 1.0),
            ("epsilon_start", 0.0, 1.0),
            ("epsilon_finish", 0.0, 1.0),
        ):
            value = getattr(self, key)
            if not is_number(value) or not low <= value <= high:
                errors.append(f"{key} must be a number in [{low:g}, {high:g}], got {value!r}")
        if is_number(self.epsilon_start) and is_number(self.epsilon_finish):
            if self.epsilon_finish > self.epsilon_start:
                errors.append(
                    f"epsilon_finish ({self.epsilon_finish}) must not exceed "
                    f"epsilon_start ({self.epsilon_start})"
                )
        if not is_number(self.num_updates_per_episode) or not self.num_updates_per_episode > 0:
            errors.append(
                f"num_updates_per_episode must be a number > 0, got {self.num_updates_per_episode!r}"
            )
        errors += lr_errors(self.lr)
        errors += integer_errors(
            self,
            {
                "mixing_embed_dim": 1,
                "hypernet_hidden": 1,
                "epsilon_anneal_steps": 0,
                "replay_capacity": 1,
                "num_episodes_before_learning_starts": 0,
                "target_update_interval": 1,
                "train_batch_size_per_learner": 1,
            },
        )
        if (
            isinstance(self.replay_capacity, int)
            and isinstance(self.train_batch_size_per_learner, int)
            and self.replay_capacity < self.train_batch_size_per_learner
        ):
            errors.append(
                f"replay_capacity ({self.replay_capacity}) must hold at least one batch "
                f"(train_batch_size_per_learner = {self.train_batch_size_per_learner})"
            )
        if self.num_learners > 1:
            errors.append("num_learners > 1 is not supported by QMIX yet; use 0 or 1")
        return errors

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
