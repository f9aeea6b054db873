"""Permutation importance (SPEC E5; Dobbels+19 §4.2, after Strobl+07).

A feature's importance is the increase of the validation L1~ when that feature's values are shuffled across
the validation galaxies, averaged over several shuffles. Many shuffled copies of the validation set are
stacked and predicted in one call, so the model is evaluated in large batches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import NDArray

from morphomass.errors import InputDataError
from morphomass.progress import progress_bar

__all__ = ["permutation_importance"]


def _l1_tilde(pred: NDArray[np.float64], ml: NDArray[np.float64], ml_err: NDArray[np.float64]) -> float:
    return float(np.mean(np.abs(pred - ml) / ml_err))


def permutation_importance(
    x: NDArray[np.floating],
    ml: NDArray[np.floating],
    ml_err: NDArray[np.floating],
    predict: Callable[[NDArray[np.floating]], NDArray[np.floating]],
    *,
    columns: Sequence[int] | None = None,
    repeats: int = 5,
    rng: np.random.Generator,
    max_batch_bytes: int = 256 * 2**20,
    progress: bool = False,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Increase of L1~ when each feature is permuted, mean and standard deviation over ``repeats`` shuffles.

    Parameters
    ----------
    x : (N, F) array
        Validation features.
    ml, ml_err : (N,) array
        True M/L and its uncertainty.
    predict : callable
        Maps an (M, F) array to M predicted M/L values.
    columns : sequence of int, optional
        Features to permute (default all); the others get importance 0 (right for features the model never
        splits on: permuting them cannot change a prediction).
    repeats : int
        Shuffles per feature.
    rng : numpy.random.Generator
    max_batch_bytes : int
        Upper bound of one stacked batch of shuffled copies.
    progress : bool
        Show a progress bar.

    Returns
    -------
    mean, std : (F,) ndarray of float64
        Dimensionless (units of L1~); positive: the model relies on the feature.
    """
    x = np.asarray(x)
    ml = np.asarray(ml, dtype=np.float64)
    ml_err = np.asarray(ml_err, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] != ml.shape[0] or ml.shape != ml_err.shape:
        msg = f"x must be (N, F) with N = len(ml) = len(ml_err); got {x.shape}, {ml.shape}, {ml_err.shape}"
        raise InputDataError(msg)
    if repeats < 1:
        msg = f"repeats must be at least 1, got {repeats}"
        raise ValueError(msg)
    n, n_features = x.shape
    cols = np.arange(n_features) if columns is None else np.asarray(columns, dtype=np.int64)
    base = _l1_tilde(np.asarray(predict(x), dtype=np.float64), ml, ml_err)
    scores = np.zeros((n_features, repeats))
    jobs = [(int(c), r) for c in cols for r in range(repeats)]
    per_batch = max(1, int(max_batch_bytes // max(1, x[:1].nbytes * n)))
    with progress_bar("permutation importance", total=len(jobs), enabled=progress) as advance:
        for start in range(0, len(jobs), per_batch):
            batch = jobs[start : start + per_batch]
            stacked = np.tile(x, (len(batch), 1))
            for k, (col, _) in enumerate(batch):
                stacked[k * n : (k + 1) * n, col] = x[rng.permutation(n), col]
            pred = np.asarray(predict(stacked), dtype=np.float64).reshape(len(batch), n)
            l1 = np.mean(np.abs(pred - ml) / ml_err, axis=1)
            for k, (col, rep) in enumerate(batch):
                scores[col, rep] = l1[k] - base
            advance(len(batch))
    return scores.mean(axis=1), scores.std(axis=1)
