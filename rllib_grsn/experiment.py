"""Classic RLlib tuned_examples YAML (``{name: {env, run, stop, config}}``) -> validated experiments.

Everything here runs before Ray starts. Each experiment's real ``AlgorithmConfig`` is built and
checked as RLlib would check it inside the trial (:mod:`rllib_grsn.checks.rllib_settings`), together
with the package's own settings, the env, the stop criteria and the ``tune:`` section; a sweep is
checked at every corner of its search space. Every problem is one line naming the key and what is
allowed, so `rllib train file` fails in seconds without a traceback.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig
from ray.rllib.core.rl_module.rl_module import RLModuleSpec

import rllib_grsn.envs  # noqa: F401  (registers CartPole-P & co. with gymnasium and Tune)
from rllib_grsn.algorithms.callbacks import add_callbacks
from rllib_grsn.algorithms.divergence import DivergenceGuard
from rllib_grsn.algorithms.registry import (
    ALGORITHM_NAMES,
    algorithms_with_spiking_modules,
    get_algorithm_class,
    spiking_module_class,
)
from rllib_grsn.algorithms.spiking_controls import add_spiking_training_controls
from rllib_grsn.checks.envs import OWN_ENVS, env_config_problem, env_known, known_env_names, pairing_problem
from rllib_grsn.checks.problems import ExperimentError, pydantic_problems, shown, suggest
from rllib_grsn.checks.rllib_settings import attribute, config_problems, key_problems, range_problems
from rllib_grsn.checks.stop import stop_problems
from rllib_grsn.checks.yaml_file import read_yaml
from rllib_grsn.modules.connectors import prev_action_reward_connector
from rllib_grsn.modules.model_config import SpikingModelConfig, model_config_errors
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

__all__ = ["Experiment", "ExperimentError", "build_experiment", "deep_merge", "load_experiments"]

# A sweep is checked at every combination of its candidate values up to this many; beyond, one
# search space at a time (the others at their first value).
MAX_CORNERS = 256


class ExperimentKeys(BaseModel):
    """The keys of one experiment (their contents are checked by the rest of this module)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    env: Any = None
    run: Any = None
    stop: Any = None
    config: Any = None
    tune: Any = None
    checkpoint_freq: int = Field(0, ge=0, description="checkpoint every N iterations (0: only at the end)")
    checkpoint_at_end: bool = True
    description: str = ""


