"""QMIX's EnvRunner: team acting, and SMAX battles batched with ``jax.vmap``.

:class:`TeamEnvRunner` is an RLlib ``MultiAgentEnvRunner`` (remote runners, restarts, weight sync,
evaluation runners and metrics work as RLlib's) that differs in two ways:

- **Team acting** (``QMixConfig.team_acting``, on by default): ``_sample`` acts for every battle x
  agent in one forward pass per vector step and records the replay's team arrays directly, without
  RLlib's per-agent connectors and ``MultiAgentEpisode``s, and returns finished episodes as
  :class:`~rllib_grsn.algorithms.qmix.TeamEpisode`. It takes the same steps, random draws and counts as
  RLlib's path (``team_acting: false``), which it replaces: the same seed and weights give the same
  episodes. Callbacks get ``on_sample_end``, no per-step or per-episode calls.
- **The vector env.** RLlib 2.60's ``make_env`` always builds a ``SyncVectorMultiAgentEnv``, one Python
  ``step`` per sub-env. For the ``smac`` env on the SMAX backend it builds a
  :class:`~rllib_grsn.envs.smax_vector.SMAXVectorEnv` instead, which steps every sub-env in one jitted
  call and keeps ``SyncVectorMultiAgentEnv``'s contract.

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
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from ray.rllib.callbacks.utils import make_callback
from ray.rllib.env.env_context import EnvContext
from ray.rllib.env.env_runner import ENV_STEP_FAILURE
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
    RLMODULE_INFERENCE_TIMER,
)
from ray.rllib.utils.pre_checks.env import check_multiagent_environments

from rllib_grsn.algorithms.qmix.episode_replay import TeamEpisode
from rllib_grsn.envs.multi_agent import check_vectorize, resolve_smac_backend
from rllib_grsn.modules.connectors import agent_order
from rllib_grsn.modules.qmix import ACTION_MASK_KEY, AGENT_INPUT_KEYS, STATE_KEY, epsilon_at, select_actions
from rllib_grsn.tracking.team_metrics import log_team_metrics

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


@dataclass
class _Battle:
    """What one sub-env's running episode has recorded so far, as the replay stores it."""

    inputs: list[np.ndarray] = field(default_factory=list)  # [N, D] per observation
    masks: list[np.ndarray] = field(default_factory=list)  # [N, A] per observation
    states: list[np.ndarray] = field(default_factory=list)  # [S] per observation
    actions: list[np.ndarray] = field(default_factory=list)  # [N] per step
    rewards: list[float] = field(default_factory=list)  # the team reward per step
    started: float = field(default_factory=time.perf_counter)


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

    # Team acting: the running battles (None: reset by the vector env on its next step) and every
    # agent's recurrent state, rows battle-major in agent order.
    _battles: list[_Battle | None] | None = None
    _team_state: dict[str, torch.Tensor] | None = None

    def _sample(self, **kwargs: Any) -> list:
        self._pending_counts = Counter()
        try:
            if getattr(self.config, "team_acting", False) and self.module is not None:
                if not kwargs.get("random_actions"):
                    return self._team_sample(**kwargs)
            return super()._sample(**kwargs)
        finally:
            self._log_sampled_counts()

    # ------------------------------------------------------------------ team acting

    @property
    def num_unfinished_env_steps(self) -> int:
        """Env steps of the battles still running (team acting): they reach the replay when they end."""
        return sum(len(b.rewards) for b in self._battles or [] if b is not None)

    def _team_sample(
        self,
        *,
        num_timesteps: int | None = None,
        num_episodes: int | None = None,
        explore: bool,
        force_reset: bool = False,
        **kwargs: Any,
    ) -> list[TeamEpisode]:
        """``MultiAgentEnvRunner._sample`` for a team sharing one module, in team arrays.

        Each vector step runs one forward pass of the agent network over every acting battle x agent
        (rows battle-major, agents in ``agent_order``, as RLlib lines them up), keeps every agent's
        recurrent state in one batched tensor, picks epsilon-greedy actions over the available ones,
        and appends the step to its battle's :class:`_Battle`. Only finished episodes are returned,
        as :class:`TeamEpisode`s; a battle still running when the call ends goes on in the next one.
        The steps, draws, seeds and counts are RLlib's: for the same seed and weights the episodes
        are the ones its per-agent path produces.
        """
        if force_reset or num_episodes is not None or self._needs_initial_reset or self._battles is None:
            self._team_reset()
        if num_episodes is not None:
            self._needs_initial_reset = True
        (module_id,) = self.module.keys()
        module = self.module[module_id]
        runners = self.config.num_env_runners or 1
        finished: list[TeamEpisode] = []
        env_ts = eps = 0
        while (eps < num_episodes) if num_timesteps is None else (env_ts < num_timesteps):
            acting = [i for i, battle in enumerate(self._battles) if battle is not None]
            t = (self.num_env_steps_sampled_lifetime // runners + env_ts) * runners
            actions = self._team_act(
                module,
                acting,
                epsilon_at(t, module.epsilon_start, module.epsilon_finish, module.epsilon_anneal_steps)
                if explore
                else 0.0,
            )
            to_env: list[dict] = [{} for _ in range(self.num_envs)]
            for i, row in zip(acting, actions, strict=True):
                to_env[i] = {aid: int(a) for aid, a in zip(self._agents, row, strict=True)}
            results = self._try_env_step(to_env)
            if results == ENV_STEP_FAILURE:  # the env was rebuilt: start over, as RLlib does
                env_ts = 0
                self._team_reset()
                continue
            observations, rewards, terminateds, truncateds, infos = results
            ended = []
            for i, row in zip(acting, actions, strict=True):
                battle = self._battles[i]
                battle.actions.append(row)
                battle.rewards.append(float(rewards[i][self._agents[0]]))  # every agent gets the team reward
                self._team_observe(battle, observations[i], row)
                env_ts += 1
                self._count_step(observations[i], module_id)
                if terminateds[i].get("__all__") or truncateds[i].get("__all__"):
                    ended.append(i)
            for i in range(self.num_envs):
                if self._battles[i] is None:  # reset by the vector env on this step
                    self._team_start(i, observations[i])
            for i in ended:
                if num_episodes is not None and eps >= num_episodes:
                    break  # as RLlib: episodes past the quota are dropped
                terminated = bool(terminateds[i].get("__all__")) and not truncateds[i].get("__all__")
                finished.append(self._team_finish(i, terminated, infos[i], module_id))
                eps += 1
        return finished

    def _team_reset(self) -> None:
        """Resets every sub-env (seeded on the first reset, as RLlib) and starts a battle in each."""
        self._agents = agent_order(self.env.envs[0].unwrapped.possible_agents)
        observations, _ = self._try_env_reset(seed=self._seed if self._needs_initial_reset else None)
        self._needs_initial_reset = False
        (module_id,) = self.module.keys()
        rows = self.num_envs * len(self._agents)
        self._team_state = dict(self.module[module_id].agent.initial_state(rows, device="cpu"))
        self._battles = [None] * self.num_envs
        for i in range(self.num_envs):
            self._team_start(i, observations[i])

    def _team_start(self, index: int, observations: dict) -> None:
        """A new episode in battle ``index``: its reset observation, zero state, no previous action."""
        self._battles[index] = battle = _Battle()
        n = len(self._agents)
        for value in self._team_state.values():
            value[index * n : (index + 1) * n] = 0.0
        self._team_observe(battle, observations, None)

    def _team_observe(self, battle: _Battle, observations: dict, actions: np.ndarray | None) -> None:
        """Appends each agent's network input ``[obs, one-hot id, one-hot previous action]``, the
        available actions and the global state (``AgentIdPrevAction``'s layout)."""
        per_agent = [observations[aid] for aid in self._agents]
        n = len(per_agent)
        masks = np.stack([np.asarray(o[ACTION_MASK_KEY], np.float32) for o in per_agent])
        previous = np.zeros_like(masks)
        if actions is not None:
            previous[np.arange(n), actions] = 1.0
        parts = {
            AGENT_INPUT_KEYS[0]: np.stack(
                [np.asarray(o[AGENT_INPUT_KEYS[0]], np.float32) for o in per_agent]
            ),
            AGENT_INPUT_KEYS[1]: np.eye(n, dtype=np.float32),
            AGENT_INPUT_KEYS[2]: previous,
        }
        battle.inputs.append(np.concatenate([parts[k] for k in AGENT_INPUT_KEYS], axis=-1))
        battle.masks.append(masks)
        battle.states.append(np.asarray(per_agent[0][STATE_KEY], np.float32))

    def _team_act(self, module: Any, acting: list[int], epsilon: float) -> list[np.ndarray]:
        """One forward pass over the agents of the ``acting`` battles; their actions, ``[N]`` each."""
        if not acting:
            return []
        n = len(self._agents)
        rows = torch.as_tensor(np.concatenate([np.arange(i * n, (i + 1) * n) for i in acting]))
        inputs = torch.as_tensor(np.concatenate([self._battles[i].inputs[-1] for i in acting]))
        masks = torch.as_tensor(np.concatenate([self._battles[i].masks[-1] for i in acting]))
        state = {k: v[rows] for k, v in self._team_state.items()}
        with torch.no_grad(), self.metrics.log_time(RLMODULE_INFERENCE_TIMER):
            q, state_out = module.agent(inputs.unsqueeze(1), state)
            actions = select_actions(q, masks.unsqueeze(1), epsilon).squeeze(1)
        for k, v in state_out.items():
            self._team_state[k][rows] = v
        return list(actions.numpy().reshape(len(acting), n))

    def _count_step(self, observations: dict, module_id: str) -> None:
        counts = self._pending_counts
        counts[NUM_ENV_STEPS_SAMPLED, None] += 1
        for aid in observations:
            counts[NUM_AGENT_STEPS_SAMPLED, str(aid)] += 1
            counts[NUM_MODULE_STEPS_SAMPLED, module_id] += 1

    def _team_finish(self, index: int, terminated: bool, infos: dict, module_id: str) -> TeamEpisode:
        """Battle ``index``'s finished episode, its metrics logged as RLlib and the team callback do."""
        battle, self._battles[index] = self._battles[index], None
        last = infos.get(self._agents[0], {}) if isinstance(infos, dict) else {}
        episode = TeamEpisode(
            inputs=np.stack(battle.inputs),
            masks=np.stack(battle.masks),
            states=np.stack(battle.states),
            actions=np.stack(battle.actions).astype(np.int64),
            rewards=np.asarray(battle.rewards, np.float32),
            terminated=terminated,
            won=bool(last["battle_won"]) if "battle_won" in last else None,
            backend=str(last["backend"]) if "backend" in last else None,
        )
        self._pending_counts[NUM_EPISODES, None] += 1
        n, team_return = len(self._agents), episode.team_return
        self._log_episode_metrics(
            len(episode),
            n * team_return,  # RLlib's episode return sums every agent's
            time.perf_counter() - battle.started,
            {str(aid): team_return for aid in self._agents},
            {module_id: n * team_return},
            {str(aid): len(episode) for aid in self._agents},
        )
        log_team_metrics(self.metrics, team_return, episode.won, episode.backend)
        return episode

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
