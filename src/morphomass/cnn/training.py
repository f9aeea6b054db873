"""Training one network with Lightning (SPEC N6): losses, NAdam, ReduceLROnPlateau, best-validation weights.

:func:`fit_network` trains a :class:`~morphomass.cnn.architectures.GZ2Net` on the 37 unconditional GZ2
probabilities (mean squared error) or an :class:`~morphomass.cnn.architectures.MLNet` on M/L (the L1~ loss,
weights 1/ml_err). Batches are augmented on the device (rotation, zoom, flips; :mod:`morphomass.cnn.augment`).
The validation loss is measured once before training (epoch 0 of the history) and after every epoch; the
learning rate drops by ``lr_factor`` when it has not improved for ``lr_patience`` epochs, and the weights of
the best epoch are kept in memory (never as a pickled checkpoint).

An epoch is one pass over the training set, or, with a compute budget (``train_images``: images seen in all),
``budget / epochs`` images (rounded up to whole batches) drawn from a stream of random permutations of the
training set (:class:`StreamSampler`): the cost of training is then the same whatever the sample size, and
the validation rounds, the learning-rate schedule and the best-weight selection work as with true epochs.

Everything runs on the CPU, one GPU or several (DDP) through the Lightning ``Trainer`` options of
:class:`~morphomass.config.CnnConfig`; with a seed it is deterministic on the CPU.

With DDP (``W`` processes, one per device) ``batch_size`` is per device: a step sees ``W x batch_size``
images. The images of an epoch, and so the compute budget, count all ranks together: Lightning deals the
indices of the training sampler to the ranks in turn (rank ``r`` takes positions ``r, r + W, ...``; the
:class:`StreamSampler` of a budget is wrapped in its ``DistributedSamplerWrapper``, the same seeded stream on
every rank), so ``W`` ranks see ``epoch_images / W`` images each. :func:`epoch_images` rounds a budget's epoch
up to whole steps of ``W x batch_size``, so that every rank has whole batches. The validation set is split
between the ranks the same way (padded by Lightning to a multiple of ``W``) and its loss averaged over them;
the weights are the same on every rank, so every rank picks the same best epoch.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from torch import nn
from torch.utils.data import DataLoader, Sampler, TensorDataset

from morphomass.cnn.augment import augment_batch
from morphomass.config import CnnConfig

__all__ = [
    "CnnModule",
    "FitResult",
    "StreamSampler",
    "Task",
    "epoch_images",
    "fit_network",
    "l1_tilde_loss",
    "weighted_median",
]

logger = logging.getLogger(__name__)

Task = Literal["gz2", "ml"]


def l1_tilde_loss(pred: torch.Tensor, target: torch.Tensor, err: torch.Tensor) -> torch.Tensor:
    """L1~ (SPEC M1): mean of |pred - target| / err over the batch; all three (B,) tensors, same unit."""
    return (torch.abs(pred - target) / err).mean()


def weighted_median(values: NDArray[np.floating], weights: NDArray[np.floating]) -> float:
    """Return the constant ``c`` that minimises ``sum(weights * |values - c|)`` (lower weighted median).

    Parameters
    ----------
    values, weights : (n,) arrays, n >= 1, weights positive

    Returns
    -------
    float
    """
    order = np.argsort(values)
    cumulative = np.cumsum(np.asarray(weights, dtype=np.float64)[order])
    return float(np.asarray(values)[order][np.searchsorted(cumulative, 0.5 * cumulative[-1])])


class CnnModule(L.LightningModule):
    """Lightning wrapper of one network: loss, augmentation, optimiser and learning-rate schedule.

    Parameters
    ----------
    net : torch.nn.Module
        A ``GZ2Net`` (task ``"gz2"``) or an ``MLNet`` (task ``"ml"``), taking (B, 1, S, S) images.
    task : {'gz2', 'ml'}
        ``"gz2"``: batches are (images, probabilities (B, 37)), loss MSE. ``"ml"``: batches are
        (images, ml (B,), ml_err (B,)), loss L1~.
    config : CnnConfig
        Learning rate, schedule, augmentation and seed.
    """

    def __init__(self, net: nn.Module, *, task: Task, config: CnnConfig) -> None:
        super().__init__()
        self.net = net
        self.task = task
        self.config = config
        self._generator: torch.Generator | None = None

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 1, S, S) images -> the network's output."""
        return self.net(images)

    def _augment(self, images: torch.Tensor) -> torch.Tensor:
        if self._generator is None or self._generator.device != images.device:
            self._generator = torch.Generator(device=images.device)
            self._generator.manual_seed(self.config.seed + 7919 * self.global_rank)
        return augment_batch(
            images,
            generator=self._generator,
            rotation_deg=self.config.augment_rotation_deg,
            zoom=self.config.augment_zoom,
            flips=self.config.augment_flips,
        )

    def _loss(self, batch: tuple[torch.Tensor, ...], *, augment: bool) -> torch.Tensor:
        images = batch[0][:, None].float()
        if augment:
            images = self._augment(images)
        pred = self.net(images)
        if self.task == "gz2":
            return F.mse_loss(pred.float(), batch[1])
        return l1_tilde_loss(pred.float(), batch[1], batch[2])

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        """Augmented batch -> loss (logged as ``train_loss``, averaged over the epoch and the ranks)."""
        loss = self._loss(batch, augment=True)
        self.log(
            "train_loss",
            loss,
            on_step=False,
            on_epoch=True,
            prog_bar=True,
            sync_dist=self.trainer.world_size > 1,
            batch_size=len(batch[0]),
        )
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        """Un-augmented batch -> loss (logged as ``val_loss``, averaged over the epoch and the devices)."""
        loss = self._loss(batch, augment=False)
        self.log(
            "val_loss",
            loss,
            on_step=False,
            on_epoch=True,
            prog_bar=True,
            sync_dist=True,
            batch_size=len(batch[0]),
        )

    def configure_optimizers(self) -> dict[str, Any]:
        """NAdam (Adam with Nesterov momentum) and ReduceLROnPlateau on ``val_loss``."""
        optimizer = torch.optim.NAdam(self.net.parameters(), lr=self.config.learning_rate)
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=self.config.lr_factor, patience=self.config.lr_patience
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "monitor": "val_loss", "interval": "epoch"},
        }


