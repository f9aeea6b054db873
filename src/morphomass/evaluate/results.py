"""The evaluate stage's numbers: every model's predictions, then the metrics.json result (pure, no I/O).

:func:`compute_predictions` gathers the baselines fitted here (constant, g-i power laws, Zibetti+09) and the
GBM predictions of ``train-gbm``; :func:`compute_results` turns them into one
:class:`~morphomass.metrics_schema.MetricsFile` (test metrics with their bootstrap standard errors and 95 %
intervals, E8 significance with the paired bootstrap test and its verdict, E9 per-class L1~, importances).

Randomness: the E8 bootstraps draw from ``default_rng(evaluate.seed)`` in a fixed order; the intervals of
every metric draw one matrix of resample counts over the test galaxies from an independent stream of the same
seed (``SeedSequence(seed, spawn_key=(1,))``), shared by every experiment, so that all experiments are scored
on the same resampled galaxies.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from morphomass.config import EvaluateConfig
from morphomass.errors import ConfigError
from morphomass.evaluate.baselines import (
    ZIBETTI09_GI_G,
    colour_from_fluxes,
    fit_constant,
    fit_powerlaw,
    predict_powerlaw,
)
from morphomass.evaluate.inputs import CNN1_PROBS
from morphomass.evaluate.metrics import compute_metrics, l1_tilde_per_galaxy
from morphomass.evaluate.statistics import (
    MORPHOLOGY_CLASSES,
    assign_classes,
    bootstrap_means,
    bootstrap_metrics,
    draw_bootstrap_counts,
    is_resolved,
    ks_one_sided_pvalue,
    paired_bootstrap_pvalue,
    summarize_bootstrap,
)
from morphomass.metrics_schema import MetricsFile
from morphomass.targets import ML_G, Target

__all__ = [
    "ALIASES",
    "IMPORTANCE_MODELS",
    "SIGNIFICANCE_PAIRS",
    "Predictions",
    "compute_baselines",
    "compute_classes",
    "compute_intervals",
    "compute_predictions",
    "compute_results",
    "count_classes",
    "select_experiments",
]

logger = logging.getLogger(__name__)

#: Loss-table names that are the same model as an experiment trained for L1~.
ALIASES: dict[str, str] = {
    "loss_g_morph_l1": "g_morph",
    "loss_gi_morph_l1": "gi_morph",
    "loss_gi_powerlaw_l1": "gi_powerlaw",
}
#: Comparisons tested (E8, and B2: every finding of the report): (name, candidate, reference). The paper's two
#: come first, so that their numbers do not depend on the others (one random stream, drawn in this order).
SIGNIFICANCE_PAIRS: tuple[tuple[str, str, str], ...] = (
    ("gi_morph_vs_gi_gbm", "gi_morph", "gi_gbm"),
    ("g_morph_vs_reference_lg_z", "g_morph", "reference_lg_z"),
    ("gi_gbm_vs_gi_powerlaw", "gi_gbm", "gi_powerlaw"),
    ("g_morph_vs_ablation_no_cnn", "g_morph", "ablation_no_cnn"),
    ("g_classical_vs_reference_lg_z", "g_classical", "reference_lg_z"),
    ("g_morph_classical_vs_g_morph", "g_morph_classical", "g_morph"),
    ("gi_morph_classical_vs_gi_gbm", "gi_morph_classical", "gi_gbm"),
)
#: Models whose permutation importances go into metrics.json.
IMPORTANCE_MODELS: tuple[str, ...] = ("g_morph", "ablation_no_cnn4")
_ORDER: tuple[str, ...] = (
    "constant",
    "reference_lg_z",
    "g_morph",
    "ablation_no_cnn123",
    "ablation_no_cnn4",
    "ablation_no_luminosity",
    "ablation_no_distance",
    "ablation_no_cnn",
    "g_morph_top50",
    "g_morph_half_train",
    "g_morph_no_total_luminosity",
    "g_morph_gz2_truth",
    "g_classical",
    "g_morph_classical",
    "gi_powerlaw",
    "gi_zibetti09",
    "gi_gbm",
    "gi_morph",
    "gi_classical",
    "gi_morph_classical",
)


@dataclass(frozen=True)
class Predictions:
    """Every model's predicted M/L for the evaluated galaxies.

    Attributes
    ----------
    values : dict of str to (N,) ndarray of float64
        Predicted M/L (solar units) per model, in the order of the evaluated galaxies; NaN = not applicable.
    n_features : dict of str to int
        Number of input features per model.
    fits : dict
        The fitted baselines (constant, power-law coefficients, colour range, excluded test galaxies).
    names : list of str
        The experiments to evaluate, in report order.
    target : Target
        What the values predict (:mod:`morphomass.targets`; M/L_g by default).
    """

    values: dict[str, NDArray[np.float64]]
    n_features: dict[str, int]
    fits: dict[str, Any]
    names: list[str]
    target: Target = ML_G


def compute_baselines(
    meta: pd.DataFrame, train: NDArray[np.bool_], cfg: EvaluateConfig, target: Target = ML_G
) -> tuple[dict[str, NDArray[np.float64]], dict[str, int], dict[str, Any]]:
    """Fit the constant and colour baselines on the training split and predict every galaxy.

    For a target already in dex the colour "power laws" are linear relations in it, and Zibetti et al.'s
    (2009) M/L_g relation is left out unless the target is M/L_g.

    Returns
    -------
    predictions : dict of str to (N,) ndarray
        NaN where a colour baseline does not apply (colour missing or outside the fitted range).
    n_features : dict of str to int
    fits : dict
    """
    ml, err = meta["target"].to_numpy(np.float64), meta["target_err"].to_numpy(np.float64)
    in_dex = target.in_dex
    preds = {"constant": np.full(len(meta), fit_constant(ml[train], err[train]))}
    n_features = {"constant": 0}
    fits: dict[str, Any] = {"constant": float(preds["constant"][0])}
    if not {"flux_g", "flux_i"} <= set(meta.columns):
        logger.warning("sample.parquet lacks flux_g or flux_i: the g-i power laws are not evaluated")
        return preds, n_features, fits
    colour = colour_from_fluxes(meta["flux_g"].to_numpy(), meta["flux_i"].to_numpy())
    train_colour = colour[train & np.isfinite(colour)]
    lo = train_colour.min() - cfg.powerlaw_colour_margin_mag
    hi = train_colour.max() + cfg.powerlaw_colour_margin_mag
    usable = np.isfinite(colour) & (colour >= lo) & (colour <= hi)
    fits["colour_range_mag"] = [float(lo), float(hi)]
    fits["excluded_test"] = int((~usable & (meta["split"] == "test").to_numpy()).sum())
    for loss in ("l1", "l2") if in_dex else ("l1", "l2", "rmsle"):  # no log of a target in dex
        coeffs = fit_powerlaw(colour[train], ml[train], err[train], loss=loss, in_dex=in_dex)
        name = "gi_powerlaw" if loss == "l1" else f"loss_gi_powerlaw_{loss}"
        preds[name] = np.where(usable, predict_powerlaw(colour, coeffs, in_dex=in_dex), np.nan)
        n_features[name] = 1
        fits[name] = {"a": coeffs[0], "b": coeffs[1]}
    if target.name != ML_G.name:
        return preds, n_features, fits
    preds["gi_zibetti09"] = np.where(usable, predict_powerlaw(colour, ZIBETTI09_GI_G), np.nan)
    n_features["gi_zibetti09"] = 1
    fits["gi_zibetti09"] = {"a": ZIBETTI09_GI_G[0], "b": ZIBETTI09_GI_G[1]}
    return preds, n_features, fits


def _report_order(name: str) -> tuple[int, str]:
    """Sort key: the paper's order (E1-E7), then the band sequence, then the loss table."""
    if name in _ORDER:
        return _ORDER.index(name), ""
    if name.startswith("bands_"):
        return len(_ORDER), ""
    return len(_ORDER) + 1, name


