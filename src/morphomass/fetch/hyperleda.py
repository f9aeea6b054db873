"""HyperLeda D25 (SPEC D2): SQL queries through the documented CGI interface, or VizieR VII/237 (PGC2003).

Both answers are turned into the columns of the raw ``hyperleda.csv`` (DESIGN §2:
``pgc|objname|objtype|al2000|de2000|logd25|e_logd25|logr25|pa``, ``al2000`` in hours). The exact header and
comment lines of HyperLeda's text output are not documented (reference/data_formats.md §2.3), so the reader
accepts comment lines (``#``), blank lines, padding around the fields, a trailing ``|`` and ``NaN``/empty for
undefined values.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
from astropy.coordinates import Angle

from morphomass.errors import InputDataError
from morphomass.photometry import degrees_to_hours
from morphomass.rawformats import HYPERLEDA

__all__ = [
    "LEDA_FIELDS",
    "leda_query",
    "parse_leda",
    "parse_vizier",
    "ra_slices",
    "vizier_query",
]

LEDA_FIELDS: tuple[str, ...] = HYPERLEDA.names
_NUMERIC = ("al2000", "de2000", "logd25", "e_logd25", "logr25", "pa")
_UNDEFINED = {"", "nan", "-", "null", "none", "--"}
#: VizieR VII/237 column -> HyperLeda meandata column.
VIZIER_COLUMNS: dict[str, str] = {
    "PGC": "pgc",
    "RAJ2000": "al2000",
    "DEJ2000": "de2000",
    "OType": "objtype",
    "logD25": "logd25",
    "e_logD25": "e_logd25",
    "logR25": "logr25",
    "PA": "pa",
}


def ra_slices(ra1_deg: float, ra2_deg: float, *, step_deg: float) -> list[tuple[float, float]]:
    """Split an RA range into query slices of at most ``step_deg``; ``ra1 > ra2`` wraps through 0.

    Returns
    -------
    list of (lo, hi) in degrees, 0 <= lo < hi <= 360.
    """
    spans = [(ra1_deg, ra2_deg)] if ra1_deg < ra2_deg else [(ra1_deg, 360.0), (0.0, ra2_deg)]
    slices = []
    for lo, hi in spans:
        n = max(1, math.ceil((hi - lo) / step_deg - 1e-9))
        edges = np.linspace(lo, hi, n + 1)
        slices.extend((float(a), float(b)) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a)
    return slices


def leda_query(
    ra_lo_deg: float, ra_hi_deg: float, dec_lo_deg: float, dec_hi_deg: float, *, logd25_min: float
) -> dict[str, str]:
    """Parameters of one HyperLeda SQL query (``G.cgi``): galaxies in a box with ``logd25 > logd25_min``.

    The box is given in degrees; HyperLeda's ``al2000`` is in hours. The output is '|'-separated text
    (``a=csv[|]``).
    """
    sql = (
        f"objtype='G' and logd25>{logd25_min:.5f} "
        f"and al2000>={float(degrees_to_hours(ra_lo_deg)):.8f} "
        f"and al2000<{float(degrees_to_hours(ra_hi_deg)):.8f} "
        f"and de2000>={dec_lo_deg:.6f} and de2000<{dec_hi_deg:.6f}"
    )
    return {
        "n": "meandata",
        "c": "o",
        "of": "1,leda,simbad",
        "nra": "l",
        "nakd": "1",
        "d": ",".join(LEDA_FIELDS),
        "sql": sql,
        "a": "csv[|]",
    }


def vizier_query(
    ra_lo_deg: float, ra_hi_deg: float, dec_lo_deg: float, dec_hi_deg: float, *, logd25_min: float
) -> dict[str, str]:
    """Parameters of one VizieR ASU-TSV query of VII/237/pgc (decimal degrees, every row)."""
    return {
        "-source": "VII/237/pgc",
        "-out": ",".join(VIZIER_COLUMNS),
        "-oc.form": "d",
        "-out.max": "unlimited",
        "RAJ2000": f"{ra_lo_deg:.6f}..{ra_hi_deg:.6f}",
        "DEJ2000": f"{dec_lo_deg:.6f}..{dec_hi_deg:.6f}",
        "logD25": f">{logd25_min:.5f}",
        "OType": "G",
    }


def _check_text(text: str, *, source: str, expected: str) -> list[str]:
    stripped = text.lstrip("\ufeff \t\r\n")
    if stripped[:1] == "<":
        msg = f"{source} answered with HTML or XML ({stripped[:60]!r}...) instead of {expected}"
        raise InputDataError(msg)
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        msg = f"{source}: empty answer; expected {expected} with a header row"
        raise InputDataError(msg)
    return lines


def _to_float(values: pd.Series, *, column: str, source: str, first_line: int) -> np.ndarray:
    text = values.astype(str).str.strip()
    undefined = text.str.lower().isin(_UNDEFINED)
    numbers = pd.to_numeric(text.where(~undefined, "nan"), errors="coerce").to_numpy(dtype=float)
    bad = np.isnan(numbers) & ~undefined.to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        msg = f"{source}: line {first_line + row}, field {column}: {values.iloc[row]!r} is not a number"
        raise InputDataError(msg)
    return numbers


def _finish(table: pd.DataFrame, *, source: str, first_line: int) -> pd.DataFrame:
    pgc = _to_float(table["pgc"], column="pgc", source=source, first_line=first_line)
    if np.isnan(pgc).any():
        row = int(np.flatnonzero(np.isnan(pgc))[0])
        msg = f"{source}: line {first_line + row} has no pgc number"
        raise InputDataError(msg)
    out = pd.DataFrame({"pgc": pgc.astype(np.int64)})
    names = table["objname"].astype(str).str.strip() if "objname" in table else pd.Series([""] * len(table))
    out["objname"] = [
        name if name and name.lower() not in _UNDEFINED else f"PGC{pgc:07d}"
        for name, pgc in zip(names, out["pgc"], strict=True)
    ]
    out["objtype"] = table["objtype"].astype(str).str.strip().to_numpy() if "objtype" in table else "G"
    for column in _NUMERIC:
        if column in table:
            out[column] = _to_float(table[column], column=column, source=source, first_line=first_line)
        else:
            out[column] = np.nan
    for column, lo, hi in (("al2000", 0.0, 24.0), ("de2000", -90.0, 90.0)):
        values = out[column].to_numpy()
        bad = ~((values >= lo) & (values <= hi))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            msg = f"{source}: line {first_line + row}, field {column} = {values[row]} outside [{lo}, {hi}]"
            raise InputDataError(msg)
    return out[list(LEDA_FIELDS)]


def parse_leda(text: str, *, source: str) -> pd.DataFrame:
    """Read HyperLeda's '|'-separated answer to :func:`leda_query`.

    Parameters
    ----------
    text : str
        The answer.
    source : str
        Its URL, for messages.

    Returns
    -------
    DataFrame
        The columns of :data:`LEDA_FIELDS`; ``pgc`` int64, ``al2000`` hours, ``de2000`` degrees, ``logd25`` in
        log10(0.1 arcmin); undefined values NaN. A missing ``objname`` becomes ``PGC<7 digits>``.

    Raises
    ------
    InputDataError
        HTML instead of text, an empty answer, a header without ``pgc``/``al2000``/``de2000``/``logd25``, a
        row with another number of fields, or a field that is not a number (the message names line and field).
    """
    expected = "HyperLeda's '|'-separated table"
    lines = _check_text(text, source=source, expected=expected)
    header = [h.strip().lower() for h in lines[0].split("|")]
    while header and not header[-1]:
        header.pop()
    missing = [c for c in ("pgc", "al2000", "de2000", "logd25") if c not in header]
    if missing:
        msg = f"{source}: header {lines[0].strip()!r} lacks {missing}; expected {expected}"
        raise InputDataError(msg)
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        fields = [f.strip() for f in line.split("|")]
        if len(fields) == len(header) + 1 and not fields[-1]:
            fields.pop()
        if len(fields) != len(header):
            msg = (
                f"{source}: line {number} has {len(fields)} fields, the header has {len(header)}: "
                f"{line.strip()!r}"
            )
            raise InputDataError(msg)
        rows.append(fields)
    table = pd.DataFrame(rows, columns=header, dtype=str)
    return _finish(table, source=source, first_line=2)


def _decimal_degrees(values: pd.Series, *, unit: str) -> pd.Series:
    """Return a VizieR position column in decimal degrees.

    It is sexagesimal if the server ignored ``-oc.form=d``.
    """
    text = values.astype(str).str.strip()
    sexagesimal = text.str.contains(r"\d[ :]\d", regex=True)
    if not sexagesimal.any():
        return text
    degrees = text.copy()
    degrees[sexagesimal] = [f"{Angle(v, unit=unit).degree:.7f}" for v in text[sexagesimal]]
    return degrees


def parse_vizier(text: str, *, source: str) -> pd.DataFrame:
    """Read a VizieR ASU-TSV answer of VII/237/pgc into the HyperLeda columns (``al2000`` converted to hours).

    Returns
    -------
    DataFrame
        As :func:`parse_leda`; ``objname`` is ``PGC<7 digits>`` (VII/237 has no principal name).

    Raises
    ------
    InputDataError
        As :func:`parse_leda`.
    """
    expected = "a VizieR tab-separated table of VII/237/pgc"
    lines = _check_text(text, source=source, expected=expected)
    header = [h.strip() for h in lines[0].split("\t")]
    body = lines[1:]
    for k, line in enumerate(body[:2]):  # units line, then a line of dashes
        if set(line) <= set("-\t "):
            body = body[k + 1 :]
            break
    missing = [c for c in ("PGC", "RAJ2000", "DEJ2000", "logD25") if c not in header]
    if missing:
        msg = f"{source}: header {lines[0].strip()!r} lacks {missing}; expected {expected}"
        raise InputDataError(msg)
    try:
        table = pd.read_csv(
            io.StringIO("\n".join(body)),
            sep="\t",
            header=None,
            names=header,
            dtype=str,
            keep_default_na=False,
        )
    except pd.errors.ParserError as err:
        msg = f"{source}: not {expected}: {err}"
        raise InputDataError(msg) from err
    except pd.errors.EmptyDataError:
        table = pd.DataFrame(columns=header, dtype=str)
    table = table.rename(columns=VIZIER_COLUMNS)
    first = len(lines) - len(body) + 1
    ra_deg = _to_float(
        _decimal_degrees(table["al2000"], unit="hourangle"), column="RAJ2000", source=source, first_line=first
    )
    table["al2000"] = degrees_to_hours(ra_deg)
    table["de2000"] = _decimal_degrees(table["de2000"], unit="deg")
    return _finish(table, source=source, first_line=first)
