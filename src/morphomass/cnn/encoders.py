"""Pretrained weights for the paper's networks, and frozen foundation encoders as feature sources (issue 18).

Two uses of published weights, both through timm:

* **Initialising a network** (the timm backbone of CNN1/CNN2/CNN4) from ``"imagenet"``, ``"none"`` or a
  file: :func:`resolve_pretrained` returns the state dict to load (or None) and :func:`load_state_into` loads
  it into a timm model, strictly, with timm's own adaptation of the first convolution to the model's input
  channels (``timm.models.load_pretrained``: one channel sums the RGB filters; three channels from a
  one-channel file repeat them, scaled). :func:`create_timm_model` does both.
* **A frozen encoder** (e.g. the Zoobot v2 encoders of Walmsley et al. 2024,
  ``hf_hub:mwalmsley/zoobot-encoder-greyscale-convnext_nano``): :func:`load_encoder` builds it from a Hugging
  Face hub name or from a local weights file and an architecture name, frozen and in eval mode;
  :func:`encode` turns the log-scaled single-band images (``images.zarr``, values in [0, 1]) into pooled
  features; :func:`fit_pca` / :func:`apply_pca` reduce them with a PCA fitted on the training split, stored
  by :func:`save_pca` as safetensors (no pickle).
  :func:`save_encoder_weights` copies an encoder into a bundle as safetensors whose header names its
  architecture, so that ``load_encoder(path)`` rebuilds it offline.

Hub names load as ``timm.create_model`` loads them (``huggingface_hub``: a download when the hub is reachable,
the local cache, ``$HF_HOME/hub`` or ``$HF_HUB_CACHE``, otherwise; ``HF_HUB_OFFLINE=1`` never touches the
network). Unlike timm's own pretrained loading, which tolerates missing keys whenever the classifier changes,
every load here is strict: a file whose keys or shapes do not fit the architecture is an error naming them,
never a partly random network. When weights cannot be had, the error names what was tried (hub id, cache
directory, URL or file) and how to pass a file or choose ``"none"``.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray
from safetensors import SafetensorError
from torch import nn

from morphomass.errors import ConfigError, InputDataError
from morphomass.progress import progress_bar
from morphomass.workdir import write_bytes_atomic

__all__ = [
    "ENCODER_FORMAT",
    "HUB_PREFIX",
    "PCA_FORMAT",
    "PRETRAINED_IMAGENET",
    "PRETRAINED_NONE",
    "WEIGHT_SUFFIXES",
    "Encoder",
    "Pca",
    "apply_pca",
    "create_timm_model",
    "encode",
    "encoder_columns",
    "encoder_name",
    "fit_pca",
    "load_encoder",
    "load_pca",
    "load_state_into",
    "read_state_dict",
    "resolve_pretrained",
    "save_encoder_weights",
    "save_pca",
]

logger = logging.getLogger(__name__)

#: The pretrained specs that are not file names.
PRETRAINED_IMAGENET = "imagenet"
PRETRAINED_NONE = "none"
#: Prefix of a Hugging Face hub encoder name (timm's own).
HUB_PREFIX = "hf_hub:"
#: Weight files read by :func:`read_state_dict` (PyTorch ones with ``weights_only=True``: never a pickle).
WEIGHT_SUFFIXES: tuple[str, ...] = (".safetensors", ".pth", ".pt", ".bin")
#: ``format`` in the safetensors header of the files of :func:`save_encoder_weights` and :func:`save_pca`.
ENCODER_FORMAT = "morphomass-encoder-1"
PCA_FORMAT = "morphomass-pca-1"
# OSError covers huggingface_hub's LocalEntryNotFoundError / HTTP errors, urllib's URLError and missing files
_LOAD_ERRORS = (OSError, RuntimeError, ValueError, KeyError)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _reason(err: BaseException) -> str:
    """Name the error's class, and its first line when short (huggingface_hub's run to several lines)."""
    line = _first_line(err)
    return (
        type(err).__name__
        if len(line) > 120 or line == type(err).__name__
        else f"{type(err).__name__}: {line}"
    )


def _how_to(field: str) -> str:
    return f"set {field} to a local weights file ({'/'.join(WEIGHT_SUFFIXES)}) or to 'none'"


def _hub_cache() -> tuple[str, bool]:
    """Return the hub cache directory and offline flag huggingface_hub uses now (read now, not at import)."""
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE), bool(constants.HF_HUB_OFFLINE)


def _hub_where(repo_id: str) -> str:
    cache, offline = _hub_cache()
    mode = "offline (HF_HUB_OFFLINE=1): the cache" if offline else "the hub, then the cache"
    return f"Hugging Face repo {repo_id!r} ({mode} {cache})"


def _torch_cache_file(url: str) -> Path:
    """Where torch.hub caches the file of a download URL (timm's url weights)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name


def _require_timm_model(architecture: str, *, field: str) -> None:
    import timm

    if not timm.is_model(architecture):
        msg = f"{field}: {architecture!r} is not a timm model name (see timm.list_models())"
        raise ConfigError(msg)


# ------------------------------------------------------------------------------------------------------------
# weight files and strict loading


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a weights file into a state dict of CPU tensors, without unpickling arbitrary objects.

    ``.safetensors`` files are read with safetensors; ``.pth``/``.pt``/``.bin`` files with
    ``torch.load(weights_only=True)``. A checkpoint that wraps its weights in ``state_dict`` or ``model`` is
    unwrapped, and the ``module.`` / ``_orig_mod.`` prefixes of DDP and ``torch.compile`` are removed.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    dict of str to torch.Tensor

    Raises
    ------
    ConfigError
        If the file does not exist or its suffix is not one of :data:`WEIGHT_SUFFIXES`.
    InputDataError
        If it cannot be read or parsed, or holds something other than named tensors.
    """
    return _read_weights(Path(path).expanduser())[0]


def _read_weights(path: Path, data: bytes | None = None) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """:func:`read_state_dict`, and the ``__metadata__`` of a safetensors header (empty for other files).

    With ``data``, those bytes are parsed (``path`` only names them and gives the format by its suffix).
    """
    from timm.models import clean_state_dict

    suffix = path.suffix.lower()
    if suffix not in WEIGHT_SUFFIXES:
        found = suffix or "no suffix"
        msg = f"{path}: weights file must end in one of {', '.join(WEIGHT_SUFFIXES)}, got {found!r}"
        raise ConfigError(msg)
    if data is None:
        if not path.is_file():
            msg = f"weights file {path} not found"
            raise ConfigError(msg)
        try:
            data = path.read_bytes()
        except OSError as err:
            msg = f"cannot read weights file {path} ({err.strerror or err})"
            raise InputDataError(msg) from err
    metadata: dict[str, str] = {}
    if suffix == ".safetensors":
        from safetensors.torch import load

        try:
            obj: Any = load(data)
        except SafetensorError as err:
            msg = f"{path} is not a valid safetensors file ({_first_line(err)})"
            raise InputDataError(msg) from err
        # the header was validated by load(): 8 bytes of length, then JSON
        header = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])
        metadata = dict(header.get("__metadata__") or {})
    else:
        try:
            obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, TypeError) as err:
            msg = f"{path} is not a PyTorch state dict readable with weights_only=True ({_first_line(err)})"
            raise InputDataError(msg) from err
        for key in ("state_dict", "model"):
            if isinstance(obj, dict) and isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        msg = f"{path} does not hold a state dict (a non-empty mapping of names to tensors)"
        raise InputDataError(msg)
    return clean_state_dict(obj), metadata


def _model_traits(model: nn.Module) -> dict[str, Any]:
    try:
        from timm.models import get_model_traits
    except ImportError:  # older timm: the pretrained configuration only
        return {}
    return dict(get_model_traits(model))


def _first_convs(model: nn.Module) -> tuple[str, ...]:
    """Names of the model's input convolutions (timm's ``first_conv``), as ``load_pretrained`` finds them."""
    first = _model_traits(model).get("first_conv") or (getattr(model, "pretrained_cfg", None) or {}).get(
        "first_conv"
    )
    if not first:
        return ()
    return (first,) if isinstance(first, str) else tuple(first)


def _model_in_chans(model: nn.Module) -> int | None:
    """Input channels of a timm model (its recorded trait, else its first convolution's), None if unknown."""
    value = _model_traits(model).get("in_chans") or getattr(model, "in_chans", None)
    if value:
        return int(value)
    for name in _first_convs(model):
        module = model.get_submodule(name)
        if isinstance(module, nn.Conv2d):
            return int(module.in_channels)
    return None


def _source_in_chans(model: nn.Module, state: Mapping[str, torch.Tensor], declared: int) -> int:
    """Find the input channels the state's first convolution was made for (timm's ``input_size[0]``).

    A checkpoint's config may declare 3 channels for a greyscale file (older Zoobot exports do); the weight
    shape decides. ``weight.shape[1] * in_chans * groups == source * in_channels`` is timm's own consistency
    rule, so the value found here always passes it (space-to-depth stems included).
    """
    for name in _first_convs(model):
        weight = state.get(f"{name}.weight")
        try:
            module = model.get_submodule(name)
        except AttributeError:
            continue
        if weight is None or not isinstance(module, nn.Conv2d) or weight.ndim != 4:
            continue
        in_chans = _model_in_chans(model) or module.in_channels
        numerator = int(weight.shape[1]) * in_chans * module.groups
        if numerator % module.in_channels == 0:
            return numerator // module.in_channels
    return declared


def _describe_mismatch(model: nn.Module, state: Mapping[str, torch.Tensor]) -> str | None:
    """Summarise on one line the keys and shapes of ``state`` that do not fit ``model`` (None if all fit)."""
    target = model.state_dict()
    first = {f"{name}.weight" for name in _first_convs(model)}
    missing = [k for k in target if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in target]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(target[k].shape)}"
        for k in target
        if k in state and k not in first and tuple(state[k].shape) != tuple(target[k].shape)
    ]
    parts = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)):
        if items:
            shown = ", ".join(items[:3]) + (", ..." if len(items) > 3 else "")
            parts.append(f"{len(items)} {label} ({shown})")
    return "; ".join(parts) or None


