"""The work units of the preprocess stage: what a worker gets, and what it does with it.

:func:`make_galaxy_jobs` turns sample rows and the star catalogue into :class:`GalaxyJob` records;
:func:`process_task` runs on a worker over a :class:`PreprocessTask` (a run of galaxies covering whole zarr
chunks): it reads and preprocesses every galaxy (:func:`measure_job`), writes their rows of the image
arrays, and then commits a Parquet *part* with their features, diagnostics or failure reasons.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from morphomass.config import PreprocessConfig
from morphomass.errors import InputDataError
from morphomass.photometry import luminosity_per_nanomaggy
from morphomass.preprocess.cutout import load_galaxy_image
from morphomass.preprocess.features import (
    FEATURE_COLUMNS,
    compute_photometric_features,
)
from morphomass.preprocess.fits_image import GalaxyImageError
from morphomass.preprocess.galaxy import GalaxyProducts, preprocess_galaxy
from morphomass.preprocess.morphology import MorphologyResult, compute_morphology
from morphomass.workdir import atomic_path

__all__ = [
    "DIAGNOSTIC_COLUMNS",
    "PART_COLUMNS",
    "SAMPLE_COLUMNS",
    "GalaxyJob",
    "PreprocessTask",
    "check_job",
    "load_sample",
    "load_star_catalogue",
    "make_galaxy_jobs",
    "measure_job",
    "process_task",
]

logger = logging.getLogger(__name__)

#: Columns of sample.parquet the stage needs (``d25_arcmin`` is used when present, to find the field stars).
SAMPLE_COLUMNS: tuple[str, ...] = ("objid", "ra", "dec", "z", "dist_mpc", "pixel_kpc")
#: Per-galaxy diagnostics kept in results/tables/preprocess_galaxies.csv (see GalaxyProducts).
DIAGNOSTIC_COLUMNS: tuple[str, ...] = (
    "noise_level",
    "n_bad_pixels",
    "n_stars_subtracted",
    "n_star_priors_rejected",
    "n_nucleus_skipped",
    "constant_image",
)
#: Columns of a task's part file.
PART_COLUMNS: tuple[str, ...] = (
    "objid",
    "row",
    "path",
    "ok",
    "kind",
    "reason",
    *FEATURE_COLUMNS,
    *DIAGNOSTIC_COLUMNS,
    "morph_reason",
)


@dataclass(frozen=True)
class GalaxyJob:
    """What a worker needs to preprocess one galaxy (positions in degrees, distance in Mpc).

    ``stars_radec`` (n, 2) holds the catalogued stars near the galaxy (RA, Dec in degrees).
    """

    objid: int
    path: str
    ra: float
    dec: float
    z: float
    dist_mpc: float
    pixel_kpc: float
    stars_radec: np.ndarray


@dataclass(frozen=True)
class PreprocessTask:
    """A run of galaxies whose rows ``start .. start + len(galaxies)`` cover whole zarr chunks."""

    start: int
    galaxies: tuple[GalaxyJob, ...]
    zarr_path: str
    part_path: str
    sizes: tuple[int, ...]
    config: PreprocessConfig
    m_sun_ab: float


def load_sample(path: Path) -> pd.DataFrame:
    """Read the columns of sample.parquet this stage uses and check them.

    Returns
    -------
    pandas.DataFrame
        :data:`SAMPLE_COLUMNS` (+ ``d25_arcmin`` when present), ``objid`` as int64, in file order.

    Raises
    ------
    InputDataError
        If the file lacks a column or repeats an objid.
    """
    import pyarrow.parquet as pq

    names = pq.read_schema(path).names
    missing = [c for c in SAMPLE_COLUMNS if c not in names]
    if missing:
        msg = f"{path}: missing column(s) {missing}; expected at least {list(SAMPLE_COLUMNS)}"
        raise InputDataError(msg)
    columns = [*SAMPLE_COLUMNS, *(["d25_arcmin"] if "d25_arcmin" in names else [])]
    sample = pd.read_parquet(path, columns=columns)
    sample["objid"] = sample["objid"].astype(np.int64)
    duplicated = sample["objid"][sample["objid"].duplicated()]
    if len(duplicated):
        msg = f"{path}: objid {int(duplicated.iloc[0])} appears more than once; objid must be unique"
        raise InputDataError(msg)
    return sample.reset_index(drop=True)


def load_star_catalogue(path: Path) -> pd.DataFrame:
    """Read the point-source catalogue (``objID,ra,dec,type,psfMag_g``); an absent file means no stars.

    Returns
    -------
    pandas.DataFrame
        Columns ``ra``, ``dec`` (degrees) of the rows with ``type == 6`` (all rows if there is no ``type``).

    Raises
    ------
    InputDataError
        If the file lacks ``ra`` or ``dec``.
    """
    if not path.exists():
        logger.warning("%s does not exist: no star will be subtracted", path)
        return pd.DataFrame({"ra": np.empty(0), "dec": np.empty(0)})
    stars = pd.read_csv(path)
    missing = [c for c in ("ra", "dec") if c not in stars.columns]
    if missing:
        msg = f"{path}: missing column(s) {missing}; expected objID,ra,dec,type,psfMag_g"
        raise InputDataError(msg)
    if "type" in stars.columns:
        stars = stars[stars["type"] == 6]
    return stars[["ra", "dec"]].astype(np.float64).reset_index(drop=True)


def _unit_vectors(ra_deg: np.ndarray, dec_deg: np.ndarray) -> np.ndarray:
    ra, dec = np.deg2rad(ra_deg), np.deg2rad(dec_deg)
    return np.column_stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)])


def make_galaxy_jobs(sample: pd.DataFrame, stars: pd.DataFrame, *, image_dir: Path) -> list[GalaxyJob]:
    """One :class:`GalaxyJob` per sample row, with the catalogued stars that may fall on its image.

    A star is a candidate when it lies within ``d25_arcmin + 0.5`` arcmin of the galaxy (an image of
    1.125 x D25 reaches 0.8 x D25 in its corners), or 10 arcmin when D25 is unknown; the worker keeps those
    that land on the image.

    Parameters
    ----------
    sample : pandas.DataFrame
        From :func:`load_sample`.
    stars : pandas.DataFrame
        From :func:`load_star_catalogue`.
    image_dir : Path
        Folder of the band's images, ``<objid>.fits``.

    Returns
    -------
    list of GalaxyJob
        In sample order.
    """
    from scipy.spatial import cKDTree

    ra = sample["ra"].to_numpy(np.float64)
    dec = sample["dec"].to_numpy(np.float64)
    d25 = sample["d25_arcmin"].to_numpy(np.float64) if "d25_arcmin" in sample else np.full(len(ra), np.nan)
    radius_arcmin = np.where(np.isfinite(d25) & (d25 > 0), d25 + 0.5, 10.0)
    star_radec = stars[["ra", "dec"]].to_numpy(np.float64)
    near: list[list[int]] = [[] for _ in range(len(sample))]
    ok = np.isfinite(ra) & np.isfinite(dec)
    if len(star_radec) and ok.any():
        tree = cKDTree(_unit_vectors(star_radec[:, 0], star_radec[:, 1]))
        chord = 2.0 * np.sin(np.deg2rad(radius_arcmin[ok] / 60.0) / 2.0)
        found = tree.query_ball_point(_unit_vectors(ra[ok], dec[ok]), chord)
        for i, indices in zip(np.nonzero(ok)[0], found, strict=True):
            near[i] = sorted(indices)
    return [
        GalaxyJob(
            objid=int(row.objid),
            path=str(image_dir / f"{int(row.objid)}.fits"),
            ra=float(row.ra),
            dec=float(row.dec),
            z=float(row.z),
            dist_mpc=float(row.dist_mpc),
            pixel_kpc=float(row.pixel_kpc),
            stars_radec=star_radec[near[i]] if near[i] else np.empty((0, 2)),
        )
        for i, row in enumerate(sample.itertuples(index=False))
    ]


def check_job(job: GalaxyJob) -> None:
    """Check what can be checked without reading the image: the sample row's values and the file's presence.

    Raises
    ------
    GalaxyImageError
        ``bad_sample_row`` for a non-finite position, redshift or pixel size or a distance <= 0;
        ``missing_fits`` if the image file does not exist.
    """
    for name in ("ra", "dec", "z", "dist_mpc", "pixel_kpc"):
        value = getattr(job, name)
        if not math.isfinite(value) or (name == "dist_mpc" and value <= 0):
            msg = f"sample.parquet row objid={job.objid}: {name} is {value!r}"
            raise GalaxyImageError("bad_sample_row", msg)
    if not Path(job.path).is_file():
        raise GalaxyImageError("missing_fits", f"{job.path}: FITS file is missing")


def _morphology(job: GalaxyJob, products: GalaxyProducts) -> MorphologyResult:
    """Measure the star-subtracted, unscaled image's morphology; an unexpected error gives NaN + a reason."""
    try:
        return compute_morphology(
            products.star_subtracted, center_xy=products.center_xy, pixel_kpc=job.pixel_kpc
        )
    except Exception as err:  # the galaxy keeps its other features; the reason goes to the diagnostics
        logger.exception("objid %d: classical morphology failed on %s", job.objid, job.path)
        return MorphologyResult(reason=f"internal_error: {type(err).__name__}: {err}")


