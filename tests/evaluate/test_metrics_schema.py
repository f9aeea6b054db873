"""The metrics.json schema (morphomass.metrics_schema): round trip, strictness, the reader's errors."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from morphomass.errors import InputDataError
from morphomass.metrics_schema import ExperimentMetrics, MetricsFile, read_metrics, write_metrics

_EXPERIMENT = {
    "l1": 2.5,
    "l2": 4.0,
    "rmsle": 0.2,
    "median_l1": 1.5,
    "frac_within_015dex": 0.5,
    "frac_over_015dex": 0.3,
    "frac_under_015dex": 0.2,
    "n_test": 10,
    "n_features": 3,
    "se": {
        "l1": 0.2,
        "l2": 0.3,
        "rmsle": 0.01,
        "median_l1": 0.25,
        "frac_within_015dex": 0.05,
        "frac_over_015dex": 0.04,
        "frac_under_015dex": None,
    },
    "ci95": {
        "l1": [2.1, 2.9],
        "l2": [3.4, 4.6],
        "rmsle": [0.18, 0.22],
        "median_l1": [1.0, 2.0],
        "frac_within_015dex": [0.4, 0.6],
        "frac_over_015dex": [0.22, 0.38],
        "frac_under_015dex": None,
    },
}
_FILE = {
    "preset": "tiny",
    "target": {
        "name": "ml_g",
        "error": "ml_err",
        "kind": "ratio",
        "unit": "M_sun/L_sun",
        "prediction": "ml",
        "description": "M/L",
    },
    "n": {"train": 80, "val": 10, "test": 10},
    "experiments": {"g_morph": _EXPERIMENT, "gi_gbm": _EXPERIMENT},
    "significance": {
        "gi_morph_vs_gi_gbm": {
            "ks_pvalue": 0.03,
            "bootstrap_mean_l1": {"gi_morph": [1.1, 0.1], "gi_gbm": [1.3, 0.1]},
            "paired_bootstrap_pvalue": 0.01,
            "resolved": False,
        }
    },
    "per_class": {"disk": {"gi_gbm": 1.2, "gi_morph": None}, "elliptical": {}},
    "importance": {"g_morph": [{"feature": "lum_sum", "importance": 0.4}]},
    "uncertainty": {
        "g_morph": {
            "method": "normalised cross-conformal",
            "n_calibration": 80,
            "folds": 5,
            "overall": [
                {
                    "level": 0.68,
                    "n": 10,
                    "n_covered": 7,
                    "coverage": 0.7,
                    "ci95": [0.35, 0.93],
                    "se_combined": 0.16,
                    "pvalue": 0.9,
                    "within_3se": True,
                    "mean_width_dex": 0.3,
                    "median_width_dex": 0.28,
                    "width_p16_dex": 0.2,
                    "width_p84_dex": 0.4,
                }
            ],
            "per_class": [
                {
                    "group": "disk",
                    "level": 0.68,
                    "n": 4,
                    "n_covered": 3,
                    "coverage": 0.75,
                    "ci95": [0.19, 0.99],
                    "median_width_dex": 0.3,
                }
            ],
            "per_class_joint_pvalue": {},
            "min_class_test": 50,
            "per_z_tercile": [],
            "per_target_tercile": [],
            "reliability": [],
        }
    },
}


def test_write_then_read_gives_the_same_file(tmp_path) -> None:
    metrics = MetricsFile.model_validate(_FILE)
    path = tmp_path / "metrics.json"
    write_metrics(path, metrics)
    assert json.loads(path.read_text()) == _FILE
    assert path.read_text() == json.dumps(_FILE, indent=2, sort_keys=True) + "\n"  # the stage's formatting
    assert read_metrics(path) == metrics
    assert read_metrics(path).experiments["g_morph"].l1 == 2.5


def test_the_schema_is_strict() -> None:
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        MetricsFile.model_validate({**_FILE, "unknown": 1})
    with pytest.raises(ValidationError, match="significance"):
        MetricsFile.model_validate({**_FILE, "significance": {"g_morph_vs_constant": {}}})
    with pytest.raises(ValidationError, match="n_test"):
        ExperimentMetrics.model_validate({**_EXPERIMENT, "n_test": "10"})


@pytest.mark.parametrize("missing", ["se", "ci95"])
def test_every_experiment_needs_its_intervals(missing: str) -> None:
    """B2: a metrics.json without the bootstrap SE or 95 % interval of an experiment is rejected."""
    incomplete = {k: v for k, v in _EXPERIMENT.items() if k != missing}
    with pytest.raises(ValidationError, match=rf"experiments\.g_morph\.{missing}\s+Field required"):
        MetricsFile.model_validate({**_FILE, "experiments": {"g_morph": incomplete}})
    partial = {**_EXPERIMENT, missing: {k: v for k, v in _EXPERIMENT[missing].items() if k != "rmsle"}}
    with pytest.raises(ValidationError, match=rf"{missing}\.rmsle\s+Field required"):
        ExperimentMetrics.model_validate(partial)
    with pytest.raises(ValidationError, match="ci95.l1"):
        ExperimentMetrics.model_validate({**_EXPERIMENT, "ci95": {**_EXPERIMENT["ci95"], "l1": [2.1]}})


def test_every_comparison_needs_its_paired_test_and_verdict() -> None:
    sig = _FILE["significance"]["gi_morph_vs_gi_gbm"]
    for missing in ("paired_bootstrap_pvalue", "resolved"):
        bad = {"gi_morph_vs_gi_gbm": {k: v for k, v in sig.items() if k != missing}}
        with pytest.raises(ValidationError, match=rf"{missing}\s+Field required"):
            MetricsFile.model_validate({**_FILE, "significance": bad})


def test_write_validates(tmp_path) -> None:
    bad = MetricsFile.model_validate(_FILE).model_copy(update={"preset": "huge"})  # bypasses validation
    with pytest.raises(ValidationError, match="preset"):
        write_metrics(tmp_path / "metrics.json", bad)
    assert not (tmp_path / "metrics.json").exists()


def test_read_names_the_file_and_the_problem(tmp_path) -> None:
    path = tmp_path / "metrics.json"
    with pytest.raises(InputDataError, match="cannot read .*metrics.json"):
        read_metrics(path)
    path.write_text(json.dumps({**_FILE, "n": {"train": 1.5}}))
    with pytest.raises(
        InputDataError, match=r"does not follow the metrics.json schema .*: n\.train: Input should"
    ):
        read_metrics(path)