def load_state_into(model: nn.Module, state: Mapping[str, torch.Tensor], *, where: str | Path) -> nn.Module:
    """Load a state dict into a timm model, strictly, adapting the first convolution to its input channels.

    The classifier weights of ``state`` are dropped when the model has no classifier (``num_classes=0``).
    The first convolution is adapted by ``timm.models.load_pretrained`` when its input channels differ (three
    to one: the RGB filters are summed, which on a grey image equals repeating it to three channels; one to
    three: repeated and divided by three). Every other key must be present with the model's shape.

    Parameters
    ----------
    model : torch.nn.Module
        A model made by ``timm.create_model`` (it carries ``pretrained_cfg``).
    state : mapping of str to torch.Tensor
    where : str or Path
        Where the weights came from, for the message.

    Returns
    -------
    torch.nn.Module
        ``model``, loaded.

    Raises
    ------
    InputDataError
        If the keys or shapes of ``state`` do not fit the model.
    """
    from timm.models import load_pretrained

    cfg = dict(getattr(model, "pretrained_cfg", None) or {})
    architecture = cfg.get("architecture", type(model).__name__)
    target = model.state_dict()
    classifiers = cfg.get("classifier") or ()
    classifiers = (classifiers,) if isinstance(classifiers, str) else tuple(classifiers)
    kept = {
        k: v
        for k, v in state.items()
        if k in target or not any(k.startswith(f"{name}.") for name in classifiers)
    }
    problem = _describe_mismatch(model, kept)
    if problem:
        msg = f"{where}: weights do not fit timm {architecture!r}: {problem}"
        raise InputDataError(msg)
    size = tuple(cfg.get("input_size") or (3, 224, 224))
    source_chans = _source_in_chans(model, kept, int(size[0]))
    num_classes = int(getattr(model, "num_classes", 0))
    cfg.update(
        source="", url=None, file=None, hf_hub_id=None, state_dict=kept, num_classes=num_classes,
        input_size=(source_chans, *size[1:]),
    )  # fmt: skip
    in_chans = _model_in_chans(model) or source_chans
    try:
        load_pretrained(model, pretrained_cfg=cfg, num_classes=num_classes, in_chans=in_chans, strict=True)
    except (RuntimeError, KeyError, ValueError, NotImplementedError) as err:
        msg = f"{where}: weights do not fit timm {architecture!r} ({_first_line(err)})"
        raise InputDataError(msg) from err
    return model


