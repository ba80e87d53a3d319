"""Env steps/s on SMAX: one Python step per battle (as RLlib's sync vector env) vs one ``jax.vmap`` for all.

Two measurements per env count, in one process, JAX on CPU:

- ``env``: the simulator alone under random masked actions: a Python loop over ``SMAXEnv``s (each
  reset on the step after its battle ended, as RLlib's autoreset does) vs one
  :class:`~rllib_grsn.envs.smax_vector.SMAXVectorEnv`. Only the env calls are timed, not the random
  actions.
- ``runner``: QMIX-GRSN acting through a :class:`~rllib_grsn.envs.team_env_runner.TeamEnvRunner`
  (``runner.sample(num_timesteps=..., explore=True)``: the real spiking module, connectors, episodes,
  callbacks) with env_config ``vectorize: sync`` (RLlib's ``SyncVectorMultiAgentEnv`` over SMAXEnvs)
  vs ``vectorize: jax``.

Everything is built and warmed up (jit compiles once per map and batch size) before timing.
``--seconds`` is the timed budget per configuration, split over ``--repeats`` repeats, and each
configuration's median rate over its repeats is reported. Within a repeat, the configurations take
turns in slices of ``--slice`` seconds, so that bursts of load from other processes on the machine
hit all of them alike. Run from the repository root:

    .venv/bin/python -m benchmarks.smax_throughput --map 8m --envs 1,8,32 --seconds 20
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ray.rllib.core.rl_module.rl_module import RLModuleSpec

import rllib_grsn.envs
from benchmarks.machine import machine_description
from rllib_grsn.algorithms.qmix import QMixConfig
from rllib_grsn.envs.smax import SMAXEnv
from rllib_grsn.envs.smax_vector import SMAXVectorEnv
from rllib_grsn.envs.team_env_runner import TeamEnvRunner

GRSN_AGENT = {"core": "grsn", "hidden": 64, "obs_embed": 64, "head_hiddens": []}

# A timed function runs for about `seconds` and returns (env steps, seconds spent in what is timed).
Timed = Callable[[float], tuple[int, float]]


def random_masked_actions(
    observations: list[dict[str, Any]], agents: list[str], rng: np.random.Generator
) -> list[dict[str, int]]:
    """A uniformly random available action per agent and sub-env (one vectorised draw for all)."""
    masks = np.array([[obs[aid]["action_mask"] for aid in agents] for obs in observations])
    choice = (rng.random(masks.shape) * masks).argmax(-1)
    return [dict(zip(agents, row.tolist(), strict=True)) for row in choice]


class LoopOfEnvs:
    """``num_envs`` SMAXEnvs stepped one by one, each reset on the step after it ended (RLlib's autoreset)."""

    def __init__(self, env_config: dict[str, Any], num_envs: int, seed: int):
        self.envs = [SMAXEnv(env_config) for _ in range(num_envs)]
        self.agents = self.envs[0].possible_agents
        self.observations = [env.reset(seed=seed + i)[0] for i, env in enumerate(self.envs)]
        self.ended = [False] * num_envs
        self.rng = np.random.default_rng(seed)

    def run(self, seconds: float) -> tuple[int, float]:
        steps, timed = 0, 0.0
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            actions = random_masked_actions(self.observations, self.agents, self.rng)
            start = time.perf_counter()
            for i, env in enumerate(self.envs):
                if self.ended[i]:
                    self.observations[i], _ = env.reset()
                    self.ended[i] = False
                else:
                    self.observations[i], _, terminateds, truncateds, _ = env.step(actions[i])
                    self.ended[i] = terminateds["__all__"] or truncateds["__all__"]
                    steps += 1
            timed += time.perf_counter() - start
        return steps, timed


class VmapEnvs:
    """One SMAXVectorEnv; its autoreset steps (a reset, not an env step) are not counted, as RLlib's."""

    def __init__(self, env_config: dict[str, Any], num_envs: int, seed: int):
        self.env = SMAXVectorEnv(env_config, num_envs=num_envs)
        self.agents = self.env.possible_agents
        self.observations, _ = self.env.reset(seed=seed)
        self.ended = np.zeros(num_envs, dtype=bool)
        self.rng = np.random.default_rng(seed)

    def run(self, seconds: float) -> tuple[int, float]:
        steps, timed = 0, 0.0
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            actions = random_masked_actions(self.observations, self.agents, self.rng)
            start = time.perf_counter()
            self.observations, _, terminateds, truncateds, _ = self.env.step(actions)
            timed += time.perf_counter() - start
            steps += int((~self.ended).sum())
            self.ended = np.array(
                [t["__all__"] or u["__all__"] for t, u in zip(terminateds, truncateds, strict=True)]
            )
        return steps, timed


class RunnerSampling:
    """QMIX-GRSN's TeamEnvRunner: ``sample()`` of ``chunk`` env steps, then ``get_metrics()``."""

    def __init__(self, env_config: dict[str, Any], num_envs: int, seed: int, chunk: int):
        config = (
            QMixConfig()
            .environment("smac", env_config=env_config)
            .env_runners(num_envs_per_env_runner=num_envs)
            .rl_module(rl_module_spec=RLModuleSpec(model_config=GRSN_AGENT))
            .training(team_acting=False)  # RLlib's episodes, as when this was measured
            .debugging(seed=seed)
        )
        self.runner = TeamEnvRunner(config=config)
        self.vector_env = type(self.runner.env).__name__
        self.chunk = chunk

    def run(self, seconds: float) -> tuple[int, float]:
        steps = 0
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            episodes = self.runner.sample(num_timesteps=self.chunk, explore=True)
            steps += sum(len(episode) for episode in episodes)
            # As the Algorithm after every sample: reduces (and so bounds) the runner's metrics and
            # finished-episode lists, which otherwise grow and slow every later step down.
            self.runner.get_metrics()
        return steps, time.perf_counter() - start

    def stop(self) -> None:
        self.runner.stop()


def measure(
    timers: dict[tuple[str, str, int], Timed], *, seconds: float, repeats: int, slice_s: float
) -> dict[Any, list]:
    """Rates (env steps/s) of every timer: ``repeats`` rounds of ``seconds / repeats`` per timer each,
    taken in interleaved slices of ``slice_s`` seconds."""
    rates: dict[Any, list[float]] = {key: [] for key in timers}
    for round_index in range(repeats):
        steps = dict.fromkeys(timers, 0)
        elapsed = dict.fromkeys(timers, 0.0)
        while min(elapsed.values()) < seconds / repeats:
            for key, run in timers.items():
                if elapsed[key] < seconds / repeats:
                    more_steps, more_seconds = run(slice_s)
                    steps[key] += more_steps
                    elapsed[key] += more_seconds
        for key in timers:
            rates[key].append(steps[key] / elapsed[key])
        summary = ", ".join(f"{p}/{m}/{n} {r[-1]:.0f}" for (p, m, n), r in rates.items())
        print(f"  round {round_index + 1}: {summary}", flush=True)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--map", default="8m", help="SMAX map (rllib_grsn.envs.smax.SMAX_MAPS)")
    parser.add_argument("--envs", default="1,8,32", help="comma-separated env counts per EnvRunner")
    parser.add_argument("--seconds", type=float, default=20.0, help="timed seconds per configuration")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds; the median is reported")
    parser.add_argument("--slice", type=float, default=0.5, help="seconds per turn of a configuration")
    parser.add_argument("--warmup", type=float, default=2.0, help="untimed seconds per configuration")
    parser.add_argument("--parts", default="env,runner", help="env (simulator alone), runner (QMIX acting)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results/smax_throughput.json")
    args = parser.parse_args()

    import jax

    rllib_grsn.envs.register_multi_agent_envs()
    env_counts = [int(n) for n in args.envs.split(",")]
    parts = args.parts.split(",")
    env_config = {"map_name": args.map, "backend": "smax"}
    timers: dict[tuple[str, str, int], Timed] = {}
    runners: list[RunnerSampling] = []
    built = time.perf_counter()
    for n in env_counts:
        if "env" in parts:
            timers["env", "loop", n] = LoopOfEnvs(env_config, n, args.seed).run
            timers["env", "jax", n] = VmapEnvs(env_config, n, args.seed).run
        if "runner" in parts:
            for mode in ("sync", "jax"):
                runner = RunnerSampling({**env_config, "vectorize": mode}, n, args.seed, chunk=max(64, 8 * n))
                runners.append(runner)
                timers["runner", mode, n] = runner.run
    try:
        for key, run in timers.items():  # jit compilation and first episodes, untimed
            run(args.warmup)
            print(f"  warmed up {'/'.join(map(str, key))} ({time.perf_counter() - built:.0f}s)", flush=True)
        load_before = os.getloadavg()[0]
        rates = measure(timers, seconds=args.seconds, repeats=args.repeats, slice_s=args.slice)
    finally:
        for runner in runners:
            runner.stop()

    rows = [
        {
            "part": part,
            "mode": mode,
            "num_envs": n,
            "env_steps_per_s": statistics.median(rates[part, mode, n]),
            "all_rates": rates[part, mode, n],
        }
        for part, mode, n in timers
    ]
    by_key = {(r["part"], r["mode"], r["num_envs"]): r["env_steps_per_s"] for r in rows}
    for row in rows:
        baseline = by_key.get((row["part"], "loop" if row["part"] == "env" else "sync", 1))
        row["vs_1_env_without_vmap"] = row["env_steps_per_s"] / baseline if baseline else None

    machine = {
        "description": machine_description(),
        "cpu_count": os.cpu_count(),
        # Other processes share the machine: the 1-minute load average before and after timing.
        "load_average_1min_before_after": [load_before, os.getloadavg()[0]],
        "jax": jax.__version__,
        "jax_backend": jax.default_backend(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }
    print(
        f"\nSMAX {args.map}, {machine['description']}, "
        f"load average {load_before:.1f} -> {machine['load_average_1min_before_after'][1]:.1f}, "
        f"jax {jax.__version__} ({jax.default_backend()}), torch {torch.__version__}"
    )
    print("env: simulator alone, random masked actions; runner: QMIX-GRSN TeamEnvRunner.sample(explore=True)")
    print("| part | envs | no vmap (steps/s) | jax.vmap (steps/s) | vmap speed-up | min-max no vmap / vmap |")
    print("|---|---|---|---|---|---|")
    for part in ("env", "runner"):
        plain = "loop" if part == "env" else "sync"
        for n in env_counts:
            if (part, plain, n) not in by_key:
                continue
            a, b = rates[part, plain, n], rates[part, "jax", n]
            print(
                f"| {part} | {n} | {by_key[part, plain, n]:.0f} | {by_key[part, 'jax', n]:.0f} | "
                f"{by_key[part, 'jax', n] / by_key[part, plain, n]:.2f}x | "
                f"{min(a):.0f}-{max(a):.0f} / {min(b):.0f}-{max(b):.0f} |"
            )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "machine": machine, "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
