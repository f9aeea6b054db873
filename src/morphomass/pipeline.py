"""The pipeline's stages, their order, and running them with resume (the only module that knows the order).

Every stage is a function ``run_<stage>(config, workdir, *, progress) -> StageResult`` in its own sub-package.
:data:`STAGES` names each one's function by a dotted path and its declared inputs and outputs, as names of
:class:`~morphomass.workdir.WorkDir` properties (the one source of artefact paths); the configuration each
stage depends on is :data:`morphomass.config.STAGE_CONFIG`.

:func:`execute_stage` skips a stage when ``manifest.json`` shows it finished with the same configuration hash
and the same input hashes and its outputs are still there, unchanged (their fingerprints match); otherwise it
logs why, runs the stage, times it (wall clock and CPU) and records it. Both :func:`execute_stage` and
:func:`run_pipeline` hold the work directory's lock (:func:`~morphomass.workdir.workdir_lock`) while they run.
:func:`run_pipeline` makes the mock survey when ``raw/`` is empty, then runs every
stage of :data:`RUN_ORDER`.

Distributed runs started by torchrun or srun (:func:`~morphomass.cnn.parallel.launch_rank`: ``RANK`` and
``WORLD_SIZE``, or ``SLURM_PROCID`` and ``SLURM_NTASKS``; CNN training on several GPUs or nodes) start the
same command on every rank. Only the stages of :data:`DISTRIBUTED_STAGES` (train-cnn) run that way. Rank 0
runs them as any process does (the lock, the manifest record, the model files); every other rank runs the
stage's training in step with it (the DDP collectives) without taking the lock, creating a folder, writing a
file or recording anything, and skips the stage when rank 0 does (the same manifest, configuration and
inputs). Any other stage, and ``morphomass run``, started as a rank other than 0 stop with a one-line
:class:`~morphomass.errors.ConfigError` before touching the work directory; so does rank 0 under torchrun
(whose ``WORLD_SIZE`` tells it apart), while under srun rank 0 cannot be told from an ``sbatch`` batch
script and runs the command as usual.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from morphomass import __version__
from morphomass.cnn.parallel import LaunchRank, launch_rank
from morphomass.config import PipelineConfig, stage_config_hash
from morphomass.errors import ConfigError, WorkdirError
from morphomass.workdir import (
    StageResult,
    WorkDir,
    load_manifest,
    record_attempt,
    record_stage,
    stage_staleness,
    tree_sha256,
    workdir_lock,
)

__all__ = [
    "DISTRIBUTED_STAGES",
    "RUN_ORDER",
    "STAGES",
    "PipelineSummary",
    "Stage",
    "StageOutcome",
    "cpu_seconds",
    "distributed_launch",
    "execute_predict",
    "execute_stage",
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
    inputs : tuple of str
        What it reads: names of :class:`~morphomass.workdir.WorkDir` properties (``"sample"``,
        ``"cnn_models"``), files or folders.
    outputs : tuple of str
        What it writes, the same way.
    takes_force : bool
        Its runner takes ``force`` too (the mock: ``--force`` lets it write beside files it did not write).
    """

    name: str
    target: str
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    takes_force: bool = False

    @property
    def module(self) -> str:
        """Dotted name of the module that holds the runner."""
        return self.target.partition(":")[0]

    @property
    def function(self) -> str:
        """Name of the runner function."""
        return self.target.partition(":")[2]

    def input_paths(self, workdir: WorkDir) -> dict[str, Path]:
        """Return the declared inputs in ``workdir``: path relative to the root -> path."""
        return _paths(workdir, self.inputs)

    def output_paths(self, workdir: WorkDir) -> dict[str, Path]:
        """Return the declared outputs in ``workdir``: path relative to the root -> path."""
        return _paths(workdir, self.outputs)


def _paths(workdir: WorkDir, names: tuple[str, ...]) -> dict[str, Path]:
    paths = (getattr(workdir, name) for name in names)
    return {workdir.relative(path): path for path in paths}


