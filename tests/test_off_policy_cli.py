"""`rllib train file` and `rllib evaluate` on the recurrent TD3 / SAC tuned examples, as a user runs them.

(Restoring an algorithm from a checkpoint, replay buffer included, is tested in
test_off_policy_algorithms.py; `--resume` itself in test_train_end_to_end.py.)"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
# Small networks and batches; the tuned examples' schedules (warm-up, 1000 env steps per iteration,
# evaluation every iteration) stay as they are.
SMALL = {
    "train_batch_size_per_learner": 4,
    "num_random_steps": 900,
    "num_steps_sampled_before_learning_starts": 900,
    "evaluation_duration": 2,
    "model_config": {"hidden": 16, "head_hiddens": [32], "max_seq_len": 8},
}
CASES = {
    "sac": ("cartpole_v_grsn_sac.yaml", "cartpole-v-grsn-sac", "CartPole-V"),
    "td3": ("pendulum_p_grsn_td3.yaml", "pendulum-p-grsn-td3", "Pendulum-P"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_train_then_evaluate(case, rllib, tmp_path):
    file, experiment, env = CASES[case]

    run = rllib(
        "train", "file", REPO / "tuned_examples" / file,
        "--stop", json.dumps({"training_iteration": 1}),
        "--config", json.dumps(SMALL), "--storage-path", tmp_path, "--num-cpus", "2",
    )  # fmt: skip
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-5000:]
    assert "Traceback" not in out
    assert re.search(r"\] iter 1 \| env steps 1000 \| return -?[\d.]+ \| eval -?[\d.]+ \|", out), out[-3000:]
    match = re.search(rf"^{experiment}: final checkpoint (\S+)$", out, re.MULTILINE)
    assert match, out[-3000:]
    checkpoint = Path(match.group(1))

    run = rllib("evaluate", checkpoint, "--episodes", "2", "--seed", "0")
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    assert re.search(rf"^{env}: 2 episodes, return -?[\d.]+ \+- [\d.]+", run.stdout, re.MULTILINE), run.stdout
