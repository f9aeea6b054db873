"""The raw files of DESIGN §2: one specification per file, with its reader and its writer.

Each raw file has one :class:`RawFormat` (its columns in file order, how each is parsed and how it is
printed):

* GSWLC-2 (:data:`GSWLC`; :func:`read_gswlc`, :func:`read_gswlc_dir`, :func:`write_gswlc`; SPEC D1):
  whitespace-separated, no header, 24 columns read by position; ``objid`` parsed as int64 (a float64 read
  silently corrupts 19-digit ids); -99 means missing; the file may be gzipped whatever its name (detected by
  its magic bytes).
* HyperLeda meandata export (:data:`HYPERLEDA`; :func:`read_hyperleda`, :func:`write_hyperleda`; SPEC D2):
  '|'-separated with a header; ``al2000`` in hours; ``D25' = 0.1 * 10**logd25``; an empty (or ``NaN``) field
  is undefined.
* Hart+16 Galaxy Zoo 2 table (:data:`GZ2`; :func:`read_gz2`, :func:`write_gz2`; SPEC D8): CSV with a header,
  columns selected by name.
* SDSS photometry (:data:`PHOTOMETRY`; :func:`read_photometry`, :func:`write_photometry`; SPEC D6) and the
  point-source catalogue (:data:`STARS`; :func:`read_stars`, :func:`write_stars`; SPEC D5): CasJobs CSV
  exports;
  -9999 means missing.
* One image per galaxy and band (:func:`write_fits_image`; SPEC D4): float32 nanomaggies, TAN WCS.

Readers: malformed input (wrong number of fields, a non-numeric or non-integer field, duplicate ids, missing
or impossible coordinates, missing required columns) raises :class:`~morphomass.errors.InputDataError` naming
the file, the line (1-based, as an editor shows it) and the field. Leading lines starting with ``#`` (a
SkyServer ``#Table1`` line, a HyperLeda comment) are skipped; blank lines are ignored.

Writers: each formats a table exactly as the real archive does (the print formats of the specification, so the
output is byte-for-byte reproducible) and writes it atomically.
"""

from __future__ import annotations

import csv
import functools
import gzip
import io
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple, NoReturn, TextIO

import numpy as np
import pandas as pd
from astropy.io import fits
from astropy.wcs import WCS
from numpy.typing import NDArray

from morphomass import gz2
from morphomass.config import SDSS_BANDS
from morphomass.errors import InputDataError
from morphomass.gz2 import CONDITIONAL_SUM_ATOL, conditional_sum_errors
from morphomass.photometry import d25_arcmin_from_logd25, hours_to_degrees
from morphomass.workdir import atomic_path, write_text_atomic

__all__ = [
    "GSWLC",
    "GSWLC_MISSING",
    "GSWLC_VERSIONS",
    "GZ2",
    "HYPERLEDA",
    "PHOTOMETRY",
    "SDSS_MISSING",
    "STARS",
    "Column",
    "RawFormat",
    "find_gswlc_files",
    "gswlc_file_name",
    "read_gswlc",
    "read_gswlc_dir",
    "read_gz2",
    "read_hyperleda",
    "read_photometry",
    "read_stars",
    "write_fits_image",
    "write_gswlc",
    "write_gz2",
    "write_hyperleda",
    "write_photometry",
    "write_stars",
]

logger = logging.getLogger(__name__)

GZIP_MAGIC = b"\x1f\x8b"
#: Missing-value markers of the archives.
GSWLC_MISSING = -99.0
SDSS_MISSING = -9999.0
#: Strings read as an undefined (NaN) value where a field may be undefined.
_UNDEFINED = frozenset({"", "nan", "NaN", "NAN"})
_INTEGER = r"[+-]?\d+"
#: How a column is parsed: int64, finite float64, float64 that may be undefined (NaN), or stripped text.
Kind = Literal["int", "float", "float?", "str"]
#: Callable returning ``(n_skip, line_numbers)``: lines before the data, 1-based line number of each data row.
Scan = Callable[[], tuple[int, NDArray[np.int64]]]


# ------------------------------------------------------------------------------------------ specifications


class Column(NamedTuple):
    """One column of a raw file: how it is parsed (``kind``) and printed (``fmt``).

    ``fmt`` is a :meth:`str.format` pattern (``"{:.6f}"``, ``"{:d}"``, ``"{}"``); None leaves the column to
    pandas' default CSV formatting.
    """

    kind: Kind
    fmt: str | None = None


@dataclass(frozen=True)
class RawFormat:
    """The specification of one raw file of DESIGN §2.

    Attributes
    ----------
    file : str
        The file's name under ``raw/`` (a pattern for GSWLC-2 and images).
    sep : str or None
        Field separator; None for runs of whitespace (no header).
    columns : mapping of str to Column
        The columns in file order (for the Hart+16 table, the leading columns only: the per-answer columns are
        :func:`morphomass.gz2.hart16_columns`).
    required : tuple of str
        Columns a reader needs (every column when the file has no header).
    """

    file: str
    sep: str | None
    columns: Mapping[str, Column]
    required: tuple[str, ...]

    @property
    def names(self) -> tuple[str, ...]:
        """Column names in file order."""
        return tuple(self.columns)

    def kinds(self, names: Sequence[str] | None = None) -> dict[str, Kind]:
        """Column -> parse kind, for ``names`` (all columns when None) in that order."""
        return {name: self.columns[name].kind for name in (self.names if names is None else names)}

    def formats(self, names: Sequence[str] | None = None) -> dict[str, str]:
        """Column -> print format of the columns that have one, among ``names`` (all when None)."""
        chosen = self.names if names is None else [n for n in names if n in self.columns]
        return {name: fmt for name in chosen if (fmt := self.columns[name].fmt) is not None}


