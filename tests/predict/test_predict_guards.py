"""What predict cannot trust is flagged or refused: field of view, coordinates, image size, output path."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits

from factories.trained import predict_catalog_of, small_config
from morphomass import cli
from morphomass.config import load_config
from morphomass.errors import InputDataError
from morphomass.predict import FLAGS, load_bundle, run_predict, write_bundle
from morphomass.predict.predictor import fov_flag, predict_catalog
from morphomass.workdir import WorkDir


@pytest.fixture(name="guarded", scope="module")
def fixture_guarded(trained_workdir: WorkDir, tmp_path_factory: pytest.TempPathFactory):
    """Load a bundle of the trained work directory; return it, its folder and a 3-galaxy catalogue."""
    write_bundle(small_config(), trained_workdir)
    bundle_dir = Path(shutil.copytree(trained_workdir.models, tmp_path_factory.mktemp("g") / "models"))
    return load_bundle(bundle_dir), bundle_dir, predict_catalog_of(trained_workdir).head(3)


def _image_copy(workdir: WorkDir, objid: int, path: Path, **cards: object) -> Path:
    """Copy a galaxy's FITS image with some header cards changed."""
    with fits.open(workdir.raw_image("g", objid)) as hdul:
        header, data = hdul[0].header.copy(), hdul[0].data.copy()
    header.update(cards)
    fits.writeto(path, data, header)
    return path


def _flags(table: pd.DataFrame, row: int) -> list[str]:
    return table["flags"].iloc[row].split(";")


def test_fov_flag_gives_the_sides_and_the_accepted_range() -> None:
    assert fov_flag((100, 100), 0.4, 40 / 1.125 / 60, tolerance=0.25) is None  # 40 arcsec, as expected
    assert fov_flag((100, 100), 0.4, np.nan, tolerance=0.25) is None  # no D25: nothing to compare
    note = fov_flag((100, 200), 0.4, 40 / 1.125 / 60, tolerance=0.25)
    assert (
        note == "field of view 80.0 x 40.0 arcsec, expected 1.125 x D25 = 40.0 arcsec (+-25%: 30.0 to 50.0)"
    )
    assert fov_flag((100, 100), 0.4, 20 / 1.125 / 60, tolerance=1.5) is None


def test_an_image_of_another_field_of_view_is_flagged(guarded, trained_workdir: WorkDir) -> None:
    """A 3x too narrow and a 2x too wide image (against 1.125 x D25): fov_mismatch, still a prediction."""
    bundle, _, catalog = guarded
    rows = catalog.copy()
    rows.loc[0, "d25_arcmin"] *= 3.0
    rows.loc[1, "d25_arcmin"] /= 2.0
    out = predict_catalog(bundle, trained_workdir.raw_images, rows, stars=trained_workdir.stars)
    assert "fov_mismatch" in _flags(out, 0) and "fov_mismatch" in _flags(out, 1)
    assert "fov_mismatch" not in _flags(out, 2)
    expected = 1.125 * rows["d25_arcmin"].iloc[0] * 60
    assert f"expected 1.125 x D25 = {expected:.1f} arcsec (+-25%:" in out["reason"].iloc[0]
    assert out["ml_pred"].notna().all()  # a flag, not a failure
    loose = predict_catalog(bundle, trained_workdir.raw_images, rows.head(2), fov_tolerance=3.0)
    assert not any("fov_mismatch" in f for f in loose["flags"])
    with pytest.raises(InputDataError, match="fov_tolerance must be a positive number.*got -0.1"):
        predict_catalog(bundle, trained_workdir.raw_images, rows, fov_tolerance=-0.1)


def test_coordinates_out_of_range_are_a_bad_catalog_row(guarded, trained_workdir: WorkDir) -> None:
    bundle, _, catalog = guarded
    rows = catalog.copy()
    rows.loc[0, "ra"] = 400.0
    rows.loc[1, "dec"] = -95.0
    out = predict_catalog(bundle, trained_workdir.raw_images, rows)
    assert out["flags"].iloc[:2].tolist() == ["bad_catalog_row", "bad_catalog_row"]
    assert out["reason"].iloc[0] == "ra is 400.0, expected 0 <= ra < 360 (degrees)"
    assert out["reason"].iloc[1] == "dec is -95.0, expected -90 <= dec <= 90 (degrees)"
    assert out["ml_pred"].iloc[:2].isna().all()
    assert np.isfinite(out["ml_pred"].iloc[2])