def _cpu_copy(net: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in net.state_dict().items()}


def _rank_share(n: int, *, batch_size: int, world_size: int) -> int:
    """Return one rank's images of a pass over ``n`` galaxies, less a last batch of one image."""
    share = math.ceil(n / world_size)  # Lightning pads the ranks' shares to equal sizes
    return share - 1 if share > batch_size and share % batch_size == 1 else share


def epoch_images(
    n_train: int, *, epochs: int, batch_size: int, train_images: int | None = None, world_size: int = 1
) -> int:
    """Return the number of training images of one epoch, all ranks together.

    Parameters
    ----------
    n_train : int
        Training galaxies.
    epochs : int
        Epochs (with a budget: the validation rounds it is split into).
    batch_size : int
        Images per batch and device.
    train_images : int or None
        Compute budget: images seen in all epochs together, by all ranks. None: an epoch is one pass over the
        ``n_train`` galaxies (less one per rank when a rank's last batch would hold a single image).
    world_size : int
        DDP processes (1: a single device).

    Returns
    -------
    int
        With a budget, ``ceil(train_images / (epochs * step)) * step`` with ``step = world_size *
        batch_size``, whatever ``n_train``.
    """
    if train_images is not None:
        step = world_size * batch_size
        return math.ceil(train_images / (epochs * step)) * step
    return world_size * _rank_share(n_train, batch_size=batch_size, world_size=world_size)


class StreamSampler(Sampler[int]):
    """Draw a fixed number of indices per epoch from an endless stream of random permutations of ``range(n)``.

    Every galaxy is seen once before any is seen twice, across epoch boundaries too; the stream depends only
    on ``seed``. Each iteration (epoch) continues where the previous one stopped.

    Parameters
    ----------
    n : int
        Size of the training set (>= 1).
    per_epoch : int
        Indices per epoch.
    seed : int
    """

    def __init__(self, n: int, per_epoch: int, *, seed: int) -> None:
        self.n, self.per_epoch = int(n), int(per_epoch)
        self._generator = torch.Generator().manual_seed(seed)
        self._buffer = torch.empty(0, dtype=torch.int64)

    def __len__(self) -> int:
        return self.per_epoch

    def __iter__(self) -> Iterator[int]:
        while len(self._buffer) < self.per_epoch:
            self._buffer = torch.cat([self._buffer, torch.randperm(self.n, generator=self._generator)])
        chunk, self._buffer = self._buffer[: self.per_epoch], self._buffer[self.per_epoch :]
        return iter(chunk.tolist())


