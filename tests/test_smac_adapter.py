"""The SMAC adapter (``rllib_grsn.envs.smac``) against a fake ``StarCraft2Env`` with SMAC's API.

StarCraft II and ``smac`` are not installed here, so :class:`FakeStarCraft2Env` reproduces the parts of
``smac.env.StarCraft2Env`` the adapter uses, with SMAC's semantics: ``get_env_info()`` works before the
first ``reset()`` (SMAC launches StarCraft II there), ``reset()`` returns ``(obs, state)``, ``step()``
returns ``(reward, terminated, info)`` with ``info["battle_won"]``, the time limit is reported as
``terminated=True`` and carries ``info["episode_limit"] = True`` only when built with
``continuing_episode=True`` (as in SMAC's source), dead agents may only take the no-op 0, alive ones
never, and an unavailable action fails. It is seeded and deterministic, kills units over time (so masks
change) and ends with a win, a loss (if allowed) or the time limit. Unknown keyword arguments raise
``TypeError`` like the real constructor.

The fake is installed at the adapter's one seam, ``rllib_grsn.envs.smac._starcraft2_env_class``.
No Ray cluster is started.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from ray.rllib.env.multi_agent_env import ENV_STATE, MultiAgentEnv
from ray.rllib.env.multi_agent_episode import MultiAgentEpisode
from ray.rllib.utils.pre_checks.env import check_multiagent_environments

import rllib_grsn.envs.smac as smac_adapter
from rllib_grsn.envs.smac import SMAC_MAPS, SMACEnv, SMACNotInstalledError

N_ACTIONS_NO_ATTACK = 6  # SMAC: no-op, stop, north, south, east, west; then one attack per enemy.


@dataclass(frozen=True)
class FakeMapSizes:
    n_agents: int
    n_enemies: int
    obs_shape: int
    state_shape: int
    episode_limit: int

    @property
    def n_actions(self) -> int:
        return N_ACTIONS_NO_ATTACK + self.n_enemies


# 8m is verified against SMAC (8 agents, obs 80, state 168, 14 actions, limit 120). The others are NOT
# verified against a running StarCraft II: they are computed from SMAC's get_obs_size()/get_state_size()
# with its default flags and the map registry (n_enemies, limit, races, unit_type_bits).
FAKE_MAP_SIZES: dict[str, FakeMapSizes] = {
    "8m": FakeMapSizes(8, 8, 80, 168, 120),
    "2s3z": FakeMapSizes(5, 5, 80, 120, 120),
    "8m_vs_9m": FakeMapSizes(8, 9, 85, 179, 120),
    "3s_vs_5z": FakeMapSizes(3, 5, 48, 68, 250),
    "27m_vs_30m": FakeMapSizes(27, 30, 285, 1170, 180),
    "MMM2": FakeMapSizes(10, 12, 176, 322, 180),
}

# StarCraft2Env's constructor arguments besides map_name, seed and continuing_episode (SMAC v1).
SMAC_KWARGS = frozenset(
    {
        "step_mul", "move_amount", "difficulty", "game_version", "obs_all_health", "obs_own_health",
        "obs_last_action", "obs_pathing_grid", "obs_terrain_height", "obs_instead_of_state",
        "state_last_action", "reward_sparse", "reward_only_positive", "reward_death_value", "reward_win",
        "reward_defeat", "reward_negative_scale", "reward_scale", "reward_scale_rate", "replay_dir",
        "replay_prefix", "window_size_x", "window_size_y", "debug",
    }
)  # fmt: skip


class FakeStarCraft2Env:
    """SMAC's ``StarCraft2Env`` API with fake, seeded battle dynamics (see the module docstring).

    Fake-only knobs (keyword arguments the real class does not have): ``kill_p``, the chance an attack
    kills its target; ``ally_death_p``, the chance per step an alive agent dies; ``can_lose``, whether
    the last agent may die (a loss); otherwise one agent always survives.
    """

    def __init__(
        self,
        map_name: str = "8m",
        seed: int | None = None,
        continuing_episode: bool = False,
        *,
        kill_p: float = 0.15,
        ally_death_p: float = 0.03,
        can_lose: bool = False,
        **kwargs: Any,
    ):
        unknown = set(kwargs) - SMAC_KWARGS
        if unknown:
            raise TypeError(f"StarCraft2Env.__init__() got unexpected keyword arguments {sorted(unknown)}")
        self.map_name = map_name
        self.sizes = FAKE_MAP_SIZES[map_name]  # KeyError like SMAC's get_map_params
        self.seed = seed
        self.continuing_episode = continuing_episode
        self.kwargs = kwargs
        self.kill_p, self.ally_death_p, self.can_lose = kill_p, ally_death_p, can_lose
        self.n_agents = self.sizes.n_agents
        self.n_enemies = self.sizes.n_enemies
        self.n_actions = self.sizes.n_actions
        self.episode_limit = self.sizes.episode_limit
        self._rng = np.random.default_rng(0 if seed is None else seed)
        self.launched = False
        self.closed = False
        self.steps_taken: list[list[int]] = []
        self.rewards_given: list[float] = []
        self._done = False

    def get_env_info(self) -> dict[str, int]:
        return {
            "state_shape": self.sizes.state_shape,
            "obs_shape": self.sizes.obs_shape,
            "n_actions": self.n_actions,
            "n_agents": self.n_agents,
            "episode_limit": self.episode_limit,
        }

    def reset(self) -> tuple[list[np.ndarray], np.ndarray]:
        self.launched = True  # SMAC launches StarCraft II on its first reset()
        self._t = 0
        self._done = False
        self._ally_alive = np.ones(self.n_agents, dtype=bool)
        self._enemy_alive = np.ones(self.n_enemies, dtype=bool)
        self._last_action = np.zeros((self.n_agents, self.n_actions), dtype=np.float32)
        self._update_views()
        return self.get_obs(), self.get_state()

    def _update_views(self) -> None:
        n_agents, n_actions = self.n_agents, self.n_actions
        avail = np.zeros((n_agents, n_actions), dtype=np.int64)
        for i in range(n_agents):
            if not self._ally_alive[i]:
                avail[i, 0] = 1  # dead: only the no-op
                continue
            avail[i, 1] = 1  # stop is always allowed when alive
            avail[i, 2:N_ACTIONS_NO_ATTACK] = self._rng.random(4) < 0.75  # pathable directions
            in_range = self._rng.random(self.n_enemies) < 0.5
            avail[i, N_ACTIONS_NO_ATTACK:] = self._enemy_alive & in_range
        self._avail = avail

        obs = self._rng.uniform(-1, 1, (n_agents, self.sizes.obs_shape)).astype(np.float32)
        obs[:, :4] = avail[:, 2:N_ACTIONS_NO_ATTACK]  # SMAC's move features are the move availabilities
        obs[~self._ally_alive] = 0.0  # SMAC: a dead agent observes zeros
        self._obs = obs

        head = np.concatenate([self._ally_alive, self._enemy_alive]).astype(np.float32)
        tail = self._last_action.reshape(-1)  # SMAC's state ends with all agents' last actions
        filler = self._rng.uniform(-1, 1, self.sizes.state_shape - head.size - tail.size)
        self._state = np.concatenate([head, filler, tail]).astype(np.float32)

    def _check_launched(self) -> None:
        if not self.launched:
            raise RuntimeError("fake SMAC: StarCraft II is not running; call reset() first")

    def get_obs(self) -> list[np.ndarray]:
        self._check_launched()
        return [row.copy() for row in self._obs]

    def get_state(self) -> np.ndarray:
        self._check_launched()
        return self._state.copy()

    def get_avail_actions(self) -> list[list[int]]:
        self._check_launched()
        return [[int(a) for a in row] for row in self._avail]

    def step(self, actions: list[int]) -> tuple[float, bool, dict[str, Any]]:
        self._check_launched()
        if self._done:
            raise RuntimeError("fake SMAC: step() after the episode ended, without reset()")
        assert len(actions) == self.n_agents, f"need {self.n_agents} actions, got {len(actions)}"
        for a_id, action in enumerate(actions):
            if type(action) is not int:  # the adapter must hand over plain Python ints
                raise TypeError(f"agent {a_id}: action {action!r} is a {type(action).__name__}, not int")
            assert self._avail[a_id, action] == 1, f"Agent {a_id} cannot perform action {action}"
        self.steps_taken.append(list(actions))
        self._last_action = np.eye(self.n_actions, dtype=np.float32)[actions]

        kills = 0
        for action in actions:
            target = action - N_ACTIONS_NO_ATTACK
            if target >= 0 and self._enemy_alive[target] and self._rng.random() < self.kill_p:
                self._enemy_alive[target] = False
                kills += 1
        for a_id in range(self.n_agents):
            last_one = self._ally_alive.sum() == 1
            if self._ally_alive[a_id] and self._rng.random() < self.ally_death_p:
                if last_one and not self.can_lose:
                    continue
                self._ally_alive[a_id] = False
        self._t += 1

        reward = float(kills)
        terminated = False
        info: dict[str, Any] = {"battle_won": False}
        if not self._enemy_alive.any():
            terminated = True
            info["battle_won"] = True
            reward += 10.0
        elif not self._ally_alive.any():
            terminated = True
        elif self._t >= self.episode_limit:
            terminated = True
            if self.continuing_episode:  # exactly SMAC's rule
                info["episode_limit"] = True
        self._done = terminated
        self._update_views()
        self.rewards_given.append(reward)
        return np.float64(reward), terminated, info  # SMAC's reward may be a numpy float

    def close(self) -> None:
        self.closed = True


class FakeSC2Factory:
    """Stands in for the ``StarCraft2Env`` class; records every fake it builds."""

    def __init__(self, **knobs: Any):
        self.knobs = knobs
        self.instances: list[FakeStarCraft2Env] = []

    def __call__(self, **kwargs: Any) -> FakeStarCraft2Env:
        env = FakeStarCraft2Env(**kwargs, **self.knobs)
        self.instances.append(env)
        return env

    @property
    def last(self) -> FakeStarCraft2Env:
        return self.instances[-1]


@pytest.fixture
def install_fake(monkeypatch: pytest.MonkeyPatch) -> Callable[..., FakeSC2Factory]:
    def install(**knobs: Any) -> FakeSC2Factory:
        factory = FakeSC2Factory(**knobs)
        monkeypatch.setattr(smac_adapter, "_starcraft2_env_class", lambda: factory)
        return factory

    return install


def random_masked_actions(obs: dict, rng: np.random.Generator) -> dict[str, Any]:
    """A random agent that samples only available actions (numpy ints, as RLlib's modules give)."""
    return {aid: rng.choice(np.flatnonzero(o["action_mask"])) for aid, o in obs.items()}


def attacking_actions(obs: dict, rng: np.random.Generator) -> dict[str, Any]:
    """Attacks a random available enemy when it can, else takes a random available action."""
    actions = {}
    for aid, o in obs.items():
        avail = np.flatnonzero(o["action_mask"])
        attacks = avail[avail >= N_ACTIONS_NO_ATTACK]
        actions[aid] = rng.choice(attacks if attacks.size else avail)
    return actions


def run_episode(
    env: SMACEnv, policy: Callable = random_masked_actions, seed: int = 0, reset_seed: int | None = None
) -> list[tuple]:
    """One episode; returns [(obs, infos) of the reset, then (actions, obs, rew, term, trunc, infos)...]."""
    rng = np.random.default_rng(seed)
    obs, infos = env.reset(seed=reset_seed)
    transitions: list[tuple] = [(obs, infos)]
    for _ in range(env.episode_limit + 1):
        actions = policy(obs, rng)
        obs, rewards, terminateds, truncateds, infos = env.step(actions)
        transitions.append((actions, obs, rewards, terminateds, truncateds, infos))
        if terminateds["__all__"] or truncateds["__all__"]:
            return transitions
    raise AssertionError("episode did not end within the episode limit")


def test_supported_maps_and_fake_sizes_agree() -> None:
    assert SMAC_MAPS == {"8m": 8, "2s3z": 5, "8m_vs_9m": 8, "3s_vs_5z": 3, "27m_vs_30m": 27, "MMM2": 10}
    assert {name: sizes.n_agents for name, sizes in FAKE_MAP_SIZES.items()} == SMAC_MAPS
    assert FAKE_MAP_SIZES["8m"] == FakeMapSizes(8, 8, 80, 168, 120) and FAKE_MAP_SIZES["8m"].n_actions == 14


@pytest.mark.parametrize("map_name", list(SMAC_MAPS))
def test_spaces_for_every_map(install_fake: Callable[..., FakeSC2Factory], map_name: str) -> None:
    install_fake()
    env = SMACEnv({"map_name": map_name, "seed": 1})
    sizes = FAKE_MAP_SIZES[map_name]
    ids = [f"agent_{i}" for i in range(SMAC_MAPS[map_name])]
    assert isinstance(env, MultiAgentEnv)
    assert env.agents == ids and env.possible_agents == ids and env.num_agents == SMAC_MAPS[map_name]
    assert env.episode_limit == sizes.episode_limit
    assert set(env.observation_spaces) == set(ids) and set(env.action_spaces) == set(ids)
    assert set(env.observation_space.spaces) == set(ids) and set(env.action_space.spaces) == set(ids)
    for aid in ids:
        space = env.get_observation_space(aid)
        assert isinstance(space, gym.spaces.Dict)
        assert set(space.spaces) == {"obs", "action_mask", ENV_STATE}
        expected = {"obs": sizes.obs_shape, "action_mask": sizes.n_actions, "state": sizes.state_shape}
        for key, size in expected.items():
            box = space[key]
            assert isinstance(box, gym.spaces.Box) and box.shape == (size,) and box.dtype == np.float32
        assert space["action_mask"].low.min() == 0.0 and space["action_mask"].high.max() == 1.0
        assert env.get_action_space(aid) == gym.spaces.Discrete(sizes.n_actions)

    obs, _ = env.reset()
    for aid in ids:
        assert all(obs[aid][key].dtype == np.float32 for key in obs[aid])
        assert env.get_observation_space(aid).contains(obs[aid])
    obs, *_ = env.step(random_masked_actions(obs, np.random.default_rng(0)))
    assert all(env.get_observation_space(aid).contains(obs[aid]) for aid in ids)
    assert env.observation_space.contains(obs)


def test_reset_and_step_structure_with_team_reward(install_fake: Callable[..., FakeSC2Factory]) -> None:
    factory = install_fake(kill_p=0.5)
    env = SMACEnv({"map_name": "8m", "seed": 3})
    obs, infos = env.reset()
    ids = env.agents
    assert set(obs) == set(ids) and infos == {aid: {"backend": "sc2"} for aid in ids}
    rng = np.random.default_rng(0)
    saw_nonzero_reward = False
    for _ in range(20):
        obs, rewards, terminateds, truncateds, infos = env.step(attacking_actions(obs, rng))
        team_reward = factory.last.rewards_given[-1]
        saw_nonzero_reward |= team_reward != 0.0
        assert set(obs) == set(rewards) == set(infos) == set(ids)
        assert set(terminateds) == set(truncateds) == {*ids, "__all__"}
        assert all(type(r) is float and r == team_reward for r in rewards.values())
        assert all(type(flag) is bool for flag in [*terminateds.values(), *truncateds.values()])
        assert all(info["backend"] == "sc2" and type(info["battle_won"]) is bool for info in infos.values())
        if terminateds["__all__"] or truncateds["__all__"]:
            break
    assert saw_nonzero_reward


def test_global_state_is_repeated_for_every_agent(install_fake: Callable[..., FakeSC2Factory]) -> None:
    factory = install_fake()
    env = SMACEnv({"map_name": "2s3z", "seed": 5})
    obs, _ = env.reset()
    rng = np.random.default_rng(1)
    for _ in range(10):
        state = factory.last.get_state()
        for aid in env.agents:
            np.testing.assert_array_equal(obs[aid]["state"], state)
        assert not np.shares_memory(obs["agent_0"]["state"], obs["agent_1"]["state"])
        obs, *_ = env.step(random_masked_actions(obs, rng))


def test_masks_and_obs_equal_smac_getters(install_fake: Callable[..., FakeSC2Factory]) -> None:
    factory = install_fake(ally_death_p=0.2, kill_p=0.0)
    env = SMACEnv({"map_name": "8m", "seed": 11})
    obs, _ = env.reset()
    rng = np.random.default_rng(2)
    dead_masks_seen = 0
    for _ in range(15):
        avail = np.asarray(factory.last.get_avail_actions(), dtype=np.float32)
        smac_obs = factory.last.get_obs()
        for i, aid in enumerate(env.agents):
            assert obs[aid]["action_mask"].dtype == np.float32
            np.testing.assert_array_equal(obs[aid]["action_mask"], avail[i])
            np.testing.assert_array_equal(obs[aid]["obs"], smac_obs[i])
            if avail[i, 0] == 1.0:
                dead_masks_seen += 1
                np.testing.assert_array_equal(obs[aid]["action_mask"], np.eye(14, dtype=np.float32)[0])
        obs, *_ = env.step(random_masked_actions(obs, rng))
    assert dead_masks_seen > 0, "agents should die over time, leaving only the no-op available"


def test_won_battle_terminates(install_fake: Callable[..., FakeSC2Factory]) -> None:
    install_fake(kill_p=1.0, ally_death_p=0.0)
    env = SMACEnv({"map_name": "8m", "seed": 0})
    transitions = run_episode(env, attacking_actions)
    *_, terminateds, truncateds, infos = transitions[-1]
    assert len(transitions) - 1 < env.episode_limit
    assert terminateds == {**dict.fromkeys(env.agents, True), "__all__": True}
    assert truncateds == {**dict.fromkeys(env.agents, False), "__all__": False}
    assert all(info["battle_won"] is True for info in infos.values())
    for *_, terminateds, truncateds, infos in transitions[1:-1]:
        assert not any(terminateds.values()) and not any(truncateds.values())
        assert not any(info["battle_won"] for info in infos.values())


def test_lost_battle_terminates_without_win(install_fake: Callable[..., FakeSC2Factory]) -> None:
    install_fake(kill_p=0.0, ally_death_p=0.5, can_lose=True)
    env = SMACEnv({"map_name": "3s_vs_5z", "seed": 0})
    transitions = run_episode(env)
    *_, terminateds, truncateds, infos = transitions[-1]
    assert len(transitions) - 1 < env.episode_limit
    assert terminateds["__all__"] is True and truncateds["__all__"] is False
    assert not any(info["battle_won"] for info in infos.values())


def test_time_limit_is_a_truncation(install_fake: Callable[..., FakeSC2Factory]) -> None:
    factory = install_fake(kill_p=0.0)
    env = SMACEnv({"map_name": "8m", "seed": 0})
    assert factory.last.continuing_episode is True, "the adapter must ask SMAC to report the time limit"
    transitions = run_episode(env)
    *_, terminateds, truncateds, infos = transitions[-1]
    assert len(transitions) - 1 == env.episode_limit == 120
    assert truncateds == {**dict.fromkeys(env.agents, True), "__all__": True}
    assert terminateds == {**dict.fromkeys(env.agents, False), "__all__": False}
    assert all(info["battle_won"] is False and info["episode_limit"] is True for info in infos.values())


def test_time_limit_without_continuing_episode_looks_like_termination(
    install_fake: Callable[..., FakeSC2Factory],
) -> None:
    """SMAC's own default (continuing_episode=False, as in pymarl) hides the time limit."""
    factory = install_fake(kill_p=0.0)
    env = SMACEnv({"map_name": "8m", "seed": 0, "continuing_episode": False})
    assert factory.last.continuing_episode is False
    *_, terminateds, truncateds, _ = run_episode(env)[-1]
    assert terminateds["__all__"] is True and truncateds["__all__"] is False


def test_battle_won_defaults_to_false_when_smac_omits_it(
    install_fake: Callable[..., FakeSC2Factory], monkeypatch: pytest.MonkeyPatch
) -> None:
    factory = install_fake()
    env = SMACEnv({"map_name": "8m", "seed": 0})
    obs, _ = env.reset()
    # SMAC returns (0, True, {}) after a StarCraft II protocol error and a full restart.
    monkeypatch.setattr(factory.last, "step", lambda actions: (0, True, {}))
    _, rewards, terminateds, truncateds, infos = env.step(random_masked_actions(obs, np.random.default_rng()))
    assert all(info == {"battle_won": False, "backend": "sc2"} for info in infos.values())
    assert terminateds["__all__"] is True and truncateds["__all__"] is False
    assert set(rewards.values()) == {0.0}


def test_unavailable_action_raises_naming_the_agent(install_fake: Callable[..., FakeSC2Factory]) -> None:
    factory = install_fake()
    env = SMACEnv({"map_name": "8m", "seed": 0})
    obs, _ = env.reset()
    actions = random_masked_actions(obs, np.random.default_rng(0))
    available = np.flatnonzero(obs["agent_5"]["action_mask"]).tolist()
    assert 0 not in available  # alive agents may not take the no-op
    with pytest.raises(ValueError) as excinfo:
        env.step({**actions, "agent_5": 0})
    message = str(excinfo.value)
    assert "agent_5" in message and "action 0" in message and str(available) in message
    with pytest.raises(ValueError, match="agent_2 chose action 14"):
        env.step({**actions, "agent_2": 14})  # out of range
    with pytest.raises(ValueError, match="agent_1"):
        env.step({**actions, "agent_1": 1.0})  # not an integer
    assert factory.last.steps_taken == []  # nothing reached StarCraft II


def test_missing_or_unknown_agent_action_raises(install_fake: Callable[..., FakeSC2Factory]) -> None:
    factory = install_fake()
    env = SMACEnv({"map_name": "8m", "seed": 0})
    obs, _ = env.reset()
    actions = random_masked_actions(obs, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"missing actions for \['agent_3'\]"):
        env.step({aid: a for aid, a in actions.items() if aid != "agent_3"})
    with pytest.raises(ValueError, match="agent_8"):
        env.step({**actions, "agent_8": 1})
    assert factory.last.steps_taken == []


def test_numpy_actions_reach_smac_as_ints(install_fake: Callable[..., FakeSC2Factory]) -> None:
    factory = install_fake()
    env = SMACEnv({"map_name": "8m", "seed": 0})
    obs, _ = env.reset()
    actions = random_masked_actions(obs, np.random.default_rng(0))  # np.int64 values
    actions["agent_0"] = np.array(actions["agent_0"], dtype=np.int32)  # 0-d array
    actions["agent_1"] = int(actions["agent_1"])
    env.step(actions)  # the fake raises TypeError on anything but int
    assert factory.last.steps_taken == [[int(actions[aid]) for aid in env.agents]]


def test_unknown_map_lists_supported_maps(install_fake: Callable[..., FakeSC2Factory]) -> None:
    factory = install_fake()
    with pytest.raises(ValueError) as excinfo:
        SMACEnv({"map_name": "3m"})
    assert "3m" in str(excinfo.value)
    assert all(name in str(excinfo.value) for name in SMAC_MAPS)
    assert factory.instances == []  # checked before StarCraft II is touched
    with pytest.raises(ValueError, match="smax"):
        SMACEnv({"map_name": "8m", "backend": "smax"})


def test_missing_smac_gives_install_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "smac", None)  # `import smac...` now raises ImportError
    monkeypatch.setitem(sys.modules, "smac.env", None)
    with pytest.raises(SMACNotInstalledError) as excinfo:
        SMACEnv({"map_name": "8m"})
    assert isinstance(excinfo.value, ImportError)
    message = str(excinfo.value)
    for needle in [
        "not installed",
        "pip install git+https://github.com/oxwhirl/smac.git",
        "protobuf==3.20.3",
        "SC2PATH",
        "backend: smax",
    ]:
        assert needle in message, needle


