"""The pipeline's stages, their order, and running them with resume (the only module that knows the order).

Every stage is a function ``run_<stage>(config, workdir) -> StageResult`` in its own sub-package (it may also
take a keyword-only ``progress`` flag). :data:`STAGES` names each one's function by a dotted path, the
configuration sections its outputs depend on, and its declared inputs and outputs (paths relative to the work
directory). A stage whose module or function does not exist yet is *not built*: running it raises
:class:`~morphomass.errors.StageNotBuiltError`.

:func:`execute_stage` skips a stage when ``manifest.json`` shows it finished with the same configuration hash
and the same input hashes and its outputs are still there; otherwise it runs the stage, times and records it.
:func:`run_pipeline` makes the mock survey when ``raw/`` is empty, then runs every stage of :data:`RUN_ORDER`
until the first one that is not built.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import importlib
import importlib.util
import inspect
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from morphomass import __version__
from morphomass.config import PipelineConfig, section_hash
from morphomass.errors import StageNotBuiltError, WorkdirError
from morphomass.workdir import (
    StageResult,
    WorkDir,
    load_manifest,
    record_stage,
    stage_is_current,
    tree_sha256,
    write_json_atomic,
)

__all__ = [
    "RUNTIME_FIELDS",
    "RUN_ORDER",
    "STAGES",
    "PipelineSummary",
    "Stage",
    "StageOutcome",
    "execute_predict",
    "execute_stage",
    "is_built",
    "make_mock_preview",
    "resolve_runner",
    "run_pipeline",
    "stage_config_hash",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stage:
    """One pipeline stage.

    Attributes
    ----------
    name : str
        Name of the stage and of its CLI subcommand (``"train-cnn"``).
    target : str
        ``"module:function"`` of its runner (``"morphomass.cnn:run_train_cnn"``).
    sections : tuple of str
        Configuration sections its outputs depend on (hashed into the manifest).
    inputs : tuple of str
        Files or folders it reads, relative to the work directory.
    outputs : tuple of str
        Files or folders it writes, relative to the work directory.
    derived : tuple of str
        Properties of :class:`~morphomass.config.PipelineConfig` its outputs also depend on (hashed too), for
        a dependence on a few fields of another stage's section.
    """

    name: str
    target: str
    sections: tuple[str, ...] = ()
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    derived: tuple[str, ...] = ()

    @property
    def module(self) -> str:
        """Dotted name of the module that holds the runner."""
        return self.target.partition(":")[0]

    @property
    def function(self) -> str:
        """Name of the runner function."""
        return self.target.partition(":")[2]


_STAGE_LIST: tuple[Stage, ...] = (
    Stage("mock", "morphomass.mock:run_mock", ("mock",), (), ("raw",)),
    Stage("fetch", "morphomass.fetch:run_fetch", ("fetch",), (), ("raw",)),
    Stage(
        "catalog", "morphomass.catalog:run_catalog", ("catalog", "cosmology"), ("raw",), ("sample.parquet",)
    ),
    Stage(
        "preprocess",
        "morphomass.preprocess:run_preprocess",
        ("preprocess",),
        ("sample.parquet", "raw/images", "raw/stars.csv"),
        ("images.zarr", "features/photometric.parquet"),
        derived=("image_sizes",),  # the sizes of images.zarr are the networks' input sizes
    ),
    Stage(
        "train-cnn",
        "morphomass.cnn:run_train_cnn",
        ("cnn",),
        ("sample.parquet", "images.zarr"),
        ("models/cnn",),
    ),
    Stage(
        "extract",
        "morphomass.cnn:run_extract",
        ("cnn",),
        ("sample.parquet", "images.zarr", "models/cnn"),
        ("features/cnn.parquet",),
    ),
    Stage(
        "train-gbm",
        "morphomass.gbm:run_train_gbm",
        ("gbm",),
        ("sample.parquet", "features/photometric.parquet", "features/cnn.parquet"),
        ("models/gbm", "models/bundle.json"),
    ),
    Stage(
        "evaluate",
        "morphomass.evaluate:run_evaluate",
        ("evaluate", "gbm"),
        ("sample.parquet", "features/photometric.parquet", "features/cnn.parquet", "models/gbm"),
        ("results/metrics.json", "results/report.html"),
    ),
    Stage("predict", "morphomass.predict:run_predict"),
)

#: Every stage by name (``fetch`` and ``predict`` are not part of ``morphomass run``).
STAGES: dict[str, Stage] = {stage.name: stage for stage in _STAGE_LIST}
#: The stages of ``morphomass run``, in order.
RUN_ORDER: tuple[str, ...] = (
    "mock",
    "catalog",
    "preprocess",
    "train-cnn",
    "extract",
    "train-gbm",
    "evaluate",
)
#: Fields that change how a stage runs (parallelism), not what it writes: left out of its configuration hash.
RUNTIME_FIELDS: dict[str, tuple[str, ...]] = {
    "mock": ("workers",),
    "preprocess": ("workers", "scheduler"),
    "cnn": ("accelerator", "devices", "strategy", "num_nodes", "inference_batch_size"),
    "fetch": (
        "workers",
        "timeout_s",
        "retries",
        "backoff_s",
        "max_backoff_s",
        "requests_per_second",
        "cache_dir",
        "frame_cache_max_gb",
        "max_consecutive_failures",
    ),
}

_MOCK_PREVIEW_TARGET = "morphomass.mock.preview:make_preview"


def _get_stage(name: str) -> Stage:
    try:
        return STAGES[name]
    except KeyError:
        msg = f"unknown stage {name!r}; expected one of {list(STAGES)}"
        raise KeyError(msg) from None


def _not_built(what: str) -> StageNotBuiltError:
    return StageNotBuiltError(f"{what} is not built yet in morphomass {__version__} (see the open issues)")


def _resolve(target: str, what: str) -> Callable[..., Any]:
    module_name, _, function_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        # Only the stage's own module missing means "not built"; a dependency missing inside it is an error.
        if err.name is not None and (module_name == err.name or module_name.startswith(err.name + ".")):
            raise _not_built(what) from err
        raise
    runner = getattr(module, function_name, None)
    if runner is None:
        raise _not_built(what)
    return runner


def resolve_runner(name: str) -> Callable[..., Any]:
    """Import and return the ``run_<stage>`` function of a stage.

    Raises
    ------
    StageNotBuiltError
        If the stage's module or function does not exist in this version.
    """
    stage = _get_stage(name)
    return _resolve(stage.target, f"stage {name!r}")


def is_built(name: str) -> bool:
    """Tell whether the module of a stage exists (found without importing it: no heavy library is loaded)."""
    module_name = _get_stage(name).module
    try:
        return importlib.util.find_spec(module_name) is not None
    except (ImportError, ValueError):
        return False


def stage_config_hash(config: PipelineConfig, name: str) -> str:
    """Hash the configuration sections a stage depends on, with :data:`RUNTIME_FIELDS` at their defaults.

    A stage with ``derived`` properties hashes them together with its sections.
    """
    stage = _get_stage(name)
    neutral = config.model_copy(deep=True)
    for section_name, field_names in RUNTIME_FIELDS.items():
        section = getattr(neutral, section_name)
        for field_name in field_names:
            setattr(
                section,
                field_name,
                type(section).model_fields[field_name].get_default(call_default_factory=True),
            )
    hashed = section_hash(neutral, *stage.sections)
    if not stage.derived:
        return hashed
    derived = {name: getattr(neutral, name) for name in stage.derived}
    canonical = json.dumps({"sections": hashed, "derived": derived}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _producers(path: str) -> list[str]:
    """List the stages whose declared outputs contain ``path`` (``raw/images`` comes with ``raw``)."""
    return [
        s.name for s in _STAGE_LIST if any(path == out or path.startswith(out + "/") for out in s.outputs)
    ]


def _input_hashes(stage: Stage, workdir: WorkDir) -> dict[str, str]:
    hashes = {}
    for rel in stage.inputs:
        path = workdir.root / rel
        if not path.exists() or (path.is_dir() and not any(p.is_file() for p in path.rglob("*"))):
            makers = " or ".join(f"'morphomass {p}'" for p in _producers(rel)) or "an earlier stage"
            msg = (
                f"stage {stage.name!r} needs {rel} in {workdir.root}, which is missing or empty; "
                f"run {makers} first"
            )
            raise WorkdirError(msg)
        hashes[rel] = tree_sha256(path)
    return hashes


def _mark_started(workdir: WorkDir, name: str) -> None:
    """Replace the stage's manifest record by a 'started' one: an interrupted stage is never taken as done."""
    manifest = load_manifest(workdir)
    manifest["stages"][name] = {
        "started_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "version": __version__,
    }
    write_json_atomic(workdir.manifest, manifest)


