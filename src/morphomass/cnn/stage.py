"""The ``train-cnn`` and ``extract`` stages.

``train-cnn`` (sample.parquet + images.zarr -> models/cnn/): trains every network of ``cnn.nets`` on the GZ2
probabilities of the training galaxies with a GZ2 match (validation: the same for the validation split), then
CNN4 from CNN1's trained weights on the M/L of every training galaxy. Each network is saved as soon as it is
trained; a network whose card records the same ``train_key`` (its configuration and the hashes of its inputs)
is kept, so an interrupted stage resumes with the next network. It also draws
``results/figures/cnn_training_curves.png``.

``extract`` (images.zarr + models/cnn -> features/cnn.parquet): the 2196 features of SPEC F4 (in the paper
configuration) for every galaxy of the sample, minus the columns that are zero for every training galaxy;
then, for each encoder source of ``cnn.encoders`` (:mod:`morphomass.cnn.sources`), the frozen encoder's
features ``enc_<name>_*`` of the image at its input size (its PCA fitted on the training split), with its
weights, PCA and card written to ``models/encoders``.

On the CPU both stages keep every core busy with worker processes (:mod:`morphomass.cnn.parallel`): train-cnn
trains the networks side by side, extract splits the galaxies into slices of whole batches. On a GPU, or
with ``cnn.workers = 1``, everything runs in this process.

Several devices (``cnn.devices`` > 1, or ``"auto"`` with several GPUs; ``cnn.strategy`` ``"ddp"``,
``"ddp_spawn"``, ... or ``"auto"``) make train-cnn train with Lightning DDP instead: it starts one process per
device (:func:`~morphomass.cnn.parallel.run_ranks`; on the CPU with the gloo backend) and these train the
networks one after the other, each network on every device (CNN4 after CNN1); the per-network worker pool is
used only on one device. Rank 0 alone writes the networks' files, the figure is drawn by this process, and
the stage returns here, so the pipeline records one manifest entry. The compute budget counts the images of
all ranks together (:mod:`morphomass.cnn.training`). On several nodes, or whenever the processes are started
by torchrun or srun, each of them runs this stage as one rank and rank 0 alone writes.

Galaxies that preprocessing left out of ``images.zarr`` are skipped in training and get NaN features.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch

from morphomass import __version__
from morphomass.cnn.architectures import GZ2Net, build_gz2_net, check_pretrained, make_ml_net
from morphomass.cnn.columns import CNN4, CNN4_BASE
from morphomass.cnn.data import ImageGroup, gz2_targets, load_sample, ml_targets
from morphomass.cnn.extract import (
    drop_dead_columns,
    extract_feature_table,
    extract_rows,
    feature_table,
    resolve_device,
)
from morphomass.cnn.figures import plot_training_curves
from morphomass.cnn.parallel import (
    Job,
    available_cores,
    ddp_ranks,
    launch_rank,
    launched_externally,
    run_jobs,
    run_ranks,
    worker_count,
)
from morphomass.cnn.sources import (
    encoder_card_name,
    encoder_pca_name,
    encoder_weights_name,
    fit_encoder_source,
    load_configured_encoder,
    save_encoder_source,
)
from morphomass.cnn.training import FitResult, epoch_images, fit_network, weighted_median
from morphomass.cnn.weights import load_card, load_network, save_network
from morphomass.config import (
    PRETRAINED_IMAGENET,
    PRETRAINED_NONE,
    CnnConfig,
    NetConfig,
    PipelineConfig,
    section_hash,
)
from morphomass.errors import ConfigError, InputDataError, WorkdirError
from morphomass.workdir import StageResult, WorkDir, atomic_path, file_sha256, tree_sha256

__all__ = ["models_dir", "run_extract", "run_train_cnn"]

logger = logging.getLogger(__name__)

FIGURE_NAME = "cnn_training_curves.png"
#: CnnConfig fields that change what a network learns (its ``train_key``, with its epochs and learning rate);
#: device options are left out.
TRAINING_FIELDS: tuple[str, ...] = (
    "batch_size",
    "lr_factor",
    "lr_patience",
    "dropout",
    "augment_rotation_deg",
    "augment_zoom",
    "augment_flips",
    "precision",
    "seed",
)


def models_dir(workdir: WorkDir) -> Path:
    """``models/cnn`` of a work directory."""
    return workdir.models / "cnn"


def _is_rank_zero() -> bool:
    """Return whether this process writes: rank 0 of a distributed run, or any process outside one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank() == 0
    from lightning.pytorch.utilities import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


