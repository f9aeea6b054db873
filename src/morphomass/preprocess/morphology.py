"""Classical (non-parametric and Sérsic) morphology of the central galaxy of one image (SPEC B1).

A fast, vectorised subset of statmorph (Rodriguez-Gomez et al. 2019, MNRAS 483, 4140) following its
definitions and default parameters, validated quantity by quantity against statmorph 0.7 in
tests/preprocess/test_preprocess_morphology.py. What differs, to stay within a few milliseconds per galaxy:

- apertures are anti-aliased with a linear pixel-overlap weight ``clip(r - d + 0.5, 0, 1)`` on binned
  distances instead of photutils' exact overlaps;
- the asymmetry centre is searched on a half-pixel grid (a 180-degree rotation about such a point is an exact
  pixel flip, no interpolation) by steepest descent, instead of a Nelder-Mead search over interpolated
  rotations;
- the background asymmetry and smoothness are the expectations for white Gaussian noise of the sky's
  standard deviation instead of measurements on a sky box;
- the Sérsic fit keeps the centre, axis ratio and orientation of the light's moments fixed and fits
  amplitude, half-light radius and index to the mean surface brightness in elliptical annuli weighted by
  their pixel counts (the least-squares problem of a 2-D fit with that geometry).

Segmentation: the image minus its sky level is smoothed with a Gaussian and thresholded at ``nsigma`` times
the sky noise; the 8-connected segment holding (or nearest to) the centre is the galaxy, every other segment
of at least ``min_pixels`` pixels is masked (neighbours, residual stars).

Features (:data:`MORPHOLOGY_FEATURES`):

- ``morph_axis_ratio`` b/a, ``morph_ellipticity`` 1 - b/a and ``morph_pa_deg`` (major axis, degrees
  counter-clockwise from the image's +x axis, in (-90, 90]) from the second moments of the segment's light;
- ``morph_concentration`` C = 5 log10(r80 / r20) (Bershady et al. 2000; Conselice 2003), radii of circles
  about the asymmetry centre holding 20 and 80 % of the flux within 1.5 circular Petrosian radii;
- ``morph_asymmetry`` A (Conselice et al. 2000; Lotz et al. 2004 eq. 10), minimised over the centre;
- ``morph_smoothness`` S (Conselice 2003; Lotz et al. 2004 eq. 11, without the factor 10);
- ``morph_gini`` G (Abraham et al. 2003; Lotz et al. 2004 eq. 6) and ``morph_m20`` M20 (Lotz et al. 2004
  eq. 7-8) on statmorph's Petrosian "Gini segmap";
- ``morph_sersic_n`` the Sérsic index;
- ``morph_hlr_pix`` / ``morph_hlr_kpc`` the semi-major axis of the ellipse (moments' axis ratio and
  orientation, asymmetry centre) holding half the flux within 2 elliptical Petrosian radii.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "MORPHOLOGY_FEATURES",
    "MorphologyResult",
    "compute_morphology",
    "estimate_sky",
    "segment_central",
    "sersic_b",
]

#: Feature columns written by :func:`compute_morphology`, in order.
MORPHOLOGY_FEATURES: tuple[str, ...] = (
    "morph_axis_ratio",
    "morph_ellipticity",
    "morph_pa_deg",
    "morph_concentration",
    "morph_asymmetry",
    "morph_smoothness",
    "morph_gini",
    "morph_m20",
    "morph_sersic_n",
    "morph_hlr_pix",
    "morph_hlr_kpc",
)

ETA = 0.2  #: Petrosian eta (Lotz et al. 2004 eq. 4; statmorph's default)
PETRO_EXTENT_CAS = 1.5  #: C, A, S apertures reach this many circular Petrosian radii
PETRO_FRACTION_CAS = 0.25  #: smoothing boxcar and inner radius of S, in circular Petrosian radii
PETRO_FRACTION_GINI = 0.2  #: Gaussian sigma of the Gini segmap, in elliptical Petrosian radii
PETRO_EXTENT_FLUX = 2.0  #: total flux for the half-light radius: within this many elliptical Petrosian radii
_DR = 0.05  #: bin width (pixels) of the binned distances
_HALF = 10  #: half a pixel, in bins
_SERSIC_N_RANGE = (0.2, 10.0)


@dataclass(frozen=True)
class MorphologyResult:
    """Morphology of one galaxy.

    Attributes
    ----------
    values : dict of str to float
        Keys :data:`MORPHOLOGY_FEATURES`; NaN for what could not be measured.
    reason : str
        Empty when every quantity was measured, else why some or all are NaN (``kind: detail``).
    asymmetry_center_xy : (float, float)
        The centre (x, y, pixels) minimising the asymmetry, about which C, S, Gini, M20, n and the half-light
        radius are measured; NaN when not found.
    """

    values: dict[str, float] = field(default_factory=lambda: dict.fromkeys(MORPHOLOGY_FEATURES, math.nan))
    reason: str = ""
    asymmetry_center_xy: tuple[float, float] = (math.nan, math.nan)


def sersic_b(n: float | np.ndarray) -> float | np.ndarray:
    """Return b_n with gamma(2n, b_n) = Gamma(2n) / 2, so that R_e holds half of the light."""
    from scipy.special import gammaincinv

    return gammaincinv(2.0 * np.asarray(n, dtype=np.float64), 0.5)


def estimate_sky(image: np.ndarray, valid: np.ndarray) -> tuple[float, float]:
    """Estimate the sky level and the per-pixel noise of an image.

    The noise is 1.4826 MAD / sqrt(2) of the differences of horizontally adjacent valid pixels (insensitive to
    smooth sources); the sky the median of the valid pixels within 3 noise of their median. Images over 200
    rows use every ``ny // 100``-th row.

    Parameters
    ----------
    image : (ny, nx) ndarray of float
    valid : (ny, nx) ndarray of bool
        Pixels to use.

    Returns
    -------
    sky : float
        Sky level, in the image's unit.
    sigma : float
        Noise standard deviation per pixel (0 for a noiseless image).
    """
    step = max(1, image.shape[0] // 100)  # every step-th row: ~100 rows are plenty for two medians
    rows, ok = image[::step], valid[::step]
    pairs = ok[:, 1:] & ok[:, :-1]
    diff = (rows[:, 1:] - rows[:, :-1])[pairs]
    sigma = 0.0
    if diff.size:
        sigma = float(1.4826 * np.median(np.abs(diff - np.median(diff))) / math.sqrt(2.0))
    pix = rows[ok] if ok.any() else image[valid]
    med = float(np.median(pix))
    if sigma > 0:
        near = pix[np.abs(pix - med) < 3.0 * sigma]
        med = float(np.median(near)) if near.size else med
    return med, sigma


def segment_central(
    data: np.ndarray,
    *,
    center_xy: tuple[float, float],
    sigma: float,
    nsigma: float = 1.0,
    smooth_sigma_pix: float = 1.0,
    min_pixels: int = 5,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Segment a sky-subtracted image and pick the central galaxy's segment.

    Parameters
    ----------
    data : (ny, nx) ndarray of float64
        Sky-subtracted image, finite (bad pixels set to 0).
    center_xy : (float, float)
        Expected centre (x, y) of the galaxy in 0-based pixels.
    sigma : float
        Per-pixel sky noise; the threshold is ``nsigma * sigma`` on the smoothed image (a noiseless image,
        ``sigma = 0``, is thresholded at 1e-4 of its maximum).
    nsigma : float
        Threshold in units of the unsmoothed noise.
    smooth_sigma_pix : float
        Gaussian smoothing before thresholding, pixels.
    min_pixels : int
        Segments smaller than this are neither the galaxy nor masked.

    Returns
    -------
    (segment, others) : tuple of (ny, nx) ndarray of bool, or None
        The central galaxy's pixels and the pixels of the other segments; None when no segment is within a
        quarter of the image size of the centre.
    """
    import cv2
    from scipy import ndimage

    smooth = cv2.GaussianBlur(
        data.astype(np.float32), (0, 0), smooth_sigma_pix, borderType=cv2.BORDER_REFLECT
    )
    threshold = nsigma * sigma if sigma > 0 else 1e-4 * float(np.max(data))
    labels, n_labels = ndimage.label(smooth > threshold, structure=np.ones((3, 3), dtype=bool))
    if n_labels == 0:
        return None
    sizes = np.bincount(labels.ravel())
    big = sizes >= min_pixels
    big[0] = False
    ny, nx = data.shape
    ix = min(max(int(round(center_xy[0])), 0), nx - 1)
    iy = min(max(int(round(center_xy[1])), 0), ny - 1)
    central = int(labels[iy, ix])
    if not big[central]:
        ys, xs = np.nonzero(big[labels])
        if xs.size == 0:
            return None
        d2 = (xs - center_xy[0]) ** 2 + (ys - center_xy[1]) ** 2
        k = int(np.argmin(d2))
        if d2[k] > (0.25 * max(nx, ny)) ** 2:
            return None
        central = int(labels[ys[k], xs[k]])
    segment = labels == central
    big[central] = False
    return segment, big[labels]


