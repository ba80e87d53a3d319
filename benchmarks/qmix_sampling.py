"""QMIX's acting path against RLlib 2.60's defaults for it, on SMAX: speed, and steps lost.

Two measurements, in one process, with QMIX-GRSN agents (the main job's module) on SMAX:

- ``speed``: ``TeamEnvRunner.sample(num_timesteps=...)`` env steps/s of this package's acting path
  against the same runner with RLlib's own pieces put back: the ``AddTimeDimToBatchAndZeroPad``
  connector (:class:`RLlibPipelineConfig`), action normalisation, and per-agent, per-step metric
  logging (:class:`RLlibCountingRunner`). Both first sample the same seeds and must take the same
  actions; then they take turns, one ``sample()`` call each, and the median rate is reported.
- ``steps lost``: env steps counted as sampled against env steps in the episodes handed to the
  replay, with RLlib's ``complete_episodes`` (``sample()`` resets every sub-env and drops the
  unfinished battles) and with QMIX's ``truncate_episodes`` (unfinished battles go on in the next
  call; ``TeamEpisodeReplay`` joins their chunks).

Run from the repository root:

    .venv/bin/python -m benchmarks.qmix_sampling --map 8m --rounds 8
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.env.multi_agent_env_runner import MultiAgentEnvRunner

import rllib_grsn.envs
from benchmarks.machine import machine_description
from rllib_grsn.algorithms.qmix import QMixConfig, TeamEpisodeReplay
from rllib_grsn.algorithms.qmix.config import with_agent_row_order
from rllib_grsn.envs.team_env_runner import TeamEnvRunner

GRSN_AGENT = {"core": "grsn", "hidden": 64, "obs_embed": 64, "head_hiddens": []}


class RLlibCountingRunner(TeamEnvRunner):
    """TeamEnvRunner with RLlib's own per-agent, per-step metric logging."""

    _sample = MultiAgentEnvRunner._sample
    _increase_sampled_metrics = MultiAgentEnvRunner._increase_sampled_metrics


class RLlibPipelineConfig(QMixConfig):
    """QMixConfig with RLlib's default env-to-module pipeline (time axis added by a connector).

    It keeps ``AgentRowOrder``: that changes which agent gets which exploration draw, not the cost
    being compared, and without it the two runners could not take the same actions.
    """

    def build_env_to_module_connector(self, env: Any = None, spaces: Any = None, device: Any = None) -> Any:
        pipeline = AlgorithmConfig.build_env_to_module_connector(self, env=env, spaces=spaces, device=device)
        return with_agent_row_order(pipeline)


def team_runner(env_config: dict, num_envs: int, seed: int, *, rllib_defaults: bool, **settings: Any) -> Any:
    """A QMIX-GRSN ``TeamEnvRunner``; ``rllib_defaults`` puts RLlib's pieces back (see module docstring)."""
    config = (
        (RLlibPipelineConfig() if rllib_defaults else QMixConfig())
        .environment("smac", env_config=env_config)
        .env_runners(num_envs_per_env_runner=num_envs, **settings)
        .rl_module(rl_module_spec=RLModuleSpec(model_config=GRSN_AGENT))
        # RLlib's per-agent episodes, whose costs this benchmark compares (team acting skips them
        # all: benchmarks/qmix_throughput.py).
        .training(team_acting=False)
        .debugging(seed=seed)
    )
    if rllib_defaults:
        config.normalize_actions = True
    return (RLlibCountingRunner if rllib_defaults else TeamEnvRunner)(config=config)


def first_actions(runner: Any, steps: int) -> list:
    torch.manual_seed(0)
    episodes = runner.sample(num_timesteps=steps, explore=True)
    runner.get_metrics()
    return [
        {aid: np.asarray(sa.get_actions()).tolist() for aid, sa in e.agent_episodes.items()} for e in episodes
    ]


