"""The ``fetch`` stage: download the real archives and write ``raw/`` exactly as the mock does (DESIGN §2).

Order of work (each step resumes from the download cache, ``fetch.cache_dir`` or ``<workdir>/cache``):

1. GSWLC-2 (``GSWLC-<X2|A2|M2|D2>.dat.gz``; gzip detected by its magic bytes), rows in ``fetch.region``;
2. HyperLeda galaxies with ``D25 > fetch.hyperleda_d25_min_arcmin`` in RA slices (SQL interface, or
   VizieR VII/237);
3. the image targets: GSWLC galaxies with a mass, ``chi2_r < chi2_max`` and a HyperLeda match within
   ``hyperleda_radius_arcsec`` with ``D25 > image_d25_min_arcmin``; ``fetch.limit`` keeps a seeded random
   subset;
4. Galaxy Zoo 2 (Hart+16) rows in the region (or near the targets when limited);
5. SDSS DR12 model magnitudes of the targets and the stars around them (SkyServer SQL, batched by position);
6. one image per target and band, field of view ``fov_factor x D25``, from SDSS frames (cut-out or mosaic).

GSWLC-2 and GZ2 rows are copied verbatim from the distributed files; HyperLeda, photometry and stars are
written by the writers of :mod:`morphomass.rawformats` (the ones the mock uses). The image targets pass the
cuts of SPEC D1-D3 (:func:`morphomass.selection.sample_cuts`, the catalogue's own). What could not be fetched
(a galaxy outside the imaging, a frame the server refused, no photometric match) is listed in
``fetch_report.json`` at the work-directory root; a rerun (``morphomass fetch --force``) fetches only what is
missing.
"""

from __future__ import annotations

import hashlib
import logging
import time
import warnings
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import astropy.units as u
import numpy as np
import pandas as pd
from astropy.coordinates import SkyCoord
from astropy.io import fits

from morphomass.config import FetchConfig, PipelineConfig
from morphomass.errors import FetchError, FetchFallbackWarning, InputDataError
from morphomass.fetch.archives import copy_selected_lines, fetch_table_file
from morphomass.fetch.frames import (
    FrameId,
    FrameStore,
    cutout_from_frame,
    fov_pixels,
    mosaic_frames,
    parse_mosaic_script,
)
from morphomass.fetch.galaxyzoo import read_gz2_positions
from morphomass.fetch.gswlc import gswlc_url, read_gswlc
from morphomass.fetch.http import HttpClient, full_url
from morphomass.fetch.hyperleda import leda_query, parse_leda, parse_vizier, ra_slices, vizier_query
from morphomass.fetch.skyserver import (
    PHOTOMETRY_COLUMNS,
    STAR_COLUMNS,
    parse_skyserver_csv,
    photometry_sql,
    skyserver_params,
    stars_sql,
)
from morphomass.photometry import d25_arcmin_from_logd25, hours_to_degrees, logd25_from_d25_arcmin
from morphomass.progress import progress_bar
from morphomass.rawformats import (
    GSWLC_MISSING,
    gswlc_file_name,
    write_fits_image,
    write_hyperleda,
    write_photometry,
    write_stars,
)
from morphomass.selection import sample_cuts, selected
from morphomass.workdir import StageResult, WorkDir, file_sha256, write_json_atomic

__all__ = ["in_region", "limit_targets", "run_fetch", "select_targets"]

logger = logging.getLogger(__name__)

#: Rows of HyperLeda and GZ2 kept around each target when ``fetch.limit`` is set, and the padding of region
#: queries.
KEEP_RADIUS_ARCSEC = 10.0
#: Frames are looked at in this many galaxies between two prunings of the frame cache.
PRUNE_EVERY = 25


class _GalaxyFailure(Exception):
    """One galaxy's image could not be made (reported, not raised)."""


# ------------------------------------------------------------------------------------------------ selection