def _gswlc_columns() -> dict[str, Column]:
    ints = ("objid", "glxid", "plate", "mjd", "fiber_id")
    floats = {"ra": 6, "dec": 6, "z": 6, "chi2_r": 3, "log_mstar": 4, "log_mstar_err": 4}
    floats |= {"log_sfr_sed": 4, "log_sfr_sed_err": 4}
    floats |= {name: 3 for name in ("a_fuv", "a_fuv_err", "a_b", "a_b_err", "a_v", "a_v_err")}
    flags = ("flag_sed", "uv_survey", "flag_uv", "flag_midir", "flag_mgs")
    return (
        {name: Column("int", "{:d}") for name in ints}
        | {name: Column("float", f"{{:.{digits}f}}") for name, digits in floats.items()}
        | {name: Column("int", "{:d}") for name in flags}
    )


#: GSWLC-2 (reference/data_formats.md §1.3): 24 columns, ``GSWLC-<X2|D2|M2|A2>.dat`` in ``raw/gswlc/`` (SPEC
#: D1).
GSWLC = RawFormat(
    file="gswlc/GSWLC-<version>.dat", sep=None, columns=_gswlc_columns(), required=tuple(_gswlc_columns())
)
#: HyperLeda meandata export (SPEC D2): ``al2000`` in hours, ``logd25`` in log10(0.1 arcmin).
HYPERLEDA = RawFormat(
    file="hyperleda.csv",
    sep="|",
    columns={
        "pgc": Column("int", "{:d}"),
        "objname": Column("str", "{}"),
        "objtype": Column("str", "{}"),
        "al2000": Column("float", "{:.7f}"),
        "de2000": Column("float", "{:.6f}"),
        "logd25": Column("float?", "{:.2f}"),
        "e_logd25": Column("float?", "{:.2f}"),
        "logr25": Column("float?", "{:.2f}"),
        "pa": Column("float?", "{:.1f}"),
    },
    required=("pgc", "al2000", "de2000", "logd25"),
)
#: Hart+16 Galaxy Zoo 2 table (SPEC D8): the leading columns; 6 columns per answer follow.
GZ2 = RawFormat(
    file="gz2_hart16.csv",
    sep=",",
    columns={
        "dr7objid": Column("int"),
        "ra": Column("float", "{:.6f}"),
        "dec": Column("float", "{:.6f}"),
    },
    required=("dr7objid", "ra", "dec"),
)
#: SDSS photometry (CasJobs export): ``objID,ra,dec,modelMag_<b>..., modelMagErr_<b>...`` (-9999 missing).
PHOTOMETRY = RawFormat(
    file="sdss_photometry.csv",
    sep=",",
    columns={
        "objID": Column("int"),
        "ra": Column("float", "{:.7f}"),
        "dec": Column("float", "{:.7f}"),
        **{f"modelMag_{b}": Column("float?", "{:.5f}") for b in SDSS_BANDS},
        **{f"modelMagErr_{b}": Column("float?", "{:.5f}") for b in SDSS_BANDS},
    },
    required=("objID", "ra", "dec"),
)
#: Point sources (SPEC D5 priors): ``objID,ra,dec,type(=6),psfMag_g``.
STARS = RawFormat(
    file="stars.csv",
    sep=",",
    columns={
        "objID": Column("int"),
        "ra": Column("float", "{:.7f}"),
        "dec": Column("float", "{:.7f}"),
        "type": Column("int"),
        "psfMag_g": Column("float?", "{:.3f}"),
    },
    required=("objID", "ra", "dec", "type", "psfMag_g"),
)
#: GSWLC-2 versions by decreasing UV depth: X2 combines the others (deepest UV per galaxy), then D2, M2, A2.
GSWLC_VERSIONS: tuple[str, ...] = ("X2", "D2", "M2", "A2")


def gswlc_file_name(version: str) -> str:
    """``GSWLC-X2.dat`` for version ``X2`` (the name in ``raw/gswlc/``)."""
    return f"GSWLC-{version}.dat"


# ----------------------------------------------------------------------------------------- low-level parsing


def _fail(path: Path, line: int | None, field: str | None, problem: str) -> NoReturn:
    where = str(path) + (f", line {line}" if line is not None else "")
    where += f", field {field!r}" if field else ""
    msg = f"{where}: {problem}"
    raise InputDataError(msg)


