"""Benchmark: LightGBM with the G1 parameters on a 60 000 x 2195 CNN-like feature matrix (SPEC G1-G2).

The paper trained its g-band + morphology GBM (2195 features, 59 637 training galaxies) in 16.7 CPU-min and
the top-50 retrain in 40 CPU-s (two threads of an Intel i5). This script times the same task on a synthetic
matrix with the shape and character of the CNN features (``morphomass.gbm.synthetic``: 2031 live
CNN1-trunk-like features from a latent morphology with noise, 3 x 37 probability-like features, 37 CNN4-like
features, 16 photometric features; 17 dead columns removed beforehand as the pipeline does) and the same L1~
objective, early stopping on a validation split.

Every variant builds its own Dataset and trains to early stopping; CPU = process time of all threads
(``time.process_time``), so the numbers depend less on how busy the other cores are than wall time does. The
baseline (``default``) is LightGBM's default dataset settings (``max_bin`` 255, row/col-wise chosen by
LightGBM, its feature pre-filter on) with the G1 tree parameters and the package's learning rate, measured in
the same run. Each speed setting alone, then together:

* ``col_wise``      ``force_col_wise`` (needed by ``deterministic``; skips LightGBM's row/col-wise trial);
* ``bins63``        ``max_bin=63`` (+ col-wise);
* ``quantized``     ``use_quantized_grad`` (integer gradient histograms, LightGBM >= 4.0) (+ col-wise);
* ``tolerance``     early stopping that counts only a relative improvement of ``--tolerance`` (1e-3) as one
                    (``morphomass.gbm.train.early_stopping_callback``), same patience;
* ``prefilter``     ``morphomass.gbm.train.prefilter_features`` with the default settings: a screening model
                    on a quarter of the rows (30 rounds at 4x the learning rate, every feature offered to
                    every tree) picks the ``--prefilter`` features with most gain, then the full model
                    trains on those (the screen is counted);
* ``package``       what ``train-gbm`` does with the default ``GbmConfig``: ``lgb_params`` (col-wise, 63 bins,
                    deterministic), the pre-filter and ``early_stopping_min_improvement``;
* ``top50``         retrain on the 50 most-split features of the package model (SPEC G2);
* ``reuse``         dataset reuse across experiments: the default Dataset built once, then reused as the
                    half-training-set experiment (``Dataset.subset``) and with new labels (the L2~ loss
                    experiment, ``set_label``/``set_weight``) instead of re-binning: the construction CPU
                    saved per reused experiment.

Usage::

    .venv/bin/python bench/bench_gbm.py                    # 60 000 x 2195, two threads (the paper's)
    .venv/bin/python bench/bench_gbm.py --rows 20000 --variants default package top50
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

PAPER_FULL_CPU_S = 16.7 * 60
PAPER_TOP50_CPU_S = 40.0
ALL_VARIANTS = (
    "default",
    "col_wise",
    "bins63",
    "quantized",
    "tolerance",
    "prefilter",
    "package",
    "top50",
    "reuse",
)


def make_matrix(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Make the CNN-like feature matrix (float32, dead columns removed), M/L and its error."""
    # The synthetic tables are the tests' factory (tests/factories/gbm_tables.py), not part of the package.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from factories.gbm_tables import make_synthetic_tables

    sample, phot, cnn = make_synthetic_tables(rows, rng=np.random.default_rng(seed), n_trunk=2048, n_dead=17)
    feats = np.hstack(
        [phot.drop(columns="objid").to_numpy(np.float32), cnn.drop(columns="objid").to_numpy(np.float32)]
    )
    names = [*phot.columns[1:], *cnn.columns[1:]]
    live = feats.max(axis=0) > feats.min(axis=0)
    return (
        feats[:, live],
        sample["ml"].to_numpy(),
        sample["ml_err"].to_numpy(),
        [n for n, k in zip(names, live, strict=True) if k],
    )


class Timer:
    """Context manager measuring process CPU time (all threads) and wall time of its block."""

    def __enter__(self) -> Timer:
        self.cpu0, self.wall0 = time.process_time(), time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cpu = time.process_time() - self.cpu0
        self.wall = time.perf_counter() - self.wall0