def in_region(ra_deg: np.ndarray, dec_deg: np.ndarray, region: tuple[float, ...] | None) -> np.ndarray:
    """Boolean mask of the positions inside ``region = (ra1, ra2, dec1, dec2)`` (degrees.

    ``ra1 > ra2`` wraps).

    None means the whole sky.
    """
    ra = np.asarray(ra_deg, dtype=float) % 360.0
    dec = np.asarray(dec_deg, dtype=float)
    if region is None:
        return np.ones(ra.shape, bool)
    ra1, ra2, dec1, dec2 = region
    in_ra = (ra >= ra1) & (ra <= ra2) if ra1 < ra2 else (ra >= ra1) | (ra <= ra2)
    return in_ra & (dec >= dec1) & (dec <= dec2)


def _near(ra_deg: np.ndarray, dec_deg: np.ndarray, targets: pd.DataFrame, radius_arcsec: float) -> np.ndarray:
    """Mask of positions within ``radius_arcsec`` of any target."""
    if len(targets) == 0 or len(ra_deg) == 0:
        return np.zeros(len(ra_deg), bool)
    coords = SkyCoord(np.asarray(ra_deg) * u.deg, np.asarray(dec_deg) * u.deg)
    centres = SkyCoord(targets["ra"].to_numpy() * u.deg, targets["dec"].to_numpy() * u.deg)
    _, sep, _ = coords.match_to_catalog_sky(centres)
    return sep.arcsec <= radius_arcsec


def select_targets(
    gswlc: pd.DataFrame,
    hyperleda: pd.DataFrame,
    *,
    radius_arcsec: float,
    d25_min_arcmin: float,
    chi2_max: float | None,
) -> pd.DataFrame:
    """Return the galaxies whose images, photometry and stars are fetched: the cuts of SPEC D1-D3.

    The cuts are the catalogue's (:func:`morphomass.selection.sample_cuts`) without the photometry, which is
    fetched for the targets; the HyperLeda match is the nearest galaxy within the radius.

    Parameters
    ----------
    gswlc : DataFrame
        GSWLC-2 rows (``objid``, ``ra``, ``dec``, ``z``, ``chi2_r``, ``log_mstar``, ``log_mstar_err``); -99
        marks missing values.
    hyperleda : DataFrame
        HyperLeda rows (``al2000`` hours, ``de2000`` degrees, ``logd25`` log10(0.1 arcmin)).
    radius_arcsec : float
        Cross-match radius.
    d25_min_arcmin : float
        Keep ``D25 > d25_min_arcmin``.
    chi2_max : float or None
        Keep ``chi2_r < chi2_max`` (a missing chi2 is rejected); None keeps every chi2, missing too.

    Returns
    -------
    DataFrame
        ``objid`` (int64), ``ra``, ``dec`` (degrees), ``d25_arcmin``, one row per galaxy (first occurrence of
        an objid), ordered by declination band and RA so that neighbours share frames.
    """
    table = gswlc.drop_duplicates("objid")
    d25 = np.full(len(table), np.nan)
    matched = np.zeros(len(table), dtype=bool)
    if len(hyperleda) and len(table):
        coords = SkyCoord(table["ra"].to_numpy() * u.deg, table["dec"].to_numpy() * u.deg)
        leda_ra = hours_to_degrees(hyperleda["al2000"].to_numpy())
        leda = SkyCoord(leda_ra * u.deg, hyperleda["de2000"].to_numpy() * u.deg)
        idx, sep, _ = coords.match_to_catalog_sky(leda)
        matched = sep.arcsec <= radius_arcsec
        d25 = np.where(matched, d25_arcmin_from_logd25(hyperleda["logd25"].to_numpy()[idx]), np.nan)

    def column(name: str) -> np.ndarray:
        values = table[name].to_numpy(dtype=float)
        return np.where(values == GSWLC_MISSING, np.nan, values)

    cuts = sample_cuts(
        matched=matched,
        d25_arcmin=d25,
        z=column("z"),
        logmstar=column("log_mstar"),
        logmstar_err=column("log_mstar_err"),
        chi2_r=column("chi2_r"),
        radius_arcsec=radius_arcsec,
        d25_min_arcmin=d25_min_arcmin,
        chi2_max=chi2_max,
    )
    ok = selected(cuts)
    targets = pd.DataFrame(
        {
            "objid": table["objid"].to_numpy(dtype=np.int64)[ok],
            "ra": table["ra"].to_numpy(dtype=float)[ok],
            "dec": table["dec"].to_numpy(dtype=float)[ok],
            "d25_arcmin": d25[ok],
        }
    )
    order = np.lexsort((targets["ra"].to_numpy(), np.floor(targets["dec"].to_numpy() / 0.5)))
    return targets.iloc[order].reset_index(drop=True)


