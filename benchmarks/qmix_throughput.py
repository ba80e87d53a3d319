"""The main job's end-to-end training speed with team acting against RLlib's per-agent episodes.

Algorithms of one tuned example (default: the main job, ``tuned_examples/smac_8m_grsn.yaml``)
in one process, evaluation off and the EnvRunner local:

- ``before``: the main job before team acting: RLlib's per-agent episodes (``team_acting: false``), one
  padded unroll per update (``length_buckets: 1``), one torch thread (a Tune trial of one CPU);
- ``before-2t``: the same with two torch threads, to tell what the second thread alone buys;
- ``team-1t``: team acting and length-bucketed updates, one torch thread;
- ``team-2t``: the same with two torch threads (the main job now: ``num_cpus_for_main_process: 2``);
- ``overlap-1t`` / ``overlap-2t``: ``team-1t`` / ``team-2t`` with ``overlap_updates``: the gradient steps
  run in a learner thread while the EnvRunner samples (not with ``--variants`` default; name them).

After ``--warmup`` iterations each (learning has started by then), they train ``--iterations`` more,
taking turns iteration by iteration so that load from elsewhere on the machine hits all alike.
Reported per variant: env steps sampled per second of ``Algorithm.train()`` (median over the timed
iterations) and its ratio to ``before``, and where the time went:

- ``env``: the vector env's ``step``/``reset``;
- ``forward``: the agent network's acting forward pass;
- ``bookkeeping``: the rest of sampling (connectors, episodes, action selection, team arrays);
- ``replay``: adding to and sampling from the replay;
- ``learner``: the gradient steps;
- ``other``: the rest of ``train()`` (weight sync, metrics, target updates).

With ``overlap_updates`` the learner's seconds run beside sampling, so the parts add up to more than the
wall time; ``other`` is then the wall time minus sampling and replay (waiting for the learner thread
included).

Run from the repository root::

    .venv/bin/python -m benchmarks.qmix_throughput --iterations 8
    .venv/bin/python -m benchmarks.qmix_throughput --variants team-2t --battles 8,16,32   # battles per runner
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import rllib_grsn.algorithms.qmix.algorithm as qmix_algorithm
from benchmarks.machine import machine_description
from rllib_grsn.experiment import load_experiments

PARTS = ("env", "forward", "bookkeeping", "replay", "learner", "other")
# name, team_acting, length_buckets, torch threads, overlap_updates
VARIANTS = (
    ("before", False, 1, 1, False),
    ("before-2t", False, 1, 2, False),
    ("team-1t", True, 4, 1, False),
    ("team-2t", True, 4, 2, False),
    ("overlap-1t", True, 4, 1, True),
    ("overlap-2t", True, 4, 2, True),
)
DEFAULT_VARIANTS = ("before", "before-2t", "team-1t", "team-2t")
ENV_STEPS = "num_env_steps_sampled_lifetime"


class Clock:
    """Seconds spent in wrapped calls, per part; a call inside another part's counts for both."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def wrap(self, owner: Any, name: str, part: str) -> None:
        original = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[part] += time.perf_counter() - start

        setattr(owner, name, timed)


def build(
    path: str, team_acting: bool, buckets: int, seed: int, battles: int | None = None, overlap: bool = False
) -> tuple[Any, Clock]:
    overrides = {
        "team_acting": team_acting,
        "length_buckets": buckets,
        "overlap_updates": overlap,
        "seed": seed,
        "evaluation_interval": 0,
        "num_env_runners": 0,
    }
    if battles is not None:
        overrides["num_envs_per_env_runner"] = battles
    (experiment,) = load_experiments(path, config=overrides)
    algo = experiment.algo_config.build_algo()
    clock = Clock()
    runner = algo.env_runner
    clock.wrap(runner.env, "step", "env")
    clock.wrap(runner.env, "reset", "env")
    for module in runner.module.values():
        clock.wrap(module.agent, "forward", "forward")
    clock.wrap(algo.replay_buffer, "add", "replay")
    clock.wrap(algo, "replay_batch", "replay")
    clock.wrap(algo.learner_group, "update", "learner")
    return algo, clock


