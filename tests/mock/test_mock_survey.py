"""The mock survey end to end (DESIGN §2, §6; reference/data_formats.md).

The raw files it writes, their formats, its FITS images, determinism and resume, and the catalogue
distributions the sample selection depends on.

One tiny-preset ``run_mock`` is shared by the module; determinism and resume use extra runs of 8 galaxies; the
selection statistics use a catalogue-only ``make_survey`` draw of 1500 image galaxies (no rendering).
"""

from __future__ import annotations

import math
from pathlib import Path

import astropy.units as u
import numpy as np
import pandas as pd
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS

from morphomass import gz2
from morphomass.config import PipelineConfig, load_config
from morphomass.mock import run_mock
from morphomass.mock.survey import Survey, make_survey
from morphomass.workdir import WorkDir

BANDS = ("u", "g", "r", "i", "z")
HYPERLEDA_HEADER = "pgc|objname|objtype|al2000|de2000|logd25|e_logd25|logr25|pa"
#: 0-based GSWLC-2 columns (reference/data_formats.md §1.3) used below.
GSWLC_OBJID, GSWLC_RA, GSWLC_DEC, GSWLC_Z, GSWLC_CHI2, GSWLC_LOGM, GSWLC_LOGM_ERR = 0, 5, 6, 7, 8, 9, 10
LOG10_4 = math.log10(4.0)  # D25 > 0.4' <=> logd25 > log10(4)


# ---------------------------------------------------------------------------------- fixtures


def _tiny_config() -> PipelineConfig:
    # The tiny preset, with enough missing masses that the -99 sentinel surely appears in its 120 GSWLC rows.
    return load_config("tiny", overrides={"mock": {"missing_mass_fraction": 0.05}})


@pytest.fixture(scope="module", name="tiny")
def fixture_tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[PipelineConfig, WorkDir, dict]:
    """One tiny-preset mock survey on disk: (config, workdir, run summary)."""
    config = _tiny_config()
    workdir = WorkDir(tmp_path_factory.mktemp("mock_tiny"))
    result = run_mock(config, workdir, progress=False)
    return config, workdir, result.summary


@pytest.fixture(scope="module", name="truth")
def fixture_truth(tiny: tuple[PipelineConfig, WorkDir, dict]) -> pd.DataFrame:
    return pd.read_parquet(tiny[1].mock_truth)


@pytest.fixture(scope="module", name="gswlc")
def fixture_gswlc(tiny: tuple[PipelineConfig, WorkDir, dict]) -> pd.DataFrame:
    path = tiny[1].gswlc_dir / "GSWLC-X2.dat"
    return pd.read_csv(path, sep=r"\s+", header=None, dtype={0: "int64", 1: "int64"})


@pytest.fixture(scope="module", name="hyperleda")
def fixture_hyperleda(tiny: tuple[PipelineConfig, WorkDir, dict]) -> pd.DataFrame:
    return pd.read_csv(tiny[1].hyperleda, sep="|")


@pytest.fixture(scope="module", name="photometry")
def fixture_photometry(tiny: tuple[PipelineConfig, WorkDir, dict]) -> pd.DataFrame:
    return pd.read_csv(tiny[1].photometry, dtype={"objID": "int64"})


@pytest.fixture(scope="module", name="big_survey")
def fixture_big_survey() -> tuple[PipelineConfig, Survey]:
    """Catalogues of 1500 image galaxies (plus as many small ones), drawn without rendering."""
    config = load_config("tiny", overrides={"mock": {"n_galaxies": 1500, "seed": 11}})
    return config, make_survey(config.mock, np.random.default_rng(config.mock.seed))