def _moments(
    data: np.ndarray, weight_mask: np.ndarray
) -> tuple[float, float, float, float, float, float] | None:
    """Return flux, centroid (x, y), covariance (xx, xy, yy) of ``data`` on ``weight_mask`` (None if <= 0)."""
    ys, xs = np.nonzero(weight_mask)
    values = data[ys, xs]
    flux = float(values.sum())
    if not flux > 0:
        return None
    xc = float(values @ xs) / flux
    yc = float(values @ ys) / flux
    dx, dy = xs - xc, ys - yc
    return (
        flux,
        xc,
        yc,
        float(values @ (dx * dx)) / flux,
        float(values @ (dx * dy)) / flux,
        float(values @ (dy * dy)) / flux,
    )


def _shape(xx: float, xy: float, yy: float) -> tuple[float, float]:
    """Axis ratio b/a and orientation (radians) of a covariance, regularised as SExtractor / statmorph."""
    rho = 1.0 / 12.0
    while abs(xx * yy - xy * xy) < rho * rho:
        xx += rho if xx >= 0 else -rho
        yy += rho if yy >= 0 else -rho
    eig = np.sort(np.abs(np.linalg.eigvalsh(np.array([[xx, xy], [xy, yy]]))))[::-1]
    return float(math.sqrt(eig[1] / eig[0])), 0.5 * math.atan2(2.0 * xy, xx - yy)


