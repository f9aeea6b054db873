"""The work directory: its paths, atomic writes and the manifest that makes a rerun resume.

Layout (DESIGN §2)::

    raw/  sample.parquet  images.zarr  features/  models/  results/{figures,tables}/  manifest.json

Every output is written under a temporary hidden name in the same folder and renamed into place, so an
interrupted write never leaves a partial file under the real name. ``manifest.json`` records, per stage, the
hash of the configuration sections the stage depends on, the package version, the input hashes and the
outputs; a stage whose record still matches is skipped by ``morphomass run``. :class:`WorkDir` is the one
source of every artefact's path.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import logging
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal, TextIO, overload

from morphomass.errors import WorkdirError

__all__ = [
    "StageResult",
    "WorkDir",
    "atomic_path",
    "atomic_write",
    "cores_busy",
    "file_sha256",
    "load_manifest",
    "record_stage",
    "stage_is_current",
    "tree_sha256",
    "write_bytes_atomic",
    "write_json_atomic",
    "write_text_atomic",
]

logger = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
TEMP_PREFIX = ".tmp-"


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


def load_manifest(workdir: WorkDir) -> dict[str, Any]:
    """Read ``manifest.json``; an absent manifest is an empty one.

    Raises
    ------
    WorkdirError
        If the manifest exists but is not a JSON object with a ``stages`` mapping.
    """
    if not workdir.manifest.exists():
        return {"stages": {}}
    try:
        manifest = json.loads(workdir.manifest.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        msg = f"{workdir.manifest} is not valid JSON ({err}); remove it to start the pipeline afresh"
        raise WorkdirError(msg) from err
    if not isinstance(manifest, dict) or not isinstance(manifest.get("stages"), dict):
        msg = f"{workdir.manifest} has no 'stages' mapping; remove it to start the pipeline afresh"
        raise WorkdirError(msg)
    return manifest


def stage_is_current(workdir: WorkDir, stage: str, config_hash: str, inputs: dict[str, str]) -> bool:
    """Tell whether ``stage`` finished with the same configuration and inputs, its outputs still there."""
    record = load_manifest(workdir)["stages"].get(stage)
    if not record or record.get("config_hash") != config_hash or record.get("inputs") != inputs:
        return False
    return all((workdir.root / rel).exists() for rel in record.get("outputs", []))


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
    """Record a finished stage in the manifest (atomically).

    Parameters
    ----------
    stage : str
        Stage name (``"mock"``, ``"catalog"``, ...).
    config_hash : str
        :func:`morphomass.config.stage_config_hash` of the configuration the stage depends on.
    inputs : dict
        Input path (relative to the work directory) -> :func:`tree_sha256`.
    outputs : list of str
        Output paths relative to the work directory.
    seconds : float
        Wall-clock duration.
    version : str
        Package version that produced the outputs.
    cpu_seconds : float, optional
        CPU time (recorded when given, with ``cores_busy`` = CPU time / wall time).
    summary : dict, optional
        The stage's :attr:`StageResult.summary`, JSON-serialisable (recorded when given).
    """
    manifest = load_manifest(workdir)
    manifest["stages"][stage] = {
        "config_hash": config_hash,
        "inputs": inputs,
        "outputs": sorted(outputs),
        "seconds": round(seconds, 3),
        "version": version,
        "finished_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    if cpu_seconds is not None:
        manifest["stages"][stage]["cpu_seconds"] = round(cpu_seconds, 3)
        manifest["stages"][stage]["cores_busy"] = cores_busy(cpu_seconds, seconds)
    if summary is not None:
        manifest["stages"][stage]["summary"] = summary
    write_json_atomic(workdir.manifest, manifest)
