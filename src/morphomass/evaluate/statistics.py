"""Significance of one model over another (SPEC E8, B2), bootstrap intervals of every metric, the E9 classes.

* One-sided two-sample Kolmogorov-Smirnov test on per-galaxy L1~: the null hypothesis is that model A's L1~ is
  not stochastically smaller than model B's.
* Bootstrap of the mean L1~: ``n_resamples`` resamples with replacement, drawn in chunks of bounded memory.
* Paired bootstrap p-value (B2): both models scored on the same resampled galaxies; a comparison is
  *resolved* when it is below :data:`RESOLVED_PVALUE`.
* Standard errors and 95 % intervals of every metric (B2): one matrix of resample counts
  (:func:`draw_bootstrap_counts`) shared by every experiment, so that all of them are scored on the same
  resampled galaxies; :func:`bootstrap_metrics` evaluates M1-M5 on every resample at once (matrix products and
  a weighted median, no Python loop over resamples) and :func:`summarize_bootstrap` turns the distributions
  into a standard error and a percentile interval.
* Morphology classes from CNN1's probabilities, in the paper's order of precedence: irregular, edge-on,
  feature/disk, elliptical.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

from morphomass.errors import InputDataError
from morphomass.evaluate.metrics import DEX_THRESHOLD, dex_error, l1_tilde_per_galaxy

__all__ = [
    "MORPHOLOGY_CLASSES",
    "NOT_RESOLVED",
    "RESOLVED",
    "RESOLVED_PVALUE",
    "assign_classes",
    "bootstrap_means",
    "bootstrap_metrics",
    "draw_bootstrap_counts",
    "is_resolved",
    "ks_one_sided_pvalue",
    "paired_bootstrap_pvalue",
    "summarize_bootstrap",
    "verdict",
]

#: Class names of E9, as the keys of ``per_class`` in results/metrics.json.
MORPHOLOGY_CLASSES: tuple[str, ...] = ("irregular", "edge_on", "disk", "elliptical")
#: A comparison is resolved when its one-sided paired bootstrap p-value is below this.
RESOLVED_PVALUE = 0.01
#: The verdicts of :func:`verdict`.
RESOLVED = "resolved"
NOT_RESOLVED = "not resolved at this sample size"


def ks_one_sided_pvalue(l1_a: ArrayLike, l1_b: ArrayLike) -> float:
    """p-value of the one-sided two-sample KS test that A's per-galaxy L1~ is smaller than B's.

    Parameters
    ----------
    l1_a, l1_b : (N,) and (M,) array_like
        Per-galaxy L1~ of model A (the candidate) and model B (the reference).

    Returns
    -------
    float
        Small when A's empirical CDF lies above B's somewhere by more than chance allows (A better).
    """
    a = np.asarray(l1_a, dtype=np.float64)
    b = np.asarray(l1_b, dtype=np.float64)
    if a.size == 0 or b.size == 0:
        msg = f"both samples need at least one value, got {a.size} and {b.size}"
        raise InputDataError(msg)
    # scipy: alternative='greater' means CDF(a) > CDF(b) somewhere, i.e. a tends to be smaller
    return float(stats.ks_2samp(a, b, alternative="greater").pvalue)


def bootstrap_means(
    values: ArrayLike, *, n_resamples: int, rng: np.random.Generator, max_chunk_bytes: int = 64 * 2**20
) -> NDArray[np.float64]:
    """Means of ``n_resamples`` bootstrap resamples (with replacement, same size) of ``values``.

    Parameters
    ----------
    values : (N,) array_like
    n_resamples : int
    rng : numpy.random.Generator
    max_chunk_bytes : int
        Bound on the index array drawn at once.

    Returns
    -------
    (n_resamples,) ndarray of float64
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or v.size == 0:
        msg = f"values must be a non-empty 1-D array, got shape {v.shape}"
        raise InputDataError(msg)
    if n_resamples < 1:
        msg = f"n_resamples must be at least 1, got {n_resamples}"
        raise ValueError(msg)
    n = v.size
    chunk = max(1, int(max_chunk_bytes // (4 * n)))
    out = np.empty(n_resamples)
    for start in range(0, n_resamples, chunk):
        stop = min(n_resamples, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n), dtype=np.int32)
        out[start:stop] = v[idx].mean(axis=1)
    return out


def paired_bootstrap_pvalue(
    l1_candidate: ArrayLike, l1_reference: ArrayLike, *, n_resamples: int, rng: np.random.Generator
) -> float:
    """One-sided bootstrap p-value that the candidate's mean L1~ is not smaller than the reference's.

    Beyond the paper's KS test, which compares the two L1~ distributions as if they came from different
    galaxies: here both models are scored on the *same* resampled galaxies, so the galaxy-to-galaxy scatter of
    L1~ (large: L1~ has a heavy tail) cancels and a small test split still resolves a gain of a few percent.

    Parameters
    ----------
    l1_candidate, l1_reference : (N,) array_like
        Per-galaxy L1~ of the two models on the same galaxies, in the same order.
    n_resamples : int
    rng : numpy.random.Generator

    Returns
    -------
    float
        Fraction of resamples in which the candidate's mean L1~ is not smaller, with the usual +1 correction
        ``(k + 1) / (R + 1)`` so that it is never exactly 0.
    """
    a = np.asarray(l1_candidate, dtype=np.float64)
    b = np.asarray(l1_reference, dtype=np.float64)
    if a.shape != b.shape:
        msg = f"the two models must be scored on the same galaxies, got shapes {a.shape} and {b.shape}"
        raise InputDataError(msg)
    gain = bootstrap_means(b - a, n_resamples=n_resamples, rng=rng)
    return float((np.count_nonzero(gain <= 0) + 1) / (gain.size + 1))


def is_resolved(pvalue: float, *, alpha: float = RESOLVED_PVALUE) -> bool:
    """Return whether a one-sided paired bootstrap p-value resolves the comparison (``pvalue < alpha``)."""
    return bool(pvalue < alpha)


def verdict(pvalue: float, *, alpha: float = RESOLVED_PVALUE) -> str:
    """Return :data:`RESOLVED` if ``pvalue < alpha``, else :data:`NOT_RESOLVED` (the report's wording)."""
    return RESOLVED if is_resolved(pvalue, alpha=alpha) else NOT_RESOLVED


def draw_bootstrap_counts(
    n: int, *, n_resamples: int, rng: np.random.Generator, max_chunk_bytes: int = 64 * 2**20
) -> NDArray[np.float64]:
    """Draw ``n_resamples`` bootstrap resamples of ``n`` items as a matrix of counts.

    Row ``r`` counts how many times each item was drawn in resample ``r`` (``n`` draws with replacement;
    each row sums to ``n``). Equivalent to a ``(n_resamples, n)`` matrix of indices, but a metric of every
    resample is then a matrix product (means) or a weighted median, and a subset of the items (the galaxies an
    experiment applies to) is a column selection. The indices are drawn in chunks of bounded memory; the
    result does not depend on the chunk size.

    Parameters
    ----------
    n : int
        Number of items (test galaxies), at least 1.
    n_resamples : int
        At least 1.
    rng : numpy.random.Generator
    max_chunk_bytes : int
        Bound on the index array drawn at once.

    Returns
    -------
    (n_resamples, n) ndarray of float64
        Non-negative integer counts.
    """
    if n < 1:
        msg = f"n must be at least 1, got {n}"
        raise InputDataError(msg)
    if n_resamples < 1:
        msg = f"n_resamples must be at least 1, got {n_resamples}"
        raise ValueError(msg)
    counts = np.empty((n_resamples, n))
    chunk = max(1, int(max_chunk_bytes // (8 * n)))
    for start in range(0, n_resamples, chunk):
        stop = min(n_resamples, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n), dtype=np.int64)
        idx += (np.arange(stop - start, dtype=np.int64) * n)[:, None]
        counts[start:stop] = np.bincount(idx.ravel(), minlength=(stop - start) * n).reshape(stop - start, n)
    return counts


def _weighted_median(values: NDArray[np.float64], weights: NDArray[np.float64]) -> NDArray[np.float64]:
    """Median of each resample given integer counts: equal to ``np.median`` of the expanded sample.

    ``values`` is (n,), ``weights`` (R, n) counts; returns (R,) (NaN where a row sums to zero).
    """
    order = np.argsort(values, kind="stable")
    ranked = values[order]
    cum = weights[:, order]  # a fresh copy, accumulated in place
    np.cumsum(cum, axis=1, out=cum)
    total = cum[:, -1:]
    # the expanded sorted sample's k-th element (0-based) is ranked[#(cum <= k)]
    lo = np.count_nonzero(cum <= np.floor((total - 1) / 2), axis=1)
    hi = np.count_nonzero(cum <= np.floor(total / 2), axis=1)
    last = ranked.size - 1
    out = 0.5 * (ranked[np.minimum(lo, last)] + ranked[np.minimum(hi, last)])
    out[total[:, 0] <= 0] = np.nan
    return out


def bootstrap_metrics(
    pred: ArrayLike,
    true: ArrayLike,
    err: ArrayLike,
    counts: NDArray[np.float64],
    *,
    threshold_dex: float = DEX_THRESHOLD,
    in_dex: bool = False,
) -> dict[str, NDArray[np.float64]]:
    """Evaluate M1-M5 on every bootstrap resample at once.

    Parameters
    ----------
    pred, true, err : (n,) array_like
        Predicted M/L, true M/L and its uncertainty (solar units) of the galaxies the model applies to; the
        checks of :func:`~morphomass.evaluate.metrics.compute_metrics` apply.
    counts : (R, n) ndarray
        How many times each galaxy is drawn in each resample (columns of :func:`draw_bootstrap_counts` for
        these galaxies). A row may sum to anything, zero included (then that resample's metrics are NaN).
    threshold_dex : float
        The M5 threshold.
    in_dex : bool
        The target is already in dex (:func:`~morphomass.evaluate.metrics.dex_error`).

    Returns
    -------
    dict of str to (R,) ndarray of float64
        Keyed as :data:`~morphomass.evaluate.metrics.METRIC_KEYS`; with counts all ones, equal to
        :func:`~morphomass.evaluate.metrics.compute_metrics`.
    """
    l1 = l1_tilde_per_galaxy(pred, true, err)
    dex = dex_error(pred, true, in_dex=in_dex)
    w = np.asarray(counts, dtype=np.float64)
    if w.ndim != 2 or w.shape[1] != l1.size:
        msg = f"counts must have shape (n_resamples, {l1.size}), got {w.shape}"
        raise InputDataError(msg)
    per_galaxy = np.stack(
        [l1, l1**2, dex**2, np.abs(dex) < threshold_dex, dex >= threshold_dex, dex <= -threshold_dex], axis=1
    )
    total = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = (w @ per_galaxy) / total[:, None]
    return {
        "l1": means[:, 0],
        "l2": np.sqrt(means[:, 1]),
        "rmsle": np.sqrt(means[:, 2]),
        "median_l1": _weighted_median(l1, w),
        "frac_within_015dex": means[:, 3],
        "frac_over_015dex": means[:, 4],
        "frac_under_015dex": means[:, 5],
    }


def summarize_bootstrap(distribution: ArrayLike, *, level: float = 0.95) -> tuple[float, tuple[float, float]]:
    """Return the standard error and the percentile interval of one bootstrap distribution.

    The standard error is the standard deviation (``ddof=1``) of the resampled values; the interval is the
    percentile interval (the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles, linear interpolation),
    neither bias-corrected nor accelerated. NaN resamples (no galaxy the model applies to) are left out.

    Parameters
    ----------
    distribution : (R,) array_like
        The metric on every resample.
    level : float
        Coverage of the interval, in (0, 1).

    Returns
    -------
    se : float
        NaN with fewer than two finite resamples.
    interval : (float, float)
        NaN with no finite resample.
    """
    d = np.asarray(distribution, dtype=np.float64)
    if not 0 < level < 1:
        msg = f"level must be in (0, 1), got {level}"
        raise ValueError(msg)
    d = d[np.isfinite(d)]
    se = float(np.std(d, ddof=1)) if d.size >= 2 else float("nan")
    if d.size == 0:
        return se, (float("nan"), float("nan"))
    lo, hi = np.percentile(d, [50 * (1 - level), 50 * (1 + level)])
    return se, (float(lo), float(hi))


def assign_classes(
    p_irregular: ArrayLike,
    p_edge_on: ArrayLike,
    p_feature: ArrayLike,
    *,
    irregular_min: float = 0.2,
    edge_on_min: float = 0.4,
    feature_min: float = 0.4,
) -> NDArray[np.str_]:
    """E9 classes from CNN1's GZ2 probabilities (Dobbels+19 Fig. 6).

    Irregular if ``p_irregular > irregular_min``; else edge-on if ``p_edge_on > edge_on_min``; else disk if
    ``p_feature > feature_min``; else elliptical.

    Parameters
    ----------
    p_irregular, p_edge_on, p_feature : (N,) array_like
        Unconditional probabilities of GZ2 answers a22 (irregular), a04 (edge-on) and a02 (features or disk).

    Returns
    -------
    (N,) ndarray of str
        Values from :data:`MORPHOLOGY_CLASSES`.
    """
    irr = np.asarray(p_irregular, dtype=np.float64)
    edge = np.asarray(p_edge_on, dtype=np.float64)
    feat = np.asarray(p_feature, dtype=np.float64)
    if not (irr.shape == edge.shape == feat.shape):
        msg = f"probability arrays differ in shape: {irr.shape}, {edge.shape}, {feat.shape}"
        raise InputDataError(msg)
    return np.select(
        [irr > irregular_min, edge > edge_on_min, feat > feature_min],
        ["irregular", "edge_on", "disk"],
        "elliptical",
    )