def _nearest(
    ra1: np.ndarray, dec1: np.ndarray, ra2: np.ndarray, dec2: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Index in catalogue 2 of the nearest neighbour of each object of catalogue 1, and its separation (")."""
    idx, sep, _ = SkyCoord(ra1 * u.deg, dec1 * u.deg).match_to_catalog_sky(
        SkyCoord(ra2 * u.deg, dec2 * u.deg)
    )
    return idx, sep.arcsec


def _leda_for(gswlc: pd.DataFrame, hyperleda: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """logd25 of the HyperLeda object nearest each GSWLC row, and the separation in arcsec."""
    idx, sep = _nearest(
        gswlc[GSWLC_RA].to_numpy(),
        gswlc[GSWLC_DEC].to_numpy(),
        hyperleda["al2000"].to_numpy() * 15.0,
        hyperleda["de2000"].to_numpy(),
    )
    return hyperleda["logd25"].to_numpy()[idx], sep


# ---------------------------------------------------------------------------------- 1. files


def test_run_mock_writes_every_raw_file(
    tiny: tuple[PipelineConfig, WorkDir, dict], truth: pd.DataFrame
) -> None:
    config, workdir, summary = tiny
    for path in (
        workdir.gswlc_dir / "GSWLC-X2.dat",
        workdir.hyperleda,
        workdir.gz2,
        workdir.photometry,
        workdir.stars,
        workdir.mock_truth,
    ):
        assert path.is_file(), path
        assert path.stat().st_size > 0, path
    with_image = truth.loc[truth["has_image"], "objid"].astype("int64")
    assert len(with_image) == config.mock.n_galaxies
    assert set(config.mock.image_bands) == {"g", "i"}
    for band in config.mock.image_bands:
        expected = {workdir.raw_image(band, objid) for objid in with_image}
        assert all(p.is_file() for p in expected), band
        assert set((workdir.raw_images / band).glob("*.fits")) == expected  # and nothing else
    assert summary["images_rendered"] == len(with_image) * len(config.mock.image_bands)
    assert not list(workdir.root.rglob(".tmp-*"))  # atomic writes leave no temporaries


def test_truth_has_the_documented_columns(truth: pd.DataFrame) -> None:
    for column in (
        "objid",
        "cls",
        "z",
        "has_image",
        "inclination_deg",
        "a_g_mag",
        "log_ml_g_intrinsic",
        "ml_true",
    ):
        assert column in truth.columns, column
    assert truth["objid"].dtype == np.int64
    assert set(truth["cls"]) <= {"elliptical", "disk", "irregular", "merger"}


# ---------------------------------------------------------------------------------- 2. formats


def test_gswlc_has_24_columns_and_exact_int64_ids(
    tiny: tuple[PipelineConfig, WorkDir, dict], gswlc: pd.DataFrame, truth: pd.DataFrame
) -> None:
    path = tiny[1].gswlc_dir / "GSWLC-X2.dat"
    assert gswlc.shape[1] == 24
    assert gswlc[0].dtype == np.int64
    assert gswlc[1].dtype == np.int64
    assert (gswlc[0] > 2**53).all()
    lines = path.read_text().splitlines()
    assert len(lines) == len(gswlc) == len(truth)
    tokens = [line.split() for line in lines]
    assert all(len(t) == 24 for t in tokens)
    # Both id columns round-trip exactly through the int64 read.
    assert [t[0] for t in tokens] == [str(v) for v in gswlc[0]]
    assert [t[1] for t in tokens] == [str(v) for v in gswlc[1]]
    assert set(gswlc[0]) == set(truth["objid"].astype("int64"))
    # A float64 read (np.loadtxt, pandas without dtype) would corrupt the ids: the trap the format has.
    as_float = pd.read_csv(path, sep=r"\s+", header=None, dtype={0: "float64"})[0].to_numpy()
    assert (as_float.astype(np.int64) != gswlc[0].to_numpy()).any()


def test_gswlc_marks_missing_masses_with_minus_99(
    tiny: tuple[PipelineConfig, WorkDir, dict], gswlc: pd.DataFrame
) -> None:
    missing = gswlc[GSWLC_LOGM] == -99
    assert missing.any()
    assert not missing.all()
    assert (gswlc.loc[missing, GSWLC_LOGM_ERR] == -99).all()
    assert (gswlc.loc[~missing, GSWLC_LOGM].between(7.0, 13.0)).all()
    assert (gswlc.loc[~missing, GSWLC_LOGM_ERR] > 0).all()


def test_hyperleda_header_units_and_positions(
    tiny: tuple[PipelineConfig, WorkDir, dict],
    hyperleda: pd.DataFrame,
    gswlc: pd.DataFrame,
    truth: pd.DataFrame,
) -> None:
    text = tiny[1].hyperleda.read_text()
    assert text.splitlines()[0] == HYPERLEDA_HEADER
    assert hyperleda.columns.tolist() == HYPERLEDA_HEADER.split("|")
    # al2000 is in hours: within 0..24 (and, below, only x15 matches the GSWLC positions).
    assert hyperleda["al2000"].between(0.0, 24.0).all()
    # logd25 is printed with at most two decimals.
    for row in text.splitlines()[1:]:
        field = row.split("|")[5]
        assert field == "" or len(field.split(".")[-1]) <= 2, row
    # Every image galaxy has a HyperLeda counterpart (al2000 * 15 = RA in degrees) within 3".
    image_ids = set(truth.loc[truth["has_image"], "objid"].astype("int64"))
    images = gswlc[gswlc[GSWLC_OBJID].isin(image_ids)]
    assert len(images) == len(image_ids)
    _, sep = _nearest(
        images[GSWLC_RA].to_numpy(),
        images[GSWLC_DEC].to_numpy(),
        hyperleda["al2000"].to_numpy() * 15.0,
        hyperleda["de2000"].to_numpy(),
    )
    assert (sep < 3.0).all(), np.sort(sep)[-5:]
    # Read as degrees instead of hours, nothing would match.
    _, sep_wrong = _nearest(
        images[GSWLC_RA].to_numpy(),
        images[GSWLC_DEC].to_numpy(),
        hyperleda["al2000"].to_numpy(),
        hyperleda["de2000"].to_numpy(),
    )
    assert (sep_wrong > 3.0).all()


def test_gz2_columns_ids_and_vote_tree(tiny: tuple[PipelineConfig, WorkDir, dict]) -> None:
    table = pd.read_csv(tiny[1].gz2)
    assert table.columns.tolist() == gz2.hart16_columns()
    assert len(table.columns) == 231
    assert len(table) > 0
    assert table["dr7objid"].dtype == np.int64
    assert (table["dr7objid"] > 2**53).all()
    assert table["dr7objid"].is_unique
    tokens = [line.split(",", 1)[0] for line in tiny[1].gz2.read_text().splitlines()[1:]]
    assert tokens == [str(v) for v in table["dr7objid"]]

    def count(answer_id: str) -> np.ndarray:
        return table[gz2.hart16_column(gz2.ANSWERS[gz2.answer_index(answer_id)], "count")].to_numpy()

    def total(question: gz2.Question) -> np.ndarray:
        return sum(count(a.answer_id) for a in question.answers)

    n_checked = 0
    for question in gz2.QUESTIONS:
        if question.parent is not None:
            np.testing.assert_array_equal(total(question), count(question.parent), err_msg=question.task)
            n_checked += 1
    assert n_checked == 9
    t01, t06 = (next(q for q in gz2.QUESTIONS if q.task == t) for t in ("t01", "t06"))
    np.testing.assert_array_equal(total(t06), total(t01) - count("a03"))
    np.testing.assert_array_equal(total(t01), table["total_classifications"].to_numpy())
    all_counts = sum(count(a.answer_id) for a in gz2.ANSWERS)
    np.testing.assert_array_equal(all_counts, table["total_votes"].to_numpy())


def test_photometry_and_star_catalogues(
    tiny: tuple[PipelineConfig, WorkDir, dict], photometry: pd.DataFrame, gswlc: pd.DataFrame
) -> None:
    expected = ["objID", "ra", "dec"] + [f"modelMag_{b}" for b in BANDS] + [f"modelMagErr_{b}" for b in BANDS]
    assert photometry.columns.tolist() == expected
    assert photometry["objID"].dtype == np.int64
    assert set(photometry["objID"]) == set(gswlc[GSWLC_OBJID])
    stars = pd.read_csv(tiny[1].stars, dtype={"objID": "int64"})
    assert stars.columns.tolist() == ["objID", "ra", "dec", "type", "psfMag_g"]
    assert len(stars) > 0
    assert (stars["type"] == 6).all()
    assert stars["objID"].is_unique


# ---------------------------------------------------------------------------------- 3. FITS


def _image_rows(
    truth: pd.DataFrame, gswlc: pd.DataFrame, hyperleda: pd.DataFrame, photometry: pd.DataFrame
) -> pd.DataFrame:
    """One row per image galaxy with what the raw catalogues say about it (as a reader would find it)."""
    logd25, sep = _leda_for(gswlc, hyperleda)
    cat = pd.DataFrame(
        {
            "objid": gswlc[GSWLC_OBJID].to_numpy(),
            "ra": gswlc[GSWLC_RA].to_numpy(),
            "dec": gswlc[GSWLC_DEC].to_numpy(),
            "logd25": logd25,
            "leda_sep": sep,
        }
    )
    cat = cat.merge(photometry[["objID", "modelMag_g"]], left_on="objid", right_on="objID")
    image_ids = truth.loc[truth["has_image"], "objid"].astype("int64")
    rows = cat[cat["objid"].isin(image_ids)].reset_index(drop=True)
    assert len(rows) == len(image_ids)
    return rows


def test_fits_images_have_wcs_units_and_field_of_view(
    tiny: tuple[PipelineConfig, WorkDir, dict],
    truth: pd.DataFrame,
    gswlc: pd.DataFrame,
    hyperleda: pd.DataFrame,
    photometry: pd.DataFrame,
) -> None:
    config, workdir, _ = tiny
    mock = config.mock
    rows = _image_rows(truth, gswlc, hyperleda, photometry)
    assert (rows["leda_sep"] < 3.0).all()
    n_capped = 0
    for row in rows.itertuples(index=False):
        for band in mock.image_bands:
            with fits.open(workdir.raw_image(band, row.objid)) as hdul:
                header = hdul[0].header
                data = hdul[0].data
            assert header["BITPIX"] == -32
            assert data.dtype.kind == "f" and data.dtype.itemsize == 4
            assert header["BUNIT"] == "nanomaggy"
            ny, nx = data.shape
            assert nx == ny
            assert np.isfinite(data).all()
            wcs = WCS(header)
            assert wcs.has_celestial
            assert all(ctype.endswith("TAN") for ctype in wcs.wcs.ctype)
            centre = wcs.pixel_to_world((nx - 1) / 2, (ny - 1) / 2)
            target = SkyCoord(row.ra * u.deg, row.dec * u.deg)
            assert centre.separation(target).arcsec < 0.01, (row.objid, band)
            scale_arcsec = np.sqrt(abs(np.linalg.det(wcs.celestial.pixel_scale_matrix))) * 3600
            assert scale_arcsec == pytest.approx(mock.pixel_scale_arcsec, rel=1e-6)
            fov_pix = 1.125 * 0.1 * 10**row.logd25 * 60 / scale_arcsec
            if nx == mock.max_image_pixels and fov_pix > nx:
                n_capped += band == mock.image_bands[0]
            else:
                assert abs(nx - fov_pix) <= 1.0, (row.objid, nx, fov_pix)
    assert n_capped < len(rows)  # the field-of-view rule was checked on at least some images


def test_g_image_flux_matches_the_photometry(
    tiny: tuple[PipelineConfig, WorkDir, dict],
    truth: pd.DataFrame,
    gswlc: pd.DataFrame,
    hyperleda: pd.DataFrame,
    photometry: pd.DataFrame,
) -> None:
    """Total g flux of each image (stars and noise included) against the catalogue's g flux.

    The background is the image's residual sky offset from mock_truth, not the image median: a field of view
    of 1.125 D25 puts the median pixel inside the 25 mag/arcsec^2 isophote, so the median holds galaxy light
    (half of it for some galaxies), and no part of such a cut-out is free of the galaxy's wings.
    """
    workdir = tiny[1]
    rows = _image_rows(truth, gswlc, hyperleda, photometry)
    rows = rows[rows["modelMag_g"] > -9999].reset_index(drop=True)  # the mock drops some photometry (-9999)
    by_id = truth.set_index("objid")
    ratios = []
    for row in rows.itertuples(index=False):
        data = fits.getdata(workdir.raw_image("g", row.objid)).astype(np.float64)
        image_flux = data.sum() - by_id.loc[row.objid, "background_offset_nmgy"] * data.size
        ratios.append(image_flux / 10 ** (-0.4 * (row.modelMag_g - 22.5)))
    ratios = np.asarray(ratios)
    assert (np.abs(ratios - 1) < 0.3).mean() >= 0.8, np.round(np.sort(ratios), 2)
    assert 0.85 < np.median(ratios) < 1.1
    # Dust lanes redistribute light: their attenuation is already in the catalogue magnitudes.
    lane = rows["objid"].map(by_id["has_dust_lane"]).to_numpy(dtype=bool)
    assert lane.sum() >= 3
    assert 0.85 < np.median(ratios[lane]) < 1.15, np.round(np.sort(ratios[lane]), 2)


# ---------------------------------------------------------------------------------- 4. determinism


def _small_config(seed: int) -> PipelineConfig:
    return load_config(
        "tiny", overrides={"mock": {"n_galaxies": 8, "seed": seed, "workers": 1, "image_bands": ["g"]}}
    )


def _file_bytes(workdir: WorkDir) -> dict[str, bytes]:
    files = {
        p.relative_to(workdir.root).as_posix(): p.read_bytes() for p in workdir.raw.rglob("*") if p.is_file()
    }
    files["mock_truth.parquet"] = workdir.mock_truth.read_bytes()
    return files


@pytest.fixture(scope="module", name="small_runs")
def fixture_small_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, WorkDir]:
    runs = {}
    for name, seed in (("a", 5), ("b", 5), ("other_seed", 6)):
        workdir = WorkDir(tmp_path_factory.mktemp(f"mock_small_{name}"))
        run_mock(_small_config(seed), workdir, progress=False)
        runs[name] = workdir
    return runs


def test_same_seed_gives_byte_identical_files(small_runs: dict[str, WorkDir]) -> None:
    first, second = _file_bytes(small_runs["a"]), _file_bytes(small_runs["b"])
    assert sorted(first) == sorted(second)
    assert sum(name.startswith("raw/images/g/") for name in first) == 8
    different = [name for name in first if first[name] != second[name]]
    assert different == []


def test_other_seed_gives_other_files(small_runs: dict[str, WorkDir]) -> None:
    first, other = _file_bytes(small_runs["a"]), _file_bytes(small_runs["other_seed"])
    for name in (
        "raw/gswlc/GSWLC-X2.dat",
        "raw/hyperleda.csv",
        "raw/sdss_photometry.csv",
        "mock_truth.parquet",
    ):
        assert first[name] != other[name], name
    assert not {n for n in first if n.startswith("raw/images/")} & {
        n for n in other if n.startswith("raw/images/")
    }


def test_rerun_resumes_without_rendering(tmp_path: Path, small_runs: dict[str, WorkDir]) -> None:
    workdir = WorkDir(tmp_path)
    config = _small_config(5)
    first = run_mock(config, workdir, progress=False)
    assert first.summary["images_rendered"] == 8
    images = sorted(workdir.raw_images.rglob("*.fits"))
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in images}
    again = run_mock(config, workdir, progress=False)
    assert again.summary["images_rendered"] == 0
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in images} == before
    # An interrupted run (one image missing) renders only that galaxy, identically.
    images[3].unlink()
    resumed = run_mock(config, workdir, progress=False)
    assert resumed.summary["images_rendered"] == 1
    assert images[3].read_bytes() == before[images[3]][1]
    assert _file_bytes(workdir) == _file_bytes(small_runs["a"])