def _call(runner: Callable[..., Any], *args: Any, progress: bool, **kwargs: Any) -> Any:
    try:
        accepts_progress = "progress" in inspect.signature(runner).parameters
    except (TypeError, ValueError):
        accepts_progress = False
    if accepts_progress:
        kwargs["progress"] = progress
    return runner(*args, **kwargs)


def execute_stage(
    name: str,
    config: PipelineConfig,
    workdir: WorkDir,
    *,
    force: bool = False,
    progress: bool = True,
) -> StageResult:
    """Run one stage unless the manifest shows it is up to date.

    Parameters
    ----------
    name : str
        Stage name (a key of :data:`STAGES`, not ``predict``).
    config : PipelineConfig
    workdir : WorkDir
    force : bool
        Run even if the stage is up to date.
    progress : bool
        Show progress bars (passed to runners that accept it).

    Returns
    -------
    StageResult
        With ``skipped=True`` and the recorded outputs when nothing was run.

    Raises
    ------
    StageNotBuiltError
        If the stage is not implemented in this version.
    WorkdirError
        If a declared input is missing, or the stage did not write a declared output.
    """
    stage = _get_stage(name)
    if name == "predict":
        msg = "predict is not a work-directory stage; use execute_predict"
        raise ValueError(msg)
    runner = resolve_runner(name)
    workdir.ensure()
    config_hash = stage_config_hash(config, name)
    inputs = _input_hashes(stage, workdir)
    if not force and stage_is_current(workdir, name, config_hash, inputs):
        record = load_manifest(workdir)["stages"][name]
        logger.info("%s: up to date (finished %s), skipped", name, record.get("finished_utc", "earlier"))
        return StageResult(stage=name, outputs=list(record.get("outputs", [])), skipped=True)

    logger.info("%s: running", name)
    _mark_started(workdir, name)
    start = time.perf_counter()
    result = _call(runner, config, workdir, progress=progress)
    seconds = time.perf_counter() - start
    if not isinstance(result, StageResult):
        msg = f"stage {name!r} returned {type(result).__name__}, expected StageResult"
        raise TypeError(msg)
    missing = [rel for rel in stage.outputs if not (workdir.root / rel).exists()]
    if missing:
        msg = f"stage {name!r} finished without writing its declared outputs {missing} in {workdir.root}"
        raise WorkdirError(msg)
    result.seconds = seconds
    outputs = sorted(set(result.outputs) | set(stage.outputs))
    record_stage(
        workdir,
        name,
        config_hash=config_hash,
        inputs=inputs,
        outputs=outputs,
        seconds=seconds,
        version=__version__,
    )
    logger.info("%s: done in %.1f s", name, seconds)
    return result