def measure_job(
    job: GalaxyJob,
    *,
    sizes: tuple[int, ...],
    config: PreprocessConfig,
    m_sun_ab: float,
    recut_arcsec: float | None = None,
    reduce_above: int | None = None,
) -> tuple[GalaxyProducts, dict[str, float], str]:
    """Read, preprocess and measure one galaxy, with the reason for any NaN ``morph_*`` feature.

    Parameters
    ----------
    job : GalaxyJob
    sizes : tuple of int
        Output image sizes in pixels.
    config : PreprocessConfig
    m_sun_ab : float
        Absolute magnitude of the Sun in the band, on the images' magnitude system.
    recut_arcsec : float, optional
        Preprocess only the square of this side (arcsec) centred on the galaxy's position, cut from the image
        (:func:`morphomass.preprocess.cutout.load_galaxy_image`); None (the preprocess stage) uses the whole
        image.
    reduce_above : int, optional
        Block-reduce an image (or cut) wider or taller than this many pixels to at most half of it
        (:func:`morphomass.preprocess.cutout.block_factor`); its pixel scale and ``pixel_kpc`` grow by the
        block factor. None (the preprocess stage) never reduces.

    Returns
    -------
    products : GalaxyProducts
        With ``block_factor``, ``source_shape`` and ``recut`` saying how the input was read.
    features : dict of str to float
        The F1-F3 and ``morph_*`` features (:data:`morphomass.preprocess.features.FEATURE_COLUMNS`).
    morph_reason : str
        Why some ``morph_*`` are NaN (:func:`morphomass.preprocess.morphology.compute_morphology`), else
        ``""``.

    Raises
    ------
    GalaxyImageError
        With the failure kind and reason: bad sample row, missing or corrupt FITS, no usable WCS, a WCS that
        does not cover the galaxy, an all-NaN image. A failed morphology is not an error.
    """
    check_job(job)
    image = load_galaxy_image(
        job.path, ra_deg=job.ra, dec_deg=job.dec, recut_arcsec=recut_arcsec, reduce_above=reduce_above
    )
    data = image.data
    ny, nx = data.shape
    cx, cy = image.sky_to_pixel(job.ra, job.dec)[0]
    if not (-0.5 <= cx < nx - 0.5 and -0.5 <= cy < ny - 0.5):
        msg = (
            f"{job.path}: the WCS puts the galaxy (ra={job.ra:.6f}, dec={job.dec:.6f}) at pixel "
            f"({cx:.1f}, {cy:.1f}), outside the {nx}x{ny} image"
        )
        raise GalaxyImageError("wcs_outside", msg)
    stars_xy = image.sky_to_pixel(job.stars_radec[:, 0], job.stars_radec[:, 1])
    try:
        products = preprocess_galaxy(
            data,
            center_xy=(float(cx), float(cy)),
            stars_xy=stars_xy[np.isfinite(stars_xy).all(axis=1)],
            pixel_scale_arcsec=image.pixel_scale_arcsec,
            sizes=sizes,
            config=config,
            rng=np.random.default_rng(job.objid & 0x7FFFFFFFFFFFFFFF),
        )
    except GalaxyImageError as err:
        raise GalaxyImageError(err.kind, f"{job.path}: {err}") from err
    if image.block_factor > 1 or image.recut:
        products = dataclasses.replace(
            products, block_factor=image.block_factor, source_shape=image.source_shape, recut=image.recut
        )
        # a reduced pixel is block_factor catalogue pixels wide: pixel_kpc and morph_hlr_kpc follow
        job = dataclasses.replace(job, pixel_kpc=job.pixel_kpc * image.block_factor)
    morphology = _morphology(job, products)
    features = compute_photometric_features(
        products.star_subtracted,
        products.scaled,
        center_xy=products.center_xy,
        lum_per_nmgy=luminosity_per_nanomaggy(job.dist_mpc, m_sun_ab=m_sun_ab),
        scaling_a=products.scaling_a,
        redshift=job.z,
        pixel_kpc=job.pixel_kpc,
        morphology=morphology.values,
    )
    return products, features, morphology.reason


