"""SDSS frames: the real DR12 mosaic-service script, cut-outs and mosaics of a real frame, the frame cache."""

from __future__ import annotations

import bz2
import os
import warnings
from pathlib import Path

import numpy as np
import pytest

from factories.archive import DATA, FRAME_A, FRAME_B, SAS_PREFIX, FakeSky, make_mosaic_script
from morphomass.errors import FetchError, InputDataError
from morphomass.fetch.frames import (
    FrameId,
    FrameStore,
    cutout_from_frame,
    fov_pixels,
    mosaic_frames,
    parse_mosaic_script,
    read_frame,
    target_wcs,
)
from morphomass.fetch.http import HttpClient

REAL_SCRIPT = DATA / "J132947.00+471338.0.sh"


def _client() -> HttpClient:
    return HttpClient(timeout_s=5.0, retries=1, backoff_s=0.0, requests_per_second=1000.0)


def _sky_position(sky: FakeSky, x: float, y: float) -> tuple[float, float]:
    ra, dec = sky.source_wcs.pixel_to_world_values(x, y)
    return float(ra), float(dec)


# ------------------------------------------------------------------------------------------------ the script


def test_parse_the_real_mosaic_script() -> None:
    script = parse_mosaic_script(REAL_SCRIPT.read_text(), source="fixture")
    assert (
        len(script.frames) == 34
    )  # each frame appears twice in the script (wget and $BOSS_PHOTOOBJ branches)
    assert len(set(script.frames)) == 34
    assert script.frames[0] == FrameId(301, 3650, 1, 90)
    assert script.frames[-1] == FrameId(301, 3650, 1, 85)
    assert {f.run for f in script.frames} == {2964, 3650, 3699, 3716}
    assert script.bands == ("r",)
    assert script.center_deg == pytest.approx((202.4465216670, 47.2273441667))
    assert script.image_size == (2726, 2726)
    assert script.pixel_scale_arcsec == pytest.approx(0.396127)
    assert script.output_name == "J132947.00+471338.0-r.fits"


def test_frame_urls_point_at_the_configured_mirror(tmp_path: Path) -> None:
    frame = parse_mosaic_script(REAL_SCRIPT.read_text(), source="fixture").frames[0]
    store = FrameStore(_client(), base_url="https://mirror.example/frames/", cache_dir=tmp_path)
    assert store.url(frame, "g") == "https://mirror.example/frames/301/3650/1/frame-g-003650-1-0090.fits.bz2"
    assert store.path(frame, "i") == tmp_path / "301/3650/1/frame-i-003650-1-0090.fits.bz2"


def test_script_made_from_the_template_round_trips() -> None:
    text = make_mosaic_script([FRAME_A, FRAME_B], "gi", 123.32, 22.65, 0.01, 0.396)
    script = parse_mosaic_script(text, source="fake")
    assert script.frames == (FRAME_A, FRAME_B)
    assert script.bands == ("g", "i")
    assert script.center_deg == pytest.approx((123.32, 22.65))
    assert script.image_size == (91, 91)


def test_script_without_frames_parses_to_no_frames() -> None:
    script = parse_mosaic_script(make_mosaic_script([], "g", 10.0, 50.0, 0.01, 0.396), source="fake")
    assert script.frames == ()


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("<html><head><title>Mosaic error</title></head></html>", r"HTML page \(title: 'Mosaic error'\)"),
        ("Internal error: no such release", "not a mosaic-service script"),
    ],
)
def test_bad_script_answers_are_clear_errors(text: str, match: str) -> None:
    with pytest.raises(InputDataError, match=match):
        parse_mosaic_script(text, source="https://dr12.sdss.org/mosaics/script")


# ------------------------------------------------------------------------------------------------ geometry


def test_fov_and_target_wcs() -> None:
    assert fov_pixels(0.5, fov_factor=1.125, pixel_scale_arcsec=0.396) == round(1.125 * 30 / 0.396)
    assert fov_pixels(0.01, fov_factor=1.125, pixel_scale_arcsec=0.396) == 8
    wcs = target_wcs(150.0, 2.0, npix=85, pixel_scale_arcsec=0.396)
    ra, dec = wcs.pixel_to_world_values(42, 42)  # the central pixel (0-based) of an odd image
    assert (float(ra), float(dec)) == pytest.approx((150.0, 2.0))
    assert np.sqrt(abs(np.linalg.det(wcs.pixel_scale_matrix))) * 3600 == pytest.approx(0.396)
    x_east, _ = wcs.world_to_pixel_values(150.01, 2.0)
    assert x_east < 42  # east is left


