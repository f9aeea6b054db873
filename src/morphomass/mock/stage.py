"""The ``mock`` stage: make the synthetic survey and write ``raw/`` (and ``mock_truth.parquet``)."""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
from astropy.io import fits

from morphomass.config import MockConfig, PipelineConfig
from morphomass.mock.physics import BANDS
from morphomass.mock.render import GalaxyImageSpec, NeighbourSpec, render_galaxy
from morphomass.mock.survey import NEIGHBOUR_COLUMNS, Survey, image_wcs, make_survey
from morphomass.progress import progress_bar
from morphomass.rawformats import (
    gswlc_file_name,
    write_fits_image,
    write_gswlc,
    write_gz2,
    write_hyperleda,
    write_photometry,
    write_stars,
)
from morphomass.workdir import StageResult, WorkDir, atomic_path

__all__ = ["galaxy_specs", "render_and_write", "run_mock", "write_catalogues"]

logger = logging.getLogger(__name__)


def _neighbour_specs(table: np.ndarray, bands: tuple[str, ...]) -> tuple[NeighbourSpec, ...]:
    """Turn a galaxy's rows of :attr:`Survey.neighbours` into :class:`NeighbourSpec` (fluxes in ``bands``)."""
    column = {name: k for k, name in enumerate(NEIGHBOUR_COLUMNS)}
    flux_columns = [column[f"flux_{b}_nmgy"] for b in bands]
    return tuple(
        NeighbourSpec(
            x_pix=float(row[column["x_pix"]]),
            y_pix=float(row[column["y_pix"]]),
            hlr_arcsec=float(row[column["hlr_arcsec"]]),
            sersic_n=float(row[column["sersic_n"]]),
            axis_ratio=float(row[column["axis_ratio"]]),
            pa_deg=float(row[column["pa_deg"]]),
            flux_nmgy=tuple(float(row[c]) for c in flux_columns),
        )
        for row in table
    )


def galaxy_specs(survey: Survey, config: MockConfig) -> list[GalaxyImageSpec]:
    """One :class:`GalaxyImageSpec` per galaxy with an image, in catalogue order.

    A truth table without ``nucleus_flux_fraction`` (older surveys) gives galaxies without a nucleus.
    """
    bands = tuple(config.image_bands)
    band_index = [BANDS.index(b) for b in bands]
    rows = survey.truth[survey.truth["has_image"]]
    no_neighbours = np.empty((0, len(NEIGHBOUR_COLUMNS)))
    specs = []
    for row in rows.itertuples(index=False):
        stars = survey.star_pixels.get(int(row.objid), np.empty((0, 2 + len(BANDS))))
        neighbours = survey.neighbours.get(int(row.objid), no_neighbours)
        kpc_per_arcsec = row.kpc_per_arcsec
        specs.append(
            GalaxyImageSpec(
                seed=int(row.render_seed),
                nx=int(row.image_nx),
                pixel_scale_arcsec=config.pixel_scale_arcsec,
                bands=bands,
                flux_nmgy=tuple(float(getattr(row, f"flux_{b}_nmgy")) for b in bands),
                cls=str(row.cls),
                bulge_fraction=float(row.bulge_fraction),
                sersic_n=float(row.sersic_n),
                bulge_hlr_arcsec=float(row.bulge_hlr_arcsec),
                disk_hlr_arcsec=float(row.disk_hlr_arcsec),
                cos_incl=float(row.cos_incl),
                axis_ratio=float(row.axis_ratio),
                pa_deg=float(row.pa_deg),
                has_bar=bool(row.has_bar),
                n_arms=int(row.n_arms),
                arm_pitch_deg=float(row.arm_pitch_deg),
                arm_strength=float(row.arm_strength),
                n_clumps=int(row.n_clumps),
                clump_fraction=float(row.clump_fraction),
                companion_flux_ratio=float(row.companion_flux_ratio),
                companion_sep_arcsec=float(row.companion_sep_kpc / kpc_per_arcsec),
                has_dust_lane=bool(row.has_dust_lane),
                dust_lane_a_g_mag=float(row.dust_lane_a_g_mag),
                psf_fwhm_arcsec=float(row.psf_fwhm_arcsec),
                psf_beta=config.psf_moffat_beta,
                star_x_pix=tuple(stars[:, 0]),
                star_y_pix=tuple(stars[:, 1]),
                star_flux_nmgy=tuple(tuple(float(f) for f in s[2 + np.array(band_index)]) for s in stars),
                background_offset_nmgy=float(row.background_offset_nmgy),
                nucleus_flux_fraction=float(getattr(row, "nucleus_flux_fraction", 0.0)),
                neighbours=_neighbour_specs(neighbours, bands),
            )
        )
    return specs


def _is_rendered(path: Path, seed: int) -> bool:
    if not path.exists():
        return False
    try:
        return fits.getheader(path).get("MOCKSEED") == str(seed)
    except OSError:
        return False


