"""Frozen encoders as feature sources beside CNN1-4 (``cnn.encoders.<name>``; issue 18).

A configured encoder source is loaded frozen (:func:`load_configured_encoder`: a timm hub name, from the hub
or the local Hugging Face cache, or a local weights file), applied to the log-scaled images of
``images.zarr`` at its configured input size and channel count, and its pooled features are optionally
reduced by a PCA fitted on the training galaxies only (:func:`fit_encoder_source`). The result, an
:class:`EncoderSource`, gives the feature columns ``enc_<name>_0000`` ... (:func:`encoder_source_features`).

:func:`save_encoder_source` writes what a prediction needs, with no network and no training data, into a
folder (the work directory's ``models/encoders``): ``<name>.safetensors`` (the weights, whose safetensors
header names the architecture, input size, channels and standardisation), ``<name>_pca.safetensors`` (the
PCA, when there is one; never a pickle) and ``<name>.json`` (the card: the configuration, the columns and
the SHA-256 of both files). :func:`read_encoder_source` and :func:`encoder_source_from_bytes` rebuild the
same :class:`EncoderSource` from them, the latter from bytes already read and checked (a bundle's).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from morphomass.cnn.encoders import (
    Encoder,
    Pca,
    apply_pca,
    encode,
    encoder_columns,
    fit_pca,
    load_encoder,
    load_pca,
    save_encoder_weights,
    save_pca,
)
from morphomass.config import EncoderSourceConfig
from morphomass.errors import ConfigError, InputDataError
from morphomass.workdir import write_json_atomic

__all__ = [
    "ENCODER_CARD_FORMAT",
    "EncoderSource",
    "encoder_card_name",
    "encoder_pca_name",
    "encoder_source_features",
    "encoder_source_frame",
    "encoder_source_from_bytes",
    "encoder_sources_frame",
    "encoder_weights_name",
    "fit_encoder_source",
    "load_configured_encoder",
    "read_encoder_source",
    "read_encoder_sources",
    "save_encoder_source",
]

logger = logging.getLogger(__name__)

#: ``format`` of an encoder source's card (``<name>.json``).
ENCODER_CARD_FORMAT = "morphomass-encoder-source-1"
#: Keys every card has.
CARD_KEYS: tuple[str, ...] = (
    "format",
    "name",
    "source",
    "architecture",
    "input_size",
    "in_chans",
    "standardise",
    "num_features",
    "pca_components",
    "columns",
    "weights",
    "weights_sha256",
    "pca",
    "pca_sha256",
)


def encoder_weights_name(name: str) -> str:
    """File name of an encoder source's weights: ``<name>.safetensors``."""
    return f"{name}.safetensors"


def encoder_pca_name(name: str) -> str:
    """File name of an encoder source's PCA: ``<name>_pca.safetensors``."""
    return f"{name}_pca.safetensors"


def encoder_card_name(name: str) -> str:
    """File name of an encoder source's card: ``<name>.json``."""
    return f"{name}.json"


@dataclass(frozen=True, eq=False)
class EncoderSource:
    """A frozen encoder and the PCA of its features: one feature source ``enc_<name>_*``.

    Attributes
    ----------
    encoder : Encoder
        Frozen; ``encoder.name`` names the columns and ``encoder.input_size`` is the image side it is fed.
    pca : Pca or None
        Fitted on the training galaxies' pooled features; None keeps every pooled feature.
    standardise : bool
        Standardise the images with the encoder's pretrained mean and std before encoding.
    """

    encoder: Encoder
    pca: Pca | None = None
    standardise: bool = False

    @property
    def name(self) -> str:
        """The source's name (``cnn.encoders.<name>``)."""
        return self.encoder.name

    @property
    def n_features(self) -> int:
        """Number of feature columns: the PCA's components, else the encoder's pooled features."""
        return int(self.pca.components.shape[0]) if self.pca is not None else self.encoder.num_features

    @property
    def columns(self) -> list[str]:
        """The feature columns ``enc_<name>_0000`` ... in order."""
        return encoder_columns(self.name, self.n_features)