def _barrier() -> None:
    """Wait for every process of a distributed (DDP) run; nothing to do in a single process."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


def _train_key(**parts: Any) -> str:
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


#: Training cost per image relative to a ResNet18 at 64 px on a CPU, per pixel (one thread: ResNet18 9.8 ms,
#: Xception 31 ms at 64 px, the custom network 4.0 ms at 69 px; ResNet50 from its FLOPs), scaled by the number
#: of pixels: only used to start the longest training first and to skip workers for tiny jobs.
RELATIVE_COST: dict[str, float] = {"resnet18": 1.0, "resnet50": 2.3, "legacy_xception": 3.2, "dieleman": 0.35}


@dataclass(frozen=True)
class _TrainJob:
    """One network to train: what its worker needs (picklable) and what it costs."""

    name: str
    kind: str
    backbone: str
    input_size: int
    key: str
    epochs: int
    train_images: int | None
    learning_rate: float
    pretrained: str | None  # cnn.nets.<net>.pretrained: "imagenet" or a file; None for "none"
    train: tuple[np.ndarray, ...]
    val: tuple[np.ndarray, ...]
    images: int
    base: str | None = None

    @property
    def cost(self) -> float:
        """Expected training cost (relative units): images x cost per image of the backbone at its size."""
        return self.images * _relative_cost(self.backbone, self.input_size)


def _relative_cost(backbone: str, input_size: int) -> float:
    """Training cost of one image relative to a ResNet18 at 64 px (:data:`RELATIVE_COST`, 1 if unknown)."""
    return RELATIVE_COST.get(backbone, 1.0) * (input_size / 64) ** 2


def _card(
    job: _TrainJob,
    *,
    net: torch.nn.Module,
    result: FitResult,
    config: PipelineConfig,
) -> dict[str, Any]:
    import lightning
    import timm

    return {
        "name": job.name,
        "kind": job.kind,
        "backbone": job.backbone,
        "input_size": job.input_size,
        "in_channels": 1,
        "dropout": config.cnn.dropout,
        "base": job.base,
        "trunk_features": int(net.trunk.num_features),
        "n_outputs": 37 if job.kind == "gz2" else 1,
        "n_parameters": sum(p.numel() for p in net.parameters()),
        "pretrained_weights": None if job.pretrained is None else str(job.pretrained),
        "loss": "mse_gz2_unconditional" if job.kind == "gz2" else "l1_tilde_ml",
        "epochs": job.epochs,
        "train_images_budget": job.train_images,
        "epoch_images": result.epoch_images,
        "images_seen": result.images_seen,
        "world_size": result.world_size,
        "batch_size": config.cnn.batch_size,
        "learning_rate": job.learning_rate,
        "seed": config.cnn.seed,
        "history": result.history,
        "best_epoch": result.best_epoch,
        "best_val_loss": result.best_val_loss,
        "n_train": result.n_train,
        "n_val": result.n_val,
        "seconds": round(result.seconds, 3),
        "train_images_per_s": round(result.images_seen / max(result.seconds, 1e-9), 2),
        "train_key": job.key,
        "config_hash": section_hash(config, "cnn"),
        "created_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "versions": {
            "morphomass": __version__,
            "torch": torch.__version__,
            "timm": timm.__version__,
            "lightning": lightning.__version__,
        },
    }


def _with_images(
    group: ImageGroup, split: str, objid: np.ndarray, *arrays: np.ndarray, what: str
) -> tuple[np.ndarray, ...]:
    """Keep the galaxies with an image (images.zarr leaves out preprocessing failures); none left: error."""
    keep = group.contains(objid)
    if not keep.all():
        logger.warning(
            "%s: %d of %d %s galaxies have no image in %s/%d and are left out",
            what,
            int((~keep).sum()),
            len(keep),
            split,
            group.path.name,
            group.size,
        )
    if not keep.any():
        msg = (
            f"no {split} galaxy with both an image in {group.path}/{group.size} and a usable target for "
            f"{what} ({len(keep)} {split} galaxies with a target); it cannot be trained"
        )
        raise InputDataError(msg)
    return tuple(a[keep] for a in (objid, *arrays))


def _planned_images(
    n_train: int, *, epochs: int, train_images: int | None, batch_size: int, world_size: int = 1
) -> int:
    return epochs * epoch_images(
        n_train, epochs=epochs, batch_size=batch_size, train_images=train_images, world_size=world_size
    )


def _plan_gz2_net(
    name: str,
    net_config: NetConfig,
    sample: pd.DataFrame,
    config: PipelineConfig,
    workdir: WorkDir,
    *,
    sample_sha: str,
    world_size: int = 1,
) -> _TrainJob | dict[str, Any]:
    """Check a GZ2 network's inputs; return its training job, or its card if it is trained already."""
    cnn = config.cnn
    train_id, train_y = gz2_targets(sample, "train")
    val_id, val_y = gz2_targets(sample, "val")
    for split, ids in (("train", train_id), ("val", val_id)):
        if len(ids) == 0:
            msg = (
                f"{workdir.sample}: no {split} galaxy with a GZ2 match (has_gz2 true and 37 finite gz2_p_* "
                f"values); network {name} cannot be trained"
            )
            raise InputDataError(msg)
    group = ImageGroup(workdir.images_zarr, net_config.input_size)
    train_id, train_y = _with_images(group, "train", train_id, train_y, what=name)
    val_id, val_y = _with_images(group, "val", val_id, val_y, what=name)
    pretrained = None if net_config.pretrained == PRETRAINED_NONE else net_config.pretrained
    epochs = net_config.epochs or cnn.epochs
    train_images = net_config.train_images_budget or cnn.train_images_budget
    learning_rate = net_config.learning_rate or cnn.learning_rate
    key = _train_key(
        name=name,
        kind="gz2",
        backbone=net_config.backbone,
        input_size=net_config.input_size,
        epochs=epochs,
        train_images=train_images,
        learning_rate=learning_rate,
        training={f: getattr(cnn, f) for f in TRAINING_FIELDS},
        # None ("none") and file hashes as before, so that networks trained earlier are kept
        pretrained=(
            pretrained
            if pretrained in (None, PRETRAINED_IMAGENET)
            else file_sha256(Path(pretrained).expanduser())
        ),
        sample=sample_sha,
        images=tree_sha256(workdir.images_zarr / str(net_config.input_size)),
    )
    existing = load_card(models_dir(workdir), name)
    if existing is not None and existing["train_key"] == key:
        logger.info("%s: trained earlier with the same configuration and inputs, kept", name)
        return existing
    return _TrainJob(
        name=name,
        kind="gz2",
        backbone=net_config.backbone,
        input_size=net_config.input_size,
        key=key,
        epochs=epochs,
        train_images=train_images,
        learning_rate=learning_rate,
        pretrained=pretrained,
        train=(train_id, train_y),
        val=(val_id, val_y),
        images=_planned_images(
            len(train_id),
            epochs=epochs,
            train_images=train_images,
            batch_size=cnn.batch_size,
            world_size=world_size,
        ),
    )


