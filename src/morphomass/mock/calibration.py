"""Calibrate the mock against the paper's catalogue-only baselines (docs/mock.md, DESIGN §6).

Draws the mock catalogues (no images are needed), applies the paper's selection (HyperLeda D25 > 0.4', chi2_r < 5,
valid mass and photometry), computes M/L_g from the g modelMag as the catalogue stage does (DESIGN §2), splits as
SPEC D9 and measures on the test split: the constant prediction minimising L1~ (E1), a LightGBM on (L_g, z) (E2),
a g-i power law fitted by L1~ (E7) and a LightGBM on (z, L_g, L_i, L_g/L_i) (E7).

Run ``python -m morphomass.mock.calibration --n-galaxies 5000`` to print the table of docs/mock.md.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from morphomass.config import load_config
from morphomass.mock.physics import MOCK_COSMOLOGY, M_SUN_AB
from morphomass.mock.survey import make_survey

__all__ = ["calibration_table", "main"]

PAPER = {"constant": 6.52, "reference_lg_z": 4.52, "gi_powerlaw": 1.90, "gi_gbm": 1.26,
         "ml_min": 0.09, "ml_median": 2.7, "ml_max": 16.6, "chi2_ge_5_fraction": 1 - 73_627 / 84_723}


def _l1(pred: np.ndarray, true: np.ndarray, err: np.ndarray) -> float:
    return float(np.mean(np.abs(pred - true) / err))


def _selected_sample(n_galaxies: int, seed: int) -> tuple[pd.DataFrame, float]:
    config = load_config("quick", overrides={"mock": {"n_galaxies": n_galaxies, "seed": seed}}).mock
    survey = make_survey(config, np.random.default_rng(seed))
    cat = survey.gswlc.merge(survey.photometry, left_on="objid", right_on="objID")
    cat = cat.merge(survey.truth[["objid", "d25_arcmin_leda"]], on="objid")
    big = cat[cat["d25_arcmin_leda"] > 0.4]
    valid = big[(big["log_mstar"] > -99) & (big["modelMag_g"] > -9999)]
    chi2_fraction = float((valid["chi2_r"] >= 5).mean())
    sample = valid[valid["chi2_r"] < 5].copy()
    dist_mpc = MOCK_COSMOLOGY.luminosity_distance(sample["z"].to_numpy()).value
    dist_mod = 5 * np.log10(dist_mpc * 1e5)
    for band in ("g", "i"):
        sample[f"lum_{band}"] = 10 ** (-0.4 * (sample[f"modelMag_{band}"] - dist_mod - M_SUN_AB[band]))
    sample["ml"] = 10 ** sample["log_mstar"] / sample["lum_g"]
    rel = np.log(10) * np.hypot(sample["log_mstar_err"], 0.4 * sample["modelMagErr_g"])
    sample["ml_err"] = sample["ml"] * np.maximum(rel, 0.05)
    sample["g_minus_i"] = sample["modelMag_g"] - sample["modelMag_i"]
    return sample.reset_index(drop=True), chi2_fraction


def _split(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    n_test = int(round(0.1 * n))
    n_val = int(round(0.1 * (n - n_test)))
    split = np.empty(n, dtype=object)
    split[order[:n_test]] = "test"
    split[order[n_test : n_test + n_val]] = "val"
    split[order[n_test + n_val :]] = "train"
    return split


def _gbm_l1(sample: pd.DataFrame, split: np.ndarray, features: list[str], seed: int) -> float:
    import lightgbm as lgb

    params = {"objective": "l1", "num_leaves": 40, "min_data_in_leaf": 150, "feature_fraction": 1.0,
              "bagging_fraction": 0.8, "bagging_freq": 1, "learning_rate": 0.05, "verbose": -1, "seed": seed,
              "deterministic": True, "force_col_wise": True, "num_threads": 2}
    parts = {name: sample[split == name] for name in ("train", "val", "test")}
    data = {name: lgb.Dataset(p[features], p["ml"], weight=1 / p["ml_err"]) for name, p in parts.items()}
    model = lgb.train(params, data["train"], num_boost_round=3000, valid_sets=[data["val"]],
                      callbacks=[lgb.early_stopping(100, verbose=False)])
    test = parts["test"]
    return _l1(model.predict(test[features], num_iteration=model.best_iteration), test["ml"], test["ml_err"])


def _powerlaw_l1(sample: pd.DataFrame, split: np.ndarray) -> float:
    train, test = sample[split == "train"], sample[split == "test"]

    def loss(theta: np.ndarray, part: pd.DataFrame) -> float:
        return _l1(10 ** (theta[0] + theta[1] * part["g_minus_i"]), part["ml"], part["ml_err"])

    start = np.polyfit(train["g_minus_i"], np.log10(train["ml"]), 1)[::-1]
    best = minimize(loss, start, args=(train,), method="Nelder-Mead", options={"xatol": 1e-6, "fatol": 1e-8})
    return loss(best.x, test)


def calibration_table(n_galaxies: int = 5000, seed: int = 2019) -> dict[str, float]:
    """Baselines and M/L statistics of a mock with ``n_galaxies`` images, next to the paper's values."""
    sample, chi2_fraction = _selected_sample(n_galaxies, seed)
    split = _split(len(sample), seed)
    train, test = sample[split == "train"], sample[split == "test"]
    # The constant minimising sum |c - y| / sigma is the 1/sigma-weighted median of y.
    order = np.argsort(train["ml"].to_numpy())
    cum = np.cumsum(1 / train["ml_err"].to_numpy()[order])
    constant = train["ml"].to_numpy()[order][np.searchsorted(cum, cum[-1] / 2)]
    sample["lum_g_over_lum_i"] = sample["lum_g"] / sample["lum_i"]
    return {
        "n_sample": int(len(sample)),
        "n_test": int((split == "test").sum()),
        "constant": _l1(np.full(len(test), constant), test["ml"], test["ml_err"]),
        "reference_lg_z": _gbm_l1(sample, split, ["lum_g", "z"], seed),
        "gi_powerlaw": _powerlaw_l1(sample, split),
        "gi_gbm": _gbm_l1(sample, split, ["z", "lum_g", "lum_i", "lum_g_over_lum_i"], seed),
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


if __name__ == "__main__":
    main()