class _Profile:
    """Anti-aliased curves of growth (flux and area within radius r) about one centre.

    ``dist`` is the circular distance, or the elliptical semi-major-axis coordinate, of every pixel; a pixel
    counts inside radius r with weight ``clip(r - d + 0.5, 0, 1)``.
    """

    def __init__(self, dist: np.ndarray, flux: np.ndarray, valid: np.ndarray) -> None:
        idx = np.minimum((dist / _DR).astype(np.int64), 1 << 20).ravel()
        nbins = int(idx.max()) + 2 * _HALF + 2
        weights = flux.ravel()
        d = dist.ravel()
        cnt = valid.ravel().astype(np.float64)
        self.c_f = np.concatenate([[0.0], np.cumsum(np.bincount(idx, weights, nbins))])
        self.c_fd = np.concatenate([[0.0], np.cumsum(np.bincount(idx, weights * d, nbins))])
        self.c_a = np.concatenate([[0.0], np.cumsum(np.bincount(idx, cnt, nbins))])
        self.c_ad = np.concatenate([[0.0], np.cumsum(np.bincount(idx, cnt * d, nbins))])
        self.r_max = float(d.max())

    def _within(self, c: np.ndarray, cd: np.ndarray, r: np.ndarray) -> np.ndarray:
        r = np.asarray(r, dtype=np.float64)
        k = np.clip(np.round(r / _DR).astype(np.int64), 0, len(c) - 1)
        lo = np.clip(k - _HALF, 0, len(c) - 1)
        hi = np.clip(k + _HALF, 0, len(c) - 1)
        return c[lo] + (r + 0.5) * (c[hi] - c[lo]) - (cd[hi] - cd[lo])

    def flux(self, r: np.ndarray | float) -> np.ndarray:
        """Return the flux within radius ``r`` (pixels)."""
        return self._within(self.c_f, self.c_fd, np.maximum(r, 0.0))

    def area(self, r: np.ndarray | float) -> np.ndarray:
        """Return the valid area within radius ``r`` (pixels)."""
        return self._within(self.c_a, self.c_ad, np.maximum(r, 0.0))

    def petrosian_radius(self) -> float:
        """Return the first radius where annulus / inside mean surface brightness falls to ETA (NaN if none).

        The annulus is ``[r - 0.5, r + 0.5]`` (statmorph's ``annulus_width = 1``); mean fluxes in absolute
        value.
        """
        r = np.arange(1.0, max(self.r_max, 1.5), 0.25)
        a_in, a_out = self.area(r - 0.5), self.area(r + 0.5)
        f_in, f_out = self.flux(r - 0.5), self.flux(r + 0.5)
        with np.errstate(divide="ignore", invalid="ignore"):
            ann = np.abs((f_out - f_in) / (a_out - a_in))
            inside = np.abs(self.flux(r) / self.area(r))
            ratio = ann / inside - ETA
        below = np.flatnonzero(np.isfinite(ratio) & (ratio <= 0))
        if below.size == 0 or below[0] == 0:
            return math.nan if below.size == 0 else float(r[0])
        k = int(below[0])
        r0, r1, v0, v1 = r[k - 1], r[k], ratio[k - 1], ratio[k]
        return float(r0 + (r1 - r0) * v0 / (v0 - v1)) if v0 != v1 else float(r1)

    def radius_at_fraction(self, fraction: float, r_total: float) -> float:
        """Return the first radius whose enclosed flux reaches ``fraction`` of the flux within ``r_total``."""
        total = float(self.flux(r_total))
        if not total > 0:
            return math.nan
        r = np.arange(0.0, r_total + _DR, _DR)
        grow = self.flux(r) - fraction * total
        k = int(np.argmax(grow >= 0))
        if grow[k] < 0:
            return math.nan
        if k == 0:
            return 0.0
        return float(r[k - 1] + _DR * (-grow[k - 1]) / (grow[k] - grow[k - 1]))


