"""Predictions with a bundle: the training pipeline's numbers, flags instead of failures, the CLI."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from astropy.table import Table

from factories.trained import predict_catalog_of, small_config
from morphomass import cli
from morphomass.config import load_config
from morphomass.errors import InputDataError
from morphomass.gbm import Experiment, build_features, load_feature_table
from morphomass.predict import FLAGS, OUTPUT_COLUMNS, BundleError, load_bundle, run_predict, write_bundle
from morphomass.predict.predictor import output_dtypes
from morphomass.workdir import WorkDir


def _expected_ml(workdir: WorkDir, bundle_dir: Path, key: str) -> pd.Series:
    """M/L of the sample galaxies from the stages' own feature tables through the saved GBM (by objid)."""
    import lightgbm as lgb

    from morphomass.gbm.train import predict_ml

    bundle = load_bundle(bundle_dir)
    spec = bundle.manifest["models"][key]
    table = load_feature_table(
        workdir.sample, workdir.features / "photometric.parquet", workdir.features / "cnn.parquet"
    )
    frame = build_features(table, Experiment(spec["experiment"], catalog_bands=spec["catalog_bands"]))
    booster = lgb.Booster(model_file=str(bundle_dir / spec["file"]))
    ml = predict_ml(
        booster,
        frame[spec["features"]].to_numpy(np.float32),
        objective=spec["objective"],
        floor=spec["prediction_floor"],
    )
    return pd.Series(ml, index=table.meta["objid"].to_numpy())


@pytest.fixture(name="predicted", scope="module")
def fixture_predicted(trained_workdir: WorkDir, tmp_path_factory: pytest.TempPathFactory):
    write_bundle(small_config(), trained_workdir)
    bundle_dir = Path(shutil.copytree(trained_workdir.models, tmp_path_factory.mktemp("p") / "models"))
    bundle = load_bundle(bundle_dir)
    catalog = predict_catalog_of(trained_workdir)
    out = bundle.predict(trained_workdir.raw_images, catalog, stars=trained_workdir.stars, batch_size=7)
    return bundle_dir, catalog, out


def test_predictions_reproduce_the_training_pipeline(predicted, trained_workdir: WorkDir) -> None:
    """Raw FITS -> bundle: the M/L the stages' feature tables give through the same GBM, to rounding."""
    bundle_dir, catalog, out = predicted
    assert list(out.columns) == list(output_dtypes([0.68, 0.95]))
    assert set(OUTPUT_COLUMNS) < set(out.columns)
    assert out["objid"].tolist() == catalog["objid"].tolist()
    assert (out["model"] == "gi").all()  # every mock galaxy has g and i magnitudes
    expected = _expected_ml(trained_workdir, bundle_dir, "gi")
    got = out.set_index("objid")["ml_pred"]
    np.testing.assert_allclose(got.loc[expected.index].to_numpy(), expected.to_numpy(), rtol=1e-6)
    sample = pd.read_parquet(trained_workdir.sample).set_index("objid")
    np.testing.assert_allclose(out["lum_g"], sample.loc[out["objid"], "lum_g"], rtol=1e-9)
    np.testing.assert_allclose(out["log_mstar_pred"], np.log10(out["ml_pred"] * out["lum_g"]), rtol=1e-12)
    assert (out["lum_g_source"] == "modelMag").all()


def test_without_magnitudes_the_g_model_and_the_image_luminosity_are_used(predicted, trained_workdir) -> None:
    bundle_dir, catalog, _ = predicted
    bundle = load_bundle(bundle_dir)
    out = bundle.predict(
        trained_workdir.raw_images,
        catalog.drop(columns=["modelMag_g", "modelMag_i"]),
        stars=trained_workdir.stars,
    )
    assert (out["model"] == "g").all()
    expected = _expected_ml(trained_workdir, bundle_dir, "g")
    np.testing.assert_allclose(out.set_index("objid").loc[expected.index, "ml_pred"], expected, rtol=1e-6)
    assert (out["lum_g_source"] == "image").all()
    features = pd.read_parquet(trained_workdir.features / "photometric.parquet").set_index("objid")
    np.testing.assert_allclose(out["lum_g"], features.loc[out["objid"], "lum_sum"], rtol=1e-9)
    # the g model is asked for explicitly although magnitudes are given; g+i without the i band is a flag
    forced = bundle.predict(trained_workdir.raw_images, catalog.head(3), model="g")
    assert (forced["model"] == "g").all()
    no_i = bundle.predict(trained_workdir.raw_images, catalog.head(2).drop(columns="modelMag_i"), model="gi")
    assert no_i["ml_pred"].isna().all()
    assert (no_i["flags"] == "magnitudes_missing").all()
    with pytest.raises(InputDataError, match="model must be 'auto' or one of the bundle's models"):
        bundle.predict(trained_workdir.raw_images, catalog, model="ugriz")


