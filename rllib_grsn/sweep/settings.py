"""The ``tune:`` section of a tuned_examples experiment: how Ray Tune runs the sweep.

::

    my-sweep:
      env: CartPole-P
      run: PPO
      tune:
        num_samples: 1              # samples per grid point (choice/uniform/... drawn anew each)
        max_concurrent_trials: 2    # 0 or absent: as many as the cluster's CPUs allow
        max_failures: 3             # a trial that fails (a lost node) restarts from its last checkpoint
        metric: eval_return         # for the scheduler/search algorithm and the summary table
        mode: max
        scheduler: {type: asha, grace_period: 5, max_t: 100}   # optional early stopping
        search_alg: {type: optuna}                              # optional (pip install optuna)
      config:
        seed: {grid_search: [0, 1, 2]}

``metric`` takes a short name (:data:`METRIC_ALIASES`) or any result key (``learners/.../total_loss``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError

from rllib_grsn.checks.problems import pydantic_problems

# Short metric names -> RLlib new-stack result keys (Tune's "/"-flattened form).
METRIC_ALIASES = {
    "return": "env_runners/episode_return_mean",
    "episode_len": "env_runners/episode_len_mean",
    "team_return": "env_runners/team_return_mean",
    "win_rate": "env_runners/win_rate",
    "eval_return": "evaluation/env_runners/episode_return_mean",
    "eval_team_return": "evaluation/env_runners/team_return_mean",
    "eval_win_rate": "evaluation/env_runners/win_rate",
    "energy_pj": "evaluation/env_runners/energy/pj_per_decision",
}


class ASHASettings(BaseModel):
    """Ray Tune's ASHA (asynchronous successive halving): stops trials that trail their rung."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["asha"] = "asha"
    time_attr: str = "training_iteration"
    grace_period: StrictInt = Field(1, gt=0)
    max_t: StrictInt = Field(100, gt=0)
    reduction_factor: float = Field(4.0, gt=1.0)


class OptunaSettings(BaseModel):
    """Optuna's TPE sampler through Ray Tune's OptunaSearch (needs ``pip install optuna``)."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["optuna"] = "optuna"
    seed: StrictInt | None = None


class TuneSettings(BaseModel):
    """How one experiment's trials run; the defaults make a plain experiment one trial."""

    model_config = ConfigDict(extra="forbid")
    num_samples: StrictInt = Field(1, gt=0, description="samples of the search space per grid point")
    max_concurrent_trials: StrictInt | None = Field(None, ge=0, description="0/None: no limit")
    max_failures: StrictInt = Field(
        0, ge=-1, description="restarts of a failed trial from its last checkpoint (-1: unlimited)"
    )
    metric: str | None = Field(None, description="short name or result key")
    mode: Literal["max", "min"] = "max"
    scheduler: ASHASettings | None = None
    search_alg: OptunaSettings | None = None

    @property
    def metric_key(self) -> str | None:
        return None if self.metric is None else METRIC_ALIASES.get(self.metric, self.metric)

    def problems(self, *, has_grid: bool, evaluation_interval: Any) -> list[str]:
        """Combinations Tune would reject (or silently mis-run), in the YAML's words."""
        out = []
        if (self.scheduler or self.search_alg) and self.metric is None:
            out.append("tune.metric: a scheduler or search_alg needs a metric to optimise, e.g. eval_return")
        if self.search_alg is not None and has_grid:
            out.append("tune.search_alg: Optuna cannot sample grid_search; use choice (or drop search_alg)")
        key = self.metric_key or ""
        if (self.scheduler or self.search_alg) and key.startswith("evaluation/") and evaluation_interval != 1:
            out.append(
                f"tune.metric: {self.metric} is reported only in iterations that evaluate; with a "
                "scheduler or search_alg set config.evaluation_interval: 1 or use a training metric"
            )
        return out

    def tune_config(self) -> Any:
        """Ray Tune's TuneConfig for these settings (imports Optuna only when asked for)."""
        from ray import tune

        kwargs: dict[str, Any] = {
            "num_samples": self.num_samples,
            "max_concurrent_trials": self.max_concurrent_trials or None,
        }
        if self.scheduler is not None or self.search_alg is not None:
            kwargs |= {"metric": self.metric_key, "mode": self.mode}
        if self.scheduler is not None:
            from ray.tune.schedulers import ASHAScheduler

            s = self.scheduler
            kwargs["scheduler"] = ASHAScheduler(
                time_attr=s.time_attr,
                grace_period=s.grace_period,
                max_t=s.max_t,
                reduction_factor=s.reduction_factor,
            )
        if self.search_alg is not None:
            try:
                from ray.tune.search.optuna import OptunaSearch
            except ImportError as err:  # pragma: no cover - depends on the environment
                raise RuntimeError("tune.search_alg optuna needs Optuna: pip install optuna") from err
            kwargs["search_alg"] = OptunaSearch(seed=self.search_alg.seed)
            # Tune would name each trial's folder after every value the search algorithm reports,
            # which for Optuna is the whole config: keep the names short.
            kwargs["trial_dirname_creator"] = short_trial_dirname
        return tune.TuneConfig(**kwargs)


def short_trial_dirname(trial: Any) -> str:
    """``<Algorithm>_<env>_<trial id>``: a trial folder name that fits any file system."""
    env = str(trial.config.get("env", "env")).replace("/", "_")
    return f"{trial.trainable_name}_{env}_{trial.trial_id}"


def _shorthand(value: Any) -> Any:
    """``scheduler: asha`` / ``search_alg: optuna`` mean the defaults of that type."""
    return {"type": value} if isinstance(value, str) else value


def parse_tune_settings(section: Any, where: str) -> tuple[TuneSettings, list[str]]:
    """``TuneSettings`` of a ``tune:`` section (None: defaults) and one problem per bad key."""
    if section is None:
        return TuneSettings(), []
    if not isinstance(section, dict):
        return TuneSettings(), [f"{where}: must be a mapping, got {type(section).__name__}"]
    data = {key: _shorthand(v) if key in ("scheduler", "search_alg") else v for key, v in section.items()}
    try:
        return TuneSettings.model_validate(data), []
    except ValidationError as err:
        return TuneSettings(), pydantic_problems(err, where, TuneSettings)
