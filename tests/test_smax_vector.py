"""``SMAXVectorEnv`` (all SMAX sub-envs in one ``jax.vmap``-ed call) and the ``TeamEnvRunner`` that builds it.

The vector env must be a drop-in for RLlib's ``SyncVectorMultiAgentEnv`` over ``SMAXEnv``s: the same
observations, rewards, flags and infos bit for bit, for the same seeds and actions, through whole
battles and RLlib's next-step autoresets. No Ray cluster is started; EnvRunners are built in-process.
All tests use 4 sub-envs of 8m, so jit compiles the batch once for the whole module.
Skipped when ``jaxmarl`` is not installed.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np
import pytest
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.env.multi_agent_env import MultiAgentEnv
from ray.rllib.env.vector.sync_vector_multi_agent_env import SyncVectorMultiAgentEnv

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("jaxmarl") is None, reason='needs jaxmarl (pip install "rllib_grsn[smax]")'
)

import rllib_grsn.envs  # noqa: E402
from rllib_grsn.algorithms.qmix import QMixConfig, team_episode  # noqa: E402
from rllib_grsn.envs import smax as smax_module  # noqa: E402
from rllib_grsn.envs.multi_agent import make_multi_agent_env  # noqa: E402
from rllib_grsn.envs.smax import STOP_ACTION, SMAXEnv  # noqa: E402
from rllib_grsn.envs.smax_vector import SMAXVectorEnv  # noqa: E402
from rllib_grsn.envs.team_env_runner import TeamEnvRunner, vector_env_kind  # noqa: E402

NUM_ENVS = 4
SMALL_AGENT = {"core": "grsn", "hidden": 16, "obs_embed": 16, "head_hiddens": []}


@pytest.fixture
def registered_envs() -> None:
    """Tune's registry is lost at an earlier test's ray.shutdown(); these runners build envs without Ray."""
    rllib_grsn.envs.register_multi_agent_envs()


def masked_random_actions(
    observations: list[dict[str, Any]], rng: np.random.Generator
) -> list[dict[str, int]]:
    return [
        {aid: int(rng.choice(np.flatnonzero(o["action_mask"]))) for aid, o in obs.items()}
        for obs in observations
    ]


def assert_same_observations(expected: list[dict], actual: list[dict]) -> None:
    assert type(actual) is list and len(actual) == len(expected)
    for exp, act in zip(expected, actual, strict=True):
        assert list(act) == list(exp)
        for aid in exp:
            assert list(act[aid]) == list(exp[aid])
            for key in exp[aid]:
                assert type(act[aid][key]) is np.ndarray and act[aid][key].dtype == np.float32
                np.testing.assert_array_equal(act[aid][key], exp[aid][key], err_msg=f"{aid} {key}")


def team_config(env: str = "smac", env_config: dict | None = None, num_envs: int = NUM_ENVS) -> QMixConfig:
    return (
        QMixConfig()
        .environment(env, env_config=env_config or {})
        .env_runners(num_envs_per_env_runner=num_envs)
        .rl_module(rl_module_spec=RLModuleSpec(model_config=SMALL_AGENT))
        .debugging(seed=0)
    )


def test_movement_decoding_matches_jaxmarl_for_one_env() -> None:
    """The batch-invariant table lookup reproduces JaxMARL's own decoding of one env's actions bit for
    bit, on every map (SMAXEnv is unchanged by it)."""
    import jax
    import jax.numpy as jnp
    from jaxmarl.environments.smax import map_name_to_scenario

    jaxmarl = smax_module._jaxmarl()
    for map_name in smax_module.SMAX_MAPS:
        patched = smax_module._compiled_smax(map_name).env._env
        reference = jaxmarl.make("HeuristicEnemySMAX", scenario=map_name_to_scenario(map_name))._env
        n_units = reference.num_agents
        highest = max(reference.num_ally_actions, reference.num_enemy_actions)
        for offset in range(0, highest, n_units):
            actions = (jnp.arange(n_units, dtype=jnp.int32) + offset) % highest
            expected = jax.jit(reference._decode_discrete_actions)(actions)
            actual = jax.jit(patched._decode_discrete_actions)(actions)
            batched = jax.jit(jax.vmap(patched._decode_discrete_actions))(jnp.stack([actions] * 3))
            for exp, act, bat in zip(expected, actual, batched, strict=True):
                np.testing.assert_array_equal(np.asarray(act), np.asarray(exp), err_msg=map_name)
                np.testing.assert_array_equal(np.asarray(bat)[2], np.asarray(exp), err_msg=map_name)


def test_vector_env_equals_sync_vector_of_smax_envs_through_autoresets() -> None:
    """Same seeds and actions: identical results from the vmap-ed env and RLlib's sync vector of SMAXEnvs,
    through terminations, truncations and the next-step autoresets after them (actions for a resetting
    sub-env are ignored, so junk is sent there)."""
    config = {"map_name": "8m", "episode_limit": 25}
    sync = SyncVectorMultiAgentEnv([lambda: SMAXEnv(config) for _ in range(NUM_ENVS)])
    vector = SMAXVectorEnv(config, num_envs=NUM_ENVS)
    assert vector.single_observation_spaces == sync.single_observation_spaces
    assert vector.single_action_spaces == sync.single_action_spaces
    assert vector.single_observation_space == sync.single_observation_space
    assert vector.single_action_space == sync.single_action_space
    assert vector.metadata["autoreset_mode"] == sync.metadata["autoreset_mode"] == "next_step"

    expected_obs, expected_infos = sync.reset(seed=7)
    observations, infos = vector.reset(seed=7)
    assert_same_observations(expected_obs, observations)
    assert type(infos) is list and infos == list(expected_infos)

    rng = np.random.default_rng(0)
    ended = {"terminated": 0, "truncated": 0, "won": 0}
    autoresets = 0
    resetting = np.zeros(NUM_ENVS, dtype=bool)
    for _ in range(90):
        actions = masked_random_actions(expected_obs, rng)
        for i in np.flatnonzero(resetting):
            actions[i] = {"junk": -1}  # a resetting sub-env's action must not be looked at
        expected = sync.step(actions)
        actual = vector.step(actions)
        assert_same_observations(expected[0], actual[0])
        for exp, act in zip(expected[1:], actual[1:], strict=True):
            assert type(act) is np.ndarray and act.dtype == object and act.shape == exp.shape == (NUM_ENVS,)
            assert act.tolist() == exp.tolist()
        rewards, terminateds, truncateds, infos = actual[1:]
        for i in range(NUM_ENVS):
            assert all(type(r) is float for r in rewards[i].values())
            assert all(info["backend"] == "smax" for info in infos[i].values())
            if resetting[i]:
                autoresets += 1
                assert set(rewards[i].values()) == {0.0}
                assert not terminateds[i]["__all__"] and not truncateds[i]["__all__"]
            ended["terminated"] += terminateds[i]["__all__"]
            ended["truncated"] += truncateds[i]["__all__"]
            ended["won"] += infos[i]["agent_0"]["battle_won"]
        resetting = np.array(
            [t["__all__"] or u["__all__"] for t, u in zip(terminateds, truncateds, strict=True)]
        )
        expected_obs = expected[0]
    assert ended["terminated"] >= 1 and ended["truncated"] >= 1 and autoresets >= 4, ended

    # A reset without a seed continues every sub-env's key chain, as SMAXEnv.reset() does.
    expected_obs, _ = sync.reset()
    observations, _ = vector.reset()
    assert_same_observations(expected_obs, observations)


def test_reward_scale_rate_scales_the_vector_envs_rewards_as_one_envs() -> None:
    config = {"map_name": "8m", "episode_limit": 40}
    raw = SMAXVectorEnv(config, num_envs=NUM_ENVS)
    scaled = SMAXVectorEnv({**config, "reward_scale_rate": 20}, num_envs=NUM_ENVS)
    observations, _ = raw.reset(seed=3)
    scaled.reset(seed=3)
    rng = np.random.default_rng(0)
    total = 0.0
    for _ in range(40):
        actions = masked_random_actions(observations, rng)
        observations, rewards_raw, *_ = raw.step(actions)
        _, rewards, *_ = scaled.step(actions)
        for i in range(NUM_ENVS):
            assert rewards[i]["agent_0"] == pytest.approx(10.0 * rewards_raw[i]["agent_0"])
            total += rewards_raw[i]["agent_0"]
    assert total > 0, "no damage dealt in 40 random steps; the check compared zeros only"


def test_seeds_and_episode_limits_are_per_sub_env() -> None:
    vector = SMAXVectorEnv({"map_name": "8m", "episode_limit": 3, "seed": 5}, num_envs=NUM_ENVS)
    observations, _ = vector.reset()  # env_config seed: sub-env i starts from seed + i
    for i in range(NUM_ENVS):
        single, _ = SMAXEnv({"map_name": "8m"}).reset(seed=5 + i)
        np.testing.assert_array_equal(observations[i]["agent_0"]["obs"], single["agent_0"]["obs"])
    assert not np.array_equal(observations[0]["agent_0"]["state"], observations[1]["agent_0"]["state"])
    observations, _ = vector.reset(seed=[3, None, 3, None])
    np.testing.assert_array_equal(observations[0]["agent_0"]["state"], observations[2]["agent_0"]["state"])
    with pytest.raises(ValueError, match="length must match num_envs=4"):
        vector.reset(seed=[1, 2])

    stop = [dict.fromkeys(vector.possible_agents, STOP_ACTION)] * NUM_ENVS
    vector.reset(seed=0)
    vector.step(stop)
    # Sub-envs 0 and 1 stepped once more than 2 and 3: the limit hits them one step earlier.
    vector._t[2:] -= 1
    _, _, terminateds, truncateds, _ = vector.step(stop)
    _, _, _, truncateds_next, _ = vector.step(stop)
    assert [t["__all__"] for t in truncateds] == [False] * NUM_ENVS
    _, _, _, truncateds, _ = vector.step(stop)
    assert [t["__all__"] for t in truncateds_next] == [True, True, False, False]
    assert [t["__all__"] for t in truncateds] == [False, False, True, True]  # 0, 1 were reset
    assert not any(t["__all__"] for t in terminateds)


def test_bad_actions_and_misuse_raise() -> None:
    vector = SMAXVectorEnv({"map_name": "8m", "seed": 0}, num_envs=NUM_ENVS)
    with pytest.raises(RuntimeError, match="before reset"):
        vector.step([{}] * NUM_ENVS)
    observations, _ = vector.reset()
    actions = [dict.fromkeys(vector.possible_agents, STOP_ACTION) for _ in range(NUM_ENVS)]
    assert observations[1]["agent_2"]["action_mask"][5] == 0.0  # out of range at the start
    actions[1]["agent_2"] = 5
    with pytest.raises(ValueError, match=r"agent agent_2 chose action 5, which is not available"):
        vector.step(actions)
    actions[1]["agent_2"] = STOP_ACTION
    with pytest.raises(ValueError, match=r"missing actions for \['agent_5'\]"):
        vector.step([*actions[:3], {aid: a for aid, a in actions[3].items() if aid != "agent_5"}])
    with pytest.raises(ValueError, match="agent agent_1: action must be a single integer"):
        vector.step([*actions[:3], {**actions[3], "agent_1": 4.0}])
    with pytest.raises(ValueError, match="agent_9"):
        vector.step([*actions[:3], {**actions[3], "agent_9": STOP_ACTION}])
    with pytest.raises(ValueError, match="one action dict per sub-env"):
        vector.step(actions[:2])
    vector.step([{aid: np.int64(a) for aid, a in act.items()} for act in actions])  # numpy ints are fine
    with pytest.raises(ValueError, match="num_envs"):
        SMAXVectorEnv({"map_name": "8m"}, num_envs=0)
    with pytest.raises(ValueError, match="difficulty"):
        SMAXVectorEnv({"map_name": "8m", "difficulty": "7"}, num_envs=2)
    view = vector.envs[3].unwrapped
    assert isinstance(view, MultiAgentEnv) and view.possible_agents == vector.possible_agents
    assert view.get_action_space("agent_0") == vector.single_action_spaces["agent_0"]
    assert vector.get_attr("map_name") == ("8m",) * NUM_ENVS
    with pytest.raises(RuntimeError, match="stepped by the vector env"):
        view.step({})


def test_vectorize_is_validated() -> None:
    for bad in ("vmap", True, None):
        with pytest.raises(ValueError, match="vectorize"):
            SMAXEnv({"vectorize": bad})
        with pytest.raises(ValueError, match="vectorize"):
            make_multi_agent_env("smac", {"backend": "smax", "vectorize": bad})
        with pytest.raises(ValueError, match="vectorize"):
            vector_env_kind("smac", {"backend": "smax", "vectorize": bad}, NUM_ENVS)
    for mode in ("auto", "sync", "jax"):
        assert isinstance(make_multi_agent_env("smac", {"backend": "smax", "vectorize": mode}), SMAXEnv)
    with pytest.raises(ValueError, match="needs the smac env on backend smax"):
        vector_env_kind("mpe_simple_spread", {"vectorize": "jax"}, NUM_ENVS)
    with pytest.raises(ValueError, match="needs backend smax"):
        make_multi_agent_env("smac", {"backend": "sc2", "vectorize": "jax"})


def test_vectorize_picks_the_vector_env() -> None:
    smax = {"backend": "smax"}
    assert vector_env_kind("smac", smax, NUM_ENVS) == "jax"
    assert vector_env_kind("smac", smax, 1) == "sync"
    assert vector_env_kind("smac", {**smax, "vectorize": "jax"}, 1) == "jax"
    assert vector_env_kind("smac", {**smax, "vectorize": "sync"}, NUM_ENVS) == "sync"
    assert vector_env_kind("two_step_game", {}, NUM_ENVS) == "sync"
    assert vector_env_kind("mpe_simple_spread", {}, NUM_ENVS) == "sync"


def test_qmix_config_uses_the_team_env_runner() -> None:
    assert QMixConfig().env_runner_cls is TeamEnvRunner


def test_team_env_runner_samples_whole_smax_episodes_with_the_vmap_env(registered_envs: None) -> None:
    config = team_config(env_config={"map_name": "8m", "backend": "smax", "episode_limit": 30})
    runner = TeamEnvRunner(config=config)
    try:
        assert isinstance(runner.env, SMAXVectorEnv) and runner.num_envs == NUM_ENVS
        episodes = runner.sample(num_episodes=6, explore=True)
        metrics = runner.get_metrics()
    finally:
        runner.stop()
    finished = [e for e in episodes if e.is_done]
    assert len(finished) >= 6
    for episode in finished:
        team = team_episode(episode)
        assert 1 <= len(team.actions) <= 30 and team.actions.shape[1] == 8
        assert team.terminated or len(team.actions) == 30
        assert team.backend == "smax" and team.won is not None
    assert metrics["num_episodes"] >= 6
    assert "win_rate" in metrics


@pytest.mark.parametrize(
    ("env", "env_config"),
    [
        ("smac", {"map_name": "8m", "backend": "smax", "vectorize": "sync"}),
        ("two_step_game", {}),
        ("mpe_simple_spread", {}),
    ],
)
def test_team_env_runner_falls_back_to_rllibs_sync_vector_env(
    registered_envs: None, env: str, env_config: dict
) -> None:
    runner = TeamEnvRunner(config=team_config(env, env_config, num_envs=2))
    try:
        assert type(runner.env) is SyncVectorMultiAgentEnv
        episodes = runner.sample(num_episodes=2, explore=True)
    finally:
        runner.stop()
    assert sum(e.is_done for e in episodes) >= 2
