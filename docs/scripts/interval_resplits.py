"""Coverage of the prediction intervals over several random calibrations of a finished default run.

train-gbm calibrates the intervals once (cross-conformal, ``gbm.interval_folds`` folds of the training split,
seeded by ``gbm.seed``). This script refits that calibration for the main models with other fold seeds — the
same point model, features, parameters and rounds as train-gbm recorded in ``models/gbm/<model>.json`` — and
prints the test-split coverage at 68 % and 95 % of each, and their mean, beside the nominal levels. The
issue asks the mean of 5 resplits to be within 2 points of nominal. Usage::

    python docs/scripts/interval_resplits.py WORKDIR [--seeds 1 2 3 4 5]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from morphomass.config import load_config
from morphomass.gbm import Experiment, build_features, load_feature_table
from morphomass.gbm.train import auto_threads, lgb_params, predict_ml, training_target
from morphomass.intervals import (
    calibration_levels,
    empirical_coverage,
    fit_cross_conformal,
    predict_intervals,
)

MODELS = {"g_morph": Experiment("g_morph"), "gi_morph": Experiment("gi_morph", catalog_bands="gi")}


def main() -> None:
    """Refit the calibrations and print a Markdown table of test coverage."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    args = parser.parse_args()
    wd = args.workdir
    config = load_config("quick")
    gcfg = config.gbm
    table = load_feature_table(
        wd / "sample.parquet", wd / "features" / "photometric.parquet", wd / "features" / "cnn.parquet"
    )
    train, test = table.split_mask("train"), table.split_mask("test")
    ml, ml_err = table.meta["ml"].to_numpy(), table.meta["ml_err"].to_numpy()
    floor = float(ml[train].min())
    levels = tuple(gcfg.interval_levels)
    print("| model | fold seed | " + " | ".join(f"coverage {level:.0%}" for level in levels) + " |")
    print("| --- | --- |" + " --- |" * len(levels))
    for name, experiment in MODELS.items():
        import lightgbm as lgb

        info = json.loads((wd / "models" / "gbm" / f"{name}.json").read_text(encoding="utf-8"))
        frame = build_features(table, experiment)[info["features"]]
        x = frame.to_numpy(dtype=np.float32)
        label, weight = training_target(ml, ml_err, objective=info["objective"])
        threads = auto_threads(int(train.sum()), x.shape[1], configured=gcfg.num_threads)
        params = lgb_params(gcfg, objective=info["objective"], num_threads=threads, **info["cv_params"])
        booster = lgb.Booster(model_file=str(wd / "models" / "gbm" / f"{name}.txt"))
        pred = predict_ml(booster, x[test], objective=info["objective"], floor=floor)
        coverages = []
        for seed in args.seeds:
            calibration = fit_cross_conformal(
                x[train],
                label[train],
                None if weight is None else weight[train],
                params=params,
                num_rounds=int(info["best_iteration"]),
                feature_names=info["features"],
                label_scale="dex" if info["objective"] == "rmsle" else "linear",
                levels=calibration_levels(*levels),
                folds=gcfg.interval_folds,
                seed=seed,
                prediction_floor=floor,
            )
            bounds = predict_intervals(calibration, calibration.to_dex(pred), x[test], levels=levels)
            row = [empirical_coverage(np.log10(ml[test]), *bounds[level]) for level in levels]
            coverages.append(row)
            print(f"| {name} | {seed} | " + " | ".join(f"{c:.3f}" for c in row) + " |", flush=True)
        mean = np.mean(coverages, axis=0)
        print(
            f"| {name} | mean of {len(args.seeds)} | "
            + " | ".join(
                f"**{m:.3f}** ({100 * (m - level):+.1f} points)"
                for m, level in zip(mean, levels, strict=True)
            )
            + " |"
        )


if __name__ == "__main__":
    main()