@contextmanager
def _open_text(path: Path) -> Iterator[TextIO]:
    """Open a text file for reading; gunzip it when it starts with the gzip magic bytes, whatever its name."""
    if not path.is_file():
        msg = f"{path} does not exist (run 'morphomass mock' or 'morphomass fetch' first)"
        raise InputDataError(msg)
    with open(path, "rb") as probe:
        gzipped = probe.read(2) == GZIP_MAGIC
    raw = gzip.open(path, "rb") if gzipped else open(path, "rb")  # closed in the finally clause
    try:
        with io.TextIOWrapper(raw, encoding="utf-8", newline="") as text:
            yield text
    except (OSError, EOFError, UnicodeDecodeError) as err:
        msg = f"{path}: cannot be read as {'gzipped ' if gzipped else ''}UTF-8 text ({err})"
        raise InputDataError(msg) from err
    finally:
        raw.close()


def _count_fields(line: str, sep: str | None) -> int:
    if sep is None:
        return len(line.split())
    count = line.count(sep) + 1
    if '"' in line:  # a quoted field may hold the separator: let the csv module count
        count = len(next(csv.reader([line], delimiter=sep)))
    return count


def _scan(
    path: Path, *, sep: str | None, n_fields: int | None
) -> tuple[list[str] | None, int, NDArray[np.int64]]:
    """Check the number of fields of every line and find where the header and data rows are.

    Parameters
    ----------
    path : Path
    sep : str or None
        Field separator; None for runs of whitespace (then the file has no header and ``n_fields`` is given).
    n_fields : int or None
        Expected fields per line; None to read a header line and take its length.

    Returns
    -------
    header : list of str or None
        Stripped column names (None without a header).
    n_skip : int
        Lines before the first data row (leading ``#`` lines and the header), for
        ``pandas.read_csv(skiprows=)``.
    data_lines : (N,) ndarray of int64
        1-based line number of every data row, in order.
    """
    header: list[str] | None = None
    n_skip = 0
    data_lines: list[int] = []
    kind = "whitespace-separated" if sep is None else f"{sep!r}-separated"

    def check(number: int, line: str) -> None:
        text = line.rstrip("\r\n")
        if not text.strip():
            return  # blank: pandas skips it too
        found = _count_fields(text, sep)
        if found != n_fields:
            _fail(path, number, None, f"expected {n_fields} {kind} fields, found {found}")
        data_lines.append(number)

    with _open_text(path) as fh:
        numbered = enumerate(fh, start=1)
        for number, line in numbered:  # leading blank and '#' lines, then the header or the first data row
            text = line.rstrip("\r\n")
            if not text.strip() or text.startswith("#"):
                continue
            if n_fields is None:
                header = [name.strip() for name in text.split(sep)]
                n_fields = len(header)
                n_skip = number
            else:
                n_skip = number - 1
                check(number, line)
            break
        if sep is None:
            for number, line in numbered:
                check(number, line)
        else:
            expected = (n_fields or 0) - 1
            for number, line in numbered:
                if line.count(sep) == expected and '"' not in line:
                    data_lines.append(number)
                else:
                    check(number, line)
    return header, n_skip, np.asarray(data_lines, dtype=np.int64)


def _read_strings(
    path: Path, *, sep: str | None, names: Sequence[str], usecols: Sequence[str], n_skip: int, n_rows: int
) -> pd.DataFrame:
    """Read the chosen columns of a checked file as stripped strings."""
    with _open_text(path) as fh:
        try:
            table = pd.read_csv(
                fh,
                sep=r"\s+" if sep is None else sep,
                header=None,
                names=list(names),
                usecols=list(usecols),
                skiprows=n_skip,
                dtype=str,
                keep_default_na=False,
                na_filter=False,
                engine="c",
            )
        except pd.errors.ParserError as err:  # quotes spanning lines, which the line scan cannot see
            _fail(path, None, None, f"cannot be parsed ({err})")
    if len(table) != n_rows:  # a quoted field running over a line end
        _fail(path, None, None, f"found {len(table)} rows but {n_rows} data lines (unbalanced quotes?)")
    return table.apply(lambda col: col.str.strip())


def _read_typed(
    path: Path,
    *,
    sep: str | None,
    names: Sequence[str],
    kinds: dict[str, Kind],
    n_skip: int,
    n_rows: int | None,
) -> dict[str, Any] | None:
    """Fast path: parse ``kinds`` with pandas' C parser; None at the first doubt (the slow path explains it).

    Floats are parsed by pandas; integers are read as text and checked digit by digit, because pandas reads
    ``"1237662301367173202.0"`` into an int64 column through float64 and silently changes the value.
    """
    optional = {name: sorted(_UNDEFINED) for name, kind in kinds.items() if kind == "float?"}
    dtype = {name: ("float64" if kind in ("float", "float?") else str) for name, kind in kinds.items()}
    # without usecols, pandas rejects a line with too many fields (with usecols it drops the extra ones)
    usecols = None if list(kinds) == list(names) else list(kinds)
    try:
        with _open_text(path) as fh:
            table = pd.read_csv(
                fh,
                sep=r"\s+" if sep is None else sep,
                header=None,
                names=list(names),
                usecols=usecols,
                skiprows=n_skip,
                dtype=dtype,
                keep_default_na=False,
                na_values=optional or None,
                na_filter=bool(optional),
                engine="c",
            )
    except (ValueError, pd.errors.ParserError):
        return None
    if n_rows is not None and len(table) != n_rows:
        return None
    out: dict[str, Any] = {}
    for name, kind in kinds.items():
        column = table[name]
        if kind == "str":
            out[name] = column.str.strip()
            continue
        if kind == "int":
            text = column.str.strip()
            if not text.str.fullmatch(_INTEGER).to_numpy(dtype=bool, na_value=False).all():
                return None
            try:
                out[name] = text.astype(np.int64).to_numpy()  # exact: digits only, checked above
            except (OverflowError, ValueError):
                return None
            continue
        values = column.to_numpy(dtype=np.float64, copy=True)
        if np.isinf(values).any() or (kind == "float" and np.isnan(values).any()):
            return None
        out[name] = values
    return out


