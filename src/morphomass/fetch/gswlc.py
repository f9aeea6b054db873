"""GSWLC-2 (Salim et al. 2016, 2018; SPEC D1): the download's URL and a lenient reader of the whole table.

The columns are those of :data:`morphomass.rawformats.GSWLC`. Unlike :func:`morphomass.rawformats.read_gswlc`
(the catalogue's strict reader of ``raw/``), :func:`read_gswlc` here reads the table as downloaded, keeps -99
and repeated ids (the region and target selection decide what is copied to ``raw/``) and names the URL in its
messages.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from morphomass.errors import InputDataError
from morphomass.rawformats import GSWLC, gswlc_file_name

__all__ = ["gswlc_file_name", "gswlc_url", "read_gswlc"]


def gswlc_url(base_url: str, catalog: str) -> str:
    """URL of the distributed ``GSWLC-<catalog>.dat.gz`` under ``base_url``."""
    return f"{base_url.rstrip('/')}/{gswlc_file_name(catalog)}.gz"


def read_gswlc(path: Path, *, source: str) -> pd.DataFrame:
    """Read a GSWLC-2 table: whitespace-separated, no header, 24 columns, int64 ids.

    Parameters
    ----------
    path : Path
        Plain-text table.
    source : str
        Where it came from (URL), for messages.

    Returns
    -------
    DataFrame
        Columns named as in :data:`morphomass.rawformats.GSWLC` (``objid``, ``glxid``, ..., ``ra``,
        ``dec``, ``z``, ``chi2_r``, ``log_mstar``, ...), one row per non-blank line; ``objid`` int64; -99
        kept.

    Raises
    ------
    InputDataError
        Empty table, a line with another number of columns, or a non-numeric value; the message names the
        line.
    """
    names = list(GSWLC.names)
    try:
        table = pd.read_csv(path, sep=r"\s+", header=None, engine="c", dtype={0: "Int64", 1: "Int64"})
    except pd.errors.EmptyDataError as err:
        msg = f"{source}: empty GSWLC-2 table"
        raise InputDataError(msg) from err
    except (pd.errors.ParserError, ValueError, TypeError) as err:
        msg = f"{source}: not a GSWLC-2 table ({len(names)} whitespace-separated columns, integer ids): {err}"
        raise InputDataError(msg) from err
    if table.shape[1] != len(names):
        msg = (
            f"{source}: expected {len(names)} whitespace-separated columns (GSWLC-2), found {table.shape[1]}"
        )
        raise InputDataError(msg)
    table.columns = names
    numeric = table.apply(pd.to_numeric, errors="coerce")
    bad = numeric.isna().any(axis=1).to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        columns = [c for c in names if pd.isna(numeric.at[row, c])]
        shown = f"{columns[:4]}" + (f" and {len(columns) - 4} more" if len(columns) > 4 else "")
        msg = (
            f"{source}: data row {row + 1} has missing or non-numeric {shown} ({len(names)} numbers expected)"
        )
        raise InputDataError(msg)
    numeric["objid"] = numeric["objid"].astype("int64")
    numeric["glxid"] = numeric["glxid"].astype("int64")
    return numeric
