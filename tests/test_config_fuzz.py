"""Property-based fuzzing of `rllib train file PATH --check` with malformed tuned_examples files.

Starting from valid experiments (tuned_examples/cartpole_p_grsn.yaml (PPO), pendulum_p_grsn_td3.yaml
(TD3), cartpole_p_grsn_sac.yaml (RecurrentSAC) and smac_8m_grsn.yaml (QMIX)), Hypothesis generates
files that are malformed by construction: wrong types, unknown keys, missing/unknown run, env and core,
negative or zero sizes, NaN/inf floats and broken lr schedules, malformed search spaces and stop
criteria, broken YAML text. Every one must fail fast, before Ray starts, with exit code 2 and an
``rllib: error:`` message that names the offending key path (``not valid YAML`` for a syntax error),
never a Python traceback. Cases whose validity cannot be known in advance (random text mutations that
still parse) only have to be accepted (exit 0) or rejected cleanly (exit 2), and are not counted.

``test_zz_enough_malformed_configs`` runs last and checks that at least 200 malformed files were tried;
``pytest -s`` prints the count per category.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import io
import math
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rllib_grsn.algorithms.registry import ALGORITHM_NAMES
from rllib_grsn.checks.envs import env_known as _env_known
from rllib_grsn.cli import main
from rllib_grsn.envs.smax import SMAX_MAPS
from rllib_grsn.neurons import CORE_NAMES

REPO = Path(__file__).resolve().parents[1]
NAN, INF = float("nan"), float("inf")
FUZZ = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)

# Malformed files tried per category (checked by test_zz_enough_malformed_configs).
TRIED: collections.Counter[str] = collections.Counter()
MIN_MALFORMED = 200


def _base(file: str) -> tuple[str, dict[str, Any]]:
    ((name, spec),) = yaml.safe_load((REPO / "tuned_examples" / file).read_text()).items()
    return name, spec


BASES = {
    "PPO": _base("cartpole_p_grsn.yaml"),
    "TD3": _base("pendulum_p_grsn_td3.yaml"),
    "RecurrentSAC": _base("cartpole_p_grsn_sac.yaml"),
}
QMIX_BASE = _base("smac_8m_grsn.yaml")

# Config keys of each base by what they must be: ints > 0, ints >= 0, finite floats >= 0.
POSITIVE_INTS = {
    "PPO": ["train_batch_size", "minibatch_size", "num_epochs"],
    "TD3": ["train_batch_size_per_learner", "evaluation_duration", "policy_delay"],
    "RecurrentSAC": ["train_batch_size_per_learner", "evaluation_duration"],
}
NONNEG_INTS = {
    "PPO": ["num_env_runners", "seed"],
    "TD3": ["num_env_runners", "min_sample_timesteps_per_iteration", "num_random_steps", "seed"],
    "RecurrentSAC": ["num_env_runners", "min_sample_timesteps_per_iteration", "seed"],
}
NONNEG_FLOATS = {
    "PPO": ["lr", "gamma", "vf_loss_coeff"],
    "TD3": ["actor_lr", "critic_lr", "tau", "gamma", "target_noise", "exploration_noise"],
    "RecurrentSAC": ["actor_lr", "critic_lr", "alpha_lr", "tau", "target_entropy_scale"],
}
LR_KEYS = {
    "PPO": ["lr"],
    "TD3": ["actor_lr", "critic_lr"],
    "RecurrentSAC": ["actor_lr", "critic_lr", "alpha_lr"],
}
MODEL_POSITIVE_INTS = ["hidden", "obs_embed", "max_seq_len"]
MODEL_FLOATS = ["decay", "threshold", "alpha"]


@pytest.fixture(scope="module", autouse=True)
def no_ray() -> Iterator[None]:
    """Starting Ray from these tests is a failure: every file must be rejected (or checked) before."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("ray.init was called: the input passed validation")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ray, "init", refuse)
        yield
    assert not ray.is_initialized()


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="fuzz") as path:
        yield Path(path)


