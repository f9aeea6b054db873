"""Calibrated per-galaxy prediction intervals: normalised cross-conformal regression in dex (issue 16).

Method
------
Everything here lives in log space ("dex"): the target t (M/L, or a target already in dex such as log M*),
the point model's prediction and the interval bounds are log10 values, so an interval is multiplicative on M/L
and its width is in dex. For a point prediction ``yhat`` and a spread model ``sigma(x)`` the conformity score
of a galaxy is ``s = |y - yhat| / sigma(x)``; for nominal coverage ``1 - alpha`` (a *level*) the conformal
quantile is the ``ceil((n + 1)(1 - alpha))``-th smallest of the n calibration scores (+inf when that exceeds
n: the finite-sample rule of split conformal prediction, Vovk et al. 2005; Lei et al. 2018), and the interval
is ``yhat -/+ q * sigma(x)``. The width therefore follows ``sigma(x)``, i.e. how well the model knows that
kind of galaxy (normalised / locally adaptive conformal prediction, Papadopoulos et al. 2008). One spread
model serves every level, so a reliability curve over many levels costs only the quantiles.

Calibration data. Scores must come from galaxies that neither trained the point model nor chose its settings.
:func:`fit_cross_conformal` uses K-fold cross-fitting on the *training* split: each galaxy's residual comes
from a point model trained (same parameters, same fixed number of rounds, no early stopping) on the other K-1
folds, and its ``sigma`` from a spread model trained on the other folds' out-of-fold |residuals|, so every one
of the N training galaxies is an honest calibration point and no galaxy is taken away from training (a split
carved from training would cost 10-20 % of it; the validation split chose the number of rounds and the test
split is for measuring coverage). The final spread model is trained on all N out-of-fold |residuals|. At
prediction time the centre is the caller's final point model (trained on all the training data), not the K
fold models: this is the "cross-conformal with the full model" variant, not CV+ (Barber et al. 2021), which
would need the K fold models in the bundle. Its coverage is guaranteed only approximately: the fold models are
trained on (K-1)/K of the data and the cross-fitted spreads on (K-1)/K of the residuals, so calibration
residuals are a little larger and spreads a little noisier than at prediction time, and both err on the
conservative side. The test-split coverage that the evaluate stage reports is the audit. Measured on the
synthetic regression of ``tests/test_prediction_intervals.py`` (2 000 training draws, 40 seeds, 5 000 fresh
draws each), the mean coverage at 68 % / 95 % is 0.6885 / 0.9530 with K = 5 and 0.6857 / 0.9509 with K = 10
(finite-sample expectation 0.6802 / 0.9500): K = 10 halves the excess for 2.25 times the fold-training cost.
The default is K = 5.

Feature selection belongs inside the folds. A point model whose features were chosen on the training rows
(a screening model keeping the most useful of hundreds of features, then the top-k by split count) chose them
partly for how well they fit fold k's galaxies; a fold model given that final list can predict fold k better
than a model that never saw fold k, and the out-of-fold residuals, hence the intervals, come out too small.
So ``cross_fit`` takes the caller's selection as a function (``select_features``) and the matrix of every
candidate feature (``candidate_x``): each fold model selects its own features on its K-1 training folds,
exactly as the point model did on all N. This module knows nothing of how the selection works; the stage
that trained the point model supplies it. The spread model keeps the point model's final features, which it
needs at prediction time; they were chosen to predict the target, not the residuals. On the default run
(issue 16) the leak turned out small: the fold models' selections share only about half (g_morph, 300 of
673 candidates) or a third (gi_morph, top 50) of the point model's features, yet the median out-of-fold
|residual| grew by only 0.9 % and 0.5 % (the features are largely redundant CNN outputs). Three milder
reuses remain: fold k's ``sigma`` comes from |residuals| of point models that saw fold k; the
hyper-parameters chosen by a cross-validated grid search on the training split (``gbm.cv_search``) are kept
for every fold; so is the number of rounds, chosen by early stopping on the validation split.

Class-conditional ("Mondrian") calibration: with class labels (e.g. the E9 morphology class), the quantile
of a class is taken over that class's calibration scores, so coverage holds per class; classes with fewer
than ``min_class_size`` calibration galaxies (and galaxies without a label, or with a label unseen at
calibration) use the pooled quantile. The labels must be computed the same way at calibration and at
prediction time (e.g. from the CNN's morphology, never from GZ2 votes that new galaxies lack).

Spread model: LightGBM with the ``l1`` objective on |r| (it estimates the conditional *median* |r|, which
is robust to the heavy tails of M/L residuals; its scale does not matter because q absorbs it), fewer and
smaller trees than the point model (|r| is a noisy label), unweighted (coverage counts galaxies, not
inverse-error weights), optionally given the point prediction as an extra feature (errors often depend on
the predicted value, and with thousands of features a tree may otherwise not find that direction). Its
predictions are floored at ``sigma_floor_fraction`` times the median out-of-fold |r| so that no galaxy gets a
zero-width interval or an unbounded score.

Why not a library. MAPIE 1.6 and crepes 0.9.1 both implement (normalised, Mondrian) conformal regression,
and both download fine, but: MAPIE needs scikit-learn (not a dependency of morphomass) and a scikit-learn
estimator wrapper around LightGBM, its CV+ keeps the K fold models for prediction, and it persists by
pickle; crepes declares only numpy/pandas/scipy but imports scikit-learn when imported
(``crepes/extras.py``), keeps its state in Python objects (pickle again), and falls back to an infinite
interval, not the pooled quantile, for a small Mondrian bin. What either would save is the quantile rule
(a few lines, tested on a hand-computed example in ``tests/test_prediction_intervals.py``); the
cross-fitting around LightGBM, the JSON calibration document and the coverage statistics would have to
be written anyway. So this module uses LightGBM and scipy only.

Statistics of coverage. With m calibration scores and continuous scores, the coverage of split conformal
prediction given the calibration set is Beta(a, m + 1 - a) distributed with ``a = ceil((m + 1) level)``,
so the number of covered test galaxies among n is BetaBinomial(n, a, m + 1 - a): :func:`coverage_pvalue`
uses it (and the binomial when m is not given); :func:`coverage_standard_error` combines the test binomial
and the calibration set's finite size; :func:`joint_coverage_pvalue` combines classes by Bonferroni.

Units: every residual, spread, interval bound and width is in dex. lightgbm is imported inside the
functions, so importing this module is cheap.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from morphomass.errors import BundleError, InputDataError

if TYPE_CHECKING:
    import lightgbm

__all__ = [
    "CALIBRATION_FORMAT",
    "CALIBRATION_VERSION",
    "CrossFit",
    "DEFAULT_LEVELS",
    "FOLD_SELECTION_METHOD",
    "FeatureSelector",
    "IntervalCalibration",
    "LabelScale",
    "METHOD",
    "MondrianQuantiles",
    "RELIABILITY_LEVELS",
    "binomial_interval",
    "calibration_levels",
    "conformal_quantile",
    "conformity_scores",
    "coverage_pvalue",
    "coverage_standard_error",
    "coverage_table",
    "cross_fit",
    "empirical_coverage",
    "fit_cross_conformal",
    "fit_spread_model",
    "intervals_from_sigma",
    "joint_coverage_pvalue",
    "make_folds",
    "mondrian_quantiles",
    "predict_intervals",
    "predict_sigma",
    "quantile_groups",
    "reliability_curve",
    "spread_params",
]

logger = logging.getLogger(__name__)

CALIBRATION_FORMAT = "morphomass.interval_calibration"
CALIBRATION_VERSION = 1
METHOD = "normalised cross-conformal (K-fold out-of-fold residuals, cross-fitted LightGBM l1 spread model)"
#: Appended to :data:`METHOD` when each fold's point model selected its own features.
FOLD_SELECTION_METHOD = "features re-selected on each fold's training rows"
#: Nominal coverages written by ``predict`` (68 % and 95 %).
DEFAULT_LEVELS: tuple[float, ...] = (0.68, 0.95)
#: Nominal coverages of the reliability figure (0.05 to 0.95 in steps of 0.05, and 0.99).
RELIABILITY_LEVELS: tuple[float, ...] = (*(round(0.05 * i, 2) for i in range(1, 20)), 0.99)
#: Name of the extra spread-model feature holding the point prediction (dex).
PREDICTION_FEATURE = "point_prediction_dex"

LabelScale = Literal["dex", "linear"]
#: A point model's feature selection: training-row positions -> indices of the candidate columns it keeps.
FeatureSelector = Callable[[NDArray[np.int64]], ArrayLike]
_LABEL_SCALES = ("dex", "linear")
#: LightGBM aliases of the number of rounds and of early stopping: the fitter sets the rounds itself.
_ROUND_ALIASES = (
    "num_iterations",
    "num_iteration",
    "n_iter",
    "num_tree",
    "num_trees",
    "num_round",
    "num_rounds",
    "nrounds",
    "num_boost_round",
    "n_estimators",
    "max_iter",
    "early_stopping_round",
    "early_stopping_rounds",
    "early_stopping",
    "n_iter_no_change",
)
_LEVEL_TOLERANCE = 1e-9


def calibration_levels(*extra: float) -> tuple[float, ...]:
    """Sorted union of :data:`DEFAULT_LEVELS`, :data:`RELIABILITY_LEVELS` and ``extra`` (fitter default).

    Parameters
    ----------
    *extra : float
        More nominal coverages in (0, 1).

    Returns
    -------
    tuple of float
    """
    return _check_levels((*DEFAULT_LEVELS, *RELIABILITY_LEVELS, *extra))


def _check_levels(levels: Sequence[float]) -> tuple[float, ...]:
    values = sorted({float(level) for level in levels})
    if not values or not all(0.0 < level < 1.0 for level in values):
        msg = f"levels must be nominal coverages in (0, 1), got {list(levels)}"
        raise InputDataError(msg)
    return tuple(values)


def _level_index(levels: Sequence[float], level: float) -> int:
    for i, known in enumerate(levels):
        if abs(known - level) <= _LEVEL_TOLERANCE:
            return i
    msg = f"level {level} was not calibrated; calibrated levels are {list(levels)}"
    raise InputDataError(msg)


def _as_1d(values: ArrayLike, name: str) -> NDArray[np.float64]:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        msg = f"{name} must be a 1-D array, got shape {array.shape}"
        raise InputDataError(msg)
    return array


# ---------------------------------------------------------------------------------------------------------
# Scores and quantiles
# ---------------------------------------------------------------------------------------------------------


def conformity_scores(y_dex: ArrayLike, yhat_dex: ArrayLike, sigma_dex: ArrayLike) -> NDArray[np.float64]:
    """Normalised conformity scores ``|y - yhat| / sigma``.

    Parameters
    ----------
    y_dex, yhat_dex : (N,) array
        Target and point prediction (dex).
    sigma_dex : (N,) array
        Spread estimate (dex, positive).

    Returns
    -------
    (N,) ndarray of float64
    """
    y = _as_1d(y_dex, "y_dex")
    yhat = _as_1d(yhat_dex, "yhat_dex")
    sigma = _as_1d(sigma_dex, "sigma_dex")
    if not y.shape == yhat.shape == sigma.shape:
        msg = f"y_dex, yhat_dex and sigma_dex differ in length: {y.size}, {yhat.size}, {sigma.size}"
        raise InputDataError(msg)
    if np.any(~(sigma > 0)):
        msg = f"sigma_dex must be positive; {int(np.sum(~(sigma > 0)))} values are not"
        raise InputDataError(msg)
    return np.abs(y - yhat) / sigma


def conformal_quantile(scores: ArrayLike, level: float) -> float:
    """Split-conformal quantile of calibration scores: the ``ceil((n + 1) level)``-th smallest.

    Parameters
    ----------
    scores : (n,) array
        Calibration conformity scores (finite).
    level : float
        Nominal coverage 1 - alpha, in (0, 1).

    Returns
    -------
    float
        The quantile; ``inf`` when ``ceil((n + 1) level) > n`` (too few scores for the level; n = 0 too).
    """
    values = _as_1d(scores, "scores")
    (level,) = _check_levels([level])
    if not np.all(np.isfinite(values)):
        msg = f"scores must be finite; {int(np.sum(~np.isfinite(values)))} are not"
        raise InputDataError(msg)
    n = values.size
    rank = math.ceil((n + 1) * level - _LEVEL_TOLERANCE)
    if rank > n:
        return math.inf
    return float(np.partition(values, rank - 1)[rank - 1])


class MondrianQuantiles(NamedTuple):
    """Pooled and per-class conformal quantiles at a list of levels.

    Attributes
    ----------
    pooled : tuple of float
        One quantile per level over all scores.
    per_class : dict of str to tuple of float
        Classes with at least ``min_class_size`` scores only; the others use ``pooled``.
    class_sizes : dict of str to int
        Calibration scores of every labelled class (those below ``min_class_size`` included).
    """

    pooled: tuple[float, ...]
    per_class: dict[str, tuple[float, ...]]
    class_sizes: dict[str, int]


def _label_strings(labels: ArrayLike | None, n: int, name: str) -> NDArray[np.object_] | None:
    """Labels as str, ``None`` where missing (None, NaN, empty string)."""
    if labels is None:
        return None
    values = np.asarray(labels, dtype=object)
    if values.shape != (n,):
        msg = f"{name} must have one label per galaxy ({n}), got shape {values.shape}"
        raise InputDataError(msg)
    missing = pd.isna(values) | (values == "")
    out = np.array([None if m else str(v) for v, m in zip(values, missing, strict=True)], dtype=object)
    return out


def mondrian_quantiles(
    scores: ArrayLike, labels: ArrayLike | None, levels: Sequence[float], *, min_class_size: int
) -> MondrianQuantiles:
    """Class-conditional ("Mondrian") conformal quantiles with a pooled fallback for small classes.

    Parameters
    ----------
    scores : (n,) array
        Calibration conformity scores.
    labels : (n,) array-like or None
        Class of each calibration galaxy (converted to str; None/NaN/"" = no class: pooled only).
    levels : sequence of float
        Nominal coverages.
    min_class_size : int
        Classes with fewer calibration galaxies get no quantile of their own.

    Returns
    -------
    MondrianQuantiles
    """
    values = _as_1d(scores, "scores")
    levels = _check_levels(levels)
    if min_class_size < 1:
        msg = f"min_class_size must be >= 1, got {min_class_size}"
        raise InputDataError(msg)
    pooled = tuple(conformal_quantile(values, level) for level in levels)
    names = _label_strings(labels, values.size, "labels")
    per_class: dict[str, tuple[float, ...]] = {}
    sizes: dict[str, int] = {}
    if names is not None:
        for name in sorted({n for n in names if n is not None}):
            members = values[names == name]
            sizes[name] = int(members.size)
            if members.size >= min_class_size:
                per_class[name] = tuple(conformal_quantile(members, level) for level in levels)
    return MondrianQuantiles(pooled=pooled, per_class=per_class, class_sizes=sizes)


# ---------------------------------------------------------------------------------------------------------
# LightGBM models
# ---------------------------------------------------------------------------------------------------------


def spread_params(point_params: Mapping[str, Any], **overrides: Any) -> dict[str, Any]:
    """LightGBM parameters of the spread model, derived from the point model's.

    Keeps the point model's determinism, threads, seed, binning and feature fraction; sets the ``l1``
    objective, 15 leaves, at least 40 galaxies per leaf, learning rate 0.05 and no bagging.

    Parameters
    ----------
    point_params : mapping
        The point model's parameters (e.g. from ``gbm.train.lgb_params``).
    **overrides
        Values that replace the defaults.

    Returns
    -------
    dict
    """
    keep = (
        "force_col_wise",
        "deterministic",
        "seed",
        "num_threads",
        "verbosity",
        "max_bin",
        "feature_fraction",
    )
    params: dict[str, Any] = {k: point_params[k] for k in keep if k in point_params}
    params.update(
        objective="l1",
        metric="l1",
        num_leaves=15,
        min_data_in_leaf=max(40, int(point_params.get("min_data_in_leaf", 20))),
        learning_rate=0.05,
        bagging_fraction=1.0,
        bagging_freq=0,
    )
    params.setdefault("verbosity", -1)
    params.update(overrides)
    return params


def _round_free(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if k not in _ROUND_ALIASES}


def _feature_matrix(x: Any, feature_names: Sequence[str], name: str) -> NDArray[np.floating]:
    """(N, F) array in ``feature_names`` order from an array or a DataFrame (columns by name)."""
    if isinstance(x, pd.DataFrame):
        missing = [f for f in feature_names if f not in x.columns]
        if missing:
            msg = f"{name} lacks feature column {missing[0]!r} ({len(missing)} missing)"
            raise InputDataError(msg)
        return x[list(feature_names)].to_numpy()
    array = np.asarray(x)
    if array.ndim != 2 or array.shape[1] != len(feature_names):
        msg = f"{name} must be an (N, {len(feature_names)}) array of the named features, got {array.shape}"
        raise InputDataError(msg)
    if not np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float64)
    return array


def _augment(x: NDArray[np.floating], yhat_dex: NDArray[np.float64] | None) -> NDArray[np.floating]:
    if yhat_dex is None:
        return x
    return np.hstack([x, yhat_dex.astype(x.dtype, copy=False)[:, None]])


def make_folds(n: int, folds: int, *, seed: int) -> NDArray[np.int64]:
    """Seeded random fold of each of n galaxies, sizes differing by at most one.

    Parameters
    ----------
    n : int
        Number of galaxies.
    folds : int
        K >= 2, at most n.
    seed : int

    Returns
    -------
    (n,) ndarray of int64
        Values 0 .. K-1.
    """
    if not 2 <= folds <= n:
        msg = f"folds must be between 2 and the number of galaxies ({n}), got {folds}"
        raise InputDataError(msg)
    order = np.random.default_rng(seed).permutation(n)
    fold = np.empty(n, dtype=np.int64)
    fold[order] = np.arange(n) % folds
    return fold


def fit_spread_model(
    x: NDArray[np.floating],
    abs_residual_dex: NDArray[np.floating],
    *,
    params: Mapping[str, Any],
    num_rounds: int,
    feature_names: Sequence[str],
) -> lightgbm.Booster:
    """Train a spread model: LightGBM regression of |residual| (dex) on the features.

    Parameters
    ----------
    x : (N, F) array
        Features (already augmented with the point prediction where that is used).
    abs_residual_dex : (N,) array
    params : mapping
        From :func:`spread_params`.
    num_rounds : int
        Boosting rounds (fixed).
    feature_names : sequence of str
        F names.

    Returns
    -------
    lightgbm.Booster
    """
    import lightgbm as lgb

    train_params = _round_free(params)
    data = lgb.Dataset(
        x,
        np.asarray(abs_residual_dex, dtype=np.float64),
        feature_name=list(feature_names),
        params=train_params,
    )
    return lgb.train(train_params, data, num_boost_round=num_rounds)


@dataclass(frozen=True)
class CrossFit:
    """Out-of-fold quantities of K-fold cross-fitting on the training split (all in dex).

    Attributes
    ----------
    fold : (N,) ndarray of int64
        Fold of each galaxy.
    prediction_dex : (N,) ndarray
        Out-of-fold point prediction.
    residual_dex : (N,) ndarray
        Target minus out-of-fold prediction.
    sigma_dex : (N,) ndarray
        Cross-fitted spread (from a spread model that never saw the galaxy's fold), floored.
    score : (N,) ndarray
        ``|residual| / sigma``.
    sigma_floor : float
        Floor of every spread (dex).
    spread_model : str
        LightGBM text of the final spread model (trained on all N out-of-fold |residuals|).
    spread_feature_names : tuple of str
        Its features.
    fold_features : tuple of tuple of int
        With per-fold feature selection, the ``candidate_x`` columns of each fold's point model (else empty).
    """

    fold: NDArray[np.int64]
    prediction_dex: NDArray[np.float64]
    residual_dex: NDArray[np.float64]
    sigma_dex: NDArray[np.float64]
    score: NDArray[np.float64]
    sigma_floor: float
    spread_model: str
    spread_feature_names: tuple[str, ...]
    fold_features: tuple[tuple[int, ...], ...] = ()


def _to_dex(values: NDArray[np.float64], label_scale: str, floor: float) -> NDArray[np.float64]:
    if label_scale == "dex":
        return values
    return np.log10(np.maximum(values, floor))


def cross_fit(
    x: Any,
    label: ArrayLike,
    weight: ArrayLike | None = None,
    *,
    params: Mapping[str, Any],
    num_rounds: int,
    feature_names: Sequence[str],
    label_scale: LabelScale = "dex",
    folds: int = 5,
    seed: int = 0,
    spread_model_params: Mapping[str, Any] | None = None,
    spread_rounds: int = 200,
    use_prediction_feature: bool = True,
    sigma_floor_fraction: float = 0.05,
    prediction_floor: float = 1e-6,
    candidate_x: Any | None = None,
    select_features: FeatureSelector | None = None,
) -> CrossFit:
    """K-fold out-of-fold residuals and cross-fitted spreads of a LightGBM point model.

    Parameters
    ----------
    x : (N, F) array or DataFrame
        Training-split features (NaN = missing); a DataFrame's columns are taken by ``feature_names``.
    label : (N,) array
        The point model's label as it is trained (M/L for the ``l1`` objective, log10 M/L for ``rmsle``).
    weight : (N,) array or None
        The point model's sample weights (used to train the fold models only).
    params : mapping
        The point model's LightGBM parameters (``gbm.train.lgb_params``); round counts in it are ignored.
    num_rounds : int
        The point model's number of boosting rounds (its early-stopping round), fixed for every fold.
    feature_names : sequence of str
        F names.
    label_scale : {'dex', 'linear'}
        'linear': label and predictions are positive values whose log10 is the target in dex (M/L);
        'dex': they already are in dex (log10 M/L, log M*).
    folds : int
        K.
    seed : int
        Seeds the folds.
    spread_model_params : mapping or None
        Spread-model parameters (default :func:`spread_params` of ``params``).
    spread_rounds : int
        Spread-model boosting rounds.
    use_prediction_feature : bool
        Give the spread model the point prediction (dex) as one more feature.
    sigma_floor_fraction : float
        Spreads are floored at this fraction of the median out-of-fold |residual|.
    prediction_floor : float
        Linear predictions are floored at this positive value before the log.
    candidate_x : (N, C) array or None
        With ``select_features``: every feature the point model's selection started from (same rows as
        ``x``). Each fold model is trained on the columns of ``candidate_x`` that ``select_features`` picks
        on that fold's training rows, so the selection never sees the fold's held-out galaxies.
    select_features : callable or None
        ``select_features(train_positions) -> column indices``: the point model's feature selection, run on
        the rows ``train_positions`` ((M,) int64 positions among the N rows, sorted), returning indices into
        ``candidate_x``'s columns. None: every fold model uses ``x`` (the point model's final features,
        selected on all N rows, so the out-of-fold residuals of a selected model come out too small).
        The spread model always uses ``x`` (what prediction has).

    Returns
    -------
    CrossFit
    """
    import lightgbm as lgb

    names = list(feature_names)
    matrix = _feature_matrix(x, names, "x")
    target = _as_1d(label, "label")
    n = matrix.shape[0]
    if target.size != n:
        msg = f"x has {n} rows but label has {target.size} values"
        raise InputDataError(msg)
    weights = None if weight is None else _as_1d(weight, "weight")
    if weights is not None and weights.size != n:
        msg = f"x has {n} rows but weight has {weights.size} values"
        raise InputDataError(msg)
    if label_scale not in _LABEL_SCALES:
        msg = f"label_scale must be one of {_LABEL_SCALES}, got {label_scale!r}"
        raise InputDataError(msg)
    if label_scale == "linear" and np.any(~(target > 0)):
        msg = f"label_scale 'linear' needs positive labels; {int(np.sum(~(target > 0)))} are not"
        raise InputDataError(msg)
    if num_rounds < 1 or spread_rounds < 1:
        msg = f"num_rounds and spread_rounds must be >= 1, got {num_rounds} and {spread_rounds}"
        raise InputDataError(msg)
    if not 0.0 < sigma_floor_fraction < 1.0:
        msg = f"sigma_floor_fraction must be in (0, 1), got {sigma_floor_fraction}"
        raise InputDataError(msg)
    selection = _check_selection(candidate_x, select_features, n)
    fold = make_folds(n, folds, seed=seed)
    point = _round_free(params)
    prediction = np.empty(n, dtype=np.float64)
    fold_features: list[tuple[int, ...]] = []
    if selection is None:
        full = lgb.Dataset(
            matrix, target, weight=weights, feature_name=names, params=point, free_raw_data=False
        )
    for k in range(folds):
        held = fold == k
        rows = np.flatnonzero(~held)
        if selection is None:
            booster = lgb.train(point, full.subset(rows), num_boost_round=num_rounds)
            prediction[held] = booster.predict(matrix[held])
        else:
            candidates, select = selection
            columns = _selected_columns(select(rows), candidates.shape[1], k)
            fold_features.append(tuple(int(c) for c in columns))
            data = lgb.Dataset(
                candidates[rows][:, columns],
                target[rows],
                weight=None if weights is None else weights[rows],
                params=point,
            )
            booster = lgb.train(point, data, num_boost_round=num_rounds)
            prediction[held] = booster.predict(candidates[held][:, columns])
        logger.debug("cross-conformal: point model of fold %d/%d trained", k + 1, folds)
    y_dex = _to_dex(target, label_scale, prediction_floor)
    yhat_dex = _to_dex(prediction, label_scale, prediction_floor)
    residual = y_dex - yhat_dex
    abs_residual = np.abs(residual)
    sigma_floor = max(sigma_floor_fraction * float(np.median(abs_residual)), 1e-12)

    spread_names = [*names, PREDICTION_FEATURE] if use_prediction_feature else names
    spread_x = _augment(matrix, yhat_dex if use_prediction_feature else None)
    sparams = _round_free(spread_model_params or spread_params(params))
    spread_full = lgb.Dataset(
        spread_x, abs_residual, feature_name=spread_names, params=sparams, free_raw_data=False
    )
    sigma = np.empty(n, dtype=np.float64)
    for k in range(folds):
        held = fold == k
        booster = lgb.train(sparams, spread_full.subset(np.flatnonzero(~held)), num_boost_round=spread_rounds)
        sigma[held] = booster.predict(spread_x[held])
    sigma = np.maximum(sigma, sigma_floor)
    final = lgb.train(sparams, spread_full, num_boost_round=spread_rounds)
    return CrossFit(
        fold=fold,
        prediction_dex=yhat_dex,
        residual_dex=residual,
        sigma_dex=sigma,
        score=abs_residual / sigma,
        sigma_floor=sigma_floor,
        spread_model=final.model_to_string(),
        spread_feature_names=tuple(spread_names),
        fold_features=tuple(fold_features),
    )


def _check_selection(
    candidate_x: Any | None, select_features: FeatureSelector | None, n: int
) -> tuple[NDArray[np.floating], FeatureSelector] | None:
    """Check the candidate matrix and selector of per-fold feature selection (None without them)."""
    if (candidate_x is None) != (select_features is None):
        msg = "candidate_x and select_features must be given together (per-fold feature selection)"
        raise InputDataError(msg)
    if candidate_x is None or select_features is None:
        return None
    matrix = np.asarray(candidate_x)
    if matrix.ndim != 2 or matrix.shape[0] != n:
        msg = f"candidate_x must be an ({n}, C) array, one row per galaxy of x, got shape {matrix.shape}"
        raise InputDataError(msg)
    if not np.issubdtype(matrix.dtype, np.floating):
        matrix = matrix.astype(np.float64)
    return matrix, select_features


def _selected_columns(selected: ArrayLike, n_candidates: int, fold: int) -> NDArray[np.int64]:
    """Check the column indices a feature selector returned for one fold."""
    columns = np.asarray(selected)
    ok = (
        columns.ndim == 1
        and columns.size > 0
        and np.issubdtype(columns.dtype, np.integer)
        and np.unique(columns).size == columns.size
        and bool(np.all((columns >= 0) & (columns < n_candidates)))
    )
    if not ok:
        msg = (
            f"select_features must return distinct column indices in [0, {n_candidates}) for fold {fold}, "
            f"got {columns.tolist()[:10]}"
        )
        raise InputDataError(msg)
    return columns.astype(np.int64)


# ---------------------------------------------------------------------------------------------------------
# The calibration
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IntervalCalibration:
    """What prediction needs to turn a point prediction into intervals: quantiles and the spread model.

    Attributes
    ----------
    levels : tuple of float
        Calibrated nominal coverages, increasing.
    pooled_quantiles : tuple of float
        Conformal quantile of the scores at each level (inf: unbounded).
    class_quantiles : dict of str to tuple of float
        Per-class quantiles (classes with at least ``min_class_size`` calibration galaxies).
    class_sizes : dict of str to int
        Calibration galaxies of every labelled class.
    n_calibration : int
        Calibration galaxies in all.
    min_class_size : int
    sigma_floor : float
        Floor of the spread (dex).
    label_scale : {'dex', 'linear'}
        Scale of the point model's label and predictions (see :func:`cross_fit`).
    prediction_floor : float
        Floor of linear predictions before the log.
    use_prediction_feature : bool
        Whether the spread model's last feature is the point prediction (dex).
    feature_names : tuple of str
        The point model's features, in the spread model's order (without the prediction feature).
    spread_model : str
        LightGBM text model of the spread.
    folds, seed : int
        How the calibration scores were cross-fitted.
    method : str
    version : int
    """

    levels: tuple[float, ...]
    pooled_quantiles: tuple[float, ...]
    class_quantiles: dict[str, tuple[float, ...]]
    class_sizes: dict[str, int]
    n_calibration: int
    min_class_size: int
    sigma_floor: float
    label_scale: str
    prediction_floor: float
    use_prediction_feature: bool
    feature_names: tuple[str, ...]
    spread_model: str = field(repr=False)
    folds: int
    seed: int
    method: str = METHOD
    version: int = CALIBRATION_VERSION

    @cached_property
    def spread_booster(self) -> lightgbm.Booster:
        """The spread model, parsed once from its text."""
        import lightgbm as lgb

        return lgb.Booster(model_str=self.spread_model)

    def to_dex(self, prediction: ArrayLike) -> NDArray[np.float64]:
        """Point predictions in the label's scale -> dex (log10 of floored values for a linear label)."""
        return _to_dex(_as_1d(prediction, "prediction"), self.label_scale, self.prediction_floor)

    def quantile(self, level: float, label: str | None = None) -> float:
        """Conformal quantile at ``level`` for a class (its own, or the pooled one as a fallback)."""
        i = _level_index(self.levels, level)
        own = self.class_quantiles.get(label) if label is not None else None
        return (own or self.pooled_quantiles)[i]

    def calibration_size(self, label: str | None = None) -> int:
        """Count the calibration scores behind the quantile that ``label`` uses."""
        if label is not None and label in self.class_quantiles:
            return self.class_sizes[label]
        return self.n_calibration

    def to_json(self) -> str:
        """Write the calibration as a versioned JSON document (spread model as LightGBM text; inf as null)."""
        doc = {
            "format": CALIBRATION_FORMAT,
            "version": self.version,
            "method": self.method,
            "label_scale": self.label_scale,
            "prediction_floor": self.prediction_floor,
            "levels": list(self.levels),
            "quantiles": {
                "pooled": _encode(self.pooled_quantiles),
                "per_class": {k: _encode(v) for k, v in sorted(self.class_quantiles.items())},
            },
            "class_sizes": dict(sorted(self.class_sizes.items())),
            "n_calibration": self.n_calibration,
            "min_class_size": self.min_class_size,
            "sigma_floor": self.sigma_floor,
            "folds": self.folds,
            "seed": self.seed,
            "use_prediction_feature": self.use_prediction_feature,
            "feature_names": list(self.feature_names),
            "spread_model_sha256": hashlib.sha256(self.spread_model.encode()).hexdigest(),
            "spread_model": self.spread_model,
        }
        return json.dumps(doc, indent=1, allow_nan=False)

    @classmethod
    def from_json(cls, text: str, *, source: str = "interval calibration") -> IntervalCalibration:
        """Read a document written by :meth:`to_json`.

        Parameters
        ----------
        text : str
        source : str
            Names the document in error messages (e.g. its path).

        Raises
        ------
        BundleError
            One line naming ``source`` and the field that is missing, malformed or of another version.
        """
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            msg = f"{source}: not valid JSON ({exc.msg} at line {exc.lineno})"
            raise BundleError(msg) from None
        reader = _Reader(doc, source)
        if reader.get("format", str) != CALIBRATION_FORMAT:
            msg = f"{source}: field 'format' must be {CALIBRATION_FORMAT!r}, got {doc['format']!r}"
            raise BundleError(msg)
        version = reader.get("version", int)
        if version != CALIBRATION_VERSION:
            msg = (
                f"{source}: field 'version' is {version}, this morphomass reads version {CALIBRATION_VERSION}"
            )
            raise BundleError(msg)
        levels = reader.get("levels", list)
        try:
            checked = _check_levels(levels)
        except (InputDataError, TypeError, ValueError):
            checked = ()
        if list(checked) != levels:
            msg = f"{source}: field 'levels' must be increasing numbers in (0, 1), got {levels!r}"
            raise BundleError(msg)
        quantiles = reader.get("quantiles", dict)
        pooled = reader.quantiles("quantiles.pooled", quantiles, "pooled", len(levels))
        per_class_doc = reader.nested(quantiles, "quantiles.per_class", "per_class", dict)
        per_class = {
            str(k): reader.quantiles(f"quantiles.per_class.{k}", per_class_doc, k, len(levels))
            for k in per_class_doc
        }
        sizes_doc = reader.get("class_sizes", dict)
        sizes = {str(k): reader.nested(sizes_doc, f"class_sizes.{k}", k, int) for k in sizes_doc}
        missing_sizes = sorted(set(per_class) - set(sizes))
        if missing_sizes:
            msg = f"{source}: field 'class_sizes' lacks class {missing_sizes[0]!r} of 'quantiles.per_class'"
            raise BundleError(msg)
        label_scale = reader.get("label_scale", str)
        if label_scale not in _LABEL_SCALES:
            msg = f"{source}: field 'label_scale' must be one of {_LABEL_SCALES}, got {label_scale!r}"
            raise BundleError(msg)
        names = reader.get("feature_names", list)
        if not all(isinstance(name, str) for name in names):
            msg = f"{source}: field 'feature_names' must be a list of strings"
            raise BundleError(msg)
        model = reader.get("spread_model", str)
        digest = reader.get("spread_model_sha256", str)
        if hashlib.sha256(model.encode()).hexdigest() != digest:
            msg = (
                f"{source}: field 'spread_model' does not match 'spread_model_sha256' (altered or truncated)"
            )
            raise BundleError(msg)
        calibration = cls(
            levels=tuple(float(level) for level in levels),
            pooled_quantiles=pooled,
            class_quantiles=per_class,
            class_sizes=sizes,
            n_calibration=reader.get("n_calibration", int),
            min_class_size=reader.get("min_class_size", int),
            sigma_floor=reader.positive("sigma_floor"),
            label_scale=label_scale,
            prediction_floor=reader.positive("prediction_floor"),
            use_prediction_feature=reader.get("use_prediction_feature", bool),
            feature_names=tuple(names),
            spread_model=model,
            folds=reader.get("folds", int),
            seed=reader.get("seed", int),
            method=reader.get("method", str),
            version=version,
        )
        expected = len(names) + int(calibration.use_prediction_feature)
        try:
            n_features = calibration.spread_booster.num_feature()
        except Exception as exc:  # lightgbm.basic.LightGBMError: the text is not a model
            msg = f"{source}: field 'spread_model' is not a LightGBM model ({str(exc).splitlines()[0]})"
            raise BundleError(msg) from None
        if n_features != expected:
            msg = f"{source}: field 'spread_model' has {n_features} features, 'feature_names' {expected}"
            raise BundleError(msg)
        return calibration


