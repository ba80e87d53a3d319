"""The SMAX adapter (``rllib_grsn.envs.smax.SMAXEnv``) on the real JaxMARL ``HeuristicEnemySMAX`` (CPU).

Checks the SMAC-style layout the QMIX module relies on (spaces equal to JaxMARL's sizes, every agent in
every dict, numpy float32 observations, one team reward, terminated vs truncated, ``battle_won``) on
random masked rollouts and on a focus-fire script that wins some 8m battles. No Ray cluster is
started. Skipped when ``jaxmarl`` is not installed (``pip install "rllib_grsn[smax]"``).
"""

from __future__ import annotations

import importlib.util
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from ray.rllib.env.multi_agent_episode import MultiAgentEpisode

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("jaxmarl") is None, reason='needs jaxmarl (pip install "rllib_grsn[smax]")'
)

from rllib_grsn.envs import smax as smax_module  # noqa: E402
from rllib_grsn.envs.smax import SMAX_MAPS, STOP_ACTION, SMAXEnv  # noqa: E402


def masked_random_actions(obs: dict[str, Any], rng: np.random.Generator) -> dict[str, int]:
    return {aid: int(rng.choice(np.flatnonzero(o["action_mask"]))) for aid, o in obs.items()}


def focus_fire_actions(obs: dict[str, Any]) -> dict[str, int]:
    """Every unit shoots the lowest-numbered enemy in range, else walks east (toward the enemy)."""
    actions = {}
    for aid, o in obs.items():
        available = np.flatnonzero(o["action_mask"])
        attacks = available[available > STOP_ACTION]
        actions[aid] = int(attacks[0]) if len(attacks) else (1 if o["action_mask"][1] else STOP_ACTION)
    return actions


def unit_alive(env: SMAXEnv) -> tuple[np.ndarray, np.ndarray]:
    """(allies alive, enemies alive) read from JaxMARL's state, independently of the adapter's packing."""
    alive = np.asarray(env._state.state.unit_alive)
    return alive[: env.n_agents], alive[env.n_agents :]


def check_step_layout(env: SMAXEnv, obs, rewards, terminateds, truncateds, infos) -> None:
    agents = env.possible_agents
    assert env.agents == agents
    for d in (obs, rewards, infos):
        assert list(d) == agents
    assert set(terminateds) == set(truncateds) == {*agents, "__all__"}
    state = obs[agents[0]]["state"]
    for aid in agents:
        assert terminateds[aid] == terminateds["__all__"] and truncateds[aid] == truncateds["__all__"]
        assert type(rewards[aid]) is float and rewards[aid] == rewards[agents[0]]
        assert infos[aid]["backend"] == "smax" and type(infos[aid]["battle_won"]) is bool
        for key in ("obs", "action_mask", "state"):
            assert type(obs[aid][key]) is np.ndarray and obs[aid][key].dtype == np.float32
        assert env.observation_spaces[aid].contains(obs[aid])
        np.testing.assert_array_equal(obs[aid]["state"], state)
    assert not (terminateds["__all__"] and truncateds["__all__"])


@pytest.mark.parametrize("map_name", list(SMAX_MAPS))
def test_spaces_match_jaxmarl_sizes(map_name: str) -> None:
    jaxmarl = smax_module._jaxmarl()
    from jaxmarl.environments.smax import map_name_to_scenario

    reference = jaxmarl.make("HeuristicEnemySMAX", scenario=map_name_to_scenario(map_name))
    env = SMAXEnv({"map_name": map_name})
    n_allies, n_enemies = SMAX_MAPS[map_name]
    assert (
        (env.n_agents, env.n_enemies)
        == (n_allies, n_enemies)
        == (reference.num_allies, reference.num_enemies)
    )
    assert env.possible_agents == [f"agent_{i}" for i in range(n_allies)]
    assert env.episode_limit == reference.max_steps == 100
    n_actions = reference.action_spaces["ally_0"].n
    assert n_actions == 5 + n_enemies
    for aid in env.possible_agents:
        space = env.observation_spaces[aid]
        assert isinstance(space, gym.spaces.Dict) and set(space.spaces) == {"obs", "action_mask", "state"}
        assert space["obs"].shape == (reference.obs_size,) and space["obs"].dtype == np.float32
        assert space["state"].shape == (reference.state_size,) and space["state"].dtype == np.float32
        assert space["action_mask"].shape == (n_actions,) and space["action_mask"].dtype == np.float32
        assert env.get_observation_space(aid) is space
        assert env.get_action_space(aid) == gym.spaces.Discrete(n_actions)


