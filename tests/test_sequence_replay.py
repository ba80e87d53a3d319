"""Sequence replay for recurrent TD3/SAC: windows inside one episode, masks, start states, storage.

Episodes are built by hand with their provenance encoded in the data: observation
``{"_orig_obs": [episode, step], "prev_n_rewards": [step]}`` at step t, action ``1000 * episode + t``,
reward ``episode + t / 1000`` and recorded state_out ``u = [episode, t]`` after step t. So every
sampled value says which episode and step it came from.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.env.single_agent_episode import SingleAgentEpisode

import rllib_grsn.envs  # noqa: F401  (registers CartPole-P)
from rllib_grsn.algorithms.replay import SequenceReplayBuffer

S = Columns.STATE_OUT


def _obs(eid: int, t: int) -> dict[str, np.ndarray]:
    return {
        "_orig_obs": np.array([eid, t], dtype=np.float32),
        "prev_n_rewards": np.array([t], dtype=np.float32),
    }


def _state(eid: int, t: int) -> dict[str, np.ndarray]:
    return {"u": np.array([eid, t], dtype=np.float32), "c": np.array([-eid, -t], dtype=np.float32)}


def _episode(
    eid: int,
    length: int,
    *,
    terminated: bool = False,
    truncated: bool = False,
    state: bool = True,
    start: int = 0,
) -> SingleAgentEpisode:
    """Steps ``start .. start+length-1`` of episode ``eid`` (ids start at 1, so zeros mean padding)."""
    steps = range(start, start + length)
    return SingleAgentEpisode(
        id_=f"ep{eid}",
        observations=[_obs(eid, t) for t in range(start, start + length + 1)],
        actions=[1000 * eid + t for t in steps],
        rewards=[eid + t / 1000 for t in steps],
        terminated=terminated,
        truncated=truncated,
        extra_model_outputs={S: [_state(eid, t) for t in steps]} if state else {},
        len_lookback_buffer=0,  # the default "auto" would put all given data into the lookback
        t_started=start,
    )


def _buffer(*episodes: SingleAgentEpisode, capacity: int = 100_000, seed: int = 0) -> SequenceReplayBuffer:
    buf = SequenceReplayBuffer(capacity=capacity, seed=seed)
    buf.add(list(episodes))
    return buf


def _provenance(batch: dict, key: str = "obs") -> tuple[np.ndarray, np.ndarray]:
    leaf = batch[key]["_orig_obs"]
    return leaf[..., 0].astype(int), leaf[..., 1].astype(int)


LENGTHS = {1: 3, 2: 17, 3: 40, 4: 1, 5: 9}


def test_windows_stay_inside_one_episode_and_are_contiguous():
    buf = _buffer(*(_episode(e, n, terminated=e % 2 == 0) for e, n in LENGTHS.items()))
    batch = buf.sample(512, seq_len=6, burn_in=2)
    T = 8
    eid, step = _provenance(batch)
    next_eid, next_step = _provenance(batch, "next_obs")
    assert eid.shape == (512, T) and batch["actions"].shape == (512, T)
    for b in range(512):
        n = int(batch["seq_lens"][b])
        assert n == min(T, LENGTHS[eid[b, 0]])
        e, s = eid[b, 0], step[b, 0]
        np.testing.assert_array_equal(eid[b, :n], e)
        np.testing.assert_array_equal(step[b, :n], np.arange(s, s + n))
        assert s + n <= LENGTHS[e]
        # next_obs is o_{t+1}: the next window step inside, the final observation at the end.
        np.testing.assert_array_equal(next_eid[b, :n], e)
        np.testing.assert_array_equal(next_step[b, :n], np.arange(s + 1, s + n + 1))
        np.testing.assert_array_equal(
            batch["next_obs"]["_orig_obs"][b, : n - 1], batch["obs"]["_orig_obs"][b, 1:n]
        )
        np.testing.assert_array_equal(batch["obs"]["prev_n_rewards"][b, :n, 0], np.arange(s, s + n))
        # Actions and rewards belong to the same steps as the observations.
        np.testing.assert_array_equal(batch["actions"][b, :n], 1000 * e + np.arange(s, s + n))
        np.testing.assert_allclose(batch["rewards"][b, :n], e + np.arange(s, s + n) / 1000, rtol=1e-6)
    assert batch["rewards"].dtype == np.float32
    assert set(np.unique(eid[batch["mask"] > 0])) == set(LENGTHS)


def test_short_episode_is_zero_padded_and_masked():
    buf = _buffer(_episode(7, 3, terminated=True))
    batch = buf.sample(4, seq_len=5)
    np.testing.assert_array_equal(batch["seq_lens"], [3, 3, 3, 3])
    np.testing.assert_array_equal(batch["mask"], np.tile([1, 1, 1, 0, 0], (4, 1)).astype(np.float32))
    np.testing.assert_array_equal(batch["loss_mask"], batch["mask"])
    eid, step = _provenance(batch)
    np.testing.assert_array_equal(step[0], [0, 1, 2, 0, 0])
    np.testing.assert_array_equal(eid[0], [7, 7, 7, 0, 0])
    np.testing.assert_array_equal(_provenance(batch, "next_obs")[1][0], [1, 2, 3, 0, 0])
    np.testing.assert_array_equal(batch["actions"][0], [7000, 7001, 7002, 0, 0])
    np.testing.assert_array_equal(batch["rewards"][0, 3:], 0.0)
    assert batch["mask"].dtype == np.float32


def test_terminateds_only_at_a_real_terminal_step():
    for kind, expect_terminal in [("terminated", True), ("truncated", False), ("ongoing", False)]:
        eps = _episode(1, 4, terminated=kind == "terminated", truncated=kind == "truncated")
        batch = _buffer(eps).sample(3, seq_len=6)
        expected = np.zeros((3, 6), dtype=bool)
        expected[:, 3] = expect_terminal
        np.testing.assert_array_equal(batch["terminateds"], expected, err_msg=kind)
        assert batch["terminateds"].dtype == bool

    # A long terminated episode: only windows that reach its last step carry the flag, there.
    batch = _buffer(_episode(2, 12, terminated=True)).sample(400, seq_len=4)
    _, step = _provenance(batch)
    np.testing.assert_array_equal(batch["terminateds"], step == 11)
    assert batch["terminateds"].any() and not batch["terminateds"].all()


def test_burn_in_steps_are_masked_out_of_the_loss():
    buf = _buffer(_episode(1, 30), _episode(2, 4))
    batch = buf.sample(64, seq_len=5, burn_in=3)
    assert batch["obs"]["_orig_obs"].shape[:2] == (64, 8)
    expected = batch["mask"].copy()
    expected[:, :3] = 0.0
    np.testing.assert_array_equal(batch["loss_mask"], expected)
    eid = _provenance(batch)[0][:, 0]
    np.testing.assert_array_equal(
        batch["loss_mask"][eid == 2], np.tile([0, 0, 0, 1, 0, 0, 0, 0], (sum(eid == 2), 1))
    )
    np.testing.assert_array_equal(
        batch["loss_mask"][eid == 1], np.tile([0, 0, 0, 1, 1, 1, 1, 1], (sum(eid == 1), 1))
    )


def test_stored_start_state_is_the_state_out_before_the_window():
    buf = _buffer(_episode(1, 20), _episode(2, 6), _episode(3, 2))
    batch = buf.sample(300, seq_len=4, burn_in=1, start_state="stored")
    eid, step = _provenance(batch)
    starts = step[:, 0]
    u, c = batch["state_in"]["u"], batch["state_in"]["c"]
    assert u.shape == (300, 2) and u.dtype == np.float32
    at_start = starts == 0
    assert at_start.any() and (~at_start).any()
    np.testing.assert_array_equal(u[at_start], 0.0)
    np.testing.assert_array_equal(c[at_start], 0.0)
    np.testing.assert_array_equal(u[~at_start], np.stack([eid[~at_start, 0], starts[~at_start] - 1], axis=1))
    np.testing.assert_array_equal(c[~at_start], -u[~at_start])

    zero = buf.sample(50, seq_len=4, start_state="zero")
    assert zero["state_in"]["u"].shape == (50, 2)
    np.testing.assert_array_equal(zero["state_in"]["u"], 0.0)
    # The default is the zero start state (Ni et al. 2022).
    np.testing.assert_array_equal(buf.sample(50, seq_len=4)["state_in"]["c"], 0.0)


def test_initial_state_given_to_the_buffer_sets_the_zero_state_shape():
    init = {"h": np.zeros(5, dtype=np.float32)}
    buf = SequenceReplayBuffer(capacity=100, seed=0, initial_state=init)
    buf.add(_episode(1, 10, state=False))
    batch = buf.sample(3, seq_len=4)
    assert set(batch["state_in"]) == {"h"}
    assert batch["state_in"]["h"].shape == (3, 5)
    # A stateless module stores no state_out and gets no state_in.
    assert _buffer(_episode(1, 10, state=False)).sample(3, seq_len=4)["state_in"] == {}


def test_every_stored_step_is_equally_likely():
    lengths = {1: 2, 2: 10, 3: 50, 4: 138}
    buf = _buffer(*(_episode(e, n) for e, n in lengths.items()), seed=1)
    # seq_len=1: each window is one stored step, drawn uniformly from all 200.
    batch = buf.sample(10_000, seq_len=1)
    eid, step = _provenance(batch)
    counts = np.zeros((5, 138))
    np.add.at(counts, (eid[:, 0], step[:, 0]), 1)
    per_step = np.concatenate([counts[e, :n] for e, n in lengths.items()])
    assert per_step.size == 200
    np.testing.assert_allclose(per_step, 50.0, atol=35)  # mean 50, std ~7: 5 sigma
    # Longer windows: episodes are still chosen in proportion to their length.
    batch = buf.sample(8_000, seq_len=8)
    chosen = np.bincount(_provenance(batch)[0][:, 0], minlength=5)[1:]
    np.testing.assert_allclose(chosen / 8_000, np.array(list(lengths.values())) / 200, atol=0.02)
    # And the start is uniform over the valid starts of the 138-step episode (0 .. 130).
    starts = _provenance(batch)[1][:, 0][_provenance(batch)[0][:, 0] == 4]
    assert starts.min() == 0 and starts.max() == 130
    cdf = np.cumsum(np.bincount(starts, minlength=131)) / len(starts)
    assert np.abs(cdf - np.arange(1, 132) / 131).max() < 0.04  # KS distance; 5% critical value ~0.02


def test_capacity_evicts_the_oldest_episodes():
    buf = SequenceReplayBuffer(capacity=25, seed=0)
    buf.add([_episode(1, 10), _episode(2, 10)])
    assert buf.num_timesteps() == len(buf) == 20
    buf.add(_episode(3, 10))
    assert buf.num_timesteps() == 20 and buf.num_episodes() == 2
    buf.add(_episode(4, 3))
    assert buf.num_timesteps() == 23
    eid = _provenance(buf.sample(500, seq_len=2))[0]
    assert set(np.unique(eid[:, 0])) == {2, 3, 4}
    buf.add(_episode(5, 30))  # alone over capacity: kept (as in RLlib), everything older dropped
    assert buf.num_episodes() == 1 and buf.num_timesteps() == 30
    assert set(np.unique(_provenance(buf.sample(100, seq_len=2))[0][:, 0])) == {5}
    assert buf.get_num_episodes_evicted() == 4


def _ongoing_in_two_chunks(eid: int, first: int, second: int, *, terminated: bool = True):
    """Steps an episode by hand and cuts it like an EnvRunner does between two sample() calls."""
    eps = SingleAgentEpisode(id_=f"ep{eid}")
    eps.add_env_reset(observation=_obs(eid, 0))
    for t in range(first):
        eps.add_env_step(
            _obs(eid, t + 1), 1000 * eid + t, eid + t / 1000, extra_model_outputs={S: _state(eid, t)}
        )
    chunk = eps.cut(len_lookback_buffer=1)
    for t in range(first, first + second):
        done = terminated and t == first + second - 1
        chunk.add_env_step(
            _obs(eid, t + 1),
            1000 * eid + t,
            eid + t / 1000,
            terminated=done,
            extra_model_outputs={S: _state(eid, t)},
        )
    return eps, chunk


def test_ongoing_episode_added_in_two_chunks_is_one_episode():
    first, chunk = _ongoing_in_two_chunks(1, 5, 7)
    buf = SequenceReplayBuffer(capacity=100, seed=0)
    buf.add(first)
    buf.add(_episode(2, 4))
    buf.add(chunk)
    assert buf.num_episodes() == 2 and buf.num_timesteps() == 16
    batch = buf.sample(300, seq_len=10, start_state="stored")
    eid, step = _provenance(batch)
    rows = eid[:, 0] == 1
    # Windows of 10 from the 12-step episode start at 0..2 and so run across the chunk boundary.
    assert set(np.unique(step[rows, 0])) == {0, 1, 2}
    for b in np.flatnonzero(rows):
        np.testing.assert_array_equal(step[b], np.arange(step[b, 0], step[b, 0] + 10))
        assert batch["terminateds"][b].any() == (step[b, 0] == 2)
    s = step[rows, 0]
    np.testing.assert_array_equal(batch["state_in"]["u"][rows][s > 0, 1], s[s > 0] - 1)


def test_evicting_the_oldest_episode_right_after_it_was_extended():
    # RLlib 2.60's own eviction raises IndexError here (the extended episode's last step is the last
    # entry of its step index); this happens with several envs whose episodes interleave.
    first, chunk = _ongoing_in_two_chunks(1, 3, 6)
    buf = SequenceReplayBuffer(capacity=10, seed=0)
    buf.add(first)
    buf.add(_episode(2, 4))
    buf.add(chunk)
    assert buf.num_episodes() == 1 and buf.num_timesteps() == 4
    assert set(np.unique(_provenance(buf.sample(50, seq_len=2))[0][:, 0])) == {2}


def test_later_chunk_of_an_evicted_episode_starts_from_its_lookback_state():
    first, chunk = _ongoing_in_two_chunks(1, 3, 6)
    buf = SequenceReplayBuffer(capacity=4, seed=0)
    buf.add(first)
    buf.add(_episode(2, 4))  # evicts the first chunk of episode 1
    buf.add(chunk)  # its continuation is now stored on its own, starting at step 3
    batch = buf.sample(200, seq_len=6, start_state="stored")
    eid, step = _provenance(batch)
    rows = eid[:, 0] == 1
    assert rows.any()
    np.testing.assert_array_equal(step[rows, 0], 3)
    np.testing.assert_array_equal(batch["state_in"]["u"][rows], np.tile([1, 2], (rows.sum(), 1)))


def test_caller_episodes_are_not_changed():
    eps = _episode(1, 5)
    assert not eps.is_numpy
    buf = _buffer(eps)
    assert not eps.is_numpy  # the buffer numpy-ized its own copy
    eps.rewards.data[0] = 99.0
    assert buf.sample(5, seq_len=5)["rewards"][0, 0] == pytest.approx(1.0)


def test_state_round_trip_gives_identical_samples():
    first, chunk = _ongoing_in_two_chunks(9, 4, 3, terminated=False)
    buf = _buffer(*(_episode(e, n) for e, n in LENGTHS.items()), first, capacity=60, seed=5)
    buf.add(chunk)
    buf.sample(7, seq_len=3)  # advance the RNG: a restore must continue from here
    state = buf.get_state()

    restored = SequenceReplayBuffer(capacity=1, seed=123)
    restored.add(_episode(42, 50))  # set_state must replace, not keep, whatever was there
    restored.set_state(state)
    assert restored.num_timesteps() == buf.num_timesteps()
    assert restored.num_episodes() == buf.num_episodes()
    assert restored.capacity == 60
    for kwargs in [{"seq_len": 4}, {"seq_len": 3, "burn_in": 2, "start_state": "stored"}]:
        a, b = buf.sample(64, **kwargs), restored.sample(64, **kwargs)
        for x, y in zip(_flat(a), _flat(b), strict=True):
            np.testing.assert_array_equal(x, y)
    assert 42 not in _provenance(restored.sample(200, seq_len=2))[0]
    # Ongoing episodes keep growing after a restore.
    more = chunk.cut(len_lookback_buffer=1)
    more.add_env_step(_obs(9, 8), 9007, 9.007, truncated=True, extra_model_outputs={S: _state(9, 7)})
    restored.add(more)
    assert restored.num_timesteps() == buf.num_timesteps() + 1


def _flat(batch: dict) -> list[np.ndarray]:
    import tree

    return tree.flatten(batch)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"batch_size": 0}, "batch_size must be an int >= 1"),
        ({"batch_size": 2.0}, "batch_size must be an int >= 1"),
        ({"batch_size": 2, "seq_len": 0}, "seq_len must be an int >= 1"),
        ({"batch_size": 2, "burn_in": -1}, "burn_in must be an int >= 0"),
        ({"batch_size": 2, "start_state": "random"}, r"start_state must be one of \('zero', 'stored'\)"),
    ],
)
def test_invalid_arguments_are_rejected(kwargs, match):
    buf = _buffer(_episode(1, 5))
    with pytest.raises(ValueError, match=match):
        buf.sample(**kwargs)


def test_stored_start_state_needs_recorded_state_out():
    buf = _buffer(_episode(1, 5, state=False))
    with pytest.raises(ValueError, match=r"start_state='stored'.*state_out.*'zero'"):
        buf.sample(2, seq_len=2, start_state="stored")


def test_empty_buffer_and_bad_capacity_are_rejected():
    with pytest.raises(ValueError, match="empty"):
        SequenceReplayBuffer(capacity=10).sample(2)
    with pytest.raises(ValueError, match="capacity must be an int >= 1"):
        SequenceReplayBuffer(capacity=0)


def test_episodes_stepped_in_a_real_env():
    env = gym.make("CartPole-P")
    buf = SequenceReplayBuffer(capacity=10_000, seed=0)
    rng = np.random.default_rng(0)
    recorded = []
    for seed in range(3):
        obs, info = env.reset(seed=seed)
        eps = SingleAgentEpisode(observation_space=env.observation_space, action_space=env.action_space)
        eps.add_env_reset(observation=obs, infos=info)
        done = False
        while not done:
            action = int(rng.integers(2))
            obs, reward, term, trunc, info = env.step(action)
            eps.add_env_step(obs, action, reward, infos=info, terminated=term, truncated=trunc)
            done = term or trunc
        recorded.append(eps.get_observations(slice(0, None)))
        buf.add(eps.to_numpy())
    batch = buf.sample(16, seq_len=8)
    assert batch["obs"].shape == (16, 8, 2) and batch["obs"].dtype == np.float32
    assert batch["actions"].dtype.kind == "i"
    # Every real window is a contiguous run of some recorded episode's observations.
    for b in range(16):
        n = batch["seq_lens"][b]
        window = batch["obs"][b, :n]
        assert any(
            np.array_equal(window, obs_seq[s : s + n])
            for obs_seq in recorded
            for s in range(len(obs_seq) - n)
        )


def test_sampled_windows_drive_a_stateful_module():
    """The batch plugs into our RLModule as [B, T] obs and [B, H] state_in, and stored state_in is
    the state the same module reaches by unrolling the episode from its start (TAP across replay)."""
    from rllib_grsn.modules import SpikingActorCriticModule
    from rllib_grsn.modules.connectors import PrevActionReward

    obs_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    act_space = gym.spaces.Discrete(2)
    dict_space = PrevActionReward(n_prev_actions=1, n_prev_rewards=1)._convert_individual_space(
        obs_space, act_space
    )
    torch.manual_seed(0)
    module = SpikingActorCriticModule(
        observation_space=dict_space,
        action_space=act_space,
        model_config={"core": "grsn", "hidden": 8, "threshold": 0.05},
    )
    rng = np.random.default_rng(0)
    episodes = []
    for e in range(3):
        n = 12 + 5 * e
        obs_seq = {
            "_orig_obs": rng.normal(size=(n + 1, 2)).astype(np.float32),
            "prev_n_actions": rng.normal(size=(n + 1, 2)).astype(np.float32),
            "prev_n_rewards": rng.normal(size=(n + 1, 1)).astype(np.float32),
        }
        state = {k: torch.as_tensor(v)[None] for k, v in module.get_initial_state().items()}
        with torch.no_grad():
            out = module.forward_exploration(
                {
                    Columns.OBS: {k: torch.as_tensor(v[:n])[None] for k, v in obs_seq.items()},
                    Columns.STATE_IN: state,
                }
            )
        # Record per-step state_out by unrolling one step at a time, as acting does.
        states = []
        for t in range(n):
            with torch.no_grad():
                step = module.forward_exploration(
                    {
                        Columns.OBS: {k: torch.as_tensor(v[t : t + 1])[None] for k, v in obs_seq.items()},
                        Columns.STATE_IN: state,
                    }
                )
            state = step[Columns.STATE_OUT]
            states.append({k: v[0].numpy() for k, v in state.items()})
        assert out[Columns.ACTION_DIST_INPUTS].shape == (1, n, 2)
        episodes.append(
            SingleAgentEpisode(
                observations=[{k: v[t] for k, v in obs_seq.items()} for t in range(n + 1)],
                actions=[0] * n,
                rewards=[0.0] * n,
                extra_model_outputs={S: states},
                len_lookback_buffer=0,
            )
        )
    buf = SequenceReplayBuffer(capacity=1000, seed=0, initial_state=module.get_initial_state())
    buf.add(episodes)
    batch = buf.sample(8, seq_len=4, burn_in=2, start_state="stored")
    with torch.no_grad():
        out = module.forward_train(
            {
                Columns.OBS: {k: torch.as_tensor(v) for k, v in batch["obs"].items()},
                Columns.STATE_IN: {k: torch.as_tensor(v) for k, v in batch["state_in"].items()},
            }
        )
    assert out[Columns.ACTION_DIST_INPUTS].shape == (8, 6, 2)
    # Unrolling the full window from the stored state lands on the state recorded at its last step.
    ends = {k: v.numpy() for k, v in out[Columns.STATE_OUT].items()}
    for b in range(8):
        eps = next(
            e
            for e in episodes
            if any(
                np.array_equal(e.get_observations(t)["_orig_obs"], batch["obs"]["_orig_obs"][b, 0])
                for t in range(len(e))
            )
        )
        start = next(
            t
            for t in range(len(eps))
            if np.array_equal(eps.get_observations(t)["_orig_obs"], batch["obs"]["_orig_obs"][b, 0])
        )
        recorded = eps.get_extra_model_outputs(S, start + 5)
        for k in ends:
            np.testing.assert_allclose(ends[k][b], recorded[k], atol=1e-5)


def test_zero_state_replay_can_drop_the_recorded_states():
    """The recorded state_out is most of an episode's memory; zero-start replay does not need it."""
    init = {"u": np.zeros(2, np.float32), "c": np.zeros(2, np.float32)}
    buffer = SequenceReplayBuffer(capacity=1000, seed=0, initial_state=init, store_state_out=False)
    episode = _episode(1, 12)
    assert Columns.STATE_OUT in episode.extra_model_outputs
    buffer.add([episode])
    assert Columns.STATE_OUT in episode.extra_model_outputs  # the caller's episode is untouched
    stored = buffer.episodes[0]
    assert Columns.STATE_OUT not in stored.extra_model_outputs
    batch = buffer.sample(4, seq_len=5)
    assert batch["state_in"]["u"].shape == (4, 2) and not batch["state_in"]["u"].any()
    with pytest.raises(ValueError, match="start_state='zero'"):
        buffer.sample(4, seq_len=5, start_state="stored")