def _encode(values: Sequence[float]) -> list[float | None]:
    return [None if math.isinf(v) else float(v) for v in values]


class _Reader:
    """Typed access to a JSON document's fields, with one-line errors naming the field."""

    def __init__(self, doc: Any, source: str) -> None:
        if not isinstance(doc, dict):
            msg = f"{source}: expected a JSON object, got {type(doc).__name__}"
            raise BundleError(msg)
        self.doc = doc
        self.source = source

    def nested(self, container: dict[str, Any], path: str, key: str, kind: type) -> Any:
        if key not in container:
            msg = f"{self.source}: field {path!r} is missing"
            raise BundleError(msg)
        value = container[key]
        wrong_bool = kind is not bool and isinstance(value, bool)
        if wrong_bool or not isinstance(value, kind):
            msg = f"{self.source}: field {path!r} must be {kind.__name__}, got {type(value).__name__}"
            raise BundleError(msg)
        return value

    def get(self, key: str, kind: type) -> Any:
        return self.nested(self.doc, key, key, kind)

    def positive(self, key: str) -> float:
        value = self.doc.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            msg = f"{self.source}: field {key!r} must be a positive number, got {value!r}"
            raise BundleError(msg)
        return float(value)

    def quantiles(self, path: str, container: dict[str, Any], key: str, n_levels: int) -> tuple[float, ...]:
        values = self.nested(container, path, key, list)
        ok = len(values) == n_levels and all(
            v is None or (isinstance(v, int | float) and not isinstance(v, bool) and v >= 0) for v in values
        )
        if not ok:
            msg = f"{self.source}: field {path!r} must hold {n_levels} non-negative numbers or null"
            raise BundleError(msg)
        return tuple(math.inf if v is None else float(v) for v in values)


