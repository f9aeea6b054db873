"""Feature extraction (SPEC F4): trained networks on every galaxy, batched, in eval mode, no augmentation.

:func:`extract_features` is the one inference path of the extract stage and of ``predict``: on a CUDA device
channels-last, bf16 autocast (fp32 on request), pinned-memory batches with the next one copied while the
current one runs and a batch size from the free GPU memory on request (``"auto"``); on the CPU plain float32
forward passes of the same batches.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from numpy.typing import NDArray
from torch import nn

from morphomass.cnn.columns import network_columns
from morphomass.cnn.data import ImageGroup
from morphomass.cnn.weights import load_network
from morphomass.errors import ConfigError, InputDataError
from morphomass.progress import progress_bar

__all__ = [
    "AUTO_MAX_BATCH",
    "AUTO_MEMORY_FRACTION",
    "CPU_AUTO_BATCH",
    "batch_from_memory",
    "drop_dead_columns",
    "extract_feature_table",
    "extract_features",
    "feature_table",
    "resolve_batch_size",
    "resolve_device",
]


def resolve_device(accelerator: str) -> torch.device:
    """Resolve the inference device: ``"cpu"``, ``"gpu"`` (CUDA, must exist) or ``"auto"`` (CUDA if any).

    Raises
    ------
    ConfigError
        If ``"gpu"`` is asked for and torch sees no CUDA device, or the value is unknown.
    """
    if accelerator == "cpu":
        return torch.device("cpu")
    if accelerator in ("gpu", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if accelerator == "gpu":
            msg = "cnn.accelerator = 'gpu' but torch sees no CUDA device; use 'cpu' or 'auto'"
            raise ConfigError(msg)
        return torch.device("cpu")
    msg = f"cnn.accelerator must be 'auto', 'cpu' or 'gpu', got {accelerator!r}"
    raise ConfigError(msg)


#: Batch size that ``batch_size="auto"`` gives on the CPU (the extract stage's default).
CPU_AUTO_BATCH = 256
#: Largest batch that ``batch_size="auto"`` gives on a GPU.
AUTO_MAX_BATCH = 4096
#: Share of the GPU's free memory that ``batch_size="auto"`` plans to use for one batch's activations.
AUTO_MEMORY_FRACTION = 0.5
#: Images of the probe batch whose peak memory sizes ``batch_size="auto"`` on a GPU.
_PROBE_BATCH = 8

BatchSize = int | Literal["auto"]
Precision = Literal["bf16", "fp32"]


def batch_from_memory(
    free_bytes: float,
    bytes_per_image: float,
    *,
    fraction: float = AUTO_MEMORY_FRACTION,
    largest: int = AUTO_MAX_BATCH,
) -> int:
    """Largest power of two of images whose activations fit in ``fraction`` of the free memory.

    Parameters
    ----------
    free_bytes : float
        Free device memory.
    bytes_per_image : float
        Peak memory of one image's forward pass (measured on a probe batch).
    fraction : float
        Share of ``free_bytes`` to plan for (the rest covers fragmentation and the copies of the next batch).
    largest : int
        Upper bound of the result.

    Returns
    -------
    int
        A power of two between 1 and ``largest``.
    """
    if bytes_per_image <= 0:
        return largest
    fits = int(fraction * max(free_bytes, 0.0) // bytes_per_image)
    if fits < 1:
        return 1
    return min(1 << (fits.bit_length() - 1), largest)


def _autocast(device: torch.device, precision: Precision) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on a CUDA device when asked for; nothing on the CPU (bf16 is slower there)."""
    if device.type == "cuda" and precision == "bf16":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _check_inference_options(batch_size: BatchSize, precision: Precision) -> None:
    if batch_size != "auto" and (
        isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
    ):
        msg = f"batch_size must be a positive integer or 'auto', got {batch_size!r}"
        raise ConfigError(msg)
    if precision not in ("bf16", "fp32"):
        msg = f"precision must be 'bf16' or 'fp32', got {precision!r}"
        raise ConfigError(msg)