def limit_targets(targets: pd.DataFrame, limit: int | None, *, rng: np.random.Generator) -> pd.DataFrame:
    """Return a random subset of ``limit`` targets (all if None).

    The same for the same seed and nested in ``limit``.
    """
    if limit is None or limit >= len(targets):
        return targets
    by_id = np.argsort(targets["objid"].to_numpy(), kind="stable")
    chosen = np.sort(by_id[rng.permutation(len(targets))[:limit]])
    return targets.iloc[chosen].reset_index(drop=True)


# ------------------------------------------------------------------------------------------------ the stage


@dataclass
class _Report:
    sources: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, Any] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)

    def fail(self, objid: int, step: str, error: str) -> None:
        self.failures.append({"objid": int(objid), "step": step, "error": error})


def _cache_name(prefix: str, url: str, params: dict[str, str], suffix: str) -> str:
    return f"{prefix}-{hashlib.sha256(full_url(url, params).encode()).hexdigest()[:24]}{suffix}"


def _region_box(region: tuple[float, ...] | None, pad_deg: float) -> tuple[float, float, float, float]:
    """Return the query box of a region, padded so that matches just outside it are found.

    Whole sky for None.
    """
    if region is None:
        return 0.0, 360.0, -90.0, 90.0
    ra1, ra2, dec1, dec2 = region
    dec_lo, dec_hi = max(-90.0, dec1 - pad_deg), min(90.0, dec2 + pad_deg)
    cos_dec = max(np.cos(np.radians(max(abs(dec_lo), abs(dec_hi)))), 1e-3)
    ra_pad = pad_deg / cos_dec
    width = (ra2 - ra1) % 360.0
    if width + 2 * ra_pad >= 360.0:
        return 0.0, 360.0, dec_lo, dec_hi
    return (ra1 - ra_pad) % 360.0, (ra2 + ra_pad) % 360.0, dec_lo, dec_hi


def _fetch_gswlc(
    client: HttpClient, fc: FetchConfig, cache: Path, report: _Report
) -> dict[str, tuple[Path, pd.DataFrame]]:
    tables = {}
    for catalog in fc.gswlc_catalogs:
        url = gswlc_url(fc.gswlc_url, catalog)
        name = gswlc_file_name(catalog) + ".gz"
        logger.info("GSWLC-2 %s: %s", catalog, url)
        plain = fetch_table_file(
            client, url, cache / "gswlc", name, expected="the GSWLC-2 table", sha256=fc.checksums.get(name)
        )
        table = read_gswlc(plain, source=url)
        tables[catalog] = (plain, table)
        report.sources[f"gswlc_{catalog}"] = {
            "url": url,
            "rows": len(table),
            "file": name,
            "sha256": file_sha256(cache / "gswlc" / name),
        }
    return tables


