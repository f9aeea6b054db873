"""Fluxes, distances, luminosities, the M/L target and the split (SPEC D6, D7, D9; DESIGN §2 conventions).

Pure functions of arrays (and an explicit ``rng``); no I/O.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "ASINH_SOFTENING",
    "PAPER_C_KM_S",
    "PAPER_PIXEL_ARCSEC",
    "SDSS_PIXEL_ARCSEC",
    "compute_distances_mpc",
    "compute_luminosity",
    "compute_ml",
    "compute_pixel_kpc",
    "flux_from_asinh_mag",
    "make_split",
]

#: SDSS asinh softening parameters b per band (Lupton et al. 1999; EDR Table 21).
ASINH_SOFTENING: dict[str, float] = {"u": 1.4e-10, "g": 0.9e-10, "r": 1.2e-10, "i": 1.8e-10, "z": 7.4e-10}
#: Speed of light of the paper's distance convention D = c z / H0 (km/s; reference/data_formats.md §0).
PAPER_C_KM_S = 3.0e5
#: SDSS pixel scale (arcsec) and the value the paper used for pixel sizes in kpc.
SDSS_PIXEL_ARCSEC = 0.396
PAPER_PIXEL_ARCSEC = 0.4
_NMGY_PER_MAGGY = 1e9
_ARCSEC_RAD = math.pi / (180.0 * 3600.0)


def flux_from_asinh_mag(mag: ArrayLike, band: str, *, ab_offset_mag: float = 0.0) -> NDArray[np.float64]:
    """Flux in nanomaggies of an SDSS asinh magnitude (e.g. a ``modelMag``).

    Inverts m = -(2.5 / ln 10) [asinh((f / f0) / (2 b)) + ln b], so faint and negative fluxes come back
    exactly, then puts the flux on the AB scale: m_AB = m + ``ab_offset_mag``.

    Parameters
    ----------
    mag : array_like
        Asinh magnitudes (NaN stays NaN).
    band : {'u', 'g', 'r', 'i', 'z'}
    ab_offset_mag : float
        AB minus SDSS magnitude of the band (-0.04 for u, +0.02 for z, 0 otherwise).

    Returns
    -------
    ndarray of float64
        Flux in nanomaggies (1 nMgy = 3.631e-6 Jy), same shape as ``mag``.
    """
    if band not in ASINH_SOFTENING:
        msg = f"band must be one of {list(ASINH_SOFTENING)}, got {band!r}"
        raise ValueError(msg)
    b = ASINH_SOFTENING[band]
    m = np.asarray(mag, dtype=np.float64)
    ratio = 2.0 * b * np.sinh(-m * np.log(10.0) / 2.5 - np.log(b))
    return _NMGY_PER_MAGGY * ratio * 10.0 ** (-0.4 * ab_offset_mag)


def compute_distances_mpc(
    z: ArrayLike,
    *,
    convention: Literal["astropy", "paper"],
    h0_km_s_mpc: float,
    om0: float,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Distances for luminosities and for physical sizes.

    Parameters
    ----------
    z : array_like
        Redshifts (> 0).
    convention : {'astropy', 'paper'}
        ``"astropy"``: ``FlatLambdaCDM(H0, Om0)`` luminosity and angular-diameter distances. ``"paper"``:
        Dobbels' D = c z / H0 with c = 3e5 km/s for both.
    h0_km_s_mpc : float
        Hubble constant (km/s/Mpc).
    om0 : float
        Matter density (astropy convention only).

    Returns
    -------
    dist_lum_mpc, dist_ang_mpc : ndarray of float64
        Mpc, same shape as ``z``.
    """
    zz = np.asarray(z, dtype=np.float64)
    if convention == "paper":
        dist = PAPER_C_KM_S * zz / h0_km_s_mpc
        return dist, dist.copy()
    if convention == "astropy":
        from astropy.cosmology import FlatLambdaCDM

        cosmology = FlatLambdaCDM(H0=h0_km_s_mpc, Om0=om0)
        return (
            np.asarray(cosmology.luminosity_distance(zz).value, dtype=np.float64),
            np.asarray(cosmology.angular_diameter_distance(zz).value, dtype=np.float64),
        )
    msg = f"convention must be 'astropy' or 'paper', got {convention!r}"
    raise ValueError(msg)