# ---------------------------------------------------------------------------------- 5. selection


def test_many_gswlc_rows_fail_the_d25_cut(big_survey: tuple[PipelineConfig, Survey]) -> None:
    config, survey = big_survey
    gswlc = survey.gswlc.rename(columns={"objid": GSWLC_OBJID, "ra": GSWLC_RA, "dec": GSWLC_DEC})
    logd25, sep = _leda_for(gswlc, survey.hyperleda)
    has_image = gswlc[GSWLC_OBJID].isin(survey.truth.loc[survey.truth["has_image"], "objid"]).to_numpy()
    matched = sep < config.catalog.hyperleda_radius_arcsec
    passes = matched & (logd25 > LOG10_4)  # NaN logd25 (no diameter) fails
    assert passes[has_image].all()
    assert not passes[~has_image].any()
    assert (logd25[~has_image & matched] < LOG10_4 + 1e-9).sum() > 0.9 * (~has_image).sum()
    assert 0.2 <= 1 - passes.mean() <= 0.8


def test_chi2_tail_of_image_galaxies(big_survey: tuple[PipelineConfig, Survey]) -> None:
    _, survey = big_survey
    truth = survey.truth
    chi2 = truth.loc[truth["has_image"], "chi2_r"].to_numpy()
    assert 0.05 <= (chi2 >= 5).mean() <= 0.25