def _query_hyperleda(
    client: HttpClient,
    service: str,
    fc: FetchConfig,
    cache: Path,
    box: tuple[float, float, float, float],
) -> tuple[pd.DataFrame, str, int]:
    """Every RA slice of the box from one service (``"leda"`` or ``"vizier"``): (table, url, queries)."""
    url, make_query, parse = {
        "leda": (fc.hyperleda_url, leda_query, parse_leda),
        "vizier": (fc.vizier_url, vizier_query, parse_vizier),
    }[service]
    ra1, ra2, dec1, dec2 = box
    logd25_min = float(logd25_from_d25_arcmin(fc.hyperleda_d25_min_arcmin))
    slices = ra_slices(ra1, ra2, step_deg=fc.hyperleda_ra_step_deg)

    def validate(p: Path) -> None:
        parse(p.read_text(encoding="utf-8", errors="replace"), source=url)

    parts = []
    for lo, hi in slices:
        params = make_query(lo, hi, dec1, dec2, logd25_min=logd25_min)
        path = client.download(
            url,
            cache / "hyperleda" / _cache_name(service, url, params, ".txt"),
            params=params,
            validate=validate,
        )
        parts.append(parse(path.read_text(encoding="utf-8", errors="replace"), source=url))
    table = pd.concat(parts, ignore_index=True).drop_duplicates("pgc").sort_values("pgc", kind="stable")
    return table.reset_index(drop=True), url, len(slices)


def _fetch_hyperleda(
    client: HttpClient, fc: FetchConfig, cache: Path, box: tuple[float, float, float, float], report: _Report
) -> pd.DataFrame:
    service = "leda" if fc.hyperleda_source == "auto" else fc.hyperleda_source
    try:
        table, url, queries = _query_hyperleda(client, service, fc, cache, box)
    except (FetchError, InputDataError) as err:
        if fc.hyperleda_source != "auto":
            raise
        warnings.warn(
            f"HyperLeda's SQL interface failed ({err}); using the VizieR VII/237 table instead",
            FetchFallbackWarning,
            stacklevel=2,
        )
        service = "vizier"
        table, url, queries = _query_hyperleda(client, service, fc, cache, box)
    report.sources["hyperleda"] = {"service": service, "url": url, "queries": queries, "rows": len(table)}
    return table


def _write_gswlc(
    tables: dict[str, tuple[Path, pd.DataFrame]],
    workdir: WorkDir,
    masks: dict[str, np.ndarray],
) -> int:
    rows = 0
    workdir.gswlc_dir.mkdir(parents=True, exist_ok=True)
    wanted = {gswlc_file_name(c) for c in tables}
    for stale in workdir.gswlc_dir.glob("*.dat"):
        if stale.name not in wanted:
            stale.unlink()
    for catalog, (plain, _) in tables.items():
        rows += copy_selected_lines(plain, workdir.gswlc_dir / gswlc_file_name(catalog), masks[catalog])
    return rows


def _fetch_gz2(
    client: HttpClient,
    fc: FetchConfig,
    cache: Path,
    workdir: WorkDir,
    targets: pd.DataFrame,
    report: _Report,
) -> int:
    name = "gz2_hart16.csv.gz"
    logger.info("Galaxy Zoo 2 (Hart+16): %s", fc.gz2_url)
    plain = fetch_table_file(
        client,
        fc.gz2_url,
        cache / "gz2",
        name,
        expected="the Hart+16 GZ2 table",
        sha256=fc.checksums.get(name),
    )
    ra, dec = read_gz2_positions(plain, source=fc.gz2_url)
    keep = (
        _near(ra, dec, targets, KEEP_RADIUS_ARCSEC) if fc.limit is not None else in_region(ra, dec, fc.region)
    )
    rows = copy_selected_lines(plain, workdir.gz2, keep, header_lines=1)
    report.sources["gz2"] = {
        "url": fc.gz2_url,
        "rows": int(len(ra)),
        "kept": rows,
        "file": name,
        "sha256": file_sha256(cache / "gz2" / name),
    }
    return rows