def _parse_columns(
    path: Path,
    *,
    sep: str | None,
    names: Sequence[str],
    kinds: dict[str, Kind],
    scan: Scan,
    n_skip: int = 0,
    n_rows: int | None = None,
) -> dict[str, Any]:
    """Parse the columns named in ``kinds`` (fast path, else the slow path that names the bad line and field).

    Parameters
    ----------
    path : Path
    sep : str or None
        Separator (None: runs of whitespace).
    names : sequence of str
        Every column of the file, in order.
    kinds : dict
        Column -> ``"int"`` (int64), ``"float"`` (finite float64), ``"float?"`` (finite or undefined: an
        empty or NaN field) or ``"str"`` (stripped text).
    scan : callable
        Returns ``(n_skip, line_numbers)`` of the data rows (runs the line scan when not done yet).
    n_skip, n_rows : int
        Lines before the data and number of data rows, when already known (header files).

    Returns
    -------
    dict
        Column -> ndarray (int64 or float64) or pandas.Series (str).
    """
    fast = _read_typed(path, sep=sep, names=names, kinds=kinds, n_skip=n_skip, n_rows=n_rows)
    if fast is not None:
        return fast
    n_skip, lines = scan()
    text = _read_strings(path, sep=sep, names=names, usecols=list(kinds), n_skip=n_skip, n_rows=len(lines))
    out: dict[str, Any] = {}
    for name, kind in kinds.items():
        if kind == "int":
            out[name] = _ints(text, name, path, lines)
        elif kind == "str":
            out[name] = text[name]
        else:
            out[name] = _floats(text, name, path, lines, required=kind == "float")
    return out


def _floats(
    table: pd.DataFrame, name: str, path: Path, lines: NDArray[np.int64], *, required: bool
) -> NDArray[np.float64]:
    """Slow path: parse a text column of finite floats (unless ``required``, an empty or NaN field is NaN)."""
    text = table[name]
    values = np.array(pd.to_numeric(text, errors="coerce"), dtype=np.float64)
    undefined = text.isin(_UNDEFINED).to_numpy()
    bad = ~np.isfinite(values) & ~undefined
    if bad.any():
        row = int(np.argmax(bad))
        _fail(path, int(lines[row]), name, f"expected a finite number, found {text.iloc[row]!r}")
    if required and undefined.any():
        row = int(np.argmax(undefined))
        _fail(path, int(lines[row]), name, f"expected a number, found {text.iloc[row]!r}")
    return values


def _ints(table: pd.DataFrame, name: str, path: Path, lines: NDArray[np.int64]) -> NDArray[np.int64]:
    """Slow path: parse a text column of int64 integers exactly (never through float64)."""
    text = table[name]
    bad = ~text.str.fullmatch(_INTEGER).to_numpy(dtype=bool)
    if bad.any():
        row = int(np.argmax(bad))
        _fail(path, int(lines[row]), name, f"expected an integer, found {text.iloc[row]!r}")
    too_big = np.array([not -(2**63) <= int(v) < 2**63 for v in text], dtype=bool)
    if too_big.any():
        row = int(np.argmax(too_big))
        _fail(path, int(lines[row]), name, f"integer {text.iloc[row]} does not fit in int64")
    return np.array([int(v) for v in text], dtype=np.int64)


def _unique_ids(ids: NDArray[np.int64], name: str, path: Path, scan: Scan) -> None:
    _, first, counts = np.unique(ids, return_index=True, return_counts=True)
    if (counts > 1).any():
        dup_value = ids[first[counts > 1][0]]
        rows = np.flatnonzero(ids == dup_value)
        lines = scan()[1]
        _fail(
            path, int(lines[rows[1]]), name, f"duplicate id {dup_value} (also on line {int(lines[rows[0]])})"
        )


def _coordinates(
    ra: NDArray[np.float64],
    dec: NDArray[np.float64],
    names: tuple[str, str],
    path: Path,
    scan: Scan,
    *,
    ra_max: float = 360.0,
    ra_unit: str = "deg",
) -> None:
    """Coordinates must be present and on the sky: 0 <= RA < ra_max, -90 <= Dec <= 90."""
    checks = ((ra, names[0], 0.0, ra_max, False), (dec, names[1], -90.0, 90.0, True))
    for values, name, low, high, closed in checks:
        missing = np.isnan(values)
        if missing.any():
            _fail(path, int(scan()[1][np.argmax(missing)]), name, "missing coordinate (NaN)")
        outside = (values < low) | ((values > high) if closed else (values >= high))
        if outside.any():
            row = int(np.argmax(outside))
            unit = ra_unit if name == names[0] else "deg"
            bracket = "]" if closed else ")"
            expected = f"[{low:g}, {high:g}{bracket} {unit}"
            _fail(
                path,
                int(scan()[1][row]),
                name,
                f"expected a coordinate in {expected}, found {float(values[row])!r}",
            )


