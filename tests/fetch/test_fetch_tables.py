"""Readers of the archives' answers, the SQL the fetcher sends and the choice of the image targets.

The archives: GSWLC-2, HyperLeda, VizieR, SkyServer, Hart+16.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from morphomass import gz2
from morphomass.errors import InputDataError
from morphomass.fetch.archives import copy_selected_lines
from morphomass.fetch.galaxyzoo import REQUIRED_GZ2_COLUMNS, read_gz2_positions
from morphomass.fetch.gswlc import gswlc_url, read_gswlc
from morphomass.fetch.hyperleda import (
    LEDA_FIELDS,
    leda_query,
    parse_leda,
    parse_vizier,
    ra_slices,
    vizier_query,
)
from morphomass.fetch.skyserver import (
    PHOTOMETRY_COLUMNS,
    parse_skyserver_csv,
    photometry_sql,
    skyserver_params,
    stars_sql,
)
from morphomass.fetch.stage import in_region, limit_targets, select_targets
from morphomass.rawformats import GSWLC

BIG_ID = 1237667735583998081  # above 2**53: lost if read as float


def _gswlc_line(objid: int = BIG_ID, n: int = 24) -> str:
    values = [str(objid), "-99"] + ["1"] * 3 + ["150.1", "2.2", "0.05", "1.2", "10.5", "0.07"] + ["0.1"] * 13
    return " ".join(values[:n]) + "\n"


# ------------------------------------------------------------------------------------------------ GSWLC-2


def test_gswlc_reader_keeps_int64_ids(tmp_path: Path) -> None:
    path = tmp_path / "g.dat"
    path.write_text(_gswlc_line() + "\n" + _gswlc_line(BIG_ID + 1))
    table = read_gswlc(path, source="u")
    assert list(table.columns) == list(GSWLC.names)
    assert table["objid"].dtype == np.int64
    assert table["objid"].tolist() == [BIG_ID, BIG_ID + 1]
    assert table["glxid"].tolist() == [-99, -99]
    assert table["chi2_r"].tolist() == [1.2, 1.2]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "empty GSWLC-2 table"),
        (_gswlc_line(n=20) * 2, "expected 24 whitespace-separated columns"),
        (_gswlc_line() + _gswlc_line(n=23), "data row 2 has missing or non-numeric"),
        (
            _gswlc_line() + _gswlc_line().replace("150.1", "abc"),
            r"data row 2 has missing or non-numeric \['ra'\]",
        ),
        (_gswlc_line() + _gswlc_line().rstrip() + " 7\n", "not a GSWLC-2 table"),
    ],
)
def test_gswlc_reader_rejects_malformed_tables(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "g.dat"
    path.write_text(text)
    with pytest.raises(InputDataError, match=match):
        read_gswlc(path, source="https://salims/GSWLC-X2.dat.gz")


def test_gswlc_url() -> None:
    url = gswlc_url("https://salims.pages.iu.edu/gswlc/", "A2")
    assert url == "https://salims.pages.iu.edu/gswlc/GSWLC-A2.dat.gz"


def test_copy_selected_lines_is_verbatim(tmp_path: Path) -> None:
    src = tmp_path / "t.csv"
    src.write_text("h1,h2\r\n1, a \r\n\n2,b\n3,c")
    dest = tmp_path / "out.csv"
    assert copy_selected_lines(src, dest, np.array([True, False, True]), header_lines=1) == 2
    assert dest.read_text() == "h1,h2\n1, a \n3,c\n"
    with pytest.raises(InputDataError, match="has 3 data lines, expected 4"):
        copy_selected_lines(src, dest, np.ones(4, bool), header_lines=1)
    with pytest.raises(InputDataError, match="more data lines than the 2 rows"):
        copy_selected_lines(src, dest, np.ones(2, bool), header_lines=1)


# ------------------------------------------------------------------------------------------------ HyperLeda


LEDA_TEXT = """# HyperLeda SQL answer
pgc | objname | objtype | al2000 | de2000 | logd25 | e_logd25 | logr25 | pa |

  2557 | NGC0224 | G | 0.7123138 | 41.268750 | 3.25 | 0.01 | 0.49 | 35.0 |
  4 | | G | 0.0012 | -5.5 | NaN | | 0.1 | NaN |