def execute_predict(
    config: PipelineConfig,
    workdir: WorkDir,
    *,
    model_dir: Path,
    images_dir: Path,
    catalog_path: Path,
    out_path: Path,
    stars_path: Path | None = None,
    progress: bool = True,
) -> StageResult:
    """Apply a saved model bundle to new galaxies (``morphomass predict``; no manifest, always runs).

    ``stars_path`` is an optional star catalogue for the star subtraction.

    Raises
    ------
    StageNotBuiltError
        If prediction is not implemented in this version.
    """
    runner = resolve_runner("predict")
    start = time.perf_counter()
    result = _call(
        runner,
        config,
        workdir,
        progress=progress,
        model_dir=Path(model_dir),
        images_dir=Path(images_dir),
        catalog_path=Path(catalog_path),
        out_path=Path(out_path),
        stars_path=None if stars_path is None else Path(stars_path),
    )
    result.seconds = time.perf_counter() - start
    return result


def make_mock_preview(config: PipelineConfig, workdir: WorkDir) -> Path:
    """Write the preview figure of the mock survey and return its path.

    Raises
    ------
    StageNotBuiltError
        If the preview is not implemented in this version.
    """
    make_preview = _resolve(_MOCK_PREVIEW_TARGET, "the mock preview")
    return Path(make_preview(config, workdir))