def resolve_batch_size(
    net: nn.Module,
    image_shape: tuple[int, ...],
    batch_size: BatchSize,
    *,
    device: torch.device,
    precision: Precision = "bf16",
) -> int:
    """Choose the batch size to run ``net`` with: ``batch_size`` itself, or for ``"auto"`` one by the device.

    ``"auto"`` is :data:`CPU_AUTO_BATCH` on the CPU; on a CUDA device it runs a probe batch of
    :data:`_PROBE_BATCH` images (eval mode, under the same autocast) and takes :func:`batch_from_memory` of
    the free memory and the probe's peak memory per image. ``net`` must already be on ``device``.
    """
    _check_inference_options(batch_size, precision)
    if batch_size != "auto":
        return int(batch_size)
    if device.type != "cuda":
        return CPU_AUTO_BATCH
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    probe = torch.zeros((_PROBE_BATCH, 1, *image_shape), device=device)
    with torch.inference_mode(), _autocast(device, precision):
        net.forward_features(probe.contiguous(memory_format=torch.channels_last))
    torch.cuda.synchronize(device)
    per_image = (torch.cuda.max_memory_allocated(device) - before) / _PROBE_BATCH
    del probe
    free, _ = torch.cuda.mem_get_info(device)
    return batch_from_memory(free, per_image)


def _cpu_batches(images: Any, batch_size: int) -> Iterator[torch.Tensor]:
    """(b, 1, S, S) float32 tensors of consecutive rows of ``images`` (read one batch at a time)."""
    for start in range(0, int(images.shape[0]), batch_size):
        batch = np.asarray(images[start : start + batch_size], dtype=np.float32)
        yield torch.from_numpy(batch)[:, None]


def _cuda_batches(images: Any, batch_size: int, device: torch.device) -> Iterator[torch.Tensor]:
    """As :func:`_cpu_batches`, on ``device`` in channels-last layout, copied from pinned host memory.

    Each batch is read into one of two pinned buffers and copied on a side stream (``non_blocking``); the
    compute stream waits for that copy only. Asking for the next batch while the current one's forward pass is
    queued therefore reads it and starts its copy while the GPU computes. A buffer is refilled only after its
    previous copy finished.
    """
    n = int(images.shape[0])
    if n == 0:
        return
    side = torch.cuda.Stream(device)
    shape = (min(batch_size, n), 1, *images.shape[1:])
    buffers = [torch.empty(shape, dtype=torch.float32).pin_memory() for _ in range(2)]
    done: list[torch.cuda.Event | None] = [None, None]
    for k, start in enumerate(range(0, n, batch_size)):
        slot = k % 2
        pending = done[slot]
        if pending is not None:
            pending.synchronize()
        rows = images[start : start + batch_size]
        host = buffers[slot][: len(rows)]
        np.copyto(host.numpy()[:, 0], np.asarray(rows), casting="same_kind")
        with torch.cuda.stream(side):
            moved = host.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            copied = torch.cuda.Event()
            copied.record(side)
        done[slot] = copied
        compute = torch.cuda.current_stream(device)
        compute.wait_event(copied)
        moved.record_stream(compute)
        yield moved


