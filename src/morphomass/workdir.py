"""The work directory: its paths, atomic writes and the manifest that makes a rerun resume.

Layout (DESIGN §2)::

    raw/  sample.parquet  images.zarr  features/  models/  results/{figures,tables}/  manifest.json

Every output is written under a temporary hidden name in the same folder and renamed into place, so an
interrupted write never leaves a partial file under the real name. ``manifest.json`` records, per stage, the
hash of the configuration sections the stage depends on, the package version, the input hashes and the
outputs; a stage whose record still matches is skipped by ``morphomass run``. :class:`WorkDir` is the one
source of every artefact's path.

Resume verifies what it skips: every output a stage recorded carries a fingerprint
(:func:`output_fingerprint`: relative file names, sizes, modification times and the SHA-256 of the small
files), so an output deleted, truncated or rewritten since is noticed and its stage redone
(:func:`stage_staleness` says why). A stage that starts records the attempt beside its last good record,
which a failed attempt leaves in place.

One writer at a time: :func:`workdir_lock` holds an OS file lock on ``.morphomass.lock`` (``filelock``) and
writes who holds it (pid, host, start time, command) to ``.morphomass.lock.json`` for the message another
process gets. The OS releases the lock when its holder dies, so a lock left by a dead process is taken over.
In a distributed run started by torchrun or srun only rank 0 takes it; the other ranks of train-cnn write
nothing into the work directory (:mod:`morphomass.pipeline`).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import logging
import os
import secrets
import socket
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal, TextIO, overload

import filelock

from morphomass.errors import WorkdirError, WorkdirLockedError

__all__ = [
    "StageResult",
    "WorkDir",
    "atomic_path",
    "atomic_write",
    "cores_busy",
    "file_sha256",
    "load_manifest",
    "output_fingerprint",
    "record_attempt",
    "record_stage",
    "stage_is_current",
    "stage_staleness",
    "tree_sha256",
    "write_bytes_atomic",
    "write_json_atomic",
    "workdir_lock",
    "write_text_atomic",
]

logger = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
TEMP_PREFIX = ".tmp-"
LOCK_NAME = ".morphomass.lock"
LOCK_INFO_NAME = ".morphomass.lock.json"
#: A recorded output file up to this size is fingerprinted with its SHA-256 as well as its size and mtime.
SMALL_FILE_BYTES = 4 << 20
#: A file inside a recorded output folder up to this size is, too (metadata, JSON cards, small tables).
SMALL_MEMBER_BYTES = 64 << 10


@dataclass(frozen=True)
class WorkDir:
    """Paths of one work directory (nothing is created until :meth:`ensure`)."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def raw(self) -> Path:
        """``raw/``: the survey as distributed (mock or fetch)."""
        return self.root / "raw"

    @property
    def raw_images(self) -> Path:
        """``raw/images/``: one FITS image per galaxy and band, ``<band>/<objid>.fits``."""
        return self.raw / "images"

    def raw_image(self, band: str, objid: int) -> Path:
        """Path of the raw FITS image of one galaxy in one band."""
        return self.raw_images / band / f"{int(objid)}.fits"

    @property
    def gswlc_dir(self) -> Path:
        """``raw/gswlc/``: the GSWLC-2 catalogues."""
        return self.raw / "gswlc"

    @property
    def hyperleda(self) -> Path:
        """``raw/hyperleda.csv``: the HyperLeda export."""
        return self.raw / "hyperleda.csv"

    @property
    def gz2(self) -> Path:
        """``raw/gz2_hart16.csv``: the Galaxy Zoo 2 table of Hart et al. (2016)."""
        return self.raw / "gz2_hart16.csv"

    @property
    def photometry(self) -> Path:
        """``raw/sdss_photometry.csv``: SDSS model magnitudes."""
        return self.raw / "sdss_photometry.csv"

    @property
    def stars(self) -> Path:
        """``raw/stars.csv``: the point-source catalogue for the star subtraction."""
        return self.raw / "stars.csv"

    @property
    def mock_truth(self) -> Path:
        """``mock_truth.parquet``: the mock survey's true parameters (mock)."""
        return self.root / "mock_truth.parquet"

    @property
    def sample(self) -> Path:
        """``sample.parquet``: one row per selected galaxy (catalog)."""
        return self.root / "sample.parquet"

    @property
    def images_zarr(self) -> Path:
        """``images.zarr``: the scaled, resized images per input size (preprocess)."""
        return self.root / "images.zarr"

    @property
    def features(self) -> Path:
        """``features/``: the feature tables."""
        return self.root / "features"

    @property
    def models(self) -> Path:
        """``models/``: the networks, the GBMs and the prediction bundle."""
        return self.root / "models"

    @property
    def results(self) -> Path:
        """``results/``: metrics, figures, tables and the report."""
        return self.root / "results"

    @property
    def figures(self) -> Path:
        """``results/figures/``."""
        return self.results / "figures"

    @property
    def tables(self) -> Path:
        """``results/tables/``."""
        return self.results / "tables"

    @property
    def manifest(self) -> Path:
        """``manifest.json``: what each stage ran with and wrote."""
        return self.root / MANIFEST_NAME

    # ---------------------------------------------------------------- artefacts that pass between stages
    @property
    def photometric_features(self) -> Path:
        """``features/photometric.parquet``: the F1-F3 features (preprocess)."""
        return self.features / "photometric.parquet"

    @property
    def cnn_features(self) -> Path:
        """``features/cnn.parquet``: the networks' outputs and trunk features (extract)."""
        return self.features / "cnn.parquet"

    @property
    def cnn_models(self) -> Path:
        """``models/cnn/``: one ``<net>.safetensors`` + ``<net>.json`` per network (train-cnn)."""
        return self.models / "cnn"

    @property
    def gbm_models(self) -> Path:
        """``models/gbm/``: one LightGBM text model + JSON card per experiment (train-gbm)."""
        return self.models / "gbm"

    @property
    def gbm_predictions(self) -> Path:
        """``models/gbm/predictions.parquet``: every experiment's test predictions (train-gbm)."""
        return self.gbm_models / "predictions.parquet"

    @property
    def gbm_importance(self) -> Path:
        """``models/gbm/importance.json``: permutation importances (train-gbm)."""
        return self.gbm_models / "importance.json"

    @property
    def gbm_cv_search(self) -> Path:
        """``models/gbm/cv_search.json``: the cross-validated GBM parameters per kind of model (train-gbm)."""
        return self.gbm_models / "cv_search.json"

    @property
    def gbm_intervals(self) -> Path:
        """``models/gbm/intervals.json``: experiment -> fingerprint of its interval calibration."""
        return self.gbm_models / "intervals.json"

    def gbm_interval_calibration(self, experiment: str) -> Path:
        """``models/gbm/intervals_<experiment>.json``: an experiment's interval calibration (train-gbm)."""
        return self.gbm_models / f"intervals_{experiment}.json"

    @property
    def bundle_manifest(self) -> Path:
        """``models/bundle.json``: the manifest of the prediction bundle."""
        return self.models / "bundle.json"

    @property
    def sample_summary(self) -> Path:
        """``results/tables/sample_summary.csv``: sample and split sizes (catalog)."""
        return self.tables / "sample_summary.csv"

    @property
    def chi2_rejected(self) -> Path:
        """``results/tables/sample_chi2_rejected.parquet``: the galaxies cut by chi2 (catalog)."""
        return self.tables / "sample_chi2_rejected.parquet"

    @property
    def preprocess_failures(self) -> Path:
        """``results/tables/preprocess_failures.csv``: the galaxies preprocessing could not use, and why."""
        return self.tables / "preprocess_failures.csv"

    @property
    def preprocess_galaxies(self) -> Path:
        """``results/tables/preprocess_galaxies.csv``: per-galaxy preprocessing diagnostics."""
        return self.tables / "preprocess_galaxies.csv"

    @property
    def fetch_report(self) -> Path:
        """``fetch_report.json``: what the real-data download could not get (fetch)."""
        return self.root / "fetch_report.json"

    @property
    def metrics(self) -> Path:
        """``results/metrics.json`` (DESIGN §4)."""
        return self.results / "metrics.json"

    @property
    def report(self) -> Path:
        """``results/report.html``: the self-contained report."""
        return self.results / "report.html"

    def relative(self, path: str | Path) -> str:
        """Return ``path`` relative to the root, in POSIX form (how the manifest and the stages name it).

        Raises
        ------
        WorkdirError
            If ``path`` is not inside this work directory.
        """
        try:
            return Path(path).relative_to(self.root).as_posix()
        except ValueError:
            msg = f"{path} is not inside the work directory {self.root}"
            raise WorkdirError(msg) from None

    def ensure(self) -> WorkDir:
        """Create the root and the fixed sub-folders; return self."""
        for path in (self.root, self.raw, self.features, self.models, self.figures, self.tables):
            path.mkdir(parents=True, exist_ok=True)
        return self

    def raw_is_empty(self) -> bool:
        """Tell whether ``raw/`` holds no file (then ``morphomass run`` makes the mock survey first)."""
        return not self.raw.exists() or not any(p.is_file() for p in self.raw.rglob("*"))

    @property
    def encoder_models(self) -> Path:
        """``models/encoders/``: per encoder source its weights, PCA and card (extract; cnn.sources)."""
        return self.models / "encoders"

    def encoder_card(self, name: str) -> Path:
        """``models/encoders/<name>.json``: the card of encoder source ``name`` (extract)."""
        return self.encoder_models / f"{name}.json"


