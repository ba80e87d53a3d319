"""The ``rllib`` command: ``rllib train file X.yaml``, ``rllib evaluate CKPT`` and ``rllib energy CKPT``.

Ray 2.60 ships no ``rllib`` console script; this one restores the classic workflow on RLlib's new
API stack. Files are validated before Ray starts (exit code 2 with one line per problem); training
runs through Ray Tune, so checkpoints, results and ``--resume`` behave as in any Tune run.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130  # the shell's code for a command stopped by Ctrl+C

DESCRIPTION = """\
Train and evaluate spiking recurrent RL agents (GRSN, LIF) with Ray RLlib.

examples:
  rllib train file tuned_examples/cartpole_p_grsn.yaml
  rllib train file tuned_examples/cartpole_p_grsn.yaml --stop '{"training_iteration": 1}'
  rllib train file tuned_examples/cartpole_p_grsn.yaml --config '{"model_config": {"core": "lif"}}'
  rllib train file tuned_examples/sweeps/smac_8m_grsn_5seeds.yaml      # a Ray Tune sweep
  rllib train file tuned_examples/smac_8m_grsn.yaml --num-samples 5     # 5 seeds of one experiment
  rllib evaluate ~/ray_results/cartpole-p-grsn/PPO_.../checkpoint_000009 --episodes 20
  rllib energy ~/ray_results/cartpole-p-grsn/PPO_.../checkpoint_000009 --samples 1024
"""

ENERGY_DESCRIPTION = """\
Estimate the energy per decision of a checkpoint (paper Section 5.4, Table 4), measured on real
inputs: greedy episodes of the checkpoint's own env are rolled out until at least --samples
decisions are recorded (the observations the module received after its connectors); each episode
is replayed from its start with the recurrent state carried as in acting (TAP), and --samples
decisions (one agent at one env step) are sampled and averaged.