def load_configured_encoder(name: str, config: EncoderSourceConfig) -> Encoder:
    """Load the frozen encoder of ``cnn.encoders.<name>``, fed images of its configured input size.

    Parameters
    ----------
    name : str
        The source's name (column names ``enc_<name>_*``).
    config : EncoderSourceConfig

    Returns
    -------
    Encoder
        On the CPU, ``input_size`` = ``config.input_size`` (a convolutional encoder takes any size; the one of
        its pretrained configuration is only its training size).

    Raises
    ------
    ConfigError, InputDataError
        As :func:`morphomass.cnn.encoders.load_encoder`, the message starting with ``cnn.encoders.<name>``.
    """
    try:
        encoder = load_encoder(config.source, config.in_chans, architecture=config.architecture, name=name)
    except (ConfigError, InputDataError) as err:
        raise type(err)(f"cnn.encoders.{name}: {err}") from err
    if encoder.input_size != config.input_size:
        logger.info(
            "encoder %s (%s) was pretrained at %d px; fed %d-pixel images as configured",
            name,
            encoder.architecture,
            encoder.input_size,
            config.input_size,
        )
    return dataclasses.replace(encoder, input_size=config.input_size)


def fit_encoder_source(
    encoder: Encoder,
    images: ArrayLike,
    train_rows: ArrayLike,
    *,
    pca_components: int | None = None,
    standardise: bool = False,
    batch_size: int = 64,
    progress: bool = False,
) -> tuple[EncoderSource, NDArray[np.float32]]:
    """Encode every image and fit the source's PCA on the training rows only.

    Parameters
    ----------
    encoder : Encoder
    images : array_like, shape (N, S, S)
        Log-scaled images in [0, 1] at ``encoder.input_size`` (a zarr array is read one batch at a time).
    train_rows : array_like of bool, shape (N,)
        The training galaxies among the N: the only rows the PCA sees.
    pca_components : int or None
        Components to keep; None keeps the pooled features (no PCA).
    standardise : bool
    batch_size : int
    progress : bool

    Returns
    -------
    source : EncoderSource
    features : numpy.ndarray, shape (N, K), float32
        ``encoder_source_features(source, images)``, computed once.

    Raises
    ------
    InputDataError
        If ``train_rows`` is not (N,) or selects no galaxy, or the images are not (N, S, S) at the input size.
    ConfigError
        If ``pca_components`` exceeds the training galaxies or the pooled features.
    """
    shape = tuple(getattr(images, "shape", np.shape(images)))
    train_rows = np.asarray(train_rows, dtype=bool)
    if train_rows.shape != shape[:1]:
        msg = f"encoder {encoder.name}: train_rows must have shape {shape[:1]}, got {train_rows.shape}"
        raise InputDataError(msg)
    raw = encode(encoder, images, batch_size=batch_size, standardise=standardise, progress=progress)
    source = EncoderSource(encoder=encoder, pca=None, standardise=standardise)
    if pca_components is None:
        return source, raw
    if not train_rows.any():
        msg = f"encoder {encoder.name}: no training galaxy to fit its PCA on"
        raise InputDataError(msg)
    try:
        pca = fit_pca(raw[train_rows], pca_components)
    except ConfigError as err:
        msg = (
            f"cnn.encoders.{encoder.name}.pca_components = {pca_components}: more than the "
            f"{int(train_rows.sum())} training galaxies or the {raw.shape[1]} pooled features ({err})"
        )
        raise ConfigError(msg) from err
    source = dataclasses.replace(source, pca=pca)
    return source, apply_pca(raw, pca)


def encoder_source_features(
    source: EncoderSource, images: ArrayLike, *, batch_size: int = 64, progress: bool = False
) -> NDArray[np.float32]:
    """Features of one source for N images: pooled features, projected on the PCA when it has one.

    Parameters
    ----------
    source : EncoderSource
    images : array_like, shape (N, S, S)
        Log-scaled images in [0, 1] at ``source.encoder.input_size`` (as ``images.zarr`` holds them, or as
        predict's preprocessing makes them at that size).
    batch_size : int
    progress : bool

    Returns
    -------
    numpy.ndarray, shape (N, K), float32
        Column k is ``source.columns[k]``.
    """
    raw = encode(
        source.encoder, images, batch_size=batch_size, standardise=source.standardise, progress=progress
    )
    return raw if source.pca is None else apply_pca(raw, source.pca)


def encoder_source_frame(
    source: EncoderSource, images: ArrayLike, *, batch_size: int = 64, progress: bool = False
) -> pd.DataFrame:
    """:func:`encoder_source_features` as a DataFrame with the columns ``enc_<name>_0000`` ... (float32)."""
    values = encoder_source_features(source, images, batch_size=batch_size, progress=progress)
    return pd.DataFrame(values, columns=source.columns)


