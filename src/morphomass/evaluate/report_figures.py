"""The report's figures (Dobbels+19 Figs. 2, 4-8) from the evaluate stage's inputs and result (no I/O).

:func:`make_figures` yields each figure with its file stem and caption; the stage writes them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from numpy.typing import NDArray

from morphomass.config import EvaluateConfig
from morphomass.evaluate import figures as figs
from morphomass.evaluate.inputs import CNN1_PROBS, EvaluateInputs
from morphomass.evaluate.results import Predictions
from morphomass.evaluate.uncertainty import interval_width_errors, test_intervals
from morphomass.metrics_schema import MetricsFile

__all__ = ["make_figures"]

_COLOUR_MODELS: tuple[tuple[str, str], ...] = (
    ("gi_powerlaw", "g-i power law"),
    ("gi_gbm", "GBM (z, L_g, L_i, L_g/L_i)"),
    ("gi_morph", "GBM + g-band morphology"),
)


def _fig6_inputs(
    inputs: EvaluateInputs, classes: NDArray[np.str_], train: NDArray[np.bool_]
) -> dict[str, Any]:
    """Return the keyword arguments of :func:`~morphomass.evaluate.figures.plot_feature_relations`."""
    meta, cnn = inputs.meta, inputs.cnn
    ml = meta["target"].to_numpy(np.float64)
    p_feature = cnn[CNN1_PROBS["feature"]].to_numpy(np.float64)
    cnn4_cols = [c for c in cnn.columns if c.startswith("cnn4_")]
    cnn4, label = None, "CNN4 feature"
    if cnn4_cols:
        ranks = (
            cnn.loc[train, cnn4_cols]
            .reset_index(drop=True)
            .rank()
            .corrwith(pd.Series(ml[train]).rank())
            .abs()
        )
        ranks = ranks.reindex(cnn4_cols).fillna(0)
        best = str(ranks.idxmax())
        cnn4, label = cnn[best].to_numpy(np.float64)[train], f"{best} (Spearman |rho| {ranks[best]:.2f})"
    with np.errstate(divide="ignore", invalid="ignore"):
        log_lum = np.log10(inputs.lum_total[train])
    return {
        "ml": ml[train],
        "log_lum": log_lum,
        "redshift": meta["z"].to_numpy(np.float64)[train],
        "p_feature": p_feature[train],
        "classes": classes[train],
        "cnn4": cnn4,
        "cnn4_label": label,
        "in_dex": inputs.target.in_dex,
        "symbol": inputs.target.symbol,
    }


def make_figures(
    inputs: EvaluateInputs,
    predictions: Predictions,
    results: MetricsFile,
    classes: NDArray[np.str_],
    cfg: EvaluateConfig,
) -> Iterator[tuple[str, Figure, str]]:
    """Yield ``(stem, figure, caption)`` for every figure the inputs allow, in the report's order.

    Parameters
    ----------
    inputs : EvaluateInputs
    predictions : Predictions
    results : MetricsFile
    classes : (N,) ndarray of str
        E9 class per evaluated galaxy.
    cfg : EvaluateConfig
        Uses ``dex_threshold``.
    """
    meta, sample, preds = inputs.meta, inputs.sample, predictions.values
    split = meta["split"].to_numpy()
    train, test = split == "train", split == "test"
    ml, err = meta["target"].to_numpy(np.float64), meta["target_err"].to_numpy(np.float64)
    target = inputs.target
    shown = {"in_dex": target.in_dex, "symbol": target.symbol}
    groups = {s: sample.loc[sample["split"] == s, "target"].to_numpy() for s in ("train", "val", "test")}
    if inputs.chi2_rejected_target is not None:
        groups["chi2_r >= 5"] = inputs.chi2_rejected_target
    yield (
        "fig2_ml_histograms",
        figs.plot_ml_histograms(groups, **shown),
        f"Fig. 2: {target.name} per split (whole sample) and of the galaxies rejected by chi2_r >= 5.",
    )
    if {"reference_lg_z", "g_morph"} <= set(preds):
        models = {
            "reference (L_g, z)": preds["reference_lg_z"][test],
            "g-band + morphology": preds["g_morph"][test],
        }
        yield (
            "fig4_pred_vs_true",
            figs.plot_pred_vs_true(ml[test], err[test], models, threshold_dex=cfg.dex_threshold, **shown),
            "Fig. 4: test set, without (top) and with (bottom) morphology; dex error "
            "and signed L1~ histograms, dashed at +-0.15 dex.",
        )
    if results.importance:
        importances = {
            "all features" if n == "g_morph" else "no CNN4": [r.model_dump() for r in rows]
            for n, rows in results.importance.items()
        }
        yield (
            "fig5_importance",
            figs.plot_importances(importances),
            "Fig. 5: permutation importance on the validation set (increase of L1~).",
        )
    yield (
        "fig6_features",
        figs.plot_feature_relations(**_fig6_inputs(inputs, classes, train)),
        f"Fig. 6: training set; {target.name} vs total luminosity coloured by CNN1's P(feature), vs "
        f"redshift, per class, vs the CNN4 feature most correlated with {target.name}.",
    )
    colour_models = {label: preds[n][test] for n, label in _COLOUR_MODELS if n in preds}
    if colour_models:
        yield (
            "fig7_colour",
            figs.plot_colour_methods(ml[test], colour_models, threshold_dex=cfg.dex_threshold, **shown),
            "Fig. 7: colour methods on the test set and their dex errors.",
        )
    experiments = results.experiments
    band_sets = [
        n[len("bands_") :] for n in experiments if n.startswith("bands_") and not n.endswith("_morph")
    ]
    if band_sets:
        yield (
            "fig8_bands",
            figs.plot_band_sequence(
                {b: experiments[f"bands_{b}"].l1 for b in band_sets},
                {
                    b: experiments[f"bands_{b}_morph"].l1
                    for b in band_sets
                    if f"bands_{b}_morph" in experiments
                },
            ),
            "Fig. 8: test L1~ per band set; dashed: L1~ = 1.",
        )
    if results.uncertainty:
        labels = {"g_morph": "g-band + morphology", "gi_morph": "g+i + morphology"}
        curves = {
            labels.get(n, n): [r.model_dump() for r in u.reliability] for n, u in results.uncertainty.items()
        }
        yield (
            "fig_intervals_reliability",
            figs.plot_interval_reliability(curves),
            "Prediction intervals: empirical coverage of the test galaxies against the nominal level, with "
            "binomial 95 % intervals (calibrated on the training split by cross-conformal prediction).",
        )
        name = "g_morph" if "g_morph" in results.uncertainty else next(iter(results.uncertainty))
        level = (
            0.68
            if 0.68 in inputs.interval_calibrations[name].levels
            else results.uncertainty[name].overall[0].level
        )
        data = test_intervals(name, meta, inputs.gbm_predictions, inputs.interval_calibrations[name])
        half, error = interval_width_errors(data, level)
        yield (
            "fig_intervals_width",
            figs.plot_interval_width_vs_error(half, error, level=level),
            f"Prediction intervals of {labels.get(name, name)}: each test galaxy's {level:.0%} half-width "
            "against its error (left); coverage in bins of width (right): wider intervals for galaxies "
            "the model knows less well.",
        )