def test_a_corrupt_and_a_missing_image_are_flagged_not_fatal(
    predicted, trained_workdir: WorkDir, tmp_path: Path
) -> None:
    bundle_dir, catalog, reference = predicted
    images = Path(shutil.copytree(trained_workdir.raw_images / "g", tmp_path / "images"))
    corrupt, missing = (int(o) for o in catalog["objid"].iloc[[2, 5]])
    data = (images / f"{corrupt}.fits").read_bytes()
    (images / f"{corrupt}.fits").write_bytes(data[: len(data) // 2])  # truncated download
    (images / f"{missing}.fits").unlink()
    out = load_bundle(bundle_dir).predict(images, catalog, stars=trained_workdir.stars)
    rows = out.set_index("objid")
    assert rows.loc[corrupt, "flags"] == "image_error"
    assert "corrupt_fits" in rows.loc[corrupt, "reason"] and "truncated" in rows.loc[corrupt, "reason"]
    assert rows.loc[missing, "flags"] == "missing_image"
    assert f"{missing}.fits" in rows.loc[missing, "reason"]
    assert rows.loc[[corrupt, missing], ["ml_pred", "log_mstar_pred", "lum_g"]].isna().all().all()
    assert (rows.loc[[corrupt, missing], "model"] == "").all()
    others = out[~out["objid"].isin([corrupt, missing])]
    before = reference.set_index("objid").loc[others["objid"], "ml_pred"]
    np.testing.assert_allclose(others["ml_pred"], before, rtol=1e-6)


def test_bad_rows_and_extrapolations_are_flagged(predicted, trained_workdir) -> None:
    bundle_dir, catalog, reference = predicted
    bundle = load_bundle(bundle_dir)
    rows = catalog.head(3).copy()
    rows.loc[0, "z"] = -0.1
    rows.loc[1, "z"] = bundle.training_ranges["z"][1] * 1.5
    rows.loc[2, "d25_arcmin"] = bundle.training_ranges["d25_arcmin"][1] * 3
    out = bundle.predict(trained_workdir.raw_images, rows, stars=trained_workdir.stars)
    assert out["flags"].iloc[0] == "bad_catalog_row"
    assert "z is -0.1" in out["reason"].iloc[0]
    assert np.isnan(out["ml_pred"].iloc[0])
    assert {"z_outside_training", "interval_extrapolated"} <= set(out["flags"].iloc[1].split(";"))
    assert np.isfinite(out["ml_pred"].iloc[1])  # a flag, still a prediction
    assert np.isfinite(out["ml_lo_68"].iloc[1])  # and an interval, flagged as extrapolated
    before = [f for f in reference["flags"].iloc[2].split(";") if f]
    assert "interval_extrapolated" not in before  # the catalogue galaxies are within the training ranges
    # a 3x larger D25 also makes the image a third of 1.125 x D25 wide
    expected = [*before, "fov_mismatch", "size_outside_training", "interval_extrapolated"]
    assert out["flags"].iloc[2].split(";") == expected
    assert out["ml_pred"].iloc[2] == pytest.approx(reference["ml_pred"].iloc[2], rel=1e-6)  # D25: flags only
    assert all(f in FLAGS for f in ";".join(out["flags"]).split(";"))


def test_another_pixel_scale_is_flagged(predicted, trained_workdir, tmp_path: Path) -> None:
    bundle_dir, catalog, _ = predicted
    objid = int(catalog["objid"].iloc[0])
    with fits.open(trained_workdir.raw_image("g", objid)) as hdul:
        header, data = hdul[0].header.copy(), hdul[0].data.copy()
    for key in ("CD1_1", "CD1_2", "CD2_1", "CD2_2", "CDELT1", "CDELT2"):
        if key in header:
            header[key] *= 1.5
    fits.writeto(tmp_path / f"{objid}.fits", data, header)
    out = load_bundle(bundle_dir).predict({objid: tmp_path / f"{objid}.fits"}, catalog.head(1))
    assert "pixel_scale_mismatch" in out["flags"].iloc[0].split(";")
    assert "pixel scale 0.594 arcsec, training 0.396" in out["reason"].iloc[0]


def test_an_empty_catalogue_gives_an_empty_table(predicted, trained_workdir) -> None:
    bundle_dir, catalog, _ = predicted
    out = load_bundle(bundle_dir).predict(trained_workdir.raw_images, catalog.head(0))
    assert list(out.columns) == list(output_dtypes([0.68, 0.95]))
    assert out.empty


def test_every_prediction_has_nested_intervals_from_the_bundle_calibration(predicted) -> None:
    bundle_dir, _, out = predicted
    bundle = load_bundle(bundle_dir)
    calibration = bundle.interval_calibrations()["gi"]
    ok = out["ml_pred"].notna()
    assert ok.any()
    for quantity, centre in (("ml", out["ml_pred"]), ("log_mstar", out["log_mstar_pred"])):
        lo68, hi68 = out[f"{quantity}_lo_68"], out[f"{quantity}_hi_68"]
        lo95, hi95 = out[f"{quantity}_lo_95"], out[f"{quantity}_hi_95"]
        assert ((lo95 <= lo68) & (lo68 <= centre) & (centre <= hi68) & (hi68 <= hi95))[ok].all()
    # the bounds are the calibration's: log10 M/L -/+ q sigma, with the same q for every galaxy of a model;
    # with the fixture's ~16 calibration galaxies the 95 % quantile is unbounded (rank 17 of 16)
    q68, q95 = calibration.quantile(0.68), calibration.quantile(0.95)
    assert math.isfinite(q68)
    if math.isinf(q95):
        assert (out["ml_lo_95"][ok] == 0).all() and np.isinf(out["ml_hi_95"][ok]).all()
    else:
        half = (np.log10(out["ml_hi_95"]) - np.log10(out["ml_lo_95"])) / 2
        ratio = half / ((np.log10(out["ml_hi_68"]) - np.log10(out["ml_lo_68"])) / 2)
        np.testing.assert_allclose(ratio[ok], q95 / q68, rtol=1e-9)
    # log M* bounds are the M/L bounds times the same luminosity
    np.testing.assert_allclose(
        out["log_mstar_hi_68"][ok], np.log10(out["ml_hi_68"][ok] * out["lum_g"][ok]), rtol=1e-9
    )


def test_cli_predict_writes_fits_and_refuses_a_tampered_bundle(
    predicted, trained_workdir, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle_dir, catalog, reference = predicted
    bundle_dir = Path(shutil.copytree(bundle_dir, tmp_path / "models"))  # tampered with below
    catalog_path = tmp_path / "galaxies.csv"
    catalog.rename(columns={"objid": "objID"}).to_csv(catalog_path, index=False)

    def argv(out_path: Path) -> list[str]:
        return [
            "-q",
            "predict",
            "--model",
            str(bundle_dir),
            "--images",
            str(trained_workdir.raw_images),
            "--catalog",
            str(catalog_path),
            "--out",
            str(out_path),
            "--stars",
            str(trained_workdir.stars),
            "--preset",
            "tiny",
        ]

    assert cli.main(argv(tmp_path / "pred.fits")) == 0
    stdout = capsys.readouterr().out
    assert "predict: done in" in stdout
    assert f"predicted: {len(catalog)}" in stdout
    table = Table.read(tmp_path / "pred.fits").to_pandas()
    assert table["objid"].astype(np.int64).tolist() == catalog["objid"].tolist()
    np.testing.assert_allclose(table["ml_pred"], reference["ml_pred"], rtol=1e-6)

    weights = bundle_dir / "cnn" / "cnn1.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")
    assert cli.main(argv(tmp_path / "again.csv")) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1
    assert "cnn1.safetensors was modified after the bundle was written" in err[0]
    assert not (tmp_path / "again.csv").exists()


def test_unusable_options_and_settings_are_errors(predicted, trained_workdir, tmp_path: Path) -> None:
    bundle_dir, catalog, _ = predicted
    bundle = load_bundle(bundle_dir)
    with pytest.raises(InputDataError, match="batch_size must be at least 1, got 0"):
        bundle.predict(trained_workdir.raw_images, catalog, batch_size=0)
    bundle.manifest["preprocessing"]["settings"]["unknown_option"] = 1  # a bundle from a future version
    with pytest.raises(
        BundleError, match="the bundle's preprocessing settings are not valid for this version"
    ):
        bundle.predict(trained_workdir.raw_images, catalog)
    with pytest.raises(InputDataError, match=r"out\.txt: expected a \.csv, \.parquet, \.fits file name"):
        run_predict(
            load_config("tiny"),
            model_dir=bundle_dir,
            images_dir=trained_workdir.raw_images,
            catalog_path=tmp_path / "c.csv",
            out_path=tmp_path / "out.txt",
        )
