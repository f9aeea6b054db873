"""Photometry and units (SPEC D2, D6, D7, F3): magnitudes, fluxes, luminosities, distances, pixel scales."""

from __future__ import annotations

import numpy as np
import pytest
from astropy import units as u
from astropy.cosmology import FlatLambdaCDM

from morphomass.errors import InputDataError
from morphomass.photometry import (
    ASINH_SOFTENING,
    PAPER_PIXEL_ARCSEC,
    SDSS_PIXEL_ARCSEC,
    asinh_mag,
    compute_distances_mpc,
    compute_image_m_sun,
    compute_luminosity,
    compute_pixel_kpc,
    d25_arcmin_from_logd25,
    degrees_to_hours,
    flux_from_asinh_mag,
    hours_to_degrees,
    logd25_from_d25_arcmin,
    luminosity_per_nanomaggy,
    resolve_pixel_scale_arcsec,
)


def _asinh_mag(flux_nmgy: np.ndarray, band: str) -> np.ndarray:
    """SDSS asinh magnitude (Lupton et al. 1999), the forward formula."""
    b = ASINH_SOFTENING[band]
    return -2.5 / np.log(10) * (np.arcsinh(flux_nmgy / 1e9 / (2 * b)) + np.log(b))


@pytest.mark.parametrize("band", ["u", "g", "r", "i", "z"])
def test_asinh_magnitudes_invert_exactly_including_negative_fluxes(band: str) -> None:
    flux = np.array([-0.05, 0.0, 0.01, 0.3, 1.0, 250.0, 1e4])
    np.testing.assert_allclose(flux_from_asinh_mag(_asinh_mag(flux, band), band), flux, rtol=1e-9, atol=1e-12)


def test_bright_asinh_magnitudes_are_pogson_and_ab_offsets_apply() -> None:
    assert flux_from_asinh_mag(22.5 - 2.5 * np.log10(250.0), "g") == pytest.approx(250.0, rel=1e-6)
    # u_AB = u_SDSS - 0.04: an object of modelMag_u = 17 is 4 % brighter on the AB scale
    ratio = flux_from_asinh_mag(17.0, "u", ab_offset_mag=-0.04) / flux_from_asinh_mag(17.0, "u")
    assert ratio == pytest.approx(10 ** (0.4 * 0.04))
    assert np.isnan(flux_from_asinh_mag(np.nan, "g"))
    with pytest.raises(ValueError, match="band must be one of"):
        flux_from_asinh_mag(17.0, "y")


def test_luminosity_of_the_sun_at_10_pc_is_one() -> None:
    flux_sun_at_10pc = 10 ** (-0.4 * (5.11 - 22.5))
    assert compute_luminosity(flux_sun_at_10pc, 1e-5, m_sun_ab=5.11) == pytest.approx(1.0)


def test_luminosity_is_4_pi_d2_f_in_solar_units() -> None:
    flux_nmgy, dist_mpc, m_sun = 120.0, 250.0, 5.11
    f_nu = flux_nmgy * 3.631e-6 * u.Jy
    lum = (4 * np.pi * (dist_mpc * u.Mpc) ** 2 * f_nu).to(u.erg / u.s / u.Hz)
    lum_sun = (4 * np.pi * (10 * u.pc) ** 2 * 3631 * u.Jy * 10 ** (-0.4 * m_sun)).to(u.erg / u.s / u.Hz)
    assert compute_luminosity(flux_nmgy, dist_mpc, m_sun_ab=m_sun) == pytest.approx((lum / lum_sun).value)
    assert compute_luminosity(-1.0, 100.0, m_sun_ab=m_sun) < 0  # a negative flux stays a (negative) number


def test_paper_distance_convention_reproduces_dobbels_metadata() -> None:
    # first row of Dobbels' metadata (reference/data_formats.md §0): z = 0.0761 -> D = 326.142854 Mpc,
    # d_pix_kpc = 0.632474 with 0.4" pixels, GalSize_kpc = 48.655727 for D25 = 0.512861'
    dist_lum, dist_ang = compute_distances_mpc(0.0761, convention="paper", h0_km_s_mpc=70.0, om0=0.3)
    assert dist_lum == pytest.approx(326.142854, rel=1e-6)
    assert dist_ang == dist_lum
    assert compute_pixel_kpc(dist_ang, pixel_scale_arcsec=0.4) == pytest.approx(0.632474, rel=1e-5)
    assert 0.512861 * 60 / 0.4 * compute_pixel_kpc(dist_ang, pixel_scale_arcsec=0.4) == pytest.approx(
        48.655727, rel=1e-5
    )


def test_astropy_distance_convention() -> None:
    z = np.array([0.01, 0.1, 0.3])
    dist_lum, dist_ang = compute_distances_mpc(z, convention="astropy", h0_km_s_mpc=70.0, om0=0.3)
    np.testing.assert_allclose(dist_lum, dist_ang * (1 + z) ** 2, rtol=1e-10)  # Etherington
    np.testing.assert_allclose(dist_lum, FlatLambdaCDM(H0=70, Om0=0.3).luminosity_distance(z).value)
    low_z, _ = compute_distances_mpc(0.001, convention="astropy", h0_km_s_mpc=70.0, om0=0.3)
    assert low_z == pytest.approx(2.99792458e5 * 0.001 / 70, rel=1e-3)  # Hubble law at low z
    heavier, _ = compute_distances_mpc(0.3, convention="astropy", h0_km_s_mpc=70.0, om0=1.0)
    assert heavier < dist_lum[2]
    with pytest.raises(ValueError, match="convention must be 'astropy' or 'paper'"):
        compute_distances_mpc(z, convention="other", h0_km_s_mpc=70.0, om0=0.3)  # type: ignore[arg-type]


