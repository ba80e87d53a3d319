"""Partially observable control tasks (Ni et al. 2022, pomdp-baselines), as the paper's Table 1 uses them.

Every masked observation is checked against a full-state copy of the base gymnasium task that is
seeded and stepped identically, so a wrong mask, a reordered dim, a reward transform or a wrong time
limit fails here. The expected masks are written out literally (not read from the package).
"""

from __future__ import annotations

import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
from ray.rllib.env.env_context import EnvContext
from ray.tune.registry import ENV_CREATOR, _global_registry

import rllib_grsn.envs  # noqa: F401  (registers the names with gymnasium and Ray Tune)
from rllib_grsn.envs import make_po_control, register_po_control_envs

# name -> (base gymnasium id, observation dims kept), from Ni et al. 2022 / DESIGN.md section 4.
EXPECTED = {
    "CartPole-P": ("CartPole-v1", (0, 2)),  # cart position, pole angle
    "CartPole-V": ("CartPole-v1", (1, 3)),  # cart velocity, pole angular velocity
    "Pendulum-P": ("Pendulum-v1", (0, 1)),  # cos(theta), sin(theta)
    "Pendulum-V": ("Pendulum-v1", (2,)),  # angular velocity
}
SHAPES = {"CartPole-P": (2,), "CartPole-V": (2,), "Pendulum-P": (2,), "Pendulum-V": (1,)}
NAMES = list(EXPECTED)
CARTPOLES = [n for n in NAMES if n.startswith("CartPole")]
PENDULUMS = [n for n in NAMES if n.startswith("Pendulum")]
TIME_LIMIT = 200


def _tune_make(name: str, env_config: dict | None = None) -> gym.Env:
    creator = _global_registry.get(ENV_CREATOR, name)
    return creator(EnvContext(dict(env_config or {}), worker_index=0))


@pytest.fixture(autouse=True)
def _tune_registrations():
    # Ray Tune keeps registrations in the running Ray session's store and drops them at ray.shutdown(),
    # which an earlier test module may have called. A fresh process registers on import (tested below
    # in a subprocess), and every new Ray session re-registers (tested below); here we do the same.
    register_po_control_envs()


BUILDERS = {
    "gym.make": lambda name: gym.make(name),
    "make_po_control": lambda name: make_po_control(name),
    "tune_registry": lambda name: _tune_make(name),
}


@pytest.fixture(params=list(BUILDERS), ids=list(BUILDERS))
def build(request):
    return BUILDERS[request.param]


def balancing_action(state: np.ndarray) -> int:
    """Keeps CartPole upright for thousands of steps when it sees the full state (x, x', th, th')."""
    x, x_dot, theta, theta_dot = state
    return int(theta + 0.5 * theta_dot + 0.05 * x + 0.1 * x_dot > 0)


def run_episode(env: gym.Env, policy, seed: int, max_steps: int = 10_000):
    """Steps until the episode ends; returns (rewards, terminated flags, truncated flags)."""
    env.reset(seed=seed)
    rewards, terms, truncs = [], [], []
    for _ in range(max_steps):
        _, reward, terminated, truncated, _ = env.step(policy(env))
        rewards.append(float(reward))
        terms.append(bool(terminated))
        truncs.append(bool(truncated))
        if terminated or truncated:
            break
    return rewards, terms, truncs


# ----------------------------------------------------------------------------- spaces and masks


@pytest.mark.parametrize("name", NAMES)
def test_observation_space_keeps_only_the_masked_dims(name, build):
    env = build(name)
    base = gym.make(EXPECTED[name][0])
    kept = list(EXPECTED[name][1])
    expected_shape = SHAPES[name]
    assert expected_shape == (len(kept),)
    assert isinstance(env.observation_space, gym.spaces.Box)
    assert env.observation_space.shape == expected_shape
    np.testing.assert_array_equal(env.observation_space.low, base.observation_space.low[kept])
    np.testing.assert_array_equal(env.observation_space.high, base.observation_space.high[kept])
    assert env.action_space == base.action_space
    obs, _ = env.reset(seed=0)
    assert obs.shape == expected_shape
    assert env.observation_space.contains(obs)


