"""The schema of ``results/metrics.json`` (DESIGN §4) as pydantic v2 models, with its reader and writer.

This module is in the shared layer and imports no stage, so users' scripts, the CLI and other stages can read
the evaluate stage's results without importing :mod:`morphomass.evaluate`::

    from morphomass.metrics_schema import read_metrics

    metrics = read_metrics("work/results/metrics.json")
    metrics.experiments["g_morph"].l1

Every model forbids extra keys and is strict, so a file that drifts from the contract fails loudly. The writer
validates before it writes; the file is indented, key-sorted JSON.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from morphomass.errors import InputDataError
from morphomass.workdir import write_json_atomic

__all__ = [
    "ClassName",
    "ExperimentMetrics",
    "MetricIntervals",
    "MetricStandardErrors",
    "Importance",
    "ImportanceModel",
    "MetricsFile",
    "Significance",
    "SignificanceName",
    "CoverageAtLevel",
    "GroupCoverage",
    "UncertaintyMetrics",
    "read_metrics",
    "write_metrics",
]

#: Keys of ``significance``: the paper's two (SPEC E8), then the report's other findings (B2).
SignificanceName = Literal[
    "gi_morph_vs_gi_gbm",
    "g_morph_vs_reference_lg_z",
    "gi_gbm_vs_gi_powerlaw",
    "g_morph_vs_ablation_no_cnn",
    "g_classical_vs_reference_lg_z",
    "g_morph_classical_vs_g_morph",
    "gi_morph_classical_vs_gi_gbm",
]
#: Keys of ``per_class`` (SPEC E9, CNN1's classes).
ClassName = Literal["irregular", "edge_on", "disk", "elliptical"]
#: Models compared per class in ``per_class``.
PerClassModel = Literal["gi_gbm", "gi_morph"]
#: Keys of ``importance``.
ImportanceModel = Literal["g_morph", "ablation_no_cnn4"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


#: A 95 % interval ``[lo, hi]``.
Interval = Annotated[list[float], Field(min_length=2, max_length=2)]


class MetricStandardErrors(_Strict):
    """Bootstrap standard error of each metric (B2); None where too few resamples hold a usable galaxy."""

    l1: float | None
    l2: float | None
    rmsle: float | None
    median_l1: float | None
    frac_within_015dex: float | None
    frac_over_015dex: float | None
    frac_under_015dex: float | None


class MetricIntervals(_Strict):
    """Bootstrap 95 % percentile interval ``[lo, hi]`` of each metric (B2); None as in the standard errors."""

    l1: Interval | None
    l2: Interval | None
    rmsle: Interval | None
    median_l1: Interval | None
    frac_within_015dex: Interval | None
    frac_over_015dex: Interval | None
    frac_under_015dex: Interval | None


class ExperimentMetrics(_Strict):
    """One entry of ``experiments``: M1-M5 on the test split, the counts, M1-M5's bootstrap SE and interval.

    ``se`` and ``ci95`` come from resampling the test galaxies (the same resamples for every experiment).
    """

    l1: float
    l2: float
    rmsle: float
    median_l1: float
    frac_within_015dex: float
    frac_over_015dex: float
    frac_under_015dex: float
    n_test: int
    n_features: int
    se: MetricStandardErrors
    ci95: MetricIntervals


class Significance(_Strict):
    """One comparison: one-sided KS p, bootstrap [mean, std] of the mean L1~ per model, paired p, verdict.

    ``resolved`` is true when the one-sided paired bootstrap p-value is below 0.01 (the report's verdict
    "resolved"; otherwise "not resolved at this sample size").
    """

    ks_pvalue: float
    bootstrap_mean_l1: dict[str, Annotated[list[float], Field(min_length=2, max_length=2)]]  # [mean, std]
    paired_bootstrap_pvalue: Annotated[float, Field(gt=0, le=1)]
    resolved: bool


class Importance(_Strict):
    """One permutation importance (increase of the validation L1~ when the feature is shuffled)."""

    feature: str
    importance: float


class CoverageAtLevel(_Strict):
    """Empirical coverage of the prediction intervals at one nominal level, on the test split.

    ``ci95`` is the Clopper-Pearson interval of the coverage; ``se_combined`` the standard error expected of
    an exactly calibrated method (the test binomial and the calibration set's finite size, both); ``pvalue``
    the two-sided test of nominal coverage under that null; ``within_3se`` whether |coverage - level| <= 3
    ``se_combined``. Widths are in dex (hi - lo of log10 of the target); None where the intervals are
    unbounded (too few calibration galaxies for that level: the conformal quantile's rank exceeds their
    number).
    """

    level: Annotated[float, Field(gt=0, lt=1)]
    n: int
    n_covered: int
    coverage: float
    ci95: Interval
    se_combined: float
    pvalue: Annotated[float, Field(ge=0, le=1)]
    within_3se: bool
    mean_width_dex: float | None
    median_width_dex: float | None
    width_p16_dex: float | None
    width_p84_dex: float | None


class GroupCoverage(_Strict):
    """Coverage of one group of test galaxies (a class, a tercile) at one level, with its 95 % interval."""

    group: str
    level: Annotated[float, Field(gt=0, lt=1)]
    n: int
    n_covered: int
    coverage: float
    ci95: Interval
    median_width_dex: float | None


class UncertaintyMetrics(_Strict):
    """The prediction intervals of one model on the test split (issue "calibrated uncertainty").

    ``per_class_joint_pvalue`` maps each nominal level (as text, e.g. "0.68") to one test that every E9
    class with at least ``min_class_test`` test galaxies has nominal coverage (Bonferroni); ``reliability``
    is the empirical coverage at every calibrated level (``group`` "all").
    """

    method: str
    n_calibration: int
    folds: int
    overall: list[CoverageAtLevel]
    per_class: list[GroupCoverage]
    per_class_joint_pvalue: dict[str, Annotated[float, Field(ge=0, le=1)]]
    min_class_test: int
    per_z_tercile: list[GroupCoverage]
    per_target_tercile: list[GroupCoverage]
    reliability: list[GroupCoverage]


class TargetInfo(_Strict):
    """What the evaluated models predict (DESIGN §4 ``target``; :class:`morphomass.targets.Target`)."""

    name: str = Field(description="catalog.target: ml_g, logmstar, logsfr or a GSWLC-2 column")
    error: str = Field(description="where its error comes from (ml_err for ml_g, else the GSWLC-2 column)")
    kind: Literal["ratio", "difference"] = Field(description="ratio: dex metrics on log10(pred/true)")
    unit: str
    prediction: str = Field(description="stem of predict's columns (<prediction>_pred, ...)")
    description: str


class MetricsFile(_Strict):
    """``results/metrics.json`` (DESIGN §4): the whole file, extra keys forbidden.

    ``target`` says what the models predict (the fields of :class:`morphomass.targets.Target`); for a
    target already in dex (``kind = "difference"``) the dex metrics (``rmsle``, ``frac_*_015dex``) are
    computed on ``pred - true`` instead of ``log10(pred / true)``, and L1~ uses the target's error in dex.

    ``per_class`` maps a class to the mean test L1~ of ``gi_gbm`` and ``gi_morph`` (None for an empty class).
    ``uncertainty`` maps each model with calibrated prediction intervals to their coverage (empty when
    train-gbm calibrated none).
    """

    preset: Literal["paper", "quick", "tiny"]
    target: TargetInfo
    n: dict[Literal["train", "val", "test"], int]
    experiments: dict[str, ExperimentMetrics]
    significance: dict[SignificanceName, Significance]
    per_class: dict[ClassName, dict[PerClassModel, float | None]]
    importance: dict[ImportanceModel, list[Importance]]
    uncertainty: dict[str, UncertaintyMetrics]


def write_metrics(path: str | Path, metrics: MetricsFile) -> None:
    """Validate ``metrics`` and write it to ``path`` atomically (indented, key-sorted JSON).

    Raises
    ------
    pydantic.ValidationError
        If the model was built or changed without validation and no longer follows the schema.
    """
    data = metrics.model_dump(mode="json")
    MetricsFile.model_validate(data)
    write_json_atomic(path, data)


def read_metrics(path: str | Path) -> MetricsFile:
    """Read and validate a ``results/metrics.json``.

    Raises
    ------
    InputDataError
        If the file cannot be read or does not follow the schema (the message names the file and the fields).
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        msg = f"cannot read {path}: {err}"
        raise InputDataError(msg) from err
    try:
        return MetricsFile.model_validate_json(text)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        msg = f"{path} does not follow the metrics.json schema (DESIGN §4): {problems}"
        raise InputDataError(msg) from err