def encoder_sources_frame(
    sources: Mapping[str, EncoderSource],
    images: Mapping[int, ArrayLike],
    *,
    batch_size: int = 64,
    progress: bool = False,
) -> pd.DataFrame:
    """Compute the feature columns of several sources for the same N galaxies, as extract writes them.

    This is what a prediction calls to rebuild the ``enc_<name>_*`` features of new galaxies from their
    preprocessed images (the sources from :func:`read_encoder_sources` or :func:`encoder_source_from_bytes`).

    Parameters
    ----------
    sources : mapping of str to EncoderSource
        In the column order wanted (extract's: the order of ``cnn.encoders``).
    images : mapping of int to array_like, shape (N, S, S)
        Input size S -> the N galaxies' log-scaled images in [0, 1] at that size, the same galaxies in the
        same order for every size.
    batch_size : int
    progress : bool

    Returns
    -------
    pandas.DataFrame
        N rows, float32 columns ``enc_<name>_0000`` ... per source; no column without sources.

    Raises
    ------
    InputDataError
        If no images of a source's input size are given.
    """
    blocks = []
    for name, source in sources.items():
        size = source.encoder.input_size
        if size not in images:
            msg = f"encoder source {name} needs {size}-pixel images; got sizes {sorted(images)}"
            raise InputDataError(msg)
        blocks.append(encoder_source_frame(source, images[size], batch_size=batch_size, progress=progress))
    if not blocks:
        n = len(next(iter(images.values()))) if images else 0
        return pd.DataFrame(index=pd.RangeIndex(n))
    return pd.concat(blocks, axis=1)