def train(
    params: dict[str, Any],
    x_tr: np.ndarray,
    y_tr: np.ndarray,
    w_tr: np.ndarray,
    x_va: np.ndarray,
    y_va: np.ndarray,
    w_va: np.ndarray,
    *,
    max_rounds: int,
    patience: int,
    min_improvement: float = 0.0,
) -> dict[str, Any]:
    """Build the datasets and train to early stopping; CPU/wall of both, rounds, validation L1~."""
    import lightgbm as lgb

    from morphomass.gbm.train import early_stopping_callback

    with Timer() as build:
        dtr = lgb.Dataset(x_tr, y_tr, weight=w_tr, params=params, free_raw_data=False).construct()
        dva = lgb.Dataset(x_va, y_va, weight=w_va, reference=dtr).construct()
    rounds = [0]

    def count(env: Any) -> None:
        rounds[0] = env.iteration + 1

    with Timer() as fit:
        booster = lgb.train(
            params,
            dtr,
            num_boost_round=max_rounds,
            valid_sets=[dva],
            callbacks=[count, early_stopping_callback(patience, min_improvement)],
        )
    pred = booster.predict(x_va)
    return {
        "booster": booster,
        "build_cpu": build.cpu,
        "fit_cpu": fit.cpu,
        "cpu": build.cpu + fit.cpu,
        "wall": build.wall + fit.wall,
        "rounds": rounds[0],
        "best": booster.best_iteration,
        "val_l1": float(np.mean(np.abs(pred - y_va) * w_va)),
        "dataset": dtr,
    }