"""


def test_parse_leda_tolerates_padding_comments_trailing_separator_and_nan() -> None:
    table = parse_leda(LEDA_TEXT, source="leda")
    assert list(table.columns) == list(LEDA_FIELDS)
    assert table["pgc"].tolist() == [2557, 4]
    assert table["objname"].tolist() == ["NGC0224", "PGC0000004"]
    assert table.loc[0, "al2000"] == pytest.approx(0.7123138)
    assert (
        np.isnan(table.loc[1, "logd25"])
        and np.isnan(table.loc[1, "pa"])
        and np.isnan(table.loc[1, "e_logd25"])
    )


def test_parse_leda_fills_missing_optional_columns() -> None:
    table = parse_leda("pgc|al2000|de2000|logd25\n12|1.5|2.5|0.7\n", source="leda")
    assert table.loc[0, "objtype"] == "G" and table.loc[0, "objname"] == "PGC0000012"
    assert np.isnan(table.loc[0, "pa"])


def test_parse_leda_header_only_is_an_empty_table() -> None:
    assert parse_leda("pgc|al2000|de2000|logd25\n", source="leda").empty


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "empty answer"),
        ("<html><body>Error</body></html>", "answered with HTML"),
        ("pgc|objname|de2000|logd25\n1|a|2|0.7\n", r"lacks \['al2000'\]"),
        ("pgc|al2000|de2000|logd25\n1|2|3\n", "line 2 has 3 fields, the header has 4"),
        ("pgc|al2000|de2000|logd25\n1|2|3|0.7\n2|x|3|0.7\n", "line 3, field al2000: 'x' is not a number"),
        ("pgc|al2000|de2000|logd25\n1|150.2|3|0.7\n", "field al2000 = 150.2 outside"),
        ("pgc|al2000|de2000|logd25\n|1.2|3|0.7\n", "line 2 has no pgc number"),
    ],
)
def test_parse_leda_errors_name_line_and_field(text: str, match: str) -> None:
    with pytest.raises(InputDataError, match=match):
        parse_leda(text, source="http://leda.univ-lyon1.fr/G.cgi")


VIZIER_TEXT = """#
#   VizieR Astronomical Server
#RESOURCE=yCat_7237

