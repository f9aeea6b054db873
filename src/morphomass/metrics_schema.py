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
    "Importance",
    "ImportanceModel",
    "MetricsFile",
    "Significance",
    "SignificanceName",
    "read_metrics",
    "write_metrics",
]

#: Keys of ``significance`` (SPEC E8).
SignificanceName = Literal["gi_morph_vs_gi_gbm", "g_morph_vs_reference_lg_z"]
#: Keys of ``per_class`` (SPEC E9, CNN1's classes).
ClassName = Literal["irregular", "edge_on", "disk", "elliptical"]
#: Models compared per class in ``per_class``.
PerClassModel = Literal["gi_gbm", "gi_morph"]
#: Keys of ``importance``.
ImportanceModel = Literal["g_morph", "ablation_no_cnn4"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ExperimentMetrics(_Strict):
    """One entry of ``experiments``: M1-M5 on the test split and the counts."""

    l1: float
    l2: float
    rmsle: float
    median_l1: float
    frac_within_015dex: float
    frac_over_015dex: float
    frac_under_015dex: float
    n_test: int
    n_features: int


class Significance(_Strict):
    """One E8 comparison: one-sided KS p-value, bootstrap [mean, std] of the mean L1~ per model, paired p."""

    ks_pvalue: float
    bootstrap_mean_l1: dict[str, Annotated[list[float], Field(min_length=2, max_length=2)]]  # [mean, std]
    paired_bootstrap_pvalue: Annotated[float, Field(gt=0, le=1)]


class Importance(_Strict):
    """One permutation importance (increase of the validation L1~ when the feature is shuffled)."""

    feature: str
    importance: float


class MetricsFile(_Strict):
    """``results/metrics.json`` (DESIGN §4): the whole file, extra keys forbidden.

    ``per_class`` maps a class to the mean test L1~ of ``gi_gbm`` and ``gi_morph`` (None for an empty class).
    """

    preset: Literal["paper", "quick", "tiny"]
    n: dict[Literal["train", "val", "test"], int]
    experiments: dict[str, ExperimentMetrics]
    significance: dict[SignificanceName, Significance]
    per_class: dict[ClassName, dict[PerClassModel, float | None]]
    importance: dict[ImportanceModel, list[Importance]]


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