def _header_scan(path: Path, *, sep: str | None, required: Sequence[str]) -> tuple[list[str], Scan]:
    """Scan a file with a header: check every line's field count and the required columns.

    Returns the column names (blank names replaced by ``_unnamed_<i>``) and the scan result as a :data:`Scan`.
    """
    header, n_skip, lines = _scan(path, sep=sep, n_fields=None)
    if header is None:
        _fail(path, None, None, "the file is empty (expected a header line)")
    seen: set[str] = set()
    for name in header:
        if name and name in seen:
            _fail(path, n_skip, name, "the header names this column twice")
        seen.add(name)
    missing = [name for name in required if name not in seen]
    if missing:
        _fail(path, None, None, f"missing required column(s) {missing} in the header")
    return [name or f"_unnamed_{i}" for i, name in enumerate(header)], lambda: (n_skip, lines)


def _lazy_scan(path: Path, *, sep: str | None, n_fields: int) -> Scan:
    """Return a :data:`Scan` that reads the file's lines only when first called.

    An error needs line numbers.
    """
    return functools.cache(lambda: _scan(path, sep=sep, n_fields=n_fields)[1:])


# --------------------------------------------------------------------------------------------------- GSWLC-2


def read_gswlc(path: str | Path) -> pd.DataFrame:
    """Read one GSWLC-2 file (X2, A2, M2 or D2; plain or gzipped).

    Parameters
    ----------
    path : str or Path
        Whitespace-separated text without a header, 24 columns (:data:`GSWLC`), gzip detected by
        content.

    Returns
    -------
    pandas.DataFrame
        One row per line, the 24 columns of :data:`GSWLC` in file order: ``objid`` int64 (SDSS DR8+
        photometric id); the other integer columns as nullable ``Int64``; the rest float64 (``ra``, ``dec`` in
        deg, ``z``, ``chi2_r`` the reduced chi2 of the SED fit, ``log_mstar`` and ``log_mstar_err`` in dex of
        M_sun, ...). -99 becomes missing (``<NA>`` / NaN).

    Raises
    ------
    InputDataError
        Missing file, a line without 24 fields, a non-numeric or non-integer field, a duplicate ``objid``, or
        a missing (-99) or impossible coordinate; the message names the file, line and field.
    """
    path = Path(path)
    names = list(GSWLC.names)
    kinds = GSWLC.kinds()
    scan = _lazy_scan(path, sep=None, n_fields=len(names))
    columns = _parse_columns(path, sep=GSWLC.sep, names=names, kinds=kinds, scan=scan)
    out: dict[str, Any] = {}
    for name, kind in kinds.items():
        values = columns[name]
        if kind == "float":
            values[values == GSWLC_MISSING] = np.nan
        elif name != "objid":
            nullable = pd.array(values, dtype="Int64")
            nullable[values == GSWLC_MISSING] = pd.NA
            values = nullable
        out[name] = values
    table = pd.DataFrame(out)
    _unique_ids(table["objid"].to_numpy(), "objid", path, scan)
    _coordinates(table["ra"].to_numpy(), table["dec"].to_numpy(), ("ra", "dec"), path, scan)
    return table


def find_gswlc_files(directory: str | Path) -> dict[str, Path]:
    """GSWLC-2 files in ``directory``: version (``"X2"``, ...) -> path (``GSWLC-X2.dat`` or ``.dat.gz``).

    Raises
    ------
    InputDataError
        If a version is present both plain and gzipped (which one to read would be a guess).
    """
    directory = Path(directory)
    found: dict[str, Path] = {}
    for version in GSWLC_VERSIONS:
        candidates = [
            p
            for p in (directory / gswlc_file_name(version), directory / f"{gswlc_file_name(version)}.gz")
            if p.is_file()
        ]
        if len(candidates) > 1:
            msg = f"{directory}: both {candidates[0].name} and {candidates[1].name} exist; keep one of them"
            raise InputDataError(msg)
        if candidates:
            found[version] = candidates[0]
    return found


def read_gswlc_dir(directory: str | Path) -> tuple[pd.DataFrame, list[Path]]:
    """Read the GSWLC-2 catalogue from ``raw/gswlc/``, whichever of X2, D2, M2 and A2 are there.

    X2 (the combined catalogue) is read alone when present. Otherwise the versions present are combined, the
    deepest first: a galaxy listed in several keeps its row from the deepest UV survey (as X2 does).

    Parameters
    ----------
    directory : str or Path

    Returns
    -------
    table : pandas.DataFrame
        As :func:`read_gswlc`, with a ``gswlc_version`` column (``"X2"``, ``"D2"``, ...).
    paths : list of Path
        The files read.

    Raises
    ------
    InputDataError
        No GSWLC-2 file in the directory, or any error of :func:`read_gswlc`.
    """
    directory = Path(directory)
    found = find_gswlc_files(directory)
    if not found:
        msg = f"{directory}: no GSWLC-2 file (expected GSWLC-X2.dat, -D2, -M2 or -A2, optionally .gz)"
        raise InputDataError(msg)
    versions = ["X2"] if "X2" in found else list(found)
    if "X2" in found and len(found) > 1:
        others = ", ".join(v for v in found if v != "X2")
        logger.info("GSWLC-2: reading X2 (it combines %s, which are not read)", others)
    parts = []
    for version in versions:
        part = read_gswlc(found[version])
        part.insert(len(part.columns), "gswlc_version", version)
        parts.append(part)
    table = pd.concat(parts, ignore_index=True)
    duplicated = table["objid"].duplicated(keep="first").to_numpy()
    if duplicated.any():
        logger.info("GSWLC-2: %d galaxies in several versions keep their deepest-UV row", duplicated.sum())
        table = table[~duplicated].reset_index(drop=True)
    return table, [found[v] for v in versions]


