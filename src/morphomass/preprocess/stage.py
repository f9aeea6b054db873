"""The ``preprocess`` stage: sample.parquet + raw/images -> images.zarr, features/photometric.parquet.

Galaxies with an unusable sample row or no image file are set aside first (they are the common failures, and
this way they never take a row of the image store); the rest is cut into tasks of whole zarr chunks
(:mod:`morphomass.preprocess.tasks`), laid out by the sample alone so that a resumed run finds the same tasks
whatever its number of workers. Tasks run on a Dask
cluster (a local one with ``preprocess.workers`` processes by default, or the scheduler at
``preprocess.scheduler``, whose workers must see the work directory) or, for small samples or one worker, in
this process.

Everything in flight lives in ``<workdir>/.preprocess-partial/``: a preallocated image store that the tasks
fill, and one part file per finished task. A rerun after a crash finds the parts already committed and
processes only the rest (the folder is thrown away when the configuration, the sample or the star catalogue
changed). When every task is done the parts are assembled into ``features/photometric.parquet``,
``results/tables/preprocess_failures.csv`` (objid, kind, reason, path),
``results/tables/preprocess_galaxies.csv`` (per-galaxy diagnostics, ``morph_reason`` for NaN ``morph_*``) and
Fig. 1 of the paper
(``results/figures/scaling_demo.png``), and the store becomes ``images.zarr``.

``images.zarr`` (DESIGN §2) holds one group per image size (``"69"``, ``"128"``, ...), each with ``images``
(N, S, S) float32 or float16 in [0, 1], chunked by ``preprocess.chunk_images`` images, ``objid`` (N,) int64
and ``scaling_a`` (N,) float64, for the N galaxies that were preprocessed, in sample order; failed galaxies
are left out. Its attributes give the band, the sizes and the scaled noise level.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from morphomass import __version__
from morphomass.config import PipelineConfig, PreprocessConfig
from morphomass.errors import ConfigError, GalaxyImageError, InputDataError
from morphomass.photometry import compute_image_m_sun
from morphomass.preprocess.features import FEATURE_COLUMNS
from morphomass.preprocess.tasks import (
    DIAGNOSTIC_COLUMNS,
    PART_COLUMNS,
    GalaxyJob,
    PreprocessTask,
    check_job,
    load_sample,
    load_star_catalogue,
    make_galaxy_jobs,
    measure_job,
    process_task,
)
from morphomass.progress import progress_bar
from morphomass.workdir import StageResult, WorkDir, atomic_path, file_sha256, write_json_atomic

__all__ = ["FIGURE_NAME", "PARTIAL_NAME", "run_preprocess"]

logger = logging.getLogger(__name__)

FIGURE_NAME = "scaling_demo.png"
PARTIAL_NAME = ".preprocess-partial"
#: Most galaxies per task (a whole number of zarr chunks; fewer when the sample is small).
TASK_GALAXIES = 256
#: Below this many galaxies to do (and without a scheduler address) the stage runs in this process: starting
#: worker processes and importing the libraries in each costs seconds, the time of ~1000 galaxies on 2 cores.
MIN_GALAXIES_FOR_CLUSTER = 1000


#: glibc malloc settings of the local workers. Dask's default MALLOC_TRIM_THRESHOLD_ of 64 KiB hands freed
#: memory back at once, so every one of a galaxy's many image-sized temporaries is page-faulted in afresh:
#: measured 1.5x the CPU time per galaxy of the same code in a process with glibc's defaults.
_WORKER_MALLOC = {"MALLOC_TRIM_THRESHOLD_": 256 << 20, "MALLOC_MMAP_THRESHOLD_": 32 << 20}


@dataclass(frozen=True)
class _Partial:
    """The in-flight folder: ``spec.json``, ``images.zarr`` (preallocated) and ``parts/``."""

    root: Path

    @property
    def zarr_path(self) -> Path:
        return self.root / "images.zarr"

    @property
    def parts(self) -> Path:
        return self.root / "parts"

    @property
    def spec(self) -> Path:
        return self.root / "spec.json"


def _m_sun_ab(config: PipelineConfig) -> float:
    """Return the Sun's magnitude in the band on the images' magnitude system.

    The images are in SDSS nanomaggies: M_sun,AB - offset.
    """
    return compute_image_m_sun(
        config.catalog.m_sun_ab, config.catalog.ab_offset_mag, band=config.preprocess.band
    )


def _partial_spec(config: PipelineConfig, workdir: WorkDir, sizes: tuple[int, ...], n: int) -> dict[str, Any]:
    """Everything the in-flight folder's content depends on."""
    return {
        "version": __version__,
        "settings": config.preprocess.model_dump(mode="json", exclude={"workers", "scheduler"}),
        "sizes": list(sizes),
        "m_sun_ab": _m_sun_ab(config),
        "n_galaxies": n,
        "sample_sha256": file_sha256(workdir.sample),
        "stars_sha256": file_sha256(workdir.stars) if workdir.stars.exists() else None,
    }


