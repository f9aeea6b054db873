"""The paper's metrics (SPEC M1-M5; Dobbels+19 Eq. 2, B.1, B.2) as plain functions of (pred, true, err).

Every function takes the predicted target, the true target and the uncertainty of the true target as 1-D
arrays of the same length (M/L in solar units by default; any float dtype) and returns a Python float. The
``~`` metrics divide each residual by its uncertainty; RMSLE and the dex fractions ignore it and use
``log10(pred / true)`` (positive values), or ``pred - true`` for a target already in dex (``in_dex``; see
:mod:`morphomass.targets`).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from morphomass.errors import InputDataError

__all__ = [
    "METRIC_KEYS",
    "compute_metrics",
    "dex_error",
    "fraction_over",
    "fraction_under",
    "fraction_within",
    "l1_tilde",
    "l1_tilde_per_galaxy",
    "l2_tilde",
    "median_l1_tilde",
    "rmsle",
]

#: Keys of one experiment's entry in results/metrics.json (DESIGN §4), in report order.
METRIC_KEYS: tuple[str, ...] = (
    "l1",
    "l2",
    "rmsle",
    "median_l1",
    "frac_within_015dex",
    "frac_over_015dex",
    "frac_under_015dex",
)
DEX_THRESHOLD = 0.15


def _check(
    pred: ArrayLike, true: ArrayLike, err: ArrayLike | None = None, *, logarithmic: bool = False
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64] | None]:
    p = np.asarray(pred, dtype=np.float64)
    t = np.asarray(true, dtype=np.float64)
    arrays = {"pred": p, "true": t}
    e = None
    if err is not None:
        e = np.asarray(err, dtype=np.float64)
        arrays["err"] = e
    for name, arr in arrays.items():
        if arr.ndim != 1:
            msg = f"{name} must be a 1-D array, got shape {arr.shape}"
            raise InputDataError(msg)
        if arr.shape != p.shape:
            msg = f"{name} has {arr.size} values but pred has {p.size}"
            raise InputDataError(msg)
        if not np.all(np.isfinite(arr)):
            msg = f"{name} holds {int(np.sum(~np.isfinite(arr)))} non-finite values"
            raise InputDataError(msg)
    if p.size == 0:
        msg = "cannot compute a metric on an empty set of galaxies"
        raise InputDataError(msg)
    if e is not None and np.any(e <= 0):
        msg = f"err must be positive, got minimum {e.min()!r}"
        raise InputDataError(msg)
    if logarithmic and np.any(t <= 0):
        msg = f"true M/L must be positive for a logarithmic metric, got minimum {t.min()!r}"
        raise InputDataError(msg)
    if logarithmic and np.any(p <= 0):
        msg = f"pred must be positive for a logarithmic metric, got minimum {p.min()!r}"
        raise InputDataError(msg)
    return p, t, e


def l1_tilde_per_galaxy(pred: ArrayLike, true: ArrayLike, err: ArrayLike) -> NDArray[np.float64]:
    """Per-galaxy ``|pred - true| / err`` (the terms of M1).

    Returns
    -------
    (N,) ndarray of float64
        Dimensionless.
    """
    p, t, e = _check(pred, true, err)
    return np.abs(p - t) / e


def l1_tilde(pred: ArrayLike, true: ArrayLike, err: ArrayLike) -> float:
    """M1: ``L1~ = mean |pred - true| / err``."""
    return float(np.mean(l1_tilde_per_galaxy(pred, true, err)))


def median_l1_tilde(pred: ArrayLike, true: ArrayLike, err: ArrayLike) -> float:
    """M4: the median of ``|pred - true| / err``."""
    return float(np.median(l1_tilde_per_galaxy(pred, true, err)))


def l2_tilde(pred: ArrayLike, true: ArrayLike, err: ArrayLike) -> float:
    """M2: ``L2~ = sqrt(mean ((pred - true) / err)^2)``."""
    p, t, e = _check(pred, true, err)
    return float(np.sqrt(np.mean(((p - t) / e) ** 2)))


def dex_error(pred: ArrayLike, true: ArrayLike, *, in_dex: bool = False) -> NDArray[np.float64]:
    """Per-galaxy ``log10(pred / true)`` in dex (positive: over-prediction).

    Parameters
    ----------
    pred, true : (N,) array_like
        Predicted and true values of the target: positive (M/L), or already in dex with ``in_dex``.
    in_dex : bool
        The target is already logarithmic (log M*, log SFR: :mod:`morphomass.targets`): the dex error is
        ``pred - true``.

    Returns
    -------
    (N,) ndarray of float64
    """
    p, t, _ = _check(pred, true, logarithmic=not in_dex)
    return p - t if in_dex else np.log10(p / t)


def rmsle(pred: ArrayLike, true: ArrayLike) -> float:
    """M3: ``sqrt(mean log10(pred / true)^2)`` in dex."""
    return float(np.sqrt(np.mean(dex_error(pred, true) ** 2)))


def fraction_within(pred: ArrayLike, true: ArrayLike, *, threshold_dex: float = DEX_THRESHOLD) -> float:
    """M5: fraction of galaxies with ``|log10(pred / true)| < threshold_dex``."""
    return float(np.mean(np.abs(dex_error(pred, true)) < threshold_dex))


def fraction_over(pred: ArrayLike, true: ArrayLike, *, threshold_dex: float = DEX_THRESHOLD) -> float:
    """M5, over-predictions: fraction with ``log10(pred / true) >= threshold_dex``."""
    return float(np.mean(dex_error(pred, true) >= threshold_dex))


def fraction_under(pred: ArrayLike, true: ArrayLike, *, threshold_dex: float = DEX_THRESHOLD) -> float:
    """M5, under-predictions: fraction with ``log10(pred / true) <= -threshold_dex``."""
    return float(np.mean(dex_error(pred, true) <= -threshold_dex))


def compute_metrics(
    pred: ArrayLike,
    true: ArrayLike,
    err: ArrayLike,
    *,
    threshold_dex: float = DEX_THRESHOLD,
    in_dex: bool = False,
) -> dict[str, float]:
    """All of M1-M5 at once, keyed as in results/metrics.json (:data:`METRIC_KEYS`).

    Parameters
    ----------
    pred, true, err : (N,) array_like
        Predicted and true target and its uncertainty (M/L in solar units: ``pred`` and ``true`` positive;
        or a target in dex with ``in_dex``).
    threshold_dex : float
        The M5 threshold (the paper's 0.15 dex; the key names keep ``015dex`` whatever it is).
    in_dex : bool
        The target is already in dex (:func:`dex_error`): M3 and M5 use ``pred - true``.

    Returns
    -------
    dict of str to float
    """
    l1 = l1_tilde_per_galaxy(pred, true, err)
    dex = dex_error(pred, true, in_dex=in_dex)
    e = np.asarray(err, dtype=np.float64)
    resid = (np.asarray(pred, dtype=np.float64) - np.asarray(true, dtype=np.float64)) / e
    return {
        "l1": float(np.mean(l1)),
        "l2": float(np.sqrt(np.mean(resid**2))),
        "rmsle": float(np.sqrt(np.mean(dex**2))),
        "median_l1": float(np.median(l1)),
        "frac_within_015dex": float(np.mean(np.abs(dex) < threshold_dex)),
        "frac_over_015dex": float(np.mean(dex >= threshold_dex)),
        "frac_under_015dex": float(np.mean(dex <= -threshold_dex)),
    }