def select_experiments(available: list[str], requested: list[str]) -> list[str]:
    """Return the requested experiments (``"all"``: every available one) in report order.

    Raises
    ------
    ConfigError
        A requested experiment is not available.
    """
    ordered = sorted(available, key=_report_order)  # stable: bands keep their sequence order
    if "all" in requested:
        return ordered
    unknown = [n for n in requested if n not in available]
    if unknown:
        msg = f"evaluate.experiments: unknown or unavailable experiments {unknown}; available: {ordered}"
        raise ConfigError(msg)
    return [n for n in ordered if n in requested]


def compute_predictions(
    meta: pd.DataFrame,
    gbm_predictions: pd.DataFrame,
    gbm_info: dict[str, dict[str, Any]],
    cfg: EvaluateConfig,
    target: Target = ML_G,
) -> Predictions:
    """Gather the baselines' and the GBMs' predictions (``pred_<name>`` columns) and select the experiments.

    Parameters
    ----------
    meta : DataFrame
        Sample rows of the evaluated galaxies (``target``, ``target_err``, ``split``, ``flux_g``, ``flux_i``).
    gbm_predictions : DataFrame
        One ``pred_<name>`` column per GBM experiment, row-aligned with ``meta``.
    gbm_info : dict of str to dict
        Per GBM experiment, at least ``n_features``.
    cfg : EvaluateConfig
    target : Target
        What the sample's ``target`` column is.

    Returns
    -------
    Predictions
    """
    values, n_features, fits = compute_baselines(meta, (meta["split"] == "train").to_numpy(), cfg, target)
    for name, info in gbm_info.items():
        values[name] = gbm_predictions[f"pred_{name}"].to_numpy(np.float64)
        n_features[name] = int(info["n_features"])
    for alias, original in ALIASES.items():
        if original in values:
            values[alias], n_features[alias] = values[original], n_features[original]
    names = select_experiments(list(values), list(cfg.experiments))
    return Predictions(values=values, n_features=n_features, fits=fits, names=names, target=target)


