"""LightGBM training for M/L (SPEC G1-G2, E11): objectives, early stopping, top-k selection, CV search.

Objectives (Dobbels+19 §2.3, App. B):

* ``l1``: L1~ = mean |pred - true| / err is LightGBM's ``l1`` (weighted-median leaves) with weight 1/err;
* ``l2``: L2~^2 is LightGBM's ``l2`` with weight 1/err^2;
* ``rmsle``: RMSLE is ``l2`` on log10 M/L, unweighted; predictions are 10**score.

The validation metric that drives early stopping is the same weighted loss (for ``l1`` it is L1~ times a
constant of the validation set, so the best round is the same). Training is deterministic for a given seed and
thread count (``deterministic=True`` with ``force_col_wise``). lightgbm is imported inside the functions, so
importing this module is cheap.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import NDArray

from morphomass.config import GbmConfig
from morphomass.errors import InputDataError

if TYPE_CHECKING:
    import lightgbm

__all__ = [
    "OBJECTIVES",
    "Objective",
    "SMALL_MATRIX_CELLS",
    "FitResult",
    "auto_threads",
    "cv_search",
    "early_stopping_callback",
    "fit_booster",
    "lgb_params",
    "predict_ml",
    "prefilter_features",
    "rank_by_split_count",
    "training_target",
]

logger = logging.getLogger(__name__)

Objective = Literal["l1", "l2", "rmsle"]
OBJECTIVES: tuple[str, ...] = ("l1", "l2", "rmsle")
_LGB_OBJECTIVE = {"l1": "l1", "l2": "l2", "rmsle": "l2"}


def lgb_params(config: GbmConfig, *, objective: Objective = "l1", **overrides: Any) -> dict[str, Any]:
    """LightGBM parameters for one model: the G1 tree settings, the dataset settings, determinism.

    Parameters
    ----------
    config : GbmConfig
    objective : {'l1', 'l2', 'rmsle'}
        Loss to minimise (see the module docstring).
    **overrides
        Values that replace the configured ones (the CV grid's).

    Returns
    -------
    dict
        Ready for ``lightgbm.train``.
    """
    if objective not in OBJECTIVES:
        msg = f"objective must be one of {OBJECTIVES}, got {objective!r}"
        raise ValueError(msg)
    params: dict[str, Any] = {
        "objective": _LGB_OBJECTIVE[objective],
        "metric": _LGB_OBJECTIVE[objective],
        "num_leaves": config.num_leaves,
        "min_data_in_leaf": config.min_data_in_leaf,
        "feature_fraction": config.feature_fraction,
        "bagging_fraction": config.bagging_fraction,
        "bagging_freq": config.bagging_freq,
        "learning_rate": config.learning_rate,
        "max_bin": config.max_bin,
        "force_col_wise": True,
        "deterministic": True,
        "seed": config.seed,
        "num_threads": config.num_threads,
        "verbosity": -1,
    }
    params.update(overrides)
    return params


#: Training matrices smaller than this (rows x features) use one thread when ``gbm.num_threads`` is 0:
#: LightGBM's OpenMP barriers cost more than they save on small data, and far more on a busy machine.
SMALL_MATRIX_CELLS = 10_000_000


def auto_threads(n_rows: int, n_features: int, *, configured: int) -> int:
    """Choose the threads of one training: ``configured`` if > 0, else 1 (small matrices) or 0 (all cores).

    Parameters
    ----------
    n_rows, n_features : int
        Shape of the training matrix.
    configured : int
        ``gbm.num_threads`` (0: automatic).
    """
    if configured > 0:
        return configured
    return 1 if n_rows * n_features < SMALL_MATRIX_CELLS else 0


def training_target(
    ml: NDArray[np.floating], ml_err: NDArray[np.floating], *, objective: Objective
) -> tuple[NDArray[np.float64], NDArray[np.float64] | None]:
    """Label and sample weight that make LightGBM's loss the requested M/L loss.

    Parameters
    ----------
    ml, ml_err : (N,) array
        True M/L and its uncertainty (solar units, positive).
    objective : {'l1', 'l2', 'rmsle'}

    Returns
    -------
    label : (N,) ndarray of float64
        M/L, or log10 M/L for ``rmsle``.
    weight : (N,) ndarray of float64 or None
        1/err (``l1``), 1/err^2 (``l2``), None (``rmsle``).
    """
    ml = np.asarray(ml, dtype=np.float64)
    err = np.asarray(ml_err, dtype=np.float64)
    if objective == "l1":
        return ml, 1.0 / err
    if objective == "l2":
        return ml, 1.0 / err**2
    if objective == "rmsle":
        return np.log10(ml), None
    msg = f"objective must be one of {OBJECTIVES}, got {objective!r}"
    raise ValueError(msg)


def predict_ml(
    booster: lightgbm.Booster, x: NDArray[np.floating], *, objective: Objective, floor: float = 0.0
) -> NDArray[np.float64]:
    """Predicted M/L of a trained booster (its best iteration), at least ``floor``.

    Parameters
    ----------
    booster : lightgbm.Booster
    x : (N, F) array
        Features in the booster's order.
    objective : {'l1', 'l2', 'rmsle'}
        The objective it was trained with (``rmsle`` boosters predict log10 M/L).
    floor : float
        Lower bound of the returned M/L (solar units); an l1/l2 booster can in principle predict zero or less.

    Returns
    -------
    (N,) ndarray of float64
    """
    raw = booster.predict(x, num_iteration=booster.best_iteration or None)
    ml = 10.0**raw if objective == "rmsle" else raw
    return np.maximum(np.asarray(ml, dtype=np.float64), floor)


def early_stopping_callback(patience: int, min_improvement: float = 0.0) -> Callable[[Any], None]:
    """LightGBM callback: stop when the validation loss has not improved enough for ``patience`` rounds.

    Parameters
    ----------
    patience : int
        Rounds without a counted improvement before stopping.
    min_improvement : float
        Relative decrease of the (first, lower-is-better) validation metric that counts as an improvement;
        0 is LightGBM's own early stopping (any decrease counts). The model keeps the rounds up to the last
        counted improvement.

    Returns
    -------
    callable
        For ``lightgbm.train`` or ``lightgbm.cv``.
    """
    import lightgbm as lgb

    if min_improvement <= 0:
        return lgb.early_stopping(patience, first_metric_only=True, verbose=False)
    state: dict[str, Any] = {"best": math.inf, "iteration": -1, "scores": []}

    def callback(env: Any) -> None:
        score = env.evaluation_result_list[0][2]
        if state["iteration"] < 0 or score < state["best"] * (1.0 - min_improvement):
            state.update(best=score, iteration=env.iteration, scores=list(env.evaluation_result_list))
        elif env.iteration - state["iteration"] >= patience or env.iteration == env.end_iteration - 1:
            raise lgb.callback.EarlyStopException(state["iteration"], state["scores"])

    callback.order = 30  # type: ignore[attr-defined]  # after LightGBM's evaluation, like its own callback
    return callback


@dataclass
class FitResult:
    """A trained booster and what it cost.

    Attributes
    ----------
    booster : lightgbm.Booster
        Its ``best_iteration`` is the early-stopping round.
    best_iteration : int
    rounds : int
        Boosting rounds run (best iteration + patience, or the maximum).
    cpu_seconds : float
        Process CPU time (all threads) for building the datasets and training.
    wall_seconds : float
    best_score : float
        Validation loss at the best iteration (LightGBM's weighted metric).
    """

    booster: Any
    best_iteration: int
    rounds: int
    cpu_seconds: float
    wall_seconds: float
    best_score: float


def _check_matrix(x: NDArray[np.floating], label: NDArray[np.floating], name: str) -> None:
    if x.ndim != 2:
        msg = f"{name} features must be a 2-D array, got shape {x.shape}"
        raise InputDataError(msg)
    if x.shape[0] != label.shape[0]:
        msg = f"{name}: {x.shape[0]} feature rows but {label.shape[0]} labels"
        raise InputDataError(msg)
    if x.shape[0] == 0:
        msg = f"{name} set is empty"
        raise InputDataError(msg)


def fit_booster(
    x_train: NDArray[np.floating],
    label_train: NDArray[np.floating],
    weight_train: NDArray[np.floating] | None,
    x_val: NDArray[np.floating],
    label_val: NDArray[np.floating],
    weight_val: NDArray[np.floating] | None,
    *,
    params: dict[str, Any],
    feature_names: Sequence[str],
    max_rounds: int,
    early_stopping_rounds: int,
    min_improvement: float = 0.0,
) -> FitResult:
    """Train one LightGBM model with early stopping on the validation set.

    Parameters
    ----------
    x_train, x_val : (N, F) array of float32 or float64
        Features (NaN = missing).
    label_train, label_val : (N,) array
        From :func:`training_target`.
    weight_train, weight_val : (N,) array or None
    params : dict
        From :func:`lgb_params`.
    feature_names : sequence of str
        F names (saved in the model file).
    max_rounds, early_stopping_rounds : int
    min_improvement : float
        Relative improvement that counts for early stopping (:func:`early_stopping_callback`).

    Returns
    -------
    FitResult
    """
    import lightgbm as lgb

    _check_matrix(x_train, label_train, "training")
    _check_matrix(x_val, label_val, "validation")
    if len(feature_names) != x_train.shape[1] or x_val.shape[1] != x_train.shape[1]:
        msg = (
            f"{len(feature_names)} feature names for {x_train.shape[1]} training / {x_val.shape[1]} "
            "validation columns"
        )
        raise InputDataError(msg)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    train_set = lgb.Dataset(
        x_train,
        label_train,
        weight=weight_train,
        feature_name=list(feature_names),
        params=params,
        free_raw_data=True,
    )
    val_set = lgb.Dataset(x_val, label_val, weight=weight_val, reference=train_set, free_raw_data=True)
    rounds = [0]

    def count(env: Any) -> None:
        rounds[0] = env.iteration + 1

    booster = lgb.train(
        params,
        train_set,
        num_boost_round=max_rounds,
        valid_sets=[val_set],
        valid_names=["val"],
        callbacks=[count, early_stopping_callback(early_stopping_rounds, min_improvement)],
    )
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    best = int(booster.best_iteration) or int(booster.current_iteration())
    metric = params["metric"]
    score = booster.best_score.get("val", {}).get(metric, float("nan"))
    return FitResult(
        booster=booster,
        best_iteration=best,
        rounds=rounds[0],
        cpu_seconds=cpu,
        wall_seconds=wall,
        best_score=float(score),
    )


def prefilter_features(
    x: NDArray[np.floating],
    label: NDArray[np.floating],
    weight: NDArray[np.floating] | None,
    *,
    params: dict[str, Any],
    n_keep: int,
    rng: np.random.Generator,
    row_fraction: float = 0.25,
    rounds: int = 30,
    min_rows: int = 2000,
) -> NDArray[np.int64]:
    """Columns worth giving to the full model: the ``n_keep`` with most gain in a cheap screening model.

    The screening model has the same tree parameters except that every tree may split on every feature
    (``feature_fraction`` 1: with the G1 fraction of 0.4 each feature would be offered to only 40 % of the
    screen's few trees, and the ranking becomes a lottery), four times the learning rate and ``rounds``
    rounds, and sees a random ``row_fraction`` of the rows (at least ``min_rows``). Features it never splits
    on rank last. On the 60 000 x 2195 benchmark matrix (bench/README.md) this keeps the full model within
    0.2-0.6 % of the validation L1~ of all features, against 0.9-1.4 % with the G1 fraction, for ~2 CPU-s
    more.

    Parameters
    ----------
    x : (N, F) array
    label, weight : (N,) arrays (weight may be None)
    params : dict
        From :func:`lgb_params`.
    n_keep : int
        Columns to keep (all when F <= n_keep).
    rng : numpy.random.Generator
        Draws the row subset.

    Returns
    -------
    (min(n_keep, F),) ndarray of int64
        Sorted column indices.
    """
    import lightgbm as lgb

    n_rows, n_features = x.shape
    if n_features <= n_keep:
        return np.arange(n_features)
    n_sub = min(n_rows, max(min_rows, int(row_fraction * n_rows)))
    rows = np.sort(rng.choice(n_rows, size=n_sub, replace=False))
    screen = {**params, "learning_rate": min(1.0, 4 * params["learning_rate"]), "feature_fraction": 1.0}
    data = lgb.Dataset(x[rows], label[rows], weight=None if weight is None else weight[rows], params=screen)
    booster = lgb.train(screen, data, num_boost_round=rounds)
    gain = booster.feature_importance("gain")
    return np.sort(np.argsort(-gain, kind="stable")[:n_keep])


def rank_by_split_count(booster: lightgbm.Booster) -> list[tuple[str, int]]:
    """Features by how often the trees split on them (up to the best iteration), most used first.

    Ties are broken by total gain, then by name, so the ranking is deterministic.

    Returns
    -------
    list of (name, split count)
        Only features used at least once.
    """
    iteration = booster.best_iteration or None
    names = booster.feature_name()
    splits = booster.feature_importance("split", iteration=iteration)
    gains = booster.feature_importance("gain", iteration=iteration)
    order = sorted(range(len(names)), key=lambda i: (-int(splits[i]), -float(gains[i]), names[i]))
    return [(names[i], int(splits[i])) for i in order if splits[i] > 0]


def cv_search(
    x: NDArray[np.floating],
    label: NDArray[np.floating],
    weight: NDArray[np.floating] | None,
    *,
    params: dict[str, Any],
    grid: dict[str, list[float]],
    feature_names: Sequence[str],
    folds: int,
    max_rounds: int,
    early_stopping_rounds: int,
    seed: int,
    min_improvement: float = 0.0,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """k-fold cross-validated grid search of LightGBM parameters (SPEC G1), one binned Dataset for all folds.

    Parameters
    ----------
    x, label, weight
        Training set (see :func:`fit_booster`).
    params : dict
        Base parameters; each grid point overrides some of them.
    grid : dict of str to list
        Parameter name -> candidate values (the full product is tried).
    feature_names : sequence of str
    folds : int
        Number of folds (shuffled with ``seed``).
    max_rounds, early_stopping_rounds : int
        Each fold set stops when the mean held-out loss has not improved for ``early_stopping_rounds``
        (by at least ``min_improvement``, relative).
    seed : int

    Returns
    -------
    best : dict
        The winning grid point (parameter -> value).
    table : list of dict
        Every grid point with its mean and std held-out loss and best round, in grid order.
    """
    import lightgbm as lgb

    _check_matrix(x, label, "cross-validation")
    dataset = lgb.Dataset(
        x, label, weight=weight, feature_name=list(feature_names), params=params, free_raw_data=False
    )
    names = list(grid)
    table = []
    for values in itertools.product(*(grid[n] for n in names)):
        point = dict(zip(names, values, strict=True))
        trial = {**params, **point}
        result = lgb.cv(
            trial,
            dataset,
            num_boost_round=max_rounds,
            nfold=folds,
            stratified=False,
            shuffle=True,
            seed=seed,
            callbacks=[early_stopping_callback(early_stopping_rounds, min_improvement)],
        )
        key = f"valid {params['metric']}-mean"
        means = result[key]
        stds = result[key.replace("-mean", "-stdv")]
        table.append(
            {**point, "cv_loss": float(means[-1]), "cv_loss_std": float(stds[-1]), "rounds": len(means)}
        )
        logger.info("CV %s: loss %.4f after %d rounds", point, means[-1], len(means))
    best_row = min(table, key=lambda row: row["cv_loss"])
    return {n: best_row[n] for n in names}, table
