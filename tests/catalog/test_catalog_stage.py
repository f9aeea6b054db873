"""The catalogue stage on hand-made surveys: every cut, the targets, the GZ2 join, the outputs and the CLI."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from astropy.cosmology import FlatLambdaCDM

from factories.rawfiles import Galaxy
from morphomass import cli, gz2
from morphomass.catalog import run_catalog
from morphomass.config import load_config
from morphomass.errors import InputDataError
from morphomass.gz2 import obeys_tree
from morphomass.rawformats import read_gswlc
from morphomass.targets import ML_G, read_target
from morphomass.workdir import WorkDir

#: sample.parquet columns as DESIGN §2 lists them (photometry in ugriz: flux_<band>, lum_<band>).
DESIGN_COLUMNS = [
    "objid",
    "ra",
    "dec",
    "z",
    "d25_arcmin",
    "chi2_r",
    "logmstar",
    "logmstar_err",
    "lum_g",
    "ml",
    "ml_err",
    "target",  # catalog.target and its error (ml, ml_err by default); not in DESIGN §2, added by issue 16
    "target_err",
    "split",
    "has_gz2",
    *(f"gz2_p_{a.task}_{a.answer_id}" for a in gz2.ANSWERS),
    "flux_u",
    "flux_g",
    "flux_r",
    "flux_i",
    "flux_z",
    "lum_u",
    "lum_r",
    "lum_i",
    "lum_z",
    "dist_mpc",
    "pixel_kpc",
]
Survey = Callable[..., WorkDir]


def _galaxies() -> dict[str, Galaxy]:
    """One galaxy per fate, far apart on the sky, plus good ones."""
    fates = {
        "good_gz2": dict(in_gz2=True),
        "good_gz2_far": dict(in_gz2=True, gz2_offset_arcsec=(0.0, 4.0)),  # beyond 3.6": no GZ2 match
        "no_hyperleda": dict(in_hyperleda=False),
        "hyperleda_too_far": dict(leda_offset_arcsec=(3.2, 0.0)),
        "no_d25": dict(logd25=None),
        "small": dict(logd25=0.60),  # D25 = 0.398' <= 0.4'
        "no_redshift": dict(z=-99.0),
        "no_mass": dict(log_mstar=-99.0, log_mstar_err=-99.0),
        "no_chi2": dict(chi2_r=-99.0),
        "no_photometry": dict(in_photometry=False),
        "chi2_5": dict(chi2_r=5.0),
        "chi2_12": dict(chi2_r=12.0, log_mstar=11.2),
    }
    galaxies = {
        name: Galaxy(objid=1237645000000000100 - k, ra=130.0 + 2 * k, dec=10.0 + k, **kw)
        for k, (name, kw) in enumerate(fates.items())
    }
    for k in range(8):
        galaxies[f"good_{k}"] = Galaxy(
            objid=1237645000000000200 + k,
            ra=160.0 + 2 * k,
            dec=-5.0 + 3 * k,
            z=0.02 + 0.01 * k,
            mag_g=15.0 + 0.3 * k,
        )
    return galaxies


@pytest.fixture(name="galaxies")
def fixture_galaxies() -> dict[str, Galaxy]:
    return _galaxies()


def _run(workdir: WorkDir, **catalog: object) -> tuple[pd.DataFrame, pd.DataFrame]:
    config = load_config("tiny", overrides={"catalog": catalog} if catalog else None)
    run_catalog(config, workdir, progress=False)
    summary = pd.read_csv(workdir.tables / "sample_summary.csv")
    return pd.read_parquet(workdir.sample), summary.set_index("key")["value"]


def test_every_cut_is_counted_and_only_good_galaxies_remain(
    survey: Survey, galaxies: dict[str, Galaxy]
) -> None:
    workdir = survey(list(galaxies.values()))
    sample, summary = _run(workdir)
    good = sorted(g.objid for name, g in galaxies.items() if name.startswith("good"))
    assert sample["objid"].tolist() == good  # sorted by objid
    for reason in (
        "no_hyperleda",
        "no_d25",
        "d25",
        "missing_redshift",
        "missing_mass",
        "missing_chi2",
        "missing_photometry",
    ):
        expected = 2 if reason == "no_hyperleda" else 1  # hyperleda_too_far has no match either
        assert summary[f"dropped_{reason}"] == expected, reason
    assert summary["dropped_chi2"] == 2
    assert summary["n_gswlc"] == len(galaxies)
    assert summary["n_after_chi2"] == summary["n_sample"] == len(good)
    assert summary["hyperleda_match_fraction"] == pytest.approx((len(galaxies) - 2) / len(galaxies))
    assert summary["n_train"] + summary["n_val"] + summary["n_test"] == len(good)
    assert summary["ml_min"] == pytest.approx(sample["ml"].min())
    assert summary["ml_median"] == pytest.approx(sample["ml"].median())
    assert summary["ml_max"] == pytest.approx(sample["ml"].max())
    rejected = pd.read_parquet(workdir.tables / "sample_chi2_rejected.parquet")
    assert rejected["objid"].tolist() == sorted([galaxies["chi2_5"].objid, galaxies["chi2_12"].objid])
    assert summary["ml_median_chi2_rejected"] == pytest.approx(rejected["ml"].median())
    assert summary["n_stars"] == 1


def test_sample_columns_types_and_targets(survey: Survey, galaxies: dict[str, Galaxy]) -> None:
    sample, _ = _run(survey(list(galaxies.values())))
    assert list(sample.columns) == DESIGN_COLUMNS
    assert sample["objid"].dtype == np.int64
    assert sample["has_gz2"].dtype == bool
    assert set(sample["split"]) <= {"train", "val", "test"}
    gal = galaxies["good_3"]
    row = sample.set_index("objid").loc[gal.objid]
    dist = FlatLambdaCDM(H0=70, Om0=0.3).luminosity_distance(gal.z).value
    assert row["dist_mpc"] == pytest.approx(dist, rel=1e-6)
    dist_ang = dist / (1 + gal.z) ** 2
    assert row["pixel_kpc"] == pytest.approx(dist_ang * 1e3 * np.radians(0.396 / 3600), rel=1e-6)
    lum_g = 10 ** (-0.4 * (gal.mag_g - 5 * np.log10(dist * 1e5) - 5.11))  # Pogson is exact enough at g = 15.9
    assert row["lum_g"] == pytest.approx(lum_g, rel=1e-5)
    assert row["ml"] == pytest.approx(10**gal.log_mstar / lum_g, rel=1e-5)
    rel_err = np.log(10) * np.hypot(gal.log_mstar_err, 0.4 * gal.magerr_g)
    assert row["ml_err"] == pytest.approx(max(rel_err, 0.05) * row["ml"], rel=1e-4)
    assert row["d25_arcmin"] == pytest.approx(0.1 * 10**gal.logd25)
    assert row["flux_g"] == pytest.approx(10 ** (-0.4 * (gal.mag_g - 22.5)), rel=1e-5)
    u_ab = gal.mag_g + 1.5 - 0.04  # modelMag_u on the AB scale
    assert row["flux_u"] == pytest.approx(10 ** (-0.4 * (u_ab - 22.5)), rel=1e-4)
    assert row["lum_i"] / row["lum_g"] == pytest.approx(
        10 ** (-0.4 * ((gal.mag_g - 0.9) - 4.53 - (gal.mag_g - 5.11))), rel=1e-4
    )


def test_gz2_probabilities_join_by_position(survey: Survey, galaxies: dict[str, Galaxy]) -> None:
    cond = galaxies["good_gz2"].gz2_conditional.copy()
    cond[:3] = [0.25, 0.7, 0.05]
    galaxies["good_gz2"].gz2_conditional = cond
    sample, summary = _run(survey(list(galaxies.values())))
    by_id = sample.set_index("objid")
    gz2_columns = list(gz2.ANSWER_COLUMNS)
    matched = by_id.loc[galaxies["good_gz2"].objid]
    assert matched["has_gz2"]
    np.testing.assert_allclose(
        matched[gz2_columns].to_numpy(float), gz2.unconditional_probabilities(cond), atol=1e-12
    )
    assert obeys_tree(matched[gz2_columns].to_numpy(float), atol=1e-12)
    far = by_id.loc[galaxies["good_gz2_far"].objid]
    assert not far["has_gz2"] and far[gz2_columns].isna().all()
    assert by_id["has_gz2"].sum() == 1
    assert summary["gz2_match_fraction"] == pytest.approx(1 / len(sample))
    sample_wide, _ = _run(survey(list(galaxies.values())), gz2_radius_arcsec=4.5)
    assert sample_wide["has_gz2"].sum() == 2


def test_configurable_cuts_and_paper_convention(survey: Survey, galaxies: dict[str, Galaxy]) -> None:
    workdir = survey(list(galaxies.values()))
    loose, summary = _run(workdir, chi2_max=20.0, d25_min_arcmin=0.35, hyperleda_radius_arcsec=3.5)
    ids = set(loose["objid"])
    for name in ("chi2_5", "chi2_12", "small", "hyperleda_too_far"):
        assert galaxies[name].objid in ids, name
    assert summary["dropped_chi2"] == 0
    config = load_config("tiny", overrides={"cosmology": {"convention": "paper"}})
    run_catalog(config, workdir, progress=False)
    paper = pd.read_parquet(workdir.sample).set_index("objid")
    gal = galaxies["good_3"]
    dist = 3e5 * gal.z / 70
    assert paper.loc[gal.objid, "dist_mpc"] == pytest.approx(dist)
    assert paper.loc[gal.objid, "pixel_kpc"] == pytest.approx(dist * 1e3 * np.radians(0.4 / 3600))
    config = load_config(
        "tiny", overrides={"cosmology": {"convention": "paper"}, "catalog": {"pixel_scale_arcsec": 0.8}}
    )
    run_catalog(config, workdir, progress=False)
    coarse = pd.read_parquet(workdir.sample).set_index("objid")
    assert coarse.loc[gal.objid, "pixel_kpc"] == pytest.approx(2 * paper.loc[gal.objid, "pixel_kpc"])


def test_split_is_reproducible_and_seeded(survey: Survey) -> None:
    galaxies = [Galaxy(objid=10_000 + k, ra=120.0 + 0.01 * k, dec=5.0) for k in range(60)]
    workdir = survey(galaxies)
    first, summary = _run(workdir)
    again, _ = _run(workdir)
    pd.testing.assert_frame_equal(first, again)
    assert (summary["n_train"], summary["n_val"], summary["n_test"]) == (48, 6, 6)
    other, _ = _run(workdir, split_seed=7)
    assert (other["split"] != first["split"]).any()
    assert (other["split"] == "test").sum() == 6


def test_stage_result_and_missing_stars(survey: Survey, galaxies: dict[str, Galaxy]) -> None:
    workdir = survey(list(galaxies.values()), stars=False)
    result = run_catalog(load_config("tiny"), workdir, progress=False)
    assert result.stage == "catalog"
    assert result.outputs == [
        "sample.parquet",
        "results/tables/sample_summary.csv",
        "results/tables/sample_chi2_rejected.parquet",
    ]
    assert all((workdir.root / rel).is_file() for rel in result.outputs)
    assert result.summary["sample"] == 10
    assert sum(result.summary["split"].values()) == 10
    summary = pd.read_csv(workdir.tables / "sample_summary.csv")
    assert list(summary.columns) == ["key", "value", "description"]
    assert "n_stars" not in set(summary["key"])
    assert not list(workdir.root.rglob(".tmp-*"))  # atomic writes leave no temporary behind


def test_errors_name_what_is_wrong(survey: Survey, galaxies: dict[str, Galaxy]) -> None:
    config = load_config("tiny")
    nobody = survey([Galaxy(objid=1, logd25=0.3), Galaxy(objid=2, ra=151.0, chi2_r=9.0)])
    with pytest.raises(
        InputDataError,
        match=r"no galaxy passes the catalogue selection: n_gswlc = 2; .*"
        r"dropped_d25 = 1; .*dropped_chi2 = 1",
    ):
        run_catalog(config, nobody, progress=False)
    empty_leda = survey(list(galaxies.values()))
    empty_leda.hyperleda.write_text("pgc|al2000|de2000|logd25\n")
    empty_leda.photometry.write_text("objID,ra,dec,modelMag_g,modelMagErr_g\n")
    with pytest.raises(InputDataError, match=rf"dropped_no_hyperleda = {len(galaxies)}; "):
        run_catalog(config, empty_leda, progress=False)
    no_g = survey(list(galaxies.values()))
    no_g.photometry.write_text("objID,ra,dec,modelMag_r,modelMagErr_r\n1,150.0,20.0,16.0,0.01\n")
    with pytest.raises(InputDataError, match=r"the SDSS photometry has no g band"):
        run_catalog(config, no_g, progress=False)
    no_leda = survey(list(galaxies.values()))
    no_leda.hyperleda.unlink()
    with pytest.raises(InputDataError, match=r"raw/hyperleda\.csv does not exist"):
        run_catalog(config, no_leda, progress=False)


def test_cli_exits_2_with_one_line_naming_file_and_line(
    survey: Survey, galaxies: dict[str, Galaxy], capsys: pytest.CaptureFixture[str]
) -> None:
    workdir = survey(list(galaxies.values()))
    gswlc = workdir.gswlc_dir / "GSWLC-X2.dat"
    lines = gswlc.read_text().splitlines(keepends=True)
    lines[3] = lines[3].replace(" 0.050000 ", " 0.05o000 ", 1)
    gswlc.write_text("".join(lines))
    status = cli.main(["-q", "catalog", "--preset", "tiny", "--workdir", str(workdir.root)])
    err = capsys.readouterr().err.strip()
    assert status == 2
    assert len(err.splitlines()) == 1
    assert "GSWLC-X2.dat, line 4, field 'z': expected a finite number, found '0.05o000'" in err
    assert not workdir.sample.exists()


def test_header_only_gz2_file_is_logged_as_a_warning(
    survey: Survey, galaxies: dict[str, Galaxy], caplog: pytest.LogCaptureFixture
) -> None:
    workdir = survey(list(galaxies.values()))
    header = workdir.gz2.read_text().splitlines(keepends=True)[0]
    workdir.gz2.write_text(header)
    with caplog.at_level(logging.WARNING, logger="morphomass.catalog"):
        sample, summary = _run(workdir)
    assert not sample["has_gz2"].any() and summary["gz2_match_fraction"] == 0
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1
    assert re.search(r"raw/gz2_hart16\.csv has a header and no rows .*0 % match", warned[0])


def test_gz2_table_matching_no_galaxy_is_logged_as_a_warning(
    survey: Survey, galaxies: dict[str, Galaxy], caplog: pytest.LogCaptureFixture
) -> None:
    far = Galaxy(objid=5, ra=10.0, dec=-60.0, in_hyperleda=False, in_gz2=True)  # not in the sample
    workdir = survey([g for name, g in galaxies.items() if name != "good_gz2"] + [far])
    with caplog.at_level(logging.WARNING, logger="morphomass.catalog"):
        sample, _ = _run(workdir)
    assert not sample["has_gz2"].any()
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1
    assert re.search(
        rf"none of the {len(sample)} sample galaxies has a GZ2 row within 3\.6 arcsec .*table of 2 rows",
        warned[0],
    )


def test_gz2_matches_give_no_warning(
    survey: Survey, galaxies: dict[str, Galaxy], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="morphomass.catalog"):
        _run(survey(list(galaxies.values())))
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_target_is_configurable_and_recorded_in_the_sample(
    survey: Survey, galaxies: dict[str, Galaxy]
) -> None:
    workdir = survey(list(galaxies.values()))
    default, _ = _run(workdir)
    assert read_target(workdir.sample) == ML_G
    np.testing.assert_array_equal(default["target"], default["ml"])
    np.testing.assert_array_equal(default["target_err"], default["ml_err"])

    gswlc = read_gswlc(workdir.gswlc_dir / "GSWLC-X2.dat").set_index("objid")
    sample, summary = _run(workdir, target="logsfr", dex_err_floor=0.3)
    target = read_target(workdir.sample)
    assert (target.name, target.kind, target.prediction, target.unit) == (
        "logsfr",
        "difference",
        "log_sfr",
        "dex",
    )
    assert sample["objid"].tolist() == default["objid"].tolist()  # the same galaxies and split
    assert sample["split"].tolist() == default["split"].tolist()
    rows = gswlc.loc[sample["objid"]]
    np.testing.assert_allclose(sample["target"], rows["log_sfr_sed"])
    np.testing.assert_allclose(sample["target_err"], np.maximum(rows["log_sfr_sed_err"], 0.3))
    assert summary["target_median"] == pytest.approx(sample["target"].median())

    sample, _ = _run(workdir, target="a_v")  # a user-named GSWLC-2 column, its error column a_v_err
    target = read_target(workdir.sample)
    assert (target.kind, target.prediction, target.error_column) == ("difference", "a_v", "a_v_err")
    np.testing.assert_allclose(sample["target"], gswlc.loc[sample["objid"], "a_v"])

    with pytest.raises(InputDataError, match=r"catalog\.target = 'a_x' is not a real-valued GSWLC-2 column"):
        _run(workdir, target="a_x")
    with pytest.raises(InputDataError, match=r"catalog\.target_error = 'a_b_err2'"):
        _run(workdir, target="a_v", target_error="a_b_err2")
    with pytest.raises(InputDataError, match=r"catalog\.target = 'flag_sed' is not a real-valued"):
        _run(workdir, target="flag_sed", target_error="a_v_err")  # a flag is not a target
    with pytest.raises(
        InputDataError, match=r"catalog\.target_error = 'a_v_err' is only used with a GSWLC-2"
    ):
        _run(workdir, target="logsfr", target_error="a_v_err")