def main() -> None:
    """Run the benchmark (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rows", type=int, default=66_264, help="galaxies (80/10/10 split; 66 264 -> ~53k train)"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--tolerance",
        type=float,
        default=1e-3,
        help="relative improvement that counts (the tolerance variant)",
    )
    parser.add_argument(
        "--package-tolerance",
        type=float,
        default=None,
        help="early_stopping_min_improvement of the package variant (default: GbmConfig's)",
    )
    parser.add_argument(
        "--prefilter",
        type=int,
        default=None,
        help="features kept by the screening model (default: GbmConfig().prefilter_features)",
    )
    parser.add_argument("--variants", nargs="+", default=list(ALL_VARIANTS), choices=ALL_VARIANTS)
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        help="also write the figures as JSON to this file (bench/run_all.py reads it)",
    )
    args = parser.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")  # idle OpenMP threads must not burn CPU time

    import lightgbm as lgb

    from morphomass.config import GbmConfig
    from morphomass.gbm.train import lgb_params, prefilter_features, rank_by_split_count

    cfg = GbmConfig(num_threads=args.threads, seed=args.seed)
    args.prefilter = args.prefilter or cfg.prefilter_features
    if args.package_tolerance is None:
        args.package_tolerance = cfg.early_stopping_min_improvement
    with Timer() as gen:
        x, ml, err, names = make_matrix(args.rows, args.seed)
    rng = np.random.default_rng(args.seed + 1)
    order = rng.permutation(len(ml))
    n_test = n_val = len(ml) // 10
    tr, va = order[n_test + n_val :], order[n_test : n_test + n_val]
    x_tr, x_va = x[tr], x[va]
    y_tr, y_va, w_tr, w_va = ml[tr], ml[va], 1 / err[tr], 1 / err[va]
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; "
        f"lightgbm {lgb.__version__}; {args.threads} threads"
    )
    print(
        f"matrix: {x_tr.shape[0]} train x {x.shape[1]} features (+{len(va)} validation), "
        f"made in {gen.wall:.0f} s"
    )

    g1 = {
        "objective": "l1",
        "metric": "l1",
        "num_leaves": cfg.num_leaves,
        "min_data_in_leaf": cfg.min_data_in_leaf,
        "feature_fraction": cfg.feature_fraction,
        "bagging_fraction": cfg.bagging_fraction,
        "bagging_freq": cfg.bagging_freq,
        "learning_rate": cfg.learning_rate,
        "seed": cfg.seed,
        "num_threads": args.threads,
        "verbosity": -1,
    }
    package = lgb_params(cfg)
    variants: dict[str, dict[str, Any]] = {
        "default": g1,
        "col_wise": {**g1, "force_col_wise": True},
        "bins63": {**g1, "force_col_wise": True, "max_bin": 63},
        "quantized": {**g1, "force_col_wise": True, "use_quantized_grad": True},
    }
    kw = {"max_rounds": cfg.max_rounds, "patience": cfg.early_stopping_rounds}
    results: dict[str, dict[str, Any]] = {}
    for name in args.variants:
        if name == "tolerance":
            results[name] = train(
                g1, x_tr, y_tr, w_tr, x_va, y_va, w_va, **kw, min_improvement=args.tolerance
            )
        elif name in variants:
            try:
                results[name] = train(variants[name], x_tr, y_tr, w_tr, x_va, y_va, w_va, **kw)
            except lgb.basic.LightGBMError as err:  # use_quantized_grad: LightGBM issue #5994
                print(f"  {name:10s} failed: {err}", flush=True)
                continue
        elif name in ("prefilter", "package"):
            params = g1 if name == "prefilter" else package
            with Timer() as screen:
                keep = prefilter_features(x_tr, y_tr, w_tr, params=params, n_keep=args.prefilter, rng=rng)
            tol = args.package_tolerance if name == "package" else 0.0
            r = train(params, x_tr[:, keep], y_tr, w_tr, x_va[:, keep], y_va, w_va, **kw, min_improvement=tol)
            r["build_cpu"] += screen.cpu
            r["cpu"] += screen.cpu
            r["wall"] += screen.wall
            r["columns"] = keep
            results[name] = r
        else:
            continue
        r = results[name]
        print(
            f"  {name:10s} build {r['build_cpu']:6.1f} CPU-s, fit {r['fit_cpu']:7.1f} CPU-s, "
            f"{r['rounds']} rounds, val L1~ {r['val_l1']:.4f}",
            flush=True,
        )

    source = results.get("package")
    if "top50" in args.variants and source is not None:
        cols = source["columns"]
        top = [cols[int(n.split("_")[1])] for n, _ in rank_by_split_count(source["booster"])[:50]]
        results["top50"] = train(package, x_tr[:, top], y_tr, w_tr, x_va[:, top], y_va, w_va, **kw)

    if "reuse" in args.variants and "default" in results:
        base = results["default"]["dataset"]
        half = np.sort(rng.choice(len(tr), size=len(tr) // 2, replace=False))
        with Timer() as reuse_half:
            base.subset(half).construct()
        with Timer() as reuse_label:
            base.set_label(y_tr)
            base.set_weight(w_tr**2)
        with Timer() as rebuild:
            lgb.Dataset(x_tr, y_tr, weight=w_tr, params=g1).construct()
        print(
            f"  reuse      rebuild {rebuild.cpu:.1f} CPU-s; subset (half) {reuse_half.cpu:.2f} CPU-s; "
            f"new labels/weights {reuse_label.cpu:.3f} CPU-s per reused experiment"
        )

    base = results.get("default")
    print()
    print(
        "| variant | CPU-s to early stopping | rounds | CPU-ms/round | val L1~ | vs default CPU "
        "| vs default L1~ | paper's time / ours |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, r in results.items():
        paper = PAPER_TOP50_CPU_S if name == "top50" else PAPER_FULL_CPU_S
        ratio_cpu = f"{r['cpu'] / base['cpu']:.2f}" if base else "-"
        ratio_l1 = f"{r['val_l1'] / base['val_l1'] - 1:+.2%}" if base else "-"
        print(
            f"| {name} | {r['cpu']:.1f} | {r['rounds']} | {1000 * r['fit_cpu'] / max(1, r['rounds']):.1f} | "
            f"{r['val_l1']:.4f} | {ratio_cpu} | {ratio_l1} | {paper / r['cpu']:.1f}x |"
        )
    print(
        f"\npaper: {PAPER_FULL_CPU_S:.0f} CPU-s (2195 features), {PAPER_TOP50_CPU_S:.0f} CPU-s (top 50); "
        "target: package <= paper / 8 with val L1~ within 1 % of default"
    )
    if args.json is not None:
        figures = {
            "rows_train": int(x_tr.shape[0]),
            "features": int(x.shape[1]),
            "threads": args.threads,
            "paper_full_cpu_s": PAPER_FULL_CPU_S,
            "paper_top50_cpu_s": PAPER_TOP50_CPU_S,
            "rows": [
                {
                    "variant": name,
                    "cpu_s": r["cpu"],
                    "build_cpu_s": r["build_cpu"],
                    "fit_cpu_s": r["fit_cpu"],
                    "rounds": r["rounds"],
                    "val_l1_tilde": r["val_l1"],
                    "vs_default_cpu": r["cpu"] / base["cpu"] if base else None,
                }
                for name, r in results.items()
            ],
        }
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
