"""Calibrate the mock against the paper's catalogue-only baselines (docs/mock.md, DESIGN §6).

Draws the mock catalogues (no images are needed), writes them in the real formats and runs the catalogue stage
on them (the paper's selection, M/L_g from the g modelMag as DESIGN §2 prescribes, the SPEC D9 split), then
measures on the test split: the constant prediction minimising L1~ (E1), a LightGBM on (L_g, z) (E2), a g-i
power law fitted by L1~ (E7) and a LightGBM on (z, L_g, L_i, L_g/L_i) (E7).

It also measures what morphology can add at most on the mock: the same two LightGBMs given the *true*
structure of each galaxy (class, bulge fraction, Sérsic index, inclination, arms, bar, clumps, dust lane, disc
size; from the mock's truth, which no stage reads) in place of CNN features, with the one-sided KS p-value of
that gain on the test split. A morphology model built from images can at best approach these (E3/E8 against
E2/E7).

This development tool uses three stages (mock, catalog, evaluate), so it lives in the top layer beside
``pipeline.py`` and goes through the stages' functions rather than copies of them. Run
``python -m morphomass.calibration --n-galaxies 5000`` (or the older
``python -m morphomass.mock.calibration``) to print the table of docs/mock.md.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from morphomass.catalog import run_catalog
from morphomass.config import load_config
from morphomass.evaluate import (
    colour_from_fluxes,
    fit_constant,
    fit_powerlaw,
    ks_one_sided_pvalue,
    l1_tilde,
    l1_tilde_per_galaxy,
    predict_powerlaw,
)
from morphomass.mock import make_survey, write_catalogues
from morphomass.workdir import WorkDir

__all__ = ["calibration_table", "main"]

#: Truth columns an image shows (the morphology a perfect CNN would read), for the ceiling rows.
TRUE_STRUCTURE = [
    "bulge_fraction",
    "sersic_n",
    "cos_incl",
    "axis_ratio",
    "n_arms",
    "arm_strength",
    "has_bar",
    "n_clumps",
    "clump_fraction",
    "has_dust_lane",
    "disk_hlr_kpc",
    "companion_flux_ratio",
]
_CLASS_CODES = {"elliptical": 0, "disk": 1, "irregular": 2, "merger": 3}
#: Catalogue features of E2 and of the E7 GBM.
GLOBAL_FEATURES = {"lg_z": ["lum_g", "z"], "gi": ["z", "lum_g", "lum_i", "lum_g_over_lum_i"]}

PAPER = {
    "constant": 6.52,
    "reference_lg_z": 4.52,
    "gi_powerlaw": 1.90,
    "gi_gbm": 1.26,
    "ml_min": 0.09,
    "ml_median": 2.7,
    "ml_max": 16.6,
    "chi2_ge_5_fraction": 1 - 73_627 / 84_723,
}


def _selected_sample(n_galaxies: int, seed: int) -> tuple[pd.DataFrame, float]:
    """Return the catalogue stage's sample of a mock (catalogues only) and its fraction with chi2_r >= 5.

    The sample carries the true structure (:data:`TRUE_STRUCTURE` and ``class_code``) for the ceiling rows.

    The mock's catalogues are written to a temporary work directory in the real formats and read back by
    ``morphomass.catalog.run_catalog``, exactly as ``morphomass run`` would; the baselines and metrics are the
    evaluate stage's, so that the numbers are the pipeline's.
    """
    config = load_config("quick", overrides={"mock": {"n_galaxies": n_galaxies, "seed": seed}})
    survey = make_survey(config.mock, np.random.default_rng(seed))
    with tempfile.TemporaryDirectory() as tmp:
        workdir = WorkDir(Path(tmp))
        workdir.ensure()
        write_catalogues(survey, workdir)
        run_catalog(config, workdir, progress=False)
        sample = pd.read_parquet(workdir.sample)
        rejected = pd.read_parquet(workdir.chi2_rejected)
    chi2_fraction = len(rejected) / (len(rejected) + len(sample))
    sample["g_minus_i"] = colour_from_fluxes(sample["flux_g"], sample["flux_i"])
    sample["lum_g_over_lum_i"] = sample["lum_g"] / sample["lum_i"]
    truth = survey.truth[["objid", "cls", *TRUE_STRUCTURE]].astype({"has_bar": float, "has_dust_lane": float})
    truth["class_code"] = truth.pop("cls").map(_CLASS_CODES)
    return sample.merge(truth, on="objid", how="left", validate="one_to_one"), chi2_fraction


def _gbm_test_l1(sample: pd.DataFrame, split: np.ndarray, features: list[str], seed: int) -> np.ndarray:
    """Per-galaxy L1~ on the test split of a LightGBM (G1-like parameters) trained on ``features``."""
    import lightgbm as lgb

    params = {
        "objective": "l1",
        "num_leaves": 40,
        "min_data_in_leaf": 150,
        "feature_fraction": 1.0,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "learning_rate": 0.05,
        "verbose": -1,
        "seed": seed,
        "deterministic": True,
        "force_col_wise": True,
        "num_threads": 2,
    }
    parts = {name: sample[split == name] for name in ("train", "val", "test")}
    data = {name: lgb.Dataset(p[features], p["ml"], weight=1 / p["ml_err"]) for name, p in parts.items()}
    model = lgb.train(
        params,
        data["train"],
        num_boost_round=3000,
        valid_sets=[data["val"]],
        callbacks=[lgb.early_stopping(100, verbose=False)],
    )
    test = parts["test"]
    pred = model.predict(test[features], num_iteration=model.best_iteration)
    return l1_tilde_per_galaxy(pred, test["ml"], test["ml_err"])


def _powerlaw_l1(sample: pd.DataFrame, split: np.ndarray) -> float:
    """Test L1~ of the g-i power law fitted by L1~ on the training split (the evaluate stage's E7 fit)."""
    train, test = sample[split == "train"], sample[split == "test"]
    coefficients = fit_powerlaw(train["g_minus_i"], train["ml"], train["ml_err"])
    return l1_tilde(predict_powerlaw(test["g_minus_i"], coefficients), test["ml"], test["ml_err"])


def calibration_table(n_galaxies: int = 5000, seed: int = 2019) -> dict[str, float]:
    """Baselines and M/L statistics of a mock with ``n_galaxies`` images, next to the paper's values."""
    sample, chi2_fraction = _selected_sample(n_galaxies, seed)
    split = sample["split"].to_numpy()
    train, test = sample[split == "train"], sample[split == "test"]
    constant = fit_constant(train["ml"], train["ml_err"])
    structure = [*TRUE_STRUCTURE, "class_code"]
    per_galaxy = {
        f"{name}{suffix}": _gbm_test_l1(sample, split, features + extra, seed)
        for name, features in GLOBAL_FEATURES.items()
        for suffix, extra in (("", []), ("_true_structure", structure))
    }
    return {
        "n_sample": int(len(sample)),
        "n_test": int((split == "test").sum()),
        "constant": l1_tilde(np.full(len(test), constant), test["ml"], test["ml_err"]),
        "reference_lg_z": float(per_galaxy["lg_z"].mean()),
        "gi_powerlaw": _powerlaw_l1(sample, split),
        "gi_gbm": float(per_galaxy["gi"].mean()),
        "lg_z_true_structure": float(per_galaxy["lg_z_true_structure"].mean()),
        "gi_true_structure": float(per_galaxy["gi_true_structure"].mean()),
        **{
            f"{name}_true_structure_ks_p": ks_one_sided_pvalue(
                per_galaxy[f"{name}_true_structure"], per_galaxy[name]
            )
            for name in GLOBAL_FEATURES
        },
        "ml_min": float(sample["ml"].min()),
        "ml_median": float(sample["ml"].median()),
        "ml_max": float(sample["ml"].max()),
        "chi2_ge_5_fraction": chi2_fraction,
    }


def main(argv: list[str] | None = None) -> None:
    """Print the calibration table as Markdown (and JSON with ``--json``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-galaxies", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=2019)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    table = calibration_table(args.n_galaxies, args.seed)
    if args.json:
        print(json.dumps(table, indent=2))
        return
    print(f"Sample after the cuts: {table['n_sample']} galaxies, test split {table['n_test']}.\n")
    print("| quantity | mock | paper | mock / paper |\n| --- | --- | --- | --- |")
    for key, paper in PAPER.items():
        print(f"| {key} | {table[key]:.3g} | {paper:.3g} | {table[key] / paper:.2f} |")
    print("\nWhat morphology can add at most (true structure in place of CNN features; paper: CNN features):")
    print()
    print("| model | catalogue only | + true structure | KS p (one-sided) | paper: + morphology |")
    print("| --- | --- | --- | --- | --- |")
    rows = (("(L_g, z)", "lg_z", "4.52 -> 2.29"), ("(z, L_g, L_i, L_g/L_i)", "gi", "1.26 -> 1.12"))
    for name, key, paper in rows:
        base = table["reference_lg_z" if key == "lg_z" else "gi_gbm"]
        print(
            f"| {name} | {base:.3g} | {table[f'{key}_true_structure']:.3g} | "
            f"{table[f'{key}_true_structure_ks_p']:.2g} | {paper} |"
        )


if __name__ == "__main__":
    main()
