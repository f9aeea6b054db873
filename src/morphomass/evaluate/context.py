"""The template context of results/report.html, built from the metrics.json result and the stage's inputs.

:func:`make_report_context` is pure apart from the generation time stamp; :func:`~morphomass.evaluate.report.
render_report` turns its output into HTML.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
from typing import Any

import numpy as np

from morphomass import __version__
from morphomass.config import PipelineConfig
from morphomass.evaluate.inputs import EvaluateInputs
from morphomass.evaluate.metrics import METRIC_KEYS
from morphomass.evaluate.paper import (
    PAPER_BOOTSTRAP,
    PAPER_KS_PVALUE,
    PAPER_METRICS,
    PAPER_PER_CLASS,
    TABLE1_ROWS,
)
from morphomass.evaluate.report import fmt
from morphomass.evaluate.results import SIGNIFICANCE_PAIRS
from morphomass.evaluate.statistics import verdict
from morphomass.evaluate.tables import LOSS_METHODS
from morphomass.metrics_schema import ExperimentMetrics, MetricsFile

__all__ = ["make_report_context"]


#: What each comparison of :data:`~morphomass.evaluate.results.SIGNIFICANCE_PAIRS` claims, in the report.
_CLAIMS: dict[str, str] = {
    "gi_morph_vs_gi_gbm": "gi_morph beats gi_gbm, one-sided KS p < 0.01",
    "g_morph_vs_reference_lg_z": "g-band morphology beats the reference GBM on (L_g, z) (L1~)",
    "gi_gbm_vs_gi_powerlaw": "the colour GBM beats the g-i power law (L1~)",
    "g_morph_vs_ablation_no_cnn": "dropping every CNN feature makes it worse (L1~)",
    "g_classical_vs_reference_lg_z": "ours: classical morphology alone beats the reference GBM on (L_g, z)",
    "g_morph_classical_vs_g_morph": "ours: classical morphology adds to the CNN features (L1~)",
    "gi_morph_classical_vs_gi_gbm": "ours: CNN + classical morphology beat the colour GBM (L1~)",
}


def _with_se(m: ExperimentMetrics, key: str, digits: int = 3) -> str:
    """Return ``"value ± se"`` of one metric (the value alone where the SE is undefined)."""
    se = getattr(m.se, key)
    return f"{fmt(getattr(m, key), digits)} ± {fmt(se, digits)}" if se is not None else fmt(getattr(m, key))


def _interval(m: ExperimentMetrics, key: str, digits: int = 3) -> str:
    """Return the 95 % interval of one metric as ``"[lo, hi]"`` ("" where undefined)."""
    ci = getattr(m.ci95, key)
    return f"[{fmt(ci[0], digits)}, {fmt(ci[1], digits)}]" if ci is not None else ""


def _check_rows(results: MetricsFile) -> list[dict[str, Any]]:
    """Return the paper's main findings, each with this run's numbers, its paired test and its verdict."""
    experiments, significance = results.experiments, results.significance
    checks = []
    for key, better, worse in SIGNIFICANCE_PAIRS:
        claim = _CLAIMS[key]
        if better not in experiments or worse not in experiments:
            continue
        b, w = experiments[better], experiments[worse]
        sig = significance.get(key)  # type: ignore[call-overload]
        paper = (
            f"{PAPER_METRICS[better]['l1']:.2f} vs {PAPER_METRICS[worse]['l1']:.2f}"
            if better in PAPER_METRICS and worse in PAPER_METRICS
            else "not in the paper"
        )
        holds = b.l1 < w.l1
        ks = paired = "-"
        result = "-"
        if sig is not None:
            ks, paired = fmt(sig.ks_pvalue), fmt(sig.paired_bootstrap_pvalue)
            result = verdict(sig.paired_bootstrap_pvalue)
            if "KS p" in claim:
                holds = holds and sig.ks_pvalue < 0.01
        if key in PAPER_KS_PVALUE:
            paper += f", p = {PAPER_KS_PVALUE[key]:.1e} (7363 test galaxies)"
        checks.append(
            {
                "claim": claim,
                "ours": f"{_with_se(b, 'l1', 2)} vs {_with_se(w, 'l1', 2)} "
                f"({min(b.n_test, w.n_test)} test galaxies)",
                "ks": ks,
                "paired": paired,
                "paper": paper,
                "holds": holds,
                "verdict": result,
                "resolved": sig is not None and sig.resolved,
            }
        )
    return checks


def _metric_tables(results: MetricsFile) -> dict[str, list[dict[str, Any]]]:
    """Return the rows of the experiments table, Table 1 and Table B.1 (ours beside the paper's)."""
    experiments = results.experiments
    rows = []
    for name, m in experiments.items():
        paper = PAPER_METRICS.get(name, {})
        rows.append(
            {
                "name": name,
                "n_test": m.n_test,
                "n_features": m.n_features,
                "cells": [
                    {
                        "ours": _with_se(m, k),
                        "ci95": _interval(m, k),
                        "paper": fmt(paper[k]) if k in paper else "",
                    }
                    for k in METRIC_KEYS
                ],
            }
        )
    table1 = [
        {
            "name": n,
            "flags": f,
            "ours": _with_se(experiments[n], "l1"),
            "ci95": _interval(experiments[n], "l1"),
            "paper": fmt(PAPER_METRICS[n]["l1"], 2) if n in PAPER_METRICS else "",
        }
        for n, f in TABLE1_ROWS.items()
        if n in experiments
    ]
    table_b1 = []
    for method in LOSS_METHODS:
        for loss in ("l1", "l2", "rmsle"):
            name = f"loss_{method}_{loss}"
            if name in experiments:
                paper = PAPER_METRICS[name]
                table_b1.append(
                    {
                        "method": method,
                        "loss": loss,
                        "cells": [
                            {"ours": _with_se(experiments[name], k), "paper": fmt(paper[k])}
                            for k in ("l1", "l2", "rmsle", "median_l1")
                        ],
                    }
                )
    return {"experiment_rows": rows, "table1": table1, "table_b1": table_b1}


def _comparison_rows(results: MetricsFile, class_counts: dict[str, int]) -> dict[str, list[dict[str, Any]]]:
    """Return the rows of the E8 significance and E9 per-class tables."""
    sig_rows = []
    for key, value in results.significance.items():
        boot = "; ".join(f"{n} {b[0]:.3f} ± {b[1]:.3f}" for n, b in value.bootstrap_mean_l1.items())
        paper = ""
        if key in PAPER_KS_PVALUE:
            paper = f"p = {PAPER_KS_PVALUE[key]:.1e}; " + "; ".join(
                f"{n} {b[0]:.2f} ± {b[1]:.2f}" for n, b in PAPER_BOOTSTRAP[key].items()
            )
        sig_rows.append(
            {
                "name": key,
                "ks": fmt(value.ks_pvalue),
                "boot": boot,
                "paired": fmt(value.paired_bootstrap_pvalue),
                "verdict": verdict(value.paired_bootstrap_pvalue),
                "resolved": value.resolved,
                "paper": paper,
            }
        )
    class_rows = [
        {
            "name": c,
            "n": class_counts.get(c, 0),
            "without": fmt(v.get("gi_gbm")),
            "with": fmt(v.get("gi_morph")),
            "paper": f"{PAPER_PER_CLASS[c][0]:.2f} → {PAPER_PER_CLASS[c][1]:.2f}",
        }
        for c, v in results.per_class.items()
    ]
    return {"significance": sig_rows, "per_class": class_rows}


def _uncertainty_rows(results: MetricsFile) -> list[dict[str, Any]]:
    """Return one row per model and nominal level of the prediction intervals' test coverage."""
    rows = []
    for name, u in results.uncertainty.items():
        for o in u.overall:
            groups = [
                *(("class", g) for g in u.per_class),
                *(("z tercile", g) for g in u.per_z_tercile),
                *(("target tercile", g) for g in u.per_target_tercile),
            ]
            at_level = [(kind, g) for kind, g in groups if g.level == o.level]
            worst = min(at_level, key=lambda item: item[1].coverage, default=None)
            joint = u.per_class_joint_pvalue.get(f"{o.level:g}")
            rows.append(
                {
                    "model": name,
                    "level": f"{o.level:.0%}",
                    "coverage": f"{o.coverage:.3f} [{o.ci95[0]:.3f}, {o.ci95[1]:.3f}]",
                    "n": o.n,
                    "offset": f"{(o.coverage - o.level) / o.se_combined:+.1f}",
                    "pvalue": fmt(o.pvalue),
                    "verdict": "calibrated" if o.within_3se else "off by more than 3 SE",
                    "width": "unbounded"
                    if o.median_width_dex is None
                    else f"{o.median_width_dex:.3f} ({fmt(o.width_p16_dex)}-{fmt(o.width_p84_dex)})",
                    "joint": "" if joint is None else fmt(joint),
                    "worst": ""
                    if worst is None
                    else f"{worst[0]} {worst[1].group}: {worst[1].coverage:.3f} (n = {worst[1].n})",
                    "n_calibration": u.n_calibration,
                }
            )
    return rows


def _sample_rows(inputs: EvaluateInputs, fits: dict[str, Any]) -> list[tuple[str, Any]]:
    """Return the sample table: sizes, M/L range, redshift, GZ2 matches, power-law fits, catalogue summary."""
    sample, meta, target = inputs.sample, inputs.meta, inputs.target
    values = sample["target"].to_numpy(np.float64)
    paper = " (paper 0.09 / 2.7 / 16.6)" if target.name == "ml_g" else ""
    rows = [
        ("galaxies in sample.parquet", len(sample)),
        ("with image and CNN features (evaluated)", len(meta)),
        *((f"{s} split (evaluated)", int((meta["split"] == s).sum())) for s in ("train", "val", "test")),
        (
            f"{target.name} min / median / max ({target.unit})",
            f"{values.min():.3g} / {np.median(values):.3g} / {values.max():.3g}{paper}",
        ),
        ("median redshift", f"{np.median(sample['z']):.3f} (paper 0.05)"),
        (
            "GZ2 match fraction",
            f"{sample['has_gz2'].mean():.3f} (paper 0.80)" if "has_gz2" in sample else "-",
        ),
        (
            "power-law fits (log10 M/L = a + b (g-i))"
            if target.kind == "ratio"
            else f"colour fits ({target.name} = a + b (g-i))",
            "; ".join(f"{k}: a={v['a']:.3f}, b={v['b']:.3f}" for k, v in fits.items() if isinstance(v, dict)),
        ),
        ("power-law test galaxies excluded (colour out of range)", fits.get("excluded_test", "-")),
    ]
    summary = inputs.sample_summary
    if summary is not None and {"key", "value"} <= set(summary.columns):
        rows += [
            (f"catalogue: {k}", int(v) if isinstance(v, float) and v.is_integer() else v)
            for k, v in zip(summary["key"], summary["value"], strict=True)
        ]
    return [(k, fmt(v) if not isinstance(v, str) else v) for k, v in rows]


def _config_text(config: PipelineConfig, cv_search: dict[str, Any] | None) -> str:
    """Return the configuration as JSON, preceded by the cross-validated LightGBM parameters if any."""
    text = json.dumps(config.model_dump(mode="json"), indent=2, sort_keys=True)
    if config.gbm.cv_search and cv_search is not None:
        groups = cv_search.get("groups", {})
        chosen = {g: {"cross-validated on": e["experiment"], **e["best"]} for g, e in groups.items()}
        text = (
            "LightGBM parameters chosen by cross-validation, per kind of model:\n"
            + json.dumps(chosen, indent=2, sort_keys=True)
            + "\n\n"
            + text
        )
    return text


def make_report_context(
    results: MetricsFile,
    inputs: EvaluateInputs,
    *,
    config: PipelineConfig,
    fits: dict[str, Any],
    class_counts: dict[str, int],
    seconds: float,
) -> dict[str, Any]:
    """Build the template variables of :func:`~morphomass.evaluate.report.render_report`.

    Parameters
    ----------
    results : MetricsFile
        The evaluate stage's result (what metrics.json holds).
    inputs : EvaluateInputs
        The stage's inputs (sample, GBM cards, catalogue summary, manifest timings, notes).
    config : PipelineConfig
        Shown in full; ``preset`` and ``gbm.cv_search`` are used.
    fits : dict
        The fitted baselines (:attr:`~morphomass.evaluate.results.Predictions.fits`).
    class_counts : dict of str to int
        Test galaxies per E9 class.
    seconds : float
        Time the stage has taken so far.

    Returns
    -------
    dict
        Every variable :func:`~morphomass.evaluate.report.render_report` documents.
    """
    timings: list[tuple[str, Any]] = [(f"stage {name}", s) for name, s in inputs.stage_seconds.items()]
    timings += [(f"train {n} (CPU-s)", info.get("cpu_seconds")) for n, info in inputs.gbm_info.items()]
    timings.append(("evaluate (this stage, before the report)", round(seconds, 2)))
    return {
        "preset": config.preset,
        "target": dataclasses.asdict(inputs.target),
        "version": __version__,
        "generated": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "notes": inputs.notes,
        "checks": _check_rows(results),
        "sample_rows": _sample_rows(inputs, fits),
        "metric_names": list(METRIC_KEYS),
        **_metric_tables(results),
        **_comparison_rows(results, class_counts),
        "uncertainty": _uncertainty_rows(results),
        "timings": [(k, fmt(v, 2) if isinstance(v, float) else fmt(v)) for k, v in timings],
        "config_text": _config_text(config, inputs.cv_search),
    }