@dataclass
class StageResult:
    """What a ``run_<stage>`` function returns.

    Attributes
    ----------
    stage : str
        Stage name, as in the CLI (``"mock"``, ``"catalog"``, ...).
    outputs : list of str
        Output paths relative to the work directory (recorded in the manifest).
    seconds : float
        Wall-clock duration of the stage.
    cpu_seconds : float
        CPU time of the stage (user + system, of this process and of the child processes it waited for).
    summary : dict
        A few key numbers for the final summary and the logs (counts, fractions), JSON-serialisable.
    skipped : bool
        True when the manifest showed the stage was already done and nothing was run.
    """

    stage: str
    outputs: list[str]
    seconds: float = 0.0
    summary: dict[str, Any] = field(default_factory=dict)
    skipped: bool = False
    cpu_seconds: float = 0.0


def _temp_name(path: Path) -> Path:
    return path.with_name(f"{TEMP_PREFIX}{path.name}.{os.getpid()}.{secrets.token_hex(4)}")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only if the block succeeds.

    Use it with writers that want a file name (``astropy.io.fits.writeto``, ``DataFrame.to_parquet``, a zarr
    store). A temporary directory is renamed the same way. On any exception the temporary is removed and
    ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(path)
    try:
        yield tmp
        if not tmp.exists():
            msg = f"nothing was written to the temporary file for {path}"
            raise WorkdirError(msg)
        if tmp.is_dir() and path.is_dir():
            _remove(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            _remove(tmp)


def _remove(path: Path) -> None:
    if path.is_dir():
        for child in sorted(path.rglob("*"), reverse=True):
            child.rmdir() if child.is_dir() else child.unlink()
        path.rmdir()
    else:
        path.unlink()


@overload
def atomic_write(
    path: str | Path, mode: Literal["wb"] = ...
) -> contextlib.AbstractContextManager[BinaryIO]: ...
@overload
def atomic_write(path: str | Path, mode: Literal["w"]) -> contextlib.AbstractContextManager[TextIO]: ...


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "wb") -> Iterator[Any]:
    r"""Open a temporary file for writing; on success flush, fsync and rename it onto ``path``.

    Parameters
    ----------
    path : str or Path
        Final name.
    mode : {'wb', 'w'}
        Binary or text (UTF-8, ``\\n`` line endings).
    """
    if mode not in ("wb", "w"):
        msg = f"atomic_write mode must be 'wb' or 'w', got {mode!r}"
        raise ValueError(msg)
    with atomic_path(path) as tmp:
        kwargs = {"encoding": "utf-8", "newline": "\n"} if mode == "w" else {}
        with open(tmp, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_write(path, "wb") as fh:
        fh.write(data)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_write(path, "w") as fh:
        fh.write(text)


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted JSON to ``path`` atomically."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def file_sha256(path: str | Path, *, chunk_bytes: int = 1 << 20) -> str:
    """SHA-256 (hex) of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def tree_sha256(path: str | Path) -> str:
    """Hash a file, or a directory's relative file names and contents (hidden files skipped): SHA-256 hex."""
    path = Path(path)
    if path.is_file():
        return file_sha256(path)
    if not path.is_dir():
        msg = f"cannot hash {path}: it does not exist"
        raise WorkdirError(msg)
    digest = hashlib.sha256()
    for child in sorted(p for p in path.rglob("*") if p.is_file()):
        rel = child.relative_to(path)
        if any(part.startswith(".") for part in rel.parts):
            continue
        digest.update(str(rel.as_posix()).encode() + b"\0" + file_sha256(child).encode() + b"\n")
    return digest.hexdigest()


def cores_busy(cpu_seconds: float, wall_seconds: float) -> float:
    """Return the average number of cores a stage kept busy: its CPU time over its wall time (2 decimals)."""
    return round(cpu_seconds / wall_seconds, 2) if wall_seconds > 0 else 0.0


#: Types of the known fields of a manifest's stage record (anything else is kept as it is).
_RECORD_FIELDS: dict[str, tuple[type, ...]] = {
    "config_hash": (str,),
    "inputs": (dict,),
    "outputs": (list,),
    "output_fingerprints": (dict,),
    "seconds": (int, float),
    "cpu_seconds": (int, float),
    "cores_busy": (int, float),
    "version": (str,),
    "finished_utc": (str,),
    "summary": (dict,),
    "attempt": (dict,),
}


def _check_record(path: Path, stage: str, record: Any) -> None:
    """Raise WorkdirError naming the field if one stage record of the manifest has the wrong form."""
    where = f"{path}: stages.{stage}"
    advice = "remove that entry (or the file) to redo the stage"
    if not isinstance(record, dict):
        msg = f"{where}: expected a JSON object, got {type(record).__name__}; {advice}"
        raise WorkdirError(msg)
    for key, types in _RECORD_FIELDS.items():
        value = record.get(key)
        if value is not None and (not isinstance(value, types) or isinstance(value, bool)):
            expected = " or ".join(t.__name__ for t in types)
            msg = f"{where}.{key}: expected {expected}, got {type(value).__name__}; {advice}"
            raise WorkdirError(msg)
    for rel in record.get("outputs") or []:
        if not isinstance(rel, str) or not rel or Path(rel).is_absolute() or ".." in Path(rel).parts:
            msg = f"{where}.outputs: expected paths inside the work directory, got {rel!r}; {advice}"
            raise WorkdirError(msg)
    for rel, digest in (record.get("inputs") or {}).items():
        if not isinstance(digest, str):
            msg = f"{where}.inputs.{rel}: expected a SHA-256 string, got {type(digest).__name__}; {advice}"
            raise WorkdirError(msg)


def load_manifest(workdir: WorkDir) -> dict[str, Any]:
    """Read ``manifest.json``; an absent manifest is an empty one.

    Raises
    ------
    WorkdirError
        If the manifest exists but is not UTF-8 JSON holding an object with a ``stages`` mapping whose records
        have the recorded fields' types.
    """
    path = workdir.manifest
    if not path.exists():
        return {"stages": {}}
    advice = "remove it to start the pipeline afresh"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        msg = f"{path} is not UTF-8 text (byte {err.start}: {err.reason}); {advice}"
        raise WorkdirError(msg) from err
    except json.JSONDecodeError as err:
        msg = f"{path} is not valid JSON ({err}); {advice}"
        raise WorkdirError(msg) from err
    except RecursionError as err:
        msg = f"{path} is nested too deeply to be a manifest; {advice}"
        raise WorkdirError(msg) from err
    if not isinstance(manifest, dict) or not isinstance(manifest.get("stages"), dict):
        msg = f"{path} has no 'stages' mapping; {advice}"
        raise WorkdirError(msg)
    for stage, record in manifest["stages"].items():
        _check_record(path, stage, record)
    return manifest


# ---------------------------------------------------------------------------------- output fingerprints
def _walk_files(path: Path) -> list[tuple[str, Path]]:
    """List a folder's files (temporary ``.tmp-`` ones and their contents left out): (relative name, path)."""
    files = []
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(TEMP_PREFIX))
        for name in sorted(filenames):
            if not name.startswith(TEMP_PREFIX):
                child = Path(dirpath) / name
                files.append((child.relative_to(path).as_posix(), child))
    return files


