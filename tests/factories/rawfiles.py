"""Helpers of the catalogue tests: small raw files in the real formats (DESIGN §2), written by the tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from morphomass import gz2
from morphomass.workdir import WorkDir

GSWLC_NAMES = [
    "objid",
    "glxid",
    "plate",
    "mjd",
    "fiber_id",
    "ra",
    "dec",
    "z",
    "chi2_r",
    "log_mstar",
    "log_mstar_err",
    "log_sfr_sed",
    "log_sfr_sed_err",
    "a_fuv",
    "a_fuv_err",
    "a_b",
    "a_b_err",
    "a_v",
    "a_v_err",
    "flag_sed",
    "uv_survey",
    "flag_uv",
    "flag_midir",
    "flag_mgs",
]
HYPERLEDA_HEADER = "pgc|objname|objtype|al2000|de2000|logd25|e_logd25|logr25|pa"
PHOTOMETRY_HEADER = (
    "objID,ra,dec,modelMag_u,modelMag_g,modelMag_r,modelMag_i,modelMag_z,"
    "modelMagErr_u,modelMagErr_g,modelMagErr_r,modelMagErr_i,modelMagErr_z"
)
STARS_HEADER = "objID,ra,dec,type,psfMag_g"


def gswlc_line(**values: object) -> str:
    """One GSWLC-2 line (24 whitespace-separated fields); ``values`` override the defaults by column name."""
    row: dict[str, object] = {
        "objid": 1237645000000000001,
        "glxid": 6375000000000000001,
        "plate": 266,
        "mjd": 51630,
        "fiber_id": 12,
        "ra": "150.000000",
        "dec": "20.000000",
        "z": "0.050000",
        "chi2_r": "1.200",
        "log_mstar": "10.5000",
        "log_mstar_err": "0.0500",
        "log_sfr_sed": "0.1000",
        "log_sfr_sed_err": "0.1000",
        "a_fuv": "1.000",
        "a_fuv_err": "0.200",
        "a_b": "0.500",
        "a_b_err": "0.100",
        "a_v": "0.400",
        "a_v_err": "0.100",
        "flag_sed": 0,
        "uv_survey": 1,
        "flag_uv": 3,
        "flag_midir": 2,
        "flag_mgs": 1,
    }
    unknown = set(values) - set(row)
    if unknown:
        raise KeyError(unknown)
    row.update(values)
    return " ".join(str(row[name]) for name in GSWLC_NAMES) + "\n"


def offset_position(ra: float, dec: float, east_arcsec: float, north_arcsec: float) -> tuple[float, float]:
    """Position displaced by small angles on the sky (tangent-plane approximation, fine below arcminutes)."""
    return ra + east_arcsec / 3600 / np.cos(np.radians(dec)), dec + north_arcsec / 3600


def gz2_header() -> str:
    return ",".join(gz2.hart16_columns()) + "\n"


def gz2_row(dr7objid: int, ra: float, dec: float, conditional: np.ndarray) -> str:
    """Return a Hart+16 row whose every per-answer column derives from ``conditional`` (37 fractions)."""
    values: list[str] = [
        str(dr7objid),
        f"{ra:.6f}",
        f"{dec:.6f}",
        "10:00:00.00",
        "+20:00:00.0",
        "original",
        "Ei",
        "40",
        "120",
    ]
    for k in range(len(gz2.ANSWERS)):
        frac = f"{conditional[k]:.3f}"
        values += [str(int(round(40 * conditional[k]))), f"{36 * conditional[k]:.3f}", frac, frac, frac, "0"]
    return ",".join(values) + "\n"


def uniform_conditional() -> np.ndarray:
    """Conditional fractions with every question answered uniformly (each sums to 1)."""
    cond = np.zeros(len(gz2.ANSWERS))
    for question in gz2.QUESTIONS:
        for answer in question.answers:
            cond[gz2.answer_index(answer.answer_id)] = 1 / len(question.answers)
    return cond


@dataclass
class Galaxy:
    """One mock galaxy of a hand-made survey and how it appears in each raw file."""

    objid: int
    ra: float = 150.0
    dec: float = 20.0
    z: float = 0.05
    chi2_r: float = 1.2
    log_mstar: float = 10.5
    log_mstar_err: float = 0.05
    logd25: float | None = 0.8  # None: empty logd25 field
    in_hyperleda: bool = True
    leda_offset_arcsec: tuple[float, float] = (0.5, 0.0)
    in_photometry: bool = True
    mag_g: float = 16.0
    magerr_g: float = 0.01
    in_gz2: bool = False
    gz2_offset_arcsec: tuple[float, float] = (0.0, 1.0)
    gz2_conditional: np.ndarray = field(default_factory=uniform_conditional)


def write_survey(root: Path, galaxies: list[Galaxy], *, stars: bool = True) -> WorkDir:
    """Write raw/ for ``galaxies`` in the real formats and return the work directory."""
    workdir = WorkDir(root).ensure()
    workdir.gswlc_dir.mkdir(parents=True, exist_ok=True)
    lines, leda, phot, gz2_lines = [], [HYPERLEDA_HEADER + "\n"], [PHOTOMETRY_HEADER + "\n"], [gz2_header()]
    for k, gal in enumerate(galaxies):
        lines.append(
            gswlc_line(
                objid=gal.objid,
                ra=f"{gal.ra:.6f}",
                dec=f"{gal.dec:.6f}",
                z=f"{gal.z:.6f}",
                chi2_r=f"{gal.chi2_r:.3f}",
                log_mstar=f"{gal.log_mstar:.4f}",
                log_mstar_err=f"{gal.log_mstar_err:.4f}",
            )
        )
        if gal.in_hyperleda:
            ra, dec = offset_position(gal.ra, gal.dec, *gal.leda_offset_arcsec)
            logd25 = "" if gal.logd25 is None else f"{gal.logd25:.2f}"
            leda.append(f"{1000 + k}|PGC{1000 + k:07d}|G|{ra / 15:.9f}|{dec:.7f}|{logd25}|0.05|0.20|45.0\n")
        if gal.in_photometry:
            mags = [gal.mag_g + 1.5, gal.mag_g, gal.mag_g - 0.6, gal.mag_g - 0.9, gal.mag_g - 1.1]
            errs = [0.2, gal.magerr_g, 0.01, 0.01, 0.03]
            fields = [
                str(gal.objid),
                f"{gal.ra:.7f}",
                f"{gal.dec:.7f}",
                *(f"{m:.5f}" for m in mags),
                *(f"{e:.5f}" for e in errs),
            ]
            phot.append(",".join(fields) + "\n")
        if gal.in_gz2:
            ra, dec = offset_position(gal.ra, gal.dec, *gal.gz2_offset_arcsec)
            gz2_lines.append(gz2_row(587722000000000000 + k, ra, dec, gal.gz2_conditional))
    (workdir.gswlc_dir / "GSWLC-X2.dat").write_text("".join(lines))
    workdir.hyperleda.write_text("".join(leda))
    workdir.photometry.write_text("".join(phot))
    workdir.gz2.write_text("".join(gz2_lines))
    if stars:
        workdir.stars.write_text(STARS_HEADER + "\n1237645000000500001,150.01,20.01,6,18.500\n")
    return workdir
