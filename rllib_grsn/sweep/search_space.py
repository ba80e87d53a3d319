"""Ray Tune search spaces written in a tuned_examples YAML's ``config``.

Any config value may be a one-key mapping that Ray Tune samples, as in RLlib's classic YAML files::

    config:
      seed: {grid_search: [0, 1, 2, 3, 4]}
      lr: {loguniform: [1.0e-4, 1.0e-3]}
      model_config:
        decay: {uniform: [0.3, 0.9]}
        alpha: {choice: [1.0, 2.0, 4.0]}

:func:`split_search_space` takes them out before validation (the experiment is validated with every
value a grid or choice can take, and both bounds of a range), and :func:`param_space` puts them back,
as Tune domains, where the key sits in ``AlgorithmConfig.to_dict()`` (what a Tune trial's Algorithm is
built from), so every trial trains with its own sampled values.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

from ray.rllib.algorithms.algorithm_config import AlgorithmConfig

from rllib_grsn.checks.problems import shown, value_hint

Path = tuple[str, ...]

# Marker -> what its value must be; the Tune function each builds is in SearchDomain.to_tune.
MARKERS = {
    "grid_search": "a non-empty list of values (every trial grid is crossed with every other grid)",
    "choice": "a non-empty list of values (one drawn per sample)",
    "uniform": "[low, high], numbers with low < high",
    "loguniform": "[low, high], numbers with 0 < low < high",
    "randint": "[low, high], integers with low < high (high excluded)",
}
SEED_PATH: Path = ("seed",)


@dataclass(frozen=True)
class SearchDomain:
    """One sampled config value: ``kind`` is a key of :data:`MARKERS`, ``values`` its argument."""

    kind: str
    values: tuple[Any, ...]

    @property
    def is_grid(self) -> bool:
        return self.kind == "grid_search"

    def candidates(self) -> list[Any]:
        """Values the experiment is validated with: all of a grid or choice, the bounds of a range."""
        if self.kind in ("grid_search", "choice"):
            return list(self.values)
        low, high = self.values
        return [low, high - 1] if self.kind == "randint" else [low, high]

    def to_tune(self) -> Any:
        from ray import tune

        if self.kind == "grid_search":
            return tune.grid_search(list(self.values))
        if self.kind == "choice":
            return tune.choice(list(self.values))
        return getattr(tune, self.kind)(*self.values)

    def describe(self) -> str:
        if self.kind in ("grid_search", "choice"):
            return f"{self.kind} over {len(self.values)}"
        return f"{self.kind}[{self.values[0]}, {self.values[1]})"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _domain(kind: str, value: Any, where: str) -> tuple[SearchDomain | None, str | None]:
    """The domain of ``{kind: value}``, or a problem naming ``where`` and what is allowed."""
    bad = f"{where}: {{{kind}: ...}} needs {MARKERS[kind]}, got {shown(value)}{value_hint(value)}"
    if kind in ("grid_search", "choice"):
        if not isinstance(value, list) or not value:
            return None, bad
        if any(isinstance(v, dict) and len(v) == 1 and next(iter(v)) in MARKERS for v in value):
            return None, f"{where}: a search space cannot hold another search space"
        return SearchDomain(kind, tuple(value)), None
    if not isinstance(value, list) or len(value) != 2 or not all(_is_number(v) for v in value):
        return None, bad
    low, high = value
    if not low < high or (kind == "loguniform" and low <= 0):
        return None, bad
    if kind == "randint" and not all(isinstance(v, int) for v in value):
        return None, bad
    return SearchDomain(kind, (low, high)), None


def split_search_space(
    config: dict[str, Any], where: str
) -> tuple[dict[str, Any], dict[Path, SearchDomain], list[str]]:
    """``config`` with every search space replaced by its first candidate, the spaces by key path,
    and the problems found (a malformed marker, an unknown one-key ``*_search`` mapping)."""
    space: dict[Path, SearchDomain] = {}
    problems: list[str] = []
    dropped = object()  # a malformed search space: reported once, then left out of the config

    def walk(node: Any, path: Path) -> Any:
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (key, value), label = next(iter(node.items())), ".".join((where, *path))
            if key in MARKERS and not path:
                problems.append(
                    f"{where}: a search space over the whole config cannot be checked or logged per key; "
                    f"put it on each key that varies, e.g. lr: {{{key}: [...]}}"
                )
                return {}
            if key in MARKERS:
                domain, problem = _domain(key, value, label)
                if problem:
                    problems.append(problem)
                    return dropped
                assert domain is not None
                space[path] = domain
                return domain.candidates()[0]
            if isinstance(key, str) and (key.endswith("_search") or key in ("normal", "qrandint")):
                problems.append(f"{label}: unknown search space {key!r}; use one of: {', '.join(MARKERS)}")
        walked = {k: walk(v, (*path, str(k))) for k, v in node.items()}
        return {k: v for k, v in walked.items() if v is not dropped}

    plain = walk(copy.deepcopy(config), ())
    return plain, space, problems


def with_value(config: dict[str, Any], path: Path, value: Any) -> dict[str, Any]:
    """A copy of ``config`` with ``value`` at ``path`` (intermediate mappings created)."""
    out = copy.deepcopy(config)
    node = out
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    return out


def get_path(tree: Any, path: Path) -> Any:
    """``tree[k0][k1]...`` for ``path = (k0, k1, ...)``, or None where a level is missing."""
    for key in path:
        if not isinstance(tree, dict) or key not in tree:
            return None
        tree = tree[key]
    return tree


def config_dict_path(path: Path) -> Path:
    """Where the YAML config key ``path`` sits in ``AlgorithmConfig.to_dict()``.

    ``model_config`` is stored as ``_model_config`` (the experiment keeps our spiking keys there, not
    inside the RLModuleSpec, so Tune can sample them); top-level aliases (``lambda``,
    ``num_workers``, ...) become RLlib's attribute names, then ``to_dict``'s own renames.
    """
    head = path[0]
    if head in ("model_config", "model"):
        return ("_model_config", *path[1:])
    attr = AlgorithmConfig._translate_special_keys(head, warn_deprecated=False)
    return ({"lambda_": "lambda", "input_": "input"}.get(attr, attr), *path[1:])


def param_space(algo_config: AlgorithmConfig, space: dict[Path, SearchDomain]) -> dict[str, Any]:
    """The Tune ``param_space``: ``algo_config.to_dict()`` with each search space put back."""
    out = algo_config.to_dict()
    for path, domain in space.items():
        location = config_dict_path(path)
        if len(location) > 1 and not isinstance(get_path(out, location[:-1]), dict):
            raise ValueError(f"config.{'.'.join(path)}: cannot sample inside {location[:-1]} of the config")
        out = with_value(out, location, domain.to_tune())
    return out


def sampled_values(trial_config: dict[str, Any], space: dict[Path, SearchDomain]) -> dict[Path, Any]:
    """What a trial drew for each search space, read back from its (to_dict) config."""
    return {path: get_path(trial_config, config_dict_path(path)) for path in space}


def count_grid_trials(space: dict[Path, SearchDomain], num_samples: int) -> int:
    """Trials Tune runs: every grid crossed, times ``num_samples``."""
    trials = num_samples
    for domain in space.values():
        if domain.is_grid:
            trials *= len(domain.values)
    return trials