def _sql_batches(
    client: HttpClient,
    fc: FetchConfig,
    cache: Path,
    statements: list[str],
    *,
    what: str,
    required: tuple[str, ...],
    progress: bool,
) -> list[pd.DataFrame]:
    url = fc.skyserver_sql_url
    answers = []
    with progress_bar(f"SkyServer: {what}", total=len(statements), enabled=progress) as advance:
        for k, sql in enumerate(statements):
            params = skyserver_params(sql)
            path = cache / "sql" / _cache_name(what, url, params, ".csv")
            source = f"SkyServer {what} query {k + 1}/{len(statements)} ({url})"

            def read(p: Path, source: str = source) -> pd.DataFrame:
                text = p.read_text(encoding="utf-8", errors="replace")
                return parse_skyserver_csv(text, source=source, required=required)

            answers.append(read(client.download(url, path, params=params, validate=read)))
            advance(1)
    return answers


def _fetch_photometry(
    client: HttpClient, fc: FetchConfig, cache: Path, targets: pd.DataFrame, report: _Report, progress: bool
) -> pd.DataFrame:
    n = fc.sql_batch_size
    statements = [
        photometry_sql(
            targets["objid"].to_numpy()[i : i + n],
            targets["ra"].to_numpy()[i : i + n],
            targets["dec"].to_numpy()[i : i + n],
            radius_arcmin=fc.photometry_radius_arcsec / 60.0,
        )
        for i in range(0, len(targets), n)
    ]
    answers = _sql_batches(
        client,
        fc,
        cache,
        statements,
        what="photometry",
        required=("input_id", *PHOTOMETRY_COLUMNS),
        progress=progress,
    )
    table = pd.concat(answers, ignore_index=True) if answers else pd.DataFrame(columns=["input_id"])
    table = table[table["input_id"].isin(targets["objid"])].drop_duplicates("input_id")
    report.counts["photometry_objid_differs"] = int((table["objID"] != table["input_id"]).sum())
    for objid in sorted(set(targets["objid"]) - set(table["input_id"])):
        report.fail(
            objid, "photometry", f"no primary SDSS object within {fc.photometry_radius_arcsec} arcsec"
        )
    table = table.assign(objID=table["input_id"].astype(np.int64))
    return table[list(PHOTOMETRY_COLUMNS)].sort_values("objID").reset_index(drop=True)


def _fetch_stars(
    client: HttpClient, fc: FetchConfig, cache: Path, targets: pd.DataFrame, progress: bool
) -> pd.DataFrame:
    npix = np.array([_npix(fc, d) for d in targets["d25_arcmin"]], dtype=float)
    radius_arcmin = npix * fc.pixel_scale_arcsec / 60.0 * np.sqrt(2.0) / 2.0 + fc.star_margin_arcmin
    n = fc.sql_batch_size
    ra, dec = targets["ra"].to_numpy(), targets["dec"].to_numpy()
    statements = [
        stars_sql(ra[i : i + n], dec[i : i + n], radius_arcmin[i : i + n]) for i in range(0, len(ra), n)
    ]
    answers = _sql_batches(
        client, fc, cache, statements, what="stars", required=STAR_COLUMNS, progress=progress
    )
    table = pd.concat(answers, ignore_index=True) if answers else pd.DataFrame(columns=list(STAR_COLUMNS))
    table = table[list(STAR_COLUMNS)].drop_duplicates("objID").sort_values("objID")
    return table.astype({"objID": np.int64, "type": np.int64}).reset_index(drop=True)


def _npix(fc: FetchConfig, d25_arcmin: float) -> int:
    return fov_pixels(d25_arcmin, fov_factor=fc.fov_factor, pixel_scale_arcsec=fc.pixel_scale_arcsec)


# ------------------------------------------------------------------------------------------------ images


@dataclass
class _ImageContext:
    fc: FetchConfig
    client: HttpClient
    store: FrameStore
    workdir: WorkDir
    cache: Path


def _image_is_current(path: Path, fov_arcsec: float) -> bool:
    if not path.exists():
        return False
    try:
        return fits.getheader(path).get("MMFOV") == round(fov_arcsec, 3)
    except (OSError, ValueError):
        return False