def fit_cross_conformal(
    x: Any,
    label: ArrayLike,
    weight: ArrayLike | None = None,
    *,
    params: Mapping[str, Any],
    num_rounds: int,
    feature_names: Sequence[str],
    label_scale: LabelScale = "dex",
    levels: Sequence[float] | None = None,
    class_labels: ArrayLike | None = None,
    min_class_size: int = 100,
    folds: int = 5,
    seed: int = 0,
    spread_model_params: Mapping[str, Any] | None = None,
    spread_rounds: int = 200,
    use_prediction_feature: bool = True,
    sigma_floor_fraction: float = 0.05,
    prediction_floor: float = 1e-6,
    candidate_x: Any | None = None,
    select_features: FeatureSelector | None = None,
) -> IntervalCalibration:
    """Calibrate prediction intervals on the training split by K-fold cross-fitting (module docstring).

    Parameters
    ----------
    x, label, weight, params, num_rounds, feature_names, label_scale, folds, seed, spread_model_params
        As in :func:`cross_fit`.
    spread_rounds, use_prediction_feature, sigma_floor_fraction, prediction_floor, candidate_x
        As in :func:`cross_fit`.
    select_features
        As in :func:`cross_fit`. Give ``candidate_x`` and ``select_features`` whenever the point model's
        features were selected on the training rows (screening, top-k): the method then records it.
    levels : sequence of float or None
        Nominal coverages to calibrate (default :func:`calibration_levels`: 68 %, 95 %, the reliability grid).
    class_labels : (N,) array-like or None
        Mondrian classes of the training galaxies (None: pooled only).
    min_class_size : int
        Classes with fewer calibration galaxies use the pooled quantiles.

    Returns
    -------
    IntervalCalibration
    """
    levels = calibration_levels() if levels is None else _check_levels(levels)
    fit = cross_fit(
        x,
        label,
        weight,
        params=params,
        num_rounds=num_rounds,
        feature_names=feature_names,
        label_scale=label_scale,
        folds=folds,
        seed=seed,
        spread_model_params=spread_model_params,
        spread_rounds=spread_rounds,
        use_prediction_feature=use_prediction_feature,
        sigma_floor_fraction=sigma_floor_fraction,
        prediction_floor=prediction_floor,
        candidate_x=candidate_x,
        select_features=select_features,
    )
    quantiles = mondrian_quantiles(fit.score, class_labels, levels, min_class_size=min_class_size)
    logger.info(
        "cross-conformal calibration on %d galaxies (%d folds): q(%s) = %s",
        fit.score.size,
        folds,
        levels[-1],
        quantiles.pooled[-1],
    )
    return IntervalCalibration(
        levels=levels,
        pooled_quantiles=quantiles.pooled,
        class_quantiles=quantiles.per_class,
        class_sizes=quantiles.class_sizes,
        n_calibration=int(fit.score.size),
        min_class_size=min_class_size,
        sigma_floor=fit.sigma_floor,
        label_scale=label_scale,
        prediction_floor=prediction_floor,
        use_prediction_feature=use_prediction_feature,
        feature_names=tuple(feature_names),
        spread_model=fit.spread_model,
        folds=folds,
        seed=seed,
        method=METHOD if select_features is None else f"{METHOD}; {FOLD_SELECTION_METHOD}",
    )


