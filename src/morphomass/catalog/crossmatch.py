"""Positional cross-matching on the sky (astropy), one-to-one and nearest within a radius (SPEC D2, D8)."""

from __future__ import annotations

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from numpy.typing import ArrayLike, NDArray

__all__ = ["match_sky"]


def match_sky(
    ra_deg: ArrayLike,
    dec_deg: ArrayLike,
    cat_ra_deg: ArrayLike,
    cat_dec_deg: ArrayLike,
    *,
    radius_arcsec: float,
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Match each source to at most one catalogue entry, and each entry to at most one source.

    Every pair closer than the radius is a candidate; candidates are accepted by increasing separation unless
    their source or their entry is already taken. So a source gets its nearest entry unless a closer source
    took it, in which case it gets its next nearest within the radius, if any.

    Parameters
    ----------
    ra_deg, dec_deg : (N,) array_like
        Source coordinates (ICRS, deg).
    cat_ra_deg, cat_dec_deg : (M,) array_like
        Catalogue coordinates (ICRS, deg).
    radius_arcsec : float
        Largest accepted separation (arcsec, inclusive).

    Returns
    -------
    index : (N,) ndarray of int64
        Catalogue row matched to each source, -1 where none.
    sep_arcsec : (N,) ndarray of float64
        Separation of the match (arcsec), NaN where none.
    """
    if not radius_arcsec > 0:
        msg = f"radius_arcsec must be positive, got {radius_arcsec!r}"
        raise ValueError(msg)
    ra, dec = np.asarray(ra_deg, dtype=np.float64), np.asarray(dec_deg, dtype=np.float64)
    cat_ra, cat_dec = np.asarray(cat_ra_deg, dtype=np.float64), np.asarray(cat_dec_deg, dtype=np.float64)
    index = np.full(ra.size, -1, dtype=np.int64)
    sep = np.full(ra.size, np.nan)
    if ra.size == 0 or cat_ra.size == 0:
        return index, sep
    sources = SkyCoord(ra * u.deg, dec * u.deg)
    catalogue = SkyCoord(cat_ra * u.deg, cat_dec * u.deg)
    # a.search_around_sky(b) returns (index into b, index into a, separation, distance)
    cat_idx, src_idx, sep2d, _ = sources.search_around_sky(catalogue, radius_arcsec * u.arcsec)
    sep_pairs = sep2d.to_value(u.arcsec)
    # a pair whose source and entry appear in no other pair is accepted whatever the order: do those at once
    alone = (np.bincount(src_idx, minlength=ra.size)[src_idx] == 1) & (
        np.bincount(cat_idx, minlength=cat_ra.size)[cat_idx] == 1
    )
    index[src_idx[alone]] = cat_idx[alone]
    sep[src_idx[alone]] = sep_pairs[alone]
    contested = np.flatnonzero(~alone)
    # the others by separation, ties broken by index (deterministic)
    order = contested[np.lexsort((cat_idx[contested], src_idx[contested], sep_pairs[contested]))]
    cat_taken = np.zeros(cat_ra.size, dtype=bool)
    for k in order.tolist():
        i, j = src_idx[k], cat_idx[k]
        if index[i] < 0 and not cat_taken[j]:
            index[i] = j
            sep[i] = sep_pairs[k]
            cat_taken[j] = True
    return index, sep