# ------------------------------------------------------------------------------------------------- HyperLeda


def read_hyperleda(path: str | Path) -> pd.DataFrame:
    """Read a HyperLeda meandata export ('|'-separated, header row, fields may be padded with blanks).

    Parameters
    ----------
    path : str or Path
        Required columns ``pgc``, ``al2000`` (hours), ``de2000`` (deg), ``logd25`` (log of 0.1 arcmin);
        optional ``objname``, ``objtype``, ``e_logd25``, ``logr25``, ``pa``. Other columns are ignored.

    Returns
    -------
    pandas.DataFrame
        ``pgc`` int64; ``objname``, ``objtype`` str (empty when absent); ``ra`` (deg, = 15 al2000), ``dec``
        (deg); ``logd25``, ``d25_arcmin`` (= 0.1 * 10**logd25), ``e_logd25``, ``logr25`` (log major/minor axis
        ratio), ``pa`` (deg), float64, NaN where undefined (an empty or NaN field, or a column the export does
        not have).

    Raises
    ------
    InputDataError
        Missing file or required column, wrong number of fields, a non-numeric field, a duplicate ``pgc``, or
        a missing or impossible coordinate.
    """
    path = Path(path)
    names, scan = _header_scan(path, sep=HYPERLEDA.sep, required=HYPERLEDA.required)
    optional = [c for c in HYPERLEDA.names if c not in HYPERLEDA.required and c in names]
    kinds = HYPERLEDA.kinds([*HYPERLEDA.required, *optional])
    n_skip, lines = scan()
    columns = _parse_columns(
        path, sep=HYPERLEDA.sep, names=names, kinds=kinds, scan=scan, n_skip=n_skip, n_rows=len(lines)
    )
    _coordinates(
        columns["al2000"], columns["de2000"], ("al2000", "de2000"), path, scan, ra_max=24.0, ra_unit="hours"
    )
    _unique_ids(columns["pgc"], "pgc", path, scan)
    n = len(lines)
    table = pd.DataFrame(
        {
            "pgc": columns["pgc"],
            "objname": columns.get("objname", pd.Series([""] * n, dtype=str)),
            "objtype": columns.get("objtype", pd.Series([""] * n, dtype=str)),
            "ra": hours_to_degrees(columns["al2000"]),
            "dec": columns["de2000"],
            "logd25": columns["logd25"],
            "d25_arcmin": d25_arcmin_from_logd25(columns["logd25"]),
        }
    )
    for name in ("e_logd25", "logr25", "pa"):
        table[name] = columns.get(name, np.full(n, np.nan))
    return table


# ---------------------------------------------------------------------------------------------- Galaxy Zoo 2


def read_gz2(
    path: str | Path, *, fraction: str = "weighted_fraction", sum_atol: float = CONDITIONAL_SUM_ATOL
) -> pd.DataFrame:
    """Read the Hart+16 Galaxy Zoo 2 table, selecting its columns by name.

    Parameters
    ----------
    path : str or Path
        CSV with a header (``dr7objid``, ``ra``, ``dec``, ... and ``<task>_<answer>_<suffix>`` per answer).
    fraction : str
        Which per-answer fraction to read (a Hart+16 suffix whose values sum to 1 within each question):
        ``"weighted_fraction"`` (the paper's choice) or ``"fraction"``.
    sum_atol : float
        Tolerance on the per-question sums (the table rounds every fraction).

    Returns
    -------
    pandas.DataFrame
        ``dr7objid`` int64, ``ra``, ``dec`` (deg) and the 37 fractions (conditional: each question's answers
        sum to 1, or are all 0/NaN when nobody was asked it), float64, named as in the file
        (``t01_smooth_or_features_a01_smooth_weighted_fraction``, ...) in :data:`morphomass.gz2.ANSWERS`
        order.

    Raises
    ------
    InputDataError
        Missing file or required column, wrong number of fields, a non-numeric field, a fraction outside
        [0, 1], a question whose fractions neither sum to 1 nor are all zero, a duplicate ``dr7objid``, or a
        missing or impossible coordinate.
    """
    path = Path(path)
    if fraction not in ("weighted_fraction", "fraction"):
        msg = f"fraction must be 'weighted_fraction' or 'fraction', got {fraction!r}"
        raise ValueError(msg)
    fractions = [gz2.hart16_column(a, fraction) for a in gz2.ANSWERS]
    names, scan = _header_scan(path, sep=GZ2.sep, required=[*GZ2.required, *fractions])
    kinds = GZ2.kinds() | {c: "float?" for c in fractions}
    n_skip, lines = scan()
    columns = _parse_columns(
        path, sep=GZ2.sep, names=names, kinds=kinds, scan=scan, n_skip=n_skip, n_rows=len(lines)
    )
    _coordinates(columns["ra"], columns["dec"], ("ra", "dec"), path, scan)
    _unique_ids(columns["dr7objid"], "dr7objid", path, scan)
    values = np.column_stack([columns[c] for c in fractions]) if len(lines) else np.empty((0, len(fractions)))
    outside = (values < 0) | (values > 1)
    if outside.any():
        row, col = np.argwhere(outside)[0]
        _fail(
            path,
            int(lines[row]),
            fractions[col],
            f"expected a fraction in [0, 1], found {float(values[row, col])!r}",
        )
    errors = conditional_sum_errors(values, atol=sum_atol)
    if errors.any():
        row, q = np.argwhere(errors)[0]
        question = gz2.QUESTIONS[q]
        total = np.nansum(values[row, [gz2.answer_index(a.answer_id) for a in question.answers]])
        _fail(
            path,
            int(lines[row]),
            f"{question.prefix}_*_{fraction}",
            f"the {fraction}s of question {question.task} sum to {total:.4f}; expected 1 "
            f"(within {sum_atol}) or 0 when nobody was asked it",
        )
    table = pd.DataFrame(values, columns=fractions)
    table.insert(0, "dec", columns["dec"])
    table.insert(0, "ra", columns["ra"])
    table.insert(0, "dr7objid", columns["dr7objid"])
    return table