def _plan_cnn4(
    sample: pd.DataFrame,
    config: PipelineConfig,
    workdir: WorkDir,
    *,
    sample_sha: str,
    base: _TrainJob | dict[str, Any] | None,
    world_size: int = 1,
) -> _TrainJob | dict[str, Any]:
    """Check CNN4's inputs; return its training job, or its card if it is trained already.

    ``base`` is CNN1's job or card when CNN1 is part of this run, None to use the CNN1 saved earlier.
    """
    cnn = config.cnn
    out_dir = models_dir(workdir)
    if base is None:
        base = load_card(out_dir, CNN4_BASE)
        if base is None:
            msg = (
                f"CNN4 starts from {CNN4_BASE}'s trained weights, but {out_dir}/{CNN4_BASE}.safetensors does "
                f"not exist; train {CNN4_BASE} first (keep it in cnn.nets or 'morphomass train-cnn --nets "
                f"{CNN4_BASE},{CNN4}')"
            )
            raise WorkdirError(msg)
        if base["kind"] != "gz2":
            msg = f"{out_dir}/{CNN4_BASE}.json: CNN4 needs a GZ2 network as base, got kind {base['kind']!r}"
            raise InputDataError(msg)
    if isinstance(base, _TrainJob):
        base_key, backbone, size = base.key, base.backbone, base.input_size
    else:
        base_key, backbone, size = base["train_key"], base["backbone"], int(base["input_size"])
    epochs = cnn.cnn4_epochs or cnn.epochs
    train_images = cnn.cnn4_train_images_budget or cnn.train_images_budget
    train_id, train_ml, train_err = ml_targets(sample, "train")
    val_id, val_ml, val_err = ml_targets(sample, "val")
    for split, ids in (("train", train_id), ("val", val_id)):
        if len(ids) == 0:
            msg = (
                f"{workdir.sample}: no {split} galaxy with a finite target and a positive target_err for CNN4"
            )
            raise InputDataError(msg)
    group = ImageGroup(workdir.images_zarr, size)
    train_id, train_ml, train_err = _with_images(group, "train", train_id, train_ml, train_err, what=CNN4)
    val_id, val_ml, val_err = _with_images(group, "val", val_id, val_ml, val_err, what=CNN4)
    key = _train_key(
        name=CNN4,
        kind="ml",
        base=base_key,
        epochs=epochs,
        train_images=train_images,
        learning_rate=cnn.learning_rate,
        training={f: getattr(cnn, f) for f in TRAINING_FIELDS},
        sample=sample_sha,
        images=tree_sha256(workdir.images_zarr / str(size)),
    )
    existing = load_card(out_dir, CNN4)
    if existing is not None and existing["train_key"] == key:
        logger.info("%s: trained earlier with the same configuration and inputs, kept", CNN4)
        return existing
    return _TrainJob(
        name=CNN4,
        kind="ml",
        backbone=backbone,
        input_size=size,
        key=key,
        epochs=epochs,
        train_images=train_images,
        learning_rate=cnn.learning_rate,
        pretrained=None,
        train=(train_id, train_ml, train_err),
        val=(val_id, val_ml, val_err),
        images=_planned_images(
            len(train_id),
            epochs=epochs,
            train_images=train_images,
            batch_size=cnn.batch_size,
            world_size=world_size,
        ),
        base=CNN4_BASE,
    )


