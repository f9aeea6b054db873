"""Prediction of a large catalogue on a Dask cluster, one Parquet file per catalogue partition.

:func:`predict_distributed` cuts the catalogue into consecutive partitions of ``partition_size`` rows; each
Dask task loads the bundle on its worker once (a cache per worker process, keyed by the bundle's path and its
``bundle_sha256``; :func:`~morphomass.predict.bundle.load_bundle` hashes exactly the bytes it parses),
predicts its partition in batches and writes ``part-<index:05d>.parquet`` atomically (temporary name, then
rename). ``_partitions.json`` records the partitioning and, for each finished part, its row count and
SHA-256, so a rerun skips the finished parts. No prediction is gathered in the client: memory per worker is
one partition's table plus one batch of images. A killed worker costs only the partitions it was running
(Dask reruns them elsewhere); a part is written once under a fixed name, so no galaxy appears twice.
:func:`read_predictions` concatenates the parts in catalogue order.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from morphomass.errors import BundleError, InputDataError
from morphomass.predict.bundle import Bundle, load_bundle
from morphomass.predict.inputs import IMAGE_SUFFIXES, read_catalog, read_stars
from morphomass.workdir import StageResult, atomic_path, file_sha256, write_json_atomic

__all__ = [
    "PARTITIONS_NAME",
    "cached_bundle",
    "part_name",
    "predict_distributed",
    "read_predictions",
]

logger = logging.getLogger(__name__)

#: The record of a partitioned prediction folder: partitioning, fingerprint, finished parts.
PARTITIONS_NAME = "_partitions.json"
_FORMAT = "morphomass-partitioned-predictions"
_FORMAT_VERSION = 1

#: Bundles loaded in this (worker) process: (resolved path, bundle_sha256) -> Bundle.
_BUNDLES: dict[tuple[str, str], Bundle] = {}
_BUNDLES_LOCK = threading.Lock()


def part_name(index: int) -> str:
    """File name of partition ``index``: ``part-00000.parquet``."""
    return f"part-{index:05d}.parquet"


def cached_bundle(path: str | Path, bundle_sha256: str) -> Bundle:
    """Return the bundle at ``path``, loaded at most once per process for each ``bundle_sha256``.

    Parameters
    ----------
    path : str or Path
        The bundle (as for :func:`~morphomass.predict.bundle.load_bundle`).
    bundle_sha256 : str
        The ``bundle_sha256`` the caller loaded; the bundle loaded here must carry the same.

    Raises
    ------
    BundleError
        If the bundle cannot be loaded, or it changed since the caller loaded it.
    """
    key = (str(Path(path).resolve()), bundle_sha256)
    with _BUNDLES_LOCK:
        bundle = _BUNDLES.get(key)
        if bundle is None:
            bundle = load_bundle(path)
            found = bundle.manifest.get("bundle_sha256")
            if found != bundle_sha256:
                msg = (
                    f"bundle {path} changed while predicting: bundle_sha256 {str(found)[:12]}... instead of "
                    f"{bundle_sha256[:12]}...; refusing to mix two bundles"
                )
                raise BundleError(msg)
            _BUNDLES[key] = bundle
        return bundle


def _image_paths(images: str | Path, objids: np.ndarray, band: str) -> dict[int, Path]:
    """Each galaxy's image in a folder (``<objid>.fits`` or ``<band>/<objid>.fits``), by stat, not by listing.

    Listing a folder of 10^8 images for each partition would cost more than the predictions; a galaxy whose
    image is absent maps to the first candidate name, which does not exist (flag ``missing_image``).
    """
    folder = Path(images)
    if (folder / band).is_dir():
        folder = folder / band
    paths = {}
    for objid in objids:
        names = [folder / f"{int(objid)}{suffix}" for suffix in IMAGE_SUFFIXES]
        paths[int(objid)] = next((p for p in names if p.is_file()), names[0])
    return paths


def _predict_part(
    index: int,
    rows: pd.DataFrame,
    *,
    bundle_path: str,
    bundle_sha256: str,
    images: str | Mapping[int, str],
    stars: pd.DataFrame | None,
    out_dir: str,
    options: Mapping[str, Any],
) -> dict[str, Any]:
    """Predict one partition on a worker and write its Parquet file atomically; return its record."""
    start = time.process_time()
    bundle = cached_bundle(bundle_path, bundle_sha256)
    if isinstance(images, Mapping):
        image_map: Mapping[int, Any] = images
    else:
        band = str(bundle.manifest["preprocessing"]["band"])
        image_map = _image_paths(images, rows["objid"].to_numpy(), band)
    table = bundle.predict(image_map, rows, stars=stars, **options)
    path = Path(out_dir) / part_name(index)
    with atomic_path(path) as tmp:
        table.to_parquet(tmp, index=False)
    flags = table["flags"].str.split(";").explode()
    return {
        "index": index,
        "rows": len(table),
        "sha256": file_sha256(path),
        "predicted": int((table["model"] != "").sum()),
        "by_model": {
            str(k): int(v) for k, v in table.loc[table["model"] != "", "model"].value_counts().items()
        },
        "flags": {str(k): int(v) for k, v in flags[flags != ""].value_counts().items()},
        "cpu_seconds": time.process_time() - start,
    }


def _catalog_sha256(table: pd.DataFrame) -> str:
    """SHA-256 of a checked catalogue's columns and values (row order included)."""
    digest = hashlib.sha256(json.dumps(list(table.columns)).encode())
    digest.update(pd.util.hash_pandas_object(table, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def _fingerprint(table: pd.DataFrame, partition_size: int, bundle_sha256: str, options: Mapping[str, Any]):
    return {
        "format": _FORMAT,
        "format_version": _FORMAT_VERSION,
        "catalog_sha256": _catalog_sha256(table),
        "galaxies": len(table),
        "partition_size": partition_size,
        "partitions": -(-len(table) // partition_size),
        "bundle_sha256": bundle_sha256,
        "options": {k: options[k] for k in sorted(options) if k not in ("batch_size", "device", "progress")},
    }


def _read_record(out_dir: Path) -> dict[str, Any] | None:
    path = out_dir / PARTITIONS_NAME
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        msg = f"{path} cannot be read as JSON ({err}); remove the folder or choose another"
        raise InputDataError(msg) from err
    if (
        not isinstance(record, dict)
        or record.get("format") != _FORMAT
        or not isinstance(record.get("parts"), dict)
    ):
        msg = f"{path}: not a {_FORMAT} record; remove the folder or choose another"
        raise InputDataError(msg)
    return record


def _finished(out_dir: Path, record: Mapping[str, Any]) -> dict[int, dict[str, Any]]:
    """Return the parts of ``record`` whose file is there with the recorded SHA-256."""
    done = {}
    for key, part in record["parts"].items():
        path = out_dir / part_name(int(key))
        if path.is_file() and file_sha256(path) == part.get("sha256"):
            done[int(key)] = part
    return done


@dataclass
class _Totals:
    predicted: int = 0
    cpu_seconds: float = 0.0

    def __post_init__(self) -> None:
        self.by_model: dict[str, int] = {}
        self.flags: dict[str, int] = {}

    def add(self, part: Mapping[str, Any]) -> None:
        self.predicted += int(part.get("predicted", 0))
        self.cpu_seconds += float(part.get("cpu_seconds", 0.0))
        for name, counts in (("by_model", self.by_model), ("flags", self.flags)):
            for key, value in part.get(name, {}).items():
                counts[key] = counts.get(key, 0) + int(value)


@contextlib.contextmanager
def _client(client: Any, n_workers: int | None) -> Iterator[Any]:
    """Yield the caller's client, a client of a scheduler address, or a LocalCluster of ``n_workers``."""
    from dask.distributed import Client, LocalCluster

    if client is not None and not isinstance(client, str):
        yield client
        return
    if isinstance(client, str):
        try:
            own = Client(client)
        except (OSError, TimeoutError) as err:
            msg = f"cannot reach the Dask scheduler at {client!r} ({type(err).__name__}: {err})"
            raise InputDataError(" ".join(msg.split())) from err
        with own:
            yield own
        return
    if n_workers is None or isinstance(n_workers, bool) or not isinstance(n_workers, int) or n_workers < 1:
        msg = f"n_workers must be a positive integer when no client or scheduler is given, got {n_workers!r}"
        raise InputDataError(msg)
    with (
        LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            # no dashboard, and the scheduler's HTTP endpoints on a free port: a second cluster on the same
            # machine (another run) then starts without the "port 8787 is already in use" warning
            scheduler_kwargs={"dashboard_address": ":0"},
            silence_logs=logging.WARNING,
        ) as cluster,
        Client(cluster) as own,
    ):
        yield own


def predict_distributed(
    bundle_path: str | Path,
    images: str | Path | Mapping[int, str | Path],
    catalog: str | Path | pd.DataFrame,
    *,
    out_dir: str | Path,
    client: Any = None,
    n_workers: int | None = None,
    partition_size: int = 1000,
    stars: str | Path | pd.DataFrame | None = None,
    model: str = "auto",
    batch_size: int = 64,
    device: str = "auto",
    recut: bool = False,
    retries: int = 2,
    max_in_flight: int | None = None,
    resume: bool = True,
) -> StageResult:
    """Predict a catalogue on Dask, writing one Parquet file per partition of ``partition_size`` galaxies.

    Parameters
    ----------
    bundle_path : str or Path
        The bundle (``bundle.json``, its folder or a work directory), on a file system every worker sees.
    images : str, Path or mapping
        A folder of FITS images ``<objid>.fits`` (or ``<band>/<objid>.fits``) seen by every worker, or a
        mapping objid -> path.
    catalog : str, Path or pandas.DataFrame
        The catalogue, as for :meth:`~morphomass.predict.bundle.Bundle.predict`; read and checked here.
    out_dir : str or Path
        Folder of the output: ``part-<index:05d>.parquet`` (the columns of
        :func:`~morphomass.predict.predictor.output_dtypes`, the partition's rows in catalogue order) and
        ``_partitions.json``.
    client : dask.distributed.Client, str or None
        A client, the address of a running scheduler, or None for a LocalCluster of ``n_workers`` worker
        processes with one thread each.
    n_workers : int, optional
        Worker processes of the LocalCluster (only without ``client``).
    partition_size : int
        Galaxies per partition (one task, one file).
    stars : str, Path or pandas.DataFrame, optional
        Star catalogue for the star subtraction; sent once to every worker.
    model, batch_size, device, recut
        As for :meth:`~morphomass.predict.bundle.Bundle.predict`.
    retries : int
        Times Dask reruns a partition whose task raised (a partition whose worker died is rerun by Dask's
        scheduler in any case).
    max_in_flight : int, optional
        Partitions submitted at a time (default: 4 per worker thread), so the scheduler holds a bounded part
        of the catalogue.
    resume : bool
        Keep the finished parts of an earlier run into ``out_dir`` (the same catalogue, partitioning, bundle
        and options); False removes them first.

    Returns
    -------
    StageResult
        Stage ``predict``; outputs ``[out_dir]``; the summary counts the galaxies, those predicted per model,
        each flag, the partitions written and skipped.

    Raises
    ------
    InputDataError
        If ``partition_size`` is not a positive integer, the catalogue is unusable, or ``out_dir`` holds the
        output of another catalogue, partitioning, bundle or options (or is a file).
    BundleError
        If the bundle is missing, tampered with or changes during the run.
    """
    start = time.perf_counter()
    if isinstance(partition_size, bool) or not isinstance(partition_size, int) or partition_size < 1:
        msg = f"partition_size must be a positive integer (galaxies), got {partition_size!r}"
        raise InputDataError(msg)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        msg = f"{out_dir}: expected a folder for the partitioned predictions, found a file"
        raise InputDataError(msg)
    bundle = load_bundle(bundle_path)
    bundle_sha256 = str(bundle.manifest["bundle_sha256"])
    if model != "auto" and model not in bundle.model_keys:
        msg = f"model must be 'auto' or one of the bundle's models {bundle.model_keys}, got {model!r}"
        raise InputDataError(msg)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        msg = f"batch_size must be at least 1, got {batch_size!r}"
        raise InputDataError(msg)
    image_map = None
    if isinstance(images, Mapping):
        image_map = {int(k): str(v) for k, v in images.items()}
    elif not Path(images).is_dir():
        msg = f"{images}: expected a folder of FITS images (<objid>.fits or <band>/<objid>.fits)"
        raise InputDataError(msg)
    table = read_catalog(catalog)
    options = {"model": model, "batch_size": batch_size, "device": device, "recut": recut}
    fingerprint = _fingerprint(table, partition_size, bundle_sha256, options)
    record = _read_record(out_dir) if resume else None
    if record is not None:
        different = [k for k, v in fingerprint.items() if record.get(k) != v]
        if different:
            msg = (
                f"{out_dir / PARTITIONS_NAME} was made from another {', '.join(different)}; refusing to "
                "resume into it (choose another folder, or pass resume=False / --force to redo it)"
            )
            raise InputDataError(msg)
        done = _finished(out_dir, record)
    else:
        done = {}
        for old in out_dir.glob("part-*.parquet"):
            old.unlink()
        (out_dir / PARTITIONS_NAME).unlink(missing_ok=True)
    record = {**fingerprint, "parts": {str(k): v for k, v in sorted(done.items())}}
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / PARTITIONS_NAME, record)
    totals = _Totals()
    for part in done.values():
        totals.add(part)
    todo = [i for i in range(fingerprint["partitions"]) if i not in done]
    star_table = None if stars is None else read_stars(stars)
    recorder = _Recorder(out_dir / PARTITIONS_NAME, record, totals)
    if todo:
        try:
            _run_parts(
                todo,
                table,
                partition_size,
                client=client,
                n_workers=n_workers,
                retries=retries,
                max_in_flight=max_in_flight,
                on_done=recorder.add,
                images=image_map if image_map is not None else str(Path(images).resolve()),
                task_options={
                    "bundle_path": str(Path(bundle_path).resolve()),
                    "bundle_sha256": bundle_sha256,
                    "out_dir": str(out_dir.resolve()),
                    "options": options,
                },
                stars=star_table,
            )
        finally:
            recorder.write()
    logger.info("predict: %d partitions written, %d already finished, in %s", len(todo), len(done), out_dir)
    summary = {
        "galaxies": len(table),
        "predicted": totals.predicted,
        "by_model": totals.by_model,
        "flags": totals.flags,
        "partitions": fingerprint["partitions"],
        "partitions_written": len(todo),
        "partitions_skipped": len(done),
    }
    return StageResult(
        stage="predict",
        outputs=[str(out_dir)],
        seconds=time.perf_counter() - start,
        summary=summary,
        cpu_seconds=totals.cpu_seconds,
    )


class _Recorder:
    """Keep ``_partitions.json`` up to date: rewritten at most every ``every_s`` seconds, and at the end.

    Rewriting it after every part would cost O(partitions^2) for a large catalogue; a part finished but not
    yet recorded when the client dies is redone by the next run (its file is replaced atomically).
    """

    def __init__(self, path: Path, record: dict[str, Any], totals: _Totals, *, every_s: float = 10.0) -> None:
        self.path, self.record, self.totals, self.every_s = path, record, totals, every_s
        self.written = time.monotonic()

    def add(self, part: Mapping[str, Any]) -> None:
        self.record["parts"][str(part["index"])] = {k: v for k, v in part.items() if k != "index"}
        self.totals.add(part)
        if time.monotonic() - self.written >= self.every_s:
            self.write()

    def write(self) -> None:
        parts = dict(sorted(self.record["parts"].items(), key=lambda kv: int(kv[0])))
        write_json_atomic(self.path, {**self.record, "parts": parts})
        self.written = time.monotonic()


def _run_parts(
    todo: list[int],
    table: pd.DataFrame,
    partition_size: int,
    *,
    client: Any,
    n_workers: int | None,
    retries: int,
    max_in_flight: int | None,
    on_done: Any,
    images: str | Mapping[int, str],
    task_options: dict[str, Any],
    stars: pd.DataFrame | None,
) -> None:
    """Submit the partitions a window at a time and record each as it finishes."""
    from dask.distributed import as_completed

    with _client(client, n_workers) as dask_client:
        if max_in_flight is None:
            threads = sum(dask_client.nthreads().values()) or 1
            max_in_flight = 4 * threads
        star_future = None if stars is None else dask_client.scatter(stars, broadcast=True)
        pending = iter(todo)

        def submit(index: int) -> Any:
            rows = table.iloc[index * partition_size : (index + 1) * partition_size]
            if isinstance(images, Mapping):  # only this partition's paths travel with its task
                part_images: str | dict[int, str] = {
                    o: images[o] for o in rows["objid"].tolist() if o in images
                }
            else:
                part_images = images
            return dask_client.submit(
                _predict_part,
                index,
                rows,
                images=part_images,
                stars=star_future,
                retries=retries,
                pure=False,
                key=f"morphomass-predict-part-{index:05d}-{task_options['bundle_sha256'][:8]}",
                **task_options,
            )

        running = as_completed(
            [submit(i) for _, i in zip(range(max(1, max_in_flight)), pending, strict=False)]
        )
        for future in running:
            on_done(future.result())
            future.release()
            following = next(pending, None)
            if following is not None:
                running.add(submit(following))


def read_predictions(out_dir: str | Path) -> pd.DataFrame:
    """Concatenate the parts of a finished :func:`predict_distributed` folder, in catalogue order.

    Raises
    ------
    InputDataError
        If ``out_dir`` has no ``_partitions.json``, or a part is missing, unfinished or modified.
    """
    out_dir = Path(out_dir)
    record = _read_record(out_dir)
    if record is None:
        msg = f"{out_dir}: no {PARTITIONS_NAME}; not a partitioned prediction folder"
        raise InputDataError(msg)
    done = _finished(out_dir, record)
    missing = [i for i in range(int(record["partitions"])) if i not in done]
    if missing:
        msg = (
            f"{out_dir}: {len(missing)} of {record['partitions']} partitions are missing or modified "
            f"(first {part_name(missing[0])}); rerun the prediction to finish them"
        )
        raise InputDataError(msg)
    parts = [pd.read_parquet(out_dir / part_name(i)) for i in range(int(record["partitions"]))]
    return pd.concat(parts, ignore_index=True)