def test_cutout_is_the_frame_pixels_around_the_galaxy(sky: FakeSky) -> None:
    data, wcs, _ = sky.frames[FRAME_A]
    ra, dec = _sky_position(sky, 60, 130)
    image, cut_wcs = cutout_from_frame(data, wcs, ra_deg=ra, dec_deg=dec, npix=41)
    assert image.dtype == np.float32
    np.testing.assert_array_equal(image, data[110:151, 40:81])
    assert np.allclose(cut_wcs.world_to_pixel_values(ra, dec), (20, 20), atol=1e-6)


def test_cutout_leaving_the_frame_is_refused(sky: FakeSky) -> None:
    data, wcs, _ = sky.frames[FRAME_A]
    ra, dec = _sky_position(sky, 140, 120)  # 20 px from the right edge of frame A
    assert cutout_from_frame(data, wcs, ra_deg=ra, dec_deg=dec, npix=61) is None
    far_ra, far_dec = _sky_position(sky, 2000, 2000)
    assert cutout_from_frame(data, wcs, ra_deg=far_ra, dec_deg=far_dec, npix=11) is None


def test_mosaic_of_two_overlapping_frames_matches_the_whole_frame(sky: FakeSky) -> None:
    ra, dec = _sky_position(sky, 120, 120)  # the real galaxy, across the seam of the two frames
    pieces = [sky.frames[FRAME_A][:2], sky.frames[FRAME_B][:2]]
    mosaic, wcs, coverage = mosaic_frames(pieces, ra_deg=ra, dec_deg=dec, npix=121, pixel_scale_arcsec=0.396)
    whole, _, _ = mosaic_frames(
        [(sky.source_data, sky.source_wcs)], ra_deg=ra, dec_deg=dec, npix=121, pixel_scale_arcsec=0.396
    )
    noise = float(np.std(sky.source_data[:40, :40]))
    difference = np.abs(mosaic - whole)
    assert coverage == 1.0
    assert mosaic.dtype == np.float32 and mosaic.shape == (121, 121)
    assert np.percentile(difference, 99) < 0.1 * noise
    assert mosaic.sum() == pytest.approx(whole.sum(), rel=1e-3)
    assert np.allclose(wcs.world_to_pixel_values(ra, dec), (60, 60))


def test_mosaic_keeps_the_flux_of_the_galaxy(sky: FakeSky) -> None:
    ra, dec = _sky_position(sky, 120, 120)
    pieces = [sky.frames[FRAME_A][:2], sky.frames[FRAME_B][:2]]
    mosaic, _, _ = mosaic_frames(pieces, ra_deg=ra, dec_deg=dec, npix=101, pixel_scale_arcsec=0.396)
    yy, xx = np.mgrid[:101, :101]
    ys, xs = np.mgrid[:241, :241]
    in_mosaic = mosaic[(xx - 50) ** 2 + (yy - 50) ** 2 <= 40**2].sum()
    in_frame = sky.source_data[(xs - 120) ** 2 + (ys - 120) ** 2 <= 40**2].sum()
    assert in_mosaic == pytest.approx(in_frame, rel=0.01)


def test_mosaic_reports_partial_coverage_and_zeroes_the_gap(sky: FakeSky) -> None:
    ra, dec = _sky_position(sky, 120, 238)  # half of the field of view lies beyond the frames
    pieces = [sky.frames[FRAME_A][:2], sky.frames[FRAME_B][:2]]
    mosaic, _, coverage = mosaic_frames(pieces, ra_deg=ra, dec_deg=dec, npix=61, pixel_scale_arcsec=0.396)
    assert 0.2 < coverage < 0.8
    assert np.count_nonzero(mosaic == 0) >= (1 - coverage) * mosaic.size - 1
    empty, _, none = mosaic_frames([], ra_deg=ra, dec_deg=dec, npix=9, pixel_scale_arcsec=0.396)
    assert none == 0.0 and not empty.any()