def test_8m_sizes_are_the_documented_ones() -> None:
    env = SMAXEnv({"map_name": "8m"})
    assert (env.n_agents, env.obs_shape, env.state_shape, env.n_actions) == (8, 205, 192, 13)


def test_8m_vs_9m_is_registered_with_8_allies_and_9_enemies() -> None:
    env = SMAXEnv({"map_name": "8m_vs_9m", "seed": 0})
    obs, infos = env.reset()
    assert env.n_agents == 8 and env.n_enemies == 9 and env.n_actions == 14
    allies, enemies = unit_alive(env)
    assert allies.shape == (8,) and enemies.shape == (9,) and allies.all() and enemies.all()
    assert obs["agent_0"]["obs"].shape == (env.obs_shape,) and obs["agent_0"]["state"].shape == (204,)
    assert infos["agent_7"] == {"backend": "smax", "battle_won": False}


@pytest.mark.parametrize("map_name", ["MMM2", "3s5z_vs_3s6z", "nope"])
def test_unavailable_map_lists_the_smax_maps(map_name: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        SMAXEnv({"map_name": map_name})
    message = str(excinfo.value)
    assert map_name in message and all(name in message for name in SMAX_MAPS)
    assert ("sc2" in message) == (map_name == "MMM2")


def test_env_config_is_validated() -> None:
    with pytest.raises(ValueError, match=r"difficulty.*allowed: map_name, episode_limit, seed, backend"):
        SMAXEnv({"map_name": "8m", "difficulty": "7"})
    with pytest.raises(ValueError, match="backend"):
        SMAXEnv({"backend": "sc2"})
    with pytest.raises(ValueError, match="episode_limit"):
        SMAXEnv({"episode_limit": 0})
    SMAXEnv({"backend": "auto"})
    SMAXEnv({"backend": "smax"})


def test_random_masked_rollouts_follow_the_layout() -> None:
    env = SMAXEnv({"map_name": "8m", "seed": 3})
    rng = np.random.default_rng(0)
    for _ in range(3):
        obs, infos = env.reset()
        assert all(info == {"backend": "smax", "battle_won": False} for info in infos.values())
        for t in range(1, env.episode_limit + 1):
            obs, rewards, terminateds, truncateds, infos = env.step(masked_random_actions(obs, rng))
            check_step_layout(env, obs, rewards, terminateds, truncateds, infos)
            allies, enemies = unit_alive(env)
            for i, aid in enumerate(env.possible_agents):
                mask = obs[aid]["action_mask"]
                assert mask[STOP_ACTION] == 1.0  # stop is always allowed
                if not allies[i]:
                    assert np.flatnonzero(mask).tolist() == [STOP_ACTION]
            if terminateds["__all__"] or truncateds["__all__"]:
                assert terminateds["__all__"] == (not allies.any() or not enemies.any())
                assert truncateds["__all__"] == (t == env.episode_limit and allies.any() and enemies.any())
                break
        else:
            pytest.fail("episode did not end within episode_limit")
    with pytest.raises(RuntimeError, match="reset"):
        env.step(masked_random_actions(obs, rng))


def test_battle_won_exactly_when_all_enemies_die() -> None:
    env = SMAXEnv({"map_name": "8m"})
    wins = 0
    for seed in range(6):
        obs, _ = env.reset(seed=seed)
        team_return = 0.0
        while True:
            obs, rewards, terminateds, truncateds, infos = env.step(focus_fire_actions(obs))
            team_return += rewards["agent_0"]
            allies, enemies = unit_alive(env)
            won = bool(allies.any() and not enemies.any())
            assert all(info["battle_won"] == won for info in infos.values())
            if terminateds["__all__"] or truncateds["__all__"]:
                break
        if won:
            wins += 1
            assert terminateds["__all__"] and not truncateds["__all__"]
            # All enemy health (1.0 in total) plus the win bonus of 1.
            assert team_return == pytest.approx(2.0, abs=1e-4)
    assert wins >= 1, "the focus-fire script never won 8m; cannot check battle_won"


def test_time_limit_truncates() -> None:
    env = SMAXEnv({"map_name": "8m", "episode_limit": 3, "seed": 0})
    env.reset()
    for t in range(3):
        *_, terminateds, truncateds, infos = env.step(dict.fromkeys(env.agents, STOP_ACTION))
        assert truncateds["__all__"] == (t == 2) and not terminateds["__all__"]
    assert all(truncateds[aid] and not infos[aid]["battle_won"] for aid in env.agents)


def test_seeded_reset_replays_the_episode() -> None:
    def rollout(env: SMAXEnv, seed: int, steps: int = 30) -> list[tuple[Any, ...]]:
        obs, _ = env.reset(seed=seed)
        rng = np.random.default_rng(1)
        trace = [(obs["agent_0"]["obs"].copy(), obs["agent_0"]["state"].copy(), 0.0)]
        for _ in range(steps):
            obs, rewards, terminateds, truncateds, _ = env.step(masked_random_actions(obs, rng))
            trace.append((obs["agent_3"]["obs"].copy(), obs["agent_3"]["state"].copy(), rewards["agent_3"]))
            if terminateds["__all__"] or truncateds["__all__"]:
                break
        return trace

    first, second = SMAXEnv({"map_name": "8m"}), SMAXEnv({"map_name": "8m"})
    a, b = rollout(first, 11), rollout(second, 11)
    rollout(first, 5)  # the env's history does not leak into a seeded reset
    c = rollout(first, 11)
    for x, y, z in zip(a, b, c, strict=True):
        for u, v, w in zip(x, y, z, strict=True):
            np.testing.assert_array_equal(u, v)
            np.testing.assert_array_equal(u, w)
    assert not np.array_equal(rollout(first, 12)[0][0], a[0][0])
    # env_config["seed"] seeds the first reset when reset() gets no seed.
    obs_a, _ = SMAXEnv({"map_name": "8m", "seed": 11}).reset()
    np.testing.assert_array_equal(obs_a["agent_0"]["obs"], a[0][0])


def test_bad_actions_raise_naming_agent_and_action() -> None:
    env = SMAXEnv({"map_name": "8m", "seed": 0})
    obs, _ = env.reset()
    actions = dict.fromkeys(env.agents, STOP_ACTION)
    with pytest.raises(ValueError, match=r"missing actions for \['agent_5'\]"):
        env.step({aid: a for aid, a in actions.items() if aid != "agent_5"})
    # At the start the teams are out of range of each other: attacking enemy 0 (action 5) is masked.
    assert obs["agent_2"]["action_mask"][5] == 0.0
    with pytest.raises(ValueError, match=r"agent agent_2 chose action 5, which is not available"):
        env.step({**actions, "agent_2": 5})
    with pytest.raises(ValueError, match="agent_9"):
        env.step({**actions, "agent_9": STOP_ACTION})
    env.step({aid: np.int64(a) for aid, a in actions.items()})  # numpy integers are fine


def test_envs_share_one_compilation() -> None:
    first, second = SMAXEnv({"map_name": "8m"}), SMAXEnv({"map_name": "8m", "seed": 1})
    assert first._compiled is second._compiled
    assert SMAXEnv({"map_name": "8m", "episode_limit": 7})._compiled is first._compiled
    assert SMAXEnv({"map_name": "3s_vs_5z"})._compiled is not first._compiled
    step = first._compiled.step
    for env in (first, second, first):
        env.reset()
        env.step(dict.fromkeys(env.agents, STOP_ACTION))
        env.step(dict.fromkeys(env.agents, STOP_ACTION))
    if hasattr(step, "_cache_size"):
        # JaxMARL's reset returns weakly typed leaves; the adapter casts them so that the steps after a
        # reset and after a step share one compilation.
        assert step._cache_size() == 1


def test_multi_agent_episode_accepts_a_full_battle() -> None:
    """RLlib's MultiAgentEpisode takes every step (dead units included) and sums n_agents x team reward."""
    env = SMAXEnv({"map_name": "8m", "seed": 2, "episode_limit": 40})
    episode = MultiAgentEpisode(observation_space=env.observation_space, action_space=env.action_space)
    obs, infos = env.reset()
    episode.add_env_reset(observations=obs, infos=infos)
    rng = np.random.default_rng(0)
    team_return = 0.0
    while not episode.is_done:
        actions = masked_random_actions(obs, rng)
        obs, rewards, terminateds, truncateds, infos = env.step(actions)
        team_return += rewards["agent_0"]
        episode.add_env_step(obs, actions, rewards, infos, terminateds=terminateds, truncateds=truncateds)
    assert episode.get_return() == pytest.approx(env.n_agents * team_return)


def test_state_is_scaled_into_unit_interval_like_smacs() -> None:
    """QMIX's hypernetworks read the state raw: SMAX's positions (0..32), cooldowns and type indices
    are scaled into [0, 1]; the mixed unit types of 2s3z stay distinguishable."""
    env = SMAXEnv({"map_name": "2s3z", "seed": 0})
    rng = np.random.default_rng(1)
    obs, _ = env.reset()
    states = [obs["agent_0"]["state"]]
    for _ in range(30):
        obs, _, terminateds, truncateds, _ = env.step(masked_random_actions(obs, rng))
        states.append(obs["agent_0"]["state"])
        if terminateds["__all__"] or truncateds["__all__"]:
            break
    states = np.stack(states)
    assert states.min() >= 0.0 and states.max() <= 1.0
    n_units = env.n_agents + 5
    types = states[0, -n_units:]
    assert len(set(types.round(3).tolist())) == 2  # stalkers and zealots
    assert states[:, : -2 * n_units].max() > 0.1  # positions and health are not squashed to 0


def test_reward_scale_rate_scales_every_reward_so_a_win_returns_the_rate() -> None:
    """``reward_scale_rate`` is SMAC's key: the most a battle returns (SMAX's raw maximum is 2)."""
    raw, scaled = SMAXEnv({"map_name": "8m"}), SMAXEnv({"map_name": "8m", "reward_scale_rate": 20})
    for seed in range(6):
        raw.reset(seed=seed)
        obs, _ = scaled.reset(seed=seed)
        team_return = 0.0
        while True:
            actions = focus_fire_actions(obs)
            _, rewards_raw, *_ = raw.step(actions)
            obs, rewards, terminateds, truncateds, infos = scaled.step(actions)
            assert rewards["agent_0"] == pytest.approx(10.0 * rewards_raw["agent_0"])
            team_return += rewards["agent_0"]
            if terminateds["__all__"] or truncateds["__all__"]:
                break
        if infos["agent_0"]["battle_won"]:
            assert team_return == pytest.approx(20.0, abs=1e-3)
            return
    pytest.fail("the focus-fire script never won 8m; cannot check the scaled win return")


@pytest.mark.parametrize("rate", [0, -1.0, "20", True, float("inf")])
def test_bad_reward_scale_rate_names_the_key(rate: Any) -> None:
    with pytest.raises(ValueError, match="reward_scale_rate for SMAX: must be a number > 0"):
        SMAXEnv({"map_name": "8m", "reward_scale_rate": rate})
