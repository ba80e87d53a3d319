"""Classic RLlib tuned_examples YAML (``{name: {env, run, stop, config}}``) -> validated experiments.

Everything here runs before Ray starts: a bad file, an unknown ``run``/``env``/core, a key of the
wrong type or a value out of range is reported as a list of messages that name the key and what
is allowed, so `rllib train file` can fail fast without a traceback.
"""

from __future__ import annotations

import copy
import difflib
import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import gymnasium as gym
import yaml
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig
from ray.rllib.core.rl_module.rl_module import RLModuleSpec

import rllib_grsn.envs  # noqa: F401  (registers CartPole-P & co. with gymnasium and Tune)
from rllib_grsn.algorithms.callbacks import add_callbacks
from rllib_grsn.algorithms.config_checks import SCHEDULE_EXAMPLE, schedule_problem
from rllib_grsn.algorithms.divergence import DivergenceGuard
from rllib_grsn.algorithms.registry import (
    ALGORITHM_NAMES,
    algorithms_with_spiking_modules,
    get_algorithm_class,
    spiking_module_class,
)
from rllib_grsn.algorithms.spiking_controls import add_spiking_training_controls
from rllib_grsn.envs import MULTI_AGENT_ENVS, PO_CONTROL_ENVS, make_multi_agent_env, make_po_control
from rllib_grsn.modules.connectors import prev_action_reward_connector
from rllib_grsn.modules.model_config import SpikingModelConfig, model_config_errors, string_number_hint
from rllib_grsn.neurons import CORE_NAMES
from rllib_grsn.sweep.search_space import (
    SEED_PATH,
    SearchDomain,
    count_grid_trials,
    split_search_space,
    with_value,
)
from rllib_grsn.sweep.settings import TuneSettings, parse_tune_settings
from rllib_grsn.tracking.energy_metrics import EnergyMetricsCallback
from rllib_grsn.tracking.stale_evaluation import DropStaleEvaluation

EXPERIMENT_KEYS = (
    "env",
    "run",
    "stop",
    "config",
    "tune",
    "checkpoint_freq",
    "checkpoint_at_end",
    "description",
)

# Classic (old API stack) result keys users still write in `stop:`, and their new-stack names.
STOP_KEY_ALIASES = {
    "timesteps_total": "num_env_steps_sampled_lifetime",
    "episode_reward_mean": "env_runners/episode_return_mean",
    "episode_return_mean": "env_runners/episode_return_mean",
    "sampler_results/episode_reward_mean": "env_runners/episode_return_mean",
}


class ExperimentError(ValueError):
    """A tuned_examples file that cannot run; ``problems`` holds one message per bad key."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__(f"{source}:\n  " + "\n  ".join(problems))


@dataclass
class Experiment:
    """One validated experiment of a tuned_examples file, ready for Ray Tune."""

    name: str
    run: str
    env: str
    stop: dict[str, float]
    algo_config: AlgorithmConfig
    checkpoint_freq: int = 0
    checkpoint_at_end: bool = True
    # The experiment as written (overrides applied, search spaces at their first value), for
    # logging alongside results.
    raw: dict[str, Any] = field(default_factory=dict)
    # Config key path -> what Tune samples there (empty: one trial with the config as written).
    search_space: dict[tuple[str, ...], SearchDomain] = field(default_factory=dict)
    tune: TuneSettings = field(default_factory=TuneSettings)

    @property
    def is_sweep(self) -> bool:
        """Whether Tune runs more than one trial of this experiment."""
        return bool(self.search_space) or self.tune.num_samples > 1

    @property
    def num_trials(self) -> int:
        """Trials Tune runs (every grid point times ``num_samples``)."""
        return count_grid_trials(self.search_space, self.tune.num_samples)

    @property
    def algorithm_class(self) -> type:
        return get_algorithm_class(self.run)


def known_env_names() -> list[str]:
    """Our envs first, then gymnasium's and anything registered with Ray Tune."""
    from ray.tune.registry import ENV_CREATOR, _global_registry

    names = list(PO_CONTROL_ENVS) + list(MULTI_AGENT_ENVS)
    names += [n for n in gym.envs.registry if n not in PO_CONTROL_ENVS]
    names += [key for cat, key in _global_registry._to_flush if cat == ENV_CREATOR and key not in names]
    return names