# ---------------------------------------------------------------------------------------------------------
# Prediction
# ---------------------------------------------------------------------------------------------------------


def predict_sigma(
    calibration: IntervalCalibration, x: Any, yhat_dex: ArrayLike, *, num_threads: int = 0
) -> NDArray[np.float64]:
    """Spread of each galaxy (dex, at least the calibration's floor).

    Parameters
    ----------
    calibration : IntervalCalibration
    x : (N, F) array or DataFrame
        The point model's features (a DataFrame's columns are taken by name).
    yhat_dex : (N,) array
        Point predictions in dex (used when the spread model takes them as a feature).
    num_threads : int
        LightGBM prediction threads (0: its default).

    Returns
    -------
    (N,) ndarray of float64
    """
    matrix = _feature_matrix(x, calibration.feature_names, "x")
    yhat = _as_1d(yhat_dex, "yhat_dex")
    if yhat.size != matrix.shape[0]:
        msg = f"x has {matrix.shape[0]} rows but yhat_dex has {yhat.size} values"
        raise InputDataError(msg)
    spread_x = _augment(matrix, yhat if calibration.use_prediction_feature else None)
    raw = calibration.spread_booster.predict(spread_x, num_threads=num_threads)
    return np.maximum(np.asarray(raw, dtype=np.float64), calibration.sigma_floor)