def _build_image(
    ctx: _ImageContext, frames: tuple[FrameId, ...], band: str, ra: float, dec: float, npix: int
) -> tuple[np.ndarray, Any, dict[str, Any]]:
    fc = ctx.fc
    loaded = []
    for frame in frames:
        data, wcs = ctx.store.get(frame, band)
        if fc.single_frame_cutout:
            cut = cutout_from_frame(data, wcs, ra_deg=ra, dec_deg=dec, npix=npix)
            if cut is not None:
                return (
                    cut[0],
                    cut[1],
                    {"MMMETHOD": "cutout", "NFRAMES": 1, "COVERAGE": 1.0, "FRAMES": _frame_names([frame])},
                )
        loaded.append((data, wcs))
    image, wcs, coverage = mosaic_frames(
        loaded,
        ra_deg=ra,
        dec_deg=dec,
        npix=npix,
        pixel_scale_arcsec=fc.pixel_scale_arcsec,
        order=fc.mosaic_order,
    )
    if coverage < fc.min_coverage:
        msg = (
            f"the SDSS frames cover {coverage:.1%} of the field of view in {band} "
            f"(fetch.min_coverage {fc.min_coverage})"
        )
        raise _GalaxyFailure(msg)
    return (
        image,
        wcs,
        {
            "MMMETHOD": "mosaic",
            "NFRAMES": len(frames),
            "COVERAGE": round(coverage, 4),
            "FRAMES": _frame_names(frames),
        },
    )


def _frame_names(frames: Any) -> str:
    return ",".join(f"{f.run}-{f.camcol}-{f.field}" for f in frames)


def _fetch_galaxy(ctx: _ImageContext, objid: int, ra: float, dec: float, d25_arcmin: float) -> str:
    """Write one galaxy's images; return ``"written"`` or ``"kept"`` (already there)."""
    fc = ctx.fc
    npix = _npix(fc, d25_arcmin)
    fov_arcsec = npix * fc.pixel_scale_arcsec
    paths = {band: ctx.workdir.raw_image(band, objid) for band in fc.bands}
    if all(_image_is_current(p, fov_arcsec) for p in paths.values()):
        return "kept"
    params = {
        "onlyprimary": str(fc.only_primary),
        "pixelscale": f"{fc.pixel_scale_arcsec:g}",
        "ra": f"{ra:.6f}",
        "filters": "".join(fc.bands),
        "dec": f"{dec:.6f}",
        "size": f"{fov_arcsec / 3600.0:.6f}",
    }
    script_path = ctx.cache / "mosaic" / _cache_name(str(objid), fc.mosaic_url, params, ".sh")

    def validate(p: Path) -> None:
        parse_mosaic_script(p.read_text(encoding="utf-8", errors="replace"), source=fc.mosaic_url)

    ctx.client.download(fc.mosaic_url, script_path, params=params, validate=validate)
    script = parse_mosaic_script(
        script_path.read_text(encoding="utf-8", errors="replace"), source=fc.mosaic_url
    )
    if not script.frames:
        msg = "the mosaic service lists no SDSS frame at this position (outside the imaging footprint?)"
        raise _GalaxyFailure(msg)
    for band, path in paths.items():
        if _image_is_current(path, fov_arcsec):
            continue
        image, wcs, extra = _build_image(ctx, script.frames, band, ra, dec, npix)
        extra |= {
            "MMFOV": (round(fov_arcsec, 3), "field of view [arcsec]"),
            "D25ARCM": (round(d25_arcmin, 4), "HyperLeda D25 [arcmin]"),
            "ORIGIN": "morphomass fetch",
        }
        write_fits_image(path, image, wcs, band, extra)
    return "written"


def _remove_stale_images(workdir: WorkDir, bands: tuple[str, ...], objids: set[int]) -> int:
    removed = 0
    if not workdir.raw_images.exists():
        return 0
    for band_dir in (p for p in workdir.raw_images.iterdir() if p.is_dir()):
        for path in band_dir.glob("*.fits"):
            if band_dir.name not in bands or not path.stem.isdigit() or int(path.stem) not in objids:
                path.unlink()
                removed += 1
    return removed