def output_fingerprint(path: str | Path) -> dict[str, Any]:
    """Fingerprint a stage's output, a file or a folder, cheaply but soundly.

    The fingerprint hashes, per file, its relative name, size (bytes) and modification time (ns), and the
    SHA-256 of its content when it is small (:data:`SMALL_FILE_BYTES` for an output file,
    :data:`SMALL_MEMBER_BYTES` inside an output folder). A deleted, added, truncated or rewritten file changes
    it; a copy that keeps the modification times (``cp -a``, ``rsync -a``) does not.

    Parameters
    ----------
    path : str or Path
        An output file or folder.

    Returns
    -------
    dict
        ``{"sha256": hex, "files": int, "bytes": int}``.

    Raises
    ------
    WorkdirError
        If ``path`` does not exist.
    """
    path = Path(path)
    if path.is_file():
        entries, limit = [("", path)], SMALL_FILE_BYTES
    elif path.is_dir():
        entries, limit = _walk_files(path), SMALL_MEMBER_BYTES
    else:
        msg = f"cannot fingerprint {path}: it does not exist"
        raise WorkdirError(msg)
    digest, total = hashlib.sha256(), 0
    for rel, child in entries:
        stat = child.stat()
        content = file_sha256(child) if stat.st_size <= limit else "-"
        digest.update(f"{rel}\0{stat.st_size}\0{stat.st_mtime_ns}\0{content}\n".encode())
        total += stat.st_size
    return {"sha256": digest.hexdigest(), "files": len(entries), "bytes": total}