@pytest.mark.parametrize("name", NAMES)
def test_masked_obs_equals_full_state_at_kept_dims(name, build):
    """Same seed, same actions: the masked obs is the full obs at exactly Ni et al.'s dims, every step."""
    base_id, kept = EXPECTED[name]
    env, base = build(name), gym.make(base_id)
    obs, _ = env.reset(seed=123)
    full, _ = base.reset(seed=123)
    np.testing.assert_array_equal(obs, full[list(kept)])
    actions = base.action_space
    actions.seed(7)
    for _ in range(60):
        action = actions.sample()
        obs, reward, terminated, truncated, _ = env.step(action)
        full, base_reward, base_terminated, base_truncated, _ = base.step(action)
        np.testing.assert_array_equal(obs, full[list(kept)])
        assert reward == base_reward  # raw rewards, no scaling or shaping
        assert (terminated, truncated) == (base_terminated, base_truncated)
        if terminated or truncated:
            obs, _ = env.reset(seed=5)
            full, _ = base.reset(seed=5)
            np.testing.assert_array_equal(obs, full[list(kept)])


@pytest.mark.parametrize("name", NAMES)
def test_masks_mean_positions_or_velocities_of_the_hidden_state(name):
    """Checked against the simulator's own state, not only the base env's observation."""
    env = make_po_control(name)
    obs, _ = env.reset(seed=11)
    actions = env.action_space
    actions.seed(3)
    for _ in range(20):
        state = np.asarray(env.unwrapped.state, dtype=np.float64)
        if name == "CartPole-P":
            expected = state[[0, 2]]  # x, theta
        elif name == "CartPole-V":
            expected = state[[1, 3]]  # x_dot, theta_dot
        elif name == "Pendulum-P":
            expected = np.array([np.cos(state[0]), np.sin(state[0])])
        else:
            expected = state[[1]]  # theta_dot
        np.testing.assert_allclose(obs, expected, rtol=1e-6, atol=1e-6)
        obs, _, terminated, truncated, _ = env.step(actions.sample())
        if terminated or truncated:
            break


# ----------------------------------------------------------------------------- time limit, rewards


@pytest.mark.parametrize("name", NAMES)
def test_spec_declares_200_step_limit(name):
    assert gym.make(name).spec.max_episode_steps == TIME_LIMIT
    assert make_po_control(name).spec.max_episode_steps == TIME_LIMIT


@pytest.mark.parametrize("name", PENDULUMS)
def test_pendulum_runs_exactly_200_steps_with_negative_base_rewards(name, build):
    env = build(name)
    base = gym.make("Pendulum-v1")
    env.reset(seed=4)
    base.reset(seed=4)
    rng = np.random.default_rng(0)
    rewards, base_rewards, ends = [], [], []
    for _ in range(TIME_LIMIT + 50):
        action = rng.uniform(-2.0, 2.0, size=(1,)).astype(np.float32)
        _, reward, terminated, truncated, _ = env.step(action)
        _, base_reward, _, _, _ = base.step(action)
        rewards.append(float(reward))
        base_rewards.append(float(base_reward))
        ends.append((terminated, truncated))
        if terminated or truncated:
            break
    assert len(rewards) == TIME_LIMIT
    assert ends[-1] == (False, True)  # truncated by the time limit, never terminated
    assert all(end == (False, False) for end in ends[:-1])
    assert rewards == base_rewards
    assert max(rewards) <= 0.0 and sum(rewards) < -1.0


