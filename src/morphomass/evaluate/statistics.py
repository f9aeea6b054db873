"""Significance of one model over another (SPEC E8) and the morphology classes of E9.

* One-sided two-sample Kolmogorov-Smirnov test on per-galaxy L1~: the null hypothesis is that model A's L1~ is
  not stochastically smaller than model B's.
* Bootstrap of the mean L1~: ``n_resamples`` resamples with replacement, drawn in chunks of bounded memory.
* Morphology classes from CNN1's probabilities, in the paper's order of precedence: irregular, edge-on,
  feature/disk, elliptical.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

from morphomass.errors import InputDataError

__all__ = [
    "MORPHOLOGY_CLASSES",
    "assign_classes",
    "bootstrap_means",
    "ks_one_sided_pvalue",
    "paired_bootstrap_pvalue",
]

#: Class names of E9, as the keys of ``per_class`` in results/metrics.json.
MORPHOLOGY_CLASSES: tuple[str, ...] = ("irregular", "edge_on", "disk", "elliptical")


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