def _distance(shape: tuple[int, int], xc: float, yc: float, q: float = 1.0, theta: float = 0.0) -> np.ndarray:
    """Return the circular (q = 1) or elliptical semi-major-axis distance of every pixel."""
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    dx, dy = xx - xc, yy - yc
    if q == 1.0:
        return np.sqrt(dx * dx + dy * dy)
    c, s = math.cos(theta), math.sin(theta)
    xp = dx * c + dy * s
    yp = -dx * s + dy * c
    return np.sqrt(xp * xp + (yp / q) ** 2)


def _asymmetry_at(
    clean: np.ndarray, valid: np.ndarray, sx: int, sy: int, radius: float, noise_abs: float
) -> float:
    """Noise-corrected asymmetry about ((sx / 2), (sy / 2)) within ``radius`` (Lotz et al. 2004 eq. 10)."""
    ny, nx = clean.shape
    cx, cy = 0.5 * sx, 0.5 * sy
    ylo = max(0, sy - (ny - 1), math.ceil(cy - radius - 0.5))
    yhi = min(ny, sy + 1, math.floor(cy + radius + 0.5) + 1)
    xlo = max(0, sx - (nx - 1), math.ceil(cx - radius - 0.5))
    xhi = min(nx, sx + 1, math.floor(cx + radius + 0.5) + 1)
    if yhi <= ylo or xhi <= xlo:
        return math.inf
    sub = clean[ylo:yhi, xlo:xhi]
    rot = clean[sy - yhi + 1 : sy - ylo + 1, sx - xhi + 1 : sx - xlo + 1][::-1, ::-1]
    ok = valid[ylo:yhi, xlo:xhi] & valid[sy - yhi + 1 : sy - ylo + 1, sx - xhi + 1 : sx - xlo + 1][::-1, ::-1]
    yy, xx = np.ogrid[ylo:yhi, xlo:xhi]
    w = np.clip(radius + 0.5 - np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2), 0.0, 1.0) * ok
    total = float((w * np.abs(sub)).sum())
    if not total > 0:
        return math.inf
    return (float((w * np.abs(sub - rot)).sum()) - noise_abs * float(w.sum())) / total


