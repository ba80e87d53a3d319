"""Replay of whole team episodes for QMIX, sampled as padded batches of episodes (pymarl).

RLlib 2.60's multi-agent episode buffers cannot sample sequences for stateful modules (DESIGN.md
section 3), and QMIX needs all agents of a step side by side anyway (the mixer reads every agent's
value and the global state at once). So each finished :class:`MultiAgentEpisode` is turned into
team arrays, agents lined up by :func:`~rllib_grsn.modules.connectors.agent_order`:

- ``inputs`` ``[T+1, N, D]``: each agent's network input ``[o_t, agent id, a_{t-1}]`` exactly as
  acting built it (the connector wrote it into the episode);
- ``masks`` ``[T+1, N, A]``: available actions; ``states`` ``[T+1, S]``: the global state;
- ``actions`` ``[T, N]``, ``rewards`` ``[T]`` (the team reward), and whether the episode
  ``terminated`` (a finished battle: no bootstrap) or was truncated (time limit: bootstrap).

A sampled batch pads episodes to the longest one and marks real steps in ``filled``.

QMIX's EnvRunners sample ``rollout_fragment_length`` steps per sub-env and call (RLlib's
``truncate_episodes``), so a battle still running at the end of a ``sample()`` call arrives as a
chunk and goes on in the next call's chunk of the same episode id. The replay keeps such chunks
aside and stores the episode once its last chunk arrives: every env step sampled ends up in the
replay, as in pymarl, where RLlib's ``complete_episodes`` would reset every sub-env at each call and
throw the unfinished battles away (about a fifth of the env steps on 8m).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from rllib_grsn.modules.connectors import agent_order
from rllib_grsn.modules.qmix import ACTION_MASK_KEY, AGENT_INPUT_KEYS, STATE_KEY


@dataclass
class TeamEpisode:
    """One finished episode of a team, agents lined up (see module docstring), and, on battle envs,
    whether the team won and which simulator ran it (``sc2``, ``smax``, ...)."""

    inputs: np.ndarray
    masks: np.ndarray
    states: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminated: bool
    won: bool | None = None
    backend: str | None = None

    def __len__(self) -> int:
        return len(self.rewards)

    # A TeamEpisode is always a whole episode from its first step (what RLlib's episodes call done).
    is_done = True

    @property
    def team_return(self) -> float:
        return float(self.rewards.sum())

    def env_steps(self) -> int:
        """Env steps, as RLlib's episodes count them (its sampling and evaluation loops ask)."""
        return len(self)

    def agent_steps(self) -> int:
        """Every agent's steps, as RLlib's multi-agent episodes count them."""
        return int(self.actions.size)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.inputs, self.masks, self.states, self.actions, self.rewards))

    def followed_by(self, later: TeamEpisode) -> TeamEpisode:
        """This chunk of an episode joined with ``later``, the chunk that continues it.

        RLlib cuts an ongoing episode where a ``sample()`` call ends; the continuation starts on the
        observation the cut chunk ended on (o_t of both, the agent inputs included), kept once here.
        Raises ``ValueError`` when the two do not meet there.
        """
        if not (
            np.array_equal(self.inputs[-1], later.inputs[0])
            and np.array_equal(self.masks[-1], later.masks[0])
            and np.array_equal(self.states[-1], later.states[0])
        ):
            raise ValueError(
                "episode chunks do not join: the later chunk does not start on the observation the earlier "
                "one ended on"
            )
        return TeamEpisode(
            inputs=np.concatenate([self.inputs[:-1], later.inputs]),
            masks=np.concatenate([self.masks[:-1], later.masks]),
            states=np.concatenate([self.states[:-1], later.states]),
            actions=np.concatenate([self.actions, later.actions]),
            rewards=np.concatenate([self.rewards, later.rewards]),
            terminated=later.terminated,
            won=later.won,
            backend=later.backend,
        )


def team_episode(episode: Any) -> TeamEpisode:
    """Team arrays of an RLlib ``MultiAgentEpisode`` (or chunk of one) in which every agent acted every step.

    Raises ``ValueError`` when agents acted on different steps: QMIX mixes all agents' values of a
    step, so the team adapters keep every agent (dead ones included) in every step. A TeamEpisode
    (what team acting records) is returned as it is.
    """
    if isinstance(episode, TeamEpisode):
        return episode
    agents = agent_order(episode.agent_ids)
    length = len(episode)
    per_agent = []
    for aid in agents:
        sa = episode.agent_episodes[aid]
        if len(sa) != length:
            raise ValueError(
                f"agent {aid!r} acted on {len(sa)} of the episode's {length} steps; QMIX needs every agent "
                "in every step (team env adapters keep dead agents, with only the no-op available)"
            )
        per_agent.append(sa)
    observations = [sa.get_observations(slice(None)) for sa in per_agent]
    inputs = np.stack(
        [
            np.concatenate([np.asarray(o[k], np.float32) for k in AGENT_INPUT_KEYS], axis=-1)
            for o in observations
        ],
        axis=1,
    )
    masks = np.stack([np.asarray(o[ACTION_MASK_KEY], np.float32) for o in observations], axis=1)
    states = np.asarray(observations[0][STATE_KEY], np.float32)
    actions = np.stack(
        [np.asarray(sa.get_actions(slice(None)), np.int64).reshape(length) for sa in per_agent], 1
    )
    # The team reward: every agent receives it unchanged.
    rewards = np.asarray(per_agent[0].get_rewards(slice(None)), np.float32).reshape(length)
    # RLlib 2.60's MultiAgentEpisode also sets ``is_terminated`` (its own and every agent's) when all
    # agents were *truncated*, which would stop QMIX bootstrapping at a time limit. The truncation
    # flag survives, and the team adapters never report both on one step, so truncated wins.
    first = per_agent[0]
    terminated = bool(first.is_terminated) and not bool(first.is_truncated)
    infos = first.get_infos(-1) if len(first.get_infos()) else {}
    infos = infos if isinstance(infos, dict) else {}
    won = bool(infos["battle_won"]) if "battle_won" in infos else None
    backend = str(infos["backend"]) if "backend" in infos else None
    return TeamEpisode(inputs, masks, states, actions, rewards, terminated, won, backend)