def check(text: str, workdir: Path) -> tuple[int, str]:
    """`rllib train file PATH --check` in-process: exit code and stderr; any exception fails the test."""
    path = workdir / "exp.yaml"
    path.write_text(text)
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            rc = main(["train", "file", str(path), "--check"])
        except BaseException as exc:  # a crash is what this test looks for
            pytest.fail(f"crashed with {type(exc).__name__}: {exc}\n--- input ---\n{text}")
    assert not ray.is_initialized()
    return rc, err.getvalue()


def assert_rejected(category: str, text: str, key: str, workdir: Path) -> None:
    """The file fails with exit code 2, one `rllib: error:` naming ``key``, and no traceback."""
    rc, err = check(text, workdir)
    assert rc == 2, f"accepted though malformed ({category}, {key}):\n{text}"
    assert err.startswith("rllib: error: "), err
    assert "Traceback" not in err, err
    assert key in err, f"the error does not name {key!r}:\n{err}\n--- input ---\n{text}"
    TRIED[category] += 1


def dump(name: str, spec: Any) -> str:
    return yaml.safe_dump({name: spec}, sort_keys=False, allow_unicode=True)


# -- values that are wrong by construction ---------------------------------------------------------

TEXT = st.text(st.characters(min_codepoint=32, max_codepoint=0x17F), max_size=8)
SMALL_DICTS = st.dictionaries(st.sampled_from(["a", "b", "size"]), st.integers(), min_size=1, max_size=2)
NOT_NUMBERS = st.one_of(
    TEXT, st.booleans(), st.none(), SMALL_DICTS, st.lists(TEXT, min_size=1, max_size=3), st.just([])
)
# Anything but an integer (floats too: 24.0 is refused, not read as 24).
NOT_INTS = st.one_of(NOT_NUMBERS, st.floats(allow_nan=True, allow_infinity=True))
NOT_FINITE = st.sampled_from([NAN, INF, -INF])
NOT_FLOATS = st.one_of(NOT_NUMBERS, NOT_FINITE)
NEGATIVE_FLOATS = st.floats(max_value=-1e-12, allow_nan=False, allow_infinity=True)


@st.composite
def bad_schedules(draw: st.DrawFn, *, strictly_increasing: bool = False) -> list:
    """An lr (or alpha) schedule that RLlib would reject: a list, but not [[0, v0], [t1, v1], ...]
    with finite numbers, timesteps starting at 0 and increasing, values >= 0."""
    good = [[0, 0.001], [1000, 0.0005], [5000, 0.0001]]
    defect = draw(
        st.sampled_from(["short", "not_pairs", "strings", "start", "order", "negative", "nan", "flat"])
    )
    if defect == "short":
        return draw(st.sampled_from([[], [[0, 0.001]]]))
    if defect == "not_pairs":
        return [[0, 0.001, 1], [1000, 0.0001]]
    if defect == "strings":
        return [[0, draw(TEXT)], [1000, 0.0001]]
    if defect == "start":
        return [[draw(st.integers(1, 10**6)), 0.001], [2 * 10**6, 0.0001]]
    if defect == "order":
        step = draw(st.integers(1, 999))
        return [[0, 0.001], [1000, 0.0005], [1000 - step, 0.0001]]
    if defect == "negative":
        return [[0, 0.001], [1000, draw(NEGATIVE_FLOATS.filter(math.isfinite))]]
    if defect == "nan":
        return [[0, 0.001], [1000, draw(NOT_FINITE)]]
    if strictly_increasing:  # equal timesteps: RLlib's lr accepts them, alpha does not
        return [[0, 1.0], [1000, 2.0], [1000, 3.0]]
    return [good[0], draw(NOT_FINITE)]


