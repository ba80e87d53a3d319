"""Guided recurrent TD3 (TD3BC+JSRL, issue #34): the guide acts exactly the scheduled first steps of
training episodes, never in evaluation; its steps are marked in the replay and only they carry the
behaviour-cloning term; a guide that cannot act exits 2 before Ray starts; a short guided run trains.

Small algorithms (hidden 16, windows of 8) on Pendulum-P with 20-step episodes, in one Ray session.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.columns import Columns
from ray.rllib.utils.torch_utils import convert_to_torch_tensor

from rllib_grsn.algorithms import losses as L
from rllib_grsn.algorithms.guide import ABLATION_NAMES, BC_LABEL, GUIDED, GuideSettings
from rllib_grsn.algorithms.guide import GUIDE_ACTION as LABEL
from rllib_grsn.algorithms.guide.connector import (
    GUIDE_STEPS,
    LABEL_STEPS,
    POLICY_STEPS,
    guide_horizons,
    set_guide_horizon,
)
from rllib_grsn.algorithms.guide.policies import CheckpointGuide, load_guide
from rllib_grsn.experiment import ExperimentError, build_experiment
from rllib_grsn.modules.twin_q import RecurrentTwinQModule

REPO = Path(__file__).resolve().parents[1]
EPISODE = 20
# The test guide's torque (env units): 1.5 of Pendulum's [-2, 2] is 0.75 in normalised units.
GUIDE_TORQUE = 1.5
GUIDE_ACTION = 0.75
SEEN: list[np.ndarray] = []


def constant_guide(observation: np.ndarray) -> np.ndarray:
    """A recognisable guide: always the same torque; records what it observed."""
    SEEN.append(np.asarray(observation))
    return np.array([GUIDE_TORQUE])


def two_actions(observation: np.ndarray) -> np.ndarray:
    """A guide for an env with two action dimensions (Pendulum has one)."""
    return np.zeros(2)


SMALL = {
    "seed": 0,
    "train_batch_size_per_learner": 4,
    "num_steps_sampled_before_learning_starts": 40,
    "num_random_steps": 0,
    "min_sample_timesteps_per_iteration": 50,
    "exploration_noise": 0.1,
    "env_config": {"max_episode_steps": EPISODE},
}
MODEL = {"core": "grsn", "hidden": 16, "head_hiddens": [32], "max_seq_len": 8}


def guide(horizon, bc_weight=0.4, **extra) -> dict:
    return {"callable": f"{__name__}:constant_guide", "horizon": horizon, "bc_weight": bc_weight, **extra}


def spec(env: str = "Pendulum-P", run: str = "TD3", model: dict | None = None, **config) -> dict:
    return {"env": env, "run": run, "config": {**SMALL, **config, "model_config": model or MODEL}}


def build(**config):
    return build_experiment("guided", spec(**config)).algo_config.build_algo()


def actions_and_flags(episode) -> tuple[np.ndarray, np.ndarray]:
    actions = np.asarray(episode.get_actions()).reshape(len(episode))
    flags = np.asarray(episode.get_extra_model_outputs(GUIDED)).reshape(len(episode)).astype(bool)
    return actions, flags


# ----------------------------------------------------------------------------------- settings


def test_horizon_and_bc_weight_follow_their_schedules():
    settings = GuideSettings.model_validate(guide([[0, 10], [100, 0]], [[0, 0.4], [200, 0.0]]))
    assert [settings.horizon_at(t) for t in (0, 25, 50, 99, 100, 10_000)] == [10, 7, 5, 0, 0, 0]
    assert settings.bc_weight_at(100) == pytest.approx(0.2)
    assert settings.bc_weight_at(500) == 0.0


def test_guided_po_env_reports_the_full_state_without_changing_the_observation():
    from rllib_grsn.envs.po_control import FULL_OBS_KEY, make_po_control

    env = make_po_control("Pendulum-P")
    obs, info = env.reset(seed=3)
    cos_sin = info[FULL_OBS_KEY][:2]
    assert obs.shape == (2,) and info[FULL_OBS_KEY].shape == (3,)
    np.testing.assert_array_equal(obs, cos_sin)
    obs, _, _, _, info = env.step(np.array([0.5], dtype=np.float32))
    np.testing.assert_array_equal(obs, info[FULL_OBS_KEY][:2])


# ----------------------------------------------------------------------------------- BC term


def test_bc_term_is_zero_and_gradient_free_on_unguided_steps():
    torch.manual_seed(0)
    B, T, A = 3, 5, 2
    q = torch.randn(B, T)
    mask = torch.ones(B, T)
    mask[2, 3:] = 0.0
    pi = torch.randn(B, T, A, requires_grad=True)
    demo = torch.randn(B, T, A)

    loss, bc = L.td3_bc_actor_loss(q, pi, demo, torch.zeros(B, T), mask, bc_weight=0.4)
    assert bc.item() == 0.0
    assert loss.item() == pytest.approx(L.td3_actor_loss(q, mask).item())
    (grad,) = torch.autograd.grad(loss, pi, allow_unused=True)
    assert grad is None or torch.count_nonzero(grad) == 0

    guided = torch.zeros(B, T)
    guided[0, :2] = 1.0
    guided[2, 4] = 1.0  # padding: masked out, must not count
    loss, bc = L.td3_bc_actor_loss(q, pi, demo, guided, mask, bc_weight=0.4)
    expected_bc = ((pi[0, :2] - demo[0, :2]) ** 2).sum(-1).mean()
    assert bc.item() == pytest.approx(expected_bc.item(), rel=1e-6)
    expected = -L.masked_mean(q, mask) + 0.4 * L.masked_mean(q.abs(), mask) * expected_bc
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    (grad,) = torch.autograd.grad(loss, pi)
    unguided = (guided * mask) == 0
    assert torch.count_nonzero(grad[unguided]) == 0
    assert torch.count_nonzero(grad[~unguided]) > 0
    # The demonstrations of unguided steps do not matter at all.
    other = demo.clone()
    other[unguided] += 10.0
    assert L.td3_bc_actor_loss(q, pi, other, guided, mask, 0.4)[0].item() == pytest.approx(loss.item())


# ----------------------------------------------------------------------------------- in RLlib


@pytest.fixture(scope="module")
def guided_algo(ray_session):
    algo = build(guide=guide(7), evaluation_interval=1, evaluation_duration=2)
    yield algo
    algo.stop()


def test_guide_acts_exactly_for_the_horizon_and_marks_its_steps(guided_algo):
    runner = guided_algo.env_runner
    for horizon in (7, 3, 0):
        assert set_guide_horizon(runner, horizon)
        SEEN.clear()
        episodes = [e for e in runner.sample(num_episodes=3, random_actions=False) if e.is_done]
        assert len(episodes) >= 3
        for episode in episodes:
            actions, flags = actions_and_flags(episode)
            assert len(episode) == EPISODE
            np.testing.assert_array_equal(flags, np.arange(EPISODE) < horizon)
            np.testing.assert_allclose(actions[:horizon], GUIDE_ACTION, atol=1e-6)
            assert not np.any(np.isclose(actions[horizon:], GUIDE_ACTION, atol=1e-6))
        # The guide is privileged: it saw Pendulum's full 3-dim state, the learner only cos and sin.
        assert len(SEEN) == horizon * len(episodes)
        assert all(obs.shape == (3,) for obs in SEEN)
        metrics = runner.get_metrics()
        assert metrics[GUIDE_STEPS] == horizon * len(episodes)
        assert metrics[POLICY_STEPS] == (EPISODE - horizon) * len(episodes)


def test_guided_flags_reach_the_learner_and_only_guided_steps_clone(guided_algo):
    algo = guided_algo
    set_guide_horizon(algo.env_runner, 7)
    algo.replay_buffer.add(algo.env_runner.sample(num_episodes=4, random_actions=False))
    batch = algo.sample_train_batch().policy_batches[DEFAULT_MODULE_ID]
    windows = algo.replay_buffer.sample(64, seq_len=8)
    assert windows["guided"].any() and not windows["guided"].all()
    # Where a window is guided, its action is the guide's; the flags are False on padding.
    np.testing.assert_allclose(windows["actions"][windows["guided"]], GUIDE_ACTION, atol=1e-6)
    assert not np.any(windows["guided"] & (windows["mask"] == 0))

    learner = algo.learner_group._learner
    config = learner.config.get_config_for_module(DEFAULT_MODULE_ID)
    tensors = convert_to_torch_tensor(dict(batch))
    assert GUIDED in tensors
    mask = tensors[Columns.LOSS_MASK]
    q = torch.randn_like(mask)
    action = torch.randn_like(tensors[Columns.ACTIONS].float(), requires_grad=True)
    # With bc_on: guided the labelled steps are the guided ones and their label is the replayed action.
    assert torch.equal(tensors[BC_LABEL], tensors[GUIDED])
    labelled = tensors[BC_LABEL]
    torch.testing.assert_close(tensors[LABEL][labelled], tensors[Columns.ACTIONS][labelled])
    unguided = dict(tensors, **{BC_LABEL: torch.zeros_like(mask, dtype=torch.bool)})
    loss = learner._actor_loss(DEFAULT_MODULE_ID, config, unguided, q, action, mask)
    assert loss.item() == pytest.approx(L.td3_actor_loss(q, mask).item())
    every = dict(tensors, **{BC_LABEL: mask > 0})
    assert learner._actor_loss(DEFAULT_MODULE_ID, config, every, q, action, mask).item() != pytest.approx(
        loss.item()
    )


def test_evaluation_never_uses_the_guide(guided_algo):
    algo = guided_algo
    set_guide_horizon(algo.env_runner, EPISODE)  # the training runner would guide every step
    # The evaluation runners are built without the guide's connector and never get a horizon.
    assert guide_horizons(algo.env_runner) == [EPISODE]
    assert guide_horizons(algo.eval_env_runner) == []
    episodes = [e for e in algo.eval_env_runner.sample(num_episodes=2, explore=False) if e.is_done]
    for episode in episodes:
        assert GUIDED not in episode.extra_model_outputs
        assert not np.any(np.isclose(np.asarray(episode.get_actions()), GUIDE_ACTION, atol=1e-6))
    # Greedy acting on a training runner is not guided either.
    for episode in algo.env_runner.sample(num_episodes=1, explore=False, random_actions=False):
        assert not actions_and_flags(episode)[1].any()
    results = algo.evaluate()
    assert results["env_runners"]["episode_len_mean"] == EPISODE
    assert GUIDE_STEPS not in results["env_runners"]


def test_short_guided_run_trains_with_the_bc_term_and_counts_guide_steps(ray_session):
    algo = build(guide=guide([[0, 10], [100, 0]]))
    try:
        results = [algo.train() for _ in range(2)]
    finally:
        algo.stop()
    learner = results[-1]["learners"][DEFAULT_MODULE_ID]
    assert np.isfinite(learner["actor_loss"]) and learner["bc_loss"] >= 0.0
    assert learner["bc_weight"] == pytest.approx(0.4)
    runners = results[-1]["env_runners"]
    # The algorithm sets the horizon before each 25-step sampling chunk (rollout_fragment_length)
    # from the schedule at the lifetime steps; step s of the run is step s % 20 of its episode.
    settings = GuideSettings.model_validate(guide([[0, 10], [100, 0]]))
    expected = sum(s % EPISODE < settings.horizon_at(s - s % 25) for s in range(100))
    assert results[-1]["num_env_steps_sampled_lifetime"] == 100
    assert runners[GUIDE_STEPS + "_lifetime"] == expected == 10 + 7 + 7 + 5 + 2
    assert sum(r["env_runners"][GUIDE_STEPS] for r in results) == expected
    assert runners[GUIDE_STEPS + "_lifetime"] + runners[POLICY_STEPS + "_lifetime"] == 100
    # The horizon of each iteration's last chunk (lifetime steps 25 and 75).
    assert [r["guide_horizon"] for r in results] == [7, 2]


# ----------------------------------------------------------------------------------- checkpoints


@pytest.fixture(scope="module")
def checkpoints(ray_session, tmp_path_factory):
    """Tiny checkpoints: TD3 (no update) with an MLP and a GRSN actor on the fully observed Pendulum-v1
    (privileged guides for Pendulum-P) and an MLP on MountainCarContinuous-v0 (actions in [-1, 1], not
    Pendulum's [-2, 2]); RLlib's PPO on Pendulum-v1 (one small update)."""
    root = tmp_path_factory.mktemp("guides")
    tiny = {"num_steps_sampled_before_learning_starts": 1000, "min_sample_timesteps_per_iteration": 25}
    mlp = {**MODEL, "core": "mlp"}
    paths = {}
    cases = (
        ("pendulum", "Pendulum-v1", mlp),
        ("pendulum_grsn", "Pendulum-v1", MODEL),
        ("car", "MountainCarContinuous-v0", mlp),
    )
    for name, env, model in cases:
        config = {**spec(env=env, model=model)["config"], **tiny}
        config.pop("env_config")
        algo = build_experiment(name, {"env": env, "run": "TD3", "config": config}).algo_config.build_algo()
        try:
            algo.train()
            paths[name] = Path(algo.save_to_path(root / name))
        finally:
            algo.stop()
    # RLlib's own PPO model: a checkpoint, but not a policy of this package.
    ppo = {"seed": 0, "train_batch_size_per_learner": 32, "minibatch_size": 32, "num_epochs": 1}
    algo = build_experiment(
        "ppo", {"env": "Pendulum-v1", "run": "PPO", "config": ppo}
    ).algo_config.build_algo()
    try:
        algo.train()
        paths["ppo"] = Path(algo.save_to_path(root / "ppo"))
    finally:
        algo.stop()
    return paths


def test_checkpoint_guide_acts_as_its_greedy_policy(checkpoints):
    settings = GuideSettings.model_validate(
        {"checkpoint": str(checkpoints["pendulum"]), "horizon": 5, "observation": "full"}
    )
    from rllib_grsn.envs.po_control import make_po_control

    env = make_po_control("Pendulum-P")
    policy = load_guide(settings, env.action_space)
    assert isinstance(policy, CheckpointGuide) and isinstance(policy.module, RecurrentTwinQModule)
    _, info = env.reset(seed=0)
    action = policy.act(info["full_obs"], None)
    assert action.shape == (1,) and -1.0 <= action[0] <= 1.0
    problems = build_problems(guide={"checkpoint": str(checkpoints["pendulum"]), "horizon": 5})
    assert problems == []


def test_recurrent_checkpoint_guide_carries_its_state_per_episode(checkpoints):
    """Called step by step on two interleaved episodes, a GRSN guide acts as its own unroll over each
    episode from the initial state (with a_{t-1}, r_{t-1} in its input, as it was trained)."""
    from ray.rllib.env.single_agent_episode import SingleAgentEpisode

    from rllib_grsn.envs.po_control import FULL_OBS_KEY, make_po_control

    settings = GuideSettings.model_validate({"checkpoint": str(checkpoints["pendulum_grsn"]), "horizon": 5})
    envs = [make_po_control("Pendulum-P") for _ in range(2)]
    policy = load_guide(settings, envs[0].action_space)
    module = policy.module
    assert module.is_stateful() and policy.prev_action_reward
    episodes, records = [], []
    for seed, env in enumerate(envs):
        obs, info = env.reset(seed=seed)
        episode = SingleAgentEpisode(observation_space=env.observation_space, action_space=env.action_space)
        episode.add_env_reset(observation=obs, infos=info)
        episodes.append(episode)
        records.append({"obs": [], "prev_a": [], "prev_r": [], "actions": []})
    for _ in range(12):
        for env, episode, record in zip(envs, episodes, records, strict=True):
            full = episode.get_infos(-1)[FULL_OBS_KEY]
            record["obs"].append(full)
            record["prev_a"].append(episode.get_actions(-1) if episode.t else np.zeros(1))
            record["prev_r"].append([episode.get_rewards(-1) if episode.t else 0.0])
            action = policy.act(full, episode)
            record["actions"].append(action)
            obs, reward, terminated, truncated, info = env.step(action * 2.0)
            episode.add_env_step(obs, action, reward, infos=info, terminated=terminated, truncated=truncated)
    initial = module.get_initial_state()["actor"]
    for record in records:
        window = {
            "_orig_obs": torch.as_tensor(np.array(record["obs"]), dtype=torch.float32)[None],
            "prev_n_actions": torch.as_tensor(np.array(record["prev_a"]), dtype=torch.float32)[None],
            "prev_n_rewards": torch.as_tensor(np.array(record["prev_r"]), dtype=torch.float32)[None],
        }
        state = {k: torch.as_tensor(v)[None] for k, v in initial.items()}
        with torch.no_grad():
            unrolled = module.policy_action(module.unroll_actor(window, state))[0].numpy()
        np.testing.assert_allclose(np.array(record["actions"]), unrolled, atol=1e-5)
    # Actions differ between the episodes (different states), so the check above is not vacuous.
    assert not np.allclose(records[0]["actions"], records[1]["actions"])


def build_problems(**config) -> list[str]:
    try:
        build_experiment("guided", spec(**config))
    except ExperimentError as err:
        return err.problems
    return []


def test_bad_guides_are_one_line_each(checkpoints, tmp_path):
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "rllib_checkpoint.json").write_text("{not json")
    (damaged / "class_and_ctor_args.pkl").write_bytes(b"\x80\x04garbage")
    no_policy = tmp_path / "no_policy"
    no_policy.mkdir()
    (no_policy / "stuff.txt").write_text("hello")
    cases = {
        "missing": ({"checkpoint": str(tmp_path / "nowhere")}, r"guide\.checkpoint: .*no such file"),
        "damaged": (
            {"checkpoint": str(damaged)},
            r"guide\.checkpoint: .*rllib_checkpoint\.json: not valid JSON",
        ),
        "not a checkpoint": ({"checkpoint": str(no_policy)}, r"guide\.checkpoint: .*not an RLlib algorithm"),
        "not this package's": (
            {"checkpoint": str(checkpoints["ppo"])},
            r"guide\.checkpoint: .*not a TD3/SAC policy",
        ),
        "action bounds": (
            {"checkpoint": str(checkpoints["car"])},
            r"guide\.checkpoint: .*action space .*match",
        ),
        "action shape": ({"callable": f"{__name__}:two_actions"}, r"guide\.callable: .*shape \(2,\)"),
        "unimportable": ({"callable": "no_such_module_xyz:f"}, r"guide\.callable: cannot import"),
        "not module:function": ({"callable": "justaname"}, r"guide\.callable: must be module:function"),
        "observation": (
            {"checkpoint": str(checkpoints["pendulum"]), "observation": "learner"},
            r"guide\.checkpoint: the policy observes shape \(3,\)",
        ),
        "both": ({"callable": "a:b", "checkpoint": "c"}, r"guide: give exactly one of callable"),
    }
    for name, (given, pattern) in cases.items():
        problems = build_problems(guide={"horizon": 5, **given})
        assert len(problems) == 1, (name, problems)
        assert re.search(pattern, problems[0]), (name, problems)


def test_bad_guide_exits_2_from_the_cli(rllib, tmp_path):
    yaml = REPO / "tuned_examples" / "pendulum_p_grsn_td3bc_jsrl.yaml"
    ok = rllib("train", "file", yaml, "--check", timeout=300)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = {"guide": {"callable": "no_such_module_xyz:guide"}}
    run = rllib("train", "file", yaml, "--check", "--config", json.dumps(bad), timeout=300)
    assert run.returncode == 2, run.stdout + run.stderr
    lines = [line for line in run.stderr.splitlines() if "guide" in line]
    assert len(lines) == 1 and "config.guide.callable: cannot import 'no_such_module_xyz'" in lines[0]
    assert "Traceback" not in run.stderr
    # numpy.ravel hands back the full 3-dim state: an action of the wrong shape for Pendulum's torque.
    mismatch = {"guide": {"callable": "numpy:ravel"}}
    run = rllib("train", "file", yaml, "--check", "--config", json.dumps(mismatch), timeout=300)
    assert run.returncode == 2, run.stdout + run.stderr
    assert "config.guide.callable: returned an action of shape (3,)" in run.stderr


# ----------------------------------------------------------------------------------- bc_on: all


def labels_of(episode) -> tuple[np.ndarray, np.ndarray]:
    """Per step: whether it carries a behaviour-cloning label, and the label (normalised)."""
    flags = np.asarray(episode.get_extra_model_outputs(BC_LABEL)).reshape(len(episode)).astype(bool)
    labels = np.asarray(episode.get_extra_model_outputs(LABEL)).reshape(len(episode))
    return flags, labels


@pytest.fixture(scope="module")
def labelling_algo(ray_session):
    """TD3+BC without the jump-start: horizon 0, the guide labels every training step."""
    algo = build(guide=guide(0, bc_on="all"), evaluation_interval=1, evaluation_duration=2)
    yield algo
    algo.stop()


def test_bc_on_all_labels_every_training_step_and_never_acts(labelling_algo):
    runner = labelling_algo.env_runner
    assert guide_horizons(runner) == [0]
    SEEN.clear()
    episodes = [e for e in runner.sample(num_episodes=3, random_actions=False) if e.is_done]
    assert len(episodes) >= 3
    for episode in episodes:
        actions, guided = actions_and_flags(episode)
        labelled, labels = labels_of(episode)
        assert len(episode) == EPISODE and not guided.any() and labelled.all()
        np.testing.assert_allclose(labels, GUIDE_ACTION, atol=1e-6)
        # The spiking policy acted on every step; the guide only answered what it would do.
        assert not np.any(np.isclose(actions, GUIDE_ACTION, atol=1e-6))
    assert len(SEEN) == EPISODE * len(episodes) and all(obs.shape == (3,) for obs in SEEN)
    metrics = runner.get_metrics()
    assert metrics[GUIDE_STEPS] == 0
    assert metrics[POLICY_STEPS] == metrics[LABEL_STEPS] == EPISODE * len(episodes)


def test_bc_on_all_clones_the_labels_not_the_replayed_actions(labelling_algo):
    algo = labelling_algo
    algo.replay_buffer.add(algo.env_runner.sample(num_episodes=4, random_actions=False))
    windows = algo.replay_buffer.sample(64, seq_len=8)
    assert not windows["guided"].any()
    np.testing.assert_array_equal(windows["bc_label"], windows["mask"] > 0)
    np.testing.assert_allclose(windows["guide_action"][windows["bc_label"]], GUIDE_ACTION, atol=1e-6)

    learner = algo.learner_group._learner
    config = learner.config.get_config_for_module(DEFAULT_MODULE_ID)
    tensors = convert_to_torch_tensor(dict(algo.sample_train_batch().policy_batches[DEFAULT_MODULE_ID]))
    mask = tensors[Columns.LOSS_MASK]
    assert torch.equal(tensors[BC_LABEL], mask > 0) and not tensors[GUIDED].any()
    torch.manual_seed(0)
    q = torch.randn_like(mask)
    action = torch.randn_like(tensors[Columns.ACTIONS].float())
    loss = learner._actor_loss(DEFAULT_MODULE_ID, config, tensors, q, action, mask)
    weight = config.guide_settings.bc_weight_at(learner.lifetime_env_steps)
    labels = torch.full_like(action, GUIDE_ACTION)
    expected, bc = L.td3_bc_actor_loss(q, action, labels, (mask > 0).float(), mask, weight)
    assert weight > 0 and bc.item() > 0
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert loss.item() != pytest.approx(L.td3_actor_loss(q, mask).item())
    # The replayed actions (the policy's) are not the target; the labels are.
    shifted = dict(tensors, **{Columns.ACTIONS: tensors[Columns.ACTIONS] + 1.0})
    assert learner._actor_loss(DEFAULT_MODULE_ID, config, shifted, q, action, mask).item() == pytest.approx(
        loss.item()
    )
    relabelled = dict(tensors, **{LABEL: tensors[LABEL] - 1.0})
    assert learner._actor_loss(
        DEFAULT_MODULE_ID, config, relabelled, q, action, mask
    ).item() != pytest.approx(loss.item())


def test_bc_on_all_labels_no_evaluation_or_greedy_step(labelling_algo):
    algo = labelling_algo
    assert guide_horizons(algo.eval_env_runner) == []
    SEEN.clear()
    for episode in [e for e in algo.eval_env_runner.sample(num_episodes=2, explore=False) if e.is_done]:
        assert BC_LABEL not in episode.extra_model_outputs
        assert LABEL not in episode.extra_model_outputs
    for episode in algo.env_runner.sample(num_episodes=1, explore=False, random_actions=False):
        assert not labels_of(episode)[0].any()
    assert SEEN == []  # the guide was not even asked
    results = algo.evaluate()
    assert LABEL_STEPS not in results["env_runners"]


def test_short_run_without_jump_start_clones_the_guide_on_every_step(ray_session):
    algo = build(guide=guide(0, bc_on="all"))
    try:
        results = [algo.train() for _ in range(2)]
    finally:
        algo.stop()
    learner = results[-1]["learners"][DEFAULT_MODULE_ID]
    assert learner["bc_loss"] > 0.0 and learner["bc_weight"] == pytest.approx(0.4)
    assert learner["guided_fraction"] == 0.0 and learner["bc_label_fraction"] == 1.0
    runners = results[-1]["env_runners"]
    assert runners[GUIDE_STEPS + "_lifetime"] == 0
    assert runners[POLICY_STEPS + "_lifetime"] == runners[LABEL_STEPS + "_lifetime"] == 100


def test_bad_bc_on_is_one_line_each():
    never_used = r"guide: bc_on: all asks the guide for a label on every training step, but bc_weight is 0"
    cases = {
        "unknown": ({"bc_on": "every"}, r"guide\.bc_on: must be one of: guided, all \(got 'every'\)"),
        "zero weight": ({"bc_on": "all", "bc_weight": 0}, never_used),
        "zero schedule": ({"bc_on": "all", "bc_weight": [[0, 0.0], [100, 0.0]]}, never_used),
    }
    for name, (given, pattern) in cases.items():
        problems = build_problems(guide=guide(0, **given))
        assert len(problems) == 1, (name, problems)
        assert re.search(pattern, problems[0]), (name, problems)
    assert build_problems(guide=guide(0, bc_on="all", bc_weight=[[0, 0.0], [100, 0.1]])) == []


def test_bad_bc_on_exits_2_from_the_cli(rllib):
    yaml = REPO / "tuned_examples" / "pendulum_p_lif_td3bc_jsrl.yaml"
    bad = {"guide": {"bc_on": "sometimes"}}
    run = rllib("train", "file", yaml, "--check", "--config", json.dumps(bad), timeout=300)
    assert run.returncode == 2, run.stdout + run.stderr
    lines = [line for line in run.stderr.splitlines() if "bc_on" in line]
    assert len(lines) == 1 and "config.guide.bc_on:" in lines[0], run.stderr
    assert "Traceback" not in run.stderr


# ----------------------------------------------------------------------------------- SAC


def sac_spec(env: str = "Pendulum-P", **config) -> dict:
    own = {k: v for k, v in SMALL.items() if k != "exploration_noise"}
    return {"env": env, "run": "RecurrentSAC", "config": {**own, **config, "model_config": MODEL}}


@pytest.fixture(scope="module")
def guided_sac(ray_session):
    experiment = build_experiment("guided-sac", sac_spec(guide=guide(5), evaluation_interval=1))
    algo = experiment.algo_config.build_algo()
    yield algo
    algo.stop()


def test_sac_guide_acts_exactly_for_the_horizon(guided_sac):
    runner = guided_sac.env_runner
    for horizon in (5, 0):
        assert set_guide_horizon(runner, horizon)
        episodes = [e for e in runner.sample(num_episodes=2, random_actions=False) if e.is_done]
        assert len(episodes) >= 2
        for episode in episodes:
            actions, flags = actions_and_flags(episode)
            labelled, labels = labels_of(episode)
            np.testing.assert_array_equal(flags, np.arange(EPISODE) < horizon)
            np.testing.assert_array_equal(labelled, flags)  # bc_on: guided
            np.testing.assert_allclose(actions[:horizon], GUIDE_ACTION, atol=1e-6)
            np.testing.assert_allclose(labels[:horizon], GUIDE_ACTION, atol=1e-6)
            assert not np.any(np.isclose(actions[horizon:], GUIDE_ACTION, atol=1e-6))
    assert guide_horizons(guided_sac.eval_env_runner) == []
    for episode in guided_sac.eval_env_runner.sample(num_episodes=1, explore=False):
        assert GUIDED not in episode.extra_model_outputs and BC_LABEL not in episode.extra_model_outputs


def test_sac_bc_term_is_zero_on_unlabelled_steps(guided_sac):
    algo = guided_sac
    set_guide_horizon(algo.env_runner, 5)
    algo.replay_buffer.add(algo.env_runner.sample(num_episodes=4, random_actions=False))
    learner = algo.learner_group._learner
    module = learner.module[DEFAULT_MODULE_ID]
    config = learner.config.get_config_for_module(DEFAULT_MODULE_ID)
    tensors = convert_to_torch_tensor(dict(algo.sample_train_batch().policy_batches[DEFAULT_MODULE_ID]))
    mask = tensors[Columns.LOSS_MASK]

    def actor_loss(batch: dict) -> tuple[float, float]:
        torch.manual_seed(0)  # the same reparameterised samples each time
        terms, _, _ = learner.compute_off_policy_losses(DEFAULT_MODULE_ID, module, config, batch)
        return terms["actor_loss"].item(), float(learner.metrics.peek((DEFAULT_MODULE_ID, "bc_loss")))

    none = dict(tensors, **{BC_LABEL: torch.zeros_like(mask, dtype=torch.bool)})
    loss, bc = actor_loss(none)
    assert bc == 0.0
    # Without labels, what the label columns hold does not matter.
    moved = dict(none, **{LABEL: tensors[LABEL] + 5.0})
    assert actor_loss(moved) == (pytest.approx(loss), 0.0)
    # On labelled steps the term is the squared error of the greedy action tanh(mean) to the label.
    with torch.no_grad():
        from rllib_grsn.algorithms.off_policy.learner import _extend, _start_state

        ext = _extend(tensors[Columns.OBS], tensors[Columns.NEXT_OBS])
        features = module.actor_features(ext, _start_state(tensors, "actor"))
        mean, _ = module.policy_distribution(module.pi_head(features))
        greedy = torch.tanh(mean[:, :-1])
    every = dict(tensors, **{BC_LABEL: mask > 0, LABEL: torch.zeros_like(greedy)})
    loss_every, bc_every = actor_loss(every)
    assert bc_every == pytest.approx(L.masked_mean((greedy**2).sum(-1), mask).item(), rel=1e-4)
    assert bc_every > 0 and loss_every != pytest.approx(loss)
    exact = dict(every, **{LABEL: greedy})
    assert actor_loss(exact) == (pytest.approx(loss, rel=1e-5), pytest.approx(0.0, abs=1e-10))


def test_discrete_sac_refuses_a_guide():
    try:
        build_experiment("discrete", sac_spec(env="CartPole-P", guide=guide(5)))
    except ExperimentError as err:
        problems = err.problems
    else:
        problems = []
    assert len(problems) == 1, problems
    assert re.search(r"guide\.callable: a guide needs continuous \(Box\) actions.*Discrete\(2\)", problems[0])
    assert "discrete SAC takes no guide" in problems[0]


# ----------------------------------------------------------------------------------- the sweep


def test_ablation_sweep_grids_the_four_variants_over_three_seeds_for_both_tasks_and_cores(tmp_path):
    from rllib_grsn.experiment import load_experiments
    from rllib_grsn.sweep.search_space import count_grid_trials, param_space

    path = REPO / "tuned_examples" / "sweeps" / "pendulum_guide_ablations.yaml"
    experiments = load_experiments(path)
    cells = {(e.env, e.algo_config.model_config["core"]): e for e in experiments}
    assert sorted(cells) == [
        ("Pendulum-P", "grsn"),
        ("Pendulum-P", "lif"),
        ("Pendulum-V", "grsn"),
        ("Pendulum-V", "lif"),
    ]
    assert len({e.name for e in experiments}) == 4  # four result folders, none resumes another
    # The merged experiments differ from the first only in env and core.
    first = experiments[0]
    for experiment in experiments[1:]:
        assert experiment.search_space == first.search_space
        assert experiment.stop == first.stop
        mine, theirs = experiment.algo_config.to_dict(), first.algo_config.to_dict()
        for key in ("env", "_model_config"):
            mine.pop(key), theirs.pop(key)
        assert mine == theirs, [k for k in mine if mine[k] != theirs.get(k)]
        assert {**experiment.algo_config.model_config, "core": "grsn"} == first.algo_config.model_config
    experiment = first
    space = experiment.search_space
    assert space[("seed",)].values == (0, 1, 2)
    assert count_grid_trials(space, experiment.tune.num_samples) == 12
    variants = [None if v is None else GuideSettings.model_validate(v) for v in space[("guide",)].values]
    td3, jsrl, jump_start, td3bc = variants
    assert td3 is None
    at = (0, 10_000)
    assert [jsrl.horizon_at(t) for t in at] == [100, 50] and jsrl.bc_weight_at(0) > 0
    assert jsrl.bc_on == "guided"
    assert [jump_start.horizon_at(t) for t in at] == [100, 50] and jump_start.bc_weight_at(0) == 0
    assert [td3bc.horizon_at(t) for t in at] == [0, 0] and td3bc.bc_weight_at(0) > 0
    assert td3bc.bc_on == "all"
    # Reports name the variants from the settings alone.
    assert [v.ablation for v in (jsrl, jump_start, td3bc)] == list(ABLATION_NAMES[1:])
    # Every trial's config carries the guide Tune picked for it, at the key the algorithm reads.
    assert param_space(experiment.algo_config, space)["guide"] == {
        "grid_search": list(space[("guide",)].values)
    }
    # A bad grid value is reported before Ray starts, naming the value.
    bad = path.read_text().replace("bc_on: all", "bc_on: everywhere")
    (tmp_path / "bad.yaml").write_text(bad)
    with pytest.raises(ExperimentError, match=r"config\.guide = .*bc_on: must be one of: guided, all"):
        load_experiments(tmp_path / "bad.yaml")


def test_replay_labels_episodes_recorded_with_guided_only_on_their_guided_steps():
    """An episode without the label columns (recorded before them, e.g. in a resumed replay) is
    labelled on its guided steps with the action taken there; one without any guide column not at all."""
    from ray.rllib.env.single_agent_episode import SingleAgentEpisode

    from rllib_grsn.algorithms.replay import SequenceReplayBuffer

    n = 6
    actions = [np.array([0.1 * t], dtype=np.float32) for t in range(n)]

    def episode(eid: str, extra: dict) -> SingleAgentEpisode:
        return SingleAgentEpisode(
            id_=eid,
            observations=[np.array([t, 0.0], dtype=np.float32) for t in range(n + 1)],
            actions=actions,
            rewards=[0.0] * n,
            terminated=True,
            extra_model_outputs=extra,
            len_lookback_buffer=0,
        )

    buffer = SequenceReplayBuffer(capacity=100, seed=0)
    buffer.add([episode("old", {GUIDED: [t < 2 for t in range(n)]}), episode("plain", {})])
    windows = buffer.sample(32, seq_len=n)
    old = windows["guided"].any(axis=1)
    assert old.any() and not old.all()
    np.testing.assert_array_equal(windows["bc_label"], windows["guided"])
    labels, taken = windows["guide_action"], windows["actions"]
    np.testing.assert_allclose(labels[windows["bc_label"]], taken[windows["bc_label"]])
    assert not labels[~windows["bc_label"]].any()
