"""Coverage of the calibrated prediction intervals on the test split (pure, no I/O).

train-gbm calibrates, for the models a prediction bundle carries, a normalised cross-conformal interval on the
training split (:mod:`morphomass.intervals`) and writes every galaxy's spread ``sigma_dex_<model>``; the
interval at level p is ``log10(prediction) -/+ q_p sigma``. Here the test galaxies, which took no part in
the calibration, audit it: empirical coverage at each nominal level overall, per E9 class, per redshift
tercile and per target tercile, each with its Clopper-Pearson interval; the test of nominal coverage that
accounts for both the test binomial and the calibration set's finite size; the widths (dex) and their
spread; and the reliability curve over every calibrated level.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from morphomass.intervals import (
    IntervalCalibration,
    coverage_pvalue,
    coverage_standard_error,
    coverage_table,
    intervals_from_sigma,
    joint_coverage_pvalue,
    quantile_groups,
)

__all__ = [
    "MIN_CLASS_TEST",
    "TestIntervals",
    "compute_uncertainty",
    "interval_width_errors",
    "test_intervals",
]

#: Classes with fewer test galaxies are left out of the joint per-class test (too few to test coverage).
MIN_CLASS_TEST = 50


@dataclass(frozen=True)
class TestIntervals:
    """One model's intervals on the test galaxies: target, centre and bounds (dex) per calibrated level."""

    __test__ = False  # not a pytest class

    y_dex: NDArray[np.float64]
    yhat_dex: NDArray[np.float64]
    bounds: dict[float, tuple[NDArray[np.float64], NDArray[np.float64]]]


def test_intervals(
    name: str, meta: pd.DataFrame, gbm_predictions: pd.DataFrame, calibration: IntervalCalibration
) -> TestIntervals:
    """Return model ``name``'s intervals on the test split (rows of ``meta`` with split "test").

    Parameters
    ----------
    name : str
        The experiment (``pred_<name>`` and ``sigma_dex_<name>`` columns of ``gbm_predictions``).
    meta : DataFrame
        ``split`` and ``target`` (M/L in solar units, or a target in dex), aligned with ``gbm_predictions``.
    gbm_predictions : DataFrame
    calibration : IntervalCalibration

    Returns
    -------
    TestIntervals
    """
    test = meta["split"].to_numpy() == "test"
    target = meta["target"].to_numpy(np.float64)[test]
    y = target if calibration.label_scale == "dex" else np.log10(target)  # the target's dex scale
    yhat = calibration.to_dex(gbm_predictions[f"pred_{name}"].to_numpy(np.float64)[test])
    sigma = gbm_predictions[f"sigma_dex_{name}"].to_numpy(np.float64)[test]
    return TestIntervals(y, yhat, intervals_from_sigma(calibration, yhat, sigma))


def _group_rows(table: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {
            "group": str(row.group),
            "level": float(row.level),
            "n": int(row.n),
            "n_covered": int(row.n_covered),
            "coverage": float(row.coverage),
            "ci95": [float(row.coverage_lo), float(row.coverage_hi)],
            "median_width_dex": float(row.median_width_dex),
        }
        for row in table.itertuples()
    ]


def _overall(data: TestIntervals, levels: Sequence[float], n_calibration: int) -> list[dict[str, Any]]:
    rows = []
    for level in levels:
        lo, hi = data.bounds[level]
        covered = (lo <= data.y_dex) & (data.y_dex <= hi)
        k, n = int(covered.sum()), int(covered.size)
        table = coverage_table(data.y_dex, {level: (lo, hi)})
        se = coverage_standard_error(level, n, n_calibration)
        width = hi - lo
        rows.append(
            {
                "level": level,
                "n": n,
                "n_covered": k,
                "coverage": k / n,
                "ci95": [float(table["coverage_lo"].iloc[0]), float(table["coverage_hi"].iloc[0])],
                "se_combined": se,
                "pvalue": coverage_pvalue(k, n, level, n_calibration=n_calibration),
                "within_3se": bool(abs(k / n - level) <= 3 * se),
                "mean_width_dex": float(np.mean(width)),
                "median_width_dex": float(np.median(width)),
                "width_p16_dex": float(np.percentile(width, 16)),
                "width_p84_dex": float(np.percentile(width, 84)),
            }
        )
    return rows


def compute_uncertainty(
    meta: pd.DataFrame,
    gbm_predictions: pd.DataFrame,
    calibrations: Mapping[str, IntervalCalibration],
    classes: NDArray[np.str_],
    *,
    levels: Sequence[float],
) -> dict[str, dict[str, Any]]:
    """Compute the ``uncertainty`` section of metrics.json for every calibrated model.

    Parameters
    ----------
    meta : DataFrame
        ``split``, ``ml`` and ``z`` of the evaluated galaxies, aligned with ``gbm_predictions``.
    gbm_predictions : DataFrame
        ``pred_<model>`` and ``sigma_dex_<model>`` columns.
    calibrations : mapping of str to IntervalCalibration
        Model -> its calibration (train-gbm's ``intervals_<model>.json``).
    classes : (N,) ndarray of str
        E9 class of each galaxy.
    levels : sequence of float
        Nominal levels reported (each must be calibrated).

    Returns
    -------
    dict of str to dict
        Model -> the fields of :class:`~morphomass.metrics_schema.UncertaintyMetrics`.
    """
    test = meta["split"].to_numpy() == "test"
    out = {}
    for name, calibration in calibrations.items():
        if f"sigma_dex_{name}" not in gbm_predictions or f"pred_{name}" not in gbm_predictions:
            continue
        data = test_intervals(name, meta, gbm_predictions, calibration)
        wanted = {level: data.bounds[level] for level in levels}
        test_classes = np.asarray(classes)[test]
        per_class = coverage_table(data.y_dex, wanted, test_classes)
        joint = {}
        for level in levels:
            rows = per_class[(per_class["level"] == level) & (per_class["n"] >= MIN_CLASS_TEST)]
            if len(rows):
                joint[f"{level:g}"] = joint_coverage_pvalue(
                    rows["n_covered"].to_numpy(),
                    rows["n"].to_numpy(),
                    level,
                    n_calibration=[calibration.calibration_size(str(g)) for g in rows["group"]],
                )
        z = meta["z"].to_numpy(np.float64)[test]
        out[name] = {
            "method": calibration.method,
            "n_calibration": calibration.n_calibration,
            "folds": calibration.folds,
            "overall": _overall(data, levels, calibration.n_calibration),
            "per_class": _group_rows(per_class),
            "per_class_joint_pvalue": joint,
            "min_class_test": MIN_CLASS_TEST,
            "per_z_tercile": _group_rows(coverage_table(data.y_dex, wanted, quantile_groups(z))),
            "per_target_tercile": _group_rows(
                coverage_table(data.y_dex, wanted, quantile_groups(data.y_dex))
            ),
            "reliability": _group_rows(coverage_table(data.y_dex, data.bounds)),
        }
    return out


def interval_width_errors(
    data: TestIntervals, level: float
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Return the half-width of each test galaxy's interval at ``level`` and its absolute error (dex)."""
    lo, hi = data.bounds[level]
    return (hi - lo) / 2, np.abs(data.y_dex - data.yhat_dex)