class _HistoryAndBest(L.Callback):
    """Record one row per epoch (losses, learning rate, images, time) and keep a CPU copy of the best weights.

    ``on_images(n)``, if given, is called after every training batch of ``n`` images (progress reports).
    """

    def __init__(self, on_images: Callable[[int], None] | None = None) -> None:
        self.start = time.perf_counter()
        self.rows: list[dict[str, float | None]] = []
        self.best_val_loss = math.inf
        self.best_epoch = 0
        self.best_state: dict[str, torch.Tensor] = {}
        self.images = 0
        self.on_images = on_images

    def begin(self, net: nn.Module, initial_val_loss: float) -> None:
        """Record epoch 0 (the validation loss before training) and the starting weights as the best."""
        self.start = time.perf_counter()
        self.images = 0
        self.rows = [
            {
                "epoch": 0,
                "train_loss": None,
                "val_loss": initial_val_loss,
                "lr": None,
                "images": 0,
                "seconds": 0.0,
            }
        ]
        self.best_val_loss, self.best_epoch, self.best_state = initial_val_loss, 0, _cpu_copy(net)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        n = len(batch[0]) * trainer.world_size  # every device draws its own share of the epoch
        self.images += n
        if self.on_images is not None:
            self.on_images(n)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metrics = trainer.callback_metrics
        val_loss = float(metrics["val_loss"])
        self.rows.append(
            {
                "epoch": trainer.current_epoch + 1,
                "train_loss": float(metrics["train_loss"]),
                "val_loss": val_loss,
                "lr": float(trainer.optimizers[0].param_groups[0]["lr"]),
                "images": self.images,
                "seconds": round(time.perf_counter() - self.start, 3),
            }
        )
        if val_loss < self.best_val_loss:
            self.best_val_loss, self.best_epoch = val_loss, trainer.current_epoch + 1
            self.best_state = _cpu_copy(pl_module.net)  # type: ignore[arg-type]


@dataclass
class FitResult:
    """What :func:`fit_network` returns.

    Attributes
    ----------
    state_dict : dict of str to torch.Tensor
        The network's weights at the best validation epoch (on the CPU).
    history : list of dict
        One row per epoch: ``epoch`` (0 = before training, whose ``train_loss`` and ``lr`` are None),
        ``train_loss``, ``val_loss``, ``lr``, ``images`` (training images seen so far), ``seconds``.
    best_epoch : int
    best_val_loss : float
    seconds : float
        Wall-clock training time.
    n_train, n_val : int
        Galaxies used for training and validation.
    images_seen : int
        Training images seen in all epochs by all ranks (augmented draws, repeats counted).
    epoch_images : int
        Training images per epoch (all ranks together).
    world_size : int
        DDP processes that trained it (1: a single device).
    """

    state_dict: dict[str, torch.Tensor]
    history: list[dict[str, float | None]] = field(default_factory=list)
    best_epoch: int = 0
    best_val_loss: float = math.nan
    seconds: float = 0.0
    n_train: int = 0
    n_val: int = 0
    images_seen: int = 0
    epoch_images: int = 0
    world_size: int = 1


@contextlib.contextmanager
def _quiet_lightning() -> Iterator[None]:
    """Quiet Lightning during one fit and put back the global switches it sets.

    ``Trainer(deterministic=...)`` switches torch's deterministic algorithms on or off for the whole process;
    the previous state is restored. Lightning's per-Trainer banners (device availability, tips) are kept out
    of the output (:func:`fit_network` logs the chosen device instead), and so are two known harmless
    warnings.
    """
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    banner = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    level = banner.level
    banner.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            # the data sit in memory and are augmented on the device: no loader workers are needed
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
            yield
    finally:
        banner.setLevel(level)
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


def _loader(
    arrays: tuple[NDArray[Any], ...],
    *,
    batch_size: int,
    shuffle: bool,
    seed: int,
    per_epoch: int | None = None,
    world_size: int = 1,
) -> DataLoader:
    """Return a loader of in-memory arrays (with DDP, Lightning gives it a sampler per rank)."""
    dataset = TensorDataset(*(torch.from_numpy(np.ascontiguousarray(a)) for a in arrays))
    n = len(dataset)
    if per_epoch is not None:  # a compute budget: a whole number of batches per epoch, none of one image
        return DataLoader(dataset, batch_size=batch_size, sampler=StreamSampler(n, per_epoch, seed=seed))
    share = math.ceil(n / world_size)  # a rank's images per epoch
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=torch.Generator().manual_seed(seed) if shuffle else None,
        # a last batch of one image would break batch normalisation in training mode
        drop_last=shuffle and share > batch_size and share % batch_size == 1,
    )


