"""The fetch stage end to end against the local archive server.

raw/ as the mock writes it, resume, limit, the failure report, bad server answers, the VizieR fallback, the
command line, and catalog + preprocess on top.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from factories.archive import FRAME_A, FRAME_B, SAS_PREFIX, FakeArchive, FakeSky
from morphomass import cli
from morphomass.config import load_config
from morphomass.errors import FetchError, FetchFallbackWarning, InputDataError
from morphomass.fetch import run_fetch
from morphomass.fetch.frames import fov_pixels, mosaic_frames
from morphomass.fetch.stage import in_region
from morphomass.pipeline import execute_stage
from morphomass.rawformats import HYPERLEDA
from morphomass.workdir import WorkDir


@pytest.fixture(autouse=True)
def _restore_logging():
    """Put logging back after each test (the command line configures it globally)."""
    root, package = logging.getLogger(), logging.getLogger("morphomass")
    saved = (root.handlers[:], root.level, package.level)
    yield
    root.handlers[:], root.level = saved[0], saved[1]
    package.setLevel(saved[2])


def _fetch(archive: FakeArchive, tmp_path: Path, **fetch: object) -> tuple[WorkDir, dict]:
    workdir = WorkDir(tmp_path / "work")
    result = run_fetch(archive.config(tmp_path, **fetch), workdir, progress=False)
    assert result.outputs == ["raw", "fetch_report.json"]
    return workdir, result.summary


def _report(workdir: WorkDir) -> dict:
    return json.loads((workdir.fetch_report).read_text())


def _targets(sky: FakeSky) -> pd.DataFrame:
    return sky.galaxies[sky.galaxies["role"] == "target"]


def _lines(data: bytes) -> list[str]:
    return [line for line in data.decode().splitlines() if line.strip()]


def test_fetch_writes_raw_in_the_mock_formats(archive: FakeArchive, sky: FakeSky, tmp_path: Path) -> None:
    workdir, summary = _fetch(archive, tmp_path, region=list(sky.region))
    targets = _targets(sky)
    inside = sky.galaxies["role"] != "far"

    # GSWLC-2: the served rows inside the region, verbatim
    served = _lines(sky.gswlc_text)
    written = _lines((workdir.gswlc_dir / "GSWLC-X2.dat").read_bytes())
    assert written == [line for line, keep in zip(served, inside, strict=True) if keep]
    assert summary["gswlc_rows"] == int(inside.sum())

    # HyperLeda: the mock's '|' format, every served row of the (padded) region box
    hyperleda = (workdir.hyperleda).read_text().splitlines()
    assert hyperleda[0] == "|".join(HYPERLEDA.names)
    table = pd.read_csv(workdir.hyperleda, sep="|")
    expected = in_region(sky.leda["al2000"] * 15, sky.leda["de2000"], sky.region)
    assert sorted(table["pgc"]) == sorted(sky.leda["pgc"][expected]) and len(table) == len(sky.galaxies) - 2
    assert np.allclose(table["al2000"], sky.leda.set_index("pgc").loc[table["pgc"], "al2000"], atol=1e-7)

    # photometry: one row per target with an SDSS counterpart, keyed by the GSWLC objid
    photometry = pd.read_csv(workdir.photometry)
    assert list(photometry.columns[:4]) == ["objID", "ra", "dec", "modelMag_u"]
    assert len(photometry.columns) == 13
    assert set(photometry["objID"]) == set(targets["objid"]) - {int(targets["objid"].iloc[4])}
    report = _report(workdir)
    assert report["counts"]["photometry_objid_differs"] == 1  # target 3's DR12 objID differs; GSWLC's is kept
    assert {(f["objid"], f["step"]) for f in report["failures"]} == {
        (int(targets["objid"].iloc[4]), "photometry")
    }

    # stars: the point sources near the targets, not those far away
    stars = pd.read_csv(workdir.stars)
    assert list(stars.columns) == ["objID", "ra", "dec", "type", "psfMag_g"]
    assert set(stars["objID"]) == set(sky.stars["objID"][:6]) and (stars["type"] == 6).all()

    # GZ2: the served rows inside the region, verbatim, header included
    served = _lines(sky.gz2_text)
    written = _lines(workdir.gz2.read_bytes())
    assert written[0] == served[0] and len(written) == 7 and set(written[1:]) <= set(served[1:])

    # images: one per target, FoV 1.125 x D25 centred on the galaxy, cut out of one frame or mosaicked
    assert summary["images_written"] == len(targets) and summary["targets"] == len(targets)
    for row in targets.itertuples():
        path = workdir.raw_image("g", row.objid)
        with fits.open(path) as hdul:
            image, header = hdul[0].data, hdul[0].header
        npix = fov_pixels(row.d25_arcmin, fov_factor=1.125, pixel_scale_arcsec=0.396)
        assert image.shape == (npix, npix) and image.dtype == np.dtype(">f4")
        assert header["BUNIT"] == "nanomaggy" and header["MMMETHOD"] == row.method
        x, y = WCS(header).world_to_pixel_values(row.ra, row.dec)
        assert abs(x - (npix - 1) / 2) <= 0.5 + 1e-6 and abs(y - (npix - 1) / 2) <= 0.5 + 1e-6
        if row.method == "mosaic":
            whole, _, _ = mosaic_frames(
                [(sky.source_data, sky.source_wcs)],
                ra_deg=row.ra,
                dec_deg=row.dec,
                npix=npix,
                pixel_scale_arcsec=0.396,
            )
            assert np.percentile(np.abs(image - whole), 99) < 0.01
        else:
            # the image's pixel (0, 0) is a whole source pixel, and the pixels are the source's, unresampled
            sx, sy = sky.source_wcs.world_to_pixel_values(*WCS(header).pixel_to_world_values(0, 0))
            x0, y0 = round(float(sx)), round(float(sy))
            assert abs(sx - x0) < 1e-6 and abs(sy - y0) < 1e-6
            np.testing.assert_array_equal(image, sky.source_data[y0 : y0 + npix, x0 : x0 + npix])

    # the frame cache is shared: each frame was downloaded once although eight galaxies use them
    assert len(archive.hits(SAS_PREFIX)) == 2
    assert len(archive.hits(f"{SAS_PREFIX}/{FRAME_A.rel_path('g')}")) == 1


def test_rerun_resumes_from_the_cache(archive: FakeArchive, sky: FakeSky, tmp_path: Path) -> None:
    workdir, _ = _fetch(archive, tmp_path, region=list(sky.region))
    before = {p: p.read_bytes() for p in workdir.raw.rglob("*") if p.is_file()}
    requests = len(archive.requests)
    _, summary = _fetch(archive, tmp_path, region=list(sky.region))
    assert len(archive.requests) == requests  # nothing is downloaded twice
    assert summary["images_kept"] == len(_targets(sky)) and summary["images_written"] == 0
    assert {p: p.read_bytes() for p in workdir.raw.rglob("*") if p.is_file()} == before

    # an image lost (an interrupted run): only that galaxy is redone, from the cached script and frames
    lost = workdir.raw_image("g", int(_targets(sky)["objid"].iloc[0]))
    lost.unlink()
    _, summary = _fetch(archive, tmp_path, region=list(sky.region))
    assert summary["images_written"] == 1 and lost.read_bytes() == before[lost]
    assert len(archive.requests) == requests


def test_limit_keeps_a_subset_and_only_its_rows(archive: FakeArchive, sky: FakeSky, tmp_path: Path) -> None:
    workdir, summary = _fetch(archive, tmp_path, region=list(sky.region), limit=3, seed=1)
    images = sorted(int(p.stem) for p in (workdir.raw_images / "g").glob("*.fits"))
    assert summary["targets"] == 3 and summary["targets_passing_cuts"] == len(_targets(sky))
    assert len(images) == 3 and set(images) <= set(_targets(sky)["objid"])
    gswlc = [int(line.split()[0]) for line in _lines((workdir.gswlc_dir / "GSWLC-X2.dat").read_bytes())]
    assert sorted(gswlc) == images
    assert len(pd.read_csv(workdir.hyperleda, sep="|")) == 3
    assert summary["gz2_rows"] <= 3
    # a larger limit keeps the same galaxies and adds others; the images of the first run are kept
    _, summary = _fetch(archive, tmp_path, region=list(sky.region), limit=5, seed=1)
    assert summary["images_kept"] == 3 and summary["images_written"] == 2


def test_what_could_not_be_fetched_is_reported(archive: FakeArchive, sky: FakeSky, tmp_path: Path) -> None:
    workdir, summary = _fetch(archive, tmp_path)  # no region: the galaxy far from the frames is a target too
    far = int(sky.galaxies.loc[sky.galaxies["role"] == "far", "objid"].iloc[0])
    failures = {f["objid"]: f for f in _report(workdir)["failures"] if f["step"] == "images"}
    assert list(failures) == [far] and "no SDSS frame" in failures[far]["error"]
    assert summary["failures"] == 2 and summary["images_written"] == len(_targets(sky))
    assert not workdir.raw_image("g", far).exists()
    assert len(_lines((workdir.gswlc_dir / "GSWLC-X2.dat").read_bytes())) == len(sky.galaxies)


def test_downloads_can_be_pinned_by_checksum(archive: FakeArchive, sky: FakeSky, tmp_path: Path) -> None:
    workdir, _ = _fetch(archive, tmp_path / "a", region=list(sky.region))
    sources = _report(workdir)["sources"]
    served = archive.static["/gswlc/GSWLC-X2.dat.gz"][0]
    assert sources["gswlc_X2"]["sha256"] == hashlib.sha256(served).hexdigest()
    pins = {"GSWLC-X2.dat.gz": sources["gswlc_X2"]["sha256"], "gz2_hart16.csv.gz": sources["gz2"]["sha256"]}
    _fetch(archive, tmp_path / "b", region=list(sky.region), checksums=pins)
    with pytest.raises(
        InputDataError, match=r"GSWLC-X2\.dat\.gz: SHA-256 \w+ does not match the expected 1234"
    ):
        _fetch(archive, tmp_path / "c", region=list(sky.region), checksums={"GSWLC-X2.dat.gz": "1234"})


def test_transient_server_failures_are_retried(archive: FakeArchive, sky: FakeSky, tmp_path: Path) -> None:
    archive.fault("/gswlc/GSWLC-X2.dat.gz", "status", status=500)
    archive.fault("/gswlc/GSWLC-X2.dat.gz", "drop", after_bytes=100)
    archive.fault(f"{SAS_PREFIX}/{FRAME_B.rel_path('g')}", "drop", after_bytes=5000)
    archive.fault("/skyserver/x_results.aspx", "status", status=503)
    workdir, summary = _fetch(archive, tmp_path, region=list(sky.region))
    assert summary["retries"] == 4 and summary["images_written"] == len(_targets(sky))
    assert summary["failures"] == 1  # only the galaxy without photometry, as without faults


def test_truncated_gswlc_is_a_clear_error_and_writes_nothing(
    archive: FakeArchive, sky: FakeSky, tmp_path: Path
) -> None:
    archive.static["/gswlc/GSWLC-X2.dat.gz"] = (gzip.compress(sky.gswlc_text)[:-40], {})
    with pytest.raises(InputDataError, match=r"GSWLC-X2\.dat\.gz: truncated gzip file"):
        _fetch(archive, tmp_path)
    assert not (tmp_path / "work" / "raw" / "gswlc").exists()
    assert not any(p.is_file() for p in (tmp_path / "cache").rglob("*"))


def test_html_from_skyserver_is_a_clear_error(archive: FakeArchive, sky: FakeSky, tmp_path: Path) -> None:
    archive.fault("/skyserver/x_results.aspx", "html", times=100)
    with pytest.raises(InputDataError, match="SkyServer photometry query 1/3 .*error page instead of CSV"):
        _fetch(archive, tmp_path, region=list(sky.region))
    assert not (tmp_path / "work" / "raw" / "sdss_photometry.csv").exists()


def test_empty_gswlc_answer_is_a_clear_error(archive: FakeArchive, tmp_path: Path) -> None:
    archive.static["/gswlc/GSWLC-X2.dat.gz"] = (b"", {})
    with pytest.raises(InputDataError, match=r"GSWLC-X2\.dat\.gz is empty"):
        _fetch(archive, tmp_path)


def test_region_without_galaxies_is_a_clear_error(archive: FakeArchive, tmp_path: Path) -> None:
    with pytest.raises(
        InputDataError, match=r"no GSWLC-2 galaxy lies in fetch.region \(0.0, 1.0, -1.0, 1.0\)"
    ):
        _fetch(archive, tmp_path, region=[0.0, 1.0, -1.0, 1.0])


def test_hyperleda_falls_back_to_vizier(archive: FakeArchive, sky: FakeSky, tmp_path: Path) -> None:
    archive.fault("/leda/G.cgi", "html", times=100)
    with pytest.warns(FetchFallbackWarning, match="HyperLeda's SQL interface failed .*HTML"):
        workdir, summary = _fetch(archive, tmp_path, region=list(sky.region))
    assert summary["hyperleda_service"] == "vizier" and summary["targets"] == len(_targets(sky))
    table = pd.read_csv(workdir.hyperleda, sep="|")
    assert np.allclose(table["al2000"], sky.leda.set_index("pgc").loc[table["pgc"], "al2000"], atol=1e-6)
    assert table["objname"].str.fullmatch(r"PGC\d{7}").all()


def test_hyperleda_without_fallback_fails(archive: FakeArchive, sky: FakeSky, tmp_path: Path) -> None:
    archive.fault("/leda/G.cgi", "status", status=502, times=100)
    with pytest.raises(FetchError, match=r"G\.cgi.*failed after 3 attempts: HTTP 502"):
        _fetch(archive, tmp_path, region=list(sky.region), hyperleda_source="leda")


def test_many_failures_in_a_row_abort(archive: FakeArchive, sky: FakeSky, tmp_path: Path) -> None:
    archive.fault("/mosaics/script", "status", status=404, times=100)
    with pytest.raises(FetchError, match=r"3 galaxies in a row failed .*HTTP 404"):
        _fetch(archive, tmp_path, region=list(sky.region), max_consecutive_failures=3)
    failures = _report(WorkDir(tmp_path / "work"))["failures"]  # the report is written all the same
    assert sum(f["step"] == "images" for f in failures) == 3


def test_cli_fetch_with_region_and_limit(
    archive: FakeArchive, sky: FakeSky, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fetch = archive.config(tmp_path).fetch.model_dump(mode="json")
    toml = "[fetch]\n" + "".join(
        f"{key} = {json.dumps(value)}\n"
        for key, value in fetch.items()
        if key.endswith("_url") or key in ("cache_dir", "requests_per_second")
    )
    (tmp_path / "c.toml").write_text(toml)
    ra1, ra2, dec1, dec2 = (str(v) for v in sky.region)
    argv = [
        "-q",
        "fetch",
        "--workdir",
        str(tmp_path / "w"),
        "--preset",
        "tiny",
        "--config",
        str(tmp_path / "c.toml"),
        "--limit",
        "2",
        "--region",
        ra1,
        ra2,
        dec1,
        dec2,
    ]
    assert cli.main(argv) == 0
    assert "targets: 2" in capsys.readouterr().out
    assert len(list((tmp_path / "w" / "raw" / "images" / "g").glob("*.fits"))) == 2
    assert cli.main([*argv[:-5], "--region", ra1, ra2, dec2, dec1]) == 2
    assert "fetch.region" in capsys.readouterr().err


def test_fetched_raw_passes_catalog_and_preprocess(
    archive: FakeArchive, sky: FakeSky, tmp_path: Path
) -> None:
    pytest.importorskip("morphomass.catalog")
    pytest.importorskip("morphomass.preprocess")
    config = archive.config(tmp_path, region=list(sky.region))
    workdir = WorkDir(tmp_path / "work")
    execute_stage("fetch", config, workdir, progress=False)
    catalog = execute_stage("catalog", config, workdir, progress=False)
    preprocess = execute_stage("preprocess", config, workdir, progress=False)
    sample = pd.read_parquet(workdir.sample)
    photometry = pd.read_csv(workdir.photometry)
    assert set(sample["objid"]) == set(_targets(sky)["objid"]) & set(photometry["objID"])
    assert catalog.summary["sample"] == len(sample) == 7
    assert sample["has_gz2"].sum() == 6
    assert preprocess.summary["preprocessed"] == len(sample) and preprocess.summary["failed"] == 0
    assert workdir.images_zarr.exists()


@pytest.mark.network
def test_fetch_one_real_galaxy(tmp_path: Path) -> None:
    """The real archives (run with --run-network; downloads GSWLC-2 and GZ2, ~150 MB, and a frame or two)."""
    config = load_config("tiny", overrides={"fetch": {"region": [180.0, 181.0, 0.0, 1.0], "limit": 1}})
    workdir = WorkDir(tmp_path / "work")
    summary = run_fetch(config, workdir, progress=False).summary
    assert summary["targets"] == 1 and summary["gswlc_rows"] == 1
    assert summary["images_written"] + summary["image_failures"] == 1
    assert summary["photometry_rows"] == 1 and summary["hyperleda_rows"] >= 1
    for path in (workdir.hyperleda, workdir.gz2, workdir.photometry, workdir.stars):
        assert path.exists()