class TeamEpisodeReplay:
    """FIFO replay of whole :class:`TeamEpisode`; ``sample`` draws episodes uniformly (pymarl).

    Chunks of unfinished episodes wait (by episode id) until the chunk that finishes them arrives;
    they are not part of the checkpoint state (a restored run's EnvRunners start new episodes).
    """

    def __init__(self, capacity: int, seed: int | None = None):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1 episode, got {capacity}")
        self.capacity = capacity
        self._episodes: deque[TeamEpisode] = deque(maxlen=capacity)
        self._rng = np.random.default_rng(seed)
        self.num_added = 0
        self._unfinished: dict[str, TeamEpisode] = {}

    def __len__(self) -> int:
        return len(self._episodes)

    @property
    def num_env_steps(self) -> int:
        return sum(len(e) for e in self._episodes)

    @property
    def nbytes(self) -> int:
        return sum(e.nbytes for e in self._episodes)

    @property
    def num_unfinished(self) -> int:
        """Episodes of which chunks are held, waiting for the rest."""
        return len(self._unfinished)

    @property
    def num_unfinished_env_steps(self) -> int:
        """Env steps in the held chunks."""
        return sum(len(e) for e in self._unfinished.values())

    def add(self, episodes: list[Any]) -> int:
        """Adds what one round of ``sample()`` calls returned; returns how many whole episodes were stored.

        ``episodes``: finished ``MultiAgentEpisode``s, chunks of ongoing ones (RLlib's
        ``truncate_episodes``), or ready :class:`TeamEpisode`s. A finished episode is stored with its
        earlier chunks; an unfinished chunk is held until then. Every ongoing episode returns a chunk
        in every call, so held chunks that got no continuation here belong to episodes that ended
        elsewhere (an env reset after a failure) and are dropped, as are continuations whose start
        is not here (the replay was restored mid-episode): only whole episodes are stored. Empty
        episodes are skipped.
        """
        unfinished: dict[str, TeamEpisode] = {}
        stored = 0
        for episode in episodes:
            if isinstance(episode, TeamEpisode):
                team = episode
            else:
                team = team_episode(episode)
                earlier = self._unfinished.pop(episode.id_, None)
                if earlier is not None:
                    team = earlier.followed_by(team)
                elif episode.env_t_started > 0:
                    continue  # a continuation without its beginning
                if not episode.is_done:
                    unfinished[episode.id_] = team
                    continue
            if len(team) > 0:
                self._episodes.append(team)
                self.num_added += 1
                stored += 1
        self._unfinished = unfinished
        return stored

    def sample(self, batch_size: int) -> dict[str, np.ndarray]:
        """``batch_size`` episodes (with replacement only when fewer are stored), padded to the longest.

        Returns ``inputs`` [B, T+1, N, D], ``masks`` [B, T+1, N, A], ``states`` [B, T+1, S],
        ``actions`` [B, T, N], ``rewards`` / ``terminateds`` / ``filled`` [B, T] (float32; the
        ``terminateds`` flag sits on an episode's last step). Padded steps have ``filled == 0``
        and all actions available (so a max over them stays finite).
        """
        if not self._episodes:
            raise ValueError("the replay is empty")
        replace = batch_size > len(self._episodes)
        chosen = [
            self._episodes[i] for i in self._rng.choice(len(self._episodes), batch_size, replace=replace)
        ]
        t_max = max(len(e) for e in chosen)
        first = chosen[0]
        n_agents, n_actions = first.masks.shape[1:]
        batch = {
            "inputs": np.zeros((batch_size, t_max + 1, n_agents, first.inputs.shape[-1]), np.float32),
            "masks": np.ones((batch_size, t_max + 1, n_agents, n_actions), np.float32),
            "states": np.zeros((batch_size, t_max + 1, first.states.shape[-1]), np.float32),
            "actions": np.zeros((batch_size, t_max, n_agents), np.int64),
            "rewards": np.zeros((batch_size, t_max), np.float32),
            "terminateds": np.zeros((batch_size, t_max), np.float32),
            "filled": np.zeros((batch_size, t_max), np.float32),
        }
        for b, e in enumerate(chosen):
            n = len(e)
            batch["inputs"][b, : n + 1] = e.inputs
            batch["masks"][b, : n + 1] = e.masks
            batch["states"][b, : n + 1] = e.states
            batch["actions"][b, :n] = e.actions
            batch["rewards"][b, :n] = e.rewards
            batch["terminateds"][b, n - 1] = float(e.terminated)
            batch["filled"][b, :n] = 1.0
        return batch

    def get_state(self) -> dict[str, Any]:
        return {
            "episodes": list(self._episodes),
            "rng": self._rng.bit_generator.state,
            "num_added": self.num_added,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        self._episodes = deque(state["episodes"], maxlen=self.capacity)
        self._unfinished = {}
        self._rng.bit_generator.state = state["rng"]
        self.num_added = int(state.get("num_added", len(self._episodes)))