Status = Literal["ran", "skipped", "not needed", "not built", "not reached"]


@dataclass(frozen=True)
class StageOutcome:
    """What happened to one stage during :func:`run_pipeline`.

    ``status`` is ``"ran"``, ``"skipped"`` (up to date), ``"not needed"`` (the mock when ``raw/`` already
    holds data from elsewhere), ``"not built"`` (not implemented in this version) or ``"not reached"`` (built,
    but an earlier stage is not).
    """

    stage: str
    status: Status
    seconds: float = 0.0
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PipelineSummary:
    """The outcome of every stage of :data:`RUN_ORDER`, in order, and the total wall-clock time in seconds."""

    outcomes: tuple[StageOutcome, ...]
    seconds: float

    def stages(self, status: Status) -> list[str]:
        """Names of the stages with the given status, in pipeline order."""
        return [o.stage for o in self.outcomes if o.status == status]

    @property
    def not_built(self) -> list[str]:
        """Stages not implemented in this version."""
        return self.stages("not built")


def _needs_mock(workdir: WorkDir) -> bool:
    """Tell whether the mock must run: raw/ is empty, or came from an earlier (maybe interrupted) mock run."""
    if workdir.raw_is_empty():
        return True
    stages = load_manifest(workdir)["stages"]
    return "mock" in stages and "fetch" not in stages


def run_pipeline(
    config: PipelineConfig,
    workdir: WorkDir,
    *,
    force: bool = False,
    progress: bool = True,
) -> PipelineSummary:
    """Run the whole pipeline as far as it is built.

    The mock survey is made first when ``raw/`` is empty (or was made by an earlier mock run, so a changed
    mock configuration or an interrupted mock is redone); then every stage of :data:`RUN_ORDER` runs (or is
    skipped when up to date) until the first one that is not built.

    Parameters
    ----------
    config : PipelineConfig
    workdir : WorkDir
    force : bool
        Redo every stage even if up to date.
    progress : bool
        Show progress bars.

    Returns
    -------
    PipelineSummary
    """
    start = time.perf_counter()
    workdir.ensure()
    outcomes: list[StageOutcome] = []
    blocked = False
    for name in RUN_ORDER:
        if blocked:
            outcomes.append(StageOutcome(name, "not reached" if is_built(name) else "not built"))
            continue
        if name == "mock" and not _needs_mock(workdir):
            logger.info("mock: raw/ already holds data, not making the mock survey")
            outcomes.append(StageOutcome(name, "not needed"))
            continue
        try:
            result = execute_stage(name, config, workdir, force=force, progress=progress)
        except StageNotBuiltError as err:
            logger.info("%s", err)
            outcomes.append(StageOutcome(name, "not built"))
            blocked = True
            continue
        outcomes.append(
            StageOutcome(name, "skipped" if result.skipped else "ran", result.seconds, dict(result.summary))
        )
    return PipelineSummary(tuple(outcomes), time.perf_counter() - start)