EXPERIMENT_KEYS = tuple(ExperimentKeys.model_fields)


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
    """A `--stop`/`--config` JSON object, or ExperimentError naming the option. None means not given;
    an empty string is a mistake (``--stop ''`` would otherwise keep the file's criteria)."""
    if text is None:
        return {}
    if not text.strip():
        raise ExperimentError(
            option, ["empty; give a JSON object, e.g. '{\"training_iteration\": 5}', or '{}'"]
        )
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
    data = read_yaml(path)
    if not isinstance(data, dict) or not data:
        raise ExperimentError(
            str(path), ["expected a mapping {experiment_name: {env, run, stop, config}} at the top level"]
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
        raise ExperimentError(str(path), problems)
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
    try:
        ExperimentKeys.model_validate(spec)
    except ValidationError as err:
        problems += pydantic_problems(err, name, ExperimentKeys)
    file_config = spec.get("config") or {}
    if not isinstance(file_config, dict):
        problems.append(f"{name}.config: must be a mapping, got {type(file_config).__name__}")
        file_config = {}
    file_config = _model_alias_to_model_config(dict(file_config), f"{name}.config.model", problems)
    override = _model_alias_to_model_config(dict(config or {}), "--config.model", problems)

    run = spec.get("run")
    if run is None:
        problems.append(f"{name}.run: missing; choose one of: {', '.join(ALGORITHM_NAMES)}")
    elif not isinstance(run, str) or run not in ALGORITHM_NAMES:
        problems.append(
            f"{name}.run: unknown algorithm {shown(run)}{suggest(str(run), ALGORITHM_NAMES)}; "
            f"choose one of: {', '.join(ALGORITHM_NAMES)}"
        )
        run = None

    top_env, file_env, override_env = spec.get("env"), file_config.pop("env", None), override.pop("env", None)
    if top_env is not None and file_env is not None and top_env != file_env:
        problems.append(
            f"{name}.env: {shown(top_env)} and {name}.config.env: {shown(file_env)} disagree; "
            "give the env once"
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
        problems.append(f"{name}.env: missing; e.g. one of: {', '.join(OWN_ENVS)}")
    elif not isinstance(env, str) or not env_known(env):
        problems.append(
            f"{name}.env: unknown env {shown(env)}{suggest(str(env), known_env_names())}; "
            f"this package provides: {', '.join(OWN_ENVS)} (or any gymnasium / Tune-registered id)"
        )
        env = None
    stop_criteria, stop_text_problems = stop_problems(spec.get("stop") or {} if stop is None else stop, name)
    problems += stop_text_problems

    algo_config = None
    if run is not None and env is not None:
        algo_config, config_problems = _checked_config(name, run, env, raw_config)
        problems += config_problems
    if algo_config is not None and not problems:
        problems += tune_settings.problems(
            has_grid=any(d.is_grid for d in search_space.values()),
            evaluation_interval=algo_config.evaluation_interval,
        )
        problems += _search_space_problems(name, run, env, raw_config, search_space)
    if problems:
        raise ExperimentError(name, problems)
    assert algo_config is not None and run is not None and env is not None
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
        checkpoint_freq=spec.get("checkpoint_freq", 0),
        checkpoint_at_end=spec.get("checkpoint_at_end", True),
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
    name: str, run: str, env: str, base: dict[str, Any], space: dict[tuple[str, ...], SearchDomain]
) -> list[str]:
    """Checks the experiment at every value of its search space, then at every combination of
    values, so a bad value or a bad combination fails now, not hours into a sweep.

    Each candidate value (every grid and choice value, both bounds of a range) is checked with the
    other spaces at their first value: a problem reads ``key = value: problem``. Then every
    combination of values that are fine alone, up to :data:`MAX_CORNERS`; a problem there names the
    combination. A seed grid of non-negative integers is left at its first value: a seed changes no
    setting."""
    varied = {
        path: domain.candidates()
        for path, domain in space.items()
        if not (path == SEED_PATH and all(isinstance(v, int) and v >= 0 for v in domain.candidates()))
    }
    problems: list[str] = []

    def check(corner: dict[tuple[str, ...], Any]) -> list[str]:
        config = base
        for path, value in corner.items():
            config = with_value(config, path, value)
        return _checked_config(name, run, env, config)[1]

    bad: set[tuple[tuple[str, ...], str]] = set()
    for path, values in varied.items():
        key = f"{name}.config.{'.'.join(path)}"
        for value in values[1:]:
            for problem in check({path: value}):
                bad.add((path, repr(value)))
                rest = problem.removeprefix(key + ": ") if problem.startswith(key + ":") else problem
                problems.append(f"{key} = {shown(value)}: {rest}")
    if math.prod(len(values) for values in varied.values()) > MAX_CORNERS:
        return problems
    for values in itertools.product(*varied.values()):
        corner = dict(zip(varied, values, strict=True))
        changed = {p: v for p, v in corner.items() if v != varied[p][0] or type(v) is not type(varied[p][0])}
        if len(changed) < 2 or any((p, repr(v)) in bad for p, v in changed.items()):
            continue  # checked alone above
        with_values = ", ".join(f"{'.'.join(p)} = {shown(v)}" for p, v in changed.items())
        problems += [f"{problem} (with {with_values})" for problem in check(corner)]
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


def _model_config_problems(run: str, model_config: Any, where: str) -> list[str]:
    """The spiking model's settings (with ``core``) or the keys of RLlib's default model."""
    if not isinstance(model_config, dict):
        return [f"{where}: must be a mapping, got {type(model_config).__name__}"]
    if "core" in model_config:
        if run not in algorithms_with_spiking_modules():
            return [
                f"{where}.core: algorithm {run} has no spiking RLModule; "
                f"use one of: {', '.join(algorithms_with_spiking_modules())}"
            ]
        return model_config_errors(model_config, where=where)
    allowed = [f.name for f in dataclass_fields(DefaultModelConfig)]
    return [
        f"{where}.{key}: unknown key for RLlib's default model{suggest(str(key), allowed)}; "
        f"add `core: {'|'.join(CORE_NAMES)}` for a spiking model"
        for key in model_config
        if key not in allowed
    ]


def _checked_config(
    name: str, run: str, env: str, raw: dict[str, Any]
) -> tuple[AlgorithmConfig | None, list[str]]:
    """The experiment's AlgorithmConfig and every problem with it, in RLlib's order: keys and types,
    then values and ranges (of the well-typed keys, so that all are reported together), then, once
    everything else is valid, RLlib's ``validate()`` (cross-field rules)."""
    where = f"{name}.config"
    default = get_algorithm_class(run).get_default_config()
    settings = {k: v for k, v in raw.items() if k != "model_config"}
    problems = key_problems(default, settings, where)
    bad = {p.removeprefix(f"{where}.").split(":")[0] for p in problems}
    well_typed = {k: v for k, v in settings.items() if str(k) not in bad}
    model_config = raw.get("model_config", {})
    model_problems = _model_config_problems(run, model_config, f"{where}.model_config")
    problems += model_problems
    env_config = raw.get("env_config", {})
    if isinstance(env_config, dict):
        problem = env_config_problem(env, env_config)
        if problem:
            problems.append(f"{where}.env_config: {problem}")
    problem = pairing_problem(run, env, env_config if isinstance(env_config, dict) else {})
    if problem:
        problems.append(f"{name}.run: {problem}")

    try:
        config = default.update_from_dict(well_typed).environment(env)
        if not model_problems:
            _add_model(config, run, model_config)
    except Exception as err:  # RLlib's setters refuse some values; report them as config problems
        return None, [*problems, f"{where}: {type(err).__name__}: {err}"]
    names = {attribute(key): key for key in settings}
    # The well-typed values' ranges are reported with the problems above; the rest once they pass.
    problems += range_problems(config, where, names) if problems else config_problems(config, where, names)
    return (None, problems) if problems else (config, [])


def _add_model(config: AlgorithmConfig, run: str, model_config: dict[str, Any]) -> None:
    """Our spiking RLModule for ``run`` when ``model_config`` picks a ``core``, else RLlib's default
    model with these keys."""
    if "core" not in model_config:
        if model_config:
            config.rl_module(model_config=model_config)
        return
    spiking = SpikingModelConfig.from_model_config(model_config)
    # The model_config lives on the AlgorithmConfig, not inside the spec: Tune samples search
    # spaces only in plain dicts (config.to_dict()["_model_config"]), and RLlib merges it into the
    # spec when it builds the modules.
    spec = RLModuleSpec(module_class=spiking_module_class(run))
    config.rl_module(rl_module_spec=spec, model_config=spiking.model_dump())
    # An algorithm with its own input pipeline (QMIX: agent id and previous action) keeps it.
    if spiking.prev_action_reward and config._env_to_module_connector is None:
        config.env_runners(env_to_module_connector=prev_action_reward_connector)
    # The surrogate-width schedule callback and PPO's firing-rate-penalty learner.
    add_spiking_training_controls(config, run, spiking)