def predict_intervals(
    calibration: IntervalCalibration,
    yhat_dex: ArrayLike,
    x: Any,
    labels: ArrayLike | None = None,
    *,
    levels: Sequence[float] | None = None,
    num_threads: int = 0,
) -> dict[float, tuple[NDArray[np.float64], NDArray[np.float64]]]:
    """Prediction intervals of each galaxy at each level, in dex.

    Parameters
    ----------
    calibration : IntervalCalibration
    yhat_dex : (N,) array
        Point predictions in dex (``calibration.to_dex`` of the model's output); NaN gives NaN bounds.
    x : (N, F) array or DataFrame
        The point model's features.
    labels : (N,) array-like or None
        Mondrian classes (None, or a missing/unknown class: pooled quantiles).
    levels : sequence of float or None
        Calibrated levels to return (default: all).
    num_threads : int
        LightGBM prediction threads.

    Returns
    -------
    dict of float to (lo, hi)
        Per level, two (N,) float64 arrays: ``yhat -/+ q sigma`` (dex; +/-inf where q is unbounded).
    """
    yhat = _as_1d(yhat_dex, "yhat_dex")
    sigma = predict_sigma(calibration, x, yhat, num_threads=num_threads)
    return intervals_from_sigma(calibration, yhat, sigma, labels, levels=levels)


