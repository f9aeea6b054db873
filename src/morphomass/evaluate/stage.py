"""The ``evaluate`` stage: test metrics of every experiment, significance, per-class L1~, figures, report.

Reads ``sample.parquet``, the feature tables (a few columns, for Figs. 6 and the E9 classes) and
``models/gbm/`` (``predictions.parquet``, ``<experiment>.json``, ``importance.json``) written by
``train-gbm``; fits the baselines that need no GBM (constant, g-i power laws, Zibetti+09) on the same
galaxies' training split; writes ``results/metrics.json`` (DESIGN §4), ``results/figures/fig*.{png,pdf}``,
``results/tables/*.csv`` and the self-contained ``results/report.html``. lightgbm is not needed here.
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from matplotlib.figure import Figure

from morphomass import __version__
from morphomass.config import EvaluateConfig, PipelineConfig
from morphomass.errors import ConfigError, InputDataError
from morphomass.evaluate import figures as figs
from morphomass.evaluate.baselines import (
    ZIBETTI09_GI_G,
    colour_from_fluxes,
    fit_constant,
    fit_powerlaw,
    predict_powerlaw,
)
from morphomass.evaluate.metrics import METRIC_KEYS, compute_metrics, l1_tilde_per_galaxy
from morphomass.evaluate.paper import (
    PAPER_BOOTSTRAP,
    PAPER_KS_PVALUE,
    PAPER_METRICS,
    PAPER_PER_CLASS,
    TABLE1_ROWS,
)
from morphomass.evaluate.report import fmt, render_report
from morphomass.evaluate.statistics import (
    MORPHOLOGY_CLASSES,
    assign_classes,
    bootstrap_means,
    ks_one_sided_pvalue,
    paired_bootstrap_pvalue,
)
from morphomass.progress import progress_bar
from morphomass.workdir import (
    StageResult,
    WorkDir,
    atomic_path,
    load_manifest,
    write_bytes_atomic,
    write_json_atomic,
    write_text_atomic,
)

__all__ = ["ALIASES", "SIGNIFICANCE_PAIRS", "run_evaluate"]

logger = logging.getLogger(__name__)

#: Loss-table names that are the same model as an experiment trained for L1~.
ALIASES: dict[str, str] = {
    "loss_g_morph_l1": "g_morph",
    "loss_gi_morph_l1": "gi_morph",
    "loss_gi_powerlaw_l1": "gi_powerlaw",
}
#: E8 comparisons: (name, candidate with more information, reference).
SIGNIFICANCE_PAIRS: tuple[tuple[str, str, str], ...] = (
    ("gi_morph_vs_gi_gbm", "gi_morph", "gi_gbm"),
    ("g_morph_vs_reference_lg_z", "g_morph", "reference_lg_z"),
)
IMPORTANCE_MODELS: tuple[str, ...] = ("g_morph", "ablation_no_cnn4")
CHI2_REJECTED = "sample_chi2_rejected.parquet"  # written by the catalogue stage into results/tables/
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
    "gi_powerlaw",
    "gi_zibetti09",
    "gi_gbm",
    "gi_morph",
)
CNN1_PROBS = {"irregular": "cnn1_p_t08_a22", "edge_on": "cnn1_p_t02_a04", "feature": "cnn1_p_t01_a02"}


# ------------------------------------------------------------------------------------------------- inputs


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
    """predictions.parquet, the per-experiment info and the importances written by train-gbm."""
    gbm_dir = workdir.models / "gbm"
    preds = _read_parquet(gbm_dir / "predictions.parquet")
    for col in ("objid", "split"):
        if col not in preds.columns:
            msg = f"{gbm_dir / 'predictions.parquet'} has no {col!r} column; rerun 'morphomass train-gbm'"
            raise InputDataError(msg)
    infos = {}
    for col in preds.columns:
        if col.startswith("pred_"):
            name = col[len("pred_") :]
            path = gbm_dir / f"{name}.json"
            if not path.exists():
                msg = f"{path} is missing (predictions.parquet has {col}); rerun 'morphomass train-gbm'"
                raise InputDataError(msg)
            infos[name] = json.loads(path.read_text(encoding="utf-8"))
    imp_path = gbm_dir / "importance.json"
    importance = json.loads(imp_path.read_text(encoding="utf-8"))["importance"] if imp_path.exists() else {}
    return preds, infos, importance


def _align(preds: pd.DataFrame, sample: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Sample rows of the predicted galaxies, in the predictions' order."""
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


