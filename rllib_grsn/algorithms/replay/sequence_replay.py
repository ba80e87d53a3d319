"""Sequence replay for recurrent off-policy algorithms (recurrent TD3 and SAC).

RLlib 2.60's replay buffers sample single transitions (or, in ``EpisodeReplayBuffer._sample_batch``,
rows that run on into the next episode), and its SAC crashes with a stateful module. Recurrent
TD3/SAC as in Ni et al. 2022 (pomdp-baselines) instead train on windows of consecutive steps taken from
ONE episode, unrolling the actor and critics from a start state over the window. This buffer keeps
RLlib's episode storage (``EpisodeReplayBuffer``: whole ``SingleAgentEpisode``s, ongoing chunks
concatenated by episode id, capacity in env steps, oldest episodes evicted first, checkpoint state)
and adds that window sampling.

Each sampled window has ``T = burn_in + seq_len`` steps ``t = s .. s+T-1`` of one episode:

- ``obs[t]`` is o_t (the observation the action was chosen on; with RLlib's PrevActionsPrevRewards
  connector it is the dict ``{"_orig_obs", "prev_n_actions", "prev_n_rewards"}`` the connector wrote
  back into the episode), ``next_obs[t]`` is o_{t+1}, ``actions[t]`` is a_t, ``rewards[t]`` is r_{t+1}.
- ``terminateds[t]`` is True only at the last step of an episode that really terminated, so a
  truncated (time-limit) episode still bootstraps from its final ``next_obs``.
- ``mask`` is 1.0 on real steps, 0.0 on the zero padding at the end of a window from an episode
  shorter than ``T``; ``loss_mask`` also zeroes the first ``burn_in`` steps (R2D2's burn-in: the
  recurrent state warms up there, no loss is taken).
- ``guided`` is True on the steps a guide policy acted (the ``guided`` column the guide's connector
  recorded in ``extra_model_outputs``; False for episodes without it).
- ``bc_label`` is True on the steps that carry a behaviour-cloning label and ``guide_action`` is that
  label (the guide's action, normalised like ``actions``; zeros where there is none). An episode
  recorded with ``guided`` only (before the labels had their own columns) is labelled on its guided
  steps with the action taken there (then the guide's).
- ``state_in`` is the core state to start the unroll from: the initial (zero) state for every
  window (Ni et al.; the default), or, with ``start_state="stored"`` (R2D2), the ``state_out`` the
  acting module recorded one step before the window start (RLlib keeps it in the episode's
  ``extra_model_outputs[Columns.STATE_OUT]``), and the initial state at the episode start.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import tree
from ray.rllib.core.columns import Columns
from ray.rllib.env.single_agent_episode import SingleAgentEpisode
from ray.rllib.utils.metrics import (
    NUM_ENV_STEPS_EVICTED,
    NUM_ENV_STEPS_EVICTED_LIFETIME,
    NUM_EPISODES_EVICTED,
    NUM_EPISODES_EVICTED_LIFETIME,
)
from ray.rllib.utils.replay_buffers.episode_replay_buffer import EpisodeReplayBuffer

from rllib_grsn.algorithms.guide.settings import BC_LABEL, GUIDE_ACTION, GUIDED

StartState = Literal["zero", "stored"]
START_STATES: tuple[str, ...] = ("zero", "stored")


class SequenceReplayBuffer(EpisodeReplayBuffer):
    """Stores whole episodes; samples fixed-length windows that never cross an episode boundary.

    Sampling: a window's episode is drawn with probability proportional to its length (a stored step
    is drawn uniformly from RLlib's per-step index and its episode taken), and its start uniformly
    from ``0 .. max(0, len - T)``. So every stored step is equally likely to pick the episode, long
    windows stay inside the episode, and episodes shorter than ``T`` give one zero-padded window.
    With ``T == 1`` every stored step is exactly equally likely.

    Differences from the parent class, and why:

    - ``sample`` returns windows as above (the parent's ``sample`` is still reachable as
      ``EpisodeReplayBuffer.sample(buffer, ...)`` for its transition/episode sampling).
    - Eviction is done here, after the parent stored the episodes: RLlib 2.60's eviction raises
      ``IndexError`` when the oldest episode is also the one just extended by an ongoing chunk (its
      last step is then the last entry of the step index), which happens with several envs per runner.
    - Incoming episodes are numpy-ized (on a copy) before storing: RLlib cannot concatenate a
      list-based chunk onto a numpy-ized stored episode, and slicing numpy episodes is cheap.
    - ``get_state`` also saves the sampling RNG, so a restored buffer draws the same windows; and
      ``set_state`` replaces the stored episodes (the parent keeps the old ones when not empty).

    Args:
        capacity: Env steps to keep; the oldest episodes are dropped beyond it (the newest episode
            is always kept, even when it alone exceeds the capacity, as in RLlib).
        seed: Seed of the ``np.random.Generator`` used for sampling.
        initial_state: The module's per-sample initial state (``module.get_initial_state()``), used
            for ``start_state="zero"`` and at episode starts. When not given, zeros shaped like the
            stored ``state_out`` are used, or no state at all when the episodes have none.
        store_state_out: Keep the recorded ``state_out`` of every step (needed only for
            ``start_state="stored"``). It is by far the largest per-step record (a GRSN actor and
            critic of 128 neurons: 2 KB per step against ~50 bytes of observation, action and reward), so
            zero-state replay should drop it.
    """

    def __init__(
        self,
        capacity: int = 100_000,
        *,
        seed: int | None = None,
        initial_state: Mapping[str, Any] | None = None,
        store_state_out: bool = True,
        **kwargs: Any,
    ):
        if not isinstance(capacity, int | np.integer) or capacity < 1:
            raise ValueError(f"capacity must be an int >= 1 (env steps), got {capacity!r}")
        super().__init__(capacity=int(capacity), **kwargs)
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.initial_state = (
            None if initial_state is None else tree.map_structure(np.asarray, dict(initial_state))
        )
        self.store_state_out = bool(store_state_out)

    # ------------------------------------------------------------------ storage

    def add(self, episodes: SingleAgentEpisode | Sequence[SingleAgentEpisode]) -> None:
        """Stores episodes (or ongoing chunks of them, concatenated by id), then evicts the oldest."""
        if isinstance(episodes, SingleAgentEpisode):
            episodes = [episodes]
        prepared = []
        for eps in episodes:
            if not isinstance(eps, SingleAgentEpisode):
                raise TypeError(f"episodes must be SingleAgentEpisode, got {type(eps).__name__}")
            drop_states = not self.store_state_out and Columns.STATE_OUT in eps.extra_model_outputs
            if not eps.is_numpy or drop_states:
                eps = copy.copy(eps) if eps.is_numpy else copy.deepcopy(eps)  # never change the caller's
                if drop_states:
                    eps.extra_model_outputs = {
                        k: v for k, v in eps.extra_model_outputs.items() if k != Columns.STATE_OUT
                    }
                if not eps.is_numpy:
                    eps.to_numpy()
            prepared.append(eps)
        capacity = self.capacity
        self.capacity = float("inf")  # the parent stores and concatenates; eviction is ours
        try:
            super().add(prepared)
        finally:
            self.capacity = capacity
        self._evict()

    def _evict(self) -> None:
        """Drops the oldest episodes until the stored env steps fit ``capacity`` (keeps at least one)."""
        n_episodes = n_steps = 0
        while self._num_timesteps > self.capacity and len(self.episodes) > 1:
            eps = self.episodes.popleft()
            del self.episode_id_to_index[eps.id_]
            self._num_timesteps -= len(eps)
            self._num_episodes_evicted += 1
            n_episodes += 1
            n_steps += len(eps)
        if n_episodes:
            # Episodes are indexed in insertion order, so the evicted ones are all indices below the
            # new eviction count.
            first_kept = self._num_episodes_evicted
            self._indices = [idx for idx in self._indices if idx[0] >= first_kept]
            self.metrics.log_value(NUM_EPISODES_EVICTED, n_episodes, reduce="sum")
            self.metrics.log_value(NUM_EPISODES_EVICTED_LIFETIME, n_episodes, reduce="lifetime_sum")
            self.metrics.log_value(NUM_ENV_STEPS_EVICTED, n_steps, reduce="sum")
            self.metrics.log_value(NUM_ENV_STEPS_EVICTED_LIFETIME, n_steps, reduce="lifetime_sum")

    def num_timesteps(self) -> int:
        """Env steps stored (the same as ``len(buffer)``)."""
        return self.get_num_timesteps()

    def num_episodes(self) -> int:
        """Episodes stored (an ongoing episode added in several chunks counts once)."""
        return self.get_num_episodes()

    # ----------------------------------------------------------------- sampling

    def sample(  # type: ignore[override]
        self,
        batch_size: int,
        seq_len: int = 64,
        burn_in: int = 0,
        start_state: StartState = "zero",
    ) -> dict[str, Any]:
        """Samples ``batch_size`` windows of ``burn_in + seq_len`` steps, each inside one episode.

        Returns a dict of numpy arrays with leading dims [B, T] (``state_in`` leaves and ``seq_lens``
        are [B, ...] / [B]): ``obs``, ``next_obs`` (nested dicts allowed), ``actions``, ``rewards``,
        ``terminateds``, ``guided``, ``bc_label``, ``guide_action``, ``mask``, ``loss_mask``,
        ``state_in`` and ``seq_lens`` (real steps per window).
        """
        _check_int("batch_size", batch_size, 1)
        _check_int("seq_len", seq_len, 1)
        _check_int("burn_in", burn_in, 0)
        if start_state not in START_STATES:
            raise ValueError(f"start_state must be one of {START_STATES}, got {start_state!r}")
        if not self._indices:
            raise ValueError("cannot sample from an empty SequenceReplayBuffer; add episodes first")

        T = burn_in + seq_len
        picks = self.rng.integers(len(self._indices), size=batch_size)
        episodes = [self.episodes[self._indices[i][0] - self._num_episodes_evicted] for i in picks]
        lengths = np.array([len(eps) for eps in episodes])
        starts = self.rng.integers(0, np.maximum(lengths - T, 0) + 1)
        n_real = np.minimum(lengths - starts, T)

        if start_state == "stored":
            missing = [eps.id_ for eps in episodes if Columns.STATE_OUT not in eps.extra_model_outputs]
            if missing:
                raise ValueError(
                    f"start_state='stored' needs the module's state_out recorded in the episodes' "
                    f"extra_model_outputs[{Columns.STATE_OUT!r}]; episode {missing[0]} has none. "
                    f"Use start_state='zero' (allowed values: {START_STATES})."
                )

        obs_rows, next_obs_rows, action_rows, reward_rows, label_rows, states = [], [], [], [], [], []
        guided = np.zeros((batch_size, T), dtype=bool)
        labelled = np.zeros((batch_size, T), dtype=bool)
        terminateds = np.zeros((batch_size, T), dtype=bool)
        for b, (eps, s, n) in enumerate(zip(episodes, starts, n_real, strict=True)):
            s, n = int(s), int(n)
            window_obs = eps.get_observations(slice(s, s + n + 1))  # o_s .. o_{s+n}
            obs_rows.append(tree.map_structure(lambda x: x[:-1], window_obs))
            next_obs_rows.append(tree.map_structure(lambda x: x[1:], window_obs))
            action_rows.append(eps.get_actions(slice(s, s + n)))
            reward_rows.append(eps.get_rewards(slice(s, s + n)))
            if GUIDED in eps.extra_model_outputs:
                flags = eps.get_extra_model_outputs(GUIDED, slice(s, s + n))
                guided[b, :n] = np.asarray(flags, dtype=bool).reshape(n)
            if BC_LABEL in eps.extra_model_outputs:
                flags = eps.get_extra_model_outputs(BC_LABEL, slice(s, s + n))
                labelled[b, :n] = np.asarray(flags, dtype=bool).reshape(n)
                label_rows.append(eps.get_extra_model_outputs(GUIDE_ACTION, slice(s, s + n)))
            else:
                labelled[b, :n] = guided[b, :n]
                label_rows.append(np.where(_as_column(guided[b, :n], action_rows[-1]), action_rows[-1], 0))
            if eps.is_terminated and s + n == len(eps):
                terminateds[b, n - 1] = True
            states.append(self._start_state(eps, s, start_state))

        steps = np.arange(T)
        mask = (steps[None, :] < n_real[:, None]).astype(np.float32)
        loss_mask = mask * (steps >= burn_in)[None, :].astype(np.float32)
        self.sampled_timesteps += int(n_real.sum())
        return {
            "obs": _stack_padded(obs_rows, T),
            "next_obs": _stack_padded(next_obs_rows, T),
            "actions": _stack_padded(action_rows, T),
            "rewards": _stack_padded(reward_rows, T).astype(np.float32),
            "terminateds": terminateds,
            "guided": guided & (mask > 0),
            "bc_label": labelled & (mask > 0),
            "guide_action": _stack_padded(label_rows, T).astype(np.float32),
            "mask": mask,
            "loss_mask": loss_mask,
            "state_in": self._stack_states(states, batch_size),
            "seq_lens": n_real.astype(np.int32),
        }

    def _start_state(self, eps: SingleAgentEpisode, start: int, start_state: str) -> Any | None:
        """The recorded state_out before ``start``, or None where the initial state applies."""
        if start_state == "zero":
            return None
        buffer = eps.extra_model_outputs[Columns.STATE_OUT]
        if start > 0:
            return eps.get_extra_model_outputs(Columns.STATE_OUT, start - 1)
        if eps.t_started > 0 and buffer.lookback > 0:
            # A chunk whose earlier part was evicted starts mid-episode; its lookback holds the state.
            return eps.get_extra_model_outputs(Columns.STATE_OUT, -1, neg_index_as_lookback=True)
        return None

    def _stack_states(self, states: list[Any | None], batch_size: int) -> dict[str, np.ndarray]:
        """Stacks per-window start states into [B, ...] leaves; None entries get the initial state."""
        template = self.initial_state
        if template is None:
            recorded = next((s for s in states if s is not None), None)
            if recorded is None:
                recorded = self._any_recorded_state()
            if recorded is None:
                return {}  # stateless module: nothing to start from
            template = tree.map_structure(lambda x: np.zeros_like(np.asarray(x)), recorded)
        filled = [template if s is None else s for s in states]
        return tree.map_structure(lambda *xs: np.stack([np.asarray(x) for x in xs]), *filled)

    def _any_recorded_state(self) -> Any | None:
        for eps in self.episodes:
            if Columns.STATE_OUT in eps.extra_model_outputs and len(eps) > 0:
                return eps.get_extra_model_outputs(Columns.STATE_OUT, 0)
        return None

    # --------------------------------------------------------------- checkpoint

    def get_state(self) -> dict[str, Any]:
        """RLlib's buffer state plus the sampling RNG and capacity, so a restore resumes exactly."""
        state = super().get_state()
        state["rng_state"] = copy.deepcopy(self.rng.bit_generator.state)
        state["capacity"] = self.capacity
        state["seed"] = self.seed
        state["store_state_out"] = self.store_state_out
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        """Restores a ``get_state`` result, replacing whatever this buffer held."""
        super().set_state(state)
        self._indices = [tuple(idx) for idx in state["_indices"]]
        if "rng_state" in state:
            self.rng.bit_generator.state = copy.deepcopy(state["rng_state"])
        self.capacity = state.get("capacity", self.capacity)
        self.seed = state.get("seed", self.seed)
        self.store_state_out = state.get("store_state_out", self.store_state_out)

    def _set_episodes(self, state: dict[str, Any]) -> None:
        # The parent only fills an empty buffer, which would silently keep stale episodes here.
        self.episodes.clear()
        self.episodes.extend(SingleAgentEpisode.from_state(data) for data in state["episodes"])


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def _stack_padded(rows: list[Any], T: int) -> Any:
    """Stacks per-window [n, ...] structures into [B, T, ...] leaves, zero-padding each to T steps."""

    def stack(*leaves: Any) -> np.ndarray:
        arrays = [np.asarray(x) for x in leaves]
        first = arrays[0]
        out = np.zeros((len(arrays), T, *first.shape[1:]), dtype=first.dtype)
        for b, x in enumerate(arrays):
            out[b, : len(x)] = x
        return out

    return tree.map_structure(stack, *rows)


def _as_column(flags: np.ndarray, actions: Any) -> np.ndarray:
    """Per-step ``flags`` [n] shaped to broadcast against ``actions`` [n, ...]."""
    actions = np.asarray(actions)
    return flags.reshape(len(flags), *([1] * (actions.ndim - 1)))