def test_pixel_kpc_scales_with_distance() -> None:
    kpc = compute_pixel_kpc(np.array([100.0, 200.0]), pixel_scale_arcsec=0.396)
    assert kpc[0] == pytest.approx(100e3 * np.radians(0.396 / 3600))
    assert kpc[1] == pytest.approx(2 * kpc[0])


@pytest.mark.parametrize("band", ["u", "g", "r", "i", "z"])
def test_asinh_mag_is_pogson_for_bright_sources(band: str) -> None:
    flux = np.array([100.0, 1000.0, 1.0e4])
    np.testing.assert_allclose(asinh_mag(flux, band), 22.5 - 2.5 * np.log10(flux), atol=1e-3)


@pytest.mark.parametrize("band", ["u", "g", "r", "i", "z"])
def test_asinh_mag_departs_from_pogson_for_faint_sources(band: str) -> None:
    faint = np.array([0.01, 0.001])
    pogson = 22.5 - 2.5 * np.log10(faint)
    assert (np.abs(asinh_mag(faint, band) - pogson) > 0.1).all()
    # ... and, unlike Pogson magnitudes, stays finite (and monotonic) through zero and negative fluxes.
    fluxes = np.array([-0.5, 0.0, 0.5, 5.0])
    mags = asinh_mag(fluxes, band)
    assert np.isfinite(mags).all()
    assert (np.diff(mags) < 0).all()


def test_luminosity_of_one_nanomaggy() -> None:
    # 1 nmgy is AB 22.5; at 10 pc (1e-5 Mpc) the absolute magnitude is 22.5, i.e. L = 10**(-0.4 (22.5 - 5.11))
    assert luminosity_per_nanomaggy(1e-5, m_sun_ab=5.11) == pytest.approx(
        10 ** (-0.4 * (22.5 - 5.11)), rel=1e-12
    )
    # a galaxy of magnitude 15 at 100 Mpc has M = 15 - 35 = -20: L = 10**(0.4 * 25.11) = 1.107e10 L_sun
    flux_nmgy = 10 ** ((22.5 - 15.0) / 2.5)
    assert flux_nmgy * luminosity_per_nanomaggy(100.0, m_sun_ab=5.11) == pytest.approx(1.1066e10, rel=1e-4)
    # flux x 4 pi D^2: doubling the distance quadruples the luminosity
    assert luminosity_per_nanomaggy(200.0, m_sun_ab=5.11) == pytest.approx(
        4 * luminosity_per_nanomaggy(100.0, m_sun_ab=5.11), rel=1e-12
    )


@pytest.mark.parametrize("dist", [0.0, -3.0, float("nan"), float("inf")])
def test_luminosity_rejects_bad_distance(dist: float) -> None:
    with pytest.raises(InputDataError, match="dist_mpc must be finite and > 0"):
        luminosity_per_nanomaggy(dist, m_sun_ab=5.11)


def test_asinh_mag_and_its_inverse_agree() -> None:
    flux = np.array([-0.5, 0.0, 0.01, 3.0, 250.0])
    for band in ("u", "g", "r", "i", "z"):
        np.testing.assert_allclose(flux_from_asinh_mag(asinh_mag(flux, band), band), flux, atol=1e-9)


def test_luminosity_per_nanomaggy_is_the_luminosity_of_one_nanomaggy() -> None:
    for m_sun in (6.39, 5.11, 4.65, 4.53, 4.50):
        assert luminosity_per_nanomaggy(123.4, m_sun_ab=m_sun) == pytest.approx(
            float(compute_luminosity(1.0, 123.4, m_sun_ab=m_sun)), rel=1e-15
        )


def test_image_m_sun_takes_off_the_ab_offset() -> None:
    m_sun = {"u": 6.39, "g": 5.11}
    offsets = {"u": -0.04, "g": 0.0}
    assert compute_image_m_sun(m_sun, offsets, band="g") == 5.11
    assert compute_image_m_sun(m_sun, offsets, band="u") == pytest.approx(6.43)


def test_pixel_scale_is_the_configured_one_else_the_conventions() -> None:
    assert resolve_pixel_scale_arcsec(0.25, convention="paper") == 0.25
    assert resolve_pixel_scale_arcsec(None, convention="paper") == PAPER_PIXEL_ARCSEC == 0.4
    assert resolve_pixel_scale_arcsec(None, convention="astropy") == SDSS_PIXEL_ARCSEC == 0.396


def test_hyperleda_units() -> None:
    assert hours_to_degrees(np.array([1.0, 23.5])).tolist() == [15.0, 352.5]
    assert degrees_to_hours(352.5) == 23.5
    assert d25_arcmin_from_logd25(np.array([0.7])) == pytest.approx(0.1 * 10**0.7)
    assert d25_arcmin_from_logd25(1.0) == pytest.approx(1.0)
    assert np.isnan(d25_arcmin_from_logd25(np.nan))
    assert logd25_from_d25_arcmin(0.4) == pytest.approx(np.log10(4.0))
