"""Galaxy Zoo 2, Hart et al. (2016): a checked reader of the table's header and positions."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd

from morphomass import gz2
from morphomass.errors import InputDataError
from morphomass.fetch.http import check_not_html

__all__ = ["REQUIRED_GZ2_COLUMNS", "read_gz2_positions"]

#: Columns the catalogue stage needs from the Hart+16 table.
REQUIRED_GZ2_COLUMNS: tuple[str, ...] = (
    "dr7objid",
    "ra",
    "dec",
    *(gz2.hart16_column(a, "weighted_fraction") for a in gz2.ANSWERS),
)


def read_gz2_positions(path: Path, *, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Check the Hart+16 header and return the positions of its rows.

    Parameters
    ----------
    path : Path
        Plain-text CSV with a header row.
    source : str
        Its URL, for messages.

    Returns
    -------
    ra_deg, dec_deg : (N,) float64 arrays
        One entry per non-blank data line, in file order.

    Raises
    ------
    InputDataError
        HTML instead of CSV, an empty file, missing columns (``dr7objid``, ``ra``, ``dec`` and the 37
        ``*_weighted_fraction`` columns), or a row without a numeric position.
    """
    check_not_html(path, source=source, expected="the Hart+16 CSV table")
    with open(path, encoding="utf-8", newline="") as fh:
        header = next(csv.reader(fh), None)
    if not header:
        msg = f"{source}: empty file; expected the Hart+16 CSV table with a header row"
        raise InputDataError(msg)
    header = [h.strip() for h in header]
    missing = [c for c in REQUIRED_GZ2_COLUMNS if c not in header]
    if missing:
        msg = (
            f"{source}: the GZ2 table lacks {len(missing)} expected columns, e.g. {missing[:3]} "
            "(Hart+16 format)"
        )
        raise InputDataError(msg)
    try:
        table = pd.read_csv(path, usecols=["ra", "dec"], skip_blank_lines=True)
    except (pd.errors.ParserError, ValueError) as err:
        msg = f"{source}: unreadable GZ2 table: {err}"
        raise InputDataError(msg) from err
    ra = pd.to_numeric(table["ra"], errors="coerce").to_numpy(dtype=float)
    dec = pd.to_numeric(table["dec"], errors="coerce").to_numpy(dtype=float)
    bad = ~(np.isfinite(ra) & np.isfinite(dec))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        msg = f"{source}: data row {row + 1} has no numeric ra/dec"
        raise InputDataError(msg)
    return ra, dec
