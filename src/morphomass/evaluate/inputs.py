"""What the evaluate stage reads from the work directory, loaded once and aligned on the evaluated galaxies.

:func:`load_inputs` is the only function of the stage that reads files; the files are listed in
the evaluate stage's declared inputs (``morphomass.pipeline.STAGES['evaluate']``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from numpy.typing import NDArray

from morphomass.errors import InputDataError
from morphomass.intervals import IntervalCalibration
from morphomass.targets import ML_G, Target, read_target
from morphomass.workdir import WorkDir, load_manifest

__all__ = ["CNN1_PROBS", "EvaluateInputs", "load_inputs"]

logger = logging.getLogger(__name__)

#: CNN1 outputs that define the E9 classes (unconditional GZ2 probabilities).
CNN1_PROBS = {"irregular": "cnn1_p_t08_a22", "edge_on": "cnn1_p_t02_a04", "feature": "cnn1_p_t01_a02"}


@dataclass(frozen=True)
class EvaluateInputs:
    """The evaluate stage's inputs.

    Attributes
    ----------
    sample : DataFrame
        ``sample.parquet``, every selected galaxy.
    meta : DataFrame
        The sample's rows of the galaxies with GBM predictions, in the order of ``gbm_predictions``.
    gbm_predictions : DataFrame
        ``models/gbm/predictions.parquet``: objid, split and one ``pred_<experiment>`` column per experiment.
    gbm_info : dict of str to dict
        ``models/gbm/<experiment>.json`` per experiment (``n_features``, ``cpu_seconds``, ...).
    importance : dict of str to list of dict
        The ``importance`` mapping of ``models/gbm/importance.json`` ({} when the file is absent).
    cnn : DataFrame
        objid, the :data:`CNN1_PROBS` columns (dead outputs read as 0) and the ``cnn4_*`` features, aligned
        with ``meta``.
    lum_total : (N,) ndarray of float64
        Total luminosity per galaxy of ``meta`` for Fig. 6: ``lum_sum`` of the photometric features, or
        ``lum_g`` of the sample when that column is absent.
    chi2_rejected_target : (M,) ndarray or None
        The target of the galaxies the catalogue stage rejected for chi2_r >= 5 (None when the table is
        absent).
    sample_summary : DataFrame or None
        ``results/tables/sample_summary.csv`` when present.
    stage_seconds : dict of str to float
        Seconds per stage recorded in the manifest.
    cv_search : dict or None
        ``models/gbm/cv_search.json`` when asked for and present.
    interval_calibrations : dict of str to IntervalCalibration
        Model -> its prediction-interval calibration (``models/gbm/intervals_<model>.json``, listed in
        ``models/gbm/intervals.json``); empty when train-gbm calibrated none.
    notes : list of str
        Notes for the report about missing or degraded inputs.
    target : Target
        What the models predict (recorded in ``sample.parquet``; :mod:`morphomass.targets`).
    """

    sample: pd.DataFrame
    meta: pd.DataFrame
    gbm_predictions: pd.DataFrame
    gbm_info: dict[str, dict[str, Any]]
    importance: dict[str, list[dict[str, Any]]]
    cnn: pd.DataFrame
    lum_total: NDArray[np.float64]
    chi2_rejected_target: NDArray[np.float64] | None
    sample_summary: pd.DataFrame | None
    stage_seconds: dict[str, Any]
    cv_search: dict[str, Any] | None
    interval_calibrations: dict[str, IntervalCalibration]
    notes: list[str]
    target: Target = ML_G


def _read_parquet(path: Path, columns: list[str] | None = None) -> pd.DataFrame:
    if not path.exists():
        msg = f"{path} does not exist; run the stage that writes it first"
        raise InputDataError(msg)
    try:
        return pd.read_parquet(path, columns=columns)
    except (OSError, ValueError) as err:
        msg = f"cannot read {path} as Parquet: {err}"
        raise InputDataError(msg) from err


def _parquet_columns(path: Path) -> list[str]:
    try:
        return list(pq.read_schema(path).names)
    except (OSError, ValueError) as err:
        msg = f"cannot read the schema of {path}: {err}"
        raise InputDataError(msg) from err


def _load_gbm(workdir: WorkDir) -> tuple[pd.DataFrame, dict[str, dict[str, Any]], dict[str, Any]]:
    """Read predictions.parquet, the per-experiment info and the importances written by train-gbm."""
    path = workdir.gbm_predictions
    preds = _read_parquet(path)
    for col in ("objid", "split"):
        if col not in preds.columns:
            msg = f"{path} has no {col!r} column; rerun 'morphomass train-gbm'"
            raise InputDataError(msg)
    infos = {}
    for col in preds.columns:
        if col.startswith("pred_"):
            name = col[len("pred_") :]
            info_path = workdir.gbm_models / f"{name}.json"
            if not info_path.exists():
                msg = f"{info_path} is missing (predictions.parquet has {col}); rerun 'morphomass train-gbm'"
                raise InputDataError(msg)
            infos[name] = json.loads(info_path.read_text(encoding="utf-8"))
    imp_path = workdir.gbm_importance
    importance = json.loads(imp_path.read_text(encoding="utf-8"))["importance"] if imp_path.exists() else {}
    return preds, infos, importance


def _load_interval_calibrations(workdir: WorkDir) -> dict[str, IntervalCalibration]:
    """Read the interval calibrations train-gbm listed in ``models/gbm/intervals.json`` (none if absent)."""
    index_path = workdir.gbm_intervals
    if not index_path.exists():
        return {}
    try:
        names = json.loads(index_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        msg = f"{index_path} is not valid JSON ({err}); rerun 'morphomass train-gbm'"
        raise InputDataError(msg) from err
    if not isinstance(names, dict):
        msg = f"{index_path}: expected a JSON object of model -> fingerprint; rerun 'morphomass train-gbm'"
        raise InputDataError(msg)
    calibrations = {}
    for name in names:
        path = workdir.gbm_interval_calibration(str(name))
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as err:
            msg = f"cannot read {path} ({err}); rerun 'morphomass train-gbm'"
            raise InputDataError(msg) from err
        calibrations[str(name)] = IntervalCalibration.from_json(text, source=str(path))
    return calibrations


def _align(preds: pd.DataFrame, sample: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Return the sample rows of the predicted galaxies, in the predictions' order."""
    merged = preds[["objid", "split"]].merge(
        sample, on="objid", how="left", suffixes=("", "_sample"), validate="one_to_one", indicator=True
    )
    missing = merged["_merge"] != "both"
    if missing.any():
        msg = (
            f"{int(missing.sum())} galaxies of models/gbm/predictions.parquet (e.g. objid "
            f"{int(merged['objid'][missing].iloc[0])}) are not in {path}; rerun 'morphomass train-gbm'"
        )
        raise InputDataError(msg)
    changed = merged["split"] != merged["split_sample"]
    if changed.any():
        msg = (
            f"the split of {int(changed.sum())} galaxies differs between {path} and the GBM predictions; "
            "rerun 'morphomass train-gbm'"
        )
        raise InputDataError(msg)
    return merged.drop(columns=["_merge", "split_sample"])


