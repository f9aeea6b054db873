"""Baselines that need no GBM (SPEC E1, E7, E11): the constant, the g-i power law and Zibetti+2009.

* The constant that minimises L1~ is the median of M/L weighted by 1/err.
* The colour power law is log10(M/L_g) = a + b (g - i). It is fitted on the training set for L1~ or L2~ by
  Nelder-Mead on (a, b), starting from a robust (repeated-medians) line through (g - i, log10 M/L); for RMSLE
  the least-squares line in log space is the exact minimiser.
* Zibetti, Charlot & Rix 2009 (MNRAS 400, 1181), Table B1, colour g - i, band g: a_g = -1.197, b_g = 1.431
  (their Bruzual & Charlot 2007 models with a Chabrier IMF); not refitted.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import optimize, stats

from morphomass.errors import InputDataError

__all__ = [
    "ZIBETTI09_GI_G",
    "colour_from_fluxes",
    "fit_constant",
    "fit_powerlaw",
    "predict_powerlaw",
    "weighted_median",
]

#: Zibetti+2009 Table B1, row g-i, columns (a_g, b_g): log10(M/L_g) = a_g + b_g (g - i).
ZIBETTI09_GI_G: tuple[float, float] = (-1.197, 1.431)

Loss = Literal["l1", "l2", "rmsle"]


def weighted_median(values: ArrayLike, weights: ArrayLike) -> float:
    """Return the value ``c`` minimising ``sum_i w_i |values_i - c|`` (the lower weighted median).

    Parameters
    ----------
    values, weights : (N,) array_like
        Weights positive.

    Returns
    -------
    float
    """
    v = np.asarray(values, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if v.ndim != 1 or v.shape != w.shape or v.size == 0:
        msg = f"values and weights must be non-empty 1-D arrays of one length, got {v.shape} and {w.shape}"
        raise InputDataError(msg)
    if not (np.all(np.isfinite(v)) and np.all(np.isfinite(w)) and np.all(w > 0)):
        msg = "values must be finite and weights finite and positive"
        raise InputDataError(msg)
    order = np.argsort(v, kind="stable")
    cum = np.cumsum(w[order])
    k = int(np.searchsorted(cum, 0.5 * cum[-1]))
    return float(v[order][min(k, v.size - 1)])


def fit_constant(ml: ArrayLike, ml_err: ArrayLike) -> float:
    """E1: the constant M/L minimising L1~ on a training set (median of ``ml`` weighted by ``1/ml_err``)."""
    return weighted_median(ml, 1.0 / np.asarray(ml_err, dtype=np.float64))


def colour_from_fluxes(flux_blue: ArrayLike, flux_red: ArrayLike) -> NDArray[np.float64]:
    """AB colour ``-2.5 log10(flux_blue / flux_red)`` in mag (NaN where a flux is not positive).

    Parameters
    ----------
    flux_blue, flux_red : (N,) array_like
        Fluxes in the same unit (nanomaggies).
    """
    fb = np.asarray(flux_blue, dtype=np.float64)
    fr = np.asarray(flux_red, dtype=np.float64)
    good = (fb > 0) & (fr > 0)
    out = np.full(fb.shape, np.nan)
    out[good] = -2.5 * np.log10(fb[good] / fr[good])
    return out


def predict_powerlaw(
    colour: ArrayLike, coefficients: tuple[float, float], *, in_dex: bool = False
) -> NDArray[np.float64]:
    """M/L from a colour power law ``10**(a + b colour)`` (a target in dex: ``a + b colour``).

    Parameters
    ----------
    colour : (N,) array_like
        Colour in mag.
    coefficients : (a, b)
        Intercept (dex) and slope (dex per mag).
    in_dex : bool
        The target is already in dex (log M*, log SFR): the relation is linear in it.
    """
    a, b = coefficients
    log_value = a + b * np.asarray(colour, dtype=np.float64)
    return log_value if in_dex else 10.0**log_value


def _loss(
    params: NDArray[np.float64],
    colour: NDArray[np.float64],
    ml: NDArray[np.float64],
    err: NDArray[np.float64],
    loss: Loss,
    in_dex: bool,
) -> float:
    log_pred = params[0] + params[1] * colour
    log_true = ml if in_dex else np.log10(ml)
    if loss == "rmsle":
        return float(np.sqrt(np.mean((log_pred - log_true) ** 2)))
    resid = ((log_pred if in_dex else 10.0 ** np.clip(log_pred, -30, 30)) - ml) / err
    return float(np.mean(np.abs(resid))) if loss == "l1" else float(np.sqrt(np.mean(resid**2)))


def fit_powerlaw(
    colour: ArrayLike, ml: ArrayLike, ml_err: ArrayLike, *, loss: Loss = "l1", in_dex: bool = False
) -> tuple[float, float]:
    """Fit ``log10(M/L) = a + b colour`` by minimising L1~, L2~ or RMSLE (E7, E11).

    With ``in_dex``, ``ml`` is a target already in dex (log M*, log SFR) and the fit is ``ml = a + b colour``
    with the same losses.

    Parameters
    ----------
    colour : (N,) array_like
        Colour in mag (e.g. g - i); rows with a non-finite colour are left out.
    ml, ml_err : (N,) array_like
        True M/L and its uncertainty (solar units, positive).
    loss : {'l1', 'l2', 'rmsle'}
    in_dex : bool
        See above.

    Returns
    -------
    (a, b) : tuple of float
        Intercept (dex) and slope (dex per mag).

    Raises
    ------
    InputDataError
        Fewer than 3 galaxies with a finite colour, or non-positive M/L or error.
    """
    c = np.asarray(colour, dtype=np.float64)
    y = np.asarray(ml, dtype=np.float64)
    e = np.asarray(ml_err, dtype=np.float64)
    if not (c.shape == y.shape == e.shape and c.ndim == 1):
        msg = f"colour, ml and ml_err must be 1-D arrays of one length, got {c.shape}, {y.shape}, {e.shape}"
        raise InputDataError(msg)
    good = np.isfinite(c)
    c, y, e = c[good], y[good], e[good]
    if c.size < 3:
        msg = f"need at least 3 galaxies with a finite colour to fit a power law, got {c.size}"
        raise InputDataError(msg)
    if (not in_dex and np.any(~(y > 0))) or np.any(~(e > 0)) or np.any(~np.isfinite(y)):
        msg = "ml and ml_err must be positive (ml finite, for a target in dex) to fit a power law"
        raise InputDataError(msg)
    if loss not in ("l1", "l2", "rmsle"):
        msg = f"loss must be 'l1', 'l2' or 'rmsle', got {loss!r}"
        raise ValueError(msg)
    log_y = y if in_dex else np.log10(y)
    if loss == "rmsle":
        b, a = np.polyfit(c, log_y, 1)
        return float(a), float(b)
    slope, intercept = stats.siegelslopes(log_y, c)
    start = np.array([intercept, slope])
    best = start
    for _ in range(3):  # restarts: Nelder-Mead can stall on a non-smooth loss
        result = optimize.minimize(
            _loss,
            best,
            args=(c, y, e, loss, in_dex),
            method="Nelder-Mead",
            options={"xatol": 1e-7, "fatol": 1e-10, "maxiter": 4000},
        )
        if np.allclose(result.x, best, rtol=0, atol=1e-7):
            break
        best = result.x
    return float(best[0]), float(best[1])