def _train_job(
    job: _TrainJob,
    config: PipelineConfig,
    workdir: WorkDir,
    *,
    progress: bool,
    on_images: Callable[[int], None] | None = None,
    trainer_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build, seed and train one network; rank 0 saves it to ``models/cnn``; return its card.

    ``trainer_options`` replaces Lightning options of ``cnn`` for the training only (the card records the
    configuration as given). In a distributed run every rank calls this with the same job; they wait for
    rank 0's files before returning, so the next network (CNN4 reads CNN1's) finds them.
    """
    cnn = config.cnn
    out_dir = models_dir(workdir)
    if job.kind == "gz2":
        if job.pretrained is None:
            logger.info(
                "%s: %s with random initialisation (cnn.nets.%s.pretrained = 'none')",
                job.name,
                job.backbone,
                job.name,
            )
        else:
            logger.info("%s: %s initialised from %s", job.name, job.backbone, job.pretrained)
        L.seed_everything(cnn.seed, workers=True, verbose=False)
        net: torch.nn.Module = build_gz2_net(
            job.backbone,
            dropout=cnn.dropout,
            pretrained=job.pretrained or PRETRAINED_NONE,
            field=f"cnn.nets.{job.name}.pretrained",
        )
        what = "galaxies with GZ2"
    else:
        base, base_card = load_network(out_dir, CNN4_BASE)
        if not isinstance(base, GZ2Net):
            kind = base_card["kind"]
            msg = f"{out_dir}/{CNN4_BASE}.json: CNN4 needs a GZ2 network as base, got kind {kind!r}"
            raise InputDataError(msg)
        L.seed_everything(cnn.seed, workers=True, verbose=False)
        net = make_ml_net(base)
        with torch.no_grad():  # start from the constant that minimises L1~ on the training set
            net.out.bias.fill_(weighted_median(job.train[1], 1.0 / job.train[2]))
        what = f"galaxies with a target value, from {CNN4_BASE}'s weights,"
    group = ImageGroup(workdir.images_zarr, job.input_size)
    train_x, val_x = group.read(job.train[0]), group.read(job.val[0])
    budget = "" if job.train_images is None else f" ({job.images} training images in all)"
    logger.info(
        "%s: training on %d %s (validation %d), %d epochs%s",
        job.name,
        len(job.train[0]),
        what,
        len(job.val[0]),
        job.epochs,
        budget,
    )
    result = fit_network(
        net,
        (train_x, *job.train[1:]),
        (val_x, *job.val[1:]),
        task="gz2" if job.kind == "gz2" else "ml",
        config=cnn.model_copy(update={"learning_rate": job.learning_rate, **(trainer_options or {})}),
        epochs=job.epochs,
        train_images=job.train_images,
        progress=progress,
        on_images=on_images,
        name=job.name,
    )
    card = _card(job, net=net, result=result, config=config)
    if _is_rank_zero():
        save_network(out_dir, job.name, net, card)
    _barrier()
    return card


def _train_in_worker(
    job: _TrainJob, config: PipelineConfig, root: Path, *, report: Callable[[int], None]
) -> dict[str, Any]:
    """:func:`_train_job` in a worker process (no progress bar of its own: it reports images)."""
    return _train_job(job, config, WorkDir(root), progress=False, on_images=report)


def _ddp_options(cnn: CnnConfig, ranks: int) -> dict[str, Any]:
    """Lightning options of the ranks started by :func:`run_ranks`: DDP joining the processes that exist.

    The spawning or forking variants of the strategy (``"ddp_spawn"``, ``"ddp_fork_find_unused_..."``) and
    ``"auto"`` become the plain ``"ddp"`` variant, which joins processes started beforehand instead of
    starting its own.
    """
    strategy = "ddp" if cnn.strategy == "auto" else cnn.strategy
    for launcher in ("_spawn", "_fork", "_notebook"):
        strategy = strategy.replace(launcher, "")
    return {"strategy": strategy, "devices": ranks, "num_nodes": 1}


def _train_as_rank(
    jobs: tuple[_TrainJob, ...],
    config: PipelineConfig,
    root: Path,
    options: dict[str, Any],
    *,
    rank: int,
    report: Callable[[int], None],
) -> dict[str, dict[str, Any]] | None:
    """Train every job one after the other as one rank of a DDP run (in a :func:`run_ranks` process).

    Returns the cards on rank 0 (which saved the networks), None on the others (which wrote nothing).
    """
    workdir = WorkDir(root)
    cards = {
        job.name: _train_job(
            job,
            config,
            workdir,
            progress=False,
            on_images=report if rank == 0 else None,  # rank 0 counts the images of every rank
            trainer_options=options,
        )
        for job in jobs
    }
    return cards if rank == 0 else None


def _save_figure(cards: dict[str, dict[str, Any]], path: Path) -> None:
    fig = plot_training_curves(cards)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)


def run_train_cnn(config: PipelineConfig, workdir: WorkDir, *, progress: bool = True) -> StageResult:
    """Train CNN1-3 on GZ2 and CNN4 on M/L; write ``models/cnn/`` and the training-curves figure.

    Each network sees ``epochs`` passes over its training galaxies, or, with a compute budget
    (``cnn.train_images_budget``, per network ``nets.<name>.train_images_budget``, CNN4
    ``cnn4_train_images_budget``), that many images whatever the sample size. On the CPU the networks train
    side by side in ``cnn.workers`` processes (default: one per core; CNN4 after CNN1), the most expensive
    first; on a GPU, or with one worker, one after the other in this process. Either way each network is
    seeded with ``cnn.seed`` and its result does not depend on the others.

    With several devices (:func:`~morphomass.cnn.parallel.ddp_ranks`) the networks train one after the other,
    each with Lightning DDP on all devices, in one process per device started here; ``cnn.workers`` is not
    used. The budget is then the images of all devices together, ``batch_size`` is per device, and only rank
    0 writes ``models/cnn``; the results differ from a single device's (other batches), as with any change of
    devices. Inside a run whose processes torchrun or srun started
    (:func:`~morphomass.cnn.parallel.launch_rank`; ``cnn.num_nodes`` > 1, say), this process is one rank: it
    trains every network with the others and writes only as rank 0; a rank other than 0 creates no folder
    and writes no model file or figure (the pipeline has it take no lock and record nothing), and
    ``cnn.devices`` x ``cnn.num_nodes`` must be torchrun's ``WORLD_SIZE``.

    Parameters
    ----------
    config : PipelineConfig
        Uses the ``cnn`` section.
    workdir : WorkDir
        Reads ``sample.parquet`` and ``images.zarr``.
    progress : bool
        Show progress bars.

    Returns
    -------
    StageResult
        ``summary["nets"]``: per network, ``status`` (``trained`` or ``kept``), ``best_val_loss``,
        ``best_epoch``, ``n_train``, ``images_seen`` and ``seconds``; ``summary["workers"]``: the processes
        used (1: this process); ``summary["ddp_ranks"]``: the DDP processes started (1: none).

    Raises
    ------
    InputDataError
        If ``sample.parquet`` or ``images.zarr`` lacks what the networks need.
    ConfigError
        If a backbone is unknown, a network's initial weights (``cnn.nets.<net>.pretrained``) cannot be had
        (checked before anything trains), or several devices are asked for with a strategy other than DDP
        or on several nodes without processes started on each, or not as many as torchrun started.
    WorkdirError
        If CNN4 is asked for without CNN1's trained weights.
    """
    cnn = config.cnn
    check_pretrained(cnn.nets)  # before any network trains or any worker starts: weights found or one line
    ranks = ddp_ranks(cnn)
    if not cnn.nets and not cnn.train_cnn4:
        msg = "cnn.nets is empty and cnn.train_cnn4 is false: there is no network to train"
        raise ConfigError(msg)
    launch = launch_rank()
    writes = launch is None or launch.rank == 0  # the other ranks of torchrun or srun train, writing nothing
    out_dir = models_dir(workdir)
    if writes:
        out_dir.mkdir(parents=True, exist_ok=True)
    sample = load_sample(workdir.sample)
    sample_sha = file_sha256(workdir.sample)
    planned: dict[str, _TrainJob | dict[str, Any]] = {
        name: _plan_gz2_net(
            name, net_config, sample, config, workdir, sample_sha=sample_sha, world_size=ranks
        )
        for name, net_config in cnn.nets.items()
    }
    if cnn.train_cnn4:
        planned[CNN4] = _plan_cnn4(
            sample, config, workdir, sample_sha=sample_sha, base=planned.get(CNN4_BASE), world_size=ranks
        )
    jobs = {name: job for name, job in planned.items() if isinstance(job, _TrainJob)}
    cards = {name: card for name, card in planned.items() if not isinstance(card, _TrainJob)}
    workers = worker_count(cnn, len(jobs), cost=sum(job.cost for job in jobs.values()))
    if ranks > 1 and jobs:
        workers = ranks
        threads = max(1, available_cores() // ranks)
        logger.info(
            "training %s one after the other with DDP on %d devices (%s), one process each (%d torch "
            "thread%s each)",
            ", ".join(jobs),
            ranks,
            cnn.accelerator,
            threads,
            "" if threads == 1 else "s",
        )
        results = run_ranks(
            _train_as_rank,
            (tuple(jobs.values()), config, workdir.root, _ddp_options(cnn, ranks)),
            world_size=ranks,
            threads=threads,
            title="train-cnn",
            images=sum(job.images for job in jobs.values()),
            progress=progress,
        )
        cards.update(results[0])
    elif workers == 1:
        options = None
        if cnn.strategy.startswith("ddp") and not launched_externally():
            # DDP on one device: the same training without a process group (Lightning would also mark this
            # process as a launched rank in its environment)
            options = {"strategy": "auto"}
        for name, job in jobs.items():
            cards[name] = _train_job(job, config, workdir, progress=progress, trainer_options=options)
    else:
        threads = max(1, available_cores() // workers)
        logger.info(
            "training %s in %d worker processes (%d torch thread%s each)",
            ", ".join(jobs),
            workers,
            threads,
            "" if threads == 1 else "s",
        )
        parallel_jobs = {
            name: Job(
                label=name,
                function=_train_in_worker,
                args=(job, config, workdir.root),
                cost=job.cost,
                after=tuple(a for a in (job.base,) if a in jobs),
                images=job.images,
            )
            for name, job in jobs.items()
        }
        cards.update(
            run_jobs(
                parallel_jobs,
                workers=workers,
                threads=threads,
                title="train-cnn",
                unit="networks",
                progress=progress,
            )
        )
    cards = {name: cards[name] for name in planned}  # the configuration's order
    figure = workdir.figures / FIGURE_NAME
    if writes and _is_rank_zero():
        _save_figure(cards, figure)
    _barrier()
    summary = {
        name: {
            "status": "trained" if name in jobs else "kept",
            "best_val_loss": card["best_val_loss"],
            "best_epoch": card["best_epoch"],
            "n_train": card["n_train"],
            "images_seen": card.get("images_seen"),
            "seconds": card["seconds"],
        }
        for name, card in cards.items()
    }
    return StageResult(
        stage="train-cnn",
        outputs=[str(out_dir.relative_to(workdir.root)), str(figure.relative_to(workdir.root))],
        summary={"nets": summary, "workers": workers, "ddp_ranks": ranks},
    )


def _check_card(name: str, card: dict[str, Any], cnn: CnnConfig, out_dir: Path) -> None:
    """Check that the saved network is the one the configuration describes (else train-cnn must run again)."""
    expected = cnn.nets.get(CNN4_BASE) if name == CNN4 else cnn.nets[name]
    if expected is not None and (card["backbone"], int(card["input_size"])) != (
        expected.backbone,
        expected.input_size,
    ):
        msg = (
            f"{out_dir}/{name}.json is a {card['backbone']} at {card['input_size']} px but the configuration "
            f"asks for {expected.backbone} at {expected.input_size} px; run 'morphomass train-cnn' again"
        )
        raise WorkdirError(msg)


def _extract_in_workers(
    networks: dict[str, tuple[torch.nn.Module, dict[str, Any]]],
    workdir: WorkDir,
    *,
    n_images: int,
    workers: int,
    progress: bool,
    cnn: CnnConfig,
) -> pd.DataFrame:
    """:func:`extract_feature_table` with the rows split into slices of whole batches, in worker processes.

    The slices hold the same batches as a run in one process; each worker loads the networks once.
    """
    batch_size = cnn.inference_batch_size
    n_batches = -(-n_images // batch_size)
    parts = [p for p in np.array_split(np.arange(n_batches), min(n_batches, 4 * workers)) if len(p)]
    names = tuple(networks)
    jobs = {
        i: Job(
            label=f"extract (rows {int(p[0]) * batch_size}-{min(int(p[-1] + 1) * batch_size, n_images) - 1})",
            function=extract_rows,
            args=(
                models_dir(workdir),
                names,
                workdir.images_zarr,
                int(p[0]) * batch_size,
                min(int(p[-1] + 1) * batch_size, n_images),
                batch_size,
            ),
            images=len(names) * (min(int(p[-1] + 1) * batch_size, n_images) - int(p[0]) * batch_size),
        )
        for i, p in enumerate(parts)
    }
    threads = max(1, available_cores() // workers)
    logger.info(
        "extract: %d galaxies in %d slices, %d worker processes (%d torch thread%s each)",
        n_images,
        len(jobs),
        workers,
        threads,
        "" if threads == 1 else "s",
    )
    results = run_jobs(
        jobs, workers=workers, threads=threads, title="extract", unit="slices", progress=progress
    )
    outputs = {
        name: {
            key: np.concatenate([results[i][name][key] for i in range(len(jobs))]) for key in results[0][name]
        }
        for name in names
    }
    return feature_table({name: card for name, (_, card) in networks.items()}, outputs)


def _encoder_sources(
    config: PipelineConfig,
    workdir: WorkDir,
    groups: dict[int, ImageGroup],
    train_ids: np.ndarray,
    *,
    device: torch.device,
    progress: bool,
) -> tuple[pd.DataFrame, list[Path], dict[str, Any]]:
    """Encode every galaxy of ``images.zarr`` with each encoder source of ``cnn.encoders``; save them.

    Returns
    -------
    features : pandas.DataFrame
        ``enc_<name>_*`` columns, in the row order of the ``images.zarr`` groups (float32).
    files : list of Path
        The files written in ``models/encoders`` (weights, PCA, card per source).
    summary : dict
        Source name -> its feature count, PCA galaxies and the SHA-256 of its weights and PCA files.
    """
    out_dir = workdir.encoder_models
    blocks, files, summary = [], [], {}
    for name, source_config in config.cnn.encoders.items():
        group = groups[source_config.input_size]
        train_rows = np.isin(group.objid, train_ids)
        encoder = load_configured_encoder(name, source_config)
        encoder.model.to(device)
        logger.info(
            "extract: encoder source %s (%s, %d features) on %d galaxies at %d px%s",
            name,
            encoder.architecture,
            encoder.num_features,
            len(group.objid),
            encoder.input_size,
            (
                ""
                if source_config.pca_components is None
                else f", PCA to {source_config.pca_components} fitted on {int(train_rows.sum())} training "
                "galaxies"
            ),
        )
        source, values = fit_encoder_source(
            encoder,
            group.images,
            train_rows,
            pca_components=source_config.pca_components,
            standardise=source_config.standardise,
            batch_size=config.cnn.inference_batch_size,
            progress=progress,
        )
        fitted_on = None if source.pca is None else {"split": "train", "n_galaxies": int(train_rows.sum())}
        card = save_encoder_source(source, out_dir, extra={"pca_fitted_on": fitted_on})
        encoder.model.to("cpu")
        files += [out_dir / encoder_weights_name(name), out_dir / encoder_card_name(name)]
        if source.pca is not None:
            files.append(out_dir / encoder_pca_name(name))
        blocks.append(pd.DataFrame(values, columns=source.columns))
        summary[name] = {
            "n_features": source.n_features,
            "pca_fitted_on": fitted_on,
            "weights_sha256": card["weights_sha256"],
            "pca_sha256": card["pca_sha256"],
        }
    _remove_stale_encoder_files(out_dir, keep=files)
    features = pd.concat(blocks, axis=1) if blocks else pd.DataFrame(index=pd.RangeIndex(0))
    return features, files, summary


def _remove_stale_encoder_files(out_dir: Path, *, keep: list[Path]) -> None:
    """Delete the weights, PCA and cards in ``models/encoders`` of sources no longer configured."""
    if not out_dir.is_dir():
        return
    for path in sorted(out_dir.iterdir()):
        if path.is_file() and path.suffix in (".safetensors", ".json") and path not in keep:
            logger.info("extract: removing %s (not an encoder source of cnn.encoders)", path)
            path.unlink()


def run_extract(config: PipelineConfig, workdir: WorkDir, *, progress: bool = True) -> StageResult:
    """Write ``features/cnn.parquet``: the CNN features of every galaxy of the sample (SPEC F4).

    Columns: ``objid``; ``<net>_p_<task>_<answer>`` (37) per GZ2 network; ``cnn1_trunk_0000`` ... (CNN1's
    pooled trunk, 2048 for ResNet50); ``cnn4_f00`` ... ``cnn4_f36``; all float32, in the row order of
    ``sample.parquet``. Galaxies that preprocessing left out of ``images.zarr`` get NaN features (logged).
    Columns that are exactly zero for every training galaxy (dead neurons) are dropped and counted.

    Then ``enc_<name>_0000`` ... per encoder source of ``cnn.encoders`` (:mod:`morphomass.cnn.sources`):
    the frozen encoder's pooled features of the ``<input_size>`` group of ``images.zarr``, projected on the
    PCA fitted on the training galaxies when ``pca_components`` is set (never dropped as dead). Its
    weights, PCA and card go to ``models/encoders`` (``<name>.safetensors``, ``<name>_pca.safetensors``,
    ``<name>.json`` with their SHA-256); files of sources no longer configured are removed there.

    Parameters
    ----------
    config : PipelineConfig
        Uses the ``cnn`` section (the networks, ``inference_batch_size`` and ``accelerator``).
    workdir : WorkDir
        Reads ``sample.parquet`` (keys and split), ``images.zarr`` and ``models/cnn``.
    progress : bool
        Show progress bars.

    Returns
    -------
    StageResult
        ``outputs``: ``features/cnn.parquet`` and the files of ``models/encoders``. ``summary``:
        ``n_galaxies``, ``n_features_before_drop``, ``n_dropped``, ``n_features`` (the dropped names are
        logged at DEBUG level) and ``encoders`` (name -> feature count, PCA galaxies, SHA-256 of its files).

    Raises
    ------
    WorkdirError
        If a network is missing from ``models/cnn`` or does not match the configuration.
    InputDataError
        If no training galaxy of the sample has images.
    """
    cnn = config.cnn
    out_dir = models_dir(workdir)
    names = [*cnn.nets, *([CNN4] if cnn.train_cnn4 else [])]
    if not names:
        msg = "cnn.nets is empty and cnn.train_cnn4 is false: there is no network to extract features from"
        raise ConfigError(msg)
    sample = load_sample(workdir.sample, columns=("objid", "split"))
    objid = sample["objid"].to_numpy(np.int64)
    networks = {name: load_network(out_dir, name) for name in names}
    for name, (_, card) in networks.items():
        _check_card(name, card, cnn, out_dir)
    sizes = {int(card["input_size"]) for _, card in networks.values()}
    sizes |= {source.input_size for source in cnn.encoders.values()}
    groups = {size: ImageGroup(workdir.images_zarr, size) for size in sorted(sizes)}
    first = next(iter(groups.values()))
    for group in groups.values():
        if not np.array_equal(group.objid, first.objid):
            msg = (
                f"{workdir.images_zarr}: groups {first.size!r} and {group.size!r} hold different galaxies "
                f"(objid arrays differ); rerun 'morphomass preprocess'"
            )
            raise InputDataError(msg)
    device = resolve_device(cnn.accelerator)
    batch_size = cnn.inference_batch_size
    n_batches = -(-len(first.objid) // batch_size)
    # inference costs about a third of training per image
    cost = sum(
        len(first.objid) * _relative_cost(card["backbone"], int(card["input_size"])) / 3
        for _, card in networks.values()
    )
    workers = worker_count(cnn, n_batches, cost=cost) if device.type == "cpu" else 1
    if workers == 1:
        features = extract_feature_table(
            networks,
            {size: group.images for size, group in groups.items()},
            batch_size=batch_size,
            device=device,
            precision=cnn.inference_precision,
            progress=progress,
        )
    else:
        features = _extract_in_workers(
            networks, workdir, n_images=len(first.objid), workers=workers, progress=progress, cnn=cnn
        )
    train_ids = objid[(sample["split"] == "train").to_numpy()]
    encoder_features, encoder_files, encoder_summary = _encoder_sources(
        config, workdir, groups, train_ids, device=device, progress=progress
    )
    if encoder_features.shape[1]:
        features = pd.concat([features, encoder_features], axis=1)
    has_image = first.contains(objid)
    if not has_image.all():
        logger.warning(
            "extract: %d of %d galaxies of the sample have no image in images.zarr (preprocessing "
            "failures); their CNN features are NaN",
            int((~has_image).sum()),
            len(has_image),
        )
    values = np.full((len(objid), features.shape[1]), np.nan, dtype=np.float32)
    values[has_image] = features.to_numpy()[first.rows_of(objid[has_image])]
    table = pd.DataFrame(values, columns=features.columns)
    table.insert(0, "objid", objid)
    train_mask = (sample["split"] == "train").to_numpy() & has_image
    if not train_mask.any():
        msg = f"{workdir.sample}: no training galaxy with images; dead feature columns cannot be identified"
        raise InputDataError(msg)
    n_before = table.shape[1] - 1
    table, dropped = drop_dead_columns(table, train_mask, keep=("objid", *encoder_features.columns))
    logger.info(
        "extract: %d of %d CNN feature columns are zero for every training galaxy (dead neurons) and were "
        "dropped; %d remain (the paper dropped 17 of 2196)",
        len(dropped),
        n_before,
        table.shape[1] - 1,
    )
    logger.debug("extract: dropped columns %s", dropped)
    path = workdir.features / "cnn.parquet"
    with atomic_path(path) as tmp:
        table.to_parquet(tmp, index=False)
    return StageResult(
        stage="extract",
        outputs=[workdir.relative(p) for p in (path, *encoder_files)],
        summary={
            "n_galaxies": len(table),
            "n_features_before_drop": n_before,
            "n_dropped": len(dropped),
            "n_features": table.shape[1] - 1,
            "encoders": encoder_summary,
        },
    )