def _asymmetry(
    clean: np.ndarray, valid: np.ndarray, start_xy: tuple[float, float], radius: float, sigma: float
) -> tuple[float, float, float]:
    """Return the minimum asymmetry over half-pixel centres (descent from ``start_xy``) and its (x, y)."""
    noise_abs = 2.0 * sigma / math.sqrt(math.pi)  # E|n1 - n2| for two independent N(0, sigma^2) pixels
    ny, nx = clean.shape
    sx, sy = int(round(2 * start_xy[0])), int(round(2 * start_xy[1]))
    cache: dict[tuple[int, int], float] = {}

    def value(px: int, py: int) -> float:
        if (px, py) not in cache:
            inside = 0 <= px <= 2 * (nx - 1) and 0 <= py <= 2 * (ny - 1)
            cache[px, py] = _asymmetry_at(clean, valid, px, py, radius, noise_abs) if inside else math.inf
        return cache[px, py]

    best = value(sx, sy)
    limit = max(4, int(2 * PETRO_FRACTION_CAS * radius / PETRO_EXTENT_CAS) + 2)
    for _ in range(4 * limit):
        moves = [(sx + i, sy + j) for i in (-1, 0, 1) for j in (-1, 0, 1) if i or j]
        vals = [value(px, py) for px, py in moves]
        k = int(np.argmin(vals))
        if not vals[k] < best:
            break
        best = vals[k]
        sx, sy = moves[k]
    return best, 0.5 * sx, 0.5 * sy


def _smoothness(
    clean: np.ndarray, valid: np.ndarray, xc: float, yc: float, r_petro: float, sigma: float
) -> float:
    """Return the noise-corrected smoothness S in 0.25-1.5 circular Petrosian radii (Lotz+04 eq. 11)."""
    from scipy import ndimage

    box = int(PETRO_FRACTION_CAS * r_petro)
    r_in, r_out = PETRO_FRACTION_CAS * r_petro, PETRO_EXTENT_CAS * r_petro
    ny, nx = clean.shape
    pad = box + 2
    ylo, yhi = max(0, math.floor(yc - r_out) - pad), min(ny, math.ceil(yc + r_out) + pad + 1)
    xlo, xhi = max(0, math.floor(xc - r_out) - pad), min(nx, math.ceil(xc + r_out) + pad + 1)
    sub = clean[ylo:yhi, xlo:xhi]
    smooth = ndimage.uniform_filter(sub, size=max(box, 1))
    diff = np.maximum(sub - smooth, 0.0)
    yy, xx = np.ogrid[ylo:yhi, xlo:xhi]
    d = np.sqrt((xx - xc) ** 2 + (yy - yc) ** 2)
    w = (np.clip(r_out + 0.5 - d, 0.0, 1.0) - np.clip(r_in + 0.5 - d, 0.0, 1.0)) * valid[ylo:yhi, xlo:xhi]
    flux = float((w * sub).sum())
    if not flux > 0:
        return math.nan
    # E[max(n - boxmean(n), 0)] for white noise: n - boxmean has variance sigma^2 (1 - 1/box^2)
    sky = sigma * math.sqrt(max(1.0 - 1.0 / max(box, 1) ** 2, 0.0)) / math.sqrt(2.0 * math.pi)
    return (float((w * diff).sum()) - sky * float(w.sum())) / flux


def _gini_m20(clean: np.ndarray, dist: np.ndarray, r_petro_ellip: float) -> tuple[float, float]:
    """Return Gini and M20 on statmorph's Gini segmap (smoothed image above its mean at r_petro_ellip).

    ``dist`` is every pixel's elliptical distance from the asymmetry centre (:func:`_distance`).
    """
    import cv2
    from scipy import ndimage

    smooth = cv2.GaussianBlur(
        clean.astype(np.float32),
        (0, 0),
        max(PETRO_FRACTION_GINI * r_petro_ellip, 0.3),
        borderType=cv2.BORDER_CONSTANT,
    ).astype(np.float64)
    ring = _Profile(dist, smooth, np.ones(clean.shape, dtype=bool))
    a_in, a_out = r_petro_ellip - 0.5, r_petro_ellip + 0.5
    area = float(ring.area(a_out) - ring.area(a_in))
    if not area > 0:
        return math.nan, math.nan
    threshold = float(ring.flux(a_out) - ring.flux(a_in)) / area
    above = smooth >= threshold
    if not above.any() or above.all():
        return math.nan, math.nan
    labels, n_labels = ndimage.label(above, structure=np.ones((3, 3), dtype=bool))
    if n_labels > 1:
        iy, ix = np.unravel_index(int(np.argmax(smooth)), smooth.shape)
        above = labels == labels[iy, ix]
    ys, xs = np.nonzero(above)
    values = clean[ys, xs]
    absval = np.sort(np.abs(values))
    n = absval.size
    total = float(absval.sum())
    if n <= 1 or not total > 0:
        return math.nan, math.nan
    gini = float((2.0 * np.arange(1, n + 1) - n - 1) @ absval) / ((n - 1) * total)
    flux = float(values.sum())
    if not flux > 0:
        return gini, math.nan
    mx, my = float(values @ xs) / flux, float(values @ ys) / flux
    moment = values * ((xs - mx) ** 2 + (ys - my) ** 2)
    order = np.argsort(values)
    frac = np.cumsum(values[order]) / flux
    top = order[frac >= 0.8]
    if top.size == 0:
        return gini, math.nan
    threshold20 = values[top[0]]
    m_tot, m_20 = float(moment.sum()), float(moment[values >= threshold20].sum())
    m20 = math.log10(m_20 / m_tot) if m_tot > 0 and m_20 > 0 else math.nan
    return gini, m20