# ------------------------------------------------------------------------------------------------------------
# pretrained initialisation of the paper's networks


def _imagenet_state(architecture: str, *, field: str) -> dict[str, torch.Tensor]:
    import timm
    from timm.models import get_pretrained_cfg

    _require_timm_model(architecture, field=field)
    cfg = get_pretrained_cfg(architecture)
    hub_id = getattr(cfg, "hf_hub_id", None)
    url = getattr(cfg, "url", None)
    if cfg is None or not (hub_id or url):
        msg = f"{field} = 'imagenet': timm has no pretrained weights for {architecture!r}; {_how_to(field)}"
        raise ConfigError(msg)
    _, offline = _hub_cache()
    if hub_id:
        tried = _hub_where(hub_id)
    else:
        cached = _torch_cache_file(url)
        tried = f"URL {url} and the torch hub cache {cached.parent}"
        if offline and not cached.is_file():
            # timm would try the URL whatever HF_HUB_OFFLINE says: honour the offline request ourselves
            msg = (
                f"{field} = 'imagenet' for {architecture!r}: not in {tried} and HF_HUB_OFFLINE=1; "
                f"{_how_to(field)}"
            )
            raise ConfigError(msg)
    try:
        model = timm.create_model(architecture, pretrained=True)
    except (*_LOAD_ERRORS, _hub_entry_error()) as err:
        msg = (
            f"{field} = 'imagenet' for {architecture!r}: weights not available from {tried} "
            f"({_reason(err)}); {_how_to(field)}"
        )
        raise ConfigError(msg) from err
    logger.info("ImageNet weights of %s loaded from %s", architecture, tried)
    return {k: v.detach() for k, v in model.state_dict().items()}


