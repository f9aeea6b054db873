"""Photometry and units: magnitudes, fluxes, luminosities, distances, pixel scales (SPEC D2, D6, D7, F1, F3).

Pure functions of numbers and arrays, no I/O; the one place for each convention of DESIGN §2:

- SDSS asinh magnitudes <-> flux in nanomaggies (:func:`asinh_mag`, :func:`flux_from_asinh_mag`), with the
  AB offset of the band;
- luminosity = flux x 4 pi D^2 in solar units of the band, no k-correction (SPEC D7:
  :func:`compute_luminosity`, :func:`luminosity_per_nanomaggy`), with the Sun's absolute AB magnitudes
  (:data:`M_SUN_AB`, :func:`compute_image_m_sun`);
- distances, with the cosmology explicit (SPEC D7: :func:`compute_distances_mpc`), and the pixel size in kpc
  (SPEC F3: :func:`compute_pixel_kpc`, :func:`resolve_pixel_scale_arcsec`);
- HyperLeda's units (SPEC D2): ``al2000`` in hours (:func:`hours_to_degrees`, :func:`degrees_to_hours`) and
  ``D25' = 0.1 * 10**logd25`` (:func:`d25_arcmin_from_logd25`, :func:`logd25_from_d25_arcmin`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from morphomass.errors import InputDataError

__all__ = [
    "ASINH_SOFTENING",
    "M_SUN_AB",
    "PAPER_C_KM_S",
    "PAPER_PIXEL_ARCSEC",
    "SDSS_PIXEL_ARCSEC",
    "asinh_mag",
    "compute_distances_mpc",
    "compute_image_m_sun",
    "compute_luminosity",
    "compute_pixel_kpc",
    "d25_arcmin_from_logd25",
    "degrees_to_hours",
    "flux_from_asinh_mag",
    "hours_to_degrees",
    "logd25_from_d25_arcmin",
    "luminosity_per_nanomaggy",
    "resolve_pixel_scale_arcsec",
]

#: SDSS asinh softening parameters b per band (Lupton et al. 1999; EDR Table 21).
ASINH_SOFTENING: dict[str, float] = {"u": 1.4e-10, "g": 0.9e-10, "r": 1.2e-10, "i": 1.8e-10, "z": 7.4e-10}
#: Absolute AB magnitude of the Sun per band (Willmer 2018); 5.11 in g (DESIGN §2).
M_SUN_AB: dict[str, float] = {"u": 6.39, "g": 5.11, "r": 4.65, "i": 4.53, "z": 4.50}
#: Speed of light of the paper's distance convention D = c z / H0 (km/s; reference/data_formats.md §0).
PAPER_C_KM_S = 3.0e5
#: SDSS pixel scale (arcsec) and the value the paper used for pixel sizes in kpc.
SDSS_PIXEL_ARCSEC = 0.396
PAPER_PIXEL_ARCSEC = 0.4
_NMGY_PER_MAGGY = 1e9
_ARCSEC_RAD = math.pi / (180.0 * 3600.0)


# ------------------------------------------------------------------------------------------------ magnitudes


def asinh_mag(flux_nmgy: ArrayLike, band: str) -> NDArray[np.float64]:
    """SDSS asinh magnitude of a flux in nanomaggies (f0 = 1e9 nMgy; Lupton et al. 1999).

    Parameters
    ----------
    flux_nmgy : array_like
        Flux in nanomaggies on the SDSS scale (may be zero or negative).
    band : {'u', 'g', 'r', 'i', 'z'}

    Returns
    -------
    ndarray of float64
        m = -(2.5 / ln 10) [asinh((f / f0) / (2 b)) + ln b], same shape as ``flux_nmgy``.
    """
    b = ASINH_SOFTENING[band]
    x = np.asarray(flux_nmgy) / 1e9
    return -2.5 / np.log(10) * (np.arcsinh(x / (2 * b)) + np.log(b))


def flux_from_asinh_mag(mag: ArrayLike, band: str, *, ab_offset_mag: float = 0.0) -> NDArray[np.float64]:
    """Flux in nanomaggies of an SDSS asinh magnitude (e.g. a ``modelMag``; SPEC D6).

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

    Raises
    ------
    ValueError
        If ``band`` is not an SDSS band.
    """
    if band not in ASINH_SOFTENING:
        msg = f"band must be one of {list(ASINH_SOFTENING)}, got {band!r}"
        raise ValueError(msg)
    b = ASINH_SOFTENING[band]
    m = np.asarray(mag, dtype=np.float64)
    ratio = 2.0 * b * np.sinh(-m * np.log(10.0) / 2.5 - np.log(b))
    return _NMGY_PER_MAGGY * ratio * 10.0 ** (-0.4 * ab_offset_mag)


# ------------------------------------------------------------------------------------------------ luminosity


def _lsun_per_nmgy_at_1mpc(m_sun_ab: float) -> float:
    """L / L_sun of 1 nanomaggy at 1 Mpc: 10**(0.4 (DM + M_sun - 22.5)) with DM = 5 log10(D_Mpc) + 25."""
    return 10.0 ** (0.4 * (25.0 + m_sun_ab - 22.5))


def compute_luminosity(flux_nmgy: ArrayLike, dist_mpc: ArrayLike, *, m_sun_ab: float) -> NDArray[np.float64]:
    """Luminosity in solar units of the band, L = 4 pi D^2 f, without k-correction (SPEC D6, D7).

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
    return flux * dist**2 * _lsun_per_nmgy_at_1mpc(m_sun_ab)