def _sersic_index(
    clean: np.ndarray, valid: np.ndarray, dist: np.ndarray, a_max: float, re_guess: float
) -> float:
    """Fit I_e exp(-b_n ((a / R_e)^(1/n) - 1)) to elliptical-annulus means; return n (NaN if failed).

    ``dist`` is every pixel's elliptical distance from the asymmetry centre (:func:`_distance`).
    """
    from scipy.optimize import least_squares

    use = valid & (dist <= a_max)
    a, flux = dist[use], clean[use]
    if a.size < 10:
        return math.nan
    edges = np.concatenate([np.arange(0.0, 4.0, 0.25), np.arange(4.0, a_max + 1.0, 1.0)])
    k = np.clip(np.searchsorted(edges, a, side="right") - 1, 0, len(edges) - 1)
    count = np.bincount(k, minlength=len(edges))
    keep = count > 0
    mean_a = np.bincount(k, a, len(edges))[keep] / count[keep]
    mean_f = np.bincount(k, flux, len(edges))[keep] / count[keep]
    weight = np.sqrt(count[keep].astype(np.float64))

    def residual(p: np.ndarray) -> np.ndarray:
        re, n = math.exp(p[0]), math.exp(p[1])
        shape = np.exp(-float(sersic_b(n)) * ((mean_a / re) ** (1.0 / n) - 1.0))
        ws = weight * shape
        amp = float(ws @ (weight * mean_f)) / max(float(ws @ ws), 1e-300)
        return weight * (mean_f - amp * shape)

    lo = [math.log(0.3), math.log(_SERSIC_N_RANGE[0])]
    hi = [math.log(max(10.0 * a_max, 1.0)), math.log(_SERSIC_N_RANGE[1])]
    start = np.clip([math.log(max(re_guess, 0.5)), math.log(2.0)], np.add(lo, 1e-6), np.subtract(hi, 1e-6))
    try:
        fit = least_squares(residual, start, bounds=(lo, hi), x_scale=1.0, xtol=1e-6, max_nfev=200)
    except (ValueError, FloatingPointError):
        return math.nan
    return float(math.exp(fit.x[1])) if fit.success else math.nan


