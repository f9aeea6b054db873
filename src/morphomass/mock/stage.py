"""The ``mock`` stage: make the synthetic survey and write ``raw/`` (and ``mock_truth.parquet``).

The mock owns only the files it wrote. It lists them, as paths relative to ``raw/``, in
``raw/.mock-files.json`` (:data:`MOCK_FILES_NAME`, written atomically before and after each run; hidden, so
not part of ``raw/``'s hash), and:

- never writes into a ``raw/`` that ``morphomass fetch`` filled (the manifest records a finished fetch), not
  even with ``force``: real archives take hours to download;
- refuses a ``raw/`` holding other files it did not write, unless ``force`` (it then overwrites the files of
  the same name and leaves the others where they are);
- deletes only images it wrote itself (those of galaxies or bands an earlier mock had and this one has not).

Hidden files (a name starting with ``.``: temporary files, the list itself) are neither checked nor deleted.
"""

from __future__ import annotations

import json
import logging
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
from astropy.io import fits

from morphomass.config import MockConfig, PipelineConfig
from morphomass.errors import WorkdirError
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
from morphomass.workdir import StageResult, WorkDir, atomic_path, load_manifest, write_json_atomic

__all__ = ["MOCK_FILES_NAME", "galaxy_specs", "render_and_write", "run_mock", "write_catalogues"]

logger = logging.getLogger(__name__)

#: The list of the files the mock wrote, in ``raw/`` (paths relative to ``raw/``).
MOCK_FILES_NAME = ".mock-files.json"


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
    writers = (write_gswlc, write_hyperleda, write_gz2, write_photometry, write_stars)
    written = dict(zip(_catalogue_paths(workdir), writers, strict=True))
    tables = [survey.gswlc, survey.hyperleda, survey.gz2, survey.photometry, survey.stars]
    for (path, writer), table in zip(written.items(), tables, strict=True):
        writer(path, table)
    truth = survey.truth.drop(columns=["render_seed"]).copy()
    truth["cls"] = truth["cls"].astype(str)
    with atomic_path(workdir.mock_truth) as tmp:
        truth.to_parquet(tmp, index=False)
    return [*written, workdir.mock_truth]


def _raw_relative(workdir: WorkDir, path: Path) -> str:
    return path.relative_to(workdir.raw).as_posix()


def _raw_files(workdir: WorkDir) -> set[str]:
    """Return the paths (relative to ``raw/``, POSIX) of the files in ``raw/``, hidden ones left out."""
    if not workdir.raw.exists():
        return set()
    found = set()
    for path in workdir.raw.rglob("*"):
        rel = path.relative_to(workdir.raw)
        if path.is_file() and not any(part.startswith(".") for part in rel.parts):
            found.add(rel.as_posix())
    return found


def _finished_fetch(workdir: WorkDir) -> str | None:
    """Return when ``fetch`` finished according to the manifest (``"earlier"`` if not recorded), else None."""
    record = load_manifest(workdir)["stages"].get("fetch")
    if isinstance(record, dict) and "finished_utc" in record:
        return str(record["finished_utc"])
    return None