def test_missing_mass_fraction_is_near_config(big_survey: tuple[PipelineConfig, Survey]) -> None:
    config, survey = big_survey
    n = len(survey.gswlc)
    p = config.mock.missing_mass_fraction
    missing = (survey.gswlc["log_mstar"] == -99).mean()
    assert abs(missing - p) <= 4 * math.sqrt(p * (1 - p) / n) + 1 / n


def test_gz2_matches_most_image_galaxies(big_survey: tuple[PipelineConfig, Survey]) -> None:
    config, survey = big_survey
    images = survey.truth[survey.truth["has_image"]]
    _, sep = _nearest(
        images["ra"].to_numpy(),
        images["dec"].to_numpy(),
        survey.gz2["ra"].to_numpy(),
        survey.gz2["dec"].to_numpy(),
    )
    matched = sep < config.catalog.gz2_radius_arcsec
    assert 0.6 <= matched.mean() <= 0.95


def test_ml_is_bimodal_and_dust_raises_edge_on_ml(big_survey: tuple[PipelineConfig, Survey]) -> None:
    _, survey = big_survey
    images = survey.truth[survey.truth["has_image"]]
    ml = images["ml_true"]
    ellipticals = ml[images["cls"] == "elliptical"]
    disks = images[images["cls"] == "disk"]
    assert len(ellipticals) > 50 and len(disks) > 100
    assert ellipticals.median() > 2 * disks["ml_true"].median()
    edge_on = disks.loc[disks["inclination_deg"] > 75, "ml_true"]
    face_on = disks.loc[disks["inclination_deg"] < 45, "ml_true"]
    assert len(edge_on) > 20 and len(face_on) > 20
    assert edge_on.median() > face_on.median()
    # ... because of dust, which grows with inclination.
    assert (
        disks.loc[disks["inclination_deg"] > 75, "a_g_mag"].median()
        > disks.loc[disks["inclination_deg"] < 45, "a_g_mag"].median()
    )


def test_redshifts_and_truth_columns(big_survey: tuple[PipelineConfig, Survey]) -> None:
    _, survey = big_survey
    assert survey.truth["z"].between(0.01, 0.3).all()
    assert survey.gswlc["z"].between(0.01, 0.3).all()
    for column in ("cls", "inclination_deg", "a_g_mag", "log_ml_g_intrinsic", "ml_true"):
        assert column in survey.truth.columns, column
    np.testing.assert_allclose(survey.truth["ml_true"], 10 ** survey.truth["log_ml_g_target"])


def test_sed_sfr_errors_grow_as_star_formation_fades(big_survey: tuple[PipelineConfig, Survey]) -> None:
    _, survey = big_survey
    rows = survey.gswlc[survey.gswlc["log_sfr_sed"] != -99]
    error = rows["log_sfr_sed_err"]
    assert error.between(0.08, 0.7).all()
    log_ssfr = rows["log_sfr_sed"] - rows["log_mstar"]
    star_forming, quiescent = error[log_ssfr > -9.8], error[log_ssfr < -12.0]
    assert len(star_forming) > 50 and len(quiescent) > 50
    assert star_forming.median() < 0.2 < 0.4 < quiescent.median()