@st.composite
def bad_search_spaces(draw: st.DrawFn, first_valid: Any) -> dict:
    """A Tune search space that is malformed, or whose later candidate is invalid."""
    finite = st.floats(-1e6, 1e6, allow_nan=False)
    kind = draw(st.sampled_from(["empty", "scalar", "range", "order", "log", "randint", "nested", "unknown"]))
    if kind == "empty":
        return {draw(st.sampled_from(["grid_search", "choice"])): []}
    if kind == "scalar":
        return {
            draw(st.sampled_from(["grid_search", "choice"])): draw(st.one_of(TEXT, st.integers(), st.none()))
        }
    if kind == "range":
        return {
            draw(st.sampled_from(["uniform", "loguniform", "randint"])): draw(
                st.lists(finite, max_size=4).filter(lambda v: len(v) != 2)
            )
        }
    if kind == "order":
        low = draw(finite)
        return {draw(st.sampled_from(["uniform", "loguniform"])): [low, low - draw(st.floats(0, 10))]}
    if kind == "log":
        return {"loguniform": [draw(st.floats(-10, 0)), 11.0]}
    if kind == "randint":
        return {"randint": [0.5, draw(st.floats(1.5, 10).filter(lambda v: not v.is_integer()))]}
    if kind == "nested":
        return {"grid_search": [first_valid, {"choice": [first_valid]}]}
    return {draw(st.from_regex(r"\A[a-z]{1,6}\Z")) + "_search": [first_valid]}


# -- malformed experiments ------------------------------------------------------------------------


