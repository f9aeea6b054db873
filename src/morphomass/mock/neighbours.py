"""Neighbouring galaxies on the mock images: how many, where, how bright, how big.

SDSS cut-outs of nearby galaxies hold other, mostly background, galaxies. The mock draws them from the
cumulative galaxy counts of SDSS in the r band between :data:`NEIGHBOUR_R_MAG_RANGE` (brighter ones are
rare on a field of a few arcminutes, fainter ones are lost in the noise of a single SDSS frame), uniformly
over each image, so that some overlap the target. Their clustering around the target (satellites, groups) is
not modelled: the counts are those of the field. Neighbours are not stars: they never enter the star
catalogue.

Pure functions of their inputs and an ``rng``; :mod:`morphomass.mock.survey` turns the draws into pixel
positions and fluxes and :mod:`morphomass.mock.render` draws them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from morphomass.errors import InputDataError

__all__ = [
    "NEIGHBOUR_BANDS",
    "Neighbours",
    "cumulative_counts_per_deg2",
    "draw_neighbour_r_mag",
    "draw_neighbours",
    "mean_neighbours_per_image",
]

#: Cumulative galaxy counts at r = 21, per deg^2: Yasuda et al. 2001, AJ 122, 1104 (~900 000 galaxies with
#: r <= 21 over ~440 deg^2 of SDSS commissioning data).
NEIGHBOUR_COUNTS_AT_R21_PER_DEG2 = 2050.0
#: Slope d log10 N(<r) / dr of the cumulative counts (mag^-1): from the density above and that of the SDSS
#: main galaxy sample, ~90 deg^-2 to r = 17.77 (Strauss et al. 2002, AJ 124, 1810).
NEIGHBOUR_COUNTS_SLOPE_PER_MAG = 0.42
#: r-band magnitudes of the neighbours drawn (AB).
NEIGHBOUR_R_MAG_RANGE = (16.0, 21.0)
#: g - r of the neighbours: normal (mean, sigma), clipped to (lo, hi) (mag); a stand-in for the bimodal
#: colours of faint SDSS galaxies.
NEIGHBOUR_G_MINUS_R = (0.65, 0.20, 0.2, 1.1)
#: The other colours as multiples of g - r plus a constant (a simple stand-in, not a fitted relation):
#: u - g = 1.6 (g - r) + 0.3, r - i = 0.45 (g - r), i - z = 0.3 (g - r).
NEIGHBOUR_U_MINUS_G = (1.6, 0.3)
NEIGHBOUR_R_MINUS_I = (0.45, 0.0)
NEIGHBOUR_I_MINUS_Z = (0.3, 0.0)
#: Half-light radius = a 10^(b (r - pivot)) 10^N(0, scatter) arcsec, as (a, b, pivot, scatter dex): ~1.5" at
#: r = 18 and ~0.8" at r = 21, like SDSS Petrosian r50 of faint galaxies (from memory, not a fitted relation).
NEIGHBOUR_HLR_ARCSEC = (1.2, -0.1, 19.0, 0.15)
#: Sérsic indices of the neighbours and their probabilities: a disc/spheroid mix (a stand-in).
NEIGHBOUR_SERSIC_N = ((1.0, 4.0), (0.7, 0.3))
#: Apparent axis ratios are uniform in this range.
NEIGHBOUR_AXIS_RATIO_RANGE = (0.3, 1.0)
#: Bands of :attr:`Neighbours.mag`, in column order.
NEIGHBOUR_BANDS: tuple[str, ...] = ("u", "g", "r", "i", "z")

_ARCSEC2_PER_DEG2 = 3600.0**2


@dataclass(frozen=True)
class Neighbours:
    """Neighbouring galaxies of a set of images, one row per neighbour (image ``image_index``).

    Attributes
    ----------
    counts : (n_images,) ndarray of int64
        Neighbours per image.
    image_index : (n,) ndarray of int64
        The image each neighbour lies on (sorted: the rows of image k are contiguous).
    dx_arcsec, dy_arcsec : (n,) ndarray of float64
        Offset from the image centre along the image's x and y axes, arcsec, within half the field of view.
    mag : (n, 5) ndarray of float64
        AB magnitudes in :data:`NEIGHBOUR_BANDS` order (u, g, r, i, z).
    hlr_arcsec : (n,) ndarray of float64
        Half-light radius (of the circularised profile), arcsec.
    sersic_n : (n,) ndarray of float64
        Sérsic index (1 or 4).
    axis_ratio : (n,) ndarray of float64
        Apparent minor-to-major axis ratio.
    pa_deg : (n,) ndarray of float64
        Position angle of the major axis, degrees (0-180, from the image's +x axis towards +y).
    """

    counts: NDArray[np.int64]
    image_index: NDArray[np.int64]
    dx_arcsec: NDArray[np.float64]
    dy_arcsec: NDArray[np.float64]
    mag: NDArray[np.float64]
    hlr_arcsec: NDArray[np.float64]
    sersic_n: NDArray[np.float64]
    axis_ratio: NDArray[np.float64]
    pa_deg: NDArray[np.float64]

    def rows_of(self, k: int) -> slice:
        """Return the slice of the rows of image ``k``."""
        start = int(self.counts[:k].sum())
        return slice(start, start + int(self.counts[k]))


def cumulative_counts_per_deg2(mag_r: NDArray[np.floating] | float) -> NDArray[np.float64]:
    """Return the SDSS cumulative galaxy counts N(< r) per deg^2.

    N(< r) = 2050 x 10^(0.42 (r - 21)) (Yasuda et al. 2001; slope from Strauss et al. 2002): see
    :data:`NEIGHBOUR_COUNTS_AT_R21_PER_DEG2` and :data:`NEIGHBOUR_COUNTS_SLOPE_PER_MAG`.

    Parameters
    ----------
    mag_r : float or ndarray of float
        r-band magnitude limit (AB).

    Returns
    -------
    ndarray of float64
        Galaxies brighter than ``mag_r`` per square degree, same shape as ``mag_r``.
    """
    mag = np.asarray(mag_r, dtype=np.float64)
    return NEIGHBOUR_COUNTS_AT_R21_PER_DEG2 * 10 ** (NEIGHBOUR_COUNTS_SLOPE_PER_MAG * (mag - 21.0))


def mean_neighbours_per_image(fov_arcsec: NDArray[np.floating] | float) -> NDArray[np.float64]:
    """Return the expected number of neighbours on a square image of side ``fov_arcsec``.

    (N(< 21) - N(< 16)) x the image's area in deg^2 (:func:`cumulative_counts_per_deg2`).

    Parameters
    ----------
    fov_arcsec : float or ndarray of float
        Side of each (square) image, arcsec; >= 0.

    Returns
    -------
    ndarray of float64
        Poisson mean per image, same shape as ``fov_arcsec``.
    """
    lo, hi = NEIGHBOUR_R_MAG_RANGE
    density = float(cumulative_counts_per_deg2(hi) - cumulative_counts_per_deg2(lo))
    return density * np.asarray(fov_arcsec, dtype=np.float64) ** 2 / _ARCSEC2_PER_DEG2


def draw_neighbour_r_mag(n: int, rng: np.random.Generator) -> NDArray[np.float64]:
    """Draw ``n`` r-band magnitudes from the counts law truncated to :data:`NEIGHBOUR_R_MAG_RANGE`.

    The density dN/dr is proportional to 10^(0.42 r); the draw inverts its cumulative distribution on
    [16, 21].

    Parameters
    ----------
    n : int
        Number of magnitudes, >= 0.
    rng : numpy.random.Generator

    Returns
    -------
    (n,) ndarray of float64
        AB magnitudes in [16, 21].
    """
    lo, hi = NEIGHBOUR_R_MAG_RANGE
    a = NEIGHBOUR_COUNTS_SLOPE_PER_MAG
    u = rng.uniform(0.0, 1.0, n)
    low, high = 10 ** (a * (lo - hi)), 1.0  # 10^(a (m - hi)) at both ends, kept near 1 for precision
    return np.clip(hi + np.log10(low + u * (high - low)) / a, lo, hi)


def _colours(mag_r: NDArray[np.float64], rng: np.random.Generator) -> NDArray[np.float64]:
    """Return u, g, r, i, z magnitudes (n, 5) from r and a drawn g - r."""
    mean, sigma, lo, hi = NEIGHBOUR_G_MINUS_R
    g_r = np.clip(rng.normal(mean, sigma, mag_r.size), lo, hi)
    g = mag_r + g_r
    u = g + NEIGHBOUR_U_MINUS_G[0] * g_r + NEIGHBOUR_U_MINUS_G[1]
    i = mag_r - (NEIGHBOUR_R_MINUS_I[0] * g_r + NEIGHBOUR_R_MINUS_I[1])
    z = i - (NEIGHBOUR_I_MINUS_Z[0] * g_r + NEIGHBOUR_I_MINUS_Z[1])
    return np.stack([u, g, mag_r, i, z], axis=1)


def draw_neighbours(fov_arcsec: NDArray[np.floating], rng: np.random.Generator) -> Neighbours:
    """Draw the neighbouring galaxies of square images of side ``fov_arcsec``.

    The number on each image is Poisson with mean :func:`mean_neighbours_per_image` (SDSS counts with
    16 < r < 21, Yasuda et al. 2001); positions are uniform over the image (clustering around the target is
    not modelled, so a neighbour overlaps the target only by chance); r magnitudes follow the counts law
    (:func:`draw_neighbour_r_mag`), colours :data:`NEIGHBOUR_G_MINUS_R` and the stand-in relations for the
    other bands; half-light radius :data:`NEIGHBOUR_HLR_ARCSEC`, Sérsic index 1 (70 %) or 4 (30 %), axis ratio
    U(0.3, 1) and position angle U(0, 180) degrees.

    Parameters
    ----------
    fov_arcsec : (n_images,) ndarray of float
        Side of each image, arcsec; finite and >= 0.
    rng : numpy.random.Generator

    Returns
    -------
    Neighbours
        All neighbours, grouped by image.

    Raises
    ------
    InputDataError
        If ``fov_arcsec`` is not 1-D or has negative or non-finite values.
    """
    fov = np.asarray(fov_arcsec, dtype=np.float64)
    if fov.ndim != 1 or not np.all(np.isfinite(fov)) or np.any(fov < 0):
        msg = f"draw_neighbours: fov_arcsec must be a 1-D array of finite sizes >= 0, got shape {fov.shape}"
        raise InputDataError(msg)
    counts = rng.poisson(mean_neighbours_per_image(fov)).astype(np.int64)
    image_index = np.repeat(np.arange(fov.size, dtype=np.int64), counts)
    n = int(counts.sum())
    half = 0.5 * fov[image_index]
    dx = rng.uniform(-1.0, 1.0, n) * half
    dy = rng.uniform(-1.0, 1.0, n) * half
    mag_r = draw_neighbour_r_mag(n, rng)
    mag = _colours(mag_r, rng)
    a, b, pivot, scatter = NEIGHBOUR_HLR_ARCSEC
    hlr = a * 10 ** (b * (mag_r - pivot) + rng.normal(0.0, scatter, n))
    indices, probabilities = NEIGHBOUR_SERSIC_N
    sersic_n = rng.choice(np.asarray(indices, dtype=np.float64), n, p=probabilities)
    axis_ratio = rng.uniform(*NEIGHBOUR_AXIS_RATIO_RANGE, n)
    pa_deg = rng.uniform(0.0, 180.0, n)
    return Neighbours(
        counts=counts,
        image_index=image_index,
        dx_arcsec=dx,
        dy_arcsec=dy,
        mag=mag,
        hlr_arcsec=hlr,
        sersic_n=sersic_n,
        axis_ratio=axis_ratio,
        pa_deg=pa_deg,
    )
