"""Reading FITS images and WCS: the fast path agrees with astropy; every failure has its kind."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from morphomass.mock.survey import image_wcs
from morphomass.preprocess.fits_image import (
    GalaxyImageError,
    load_fits_image,
    pixel_scale_arcsec,
    sky_to_pixel,
)
from morphomass.rawformats import write_fits_image


def _astropy_wcs(path: Path) -> WCS:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return WCS(fits.getheader(path))


def test_real_image_matches_astropy(real_fits: Path) -> None:
    data, wcs = load_fits_image(real_fits)
    np.testing.assert_array_equal(data, fits.getdata(real_fits).astype(np.float32))
    reference = _astropy_wcs(real_fits)
    ra, dec = reference.all_pix2world([0.0, 120.0, 240.0], [0.0, 120.5, 17.0], 0)
    np.testing.assert_allclose(
        sky_to_pixel(wcs, ra, dec), [[0.0, 0.0], [120.0, 120.5], [240.0, 17.0]], atol=1e-6
    )
    assert pixel_scale_arcsec(wcs) == pytest.approx(0.396, rel=2e-3)


def test_scaled_and_extension_images_go_through_astropy(tmp_path: Path) -> None:
    """BSCALE/BZERO integers in an image extension: read by astropy, with the same pixels and WCS."""
    wcs = image_wcs(150.0, 2.0, 20, 0.4)
    values = np.arange(400, dtype=np.int16).reshape(20, 20)
    hdu = fits.ImageHDU(data=values, header=wcs.to_header())
    hdu.header["BSCALE"] = 0.5
    hdu.header["BZERO"] = 10.0
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(tmp_path / "ext.fits")
    data, got = load_fits_image(tmp_path / "ext.fits")
    np.testing.assert_allclose(data, values * 0.5 + 10.0)
    np.testing.assert_allclose(sky_to_pixel(got, 150.0, 2.0), [[9.5, 9.5]], atol=1e-9)
    assert pixel_scale_arcsec(got) == pytest.approx(0.4)


def test_sip_header_uses_the_full_wcs(tmp_path: Path) -> None:
    wcs = image_wcs(150.0, 2.0, 20, 0.4)
    header = wcs.to_header()
    header["CTYPE1"], header["CTYPE2"] = "RA---TAN-SIP", "DEC--TAN-SIP"
    header.update({"A_ORDER": 2, "B_ORDER": 2, "A_2_0": 1e-5, "B_0_2": 1e-5})
    fits.PrimaryHDU(data=np.zeros((20, 20), np.float32), header=header).writeto(tmp_path / "sip.fits")
    _, got = load_fits_image(tmp_path / "sip.fits")
    reference = _astropy_wcs(tmp_path / "sip.fits")
    ra, dec = reference.all_pix2world([3.0], [17.0], 0)
    np.testing.assert_allclose(sky_to_pixel(got, ra, dec), [[3.0, 17.0]], atol=1e-6)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(GalaxyImageError, match="FITS file is missing") as info:
        load_fits_image(tmp_path / "nope.fits")
    assert info.value.kind == "missing_fits"


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"this is not a FITS file at all" * 200, "unreadable FITS file"),
        (None, "truncated FITS file"),
        (b"", "unreadable FITS file"),
    ],
)
def test_corrupt_file(tmp_path: Path, content: bytes | None, match: str) -> None:
    path = tmp_path / "bad.fits"
    if content is None:  # a valid image cut short
        header = image_wcs(1.0, 1.0, 64, 0.4).to_header()
        fits.PrimaryHDU(data=np.zeros((64, 64), np.float32), header=header).writeto(path)
        content = path.read_bytes()[: 2880 + 1000]
    path.write_bytes(content)
    with pytest.raises(GalaxyImageError, match=match) as info:
        load_fits_image(path)
    assert info.value.kind == "corrupt_fits"


def test_no_image_data(tmp_path: Path) -> None:
    fits.PrimaryHDU().writeto(tmp_path / "empty.fits")
    with pytest.raises(GalaxyImageError, match="no HDU holds a 2-D image") as info:
        load_fits_image(tmp_path / "empty.fits")
    assert info.value.kind == "corrupt_fits"


@pytest.mark.parametrize(
    ("cards", "match"),
    [
        ({}, "no celestial WCS"),
        ({"CTYPE1": "RA---XYZ", "CTYPE2": "DEC--XYZ", "CRVAL1": 1.0, "CRVAL2": 1.0}, "no usable WCS"),
    ],
)
def test_bad_wcs(tmp_path: Path, cards: dict, match: str) -> None:
    header = fits.Header(cards)
    fits.PrimaryHDU(data=np.zeros((8, 8), np.float32), header=header).writeto(tmp_path / "nowcs.fits")
    with pytest.raises(GalaxyImageError, match=match) as info:
        load_fits_image(tmp_path / "nowcs.fits")
    assert info.value.kind == "bad_wcs"


def test_positions_that_do_not_project_are_nan(tmp_path: Path) -> None:
    write_fits_image(tmp_path / "g.fits", np.zeros((50, 50)), image_wcs(10.0, 20.0, 50, 0.4), "g")
    _, wcs = load_fits_image(tmp_path / "g.fits")
    pixels = sky_to_pixel(wcs, np.array([10.0, 190.0]), np.array([20.0, -20.0]))
    np.testing.assert_allclose(pixels[0], [24.5, 24.5], atol=1e-9)
    assert np.isnan(pixels[1]).all()
    assert sky_to_pixel(wcs, np.empty(0), np.empty(0)).shape == (0, 2)