@st.composite
def malformed(draw: st.DrawFn) -> tuple[str, str, str]:
    """(category, YAML text, key path the error must name), starting from a valid experiment."""
    run = draw(st.sampled_from(list(BASES)))
    name, base = BASES[run]
    spec = copy.deepcopy(base)
    config, model = spec["config"], spec["config"]["model_config"]
    category = draw(
        st.sampled_from(
            ["type", "model_type", "unknown_key", "run_env_core", "range", "float", "search", "stop_tune"]
        )
    )
    if category == "type":
        key = draw(
            st.sampled_from(POSITIVE_INTS[run] + NONNEG_INTS[run] + NONNEG_FLOATS[run] + ["env_config"])
        )
        if key == "env_config":
            config[key] = draw(st.one_of(TEXT, st.integers(), st.lists(st.integers(), max_size=2), st.none()))
        elif key in NONNEG_FLOATS[run]:
            config[key] = draw(NOT_FLOATS)
        else:  # seed may be null (RLlib's default); every other int may not
            config[key] = draw(NOT_INTS.filter(lambda v: v is not None or key != "seed"))
        where = f"{name}.config.{key}"
    elif category == "model_type":
        key = draw(
            st.sampled_from(
                [*MODEL_POSITIVE_INTS, *MODEL_FLOATS, "core", "head_hiddens", "prev_action_reward"]
            )
        )
        if key == "core":
            model[key] = draw(
                st.one_of(st.integers(), st.none(), st.lists(st.sampled_from(CORE_NAMES), min_size=1))
            )
        elif key == "head_hiddens":
            model[key] = draw(st.one_of(TEXT, st.none(), st.lists(st.one_of(TEXT, st.floats()), min_size=1)))
        elif key == "prev_action_reward":
            model[key] = draw(
                st.one_of(st.integers(2), TEXT.filter(lambda t: t not in ("true", "false")), st.none())
            )
        elif key == "alpha":  # a list is a schedule: malformed ones are fuzzed in "float"
            model[key] = draw(st.one_of(TEXT, st.booleans(), st.none(), SMALL_DICTS, NOT_FINITE))
        else:
            model[key] = draw(NOT_INTS if key in MODEL_POSITIVE_INTS else NOT_FLOATS)
        where = f"{name}.config.model_config.{key}"
    elif category == "unknown_key":
        level = draw(st.sampled_from(["experiment", "config", "model_config", "tune", "env_config"]))
        key = draw(st.one_of(st.from_regex(r"\Azz[a-z0-9_]{0,10}\Z"), st.integers(-5, 10**6)))
        target = {"experiment": spec, "config": config, "model_config": model}.get(level)
        if level == "tune":
            target = spec.setdefault("tune", {"num_samples": 1})
        elif level == "env_config":
            target = config.setdefault("env_config", {})
        target[key] = draw(st.one_of(st.integers(), TEXT))
        prefix = {"experiment": name, "config": f"{name}.config", "tune": f"{name}.tune"}.get(
            level, f"{name}.config.{level}"
        )
        where = prefix if level == "env_config" else f"{prefix}.{key}"
    elif category == "run_env_core":
        what = draw(st.sampled_from(["no_run", "no_env", "run", "env", "core"]))
        if what == "no_run":
            del spec["run"]
        elif what == "no_env":
            del spec["env"]
        elif what == "run":
            spec["run"] = draw(
                st.one_of(
                    TEXT.filter(lambda t: t not in ALGORITHM_NAMES),
                    st.integers(),
                    st.lists(st.sampled_from(ALGORITHM_NAMES), min_size=1),
                )
            )
        elif what == "env":
            spec["env"] = draw(
                st.one_of(TEXT.filter(lambda t: not _env_known(t)), st.integers(), st.just(["CartPole-P"]))
            )
        else:
            model["core"] = draw(TEXT.filter(lambda t: t not in CORE_NAMES))
        where = f"{name}.config.model_config.core" if what == "core" else f"{name}.{what.removeprefix('no_')}"
    elif category == "range":
        what = draw(
            st.sampled_from(
                [
                    "positive",
                    "nonneg",
                    "float",
                    "model_int",
                    "decay",
                    "threshold",
                    "alpha",
                    "heads",
                    "checkpoint_freq",
                ]
            )
        )
        if what == "positive":
            key = draw(st.sampled_from(POSITIVE_INTS[run]))
            config[key] = draw(st.integers(max_value=0))
        elif what == "nonneg":
            key = draw(st.sampled_from(NONNEG_INTS[run]))
            config[key] = draw(st.integers(max_value=-1))
        elif what == "float":
            key = draw(st.sampled_from(NONNEG_FLOATS[run]))
            config[key] = draw(NEGATIVE_FLOATS)
        elif what == "model_int":
            key = draw(st.sampled_from(MODEL_POSITIVE_INTS))
            model[key] = draw(st.integers(max_value=0))
        elif what == "decay":
            key, model["decay"] = (
                "decay",
                draw(
                    st.one_of(st.floats(max_value=0.0), st.floats(min_value=1.0)).filter(
                        lambda v: not math.isnan(v)
                    )
                ),
            )
        elif what in ("threshold", "alpha"):
            key, model[what] = what, draw(st.floats(max_value=0.0, allow_nan=False))
        elif what == "heads":
            key, model["head_hiddens"] = "head_hiddens", [8, draw(st.integers(max_value=0))]
        else:
            spec["checkpoint_freq"] = draw(
                st.one_of(st.integers(max_value=-1), NOT_INTS.filter(lambda v: v is not None))
            )
            key = None
        if what == "checkpoint_freq":
            where = f"{name}.checkpoint_freq"
        elif what in ("positive", "nonneg", "float"):
            where = f"{name}.config.{key}"
        else:
            where = f"{name}.config.model_config.{key}"
    elif category == "float":
        what = draw(st.sampled_from(["nan", "lr_schedule", "alpha_schedule"]))
        if what == "nan":
            key = draw(st.sampled_from(NONNEG_FLOATS[run]))
            config[key] = draw(NOT_FINITE)
            where = f"{name}.config.{key}"
        elif what == "lr_schedule":
            key = draw(st.sampled_from(LR_KEYS[run]))
            config[key] = draw(bad_schedules())
            where = f"{name}.config.{key}"
        else:
            model["alpha"] = draw(bad_schedules(strictly_increasing=True))
            where = f"{name}.config.model_config.alpha"
    elif category == "search":
        if draw(st.booleans()):
            key = draw(st.sampled_from(NONNEG_FLOATS[run]))
            first = config[key]
            bad_second = draw(st.sampled_from([NAN, -1.0, "fast"]))
            config[key] = draw(
                st.one_of(bad_search_spaces(first), st.just({"grid_search": [first, bad_second]}))
            )
            where = f"{name}.config.{key}"
        else:
            key = draw(st.sampled_from(["hidden", "decay", "threshold"]))
            first = model[key] if key in model else 1
            model[key] = draw(st.one_of(bad_search_spaces(first), st.just({"choice": [first, -1]})))
            where = f"{name}.config.model_config.{key}"
    else:  # stop_tune
        what = draw(st.sampled_from(["stop", "stop_value", "num_samples", "mode", "scheduler"]))
        if what == "stop":
            spec["stop"] = draw(st.one_of(TEXT, st.integers(), st.lists(st.integers(), min_size=1)))
            where = f"{name}.stop"
        elif what == "stop_value":
            key = draw(
                st.sampled_from(["training_iteration", "num_env_steps_sampled_lifetime", "timesteps_total"])
            )
            spec["stop"] = {key: draw(NOT_FLOATS)}
            where = f"{name}.stop.{key}"
        elif what == "num_samples":
            spec["tune"] = {"num_samples": draw(st.one_of(st.integers(max_value=0), NOT_INTS))}
            where = f"{name}.tune"
        elif what == "mode":
            spec["tune"] = {"mode": draw(TEXT.filter(lambda t: t not in ("max", "min")))}
            where = f"{name}.tune.mode"
        else:
            grace = draw(st.one_of(st.integers(max_value=0), TEXT))
            spec["tune"] = {"metric": "return", "scheduler": {"type": "asha", "grace_period": grace}}
            where = f"{name}.tune.scheduler.grace_period"
    return category, dump(name, spec), where