# ------------------------------------------------------------------------------------------- SDSS catalogues


def read_photometry(path: str | Path) -> pd.DataFrame:
    """Read the SDSS photometry export (``objID,ra,dec,modelMag_<b>,modelMagErr_<b>``).

    Parameters
    ----------
    path : str or Path
        CSV with a header. A band is read when both its ``modelMag_<b>`` and ``modelMagErr_<b>`` columns
        exist; at least one band must.

    Returns
    -------
    pandas.DataFrame
        ``objid`` int64, ``ra``, ``dec`` (deg), and per band read ``model_mag_<b>`` and ``model_mag_err_<b>``
        (SDSS asinh magnitudes, float64; -9999 becomes NaN). ``DataFrame.attrs["bands"]`` lists the bands.

    Raises
    ------
    InputDataError
        Missing file or columns, wrong number of fields, a non-numeric field, a duplicate ``objID``, or a
        missing or impossible coordinate.
    """
    path = Path(path)
    names, scan = _header_scan(path, sep=PHOTOMETRY.sep, required=PHOTOMETRY.required)
    bands = [b for b in SDSS_BANDS if f"modelMag_{b}" in names and f"modelMagErr_{b}" in names]
    if not bands:
        _fail(path, None, None, "no band has both modelMag_<band> and modelMagErr_<band> columns")
    magnitudes = [f"{kind}_{b}" for b in bands for kind in ("modelMag", "modelMagErr")]
    kinds = PHOTOMETRY.kinds([*PHOTOMETRY.required, *magnitudes])
    n_skip, lines = scan()
    columns = _parse_columns(
        path, sep=PHOTOMETRY.sep, names=names, kinds=kinds, scan=scan, n_skip=n_skip, n_rows=len(lines)
    )
    _coordinates(columns["ra"], columns["dec"], ("ra", "dec"), path, scan)
    _unique_ids(columns["objID"], "objID", path, scan)
    table = pd.DataFrame({"objid": columns["objID"], "ra": columns["ra"], "dec": columns["dec"]})
    for band in bands:
        for kind, name in (("modelMag", "model_mag"), ("modelMagErr", "model_mag_err")):
            values = columns[f"{kind}_{band}"]
            values[values == SDSS_MISSING] = np.nan
            table[f"{name}_{band}"] = values
    table.attrs["bands"] = bands
    return table


def read_stars(path: str | Path) -> pd.DataFrame:
    """Read the point-source catalogue (``objID,ra,dec,type,psfMag_g``; type 6 = STAR).

    Returns
    -------
    pandas.DataFrame
        ``objid`` int64, ``ra``, ``dec`` (deg), ``type`` int64 (always 6), ``psf_mag_g`` (mag, NaN if -9999).

    Raises
    ------
    InputDataError
        Missing file or columns, wrong number of fields, a non-numeric field, a type other than 6, a duplicate
        ``objID``, or a missing or impossible coordinate.
    """
    path = Path(path)
    kinds = STARS.kinds()
    names, scan = _header_scan(path, sep=STARS.sep, required=STARS.required)
    n_skip, lines = scan()
    columns = _parse_columns(
        path, sep=STARS.sep, names=names, kinds=kinds, scan=scan, n_skip=n_skip, n_rows=len(lines)
    )
    _coordinates(columns["ra"], columns["dec"], ("ra", "dec"), path, scan)
    kind = columns["type"]
    if (kind != 6).any():
        row = int(np.argmax(kind != 6))
        _fail(path, int(lines[row]), "type", f"expected 6 (STAR), found {int(kind[row])}")
    _unique_ids(columns["objID"], "objID", path, scan)
    psf_mag = columns["psfMag_g"]
    psf_mag[psf_mag == SDSS_MISSING] = np.nan
    return pd.DataFrame(
        {
            "objid": columns["objID"],
            "ra": columns["ra"],
            "dec": columns["dec"],
            "type": kind,
            "psf_mag_g": psf_mag,
        }
    )