def fit_network(
    net: nn.Module,
    train: tuple[NDArray[Any], ...],
    val: tuple[NDArray[Any], ...],
    *,
    task: Task,
    config: CnnConfig,
    epochs: int,
    train_images: int | None = None,
    progress: bool = True,
    on_images: Callable[[int], None] | None = None,
    name: str = "",
) -> FitResult:
    """Train ``net`` and return the weights of its best validation epoch.

    Parameters
    ----------
    net : torch.nn.Module
        A ``GZ2Net`` or ``MLNet``; trained in place, then left holding its best weights (on the CPU).
    train, val : tuple of arrays
        ``(images (n, S, S) float32/16 in [0, 1], targets (n, 37) float32)`` for task ``"gz2"``;
        ``(images, ml (n,) float32, ml_err (n,) float32)`` for task ``"ml"``.
    task : {'gz2', 'ml'}
    config : CnnConfig
        Batch size (per device), optimiser, schedule, augmentation, seed and the Lightning device options.
        With DDP this is one of the ranks, in processes started beforehand (torchrun, srun,
        :func:`morphomass.cnn.parallel.run_ranks`): every rank calls this function with the same arguments.
    epochs : int
        Passes over the training set or, with ``train_images``, validation rounds.
    train_images : int or None
        Compute budget: training images seen in all, by all ranks together (rounded up to whole steps per
        epoch, see :func:`epoch_images`), drawn by :class:`StreamSampler`, whatever the size of ``train``.
        None: ``epochs`` passes over ``train``.
    progress : bool
        Show Lightning's rich progress bar.
    on_images : callable or None
        Called with the number of images of every training batch (progress reports from worker processes).
    name : str
        Network name, prefixed to the log messages.

    Returns
    -------
    FitResult
    """
    module = CnnModule(net.train(), task=task, config=config)  # Lightning keeps the modes it is given
    start = time.perf_counter()
    with _quiet_lightning():
        history = _HistoryAndBest(on_images)
        callbacks: list[L.Callback] = [history]
        if progress:
            from lightning.pytorch.callbacks import RichProgressBar

            callbacks.append(RichProgressBar())
        trainer = L.Trainer(
            max_epochs=epochs,
            accelerator=config.accelerator,
            devices=config.devices,
            strategy=config.strategy,
            num_nodes=config.num_nodes,
            precision=config.precision,
            # "warn": some backward passes (adaptive pooling) have no deterministic CUDA kernel; torch warns
            # there instead of failing; every CPU kernel used here is deterministic
            deterministic="warn" if config.deterministic else False,
            logger=False,
            enable_checkpointing=False,
            enable_model_summary=False,
            enable_progress_bar=progress,
            num_sanity_val_steps=0,
            callbacks=callbacks,
        )
        world_size = trainer.world_size  # the DDP processes (1 on a single device)
        per_epoch = epoch_images(
            len(train[0]),
            epochs=epochs,
            batch_size=config.batch_size,
            train_images=train_images,
            world_size=world_size,
        )
        train_loader = _loader(
            train,
            batch_size=config.batch_size,
            shuffle=True,
            seed=config.seed,
            per_epoch=None if train_images is None else per_epoch,
            world_size=world_size,
        )
        val_loader = _loader(val, batch_size=config.inference_batch_size, shuffle=False, seed=config.seed)
        prefix = f"{name}: " if name else ""
        logger.info(
            "%straining on %s x %d (%s, precision %s), %d epochs of %d images",
            prefix,
            type(trainer.accelerator).__name__,
            trainer.num_devices,
            type(trainer.strategy).__name__,
            config.precision,
            epochs,
            per_epoch,
        )
        initial_val_loss = float(trainer.validate(module, val_loader, verbose=False)[0]["val_loss"])
        history.begin(net, initial_val_loss)
        trainer.fit(module, train_loader, val_loader)
    seconds = time.perf_counter() - start
    net.cpu()
    net.load_state_dict(history.best_state)
    logger.info(
        "%sbest validation loss %.4g at epoch %d of %d (before training %.4g), %d images, %.1f s",
        prefix,
        history.best_val_loss,
        history.best_epoch,
        epochs,
        initial_val_loss,
        history.images,
        seconds,
    )
    return FitResult(
        state_dict=history.best_state,
        history=history.rows,
        best_epoch=history.best_epoch,
        best_val_loss=history.best_val_loss,
        seconds=seconds,
        n_train=len(train[0]),
        n_val=len(val[0]),
        images_seen=history.images,
        epoch_images=per_epoch,
        world_size=world_size,
    )