# ------------------------------------------------------------------------------------------------- baselines


def _baselines(
    meta: pd.DataFrame, train: np.ndarray, cfg: EvaluateConfig
) -> tuple[dict[str, np.ndarray], dict[str, int], dict[str, Any]]:
    """Predictions (NaN = not applicable) of the constant and colour baselines, their feature counts, fits."""
    ml, err = meta["ml"].to_numpy(np.float64), meta["ml_err"].to_numpy(np.float64)
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
    for loss in ("l1", "l2", "rmsle"):
        coeffs = fit_powerlaw(colour[train], ml[train], err[train], loss=loss)
        name = "gi_powerlaw" if loss == "l1" else f"loss_gi_powerlaw_{loss}"
        preds[name] = np.where(usable, predict_powerlaw(colour, coeffs), np.nan)
        n_features[name] = 1
        fits[name] = {"a": coeffs[0], "b": coeffs[1]}
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


def _select(available: list[str], requested: list[str]) -> list[str]:
    ordered = sorted(available, key=_report_order)  # stable: bands keep their sequence order
    if "all" in requested:
        return ordered
    unknown = [n for n in requested if n not in available]
    if unknown:
        msg = f"evaluate.experiments: unknown or unavailable experiments {unknown}; available: {ordered}"
        raise ConfigError(msg)
    return [n for n in ordered if n in requested]


# ------------------------------------------------------------------------------------------------- outputs


def _clean(obj: Any) -> Any:
    """JSON-safe copy: NaN/inf become None, numpy scalars become Python numbers."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(float(obj)) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def _save_figure(fig: Figure, stem: str, workdir: WorkDir, cfg: EvaluateConfig) -> tuple[bytes, list[str]]:
    """Write the figure in every configured format; return its PNG bytes (for the report) and the paths."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=cfg.figure_dpi)
    png = buf.getvalue()
    paths = []
    for ext in cfg.figure_formats:
        path = workdir.figures / f"{stem}.{ext}"
        if ext == "png":
            write_bytes_atomic(path, png)
        else:
            with atomic_path(path) as tmp:
                fig.savefig(tmp, format=ext, dpi=cfg.figure_dpi)
        paths.append(f"results/figures/{stem}.{ext}")
    return png, paths


def _write_csv(frame: pd.DataFrame, name: str, workdir: WorkDir) -> str:
    write_text_atomic(workdir.tables / name, frame.to_csv(index=False, lineterminator="\n"))
    return f"results/tables/{name}"


# ------------------------------------------------------------------------------------------------- the stage