def _hub_entry_error() -> type[Exception]:
    from huggingface_hub.errors import EntryNotFoundError

    return EntryNotFoundError


def resolve_pretrained(
    spec: str | Path, architecture: str, *, field: str = "cnn.pretrained"
) -> dict[str, torch.Tensor] | None:
    """Resolve the initial weights of a timm backbone: ImageNet (timm's default tag), none, or a file.

    Parameters
    ----------
    spec : str or Path
        ``"imagenet"``: timm's pretrained weights of ``architecture`` (through timm's normal loading: a hub
        download when reachable, the local Hugging Face cache otherwise; ``HF_HUB_OFFLINE`` and ``HF_HOME``
        are respected); ``"none"``: random initialisation; anything else: the path of a ``.safetensors``,
        ``.pth``, ``.pt`` or ``.bin`` file (:func:`read_state_dict`).
    architecture : str
        timm model name (``resnet50``, ``legacy_xception``, ...).
    field : str
        The configuration key, for the messages.

    Returns
    -------
    dict of str to torch.Tensor or None
        The state dict in timm's layout for ``architecture`` (three input channels and the classifier for
        ImageNet weights); None for ``"none"``. Load it with :func:`load_state_into`.

    Raises
    ------
    ConfigError
        If the architecture is unknown (for ``"imagenet"``), the weights cannot be had (the message names
        the hub id and cache directory or URL tried, and how to pass a file or choose ``"none"``), or the
        file does not exist.
    InputDataError
        If the file cannot be parsed.
    """
    text = str(spec)
    if text == PRETRAINED_NONE:
        return None
    if text == PRETRAINED_IMAGENET:
        return _imagenet_state(architecture, field=field)
    if not Path(text).expanduser().is_file():
        kinds = "/".join(WEIGHT_SUFFIXES)
        msg = f"{field} = {text!r}: no such file; give a weights file ({kinds}), 'imagenet' or 'none'"
        raise ConfigError(msg)
    return read_state_dict(text)


