"""predict's re-cut of a wide field (``recut``) and block reduction of a large image (``reduce_above``).

Each catalogue galaxy of the trained work directory is rendered again with the mock's own renderer (its stars
and neighbours left out) at its nominal field (1.125 x D25), at the same field with another noise draw, and at
3x the nominal side; the central third of the wide render is also written as an image of its own.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from factories.trained import predict_catalog_of, small_config
from morphomass import cli
from morphomass.errors import InputDataError
from morphomass.mock.render import render_galaxy
from morphomass.mock.stage import galaxy_specs
from morphomass.mock.survey import image_wcs, make_survey
from morphomass.predict import FLAGS, load_bundle, write_bundle
from morphomass.predict.predictor import FOV_FACTOR, predict_catalog
from morphomass.rawformats import write_fits_image
from morphomass.workdir import WorkDir

#: The wide field's side, in nominal sides.
WIDE = 3


@pytest.fixture(name="fields", scope="module")
def fixture_fields(trained_workdir: WorkDir, tmp_path_factory: pytest.TempPathFactory):
    """Return the bundle, the catalogue, the folders of images by field, and the nominal sides (pixels)."""
    config = small_config()
    write_bundle(config, trained_workdir)
    bundle = load_bundle(trained_workdir.models)
    catalog = predict_catalog_of(trained_workdir)
    survey = make_survey(config.mock, np.random.default_rng(config.mock.seed))  # the survey the mock drew
    truth = survey.truth[survey.truth["has_image"]]
    specs = {int(o): s for o, s in zip(truth["objid"], galaxy_specs(survey, config.mock), strict=True)}
    root = tmp_path_factory.mktemp("fields")
    folders = {name: root / name for name in ("nominal", "renoised", "wide", "central")}
    sides = []
    for row in catalog.itertuples():
        spec = dataclasses.replace(
            specs[int(row.objid)], star_x_pix=(), star_y_pix=(), star_flux_nmgy=(), neighbours=()
        )
        n, scale = spec.nx, spec.pixel_scale_arcsec
        sides.append(n)
        renders = {
            "nominal": render_galaxy(spec)["g"],
            "renoised": render_galaxy(dataclasses.replace(spec, seed=spec.seed + 1))["g"],
            "wide": render_galaxy(dataclasses.replace(spec, nx=WIDE * n))["g"],
        }
        renders["central"] = renders["wide"][n : 2 * n, n : 2 * n]  # the same centre: pixel (WIDE n - 1) / 2
        for name, image in renders.items():
            wcs = image_wcs(row.ra, row.dec, image.shape[0], scale)
            write_fits_image(folders[name] / f"{row.objid}.fits", image, wcs, "g")
    return bundle, catalog, folders, np.array(sides)


def _dex(a: pd.Series, b: pd.Series) -> np.ndarray:
    return np.abs(np.log10(a.to_numpy() / b.to_numpy()))


def test_the_recut_square_is_exactly_the_nominal_field(fields) -> None:
    """Cut from the wide render, the 1.125 x D25 square is the central third pixel for pixel: same M/L."""
    bundle, catalog, folders, sides = fields
    recut = predict_catalog(bundle, folders["wide"], catalog, recut=True)
    central = predict_catalog(bundle, folders["central"], catalog)
    # the mock caps an image's side (max_image_pixels): those nominal images are narrower than 1.125 x D25
    expected = np.round(FOV_FACTOR * catalog["d25_arcmin"].to_numpy() * 60 / 0.396)
    same_side = expected == sides
    assert same_side.sum() >= 10
    np.testing.assert_array_equal(recut["ml_pred"][same_side], central["ml_pred"][same_side])
    assert all("recut" in f.split(";") and "fov_mismatch" not in f for f in recut["flags"])
    wide, field = WIDE * sides[0] * 0.396, FOV_FACTOR * catalog["d25_arcmin"].iloc[0] * 60
    note = (
        f"image {wide:.1f} x {wide:.1f} arcsec cut to 1.125 x D25 = {field:.1f} arcsec around the catalogue"
    )
    assert recut["reason"].iloc[0].startswith(note)


def test_recut_predicts_a_wide_field_like_the_nominal_render(fields) -> None:
    """The M/L of the re-cut wide render is as close to the nominal render's as another noise draw is.

    The re-cut square is the nominal field pixel for pixel (the test above), so what differs from the nominal
    render is the noise draw, and the tolerance is the noise's: a second noise draw of the nominal image alone
    moves these galaxies' M/L by 0.04 dex on average and up to 0.12 dex (the test's small model responds to
    noise). Asserted: each galaxy within 0.2 dex, on average within 1.5x the second draw's difference; the
    wide field without re-cut is 1.5x further still on average (0.10 dex, up to 0.20) and flagged.
    """
    bundle, catalog, folders, _ = fields
    nominal = predict_catalog(bundle, folders["nominal"], catalog)
    renoised = predict_catalog(bundle, folders["renoised"], catalog)
    wide = predict_catalog(bundle, folders["wide"], catalog)
    recut = predict_catalog(bundle, folders["wide"], catalog, recut=True)
    noise = _dex(renoised["ml_pred"], nominal["ml_pred"]).mean()
    recut_dex = _dex(recut["ml_pred"], nominal["ml_pred"])
    assert recut_dex.max() < 0.2
    assert recut_dex.mean() <= 1.5 * noise
    assert _dex(wide["ml_pred"], nominal["ml_pred"]).mean() > 1.5 * recut_dex.mean()
    assert all("fov_mismatch" in f.split(";") and "recut" not in f for f in wide["flags"])
    assert not any("fov_mismatch" in f or "recut" in f for f in nominal["flags"])


def test_an_image_narrower_than_the_field_is_not_recut(fields) -> None:
    bundle, catalog, folders, _ = fields
    rows = catalog.head(2).copy()
    rows["d25_arcmin"] *= 2.0  # the nominal images are half as wide as 1.125 x D25 now
    out = predict_catalog(bundle, folders["nominal"], rows, recut=True)
    assert all("fov_mismatch" in f.split(";") and "recut" not in f for f in out["flags"])
    assert np.isfinite(out["ml_pred"]).all()
    with pytest.raises(InputDataError, match="recut must be True or False, got 'yes'"):
        predict_catalog(bundle, folders["nominal"], rows, recut="yes")


def test_a_large_image_is_block_reduced_and_keeps_its_flux(fields) -> None:
    """With reduce_above = 64 the wide renders (207 to 363 px) are reduced by 7 to 12: flux kept, flagged."""
    bundle, catalog, folders, sides = fields
    rows = catalog.drop(columns=["modelMag_g", "modelMag_i"])  # L_g from the image's total flux
    full = predict_catalog(bundle, folders["wide"], rows)
    reduced = predict_catalog(bundle, folders["wide"], rows, reduce_above=64)
    # the rows and columns trimmed (up to k - 1, <= 5 % of the area) hold sky with a small background offset
    np.testing.assert_allclose(reduced["lum_g"], full["lum_g"], rtol=0.05)
    assert np.isfinite(reduced["ml_pred"]).all()
    k = np.ceil(WIDE * sides / 32).astype(int)
    for flags, reason, factor, n in zip(reduced["flags"], reduced["reason"], k, WIDE * sides, strict=True):
        assert {"block_reduced", "pixel_scale_mismatch"} <= set(flags.split(";"))
        m = n // factor
        scale = 0.396 * factor
        assert f"image {n} x {n} pixels block-reduced by {factor} ({factor} x {factor} pixel sums)" in reason
        assert f"to {m} x {m} pixels of {scale:.3f} arcsec" in reason
    assert not any("block_reduced" in f for f in full["flags"])  # 2048 by default
    with pytest.raises(InputDataError, match="reduce_above must be None or an integer of at least 2.*got 1"):
        predict_catalog(bundle, folders["wide"], rows, reduce_above=1)


def test_recut_and_block_reduction_together(fields) -> None:
    """A re-cut square wider than reduce_above is reduced in turn; its note says it is the cut."""
    bundle, catalog, folders, _ = fields
    out = predict_catalog(bundle, folders["wide"], catalog.head(3), recut=True, reduce_above=40)
    for flags, reason in zip(out["flags"], out["reason"], strict=True):
        assert {"recut", "block_reduced"} <= set(flags.split(";"))
        assert "the cut block-reduced by" in reason
    assert np.isfinite(out["ml_pred"]).all()


def test_the_command_line_recuts(fields, tmp_path: Path) -> None:
    bundle, catalog, folders, _ = fields
    catalog_path = tmp_path / "catalog.csv"
    catalog.head(3).to_csv(catalog_path, index=False)
    argv = ["-q", "predict", "--model", str(bundle.root), "--images", str(folders["wide"]), "--catalog"]
    argv += [str(catalog_path), "--preset", "tiny"]
    assert cli.main([*argv, "--out", str(tmp_path / "plain.csv")]) == 0
    assert cli.main([*argv, "--out", str(tmp_path / "recut.csv"), "--recut"]) == 0
    plain, recut = pd.read_csv(tmp_path / "plain.csv"), pd.read_csv(tmp_path / "recut.csv")
    assert all("fov_mismatch" in f for f in plain["flags"])
    assert all("recut" in f.split(";") and "fov_mismatch" not in f for f in recut["flags"])


def test_the_new_flags_are_described() -> None:
    assert {"recut", "block_reduced"} <= set(FLAGS)
