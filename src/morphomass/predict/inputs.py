"""The inputs of a prediction: the galaxy catalogue, the image paths and the star catalogue.

The catalogue names each galaxy (``objid``, int64), its position (``ra``, ``dec`` in degrees), its redshift
``z``, its HyperLeda diameter ``d25_arcmin`` and optionally its SDSS ``modelMag_<band>`` magnitudes. Column
names are matched without regard to case (``objID`` is ``objid``). A whole-table problem (unreadable file,
missing column, repeated or non-integer objid) is an error; a bad value in one row is left for the prediction
to flag. Objids are exact 64-bit integers: a CSV's objid column is read as text and parsed without a float
(``"123"`` and ``"123.0"`` are 123); a fraction, scientific notation, a value outside int64 or a float column
holding values above 2^53 (which a float cannot hold exactly) is an error.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from morphomass.config import SDSS_BANDS, CosmologyConfig
from morphomass.errors import InputDataError
from morphomass.photometry import (
    compute_distances_mpc,
    compute_luminosity,
    compute_pixel_kpc,
    flux_from_asinh_mag,
)

__all__ = [
    "CATALOG_COLUMNS",
    "IMAGE_SUFFIXES",
    "derive_quantities",
    "find_images",
    "parse_objids",
    "read_catalog",
    "read_stars",
    "read_table",
]

#: Columns every prediction catalogue must have.
CATALOG_COLUMNS: tuple[str, ...] = ("objid", "ra", "dec", "z", "d25_arcmin")
#: File names tried for a galaxy's image, in order: ``<objid><suffix>``.
IMAGE_SUFFIXES: tuple[str, ...] = (".fits", ".fits.gz", ".fit", ".fts")
#: Magnitudes at or beyond these are SDSS's 'missing' values (-9999, 9999).
_MAG_MISSING_ABS = 99.0
#: An objid written as text: an integer, optionally followed by a decimal point and zeros ("123", "123.0").
_OBJID_TEXT = re.compile(r"\s*([+-]?\d+)(?:\.0*)?\s*")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
#: Beyond this a float64 no longer holds every integer: a float objid column may have been rounded.
_FLOAT_EXACT_MAX = 2**53


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV, Parquet or FITS table (by extension).

    Raises
    ------
    InputDataError
        If the file does not exist, has another extension or cannot be parsed.
    """
    path = Path(path)
    if not path.is_file():
        msg = f"{path}: file not found"
        raise InputDataError(msg)
    suffix = "".join(path.suffixes[-2:]).lower() if path.suffix.lower() == ".gz" else path.suffix.lower()
    try:
        if suffix in (".csv", ".csv.gz"):
            header = pd.read_csv(path, nrows=0).columns
            # objid as text, parsed exactly by read_catalog (a float would round a 64-bit id)
            return pd.read_csv(path, dtype={c: str for c in header if str(c).lower() == "objid"})
        if suffix == ".parquet":
            return pd.read_parquet(path)
        if suffix in (".fits", ".fit", ".fits.gz"):
            from astropy.table import Table

            return Table.read(path).to_pandas()
    except (OSError, ValueError, pd.errors.ParserError) as err:
        msg = f"{path}: cannot read the table ({err})"
        raise InputDataError(msg) from err
    msg = f"{path}: expected a .csv, .parquet or .fits table, got {path.suffix!r}"
    raise InputDataError(msg)


def _plain(value: object) -> object:
    """Return a numpy scalar as the Python value it holds (for readable messages)."""
    return value.item() if isinstance(value, np.generic) else value


def _canonical_columns(frame: pd.DataFrame, where: str) -> pd.DataFrame:
    """Rename the catalogue columns to ``objid, ra, dec, z, d25_arcmin, modelMag_<band>``."""
    wanted = {c: c for c in CATALOG_COLUMNS} | {f"modelmag_{b}": f"modelMag_{b}" for b in SDSS_BANDS}
    renames: dict[str, str] = {}
    for column in frame.columns:
        target = wanted.get(str(column).lower())
        if target is None:
            continue
        if target in renames.values():
            msg = f"{where}: two columns name {target!r} (column names are matched without regard to case)"
            raise InputDataError(msg)
        renames[column] = target
    return frame.rename(columns=renames)[list(renames.values())]


def _separator_hint(frame: pd.DataFrame) -> str:
    """Return a hint when the header looks like another separator than the comma ('' otherwise)."""
    header = " ".join(str(c) for c in frame.columns)
    for separator, name in ((";", "semicolons"), ("\t", "tabs")):
        if separator in header:
            return (
                f"; the header holds {name}: the file looks {name[:-1]}-separated, and a CSV must use commas"
            )
    return ""


def _objid_error(where: str, row: int, value: object, expected: str) -> InputDataError:
    return InputDataError(f"{where} row {row}: objid must be {expected}, got {_plain(value)!r}")