def create_timm_model(
    architecture: str,
    *,
    pretrained: str | Path = PRETRAINED_NONE,
    in_chans: int = 1,
    num_classes: int = 0,
    field: str = "cnn.pretrained",
    **kwargs: Any,
) -> nn.Module:
    """Build a timm model initialised from ``pretrained`` (:func:`resolve_pretrained`, then loaded).

    Parameters
    ----------
    architecture : str
        timm model name.
    pretrained : str or Path
        ``"imagenet"``, ``"none"`` or a weights file.
    in_chans : int
        Input channels of the model; pretrained RGB filters are adapted by timm.
    num_classes : int
        0 for a trunk that returns pooled features.
    field : str
        The configuration key, for the messages.
    **kwargs
        Passed to ``timm.create_model`` (``global_pool``, ``drop_rate``, ...).

    Raises
    ------
    ConfigError, InputDataError
        As :func:`resolve_pretrained` and :func:`load_state_into`.
    """
    import timm

    _require_timm_model(architecture, field=field)
    state = resolve_pretrained(pretrained, architecture, field=field)
    model = timm.create_model(
        architecture, pretrained=False, in_chans=in_chans, num_classes=num_classes, **kwargs
    )
    if state is not None:
        where = f"{field} = {str(pretrained)!r} ({architecture})"
        load_state_into(model, state, where=where)
    return model


# ------------------------------------------------------------------------------------------------------------
# frozen encoders


@dataclass(frozen=True, eq=False)
class Encoder:
    """A frozen timm encoder and what it expects.

    Attributes
    ----------
    model : torch.nn.Module
        In eval mode, no gradients, channels-last; returns (B, ``num_features``) pooled features.
    name : str
        Short name for the feature columns (``enc_<name>_0000``, ...).
    source : str
        The hub name or weights file it was loaded from.
    architecture : str
        timm architecture (``convnext_nano``, ...).
    input_size : int
        Image side in pixels it expects (timm's pretrained configuration).
    in_chans : int
        1 or 3; :func:`encode` repeats the single band to 3 channels for a 3-channel encoder.
    num_features : int
    mean, std : tuple of float
        Per-channel standardisation of its pretrained configuration (``in_chans`` values), used by
        :func:`encode` only when asked.
    """

    model: nn.Module
    name: str
    source: str
    architecture: str
    input_size: int
    in_chans: int
    num_features: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


def encoder_name(source: str | Path) -> str:
    """Make a column-safe short name for an encoder source: hub repo or file stem, lower case, ``[a-z0-9_]``.

    ``hf_hub:mwalmsley/zoobot-encoder-greyscale-convnext_nano`` -> ``zoobot_encoder_greyscale_convnext_nano``.
    """
    text = str(source)
    text = text[len(HUB_PREFIX) :].split("@")[0] if text.startswith(HUB_PREFIX) else Path(text).stem
    name = re.sub(r"[^a-z0-9]+", "_", text.rsplit("/", 1)[-1].lower()).strip("_")
    return name or "encoder"


def encoder_columns(name: str, n_features: int) -> list[str]:
    """Name the feature columns of an encoder: ``enc_<name>_0000``, ... (the GBM family ``enc_<name>_*``)."""
    if not re.fullmatch(r"[a-z0-9_]+", name):
        msg = f"encoder name {name!r} must be lower-case letters, digits and underscores"
        raise ConfigError(msg)
    return [f"enc_{name}_{i:04d}" for i in range(n_features)]


def _hub_model(source: str, in_chans: int) -> nn.Module:
    import timm
    from timm.models import load_state_dict_from_hf

    repo_id = source[len(HUB_PREFIX) :]
    how = "download it once where the hub is reachable, or pass a local weights file and its architecture"
    try:
        model = timm.create_model(source, pretrained=False, num_classes=0, in_chans=in_chans)
    except (*_LOAD_ERRORS, _hub_entry_error()) as err:
        where = _hub_where(repo_id)
        msg = f"encoder {source!r}: cannot build it from the config.json of {where} ({_reason(err)}); {how}"
        raise ConfigError(msg) from err
    filename = model.pretrained_cfg.get("hf_hub_filename")
    try:
        if filename:
            state = load_state_dict_from_hf(repo_id, filename=filename, weights_only=True)
        else:  # model.safetensors, else pytorch_model.bin
            state = load_state_dict_from_hf(repo_id, weights_only=True)
    except (*_LOAD_ERRORS, _hub_entry_error()) as err:
        msg = f"encoder {source!r}: no weights from {_hub_where(repo_id)} ({_reason(err)}); {how}"
        raise ConfigError(msg) from err
    return load_state_into(model, state, where=source)


