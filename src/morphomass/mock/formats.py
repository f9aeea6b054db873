"""Writers for the raw formats of DESIGN §2 (GSWLC-2 .dat, HyperLeda '|' export, Hart+16 CSV, SDSS CSVs, FITS).

Each writer formats a table exactly as the real archive does and writes it atomically. Fixed number formats make the
output byte-for-byte reproducible.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from astropy.io import fits
from astropy.wcs import WCS

from morphomass.workdir import atomic_path, write_text_atomic

__all__ = [
    "GSWLC_COLUMNS",
    "HYPERLEDA_COLUMNS",
    "write_fits_image",
    "write_gswlc",
    "write_gz2",
    "write_hyperleda",
    "write_photometry",
    "write_stars",
]

#: The 24 GSWLC-2 columns in file order (reference/data_formats.md §1.3) with their printf formats.
GSWLC_COLUMNS: dict[str, str] = {
    "objid": "{:d}",
    "glxid": "{:d}",
    "plate": "{:d}",
    "mjd": "{:d}",
    "fiber_id": "{:d}",
    "ra": "{:.6f}",
    "dec": "{:.6f}",
    "z": "{:.6f}",
    "chi2_r": "{:.3f}",
    "log_mstar": "{:.4f}",
    "log_mstar_err": "{:.4f}",
    "log_sfr_sed": "{:.4f}",
    "log_sfr_sed_err": "{:.4f}",
    "a_fuv": "{:.3f}",
    "a_fuv_err": "{:.3f}",
    "a_b": "{:.3f}",
    "a_b_err": "{:.3f}",
    "a_v": "{:.3f}",
    "a_v_err": "{:.3f}",
    "flag_sed": "{:d}",
    "uv_survey": "{:d}",
    "flag_uv": "{:d}",
    "flag_midir": "{:d}",
    "flag_mgs": "{:d}",
}
HYPERLEDA_COLUMNS: dict[str, str] = {
    "pgc": "{:d}",
    "objname": "{}",
    "objtype": "{}",
    "al2000": "{:.7f}",
    "de2000": "{:.6f}",
    "logd25": "{:.2f}",
    "e_logd25": "{:.2f}",
    "logr25": "{:.2f}",
    "pa": "{:.1f}",
}


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


def write_gswlc(path: Path, table: pd.DataFrame) -> None:
    """GSWLC-2: whitespace-separated, no header, 24 columns, int64 ids, -99 for missing values."""
    write_text_atomic(path, _format_rows(table, GSWLC_COLUMNS, sep=" "))


def write_hyperleda(path: Path, table: pd.DataFrame) -> None:
    """HyperLeda meandata export: '|'-separated with a header row; al2000 in hours; empty field when undefined."""
    header = "|".join(HYPERLEDA_COLUMNS) + "\n"
    write_text_atomic(path, header + _format_rows(table, HYPERLEDA_COLUMNS, sep="|"))


def _write_csv(path: Path, table: pd.DataFrame, float_formats: Mapping[str, str]) -> None:
    formatted = table.copy()
    for name, fmt in float_formats.items():
        formatted[name] = [fmt.format(v) for v in table[name].to_numpy()]
    buffer = io.StringIO()
    formatted.to_csv(buffer, index=False, lineterminator="\n")
    write_text_atomic(path, buffer.getvalue())


def write_gz2(path: Path, table: pd.DataFrame) -> None:
    """Hart+16 GZ2 table: CSV with a header row, 9 leading columns then 6 columns per answer."""
    _write_csv(path, table, {"ra": "{:.6f}", "dec": "{:.6f}"})


def write_photometry(path: Path, table: pd.DataFrame) -> None:
    """CasJobs export: objID,ra,dec,modelMag_{u,g,r,i,z},modelMagErr_{u,g,r,i,z}."""
    formats = {"ra": "{:.7f}", "dec": "{:.7f}"}
    formats.update({c: "{:.5f}" for c in table.columns if c.startswith("modelMag")})
    _write_csv(path, table, formats)


def write_stars(path: Path, table: pd.DataFrame) -> None:
    """Point-source catalogue: objID,ra,dec,type(=6),psfMag_g."""
    _write_csv(path, table, {"ra": "{:.7f}", "dec": "{:.7f}", "psfMag_g": "{:.3f}"})


def write_fits_image(
    path: Path, data: np.ndarray, wcs: WCS, band: str, extra: Mapping[str, object] = {}
) -> None:
    """One image: float32 nanomaggies per pixel, TAN WCS (CD matrix) in the primary header, written atomically."""
    header = wcs.to_header()
    header["BUNIT"] = ("nanomaggy", "flux per pixel")
    header["FILTER"] = (band, "SDSS filter")
    for key, value in extra.items():
        header[key] = value
    hdu = fits.PrimaryHDU(data=np.asarray(data, dtype=np.float32), header=header)
    with atomic_path(path) as tmp:
        hdu.writeto(tmp, output_verify="exception")
