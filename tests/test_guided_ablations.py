"""The report over the guided-training ablation sweep (benchmarks/guided_ablations.py): it reads the
folders Ray Tune writes for a sweep and must name each trial's variant, keep unfinished trials out of
the final returns, and find when a variant's curve reaches TD3's final return.

The folders come from a real Tune run of the sweep's grid (the guide settings of
tuned_examples/sweeps/pendulum_guide_ablations.yaml x two seeds), with a trainable that reports known
test returns in RLlib's result layout instead of training TD3 (hours per trial): the numbers the report
must give are then known exactly."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from benchmarks import guided_ablations
from rllib_grsn.algorithms.guide import ABLATION_NAMES

REPO = Path(__file__).resolve().parents[1]
NAME = "pendulum-p-grsn-guide-ablations"
ITERATIONS = 10  # 1000 env steps each: the stop is 10000
TD3, JSRL, JUMP_START, TD3BC = ABLATION_NAMES


def _variant_guides() -> list:
    """The four `guide:` grid values of the real sweep file."""
    data = yaml.safe_load((REPO / "tuned_examples" / "sweeps" / "pendulum_guide_ablations.yaml").read_text())
    return data[NAME]["config"]["guide"]["grid_search"]


def test_return(variant: str, seed: int, k: int) -> float:
    """The test return the trainable reports after iteration ``k`` (1-based)."""
    offset = 10.0 * seed
    if variant == JSRL:  # rises twice as fast as TD3, then flat
        return min(-1000.0 + 160.0 * k, -150.0) + offset
    if variant == JUMP_START:  # always 100 below TD3
        return -1100.0 + 80.0 * k + offset
    return -1000.0 + 80.0 * k + offset  # TD3 and TD3+BC


test_return.__test__ = False  # a helper, not a test


def _trainable(config: dict) -> None:
    from ray import tune

    from rllib_grsn.algorithms.guide import guide_settings

    settings = guide_settings(config["guide"])
    variant = TD3 if settings is None else settings.ablation
    seed = config["seed"]
    # TD3+BC seed 1 was interrupted after 6 iterations.
    last = 6 if (variant == TD3BC and seed == 1) else ITERATIONS
    for k in range(1, last + 1):
        guide_steps = 100 * min(k, 4) if variant in (JSRL, JUMP_START) else 0
        tune.report(
            {
                "num_env_steps_sampled_lifetime": 1000 * k,
                "env_runners": {"num_env_steps_guide_lifetime": guide_steps, "episode_return_mean": -1.0},
                "evaluation": {"env_runners": {"episode_return_mean": test_return(variant, seed, k)}},
            }
        )


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, ray_session):
    """The sweep's Tune folders (one of its two experiments never ran) and its sweep file."""
    from ray import cloudpickle, tune

    root = tmp_path_factory.mktemp("ablations")
    storage = root / "results"
    # The trainable runs in Ray workers, which cannot import this test module: send it by value.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        tune.Tuner(
            _trainable,
            param_space={
                "env": "Pendulum-P",
                "seed": tune.grid_search([0, 1]),
                "_model_config": {"core": "grsn", "hidden": 128},
                "guide": tune.grid_search(_variant_guides()),
            },
            run_config=tune.RunConfig(name=NAME, storage_path=str(storage), verbose=0),
        ).fit()
    finally:  # later tests pickle this module by reference again, even when the run fails
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    # The interrupted trial's last line was cut by the kill.
    for params in storage.glob(f"{NAME}/*/params.json"):
        config = json.loads(params.read_text())
        if guided_ablations.variant_name(config["guide"]) == TD3BC and config["seed"] == 1:
            with open(params.parent / "result.json", "a") as f:
                f.write('{"num_env_steps_sampled_lifetime": 70')
    stop = {"num_env_steps_sampled_lifetime": 1000 * ITERATIONS}
    sweep_file = root / "sweep.yaml"
    sweep_file.write_text(
        yaml.safe_dump(
            {NAME: {"env": "Pendulum-P", "stop": stop}, "pendulum-v-lif-guide-ablations": {"stop": stop}}
        )
    )
    return storage, sweep_file, root / "report" / "pendulum.json"


@pytest.fixture(scope="module")
def report(sweep):
    storage, sweep_file, out = sweep
    code = guided_ablations.main(
        ["--storage-path", str(storage), "--sweep", str(sweep_file), "--out", str(out)]
    )
    assert code == 0
    return json.loads(out.read_text())


def test_every_trial_is_read_with_its_variant_seed_and_cell(report):
    trials = report["trials"]
    assert len(trials) == 8
    assert sorted((t["variant"], t["seed"]) for t in trials) == sorted(
        (v, s) for v in ABLATION_NAMES for s in (0, 1)
    )
    assert {(t["env"], t["core"]) for t in trials} == {("Pendulum-P", "grsn")}
    td3bc_1 = next(t for t in trials if t["variant"] == TD3BC and t["seed"] == 1)
    assert not td3bc_1["complete"] and td3bc_1["last_env_steps"] == 6000  # the cut line skipped
    assert sum(t["complete"] for t in trials) == 7


def test_final_returns_count_finished_seeds_only(report):
    variants = report["cells"]["Pendulum-P GRSN"]["variants"]
    assert list(variants) == list(ABLATION_NAMES)
    td3 = variants[TD3]
    # Last test: -200 + 10 * seed; the last 5000 env steps (k = 6..10): -360 + 10 * seed.
    assert td3["final_last_test"] == {"mean": -195.0, "std": 5.0, "n": 2}
    assert td3["final_window"] == {"mean": -355.0, "std": 5.0, "n": 2}
    assert variants[TD3BC]["complete_seeds"] == [0]
    assert variants[TD3BC]["final_last_test"] == {"mean": -200.0, "std": 0.0, "n": 1}
    assert variants[JSRL]["guide_env_steps"]["mean"] == 400
    assert variants[TD3]["guide_env_steps"]["mean"] == 0
    assert report["cells"]["Pendulum-P GRSN"]["td3_final"] == -355.0


