"""Star subtraction guided by a point-source catalogue (SPEC D5; Dobbels+19 §2.2, after PTS).

Each catalogued star that falls on the image is a *prior*. Near it (within ``search_radius_pix``) we look for
a peak that looks like a point source: the brightest pixel of the search disc must be a local maximum (not a
slope that keeps rising beyond the disc, as on a galaxy's flank), stand ``detection_sigma`` noise sigmas above
the local level (median of the outer rings of its radial profile) and be compact (FWHM from the radial profile
below ``max_fwhm_pix``). Its sub-pixel centre comes from a 2-D quadratic fit
(:func:`photutils.centroids.centroid_quadratic`). Its pixels are replaced out to twice the radius at which a
Moffat (beta = 3) of its amplitude and FWHM falls to one noise sigma, by the local background: a bivariate
cubic polynomial (``sum_{i+j<=3} c_ij x^i y^j``) fitted by least squares, with iterative 3-sigma clipping, to
a wide annulus around the star (planar when the image edge cuts the annulus), plus, when an ``rng`` is given,
Gaussian noise with the annulus residual scatter, so that the patch looks like the sky around it.

A prior closer to the galaxy centre than ``nucleus_exclusion_pix`` is never touched (a bright compact nucleus
would otherwise pass for a star), nor is a peak found there; both are skipped and logged.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass

import numpy as np

from morphomass.errors import InputDataError

__all__ = ["StarSubtraction", "subtract_stars"]

logger = logging.getLogger(__name__)

_MAD_TO_STD = 1.4826
#: Moffat index of the point-spread function assumed for a star's extent (SDSS: 2.5-3.5).
_MOFFAT_BETA = 3.0


@dataclass(frozen=True)
class StarSubtraction:
    """Result of :func:`subtract_stars`.

    Attributes
    ----------
    image : (ny, nx) ndarray of float32
        The image with the stars replaced by the local background (same unit as the input); when no prior
        falls on the image, the input as float32 (the input array itself if it is float32).
    mask : (ny, nx) ndarray of bool
        True where a pixel was replaced.
    positions_xy : (n_subtracted, 2) ndarray of float64
        Sub-pixel centres (x, y; 0-based pixels) of the stars that were subtracted.
    radii_pix : (n_subtracted,) ndarray of float64
        Radius of each replaced disc, in pixels.
    n_rejected : int
        Priors on the image with no point-like peak near them (left untouched).
    n_nucleus : int
        Priors skipped because they lie within the nucleus exclusion radius of the galaxy centre.
    """

    image: np.ndarray
    mask: np.ndarray
    positions_xy: np.ndarray
    radii_pix: np.ndarray
    n_rejected: int
    n_nucleus: int


def subtract_stars(
    image: np.ndarray,
    stars_xy: np.ndarray,
    *,
    center_xy: tuple[float, float],
    search_radius_pix: float = 3.0,
    nucleus_exclusion_pix: float = 7.5,
    detection_sigma: float = 5.0,
    max_fwhm_pix: float = 8.0,
    max_radius_pix: float = 30.0,
    annulus_width_pix: float = 4.0,
    noise_std: float | None = None,
    rng: np.random.Generator | None = None,
) -> StarSubtraction:
    """Find the catalogued stars on an image and replace them by the local background.

    Parameters
    ----------
    image : (ny, nx) ndarray of float
        Finite pixel values (e.g. nanomaggies per pixel); not modified.
    stars_xy : (n_stars, 2) ndarray of float
        Catalogue positions (x, y) in 0-based pixel coordinates; priors off the image are ignored.
    center_xy : (float, float)
        Galaxy centre (x, y) in pixels.
    search_radius_pix : float
        The star's peak must lie within this distance of its prior, in pixels; > 0.
    nucleus_exclusion_pix : float
        Priors (and peaks) closer than this to ``center_xy`` are skipped, in pixels; >= 0.
    detection_sigma : float
        The peak must exceed the local background by this many noise standard deviations; > 0.
    max_fwhm_pix : float
        Peaks broader than this (FWHM from the radial profile, pixels) are not point sources; > 0.
    max_radius_pix : float
        Largest radius of a replaced disc, in pixels (a star is replaced out to twice the radius where its
        profile reaches the noise, up to this); > 0.
    annulus_width_pix : float
        Least width of the annulus that the background surface is fitted to (it is at least as wide as the
        replaced disc's radius), in pixels; >= 2.
    noise_std : float, optional
        Background noise per pixel, in the image's unit; estimated robustly (MAD of a pixel subsample) if
        omitted.
    rng : numpy.random.Generator, optional
        When given, noise with the annulus residual scatter is added to the replaced pixels.

    Returns
    -------
    StarSubtraction

    Raises
    ------
    InputDataError
        If ``image`` is not a finite 2-D array, ``stars_xy`` is not (n, 2), or an option is out of range.
    """
    data = np.asarray(image, dtype=np.float32)
    if data.ndim != 2 or data.size == 0:
        msg = f"subtract_stars: image must be a non-empty 2-D array, got shape {data.shape}"
        raise InputDataError(msg)
    if not np.isfinite(data).all():
        msg = "subtract_stars: image holds non-finite pixels; fill them first"
        raise InputDataError(msg)
    priors = np.asarray(stars_xy, dtype=np.float64)
    if priors.size == 0:
        priors = np.empty((0, 2))
    elif priors.ndim != 2 or priors.shape[1] != 2:
        msg = f"subtract_stars: stars_xy must have shape (n, 2), got {priors.shape}"
        raise InputDataError(msg)
    for name, value in (
        ("search_radius_pix", search_radius_pix),
        ("detection_sigma", detection_sigma),
        ("max_fwhm_pix", max_fwhm_pix),
        ("max_radius_pix", max_radius_pix),
    ):
        if not value > 0:
            msg = f"subtract_stars: {name} must be > 0, got {value!r}"
            raise InputDataError(msg)
    if not nucleus_exclusion_pix >= 0:
        msg = f"subtract_stars: nucleus_exclusion_pix must be >= 0, got {nucleus_exclusion_pix!r}"
        raise InputDataError(msg)
    if not annulus_width_pix >= 2:
        msg = f"subtract_stars: annulus_width_pix must be >= 2, got {annulus_width_pix!r}"
        raise InputDataError(msg)

    ny, nx = data.shape
    x, y = priors[:, 0], priors[:, 1]
    priors = priors[(x >= -0.5) & (x < nx - 0.5) & (y >= -0.5) & (y < ny - 0.5)]
    mask = np.zeros(data.shape, dtype=bool)
    if len(priors) == 0:
        return StarSubtraction(data, mask, np.empty((0, 2)), np.empty(0), 0, 0)
    cleaned = data.copy()
    found_xy: list[tuple[float, float]] = []
    radii: list[float] = []
    n_rejected = n_nucleus = 0
    if noise_std is None:
        noise_std = _robust_std(data)
    for x0, y0 in priors:
        if math.hypot(x0 - center_xy[0], y0 - center_xy[1]) < nucleus_exclusion_pix:
            logger.info(
                "star prior at (%.1f, %.1f) lies within %.1f px of the galaxy centre: skipped (nucleus)",
                x0,
                y0,
                nucleus_exclusion_pix,
            )
            n_nucleus += 1
            continue
        star = _find_point_source(
            cleaned,
            x0,
            y0,
            noise_std=float(noise_std),
            search_radius_pix=search_radius_pix,
            detection_sigma=detection_sigma,
            max_fwhm_pix=max_fwhm_pix,
            max_radius_pix=max_radius_pix,
        )
        if star is None:
            logger.debug(
                "star prior at (%.1f, %.1f): no point-like peak within %.1f px", x0, y0, search_radius_pix
            )
            n_rejected += 1
            continue
        xc, yc, radius = star
        if math.hypot(xc - center_xy[0], yc - center_xy[1]) < nucleus_exclusion_pix:
            logger.info("star peak at (%.1f, %.1f) is the galaxy nucleus: skipped", xc, yc)
            n_nucleus += 1
            continue
        _replace_disc(cleaned, mask, xc, yc, radius, annulus_width_pix=annulus_width_pix, rng=rng)
        found_xy.append((xc, yc))
        radii.append(radius)
    return StarSubtraction(
        image=cleaned,
        mask=mask,
        positions_xy=np.array(found_xy, dtype=np.float64).reshape(-1, 2),
        radii_pix=np.array(radii, dtype=np.float64),
        n_rejected=n_rejected,
        n_nucleus=n_nucleus,
    )


def _robust_std(image: np.ndarray) -> float:
    """Background noise: 1.4826 x MAD of a subsample of about 10 000 pixels (at least 1e-30)."""
    sample = image.ravel()[:: max(1, image.size // 10_000)]
    return max(_MAD_TO_STD * float(np.median(np.abs(sample - np.median(sample)))), 1e-30)


def _box(x: float, y: float, half: int, shape: tuple[int, int]) -> tuple[slice, slice, int, int]:
    """Slices of the box of half-size ``half`` around pixel (round(x), round(y)), clipped to the image."""
    ix, iy = int(round(x)), int(round(y))
    x0, x1 = max(ix - half, 0), min(ix + half + 1, shape[1])
    y0, y1 = max(iy - half, 0), min(iy + half + 1, shape[0])
    return slice(y0, y1), slice(x0, x1), x0, y0


def _find_point_source(
    image: np.ndarray,
    x0: float,
    y0: float,
    *,
    noise_std: float,
    search_radius_pix: float,
    detection_sigma: float,
    max_fwhm_pix: float,
    max_radius_pix: float,
) -> tuple[float, float, float] | None:
    """Return (x, y, replacement radius) of a point-like peak near the prior, or None."""
    from photutils.centroids import centroid_quadratic

    # 1. the brightest pixel within the search disc must be a local maximum
    half = int(math.ceil(search_radius_pix)) + 1
    sy, sx, bx, by = _box(x0, y0, half, image.shape)
    cut = image[sy, sx]
    yy, xx = np.mgrid[sy, sx]
    inside = (xx - x0) ** 2 + (yy - y0) ** 2 <= search_radius_pix**2
    if not inside.any():
        return None
    py, px = np.unravel_index(np.where(inside, cut, -np.inf).argmax(), cut.shape)
    px, py = int(px) + bx, int(py) + by
    peak = float(image[py, px])
    ring_y, ring_x = _box(px, py, 1, image.shape)[:2]
    if peak < float(image[ring_y, ring_x].max()):
        return None  # a neighbour outside the disc is brighter: a slope (e.g. a galaxy's flank), not a peak

    # 2. radial profile (ring medians); its rings beyond 1.5 x max_fwhm give the local level
    outer = max(int(1.5 * max_fwhm_pix), 3)
    profile = _radial_profile(image, px, py, max(int(math.ceil(2.0 * max_fwhm_pix)), outer) + 4)
    background = float(np.median(profile[outer:]))
    amplitude = peak - background
    if not amplitude > detection_sigma * noise_std:
        return None

    # 3. compactness: the profile falls below half the amplitude within max_fwhm / 2
    below_half = np.nonzero(profile - background < 0.5 * amplitude)[0]
    if below_half.size == 0:
        return None
    fwhm = 2.0 * _crossing(profile - background, int(below_half[0]), 0.5 * amplitude)
    if fwhm > max_fwhm_pix:
        return None

    # 4. sub-pixel centre (quadratic fit on the 5x5 box around the peak)
    xc, yc = float(px), float(py)
    qy, qx, qbx, qby = _box(px, py, 2, image.shape)
    if image[qy, qx].shape == (5, 5):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a fit maximum off the box: keep the peak pixel
            cx, cy = centroid_quadratic(image[qy, qx] - background, fit_boxsize=5)
        if math.hypot(qbx + cx - px, qby + cy - py) <= 1.0:
            xc, yc = float(qbx + cx), float(qby + cy)

    # 5. extent: where a Moffat (beta = 3) of this amplitude and FWHM sinks to one noise sigma, with a margin
    alpha = fwhm / (2.0 * math.sqrt(2.0 ** (1.0 / _MOFFAT_BETA) - 1.0))
    edge = alpha * math.sqrt(max((amplitude / noise_std) ** (1.0 / _MOFFAT_BETA) - 1.0, 0.0))
    radius = min(max(2.0 * edge + 1.0, 1.5 * fwhm, 2.0), max_radius_pix)
    return xc, yc, radius


def _radial_profile(image: np.ndarray, px: int, py: int, n_rings: int) -> np.ndarray:
    """Median of the pixels in rings [k - 0.5, k + 0.5) around pixel (px, py), k = 0..n_rings-1.

    Rings that fall entirely off the image repeat the last ring that has pixels.
    """
    sy, sx, _, _ = _box(px, py, n_rings, image.shape)
    yy, xx = np.mgrid[sy, sx]
    ring = np.rint(np.hypot(xx - px, yy - py)).astype(np.intp).ravel()
    values = image[sy, sx].ravel()
    inside = ring < n_rings
    ring, values = ring[inside], values[inside]
    order = np.lexsort((values, ring))
    values = values[order]
    counts = np.bincount(ring, minlength=n_rings)
    starts = np.cumsum(counts) - counts
    has = counts > 0
    low = values[(starts + (counts - 1) // 2)[has]].astype(np.float64)
    high = values[(starts + counts // 2)[has]].astype(np.float64)
    # forward-fill empty rings with the last ring that has pixels (ring 0 is the pixel (px, py) itself)
    filled = np.maximum.accumulate(np.where(has, np.arange(n_rings), 0))
    medians = np.empty(n_rings)
    medians[has] = 0.5 * (low + high)
    return medians[filled]


def _crossing(profile: np.ndarray, k: int, level: float) -> float:
    """Radius where the profile falls through ``level`` between ring k-1 and ring k (linear interpolation)."""
    if k == 0:
        return 0.5
    hi, lo = profile[k - 1], profile[k]
    return (k - 1) + (hi - level) / (hi - lo) if hi > lo else float(k)


def _surface_design(x: np.ndarray, y: np.ndarray, degree: int) -> np.ndarray:
    """Design matrix of a bivariate polynomial: columns x^i y^j for i + j <= degree."""
    columns = [x**i * y**j for i in range(degree + 1) for j in range(degree + 1 - i)]
    return np.stack(columns, axis=1)


def _least_squares(design: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Least-squares coefficients through the normal equations (SVD when they are singular)."""
    try:
        return np.linalg.solve(design.T @ design, design.T @ values)
    except np.linalg.LinAlgError:
        return np.linalg.lstsq(design, values, rcond=None)[0]


def _replace_disc(
    image: np.ndarray,
    mask: np.ndarray,
    xc: float,
    yc: float,
    radius: float,
    *,
    annulus_width_pix: float,
    rng: np.random.Generator | None,
) -> None:
    """Replace the pixels within ``radius`` of (xc, yc) by a surface fitted to the surrounding annulus.

    In place.

    The annulus reaches from ``radius`` to ``radius + max(annulus_width_pix, radius)``: a wide annulus pins
    the surface down in the middle of the hole. The surface is cubic when the annulus lies mostly on the
    image; when the image edge cuts away more than a third of it, planar, which does not swing off where
    nothing constrains it.
    """
    outer = radius + max(annulus_width_pix, radius)
    sy, sx, _, _ = _box(xc, yc, int(math.ceil(outer)), image.shape)
    yy, xx = np.mgrid[sy, sx]
    r = np.hypot(xx - xc, yy - yc)
    disc = r <= radius
    ring = (r > radius) & (r <= outer)
    annulus = ring & ~mask[sy, sx]  # pixels of stars replaced before are not data
    if annulus.sum() < 32:
        annulus = ring
    degree = 3 if annulus.sum() >= (2.0 / 3.0) * math.pi * (outer**2 - radius**2) else 1
    u, v = (xx - xc) / outer, (yy - yc) / outer
    design = _surface_design(u[annulus], v[annulus], degree)
    values = image[sy, sx][annulus].astype(np.float64)
    keep = np.ones(values.size, dtype=bool)
    for _ in range(3):  # iterative 3-sigma clipping of other sources in the annulus
        coef = _least_squares(design[keep], values[keep])
        residual = values - design @ coef
        scatter = _MAD_TO_STD * float(np.median(np.abs(residual[keep] - np.median(residual[keep]))))
        new_keep = np.abs(residual) <= 3.0 * max(scatter, 1e-30)
        if new_keep.sum() < 2 * design.shape[1] or (new_keep == keep).all():
            break
        keep = new_keep
    fill = _surface_design(u[disc], v[disc], degree) @ coef
    if rng is not None and scatter > 0:
        fill = fill + rng.normal(0.0, scatter, fill.size)
    patch = image[sy, sx]
    patch[disc] = fill.astype(np.float32)
    mask[sy, sx] |= disc