@settings(FUZZ, max_examples=320)
@given(case=malformed())
def test_malformed_experiments_fail_fast_naming_the_key(case: tuple[str, str, str], workdir: Path) -> None:
    """Wrong types, unknown keys, bad run/env/core, out-of-range sizes, NaN/inf floats, malformed lr
    schedules, search spaces, stop and tune settings: exit 2 with an error naming the key path."""
    category, text, where = case
    assert_rejected(category, text, where, workdir)


@st.composite
def malformed_qmix(draw: st.DrawFn) -> tuple[str, str, str]:
    """A malformed QMIX-on-SMAC experiment (few: validating `smac` builds a SMAX env)."""
    name, base = QMIX_BASE
    spec = copy.deepcopy(base)
    config, env_config = spec["config"], spec["config"]["env_config"]
    what = draw(st.sampled_from(["map", "mmm2", "backend", "env_config", "unknown", "int", "float", "run"]))
    where = f"{name}.config.env_config"
    if what == "map":
        env_config.update(
            backend="smax", map_name=draw(st.one_of(st.just("9z"), TEXT.filter(lambda t: t not in SMAX_MAPS)))
        )
    elif what == "mmm2":
        env_config.update(map_name="MMM2", backend="smax")
    elif what == "backend":
        env_config["backend"] = draw(
            st.one_of(TEXT.filter(lambda t: t not in ("auto", "sc2", "smax")), st.none(), st.integers())
        )
    elif what == "env_config":
        config["env_config"] = draw(st.one_of(TEXT, st.none(), st.lists(st.integers(), max_size=2)))
    elif what == "unknown":
        env_config[draw(st.from_regex(r"\Azz[a-z_]{0,8}\Z"))] = 1
    elif what == "int":
        key = draw(
            st.sampled_from(
                ["mixing_embed_dim", "hypernet_hidden", "target_update_interval", "replay_capacity"]
            )
        )
        config[key] = draw(st.one_of(st.integers(max_value=0), NOT_INTS))
        where = f"{name}.config.{key}"
    elif what == "float":
        key = draw(st.sampled_from(["lr", "td_lambda", "epsilon_start", "num_updates_per_episode"]))
        config[key] = draw(NOT_FLOATS)
        where = f"{name}.config.{key}"
    else:
        spec["run"] = draw(st.sampled_from(["PPO", "RecurrentSAC"]))
        where = f"{name}.run"
    return "qmix_smac", dump(name, spec), where