def test_an_image_above_the_size_limit_is_refused_from_its_header(
    guarded, trained_workdir: WorkDir, tmp_path: Path
) -> None:
    bundle, _, catalog = guarded
    small, big = (int(o) for o in catalog["objid"].iloc[:2])
    # the header claims 10 000 x 10 000 pixels but holds no such data: refused before any data is read
    header = fits.getheader(trained_workdir.raw_image("g", big))
    header["NAXIS1"] = header["NAXIS2"] = 10_000
    (tmp_path / f"{big}.fits").write_bytes(header.tostring().encode("ascii"))
    shutil.copy(trained_workdir.raw_image("g", small), tmp_path / f"{small}.fits")
    paths = {small: tmp_path / f"{small}.fits", big: tmp_path / f"{big}.fits"}
    out = predict_catalog(bundle, paths, catalog.head(2))
    assert out["flags"].iloc[1] == "image_too_large"
    assert (
        "image 10000 x 10000 pixels, larger than max_image_side = 4096 pixels per side"
        in out["reason"].iloc[1]
    )
    assert "image_too_large" not in _flags(out, 0) and np.isfinite(out["ml_pred"].iloc[0])
    side = fits.getheader(paths[small])["NAXIS1"]
    tight = predict_catalog(bundle, paths, catalog.head(1), max_image_side=side - 1)
    assert tight["flags"].iloc[0] == "image_too_large"
    assert f"image {side} x {side} pixels" in tight["reason"].iloc[0]
    assert np.isnan(tight["ml_pred"].iloc[0])
    with pytest.raises(InputDataError, match="max_image_side must be a positive integer.*got 0"):
        predict_catalog(bundle, paths, catalog, max_image_side=0)


def test_a_negative_naxis1_is_an_image_error_in_one_line(
    guarded, trained_workdir: WorkDir, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bundle, _, catalog = guarded
    objid = int(catalog["objid"].iloc[0])
    path = _image_copy(trained_workdir, objid, tmp_path / f"{objid}.fits")
    data = bytearray(path.read_bytes())
    at = data.find(b"NAXIS1  =")
    data[at : at + 80] = f"{'NAXIS1':8}= {-5:>20}".ljust(80).encode("ascii")
    path.write_bytes(bytes(data))
    out = predict_catalog(bundle, {objid: path}, catalog.head(1))
    assert out["flags"].iloc[0] == "image_error"
    assert out["reason"].iloc[0] == f"corrupt_fits: {path}: header NAXIS1 = -5, expected a positive integer"
    assert "Traceback" not in caplog.text


def test_the_output_never_overwrites_an_input(
    guarded, trained_workdir: WorkDir, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, bundle_dir, catalog = guarded
    catalog_path, stars_path = tmp_path / "galaxies.csv", tmp_path / "stars.csv"
    catalog.to_csv(catalog_path, index=False)
    shutil.copy(trained_workdir.stars, stars_path)
    images = Path(shutil.copytree(trained_workdir.raw_images / "g", tmp_path / "images"))
    image = images / f"{int(catalog['objid'].iloc[0])}.fits"
    before = {p: p.read_bytes() for p in (catalog_path, stars_path, image)}

    def predict(out_path: Path) -> None:
        run_predict(
            load_config("tiny"),
            model_dir=bundle_dir,
            images_dir=images,
            catalog_path=catalog_path,
            stars_path=stars_path,
            out_path=out_path,
        )

    with pytest.raises(InputDataError, match=rf"{catalog_path}: the output would overwrite the catalogue"):
        predict(catalog_path)
    with pytest.raises(InputDataError, match=rf"overwrite the star table \(--stars\) {stars_path}"):
        predict(tmp_path / "." / "stars.csv")
    with pytest.raises(InputDataError, match=rf"overwrite the input image {image} of the images folder"):
        predict(image)
    argv = ["-q", "predict", "--model", str(bundle_dir), "--images", str(images), "--catalog"]
    argv += [str(catalog_path), "--out", str(catalog_path), "--preset", "tiny", "--force"]
    assert cli.main(argv) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "the output would overwrite the catalogue (--catalog)" in err[0]
    assert {p: p.read_bytes() for p in before} == before


def test_every_new_flag_is_documented() -> None:
    assert {"fov_mismatch", "image_too_large", "bad_catalog_row"} <= set(FLAGS)
