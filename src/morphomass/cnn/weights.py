"""Saving and loading trained networks: ``models/cnn/<net>.safetensors``, ``<net>.json`` card, ``<net>.csv``.

The card (DESIGN §2) holds everything needed to rebuild the architecture (``kind``, ``backbone``,
``input_size``, ``dropout``, ``base``), the training history and provenance (``train_key``, versions). The CSV
log has one row per epoch: ``epoch, train_loss, val_loss, lr, images, seconds`` (``images``: training images
seen so far; epoch 0 is the validation loss before training; its ``train_loss`` and ``lr`` are empty, null in
the card).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save
from torch import nn

from morphomass.cnn.architectures import GZ2Net, MLNet, build_gz2_net, make_ml_net
from morphomass.errors import InputDataError, WorkdirError
from morphomass.workdir import write_bytes_atomic, write_json_atomic, write_text_atomic

__all__ = [
    "CARD_KEYS",
    "build_from_card",
    "card_path",
    "load_card",
    "load_network",
    "network_from_state",
    "read_weights",
    "save_network",
    "weights_path",
]

#: Keys every card must have to rebuild its network.
CARD_KEYS: tuple[str, ...] = ("name", "kind", "backbone", "input_size", "dropout", "train_key")
HISTORY_FIELDS: tuple[str, ...] = ("epoch", "train_loss", "val_loss", "lr", "images", "seconds")


def weights_path(models_dir: Path, name: str) -> Path:
    """``<models_dir>/<name>.safetensors``."""
    return Path(models_dir) / f"{name}.safetensors"


def card_path(models_dir: Path, name: str) -> Path:
    """``<models_dir>/<name>.json``."""
    return Path(models_dir) / f"{name}.json"


def _history_csv(history: list[dict[str, float | None]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(HISTORY_FIELDS), lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: row.get(k) for k in HISTORY_FIELDS})
    return buffer.getvalue()


def save_network(models_dir: Path, name: str, net: nn.Module, card: dict[str, Any]) -> list[Path]:
    """Write the weights, the JSON card and the CSV training log of one network, each atomically.

    The card is written last, so a card on disk always belongs to complete weights. Every file gets the mode
    the process umask gives a new file (0644 under the usual umask 022), so a copied bundle is readable by
    other users.

    Parameters
    ----------
    models_dir : Path
        ``models/cnn``.
    name : str
        Network name (``cnn1`` ... ``cnn4``).
    net : torch.nn.Module
    card : dict
        JSON-serialisable; must hold :data:`CARD_KEYS`, and ``history`` (list of per-epoch rows) if a log is
        wanted.

    Returns
    -------
    list of Path
        The files written.
    """
    missing = [k for k in CARD_KEYS if k not in card]
    if missing:
        msg = f"card of {name} lacks {missing}"
        raise ValueError(msg)
    models_dir = Path(models_dir)
    weights = weights_path(models_dir, name)
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    # serialised in memory and written by open(): safetensors' own save_file creates the file with mode 0600
    data = save(state, metadata={"name": name, "train_key": str(card["train_key"])})
    write_bytes_atomic(weights, data)
    written = [weights]
    if card.get("history"):
        log = models_dir / f"{name}.csv"
        write_text_atomic(log, _history_csv(card["history"]))
        written.append(log)
    write_json_atomic(card_path(models_dir, name), card)
    return [*written, card_path(models_dir, name)]


def load_card(models_dir: Path, name: str) -> dict[str, Any] | None:
    """Load the card of a saved network, or return None when the network (card or weights) is absent.

    Raises
    ------
    InputDataError
        If the card exists but is not a JSON object with :data:`CARD_KEYS`.
    """
    path = card_path(models_dir, name)
    if not path.exists() or not weights_path(models_dir, name).exists():
        return None
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
        msg = f"{path} is not valid JSON ({err}); rerun 'morphomass train-cnn --force'"
        raise InputDataError(msg) from err
    missing = [k for k in CARD_KEYS if not isinstance(card, dict) or k not in card]
    if missing:
        msg = f"{path}: missing key(s) {missing}; rerun 'morphomass train-cnn --force'"
        raise InputDataError(msg)
    return card


def build_from_card(card: dict[str, Any]) -> GZ2Net | MLNet:
    """Build an untrained network with the architecture a card describes (random weights, no download)."""
    net = build_gz2_net(card["backbone"], dropout=float(card["dropout"]))
    if card["kind"] == "ml":
        return make_ml_net(net)
    if card["kind"] != "gz2":
        msg = f"card of {card['name']}: kind must be 'gz2' or 'ml', got {card['kind']!r}"
        raise InputDataError(msg)
    return net


def read_weights(data: bytes, *, where: str | Path) -> dict[str, torch.Tensor]:
    """Parse the bytes of a safetensors file into CPU tensors.

    Parameters
    ----------
    data : bytes
        The whole file.
    where : str or Path
        The file's name, for the message.

    Raises
    ------
    InputDataError
        If the bytes are not a valid safetensors file (bad header, truncated data).
    """
    try:
        return load(data)
    except SafetensorError as err:
        msg = f"{where} is not a valid safetensors file ({err})"
        raise InputDataError(msg) from err


def network_from_state(
    card: dict[str, Any], state: dict[str, torch.Tensor], *, where: str | Path
) -> GZ2Net | MLNet:
    """Build the network a card describes, load its weights and put it in eval mode (on the CPU).

    Parameters
    ----------
    card : dict
        The network's card (:data:`CARD_KEYS`).
    state : dict of str to torch.Tensor
        Its weights (:func:`read_weights`).
    where : str or Path
        The weight file's name, for the message.

    Raises
    ------
    InputDataError
        If the card names an unknown architecture or the weights do not fit it.
    """
    try:
        net = build_from_card(card)
        net.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError, TypeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        msg = f"{where}: weights do not fit the architecture of its card ({first})"
        raise InputDataError(msg) from err
    return net.eval()


def load_network(models_dir: Path, name: str) -> tuple[GZ2Net | MLNet, dict[str, Any]]:
    """Rebuild a saved network, load its weights and put it in eval mode.

    Returns
    -------
    net : GZ2Net or MLNet
        On the CPU, in eval mode.
    card : dict

    Raises
    ------
    WorkdirError
        If the network was not saved in ``models_dir``.
    InputDataError
        If its card or weights cannot be read, are malformed or do not match the architecture.
    """
    card = load_card(models_dir, name)
    if card is None:
        path = weights_path(models_dir, name)
        msg = f"{path} (and its .json card) not found; run 'morphomass train-cnn' first"
        raise WorkdirError(msg)
    path = weights_path(models_dir, name)
    try:
        data = path.read_bytes()
    except OSError as err:
        msg = f"cannot read {path} ({err.strerror or err})"
        raise InputDataError(msg) from err
    return network_from_state(card, read_weights(data, where=path), where=path), card