@settings(FUZZ, max_examples=30)
@given(case=malformed_qmix())
def test_malformed_qmix_smac_experiments_fail_fast(case: tuple[str, str, str], workdir: Path) -> None:
    """Unknown SMAC maps (9z), MMM2 on SMAX, unknown backends, bad env_config and QMIX settings, and
    single-agent algorithms on `smac`: exit 2 with an error naming the key path."""
    category, text, where = case
    assert_rejected(category, text, where, workdir)


# -- broken YAML text -----------------------------------------------------------------------------

BREAKERS = "[]{}:\"'\t&*!|>%@`#,-?\n "


@st.composite
def mutated_yaml(draw: st.DrawFn) -> str:
    """A valid file with 1 to 4 random characters inserted, replaced or deleted."""
    name, spec = BASES[draw(st.sampled_from(list(BASES)))]
    text = dump(name, spec)
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, len(text) - 1))
        op = draw(st.sampled_from(["insert", "replace", "delete"]))
        char = draw(st.sampled_from(BREAKERS))
        if op == "insert":
            text = text[:pos] + char + text[pos:]
        elif op == "replace":
            text = text[:pos] + char + text[pos + 1 :]
        else:
            text = text[:pos] + text[pos + 1 :]
    return text


@settings(FUZZ, max_examples=150)
@given(text=mutated_yaml())
def test_mutated_yaml_text_fails_cleanly(text: str, workdir: Path) -> None:
    """A file PyYAML cannot parse fails with exit 2 and `not valid YAML`; a mutation that still parses
    is either accepted unchanged or rejected with exit 2 and an `rllib: error:` line (never a crash)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        assert_rejected("yaml_syntax", text, "not valid YAML", workdir)
        return
    rc, err = check(text, workdir)
    assert rc in (0, 2), err
    assert "Traceback" not in err, err
    if rc == 2:
        assert err.startswith("rllib: error: "), err
    # Still parses: valid or not depends on what the mutation hit, so this case is not counted as
    # malformed; an unchanged file must of course pass.
    if any(data == {name: spec} for name, spec in BASES.values()):
        assert rc == 0, err
    TRIED["yaml_parsed_unclassified"] += 1


@settings(FUZZ, max_examples=30)
@given(
    text=st.one_of(
        st.sampled_from(["", "# only a comment\n", "null\n", "~\n", "[]\n", "{}\n"]),
        st.lists(st.integers(), min_size=1).map(yaml.safe_dump),
        st.one_of(st.integers(), TEXT.filter(lambda t: t.strip() and ":" not in t and "#" not in t)).map(
            lambda v: yaml.safe_dump(v)
        ),
    )
)
def test_top_level_that_is_not_a_mapping_fails(text: str, workdir: Path) -> None:
    """An empty file, a top-level list or scalar: exit 2 naming the expected top-level mapping."""
    if isinstance(yaml.safe_load(text), dict) and yaml.safe_load(text):
        pytest.fail(f"generator produced a mapping: {text!r}")
    assert_rejected("top_level", text, "expected a mapping {experiment_name:", workdir)


@settings(FUZZ, max_examples=20)
@given(value=st.one_of(st.integers(), TEXT, st.none(), st.lists(st.integers(), max_size=3)))
def test_experiment_that_is_not_a_mapping_fails(value: Any, workdir: Path) -> None:
    """``exp: <not a mapping>``: exit 2 naming the experiment and the keys it takes."""
    assert_rejected("experiment_not_mapping", dump("exp", value), "exp: expected a mapping", workdir)


def test_zz_enough_malformed_configs() -> None:
    """At least 200 malformed files were tried in this run, each rejected with a clear error."""
    if not TRIED:
        pytest.skip("run the whole file: the fuzz tests above fill the counter")
    malformed_total = sum(n for c, n in TRIED.items() if c != "yaml_parsed_unclassified")
    print(f"\nmalformed configs tried: {malformed_total} ({dict(sorted(TRIED.items()))})")
    assert malformed_total >= MIN_MALFORMED