def run_evaluate(config: PipelineConfig, workdir: WorkDir, *, progress: bool = True) -> StageResult:
    """Evaluate every experiment on the test split and write results/ (see the module docstring).

    Parameters
    ----------
    config : PipelineConfig
        Uses the ``evaluate`` section (experiments, bootstrap size, thresholds, figure formats).
    workdir : WorkDir
    progress : bool
        Show a progress bar over the steps.

    Returns
    -------
    StageResult
        Summary: test galaxies, L1~ of the main experiments.

    Raises
    ------
    InputDataError
        Missing or inconsistent inputs (named in the message).
    ConfigError
        ``evaluate.experiments`` names an experiment that does not exist.
    """
    start = time.perf_counter()
    cfg = config.evaluate
    workdir.ensure()
    notes: list[str] = []
    outputs: list[str] = []
    with progress_bar("evaluate", total=6, enabled=progress) as advance:
        sample = _read_parquet(workdir.sample)
        gbm_preds, infos, importance = _load_gbm(workdir)
        meta = _align(gbm_preds, sample, workdir.sample)
        split = meta["split"].to_numpy()
        train, test = split == "train", split == "test"
        ml, err = meta["ml"].to_numpy(np.float64), meta["ml_err"].to_numpy(np.float64)
        if not test.any():
            msg = f"no test galaxies among the {len(meta)} with GBM predictions"
            raise InputDataError(msg)

        preds, n_features, fits = _baselines(meta, train, cfg)
        for name, info in infos.items():
            preds[name] = gbm_preds[f"pred_{name}"].to_numpy(np.float64)
            n_features[name] = int(info["n_features"])
        for alias, target in ALIASES.items():
            if target in preds:
                preds[alias], n_features[alias] = preds[target], n_features[target]
        names = _select(list(preds), list(cfg.experiments))
        advance(1)

        experiments: dict[str, dict[str, Any]] = {}
        for name in names:
            ok = test & np.isfinite(preds[name])
            metrics = compute_metrics(preds[name][ok], ml[ok], err[ok], threshold_dex=cfg.dex_threshold)
            experiments[name] = {**metrics, "n_test": int(ok.sum()), "n_features": n_features[name]}
        rng = np.random.default_rng(cfg.seed)
        significance = {}
        for key, cand, ref in SIGNIFICANCE_PAIRS:
            if cand in experiments and ref in experiments:
                ok = test & np.isfinite(preds[cand]) & np.isfinite(preds[ref])
                l1 = {n: l1_tilde_per_galaxy(preds[n][ok], ml[ok], err[ok]) for n in (cand, ref)}
                boots = {
                    n: bootstrap_means(l1[n], n_resamples=cfg.bootstrap_samples, rng=rng) for n in (cand, ref)
                }
                significance[key] = {
                    "ks_pvalue": ks_one_sided_pvalue(l1[cand], l1[ref]),
                    "bootstrap_mean_l1": {n: [float(b.mean()), float(b.std())] for n, b in boots.items()},
                    "paired_bootstrap_pvalue": paired_bootstrap_pvalue(
                        l1[cand], l1[ref], n_resamples=cfg.bootstrap_samples, rng=rng
                    ),
                }
        advance(1)

        cnn_path = workdir.features / "cnn.parquet"
        cnn_cols = _parquet_columns(cnn_path)
        wanted = [c for c in cnn_cols if c in CNN1_PROBS.values() or c.startswith("cnn4_")]
        cnn = _read_parquet(cnn_path, ["objid", *wanted])
        cnn = meta[["objid"]].merge(cnn, on="objid", how="left")
        dead = [c for c in CNN1_PROBS.values() if c not in cnn.columns]
        if dead:
            # the extract stage drops columns that are zero for every training galaxy (dead outputs)
            notes.append(
                f"CNN1 outputs {dead} are not in features/cnn.parquet (dropped upstream as zero for every "
                "training galaxy); the E9 classes read them as 0."
            )
            logger.warning(notes[-1])
            cnn = cnn.assign(**{c: 0.0 for c in dead})
        classes = assign_classes(
            cnn[CNN1_PROBS["irregular"]],
            cnn[CNN1_PROBS["edge_on"]],
            cnn[CNN1_PROBS["feature"]],
            irregular_min=cfg.irregular_min_p,
            edge_on_min=cfg.edge_on_min_p,
            feature_min=cfg.feature_min_p,
        )
        per_class: dict[str, dict[str, float | None]] = {}
        class_counts: dict[str, int] = {}
        for cls in MORPHOLOGY_CLASSES:
            sel = test & (classes == cls)
            class_counts[cls] = int(sel.sum())
            per_class[cls] = {
                n: (
                    float(np.mean(l1_tilde_per_galaxy(preds[n][sel], ml[sel], err[sel])))
                    if sel.any()
                    else None
                )
                for n in ("gi_gbm", "gi_morph")
                if n in experiments
            }
        importance_out = {
            n: [{"feature": r["feature"], "importance": r["importance"]} for r in importance[n]]
            for n in IMPORTANCE_MODELS
            if n in importance
        }
        n_split = {s: int((split == s).sum()) for s in ("train", "val", "test")}
        metrics_json = _clean(
            {
                "preset": config.preset,
                "n": n_split,
                "experiments": experiments,
                "significance": significance,
                "per_class": per_class,
                "importance": importance_out,
            }
        )
        write_json_atomic(workdir.results / "metrics.json", metrics_json)
        outputs.append("results/metrics.json")
        advance(1)

        figures: dict[str, tuple[bytes, str]] = {}

        def save(fig: Figure, stem: str, caption: str) -> None:
            png, paths = _save_figure(fig, stem, workdir, cfg)
            figures[stem] = (png, caption)
            outputs.extend(paths)

        groups = {s: sample.loc[sample["split"] == s, "ml"].to_numpy() for s in ("train", "val", "test")}
        rejected_path = workdir.tables / CHI2_REJECTED
        if rejected_path.exists():
            groups["chi2_r >= 5"] = _read_parquet(rejected_path, ["ml"])["ml"].to_numpy()
        else:
            notes.append(
                f"Fig. 2 has no chi2_r >= 5 histogram: {rejected_path} (written by the catalogue "
                "stage) is missing."
            )
        save(
            figs.plot_ml_histograms(groups),
            "fig2_ml_histograms",
            "Fig. 2: M/L_g per split (whole sample) and of the galaxies rejected by chi2_r >= 5.",
        )
        if {"reference_lg_z", "g_morph"} <= set(preds):
            save(
                figs.plot_pred_vs_true(
                    ml[test],
                    err[test],
                    {
                        "reference (L_g, z)": preds["reference_lg_z"][test],
                        "g-band + morphology": preds["g_morph"][test],
                    },
                    threshold_dex=cfg.dex_threshold,
                ),
                "fig4_pred_vs_true",
                "Fig. 4: test set, without (top) and with (bottom) morphology; dex error "
                "and signed L1~ histograms, dashed at +-0.15 dex.",
            )
        if importance_out:
            save(
                figs.plot_importances(
                    {"all features" if n == "g_morph" else "no CNN4": v for n, v in importance_out.items()}
                ),
                "fig5_importance",
                "Fig. 5: permutation importance on the validation set (increase of L1~).",
            )
        fig6 = _fig6_inputs(workdir, meta, cnn, classes, train)
        save(
            figs.plot_feature_relations(**fig6),
            "fig6_features",
            "Fig. 6: training set; M/L vs total luminosity coloured by CNN1's P(feature), vs redshift, per "
            "class, vs the CNN4 feature most correlated with M/L.",
        )
        colour_models = {
            label: preds[n][test]
            for n, label in (
                ("gi_powerlaw", "g-i power law"),
                ("gi_gbm", "GBM (z, L_g, L_i, L_g/L_i)"),
                ("gi_morph", "GBM + g-band morphology"),
            )
            if n in preds
        }
        if colour_models:
            save(
                figs.plot_colour_methods(ml[test], colour_models, threshold_dex=cfg.dex_threshold),
                "fig7_colour",
                "Fig. 7: colour methods on the test set and their dex errors.",
            )
        band_sets = [
            n[len("bands_") :] for n in experiments if n.startswith("bands_") and not n.endswith("_morph")
        ]
        if band_sets:
            save(
                figs.plot_band_sequence(
                    {b: experiments[f"bands_{b}"]["l1"] for b in band_sets},
                    {
                        b: experiments[f"bands_{b}_morph"]["l1"]
                        for b in band_sets
                        if f"bands_{b}_morph" in experiments
                    },
                ),
                "fig8_bands",
                "Fig. 8: test L1~ per band set; dashed: L1~ = 1.",
            )
        advance(1)

        tables = _tables(experiments, significance, per_class, class_counts, importance_out)
        for name, frame in tables.items():
            outputs.append(_write_csv(frame, name, workdir))
        advance(1)

        seconds = time.perf_counter() - start
        context = _report_context(
            config,
            meta,
            sample,
            experiments,
            significance,
            per_class,
            class_counts,
            fits,
            infos,
            workdir,
            notes,
            seconds,
        )
        write_text_atomic(workdir.results / "report.html", render_report(context, figures))
        outputs.append("results/report.html")
        advance(1)

    summary = {"test_galaxies": n_split["test"], "experiments": len(experiments)}
    for name in ("reference_lg_z", "g_morph", "gi_gbm", "gi_morph"):
        if name in experiments:
            summary[f"l1_{name}"] = round(experiments[name]["l1"], 3)
    return StageResult(
        stage="evaluate", outputs=outputs, seconds=time.perf_counter() - start, summary=summary
    )


