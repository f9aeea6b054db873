"""The prediction inputs (catalogue, images, stars), the range flags and the output writers (no models)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from astropy.table import Table

from morphomass.config import CosmologyConfig
from morphomass.errors import InputDataError
from morphomass.predict import write_predictions
from morphomass.predict.inputs import derive_quantities, find_images, read_catalog, read_stars
from morphomass.predict.predictor import FLAGS, range_flags


def _catalog(**extra: list) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "objID": [3, 1],
            "RA": [150.0, 151.0],
            "Dec": [2.0, 3.0],
            "z": [0.05, 0.1],
            "d25_arcmin": [0.6, np.nan],
            **extra,
        }
    )


def test_read_catalog_matches_names_without_case_and_blanks_sdss_missing_magnitudes() -> None:
    table = read_catalog(_catalog(modelMag_g=[17.0, -9999.0], MODELMAG_I=[16.2, 16.5], other=["x", "y"]))
    assert list(table.columns) == ["objid", "ra", "dec", "z", "d25_arcmin", "modelMag_g", "modelMag_i"]
    assert table["objid"].dtype == np.int64
    assert table["objid"].tolist() == [3, 1]  # source order kept
    assert table["modelMag_g"].iloc[0] == 17.0
    assert math.isnan(table["modelMag_g"].iloc[1])
    assert math.isnan(table["d25_arcmin"].iloc[1])


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".fits"])
def test_read_catalog_reads_every_table_format(tmp_path: Path, suffix: str) -> None:
    frame = _catalog(modelMag_g=[17.0, 18.0])
    path = tmp_path / f"cat{suffix}"
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix == ".parquet":
        frame.to_parquet(path)
    else:
        Table.from_pandas(frame).write(path)
    table = read_catalog(path)
    assert table["objid"].tolist() == [3, 1]
    assert table["modelMag_g"].tolist() == [17.0, 18.0]


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda f: f.drop(columns="z"), r"missing column\(s\) \['z'\]"),
        (lambda f: f.assign(objID=[3, 3]), "row 1: objid 3 appears more than once"),
        (lambda f: f.assign(objID=[3.5, 1.0]), "row 0: objid must be an integer, got 3.5"),
        (lambda f: f.assign(objID=[3, None]), "row 1: objid must be an integer"),
        (lambda f: f.assign(z=["0.1", "high"]), r"row 1 \(objid 1\): z must be a number, got 'high'"),
        (lambda f: f.assign(ra_deg=f["RA"], Ra=f["RA"]), "two columns name 'ra'"),
    ],
)
def test_read_catalog_errors_name_the_row_and_field(change, match: str) -> None:
    with pytest.raises(InputDataError, match=match):
        read_catalog(change(_catalog()))


_HEADER = "objid,ra,dec,z,d25_arcmin\n"


@pytest.mark.parametrize(
    ("text", "objid"),
    [
        ("1237648654460491285", 1237648654460491285),  # beyond 2^53: a float would make it ...284 or ...288
        ("1237648654460491285.0", 1237648654460491285),
        ("123.", 123),
        (" -7 ", -7),
        ("9223372036854775807", 2**63 - 1),
    ],
)
def test_read_catalog_reads_csv_objids_as_exact_integers(tmp_path: Path, text: str, objid: int) -> None:
    path = tmp_path / "cat.csv"
    path.write_text(f"{_HEADER}{text},150.0,2.0,0.05,0.6\n")
    assert read_catalog(path)["objid"].tolist() == [objid]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("1237648654460491285.5", r"row 1: objid must be an integer, got '1237648654460491285\.5'"),
        ("1.2376486544604913e18", r"row 1: objid must be an integer written in full digits \(no scientific"),
        (
            "18446744073709551615",
            r"row 1: objid must be a 64-bit signed integer .*got '18446744073709551615'",
        ),
        ("", "row 1: objid must be an integer, got nan"),
    ],
)
def test_read_catalog_refuses_csv_objids_that_are_not_exact(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "cat.csv"
    path.write_text(f"{_HEADER}5,150.0,2.0,0.05,0.6\n{text},150.0,2.0,0.05,0.6\n")
    with pytest.raises(InputDataError, match=match):
        read_catalog(path)


@pytest.mark.parametrize("suffix", [".parquet", ".fits"])
def test_read_catalog_refuses_a_float_objid_column_above_2_53(tmp_path: Path, suffix: str) -> None:
    frame = _catalog().assign(objID=[3.0, 1237648654460491285.0])
    path = tmp_path / f"cat{suffix}"
    frame.to_parquet(path) if suffix == ".parquet" else Table.from_pandas(frame).write(path)
    with pytest.raises(
        InputDataError, match=r"objid column holds floating-point numbers \(float64\) with values "
    ):
        read_catalog(path)
    assert read_catalog(frame.assign(objID=[3.0, 2.0**52]))["objid"].tolist() == [3, 2**52]  # exact: accepted
    uint = pd.DataFrame({"objid": np.array([2**64 - 1], dtype=np.uint64), "ra": [1.0], "dec": [1.0]})
    with pytest.raises(InputDataError, match=r"row 0: objid must be a 64-bit signed integer"):
        read_catalog(uint.assign(z=[0.1], d25_arcmin=[1.0]))


@pytest.mark.parametrize(("separator", "name"), [(";", "semicolons"), ("\t", "tabs")])
def test_a_catalogue_with_another_separator_gets_a_hint(tmp_path: Path, separator: str, name: str) -> None:
    path = tmp_path / "cat.csv"
    _catalog().to_csv(path, index=False, sep=separator)
    with pytest.raises(
        InputDataError, match=rf"missing column\(s\) .*the header holds {name}: the file looks"
    ):
        read_catalog(path)
    with pytest.raises(
        InputDataError, match=rf"missing column\(s\) \['ra', 'dec'\].*the header holds {name}"
    ):
        read_stars(path)


def test_read_table_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(InputDataError, match=r"nope\.csv: file not found"):
        read_catalog(tmp_path / "nope.csv")
    (tmp_path / "cat.txt").write_text("objid\n1\n")
    with pytest.raises(InputDataError, match=r"cat\.txt: expected a \.csv, \.parquet or \.fits table"):
        read_catalog(tmp_path / "cat.txt")
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(InputDataError, match=r"bad\.parquet: cannot read the table"):
        read_catalog(tmp_path / "bad.parquet")


def test_derive_quantities_gives_the_textbook_luminosity() -> None:
    """Paper convention D = c z / H0: L_g from the distance modulus, and the pixel size from the distance."""
    catalog = read_catalog(_catalog(modelMag_g=[17.0, 16.0]))
    catalog.loc[1, "z"] = -1.0
    out = derive_quantities(
        catalog,
        cosmology=CosmologyConfig(convention="paper", h0_km_s_mpc=70.0),
        m_sun_ab={"g": 5.11},
        ab_offset_mag={"g": 0.0},
        pixel_scale_arcsec=0.4,
    )
    dist = 3e5 * 0.05 / 70.0
    absolute = 17.0 - 5 * np.log10(dist * 1e6 / 10.0)
    assert out["dist_mpc"].iloc[0] == pytest.approx(dist)
    assert out["lum_g"].iloc[0] == pytest.approx(10 ** (-0.4 * (absolute - 5.11)), rel=1e-5)
    assert out["flux_g"].iloc[0] == pytest.approx(10 ** (-0.4 * (17.0 - 22.5)), rel=1e-5)
    assert out["pixel_kpc"].iloc[0] == pytest.approx(dist * 1e3 * 0.4 / 206264.806, rel=1e-6)
    assert np.isnan(out.loc[1, ["dist_mpc", "pixel_kpc", "lum_g"]].to_numpy(float)).all()  # z <= 0


def test_find_images_prefers_the_band_folder_and_known_suffixes(tmp_path: Path) -> None:
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "1.fits.gz").write_bytes(b"")
    (tmp_path / "g" / "2.fits").write_bytes(b"")
    (tmp_path / "5.fits").write_bytes(b"")  # outside the band folder: not used
    paths = find_images(tmp_path, np.array([1, 2, 5]), band="g")
    assert paths[0] == tmp_path / "g" / "1.fits.gz"
    assert paths[1] == tmp_path / "g" / "2.fits"
    assert paths[2] == tmp_path / "g" / "5.fits"
    assert not paths[2].exists()
    assert find_images(tmp_path, np.array([5]), band="r") == [tmp_path / "5.fits"]
    assert find_images({1: "a.fits"}, np.array([1, 2]), band="g") == [Path("a.fits"), None]
    with pytest.raises(InputDataError, match="expected a folder of FITS images"):
        find_images(tmp_path / "none", np.array([1]), band="g")


def test_read_stars_keeps_type_6_and_needs_positions(tmp_path: Path) -> None:
    path = tmp_path / "stars.csv"
    pd.DataFrame(
        {"objID": [1, 2, 3], "ra": [1.0, 2.0, 3.0], "dec": [0.0, 0.0, np.nan], "type": [6, 3, 6]}
    ).to_csv(path, index=False)
    stars = read_stars(path)
    assert stars.to_numpy().tolist() == [[1.0, 0.0]]
    assert read_stars(None).shape == (0, 2)
    with pytest.raises(InputDataError, match=r"missing column\(s\) \['dec'\]"):
        read_stars(pd.DataFrame({"ra": [1.0]}))


def test_range_flags_name_each_quantity_once() -> None:
    ranges = {
        "z": [0.02, 0.1],
        "d25_arcmin": [0.4, 2.0],
        "flux_g_nmgy": [10.0, 1e4],
        "flux_i_nmgy": [10.0, 1e4],
    }
    assert range_flags({"z": 0.05, "d25_arcmin": 1.0, "flux_g_nmgy": 100.0}, ranges) == []
    flags = range_flags({"z": 0.2, "d25_arcmin": np.nan, "flux_g_nmgy": 1.0, "flux_i_nmgy": 1e5}, ranges)
    assert [f for f, _ in flags] == ["z_outside_training", "flux_outside_training"]
    assert "z=0.2 outside the training range [0.02, 0.1]" in flags[0][1]
    assert all(f in FLAGS for f, _ in flags)
    assert range_flags({"z": 5.0}, {}) == []  # no recorded range: nothing to check


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".fits"])
def test_write_predictions_round_trips(tmp_path: Path, suffix: str) -> None:
    table = pd.DataFrame(
        {
            "objid": np.array([2**60, 7], dtype=np.int64),
            "ml_pred": [1.5, np.nan],
            "model": ["gi", ""],
            "flags": ["", "missing_image"],
        }
    )
    path = write_predictions(table, tmp_path / f"out{suffix}")
    back = (
        pd.read_csv(path, keep_default_na=False, na_values=[""])
        if suffix == ".csv"
        else (pd.read_parquet(path) if suffix == ".parquet" else Table.read(path).to_pandas())
    )
    assert back["objid"].astype(np.int64).tolist() == [2**60, 7]
    assert back["ml_pred"].iloc[0] == 1.5
    assert np.isnan(back["ml_pred"].iloc[1])
    text = [v.decode() if isinstance(v, bytes) else v if isinstance(v, str) else "" for v in back["flags"]]
    assert text == ["", "missing_image"]  # FITS and CSV read an empty string back as missing
    assert not list(tmp_path.glob(".tmp-*"))


def test_write_predictions_refuses_other_formats(tmp_path: Path) -> None:
    with pytest.raises(InputDataError, match=r"out\.xlsx: expected a \.csv, \.parquet, \.fits file name"):
        write_predictions(pd.DataFrame({"objid": [1]}), tmp_path / "out.xlsx")