def _objid_from_value(value: object, where: str, row: int) -> int:
    """Return one objid as an exact Python int (text is parsed, never through a float)."""
    if isinstance(value, bool | np.bool_):
        raise _objid_error(where, row, value, "an integer")
    if isinstance(value, int | np.integer):
        number = int(value)
    elif isinstance(value, float | np.floating):
        if not (math.isfinite(value) and value == round(value)):
            raise _objid_error(where, row, value, "an integer")
        if abs(value) > _FLOAT_EXACT_MAX:
            raise _objid_error(
                where, row, value, f"an integer (a float above 2^53 = {_FLOAT_EXACT_MAX} is not exact)"
            )
        number = int(value)
    elif isinstance(value, str | bytes):
        text = value.decode("ascii", errors="replace") if isinstance(value, bytes) else value
        match = _OBJID_TEXT.fullmatch(text)
        if match is None:
            expected = (
                "an integer written in full digits (no scientific notation, which rounds a 64-bit id)"
                if "e" in text.lower()
                else "an integer"
            )
            raise _objid_error(where, row, text, expected)
        number = int(match.group(1))
    else:
        raise _objid_error(where, row, value, "an integer")
    if not _INT64_MIN <= number <= _INT64_MAX:
        raise _objid_error(where, row, value, "a 64-bit signed integer (-2^63 to 2^63 - 1)")
    return number


def parse_objids(column: pd.Series, *, where: str) -> np.ndarray:
    """Return a catalogue's objid column as exact 64-bit integers.

    Parameters
    ----------
    column : pandas.Series
        Integers, or text (``"123"`` and ``"123.0"`` are 123), or floats holding whole numbers up to 2^53.
    where : str
        The table's name for the messages.

    Returns
    -------
    (n,) ndarray of int64

    Raises
    ------
    InputDataError
        Naming the row, for a missing, fractional, scientific-notation or out-of-int64 value; naming the
        column, for a float column holding values above 2^53 (beyond which a float rounds the id).
    """
    values = column.to_numpy()
    if values.dtype.kind == "f":
        big = np.abs(values) > _FLOAT_EXACT_MAX
        if big.any():
            row = int(np.flatnonzero(big)[0])
            msg = (
                f"{where}: the objid column holds floating-point numbers ({values.dtype}) with values "
                f"above 2^53 (row {row}: {_plain(values[row])!r}), which a float cannot hold exactly; store "
                "objid as an integer or text column"
            )
            raise InputDataError(msg)
    if values.dtype.kind == "i":
        return values.astype(np.int64)
    return np.array([_objid_from_value(v, where, i) for i, v in enumerate(values)], dtype=np.int64)


def read_catalog(source: str | Path | pd.DataFrame) -> pd.DataFrame:
    """Read and check a prediction catalogue.

    Parameters
    ----------
    source : str, Path or pandas.DataFrame
        A CSV, Parquet or FITS file, or a table already in memory.

    Returns
    -------
    pandas.DataFrame
        ``objid`` (int64), ``ra``, ``dec``, ``z``, ``d25_arcmin`` and the ``modelMag_<band>`` columns present
        (float64; SDSS's -9999 and other values beyond +-99 become NaN), in the source's row order.

    Raises
    ------
    InputDataError
        If the file cannot be read, a required column is missing, a value is not a number, or ``objid`` is
        missing, not an integer or repeated (the message names the row).
    """
    where = "catalogue" if isinstance(source, pd.DataFrame) else str(source)
    raw = source if isinstance(source, pd.DataFrame) else read_table(source)
    frame = _canonical_columns(raw, where).reset_index(drop=True)
    missing = [c for c in CATALOG_COLUMNS if c not in frame.columns]
    if missing:
        msg = (
            f"{where}: missing column(s) {missing}; expected {list(CATALOG_COLUMNS)} (+ modelMag_<band>)"
            f"{_separator_hint(raw)}"
        )
        raise InputDataError(msg)
    out = pd.DataFrame(index=frame.index)
    out["objid"] = parse_objids(frame["objid"], where=where)
    repeated = out["objid"].duplicated()
    if repeated.any():
        row = int(np.flatnonzero(repeated.to_numpy())[0])
        twice = int(out["objid"].iloc[row])
        msg = f"{where} row {row}: objid {twice} appears more than once; objid must be unique"
        raise InputDataError(msg)
    for column in frame.columns:
        if column == "objid":
            continue
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = values.isna() & frame[column].notna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            msg = (
                f"{where} row {row} (objid {int(out['objid'].iloc[row])}): {column} must be a number, "
                f"got {_plain(frame[column].iloc[row])!r}"
            )
            raise InputDataError(msg)
        values = values.astype(np.float64)
        if column.startswith("modelMag_"):
            values = values.where(values.abs() < _MAG_MISSING_ABS)
        out[column] = values
    return out