def _fig6_inputs(
    workdir: WorkDir, meta: pd.DataFrame, cnn: pd.DataFrame, classes: np.ndarray, train: np.ndarray
) -> dict[str, Any]:
    phot_path = workdir.features / "photometric.parquet"
    lum_col = "lum_sum" if "lum_sum" in _parquet_columns(phot_path) else None
    if lum_col is not None:
        lum = meta[["objid"]].merge(_read_parquet(phot_path, ["objid", lum_col]), on="objid", how="left")[
            lum_col
        ]
    else:
        lum = meta["lum_g"]
    lum = lum.to_numpy(np.float64)
    ml = meta["ml"].to_numpy(np.float64)
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
        log_lum = np.log10(lum[train])
    return {
        "ml": ml[train],
        "log_lum": log_lum,
        "redshift": meta["z"].to_numpy(np.float64)[train],
        "p_feature": p_feature[train],
        "classes": classes[train],
        "cnn4": cnn4,
        "cnn4_label": label,
    }


def _tables(
    experiments: dict[str, dict[str, Any]],
    significance: dict[str, Any],
    per_class: dict[str, dict[str, Any]],
    class_counts: dict[str, int],
    importance: dict[str, list[dict[str, Any]]],
) -> dict[str, pd.DataFrame]:
    rows = []
    for name, m in experiments.items():
        paper = PAPER_METRICS.get(name, {})
        rows.append(
            {
                "experiment": name,
                **{k: m[k] for k in METRIC_KEYS},
                "n_test": m["n_test"],
                "n_features": m["n_features"],
                **{f"paper_{k}": paper.get(k) for k in METRIC_KEYS},
            }
        )
    tables = {"experiments.csv": pd.DataFrame(rows)}
    t1 = [
        {
            "experiment": n,
            "cnn123": f[0],
            "cnn4": f[1],
            "luminosity": f[2],
            "distance": f[3],
            "l1": experiments[n]["l1"],
            "paper_l1": PAPER_METRICS[n]["l1"],
        }
        for n, f in TABLE1_ROWS.items()
        if n in experiments
    ]
    tables["table1_ablations.csv"] = pd.DataFrame(t1)
    b1 = []
    for method in ("g_morph", "gi_powerlaw", "gi_morph"):
        for loss in ("l1", "l2", "rmsle"):
            name = f"loss_{method}_{loss}"
            if name in experiments:
                paper = PAPER_METRICS.get(name, {})
                b1.append(
                    {
                        "method": method,
                        "optimised_loss": loss,
                        **{k: experiments[name][k] for k in ("l1", "l2", "rmsle", "median_l1")},
                        **{f"paper_{k}": paper.get(k) for k in ("l1", "l2", "rmsle", "median_l1")},
                    }
                )
    tables["tableB1_losses.csv"] = pd.DataFrame(b1)
    tables["per_class.csv"] = pd.DataFrame(
        [
            {
                "class": c,
                "n_test": class_counts.get(c, 0),
                "gi_gbm": v.get("gi_gbm"),
                "gi_morph": v.get("gi_morph"),
                "paper_gi_gbm": PAPER_PER_CLASS[c][0],
                "paper_gi_morph": PAPER_PER_CLASS[c][1],
            }
            for c, v in per_class.items()
        ]
    )
    tables["significance.csv"] = pd.DataFrame(
        [
            {
                "comparison": k,
                "ks_pvalue": v["ks_pvalue"],
                **{f"bootstrap_{n}_mean": b[0] for n, b in v["bootstrap_mean_l1"].items()},
                **{f"bootstrap_{n}_std": b[1] for n, b in v["bootstrap_mean_l1"].items()},
                "paired_bootstrap_pvalue": v["paired_bootstrap_pvalue"],
            }
            for k, v in significance.items()
        ]
    )
    for name, rows_imp in importance.items():
        tables[f"importance_{name}.csv"] = pd.DataFrame(rows_imp)
    return tables


