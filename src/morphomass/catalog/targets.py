"""The M/L target and the split (SPEC D6, D9; DESIGN §2 conventions).

Pure functions of arrays (and an explicit ``rng``); no I/O. Fluxes, distances and luminosities (SPEC D7) are
in
:mod:`morphomass.photometry`.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "compute_ml",
    "make_split",
]


def compute_ml(
    logmstar: ArrayLike,
    logmstar_err: ArrayLike,
    lum: ArrayLike,
    mag_err: ArrayLike,
    *,
    rel_err_floor: float,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Mass-to-light ratio and its uncertainty (SPEC D6).

    M/L = 10**logmstar / L. Its relative error combines the mass error and the magnitude error,
    ln(10) * hypot(logmstar_err, 0.4 mag_err), and is floored at ``rel_err_floor``.

    Parameters
    ----------
    logmstar, logmstar_err : array_like
        log10 stellar mass (M_sun) and its error (dex).
    lum : array_like
        Luminosity in solar units of the band.
    mag_err : array_like
        Error of the magnitude the luminosity comes from (mag).
    rel_err_floor : float
        Smallest relative error (0.05 in the paper).

    Returns
    -------
    ml, ml_err : ndarray of float64
        M/L in solar units and its (floored) 1-sigma error.
    """
    ml = 10.0 ** np.asarray(logmstar, dtype=np.float64) / np.asarray(lum, dtype=np.float64)
    rel = np.log(10.0) * np.hypot(
        np.asarray(logmstar_err, dtype=np.float64), 0.4 * np.asarray(mag_err, dtype=np.float64)
    )
    return ml, ml * np.maximum(rel, rel_err_floor)


def make_split(
    n: int, *, test_fraction: float, val_fraction: float, rng: np.random.Generator
) -> NDArray[np.str_]:
    """Random train/val/test labels (SPEC D9).

    ``ceil(test_fraction * n)`` rows go to the test set, then ``ceil(val_fraction * rest)`` to validation, the
    rest to training (ceil as scikit-learn's ``train_test_split``; 73 627 galaxies give the paper's
    59 637 / 6 627 / 7 363).

    Parameters
    ----------
    n : int
        Number of rows.
    test_fraction, val_fraction : float
        In (0, 1).
    rng : numpy.random.Generator

    Returns
    -------
    (n,) ndarray of str
        ``"train"``, ``"val"`` or ``"test"`` per row.
    """
    for name, value in (("test_fraction", test_fraction), ("val_fraction", val_fraction)):
        if not 0.0 < value < 1.0:
            msg = f"{name} must be in (0, 1), got {value!r}"
            raise ValueError(msg)
    n_test = math.ceil(test_fraction * n - 1e-9)
    n_val = math.ceil(val_fraction * (n - n_test) - 1e-9)
    order = rng.permutation(n)
    split = np.full(n, "train", dtype="<U5")
    split[order[:n_test]] = "test"
    split[order[n_test : n_test + n_val]] = "val"
    return split