counting rules:
  Eq. 15  a layer fed by a spiking core does one accumulate per emitted spike and outgoing
          connection (spikes x fan-out, measured on this decision's spikes): 0.9 pJ each
          -> the SNN (K) column
  Eq. 16  every other connection is a multiply-accumulate (in x out, plus bias adds): dense
          layers and the GRSN gates -> MLP (K); GRU cores 3 x (in h + h h) + 6h -> RNN (K): 4.6 pJ each
  Element-wise neuron updates (leak, threshold, reset) and activations are not counted.
  QMIX: the mixer (learner-side, with the run's global states) is reported separately per team
  step. A GRU checkpoint fills the RNN columns and a spiking one the SNN columns, so the GRU/GRSN
  ratio reads off one command each.
"""


def default_storage_path() -> str:
    """Where `rllib train file` writes results unless told: $RLLIB_GRSN_STORAGE, else ~/ray_results."""
    return os.environ.get("RLLIB_GRSN_STORAGE", str(Path("~/ray_results").expanduser()))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rllib", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{train,evaluate,energy}")

    train = sub.add_parser("train", help="train from a tuned_examples YAML file")
    train_sub = train.add_subparsers(dest="source", required=True, metavar="file")
    tf = train_sub.add_parser(
        "file",
        help="train every experiment in a YAML file",
        description="Train every experiment of a classic RLlib tuned_examples YAML "
        "({name: {env, run, stop, config, tune, checkpoint_freq}}) through Ray Tune. Config values may be "
        "Tune search spaces ({grid_search: [...]}, {choice: [...]}, {uniform: [lo, hi]}, "
        "{loguniform: [lo, hi]}, {randint: [lo, hi]}); the optional tune: section sets num_samples, "
        "max_concurrent_trials, metric, mode, scheduler (asha) and search_alg (optuna). A sweep ends "
        "with a table grouped by everything but the seed (mean +- std). Every trial is logged to "
        "MLflow (see --mlflow-uri).",
    )
    tf.add_argument("path", help="tuned_examples YAML file")
    tf.add_argument(
        "--stop",
        metavar="JSON",
        help="stop criteria replacing the file's, e.g. '{\"training_iteration\": 5}'",
    )
    tf.add_argument("--config", metavar="JSON", help="config keys deep-merged over the file's config")
    tf.add_argument(
        "--storage-path",
        metavar="DIR",
        default=default_storage_path(),
        help="where results and checkpoints go (default: ~/ray_results or $RLLIB_GRSN_STORAGE)",
    )
    tf.add_argument(
        "--checkpoint-freq", type=int, metavar="N", help="checkpoint every N iterations (overrides YAML)"
    )
    tf.add_argument(
        "--resume", action="store_true", help="continue an interrupted run from its last checkpoint"
    )
    tf.add_argument("--num-cpus", type=int, metavar="N", help="CPUs for a local Ray instance (default: all)")
    tf.add_argument(
        "--address",
        metavar="ADDR",
        default=None,
        help="connect to an existing Ray cluster (default: $RAY_ADDRESS)",
    )
    tf.add_argument(
        "--num-samples",
        type=int,
        metavar="N",
        help="samples of each experiment's search space per grid point (overrides tune.num_samples); "
        "with no search space, N trials of the same config",
    )
    tf.add_argument(
        "--mlflow-uri",
        metavar="URI",
        default=os.environ.get("MLFLOW_TRACKING_URI"),
        help="MLflow tracking URI for the runs (default: $MLFLOW_TRACKING_URI, else "
        "sqlite:///<storage-path>/mlflow.db)",
    )
    tf.add_argument("--no-mlflow", action="store_true", help="do not log the runs to MLflow")
    tf.add_argument("--check", action="store_true", help="validate the file and exit without training")

    ev = sub.add_parser(
        "evaluate",
        help="roll out a checkpoint and print the mean/std return (and win rate on battle envs)",
        description=(
            "Load an RLlib checkpoint written by `rllib train file` and run greedy episodes. Team "
            "(QMIX/VDN) checkpoints report the team return, the win rate of battle envs (SMAC/SMAX) "
            "and which backend ran."
        ),
    )
    ev.add_argument("checkpoint", help="checkpoint directory (…/checkpoint_000NNN)")
    ev.add_argument("--episodes", type=int, default=10, metavar="N", help="episodes to run (default 10)")
    ev.add_argument(
        "--explore", action="store_true", help="sample actions stochastically instead of greedily"
    )
    ev.add_argument("--seed", type=int, default=None, help="seed for the evaluation envs")

    en = sub.add_parser(
        "energy",
        help="synaptic operations and energy per decision of a checkpoint (Table 4 layout)",
        description=ENERGY_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    en.add_argument("checkpoint", help="checkpoint directory (…/checkpoint_000NNN)")
    en.add_argument(
        "--samples", type=int, default=1024, metavar="N", help="decisions sampled and averaged (default 1024)"
    )
    en.add_argument("--seed", type=int, default=None, help="seed for the envs and the decision sample")
    return parser


def _fail(message: str) -> int:
    print(f"rllib: error: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


def _warn_options_ignored_on_resume(args: argparse.Namespace) -> None:
    given = [
        option
        for option, value in (
            ("--stop", args.stop),
            ("--config", args.config),
            ("--checkpoint-freq", args.checkpoint_freq),
            ("--num-samples", args.num_samples),
        )
        if value not in (None, "")
    ]
    if given:
        print(
            f"rllib: warning: {', '.join(given)} ignored for experiments that --resume continues: a "
            "resumed run keeps the stop criteria, config and checkpointing it started with (they apply "
            "only to experiments with nothing to resume, which start afresh)",
            file=sys.stderr,
            flush=True,
        )


def _options_problems(args: argparse.Namespace) -> list[str]:
    problems = []
    if args.checkpoint_freq is not None and args.checkpoint_freq < 0:
        problems.append(f"--checkpoint-freq: must be >= 0, got {args.checkpoint_freq}")
    if args.num_cpus is not None and args.num_cpus < 1:
        problems.append(f"--num-cpus: must be >= 1, got {args.num_cpus}")
    if args.num_samples is not None and args.num_samples < 1:
        problems.append(f"--num-samples: must be >= 1, got {args.num_samples}")
    return problems


def _preflight_problems(
    args: argparse.Namespace, experiments: list[Any], tracking_uri: str | None
) -> list[str]:
    """Storage, tracking server, Ray address and (on this machine) the resources of one trial."""
    from rllib_grsn.checks.preflight import (
        address_problem,
        local_resources,
        resource_problem,
        storage_problem,
        trial_request,
    )
    from rllib_grsn.tracking.mlflow_store import tracking_uri_problem

    problems = []
    problem = storage_problem(args.storage_path)
    if problem:
        problems.append(f"--storage-path {args.storage_path}: {problem}")
    if tracking_uri:
        problem = tracking_uri_problem(tracking_uri)
        if problem:
            from_env = tracking_uri == os.environ.get("MLFLOW_TRACKING_URI")
            problems.append(
                f"{'$MLFLOW_TRACKING_URI' if from_env else '--mlflow-uri'} {tracking_uri}: {problem}"
            )
    address = _ray_address(args)
    if address:
        problem = address_problem(address)
        if problem:
            problems.append(f"--address {address}: {problem}")
        return problems  # the cluster's resources are checked once connected
    if args.check and args.num_cpus is None:
        return problems  # --check alone validates the file, wherever it will run
    available, where = local_resources(args.num_cpus)
    for exp in experiments:
        request = trial_request(exp.algorithm_class, exp.algo_config)
        problem = resource_problem(exp.name, request, available, where, exp.algo_config)
        if problem:
            problems.append(problem)
    return problems


def _cluster_problems(experiments: list[Any], address: str) -> list[str]:
    """Trials that ask for more than the connected cluster has; an autoscaling cluster is told what
    it will be asked for instead."""
    from rllib_grsn.checks.preflight import (
        cluster_resources,
        describe_request,
        resource_problem,
        trial_request,
    )

    available, autoscaling = cluster_resources()
    problems = []
    for exp in experiments:
        request = trial_request(exp.algorithm_class, exp.algo_config)
        problem = resource_problem(
            exp.name, request, available, f"the cluster at {address} has", exp.algo_config
        )
        if problem and autoscaling:
            print(
                f"{exp.name}: a trial needs {describe_request(request)}; the cluster has "
                f"{describe_request(available)} now, so its autoscaler will be asked for more nodes "
                "(trials wait until they join; `ray status` shows the requests)",
                flush=True,
            )
        elif problem:
            problems.append(problem)
    return problems


def _ray_address(args: argparse.Namespace) -> str | None:
    return args.address or os.environ.get("RAY_ADDRESS") or None


def train_file(args: argparse.Namespace) -> int:
    from rllib_grsn.experiment import ExperimentError, load_experiments, parse_json_option

    problems = _options_problems(args)
    if problems:
        return _fail("\n  ".join(["options:", *problems]))
    try:
        stop = parse_json_option(args.stop, "--stop") if args.stop is not None else None
        overrides = parse_json_option(args.config, "--config")
        experiments = load_experiments(args.path, stop=stop, config=overrides, num_samples=args.num_samples)
    except ExperimentError as err:
        return _fail(str(err))
    from rllib_grsn.tracking.mlflow_tracking import default_tracking_uri

    tracking_uri = None if args.no_mlflow else (args.mlflow_uri or default_tracking_uri(args.storage_path))
    problems = _preflight_problems(args, experiments, tracking_uri)
    if problems:
        return _fail("\n  ".join(["before starting Ray:", *problems]))
    if args.check:
        for exp in experiments:
            sweep = f", {exp.num_trials} trials" if exp.is_sweep else ""
            print(f"{exp.name}: {exp.run} on {exp.env}, stop {exp.stop or 'never'}{sweep}: OK")
        return 0
    if args.resume:
        _warn_options_ignored_on_resume(args)

    import ray

    from rllib_grsn.training import run_experiment

    address = _ray_address(args)
    init_kwargs: dict[str, Any] = {"include_dashboard": False}
    if address:
        init_kwargs["address"] = address
    else:
        init_kwargs["num_cpus"] = args.num_cpus or os.cpu_count()
    ray.init(**init_kwargs)
    try:
        if address:
            problems = _cluster_problems(experiments, address)
            if problems:
                return _fail("\n  ".join([f"the cluster at {address}:", *problems]))
        failed = 0
        for exp in experiments:
            if args.checkpoint_freq is not None:
                exp.checkpoint_freq = args.checkpoint_freq
            outcome = run_experiment(
                exp,
                storage_path=args.storage_path,
                resume=args.resume,
                tracking_uri=tracking_uri,
                source=args.path,
            )
            failed += outcome.failed
            if outcome.interrupted:
                return EXIT_INTERRUPTED
        return 1 if failed else 0
    finally:
        ray.shutdown()


def evaluate(args: argparse.Namespace) -> int:
    if args.episodes < 1:
        return _fail("--episodes: must be >= 1")
    path = Path(args.checkpoint).expanduser()
    from rllib_grsn.evaluation import CheckpointError, evaluate_checkpoint

    try:
        summary = evaluate_checkpoint(path, episodes=args.episodes, explore=args.explore, seed=args.seed)
    except CheckpointError as err:
        return _fail(str(err))
    wins = "" if summary.win_rate is None else f", win rate {100 * summary.win_rate:.1f}%"
    backend = "" if summary.backend is None else f" [backend {summary.backend}]"
    print(
        f"{summary.env}{backend}: {summary.episodes} episodes, "
        f"return {summary.mean:.2f} +- {summary.std:.2f} (min {summary.min:.2f}, max {summary.max:.2f})"
        f"{wins}, mean length {summary.mean_length:.1f}"
    )
    return 0


def energy(args: argparse.Namespace) -> int:
    if args.samples < 1:
        return _fail("--samples: must be >= 1")
    path = Path(args.checkpoint).expanduser()
    from rllib_grsn.energy.checkpoint import checkpoint_energy
    from rllib_grsn.evaluation import CheckpointError

    try:
        result = checkpoint_energy(path, samples=args.samples, seed=args.seed)
    except (CheckpointError, TypeError) as err:  # TypeError: a module with no energy adapter
        return _fail(str(err))
    print(result.format())
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = {"train": train_file, "energy": energy, "evaluate": evaluate}[args.command]
    try:
        return command(args)
    except KeyboardInterrupt:
        print("rllib: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