def _fetch_images(
    ctx: _ImageContext, targets: pd.DataFrame, report: _Report, progress: bool
) -> dict[str, int]:
    fc = ctx.fc
    counts = {"written": 0, "kept": 0, "failed": 0}
    consecutive = 0
    rows = list(targets.itertuples(index=False))
    with (
        progress_bar("fetching images", total=len(rows), enabled=progress) as advance,
        ThreadPoolExecutor(max_workers=fc.workers) as pool,
    ):
        pending: dict[Future[str], Any] = {}
        queue = iter(rows)
        done_since_prune = 0

        def submit_next() -> None:
            row = next(queue, None)
            if row is not None:
                future = pool.submit(
                    _fetch_galaxy, ctx, int(row.objid), float(row.ra), float(row.dec), float(row.d25_arcmin)
                )
                pending[future] = row

        for _ in range(2 * fc.workers):
            submit_next()
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                row = pending.pop(future)
                try:
                    counts[future.result()] += 1
                    consecutive = 0
                except (_GalaxyFailure, FetchError, InputDataError) as err:
                    report.fail(row.objid, "images", str(err))
                    counts["failed"] += 1
                    consecutive += 1
                    logger.warning("objid %d: no image: %s", row.objid, err)
                    if consecutive >= fc.max_consecutive_failures:
                        for other in pending:
                            other.cancel()
                        msg = (
                            f"{consecutive} galaxies in a row failed (fetch.max_consecutive_failures); "
                            f"the last: objid {row.objid}: {err}"
                        )
                        raise FetchError(msg) from err
                advance(1)
                done_since_prune += 1
                if done_since_prune >= PRUNE_EVERY:
                    ctx.store.prune()
                    done_since_prune = 0
                submit_next()
    ctx.store.prune()
    return counts


def _fetch_all(
    client: HttpClient, fc: FetchConfig, cache: Path, workdir: WorkDir, report: _Report, progress: bool
) -> dict[str, Any]:
    """Every step of :func:`run_fetch`; returns its summary (also merged into the report's counts)."""
    tables = _fetch_gswlc(client, fc, cache, report)
    region_masks = {
        catalog: in_region(table["ra"].to_numpy(), table["dec"].to_numpy(), fc.region)
        for catalog, (_, table) in tables.items()
    }
    gswlc = pd.concat([t[region_masks[c]] for c, (_, t) in tables.items()], ignore_index=True)
    if gswlc.empty:
        msg = f"no GSWLC-2 galaxy lies in fetch.region {fc.region}"
        raise InputDataError(msg)
    box = _region_box(fc.region, KEEP_RADIUS_ARCSEC / 3600.0)
    hyperleda = _fetch_hyperleda(client, fc, cache, box, report)
    targets = select_targets(
        gswlc,
        hyperleda,
        radius_arcsec=fc.hyperleda_radius_arcsec,
        d25_min_arcmin=fc.image_d25_min_arcmin,
        chi2_max=fc.chi2_max,
    )
    if targets.empty:
        msg = (
            f"none of the {len(gswlc)} GSWLC-2 galaxies in fetch.region {fc.region} has a mass, chi2_r < "
            f"{fc.chi2_max} and a HyperLeda D25 > {fc.image_d25_min_arcmin} arcmin"
        )
        raise InputDataError(msg)
    n_candidates = len(targets)
    targets = limit_targets(targets, fc.limit, rng=np.random.default_rng(fc.seed))
    logger.info("%d image targets (%d pass the cuts)", len(targets), n_candidates)

    if fc.limit is not None:
        chosen = set(targets["objid"])
        masks = {c: region_masks[c] & t["objid"].isin(chosen).to_numpy() for c, (_, t) in tables.items()}
        leda_keep = _near(
            hours_to_degrees(hyperleda["al2000"].to_numpy()),
            hyperleda["de2000"].to_numpy(),
            targets,
            KEEP_RADIUS_ARCSEC,
        )
        hyperleda = hyperleda[leda_keep].reset_index(drop=True)
    else:
        masks = region_masks
    gswlc_rows = _write_gswlc(tables, workdir, masks)
    write_hyperleda(workdir.hyperleda, hyperleda)
    gz2_rows = _fetch_gz2(client, fc, cache, workdir, targets, report)
    photometry = _fetch_photometry(client, fc, cache, targets, report, progress)
    write_photometry(workdir.photometry, photometry)
    stars = _fetch_stars(client, fc, cache, targets, progress)
    write_stars(workdir.stars, stars)

    removed = _remove_stale_images(workdir, fc.bands, set(targets["objid"]))
    if removed:
        logger.info("removed %d images of galaxies or bands no longer fetched", removed)
    for band in fc.bands:
        (workdir.raw_images / band).mkdir(parents=True, exist_ok=True)
    max_bytes = int(fc.frame_cache_max_gb * 1e9) if fc.frame_cache_max_gb is not None else None
    store = FrameStore(client, base_url=fc.frames_url, cache_dir=cache / "frames", max_bytes=max_bytes)
    images = _fetch_images(_ImageContext(fc, client, store, workdir, cache), targets, report, progress)

    summary = {
        "gswlc_rows": gswlc_rows,
        "hyperleda_rows": int(len(hyperleda)),
        "hyperleda_service": report.sources["hyperleda"]["service"],
        "gz2_rows": gz2_rows,
        "targets": int(len(targets)),
        "targets_passing_cuts": int(n_candidates),
        "photometry_rows": int(len(photometry)),
        "stars": int(len(stars)),
        "images_written": images["written"],
        "images_kept": images["kept"],
        "image_failures": images["failed"],
        "failures": len(report.failures),
        "downloaded_mb": round(client.stats.bytes / 1e6, 2),
        "retries": client.stats.retries,
    }
    report.counts |= summary | {"bands": list(fc.bands)}
    return summary


