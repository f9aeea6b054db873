"""The calibration tool runs the catalogue stage on a mock and measures the catalogue-only baselines."""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

from morphomass.calibration import (
    BASELINE_TOLERANCE,
    PAPER,
    calibration_table,
    cv_splits,
    format_markdown,
    measure_scaling_a,
    off_by_more_than,
    structure_columns,
)


@pytest.fixture(scope="module")
def table() -> dict[str, Any]:
    return calibration_table(n_galaxies=600, seed=5, scaling_sample=0)


def test_cv_folds_are_disjoint_cover_the_sample_and_keep_validation_out_of_the_test_fold() -> None:
    n = 103
    splits = cv_splits(n, n_folds=5, seed=1)
    tests = [np.flatnonzero(split == "test") for split in splits]
    assert len(splits) == 5
    assert sorted(np.concatenate(tests).tolist()) == list(range(n))  # disjoint and covering
    assert sorted(len(t) for t in tests) == [20, 20, 21, 21, 21]
    for split in splits:
        assert set(np.unique(split)) == {"train", "val", "test"}
        assert (split == "val").sum() == math.ceil(0.1 * (split != "test").sum())
    again, other = cv_splits(n, n_folds=5, seed=1), cv_splits(n, n_folds=5, seed=2)
    assert all(np.array_equal(a, b) for a, b in zip(splits, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(splits, other, strict=True))


@pytest.mark.parametrize(
    ("ratio", "flagged"),
    [(1.0, False), (1.24, False), (0.76, False), (1.26, True), (0.74, True), (3.0, True), (math.nan, True)],
)
def test_a_baseline_more_than_25_percent_off_the_papers_is_flagged(ratio: float, flagged: bool) -> None:
    assert BASELINE_TOLERANCE == 0.25
    assert off_by_more_than(1.26 * ratio, 1.26) is flagged


def test_structure_columns_follow_the_fixed_order_and_pick_up_new_visible_properties() -> None:
    columns = [
        "z",
        "n_neighbours",
        "age",
        "sersic_n",
        "neighbour_r_mag",
        "class_code",
        "nucleus_flux_fraction",
    ]
    assert structure_columns(columns) == [
        "class_code",
        "sersic_n",
        "nucleus_flux_fraction",
        "n_neighbours",
        "neighbour_r_mag",
    ]
    assert structure_columns(["z", "age", "ml"]) == []


@pytest.mark.slow
def test_calibration_table_goes_through_the_catalogue_stage(table: dict[str, Any]) -> None:
    sample = table["sample"]
    assert 450 < sample["n_sample"] < 600  # the D25, chi2 and missing-value cuts remove some image galaxies
    assert sample["n_test"] == math.ceil(0.1 * sample["n_sample"])  # SPEC D9 split from the catalogue stage
    assert set(PAPER) <= set(sample) | set(table["baselines"])
    assert sample["ml_min"] < sample["ml_median"] < sample["ml_max"]
    assert 0.0 < sample["chi2_ge_5_fraction"] < 0.3
    assert 0.01 < sample["median_z"] < 0.3
    assert table["scaling_a"] is None  # --scaling-sample 0 skips the images


@pytest.mark.slow
def test_baselines_on_the_test_split_and_the_cross_validation(table: dict[str, Any]) -> None:
    baselines = table["baselines"]
    assert list(baselines) == ["constant", "reference_lg_z", "gi_powerlaw", "gi_gbm"]
    for key, row in baselines.items():
        assert row["paper"] == PAPER[key]
        assert all(math.isfinite(row[k]) and row[k] > 0 for k in ("test", "cv", "cv_fold_std"))
        assert row["cv_ratio"] == pytest.approx(row["cv"] / row["paper"])
        assert row["test_ratio"] == pytest.approx(row["test"] / row["paper"])
        assert row["cv_off_by_more_than_tolerance"] == (abs(row["cv_ratio"] - 1) > 0.25)
    # Colours carry most of the M/L information: the g-i power law beats the constant by far; the GBM, with
    # the paper's 150 galaxies per leaf and ~400 training galaxies here, has few leaves but still beats it.
    for score in ("test", "cv"):
        assert baselines["gi_powerlaw"][score] < 0.5 * baselines["constant"][score]
        assert baselines["gi_gbm"][score] < baselines["constant"][score]


@pytest.mark.slow
def test_morphology_ceilings_and_what_each_hidden_property_adds(table: dict[str, Any]) -> None:
    ceilings = table["ceilings"]
    # the true structure (class, bulge, ...) tells ellipticals from discs; (L_g, z) cannot
    for score in ("test", "cv", "val"):
        assert ceilings["lg_z"][f"{score}_true_structure"] < ceilings["lg_z"][f"{score}_catalogue_only"]
    for row in ceilings.values():
        keys = ("test_ks_p", "test_paired_bootstrap_p", "cv_paired_bootstrap_p", "val_paired_bootstrap_p")
        assert all(0.0 < row[k] <= 1.0 for k in keys)
        assert row["val_gain"] == pytest.approx(1 - row["val_true_structure"] / row["val_catalogue_only"])
        # the validation split is other galaxies than the test split: other numbers
        assert row["val_catalogue_only"] != pytest.approx(row["test_catalogue_only"], rel=1e-6)
    hidden = table["hidden_properties"]
    assert hidden["cv_reference"] == pytest.approx(ceilings["gi"]["cv_catalogue_only"])
    assert hidden["test_reference"] == pytest.approx(table["baselines"]["gi_gbm"]["test"])
    rows = hidden["structure"]
    assert sorted(row["column"] for row in rows) == sorted(table["structure_columns"])
    assert {"class_code", "bulge_fraction", "sersic_n", "cos_incl"} <= set(table["structure_columns"])
    gains = [row["cv_gain"] for row in rows]
    assert gains == sorted(gains, reverse=True)
    assert all(math.isfinite(row["test"]) and math.isfinite(row["cv"]) for row in rows)
    assert all(row["cv_gain"] == pytest.approx(1 - row["cv"] / hidden["cv_reference"]) for row in rows)
    population = {row["column"]: row for row in hidden["population"]}
    assert population["age"]["cv_gain"] > 0  # the scatter left at fixed colour is mostly age scatter


@pytest.mark.slow
def test_json_holds_every_number_and_markdown_shows_the_tables(table: dict[str, Any]) -> None:
    loaded = json.loads(json.dumps(table))
    assert loaded["baselines"]["gi_gbm"]["cv"] == table["baselines"]["gi_gbm"]["cv"]
    text = format_markdown(table)
    headings = ("Catalogue-only baselines", "The sample", "scaling value a", "at most", "hidden property")
    for heading in headings:
        assert heading in text
    assert "Skipped" in text
    flagged = copy.deepcopy(table)
    for row in flagged["baselines"].values():
        row["cv_off_by_more_than_tolerance"] = False
    assert "**no**" not in format_markdown(flagged)
    flagged["baselines"]["gi_gbm"]["cv_off_by_more_than_tolerance"] = True
    assert format_markdown(flagged).count("**no**") == 1


@pytest.mark.slow
def test_the_scaling_value_comes_from_the_preprocess_stage_on_a_small_mock_with_images() -> None:
    a = measure_scaling_a(30, seed=5)
    assert 0 < a["n_sample"] <= 30
    assert a["n_preprocessed"] + a["n_failed"] == a["n_sample"]
    assert a["n_preprocessed"] > 0.8 * a["n_sample"]
    assert all(math.isfinite(a[k]) for k in ("median", "p16", "p84"))
    assert 0 <= a["p16"] <= a["median"] <= a["p84"] < 1e4  # a = 0 is the linear limit of noisy images
    assert a["median"] > 0
    assert a["paper"] == 78
    markdown = format_markdown({"scaling_a": a} | _EMPTY_TABLE)
    assert f"{a['median']:.1f}" in markdown


#: The other sections of a table, empty, to format the scaling section alone.
_EMPTY_TABLE: dict[str, Any] = {
    "n_galaxies": 0,
    "seed": 0,
    "n_folds": 5,
    "sample": dict.fromkeys(("n_sample", "n_test", "median_z", "ml_min", "ml_median", "ml_max"), 1.0)
    | {"chi2_ge_5_fraction": 0.1},
    "baselines": {},
    "structure_columns": [],
    "ceilings": {},
    "hidden_properties": {"test_reference": 1.0, "cv_reference": 1.0, "structure": [], "population": []},
}


def test_the_old_command_still_runs_the_tool_and_the_shim_imports_nothing() -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "morphomass.mock.calibration", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "Calibrate the mock against the paper's catalogue-only baselines" in shown.stdout
    assert "--n-galaxies" in shown.stdout
    assert "--scaling-sample" in shown.stdout
    code = (
        "import sys, morphomass.mock.calibration; print(sorted(m for m in sys.modules if 'calibration' in m))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "['morphomass.mock.calibration']"