# ---------------------------------------------------------------------------------------------------- writers


def _format_rows(table: pd.DataFrame, formats: Mapping[str, str], sep: str, missing: str = "") -> str:
    """Format ``table``'s columns (in ``formats`` order) into lines; NaN floats become ``missing``."""
    columns = []
    for name, fmt in formats.items():
        values = table[name].to_numpy()
        if fmt == "{:d}":
            columns.append([str(int(v)) for v in values])
        elif fmt == "{}":
            columns.append([str(v) for v in values])
        else:
            columns.append(
                [missing if (isinstance(v, float) and np.isnan(v)) else fmt.format(v) for v in values]
            )
    return "".join(sep.join(row) + "\n" for row in zip(*columns, strict=True))


def _write_csv(path: Path, table: pd.DataFrame, spec: RawFormat) -> None:
    """Write a CSV with a header, the columns of ``spec`` that have a print format printed with it.

    Other columns are printed as pandas does.
    """
    formatted = table.copy()
    for name, fmt in spec.formats(list(table.columns)).items():
        formatted[name] = [fmt.format(v) for v in table[name].to_numpy()]
    buffer = io.StringIO()
    formatted.to_csv(buffer, index=False, lineterminator="\n")
    write_text_atomic(path, buffer.getvalue())


def write_gswlc(path: Path, table: pd.DataFrame) -> None:
    """Write GSWLC-2: whitespace-separated, no header, the 24 columns of :data:`GSWLC` (-99 for missing).

    Parameters
    ----------
    path : Path
        Destination (``raw/gswlc/GSWLC-X2.dat``), written atomically.
    table : pandas.DataFrame
        At least the 24 columns of :data:`GSWLC`; int64 ids, missing values already -99.
    """
    write_text_atomic(path, _format_rows(table, GSWLC.formats(), sep=" "))


def write_hyperleda(path: Path, table: pd.DataFrame) -> None:
    """Write the HyperLeda meandata export: '|'-separated with a header row (SPEC D2).

    Parameters
    ----------
    path : Path
        Destination (``raw/hyperleda.csv``), written atomically.
    table : pandas.DataFrame
        The 9 columns of :data:`HYPERLEDA`, ``al2000`` in hours; NaN prints as an empty (undefined) field.
    """
    header = "|".join(HYPERLEDA.names) + "\n"
    write_text_atomic(path, header + _format_rows(table, HYPERLEDA.formats(), sep="|"))


def write_gz2(path: Path, table: pd.DataFrame) -> None:
    """Write the Hart+16 GZ2 table: CSV with a header row, 9 leading columns then 6 columns per answer.

    SPEC D8.

    Parameters
    ----------
    path : Path
        Destination (``raw/gz2_hart16.csv``), written atomically.
    table : pandas.DataFrame
        Columns in file order; ``ra``, ``dec`` printed as :data:`GZ2` says, the others as pandas does.
    """
    _write_csv(path, table, GZ2)


def write_photometry(path: Path, table: pd.DataFrame) -> None:
    """Write the CasJobs photometry export: ``objID,ra,dec,modelMag_<b>,...,modelMagErr_<b>,...``.

    Parameters
    ----------
    path : Path
        Destination (``raw/sdss_photometry.csv``), written atomically.
    table : pandas.DataFrame
        Columns of :data:`PHOTOMETRY` (the bands present), in file order; -9999 for missing magnitudes.
    """
    _write_csv(path, table, PHOTOMETRY)


def write_stars(path: Path, table: pd.DataFrame) -> None:
    """Write the point-source catalogue: ``objID,ra,dec,type(=6),psfMag_g`` (the priors of SPEC D5).

    Parameters
    ----------
    path : Path
        Destination (``raw/stars.csv``), written atomically.
    table : pandas.DataFrame
        The columns of :data:`STARS`, in file order.
    """
    _write_csv(path, table, STARS)


def write_fits_image(
    path: Path, data: np.ndarray, wcs: WCS, band: str, extra: Mapping[str, object] | None = None
) -> None:
    """Write one image: float32 nanomaggies per pixel, TAN WCS in the primary header, atomically (SPEC D4).

    Parameters
    ----------
    path : Path
        Destination (``raw/images/<band>/<objid>.fits``).
    data : (ny, nx) ndarray
        Nanomaggies per pixel (stored as float32).
    wcs : astropy.wcs.WCS
        The image's celestial WCS (CD matrix or CDELT).
    band : str
        SDSS filter, written as ``FILTER``.
    extra : mapping, optional
        More header cards (key -> value or (value, comment)).
    """
    header = wcs.to_header()
    header["BUNIT"] = ("nanomaggy", "flux per pixel")
    header["FILTER"] = (band, "SDSS filter")
    for key, value in (extra or {}).items():
        header[key] = value
    hdu = fits.PrimaryHDU(data=np.asarray(data, dtype=np.float32), header=header)
    with atomic_path(path) as tmp:
        hdu.writeto(tmp, output_verify="exception")
