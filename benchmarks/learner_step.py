"""Time of one PPO-sized learner minibatch (forward_train + value head + backward) per core.

Isolates the training-side cost of the recurrent core from RLlib's sampling machinery: B chunks of
T env steps, as PPO's learner sees them with ``max_seq_len`` T. Run from the repository root:

    .venv/bin/python -m benchmarks.learner_step --cores grsn,lif,gru --batch 16 --seq-len 32
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np
import torch
from ray.rllib.core.columns import Columns

from benchmarks.machine import machine_description
from rllib_grsn.modules import SpikingActorCriticModule, SpikingModelConfig
from rllib_grsn.modules.connectors import PrevActionReward


def time_minibatch(core: str, *, batch: int, seq_len: int, hidden: int, repeats: int) -> float:
    """Mean milliseconds of one forward+backward over ``batch`` chunks of ``seq_len`` steps."""
    act_space = gym.spaces.Discrete(2)
    obs_space = PrevActionReward()._convert_individual_space(
        gym.spaces.Box(-1.0, 1.0, (2,), np.float32), act_space
    )
    config = SpikingModelConfig(core=core, hidden=hidden, max_seq_len=seq_len).model_dump()
    module = SpikingActorCriticModule(
        observation_space=obs_space, action_space=act_space, model_config=config
    )
    state = {k: torch.as_tensor(v)[None].repeat(batch, 1) for k, v in module.get_initial_state().items()}
    obs = {
        "_orig_obs": torch.randn(batch, seq_len, 2),
        "prev_n_actions": torch.rand(batch, seq_len, 1, 2),
        "prev_n_rewards": torch.ones(batch, seq_len, 1),
    }
    inputs = {Columns.OBS: obs, Columns.STATE_IN: state}

    def step() -> None:
        out = module.forward_train(inputs)
        values = module.compute_values(inputs, out[Columns.EMBEDDINGS])
        (out[Columns.ACTION_DIST_INPUTS].sum() + values.sum()).backward()

    for _ in range(max(repeats // 5, 1)):
        step()
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    return (time.perf_counter() - start) / repeats * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cores", default="grsn,lif,gru")
    parser.add_argument("--batch", type=int, default=16, help="chunks per minibatch (PPO: 500 steps / 32)")
    parser.add_argument("--seq-len", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    torch.manual_seed(0)
    print(
        f"{machine_description()}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"B={args.batch}, T={args.seq_len}, H={args.hidden}"
    )
    for core in args.cores.split(","):
        ms = time_minibatch(
            core, batch=args.batch, seq_len=args.seq_len, hidden=args.hidden, repeats=args.repeats
        )
        print(f"{core}: {ms:.2f} ms per minibatch forward+backward")


if __name__ == "__main__":
    main()