def compute_luminosity(flux_nmgy: ArrayLike, dist_mpc: ArrayLike, *, m_sun_ab: float) -> NDArray[np.float64]:
    """Luminosity in solar units of the band, L = 4 pi D^2 f, without k-correction (SPEC D7).

    L / L_sun = 10**(-0.4 (M - M_sun)) with M = 22.5 - 2.5 log10(f) - 5 log10(D / 10 pc), written linearly in
    f so that negative fluxes (faint u band) give negative luminosities instead of NaN.

    Parameters
    ----------
    flux_nmgy : array_like
        AB flux in nanomaggies.
    dist_mpc : array_like
        Luminosity distance in Mpc.
    m_sun_ab : float
        Absolute AB magnitude of the Sun in the band (5.11 in g).

    Returns
    -------
    ndarray of float64
        L_band / L_sun,band.
    """
    flux = np.asarray(flux_nmgy, dtype=np.float64)
    dist = np.asarray(dist_mpc, dtype=np.float64)
    # 10**(0.4 (DM + M_sun - 22.5)) with DM = 5 log10(D_Mpc) + 25
    return flux * dist**2 * 10.0 ** (0.4 * (25.0 + m_sun_ab - 22.5))


def compute_pixel_kpc(dist_ang_mpc: ArrayLike, *, pixel_scale_arcsec: float) -> NDArray[np.float64]:
    """Physical size of a pixel (kpc): pixel scale times the angular-diameter distance.

    Parameters
    ----------
    dist_ang_mpc : array_like
        Angular-diameter distance (Mpc).
    pixel_scale_arcsec : float
        Image pixel scale (arcsec).

    Returns
    -------
    ndarray of float64
        kpc per pixel.
    """
    return np.asarray(dist_ang_mpc, dtype=np.float64) * 1e3 * pixel_scale_arcsec * _ARCSEC_RAD


def compute_ml(
    logmstar: ArrayLike,
    logmstar_err: ArrayLike,
    lum: ArrayLike,
    mag_err: ArrayLike,
    *,
    rel_err_floor: float,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Mass-to-light ratio and its uncertainty (SPEC D6).

    M/L = 10**logmstar / L. Its relative error combines the mass error and the magnitude error,
    ln(10) * hypot(logmstar_err, 0.4 mag_err), and is floored at ``rel_err_floor``.

    Parameters
    ----------
    logmstar, logmstar_err : array_like
        log10 stellar mass (M_sun) and its error (dex).
    lum : array_like
        Luminosity in solar units of the band.
    mag_err : array_like
        Error of the magnitude the luminosity comes from (mag).
    rel_err_floor : float
        Smallest relative error (0.05 in the paper).

    Returns
    -------
    ml, ml_err : ndarray of float64
        M/L in solar units and its (floored) 1-sigma error.
    """
    ml = 10.0 ** np.asarray(logmstar, dtype=np.float64) / np.asarray(lum, dtype=np.float64)
    rel = np.log(10.0) * np.hypot(
        np.asarray(logmstar_err, dtype=np.float64), 0.4 * np.asarray(mag_err, dtype=np.float64)
    )
    return ml, ml * np.maximum(rel, rel_err_floor)


def make_split(
    n: int, *, test_fraction: float, val_fraction: float, rng: np.random.Generator
) -> NDArray[np.str_]:
    """Random train/val/test labels (SPEC D9).

    ``ceil(test_fraction * n)`` rows go to the test set, then ``ceil(val_fraction * rest)`` to validation, the
    rest to training (ceil as scikit-learn's ``train_test_split``; 73 627 galaxies give the paper's
    59 637 / 6 627 / 7 363).

    Parameters
    ----------
    n : int
        Number of rows.
    test_fraction, val_fraction : float
        In (0, 1).
    rng : numpy.random.Generator

    Returns
    -------
    (n,) ndarray of str
        ``"train"``, ``"val"`` or ``"test"`` per row.
    """
    for name, value in (("test_fraction", test_fraction), ("val_fraction", val_fraction)):
        if not 0.0 < value < 1.0:
            msg = f"{name} must be in (0, 1), got {value!r}"
            raise ValueError(msg)
    n_test = math.ceil(test_fraction * n - 1e-9)
    n_val = math.ceil(val_fraction * (n - n_test) - 1e-9)
    order = rng.permutation(n)
    split = np.full(n, "train", dtype="<U5")
    split[order[:n_test]] = "test"
    split[order[n_test : n_test + n_val]] = "val"
    return split
