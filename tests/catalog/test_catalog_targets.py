"""Fluxes, distances, luminosities, M/L and the split against independent formulas and real numbers."""

from __future__ import annotations

import numpy as np
import pytest
from astropy import units as u
from astropy.cosmology import FlatLambdaCDM

from morphomass.catalog.targets import (
    ASINH_SOFTENING,
    compute_distances_mpc,
    compute_luminosity,
    compute_ml,
    compute_pixel_kpc,
    flux_from_asinh_mag,
    make_split,
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


def test_ml_and_its_floored_error() -> None:
    # Dobbels' first galaxy: logM = 10.328326, L_g = 8.880467e9 -> M/L = 2.398
    ml, ml_err = compute_ml(10.328326, 0.01, 8.880467e9, 0.002, rel_err_floor=0.05)
    assert ml == pytest.approx(2.398, abs=5e-4)
    assert ml_err == pytest.approx(0.05 * ml)  # ln10 * 0.0100 = 2.3 % is below the floor
    ml, ml_err = compute_ml(
        np.array([10.0, 10.0]),
        np.array([0.1, 0.1]),
        np.array([1e10, 1e10]),
        np.array([0.0, 0.25]),
        rel_err_floor=0.05,
    )
    np.testing.assert_allclose(ml, [1.0, 1.0])
    np.testing.assert_allclose(ml_err, np.log(10) * np.hypot(0.1, [0.0, 0.1]))


def test_split_sizes_follow_spec_d9() -> None:
    split = make_split(73_627, test_fraction=0.1, val_fraction=0.1, rng=np.random.default_rng(0))
    counts = {name: int((split == name).sum()) for name in ("train", "val", "test")}
    assert counts == {"train": 59_637, "val": 6_627, "test": 7_363}  # the paper's numbers
    split = make_split(100, test_fraction=0.1, val_fraction=0.1, rng=np.random.default_rng(0))
    assert [(split == name).sum() for name in ("train", "val", "test")] == [81, 9, 10]


def test_split_is_seeded_and_random() -> None:
    a = make_split(500, test_fraction=0.1, val_fraction=0.1, rng=np.random.default_rng(123))
    b = make_split(500, test_fraction=0.1, val_fraction=0.1, rng=np.random.default_rng(123))
    c = make_split(500, test_fraction=0.1, val_fraction=0.1, rng=np.random.default_rng(124))
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()
    test_rows = np.flatnonzero(a == "test")
    assert test_rows.min() < 100 and test_rows.max() > 400  # spread over the rows, not a block
    with pytest.raises(ValueError, match=r"test_fraction must be in \(0, 1\), got 1\.0"):
        make_split(10, test_fraction=1.0, val_fraction=0.1, rng=np.random.default_rng(0))