def intervals_from_sigma(
    calibration: IntervalCalibration,
    yhat_dex: ArrayLike,
    sigma_dex: ArrayLike,
    labels: ArrayLike | None = None,
    *,
    levels: Sequence[float] | None = None,
) -> dict[float, tuple[NDArray[np.float64], NDArray[np.float64]]]:
    """Prediction intervals from spreads already computed (:func:`predict_sigma`), in dex.

    Parameters
    ----------
    calibration : IntervalCalibration
    yhat_dex, sigma_dex : (N,) array
        Point predictions and spreads (dex).
    labels : (N,) array-like or None
        Mondrian classes (None, or a missing/unknown class: pooled quantiles).
    levels : sequence of float or None
        Calibrated levels to return (default: all).

    Returns
    -------
    dict of float to (lo, hi)
        As :func:`predict_intervals`.
    """
    yhat, sigma = _as_1d(yhat_dex, "yhat_dex"), _as_1d(sigma_dex, "sigma_dex")
    if yhat.shape != sigma.shape:
        msg = f"yhat_dex has {yhat.size} values but sigma_dex has {sigma.size}"
        raise InputDataError(msg)
    names = _label_strings(labels, yhat.size, "labels")
    wanted = calibration.levels if levels is None else _check_levels(levels)
    out: dict[float, tuple[NDArray[np.float64], NDArray[np.float64]]] = {}
    for level in wanted:
        i = _level_index(calibration.levels, level)
        q = np.full(yhat.size, calibration.pooled_quantiles[i])
        if names is not None:
            for name, quantiles in calibration.class_quantiles.items():
                q[names == name] = quantiles[i]
        half = q * sigma
        out[calibration.levels[i]] = (yhat - half, yhat + half)
    return out