def _describe(fingerprint: Mapping[str, Any]) -> str:
    return f"{fingerprint.get('files')} file(s), {fingerprint.get('bytes')} bytes"


def _output_change(workdir: WorkDir, record: Mapping[str, Any]) -> str | None:
    """Say which recorded output vanished or changed since it was fingerprinted; None if none did."""
    fingerprints = record.get("output_fingerprints")
    if not fingerprints:
        return "its record has no output fingerprints (an older morphomass wrote it) to verify them by"
    for rel in record.get("outputs") or []:
        path = workdir.root / rel
        if not path.exists():
            return f"output {rel} is missing"
        recorded = fingerprints.get(rel)
        if not isinstance(recorded, dict):
            return f"output {rel} has no recorded fingerprint"
        now = output_fingerprint(path)
        if now["sha256"] != recorded.get("sha256"):
            return (
                f"output {rel} changed since the stage wrote it "
                f"(now {_describe(now)}; recorded {_describe(recorded)})"
            )
    return None


def stage_staleness(workdir: WorkDir, stage: str, config_hash: str, inputs: dict[str, str]) -> str | None:
    """Say why ``stage`` must run; None when it finished with this configuration and these inputs.

    Its recorded outputs must also still be there, unchanged (:func:`output_fingerprint`).

    Parameters
    ----------
    workdir : WorkDir
    stage : str
        Stage name.
    config_hash : str
        Hash of the configuration the stage depends on now.
    inputs : dict
        Input path (relative to the work directory) -> :func:`tree_sha256` now.

    Returns
    -------
    str or None
        The reason, e.g. ``"output images.zarr is missing"``, or None if the stage is up to date.
    """
    record = load_manifest(workdir)["stages"].get(stage)
    if not record or "config_hash" not in record:
        return "it has not finished in this work directory"
    if record["config_hash"] != config_hash:
        return "its configuration changed"
    recorded_inputs = record.get("inputs") or {}
    changed = sorted(
        rel for rel in set(inputs) | set(recorded_inputs) if inputs.get(rel) != recorded_inputs.get(rel)
    )
    if changed:
        return f"its input(s) {', '.join(changed)} changed"
    return _output_change(workdir, record)


