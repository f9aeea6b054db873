"""Reading part of a FITS image: block reduction of a large image and the re-cut square around a galaxy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from morphomass.config import PreprocessConfig
from morphomass.mock.survey import image_wcs
from morphomass.preprocess import cutout
from morphomass.preprocess.cutout import (
    block_factor,
    block_sum,
    load_galaxy_image,
    read_fits_geometry,
)
from morphomass.preprocess.fits_image import GalaxyImageError, load_fits_image, sky_to_pixel
from morphomass.preprocess.tasks import GalaxyJob, measure_job
from morphomass.rawformats import write_fits_image

RA, DEC, SCALE = 150.0, 2.0, 0.4


def _write(path: Path, image: np.ndarray) -> Path:
    """Write a square image centred on (RA, DEC) at SCALE arcsec per pixel."""
    write_fits_image(path, image, image_wcs(RA, DEC, image.shape[1], SCALE), "g")
    return path


def _blob(shape: tuple[int, int], x: float, y: float, sigma: float = 3.0) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2)).astype(np.float32)


def test_block_factor_brings_the_side_to_half_the_limit() -> None:
    assert block_factor((4096, 4096), None) == 1
    assert block_factor((2048, 100), 2048) == 1
    assert block_factor((100, 2049), 2048) == 3  # 2049 / 3 = 683 <= 1024
    assert block_factor((3072, 3072), 2048) == 3
    assert block_factor((4096, 1000), 2048) == 4
    assert block_factor((10_000, 10_000), 2048) == 10


def test_block_sum_sums_blocks_trims_evenly_and_keeps_the_flux_of_nan_blocks() -> None:
    rng = np.random.default_rng(1)
    image = rng.normal(size=(10, 11))
    out, origin = block_sum(image, 3)
    assert out.shape == (3, 3) and out.dtype == np.float32 and origin == (1, 0)  # 1 column left and 1 right
    expected = image[0:9, 1:10].reshape(3, 3, 3, 3).sum(axis=(1, 3))
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    image[0, 1] = np.nan  # one bad pixel: the block keeps its mean flux, times 9 pixels
    image[3:6, 4:7] = np.nan  # a whole block bad: NaN
    out, _ = block_sum(image, 3)
    block = image[0:3, 1:4]
    assert out[0, 0] == pytest.approx(np.nanmean(block) * 9, rel=1e-6)
    assert np.isnan(out[1, 1]) and np.isfinite(np.delete(out.ravel(), 4)).all()
    with pytest.raises(ValueError, match="factor must be between 1 and the shorter side 10, got 11"):
        block_sum(image, 11)


def test_block_sum_reads_a_file_strip_by_strip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    image = np.random.default_rng(2).normal(size=(70, 64)).astype(np.float32)
    path = _write(tmp_path / "g.fits", image)
    monkeypatch.setattr(cutout, "_STRIP_BYTES", 8 * 4 * 4 * 16 * 3)  # three block rows per read
    with fits.open(path, memmap=False) as hdul:
        from_file, origin = block_sum(hdul[0].section, 4)
    in_memory, same_origin = block_sum(image, 4)
    np.testing.assert_array_equal(from_file, in_memory)
    assert origin == same_origin == (0, 1)


def test_small_images_are_read_exactly_as_the_preprocess_stage_reads_them(tmp_path: Path) -> None:
    image = np.random.default_rng(3).normal(size=(60, 60)).astype(np.float32)
    path = _write(tmp_path / "g.fits", image)
    data, wcs = load_fits_image(path)
    got = load_galaxy_image(path, ra_deg=RA, dec_deg=DEC, reduce_above=60)
    assert got.block_factor == 1 and not got.recut and got.source_shape == (60, 60)
    np.testing.assert_array_equal(got.data, data)
    radec = (RA + 0.001, DEC - 0.002)
    np.testing.assert_array_equal(got.sky_to_pixel(*radec), sky_to_pixel(wcs, *radec))
    assert got.pixel_scale_arcsec == pytest.approx(SCALE)


def test_a_reduced_image_keeps_positions_and_flux(tmp_path: Path) -> None:
    """A blob at a known sky position: its centroid on the reduced image is where the WCS maps it."""
    shape = (301, 301)
    x, y = 101.3, 187.8
    path = _write(tmp_path / "g.fits", 100.0 * _blob(shape, x, y))
    _, wcs = load_fits_image(path)
    ra, dec = wcs.p2s(np.array([[x, y]]), 0)["world"][0]
    got = load_galaxy_image(path, ra_deg=RA, dec_deg=DEC, reduce_above=100)
    k = got.block_factor
    assert k == 7 and got.data.shape == (43, 43) and got.origin_xy == (0.0, 0.0)
    assert got.pixel_scale_arcsec == pytest.approx(7 * SCALE)
    yy, xx = np.mgrid[: got.data.shape[0], : got.data.shape[1]]
    centroid = (float((got.data * xx).sum() / got.data.sum()), float((got.data * yy).sum() / got.data.sum()))
    np.testing.assert_allclose(got.sky_to_pixel(ra, dec)[0], centroid, atol=0.01)
    assert got.data.sum(dtype=np.float64) == pytest.approx(100.0 * _blob(shape, x, y).sum(), rel=1e-5)


def test_recut_reads_the_square_around_the_galaxy(tmp_path: Path) -> None:
    image = np.random.default_rng(4).normal(size=(90, 90)).astype(np.float32)
    path = _write(tmp_path / "g.fits", image)
    _, wcs = load_fits_image(path)
    got = load_galaxy_image(path, ra_deg=RA, dec_deg=DEC, recut_arcsec=30 * SCALE)  # the centre: 44.5, 44.5
    assert got.recut and got.block_factor == 1 and got.data.shape == (30, 30)
    x0, y0 = (int(v) for v in got.origin_xy)
    np.testing.assert_array_equal(got.data, image[y0 : y0 + 30, x0 : x0 + 30])
    np.testing.assert_allclose(got.sky_to_pixel(RA, DEC)[0], [44.5 - x0, 44.5 - y0])
    assert 14.5 <= 44.5 - x0 <= 15.5
    # a galaxy near the edge: the part of the square beyond the image is NaN, the galaxy stays centred
    ra, dec = wcs.p2s(np.array([[5.0, 60.0]]), 0)["world"][0]
    edge = load_galaxy_image(path, ra_deg=ra, dec_deg=dec, recut_arcsec=30 * SCALE)
    cx, cy = edge.sky_to_pixel(ra, dec)[0]
    assert edge.data.shape == (30, 30) and abs(cx - 15) <= 1 and abs(cy - 15) <= 1
    ox, oy = (int(v) for v in edge.origin_xy)  # the square's first pixel, in the image's pixels
    assert -11 <= ox <= -9 and 44 <= oy <= 46
    assert np.isnan(edge.data[:, :-ox]).all()
    np.testing.assert_array_equal(edge.data[:, -ox:], image[oy : oy + 30, : 30 + ox])


def test_recut_and_reduction_errors_name_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "g.fits", np.ones((50, 50), np.float32))
    with pytest.raises(
        GalaxyImageError, match=r"g\.fits: the WCS puts the galaxy .* outside the 50x50 image"
    ):
        load_galaxy_image(path, ra_deg=RA + 1.0, dec_deg=DEC, recut_arcsec=10.0)
    with pytest.raises(GalaxyImageError, match="nope.fits: FITS file is missing") as missing:
        load_galaxy_image(tmp_path / "nope.fits", ra_deg=RA, dec_deg=DEC, recut_arcsec=10.0)
    assert missing.value.kind == "missing_fits"
    (tmp_path / "bad.fits").write_text("<html>not a FITS file</html>")
    with pytest.raises(GalaxyImageError, match="bad.fits: unreadable FITS file") as bad:
        load_galaxy_image(tmp_path / "bad.fits", ra_deg=RA, dec_deg=DEC, recut_arcsec=10.0)
    assert bad.value.kind == "corrupt_fits"
    with pytest.raises(GalaxyImageError, match="bad.fits: unreadable FITS file") as bad:
        read_fits_geometry(tmp_path / "bad.fits")  # the reduction's header read falls back to the full read
    with pytest.raises(GalaxyImageError) as full_read:
        load_galaxy_image(tmp_path / "bad.fits", ra_deg=RA, dec_deg=DEC, reduce_above=10)
    with pytest.raises(GalaxyImageError) as stage_read:
        load_fits_image(tmp_path / "bad.fits")
    assert str(full_read.value) == str(stage_read.value)
    wcs = image_wcs(RA, DEC, 400, SCALE)
    wcs.wcs.crpix = [200.5, 2.5]
    wide = tmp_path / "wide.fits"
    write_fits_image(wide, np.ones((4, 400), np.float32), wcs, "g")
    with pytest.raises(GalaxyImageError, match=r"a 400x4 image cannot be block-reduced by 7"):
        load_galaxy_image(wide, ra_deg=RA, dec_deg=DEC, reduce_above=128)


def test_read_fits_geometry_reads_the_header_of_an_extension(tmp_path: Path) -> None:
    wcs = image_wcs(RA, DEC, 40, SCALE)
    hdu = fits.CompImageHDU(data=np.ones((30, 40), np.float32), header=wcs.to_header())
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(tmp_path / "comp.fits")
    shape, got = read_fits_geometry(tmp_path / "comp.fits")
    assert shape == (30, 40)
    np.testing.assert_allclose(sky_to_pixel(got, RA, DEC), [[19.5, 19.5]], atol=1e-9)
    reduced = load_galaxy_image(tmp_path / "comp.fits", ra_deg=RA, dec_deg=DEC, reduce_above=20)
    assert reduced.block_factor == 4 and reduced.data.shape == (7, 10)
    np.testing.assert_allclose(reduced.data, 16.0)


def test_measure_job_on_a_reduced_image_scales_pixel_size_and_says_how_it_read(tmp_path: Path) -> None:
    shape = (300, 300)
    image = 50.0 * _blob(shape, 149.5, 149.5, sigma=20.0)
    image += np.random.default_rng(5).normal(0, 0.05, shape).astype(np.float32)
    path = _write(tmp_path / "g.fits", image)
    job = GalaxyJob(1, str(path), RA, DEC, 0.05, 220.0, 0.4, np.zeros((0, 2)))
    kwargs = {"sizes": (32,), "config": PreprocessConfig(), "m_sun_ab": 5.11}
    products, features, _ = measure_job(job, **kwargs)
    assert (products.block_factor, products.source_shape, products.recut) == (1, None, False)
    reduced, reduced_features, _ = measure_job(job, reduce_above=128, **kwargs)
    assert (reduced.block_factor, reduced.source_shape, reduced.recut) == (5, (300, 300), False)
    assert reduced.input_shape == (60, 60) and reduced.pixel_scale_arcsec == pytest.approx(5 * SCALE)
    assert reduced_features["pixel_kpc"] == pytest.approx(5 * 0.4)
    assert reduced_features["lum_sum"] == pytest.approx(features["lum_sum"], rel=1e-4)
    assert reduced_features["morph_hlr_kpc"] == pytest.approx(features["morph_hlr_kpc"], rel=0.05)
    cut, _, _ = measure_job(job, recut_arcsec=100 * SCALE, **kwargs)
    assert (cut.block_factor, cut.source_shape, cut.recut, cut.input_shape) == (
        1,
        (300, 300),
        True,
        (100, 100),
    )
