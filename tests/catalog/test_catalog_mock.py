"""The catalogue stage on the built-in mock survey agrees with the mock's truth (read here only, to check)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from morphomass import gz2
from morphomass.catalog import run_catalog
from morphomass.config import load_config
from morphomass.gz2 import obeys_tree
from morphomass.mock import run_mock
from morphomass.workdir import WorkDir

pytestmark = pytest.mark.slow

N_IMAGES = 300


@pytest.fixture(name="mock_run", scope="module")
def fixture_mock_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    config = load_config(
        "tiny",
        overrides={
            "mock": {"n_galaxies": N_IMAGES, "image_bands": ["g"], "max_image_pixels": 32, "workers": None}
        },
    )
    workdir = WorkDir(tmp_path_factory.mktemp("mock_catalog"))
    run_mock(config, workdir, progress=False)
    result = run_catalog(config, workdir, progress=False)
    # what the raw files say is missing, parsed here independently of the readers under test
    gswlc = pd.read_csv(workdir.gswlc_dir / "GSWLC-X2.dat", sep=r"\s+", header=None, dtype=str)
    phot = pd.read_csv(workdir.photometry, dtype={"objID": str})
    no_mass = set(gswlc.loc[gswlc[9].astype(float) == -99, 0].astype(int))
    no_phot = set(phot.loc[phot["modelMag_g"] == -9999, "objID"].astype(int))
    mag_err_g = pd.Series(phot["modelMagErr_g"].to_numpy(), index=phot["objID"].astype(int))
    return {
        "result": result,
        "sample": pd.read_parquet(workdir.sample),
        "rejected": pd.read_parquet(workdir.tables / "sample_chi2_rejected.parquet"),
        "summary": pd.read_csv(workdir.tables / "sample_summary.csv").set_index("key")["value"],
        "truth": pd.read_parquet(workdir.mock_truth),
        "invalid": no_mass | no_phot,
        "mag_err_g": mag_err_g,
    }


def _truth_selection(run: dict) -> tuple[set[int], set[int]]:
    """Objids the cuts keep, and those chi2 alone rejects, per the truth (chi2 rounded as in the file)."""
    truth: pd.DataFrame = run["truth"]
    valid = truth["has_image"] & ~truth["objid"].isin(run["invalid"])
    passes = np.round(truth["chi2_r"], 3) < 5
    return set(truth.loc[valid & passes, "objid"]), set(truth.loc[valid & ~passes, "objid"])


def test_selection_counts_agree_with_the_truth(mock_run: dict) -> None:
    truth, summary, sample = mock_run["truth"], mock_run["summary"], mock_run["sample"]
    assert summary["n_gswlc"] == len(truth)
    assert summary["n_after_d25"] == truth["has_image"].sum() == N_IMAGES  # the HyperLeda D25 cut
    kept, chi2_rejected = _truth_selection(mock_run)
    assert set(sample["objid"]) == kept
    assert set(mock_run["rejected"]["objid"]) == chi2_rejected
    assert summary["n_sample"] == len(kept)
    assert summary["dropped_chi2"] == len(chi2_rejected)
    assert summary["dropped_missing_mass"] + summary["dropped_missing_photometry"] == len(
        mock_run["invalid"] & set(truth.loc[truth["has_image"], "objid"])
    )
    n = len(kept)
    n_test = math.ceil(0.1 * n)
    assert (summary["n_test"], summary["n_val"]) == (n_test, math.ceil(0.1 * (n - n_test)))


def test_ml_statistics_agree_with_the_truth(mock_run: dict) -> None:
    sample, truth, summary = mock_run["sample"], mock_run["truth"], mock_run["summary"]
    both = sample.merge(truth, on="objid", suffixes=("", "_truth"))
    # the truth's observed-frame M/L (true mass and flux) differs from the catalogue's by the SED mass error
    delta = np.log10(both["ml"] / both["ml_true"])
    sigma = np.hypot(both["log_mstar_err"], 0.01)
    assert abs(np.median(delta)) < 0.02
    assert (np.abs(delta) < 3 * sigma).mean() > 0.95
    assert (np.abs(delta) < 5 * sigma).all()
    # with the catalogue's mass, only the photometric noise of modelMag_g and rounding remain
    lum_truth = both["flux_g_nmgy"] * both["dist_lum_mpc"] ** 2 * 10 ** (0.4 * (25 + 5.11 - 22.5))
    ml_truth = 10 ** both["log_mstar_sed"] / lum_truth
    phot_sigma = 0.4 * np.log(10) * mock_run["mag_err_g"].loc[both["objid"]].to_numpy()
    assert (np.abs(np.log(both["ml"] / ml_truth)) < 5 * phot_sigma + 1e-3).all()
    for stat in ("min", "median", "max"):
        assert summary[f"ml_{stat}"] == pytest.approx(getattr(sample["ml"], stat)())
        assert summary[f"ml_{stat}"] == pytest.approx(getattr(ml_truth, stat)(), rel=0.05), stat
    # errors combine the catalogue's mass and magnitude errors, floored at 5 %
    assert (both["ml_err"] >= 0.05 * both["ml"] * (1 - 1e-12)).all()
    mag_err = mock_run["mag_err_g"].loc[both["objid"]].to_numpy()
    np.testing.assert_allclose(
        both["ml_err"] / both["ml"],
        np.maximum(np.log(10) * np.hypot(both["logmstar_err"], 0.4 * mag_err), 0.05),
        rtol=1e-3,
    )


def test_distances_sizes_and_gz2_agree_with_the_truth(mock_run: dict) -> None:
    sample, truth, summary = mock_run["sample"], mock_run["truth"], mock_run["summary"]
    both = sample.merge(truth, on="objid", suffixes=("", "_truth"))
    np.testing.assert_allclose(both["dist_mpc"], both["dist_lum_mpc"], rtol=1e-4)  # z is rounded to 1e-6
    np.testing.assert_allclose(both["pixel_kpc"], both["kpc_per_arcsec"] * 0.396, rtol=1e-4)
    np.testing.assert_allclose(both["d25_arcmin"], both["d25_arcmin_leda"], rtol=1e-12)
    np.testing.assert_allclose(both["z"], both["z_truth"], atol=5e-7)
    assert (both["has_gz2"] == both["in_gz2"]).all()
    assert summary["gz2_match_fraction"] == pytest.approx(both["in_gz2"].mean())
    probabilities = sample.loc[sample["has_gz2"], list(gz2.ANSWER_COLUMNS)].to_numpy()
    assert obeys_tree(probabilities, atol=1e-9).all()
    assert np.isnan(sample.loc[~sample["has_gz2"], list(gz2.ANSWER_COLUMNS)].to_numpy()).all()
    # morphology in the votes follows the truth: ellipticals vote smooth more than discs do
    smooth = both.loc[both["has_gz2"]].groupby("cls")["gz2_p_t01_a01"].mean()
    assert smooth["elliptical"] > smooth["disk"] + 0.2
    assert mock_run["result"].summary["sample"] == len(sample)