# ---------------------------------------------------------------------------------------------------------
# Coverage statistics
# ---------------------------------------------------------------------------------------------------------


def empirical_coverage(y: ArrayLike, lo: ArrayLike, hi: ArrayLike) -> float:
    """Fraction of galaxies with ``lo <= y <= hi`` (NaN if there are none).

    Parameters
    ----------
    y, lo, hi : (N,) array
        Same units (dex).
    """
    target, low, high = _as_1d(y, "y"), _as_1d(lo, "lo"), _as_1d(hi, "hi")
    if not target.shape == low.shape == high.shape:
        msg = f"y, lo and hi differ in length: {target.size}, {low.size}, {high.size}"
        raise InputDataError(msg)
    if target.size == 0:
        return math.nan
    return float(np.mean((low <= target) & (target <= high)))


def binomial_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Clopper-Pearson interval of a proportion k/n.

    Parameters
    ----------
    k, n : int
        Successes and trials (n = 0 gives (0, 1)).
    confidence : float

    Returns
    -------
    (float, float)
    """
    from scipy.stats import binomtest

    if n == 0:
        return 0.0, 1.0
    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=confidence, method="exact")
    return float(ci.low), float(ci.high)


def coverage_standard_error(level: float, n_test: int, n_calibration: int | None = None) -> float:
    """Compute the standard error of a measured coverage: test binomial plus the calibration set's size.

    ``sqrt(p(1-p)/n_test + p(1-p)/(n_calibration + 2))`` with p the nominal level (the second term is the
    variance of the Beta-distributed coverage given the calibration set; omitted when n_calibration is None).
    """
    variance = level * (1 - level) / n_test
    if n_calibration is not None:
        variance += level * (1 - level) / (n_calibration + 2)
    return math.sqrt(variance)


def coverage_pvalue(k: int, n: int, level: float, *, n_calibration: int | None = None) -> float:
    """Two-sided p-value of k covered among n test galaxies under exact conformal coverage.

    Under the null, k ~ BetaBinomial(n, a, m + 1 - a) with ``a = ceil((m + 1) level)`` for m calibration
    scores (split conformal, continuous scores), or Binomial(n, level) when ``n_calibration`` is None.
    The p-value is twice the smaller tail, capped at 1.

    Parameters
    ----------
    k, n : int
    level : float
        Nominal coverage.
    n_calibration : int or None
        m.

    Returns
    -------
    float
    """
    from scipy.stats import betabinom, binom

    if not 0 <= k <= n:
        msg = f"covered count must be between 0 and n = {n}, got {k}"
        raise InputDataError(msg)
    if n == 0:
        return 1.0
    if n_calibration is None:
        dist: Any = binom(n, level)
    else:
        a = math.ceil((n_calibration + 1) * level - _LEVEL_TOLERANCE)
        if a > n_calibration:  # unbounded intervals cover everything
            return 1.0 if k == n else 0.0
        dist = betabinom(n, a, n_calibration + 1 - a)
    tails = min(float(dist.cdf(k)), float(dist.sf(k - 1)))
    return min(1.0, 2.0 * tails)


def joint_coverage_pvalue(
    n_covered: ArrayLike,
    n: ArrayLike,
    level: float,
    *,
    n_calibration: ArrayLike | None = None,
) -> float:
    """One test that every class has its nominal coverage: Bonferroni over per-class two-sided p-values.

    Parameters
    ----------
    n_covered, n : (C,) array of int
        Covered and total test galaxies per class.
    level : float
        Nominal coverage.
    n_calibration : (C,) array of int or None
        Calibration scores behind each class's quantile (``IntervalCalibration.calibration_size``).

    Returns
    -------
    float
        ``min(1, C * min_c p_c)``: reject "coverage is nominal in every class" at 1 % when below 0.01.
    """
    covered = np.asarray(n_covered, dtype=np.int64)
    totals = np.asarray(n, dtype=np.int64)
    if covered.shape != totals.shape or covered.ndim != 1 or covered.size == 0:
        msg = f"n_covered and n must be equal-length 1-D arrays, got shapes {covered.shape}, {totals.shape}"
        raise InputDataError(msg)
    m = [None] * covered.size if n_calibration is None else [int(v) for v in np.asarray(n_calibration)]
    if len(m) != covered.size:
        msg = f"n_calibration has {len(m)} values for {covered.size} classes"
        raise InputDataError(msg)
    p = [
        coverage_pvalue(int(k), int(t), level, n_calibration=mc)
        for k, t, mc in zip(covered, totals, m, strict=True)
    ]
    return min(1.0, covered.size * min(p))


def quantile_groups(values: ArrayLike, names: Sequence[str] = ("low", "mid", "high")) -> NDArray[np.object_]:
    """Label each value by its quantile bin (terciles by default), e.g. for coverage per redshift tercile.

    Parameters
    ----------
    values : (N,) array
    names : sequence of str
        One name per bin, lowest first.

    Returns
    -------
    (N,) ndarray of object
        Bin name; None where the value is NaN.
    """
    data = _as_1d(values, "values")
    edges = np.nanquantile(data, np.linspace(0, 1, len(names) + 1)[1:-1]) if np.any(np.isfinite(data)) else []
    index = np.searchsorted(np.asarray(edges), data, side="right")
    return np.array(
        [None if np.isnan(v) else names[i] for v, i in zip(data, index, strict=True)], dtype=object
    )


def coverage_table(
    y: ArrayLike,
    intervals: Mapping[float, tuple[ArrayLike, ArrayLike]],
    groups: ArrayLike | None = None,
    *,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Empirical coverage per group and level, with its binomial interval and the widths.

    Parameters
    ----------
    y : (N,) array
        Target (dex).
    intervals : dict of float to (lo, hi)
        From :func:`predict_intervals`.
    groups : (N,) array-like or None
        Group of each galaxy (None: one group "all"; missing labels are left out).
    confidence : float
        Of the Clopper-Pearson interval.

    Returns
    -------
    pandas.DataFrame
        Columns group, level, n, n_covered, coverage, coverage_lo, coverage_hi, mean_width_dex,
        median_width_dex; one row per group (sorted) and level (increasing).
    """
    target = _as_1d(y, "y")
    names = _label_strings(groups, target.size, "groups")
    if names is None:
        names = np.full(target.size, "all", dtype=object)
    rows = []
    for group in sorted({g for g in names if g is not None}):
        members = names == group
        for level in sorted(intervals):
            lo, hi = (_as_1d(v, "interval bound") for v in intervals[level])
            if not target.shape == lo.shape == hi.shape:
                msg = f"intervals at level {level} have {lo.size} bounds for {target.size} targets"
                raise InputDataError(msg)
            covered = (lo[members] <= target[members]) & (target[members] <= hi[members])
            width = hi[members] - lo[members]
            k, n = int(covered.sum()), int(members.sum())
            ci = binomial_interval(k, n, confidence)
            rows.append(
                {
                    "group": group,
                    "level": float(level),
                    "n": n,
                    "n_covered": k,
                    "coverage": k / n,
                    "coverage_lo": ci[0],
                    "coverage_hi": ci[1],
                    "mean_width_dex": float(np.mean(width)),
                    "median_width_dex": float(np.median(width)),
                }
            )
    columns = [
        "group",
        "level",
        "n",
        "n_covered",
        "coverage",
        "coverage_lo",
        "coverage_hi",
        "mean_width_dex",
        "median_width_dex",
    ]
    return pd.DataFrame(rows, columns=columns)


def reliability_curve(
    y: ArrayLike,
    intervals: Mapping[float, tuple[ArrayLike, ArrayLike]],
    *,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Empirical against nominal coverage over many levels (the reliability figure's data).

    Parameters
    ----------
    y : (N,) array
        Target (dex).
    intervals : dict of float to (lo, hi)
        From :func:`predict_intervals` with many levels (e.g. :data:`RELIABILITY_LEVELS`).
    confidence : float
        Of the Clopper-Pearson band.

    Returns
    -------
    pandas.DataFrame
        Columns nominal, coverage, coverage_lo, coverage_hi, n, mean_width_dex; one row per level.
    """
    table = coverage_table(y, intervals, confidence=confidence)
    table = table.rename(columns={"level": "nominal"})
    return table[["nominal", "coverage", "coverage_lo", "coverage_hi", "n", "mean_width_dex"]].reset_index(
        drop=True
    )
