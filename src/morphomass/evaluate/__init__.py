"""Evaluation (SPEC M1-M5, E1-E11): metrics, baselines, statistics, figures and the HTML report.

``run_evaluate`` reads the GBM predictions of ``train-gbm`` and writes ``results/``: ``metrics.json``
(DESIGN §4), the figures, the tables and ``report.html``.
"""

from morphomass.evaluate.baselines import (
    ZIBETTI09_GI_G,
    colour_from_fluxes,
    fit_constant,
    fit_powerlaw,
    predict_powerlaw,
    weighted_median,
)
from morphomass.evaluate.metrics import (
    METRIC_KEYS,
    compute_metrics,
    dex_error,
    fraction_over,
    fraction_under,
    fraction_within,
    l1_tilde,
    l1_tilde_per_galaxy,
    l2_tilde,
    median_l1_tilde,
    rmsle,
)
from morphomass.evaluate.stage import run_evaluate
from morphomass.evaluate.statistics import (
    MORPHOLOGY_CLASSES,
    assign_classes,
    bootstrap_means,
    bootstrap_metrics,
    draw_bootstrap_counts,
    ks_one_sided_pvalue,
    paired_bootstrap_pvalue,
    summarize_bootstrap,
    verdict,
)

__all__ = [
    "METRIC_KEYS",
    "MORPHOLOGY_CLASSES",
    "ZIBETTI09_GI_G",
    "assign_classes",
    "bootstrap_means",
    "bootstrap_metrics",
    "colour_from_fluxes",
    "compute_metrics",
    "dex_error",
    "draw_bootstrap_counts",
    "fit_constant",
    "fit_powerlaw",
    "fraction_over",
    "fraction_under",
    "fraction_within",
    "ks_one_sided_pvalue",
    "l1_tilde",
    "l1_tilde_per_galaxy",
    "l2_tilde",
    "median_l1_tilde",
    "paired_bootstrap_pvalue",
    "predict_powerlaw",
    "rmsle",
    "run_evaluate",
    "summarize_bootstrap",
    "verdict",
    "weighted_median",
]
