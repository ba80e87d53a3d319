"""tuned_examples that need StarCraft II, and the main job's twins.

(Every other tuned example passes `rllib train file --check`: test_cli_validation.py.)"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from rllib_grsn.experiment import ExperimentError, load_experiments

TUNED = sorted((Path(__file__).resolve().parent.parent / "tuned_examples").glob("*.yaml"))
# MMM2 exists only on StarCraft II; without SMAC the `auto` backend falls back to SMAX, which lacks it.
SC2_ONLY = {p for p in TUNED if "MMM2" in p.name}
HAVE_SMAC = importlib.util.find_spec("smac") is not None


@pytest.mark.skipif(HAVE_SMAC, reason="StarCraft II's SMAC is installed here")
@pytest.mark.parametrize("path", sorted(SC2_ONLY), ids=lambda p: p.name)
def test_sc2_only_map_without_starcraft_is_a_clear_error(path: Path) -> None:
    with pytest.raises(ExperimentError, match=r"MMM2.*needs backend sc2.*SMAX maps: 8m"):
        load_experiments(path)


def test_main_job_and_its_twins_exist() -> None:
    names = {p.stem for p in TUNED}
    assert {"smac_8m_grsn", "smac_8m_gru", "smac_8m_lif"} <= names