def stage_is_current(workdir: WorkDir, stage: str, config_hash: str, inputs: dict[str, str]) -> bool:
    """Tell whether ``stage`` finished with the same configuration and inputs, its outputs unchanged since."""
    return stage_staleness(workdir, stage, config_hash, inputs) is None


def _now_utc() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def record_attempt(workdir: WorkDir, stage: str, *, version: str, error: str | None = None) -> None:
    """Record that ``stage`` started (or, with ``error``, that it failed) beside its last good record.

    The last good record (configuration, inputs, output fingerprints) is kept, so a failed attempt that left
    the outputs as they were does not block an unchanged rerun; one that changed them makes the stage run
    again (its outputs no longer match their fingerprints).

    Parameters
    ----------
    workdir : WorkDir
    stage : str
        Stage name.
    version : str
        Package version of the attempt.
    error : str, optional
        What the failed attempt raised (one line); the attempt's record gets ``failed_utc`` and ``error``.
    """
    manifest = load_manifest(workdir)
    record = manifest["stages"].setdefault(stage, {})
    if error is None:
        record["attempt"] = {"started_utc": _now_utc(), "version": version, "pid": os.getpid()}
    else:
        attempt = record.setdefault("attempt", {"version": version})
        attempt["failed_utc"] = _now_utc()
        attempt["error"] = error
    write_json_atomic(workdir.manifest, manifest)


