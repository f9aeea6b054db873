"""Feature extraction (SPEC F4): trained networks on every galaxy, batched, in eval mode, no augmentation."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

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
    "drop_dead_columns",
    "extract_feature_table",
    "extract_features",
    "feature_table",
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


def extract_features(
    net: nn.Module,
    images: Any,
    *,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    progress: bool = False,
    description: str = "extract",
) -> dict[str, NDArray[np.float32]]:
    """Apply a network's ``forward_features`` to every image, batch by batch.

    Parameters
    ----------
    net : GZ2Net or MLNet
        Put in eval mode (dropout off, batch-norm statistics frozen); not modified otherwise.
    images : array-like, shape (N, S, S), float32 or float16 in [0, 1]
        Anything that slices into NumPy arrays (an ndarray or a zarr array, read one batch at a time).
    batch_size : int
    device : torch.device or str
    progress : bool
        Show a progress bar.
    description : str
        Label of the progress bar.

    Returns
    -------
    dict of str to ndarray of float32
        The outputs of ``forward_features``, each (N, ...) (``p`` and ``trunk`` for a GZ2 network, ``f`` and
        ``ml`` for CNN4).
    """
    net = net.to(device).eval()
    n = int(images.shape[0])
    chunks: dict[str, list[NDArray[np.float32]]] = {}
    with torch.inference_mode(), progress_bar(description, total=n, enabled=progress) as advance:
        for start in range(0, n, batch_size):
            batch = np.asarray(images[start : start + batch_size], dtype=np.float32)
            out = net.forward_features(torch.from_numpy(batch)[:, None].to(device))
            for key, value in out.items():
                chunks.setdefault(key, []).append(value.float().cpu().numpy())
            advance(len(batch))
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
    batch_size: int = 256,
    device: torch.device | str = "cpu",
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
    batch_size : int
    device : torch.device or str
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
