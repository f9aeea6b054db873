"""Calibrate the mock against the paper's catalogue-only baselines (docs/mock.md, DESIGN §6).

Draws the mock catalogues, writes them in the real formats and runs the catalogue stage on them (the paper's
selection, M/L_g from the g modelMag as DESIGN §2 prescribes, the SPEC D9 split), then prints:

1. the catalogue-only baselines, the constant minimising L1~ (E1), a LightGBM on (L_g, z) (E2), a g-i power
   law fitted by L1~ (E7) and a LightGBM on (z, L_g, L_i, L_g/L_i) (E7), on the test split and on a seeded
   5-fold cross-validation over the whole sample, beside the paper's values, flagging a CV baseline more than
   25 % off the paper's;
2. the sample's facts (size, median redshift, M/L range, fraction rejected by chi2_r >= 5);
3. the median automatic scaling value a of the preprocess stage on a small mock *with* images (paper: 78);
4. what morphology can add at most: the two LightGBMs given the mock's *true* structure (read from its truth,
   which no stage reads) in place of CNN features, with one-sided KS and paired-bootstrap p-values;
5. what each hidden property adds at fixed colour: the g-i LightGBM given one true property at a time.

This development tool uses several stages (mock, catalog, preprocess, evaluate), so it lives in the top layer
beside ``pipeline.py`` and goes through the stages' public functions rather than copies of them. Run
``python -m morphomass.calibration --n-galaxies 5000`` (or ``python -m morphomass.mock.calibration``).
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from morphomass.catalog import run_catalog
from morphomass.config import load_config
from morphomass.evaluate import (
    colour_from_fluxes,
    fit_constant,
    fit_powerlaw,
    ks_one_sided_pvalue,
    l1_tilde_per_galaxy,
    paired_bootstrap_pvalue,
    predict_powerlaw,
)
from morphomass.mock import make_survey, run_mock, write_catalogues
from morphomass.preprocess import run_preprocess
from morphomass.workdir import WorkDir

__all__ = [
    "BASELINE_TOLERANCE",
    "PAPER",
    "calibration_table",
    "cv_splits",
    "format_markdown",
    "main",
    "measure_scaling_a",
    "off_by_more_than",
    "structure_columns",
]

#: Truth columns an image shows (the morphology a perfect CNN would read), in the order the tables list them.
#: Only those present in the mock's truth are used; ``class_code`` is made from the truth's ``cls``.
STRUCTURE_ORDER = {
    "class_code": "class",
    "bulge_fraction": "bulge fraction B/T",
    "sersic_n": "Sérsic n",
    "cos_incl": "inclination (cos i)",
    "axis_ratio": "axis ratio",
    "n_arms": "number of arms",
    "arm_strength": "arm strength",
    "has_bar": "bar",
    "n_clumps": "number of clumps",
    "clump_fraction": "clump light fraction",
    "has_dust_lane": "dust lane",
    "disk_hlr_kpc": "disc half-light radius",
    "bulge_hlr_kpc": "bulge half-light radius",
    "companion_flux_ratio": "merger companion flux",
    "nucleus_flux_fraction": "nucleus flux fraction",
    "n_neighbours": "neighbouring galaxies",
}
#: Truth columns starting so are structure too (visible properties added after this list was written).
STRUCTURE_PREFIXES = ("nucleus_", "n_neighbour", "neighbour_")
#: The stellar population behind M/L, which no image shows: the reference rows of the per-property table.
POPULATION_ORDER = {
    "age": "stellar age",
    "metallicity": "metallicity",
    "burst": "burst mass fraction",
    "a_g_mag": "dust attenuation A_g",
}
#: Catalogue features of E2 and of the E7 GBM.
GLOBAL_FEATURES = {"lg_z": ["lum_g", "z"], "gi": ["z", "lum_g", "lum_i", "lum_g_over_lum_i"]}
#: The baselines, their names in the tables and the paper's L1~ (test split, 7 363 galaxies).
BASELINES = {
    "constant": ("E1 constant", 6.52),
    "reference_lg_z": ("E2 GBM on (L_g, z)", 4.52),
    "gi_powerlaw": ("E7 g-i power law", 1.90),
    "gi_gbm": ("E7 GBM on (z, L_g, L_i, L_g/L_i)", 1.26),
}
#: The paper's sample: size, median redshift, M/L range and fraction rejected by the chi2 cut.
PAPER_SAMPLE = {
    "n_sample": 73_627,
    "median_z": 0.05,
    "ml_min": 0.09,
    "ml_median": 2.7,
    "ml_max": 16.6,
    "chi2_ge_5_fraction": 1 - 73_627 / 84_723,
}
PAPER = {**{key: value for key, (_, value) in BASELINES.items()}, **PAPER_SAMPLE}
#: The paper's median automatic scaling value a of the g images (SPEC I3).
PAPER_SCALING_A = 78.0
#: The paper's catalogue-only -> + CNN morphology L1~ for the two ceiling rows.
PAPER_MORPHOLOGY = {"lg_z": "4.52 -> 2.29", "gi": "1.26 -> 1.12"}
#: A CV baseline further than this (relative) from the paper's is flagged.
BASELINE_TOLERANCE = 0.25
N_FOLDS = 5
BOOTSTRAP_RESAMPLES = 10_000

#: A model: (sample, split labels) -> predicted M/L of the rows labelled "test".
Predictor = Callable[[pd.DataFrame, np.ndarray], np.ndarray]


def off_by_more_than(mock: float, paper: float, tolerance: float = BASELINE_TOLERANCE) -> bool:
    """Tell whether ``mock`` differs from ``paper`` by more than ``tolerance`` of the paper's value.

    Parameters
    ----------
    mock, paper : float
        The mock's and the paper's value (paper > 0).
    tolerance : float
        Relative tolerance (0.25: 25 %).

    Returns
    -------
    bool
        True when ``|mock / paper - 1| > tolerance`` or the mock's value is not finite.
    """
    return not math.isfinite(mock) or abs(mock / paper - 1) > tolerance


def structure_columns(columns: list[str] | pd.Index) -> list[str]:
    """Pick the true-structure columns present among ``columns``, in the tables' fixed order.

    Parameters
    ----------
    columns : list of str
        Column names of the sample merged with the truth.

    Returns
    -------
    list of str
        Those of :data:`STRUCTURE_ORDER` present, then any other column starting with one of
        :data:`STRUCTURE_PREFIXES`, sorted.
    """
    present = set(columns)
    known = [name for name in STRUCTURE_ORDER if name in present]
    extra = sorted(n for n in present if n.startswith(STRUCTURE_PREFIXES) and n not in STRUCTURE_ORDER)
    return known + extra


def cv_splits(n: int, *, n_folds: int = N_FOLDS, val_fraction: float = 0.1, seed: int) -> list[np.ndarray]:
    """Make the split labels of a seeded k-fold cross-validation.

    Each galaxy is in the test part of exactly one fold. In each fold, ``ceil(val_fraction * rest)`` galaxies
    of the other folds are labelled ``"val"`` (the early stopping of the GBMs, as the SPEC D9 split's
    validation set) and the rest ``"train"``.

    Parameters
    ----------
    n : int
        Number of galaxies.
    n_folds : int
        Number of folds; their sizes differ by at most one.
    val_fraction : float
        Fraction of the training folds kept for validation.
    seed : int
        Seed of the folds.

    Returns
    -------
    list of (n,) numpy.ndarray of str
        ``"train"``, ``"val"`` or ``"test"`` per galaxy, one array per fold.
    """
    rng = np.random.default_rng(seed)
    fold = np.empty(n, dtype=np.int64)
    fold[rng.permutation(n)] = np.arange(n) % n_folds
    splits = []
    for k in range(n_folds):
        labels = np.where(fold == k, "test", "train")
        rest = np.flatnonzero(fold != k)
        labels[rng.choice(rest, size=math.ceil(val_fraction * len(rest) - 1e-9), replace=False)] = "val"
        splits.append(labels)
    return splits


def _merge_truth(sample: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """Join the truth's structure and population columns to the sample (``class_code`` from ``cls``)."""
    truth = truth.copy()
    if "cls" in truth:
        truth["class_code"] = pd.Categorical(truth["cls"].astype(str)).codes.astype(np.float64)
    wanted = [c for c in [*structure_columns(truth.columns), *POPULATION_ORDER] if c in truth]
    numeric = [c for c in wanted if pd.api.types.is_numeric_dtype(truth[c]) or truth[c].dtype == bool]
    columns = truth[["objid", *numeric]].astype(dict.fromkeys(numeric, np.float64))
    return sample.merge(columns, on="objid", how="left", validate="one_to_one")