def compute_classes(cnn: pd.DataFrame, cfg: EvaluateConfig) -> NDArray[np.str_]:
    """E9 class per galaxy from CNN1's probabilities (:data:`~morphomass.evaluate.inputs.CNN1_PROBS`)."""
    return assign_classes(
        cnn[CNN1_PROBS["irregular"]],
        cnn[CNN1_PROBS["edge_on"]],
        cnn[CNN1_PROBS["feature"]],
        irregular_min=cfg.irregular_min_p,
        edge_on_min=cfg.edge_on_min_p,
        feature_min=cfg.feature_min_p,
    )


def count_classes(classes: NDArray[np.str_], split: NDArray[np.str_]) -> dict[str, int]:
    """Count the test galaxies per E9 class."""
    return {cls: int(((split == "test") & (classes == cls)).sum()) for cls in MORPHOLOGY_CLASSES}


def _clean(obj: Any) -> Any:
    """Return a JSON-safe copy: NaN/inf become None, numpy scalars become Python numbers."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(float(obj)) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def compute_intervals(
    pred: NDArray[np.float64],
    ml: NDArray[np.float64],
    err: NDArray[np.float64],
    counts: NDArray[np.float64],
    *,
    threshold_dex: float,
    in_dex: bool = False,
) -> dict[str, dict[str, Any]]:
    """Bootstrap standard error and 95 % percentile interval of every metric (M1-M5) of one model (B2).

    Parameters
    ----------
    pred, ml, err : (N,) ndarray
        Predicted M/L (NaN where the model does not apply), true M/L and its error, of the test galaxies.
    counts : (R, N) ndarray
        Resample counts of the test galaxies (:func:`~morphomass.evaluate.statistics.draw_bootstrap_counts`),
        the same for every model. Each resample is scored on the galaxies of it the model applies to.
    threshold_dex : float
        The M5 threshold.
    in_dex : bool
        The target is already in dex (M3, M5 on ``pred - true``).

    Returns
    -------
    dict
        ``{"se": {metric: float}, "ci95": {metric: [lo, hi]}}`` keyed by
        :data:`~morphomass.evaluate.metrics.METRIC_KEYS` (NaN where too few resamples hold such a galaxy).
    """
    ok = np.isfinite(pred)
    weights = counts if ok.all() else counts[:, ok]
    distributions = bootstrap_metrics(
        pred[ok], ml[ok], err[ok], weights, threshold_dex=threshold_dex, in_dex=in_dex
    )
    se, ci95 = {}, {}
    for key, values in distributions.items():
        se[key], interval = summarize_bootstrap(values, level=0.95)
        ci95[key] = list(interval)
    return {"se": se, "ci95": ci95}


def _compute_experiments(
    predictions: Predictions,
    ml: NDArray,
    err: NDArray,
    test: NDArray[np.bool_],
    threshold_dex: float,
    counts: NDArray[np.float64],
) -> dict[str, dict[str, Any]]:
    experiments = {}
    in_dex = predictions.target.in_dex
    for name in predictions.names:
        pred = predictions.values[name]
        ok = test & np.isfinite(pred)
        metrics = compute_metrics(pred[ok], ml[ok], err[ok], threshold_dex=threshold_dex, in_dex=in_dex)
        intervals = compute_intervals(
            pred[test], ml[test], err[test], counts, threshold_dex=threshold_dex, in_dex=in_dex
        )
        experiments[name] = {
            **metrics,
            "n_test": int(ok.sum()),
            "n_features": predictions.n_features[name],
            **intervals,
        }
    return experiments


def _compute_significance(
    predictions: Predictions,
    ml: NDArray,
    err: NDArray,
    test: NDArray[np.bool_],
    *,
    n_resamples: int,
    rng: np.random.Generator,
) -> dict[str, dict[str, Any]]:
    preds = predictions.values
    significance = {}
    for key, cand, ref in SIGNIFICANCE_PAIRS:
        if cand in predictions.names and ref in predictions.names:
            ok = test & np.isfinite(preds[cand]) & np.isfinite(preds[ref])
            l1 = {n: l1_tilde_per_galaxy(preds[n][ok], ml[ok], err[ok]) for n in (cand, ref)}
            boots = {n: bootstrap_means(l1[n], n_resamples=n_resamples, rng=rng) for n in (cand, ref)}
            paired = paired_bootstrap_pvalue(l1[cand], l1[ref], n_resamples=n_resamples, rng=rng)
            significance[key] = {
                "ks_pvalue": ks_one_sided_pvalue(l1[cand], l1[ref]),
                "bootstrap_mean_l1": {n: [float(b.mean()), float(b.std())] for n, b in boots.items()},
                "paired_bootstrap_pvalue": paired,
                "resolved": is_resolved(paired),
            }
    return significance


def _compute_per_class(
    predictions: Predictions, classes: NDArray[np.str_], ml: NDArray, err: NDArray, test: NDArray[np.bool_]
) -> dict[str, dict[str, float | None]]:
    preds = predictions.values
    per_class: dict[str, dict[str, float | None]] = {}
    for cls in MORPHOLOGY_CLASSES:
        sel = test & (classes == cls)
        per_class[cls] = {
            n: float(np.mean(l1_tilde_per_galaxy(preds[n][sel], ml[sel], err[sel]))) if sel.any() else None
            for n in ("gi_gbm", "gi_morph")
            if n in predictions.names
        }
    return per_class


def _target_info(target: Target) -> dict[str, str]:
    """Return the ``target`` section of metrics.json (DESIGN §4: name and error; kind, unit, prediction)."""
    return {
        "name": target.name,
        "error": "ml_err" if target.name == ML_G.name else target.error_column,
        "kind": target.kind,
        "unit": target.unit,
        "prediction": target.prediction,
        "description": target.description,
    }


def compute_results(
    meta: pd.DataFrame,
    predictions: Predictions,
    classes: NDArray[np.str_],
    importance: dict[str, list[dict[str, Any]]],
    *,
    preset: str,
    cfg: EvaluateConfig,
    uncertainty: dict[str, dict[str, Any]] | None = None,
) -> MetricsFile:
    """Compute the whole content of results/metrics.json (DESIGN §4).

    Parameters
    ----------
    meta : DataFrame
        Sample rows of the evaluated galaxies: ``split``, ``target`` and ``target_err``.
    predictions : Predictions
        From :func:`compute_predictions`; only ``predictions.names`` are evaluated.
    classes : (N,) ndarray of str
        E9 class per galaxy (:func:`compute_classes`).
    importance : dict of str to list of dict
        Permutation importances per GBM experiment (``feature``, ``importance``).
    preset : str
        The configuration's preset name.
    cfg : EvaluateConfig
        Uses ``dex_threshold``, ``bootstrap_samples`` (E8), ``interval_resamples`` (the intervals) and
        ``seed`` (the bootstraps' only randomness; see the module docstring).
    uncertainty : dict or None
        The ``uncertainty`` section (:func:`~morphomass.evaluate.uncertainty.compute_uncertainty`).

    Returns
    -------
    MetricsFile
        Validated; NaN and infinities are stored as None.
    """
    split = meta["split"].to_numpy()
    test = split == "test"
    ml, err = meta["target"].to_numpy(np.float64), meta["target_err"].to_numpy(np.float64)
    rng = np.random.default_rng(cfg.seed)
    counts = draw_bootstrap_counts(
        max(1, int(test.sum())),
        n_resamples=cfg.interval_resamples,
        rng=np.random.default_rng(np.random.SeedSequence(cfg.seed, spawn_key=(1,))),
    )
    data = {
        "preset": preset,
        "target": _target_info(predictions.target),
        "n": {s: int((split == s).sum()) for s in ("train", "val", "test")},
        "experiments": _compute_experiments(predictions, ml, err, test, cfg.dex_threshold, counts),
        "significance": _compute_significance(
            predictions, ml, err, test, n_resamples=cfg.bootstrap_samples, rng=rng
        ),
        "per_class": _compute_per_class(predictions, classes, ml, err, test),
        "importance": {
            n: [{"feature": r["feature"], "importance": r["importance"]} for r in importance[n]]
            for n in IMPORTANCE_MODELS
            if n in importance
        },
        "uncertainty": uncertainty or {},
    }
    return MetricsFile.model_validate(_clean(data))