def run_fetch(config: PipelineConfig, workdir: WorkDir, *, progress: bool = True) -> StageResult:
    """Download the real archives into ``raw/`` (the formats of DESIGN §2) and report what failed.

    Parameters
    ----------
    config : PipelineConfig
        Uses ``config.fetch``.
    workdir : WorkDir
    progress : bool
        Show progress bars (SQL batches, images).

    Returns
    -------
    StageResult
        Outputs ``raw`` and ``fetch_report.json``; the summary has the row counts, images written, failures
        and the megabytes downloaded.

    Raises
    ------
    FetchError
        A catalogue could not be downloaded, or too many galaxies failed in a row.
    InputDataError
        A server answered with something that is not the expected table (HTML page, truncated gzip, wrong
        columns), or no galaxy of the region passes the image cuts.
    """
    start = time.perf_counter()
    fc = config.fetch
    workdir.ensure()
    cache = Path(fc.cache_dir) if fc.cache_dir is not None else workdir.root / "cache"
    client = HttpClient(
        timeout_s=fc.timeout_s,
        retries=fc.retries,
        backoff_s=fc.backoff_s,
        max_backoff_s=fc.max_backoff_s,
        requests_per_second=fc.requests_per_second,
    )
    report = _Report()
    try:
        summary = _fetch_all(client, fc, cache, workdir, report, progress)
    finally:  # also after an error: what was fetched and what failed so far
        report.counts["seconds"] = round(time.perf_counter() - start, 1)
        write_json_atomic(
            workdir.fetch_report,
            {
                "counts": report.counts,
                "sources": report.sources,
                "failures": report.failures,
            },
        )
    seconds = time.perf_counter() - start
    if report.failures:
        logger.warning("%d items could not be fetched; see %s", len(report.failures), workdir.fetch_report)
    logger.info("fetch done in %.1f s: %s", seconds, summary)
    outputs = [workdir.relative(workdir.raw), workdir.relative(workdir.fetch_report)]
    return StageResult(stage="fetch", outputs=outputs, seconds=seconds, summary=summary)