def test_protobuf_too_new_gives_pin_message(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """protobuf >= 4 fails on SMAC's generated modules with a TypeError, not an ImportError."""
    package = tmp_path / "smac" / "env"
    package.mkdir(parents=True)
    (tmp_path / "smac" / "__init__.py").write_text("")
    (package / "__init__.py").write_text(
        textwrap.dedent(
            """
            raise TypeError("Descriptors cannot be created directly.\\n"
                            "If this call came from a _pb2.py file, your generated code is out of date")
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        with pytest.raises(SMACNotInstalledError, match=r"pip install protobuf==3\.20\.3"):
            smac_adapter._starcraft2_env_class()
    finally:
        for name in ("smac.env", "smac"):
            sys.modules.pop(name, None)


def test_config_passes_through_to_starcraft2env(install_fake: Callable[..., FakeSC2Factory]) -> None:
    factory = install_fake()
    SMACEnv({"map_name": "MMM2", "seed": 7, "difficulty": "7", "reward_sparse": True, "backend": "sc2"})
    fake = factory.last
    assert (fake.map_name, fake.seed, fake.continuing_episode) == ("MMM2", 7, True)
    assert fake.kwargs == {"difficulty": "7", "reward_sparse": True}
    assert not fake.launched  # building the RLlib env must not start StarCraft II
    with pytest.raises(TypeError, match="difficulty_typo"):  # SMAC itself rejects unknown keys
        SMACEnv({"map_name": "8m", "difficulty_typo": "7"})


def test_reset_seed_seeds_starcraft_and_reproduces(install_fake: Callable[..., FakeSC2Factory]) -> None:
    factory = install_fake()
    env = SMACEnv({"map_name": "8m"})
    first = run_episode(env, reset_seed=3)
    assert len(factory.instances) == 2 and factory.last.seed == 3  # rebuilt before launch (free)
    assert not factory.instances[0].launched

    other = run_episode(env)  # no seed: the same StarCraft II keeps running
    assert len(factory.instances) == 2

    again = run_episode(env, reset_seed=3)  # a seed after launch restarts StarCraft II with it
    assert len(factory.instances) == 3 and factory.instances[1].closed and factory.last.seed == 3

    np.testing.assert_equal(again, first)
    with pytest.raises(AssertionError):
        np.testing.assert_equal(other, first)


def test_step_outside_an_episode_raises(install_fake: Callable[..., FakeSC2Factory]) -> None:
    install_fake(kill_p=1.0)
    env = SMACEnv({"map_name": "3s_vs_5z", "seed": 0})
    with pytest.raises(RuntimeError, match="reset"):
        env.step(dict.fromkeys(env.agents, 1))
    transitions = run_episode(env, attacking_actions)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(random_masked_actions(transitions[-1][1], np.random.default_rng(0)))


def test_close_closes_starcraft(install_fake: Callable[..., FakeSC2Factory]) -> None:
    factory = install_fake()
    env = SMACEnv({"map_name": "8m", "seed": 0})
    env.reset()
    fake = factory.last
    env.close()
    assert fake.closed
    env.close()  # idempotent


def test_random_agent_rollout_8m_runs_to_the_end(install_fake: Callable[..., FakeSC2Factory]) -> None:
    install_fake()
    env = SMACEnv({"map_name": "8m", "seed": 42})
    outcomes = []
    for episode in range(3):
        transitions = run_episode(env, random_masked_actions, seed=episode)
        for actions, obs, *_ in transitions[1:]:
            assert env.observation_space.contains(obs)
            assert all(isinstance(a, np.integer) for a in actions.values())
        *_, terminateds, truncateds, infos = transitions[-1]
        assert terminateds["__all__"] != truncateds["__all__"]
        assert len(transitions) - 1 <= env.episode_limit
        outcomes.append((terminateds["__all__"], infos["agent_0"]["battle_won"]))
    assert all(isinstance(won, bool) for _, won in outcomes)
    env.close()


def test_rllib_episode_accepts_a_whole_rollout(install_fake: Callable[..., FakeSC2Factory]) -> None:
    """RLlib 2.60's MultiAgentEpisode rejects data for an agent once it was reported done: dead SMAC
    agents, which must keep acting (no-op), therefore must not be flagged terminated early."""
    factory = install_fake(ally_death_p=0.1)
    env = SMACEnv({"map_name": "8m", "seed": 4})
    episode = MultiAgentEpisode(observation_space=env.observation_space, action_space=env.action_space)
    transitions = run_episode(env)
    assert any(a == 0 for actions, *_ in transitions[1:] for a in actions.values()), "no agent died"
    obs, infos = transitions[0]
    episode.add_env_reset(observations=obs, infos=infos)
    for actions, obs, rewards, terminateds, truncateds, infos in transitions[1:]:
        episode.add_env_step(obs, actions, rewards, infos, terminateds=terminateds, truncateds=truncateds)
    assert episode.is_done and episode.env_t == len(transitions) - 1
    team_return = sum(factory.last.rewards_given)
    assert episode.get_return() == pytest.approx(env.n_agents * team_return)


def test_rllib_env_checker_samples_unavailable_actions(install_fake: Callable[..., FakeSC2Factory]) -> None:
    """RLlib's pre-check steps with action_space.sample(), ignoring masks, so QMIX configs on SMAC need
    `config.environment(disable_env_checking=True)` (real SMAC would fail its assert the same way)."""
    install_fake()
    env = SMACEnv({"map_name": "8m", "seed": 0})
    for aid in env.agents:
        env.get_action_space(aid).seed(0)
    with pytest.raises(ValueError) as excinfo:
        check_multiagent_environments(env)
    assert "not available" in str(excinfo.value.__cause__)
