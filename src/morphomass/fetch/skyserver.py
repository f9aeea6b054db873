"""SDSS DR12 photometry and stars through SkyServer's SQL search (``x_results.aspx``, ``format=csv``).

The queries are batched by position: a table value constructor holds the positions of a batch, and
``CROSS APPLY dbo.fGetNearestObjEq`` (photometry: the nearest primary object) or ``dbo.fGetNearbyObjEq``
(stars: all primary point sources, ``type = 6``, within a radius in arcmin) runs for each. This is the request
astroquery's ``SDSS.query_sql(sql, data_release=12)`` sends (GET ``cmd=<sql>&format=csv&searchtool=SQL``);
morphomass sends it with its own client so that retries, resume, the rate limit and the cache apply, and so
that the endpoint is one configurable URL (``fetch.skyserver_sql_url``) that a mirror or a test server can
stand in for.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

from morphomass.errors import InputDataError
from morphomass.rawformats import PHOTOMETRY, STARS

__all__ = [
    "PHOTOMETRY_COLUMNS",
    "STAR_COLUMNS",
    "parse_skyserver_csv",
    "photometry_sql",
    "skyserver_params",
    "stars_sql",
]

BANDS = ("u", "g", "r", "i", "z")
#: Columns of raw/sdss_photometry.csv, in order (DESIGN §2).
PHOTOMETRY_COLUMNS: tuple[str, ...] = PHOTOMETRY.names
#: Columns of raw/stars.csv, in order.
STAR_COLUMNS: tuple[str, ...] = STARS.names
STAR_TYPE = 6
_INT_COLUMNS = ("objID", "input_id", "type")


def photometry_sql(
    objids: Sequence[int], ra_deg: np.ndarray, dec_deg: np.ndarray, *, radius_arcmin: float
) -> str:
    """Return SQL for the model magnitudes of the nearest primary object to each position.

    Parameters
    ----------
    objids : sequence of int
        The galaxies' own ids (GSWLC objid), returned as ``input_id``.
    ra_deg, dec_deg : (N,) arrays
        Positions, degrees.
    radius_arcmin : float
        Search radius of ``fGetNearestObjEq``, arcmin.

    Returns
    -------
    str
        One SELECT returning ``input_id, objID, ra, dec, modelMag_{u..z}, modelMagErr_{u..z}``.
    """
    values = ",".join(f"({int(i)},{r:.7f},{d:.7f})" for i, r, d in zip(objids, ra_deg, dec_deg, strict=True))
    mags = ",".join(f"p.modelMag_{b}" for b in BANDS)
    errs = ",".join(f"p.modelMagErr_{b}" for b in BANDS)
    return (
        f"SELECT v.id AS input_id,p.objID,p.ra,p.dec,{mags},{errs} "
        f"FROM (VALUES {values}) AS v(id,ra,dec) "
        f"CROSS APPLY dbo.fGetNearestObjEq(v.ra,v.dec,{radius_arcmin:.6f}) AS n "
        "JOIN PhotoPrimary AS p ON p.objID=n.objID"
    )


def stars_sql(ra_deg: np.ndarray, dec_deg: np.ndarray, radius_arcmin: np.ndarray) -> str:
    """Return SQL for every primary point source (``type = 6``) within ``radius_arcmin`` of each position.

    Returns
    -------
    str
        One SELECT DISTINCT returning ``objID, ra, dec, type, psfMag_g``.
    """
    values = ",".join(
        f"({r:.7f},{d:.7f},{rad:.5f})" for r, d, rad in zip(ra_deg, dec_deg, radius_arcmin, strict=True)
    )
    return (
        "SELECT DISTINCT p.objID,p.ra,p.dec,p.type,p.psfMag_g "
        f"FROM (VALUES {values}) AS v(ra,dec,r) "
        "CROSS APPLY dbo.fGetNearbyObjEq(v.ra,v.dec,v.r) AS n "
        f"JOIN PhotoPrimary AS p ON p.objID=n.objID WHERE p.type={STAR_TYPE}"
    )


def skyserver_params(sql: str) -> dict[str, str]:
    """Query parameters of SkyServer's SQL search for one statement, CSV output (as astroquery sends them)."""
    return {"cmd": sql, "format": "csv", "searchtool": "SQL"}


def parse_skyserver_csv(text: str, *, source: str, required: Sequence[str]) -> pd.DataFrame:
    """Read SkyServer's CSV answer (``#Table1`` line, header, rows); an answer without rows is an empty table.

    Parameters
    ----------
    text : str
    source : str
        The query's URL (or a short name), for messages.
    required : sequence of str
        Columns that must be present.

    Returns
    -------
    DataFrame
        ``objID``, ``input_id`` and ``type`` as int64.

    Raises
    ------
    InputDataError
        An HTML page or SkyServer error message, an answer without a header, missing columns, or unreadable
        rows.
    """
    stripped = text.lstrip("\ufeff \t\r\n")
    if stripped[:1] == "<" or "error_message" in text.lower():
        plain = " ".join(re.sub(r"<[^>]*>", " ", stripped).split())
        msg = f"{source}: SkyServer answered with an error page instead of CSV: {plain[:300]!r}"
        raise InputDataError(msg)
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    if not lines:
        msg = (
            f"{source}: empty answer from SkyServer (not even a header row); "
            f"expected CSV with {list(required)}"
        )
        raise InputDataError(msg)
    header = [h.strip() for h in lines[0].split(",")]
    missing = [c for c in required if c not in header]
    if missing:
        msg = f"{source}: SkyServer's answer lacks the columns {missing} (header {lines[0]!r})"
        raise InputDataError(msg)
    dtypes = {c: "int64" for c in _INT_COLUMNS if c in header}
    try:
        table = pd.read_csv(io.StringIO("\n".join(lines)), dtype=dtypes)
    except (pd.errors.ParserError, ValueError, TypeError) as err:
        msg = f"{source}: unreadable CSV from SkyServer: {err}"
        raise InputDataError(msg) from err
    table.columns = [c.strip() for c in table.columns]
    return table