def _env_known(name: str) -> bool:
    from ray.tune.registry import ENV_CREATOR, _global_registry

    # Our own envs first: after a Ray session ends in this process, Tune's registry answers from
    # the session's (gone) key-value store, and would call them unknown until Ray starts again.
    if name in PO_CONTROL_ENVS or name in MULTI_AGENT_ENVS:
        return True
    return name in gym.envs.registry or _global_registry.contains(ENV_CREATOR, name)


def _suggest(word: str, options: list[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(word, list(options), n=3, cutoff=0.6)
    return f" (did you mean: {', '.join(close)}?)" if close else ""


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` wins; nested dicts merge key by key (how `--config JSON` patches a YAML)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_json_option(text: str | None, option: str) -> dict[str, Any]:
    """A `--stop`/`--config` JSON object, or ExperimentError naming the option."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ExperimentError(option, [f"not valid JSON: {err}"]) from None
    if not isinstance(value, dict):
        raise ExperimentError(option, [f"must be a JSON object, got {type(value).__name__}"])
    return value


def load_experiments(
    path: str | Path,
    *,
    stop: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
    num_samples: int | None = None,
) -> list[Experiment]:
    """Reads and validates every experiment in a tuned_examples YAML.

    ``stop`` replaces each experiment's stop criteria; ``config`` is deep-merged into its config;
    ``num_samples`` replaces ``tune.num_samples`` (see :func:`build_experiment`).
    Raises ExperimentError listing every problem found.
    """
    path = Path(path)
    source = str(path)
    if not path.is_file():
        raise ExperimentError(source, ["file not found"])
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ExperimentError(source, [f"not valid YAML: {err}"]) from None
    if not isinstance(data, dict) or not data:
        raise ExperimentError(
            source, ["expected a mapping {experiment_name: {env, run, stop, config}} at the top level"]
        )
    experiments, problems = [], []
    for name, spec in data.items():
        try:
            experiments.append(
                build_experiment(str(name), spec, stop=stop, config=config, num_samples=num_samples)
            )
        except ExperimentError as err:
            # A bad --stop/--config is reported by every experiment; list it once.
            problems += [p for p in err.problems if p not in problems]
    if problems:
        raise ExperimentError(source, problems)
    return experiments


def build_experiment(
    name: str,
    spec: Any,
    *,
    stop: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
    num_samples: int | None = None,
) -> Experiment:
    """Validates one experiment mapping and builds its AlgorithmConfig (no Ray needed).

    ``config`` (the `--config` override) is deep-merged over the file's config after the classic
    ``model`` alias has become ``model_config`` in both; an ``env`` in it replaces the experiment's.
    Search spaces in the config and the ``tune:`` section make it a sweep. ``num_samples`` (the
    `--num-samples` override) replaces ``tune.num_samples``; samples of a config whose ``seed`` is
    not searched become seeds: N samples are a grid over seeds ``seed .. seed+N-1``.
    """
    if not isinstance(spec, dict):
        raise ExperimentError(name, [f"{name}: expected a mapping with keys {', '.join(EXPERIMENT_KEYS)}"])
    problems: list[str] = []
    for key in spec:
        if key not in EXPERIMENT_KEYS:
            problems.append(
                f"{name}.{key}: unknown key{_suggest(str(key), EXPERIMENT_KEYS)}; "
                f"allowed keys: {', '.join(EXPERIMENT_KEYS)}"
            )
    file_config = spec.get("config", {})
    if not isinstance(file_config, dict):
        problems.append(f"{name}.config: must be a mapping, got {type(file_config).__name__}")
        file_config = {}
    file_config = _model_alias_to_model_config(dict(file_config), f"{name}.config.model", problems)
    override = _model_alias_to_model_config(dict(config or {}), "--config.model", problems)

    run = spec.get("run")
    algo_cls = None
    if run is None:
        problems.append(f"{name}.run: missing; choose one of: {', '.join(ALGORITHM_NAMES)}")
    elif not isinstance(run, str) or run not in ALGORITHM_NAMES:
        problems.append(
            f"{name}.run: unknown algorithm {run!r}{_suggest(str(run), ALGORITHM_NAMES)}; "
            f"choose one of: {', '.join(ALGORITHM_NAMES)}"
        )
    else:
        algo_cls = get_algorithm_class(run)

    top_env, file_env, override_env = spec.get("env"), file_config.pop("env", None), override.pop("env", None)
    if top_env is not None and file_env is not None and top_env != file_env:
        problems.append(
            f"{name}.env: {top_env!r} and {name}.config.env: {file_env!r} disagree; give the env once"
        )
    env = next((e for e in (override_env, top_env, file_env) if e is not None), None)
    raw_config, search_space, space_problems = split_search_space(
        deep_merge(file_config, override), f"{name}.config"
    )
    problems += space_problems
    tune_settings, tune_problems = parse_tune_settings(spec.get("tune"), f"{name}.tune")
    problems += tune_problems
    if num_samples is not None:
        tune_settings.num_samples = num_samples
    if env is None:
        problems.append(
            f"{name}.env: missing; e.g. one of: {', '.join([*PO_CONTROL_ENVS, *MULTI_AGENT_ENVS])}"
        )
    elif not isinstance(env, str) or not _env_known(env):
        problems.append(
            f"{name}.env: unknown env {env!r}{_suggest(str(env), known_env_names())}; "
            f"this package provides: {', '.join([*PO_CONTROL_ENVS, *MULTI_AGENT_ENVS])} "
            "(or any gymnasium / Tune-registered id)"
        )

    stop_criteria = _validate_stop(name, spec.get("stop", {}) if stop is None else stop, problems)
    checkpoint_freq = spec.get("checkpoint_freq", 0)
    if isinstance(checkpoint_freq, bool) or not isinstance(checkpoint_freq, int) or checkpoint_freq < 0:
        problems.append(
            f"{name}.checkpoint_freq: must be an integer >= 0 (0: only at the end), got {checkpoint_freq!r}"
        )
    if not isinstance(spec.get("description", ""), str):
        problems.append(f"{name}.description: must be a string, got {spec['description']!r}")
    checkpoint_at_end = spec.get("checkpoint_at_end", True)
    if not isinstance(checkpoint_at_end, bool):
        problems.append(f"{name}.checkpoint_at_end: must be true or false, got {checkpoint_at_end!r}")

    algo_config = None
    if algo_cls is not None:
        algo_config = _build_algo_config(name, run, algo_cls, raw_config, problems)
    own_env = isinstance(env, str) and (env in PO_CONTROL_ENVS or env in MULTI_AGENT_ENVS)
    if own_env and isinstance(raw_config.get("env_config", {}), dict):
        problem = _env_config_problem(env, raw_config.get("env_config", {}))
        if problem:
            problems.append(f"{name}.config.env_config: {problem}")
    if isinstance(run, str) and isinstance(env, str):
        problem = _team_env_problem(run, env)
        if problem:
            problems.append(f"{name}.run: {problem}")
    if algo_config is not None and isinstance(env, str) and not problems:
        problem = _action_space_problem(run, env, raw_config.get("env_config", {}))
        if problem:
            problems.append(f"{name}.run: {problem}")
    if algo_config is not None and not problems:
        problems += tune_settings.problems(
            has_grid=any(d.is_grid for d in search_space.values()),
            evaluation_interval=algo_config.evaluation_interval,
        )
        trial_spec = {k: v for k, v in spec.items() if k not in ("config", "tune")}
        trial_spec |= {"env": env, "stop": stop_criteria}  # the env and stop as overridden
        problems += _search_space_problems(name, trial_spec, raw_config, search_space)
    if problems:
        raise ExperimentError(name, problems)
    assert algo_config is not None
    algo_config.environment(env)
    _samples_as_seeds(raw_config, search_space, tune_settings)
    if isinstance(raw_config.get("model_config"), dict) and "core" in raw_config["model_config"]:
        # Our modules have energy adapters: every evaluation logs the energy per decision.
        add_callbacks(algo_config, EnergyMetricsCallback)
    # RLlib repeats each test's results in the next iteration's; every run reports a test once.
    add_callbacks(algo_config, DropStaleEvaluation)
    # Last, so it checks what every other callback left: a NaN loss or weight ends the trial.
    add_callbacks(algo_config, DivergenceGuard)
    return Experiment(
        name=name,
        run=run,
        env=env,
        stop=stop_criteria,
        algo_config=algo_config,
        checkpoint_freq=checkpoint_freq,
        checkpoint_at_end=checkpoint_at_end,
        raw={"env": env, "run": run, "stop": stop_criteria, "config": raw_config},
        search_space=search_space,
        tune=tune_settings,
    )


def _samples_as_seeds(
    config: dict[str, Any], space: dict[tuple[str, ...], SearchDomain], settings: TuneSettings
) -> None:
    """N samples of a config whose seed is not searched would train the same seed N times; they
    become a grid over N consecutive seeds from the config's (reproducible, unlike random seeds).
    With a search algorithm (Optuna) the samples are its trials and stay as they are."""
    if settings.num_samples > 1 and SEED_PATH not in space and settings.search_alg is None:
        first = config.get("seed")
        first = first if isinstance(first, int) and not isinstance(first, bool) else 0
        space[SEED_PATH] = SearchDomain("grid_search", tuple(range(first, first + settings.num_samples)))
        settings.num_samples = 1


def _search_space_problems(
    name: str, spec: dict[str, Any], base: dict[str, Any], space: dict[tuple[str, ...], SearchDomain]
) -> list[str]:
    """Builds the experiment once more for every other value a search space can take (every grid
    and choice value, both ends of a range), so a bad value fails now, not hours into a sweep.

    ``spec`` is the experiment without config and tune, with the env and stop finally chosen."""
    problems: list[str] = []
    for path, domain in space.items():
        if path == SEED_PATH and all(isinstance(v, int) and v >= 0 for v in domain.candidates()):
            continue  # a seed changes no setting another seed accepts: no need to build each
        for value in domain.candidates()[1:]:
            try:
                build_experiment(name, {**spec, "config": with_value(base, path, value)})
            except ExperimentError as err:
                key = f"{name}.config.{'.'.join(path)}"
                # "key = value: problem", without naming the key twice when the problem is about it.
                problems += [f"{key} = {value!r}: {p.removeprefix(key + ': ')}" for p in err.problems]
    return problems


def _model_alias_to_model_config(config: dict[str, Any], where: str, problems: list[str]) -> dict[str, Any]:
    """``config`` with the classic ``model`` key renamed ``model_config`` (both at once: a problem)."""
    if "model" not in config:
        return config
    out = dict(config)
    model = out.pop("model")
    if "model_config" in out:
        problems.append(f"{where}: give either model_config or its classic alias model, not both")
    else:
        out["model_config"] = model
    return out


# Algorithms that only act in continuous (Box) action spaces, and what to use instead.
CONTINUOUS_ONLY = {"TD3": "RecurrentSAC (discrete SAC) or PPO"}


def _action_space_problem(run: str, env: str, env_config: Any) -> str | None:
    """TD3 on a Discrete env fails deep inside Ray; say so before it starts."""
    if run not in CONTINUOUS_ONLY:
        return None
    try:
        if env in PO_CONTROL_ENVS:
            instance = make_po_control(env, env_config if isinstance(env_config, dict) else {})
        elif env in gym.envs.registry:
            instance = gym.make(env)
        else:
            return None  # a Tune-registered creator: RLlib checks it when the env is built
    except Exception:  # the env's own problems are reported when RLlib builds it
        return None
    space = instance.action_space
    instance.close()
    if isinstance(space, gym.spaces.Box):
        return None
    return f"{run} needs continuous (Box) actions but {env} has {space}; use {CONTINUOUS_ONLY[run]}"


# Algorithms that train a team of agents on one of MULTI_AGENT_ENVS (and nothing else).
TEAM_ALGORITHMS = ("QMIX", "VDN")


def _team_env_problem(run: str, env: str) -> str | None:
    """QMIX/VDN need a team env (per-agent masks and a global state); the team envs need them."""
    if run in TEAM_ALGORITHMS and (env in PO_CONTROL_ENVS or env in gym.envs.registry):
        return (
            f"{run} trains a team of agents; use one of the multi-agent envs: {', '.join(MULTI_AGENT_ENVS)}"
        )
    if env in MULTI_AGENT_ENVS and run not in TEAM_ALGORITHMS:
        return f"{env} is a multi-agent team env; train it with {' or '.join(TEAM_ALGORITHMS)}"
    return None


def _env_config_problem(env: str, env_config: dict[str, Any]) -> str | None:
    """Builds one of this package's envs with ``env_config`` once; what went wrong, or None."""
    try:
        probe = (
            make_multi_agent_env(env, env_config)
            if env in MULTI_AGENT_ENVS
            else make_po_control(env, env_config)
        )
    except Exception as err:  # any error here would otherwise surface inside the EnvRunners
        return str(err) if isinstance(err, ValueError) else f"{type(err).__name__}: {err}"
    probe.close()
    return None


def _validate_stop(name: str, stop: Any, problems: list[str]) -> dict[str, float]:
    if not isinstance(stop, dict):
        problems.append(f"{name}.stop: must be a mapping of result key -> number, got {type(stop).__name__}")
        return {}
    out = {}
    for key, value in stop.items():
        if not isinstance(key, str):
            problems.append(f"{name}.stop.{key}: a stop key must be a result key (a string), got {key!r}")
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            problems.append(
                f"{name}.stop.{key}: must be a finite number, got {value!r}{string_number_hint(value)}"
            )
            continue
        out[STOP_KEY_ALIASES.get(key, key)] = value
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# Sizes and counts RLlib divides by or loops over: 0 would train on nothing or never stop sampling.
POSITIVE_KEYS = (
    "train_batch_size",
    "train_batch_size_per_learner",
    "minibatch_size",
    "num_epochs",
    "num_envs_per_env_runner",
    "evaluation_duration",
)
# Settings whose RLlib default is None, so their type cannot be read off it: a value RLlib's default
# stands for (None is always allowed, it means RLlib's default behaviour).
NULLABLE_DEFAULTS = {
    "seed": 0,
    "train_batch_size_per_learner": 1,
    "evaluation_interval": 1,
    "grad_clip": 1.0,
    "evaluation_config": {},
}


# Settings RLlib takes as a positive integer or "auto" (its default is one of the two, so the
# type of the default alone would wrongly refuse the other).
AUTO_OR_POSITIVE_INT = ("rollout_fragment_length", "evaluation_duration")


def _type_problem(key: str, value: Any, default: Any) -> str | None:
    """A message when ``value`` cannot stand where RLlib's default is ``default``."""
    name, shown = key.rsplit(".", 1)[-1], default
    if name in AUTO_OR_POSITIVE_INT:
        if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value > 0):
            return None
        return f'{key}: must be an integer > 0 or "auto" (RLlib\'s default is {default!r}), got {value!r}'
    if default is None:
        if value is None or name not in NULLABLE_DEFAULTS:
            return None
        default = NULLABLE_DEFAULTS[name]
    hint = ""
    if isinstance(default, bool):
        ok, want = isinstance(value, bool), "true or false"
    elif isinstance(default, int):
        ok, want = _is_number(value) and isinstance(value, int), "an integer"
        hint = string_number_hint(value, integer=True)
    elif isinstance(default, float):
        if isinstance(value, (list, tuple)):
            return schedule_problem(key, value, default)
        ok, want = _is_number(value), f"a number or a schedule {SCHEDULE_EXAMPLE}"
        hint = string_number_hint(value)
        if ok and not math.isfinite(value):
            return f"{key}: must be a finite number, got {value!r}"
    elif isinstance(default, str):
        ok, want = isinstance(value, str), "a string"
    elif isinstance(default, dict):
        ok, want = isinstance(value, dict), "a mapping"
    elif isinstance(default, (list, tuple)):
        ok, want = isinstance(value, (list, tuple)), "a list"
    else:
        return None
    if not ok:
        return f"{key}: must be {want} (RLlib's default is {shown!r}), got {value!r}{hint}"
    # Sizes, counts and rates of RLlib are never negative.
    if _is_number(value) and value < 0 and default >= 0:
        return f"{key}: must be >= 0, got {value!r}"
    if name in POSITIVE_KEYS and value == 0:
        return f"{key}: must be > 0, got {value!r}"
    return None


def _build_algo_config(
    name: str, run: str, algo_cls: type, raw: dict[str, Any], problems: list[str]
) -> AlgorithmConfig | None:
    default = algo_cls.get_default_config()
    before = len(problems)
    checked: dict[str, Any] = {}
    public_keys = [a for a in vars(default) if not a.startswith("_")]
    for key, value in raw.items():
        attr = (
            AlgorithmConfig._translate_special_keys(key, warn_deprecated=False)
            if isinstance(key, str)
            else key
        )
        if attr == "model_config":
            continue
        if not isinstance(attr, str) or not hasattr(default, attr):
            problems.append(f"{name}.config.{key}: unknown key for {run}{_suggest(str(attr), public_keys)}")
            continue
        problem = _type_problem(f"{name}.config.{key}", value, getattr(default, attr))
        if problem:
            problems.append(problem)
            continue
        checked[key] = value

    model_config = raw.get("model_config", {})
    spiking = None
    if not isinstance(model_config, dict):
        problems.append(f"{name}.config.model_config: must be a mapping, got {type(model_config).__name__}")
    elif "core" in model_config:
        if run not in algorithms_with_spiking_modules():
            problems.append(
                f"{name}.config.model_config.core: algorithm {run} has no spiking RLModule; "
                f"use one of: {', '.join(algorithms_with_spiking_modules())}"
            )
        else:
            errors = model_config_errors(model_config, where=f"{name}.config.model_config")
            problems += errors
            if not errors:
                spiking = SpikingModelConfig.from_model_config(model_config)
    else:
        allowed = [f.name for f in fields(DefaultModelConfig)]
        for key in model_config:
            if key not in allowed:
                problems.append(
                    f"{name}.config.model_config.{key}: unknown key for RLlib's default model"
                    f"{_suggest(str(key), allowed)}; add `core: {'|'.join(CORE_NAMES)}` for a spiking model"
                )
    if len(problems) > before:
        return None

    try:
        config = default.update_from_dict(checked)
        if spiking is not None:
            # The model_config lives on the AlgorithmConfig, not inside the spec: Tune samples
            # search spaces only in plain dicts (config.to_dict()["_model_config"]), and RLlib merges
            # it into the spec when it builds the modules.
            spec = RLModuleSpec(module_class=spiking_module_class(run))
            config.rl_module(rl_module_spec=spec, model_config=spiking.model_dump())
            # An algorithm with its own input pipeline (QMIX: agent id and previous action) keeps it.
            if spiking.prev_action_reward and config._env_to_module_connector is None:
                config.env_runners(env_to_module_connector=prev_action_reward_connector)
            # The surrogate-width schedule callback and PPO's firing-rate-penalty learner.
            add_spiking_training_controls(config, run, spiking)
        elif model_config:
            config.rl_module(model_config=model_config)
    except Exception as err:  # RLlib's own setters reject some values; report them as config problems
        problems.append(f"{name}.config: {type(err).__name__}: {err}")
        return None
    # Algorithms of this package check their own settings (ranges, allowed values) without Ray.
    own_errors = getattr(config, "off_policy_errors", None)
    if own_errors is not None:
        errors = own_errors()
        problems += [f"{name}.config.{e}" for e in errors]
        if errors:
            return None
    return config