def render_and_write(jobs: list[tuple[GalaxyImageSpec, float, float, dict[str, str]]]) -> int:
    """Render each galaxy whose files are missing or stale and write its FITS images.

    Return how many rendered.

    Parameters
    ----------
    jobs : list of (spec, ra_deg, dec_deg, {band: path})
    """
    rendered = 0
    for spec, ra, dec, paths in jobs:
        if all(_is_rendered(Path(p), spec.seed) for p in paths.values()):
            continue
        images = render_galaxy(spec)
        wcs = image_wcs(ra, dec, spec.nx, spec.pixel_scale_arcsec)
        for band, image in images.items():
            write_fits_image(
                Path(paths[band]), image, wcs, band, {"MOCKSEED": (str(spec.seed), "mock render seed")}
            )
        rendered += 1
    return rendered


def write_catalogues(survey: Survey, workdir: WorkDir) -> list[Path]:
    """Write the survey's catalogues to ``raw/`` in the real formats, and ``mock_truth.parquet``.

    Returns the paths.
    """
    written = {
        workdir.gswlc_dir / gswlc_file_name("X2"): write_gswlc,
        workdir.hyperleda: write_hyperleda,
        workdir.gz2: write_gz2,
        workdir.photometry: write_photometry,
        workdir.stars: write_stars,
    }
    tables = [survey.gswlc, survey.hyperleda, survey.gz2, survey.photometry, survey.stars]
    for (path, writer), table in zip(written.items(), tables, strict=True):
        writer(path, table)
    truth = survey.truth.drop(columns=["render_seed"]).copy()
    truth["cls"] = truth["cls"].astype(str)
    with atomic_path(workdir.mock_truth) as tmp:
        truth.to_parquet(tmp, index=False)
    return [*written, workdir.mock_truth]


def _remove_stale_images(workdir: WorkDir, bands: tuple[str, ...], objids: set[int]) -> int:
    removed = 0
    if not workdir.raw_images.exists():
        return 0
    for band_dir in workdir.raw_images.iterdir():
        for path in band_dir.glob("*.fits"):
            if band_dir.name not in bands or int(path.stem) not in objids:
                path.unlink()
                removed += 1
    return removed


def run_mock(config: PipelineConfig, workdir: WorkDir, *, progress: bool = True) -> StageResult:
    """Make the mock survey: catalogues in the real formats, one FITS image per galaxy and band.

    And the truth.

    Rerunning with the same configuration resumes: images already written with the same render seed are kept.

    Parameters
    ----------
    config : PipelineConfig
        Uses ``config.mock``.
    workdir : WorkDir
    progress : bool
        Show a progress bar while rendering.

    Returns
    -------
    StageResult
        Outputs ``raw`` and ``mock_truth.parquet``; the summary has the counts of galaxies, images and stars.
    """
    start = time.perf_counter()
    mock = config.mock
    workdir.ensure()
    logger.info("drawing the mock survey (%d galaxies with images, seed %d)", mock.n_galaxies, mock.seed)
    survey = make_survey(mock, np.random.default_rng(mock.seed))
    write_catalogues(survey, workdir)
    specs = galaxy_specs(survey, mock)
    images = survey.truth[survey.truth["has_image"]]
    removed = _remove_stale_images(workdir, mock.image_bands, set(images["objid"].astype(int)))
    if removed:
        logger.info("removed %d images left by an earlier mock with other settings", removed)
    jobs = [
        (spec, float(ra), float(dec), {b: str(workdir.raw_image(b, objid)) for b in mock.image_bands})
        for spec, objid, ra, dec in zip(specs, images["objid"], images["ra"], images["dec"], strict=True)
    ]
    for band in mock.image_bands:
        (workdir.raw_images / band).mkdir(parents=True, exist_ok=True)
    rendered = _render_all(jobs, mock.workers or os.cpu_count() or 1, progress)
    seconds = time.perf_counter() - start
    truth = survey.truth
    summary = {
        "gswlc_rows": int(len(survey.gswlc)),
        "galaxies_with_images": int(truth["has_image"].sum()),
        "images_rendered": int(rendered * len(mock.image_bands)),
        "bands": list(mock.image_bands),
        "gz2_rows": int(len(survey.gz2)),
        "stars_catalogued": int(len(survey.stars)),
        "neighbours": int(truth["n_neighbours"].sum()),
        "hyperleda_rows": int(len(survey.hyperleda)),
    }
    logger.info("mock survey written to %s in %.1f s: %s", workdir.raw, seconds, summary)
    outputs = [workdir.relative(workdir.raw), workdir.relative(workdir.mock_truth)]
    return StageResult(stage="mock", outputs=outputs, seconds=seconds, summary=summary)


def _render_all(jobs: list, workers: int, progress: bool) -> int:
    chunk = max(1, min(64, len(jobs) // (workers * 8) or 1))
    chunks = [jobs[i : i + chunk] for i in range(0, len(jobs), chunk)]
    rendered = 0
    with progress_bar("rendering mock galaxies", total=len(jobs), enabled=progress) as advance:
        if workers == 1:
            for part in chunks:
                rendered += render_and_write(part)
                advance(len(part))
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                futures = {pool.submit(render_and_write, part): len(part) for part in chunks}
                for future in as_completed(futures):
                    rendered += future.result()
                    advance(futures[future])
    return rendered
