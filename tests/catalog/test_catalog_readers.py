"""Readers of every raw format on small files written here in the real formats, and every malformed case."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from factories.rawfiles import (
    HYPERLEDA_HEADER,
    PHOTOMETRY_HEADER,
    STARS_HEADER,
    gswlc_line,
    gz2_header,
    gz2_row,
    uniform_conditional,
)
from morphomass import gz2
from morphomass.errors import InputDataError
from morphomass.rawformats import (
    GSWLC,
    read_gswlc,
    read_gswlc_dir,
    read_gz2,
    read_hyperleda,
    read_photometry,
    read_stars,
)

BIG_ID = 1237662301367173202  # Dobbels' first SDSS_ID; 2**53 < BIG_ID, so a float64 read changes it


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# --------------------------------------------------------------------------------------------------- GSWLC-2


def test_gswlc_reads_int64_ids_exactly_and_minus_99_as_missing(tmp_path: Path) -> None:
    text = gswlc_line(objid=BIG_ID, glxid=-99, ra="231.318600", dec="41.346010", z="0.076100") + gswlc_line(
        objid=BIG_ID + 1, chi2_r="-99.000", log_mstar="-99.0000", log_mstar_err="-99.0000"
    )
    table = read_gswlc(_write(tmp_path / "GSWLC-X2.dat", text))
    assert int(float(BIG_ID)) != BIG_ID  # so the next checks would fail on a float64 read
    assert list(table.columns) == list(GSWLC.names)
    assert table["objid"].dtype == np.int64
    assert table["objid"].tolist() == [BIG_ID, BIG_ID + 1]
    assert table["glxid"].dtype == "Int64"
    assert pd.isna(table["glxid"].iloc[0])
    assert table["glxid"].iloc[1] == 6375000000000000001
    assert table["ra"].iloc[0] == pytest.approx(231.3186)
    assert table["z"].iloc[0] == pytest.approx(0.0761)
    assert table[["chi2_r", "log_mstar", "log_mstar_err"]].iloc[1].isna().all()
    assert table["log_mstar"].iloc[0] == pytest.approx(10.5)
    assert table["flag_mgs"].tolist() == [1, 1]


def test_gswlc_detects_gzip_by_magic_bytes_not_by_name(tmp_path: Path) -> None:
    text = gswlc_line(objid=BIG_ID) + gswlc_line(objid=BIG_ID + 7)
    misnamed = tmp_path / "GSWLC-A2.dat"  # gzipped content, plain name (the server's Content-Encoding trap)
    misnamed.write_bytes(gzip.compress(text.encode()))
    plain_gz_name = _write(tmp_path / "other" / "GSWLC-D2.dat.gz", text)  # plain content, .gz name
    for path in (misnamed, plain_gz_name):
        assert read_gswlc(path)["objid"].tolist() == [BIG_ID, BIG_ID + 7]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (
            gswlc_line() + gswlc_line(objid=2).rstrip("\n") + " 7\n",
            r"GSWLC-X2\.dat, line 2: expected 24 whitespace-separated fields, found 25",
        ),
        (
            gswlc_line() + " ".join(gswlc_line(objid=2).split()[:23]) + "\n",
            r"line 2: expected 24 whitespace-separated fields, found 23",
        ),
        (gswlc_line(z="0.05a"), r"line 1, field 'z': expected a finite number, found '0\.05a'"),
        (gswlc_line(z="nan"), r"line 1, field 'z': expected a number, found 'nan'"),
        (gswlc_line(z="inf"), r"line 1, field 'z': expected a finite number, found 'inf'"),
        (gswlc_line(plate="26.5"), r"line 1, field 'plate': expected an integer, found '26\.5'"),
        (gswlc_line(objid="1.237662301367173e18"), r"line 1, field 'objid': expected an integer"),
        (
            gswlc_line(objid=f"{BIG_ID}.0"),
            r"field 'objid': expected an integer, found '1237662301367173202\.0'",
        ),
        (
            gswlc_line(objid="99999999999999999999"),
            r"field 'objid': integer 99999999999999999999 does not fit",
        ),
        (
            gswlc_line(objid=5) + gswlc_line(objid=6) + gswlc_line(objid=5),
            r"line 3, field 'objid': duplicate id 5 \(also on line 1\)",
        ),
        (gswlc_line() + gswlc_line(objid=2, dec="-99.000000"), r"line 2, field 'dec': missing coordinate"),
        (gswlc_line(ra="360.500000"), r"line 1, field 'ra': expected a coordinate in \[0, 360\) deg"),
    ],
)
def test_gswlc_malformed_input_names_file_line_and_field(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(InputDataError, match=match):
        read_gswlc(_write(tmp_path / "GSWLC-X2.dat", text))


def test_gswlc_line_numbers_count_blank_lines(tmp_path: Path) -> None:
    path = _write(tmp_path / "GSWLC-X2.dat", gswlc_line(objid=1) + "\n   \n" + gswlc_line(objid=2, z="x"))
    with pytest.raises(InputDataError, match=r"line 4, field 'z'"):
        read_gswlc(path)


def test_gswlc_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputDataError, match=r"GSWLC-X2\.dat does not exist"):
        read_gswlc(tmp_path / "GSWLC-X2.dat")


def test_gswlc_dir_prefers_x2_then_merges_deepest_first(tmp_path: Path) -> None:
    only_parts = tmp_path / "parts"
    _write(only_parts / "GSWLC-A2.dat", gswlc_line(objid=1, uv_survey=1) + gswlc_line(objid=2, uv_survey=1))
    (only_parts / "GSWLC-D2.dat.gz").write_bytes(gzip.compress(gswlc_line(objid=2, uv_survey=3).encode()))
    table, paths = read_gswlc_dir(only_parts)
    assert [p.name for p in paths] == ["GSWLC-D2.dat.gz", "GSWLC-A2.dat"]
    by_id = table.set_index("objid")
    assert sorted(by_id.index) == [1, 2]
    assert by_id.loc[2, "gswlc_version"] == "D2"  # the deepest survey's row wins
    assert by_id.loc[2, "uv_survey"] == 3
    assert by_id.loc[1, "gswlc_version"] == "A2"

    _write(only_parts / "GSWLC-X2.dat", gswlc_line(objid=9))
    table, paths = read_gswlc_dir(only_parts)
    assert [p.name for p in paths] == ["GSWLC-X2.dat"]
    assert table["objid"].tolist() == [9]


def test_gswlc_dir_errors(tmp_path: Path) -> None:
    with pytest.raises(InputDataError, match="no GSWLC-2 file"):
        read_gswlc_dir(tmp_path)
    _write(tmp_path / "GSWLC-M2.dat", gswlc_line())
    (tmp_path / "GSWLC-M2.dat.gz").write_bytes(gzip.compress(gswlc_line().encode()))
    with pytest.raises(InputDataError, match=r"both GSWLC-M2\.dat and GSWLC-M2\.dat\.gz exist"):
        read_gswlc_dir(tmp_path)


# ------------------------------------------------------------------------------------------------- HyperLeda


def test_hyperleda_converts_hours_and_logd25(tmp_path: Path) -> None:
    text = (
        HYPERLEDA_HEADER
        + "\n"
        + "1459|PGC0001459|G|8.4001640|6.111154|0.71|0.07|0.30|170.7\n"
        + "1086 | NGC 2903 | G | 15.4212400 | -10.053770 |  | 0.06 | | 109.3\n"
    )
    table = read_hyperleda(_write(tmp_path / "hyperleda.csv", text))
    assert table["pgc"].tolist() == [1459, 1086]
    assert table["ra"].tolist() == pytest.approx([8.4001640 * 15, 15.42124 * 15])
    assert table["dec"].tolist() == pytest.approx([6.111154, -10.05377])
    assert table["d25_arcmin"].iloc[0] == pytest.approx(0.1 * 10**0.71)  # 0.5129', Dobbels' first galaxy
    assert np.isnan(table["d25_arcmin"].iloc[1]) and np.isnan(table["logr25"].iloc[1])
    assert table["objname"].tolist() == ["PGC0001459", "NGC 2903"]
    assert table["pa"].tolist() == pytest.approx([170.7, 109.3])


def test_hyperleda_padded_fields_read_as_plain_ones(tmp_path: Path) -> None:
    rows = [
        "1459|PGC0001459|G|8.4001640|6.111154|0.71|0.07|0.30|170.7",
        "1086|NGC 2903|G|15.42124|-10.05377||0.06||",
    ]
    plain = read_hyperleda(_write(tmp_path / "plain.csv", HYPERLEDA_HEADER + "\n" + "\n".join(rows) + "\n"))
    padded_lines = [" | ".join(f" {v} " for v in line.split("|")) for line in [HYPERLEDA_HEADER, *rows]]
    padded_text = "\n".join(padded_lines)
    padded = read_hyperleda(_write(tmp_path / "padded.csv", padded_text + "\n"))
    pd.testing.assert_frame_equal(plain, padded)
    assert np.isnan(plain["logd25"].iloc[1]) and np.isnan(plain["pa"].iloc[1])


def test_hyperleda_selects_columns_by_name_and_skips_comments(tmp_path: Path) -> None:
    text = "# HyperLeda query\n\nde2000|logd25|extra|al2000|pgc\n-1.5|0.90|x|23.999|7\n"
    table = read_hyperleda(_write(tmp_path / "hyperleda.csv", text))
    assert table["ra"].iloc[0] == pytest.approx(23.999 * 15)
    assert table["dec"].iloc[0] == pytest.approx(-1.5)
    assert table["d25_arcmin"].iloc[0] == pytest.approx(0.1 * 10**0.9)
    assert np.isnan(table["pa"].iloc[0])
    assert table["objname"].iloc[0] == ""


@pytest.mark.parametrize(
    ("rows", "match"),
    [
        (["1|a|G|1.0|2.0|0.5|0.1|0.2"], r"hyperleda\.csv, line 2: expected 9 '\|'-separated fields, found 8"),
        (["1|a|G|1.0|2.0|0.5|0.1|0.2|3|4"], r"line 2: expected 9 '\|'-separated fields, found 10"),
        (["1|a|G|1.0|2.0|big|0.1|0.2|3"], r"line 2, field 'logd25': expected a finite number, found 'big'"),
        (["1|a|G|1.0||0.5|0.1|0.2|3"], r"line 2, field 'de2000': expected a number, found ''"),
        (["1|a|G|NaN|2.0|0.5|0.1|0.2|3"], r"line 2, field 'al2000': expected a number, found 'NaN'"),
        (["1|a|G|24.5|2.0|0.5|0.1|0.2|3"], r"field 'al2000': expected a coordinate in \[0, 24\) hours"),
        (
            ["1|a|G|1.0|2.0|0.5|0.1|0.2|3", "2|b|G|1.5|2.0|0.5|0.1|0.2|3", "1|c|G|3.0|2.0|0.5|0.1|0.2|3"],
            r"line 4, field 'pgc': duplicate id 1 \(also on line 2\)",
        ),
    ],
)
def test_hyperleda_malformed(tmp_path: Path, rows: list[str], match: str) -> None:
    path = _write(tmp_path / "hyperleda.csv", HYPERLEDA_HEADER + "\n" + "\n".join(rows) + "\n")
    with pytest.raises(InputDataError, match=match):
        read_hyperleda(path)


def test_hyperleda_missing_column_and_empty_file(tmp_path: Path) -> None:
    with pytest.raises(InputDataError, match=r"missing required column\(s\) \['logd25'\]"):
        read_hyperleda(_write(tmp_path / "a.csv", "pgc|al2000|de2000\n1|1.0|2.0\n"))
    with pytest.raises(InputDataError, match=r"line 1, field 'pgc': the header names this column twice"):
        read_hyperleda(_write(tmp_path / "b.csv", "pgc|al2000|de2000|logd25|pgc\n"))
    with pytest.raises(InputDataError, match="the file is empty"):
        read_hyperleda(_write(tmp_path / "c.csv", "\n"))


# ---------------------------------------------------------------------------------------------- Galaxy Zoo 2


def test_gz2_selects_weighted_fractions_by_name(tmp_path: Path) -> None:
    cond = uniform_conditional()
    cond[:3] = [0.2, 0.7, 0.1]
    # reorder the columns and add one: selection must go by name, not position
    columns = gz2_header().strip().split(",")
    rows = [gz2_row(587722981741363294, 150.0, 20.0, cond).strip().split(",")]
    order = list(reversed(range(len(columns))))
    text = ",".join([columns[i] for i in order] + ["notes"]) + "\n"
    text += "".join(",".join([r[i] for i in order] + ["x"]) + "\n" for r in rows)
    table = read_gz2(_write(tmp_path / "gz2_hart16.csv", text))
    assert table["dr7objid"].tolist() == [587722981741363294]
    fractions = table.drop(columns=["dr7objid", "ra", "dec"])
    assert list(fractions.columns) == [gz2.hart16_column(a, "weighted_fraction") for a in gz2.ANSWERS]
    np.testing.assert_allclose(fractions.to_numpy()[0], np.round(cond, 3))


def test_gz2_accepts_unasked_questions_as_empty_or_zero(tmp_path: Path) -> None:
    cond = uniform_conditional()
    cond[[gz2.answer_index(a.answer_id) for a in gz2.QUESTIONS[1].answers]] = 0.0
    line = gz2_row(1, 150.0, 20.0, cond)
    fields = line.strip().split(",")
    t09 = [
        gz2.hart16_columns().index(gz2.hart16_column(a, "weighted_fraction"))
        for a in gz2.QUESTIONS[8].answers
    ]
    for i in t09:
        fields[i] = ""
    table = read_gz2(_write(tmp_path / "gz2.csv", gz2_header() + ",".join(fields) + "\n"))
    values = table.drop(columns=["dr7objid", "ra", "dec"]).to_numpy()[0]
    assert np.isnan(values[[gz2.answer_index(a.answer_id) for a in gz2.QUESTIONS[8].answers]]).all()


def _gz2_with(tmp_path: Path, column: str, value: str, row: int = 1) -> Path:
    lines = [gz2_row(k, 150.0 + k / 100, 20.0, uniform_conditional()) for k in range(1, 3)]
    fields = lines[row - 1].strip().split(",")
    fields[gz2.hart16_columns().index(column)] = value
    lines[row - 1] = ",".join(fields) + "\n"
    return _write(tmp_path / "gz2_hart16.csv", gz2_header() + "".join(lines))


@pytest.mark.parametrize(
    ("column", "value", "match"),
    [
        (
            "t02_edgeon_a04_yes_weighted_fraction",
            "0.9",
            r"line 3, field 't02_edgeon_\*_weighted_fraction': "
            r"the weighted_fractions of question t02 sum to 1\.4000",
        ),
        (
            "t02_edgeon_a04_yes_weighted_fraction",
            "1.5",
            r"line 3, field 't02_edgeon_a04_yes_weighted_fraction': "
            r"expected a fraction in \[0, 1\], found 1\.5",
        ),
        ("t02_edgeon_a04_yes_weighted_fraction", "half", r"expected a finite number, found 'half'"),
        ("ra", "nan", r"line 3, field 'ra': expected a number, found 'nan'"),
        ("dr7objid", "1", r"line 3, field 'dr7objid': duplicate id 1 \(also on line 2\)"),
    ],
)
def test_gz2_malformed(tmp_path: Path, column: str, value: str, match: str) -> None:
    with pytest.raises(InputDataError, match=match):
        read_gz2(_gz2_with(tmp_path, column, value, row=2))


def test_gz2_fraction_kind_and_tolerance(tmp_path: Path) -> None:
    cond = uniform_conditional()
    fields = gz2_row(1, 150.0, 20.0, cond).strip().split(",")
    fields[gz2.hart16_columns().index("t01_smooth_or_features_a01_smooth_fraction")] = "0.5"
    fields[gz2.hart16_columns().index("t01_smooth_or_features_a02_features_or_disk_fraction")] = "0.3"
    fields[gz2.hart16_columns().index("t01_smooth_or_features_a03_star_or_artifact_fraction")] = "0.2"
    path = _write(tmp_path / "gz2.csv", gz2_header() + ",".join(fields) + "\n")
    raw = read_gz2(path, fraction="fraction")
    assert raw.iloc[0, 3:6].tolist() == [0.5, 0.3, 0.2]
    assert list(raw.columns)[3] == "t01_smooth_or_features_a01_smooth_fraction"
    weighted = read_gz2(path)
    assert weighted.iloc[0, 3:6].tolist() == pytest.approx([0.333] * 3)
    with pytest.raises(
        ValueError, match="fraction must be 'weighted_fraction' or 'fraction', got 'debiased'"
    ):
        read_gz2(path, fraction="debiased")
    off = _gz2_with(tmp_path, "t02_edgeon_a04_yes_weighted_fraction", "0.55", row=2)  # t02 sums to 1.05
    with pytest.raises(InputDataError, match="question t02 sum to 1.0500; expected 1 \\(within 0.01\\)"):
        read_gz2(off)
    assert len(read_gz2(off, sum_atol=0.06)) == 2


def test_gz2_wrong_field_count_and_missing_columns(tmp_path: Path) -> None:
    line = gz2_row(1, 150.0, 20.0, uniform_conditional())
    path = _write(tmp_path / "gz2.csv", gz2_header() + line + line.rstrip("\n") + ",extra\n")
    with pytest.raises(InputDataError, match=r"line 3: expected 231 ','-separated fields, found 232"):
        read_gz2(path)
    short = ",".join(gz2.hart16_columns()[:-6])  # drops the a37 columns
    with pytest.raises(InputDataError, match=r"missing required column\(s\) \['t11_arms_number_a37_cant_"):
        read_gz2(_write(tmp_path / "short.csv", short + "\n"))


# ------------------------------------------------------------------------------------------- SDSS catalogues


def test_photometry_reads_bands_and_minus_9999(tmp_path: Path) -> None:
    text = (
        "#Table1\n"
        + PHOTOMETRY_HEADER
        + "\n"
        + f"{BIG_ID},231.3186,41.3460,18.1,16.2,15.5,15.1,14.9,0.05,0.01,0.01,0.01,0.02\n"
        + f"{BIG_ID + 2},231.5,41.5,-9999,-9999,-9999,-9999,-9999,-9999,-9999,-9999,-9999,-9999\n"
    )
    table = read_photometry(_write(tmp_path / "sdss_photometry.csv", text))
    assert table["objid"].tolist() == [BIG_ID, BIG_ID + 2]
    assert table.attrs["bands"] == ["u", "g", "r", "i", "z"]
    assert table["model_mag_g"].iloc[0] == pytest.approx(16.2)
    assert table["model_mag_err_z"].iloc[0] == pytest.approx(0.02)
    assert table.iloc[1, 3:].isna().all()


def test_photometry_reads_only_complete_bands(tmp_path: Path) -> None:
    text = "objID,modelMag_g,dec,ra,modelMagErr_g,modelMag_i\n5,17.0,1.0,2.0,0.02,16.0\n"
    table = read_photometry(_write(tmp_path / "p.csv", text))
    assert table.attrs["bands"] == ["g"]
    assert "model_mag_i" not in table
    with pytest.raises(InputDataError, match="no band has both modelMag_<band> and modelMagErr_<band>"):
        read_photometry(_write(tmp_path / "q.csv", "objID,ra,dec,modelMag_g\n5,2.0,1.0,17.0\n"))


@pytest.mark.parametrize(
    ("row", "match"),
    [
        ("5,2.0,1.0,17.0", r"line 3: expected 5 ','-separated fields, found 4"),
        (
            "5,2.0,1.0,seventeen,0.1",
            r"line 3, field 'modelMag_g': expected a finite number, found 'seventeen'",
        ),
        ("5,,1.0,17.0,0.1", r"line 3, field 'ra': expected a number, found ''"),
        ("4,2.0,1.0,17.0,0.1", r"line 3, field 'objID': duplicate id 4 \(also on line 2\)"),
        ("6,2.0,91.0,17.0,0.1", r"line 3, field 'dec': expected a coordinate in \[-90, 90\] deg"),
    ],
)
def test_photometry_malformed(tmp_path: Path, row: str, match: str) -> None:
    text = "objID,ra,dec,modelMag_g,modelMagErr_g\n4,2.0,1.0,17.0,0.1\n" + row + "\n"
    with pytest.raises(InputDataError, match=match):
        read_photometry(_write(tmp_path / "sdss_photometry.csv", text))


def test_stars_reader(tmp_path: Path) -> None:
    text = STARS_HEADER + f"\n{BIG_ID},150.1,20.2,6,18.25\n{BIG_ID + 1},150.2,20.3,6,-9999\n"
    table = read_stars(_write(tmp_path / "stars.csv", text))
    assert table["objid"].tolist() == [BIG_ID, BIG_ID + 1]
    assert table["psf_mag_g"].iloc[0] == pytest.approx(18.25)
    assert np.isnan(table["psf_mag_g"].iloc[1])
    assert table["type"].tolist() == [6, 6]


@pytest.mark.parametrize(
    ("row", "match"),
    [
        ("2,150.0,20.0,3,18.0", r"stars\.csv, line 3, field 'type': expected 6 \(STAR\), found 3"),
        ("1,150.0,20.0,6,18.0", r"line 3, field 'objID': duplicate id 1"),
        ("2,nan,20.0,6,18.0", r"line 3, field 'ra': expected a number, found 'nan'"),
        ("2,150.0,20.0,6", r"line 3: expected 5 ','-separated fields, found 4"),
        ("2,150.0,20.0,six,18.0", r"line 3, field 'type': expected an integer, found 'six'"),
    ],
)
def test_stars_malformed(tmp_path: Path, row: str, match: str) -> None:
    text = STARS_HEADER + "\n1,150.0,20.0,6,18.0\n" + row + "\n"
    with pytest.raises(InputDataError, match=match):
        read_stars(_write(tmp_path / "stars.csv", text))


def test_quoted_separator_is_one_field(tmp_path: Path) -> None:
    text = 'objID,ra,dec,type,psfMag_g\n1,150.0,20.0,6,"18.0"\n'
    assert read_stars(_write(tmp_path / "stars.csv", text))["psf_mag_g"].tolist() == [18.0]
    text = 'pgc|objname|al2000|de2000|logd25\n1|"NGC|1"|1.0|2.0|0.5\n'
    assert read_hyperleda(_write(tmp_path / "h.csv", text))["objname"].tolist() == ["NGC|1"]


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (
            b'1,150.0,20.0,6,"18.0\n2,150.0,20.0,6,18.0\n',
            r"stars\.csv: cannot be parsed \(.*EOF inside string",
        ),
        (
            b'1,150.0,20.0,6,"18.0\n2,150.0,20.0,6,18.0"\n',
            r"found 1 rows but 2 data lines \(unbalanced quotes\?\)",
        ),
        (b"1,150.0,20.0,6,18.0\xff\n", r"stars\.csv: cannot be read as UTF-8 text"),
    ],
)
def test_unreadable_text(tmp_path: Path, content: bytes, match: str) -> None:
    path = tmp_path / "stars.csv"
    path.write_bytes(STARS_HEADER.encode() + b"\n" + content)
    with pytest.raises(InputDataError, match=match):
        read_stars(path)


def test_truncated_gzip(tmp_path: Path) -> None:
    path = tmp_path / "GSWLC-X2.dat.gz"
    path.write_bytes(gzip.compress(("".join(gswlc_line(objid=k) for k in range(50))).encode())[:80])
    with pytest.raises(InputDataError, match=r"GSWLC-X2\.dat\.gz: cannot be read as gzipped UTF-8 text"):
        read_gswlc(path)