def extract_features(
    net: nn.Module,
    images: Any,
    *,
    batch_size: BatchSize = 256,
    device: torch.device | str = "cpu",
    precision: Precision = "bf16",
    progress: bool = False,
    description: str = "extract",
) -> dict[str, NDArray[np.float32]]:
    """Apply a network's ``forward_features`` to every image, batch by batch.

    One code path for both devices: ``torch.inference_mode``, batches read one at a time and the next one read
    while the current one runs. On a CUDA device the network and the batches are channels-last, the batches
    come through pinned memory on a side stream (:func:`_cuda_batches`) and ``precision="bf16"`` runs the
    forward pass under ``torch.autocast("cuda", dtype=torch.bfloat16)``. On the CPU there is no autocast and
    no layout change, so the outputs are those of a plain float32 forward pass of the same batches.

    Parameters
    ----------
    net : GZ2Net or MLNet
        Put in eval mode (dropout off, batch-norm statistics frozen) on ``device``, channels-last on a GPU;
        not modified otherwise.
    images : array-like, shape (N, S, S), float32 or float16 in [0, 1]
        Anything that slices into NumPy arrays (an ndarray or a zarr array, read one batch at a time).
    batch_size : int or 'auto'
        Images per forward pass; ``"auto"``: :func:`resolve_batch_size`. On the CPU the outputs depend
        (in the last bits) on the batch boundaries, as the CPU kernels' summation order does.
    device : torch.device or str
    precision : {'bf16', 'fp32'}
        Autocast on a CUDA device (``"fp32"``: the float32 fallback); the CPU always computes in float32.
    progress : bool
        Show a progress bar.
    description : str
        Label of the progress bar.

    Returns
    -------
    dict of str to ndarray of float32
        The outputs of ``forward_features``, each (N, ...) (``p`` and ``trunk`` for a GZ2 network, ``f`` and
        ``ml`` for CNN4).

    Raises
    ------
    ConfigError
        If ``batch_size`` or ``precision`` is not one of the accepted values.
    """
    _check_inference_options(batch_size, precision)
    device = torch.device(device)
    net = net.to(device).eval()
    if device.type == "cuda":
        net = net.to(memory_format=torch.channels_last)
        batches = _cuda_batches(
            images,
            resolve_batch_size(net, images.shape[1:], batch_size, device=device, precision=precision),
            device,
        )
    else:
        batches = _cpu_batches(images, resolve_batch_size(net, images.shape[1:], batch_size, device=device))
    n = int(images.shape[0])
    chunks: dict[str, list[NDArray[np.float32]]] = {}
    with torch.inference_mode(), progress_bar(description, total=n, enabled=progress) as advance:
        current = next(batches, None)
        while current is not None:
            with _autocast(device, precision):
                out = net.forward_features(current)
            following = next(batches, None)  # read and copy the next batch while this one runs
            for key, value in out.items():
                chunks.setdefault(key, []).append(value.float().cpu().numpy())
            advance(int(current.shape[0]))
            current = following
    if not chunks:
        probe = torch.zeros((1, 1, *images.shape[1:]), device=device)
        with torch.inference_mode():
            shapes = {k: v.shape[1:] for k, v in net.forward_features(probe).items()}
        return {k: np.empty((0, *s), dtype=np.float32) for k, s in shapes.items()}
    return {key: np.concatenate(parts) for key, parts in chunks.items()}


def _feature_columns(
    name: str, card: dict[str, Any], features: dict[str, NDArray[np.float32]]
) -> dict[str, list[str]]:
    """Output key of ``forward_features`` -> column names of one network (SPEC F4), widths as output."""
    return network_columns(
        name,
        kind=card["kind"],
        trunk_features=features["trunk"].shape[1] if "trunk" in features else 0,
        ml_features=features["f"].shape[1] if "f" in features else 0,
    )


def extract_feature_table(
    networks: Mapping[str, tuple[nn.Module, dict[str, Any]]],
    images: Mapping[int, Any],
    *,
    batch_size: BatchSize = 256,
    device: torch.device | str = "cpu",
    precision: Precision = "bf16",
    progress: bool = False,
) -> pd.DataFrame:
    """Compute the CNN feature columns (SPEC F4) of N galaxies as ``extract`` writes them (dead ones kept).

    Parameters
    ----------
    networks : mapping of str to (network, card)
        Network name -> the trained network and its card (:func:`morphomass.cnn.weights.load_network`), in the
        column order wanted (``cnn1``, ``cnn2``, ``cnn3``, ``cnn4``).
    images : mapping of int to array-like, shape (N, S, S)
        Input size S -> the N galaxies' log-scaled images in [0, 1] at that size, the same galaxies in the
        same order for every size (ndarrays or zarr arrays).
    batch_size : int or 'auto'
    device : torch.device or str
    precision : {'bf16', 'fp32'}
        Autocast on a CUDA device (:func:`extract_features`); the CPU always computes in float32.
    progress : bool

    Returns
    -------
    pandas.DataFrame
        N rows, float32 columns: ``<net>_p_<task>_<answer>`` (37) per GZ2 network, ``cnn1_trunk_0000`` ... for
        CNN1's pooled trunk, ``cnn4_f00`` ... ``cnn4_f36`` for CNN4; 2196 columns for the paper's networks.

    Raises
    ------
    InputDataError
        If no images of a network's input size are given.
    """
    outputs = {}
    for name, (net, card) in networks.items():
        size = int(card["input_size"])
        if size not in images:
            msg = f"network {name} needs {size}-pixel images; got sizes {sorted(images)}"
            raise InputDataError(msg)
        outputs[name] = extract_features(
            net,
            images[size],
            batch_size=batch_size,
            device=device,
            precision=precision,
            progress=progress,
            description=f"extract {name}",
        )
    return feature_table({name: card for name, (_, card) in networks.items()}, outputs)