def process_task(task: PreprocessTask) -> tuple[int, float]:
    """Preprocess the galaxies of one task, write their image rows, then commit the task's part file.

    A galaxy that fails with a data problem (:class:`GalaxyImageError`) or an unexpected error is recorded in
    the part with its kind and reason and left as zeros in the image arrays; the others go on.

    Returns
    -------
    n_galaxies : int
        Galaxies in the task.
    cpu_seconds : float
        CPU time the task took in its process.
    """
    import cv2
    import zarr

    cpu_start = time.process_time()
    cv2.setNumThreads(1)
    n = len(task.galaxies)
    blocks = {size: np.zeros((n, size, size), dtype=task.config.image_dtype) for size in task.sizes}
    rows = []
    for i, job in enumerate(task.galaxies):
        row: dict[str, object] = {"objid": job.objid, "row": task.start + i, "path": job.path}
        try:
            products, features, morph_reason = measure_job(
                job, sizes=task.sizes, config=task.config, m_sun_ab=task.m_sun_ab
            )
        except GalaxyImageError as err:
            row.update(ok=False, kind=err.kind, reason=str(err))
        except Exception as err:  # recorded, not hidden: the failures table and the log name it
            logger.exception("objid %d: unexpected error while preprocessing %s", job.objid, job.path)
            row.update(ok=False, kind="internal_error", reason=f"{job.path}: {type(err).__name__}: {err}")
        else:
            for size in task.sizes:
                blocks[size][i] = products.resized[size]
            row.update(ok=True, kind="", reason="", morph_reason=morph_reason, **features)
            row.update({name: getattr(products, name) for name in DIAGNOSTIC_COLUMNS})
        rows.append(row)
    group = zarr.open_group(task.zarr_path, mode="r+")
    for size in task.sizes:
        group[f"{size}/images"][task.start : task.start + n] = blocks[size]
    part = pd.DataFrame(rows).reindex(columns=list(PART_COLUMNS))
    with atomic_path(task.part_path) as tmp:
        part.to_parquet(tmp, index=False)
    return n, time.process_time() - cpu_start
