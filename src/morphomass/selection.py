"""The sample selection of Dobbels+19 §2.1 (SPEC D1, D2, D3), shared by ``catalog`` and ``fetch``.

One function, :func:`sample_cuts`, returns the cuts in the order they are applied, each as a boolean mask of
the rows it rejects with a key and a description (the catalogue stage logs and tabulates every one):

1. ``no_hyperleda``: no HyperLeda galaxy matched within the radius (SPEC D2);
2. ``no_d25``: the match has no ``logd25``; ``d25``: D25 <= ``d25_min_arcmin`` (SPEC D2, D25 > 0.4');
3. ``missing_redshift``: z missing or not positive (SPEC D1);
4. ``missing_mass``: log M* or its error missing (SPEC D1);
5. ``missing_chi2`` and, last, ``chi2``: SED reduced chi2 missing, or >= ``chi2_max`` (SPEC D3, chi2 < 5);
   a valid photometry mask, when given, is cut (``missing_photometry``) just before ``chi2``.

Missing values are NaN (the readers of :mod:`morphomass.rawformats` turn GSWLC-2's -99 into NaN). Pure
functions of arrays; the cross-matching is the caller's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["CHI2_CUT", "Cut", "sample_cuts", "selected"]

#: Key of the last cut (SPEC D3): the catalogue keeps the galaxies it alone rejects apart (Fig. 2).
CHI2_CUT = "chi2"


@dataclass(frozen=True)
class Cut:
    """One selection cut: the rows it rejects, a key (``dropped_<key>`` in the summary) and a description."""

    key: str
    description: str
    reject: NDArray[np.bool_]


def sample_cuts(
    *,
    matched: ArrayLike,
    d25_arcmin: ArrayLike,
    z: ArrayLike,
    logmstar: ArrayLike,
    logmstar_err: ArrayLike,
    chi2_r: ArrayLike,
    radius_arcsec: float,
    d25_min_arcmin: float,
    chi2_max: float | None,
    photometry_ok: ArrayLike | None = None,
) -> list[Cut]:
    """Return the cuts of SPEC D1-D3, in the order they are applied.

    Parameters
    ----------
    matched : (N,) array_like of bool
        Whether each galaxy has a HyperLeda match within ``radius_arcsec``.
    d25_arcmin : (N,) array_like of float
        D25 of the match (arcmin), NaN without one or without ``logd25``.
    z, logmstar, logmstar_err, chi2_r : (N,) array_like of float
        GSWLC-2 redshift, log10 M* (M_sun) and its error (dex), SED reduced chi2; NaN where missing.
    radius_arcsec : float
        The HyperLeda match radius (for the description).
    d25_min_arcmin : float
        Keep D25 > ``d25_min_arcmin`` (0.4 in the paper; SPEC D2).
    chi2_max : float or None
        Keep chi2_r < ``chi2_max`` (5 in the paper; SPEC D3); None applies no chi2 cut at all (a missing
        chi2 is then kept too).
    photometry_ok : (N,) array_like of bool, optional
        Galaxies with usable photometry; cut as ``missing_photometry`` before the chi2 cut.

    Returns
    -------
    list of Cut
        Keys ``no_hyperleda``, ``no_d25``, ``d25``, ``missing_redshift``, ``missing_mass``, then
        ``missing_chi2`` (with ``chi2_max``), ``missing_photometry`` (with ``photometry_ok``) and
        :data:`CHI2_CUT` (with ``chi2_max``).
    """
    d25 = np.asarray(d25_arcmin, dtype=np.float64)
    zz = np.asarray(z, dtype=np.float64)
    mass = np.asarray(logmstar, dtype=np.float64)
    mass_err = np.asarray(logmstar_err, dtype=np.float64)
    chi2 = np.asarray(chi2_r, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        cuts = [
            Cut(
                "no_hyperleda",
                f"no HyperLeda galaxy within {radius_arcsec:g} arcsec",
                ~np.asarray(matched, dtype=bool),
            ),
            Cut("no_d25", "HyperLeda match without logd25", np.isnan(d25)),
            Cut("d25", f"D25 <= {d25_min_arcmin:g} arcmin", ~(d25 > d25_min_arcmin)),
            Cut("missing_redshift", "redshift missing (-99) or not positive", ~(zz > 0)),
            Cut("missing_mass", "log M* or its error missing (-99)", np.isnan(mass) | ~(mass_err >= 0)),
        ]
        if chi2_max is not None:
            cuts.append(Cut("missing_chi2", "SED reduced chi2 missing (-99)", np.isnan(chi2)))
        if photometry_ok is not None:
            cuts.append(
                Cut(
                    "missing_photometry",
                    "no SDSS photometry, or g modelMag/modelMagErr missing (-9999) or flux not positive",
                    ~np.asarray(photometry_ok, dtype=bool),
                )
            )
        if chi2_max is not None:
            cuts.append(Cut(CHI2_CUT, f"SED reduced chi2 >= {chi2_max:g}", ~(chi2 < chi2_max)))
    return cuts


def selected(cuts: list[Cut]) -> NDArray[np.bool_]:
    """Rows that pass every cut of :func:`sample_cuts` (SPEC D1-D3).

    Parameters
    ----------
    cuts : list of Cut
        Non-empty.

    Returns
    -------
    (N,) ndarray of bool
    """
    keep = np.ones(cuts[0].reject.shape, dtype=bool)
    for cut in cuts:
        keep &= ~cut.reject
    return keep