def compute_morphology(
    image: np.ndarray,
    *,
    center_xy: tuple[float, float],
    pixel_kpc: float,
    nsigma: float = 1.0,
    smooth_sigma_pix: float = 1.0,
    min_pixels: int = 5,
) -> MorphologyResult:
    """Measure the classical morphology of the galaxy at ``center_xy``.

    Parameters
    ----------
    image : (ny, nx) ndarray of float
        Star-subtracted image before any scaling (any linear flux unit, e.g. nanomaggies per pixel); NaN/inf
        pixels are masked.
    center_xy : (float, float)
        Galaxy centre (x, y), 0-based pixels: its segment is the one holding (or nearest) it.
    pixel_kpc : float
        Pixel size in kpc (for ``morph_hlr_kpc``).
    nsigma, smooth_sigma_pix, min_pixels
        Segmentation (:func:`segment_central`).

    Returns
    -------
    MorphologyResult
        Values of :data:`MORPHOLOGY_FEATURES`, NaN where not measurable, and the reason (``""`` if all were
        measured). Never raises on bad data: ``not_2d``, ``no_finite_pixels``, ``constant_image``,
        ``no_segment``, ``nonpositive_flux``, ``no_petrosian_radius`` give all-NaN values;
        ``sersic_fit_failed``, ``gini_m20_failed`` or ``smoothness_failed`` only that quantity.
    """
    values = dict.fromkeys(MORPHOLOGY_FEATURES, math.nan)
    image = np.asarray(image)
    if image.ndim != 2 or min(image.shape) < 3:
        return MorphologyResult(values, f"not_2d: image of shape {image.shape}")
    valid = np.isfinite(image)
    if not valid.any():
        return MorphologyResult(values, "no_finite_pixels: every pixel is NaN or inf")
    data = np.where(valid, image, 0.0).astype(np.float64)
    pix = data[valid]
    if float(pix.max()) == float(pix.min()):
        return MorphologyResult(values, f"constant_image: every finite pixel is {float(pix[0])!r}")
    sky, sigma = estimate_sky(data, valid)
    data = np.where(valid, data - sky, 0.0)
    found = segment_central(
        data,
        center_xy=center_xy,
        sigma=sigma,
        nsigma=nsigma,
        smooth_sigma_pix=smooth_sigma_pix,
        min_pixels=min_pixels,
    )
    if found is None:
        return MorphologyResult(values, f"no_segment: nothing above {nsigma} sky sigma near the centre")
    segment, others = found
    valid &= ~others
    clean = np.where(valid, data, 0.0)
    mom = _moments(clean, segment & valid)
    if mom is None:
        return MorphologyResult(values, "nonpositive_flux: the central segment's flux is <= 0")
    _, xcen, ycen, cxx, cxy, cyy = mom
    q, theta = _shape(cxx, cxy, cyy)
    values["morph_axis_ratio"] = q
    values["morph_ellipticity"] = 1.0 - q
    pa = math.degrees(theta)
    values["morph_pa_deg"] = pa + 180.0 if pa <= -90.0 else pa

    dist = _distance(clean.shape, xcen, ycen)
    r_petro0 = _Profile(dist, clean, valid).petrosian_radius()
    if not math.isfinite(r_petro0):
        return MorphologyResult(values, "no_petrosian_radius: the profile never falls to eta = 0.2")
    asym, xa, ya = _asymmetry(clean, valid, (xcen, ycen), PETRO_EXTENT_CAS * r_petro0, sigma)
    values["morph_asymmetry"] = asym if math.isfinite(asym) else math.nan

    reasons = []
    dist = _distance(clean.shape, xa, ya)
    circ = _Profile(dist, clean, valid)
    r_petro = circ.petrosian_radius()
    if not math.isfinite(r_petro):
        r_petro = r_petro0
    r_total = PETRO_EXTENT_CAS * r_petro
    r20, r80 = circ.radius_at_fraction(0.2, r_total), circ.radius_at_fraction(0.8, r_total)
    if r20 > 0 and r80 > 0:
        values["morph_concentration"] = 5.0 * math.log10(r80 / r20)
    values["morph_smoothness"] = _smoothness(clean, valid, xa, ya, r_petro, sigma)
    if not math.isfinite(values["morph_smoothness"]):
        reasons.append("smoothness_failed: nonpositive flux in the annulus")

    dist_e = _distance(clean.shape, xa, ya, q, theta)
    ellip = _Profile(dist_e, clean, valid)
    r_petro_e = ellip.petrosian_radius()
    if math.isfinite(r_petro_e):
        hlr = ellip.radius_at_fraction(0.5, PETRO_EXTENT_FLUX * r_petro_e)
        values["morph_hlr_pix"] = hlr
        values["morph_hlr_kpc"] = hlr * float(pixel_kpc)
        gini, m20 = _gini_m20(clean, dist_e, r_petro_e)
        values["morph_gini"], values["morph_m20"] = gini, m20
        if not (math.isfinite(gini) and math.isfinite(m20)):
            reasons.append("gini_m20_failed: empty, full or nonpositive Gini segmap")
        n = _sersic_index(clean, valid, dist_e, 1.5 * PETRO_EXTENT_FLUX * r_petro_e, hlr)
        values["morph_sersic_n"] = n
        if not math.isfinite(n):
            reasons.append("sersic_fit_failed: the Sérsic fit did not converge")
    else:
        reasons.append("no_elliptical_petrosian_radius: Gini, M20, Sérsic n and hlr not measured")
    return MorphologyResult(values, "; ".join(reasons), (xa, ya))