def _prepare_partial(workdir: WorkDir, spec: dict[str, Any], config: PreprocessConfig) -> _Partial:
    """Reuse the in-flight folder of an interrupted run with the same spec, or start a fresh one."""
    import zarr

    partial = _Partial(workdir.root / PARTIAL_NAME)
    if partial.spec.exists() and partial.zarr_path.exists():
        try:
            same = json.loads(partial.spec.read_text(encoding="utf-8")) == spec
        except json.JSONDecodeError:
            same = False
        if same:
            return partial
        logger.info("preprocess: settings or inputs changed since the interrupted run; starting afresh")
    if partial.root.exists():
        shutil.rmtree(partial.root)
    partial.parts.mkdir(parents=True)
    group = zarr.open_group(partial.zarr_path, mode="w")
    n = spec["n_galaxies"]
    for size in spec["sizes"]:
        group.create_group(str(size)).create_array(
            "images",
            shape=(n, size, size),
            chunks=(min(config.chunk_images, max(n, 1)), size, size),
            dtype=config.image_dtype,
            fill_value=0.0,
        )
    write_json_atomic(partial.spec, spec)  # last: a folder without it is never resumed
    return partial


def _precheck(jobs: list[GalaxyJob]) -> tuple[list[GalaxyJob], pd.DataFrame]:
    """Set aside the galaxies with an unusable sample row or no image file before they get a row in the store.

    Those are the common failures; catching them here spares rewriting the image store without their rows.
    """
    kept, failures = [], []
    for job in jobs:
        try:
            check_job(job)
        except GalaxyImageError as err:
            failures.append(
                {
                    "objid": job.objid,
                    "row": -1,
                    "path": job.path,
                    "ok": False,
                    "kind": err.kind,
                    "reason": str(err),
                }
            )
        else:
            kept.append(job)
    return kept, pd.DataFrame(failures, columns=list(PART_COLUMNS)).astype({"ok": bool})


