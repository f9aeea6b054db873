"""The raw-file specifications: each writer's output is read back by its reader.

The readers' malformed-input cases are in tests/catalog/test_catalog_readers.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from morphomass.rawformats import (
    GSWLC,
    HYPERLEDA,
    PHOTOMETRY,
    STARS,
    read_gswlc,
    read_hyperleda,
    read_photometry,
    read_stars,
    write_fits_image,
    write_gswlc,
    write_hyperleda,
    write_photometry,
    write_stars,
)

BIG_ID = 1237662301367173202


def test_specifications_list_the_columns_of_design_section_2() -> None:
    assert len(GSWLC.names) == 24 and GSWLC.names[:2] == ("objid", "glxid")
    assert GSWLC.kinds()["objid"] == "int" and GSWLC.formats()["chi2_r"] == "{:.3f}"
    assert HYPERLEDA.names == (
        "pgc",
        "objname",
        "objtype",
        "al2000",
        "de2000",
        "logd25",
        "e_logd25",
        "logr25",
        "pa",
    )
    assert PHOTOMETRY.names[:4] == ("objID", "ra", "dec", "modelMag_u")
    assert STARS.names == ("objID", "ra", "dec", "type", "psfMag_g")


def test_gswlc_round_trip(tmp_path: Path) -> None:
    table = pd.DataFrame({name: np.full(2, 1) for name in GSWLC.names})
    table = table.astype({name: float for name, kind in GSWLC.kinds().items() if kind == "float"})
    table["objid"] = [BIG_ID, BIG_ID + 1]
    table["glxid"] = -99
    table["ra"], table["dec"], table["z"], table["log_mstar"] = 150.1234567, -2.5, 0.0512344, -99.0
    write_gswlc(tmp_path / "GSWLC-X2.dat", table)
    line = (tmp_path / "GSWLC-X2.dat").read_text().splitlines()[0].split(" ")
    assert line[0] == str(BIG_ID) and line[5] == "150.123457" and line[9] == "-99.0000"
    back = read_gswlc(tmp_path / "GSWLC-X2.dat")
    assert back["objid"].tolist() == [BIG_ID, BIG_ID + 1]
    assert back["glxid"].isna().all() and back["log_mstar"].isna().all()
    assert back["z"].tolist() == [0.051234, 0.051234]


def test_hyperleda_round_trip_converts_hours_and_logd25(tmp_path: Path) -> None:
    table = pd.DataFrame(
        {
            "pgc": [12, 13],
            "objname": ["PGC0000012", "NGC 1"],
            "objtype": "G",
            "al2000": [10.0, 23.5],
            "de2000": [2.0, -3.0],
            "logd25": [0.7, np.nan],
            "e_logd25": 0.05,
            "logr25": 0.1,
            "pa": [45.0, np.nan],
        }
    )
    write_hyperleda(tmp_path / "hyperleda.csv", table)
    text = (tmp_path / "hyperleda.csv").read_text().splitlines()
    assert text[0] == "|".join(HYPERLEDA.names)
    assert text[2] == "13|NGC 1|G|23.5000000|-3.000000||0.05|0.10|"
    back = read_hyperleda(tmp_path / "hyperleda.csv")
    assert back["ra"].tolist() == [150.0, 352.5]
    assert back["d25_arcmin"].iloc[0] == pytest.approx(0.1 * 10**0.7)
    assert np.isnan(back["d25_arcmin"].iloc[1])


def test_photometry_and_stars_round_trip(tmp_path: Path) -> None:
    photometry = pd.DataFrame({"objID": [BIG_ID], "ra": [1.0], "dec": [2.0]})
    for band in "ugriz":
        photometry[f"modelMag_{band}"] = 17.123456
    for band in "ugriz":
        photometry[f"modelMagErr_{band}"] = -9999.0
    write_photometry(tmp_path / "sdss_photometry.csv", photometry)
    assert (
        (tmp_path / "sdss_photometry.csv")
        .read_text()
        .splitlines()[1]
        .startswith(f"{BIG_ID},1.0000000,2.0000000,17.12346,")
    )
    back = read_photometry(tmp_path / "sdss_photometry.csv")
    assert back["objid"].tolist() == [BIG_ID] and np.isnan(back["model_mag_err_g"].iloc[0])
    stars = pd.DataFrame({"objID": [5, 6], "ra": [1.0, 1.1], "dec": [2.0, 2.1], "type": 6, "psfMag_g": 18.0})
    write_stars(tmp_path / "stars.csv", stars)
    assert read_stars(tmp_path / "stars.csv")["psf_mag_g"].tolist() == [18.0, 18.0]


def test_fits_image_writer_keeps_float32_nanomaggies_and_extra_cards(tmp_path: Path) -> None:
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [150.0, 2.0]
    wcs.wcs.crpix = [3.0, 3.0]
    wcs.wcs.cd = [[-0.396 / 3600, 0.0], [0.0, 0.396 / 3600]]
    path = tmp_path / "g" / "1.fits"
    path.parent.mkdir()
    write_fits_image(path, np.ones((5, 5)), wcs, "g")
    write_fits_image(tmp_path / "g" / "2.fits", np.ones((5, 5)), wcs, "g", {"MOCKSEED": "7"})
    with fits.open(path) as hdul:
        assert hdul[0].data.dtype == np.dtype(">f4") and hdul[0].header["BUNIT"] == "nanomaggy"
        assert "MOCKSEED" not in hdul[0].header  # the default ``extra`` is not shared between calls
    assert fits.getheader(tmp_path / "g" / "2.fits")["MOCKSEED"] == "7"