def _load_mock_files(workdir: WorkDir) -> set[str]:
    """Read the list of files an earlier mock wrote (empty without a list).

    A work directory made before the list existed (a mock recorded in the manifest, no fetch) adopts the
    catalogues of the mock's names and the images with the mock's ``MOCKSEED`` header key.
    """
    path = workdir.raw / MOCK_FILES_NAME
    if not path.exists():
        return _legacy_mock_files(workdir)
    try:
        files = json.loads(path.read_text(encoding="utf-8"))["files"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as err:
        msg = (
            f"{path}: expected the mock's file list, a JSON object {{'files': [paths in raw/]}}, could not "
            f"read it ({err}); remove it and rerun with --force (the mock then overwrites files of its names "
            "and deletes none)"
        )
        raise WorkdirError(msg) from err
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        msg = f"{path}: 'files' must be a list of paths in raw/, got {type(files).__name__}"
        raise WorkdirError(msg)
    return set(files)


def _legacy_mock_files(workdir: WorkDir) -> set[str]:
    stages = load_manifest(workdir)["stages"]
    if "mock" not in stages or "fetch" in stages:
        return set()
    catalogues = {_raw_relative(workdir, p) for p in _catalogue_paths(workdir)}
    owned = set()
    for rel in _raw_files(workdir):
        if rel in catalogues:
            owned.add(rel)
        elif rel.startswith("images/") and rel.endswith(".fits"):
            try:
                if "MOCKSEED" in fits.getheader(workdir.raw / rel):
                    owned.add(rel)
            except OSError:
                continue
    logger.info("raw/ has no %s (an older mock): taking %d files as the mock's", MOCK_FILES_NAME, len(owned))
    return owned


def _catalogue_paths(workdir: WorkDir) -> list[Path]:
    return [
        workdir.gswlc_dir / gswlc_file_name("X2"),
        workdir.hyperleda,
        workdir.gz2,
        workdir.photometry,
        workdir.stars,
    ]


def _write_mock_files(workdir: WorkDir, files: set[str]) -> None:
    write_json_atomic(
        workdir.raw / MOCK_FILES_NAME, {"written_by": "morphomass mock", "files": sorted(files)}
    )


def _refuse_fetched_raw(workdir: WorkDir) -> None:
    """Refuse a ``raw/`` that ``fetch`` filled, whatever ``force`` says.

    Raises
    ------
    WorkdirError
        If the manifest records a finished fetch.
    """
    finished = _finished_fetch(workdir)
    if finished is not None:
        msg = (
            f"{workdir.raw} holds the archives 'morphomass fetch' downloaded ({workdir.manifest} records a "
            f"fetch finished {finished}); the mock never writes there, not even with --force: use another "
            "work directory (--workdir) for the mock survey"
        )
        raise WorkdirError(msg)


def _refuse_foreign_files(workdir: WorkDir, owned: set[str], *, force: bool) -> None:
    """Refuse a ``raw/`` holding files the mock did not write, unless ``force``.

    Raises
    ------
    WorkdirError
        If ``raw/`` holds a file not in ``owned`` and ``force`` is false.
    """
    foreign = sorted(_raw_files(workdir) - owned)
    if foreign and not force:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        msg = (
            f"{workdir.raw} holds {len(foreign)} file(s) the mock did not write ({shown}; the mock lists its "
            f"own in {MOCK_FILES_NAME}); use another work directory, or --force to write the mock beside "
            "them (it overwrites files of its names and deletes none of the others)"
        )
        raise WorkdirError(msg)
    if foreign:
        logger.warning(
            "raw/ holds %d files the mock did not write: --force, overwriting those of its names only",
            len(foreign),
        )


def _remove_stale_images(workdir: WorkDir, owned: set[str], planned: set[str]) -> int:
    """Delete the images an earlier mock wrote that this one does not write; return how many."""
    removed = 0
    for rel in sorted(owned - planned):
        path = workdir.raw / rel
        if rel.startswith("images/") and path.is_file():
            path.unlink()
            removed += 1
    return removed


def run_mock(
    config: PipelineConfig, workdir: WorkDir, *, progress: bool = True, force: bool = False
) -> StageResult:
    """Make the mock survey: catalogues in the real formats, one FITS image per galaxy and band.

    And the truth.

    Rerunning with the same configuration resumes: images already written with the same render seed are kept.
    Images an earlier mock wrote that this one does not (other galaxies or bands) are deleted; no other file.

    Parameters
    ----------
    config : PipelineConfig
        Uses ``config.mock``.
    workdir : WorkDir
    progress : bool
        Show a progress bar while rendering.
    force : bool
        Write into a ``raw/`` that holds files the mock did not write (overwriting those of its names,
        keeping the others). Never allows writing into a ``raw/`` that ``fetch`` filled.

    Returns
    -------
    StageResult
        Outputs ``raw`` and ``mock_truth.parquet``; the summary has the counts of galaxies, images and stars.

    Raises
    ------
    WorkdirError
        If ``raw/`` came from ``fetch`` (whatever ``force``), holds files the mock did not write (unless
        ``force``), or its list of the mock's files is unreadable.
    """
    start = time.perf_counter()
    mock = config.mock
    _refuse_fetched_raw(workdir)
    owned = _load_mock_files(workdir)
    _refuse_foreign_files(workdir, owned, force=force)
    workdir.ensure()
    logger.info("drawing the mock survey (%d galaxies with images, seed %d)", mock.n_galaxies, mock.seed)
    survey = make_survey(mock, np.random.default_rng(mock.seed))
    images = survey.truth[survey.truth["has_image"]]
    image_paths = {
        objid: {b: workdir.raw_image(b, objid) for b in mock.image_bands} for objid in images["objid"]
    }
    planned = {_raw_relative(workdir, p) for p in _catalogue_paths(workdir)}
    planned |= {_raw_relative(workdir, p) for paths in image_paths.values() for p in paths.values()}
    # listed before writing, so that an interrupted run still knows its files
    _write_mock_files(workdir, owned | planned)
    write_catalogues(survey, workdir)
    specs = galaxy_specs(survey, mock)
    removed = _remove_stale_images(workdir, owned, planned)
    if removed:
        logger.info("removed %d images left by an earlier mock with other settings", removed)
    jobs = [
        (spec, float(ra), float(dec), {b: str(p) for b, p in image_paths[objid].items()})
        for spec, objid, ra, dec in zip(specs, images["objid"], images["ra"], images["dec"], strict=True)
    ]
    for band in mock.image_bands:
        (workdir.raw_images / band).mkdir(parents=True, exist_ok=True)
    rendered = _render_all(jobs, mock.workers or os.cpu_count() or 1, progress)
    _write_mock_files(workdir, planned | {rel for rel in owned if (workdir.raw / rel).is_file()})
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
