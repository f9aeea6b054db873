"""LightGBM training for M/L: objectives and weights, early stopping, determinism, top-k, CV search."""

from __future__ import annotations

import numpy as np
import pytest

from morphomass.config import GbmConfig
from morphomass.errors import InputDataError
from morphomass.gbm.train import (
    auto_threads,
    cv_search,
    fit_booster,
    lgb_params,
    predict_ml,
    prefilter_features,
    rank_by_split_count,
    training_target,
)

CONFIG = GbmConfig(
    num_leaves=8,
    min_data_in_leaf=10,
    learning_rate=0.1,
    max_rounds=2000,
    early_stopping_rounds=20,
    num_threads=1,
    seed=3,
)
NAMES = ["signal", "weak", "noise_a", "noise_b"]


def _problem(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    ml = np.exp(0.6 * x[:, 0] + 0.15 * x[:, 1] + rng.normal(0, 0.2, n))
    return x, ml, 0.1 * ml


@pytest.fixture(name="data", scope="module")
def fixture_data():
    x, ml, err = _problem(900, 0)
    return x[:700], ml[:700], err[:700], x[700:], ml[700:], err[700:]


def _fit(data, objective: str = "l1", **override):
    x, ml, err, xv, mlv, errv = data
    label, weight = training_target(ml, err, objective=objective)
    label_v, weight_v = training_target(mlv, errv, objective=objective)
    return fit_booster(
        x,
        label,
        weight,
        xv,
        label_v,
        weight_v,
        params=lgb_params(CONFIG, objective=objective, **override),
        feature_names=NAMES,
        max_rounds=CONFIG.max_rounds,
        early_stopping_rounds=CONFIG.early_stopping_rounds,
    )


def test_training_targets_make_the_papers_losses() -> None:
    ml, err = np.array([1.0, 4.0]), np.array([0.5, 2.0])
    label, weight = training_target(ml, err, objective="l1")
    np.testing.assert_allclose(label, ml)
    np.testing.assert_allclose(weight, [2.0, 0.5])
    np.testing.assert_allclose(training_target(ml, err, objective="l2")[1], [4.0, 0.25])
    label, weight = training_target(ml, err, objective="rmsle")
    np.testing.assert_allclose(label, [0.0, np.log10(4.0)])
    assert weight is None
    with pytest.raises(ValueError, match="objective must be one of"):
        training_target(ml, err, objective="huber")  # type: ignore[arg-type]


def test_params_carry_g1_and_determinism() -> None:
    params = lgb_params(GbmConfig(), objective="rmsle")
    assert params["objective"] == "l2" and params["metric"] == "l2"
    assert (
        params["num_leaves"],
        params["min_data_in_leaf"],
        params["feature_fraction"],
        params["bagging_fraction"],
    ) == (40, 150, 0.4, 0.8)
    assert params["deterministic"] and params["force_col_wise"]
    assert lgb_params(GbmConfig(), num_leaves=7)["num_leaves"] == 7
    with pytest.raises(ValueError, match="objective must be one of"):
        lgb_params(GbmConfig(), objective="mape")  # type: ignore[arg-type]


def test_fit_learns_stops_early_and_is_deterministic(data) -> None:
    first = _fit(data)
    _, _, _, xv, mlv, errv = data
    pred = predict_ml(first.booster, xv, objective="l1")
    l1 = np.mean(np.abs(pred - mlv) / errv)
    constant = np.mean(np.abs(np.median(mlv) - mlv) / errv)
    assert l1 < 0.5 * constant
    assert first.best_iteration <= first.rounds <= first.best_iteration + CONFIG.early_stopping_rounds
    assert first.rounds < CONFIG.max_rounds
    assert first.cpu_seconds > 0 and first.wall_seconds > 0
    second = _fit(data)
    assert first.booster.model_to_string() == second.booster.model_to_string()


def test_relative_early_stopping_stops_sooner_at_a_small_cost(data) -> None:
    x, ml, err, xv, mlv, errv = data
    label, weight = training_target(ml, err, objective="l1")
    label_v, weight_v = training_target(mlv, errv, objective="l1")
    fits = {
        tol: fit_booster(
            x,
            label,
            weight,
            xv,
            label_v,
            weight_v,
            params=lgb_params(CONFIG, learning_rate=0.02),
            feature_names=NAMES,
            max_rounds=3000,
            early_stopping_rounds=20,
            min_improvement=tol,
        )
        for tol in (0.0, 0.002)
    }
    assert fits[0.002].rounds < fits[0.0].rounds
    assert fits[0.002].rounds == fits[0.002].best_iteration + 20
    assert fits[0.0].best_score <= fits[0.002].best_score < 1.05 * fits[0.0].best_score


def test_rmsle_objective_predicts_ml_not_its_log(data) -> None:
    fit = _fit(data, objective="rmsle")
    _, _, _, xv, mlv, _ = data
    pred = predict_ml(fit.booster, xv, objective="rmsle")
    assert np.median(np.abs(np.log10(pred / mlv))) < 0.1


def test_prediction_floor(data) -> None:
    fit = _fit(data)
    pred = predict_ml(fit.booster, data[3], objective="l1", floor=5.0)
    assert pred.min() == 5.0


def test_split_ranking_counts_splits_up_to_the_best_iteration(data) -> None:
    booster = _fit(data).booster
    names = booster.feature_name()
    splits = booster.feature_importance("split", iteration=booster.best_iteration)
    gains = booster.feature_importance("gain", iteration=booster.best_iteration)
    expected = sorted((i for i in range(len(names)) if splits[i] > 0), key=lambda i: (-splits[i], -gains[i]))
    assert rank_by_split_count(booster) == [(names[i], int(splits[i])) for i in expected]


def test_fit_rejects_mismatched_inputs(data) -> None:
    x, ml, err, xv, mlv, errv = data
    params = lgb_params(CONFIG)
    with pytest.raises(InputDataError, match="700 feature rows but 699 labels"):
        fit_booster(
            x,
            ml[:-1],
            None,
            xv,
            mlv,
            None,
            params=params,
            feature_names=NAMES,
            max_rounds=5,
            early_stopping_rounds=2,
        )
    with pytest.raises(InputDataError, match="3 feature names for 4"):
        fit_booster(
            x,
            ml,
            None,
            xv,
            mlv,
            None,
            params=params,
            feature_names=NAMES[:3],
            max_rounds=5,
            early_stopping_rounds=2,
        )
    with pytest.raises(InputDataError, match="validation set is empty"):
        fit_booster(
            x,
            ml,
            None,
            xv[:0],
            mlv[:0],
            None,
            params=params,
            feature_names=NAMES,
            max_rounds=5,
            early_stopping_rounds=2,
        )


def test_cv_search_tries_the_whole_grid(data) -> None:
    x, ml, err = data[:3]
    label, weight = training_target(ml, err, objective="l1")
    grid = {"num_leaves": [4, 8], "min_data_in_leaf": [10, 400]}
    best, table = cv_search(
        x,
        label,
        weight,
        params=lgb_params(CONFIG),
        grid=grid,
        feature_names=NAMES,
        folds=3,
        max_rounds=200,
        early_stopping_rounds=10,
        seed=0,
    )
    assert [(r["num_leaves"], r["min_data_in_leaf"]) for r in table] == [(4, 10), (4, 400), (8, 10), (8, 400)]
    assert best == {k: min(table, key=lambda r: r["cv_loss"])[k] for k in grid}
    assert best["min_data_in_leaf"] == 10  # leaves of 400 of ~470 training rows cannot fit the signal


def test_prefilter_keeps_the_informative_columns() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(3000, 30)).astype(np.float32)
    ml = np.exp(0.5 * x[:, 7] + 0.3 * x[:, 21] + rng.normal(0, 0.05, 3000))
    label, weight = training_target(ml, 0.1 * ml, objective="l1")
    keep = prefilter_features(
        x, label, weight, params=lgb_params(CONFIG), n_keep=5, rng=np.random.default_rng(0)
    )
    assert keep.tolist() == sorted(keep.tolist()) and len(keep) == 5
    assert {7, 21} <= set(keep.tolist())
    everything = prefilter_features(
        x[:, :4], label, weight, params=lgb_params(CONFIG), n_keep=5, rng=np.random.default_rng(0)
    )
    assert everything.tolist() == [0, 1, 2, 3]


def test_auto_threads() -> None:
    assert auto_threads(2000, 2000, configured=0) == 1
    assert auto_threads(60_000, 2195, configured=0) == 0
    assert auto_threads(10, 10, configured=3) == 3