# ------------------------------------------------------------------------------------------------ frame files


def test_read_frame_of_a_real_header_is_quiet(sky: FakeSky, tmp_path: Path) -> None:
    path = tmp_path / "frame.fits.bz2"
    path.write_bytes(sky.frames[FRAME_A][2])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the deprecated RADECSYS of real SDSS headers is no warning for users
        data, wcs = read_frame(path, source="f")
    np.testing.assert_array_equal(data, sky.frames[FRAME_A][0])
    assert wcs.has_celestial


def test_read_frame_rejects_corrupt_files(tmp_path: Path) -> None:
    path = tmp_path / "bad.fits.bz2"
    path.write_bytes(bz2.compress(b"SIMPLE  = T" + b" " * 100)[:-10])
    with pytest.raises(InputDataError, match="not a readable SDSS frame"):
        read_frame(path, source="https://sas/frame-g.fits.bz2")


def test_frame_store_downloads_each_frame_once_and_shares_it(archive, tmp_path: Path) -> None:
    store = FrameStore(_client(), base_url=f"{archive.url}{SAS_PREFIX}", cache_dir=tmp_path, memory_frames=1)
    first, _ = store.get(FRAME_A, "g")
    store.get(FRAME_B, "g")  # pushes A out of memory
    again, _ = store.get(FRAME_A, "g")  # from the disk cache
    np.testing.assert_array_equal(first, again)
    assert len(archive.hits(f"{SAS_PREFIX}/{FRAME_A.rel_path('g')}")) == 1
    assert len(archive.hits(SAS_PREFIX)) == 2


def test_frame_store_replaces_a_corrupt_cached_frame(archive, sky: FakeSky, tmp_path: Path) -> None:
    store = FrameStore(_client(), base_url=f"{archive.url}{SAS_PREFIX}", cache_dir=tmp_path)
    cached = store.path(FRAME_A, "r")
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"BZh9" + b"\x00" * 64)  # a cache file damaged on disk
    data, _ = store.get(FRAME_A, "r")
    np.testing.assert_array_equal(data, sky.frames[FRAME_A][0])
    assert len(archive.hits(SAS_PREFIX)) == 1


def test_frame_store_refuses_an_html_answer(archive, tmp_path: Path) -> None:
    archive.fault(f"{SAS_PREFIX}/{FRAME_B.rel_path('g')}", "html")
    store = FrameStore(_client(), base_url=f"{archive.url}{SAS_PREFIX}", cache_dir=tmp_path)
    with pytest.raises(InputDataError, match="answered with an HTML page"):
        store.get(FRAME_B, "g")
    assert not store.path(FRAME_B, "g").exists()


def test_prune_removes_least_recently_used_frames(archive, tmp_path: Path) -> None:
    store = FrameStore(_client(), base_url=f"{archive.url}{SAS_PREFIX}", cache_dir=tmp_path)
    for band in "gri":
        store.get(FRAME_A, band)
    paths = [store.path(FRAME_A, b) for b in "gri"]
    for age, path in zip((300, 200, 100), paths, strict=True):
        os.utime(path, (path.stat().st_atime, path.stat().st_mtime - age))
    size = paths[0].stat().st_size
    assert store.prune() == 0  # no budget: keep everything
    store.max_bytes = int(1.5 * size)
    assert store.prune() == 2
    assert [p.exists() for p in paths] == [False, False, True]


def test_frame_store_reads_a_local_copy_in_place(sky: FakeSky, tmp_path: Path) -> None:
    mirror = tmp_path / "BOSS_PHOTOOBJ" / "frames"
    local = mirror / FRAME_A.rel_path("g")
    local.parent.mkdir(parents=True)
    local.write_bytes(sky.frames[FRAME_A][2])
    store = FrameStore(_client(), base_url=mirror.as_uri(), cache_dir=tmp_path / "cache")
    data, _ = store.get(FRAME_A, "g")
    np.testing.assert_array_equal(data, sky.frames[FRAME_A][0])
    assert not (tmp_path / "cache").exists()  # not copied
    with pytest.raises(FetchError, match="missing from the local copy"):
        FrameStore(_client(), base_url=str(mirror), cache_dir=tmp_path / "cache").get(FRAME_B, "g")