def _check_rows(experiments: dict[str, dict[str, Any]], significance: dict[str, Any]) -> list[dict[str, Any]]:
    checks = []

    def l1(name: str) -> float:
        return experiments[name]["l1"] if name in experiments else float("nan")

    def pair(better: str, worse: str, claim: str) -> None:
        if better in experiments and worse in experiments:
            paper_b, paper_w = PAPER_METRICS[better]["l1"], PAPER_METRICS[worse]["l1"]
            checks.append(
                {
                    "claim": claim,
                    "ours": f"{fmt(l1(better))} vs {fmt(l1(worse))}",
                    "paper": f"{paper_b:.2f} vs {paper_w:.2f}",
                    "holds": l1(better) < l1(worse),
                }
            )

    pair("g_morph", "reference_lg_z", "g-band morphology beats the reference GBM on (L_g, z) (L1~)")
    if "gi_morph_vs_gi_gbm" in significance:
        p = significance["gi_morph_vs_gi_gbm"]["ks_pvalue"]
        checks.append(
            {
                "claim": "gi_morph beats gi_gbm, one-sided KS p < 0.01",
                "ours": f"{fmt(l1('gi_morph'))} vs {fmt(l1('gi_gbm'))}, p = {fmt(p)} "
                f"({experiments['gi_morph']['n_test']} test galaxies)",
                "paper": "1.12 vs 1.26, p = 7.6e-09 (7363 test galaxies)",
                "holds": l1("gi_morph") < l1("gi_gbm") and p < 0.01,
            }
        )
        paired = significance["gi_morph_vs_gi_gbm"]["paired_bootstrap_pvalue"]
        checks.append(
            {
                "claim": "the same, paired bootstrap p < 0.01 (both models on the same resampled galaxies; "
                "more powerful than KS on a small test split; not in the paper)",
                "ours": f"p = {fmt(paired)}",
                "paper": "\u2014",
                "holds": l1("gi_morph") < l1("gi_gbm") and paired < 0.01,
            }
        )
    pair("gi_gbm", "gi_powerlaw", "the colour GBM beats the g-i power law (L1~)")
    pair("g_morph", "ablation_no_cnn", "dropping every CNN feature makes it worse (L1~)")
    return checks