def save_encoder_source(
    source: EncoderSource, directory: str | Path, *, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Write an encoder source's weights, PCA and card into ``directory``; return the card.

    Parameters
    ----------
    source : EncoderSource
    directory : str or Path
        Usually the work directory's ``models/encoders``; created if missing.
    extra : mapping, optional
        More JSON entries for the card (e.g. the galaxies the PCA was fitted on).

    Returns
    -------
    dict
        The card (:data:`CARD_KEYS`): file names relative to ``directory`` and their SHA-256.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    encoder = source.encoder
    weights = encoder_weights_name(source.name)
    weights_sha = save_encoder_weights(encoder, directory / weights)
    pca_file = pca_sha = None
    if source.pca is not None:
        pca_file = encoder_pca_name(source.name)
        pca_sha = save_pca(source.pca, directory / pca_file)
    card = {
        "format": ENCODER_CARD_FORMAT,
        "name": source.name,
        "source": encoder.source,
        "architecture": encoder.architecture,
        "input_size": encoder.input_size,
        "in_chans": encoder.in_chans,
        "standardise": source.standardise,
        "num_features": encoder.num_features,
        "pca_components": None if source.pca is None else source.n_features,
        "columns": source.columns,
        "weights": weights,
        "weights_sha256": weights_sha,
        "pca": pca_file,
        "pca_sha256": pca_sha,
        **dict(extra or {}),
    }
    write_json_atomic(directory / encoder_card_name(source.name), card)
    return card


def _check_card(card: Any, where: Path) -> dict[str, Any]:
    missing = [k for k in CARD_KEYS if not isinstance(card, dict) or k not in card]
    if missing:
        msg = f"{where} is not the card of an encoder source: it lacks {missing}"
        raise InputDataError(msg)
    if card["format"] != ENCODER_CARD_FORMAT:
        msg = f"{where}: format must be {ENCODER_CARD_FORMAT!r}, got {card['format']!r}"
        raise InputDataError(msg)
    return card


def encoder_source_from_bytes(
    card: Mapping[str, Any], weights: bytes, pca: bytes | None = None, *, where: str | Path = "<bundle>"
) -> EncoderSource:
    """Rebuild an encoder source from its card and the content of its files (already read and checked).

    Parameters
    ----------
    card : mapping
        The source's card (:func:`save_encoder_source`).
    weights : bytes
        The content of ``card["weights"]``.
    pca : bytes or None
        The content of ``card["pca"]`` (None when the card has no PCA).
    where : str or Path
        The folder the files came from, for the messages.

    Returns
    -------
    EncoderSource
        On the CPU; the same features as the source that was saved.

    Raises
    ------
    InputDataError
        If the card is malformed, the files do not match it (name, input size, feature counts), or a file
        cannot be parsed.
    """
    where = Path(where)
    card = _check_card(dict(card), where / "<card>")
    weights_path = where / str(card["weights"])
    try:
        encoder = load_encoder(weights_path, int(card["in_chans"]), name=str(card["name"]), data=weights)
    except ConfigError as err:
        raise InputDataError(str(err)) from err
    found = (encoder.name, encoder.input_size, encoder.num_features)
    recorded = (card["name"], card["input_size"], card["num_features"])
    if found != recorded:
        msg = (
            f"{weights_path} holds encoder {found[0]!r} at {found[1]} px with {found[2]} features, but its "
            f"card records {recorded[0]!r} at {recorded[1]} px with {recorded[2]}"
        )
        raise InputDataError(msg)
    source = EncoderSource(encoder=encoder, pca=None, standardise=bool(card["standardise"]))
    if card["pca"] is not None:
        pca_path = where / str(card["pca"])
        if pca is None:
            msg = f"{pca_path}: the card of encoder {card['name']!r} names a PCA, but none was given"
            raise InputDataError(msg)
        fitted = load_pca(pca_path, pca)
        if fitted.mean.shape[0] != encoder.num_features:
            msg = (
                f"{pca_path}: PCA fitted on {fitted.mean.shape[0]} features, the encoder gives "
                f"{encoder.num_features}"
            )
            raise InputDataError(msg)
        source = dataclasses.replace(source, pca=fitted)
    if source.columns != list(card["columns"]):
        msg = f"{where}: encoder {card['name']!r} gives {source.n_features} columns, its card lists others"
        raise InputDataError(msg)
    return source


def read_encoder_source(directory: str | Path, name: str) -> EncoderSource:
    """Read an encoder source saved by :func:`save_encoder_source`, checking its files' SHA-256.

    Parameters
    ----------
    directory : str or Path
        The folder holding ``<name>.json``, ``<name>.safetensors`` and ``<name>_pca.safetensors``.
    name : str

    Raises
    ------
    InputDataError
        If a file is missing, unreadable, differs from the hash its card records, or does not fit the card.
    """
    directory = Path(directory)
    card_path = directory / encoder_card_name(name)
    try:
        text = card_path.read_text(encoding="utf-8")
    except OSError as err:
        msg = f"cannot read the card of encoder source {name!r}: {card_path} ({err.strerror or err})"
        raise InputDataError(msg) from err
    except UnicodeDecodeError as err:
        msg = f"{card_path} is not UTF-8 JSON ({err.reason} at byte {err.start})"
        raise InputDataError(msg) from err
    try:
        card = _check_card(json.loads(text), card_path)
    except json.JSONDecodeError as err:
        msg = f"{card_path} is not a JSON card ({err.msg} at line {err.lineno})"
        raise InputDataError(msg) from err
    contents: dict[str, bytes | None] = {"weights": None, "pca": None}
    for key in ("weights", "pca"):
        if card[key] is None:
            continue
        path = directory / str(card[key])
        try:
            data = path.read_bytes()
        except OSError as err:
            msg = f"cannot read {path}, named by {card_path} ({err.strerror or err})"
            raise InputDataError(msg) from err
        if hashlib.sha256(data).hexdigest() != card[f"{key}_sha256"]:
            msg = f"{path}: SHA-256 differs from the one {card_path} records; refusing to use it"
            raise InputDataError(msg)
        contents[key] = data
    weights = contents["weights"]
    if weights is None:
        msg = f"{card_path}: names no weights file"
        raise InputDataError(msg)
    return encoder_source_from_bytes(card, weights, contents["pca"], where=directory)


def read_encoder_sources(directory: str | Path) -> dict[str, EncoderSource]:
    """Read every encoder source saved in a folder (each ``<name>.json`` card), by name in sorted order.

    Parameters
    ----------
    directory : str or Path
        A work directory's ``models/encoders`` (or its copy in a bundle); missing: no source.

    Raises
    ------
    InputDataError
        As :func:`read_encoder_source`.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return {}
    names = sorted(path.stem for path in directory.glob("*.json"))
    return {name: read_encoder_source(directory, name) for name in names}