def luminosity_per_nanomaggy(dist_mpc: float, *, m_sun_ab: float) -> float:
    """Luminosity in solar units of a source of 1 nanomaggy at distance ``dist_mpc`` (SPEC D7, F1).

    The per-pixel factor of the luminosity features: :func:`compute_luminosity` of a 1 nMgy flux,
    ``L / L_sun = D_Mpc^2 * 10**(0.4 (25 + M_sun - 22.5))``.

    Parameters
    ----------
    dist_mpc : float
        Luminosity distance in Mpc, > 0.
    m_sun_ab : float
        Absolute AB magnitude of the Sun on the image's flux scale (5.11 in g; :func:`compute_image_m_sun`).

    Returns
    -------
    float
        L_sun per nanomaggy.

    Raises
    ------
    InputDataError
        If ``dist_mpc`` is not a positive finite number.
    """
    if not (math.isfinite(dist_mpc) and dist_mpc > 0):
        msg = f"luminosity_per_nanomaggy: dist_mpc must be finite and > 0, got {dist_mpc!r}"
        raise InputDataError(msg)
    return dist_mpc**2 * _lsun_per_nmgy_at_1mpc(m_sun_ab)


def compute_image_m_sun(
    m_sun_ab: Mapping[str, float], ab_offset_mag: Mapping[str, float], *, band: str
) -> float:
    """Return the Sun's absolute magnitude on the flux scale of SDSS images in ``band`` (SPEC D7, F1).

    Images are in SDSS nanomaggies, not AB: a flux f on the image is f * 10**(-0.4 offset) in AB, so the
    luminosity of an image flux uses M_sun,AB - offset. Equal to M_sun,AB in g, r and i.

    Parameters
    ----------
    m_sun_ab : mapping of band to float
        Absolute AB magnitudes of the Sun (``catalog.m_sun_ab``).
    ab_offset_mag : mapping of band to float
        m_AB - modelMag per band (``catalog.ab_offset_mag``).
    band : str
        The image band.

    Returns
    -------
    float
        M_sun for :func:`luminosity_per_nanomaggy` of image fluxes.
    """
    return float(m_sun_ab[band] - ab_offset_mag[band])


# ------------------------------------------------------------------------------------------ distances, pixels


def compute_distances_mpc(
    z: ArrayLike,
    *,
    convention: Literal["astropy", "paper"],
    h0_km_s_mpc: float,
    om0: float,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Distances for luminosities and for physical sizes (SPEC D7: the cosmology is explicit).

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

    Raises
    ------
    ValueError
        If ``convention`` is neither ``"astropy"`` nor ``"paper"``.
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


def compute_pixel_kpc(dist_ang_mpc: ArrayLike, *, pixel_scale_arcsec: float) -> NDArray[np.float64]:
    """Physical size of a pixel (kpc): pixel scale times the angular-diameter distance (SPEC F3).

    Parameters
    ----------
    dist_ang_mpc : array_like
        Angular-diameter distance (Mpc).
    pixel_scale_arcsec : float
        Image pixel scale (arcsec; :func:`resolve_pixel_scale_arcsec`).

    Returns
    -------
    ndarray of float64
        kpc per pixel.
    """
    return np.asarray(dist_ang_mpc, dtype=np.float64) * 1e3 * pixel_scale_arcsec * _ARCSEC_RAD


def resolve_pixel_scale_arcsec(pixel_scale_arcsec: float | None, *, convention: str) -> float:
    """Return the pixel scale used for ``pixel_kpc`` (SPEC F3): the configured one, else the convention's.

    Parameters
    ----------
    pixel_scale_arcsec : float or None
        ``catalog.pixel_scale_arcsec``; None for the convention's default.
    convention : str
        ``cosmology.convention``: ``"paper"`` uses the paper's 0.4", anything else SDSS's 0.396".

    Returns
    -------
    float
        Arcsec per pixel.
    """
    return pixel_scale_arcsec or (PAPER_PIXEL_ARCSEC if convention == "paper" else SDSS_PIXEL_ARCSEC)


# ------------------------------------------------------------------------------------------------ HyperLeda


def hours_to_degrees(hours: ArrayLike) -> NDArray[np.float64]:
    """Right ascension in degrees of HyperLeda's ``al2000`` (hours; SPEC D2)."""
    return np.asarray(hours) * 15.0


def degrees_to_hours(degrees: ArrayLike) -> NDArray[np.float64]:
    """Right ascension in hours (HyperLeda's ``al2000``) of one in degrees (SPEC D2)."""
    return np.asarray(degrees) / 15.0


def d25_arcmin_from_logd25(logd25: ArrayLike) -> NDArray[np.float64]:
    """D25 in arcmin of HyperLeda's ``logd25`` (log10 of D25 in 0.1 arcmin): D25' = 0.1 * 10**logd25.

    SPEC D2.

    NaN (undefined) stays NaN.
    """
    return 0.1 * 10.0 ** np.asarray(logd25)


def logd25_from_d25_arcmin(d25_arcmin: ArrayLike) -> NDArray[np.float64]:
    """HyperLeda's ``logd25`` (log10 of 0.1 arcmin) of a D25 in arcmin.

    The inverse of :func:`d25_arcmin_from_logd25`.
    """
    return np.log10(np.asarray(d25_arcmin) * 10.0)