def record_stage(
    workdir: WorkDir,
    stage: str,
    *,
    config_hash: str,
    inputs: dict[str, str],
    outputs: list[str],
    seconds: float,
    version: str,
    cpu_seconds: float | None = None,
    summary: dict[str, Any] | None = None,
) -> None:
    """Record a finished stage, with its outputs' fingerprints, in the manifest (atomically).

    The new record replaces the stage's last one, attempt included.

    Parameters
    ----------
    stage : str
        Stage name (``"mock"``, ``"catalog"``, ...).
    config_hash : str
        :func:`morphomass.config.stage_config_hash` of the configuration the stage depends on.
    inputs : dict
        Input path (relative to the work directory) -> :func:`tree_sha256`.
    outputs : list of str
        Output paths relative to the work directory, each fingerprinted (:func:`output_fingerprint`).
    seconds : float
        Wall-clock duration.
    version : str
        Package version that produced the outputs.
    cpu_seconds : float, optional
        CPU time (recorded when given, with ``cores_busy`` = CPU time / wall time).
    summary : dict, optional
        The stage's :attr:`StageResult.summary`, JSON-serialisable (recorded when given).

    Raises
    ------
    WorkdirError
        If an output does not exist.
    """
    outputs = sorted(outputs)
    fingerprints = {rel: output_fingerprint(workdir.root / rel) for rel in outputs}
    manifest = load_manifest(workdir)
    manifest["stages"][stage] = {
        "config_hash": config_hash,
        "inputs": inputs,
        "outputs": outputs,
        "output_fingerprints": fingerprints,
        "seconds": round(seconds, 3),
        "version": version,
        "finished_utc": _now_utc(),
    }
    if cpu_seconds is not None:
        manifest["stages"][stage]["cpu_seconds"] = round(cpu_seconds, 3)
        manifest["stages"][stage]["cores_busy"] = cores_busy(cpu_seconds, seconds)
    if summary is not None:
        manifest["stages"][stage]["summary"] = summary
    write_json_atomic(workdir.manifest, manifest)


# ---------------------------------------------------------------------------------- the work-directory lock
#: Work directories this process holds the lock of, with the nesting depth (the lock is re-entrant).
_HELD: dict[Path, int] = {}


def _read_lock_info(path: Path) -> dict[str, Any]:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}
    return info if isinstance(info, dict) else {}


def _holder(info: Mapping[str, Any]) -> str:
    """Describe the lock holder of ``info`` in words: pid, host, start time and command."""
    if not info.get("pid"):
        return "another process (who is not recorded)"
    host, started = info.get("host", "an unknown host"), info.get("started_utc", "?")
    text = f"pid {info.get('pid')} on {host}, started {started}"
    return text + (f" ({info['command']})" if info.get("command") else "")


def _process_is_alive(pid: Any) -> bool:
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


@contextlib.contextmanager
def workdir_lock(workdir: WorkDir, *, wait: bool = False) -> Iterator[None]:
    """Hold the work directory's lock (one writer at a time) for the block.

    The lock is an OS file lock on ``.morphomass.lock`` (released by the OS if the process dies, so a lock
    left by a dead process is simply taken over); who holds it is written to ``.morphomass.lock.json``. The
    lock is re-entrant within a process.

    Parameters
    ----------
    workdir : WorkDir
    wait : bool
        Wait for the holder to finish instead of raising.

    Raises
    ------
    WorkdirLockedError
        If another process holds the lock and ``wait`` is false; the message names its pid and start time.
    """
    key = workdir.root.resolve()
    if key in _HELD:
        _HELD[key] += 1
        try:
            yield
        finally:
            _HELD[key] -= 1
        return
    workdir.root.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(workdir.root / LOCK_NAME, thread_local=False)
    info_path = workdir.root / LOCK_INFO_NAME
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        holder = _holder(_read_lock_info(info_path))
        if not wait:
            msg = (
                f"work directory {workdir.root} is in use by another morphomass process: {holder}; "
                "wait for it to finish, or pass --wait to run after it"
            )
            raise WorkdirLockedError(msg) from None
        logger.warning("work directory %s is in use by %s; waiting for it to finish", workdir.root, holder)
        lock.acquire()
    try:
        previous = _read_lock_info(info_path)
        if previous.get("pid") and not (
            previous.get("host") == socket.gethostname() and _process_is_alive(previous.get("pid"))
        ):
            logger.info("taking over the lock of %s, which no longer holds it", _holder(previous))
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started_utc": _now_utc(),
            "command": " ".join(["morphomass", *sys.argv[1:]])[:200],
        }
        write_json_atomic(info_path, info)
        _HELD[key] = 1
        try:
            yield
        finally:
            del _HELD[key]
            with contextlib.suppress(OSError):
                info_path.unlink()
    finally:
        lock.release()