def _selected_sample(n_galaxies: int, seed: int) -> tuple[pd.DataFrame, float]:
    """Return the catalogue stage's sample of a mock (catalogues only) and its fraction with chi2_r >= 5.

    The mock's catalogues are written to a temporary work directory in the real formats and read back by
    ``morphomass.catalog.run_catalog``, exactly as ``morphomass run`` would. The sample carries the true
    structure and stellar population of each galaxy, from the mock's truth.
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
    return _merge_truth(sample, survey.truth), chi2_fraction


def _predict_constant(sample: pd.DataFrame, split: np.ndarray) -> np.ndarray:
    """Predict the constant minimising L1~ on the training rows (E1) for the test rows."""
    train = sample[split == "train"]
    return np.full(int((split == "test").sum()), fit_constant(train["ml"], train["ml_err"]))


def _predict_powerlaw(sample: pd.DataFrame, split: np.ndarray) -> np.ndarray:
    """Predict the test rows with the g-i power law fitted by L1~ on the training rows (E7)."""
    train, test = sample[split == "train"], sample[split == "test"]
    coefficients = fit_powerlaw(train["g_minus_i"], train["ml"], train["ml_err"])
    return predict_powerlaw(test["g_minus_i"], coefficients)


def _predict_gbm(
    sample: pd.DataFrame, split: np.ndarray, *, features: list[str], seed: int, rows: str = "test"
) -> np.ndarray:
    """Predict the ``rows`` split (default "test") with a LightGBM (G1-like parameters) on ``features``.

    The model trains on the "train" rows and is early-stopped on the "val" rows, as the pipeline's GBMs are;
    scores of the "val" rows are therefore as optimistic as the pipeline's own validation scores, which makes
    them comparable with those.
    """
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
        "num_threads": 1,  # on a few thousand rows, more threads cost more than they give
    }
    parts = {name: sample[split == name] for name in ("train", "val")}
    data = {name: lgb.Dataset(p[features], p["ml"], weight=1 / p["ml_err"]) for name, p in parts.items()}
    model = lgb.train(
        params,
        data["train"],
        num_boost_round=3000,
        valid_sets=[data["val"]],
        callbacks=[lgb.early_stopping(100, verbose=False)],
    )
    return model.predict(sample.loc[split == rows, features], num_iteration=model.best_iteration)


def _score(sample: pd.DataFrame, splits: list[np.ndarray], predict: Predictor) -> np.ndarray:
    """Per-galaxy L1~ of the test rows of each split, NaN for galaxies in no split's test part.

    Parameters
    ----------
    sample : pandas.DataFrame
        The sample (``ml``, ``ml_err`` and the predictor's columns).
    splits : list of (N,) numpy.ndarray of str
        Split labels; their test parts must be disjoint.
    predict : Predictor

    Returns
    -------
    (N,) numpy.ndarray of float64
    """
    l1 = np.full(len(sample), np.nan)
    for split in splits:
        test = split == "test"
        truth = sample[test]
        l1[test] = l1_tilde_per_galaxy(predict(sample, split), truth["ml"], truth["ml_err"])
    return l1


class _Evaluation:
    """The sample with its test split and CV folds: scores predictors on both, caching the GBMs' scores."""

    def __init__(self, sample: pd.DataFrame, seed: int) -> None:
        self.sample = sample
        self.seed = seed
        self.test_split = sample["split"].to_numpy()
        self.folds = cv_splits(len(sample), seed=seed)
        self._gbm_cache: dict[tuple[str, ...], tuple[np.ndarray, np.ndarray]] = {}

    def scores(self, predict: Predictor) -> tuple[np.ndarray, np.ndarray]:
        """Per-galaxy L1~ on the test split (test galaxies only) and out of fold in the CV (every galaxy)."""
        test = _score(self.sample, [self.test_split], predict)[self.test_split == "test"]
        return test, _score(self.sample, self.folds, predict)

    def gbm_scores(self, features: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`scores` of the LightGBM on ``features`` (computed once per feature list)."""
        key = tuple(features)
        if key not in self._gbm_cache:
            self._gbm_cache[key] = self.scores(partial(_predict_gbm, features=features, seed=self.seed))
        return self._gbm_cache[key]

    def gbm_val_scores(self, features: list[str]) -> np.ndarray:
        """Per-galaxy L1~ on the validation split of the SPEC D9 split, of the LightGBM on ``features``."""
        pred = _predict_gbm(self.sample, self.test_split, features=features, seed=self.seed, rows="val")
        val = self.sample[self.test_split == "val"]
        return l1_tilde_per_galaxy(pred, val["ml"], val["ml_err"])

    def fold_means(self, l1: np.ndarray) -> np.ndarray:
        """Mean out-of-fold L1~ of each fold."""
        return np.array([l1[split == "test"].mean() for split in self.folds])

    def paired_p(self, candidate: np.ndarray, reference: np.ndarray) -> float:
        """Paired-bootstrap p-value that ``candidate`` is not better than ``reference`` (same galaxies)."""
        rng = np.random.default_rng(self.seed)
        return paired_bootstrap_pvalue(candidate, reference, n_resamples=BOOTSTRAP_RESAMPLES, rng=rng)


def _baseline_rows(ev: _Evaluation) -> dict[str, dict[str, Any]]:
    """Score the four catalogue-only baselines on the test split and the CV, beside the paper's values."""
    scores = {
        "constant": ev.scores(_predict_constant),
        "reference_lg_z": ev.gbm_scores(GLOBAL_FEATURES["lg_z"]),
        "gi_powerlaw": ev.scores(_predict_powerlaw),
        "gi_gbm": ev.gbm_scores(GLOBAL_FEATURES["gi"]),
    }
    rows = {}
    for key, (test_l1, cv) in scores.items():
        name, paper = BASELINES[key]
        test = float(test_l1.mean())
        rows[key] = {
            "name": name,
            "paper": paper,
            "test": test,
            "test_ratio": test / paper,
            "cv": float(cv.mean()),
            "cv_fold_std": float(ev.fold_means(cv).std(ddof=1)),
            "cv_ratio": float(cv.mean()) / paper,
            "cv_off_by_more_than_tolerance": off_by_more_than(float(cv.mean()), paper),
        }
    return rows


def _sample_facts(sample: pd.DataFrame, chi2_fraction: float) -> dict[str, float]:
    """Size, median redshift, M/L range and chi2 rejection fraction of the sample."""
    return {
        "n_sample": int(len(sample)),
        "n_test": int((sample["split"] == "test").sum()),
        "median_z": float(sample["z"].median()),
        "ml_min": float(sample["ml"].min()),
        "ml_median": float(sample["ml"].median()),
        "ml_max": float(sample["ml"].max()),
        "chi2_ge_5_fraction": chi2_fraction,
    }


def _gain(reference: float, candidate: float) -> float:
    """Relative L1~ gain of ``candidate`` over ``reference`` (positive: better)."""
    return (reference - candidate) / reference


def _ceiling_rows(ev: _Evaluation, structure: list[str]) -> dict[str, dict[str, Any]]:
    """Score the two catalogue GBMs without and with the whole true structure; KS and paired-bootstrap p.

    Besides the test split and the CV, the validation split: the yardstick on which the pipeline's CNN recipe
    is chosen (``bench/cnn_recipe_sweep.py``), so that the share of the way to the ceiling can be measured
    without reading test numbers.
    """
    rows = {}
    for key, features in GLOBAL_FEATURES.items():
        test_base, cv_base = ev.gbm_scores(features)
        test_best, cv_best = ev.gbm_scores(features + structure)
        val_base, val_best = ev.gbm_val_scores(features), ev.gbm_val_scores(features + structure)
        rows[key] = {
            "paper": PAPER_MORPHOLOGY[key],
            "test_catalogue_only": float(test_base.mean()),
            "test_true_structure": float(test_best.mean()),
            "test_gain": _gain(test_base.mean(), test_best.mean()),
            "test_ks_p": ks_one_sided_pvalue(test_best, test_base),
            "test_paired_bootstrap_p": ev.paired_p(test_best, test_base),
            "cv_catalogue_only": float(cv_base.mean()),
            "cv_true_structure": float(cv_best.mean()),
            "cv_gain": _gain(cv_base.mean(), cv_best.mean()),
            "cv_paired_bootstrap_p": ev.paired_p(cv_best, cv_base),
            "val_catalogue_only": float(val_base.mean()),
            "val_true_structure": float(val_best.mean()),
            "val_gain": _gain(val_base.mean(), val_best.mean()),
            "val_paired_bootstrap_p": ev.paired_p(val_best, val_base),
        }
    return rows


def _property_rows(ev: _Evaluation, columns: dict[str, str], reference: dict[str, np.ndarray]) -> list[dict]:
    """Score the g-i GBM given one hidden property at a time; sort by CV gain (largest first)."""
    rows = []
    for column, label in columns.items():
        test, cv = ev.gbm_scores([*GLOBAL_FEATURES["gi"], column])
        rows.append(
            {
                "column": column,
                "property": label,
                "test": float(test.mean()),
                "test_gain": _gain(reference["test"].mean(), test.mean()),
                "cv": float(cv.mean()),
                "cv_gain": _gain(reference["cv"].mean(), cv.mean()),
                "cv_paired_bootstrap_p": ev.paired_p(cv, reference["cv"]),
            }
        )
    return sorted(rows, key=lambda row: -row["cv_gain"])


def _hidden_property_table(ev: _Evaluation, structure: list[str]) -> dict[str, Any]:
    """Measure what each true structural (and, for reference, population) property adds to the g-i GBM."""
    test, cv = ev.gbm_scores(GLOBAL_FEATURES["gi"])
    reference = {"test": test, "cv": cv}
    labels = {column: STRUCTURE_ORDER.get(column, column.replace("_", " ")) for column in structure}
    population = {c: label for c, label in POPULATION_ORDER.items() if c in ev.sample}
    return {
        "features": GLOBAL_FEATURES["gi"],
        "test_reference": float(reference["test"].mean()),
        "cv_reference": float(reference["cv"].mean()),
        "structure": _property_rows(ev, labels, reference),
        "population": _property_rows(ev, population, reference),
    }


def measure_scaling_a(n_galaxies: int, seed: int) -> dict[str, float]:
    """Run the mock, catalogue and preprocess stages on a small mock with images; return its scaling values a.

    Parameters
    ----------
    n_galaxies : int
        ``mock.n_galaxies`` (galaxies with images) of the small mock.
    seed : int
        Its seed.

    Returns
    -------
    dict
        ``n_galaxies`` (mock), ``n_sample`` (after the catalogue's cuts), ``n_preprocessed``, ``n_failed``,
        the ``median`` (the stage's ``median_scaling_a``), the 16th and 84th percentiles ``p16`` and ``p84``
        of a over the galaxies preprocessed, and the ``paper``'s median.
    """
    config = load_config("quick", overrides={"mock": {"n_galaxies": n_galaxies, "seed": seed}})
    with tempfile.TemporaryDirectory() as tmp:
        workdir = WorkDir(Path(tmp))
        run_mock(config, workdir, progress=False)
        catalog = run_catalog(config, workdir, progress=False)
        result = run_preprocess(config, workdir, progress=False)
        galaxies = pd.read_csv(workdir.preprocess_galaxies)
    a = galaxies.loc[galaxies["ok"].astype(bool), "scaling_a"].to_numpy(dtype=np.float64)
    p16, p84 = np.percentile(a, [16, 84]) if len(a) else (math.nan, math.nan)
    median = result.summary["median_scaling_a"]
    return {
        "n_galaxies": n_galaxies,
        "n_sample": int(catalog.summary["sample"]),
        "n_preprocessed": int(result.summary["preprocessed"]),
        "n_failed": int(result.summary["failed"]),
        "median": math.nan if median is None else float(median),
        "p16": float(p16),
        "p84": float(p84),
        "paper": PAPER_SCALING_A,
    }


def calibration_table(
    n_galaxies: int = 5000, seed: int = 2019, *, scaling_sample: int = 400
) -> dict[str, Any]:
    """Measure the mock's baselines, sample, scaling and morphology ceilings next to the paper's values.

    Parameters
    ----------
    n_galaxies : int
        Galaxies with images in the mock whose catalogues are drawn (no images are rendered for these).
    seed : int
        Seed of the mock, of the CV folds, of the GBMs and of the bootstraps.
    scaling_sample : int
        Galaxies of the small mock rendered and preprocessed to measure the scaling value a; 0 skips it.

    Returns
    -------
    dict
        JSON-serialisable: ``sample``, ``baselines``, ``ceilings``, ``hidden_properties``, ``scaling_a``
        (None when skipped) and the settings.
    """
    sample, chi2_fraction = _selected_sample(n_galaxies, seed)
    ev = _Evaluation(sample, seed)
    structure = structure_columns(sample.columns)
    return {
        "n_galaxies": n_galaxies,
        "seed": seed,
        "n_folds": N_FOLDS,
        "cv_score": "mean L1~ over every galaxy's out-of-fold prediction (pooled); std of the fold means",
        "tolerance": BASELINE_TOLERANCE,
        "sample": _sample_facts(sample, chi2_fraction),
        "baselines": _baseline_rows(ev),
        "structure_columns": structure,
        "ceilings": _ceiling_rows(ev, structure),
        "hidden_properties": _hidden_property_table(ev, structure),
        "scaling_a": measure_scaling_a(scaling_sample, seed) if scaling_sample > 0 else None,
    }


def _bootstrap_p(value: float) -> str:
    """Format a paired-bootstrap p-value, its floor ``1 / (R + 1)`` as an upper bound."""
    return (
        f"<= {1 / (BOOTSTRAP_RESAMPLES + 1):.0e}"
        if value <= 1 / (BOOTSTRAP_RESAMPLES + 1)
        else f"{value:.2g}"
    )


def _baseline_markdown(table: dict[str, Any]) -> list[str]:
    lines = [
        f"## Catalogue-only baselines, L1~ (CV: {table['n_folds']}-fold over the whole sample, pooled "
        "out-of-fold, ± the std of the fold means)",
        "",
        "| baseline | paper | test split | test / paper | CV | CV / paper | CV within 25 % |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in table["baselines"].values():
        flag = "**no**" if row["cv_off_by_more_than_tolerance"] else "yes"
        lines.append(
            f"| {row['name']} | {row['paper']:.2f} | {row['test']:.2f} | {row['test_ratio']:.2f} | "
            f"{row['cv']:.2f} ± {row['cv_fold_std']:.2f} | {row['cv_ratio']:.2f} | {flag} |"
        )
    return lines


def _sample_markdown(table: dict[str, Any]) -> list[str]:
    names = {
        "n_sample": ("galaxies after the cuts", "{:.0f}"),
        "median_z": ("median redshift", "{:.3f}"),
        "ml_min": ("M/L min", "{:.2f}"),
        "ml_median": ("M/L median", "{:.2f}"),
        "ml_max": ("M/L max", "{:.1f}"),
        "chi2_ge_5_fraction": ("fraction with chi2_r >= 5", "{:.3f}"),
    }
    lines = ["## The sample", "", "| quantity | mock | paper | mock / paper |", "| --- | --- | --- | --- |"]
    for key, (name, fmt) in names.items():
        mock, paper = table["sample"][key], PAPER_SAMPLE[key]
        ratio = "" if key == "n_sample" else f"{mock / paper:.2f}"
        lines.append(f"| {name} | {fmt.format(mock)} | {fmt.format(paper)} | {ratio} |")
    lines.append(f"\nTest split: {table['sample']['n_test']} galaxies.")
    return lines


def _scaling_markdown(table: dict[str, Any]) -> list[str]:
    a = table["scaling_a"]
    if a is None:
        return ["## Automatic scaling value a (preprocess stage)", "", "Skipped (--scaling-sample 0)."]
    return [
        "## Automatic scaling value a (preprocess stage, g images)",
        "",
        "| mock galaxies | after the cuts | preprocessed | failed | median a | 16-84 % | paper median | "
        "mock / paper |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
        f"| {a['n_galaxies']} | {a['n_sample']} | {a['n_preprocessed']} | {a['n_failed']} | "
        f"{a['median']:.1f} | {a['p16']:.1f} - {a['p84']:.1f} | {a['paper']:.0f} | "
        f"{a['median'] / a['paper']:.2f} |",
    ]


def _ceiling_markdown(table: dict[str, Any]) -> list[str]:
    lines = [
        "## What morphology can add at most (true structure in place of CNN features)",
        "",
        f"True structure: {', '.join(table['structure_columns'])}.",
        "",
        "| model | test: catalogue only | + true structure | gain | KS p | paired bootstrap p | "
        "CV: catalogue only | + true structure | gain | paired bootstrap p | "
        "validation: catalogue only | + true structure | gain | paper: + CNN morphology |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    names = {"lg_z": "GBM on (L_g, z)", "gi": "GBM on (z, L_g, L_i, L_g/L_i)"}
    for key, row in table["ceilings"].items():
        lines.append(
            f"| {names[key]} | {row['test_catalogue_only']:.3f} | {row['test_true_structure']:.3f} | "
            f"{row['test_gain']:+.1%} | {row['test_ks_p']:.2g} | "
            f"{_bootstrap_p(row['test_paired_bootstrap_p'])} | "
            f"{row['cv_catalogue_only']:.3f} | {row['cv_true_structure']:.3f} | {row['cv_gain']:+.1%} | "
            f"{_bootstrap_p(row['cv_paired_bootstrap_p'])} | "
            f"{row['val_catalogue_only']:.3f} | {row['val_true_structure']:.3f} | {row['val_gain']:+.1%} | "
            f"{row['paper']} |"
        )
    return lines


def _property_markdown(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| property | truth column | test L1~ | test gain | CV L1~ | CV gain | CV paired bootstrap p |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        lines.append(
            f"| {row['property']} | `{row['column']}` | {row['test']:.3f} | {row['test_gain']:+.1%} | "
            f"{row['cv']:.3f} | {row['cv_gain']:+.1%} | {_bootstrap_p(row['cv_paired_bootstrap_p'])} |"
        )
    return lines


def _hidden_markdown(table: dict[str, Any]) -> list[str]:
    hidden = table["hidden_properties"]
    return [
        "## What each hidden property adds at fixed colour",
        "",
        "GBM on (z, L_g, L_i, L_g/L_i) plus one true property; without: "
        f"test {hidden['test_reference']:.3f}, CV {hidden['cv_reference']:.3f}. "
        "Gain = relative drop of L1~; sorted by CV gain.",
        "",
        *_property_markdown(hidden["structure"]),
        "",
        "For reference, the stellar population behind M/L (no image shows it):",
        "",
        *_property_markdown(hidden["population"]),
    ]


def format_markdown(table: dict[str, Any]) -> str:
    """Format a :func:`calibration_table` result as Markdown tables.

    Parameters
    ----------
    table : dict
        The result of :func:`calibration_table`.

    Returns
    -------
    str
    """
    header = (
        f"Mock of {table['n_galaxies']} galaxies with images (seed {table['seed']}); "
        f"{table['sample']['n_sample']} after the catalogue stage's cuts."
    )
    sections = [
        _baseline_markdown(table),
        _sample_markdown(table),
        _scaling_markdown(table),
        _ceiling_markdown(table),
        _hidden_markdown(table),
    ]
    return "\n\n".join([header, *("\n".join(lines) for lines in sections)])


def main(argv: list[str] | None = None) -> None:
    """Print the calibration tables as Markdown (or every number as JSON with ``--json``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-galaxies", type=int, default=5000, help="galaxies with images in the mock")
    parser.add_argument("--seed", type=int, default=2019)
    parser.add_argument(
        "--scaling-sample",
        type=int,
        default=400,
        help="galaxies of the small mock rendered and preprocessed for the scaling value a (0: skip)",
    )
    parser.add_argument("--json", action="store_true", help="print every number as JSON")
    args = parser.parse_args(argv)
    table = calibration_table(args.n_galaxies, args.seed, scaling_sample=args.scaling_sample)
    print(json.dumps(table, indent=2) if args.json else format_markdown(table))


if __name__ == "__main__":
    main()
