"""Probe whether one structural feature beside the colour moves the g+i GBM of a finished default run.

Fits the colour GBM (z, L_g, L_i, L_g/L_i; the quick preset's G1 settings, one thread, early stopping on the
validation split) again with the measured axis ratio, with a few classical measures, with every ``morph_*``
feature, and with the mock's *true* inclination (``cos_incl`` from ``mock_truth.parquet``: a development
probe, no stage reads it), and prints the validation and test L1~ with the one-sided paired bootstrap p-value
against the colour GBM. Usage: ``python docs/scripts/gi_structure_probe.py WORKDIR`` (a finished
``morphomass run``).
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd

from morphomass.config import load_config
from morphomass.evaluate import l1_tilde_per_galaxy, paired_bootstrap_pvalue
from morphomass.gbm import Experiment, build_features, load_feature_table
from morphomass.gbm.train import fit_booster, lgb_params, predict_ml, training_target


def main(workdir: str) -> None:
    """Fit the five models and print a Markdown table."""
    table = load_feature_table(
        f"{workdir}/sample.parquet",
        f"{workdir}/features/photometric.parquet",
        f"{workdir}/features/cnn.parquet",
    )
    config = load_config(preset="quick").gbm
    split = table.meta["split"].to_numpy()
    ml, err = table.meta["ml"].to_numpy(), table.meta["ml_err"].to_numpy()
    colour = build_features(table, Experiment("gi_gbm", morphology=False, catalog_bands="gi"))
    truth = pd.read_parquet(f"{workdir}/mock_truth.parquet").set_index("objid")
    classical = [c for c in table.features.columns if c.startswith("morph_")]
    few = ("morph_axis_ratio", "morph_concentration", "morph_gini")
    models = {
        "colour GBM (gi_gbm)": colour,
        "+ measured axis ratio": colour.assign(
            morph_axis_ratio=table.features["morph_axis_ratio"].to_numpy()
        ),
        "+ axis ratio, C, Gini": colour.assign(**{c: table.features[c].to_numpy() for c in few}),
        "+ every morph_*": colour.assign(**{c: table.features[c].to_numpy() for c in classical}),
        "+ true cos i": colour.assign(cos_i=truth.loc[table.meta["objid"].to_numpy(), "cos_incl"].to_numpy()),
    }
    label, weight = training_target(ml, err, objective="l1")
    train, val = split == "train", split == "val"
    floor = float(ml[train].min())
    per_galaxy = {}
    for name, frame in models.items():
        x = frame.to_numpy(np.float32)
        fit = fit_booster(
            x[train],
            label[train],
            None if weight is None else weight[train],
            x[val],
            label[val],
            None if weight is None else weight[val],
            params=lgb_params(config, objective="l1", num_threads=1),
            feature_names=list(frame.columns),
            max_rounds=config.max_rounds,
            early_stopping_rounds=config.early_stopping_rounds,
            min_improvement=config.early_stopping_min_improvement,
        )
        pred = predict_ml(fit.booster, x, objective="l1", floor=floor)
        per_galaxy[name] = {
            s: l1_tilde_per_galaxy(pred[split == s], ml[split == s], err[split == s]) for s in ("val", "test")
        }
    reference = per_galaxy["colour GBM (gi_gbm)"]
    print("| model | val L1~ | paired p | test L1~ | paired p |\n| --- | --- | --- | --- | --- |")
    for name, l1 in per_galaxy.items():
        cells = []
        for s in ("val", "test"):
            p = paired_bootstrap_pvalue(l1[s], reference[s], n_resamples=20_000, rng=np.random.default_rng(0))
            cells += [f"{l1[s].mean():.3f}", "-" if l1 is reference else f"{p:.2g}"]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1])