def timed_iteration(algo: Any, clock: Clock, sample: Callable[..., Any]) -> dict[str, float]:
    """One ``train()``: env steps/s and seconds per part."""
    clock.seconds.clear()
    sampling = Clock()
    qmix_algorithm.sample_episodes = lambda a: _timed(sampling, sample, a)
    start = time.perf_counter()
    result = algo.train()
    total = time.perf_counter() - start
    qmix_algorithm.sample_episodes = sample
    parts = dict(clock.seconds)
    sampled = sampling.seconds["sampling"]
    parts["bookkeeping"] = sampled - parts.get("env", 0.0) - parts.get("forward", 0.0)
    learner = 0.0 if algo.config.overlap_updates else parts.get("learner", 0.0)
    parts["other"] = total - sampled - parts.get("replay", 0.0) - learner
    steps = result["env_runners"]["num_env_steps_sampled"]
    return {"env_steps": int(steps), "seconds": total, "steps_per_s": float(steps) / total, **parts}


def _timed(clock: Clock, fn: Callable[..., Any], *args: Any) -> Any:
    start = time.perf_counter()
    try:
        return fn(*args)
    finally:
        clock.seconds["sampling"] += time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--yaml", default="tuned_examples/smac_8m_grsn.yaml")
    parser.add_argument("--warmup", type=int, default=3, help="iterations per variant before timing")
    parser.add_argument("--iterations", type=int, default=8, help="timed iterations per variant")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results/qmix_throughput.json")
    parser.add_argument(
        "--variants",
        default=",".join(DEFAULT_VARIANTS),
        help=f"comma-separated variants of {', '.join(v[0] for v in VARIANTS)} "
        f"(default: {','.join(DEFAULT_VARIANTS)}; ratios are to the first)",
    )
    parser.add_argument(
        "--battles",
        default="",
        help="comma-separated battles per EnvRunner (num_envs_per_env_runner) to run each variant at, "
        "e.g. 8,16,32 (default: the YAML's)",
    )
    args = parser.parse_args()
    known = {v[0]: v for v in VARIANTS}
    chosen = [name.strip() for name in args.variants.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in known]
    if unknown or not chosen:
        parser.error(f"--variants: unknown {unknown or chosen}; choose from {', '.join(known)}")
    try:
        battle_counts = [int(b) for b in args.battles.split(",") if b.strip()] or [None]
    except ValueError:
        parser.error(f"--battles: comma-separated integers, got {args.battles!r}")
    if any(b is not None and b < 1 for b in battle_counts):
        parser.error(f"--battles: each must be >= 1, got {args.battles!r}")
    sample = qmix_algorithm.sample_episodes
    variants = {}
    for name in chosen:
        _, team, buckets, threads, overlap = known[name]
        for battles in battle_counts:
            label = name if battles is None else f"{name}/{battles}b"
            variants[label] = (*build(args.yaml, team, buckets, args.seed, battles, overlap), threads)
    for _ in range(args.warmup):
        for algo, _clock, threads in variants.values():
            torch.set_num_threads(threads)
            algo.train()
    rows: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
    for i in range(args.iterations):
        for name, (algo, clock, threads) in variants.items():
            torch.set_num_threads(threads)
            rows[name].append(timed_iteration(algo, clock, sample))
            print(f"iteration {i + 1} {name}: {rows[name][-1]['steps_per_s']:.0f} env steps/s", flush=True)
    for algo, _clock, _threads in variants.values():
        algo.stop()

    summary = {}
    for name, iterations in rows.items():
        seconds = sum(r["seconds"] for r in iterations)
        summary[name] = {
            "env_steps_per_s_median": statistics.median(r["steps_per_s"] for r in iterations),
            "share": {p: sum(r.get(p, 0.0) for r in iterations) / seconds for p in PARTS},
            "ms_per_env_step": {
                p: 1000 * sum(r.get(p, 0.0) for r in iterations) / sum(r["env_steps"] for r in iterations)
                for p in PARTS
            },
        }
    base = summary[next(iter(summary))]["env_steps_per_s_median"]
    print(f"\n{'':13s} {'steps/s':>8s} {'ratio':>6s} " + " ".join(f"{p:>12s}" for p in PARTS))
    for name, s in summary.items():
        s["ratio"] = s["env_steps_per_s_median"] / base
        shares = " ".join(f"{100 * s['share'][p]:11.1f}%" for p in PARTS)
        print(f"{name:13s} {s['env_steps_per_s_median']:8.0f} {s['ratio']:5.2f}x {shares}")
    print(f"\nms per env step {'':6s}" + " ".join(f"{p:>12s}" for p in PARTS))
    for name, s in summary.items():
        print(f"{name:22s}" + " ".join(f"{s['ms_per_env_step'][p]:12.3f}" for p in PARTS))
    out = {"machine": machine_description(), "args": vars(args), "summary": summary, "iterations": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