def _report_context(
    config: PipelineConfig,
    meta: pd.DataFrame,
    sample: pd.DataFrame,
    experiments: dict[str, dict[str, Any]],
    significance: dict[str, Any],
    per_class: dict[str, dict[str, Any]],
    class_counts: dict[str, int],
    fits: dict[str, Any],
    infos: dict[str, dict[str, Any]],
    workdir: WorkDir,
    notes: list[str],
    seconds: float,
) -> dict[str, Any]:
    metric_names = list(METRIC_KEYS)
    rows = []
    for name, m in experiments.items():
        paper = PAPER_METRICS.get(name, {})
        rows.append(
            {
                "name": name,
                "n_test": m["n_test"],
                "n_features": m["n_features"],
                "cells": [
                    {"ours": fmt(m[k]), "paper": fmt(paper[k]) if k in paper else ""} for k in metric_names
                ],
            }
        )
    table1 = [
        {"name": n, "flags": f, "ours": fmt(experiments[n]["l1"]), "paper": fmt(PAPER_METRICS[n]["l1"], 2)}
        for n, f in TABLE1_ROWS.items()
        if n in experiments
    ]
    table_b1 = []
    for method in ("g_morph", "gi_powerlaw", "gi_morph"):
        for loss in ("l1", "l2", "rmsle"):
            name = f"loss_{method}_{loss}"
            if name in experiments:
                paper = PAPER_METRICS[name]
                table_b1.append(
                    {
                        "method": method,
                        "loss": loss,
                        "cells": [
                            {"ours": fmt(experiments[name][k]), "paper": fmt(paper[k])}
                            for k in ("l1", "l2", "rmsle", "median_l1")
                        ],
                    }
                )
    sig_rows = []
    for key, value in significance.items():
        boot = "; ".join(f"{n} {b[0]:.3f} ± {b[1]:.3f}" for n, b in value["bootstrap_mean_l1"].items())
        paper = ""
        if key in PAPER_KS_PVALUE:
            paper = f"p = {PAPER_KS_PVALUE[key]:.1e}; " + "; ".join(
                f"{n} {b[0]:.2f} ± {b[1]:.2f}" for n, b in PAPER_BOOTSTRAP[key].items()
            )
        sig_rows.append({"name": key, "ks": fmt(value["ks_pvalue"]), "boot": boot, "paper": paper})
    class_rows = [
        {
            "name": c,
            "n": class_counts.get(c, 0),
            "without": fmt(v.get("gi_gbm")),
            "with": fmt(v.get("gi_morph")),
            "paper": f"{PAPER_PER_CLASS[c][0]:.2f} → {PAPER_PER_CLASS[c][1]:.2f}",
        }
        for c, v in per_class.items()
    ]
    ml = sample["ml"].to_numpy(np.float64)
    sample_rows = [
        ("galaxies in sample.parquet", len(sample)),
        ("with image and CNN features (evaluated)", len(meta)),
        *((f"{s} split (evaluated)", int((meta["split"] == s).sum())) for s in ("train", "val", "test")),
        (
            "M/L_g min / median / max",
            f"{ml.min():.3g} / {np.median(ml):.3g} / {ml.max():.3g} (paper 0.09 / 2.7 / 16.6)",
        ),
        ("median redshift", f"{np.median(sample['z']):.3f} (paper 0.05)"),
        (
            "GZ2 match fraction",
            f"{sample['has_gz2'].mean():.3f} (paper 0.80)" if "has_gz2" in sample else "-",
        ),
        (
            "power-law fits (log10 M/L = a + b (g-i))",
            "; ".join(f"{k}: a={v['a']:.3f}, b={v['b']:.3f}" for k, v in fits.items() if isinstance(v, dict)),
        ),
        ("power-law test galaxies excluded (colour out of range)", fits.get("excluded_test", "-")),
    ]
    summary_path = workdir.tables / "sample_summary.csv"
    if summary_path.exists():
        summary = pd.read_csv(summary_path)
        if {"key", "value"} <= set(summary.columns):
            sample_rows += [
                (f"catalogue: {k}", int(v) if isinstance(v, float) and v.is_integer() else v)
                for k, v in zip(summary["key"], summary["value"], strict=True)
            ]
    timings = [
        (f"stage {name}", rec.get("seconds", "-"))
        for name, rec in load_manifest(workdir)["stages"].items()
        if "seconds" in rec
    ]
    timings += [(f"train {n} (CPU-s)", info.get("cpu_seconds")) for n, info in infos.items()]
    timings.append(("evaluate (this stage, before the report)", round(seconds, 2)))
    config_text = json.dumps(config.model_dump(mode="json"), indent=2, sort_keys=True)
    cv_path = workdir.models / "gbm" / "cv_search.json"
    if config.gbm.cv_search and cv_path.exists():
        groups = json.loads(cv_path.read_text(encoding="utf-8")).get("groups", {})
        chosen = {g: {"cross-validated on": e["experiment"], **e["best"]} for g, e in groups.items()}
        config_text = (
            "LightGBM parameters chosen by cross-validation, per kind of model:\n"
            + json.dumps(chosen, indent=2, sort_keys=True)
            + "\n\n"
            + config_text
        )
    return {
        "preset": config.preset,
        "version": __version__,
        "generated": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "notes": notes,
        "checks": _check_rows(experiments, significance),
        "sample_rows": [(k, fmt(v) if not isinstance(v, str) else v) for k, v in sample_rows],
        "metric_names": metric_names,
        "experiment_rows": rows,
        "table1": table1,
        "significance": sig_rows,
        "per_class": class_rows,
        "table_b1": table_b1,
        "timings": [(k, fmt(v, 2) if isinstance(v, float) else fmt(v)) for k, v in timings],
        "config_text": config_text,
    }