def _file_model(
    path: Path, in_chans: int, architecture: str | None, data: bytes | None = None
) -> tuple[nn.Module, dict[str, str]]:
    import timm

    state, meta = _read_weights(path, data)
    architecture = architecture or meta.get("architecture")
    if not architecture:
        msg = f"encoder {path}: the file does not name its architecture; give the timm architecture with it"
        raise ConfigError(msg)
    _require_timm_model(architecture, field=f"encoder {path}")
    args = dict(_header_json(meta, "model_args", path) or {})
    args.update(num_classes=0, in_chans=in_chans)
    try:
        model = timm.create_model(architecture, pretrained=False, **args)
    except (TypeError, ValueError, RuntimeError) as err:
        msg = f"{path}: cannot build timm {architecture!r} with the model_args {args} ({_first_line(err)})"
        raise InputDataError(msg) from err
    return load_state_into(model, state, where=path), meta


def _header_json(meta: Mapping[str, str], key: str, path: Path) -> Any:
    """Parse one JSON entry of a safetensors header (None when absent)."""
    if key not in meta:
        return None
    try:
        return json.loads(meta[key])
    except json.JSONDecodeError as err:
        msg = f"{path}: the {key!r} entry of its safetensors header is not JSON ({err})"
        raise InputDataError(msg) from err


def _per_channel(values: Any, in_chans: int, default: float) -> tuple[float, ...]:
    seq = [float(v) for v in (values if values is not None else (default,))]
    if len(seq) != in_chans:
        seq = [float(np.mean(seq))] * in_chans
    return tuple(seq)


def load_encoder(
    source: str | Path,
    in_chans: int = 1,
    *,
    architecture: str | None = None,
    name: str | None = None,
    data: bytes | None = None,
) -> Encoder:
    """Load a frozen timm encoder from a Hugging Face hub name or a local weights file.

    Parameters
    ----------
    source : str or Path
        ``hf_hub:<org>/<name>[@<revision>]`` (built as ``timm.create_model(source, num_classes=0)`` builds it,
        from the hub or its local cache), or a weights file (:data:`WEIGHT_SUFFIXES`). A file written by
        :func:`save_encoder_weights` names its architecture, input size and standardisation; another file
        needs ``architecture``.
    in_chans : {1, 3}
        Input channels of the built encoder. With 1 (the default) a colour encoder's RGB filters are summed by
        timm, which on a grey image gives the features of the image repeated to three channels (exactly,
        unless :func:`encode` standardises with per-channel values, which are then averaged).
    architecture : str, optional
        timm architecture of a weights file.
    name : str, optional
        Short name for the feature columns; default :func:`encoder_name` of the source.
    data : bytes, optional
        The weights file's content, already read (e.g. checked against a recorded hash): parsed instead of
        reading ``source``, which then only names it.

    Returns
    -------
    Encoder
        Frozen (eval mode, no gradients), channels-last, on the CPU.

    Raises
    ------
    ConfigError
        If the source cannot be had (the message names the hub id and cache directory, or the file), no
        architecture is known for a file, or ``in_chans`` is not 1 or 3.
    InputDataError
        If the weights cannot be parsed or do not fit the architecture (keys or shapes).
    """
    if in_chans not in (1, 3):
        msg = f"encoder in_chans must be 1 or 3, got {in_chans!r}"
        raise ConfigError(msg)
    text = str(source)
    meta: dict[str, str] = {}
    if text.startswith(HUB_PREFIX) and data is None:
        model = _hub_model(text, in_chans)
    else:
        model, meta = _file_model(Path(text).expanduser(), in_chans, architecture, data)
    model.eval().requires_grad_(False)
    model = model.to(memory_format=torch.channels_last)
    cfg = model.pretrained_cfg
    size = _header_json(meta, "input_size", Path(text)) or cfg.get("input_size", (3, 224, 224))[-1]
    mean = _header_json(meta, "mean", Path(text)) or cfg.get("mean")
    std = _header_json(meta, "std", Path(text)) or cfg.get("std")
    n_features = int(getattr(model, "head_hidden_size", None) or model.num_features)
    return Encoder(
        model=model,
        name=name or meta.get("name") or encoder_name(text),
        source=meta.get("source", text),
        architecture=str(model.pretrained_cfg.get("architecture", architecture)),
        input_size=int(size),
        in_chans=in_chans,
        num_features=n_features,
        mean=_per_channel(mean, in_chans, 0.0),
        std=_per_channel(std, in_chans, 1.0),
    )