def sampling_speed(env_config: dict, num_envs: int, seed: int, chunk: int, rounds: int) -> dict[str, Any]:
    runners = {
        "ours": team_runner(env_config, num_envs, seed, rllib_defaults=False),
        "rllib_defaults": team_runner(env_config, num_envs, seed, rllib_defaults=True),
    }
    try:
        actions = {name: first_actions(runner, chunk) for name, runner in runners.items()}
        rates: dict[str, list[float]] = {name: [] for name in runners}
        for _ in range(rounds):
            for name, runner in runners.items():
                start = time.perf_counter()
                episodes = runner.sample(num_timesteps=chunk, explore=True)
                seconds = time.perf_counter() - start
                runner.get_metrics()  # as the Algorithm does after every sample
                rates[name].append(sum(len(e) for e in episodes) / seconds)
            print("  " + ", ".join(f"{n} {r[-1]:.0f}" for n, r in rates.items()), flush=True)
    finally:
        for runner in runners.values():
            runner.stop()
    medians = {name: statistics.median(r) for name, r in rates.items()}
    return {
        "same_actions": actions["ours"] == actions["rllib_defaults"],
        "env_steps_per_s": medians,
        "all_rates": rates,
        "speedup": medians["ours"] / medians["rllib_defaults"],
    }


def steps_lost(env_config: dict, num_envs: int, seed: int, calls: int) -> dict[str, Any]:
    out = {}
    for batch_mode in ("complete_episodes", "truncate_episodes"):
        runner = team_runner(env_config, num_envs, seed, rllib_defaults=False, batch_mode=batch_mode)
        replay = TeamEpisodeReplay(capacity=100_000)
        counted = 0
        try:
            for _ in range(calls):
                replay.add(runner.sample(explore=True))  # what QMIX's training_step does
                counted += int(runner.get_metrics()["num_env_steps_sampled"].peek())
        finally:
            runner.stop()
        replayed = replay.num_env_steps + replay.num_unfinished_env_steps
        out[batch_mode] = {"counted": counted, "replayed": replayed, "lost_share": 1 - replayed / counted}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--map", default="8m", help="SMAX map (rllib_grsn.envs.smax.SMAX_MAPS)")
    parser.add_argument("--envs", type=int, default=8, help="battles per EnvRunner (the tuned examples: 8)")
    parser.add_argument("--chunk", type=int, default=400, help="env steps per timed sample() call")
    parser.add_argument("--rounds", type=int, default=8, help="timed sample() calls per variant")
    parser.add_argument("--calls", type=int, default=20, help="sample() calls for the steps-lost count")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/qmix_sampling.json"))
    args = parser.parse_args()

    torch.set_num_threads(1)  # as one Tune trial
    rllib_grsn.envs.register_multi_agent_envs()
    env_config = {"map_name": args.map, "backend": "smax"}
    load_before = os.getloadavg()[0]
    speed = sampling_speed(env_config, args.envs, args.seed, args.chunk, args.rounds)
    lost = steps_lost(env_config, args.envs, args.seed, args.calls)
    report = {
        "map": args.map,
        "backend": "smax",
        "num_envs": args.envs,
        "speed": speed,
        "steps_lost": lost,
        "machine": machine_description(),
        "load_average_1min_before_after": [load_before, os.getloadavg()[0]],
        "torch_threads": torch.get_num_threads(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    rates = speed["env_steps_per_s"]
    print(
        f"\nSMAX {args.map}, {args.envs} battles, QMIX-GRSN, {report['machine']}, load average "
        f"{load_before:.1f} -> {report['load_average_1min_before_after'][1]:.1f}"
    )
    print(
        f"sampling: ours {rates['ours']:.0f} env steps/s, RLlib's defaults {rates['rllib_defaults']:.0f} "
        f"({speed['speedup']:.2f}x), same actions: {speed['same_actions']}"
    )
    for mode, row in lost.items():
        lost_share = f"{row['lost_share']:.1%}"
        print(f"{mode}: {row['counted']} env steps counted, {row['replayed']} replayed ({lost_share} lost)")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
