"""An RLlib ``MultiAgentEnvRunner`` that batches SMAX battles with ``jax.vmap`` (QMIX's EnvRunner).

RLlib 2.60's ``MultiAgentEnvRunner.make_env`` always builds a ``SyncVectorMultiAgentEnv``, one Python
``step`` per sub-env. For the ``smac`` env on the SMAX backend, :class:`TeamEnvRunner` builds a
:class:`~rllib_grsn.envs.smax_vector.SMAXVectorEnv` instead, which steps every sub-env in one jitted
call; everything else (``_sample``, episodes, connectors, callbacks, metrics) is RLlib's, unchanged,
because the vector env keeps ``SyncVectorMultiAgentEnv``'s contract.

env_config ``vectorize`` (:func:`~rllib_grsn.envs.multi_agent.check_vectorize`) picks the vector env:

- ``auto`` (default): ``jax`` when the ``smac`` env resolves to backend ``smax`` and
  ``num_envs_per_env_runner > 1``, else ``sync`` (one SMAX env gains nothing from a batch of one);
- ``sync``: RLlib's own ``make_env``;
- ``jax``: :class:`~rllib_grsn.envs.smax_vector.SMAXVectorEnv`; ``ValueError`` unless the env is
  ``smac`` on backend ``smax``.

Any other env (``mpe_simple_spread``, ``two_step_game``, StarCraft II) goes to RLlib's ``make_env``.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from ray.rllib.callbacks.utils import make_callback
from ray.rllib.env.env_context import EnvContext
from ray.rllib.env.multi_agent_env_runner import MultiAgentEnvRunner
from ray.rllib.utils.metrics import (
    NUM_AGENT_STEPS_SAMPLED,
    NUM_AGENT_STEPS_SAMPLED_LIFETIME,
    NUM_ENV_STEPS_SAMPLED,
    NUM_ENV_STEPS_SAMPLED_LIFETIME,
    NUM_EPISODES,
    NUM_EPISODES_LIFETIME,
    NUM_MODULE_STEPS_SAMPLED,
    NUM_MODULE_STEPS_SAMPLED_LIFETIME,
)
from ray.rllib.utils.pre_checks.env import check_multiagent_environments

from rllib_grsn.envs.multi_agent import check_vectorize, resolve_smac_backend

logger = logging.getLogger(__name__)

SMAC_ENV = "smac"


def vector_env_kind(env: Any, env_config: Any, num_envs: int) -> str:
    """``"jax"`` or ``"sync"``: which vector env :class:`TeamEnvRunner` builds (see the module docstring).

    ``env`` is the config's env (a registered name or a class); ``env_config`` its config. Raises
    ``ValueError`` for an unknown ``vectorize`` or ``vectorize: jax`` without the SMAX backend.
    """
    mode = check_vectorize(env_config)
    if mode == "sync":
        return "sync"
    backend = resolve_smac_backend(env_config) if env == SMAC_ENV else None
    if backend != "smax":
        if mode == "jax":
            what = f"the smac env resolves to backend {backend}" if backend else f"the env is {env!r}"
            raise ValueError(
                "env_config vectorize: jax batches SMAX battles with jax.vmap and needs the smac env on "
                f"backend smax, but {what}; use vectorize: auto or sync"
            )
        return "sync"
    if mode == "jax" or num_envs > 1:
        return "jax"
    return "sync"


class TeamEnvRunner(MultiAgentEnvRunner):
    """``MultiAgentEnvRunner`` whose ``make_env`` builds a ``SMAXVectorEnv`` for SMAX, RLlib's otherwise.

    It also counts the sampled env, agent and module steps once per ``sample()`` call instead of
    once per agent and env step: RLlib's ``_increase_sampled_metrics`` makes 2 + 4 x agents
    ``MetricsLogger.log_value`` calls for every step of every sub-env (8 SMAX battles of 8 marines:
    ~270 calls per vector step), about a tenth of QMIX's sampling time. The counters are sums, so
    the reduced metrics are the same numbers.
    """

    # Counter name -> its lifetime twin, as RLlib logs them.
    _LIFETIME_OF = {
        NUM_ENV_STEPS_SAMPLED: NUM_ENV_STEPS_SAMPLED_LIFETIME,
        NUM_EPISODES: NUM_EPISODES_LIFETIME,
        NUM_AGENT_STEPS_SAMPLED: NUM_AGENT_STEPS_SAMPLED_LIFETIME,
        NUM_MODULE_STEPS_SAMPLED: NUM_MODULE_STEPS_SAMPLED_LIFETIME,
    }
    # (counter name, agent or module id) -> steps, gathered during one `_sample`; None outside it.
    _pending_counts: Counter | None = None

    def _sample(self, **kwargs: Any) -> list:
        self._pending_counts = Counter()
        try:
            return super()._sample(**kwargs)
        finally:
            self._log_sampled_counts()

    def _increase_sampled_metrics(self, num_steps: int, next_obs: dict, episode: Any) -> int:
        counts = self._pending_counts
        if counts is None:  # called outside `_sample` (not done by RLlib 2.60): log at once
            return super()._increase_sampled_metrics(num_steps, next_obs, episode)
        counts[NUM_ENV_STEPS_SAMPLED, None] += num_steps
        if episode.is_done:
            counts[NUM_EPISODES, None] += 1
        for aid in next_obs:
            counts[NUM_AGENT_STEPS_SAMPLED, str(aid)] += 1
            counts[NUM_MODULE_STEPS_SAMPLED, episode.module_for(aid)] += 1
        return num_steps

    def _log_sampled_counts(self) -> None:
        """Logs what ``_increase_sampled_metrics`` counted, with RLlib's keys and reductions."""
        counts, self._pending_counts = self._pending_counts or Counter(), None
        for (name, sub_key), value in counts.items():
            lifetime = self._LIFETIME_OF[name]
            self.metrics.log_value(name if sub_key is None else (name, sub_key), value, reduce="sum")
            self.metrics.log_value(
                lifetime if sub_key is None else (lifetime, sub_key),
                value,
                reduce="lifetime_sum",
                with_throughput=name == NUM_ENV_STEPS_SAMPLED,
            )

    def make_env(self) -> None:
        """Builds ``self.env`` as RLlib's ``make_env`` does, with a ``SMAXVectorEnv`` where it applies.

        The jax branch repeats the parent's bookkeeping (close the old env, ``EnvContext``, optional
        env checks, the initial-reset flag, the ``on_environment_created`` callback); only the vector
        env differs. It is also what RLlib calls to recreate a failed env.
        """
        kind = vector_env_kind(
            self.config.env, self.config.env_config, int(self.config.num_envs_per_env_runner)
        )
        if kind == "sync":
            super().make_env()
            return
        from rllib_grsn.envs.smax import SMAXEnv
        from rllib_grsn.envs.smax_vector import SMAXVectorEnv

        if self.env is not None:
            try:
                self.env.close()
            except Exception as exc:  # as RLlib: a failing close must not stop the rebuild
                logger.warning(f"Tried closing the existing env (multi-agent), but failed with error: {exc}")
            self.env = None

        env_ctx = self.config.env_config
        if not isinstance(env_ctx, EnvContext):
            env_ctx = EnvContext(
                env_ctx,
                worker_index=self.worker_index,
                num_workers=self.config.num_env_runners,
                remote=self.config.remote_worker_envs,
            )
        # As the smac env creator does for one env: the resolved backend, no StarCraft II keys.
        env_config = {**dict(env_ctx), "backend": "smax"}
        self.env = SMAXVectorEnv(env_config, num_envs=int(self.config.num_envs_per_env_runner))
        self.num_envs = self.env.num_envs
        if not self.config.disable_env_checking:
            # RLlib checks each sub-env by resetting and stepping it; the vector env's sub-envs are
            # views, so one real SMAXEnv of the same config stands in for them (same battle code).
            check_multiagent_environments(SMAXEnv(env_config))

        self._needs_initial_reset = True
        make_callback(
            "on_environment_created",
            callbacks_objects=self._callbacks,
            callbacks_functions=self.config.callbacks_on_environment_created,
            kwargs=dict(
                env_runner=self,
                metrics_logger=self.metrics,
                env=self.env.unwrapped,
                env_context=env_ctx,
            ),
        )