def test_env_steps_to_td3_final_return_use_the_same_window_as_the_target(report):
    variants = report["cells"]["Pendulum-P GRSN"]["variants"]
    # JSRL's seed-mean curve, averaged over the last 5 marks, first reaches -355 at mark 7000
    # ((-515 - 355 - 195 - 145 - 145) / 5 = -271; at 6000 it is -377).
    assert variants[JSRL]["env_steps_to_td3_final"] == 7000
    assert variants[TD3]["env_steps_to_td3_final"] == 10000
    assert variants[JUMP_START]["env_steps_to_td3_final"] is None
    # The curve of an unfinished seed stops at its last iteration.
    assert variants[TD3BC]["mean"][6] == test_return(TD3BC, 0, 7)


def test_table_figure_and_notes(sweep, report, capsys):
    storage, sweep_file, out = sweep
    assert out.with_suffix(".png").stat().st_size > 10_000
    code = guided_ablations.main(
        ["--storage-path", str(storage), "--sweep", str(sweep_file), "--out", str(out)]
    )
    text = capsys.readouterr().out
    assert code == 0
    assert "pendulum-v-lif-guide-ablations: no trials in" in text
    assert "result.json: line 7 is not a JSON object (cut by an interrupt?); skipped" in text
    rows = {
        line.split("|")[2].strip(): line for line in text.splitlines() if line.startswith("| Pendulum-P GRSN")
    }
    assert set(rows) == set(ABLATION_NAMES)
    assert "| 2/2 | -195.0 ± 5.0 | -355.0 ± 5.0 | 10,000 | 0 |" in rows[TD3]
    assert "| 7,000 | 400 |" in rows[JSRL]
    assert "not reached" in rows[JUMP_START]
    assert "| 1/2 | -200.0 ± 0.0 (1 seeds) |" in rows[TD3BC]
    # The same table again from the JSON alone.
    guided_ablations.main(["--report-only", "--out", str(out)])
    again = capsys.readouterr().out
    assert [line for line in again.splitlines() if line.startswith("|")] == [
        line for line in text.splitlines() if line.startswith("|")
    ]


def test_no_results_or_a_bad_sweep_file_end_in_one_line_and_exit_2(tmp_path, sweep, capsys):
    _, sweep_file, _ = sweep
    code = guided_ablations.main(
        ["--storage-path", str(tmp_path), "--sweep", str(sweep_file), "--out", str(tmp_path / "r.json")]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert f"no trials of {NAME}, pendulum-v-lif-guide-ablations under {tmp_path}; run the sweep first" in err
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: {stop: {training_iteration: 3}}\n")
    assert guided_ablations.main(["--sweep", str(bad), "--storage-path", str(tmp_path)]) == 2
    assert "a.stop must give num_env_steps_sampled_lifetime" in capsys.readouterr().err
    (tmp_path / "r.json").write_text("{not json")
    assert guided_ablations.main(["--report-only", "--out", str(tmp_path / "r.json")]) == 2
    assert "not a report of this module" in capsys.readouterr().err


def test_a_damaged_trial_folder_is_named_and_skipped(tmp_path, sweep, capsys):
    import shutil

    storage, sweep_file, _ = sweep
    copy = tmp_path / "results"
    shutil.copytree(storage, copy)
    broken = copy / NAME / "TD3_Pendulum-P_broken"
    broken.mkdir()
    (broken / "params.json").write_text('{"env": "Pendulum-P", "seed": 2, "guide": {"horizon": 5}}')
    out = tmp_path / "r.json"
    assert (
        guided_ablations.main(["--storage-path", str(copy), "--sweep", str(sweep_file), "--out", str(out)])
        == 0
    )
    text = capsys.readouterr().out
    assert f"{broken}: unreadable (ValidationError: " in text and "trial skipped" in text
    assert len(json.loads(out.read_text())["trials"]) == 8


def test_a_resumed_trial_counts_the_iterations_it_ran_again_once(tmp_path, sweep, capsys):
    """``--resume`` restarts a trial from its last checkpoint and Tune appends the iterations after it
    again; the report keeps the later ones."""
    import shutil

    storage, sweep_file, _ = sweep
    copy = tmp_path / "results"
    shutil.copytree(storage, copy)
    for params in copy.glob(f"{NAME}/*/params.json"):
        config = json.loads(params.read_text())
        if config["guide"] is None and config["seed"] == 0:
            with open(params.parent / "result.json", "a") as f:
                for k in range(6, ITERATIONS + 1):  # resumed from the checkpoint at 5000 env steps
                    result = {"num_env_steps_sampled_lifetime": 1000 * k}
                    result["evaluation"] = {"env_runners": {"episode_return_mean": -100.0}}
                    f.write(json.dumps(result) + "\n")
    out = tmp_path / "r.json"
    assert (
        guided_ablations.main(["--storage-path", str(copy), "--sweep", str(sweep_file), "--out", str(out)])
        == 0
    )
    capsys.readouterr()
    report = json.loads(out.read_text())
    (td3_0,) = [t for t in report["trials"] if t["variant"] == TD3 and t["seed"] == 0]
    assert td3_0["env_steps"] == [1000 * k for k in range(1, ITERATIONS + 1)]
    assert td3_0["test_return"] == [test_return(TD3, 0, k) for k in range(1, 6)] + [-100.0] * 5
