"""The ``train-gbm`` stage: every GBM experiment, its predictions and permutation importances.

Reads ``sample.parquet``, ``features/photometric.parquet`` and ``features/cnn.parquet``; writes into
``models/gbm/``:

* ``<experiment>.txt``: the LightGBM text model (up to its best iteration), one per experiment of
  :func:`~morphomass.gbm.experiments.make_experiments`;
* ``<experiment>.json``: its feature names, objective, rounds, CPU/wall time, training size and a
  fingerprint of everything it depends on (a rerun reloads an unchanged experiment instead of retraining it);
* ``predictions.parquet``: ``objid``, ``split`` and ``pred_<experiment>`` (the target: M/L in solar units by
  default) for every galaxy;
* ``importance.json``: permutation importances on the validation split (``g_morph``, ``ablation_no_cnn4``);
* ``intervals_<experiment>.json``: the prediction-interval calibration of each model a bundle carries
  (:func:`has_intervals`: g_morph, gi_morph and their encoder variants; normalised cross-conformal on the
  training split,
  :mod:`morphomass.intervals`),
  with ``intervals.json`` recording its fingerprint; ``predictions.parquet`` then also holds each galaxy's
  spread ``sigma_dex_<experiment>`` (dex), from which the interval at any calibrated level follows;
* ``cv_search.json``: the cross-validated grid (when ``gbm.cv_search``).

The prediction bundle of the main models (``models/bundle.json``) is the next stage's work.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from morphomass.config import GbmConfig, PipelineConfig
from morphomass.gbm.experiments import CV_GROUPS, Experiment, build_features, cv_group, make_experiments
from morphomass.gbm.importance import permutation_importance
from morphomass.gbm.table import FeatureTable, load_feature_table
from morphomass.gbm.train import (
    Objective,
    auto_threads,
    cv_search,
    fit_booster,
    lgb_params,
    predict_ml,
    prefilter_features,
    rank_by_split_count,
    training_target,
)
from morphomass.progress import progress_bar
from morphomass.workdir import (
    StageResult,
    WorkDir,
    atomic_path,
    file_sha256,
    write_json_atomic,
    write_text_atomic,
)

__all__ = [
    "IMPORTANCE_EXPERIMENTS",
    "INTERVAL_ENCODER_PREFIXES",
    "INTERVAL_EXPERIMENTS",
    "MAIN_EXPERIMENT",
    "fold_feature_selector",
    "has_intervals",
    "run_train_gbm",
    "target_labels",
]

logger = logging.getLogger(__name__)

MAIN_EXPERIMENT = "g_morph"
#: Models whose permutation importances are computed (Fig. 5).
IMPORTANCE_EXPERIMENTS: tuple[str, ...] = ("g_morph", "ablation_no_cnn4")
#: Models whose prediction intervals are calibrated (those a prediction bundle carries).
INTERVAL_EXPERIMENTS: tuple[str, ...] = ("g_morph", "gi_morph")
#: ... and, for each encoder source, the two that add it (the bundle's ``g_<name>`` and ``gi_<name>``).
INTERVAL_ENCODER_PREFIXES: tuple[str, ...] = ("g_morph_enc_", "gi_morph_enc_")


def has_intervals(experiment: str) -> bool:
    """Return whether train-gbm calibrates the prediction intervals of an experiment (the bundle's models)."""
    return experiment in INTERVAL_EXPERIMENTS or experiment.startswith(INTERVAL_ENCODER_PREFIXES)


#: GbmConfig fields that do not change a single model (the CV choice enters through the parameters it picks).
_NOT_MODEL_FIELDS: tuple[str, ...] = (
    "permutation_repeats",
    "band_sequence",
    "cv_search",
    "cv_grid",
    "cv_folds",
    "interval_levels",
    "interval_folds",
)


def _fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _drop_constant(frame: pd.DataFrame, train: np.ndarray) -> list[str]:
    """Columns that vary over the training rows (constant or all-NaN ones cannot be split on)."""
    values = frame.to_numpy(dtype=np.float32)[train]
    missing = np.isnan(values)
    keep = np.where(missing, np.inf, values).min(axis=0) < np.where(missing, -np.inf, values).max(axis=0)
    return [c for c, k in zip(frame.columns, keep, strict=True) if k]


def _remove_stale(out_dir: Path, names: set[str], keep: set[str]) -> None:
    """Delete the models of experiments this configuration does not have (e.g. a band set left out).

    ``keep`` names the other files of ``out_dir`` (``importance.json``, ``cv_search.json``).
    """
    for path in sorted([*out_dir.glob("*.txt"), *out_dir.glob("*.json")]):
        if path.stem not in names and path.name not in keep:
            logger.info("train-gbm: removing %s (not an experiment of this configuration)", path.name)
            path.unlink()


def target_labels(table: FeatureTable, objective: Objective) -> tuple[np.ndarray, np.ndarray | None]:
    """Return the label and weight of every galaxy of ``table`` for an objective (:func:`training_target`)."""
    meta = table.meta
    return training_target(meta["target"].to_numpy(), meta["target_err"].to_numpy(), objective=objective)


def _train_subset(table: FeatureTable, fraction: float, seed: int) -> np.ndarray:
    """Row indices of the training split, or a seeded random subset of them."""
    rows = np.flatnonzero(table.split_mask("train"))
    if fraction >= 1.0:
        return rows
    rng = np.random.default_rng([seed, 2])
    n = max(1, int(round(fraction * rows.size)))
    return np.sort(rng.choice(rows, size=n, replace=False))


class _Trainer:
    """Trains (or reloads) the experiments of one stage run and predicts every galaxy with each.

    Feature frames are kept only for the experiments named in ``keep`` (those whose features later experiments
    reuse, and those whose permutation importance is computed), so memory stays at a few frames.
    """

    def __init__(
        self,
        table: FeatureTable,
        config: GbmConfig,
        out_dir: Path,
        inputs_hash: str,
        cv_params: dict[str, dict[str, Any]],
        keep: set[str],
    ) -> None:
        self.table = table
        self.config = config
        self.out_dir = out_dir
        self.inputs_hash = inputs_hash
        self.cv_params = cv_params
        self.keep = keep
        self.val = np.flatnonzero(table.split_mask("val"))
        # a ratio target (M/L) stays at least the smallest training value; a difference target is not floored
        train_target = table.meta["target"].to_numpy()[table.split_mask("train")]
        self.floor = -math.inf if table.target.in_dex else float(train_target.min())
        self.boosters: dict[str, Any] = {}
        self.info: dict[str, dict[str, Any]] = {}
        self.frames: dict[str, pd.DataFrame] = {}
        self.predictions: dict[str, np.ndarray] = {}

    def _params(
        self, n_rows: int, n_features: int, objective: Objective, chosen: dict[str, Any]
    ) -> dict[str, Any]:
        threads = auto_threads(n_rows, n_features, configured=self.config.num_threads)
        return lgb_params(self.config, objective=objective, **{"num_threads": threads, **chosen})

    def _fit(
        self,
        x: np.ndarray,
        columns: list[str],
        train_rows: np.ndarray,
        objective: Objective,
        chosen: dict[str, Any],
    ) -> Any:
        label, weight = target_labels(self.table, objective)
        return fit_booster(
            x[train_rows],
            label[train_rows],
            None if weight is None else weight[train_rows],
            x[self.val],
            label[self.val],
            None if weight is None else weight[self.val],
            params=self._params(train_rows.size, len(columns), objective, chosen),
            feature_names=columns,
            max_rounds=self.config.max_rounds,
            early_stopping_rounds=self.config.early_stopping_rounds,
            min_improvement=self.config.early_stopping_min_improvement,
        )

    def run(self, exp: Experiment) -> None:
        """Train ``exp`` (or reload it when its fingerprint matches the saved one); predict every galaxy."""
        import lightgbm as lgb

        if exp.features_from is not None:
            frame = self.frames[exp.features_from]
            start_columns = list(self.info[exp.features_from]["features"])
        else:
            frame = build_features(self.table, exp)
            start_columns = list(frame.columns)
        train_rows = _train_subset(self.table, exp.train_fraction, self.config.seed)
        chosen = self.cv_params.get(cv_group(exp), {})
        unused = set(_NOT_MODEL_FIELDS) | (set() if exp.top_k else {"top_k"})
        fingerprint = _fingerprint(
            self.config.model_dump(mode="json", exclude=unused),
            asdict(exp),
            self.inputs_hash,
            chosen,
            self.info[exp.features_from]["fingerprint"] if exp.features_from else None,
        )
        model_path, info_path = self.out_dir / f"{exp.name}.txt", self.out_dir / f"{exp.name}.json"
        saved = json.loads(info_path.read_text(encoding="utf-8")) if info_path.exists() else {}
        if model_path.exists() and saved.get("fingerprint") == fingerprint:
            logger.info("%s: unchanged, reloading %s", exp.name, model_path.name)
            self.boosters[exp.name] = lgb.Booster(model_file=str(model_path))
            self.info[exp.name] = saved
        else:
            self._train(exp, frame, start_columns, train_rows, chosen, fingerprint, model_path, info_path)
        if exp.name in self.keep:
            self.frames[exp.name] = frame
        columns = self.info[exp.name]["features"]
        self.predictions[exp.name] = predict_ml(
            self.boosters[exp.name],
            frame[columns].to_numpy(dtype=np.float32),
            objective=exp.objective,
            floor=self.floor,
        )

    def _train(
        self,
        exp: Experiment,
        frame: pd.DataFrame,
        start_columns: list[str],
        train_rows: np.ndarray,
        chosen: dict[str, Any],
        fingerprint: str,
        model_path: Path,
        info_path: Path,
    ) -> None:
        import lightgbm as lgb

        cpu0, wall0 = time.process_time(), time.perf_counter()
        if exp.features_from is None:  # the same selection the interval calibration repeats in each fold
            label, weight = target_labels(self.table, exp.objective)
            select = fold_feature_selector(
                frame, label, weight, train_rows, self.val, exp=exp, config=self.config, chosen=chosen
            )
            columns = [str(frame.columns[i]) for i in select(np.arange(train_rows.size))]
        elif exp.top_k:
            ranked = rank_by_split_count(self.boosters[exp.features_from])
            columns = [name for name, _ in ranked][: self.config.top_k]
        else:
            columns = _drop_constant(frame[start_columns], train_rows)
        logger.info("%s: %d of %d candidate features selected", exp.name, len(columns), len(start_columns))
        x = frame[columns].to_numpy(dtype=np.float32)
        fit = self._fit(x, columns, train_rows, exp.objective, chosen)
        text = fit.booster.model_to_string(num_iteration=fit.best_iteration)
        write_text_atomic(model_path, text)
        info = {
            "experiment": exp.name,
            "recipe": asdict(exp),
            "objective": exp.objective,
            "features": columns,
            "n_features": len(columns),
            "n_candidate_features": len(start_columns),
            "n_train": int(train_rows.size),
            "n_val": int(self.val.size),
            "best_iteration": fit.best_iteration,
            "rounds": fit.rounds,
            "val_loss": fit.best_score,
            "cpu_seconds": round(time.process_time() - cpu0, 3),
            "wall_seconds": round(time.perf_counter() - wall0, 3),
            "cpu_seconds_final_fit": round(fit.cpu_seconds, 3),
            "prediction_floor": self.floor if math.isfinite(self.floor) else None,
            "cv_params": chosen,
            "fingerprint": fingerprint,
        }
        write_json_atomic(info_path, info)
        # the model as written (up to its best iteration): a resumed run predicts with exactly these trees
        self.boosters[exp.name] = lgb.Booster(model_str=text)
        self.info[exp.name] = info
        logger.info(
            "%s: %d features, %d rounds (best %d), %.1f CPU-s",
            exp.name,
            len(columns),
            fit.rounds,
            fit.best_iteration,
            info["cpu_seconds"],
        )


def _importances(
    trainer: _Trainer, names: tuple[str, ...], *, repeats: int, seed: int, path: Path, progress: bool
) -> dict[str, list[dict[str, float]]]:
    fingerprint = _fingerprint(
        [trainer.info[n]["fingerprint"] for n in names if n in trainer.info], repeats, seed
    )
    if path.exists():
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved.get("fingerprint") == fingerprint:
            return saved["importance"]
    meta = trainer.table.meta
    val = trainer.val
    out = {}
    for k, name in enumerate(n for n in names if n in trainer.info):
        info = trainer.info[name]
        booster = trainer.boosters[name]
        x = trainer.frames[name][info["features"]].to_numpy(dtype=np.float32)[val]
        used = {feat for feat, _ in rank_by_split_count(booster)}
        columns = [i for i, feat in enumerate(info["features"]) if feat in used]
        mean, std = permutation_importance(
            x,
            meta["target"].to_numpy()[val],
            meta["target_err"].to_numpy()[val],
            lambda a, b=booster, o=info["objective"]: predict_ml(b, a, objective=o, floor=trainer.floor),
            columns=columns,
            repeats=repeats,
            rng=np.random.default_rng([seed, 3, k]),
            progress=progress,
        )
        rows = [
            {"feature": info["features"][i], "importance": float(mean[i]), "std": float(std[i])}
            for i in columns
        ]
        out[name] = sorted(rows, key=lambda r: (-r["importance"], r["feature"]))
    write_json_atomic(path, {"fingerprint": fingerprint, "repeats": repeats, "importance": out})
    return out


def fold_feature_selector(
    frame: pd.DataFrame,
    label: np.ndarray,
    weight: np.ndarray | None,
    train_rows: np.ndarray,
    val_rows: np.ndarray,
    *,
    exp: Experiment,
    config: GbmConfig,
    chosen: dict[str, Any],
    final_features: list[str] | None = None,
) -> Callable[[np.ndarray], np.ndarray]:
    """Make the point model's feature selection of ``exp`` a function of its training rows (cross-fitting).

    Repeats what training did on all of ``train_rows`` (``_Trainer._train``) on a subset of them: drop the
    columns constant over the rows; when more than ``config.prefilter_features`` remain, keep those of the
    screening model (:func:`~morphomass.gbm.train.prefilter_features`, same seed); for a ``top_k``
    experiment, fit a model with early stopping on ``val_rows`` and keep the ``config.top_k`` features it
    splits on most. Parameters are the point model's, cross-validated ones (``chosen``) included.

    Parameters
    ----------
    frame : pandas.DataFrame
        Every candidate feature of ``exp`` (:func:`~morphomass.gbm.experiments.build_features`), one row per
        galaxy of the feature table.
    label, weight : (N_table,) arrays
        The point model's training label and weights (weight None for unweighted objectives).
    train_rows, val_rows : (N,), (V,) int arrays
        Table rows of the experiment's training subset and of the validation split.
    exp : Experiment
        Its ``features_from`` must be None (a selection borrowed from another model is not repeated here).
    config : GbmConfig
    chosen : dict
        The cross-validated parameters of the experiment's group.
    final_features : list of str or None
        The point model's features: each selection logs how many of its features are among them.

    Returns
    -------
    callable
        ``select(positions) -> column indices``: positions among ``train_rows`` of the rows to select on
        ((M,) int), returning sorted-by-rank (M,) int64 indices into ``frame``'s columns; the
        ``select_features`` of :func:`morphomass.intervals.fit_cross_conformal` (``candidate_x`` being
        ``frame``'s values at ``train_rows``).

    Raises
    ------
    ConfigError
        ``exp`` takes its features from another experiment.
    """
    from morphomass.errors import ConfigError

    if exp.features_from is not None:
        msg = (
            f"{exp.name}: per-fold feature selection is not implemented for an experiment whose features "
            f"come from {exp.features_from!r}"
        )
        raise ConfigError(msg)
    matrix = frame.to_numpy(dtype=np.float32)
    index = {name: i for i, name in enumerate(frame.columns)}
    rows_of = np.asarray(train_rows, dtype=np.int64)
    val = np.asarray(val_rows, dtype=np.int64)

    def params(n_rows: int, n_features: int) -> dict[str, Any]:
        threads = auto_threads(n_rows, n_features, configured=config.num_threads)
        return lgb_params(config, objective=exp.objective, **{"num_threads": threads, **chosen})

    def select(positions: np.ndarray) -> np.ndarray:
        rows = rows_of[np.asarray(positions, dtype=np.int64)]
        columns = np.array([index[name] for name in _drop_constant(frame, rows)], dtype=np.int64)
        prefilter = config.prefilter_features
        if prefilter is not None and columns.size > prefilter:
            keep = prefilter_features(
                matrix[rows][:, columns],
                label[rows],
                None if weight is None else weight[rows],
                params=params(rows.size, columns.size),
                n_keep=int(prefilter),
                rng=np.random.default_rng([config.seed, 4]),
            )
            columns = columns[keep]
        if exp.top_k:
            names = [str(frame.columns[c]) for c in columns]
            fit = fit_booster(
                matrix[rows][:, columns],
                label[rows],
                None if weight is None else weight[rows],
                matrix[val][:, columns],
                label[val],
                None if weight is None else weight[val],
                params=params(rows.size, columns.size),
                feature_names=names,
                max_rounds=config.max_rounds,
                early_stopping_rounds=config.early_stopping_rounds,
                min_improvement=config.early_stopping_min_improvement,
            )
            ranked = [index[name] for name, _ in rank_by_split_count(fit.booster)][: config.top_k]
            columns = np.array(ranked, dtype=np.int64)
        if final_features is not None:
            shared = len({str(frame.columns[c]) for c in columns} & set(final_features))
            logger.info(
                "%s: a fold model selects %d features on %d galaxies, %d of them the point model's",
                exp.name,
                columns.size,
                rows.size,
                shared,
            )
        return columns

    return select


def _calibrate_intervals(
    trainer: _Trainer, experiments: list[Experiment], workdir: WorkDir
) -> dict[str, np.ndarray]:
    """Calibrate the intervals of the bundle's models (:func:`has_intervals`; reused when unchanged).

    Each calibration is a normalised cross-conformal fit on the experiment's training rows, with the point
    model's parameters and best number of rounds (:func:`morphomass.intervals.fit_cross_conformal`); each
    fold model selects its features on its own training folds as the point model did on all of them
    (:func:`fold_feature_selector`), so no held-out galaxy helped choose the features that predict it. The
    spread model uses the point model's final features.

    Returns
    -------
    dict of str to (N,) ndarray
        Experiment -> the spread (dex) of every galaxy of the feature table.
    """
    from morphomass.intervals import (
        FOLD_SELECTION_METHOD,
        IntervalCalibration,
        calibration_levels,
        fit_cross_conformal,
        predict_sigma,
    )

    gcfg, table = trainer.config, trainer.table
    index_path = workdir.gbm_intervals
    saved = json.loads(index_path.read_text(encoding="utf-8")) if index_path.exists() else {}
    fingerprints: dict[str, str] = {}
    spreads: dict[str, np.ndarray] = {}
    for exp in experiments:
        if not has_intervals(exp.name) or exp.name not in trainer.info:
            continue
        info = trainer.info[exp.name]
        path = workdir.gbm_interval_calibration(exp.name)
        fingerprint = _fingerprint(
            info["fingerprint"], gcfg.interval_folds, gcfg.interval_levels, gcfg.seed, FOLD_SELECTION_METHOD
        )
        frame = trainer.frames[exp.name][info["features"]]
        if path.exists() and saved.get(exp.name) == fingerprint:
            logger.info("%s: interval calibration unchanged, reloading %s", exp.name, path.name)
            calibration = IntervalCalibration.from_json(path.read_text(encoding="utf-8"), source=str(path))
        else:
            cpu0 = time.process_time()
            train_rows = _train_subset(table, exp.train_fraction, gcfg.seed)
            label, weight = target_labels(table, exp.objective)
            x = frame.to_numpy(dtype=np.float32)[train_rows]
            candidates = trainer.frames[exp.name]
            selector = fold_feature_selector(
                candidates,
                label,
                weight,
                train_rows,
                trainer.val,
                exp=exp,
                config=gcfg,
                chosen=dict(info["cv_params"]),
                final_features=info["features"],
            )
            calibration = fit_cross_conformal(
                x,
                label[train_rows],
                None if weight is None else weight[train_rows],
                params=trainer._params(train_rows.size, x.shape[1], exp.objective, dict(info["cv_params"])),
                num_rounds=int(info["best_iteration"]),
                feature_names=list(info["features"]),
                label_scale="dex" if exp.objective == "rmsle" or table.target.in_dex else "linear",
                levels=calibration_levels(*gcfg.interval_levels),
                folds=gcfg.interval_folds,
                seed=gcfg.seed,
                # only a linear label is floored before its log (a difference target has no floor)
                prediction_floor=trainer.floor if math.isfinite(trainer.floor) else 1e-6,
                candidate_x=candidates.to_numpy(dtype=np.float32)[train_rows],
                select_features=selector,
            )
            write_text_atomic(path, calibration.to_json())
            logger.info(
                "%s: intervals calibrated on %d training galaxies (%d folds), %.1f CPU-s",
                exp.name,
                calibration.n_calibration,
                gcfg.interval_folds,
                time.process_time() - cpu0,
            )
        fingerprints[exp.name] = fingerprint
        yhat_dex = calibration.to_dex(trainer.predictions[exp.name])
        spreads[exp.name] = predict_sigma(calibration, frame.to_numpy(dtype=np.float32), yhat_dex)
    write_json_atomic(index_path, fingerprints)
    return spreads


def _cross_validate(
    table: FeatureTable, gcfg: GbmConfig, experiments: list[Experiment], path: Path, inputs_hash: str
) -> dict[str, dict[str, Any]]:
    """Grid-search the parameters of each kind of model by k-fold CV (``cv_search.json`` reused if unchanged).

    Returns
    -------
    dict
        :func:`~morphomass.gbm.experiments.cv_group` name -> the chosen parameters.
    """
    fingerprint = _fingerprint(
        gcfg.model_dump(mode="json", exclude={"permutation_repeats", "band_sequence", "top_k"}), inputs_hash
    )
    if path.exists():
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved.get("fingerprint") == fingerprint and "groups" in saved:
            chosen = {group: dict(entry["best"]) for group, entry in saved["groups"].items()}
            logger.info("train-gbm: reusing the cross-validated parameters %s", chosen)
            return chosen
    train = np.flatnonzero(table.split_mask("train"))
    label, weight = target_labels(table, "l1")
    label, weight = label[train], weight[train]
    groups: dict[str, dict[str, Any]] = {}
    for group, preferred in CV_GROUPS.items():
        members = [e for e in experiments if cv_group(e) == group and e.features_from is None]
        if not members:
            continue
        exp = next((e for e in members if e.name == preferred), members[0])
        frame = build_features(table, exp)
        columns = _drop_constant(frame, train)
        x = frame[columns].to_numpy(dtype=np.float32)[train]
        threads = auto_threads(train.size, len(columns), configured=gcfg.num_threads)
        params = lgb_params(gcfg, num_threads=threads)
        if gcfg.prefilter_features is not None and len(columns) > gcfg.prefilter_features:
            keep = prefilter_features(
                x,
                label,
                weight,
                params=params,
                n_keep=gcfg.prefilter_features,
                rng=np.random.default_rng([gcfg.seed, 4]),
            )
            columns, x = [columns[i] for i in keep], x[:, keep]
        best, grid = cv_search(
            x,
            label,
            weight,
            params=params,
            grid=gcfg.cv_grid,
            feature_names=columns,
            folds=gcfg.cv_folds,
            max_rounds=gcfg.max_rounds,
            early_stopping_rounds=gcfg.early_stopping_rounds,
            seed=gcfg.seed,
            min_improvement=gcfg.early_stopping_min_improvement,
        )
        groups[group] = {"experiment": exp.name, "best": best, "grid": grid}
        logger.info("train-gbm: cross-validation on %s chose %s for the %s models", exp.name, best, group)
    write_json_atomic(path, {"fingerprint": fingerprint, "groups": groups})
    return {group: entry["best"] for group, entry in groups.items()}


def run_train_gbm(config: PipelineConfig, workdir: WorkDir, *, progress: bool = True) -> StageResult:
    """Train every GBM experiment; write ``models/gbm/`` (module docstring).

    Parameters
    ----------
    config : PipelineConfig
        Uses the ``gbm`` section.
    workdir : WorkDir
    progress : bool
        Show progress bars.

    Returns
    -------
    StageResult
        Summary: galaxies per split, experiments trained, the main model's validation loss and CPU time.

    Raises
    ------
    InputDataError
        A missing or malformed input table (named in the message).
    """
    start = time.perf_counter()
    gcfg = config.gbm
    inputs = (workdir.sample, workdir.photometric_features, workdir.cnn_features)
    table = load_feature_table(*inputs)
    logger.info(
        "train-gbm: %d galaxies (train %d, val %d, test %d), %d image/CNN features",
        table.counts["joined"],
        table.counts["train"],
        table.counts["val"],
        table.counts["test"],
        table.features.shape[1],
    )
    out_dir = workdir.gbm_models
    out_dir.mkdir(parents=True, exist_ok=True)
    inputs_hash = _fingerprint([file_sha256(p) for p in inputs])
    experiments = make_experiments(
        gcfg.band_sequence,
        available_bands="".join(table.available_bands),
        encoder_names=table.encoder_names,
        log_losses=not table.target.in_dex,
    )

    overrides: dict[str, dict[str, Any]] = {}
    if gcfg.cv_search:
        overrides = _cross_validate(table, gcfg, experiments, workdir.gbm_cv_search, inputs_hash)

    keep = (
        {e.features_from for e in experiments if e.features_from}
        | set(IMPORTANCE_EXPERIMENTS)
        | {e.name for e in experiments if has_intervals(e.name)}
    )
    trainer = _Trainer(table, gcfg, out_dir, inputs_hash, overrides, keep={k for k in keep if k})
    with progress_bar("train-gbm", total=len(experiments), enabled=progress) as advance:
        for exp in experiments:
            trainer.run(exp)
            advance(1)

    spreads = _calibrate_intervals(trainer, experiments, workdir)
    _remove_stale(
        out_dir,
        {e.name for e in experiments},
        keep={
            workdir.gbm_importance.name,
            workdir.gbm_cv_search.name,
            workdir.gbm_intervals.name,
            *(workdir.gbm_interval_calibration(name).name for name in spreads),
        },
    )
    predictions = pd.DataFrame(
        {"objid": table.meta["objid"].to_numpy(), "split": table.meta["split"].to_numpy()}
    )
    for exp in experiments:
        predictions[f"pred_{exp.name}"] = trainer.predictions[exp.name]
    for name, sigma in spreads.items():
        predictions[f"sigma_dex_{name}"] = sigma
    with atomic_path(workdir.gbm_predictions) as tmp:
        predictions.to_parquet(tmp, index=False)
    _importances(
        trainer,
        IMPORTANCE_EXPERIMENTS,
        repeats=gcfg.permutation_repeats,
        seed=gcfg.seed,
        path=workdir.gbm_importance,
        progress=progress,
    )
    main_info = trainer.info[MAIN_EXPERIMENT]
    return StageResult(
        stage="train-gbm",
        outputs=[workdir.relative(out_dir)],
        seconds=time.perf_counter() - start,
        summary={
            "galaxies": {s: table.counts[s] for s in ("train", "val", "test")},
            "experiments": len(experiments),
            "g_morph_features": main_info["n_features"],
            "g_morph_val_loss": round(float(main_info["val_loss"]), 4),
            "cpu_seconds": round(sum(i["cpu_seconds"] for i in trainer.info.values()), 1),
        },
    )
