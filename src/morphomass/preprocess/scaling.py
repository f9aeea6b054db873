"""Automatic log scaling of galaxy images (SPEC I2-I3, Dobbels+19 §2.2 and Eq. 1).

An image is rescaled linearly to [0, 1]; its noise level ``n`` is the mean plus two standard deviations of the
sigma-clipped [0, 1] image; the scaling value ``a`` solves ``log(1 + a n) / log(1 + a) = target`` (0.2 in the
paper) and the image becomes ``F' = log(1 + a F) / log(1 + a)``. Bright, clean images get a large ``a`` (their
faint outskirts are boosted); noisy images a small one (their noise is not boosted into fake structure).

Edge cases are explicit: a noise level at or above the target has no positive solution and gets ``a = 0``, the
linear limit (``F' = F``); a noise level of zero or less (more than half the pixels at the minimum) gets the
cap ``a_max``; a constant image rescales to zeros. No function here returns NaN for finite input.
"""

from __future__ import annotations

import math

import numpy as np

from morphomass.errors import InputDataError

__all__ = [
    "DEFAULT_A_MAX",
    "SMALLEST_A",
    "compute_noise_level",
    "log_scale",
    "rescale_linear",
    "sigma_clipped_mean_std",
    "solve_scaling_a",
]

#: Cap on the scaling value (reached only when the noise level is ~1e-10 of the image range or zero).
DEFAULT_A_MAX = 1e12
#: Smallest scaling value the root finder brackets; below it Eq. 1 is linear to float64 precision.
SMALLEST_A = 1e-9


def sigma_clipped_mean_std(
    values: np.ndarray, *, sigma: float = 3.0, maxiters: int = 5
) -> tuple[float, float]:
    """Mean and standard deviation of iteratively sigma-clipped values.

    The same algorithm as :func:`astropy.stats.sigma_clipped_stats` with its defaults (``cenfunc="median"``,
    ``stdfunc="std"``, symmetric bounds, values equal to a bound kept, at most ``maxiters`` iterations, stop
    when nothing more is clipped), computed with one histogram pass instead of a median per iteration: each
    order statistic and each partial sum is read off cumulative bin counts and sums, and only the values in
    the one or two bins that hold a bound or the median are touched again. The result equals astropy's to
    float64 rounding.

    Parameters
    ----------
    values : ndarray of float, any shape
        Finite values (flattened).
    sigma : float
        Clipping threshold in standard deviations around the median; > 0.
    maxiters : int
        Maximum number of clipping iterations; >= 1.

    Returns
    -------
    mean, std : float
        Of the values kept (std with ``ddof=0``).

    Raises
    ------
    InputDataError
        If ``values`` is empty or holds a non-finite value.
    """
    flat = np.asarray(values).ravel()
    if flat.size == 0:
        msg = "sigma_clipped_mean_std: values is empty; expected at least one finite value"
        raise InputDataError(msg)
    if not np.isfinite(flat).all():
        n_bad = int(np.count_nonzero(~np.isfinite(flat)))
        msg = f"sigma_clipped_mean_std: values holds {n_bad} non-finite entries; expected finite values only"
        raise InputDataError(msg)
    return _HistogramClipper(flat.astype(np.float64, copy=False)).clip(sigma=sigma, maxiters=maxiters)