def derive_quantities(
    catalog: pd.DataFrame,
    *,
    cosmology: CosmologyConfig,
    m_sun_ab: Mapping[str, float],
    ab_offset_mag: Mapping[str, float],
    pixel_scale_arcsec: float,
) -> pd.DataFrame:
    """Distances, pixel size, fluxes and luminosities, with the catalogue's functions (SPEC D7, F3).

    Parameters
    ----------
    catalog : pandas.DataFrame
        From :func:`read_catalog`.
    cosmology : CosmologyConfig
        The bundle's distance convention.
    m_sun_ab, ab_offset_mag : mapping of band to float
        The Sun's absolute AB magnitude and the AB offset of SDSS magnitudes per band.
    pixel_scale_arcsec : float
        Pixel scale the training used for ``pixel_kpc``.

    Returns
    -------
    pandas.DataFrame
        A copy with ``dist_mpc`` (luminosity distance, Mpc), ``pixel_kpc`` and, per ``modelMag_<band>``,
        ``flux_<band>`` (nanomaggies, AB) and ``lum_<band>`` (L_sun in the band); NaN where z is not a
        positive finite number.
    """
    out = catalog.copy()
    z = out["z"].to_numpy(np.float64)
    valid = np.isfinite(z) & (z > 0)
    dist_lum = np.full(len(out), np.nan)
    dist_ang = np.full(len(out), np.nan)
    if valid.any():
        dist_lum[valid], dist_ang[valid] = compute_distances_mpc(
            z[valid], convention=cosmology.convention, h0_km_s_mpc=cosmology.h0_km_s_mpc, om0=cosmology.om0
        )
    out["dist_mpc"] = dist_lum
    out["pixel_kpc"] = compute_pixel_kpc(dist_ang, pixel_scale_arcsec=pixel_scale_arcsec)
    for band in SDSS_BANDS:
        if f"modelMag_{band}" not in out.columns:
            continue
        flux = flux_from_asinh_mag(out[f"modelMag_{band}"], band, ab_offset_mag=ab_offset_mag[band])
        out[f"flux_{band}"] = flux
        out[f"lum_{band}"] = compute_luminosity(flux, dist_lum, m_sun_ab=m_sun_ab[band])
    return out


def find_images(
    images: str | Path | Mapping[int, str | Path], objids: np.ndarray, *, band: str
) -> list[Path | None]:
    """Return the image path of each galaxy (None, or a path that does not exist, means a missing image).

    Parameters
    ----------
    images : str, Path or mapping
        A folder holding ``<objid>.fits`` (or ``.fits.gz``, ``.fit``, ``.fts``), directly or in a ``<band>/``
        sub-folder; or a mapping objid -> path.
    objids : (n,) ndarray of int64
    band : str
        The bundle's image band.

    Returns
    -------
    list of Path or None
        One per objid, in order; None where a mapping has no entry.

    Raises
    ------
    InputDataError
        If ``images`` is neither a mapping nor an existing folder.
    """
    if isinstance(images, Mapping):
        lookup = {int(k): Path(v) for k, v in images.items()}
        return [lookup.get(int(objid)) for objid in objids]
    folder = Path(images)
    if not folder.is_dir():
        msg = f"{folder}: expected a folder of FITS images (<objid>.fits or {band}/<objid>.fits)"
        raise InputDataError(msg)
    if (folder / band).is_dir():
        folder = folder / band
    present = {p.name for p in folder.iterdir()}
    paths: list[Path | None] = []
    for objid in objids:
        names = [f"{int(objid)}{suffix}" for suffix in IMAGE_SUFFIXES]
        paths.append(folder / next((n for n in names if n in present), names[0]))
    return paths


def read_stars(source: str | Path | pd.DataFrame | None) -> pd.DataFrame:
    """Return the point-source priors of the star subtraction: ``ra``, ``dec`` in degrees.

    Empty without a source.

    Parameters
    ----------
    source : str, Path, pandas.DataFrame or None
        A table with ``ra`` and ``dec`` (and ``type``: only rows with type 6, SDSS stars, are kept), e.g. the
        ``raw/stars.csv`` of DESIGN §2.

    Raises
    ------
    InputDataError
        If the file cannot be read or lacks ``ra`` or ``dec``.
    """
    if source is None:
        return pd.DataFrame({"ra": np.empty(0), "dec": np.empty(0)})
    where = "star catalogue" if isinstance(source, pd.DataFrame) else str(source)
    frame = source if isinstance(source, pd.DataFrame) else read_table(source)
    columns = {str(c).lower(): c for c in frame.columns}
    missing = [c for c in ("ra", "dec") if c not in columns]
    if missing:
        msg = (
            f"{where}: missing column(s) {missing}; expected ra, dec (degrees) and optionally type"
            f"{_separator_hint(frame)}"
        )
        raise InputDataError(msg)
    if "type" in columns:
        frame = frame[pd.to_numeric(frame[columns["type"]], errors="coerce") == 6]
    stars = pd.DataFrame(
        {
            "ra": pd.to_numeric(frame[columns["ra"]], errors="coerce"),
            "dec": pd.to_numeric(frame[columns["dec"]], errors="coerce"),
        }
    ).astype(np.float64)
    return stars[np.isfinite(stars).all(axis=1)].reset_index(drop=True)