def _n_workers(config: PreprocessConfig) -> int:
    if config.workers is not None:
        return config.workers
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _task_size(n: int, *, chunk: int) -> int:
    """Galaxies per task: whole chunks, at most :data:`TASK_GALAXIES`.

    At least 16 tasks when there are enough.

    The layout depends on the sample and the chunk size only, so that a run resumed with another number of
    workers finds the same tasks.
    """
    chunks_wanted = math.ceil(n / (16 * chunk)) if n else 1
    return chunk * max(1, min(TASK_GALAXIES // chunk, chunks_wanted))


@contextlib.contextmanager
def _quiet_dask_logs() -> Iterator[None]:
    """Keep Dask's INFO chatter (cluster start and stop, comms closed at shutdown) off the user's console.

    Dask's ``distributed`` logger has its own level (INFO), so the CLI's WARNING threshold does not reach it;
    with ``morphomass -v`` (DEBUG) it is left as it is.
    """
    dask_logger = logging.getLogger("distributed")
    previous = dask_logger.level
    if not logging.getLogger("morphomass").isEnabledFor(logging.DEBUG):
        dask_logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        dask_logger.setLevel(previous)


@contextlib.contextmanager
def _dask_client(config: PreprocessConfig, n_workers: int) -> Iterator[Any]:
    from dask.distributed import Client, LocalCluster

    if config.scheduler is not None:
        with _quiet_dask_logs(), Client(config.scheduler) as client:
            yield client
        return
    import dask

    # no dashboard, and the scheduler's HTTP endpoints on a free port (no warning when another run holds 8787)
    cluster_options = {
        "threads_per_worker": 1,
        "processes": True,
        "dashboard_address": None,
        "scheduler_kwargs": {"dashboard_address": ":0"},
    }
    with (
        _quiet_dask_logs(),
        dask.config.set({f"distributed.nanny.pre-spawn-environ.{k}": v for k, v in _WORKER_MALLOC.items()}),
        LocalCluster(n_workers=n_workers, silence_logs=logging.WARNING, **cluster_options) as cluster,
        Client(cluster) as client,
    ):
        yield client


def _run_tasks(tasks: list[PreprocessTask], config: PreprocessConfig, *, progress: bool) -> float:
    """Run the tasks in this process or on Dask; return the CPU seconds they took."""
    total = sum(len(t.galaxies) for t in tasks)
    n_workers = min(_n_workers(config), max(len(tasks), 1))
    in_process = config.scheduler is None and (n_workers == 1 or total < MIN_GALAXIES_FOR_CLUSTER)
    cpu_seconds = 0.0
    with progress_bar("preprocessing galaxies", total=total, enabled=progress) as advance:
        if in_process:
            for task in tasks:
                n, cpu = process_task(task)
                cpu_seconds += cpu
                advance(n)
            return cpu_seconds
        from dask.distributed import as_completed

        with _dask_client(config, n_workers) as client:
            logger.info("preprocess: %d galaxies in %d tasks on %s", total, len(tasks), client)
            for future in as_completed(client.map(process_task, tasks, pure=False)):
                n, cpu = future.result()
                cpu_seconds += cpu
                advance(n)
    return cpu_seconds


def _read_parts(tasks: list[PreprocessTask]) -> pd.DataFrame:
    parts = [pd.read_parquet(t.part_path) for t in tasks]
    if not parts:
        return pd.DataFrame(columns=list(PART_COLUMNS)).astype({"ok": bool})
    table = pd.concat(parts, ignore_index=True).sort_values("row", kind="stable").reset_index(drop=True)
    table["ok"] = table["ok"].astype(bool)
    return table


def _write_csv(path: Path, table: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False, lineterminator="\n")


def _finalize_zarr(partial: _Partial, table: pd.DataFrame, dest: Path, attrs: dict[str, Any]) -> None:
    """Write objid and scaling_a, leave out the rows of failed galaxies, and move the store to ``dest``."""
    import zarr

    ok = table["ok"].to_numpy(bool)
    keep = table.loc[ok, "row"].to_numpy(np.int64)
    objid = table.loc[ok, "objid"].to_numpy(np.int64)
    scaling_a = table.loc[ok, "scaling_a"].to_numpy(np.float64)
    src = zarr.open_group(partial.zarr_path, mode="r+")
    compact = not ok.all()
    with atomic_path(dest) as tmp:
        out = zarr.open_group(tmp, mode="w") if compact else src
        for size in attrs["sizes"]:
            group = out.require_group(str(size))
            if compact:  # copy the kept rows, one output chunk at a time
                images = src[f"{size}/images"]
                copy = group.create_array(
                    "images",
                    shape=(keep.size, size, size),
                    chunks=images.chunks,
                    dtype=images.dtype,
                    fill_value=0.0,
                )
                step = images.chunks[0]
                for begin in range(0, keep.size, step):
                    rows = keep[begin : begin + step]
                    selection = (rows, slice(None), slice(None))
                    copy[begin : begin + rows.size] = images.get_orthogonal_selection(selection)
            chunk = (max(objid.size, 1),)
            group.create_array("objid", data=objid, chunks=chunk, overwrite=True)
            group.create_array("scaling_a", data=scaling_a, chunks=chunk, overwrite=True)
        out.attrs.update(attrs)
        if not compact:
            os.replace(partial.zarr_path, tmp)


def _write_figure(path: Path, table: pd.DataFrame, tasks: list[PreprocessTask]) -> bool:
    """Fig. 1 from the run: the galaxies at the 5th, 50th and 95th percentile of ``a``.

    False if < 3 succeeded.
    """
    from morphomass.preprocess.figure import plot_scaling_demo
    from morphomass.preprocess.scaling import rescale_linear

    done = table[table["ok"]]
    if len(done) < 3:
        logger.info("preprocess: fewer than 3 galaxies preprocessed, no scaling figure")
        return False
    order = done.sort_values("scaling_a", kind="stable")
    picks = [int(order["objid"].iloc[round(q * (len(order) - 1))]) for q in (0.05, 0.5, 0.95)]
    jobs = {job.objid: job for task in tasks for job in task.galaxies}
    images, a_values = [], []
    for objid in picks:
        products, _, _ = measure_job(
            jobs[objid], sizes=(), config=tasks[0].config, m_sun_ab=tasks[0].m_sun_ab
        )
        images.append(rescale_linear(products.star_subtracted)[0])
        a_values.append(products.scaling_a)
    median_a = float(done["scaling_a"].median())
    fig = plot_scaling_demo(images, a_values, a_fixed=median_a, labels=[str(objid) for objid in picks])
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    return True


def _log_problems(done: pd.DataFrame, failed: pd.DataFrame) -> None:
    for row in failed.itertuples(index=False):
        logger.warning("objid %d not preprocessed (%s): %s", row.objid, row.kind, row.reason)
    for objid in done.loc[done["constant_image"].astype(bool), "objid"]:
        logger.warning("objid %d: constant image, scaled to zeros with a = 0", objid)
    bad = done["n_bad_pixels"].to_numpy()
    if bad.sum():
        logger.warning(
            "preprocess: %d NaN/inf pixels in %d images were filled with the background level",
            int(bad.sum()),
            int((bad > 0).sum()),
        )


def run_preprocess(config: PipelineConfig, workdir: WorkDir, *, progress: bool = True) -> StageResult:
    """Preprocess every galaxy of the sample (SPEC D5, I1-I4, F1-F3).

    Parameters
    ----------
    config : PipelineConfig
        Uses ``config.preprocess``, the input sizes of ``config.cnn.nets`` and the Sun's magnitude in the band
        (``config.catalog.m_sun_ab`` and ``ab_offset_mag``, as for the catalogue's luminosities).
    workdir : WorkDir
        Reads ``sample.parquet``, ``raw/images/<band>/`` and ``raw/stars.csv``.
    progress : bool
        Show a progress bar.

    Returns
    -------
    StageResult
        Outputs ``images.zarr``, ``features/photometric.parquet``, the two tables and the figure; the summary
        counts the galaxies done, failed (by kind) and resumed, and gives the median scaling value and the CPU
        seconds of the tasks run.

    Raises
    ------
    ConfigError
        If no network is configured (no image size to make).
    InputDataError
        If sample.parquet or raw/stars.csv lacks a needed column, sample.parquet repeats an objid, or no
        galaxy at all could be preprocessed (the failures table says why).
    """
    start = time.perf_counter()
    pp = config.preprocess
    sizes = config.image_sizes
    if not sizes:
        msg = "cnn.nets is empty: the preprocess stage has no image size to make"
        raise ConfigError(msg)
    workdir.ensure()
    sample = load_sample(workdir.sample)
    all_jobs = make_galaxy_jobs(
        sample, load_star_catalogue(workdir.stars), image_dir=workdir.raw_images / pp.band
    )
    jobs, prefailed = _precheck(all_jobs)
    n = len(jobs)
    partial = _prepare_partial(workdir, _partial_spec(config, workdir, sizes, n), pp)
    step = _task_size(n, chunk=pp.chunk_images)
    tasks = [
        PreprocessTask(
            start=begin,
            galaxies=tuple(jobs[begin : begin + step]),
            zarr_path=str(partial.zarr_path),
            part_path=str(partial.parts / f"{begin:09d}+{len(jobs[begin : begin + step]):05d}.parquet"),
            sizes=sizes,
            config=pp,
            m_sun_ab=_m_sun_ab(config),
        )
        for begin in range(0, n, step)
    ]
    todo = [task for task in tasks if not Path(task.part_path).exists()]
    resumed = n - sum(len(t.galaxies) for t in todo)
    if resumed:
        logger.info("preprocess: resuming, %d of %d galaxies already done", resumed, n)
    cpu_seconds = _run_tasks(todo, pp, progress=progress)

    stored = _read_parts(tasks)
    position = {objid: i for i, objid in enumerate(sample["objid"])}
    table = pd.concat([prefailed, stored], ignore_index=True) if len(prefailed) else stored
    table = table.iloc[np.argsort(table["objid"].map(position).to_numpy(), kind="stable")]
    done, failed = table[table["ok"]], table[~table["ok"]]
    _log_problems(done, failed)
    dtypes = {"objid": np.int64, **dict.fromkeys(FEATURE_COLUMNS, np.float64)}
    features = done[["objid", *FEATURE_COLUMNS]].astype(dtypes)
    with atomic_path(workdir.photometric_features) as tmp:
        features.to_parquet(tmp, index=False)
    _write_csv(workdir.preprocess_failures, failed[["objid", "kind", "reason", "path"]])
    _write_csv(
        workdir.preprocess_galaxies,
        table[["objid", "ok", "kind", "scaling_a", *DIAGNOSTIC_COLUMNS, "morph_reason"]],
    )
    if len(table) and done.empty:
        shutil.rmtree(partial.root)  # nothing worth resuming: the next run starts afresh
        first = failed.iloc[0]
        msg = (
            f"none of the {len(table)} galaxies could be preprocessed (objid {first['objid']}: "
            f"{first['reason']}); see {workdir.preprocess_failures}"
        )
        raise InputDataError(msg)
    written = [
        workdir.images_zarr,
        workdir.photometric_features,
        workdir.preprocess_failures,
        workdir.preprocess_galaxies,
    ]
    if _write_figure(workdir.figures / FIGURE_NAME, table, tasks):
        written.append(workdir.figures / FIGURE_NAME)
    outputs = [workdir.relative(path) for path in written]
    attrs = {"band": pp.band, "sizes": list(sizes), "noise_target": pp.noise_target, "version": __version__}
    _finalize_zarr(partial, stored, workdir.images_zarr, attrs)
    shutil.rmtree(partial.root)

    seconds = time.perf_counter() - start
    summary = {
        "galaxies": len(table),
        "preprocessed": len(done),
        "failed": len(failed),
        "failed_by_kind": {str(k): int(v) for k, v in failed["kind"].value_counts().items()},
        "resumed_galaxies": resumed,
        "sizes": list(sizes),
        "median_scaling_a": float(done["scaling_a"].median()) if len(done) else None,
        "stars_subtracted": int(done["n_stars_subtracted"].sum()),
        "task_cpu_seconds": round(cpu_seconds, 3),
    }
    logger.info(
        "preprocess: %d of %d galaxies in %.1f s (%d failed)", len(done), len(table), seconds, len(failed)
    )
    return StageResult(stage="preprocess", outputs=outputs, seconds=seconds, summary=summary)