def _load_cnn(workdir: WorkDir, meta: pd.DataFrame, notes: list[str]) -> pd.DataFrame:
    """Read the CNN1 class probabilities and the CNN4 features, aligned with ``meta``."""
    path = workdir.cnn_features
    wanted = [c for c in _parquet_columns(path) if c in CNN1_PROBS.values() or c.startswith("cnn4_")]
    cnn = meta[["objid"]].merge(_read_parquet(path, ["objid", *wanted]), on="objid", how="left")
    dead = [c for c in CNN1_PROBS.values() if c not in cnn.columns]
    if dead:
        # the extract stage drops columns that are zero for every training galaxy (dead outputs)
        notes.append(
            f"CNN1 outputs {dead} are not in features/cnn.parquet (dropped upstream as zero for every "
            "training galaxy); the E9 classes read them as 0."
        )
        logger.warning(notes[-1])
        cnn = cnn.assign(**{c: 0.0 for c in dead})
    return cnn


def _load_lum_total(workdir: WorkDir, meta: pd.DataFrame) -> NDArray[np.float64]:
    """Read the total luminosity ``lum_sum`` of the evaluated galaxies (the sample's ``lum_g`` if absent)."""
    path = workdir.photometric_features
    if "lum_sum" in _parquet_columns(path):
        lum = meta[["objid"]].merge(_read_parquet(path, ["objid", "lum_sum"]), on="objid", how="left")[
            "lum_sum"
        ]
    else:
        lum = meta["lum_g"]
    return lum.to_numpy(np.float64)


def load_inputs(workdir: WorkDir, *, cv_search: bool = False) -> EvaluateInputs:
    """Read every input of the evaluate stage and align it on the predicted galaxies.

    Parameters
    ----------
    workdir : WorkDir
    cv_search : bool
        Also read ``models/gbm/cv_search.json`` (when ``gbm.cv_search`` chose the GBM parameters).

    Returns
    -------
    EvaluateInputs

    Raises
    ------
    InputDataError
        A required file is missing or unreadable, the predictions and the sample disagree, or no predicted
        galaxy is in the test split.
    """
    sample = _read_parquet(workdir.sample)
    gbm_predictions, gbm_info, importance = _load_gbm(workdir)
    meta = _align(gbm_predictions, sample, workdir.sample)
    if not (meta["split"] == "test").any():
        msg = f"no test galaxies among the {len(meta)} with GBM predictions"
        raise InputDataError(msg)
    notes: list[str] = []
    cnn = _load_cnn(workdir, meta, notes)
    rejected_path = workdir.chi2_rejected
    chi2_rejected_target = None
    if rejected_path.exists():
        chi2_rejected_target = _read_parquet(rejected_path, ["target"])["target"].to_numpy()
    else:
        notes.append(
            f"Fig. 2 has no chi2_r >= 5 histogram: {rejected_path} (written by the catalogue "
            "stage) is missing."
        )
    summary_path = workdir.sample_summary
    cv_path = workdir.gbm_cv_search
    return EvaluateInputs(
        sample=sample,
        meta=meta,
        gbm_predictions=gbm_predictions,
        gbm_info=gbm_info,
        importance=importance,
        cnn=cnn,
        lum_total=_load_lum_total(workdir, meta),
        chi2_rejected_target=chi2_rejected_target,
        sample_summary=pd.read_csv(summary_path) if summary_path.exists() else None,
        stage_seconds={
            name: rec["seconds"] for name, rec in load_manifest(workdir)["stages"].items() if "seconds" in rec
        },
        cv_search=json.loads(cv_path.read_text(encoding="utf-8")) if cv_search and cv_path.exists() else None,
        interval_calibrations=_load_interval_calibrations(workdir),
        notes=notes,
        target=read_target(workdir.sample),
    )