_STAGE_LIST: tuple[Stage, ...] = (
    Stage("mock", "morphomass.mock:run_mock", (), ("raw",), takes_force=True),
    Stage("fetch", "morphomass.fetch:run_fetch", (), ("raw",)),
    Stage(
        "catalog", "morphomass.catalog:run_catalog", ("raw",), ("sample", "sample_summary", "chi2_rejected")
    ),
    Stage(
        "preprocess",
        "morphomass.preprocess:run_preprocess",
        ("sample", "raw_images", "stars"),
        ("images_zarr", "photometric_features"),
    ),
    Stage("train-cnn", "morphomass.cnn:run_train_cnn", ("sample", "images_zarr"), ("cnn_models",)),
    Stage(
        "extract", "morphomass.cnn:run_extract", ("sample", "images_zarr", "cnn_models"), ("cnn_features",)
    ),
    Stage(
        "train-gbm",
        "morphomass.gbm:run_train_gbm",
        ("sample", "photometric_features", "cnn_features"),
        ("gbm_models",),
    ),
    Stage(
        "bundle",
        "morphomass.predict:run_bundle",
        ("sample", "photometric_features", "cnn_features", "cnn_models", "gbm_models"),
        ("bundle_manifest",),
    ),
    Stage(
        "evaluate",
        "morphomass.evaluate:run_evaluate",
        (
            "sample",
            "sample_summary",
            "chi2_rejected",
            "photometric_features",
            "cnn_features",
            "gbm_models",  # the models' cards, predictions.parquet, importance.json, cv_search.json
        ),
        ("metrics", "report"),
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
    "bundle",
    "evaluate",
)


#: The stages that run on every rank of a distributed run started by torchrun or srun (rank 0 writes).
DISTRIBUTED_STAGES: frozenset[str] = frozenset({"train-cnn"})


def _get_stage(name: str) -> Stage:
    try:
        return STAGES[name]
    except KeyError:
        msg = f"unknown stage {name!r}; expected one of {list(STAGES)}"
        raise KeyError(msg) from None


def resolve_runner(name: str) -> Callable[..., Any]:
    """Import and return the ``run_<stage>`` function of a stage."""
    stage = _get_stage(name)
    return getattr(importlib.import_module(stage.module), stage.function)


def cpu_seconds() -> float:
    """Return the CPU time (user + system, s) of this process and of its child processes waited for so far."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def _producers(rel: str, workdir: WorkDir) -> list[str]:
    """List the stages whose declared outputs contain ``rel`` (``raw/images`` comes with ``raw``)."""
    return [
        s.name
        for s in _STAGE_LIST
        if any(rel == out or rel.startswith(out + "/") for out in s.output_paths(workdir))
    ]


def _input_hashes(stage: Stage, workdir: WorkDir) -> dict[str, str]:
    hashes = {}
    for rel, path in stage.input_paths(workdir).items():
        if not path.exists() or (path.is_dir() and not any(p.is_file() for p in path.rglob("*"))):
            makers = " or ".join(f"'morphomass {p}'" for p in _producers(rel, workdir)) or "an earlier stage"
            msg = (
                f"stage {stage.name!r} needs {rel} in {workdir.root}, which is missing or empty; "
                f"run {makers} first"
            )
            raise WorkdirError(msg)
        hashes[rel] = tree_sha256(path)
    return hashes


def _jsonable(summary: dict[str, Any]) -> dict[str, Any]:
    """Return ``summary`` in plain JSON values (numpy scalars and arrays as numbers and lists, else text)."""

    def plain(value: Any) -> Any:
        return value.tolist() if hasattr(value, "tolist") else str(value)

    return json.loads(json.dumps(summary, default=plain))


def execute_stage(
    name: str,
    config: PipelineConfig,
    workdir: WorkDir,
    *,
    force: bool = False,
    progress: bool = True,
    wait: bool = False,
) -> StageResult:
    """Run one stage unless the manifest shows it is up to date, holding the work directory's lock.

    As a rank other than 0 of a distributed run started by torchrun or srun, train-cnn runs in step with
    rank 0 without the lock and without writing anything (rank 0 records it), and any other stage is refused
    (see the module's docstring).

    Parameters
    ----------
    name : str
        Stage name (a key of :data:`STAGES`, not ``predict``).
    config : PipelineConfig
    workdir : WorkDir
    force : bool
        Run even if the stage is up to date.
    progress : bool
        Show progress bars.
    wait : bool
        Wait for another process holding the work directory's lock instead of raising (not used on ranks
        other than 0, which take no lock).

    Returns
    -------
    StageResult
        With ``skipped=True`` and the recorded outputs when nothing was run; otherwise with its wall-clock
        and CPU time.

    Raises
    ------
    WorkdirError
        If a declared input is missing, or the stage did not write a declared output.
    WorkdirLockedError
        If another process holds the work directory's lock and ``wait`` is false.
    ConfigError
        If this process is a rank of a distributed run (torchrun, srun) and the stage runs in one process.
    """
    launch = distributed_launch(name)
    if launch is not None and launch.rank != 0:
        return _execute_as_rank(name, config, workdir, launch, force=force, progress=progress)
    with workdir_lock(workdir, wait=wait):
        return _execute_stage(name, config, workdir, force=force, progress=progress)


def distributed_launch(command: str) -> LaunchRank | None:
    """Return this process's rank in a run of several processes started by torchrun or srun, else None.

    Raises
    ------
    ConfigError
        If ``command`` (a stage, or ``"run"``) does not run on several ranks and this process is a rank
        other than 0, or rank 0 of torchrun (srun's rank 0 cannot be told from an ``sbatch`` batch script).
    """
    launch = launch_rank()
    if launch is None or launch.world_size == 1:
        return None
    if command in DISTRIBUTED_STAGES or (launch.rank == 0 and launch.launcher == "srun"):
        return launch
    where = (
        f"'morphomass {command}' was started as rank {launch.rank} of {launch.world_size} ({launch.launcher})"
    )
    if command == "run":
        msg = (
            f"{where}, but only train-cnn runs on several ranks: run the stages before it in one process "
            "('morphomass mock' or 'fetch', 'catalog', 'preprocess'), launch 'morphomass train-cnn' under "
            "torchrun or srun, then 'morphomass run' in one process for the rest (it skips what is done)"
        )
    else:
        msg = f"{where}, but only train-cnn runs on several ranks: run '{command}' in one process"
    raise ConfigError(msg)


def _execute_as_rank(
    name: str,
    config: PipelineConfig,
    workdir: WorkDir,
    launch: LaunchRank,
    *,
    force: bool,
    progress: bool,
) -> StageResult:
    """Run a stage of :data:`DISTRIBUTED_STAGES` as a rank other than 0: in step with rank 0, writing nothing.

    No lock, no folder made, no manifest record: rank 0 holds the lock and records the stage. The decision is
    rank 0's, made from the same files: the stage is skipped when the manifest shows it up to date (rank 0
    skips it too), a missing input raises the same error, and otherwise the runner trains with the other
    ranks and writes only on rank 0. If rank 0 stops before the training (another process holds the lock,
    say), this rank waits for it in Lightning's rendezvous until torchrun or srun stops it or the process
    group's timeout passes.
    """
    stage = _get_stage(name)
    runner = resolve_runner(name)
    config_hash = stage_config_hash(config, name)
    inputs = _input_hashes(stage, workdir)
    reason = "--force was given" if force else stage_staleness(workdir, name, config_hash, inputs)
    if reason is None:
        logger.info("%s: up to date, skipped (rank %d of %d)", name, launch.rank, launch.world_size)
        return StageResult(stage=name, outputs=[], skipped=True)
    logger.info(
        "%s: running as rank %d of %d (%s), because %s; rank 0 writes the outputs and the manifest",
        name,
        launch.rank,
        launch.world_size,
        launch.launcher,
        reason,
    )
    start, cpu_start = time.perf_counter(), cpu_seconds()
    result = runner(config, workdir, progress=progress)
    result.seconds, result.cpu_seconds = time.perf_counter() - start, cpu_seconds() - cpu_start
    logger.info("%s: rank %d done in %.1f s", name, launch.rank, result.seconds)
    return result


def _one_line(err: BaseException) -> str:
    text = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
    return " ".join(text.split())[:300]


def _execute_stage(
    name: str, config: PipelineConfig, workdir: WorkDir, *, force: bool, progress: bool
) -> StageResult:
    """Run one stage unless it is up to date (the caller holds the work directory's lock)."""
    stage = _get_stage(name)
    if name == "predict":
        msg = "predict is not a work-directory stage; use execute_predict"
        raise ValueError(msg)
    runner = resolve_runner(name)
    workdir.ensure()
    config_hash = stage_config_hash(config, name)
    inputs = _input_hashes(stage, workdir)
    reason = "--force was given" if force else stage_staleness(workdir, name, config_hash, inputs)
    if reason is None:
        record = load_manifest(workdir)["stages"][name]
        logger.info("%s: up to date (finished %s), skipped", name, record.get("finished_utc", "earlier"))
        return StageResult(stage=name, outputs=list(record.get("outputs") or []), skipped=True)

    log = logger.warning if reason.startswith("output") else logger.info
    log("%s: running, because %s", name, reason)
    record_attempt(workdir, name, version=__version__)
    start, cpu_start = time.perf_counter(), cpu_seconds()
    try:
        options = {"force": force} if stage.takes_force else {}
        result = runner(config, workdir, progress=progress, **options)
    except BaseException as err:
        record_attempt(workdir, name, version=__version__, error=_one_line(err))
        raise
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu_start
    if not isinstance(result, StageResult):
        msg = f"stage {name!r} returned {type(result).__name__}, expected StageResult"
        raise TypeError(msg)
    missing = [rel for rel, path in stage.output_paths(workdir).items() if not path.exists()]
    if missing:
        msg = f"stage {name!r} finished without writing its declared outputs {missing} in {workdir.root}"
        raise WorkdirError(msg)
    result.seconds, result.cpu_seconds = seconds, cpu
    outputs = sorted(set(result.outputs) | set(stage.output_paths(workdir)))
    record_stage(
        workdir,
        name,
        config_hash=config_hash,
        inputs=inputs,
        outputs=outputs,
        seconds=seconds,
        cpu_seconds=cpu,
        summary=_jsonable(result.summary),
        version=__version__,
    )
    logger.info("%s: done in %.1f s (%.1f CPU-s)", name, seconds, cpu)
    return result


def execute_predict(
    config: PipelineConfig,
    *,
    model_dir: Path,
    images_dir: Path,
    catalog_path: Path,
    out_path: Path,
    stars_path: Path | None = None,
    progress: bool = True,
    recut: bool = False,
    model: str = "auto",
) -> StageResult:
    """Apply a saved model bundle to new galaxies (``morphomass predict``; no work directory, always runs).

    ``stars_path`` is an optional star catalogue for the star subtraction; ``recut`` cuts images wider than
    the bundle's field of view to it (``morphomass predict --recut``); ``model`` is the bundle's model to use
    (``"auto"``: g+i where the magnitudes are given, else g; ``morphomass predict --use``).
    """
    runner = resolve_runner("predict")
    start, cpu_start = time.perf_counter(), cpu_seconds()
    result = runner(
        config,
        model_dir=Path(model_dir),
        images_dir=Path(images_dir),
        catalog_path=Path(catalog_path),
        out_path=Path(out_path),
        stars_path=None if stars_path is None else Path(stars_path),
        progress=progress,
        recut=recut,
        model=model,
    )
    result.seconds, result.cpu_seconds = time.perf_counter() - start, cpu_seconds() - cpu_start
    return result


def make_mock_preview(config: PipelineConfig, workdir: WorkDir) -> Path:
    """Write the preview figure of the mock survey and return its path."""
    from morphomass.mock.preview import make_preview

    return Path(make_preview(config, workdir))


Status = Literal["ran", "skipped", "not needed"]


@dataclass(frozen=True)
class StageOutcome:
    """What happened to one stage during :func:`run_pipeline`.

    ``status`` is ``"ran"``, ``"skipped"`` (up to date) or ``"not needed"`` (the mock when ``raw/`` already
    holds data from elsewhere). ``seconds`` and ``cpu_seconds`` are the wall-clock and CPU time of this run
    (zero when the stage did not run); ``summary`` is the stage's :attr:`StageResult.summary`.
    """

    stage: str
    status: Status
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PipelineSummary:
    """The outcome of every stage of :data:`RUN_ORDER`, in order, and the total wall-clock and CPU seconds."""

    outcomes: tuple[StageOutcome, ...]
    seconds: float
    cpu_seconds: float = 0.0

    def stages(self, status: Status) -> list[str]:
        """Return the names of the stages with the given status, in pipeline order."""
        return [o.stage for o in self.outcomes if o.status == status]


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
    wait: bool = False,
) -> PipelineSummary:
    """Run the whole pipeline.

    The mock survey is made first when ``raw/`` is empty (or was made by an earlier mock run, so a changed
    mock configuration or an interrupted mock is redone); then every stage of :data:`RUN_ORDER` runs, or is
    skipped when up to date.

    Parameters
    ----------
    config : PipelineConfig
    workdir : WorkDir
    force : bool
        Redo every stage even if up to date.
    progress : bool
        Show progress bars.
    wait : bool
        Wait for another process holding the work directory's lock instead of raising.

    Returns
    -------
    PipelineSummary

    Raises
    ------
    WorkdirLockedError
        If another process holds the work directory's lock and ``wait`` is false.
    ConfigError
        As a rank of a distributed run (torchrun, srun; but for srun's rank 0), before anything is touched:
        the pipeline runs in one process. Run the stages before train-cnn in one process, launch
        ``morphomass train-cnn`` under torchrun or srun, then ``morphomass run`` in one process for the rest.
    """
    distributed_launch("run")
    start, cpu_start = time.perf_counter(), cpu_seconds()
    outcomes: list[StageOutcome] = []
    with workdir_lock(workdir, wait=wait):
        workdir.ensure()
        for name in RUN_ORDER:
            if name == "mock" and not _needs_mock(workdir):
                logger.info("mock: raw/ already holds data, not making the mock survey")
                outcomes.append(StageOutcome(name, "not needed"))
                continue
            result = _execute_stage(name, config, workdir, force=force, progress=progress)
            status: Status = "skipped" if result.skipped else "ran"
            outcomes.append(
                StageOutcome(name, status, result.seconds, result.cpu_seconds, dict(result.summary))
            )
    return PipelineSummary(tuple(outcomes), time.perf_counter() - start, cpu_seconds() - cpu_start)