def feature_table(
    cards: Mapping[str, dict[str, Any]], outputs: Mapping[str, dict[str, NDArray[np.float32]]]
) -> pd.DataFrame:
    """Name and order the networks' outputs as the CNN feature columns of SPEC F4 (dead ones kept).

    Parameters
    ----------
    cards : mapping of str to dict
        Network name -> its card, in the column order wanted.
    outputs : mapping of str to dict of str to ndarray
        Network name -> :func:`extract_features` of the N galaxies.

    Returns
    -------
    pandas.DataFrame
        As :func:`extract_feature_table`.
    """
    blocks = []
    for name, card in cards.items():
        for key, columns in _feature_columns(name, card, outputs[name]).items():
            blocks.append(pd.DataFrame(outputs[name][key], columns=columns))
    return pd.concat(blocks, axis=1)


def drop_dead_columns(
    features: pd.DataFrame, train_mask: NDArray[np.bool_], *, keep: tuple[str, ...] = ("objid",)
) -> tuple[pd.DataFrame, list[str]]:
    """Remove the feature columns that are exactly zero for every training galaxy (dead neurons).

    Parameters
    ----------
    features : pandas.DataFrame
        One row per galaxy.
    train_mask : (n_rows,) bool
        Rows of the training galaxies.
    keep : tuple of str
        Columns never dropped.

    Returns
    -------
    features : pandas.DataFrame
        Without the dead columns (a new frame).
    dropped : list of str
        Their names, in column order.
    """
    train_mask = np.asarray(train_mask, dtype=bool)
    if train_mask.shape != (len(features),):
        msg = f"train_mask must have shape ({len(features)},), got {train_mask.shape}"
        raise ValueError(msg)
    candidates = [c for c in features.columns if c not in keep]
    values = features.loc[train_mask, candidates].to_numpy()
    dead = [c for c, is_dead in zip(candidates, (values == 0).all(axis=0), strict=True) if is_dead]
    return features.drop(columns=dead), dead


#: Networks loaded by an extraction worker, by (models dir, names): loaded once per process.
_LOADED: dict[tuple[str, tuple[str, ...]], dict[str, tuple[torch.nn.Module, dict[str, Any]]]] = {}


def extract_rows(
    out_dir: Path,
    names: tuple[str, ...],
    images_zarr: Path,
    start: int,
    stop: int,
    batch_size: int,
    *,
    report: Callable[[int], None],
) -> dict[str, dict[str, np.ndarray]]:
    """Compute every network's outputs for rows ``start:stop`` of ``images.zarr`` (a worker process's job).

    The networks are loaded from ``out_dir`` once per process (kept for the next rows); ``report(n)`` counts
    ``n`` images done per network. No Lightning is imported here, so a worker starts faster.

    Returns
    -------
    dict
        Network name -> its :func:`extract_features` outputs for those rows.
    """
    if (str(out_dir), names) not in _LOADED:
        _LOADED[str(out_dir), names] = {name: load_network(out_dir, name) for name in names}
    loaded = _LOADED[str(out_dir), names]
    outputs = {}
    for name, (net, card) in loaded.items():
        images = ImageGroup(images_zarr, int(card["input_size"])).images[start:stop]
        outputs[name] = extract_features(net, images, batch_size=batch_size, device="cpu")
        report(stop - start)
    return outputs