PGC\tRAJ2000\tDEJ2000\tOType\tlogD25\te_logD25\tlogR25\tPA
\t"d"\t"d"\t\t[0.1arcmin]\t\t\tdeg
-------\t----------\t----------\t---\t-----\t-----\t-----\t-----
2557\t10.684793\t+41.269065\tG\t3.25\t0.01\t0.49\t35.0
17\t00 00 30.0\t-05 30 00\tG\t0.61\t\t0.10\t
"""


def test_parse_vizier_converts_degrees_to_hours() -> None:
    table = parse_vizier(VIZIER_TEXT, source="vizier")
    assert list(table.columns) == list(LEDA_FIELDS)
    assert table["al2000"].tolist() == pytest.approx([10.684793 / 15, 30.0 / 3600])  # sexagesimal hours, too
    assert table["de2000"].tolist() == pytest.approx([41.269065, -5.5])
    assert table["objname"].tolist() == ["PGC0002557", "PGC0000017"]
    assert np.isnan(table.loc[1, "pa"])


def test_parse_vizier_errors() -> None:
    with pytest.raises(InputDataError, match=r"lacks \['logD25'\]"):
        parse_vizier("PGC\tRAJ2000\tDEJ2000\n1\t1\t1\n", source="vizier")
    assert parse_vizier(VIZIER_TEXT.split("2557")[0], source="vizier").empty


def test_queries_ask_for_the_box_in_the_services_units() -> None:
    leda = leda_query(150.0, 165.0, -1.0, 2.5, logd25_min=0.30103)
    assert "al2000>=10.00000000 and al2000<11.00000000" in leda["sql"]
    assert "de2000>=-1.000000 and de2000<2.500000" in leda["sql"] and "logd25>0.30103" in leda["sql"]
    assert leda["d"] == ",".join(LEDA_FIELDS) and leda["a"] == "csv[|]"
    vizier = vizier_query(150.0, 165.0, -1.0, 2.5, logd25_min=0.3)
    assert vizier["-source"] == "VII/237/pgc" and vizier["RAJ2000"] == "150.000000..165.000000"
    assert vizier["logD25"] == ">0.30000"


def test_ra_slices_cover_the_range_and_wrap() -> None:
    assert ra_slices(0.0, 360.0, step_deg=90.0) == [
        (0.0, 90.0),
        (90.0, 180.0),
        (180.0, 270.0),
        (270.0, 360.0),
    ]
    assert ra_slices(10.0, 12.0, step_deg=15.0) == [(10.0, 12.0)]
    assert ra_slices(350.0, 5.0, step_deg=15.0) == [(350.0, 360.0), (0.0, 5.0)]


# ------------------------------------------------------------------------------------------------ SkyServer


def test_photometry_sql_batches_positions_with_exact_ids() -> None:
    sql = photometry_sql([BIG_ID, 5], np.array([150.1, 150.2]), np.array([2.0, -2.5]), radius_arcmin=0.05)
    assert f"({BIG_ID},150.1000000,2.0000000),(5,150.2000000,-2.5000000)" in sql
    assert "fGetNearestObjEq(v.ra,v.dec,0.050000)" in sql and "JOIN PhotoPrimary" in sql
    assert all(f"p.{c}" in sql for c in PHOTOMETRY_COLUMNS)
    assert skyserver_params(sql) == {"cmd": sql, "format": "csv", "searchtool": "SQL"}


def test_stars_sql_asks_for_point_sources_within_each_radius() -> None:
    sql = stars_sql(np.array([150.1]), np.array([2.0]), np.array([0.45]))
    assert "(150.1000000,2.0000000,0.45000)" in sql and "fGetNearbyObjEq(v.ra,v.dec,v.r)" in sql
    assert sql.endswith("WHERE p.type=6") and "SELECT DISTINCT p.objID,p.ra,p.dec,p.type,p.psfMag_g" in sql


def test_parse_skyserver_csv_skips_the_table_line_and_keeps_int64() -> None:
    text = f"#Table1\ninput_id,objID,ra,dec,type\n{BIG_ID},{BIG_ID + 2},150.1,2.0,6\n"
    table = parse_skyserver_csv(text, source="s", required=("objID", "ra"))
    assert table["objID"].tolist() == [BIG_ID + 2] and table["input_id"].tolist() == [BIG_ID]
    assert table["objID"].dtype == np.int64
    assert parse_skyserver_csv("#Table1\nobjID,ra\n", source="s", required=("objID",)).empty


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("<html><body><h1>SQL error</h1> Incorrect syntax near 'x'</body></html>", "Incorrect syntax near"),
        ("#Table1\nerror_message\nToo many rows\n", "SkyServer answered with an error page"),
        ("", "empty answer from SkyServer"),
        ("#Table1\nobjID,dec\n1,2\n", r"lacks the columns \['ra'\]"),
        ("#Table1\nobjID,ra\nabc,2\n", "unreadable CSV"),
    ],
)
def test_parse_skyserver_csv_errors(text: str, match: str) -> None:
    with pytest.raises(InputDataError, match=match):
        parse_skyserver_csv(text, source="SkyServer photometry query 1/3", required=("objID", "ra"))


# ------------------------------------------------------------------------------------------------ GZ2


def _gz2_csv(tmp_path: Path, columns: list[str], rows: list[list[str]]) -> Path:
    path = tmp_path / "gz2.csv"
    path.write_text(",".join(columns) + "\n" + "".join(",".join(r) + "\n" for r in rows))
    return path


def test_gz2_positions(tmp_path: Path) -> None:
    columns = gz2.hart16_columns()
    row = ["587722981741363294", "150.5", "2.25"] + ["0"] * (len(columns) - 3)
    ra, dec = read_gz2_positions(_gz2_csv(tmp_path, columns, [row, row]), source="gz2")
    assert ra.tolist() == [150.5, 150.5] and dec.tolist() == [2.25, 2.25]


def test_gz2_missing_columns_and_positions_are_errors(tmp_path: Path) -> None:
    columns = [c for c in gz2.hart16_columns() if not c.endswith("a38_dust_lane_weighted_fraction")]
    with pytest.raises(InputDataError, match="lacks 1 expected columns.*a38_dust_lane_weighted_fraction"):
        read_gz2_positions(_gz2_csv(tmp_path, columns, []), source="gz2")
    columns = list(REQUIRED_GZ2_COLUMNS)
    rows = [["1", "150.5", "2.25"] + ["0"] * 37, ["2", "", "2.25"] + ["0"] * 37]
    with pytest.raises(InputDataError, match="data row 2 has no numeric ra/dec"):
        read_gz2_positions(_gz2_csv(tmp_path, columns, rows), source="gz2")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(InputDataError, match="empty file"):
        read_gz2_positions(empty, source="gz2")


# ------------------------------------------------------------------------------------------------ targets


def test_in_region_with_and_without_wrap() -> None:
    ra = np.array([359.5, 0.5, 10.0, 180.0, 5.0])
    dec = np.array([0.0, 0.0, 0.0, 0.0, 40.0])
    assert in_region(ra, dec, (359.0, 11.0, -5.0, 5.0)).tolist() == [True, True, True, False, False]
    assert in_region(ra, dec, (1.0, 200.0, -5.0, 5.0)).tolist() == [False, False, True, True, False]
    assert in_region(ra, dec, None).all()


def _catalogues() -> tuple[pd.DataFrame, pd.DataFrame]:
    gswlc = pd.DataFrame(
        {
            "objid": [10, 11, 12, 13, 14, 15, 10],
            "ra": [150.0, 150.1, 150.2, 150.3, 150.4, 150.5, 150.0],
            "dec": [2.0] * 7,
            "z": [0.05] * 7,
            "chi2_r": [1.0, 6.0, 1.0, 1.0, 1.0, -99.0, 1.0],
            "log_mstar": [10.0, 10.0, -99.0, 10.0, 10.0, 10.0, 10.0],
            "log_mstar_err": [0.1] * 7,
        }
    )
    # a HyperLeda galaxy 1" from each GSWLC one, except 14 (5" away); 13 is too small
    offsets = np.array([1.0, 1.0, 1.0, 1.0, 5.0, 1.0]) / 3600
    hyperleda = pd.DataFrame(
        {
            "al2000": (gswlc["ra"][:6].to_numpy() + offsets) / 15,
            "de2000": [2.0] * 6,
            "logd25": [0.7, 0.7, 0.7, 0.55, 0.7, 0.7],
        }
    )
    return gswlc, hyperleda


def test_select_targets_applies_the_papers_cuts() -> None:
    gswlc, hyperleda = _catalogues()
    targets = select_targets(gswlc, hyperleda, radius_arcsec=3.0, d25_min_arcmin=0.4, chi2_max=5.0)
    assert targets["objid"].tolist() == [10]  # 11 chi2, 12 mass, 13 D25, 14 no match, 15 chi2 missing
    assert targets.loc[0, "d25_arcmin"] == pytest.approx(0.1 * 10**0.7)
    loose = select_targets(gswlc, hyperleda, radius_arcsec=6.0, d25_min_arcmin=0.3, chi2_max=None)
    assert loose["objid"].tolist() == [10, 11, 13, 14, 15]
    assert select_targets(gswlc, hyperleda.iloc[:0], radius_arcsec=3, d25_min_arcmin=0.4, chi2_max=5).empty


def test_limit_targets_is_seeded_and_nested() -> None:
    targets = pd.DataFrame({"objid": np.arange(100, 0, -1), "ra": np.linspace(0, 10, 100), "dec": 0.0})
    three = limit_targets(targets, 3, rng=np.random.default_rng(4))
    again = limit_targets(targets.sample(frac=1, random_state=1), 3, rng=np.random.default_rng(4))
    five = limit_targets(targets, 5, rng=np.random.default_rng(4))
    assert len(three) == 3 and set(three["objid"]) == set(again["objid"])  # independent of the file order
    assert set(three["objid"]) < set(five["objid"])
    assert set(limit_targets(targets, 3, rng=np.random.default_rng(5))["objid"]) != set(three["objid"])
    assert limit_targets(targets, None, rng=np.random.default_rng(0)) is targets
    assert len(limit_targets(targets, 500, rng=np.random.default_rng(0))) == 100