class _HistogramClipper:
    """Exact order statistics and sums of value ranges of a fixed array, from one binning pass.

    Values are binned on a linear grid spanning a robust estimate of the bulk (so the noise is resolved even
    when a bright nucleus sets the maximum) with one overflow bin at each end. A query reads the whole bins
    from cumulative arrays and settles the one partial bin exactly from its own values.
    """

    _N_BINS = 1024

    def __init__(self, values: np.ndarray) -> None:
        self.values = values
        sample = values[:: max(1, values.size // 4096)]
        centre = float(np.median(sample))
        spread = 1.4826 * float(np.median(np.abs(sample - centre)))
        if not spread > 0:
            spread = float(np.std(values)) or max(abs(centre), 1.0) * 1e-6
        self.lo_edge = centre - 8.0 * spread
        self.inv_width = self._N_BINS / (16.0 * spread)
        # bin 0: below the grid; bins 1..N: the grid; bin N + 1: above it (truncation is floor once clipped >=
        # 0)
        position = (values - self.lo_edge) * self.inv_width + 1.0
        np.clip(position, 0.0, self._N_BINS + 1.0, out=position)
        self.index = position.astype(np.intp)
        n_bins = self._N_BINS + 2
        self.cum_count = np.concatenate(([0], np.cumsum(np.bincount(self.index, minlength=n_bins))))
        shifted = values - centre
        self.centre = centre
        self.cum_sum = np.concatenate(([0.0], np.cumsum(np.bincount(self.index, shifted, minlength=n_bins))))
        self.cum_sq = np.concatenate(
            ([0.0], np.cumsum(np.bincount(self.index, shifted * shifted, minlength=n_bins)))
        )
        self._members: dict[int, np.ndarray] = {}

    def _bin_of(self, value: float) -> int:
        position = (value - self.lo_edge) * self.inv_width + 1.0
        return int(min(max(position, 0.0), self._N_BINS + 1.0))

    def _sorted_members(self, b: int) -> np.ndarray:
        if b not in self._members:
            self._members[b] = np.sort(self.values[self.index == b])
        return self._members[b]

    def _rank(self, value: float, *, right: bool) -> int:
        """Return the number of values < ``value`` (or <= ``value`` when ``right``)."""
        b = self._bin_of(value)
        inside = np.searchsorted(self._sorted_members(b), value, side="right" if right else "left")
        return int(self.cum_count[b] + inside)

    def _order_stat(self, k: int) -> float:
        """Return the k-th smallest value (0-based)."""
        b = int(np.searchsorted(self.cum_count, k, side="right")) - 1
        return float(self._sorted_members(b)[k - self.cum_count[b]])

    def _sums(self, rank: int) -> tuple[float, float]:
        """Sum and sum of squares (about ``centre``) of the ``rank`` smallest values."""
        if rank == 0:
            return 0.0, 0.0
        b = int(np.searchsorted(self.cum_count, rank, side="left")) - 1
        part = self._sorted_members(b)[: rank - self.cum_count[b]] - self.centre
        return float(self.cum_sum[b] + part.sum()), float(self.cum_sq[b] + (part * part).sum())

    def _mean_std(self, i0: int, i1: int) -> tuple[float, float]:
        s0, q0 = self._sums(i0)
        s1, q1 = self._sums(i1)
        n = i1 - i0
        mean = (s1 - s0) / n
        return mean + self.centre, math.sqrt(max((q1 - q0) / n - mean * mean, 0.0))

    def clip(self, *, sigma: float, maxiters: int) -> tuple[float, float]:
        i0, i1 = 0, self.values.size
        for _ in range(maxiters):
            n = i1 - i0
            half = n // 2
            if n % 2:
                median = self._order_stat(i0 + half)
            else:
                median = 0.5 * (self._order_stat(i0 + half - 1) + self._order_stat(i0 + half))
            std = self._mean_std(i0, i1)[1]
            j0 = max(self._rank(median - sigma * std, right=False), i0)
            j1 = min(self._rank(median + sigma * std, right=True), i1)
            if (j0, j1) == (i0, i1) or j1 <= j0:
                break
            i0, i1 = j0, j1
        return self._mean_std(i0, i1)


def rescale_linear(image: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Rescale an image linearly to [0, 1] (SPEC I2).

    Parameters
    ----------
    image : (ny, nx) ndarray of float
        Finite pixel values (any unit).

    Returns
    -------
    scaled : (ny, nx) ndarray of float32
        ``(image - lo) / (hi - lo)``; all zeros for a constant image.
    lo, hi : float
        Minimum and maximum of ``image`` (same unit as ``image``).
    """
    lo = float(np.min(image))
    hi = float(np.max(image))
    if not hi > lo:
        return np.zeros(image.shape, dtype=np.float32), lo, hi
    scaled = (np.asarray(image, dtype=np.float32) - np.float32(lo)) * np.float32(1.0 / (hi - lo))
    np.clip(scaled, 0.0, 1.0, out=scaled)
    return scaled, lo, hi


def compute_noise_level(
    image01: np.ndarray, *, sigma: float = 3.0, maxiters: int = 5, n_std: float = 2.0
) -> float:
    """Noise level of a [0, 1] image: mean + ``n_std`` standard deviations of its sigma-clipped pixels.

    SPEC I3.

    Parameters
    ----------
    image01 : (ny, nx) ndarray of float
        Image rescaled to [0, 1], finite.
    sigma, maxiters : float, int
        Sigma clipping (see :func:`sigma_clipped_mean_std`).
    n_std : float
        Standard deviations above the mean (2 in the paper).

    Returns
    -------
    float
        Noise level in the image's [0, 1] units.
    """
    mean, std = sigma_clipped_mean_std(image01, sigma=sigma, maxiters=maxiters)
    return mean + n_std * std


def _scaled_level(a: float, noise_level: float) -> float:
    return math.log1p(a * noise_level) / math.log1p(a)


def solve_scaling_a(noise_level: float, *, target: float = 0.2, a_max: float = DEFAULT_A_MAX) -> float:
    """Scaling value ``a`` with ``log(1 + a n) / log(1 + a) = target`` (SPEC I3).

    For ``0 < n < 1`` the left side grows monotonically from ``n`` (``a -> 0``) to 1 (``a -> inf``), so a
    solution exists exactly when ``n < target``; it is found with Brent's method on ``log a``.

    Parameters
    ----------
    noise_level : float
        ``n``, in [0, 1] image units.
    target : float
        Scaled noise level wanted, in (0, 1).
    a_max : float
        Cap on ``a``; returned when ``n <= 0`` or when the solution lies above it.

    Returns
    -------
    float
        ``a`` >= 0, finite. 0 means the linear limit (returned when ``n >= target``: no positive solution).

    Raises
    ------
    InputDataError
        If ``noise_level`` is not finite, or ``target`` is not in (0, 1).
    """
    if not math.isfinite(noise_level):
        msg = f"solve_scaling_a: noise_level must be finite, got {noise_level!r}"
        raise InputDataError(msg)
    if not 0.0 < target < 1.0:
        msg = f"solve_scaling_a: target must be in (0, 1), got {target!r}"
        raise InputDataError(msg)
    if noise_level >= target or _scaled_level(SMALLEST_A, noise_level) >= target:
        return 0.0
    if noise_level <= 0.0 or _scaled_level(a_max, noise_level) <= target:
        return float(a_max)
    from scipy.optimize import brentq

    log_a = brentq(
        lambda t: _scaled_level(math.exp(t), noise_level) - target,
        math.log(SMALLEST_A),
        math.log(a_max),
        xtol=1e-12,
        rtol=1e-12,
    )
    return math.exp(log_a)


def log_scale(image01: np.ndarray, a: float) -> np.ndarray:
    """Apply Eq. 1 of the paper: ``F' = log(1 + a F) / log(1 + a)`` (the identity for ``a = 0``).

    Parameters
    ----------
    image01 : (ny, nx) ndarray of float
        Image in [0, 1].
    a : float
        Scaling value, >= 0 and finite.

    Returns
    -------
    (ny, nx) ndarray of float32
        In [0, 1].

    Raises
    ------
    InputDataError
        If ``a`` is negative or not finite.
    """
    if not (math.isfinite(a) and a >= 0.0):
        msg = f"log_scale: a must be finite and >= 0, got {a!r}"
        raise InputDataError(msg)
    out = np.asarray(image01, dtype=np.float32).copy()
    if a == 0.0:
        return out
    np.multiply(out, np.float32(a), out=out)
    np.log1p(out, out=out)
    np.multiply(out, np.float32(1.0 / math.log1p(a)), out=out)
    np.clip(out, 0.0, 1.0, out=out)
    return out