def encode(
    encoder: Encoder,
    images: ArrayLike,
    *,
    batch_size: int = 64,
    standardise: bool = False,
    progress: bool = False,
) -> NDArray[np.float32]:
    """Pooled features of single-band images: (N, S, S) in [0, 1] -> (N, F) float32.

    Batches are read from ``images`` one at a time (a zarr array is never loaded whole) and run under
    ``torch.inference_mode`` in channels-last layout on the device of the encoder's weights. The single band
    is repeated to three channels for a 3-channel encoder. Images enter as they are, in [0, 1];
    ``standardise=True`` first subtracts the encoder's mean and divides by its standard deviation (the
    ImageNet convention of timm's pretrained configurations).

    Parameters
    ----------
    encoder : Encoder
    images : array_like, shape (N, S, S)
        Log-scaled images (float32 or float16), ``S == encoder.input_size``.
    batch_size : int
    standardise : bool
    progress : bool
        Show a progress bar.

    Returns
    -------
    numpy.ndarray, shape (N, F), float32

    Raises
    ------
    InputDataError
        If the images are not (N, S, S) at the encoder's input size.
    ConfigError
        If ``batch_size`` < 1.
    """
    shape = tuple(getattr(images, "shape", np.shape(images)))
    size = encoder.input_size
    if len(shape) != 3 or shape[1:] != (size, size):
        msg = (
            f"encoder {encoder.name}: images must be (N, {size}, {size}) (its input size), got shape {shape}"
        )
        raise InputDataError(msg)
    if batch_size < 1:
        msg = f"encoder batch_size must be >= 1, got {batch_size}"
        raise ConfigError(msg)
    n = int(shape[0])
    model = encoder.model
    device = next(model.parameters()).device
    mean = torch.tensor(encoder.mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    std = torch.tensor(encoder.std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    out = np.empty((n, encoder.num_features), dtype=np.float32)
    description = f"encode {encoder.name}"
    with torch.inference_mode(), progress_bar(description, total=n, enabled=progress) as advance:
        for start in range(0, n, batch_size):
            chunk = np.asarray(images[start : start + batch_size], dtype=np.float32)
            batch = torch.from_numpy(chunk).to(device).unsqueeze(1)
            batch = batch.expand(-1, encoder.in_chans, -1, -1)
            if standardise:
                batch = (batch - mean) / std
            features = model(batch.contiguous(memory_format=torch.channels_last))
            out[start : start + len(chunk)] = features.float().cpu().numpy()
            advance(len(chunk))
    return out


def _encoder_metadata(encoder: Encoder) -> dict[str, str]:
    try:
        from timm.models import get_model_args

        args = get_model_args(encoder.model)
    except ImportError:  # timm before 1.0.2x records no model arguments
        args = {}
    args = {k: v for k, v in args.items() if k not in ("num_classes", "in_chans")}
    return {
        "format": ENCODER_FORMAT,
        "architecture": encoder.architecture,
        "model_args": json.dumps(args, sort_keys=True),
        "name": encoder.name,
        "source": encoder.source,
        "input_size": str(encoder.input_size),
        "in_chans": str(encoder.in_chans),
        "mean": json.dumps(list(encoder.mean)),
        "std": json.dumps(list(encoder.std)),
    }


def save_encoder_weights(encoder: Encoder, path: str | Path) -> str:
    """Write an encoder's weights as safetensors whose header describes it; return the file's SHA-256.

    The header (``format`` = :data:`ENCODER_FORMAT`) names the architecture, its timm model arguments, the
    input size, channels, standardisation, name and original source, so ``load_encoder(path)`` rebuilds the
    same encoder with no network and no other file. The file is written atomically with the mode the process
    umask gives (not safetensors' 0600), so a copied bundle stays readable.

    Parameters
    ----------
    encoder : Encoder
    path : str or Path
        Usually ``models/encoders/<name>.safetensors`` inside a bundle.

    Returns
    -------
    str
        SHA-256 (hex) of the bytes written, for the bundle manifest.
    """
    from safetensors.torch import save

    state = {k: v.detach().cpu().contiguous() for k, v in encoder.model.state_dict().items()}
    data = save(state, metadata=_encoder_metadata(encoder))
    write_bytes_atomic(path, data)
    return hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------------------------------------------------
# PCA of encoder features


@dataclass(frozen=True, eq=False)
class Pca:
    """A PCA fitted on training features.

    Attributes
    ----------
    mean : numpy.ndarray, shape (F,), float64
        Mean feature vector of the training galaxies.
    components : numpy.ndarray, shape (K, F), float64
        Orthonormal principal axes, by decreasing variance; each axis' largest-magnitude entry is positive.
    """

    mean: NDArray[np.float64]
    components: NDArray[np.float64]


def _as_features(features: ArrayLike, what: str) -> NDArray[np.float64]:
    array = np.asarray(features, dtype=np.float64)
    if array.ndim != 2 or not np.isfinite(array).all():
        msg = f"{what}: features must be a finite (N, F) array, got shape {array.shape}"
        raise InputDataError(msg)
    return array


def fit_pca(features: ArrayLike, n_components: int) -> Pca:
    """Fit a PCA (NumPy SVD of the centred features) on the training split.

    Parameters
    ----------
    features : array_like, shape (N, F)
        Encoder features of the training galaxies.
    n_components : int
        1 <= K <= min(N, F).

    Returns
    -------
    Pca

    Raises
    ------
    InputDataError
        If the features are not a finite 2-D array.
    ConfigError
        If ``n_components`` is out of range.
    """
    array = _as_features(features, "fit_pca")
    n, f = array.shape
    if not 1 <= n_components <= min(n, f):
        msg = f"PCA n_components must be in 1..min(galaxies, features) = {min(n, f)}, got {n_components}"
        raise ConfigError(msg)
    mean = array.mean(axis=0)
    _, _, vt = np.linalg.svd(array - mean, full_matrices=False)
    components = vt[:n_components]
    signs = np.sign(components[np.arange(n_components), np.abs(components).argmax(axis=1)])
    components = components * np.where(signs == 0, 1.0, signs)[:, None]
    return Pca(mean=mean, components=np.ascontiguousarray(components))


def apply_pca(features: ArrayLike, pca: Pca) -> NDArray[np.float32]:
    """Project features on the principal axes: (N, F) -> (N, K) float32.

    Raises
    ------
    InputDataError
        If the features do not have the PCA's width F.
    """
    array = _as_features(features, "apply_pca")
    if array.shape[1] != pca.mean.shape[0]:
        msg = f"apply_pca: features have {array.shape[1]} columns, the PCA was fitted on {pca.mean.shape[0]}"
        raise InputDataError(msg)
    return ((array - pca.mean) @ pca.components.T).astype(np.float32)


def save_pca(pca: Pca, path: str | Path) -> str:
    """Write a PCA as safetensors (``mean``, ``components``; no pickle), atomically; return its SHA-256."""
    from safetensors.numpy import save

    tensors = {"mean": np.ascontiguousarray(pca.mean), "components": np.ascontiguousarray(pca.components)}
    data = save(tensors, metadata={"format": PCA_FORMAT})
    write_bytes_atomic(path, data)
    return hashlib.sha256(data).hexdigest()


def load_pca(path: str | Path, data: bytes | None = None) -> Pca:
    """Read a PCA written by :func:`save_pca` (from ``data``, its content already read, when given).

    Raises
    ------
    InputDataError
        If the file cannot be read, is not safetensors, or lacks consistent ``mean`` (F,) and ``components``
        (K, F) arrays.
    """
    from safetensors.numpy import load

    path = Path(path)
    try:
        tensors = load(path.read_bytes() if data is None else data)
    except OSError as err:
        msg = f"cannot read PCA file {path} ({err.strerror or err})"
        raise InputDataError(msg) from err
    except SafetensorError as err:
        msg = f"{path} is not a valid safetensors file ({_first_line(err)})"
        raise InputDataError(msg) from err
    mean, components = tensors.get("mean"), tensors.get("components")
    if (
        mean is None
        or components is None
        or mean.ndim != 1
        or components.ndim != 2
        or components.shape[1] != mean.shape[0]
    ):
        found = {k: v.shape for k, v in tensors.items()}
        msg = f"{path}: a PCA file needs 'mean' (F,) and 'components' (K, F), found {found}"
        raise InputDataError(msg)
    return Pca(mean=mean.astype(np.float64), components=components.astype(np.float64))