@pytest.mark.parametrize("name", CARTPOLES)
def test_cartpole_truncates_at_200_when_the_pole_stays_up(name, build):
    env = build(name)
    rewards, terms, truncs = run_episode(env, lambda e: balancing_action(e.unwrapped.state), seed=0)
    assert len(rewards) == TIME_LIMIT
    assert truncs[-1] and not any(terms)
    assert rewards == [1.0] * TIME_LIMIT  # CartPole max return 200, as in the paper's Table 1


@pytest.mark.parametrize("name", CARTPOLES)
def test_cartpole_gives_plus_one_per_step_until_it_falls(name, build):
    env = build(name)
    rewards, terms, truncs = run_episode(env, lambda e: 1, seed=2)  # always push right: falls fast
    assert 5 <= len(rewards) < 50
    assert terms[-1] and not any(truncs)
    assert rewards == [1.0] * len(rewards)


# ----------------------------------------------------------------------------- env_config, errors


def test_unknown_name_lists_the_four_tasks():
    with pytest.raises(ValueError) as err:
        make_po_control("CartPole-X")
    message = str(err.value)
    assert "CartPole-X" in message
    for name in NAMES:
        assert name in message


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("maker", ["make_po_control", "tune_registry"])
def test_env_config_max_episode_steps_overrides_the_limit(name, maker):
    make = make_po_control if maker == "make_po_control" else _tune_make
    for limit in (30, 250):
        env = make(name, {"max_episode_steps": limit})
        if name.startswith("CartPole"):
            policy = lambda e: balancing_action(e.unwrapped.state)  # noqa: E731
        else:
            policy = lambda e: np.zeros(1, dtype=np.float32)  # noqa: E731
        rewards, terms, truncs = run_episode(env, policy, seed=1)
        assert len(rewards) == limit
        assert truncs[-1] and not any(terms)


@pytest.mark.parametrize("name", CARTPOLES)
def test_gym_make_max_episode_steps_below_200(name):
    env = gym.make(name, max_episode_steps=30)
    rewards, _, truncs = run_episode(env, lambda e: balancing_action(e.unwrapped.state), seed=0)
    assert len(rewards) == 30 and truncs[-1]


def test_gym_make_max_episode_steps_above_200():
    env = gym.make("CartPole-P", max_episode_steps=500)
    assert env.spec.max_episode_steps == 500
    rewards, _, truncs = run_episode(env, lambda e: balancing_action(e.unwrapped.state), seed=0)
    assert len(rewards) == 500 and truncs[-1]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("maker", ["make_po_control", "tune_registry", "gym.make"])
def test_unknown_env_config_key_is_named(name, maker):
    with pytest.raises(ValueError) as err:
        if maker == "gym.make":
            gym.make(name, max_steps=50)
        elif maker == "tune_registry":
            _tune_make(name, {"max_steps": 50})
        else:
            make_po_control(name, {"max_steps": 50})
    assert "max_steps" in str(err.value)
    assert "max_episode_steps" in str(err.value)  # says what is allowed


# ----------------------------------------------------------------------------- registration


@pytest.mark.parametrize("name", NAMES)
def test_registered_with_ray_tune_and_gymnasium(name):
    assert _global_registry.contains(ENV_CREATOR, name)
    assert name in gym.envs.registry
    env = _tune_make(name)
    assert env.observation_space.shape == (len(EXPECTED[name][1]),)


def test_importing_the_package_registers_with_tune_in_a_fresh_process():
    code = (
        "import rllib_grsn.envs\n"
        "from ray.tune.registry import ENV_CREATOR, _global_registry\n"
        f"assert all(_global_registry.contains(ENV_CREATOR, n) for n in {NAMES!r})\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_registrations_survive_a_ray_restart():
    import ray

    for _ in range(2):  # Tune's own registry would be empty in the second session
        ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)  # see conftest
        try:
            assert all(_global_registry.contains(ENV_CREATOR, name) for name in NAMES)
        finally:
            ray.shutdown()


def test_unknown_name_is_not_registered():
    assert not _global_registry.contains(ENV_CREATOR, "CartPole-X")
