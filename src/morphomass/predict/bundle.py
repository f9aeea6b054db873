"""The prediction bundle: ``models/bundle.json`` and the files it lists, checked and loaded.

A bundle holds everything :mod:`morphomass.predict` needs to turn a FITS image, a redshift and optional SDSS
magnitudes into an M/L, without the training data:

* the preprocessing settings (star subtraction, scaling, image sizes and dtype, the Sun's magnitude in the
  image band, the cosmology and pixel-scale conventions of the catalogue stage),
* the networks (``cnn/<net>.safetensors`` + ``cnn/<net>.json`` cards) and the feature columns each gives,
* the dead-feature list (CNN columns that were zero for every training galaxy, dropped by ``extract``),
* the frozen encoder sources of ``cnn.encoders`` (``encoders/<name>.safetensors``, ``<name>_pca.safetensors``
  and the ``<name>.json`` card, section ``encoders``) and the ``enc_<name>_*`` columns each gives,
* the LightGBM text models (``gbm/g_morph.txt``: g-band image + morphology; ``gbm/gi_morph.txt``: the same
  plus the catalogue g and i luminosities, when the training sample had the i band), their feature names,
  objective and prediction floor; with encoder sources also ``g_<name>`` and ``gi_<name>`` (the same models
  with the encoder's features, ``gbm/g_morph_enc_<name>.txt``, ...), which only ``model=`` selects,
* the training ranges of redshift, D25, pixel size, fluxes and L_g, to flag extrapolations,
* the versions of morphomass and of the libraries, the full configuration, and the SHA-256 and size of every
  listed file.

File paths are relative to the folder holding ``bundle.json`` (a work directory's ``models/``) and must stay
inside it; the models and networks must be entries of ``files``. The manifest carries ``bundle_sha256``, the
hash of its own canonical JSON without that key. :func:`load_bundle` reads each listed file once, checks its
hash and parses it from those bytes. The hashes detect corruption and accidental edits, not a deliberate
forger, who can edit a file and recompute them: only a signature (e.g. a detached signature the user
verifies) would. Nothing is pickled: JSON, safetensors and LightGBM text only.
:mod:`morphomass.predict.writer` writes the bundle of a work directory.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import math
import platform
import re
import warnings
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING, Any

import pandas as pd

from morphomass import __version__
from morphomass.errors import BundleError, BundleVersionWarning, InputDataError
from morphomass.predict.predictor import predict_catalog
from morphomass.targets import Target, target_from_json
from morphomass.workdir import WorkDir

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

__all__ = [
    "BUNDLE_FORMAT",
    "BUNDLE_FORMAT_VERSION",
    "BUNDLE_NAME",
    "MODEL_EXPERIMENTS",
    "RECORDED_LIBRARIES",
    "Bundle",
    "bundle_content_sha256",
    "catalogue_feature_names",
    "check_compatible",
    "check_lightgbm_text",
    "check_manifest",
    "library_versions",
    "load_bundle",
    "model_experiments",
    "parse_lightgbm_model",
    "read_files",
]

#: File name of the manifest (a work directory's ``models/bundle.json``).
BUNDLE_NAME = WorkDir(Path()).bundle_manifest.name
BUNDLE_FORMAT = "morphomass-bundle"
#: Version of the manifest layout; 1 was the minimal manifest of the first ``train-gbm``.
BUNDLE_FORMAT_VERSION = 4
#: Bundle model key (the catalogue bands it needs besides the image) -> GBM experiment (DESIGN §4 names).
MODEL_EXPERIMENTS: dict[str, str] = {"g": "g_morph", "gi": "gi_morph"}


def model_experiments(encoders: Iterable[str] = ()) -> dict[str, str]:
    """Return the bundle model keys and their GBM experiments for a run's encoder sources.

    :data:`MODEL_EXPERIMENTS`, then per encoder source ``<name>``: ``g_<name>`` -> ``g_morph_enc_<name>`` and
    ``gi_<name>`` -> ``gi_morph_enc_<name>`` (the paper's models with the encoder's features added;
    ``model="g_<name>"`` selects one at prediction).
    """
    out = dict(MODEL_EXPERIMENTS)
    for name in encoders:
        out[f"g_{name}"] = f"g_morph_enc_{name}"
        out[f"gi_{name}"] = f"gi_morph_enc_{name}"
    return out


#: Libraries whose versions are recorded, by name -> the distributions that provide it; one of another
#: major.minor version at load time gives a warning, one not installed is an error.
RECORDED_LIBRARIES: dict[str, tuple[str, ...]] = {
    "numpy": ("numpy",),
    "astropy": ("astropy",),
    "photutils": ("photutils",),
    "opencv": (
        "opencv-python-headless",
        "opencv-python",
        "opencv-contrib-python-headless",
        "opencv-contrib-python",
    ),
    "torch": ("torch",),
    "timm": ("timm",),
    "safetensors": ("safetensors",),
    "lightgbm": ("lightgbm",),
}


# ------------------------------------------------------------------------------------------------ hashing


def bundle_content_sha256(manifest: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of a manifest's canonical JSON (sorted keys, compact), ``bundle_sha256`` left out."""
    content = {k: v for k, v in manifest.items() if k != "bundle_sha256"}
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


# ------------------------------------------------------------------------------------------------ versions


def library_versions() -> dict[str, str | None]:
    """Return the versions of Python and of the :data:`RECORDED_LIBRARIES` installed here (None: absent)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name, distributions in RECORDED_LIBRARIES.items():
        versions[name] = None
        for distribution in distributions:
            try:
                versions[name] = importlib.metadata.version(distribution)
                break
            except importlib.metadata.PackageNotFoundError:
                continue
    return versions


# ------------------------------------------------------------------------------------------------ loading


def _major_minor(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def check_compatible(manifest: Mapping[str, Any], *, where: str, installed: str = __version__) -> None:
    """Refuse a manifest this version cannot use; warn about libraries of another major.minor version.

    Parameters
    ----------
    manifest : mapping
        The parsed ``bundle.json``.
    where : str
        Its path, for the messages.
    installed : str
        This morphomass version.

    Raises
    ------
    BundleError
        If it is not a bundle manifest, has another format version, or was made by a morphomass of another
        major.minor version (whose features may be defined differently).
    """
    if manifest.get("format") != BUNDLE_FORMAT:
        msg = f"{where} is not a morphomass prediction bundle (format {manifest.get('format')!r})"
        if manifest.get("format_version") == 1:
            msg += (
                "; it is the minimal manifest of an older train-gbm: write the full one ('morphomass bundle')"
            )
        raise BundleError(msg)
    if manifest.get("format_version") != BUNDLE_FORMAT_VERSION:
        msg = (
            f"{where} has bundle format version {manifest.get('format_version')!r}; morphomass {installed} "
            f"reads version {BUNDLE_FORMAT_VERSION}"
        )
        raise BundleError(msg)
    made_by = str(manifest.get("morphomass_version"))
    if _major_minor(made_by) != _major_minor(installed):
        msg = (
            f"{where} was made by morphomass {made_by}, this is morphomass {installed}: features and "
            f"preprocessing may differ between these versions; install morphomass {made_by} or retrain"
        )
        raise BundleError(msg)
    versions = manifest.get("versions") or {}
    if not isinstance(versions, dict):
        msg = f"{where}: versions must be a JSON object, got {type(versions).__name__}"
        raise BundleError(msg)
    here = library_versions()
    for name, version in versions.items():
        if name == "python" or version is None or name not in here:
            continue
        if not isinstance(version, str):
            msg = f"{where}: versions.{name} must be a version string, got {type(version).__name__}"
            raise BundleError(msg)
        if here[name] is None:
            msg = f"{where} was made with {name} {version}, which is not installed here"
            raise BundleError(msg)
        if _major_minor(str(version)) != _major_minor(str(here[name])):
            warnings.warn(
                f"{where} was made with {name} {version}, this is {name} {here[name]}; predictions may "
                "differ slightly",
                BundleVersionWarning,
                stacklevel=3,
            )


# ------------------------------------------------------------------------------------------------ shape


def _wrong(where: str, key: str, expected: str, value: Any) -> BundleError:
    shown = repr(value) if isinstance(value, (int, float, str, type(None))) else type(value).__name__
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return BundleError(f"{where}: {key} must be {expected}, got {shown}")


def _section(parent: Mapping[str, Any], key: str, where: str, path: str) -> dict[str, Any]:
    value = parent.get(key)
    if not isinstance(value, dict):
        raise _wrong(where, f"{path}{key}", "a JSON object", value)
    return value


def _string(parent: Mapping[str, Any], key: str, where: str, path: str) -> str:
    value = parent.get(key)
    if not isinstance(value, str):
        raise _wrong(where, f"{path}{key}", "a string", value)
    return value


def _integer(parent: Mapping[str, Any], key: str, where: str, path: str, *, low: int = 0) -> int:
    value = parent.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise _wrong(where, f"{path}{key}", f"an integer >= {low}", value)
    return value


def _number(parent: Mapping[str, Any], key: str, where: str, path: str) -> float:
    value = parent.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _wrong(where, f"{path}{key}", "a finite number", value)
    return float(value)


def _strings(parent: Mapping[str, Any], key: str, where: str, path: str) -> list[str]:
    value = parent.get(key)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _wrong(where, f"{path}{key}", "a list of strings", value)
    return value


def _listed(value: str, files: Mapping[str, Any], where: str, key: str) -> None:
    if value not in files:
        msg = f"{where}: {key} = {value!r} is not an entry of files, so its hash is not checked; refusing it"
        raise BundleError(msg)


def _check_files(manifest: Mapping[str, Any], where: str) -> dict[str, Any]:
    files = _section(manifest, "files", where, "")
    if not files:
        msg = f"{where}: files is empty, so nothing would be checked; refusing the bundle"
        raise BundleError(msg)
    for rel, entry in files.items():
        if not isinstance(entry, dict):
            raise _wrong(where, f"files[{rel!r}]", "a JSON object", entry)
        digest = _string(entry, "sha256", where, f"files[{rel!r}].")
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise _wrong(where, f"files[{rel!r}].sha256", "64 lower-case hex digits", digest)
        _integer(entry, "bytes", where, f"files[{rel!r}].")
    return files


def catalogue_feature_names(bands: str) -> list[str]:
    """Names of :func:`morphomass.gbm.table.band_features` for a band set (cat_z, cat_lum_*, cat_ratio_*)."""
    import pandas as pd

    from morphomass.gbm.table import band_features

    probe = pd.DataFrame({"z": [0.1], "dist_mpc": [400.0], **{f"lum_{b}": [1e10] for b in bands}})
    return list(band_features(probe, bands).columns) if bands else []


def _check_networks(manifest: Mapping[str, Any], files: Mapping[str, Any], where: str) -> list[str]:
    """Check the networks section; return the feature columns the networks produce."""
    networks = _section(manifest, "networks", where, "")
    if not networks:
        msg = f"{where}: networks is empty; a bundle needs its networks"
        raise BundleError(msg)
    sizes = _section(manifest, "preprocessing", where, "").get("sizes")
    produced = []
    for name, net in networks.items():
        if not isinstance(net, dict):
            raise _wrong(where, f"networks.{name}", "a JSON object", net)
        for key in ("card", "weights"):
            _listed(_string(net, key, where, f"networks.{name}."), files, where, f"networks.{name}.{key}")
        if net.get("kind") not in ("gz2", "ml"):
            raise _wrong(where, f"networks.{name}.kind", "'gz2' or 'ml'", net.get("kind"))
        _string(net, "backbone", where, f"networks.{name}.")
        if _integer(net, "input_size", where, f"networks.{name}.", low=1) not in sizes:
            raise _wrong(
                where, f"networks.{name}.input_size", f"one of preprocessing.sizes {sizes}", net["input_size"]
            )
        columns = _section(net, "columns", where, f"networks.{name}.")
        for key in columns:
            produced += _strings(columns, key, where, f"networks.{name}.columns.")
    return produced


def _check_encoders(manifest: Mapping[str, Any], files: Mapping[str, Any], where: str) -> list[str]:
    """Check the optional encoders section; return the ``enc_<name>_*`` columns the sources produce."""
    if "encoders" not in manifest:  # a bundle of a run without encoder sources
        return []
    encoders = _section(manifest, "encoders", where, "")
    sizes = manifest["preprocessing"]["sizes"]
    produced = []
    for name, spec in encoders.items():
        path = f"encoders.{name}."
        if not isinstance(spec, dict):
            raise _wrong(where, f"encoders.{name}", "a JSON object", spec)
        for key in ("card", "weights"):
            _listed(_string(spec, key, where, path), files, where, f"{path}{key}")
        if spec.get("pca") is not None:
            _listed(_string(spec, "pca", where, path), files, where, f"{path}pca")
        if _integer(spec, "input_size", where, path, low=1) not in sizes:
            raise _wrong(
                where, f"{path}input_size", f"one of preprocessing.sizes {sizes}", spec["input_size"]
            )
        columns = _strings(spec, "columns", where, path)
        if not columns or not all(c.startswith(f"enc_{name}_") for c in columns):
            raise _wrong(where, f"{path}columns", f"a non-empty list of enc_{name}_* columns", columns)
        produced += columns
    return produced


def _check_preprocessing(manifest: Mapping[str, Any], where: str) -> None:
    from pydantic import ValidationError

    from morphomass.config import CosmologyConfig, PreprocessConfig

    pre = _section(manifest, "preprocessing", where, "")
    _string(pre, "band", where, "preprocessing.")
    sizes = pre.get("sizes")
    if (
        not isinstance(sizes, list)
        or not sizes
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in sizes)
    ):
        raise _wrong(where, "preprocessing.sizes", "a list of positive integers", sizes)
    for key in ("m_sun_image_band", "pixel_scale_arcsec"):
        _number(pre, key, where, "preprocessing.")
    for key in ("m_sun_ab", "ab_offset_mag"):
        table = _section(pre, key, where, "preprocessing.")
        for band in table:
            _number(table, band, where, f"preprocessing.{key}.")
    for key, model in (("settings", PreprocessConfig), ("cosmology", CosmologyConfig)):
        try:
            model.model_validate(_section(pre, key, where, "preprocessing."))
        except ValidationError as err:
            first = err.errors()[0]
            location = ".".join(str(part) for part in first["loc"])
            msg = f"{where}: preprocessing.{key}.{location}: {first['msg']}"
            raise BundleError(msg) from err


def _check_models(
    manifest: Mapping[str, Any], files: Mapping[str, Any], produced: list[str], where: str
) -> None:
    models = _section(manifest, "models", where, "")
    if "g" not in models:
        msg = f"{where} has no g-band model (models.g)"
        raise BundleError(msg)
    features = _section(manifest, "features", where, "")
    for key in ("photometric", "cnn", "dead"):
        _strings(features, key, where, "features.")
    known = model_experiments(manifest.get("encoders", {}))
    for key, model in models.items():
        if key not in known:
            raise _wrong(where, "models keys", f"among {sorted(known)}", key)
        if not isinstance(model, dict):
            raise _wrong(where, f"models.{key}", "a JSON object", model)
        _listed(_string(model, "file", where, f"models.{key}."), files, where, f"models.{key}.file")
        if key in MODEL_EXPERIMENTS or model.get("intervals") is not None:  # null: an uncalibrated model
            _listed(
                _string(model, "intervals", where, f"models.{key}."), files, where, f"models.{key}.intervals"
            )
        _string(model, "objective", where, f"models.{key}.")
        if "prediction_floor" not in model:
            raise _wrong(where, f"models.{key}.prediction_floor", "a number, or null (a target in dex)", None)
        if model["prediction_floor"] is not None:  # null: a target that is not floored (in dex)
            _number(model, "prediction_floor", where, f"models.{key}.")
        bands = _string(model, "catalog_bands", where, f"models.{key}.")
        if any(band not in "ugriz" for band in bands):
            raise _wrong(where, f"models.{key}.catalog_bands", "SDSS bands (ugriz)", bands)
        available = {*features["photometric"], *produced, *catalogue_feature_names(bands)}
        unknown = [f for f in _strings(model, "features", where, f"models.{key}.") if f not in available]
        if unknown or not model["features"]:
            msg = f"{where}: models.{key}.features names features the bundle does not compute ({unknown[:3]})"
            raise BundleError(msg)


def check_manifest(manifest: Mapping[str, Any], where: str) -> None:
    """Check the shape of a manifest: every section, key and type :class:`Bundle` and the predictor use.

    Parameters
    ----------
    manifest : mapping
        The parsed ``bundle.json``.
    where : str
        Its path, for the messages.

    Raises
    ------
    BundleError
        Naming the first key that is missing, of the wrong type, or (for ``models.<key>.file`` and the
        networks' ``card`` and ``weights``) not an entry of ``files``.
    """
    required = ("preprocessing", "networks", "features", "models", "training_ranges", "files")
    missing = [k for k in required if not isinstance(manifest.get(k), dict)]
    if missing:
        msg = f"{where} lacks the sections {missing}"
        raise BundleError(msg)
    files = _check_files(manifest, where)
    _check_preprocessing(manifest, where)
    produced = _check_networks(manifest, files, where) + _check_encoders(manifest, files, where)
    _check_models(manifest, files, produced, where)
    for key, bounds in manifest["training_ranges"].items():
        if (
            not isinstance(bounds, list)
            or len(bounds) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bounds)
        ):
            raise _wrong(where, f"training_ranges.{key}", "a [min, max] pair of numbers", bounds)
    if not isinstance(manifest.get("target"), dict):
        raise _wrong(where, "target", "a JSON object (morphomass.targets.Target)", manifest.get("target"))
    try:
        target_from_json(json.dumps(manifest["target"]), source=f"{where}: target")
    except InputDataError as err:
        raise BundleError(str(err)) from None
    levels = manifest.get("interval_levels")
    if (
        not isinstance(levels, list)
        or not levels
        or not all(isinstance(v, float) and 0 < v < 1 for v in levels)
    ):
        raise _wrong(where, "interval_levels", "a non-empty list of nominal coverages in (0, 1)", levels)


def _bundle_path(root: Path, rel: Any, *, where: str) -> Path:
    """Return the file a ``files`` entry names, refusing a path that is not a plain one inside ``root``."""
    if not isinstance(rel, str) or not rel or "\x00" in rel or "\\" in rel:
        msg = f"{where}: files entry {rel!r} is not a relative path inside the bundle folder"
        raise BundleError(msg)
    pure = PurePosixPath(rel)
    if pure.is_absolute() or ".." in pure.parts or PureWindowsPath(rel).drive:
        msg = f"{where}: files entry {rel!r} points outside the bundle folder (absolute or '..'); refusing it"
        raise BundleError(msg)
    path = root / rel
    try:
        inside = path.resolve().is_relative_to(root.resolve())
    except (OSError, RuntimeError) as err:
        msg = f"{where}: files entry {rel!r} cannot be resolved ({err})"
        raise BundleError(msg) from err
    if not inside:
        msg = f"{where}: files entry {rel!r} is a link pointing outside the bundle folder; refusing it"
        raise BundleError(msg)
    return path


def read_files(manifest: Mapping[str, Any], root: Path) -> dict[str, bytes]:
    """Read every listed file once, check its size and SHA-256, and return the checked bytes.

    Everything the bundle uses is parsed from these bytes: a file changed on disk after this check is never
    read. Paths must stay inside ``root`` (no absolute path, no ``..``, no link leading out), so no file
    outside the bundle is ever read or hashed.

    Parameters
    ----------
    manifest : mapping
        The parsed ``bundle.json``, its ``files`` section checked by :func:`load_bundle`.
    root : Path
        The folder holding ``bundle.json``.

    Returns
    -------
    dict of str to bytes
        ``files`` key -> the file's content.

    Raises
    ------
    BundleError
        Naming the first file that is outside the folder, missing, unreadable or modified.
    """
    where = str(root / BUNDLE_NAME)
    contents = {}
    for rel, entry in sorted(manifest["files"].items()):
        path = _bundle_path(root, rel, where=where)
        if not path.is_file():
            msg = f"bundle file {path} is missing (listed in {where})"
            raise BundleError(msg)
        try:
            data = path.read_bytes()
        except OSError as err:
            msg = f"bundle file {path} cannot be read ({err.strerror or err})"
            raise BundleError(msg) from err
        digest = hashlib.sha256(data).hexdigest()
        if len(data) != entry["bytes"] or digest != entry["sha256"]:
            msg = (
                f"bundle file {path} was modified after the bundle was written: SHA-256 {digest[:12]}... "
                f"differs from the recorded {entry['sha256'][:12]}...; refusing to use it"
            )
            raise BundleError(msg)
        contents[rel] = data
    return contents


def _resolve(path: str | Path) -> Path:
    path = Path(path)
    for candidate in (path, path / BUNDLE_NAME, WorkDir(path).bundle_manifest):
        if candidate.is_file():
            return candidate
    msg = f"no prediction bundle at {path}: expected {BUNDLE_NAME}, a folder holding it, or a work directory"
    raise BundleError(msg)


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as err:
        msg = f"{path} cannot be read ({err.strerror or err})"
        raise BundleError(msg) from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        msg = f"{path} is not valid JSON ({err})"
        raise BundleError(msg) from err
    except RecursionError as err:
        msg = f"{path} is not valid JSON (nested too deeply)"
        raise BundleError(msg) from err
    if not isinstance(manifest, dict):
        msg = f"{path}: expected a JSON object, got {type(manifest).__name__}"
        raise BundleError(msg)
    return manifest


def _check_content_hash(manifest: Mapping[str, Any], where: str) -> None:
    try:
        digest = bundle_content_sha256(manifest)
    except (RecursionError, ValueError) as err:
        msg = f"{where} cannot be hashed ({type(err).__name__}); refusing to use it"
        raise BundleError(msg) from err
    if manifest.get("bundle_sha256") != digest:
        msg = (
            f"{where} was modified after it was written (its content hash does not match "
            "bundle_sha256); refusing to use it"
        )
        raise BundleError(msg)


def load_bundle(path: str | Path) -> Bundle:
    """Load a prediction bundle after checking its format, versions and every file's SHA-256.

    Each listed file is read once; the networks' cards and weights and the LightGBM models are parsed from
    the bytes that were hashed. The hashes detect corruption and accidental edits, not a deliberate forger:
    whoever can edit the files can recompute them (a detached signature that the user verifies would).

    Parameters
    ----------
    path : str or Path
        ``bundle.json``, the folder holding it (a work directory's ``models/``) or a work directory.

    Returns
    -------
    Bundle
        GBMs parsed; the networks are built on the first :meth:`Bundle.predict`.

    Raises
    ------
    BundleError
        If there is no bundle, ``bundle.json`` is not valid JSON, was edited or has a section of the wrong
        shape, the format or morphomass version is incompatible, a model or network is not in ``files``, a
        listed file is outside the bundle folder, missing or modified, or a model or weight file is
        malformed.
    """
    manifest_path = _resolve(path)
    where = str(manifest_path)
    manifest = _read_manifest(manifest_path)
    check_compatible(manifest, where=where)
    _check_content_hash(manifest, where)
    check_manifest(manifest, where)
    contents = read_files(manifest, manifest_path.parent)
    return Bundle(manifest_path.parent, manifest, contents)


# ------------------------------------------------------------------------------------------------ LightGBM

#: Header keys of a LightGBM text model that its parser needs.
_GBM_HEADER_KEYS = (
    "version",
    "num_class",
    "num_tree_per_iteration",
    "max_feature_idx",
    "feature_names",
    "feature_infos",
    "tree_sizes",
)
#: Tree keys with one value per split node (num_leaves - 1) and per leaf (num_leaves).
_GBM_NODE_KEYS = (
    "split_feature",
    "split_gain",
    "threshold",
    "decision_type",
    "left_child",
    "right_child",
    "internal_value",
    "internal_weight",
    "internal_count",
)
_GBM_LEAF_KEYS = ("leaf_value", "leaf_weight", "leaf_count")
_GBM_TREE_LINES = 17  # LightGBM reads at most this many key=value lines of a tree
#: Objectives LightGBM knows (an unknown name crashes its parser); options follow as ``key:value``.
_GBM_OBJECTIVES = frozenset(
    "regression regression_l1 huber fair poisson quantile mape gamma tweedie binary multiclass multiclassova "
    "cross_entropy cross_entropy_lambda lambdarank rank_xendcg custom".split()
)


def _gbm_numbers(values: str, count: int, *, integer: bool, what: str) -> list[float]:
    pieces = values.split(" ") if values else []
    if len(pieces) != count:
        msg = f"{what} has {len(pieces)} values, expected {count}"
        raise ValueError(msg)
    numbers = [int(v) if integer else float(v) for v in pieces]
    return [float(v) for v in numbers]


def _check_gbm_tree(block: str, index: int, n_features: int) -> None:
    """Check one ``Tree=<index>`` block; raise ValueError saying what is wrong."""
    lines = block.split("\n")
    if lines[0] != f"Tree={index}":
        msg = f"tree {index} does not start with 'Tree={index}' (found {lines[0][:30]!r})"
        raise ValueError(msg)
    fields = {}
    for line in lines[1:]:
        if not line:
            break
        key, sep, value = line.partition("=")
        if not sep:
            msg = f"tree {index}: line {line[:30]!r} is not key=value"
            raise ValueError(msg)
        fields[key] = value
    if len(fields) > _GBM_TREE_LINES or "\r" in block:
        msg = f"tree {index} has unexpected lines"
        raise ValueError(msg)
    for key in ("num_leaves", "num_cat", "leaf_value", "shrinkage"):
        if key not in fields:
            msg = f"tree {index} lacks {key}"
            raise ValueError(msg)
    leaves, n_cat = int(fields["num_leaves"]), int(fields["num_cat"])
    if leaves < 1 or n_cat != 0 or fields.get("is_linear", "0") != "0":
        msg = f"tree {index}: num_leaves {leaves}, num_cat {n_cat}: expected a numerical, non-linear tree"
        raise ValueError(msg)
    float(fields["shrinkage"])
    for key in _GBM_LEAF_KEYS:
        if key in fields:
            _gbm_numbers(fields[key], leaves, integer=key == "leaf_count", what=f"tree {index} {key}")
    if leaves == 1:
        return
    nodes = {}
    for key in _GBM_NODE_KEYS:
        if key not in fields:
            msg = f"tree {index} lacks {key}"
            raise ValueError(msg)
        integer = key in ("split_feature", "decision_type", "left_child", "right_child", "internal_count")
        nodes[key] = _gbm_numbers(fields[key], leaves - 1, integer=integer, what=f"tree {index} {key}")
    bad = [f for f in nodes["split_feature"] if not 0 <= f < n_features]
    bad += [c for key in ("left_child", "right_child") for c in nodes[key] if not -leaves <= c < leaves - 1]
    bad += [d for d in nodes["decision_type"] if not 0 <= d < 256 or int(d) & 1]  # bit 0: categorical
    if bad:
        msg = f"tree {index} has a feature index, child index or decision type out of range ({bad[0]:g})"
        raise ValueError(msg)


def check_lightgbm_text(text: str) -> None:
    """Check that a LightGBM text model is complete and consistent before the C library parses it.

    LightGBM's parser trusts ``tree_sizes`` and reads past the end of a truncated or garbled model, which can
    abort the process; this check mirrors what it reads: the header keys, feature names and infos of
    ``max_feature_idx + 1`` features, one ``Tree=<i>`` block of exactly ``tree_sizes[i]`` bytes per tree,
    each with well-formed arrays of the right lengths and in-range indices, then ``end of trees``.

    Parameters
    ----------
    text : str
        The model (as ``Booster.model_to_string`` writes it).

    Raises
    ------
    ValueError
        Saying what is malformed.
    """
    header_text, sep, _ = text.partition("\n\n")
    header = header_text.split("\n")
    if header[0] != "tree" or not sep:
        msg = "it does not start with a LightGBM 'tree' header"
        raise ValueError(msg)
    fields = dict(line.partition("=")[::2] for line in header[1:])
    missing = [k for k in _GBM_HEADER_KEYS if k not in fields]
    if missing:
        msg = f"its header lacks {missing}"
        raise ValueError(msg)
    objective = fields.get("objective", "regression").split(" ")
    if objective[0] not in _GBM_OBJECTIVES or not all(
        re.fullmatch(r"[a-z_]+:[-+.0-9eE]+", option) for option in objective[1:]
    ):
        msg = f"its objective {fields.get('objective', '')[:40]!r} is not one LightGBM knows"
        raise ValueError(msg)
    n_features = int(fields["max_feature_idx"]) + 1
    per_iteration = int(fields["num_tree_per_iteration"])
    if int(fields["num_class"]) < 1 or per_iteration < 1 or n_features < 1:
        msg = "its header has a non-positive num_class, num_tree_per_iteration or max_feature_idx"
        raise ValueError(msg)
    for key in ("feature_names", "feature_infos"):
        if len(fields[key].split(" ")) != n_features:
            msg = f"its {key} does not list max_feature_idx + 1 = {n_features} features"
            raise ValueError(msg)
    sizes = [int(v) for v in fields["tree_sizes"].split(" ")]
    if not sizes or min(sizes) < 1 or len(sizes) % per_iteration:
        msg = f"its tree_sizes ({len(sizes)} trees) are not positive sizes of whole iterations"
        raise ValueError(msg)
    data = text.encode("utf-8")
    offset = len(header_text.encode("utf-8")) + 2
    while data[offset : offset + 1] == b"\n":
        offset += 1
    for index, size in enumerate(sizes):
        block = data[offset : offset + size]
        if len(block) != size:
            msg = f"it is truncated: tree {index} needs {size} bytes, {len(block)} remain"
            raise ValueError(msg)
        _check_gbm_tree(block.decode("utf-8"), index, n_features)
        offset += size
    _check_gbm_tail(data[offset:].decode("utf-8"))


def _check_gbm_tail(tail: str) -> None:
    """Check what follows the trees: ``end of trees``, the importances, the parameters block (complete)."""
    lines = tail.split("\n")
    if lines[0] != "end of trees":
        msg = "the trees do not end with 'end of trees' where tree_sizes says"
        raise ValueError(msg)
    if "feature_importances:" in lines:
        start = lines.index("feature_importances:") + 1
        end = lines.index("", start) if "" in lines[start:] else len(lines)
        if not all(re.fullmatch(r"[^=]+=\d+", line) for line in lines[start:end]):
            msg = "its feature_importances are malformed"
            raise ValueError(msg)
    if "parameters:" in lines:
        start = lines.index("parameters:") + 1
        if "end of parameters" not in lines[start:]:
            msg = "its parameters block is truncated (no 'end of parameters')"
            raise ValueError(msg)
        end = lines.index("end of parameters", start)
        pattern = r"\[[A-Za-z0-9_]+: [^\]\[]*\]|"  # one [key: value] a line; a blank line before the end
        if not all(re.fullmatch(pattern, line) for line in lines[start:end]):
            msg = "its parameters block is malformed"
            raise ValueError(msg)


def parse_lightgbm_model(data: bytes, *, where: str | Path) -> Any:
    """Return a ``lightgbm.Booster`` parsed from a text model's bytes, after :func:`check_lightgbm_text`.

    Raises
    ------
    BundleError
        Naming the file and what is malformed (a malformed model never reaches LightGBM's parser).
    """
    import lightgbm as lgb

    try:
        text = data.decode("utf-8")
        check_lightgbm_text(text)
        return lgb.Booster(model_str=text)
    except (ValueError, lgb.basic.LightGBMError) as err:  # UnicodeDecodeError is a ValueError
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        msg = f"{where} is not a valid LightGBM text model: {first}"
        raise BundleError(msg) from err


class Bundle:
    """A loaded prediction bundle (use :func:`load_bundle`); the networks and GBMs load on first use.

    Parameters
    ----------
    root : Path
        Folder holding ``bundle.json`` and the files it lists.
    manifest : dict
        The parsed, checked ``bundle.json``.
    contents : mapping of str to bytes
        The checked bytes of every listed file (:func:`read_files`): the cards, weights and GBMs are parsed
        from them, never read again from disk.

    Raises
    ------
    BundleError
        If a card, a weight file or a GBM is malformed or does not fit the manifest.
    """

    def __init__(self, root: Path, manifest: dict[str, Any], contents: Mapping[str, bytes]) -> None:
        self.root = Path(root)
        self.manifest = manifest
        self._target = target_from_json(json.dumps(manifest["target"]), source=str(self.root))
        self._networks: dict[str, Any] | None = None
        self._parts = {
            name: self._network_parts(name, spec, contents) for name, spec in manifest["networks"].items()
        }
        self._boosters = {
            key: self._booster(key, model, contents[model["file"]])
            for key, model in manifest["models"].items()
        }
        self._intervals = {
            key: self._interval_calibration(key, model, contents[model["intervals"]])
            for key, model in manifest["models"].items()
            if model.get("intervals") is not None
        }
        self._sources = {
            name: self._encoder_source(name, spec, contents)
            for name, spec in manifest.get("encoders", {}).items()
        }

    def _encoder_source(self, name: str, spec: Mapping[str, Any], contents: Mapping[str, bytes]) -> Any:
        """Rebuild an encoder source from its checked card, weights and PCA bytes; check they fit."""
        from morphomass.cnn.sources import encoder_source_from_bytes

        card_path = self.root / spec["card"]
        try:
            card = json.loads(contents[spec["card"]].decode("utf-8"))
        except (ValueError, RecursionError) as err:
            msg = f"bundle file {card_path} is not a valid JSON card ({type(err).__name__})"
            raise BundleError(msg) from err
        if not isinstance(card, dict):
            msg = f"bundle file {card_path} is not the card of an encoder source (not a JSON object)"
            raise BundleError(msg)
        recorded = (name, spec["input_size"], list(spec["columns"]), spec.get("pca") is not None)
        found = (card.get("name"), card.get("input_size"), card.get("columns"), card.get("pca") is not None)
        if found != recorded:
            msg = (
                f"bundle file {card_path} describes encoder {found[0]!r} at {found[1]} px (PCA: {found[3]}), "
                f"not bundle.json's encoders.{name} at {recorded[1]} px (PCA: {recorded[3]}) and its columns"
            )
            raise BundleError(msg)
        weights, pca = contents[spec["weights"]], None if spec.get("pca") is None else contents[spec["pca"]]
        for key, data in (("weights", weights), ("pca", pca)):
            if data is not None and hashlib.sha256(data).hexdigest() != card.get(f"{key}_sha256"):
                msg = f"bundle file {self.root / spec[key]}: SHA-256 differs from the one {card_path} records"
                raise BundleError(msg)
        try:
            return encoder_source_from_bytes(card, weights, pca, where=card_path.parent)
        except InputDataError as err:
            raise BundleError(str(err)) from err

    def _network_parts(
        self, name: str, spec: Mapping[str, Any], contents: Mapping[str, bytes]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Parse a network's card and weights; check the card matches the manifest."""
        from morphomass.cnn.weights import CARD_KEYS, read_weights

        card_path, weights_path = self.root / spec["card"], self.root / spec["weights"]
        try:
            card = json.loads(contents[spec["card"]].decode("utf-8"))
        except (ValueError, RecursionError) as err:
            msg = f"bundle file {card_path} is not a valid JSON card ({type(err).__name__})"
            raise BundleError(msg) from err
        missing = [k for k in CARD_KEYS if not isinstance(card, dict) or k not in card]
        if missing:
            msg = f"bundle file {card_path} is not the card of a network: it lacks {missing}"
            raise BundleError(msg)
        recorded = (name, spec["kind"], spec["backbone"], spec["input_size"])
        found = tuple(card.get(k) for k in ("name", "kind", "backbone", "input_size"))
        if found != recorded:
            msg = (
                f"bundle file {card_path} describes network {found[0]!r} ({found[1]}, {found[2]} at "
                f"{found[3]} px) but bundle.json's networks.{name} is a {recorded[1]} {recorded[2]} at "
                f"{recorded[3]} px"
            )
            raise BundleError(msg)
        try:
            state = read_weights(contents[spec["weights"]], where=weights_path)
        except InputDataError as err:
            raise BundleError(str(err)) from err
        return card, state

    def _booster(self, key: str, model: Mapping[str, Any], data: bytes) -> Any:
        """Parse a GBM from its checked bytes; check it uses the features the manifest lists."""
        path = self.root / model["file"]
        booster = parse_lightgbm_model(data, where=path)
        if booster.feature_name() != list(model["features"]):
            msg = (
                f"bundle file {path} uses {booster.num_feature()} features that differ from the "
                f"{len(model['features'])} of bundle.json's models.{key}.features"
            )
            raise BundleError(msg)
        return booster

    def _interval_calibration(self, key: str, model: Mapping[str, Any], data: bytes) -> Any:
        """Parse a model's interval calibration from its checked bytes; check it fits the model."""
        from morphomass.intervals import IntervalCalibration

        path = self.root / model["intervals"]
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as err:
            msg = f"bundle file {path} is not UTF-8 JSON ({err.reason} at byte {err.start})"
            raise BundleError(msg) from err
        calibration = IntervalCalibration.from_json(text, source=str(path))
        if list(calibration.feature_names) != list(model["features"]):
            msg = (
                f"bundle file {path} calibrates a model on other features than bundle.json's "
                f"models.{key}.features"
            )
            raise BundleError(msg)
        missing = [level for level in self.interval_levels if level not in calibration.levels]
        if missing:
            msg = f"bundle file {path} has no calibration for the levels {missing} of bundle.json"
            raise BundleError(msg)
        return calibration

    @property
    def target(self) -> Target:
        """What the bundle's models predict (:class:`morphomass.targets.Target`)."""
        return self._target

    @property
    def interval_levels(self) -> list[float]:
        """Nominal coverages of the prediction intervals that predict writes (e.g. 0.68, 0.95)."""
        return [float(level) for level in self.manifest["interval_levels"]]

    def interval_calibrations(self) -> dict[str, Any]:
        """Return each model's interval calibration (:class:`morphomass.intervals.IntervalCalibration`).

        A model without one (an encoder model that train-gbm did not calibrate) is absent: its interval
        bounds are NaN.
        """
        return dict(self._intervals)

    @property
    def encoder_names(self) -> list[str]:
        """The encoder sources (``cnn.encoders`` of the run), in the order of their columns."""
        return list(self._sources)

    def encoder_sources(self, device: Any = "cpu") -> dict[str, Any]:
        """Return the encoder sources by name (``morphomass.cnn.sources.EncoderSource``) on ``device``."""
        for source in self._sources.values():
            source.encoder.model.to(device)
        return dict(self._sources)

    def __repr__(self) -> str:
        return (
            f"Bundle({str(self.root)!r}, models={self.model_keys}, "
            f"networks={list(self.manifest['networks'])}, morphomass {self.manifest['morphomass_version']})"
        )

    @property
    def model_keys(self) -> list[str]:
        """The models: ``"g"`` (image + morphology) and, if trained, ``"gi"`` (+ g and i magnitudes).

        Per encoder source ``<name>`` also ``"g_<name>"`` and ``"gi_<name>"`` (the same plus its features).
        """
        return list(self.manifest["models"])

    @property
    def training_ranges(self) -> dict[str, list[float]]:
        """``[min, max]`` of the training galaxies: ``z``, ``d25_arcmin``, ``pixel_kpc``, ``flux_g_nmgy``."""
        return dict(self.manifest["training_ranges"])

    def networks(self, device: Any = "cpu") -> dict[str, Any]:
        """Return the networks by name, weights loaded, in eval mode on ``device`` (loaded once)."""
        if self._networks is None:
            from morphomass.cnn.weights import network_from_state

            networks = {}
            for name, (card, state) in self._parts.items():
                where = self.root / self.manifest["networks"][name]["weights"]
                try:
                    networks[name] = network_from_state(card, state, where=where)
                except InputDataError as err:
                    raise BundleError(str(err)) from err
            self._networks, self._parts = networks, {}
        return {name: net.to(device) for name, net in self._networks.items()}

    def boosters(self) -> dict[str, Any]:
        """Return the LightGBM boosters by model key (parsed at load from the bytes that were hashed)."""
        return dict(self._boosters)

    def predict(
        self,
        images: str | Path | Mapping[int, str | Path],
        catalog: str | Path | pd.DataFrame,
        *,
        stars: str | Path | pd.DataFrame | None = None,
        model: str = "auto",
        batch_size: int = 64,
        device: str = "auto",
        progress: bool = False,
        recut: bool = False,
    ) -> pd.DataFrame:
        """Predict the M/L, stellar mass and their intervals for every galaxy of a catalogue from its image.

        Parameters
        ----------
        images : str, Path or mapping
            A folder of FITS images named ``<objid>.fits`` (in a ``<band>/`` sub-folder if there is one), or a
            mapping objid -> FITS path.
        catalog : str, Path or pandas.DataFrame
            One row per galaxy: ``objid``, ``ra``, ``dec`` (degrees), ``z``, ``d25_arcmin`` and optionally
            ``modelMag_<band>`` (SDSS asinh magnitudes; -9999 or NaN for missing). CSV, Parquet or FITS.
        stars : str, Path or pandas.DataFrame, optional
            Point sources (``ra``, ``dec``; rows with ``type`` other than 6 are ignored) used as priors of the
            star subtraction; without it no star is subtracted.
        model : {'auto', 'g', 'gi', 'g_<name>', 'gi_<name>'}
            ``auto`` uses the g+i model for the galaxies with g and i magnitudes (when the bundle has it) and
            the g-band model otherwise. ``g_<name>`` and ``gi_<name>`` (:attr:`model_keys`) are those models
            with the features of encoder source ``<name>`` added; a g+i model predicts only the galaxies with
            g and i magnitudes.
        batch_size : int
            Galaxies per batch through the networks.
        device : {'auto', 'cpu', 'gpu'}
        progress : bool
            Show a progress bar.
        recut : bool
            Cut an image whose field of view is wider than the bundle's (1.125 x D25, within the default
            tolerance) to that square around the catalogue position, instead of flagging ``fov_mismatch``.

        Returns
        -------
        pandas.DataFrame
            One row per catalogue row, in order, the columns of
            :func:`morphomass.predict.predictor.output_dtypes` for the bundle's :attr:`target`: ``objid``, the
            predictions (``ml_pred`` and ``log_mstar_pred`` for M/L and log M*, ``log_sfr_pred`` for log SFR;
            :func:`~morphomass.predict.predictor.prediction_quantities`) and their bounds ``<q>_lo_<p>``,
            ``<q>_hi_<p>`` for each nominal coverage p (percent) of :attr:`interval_levels`, then L_g, the
            model, the flags and the reasons.

        Raises
        ------
        InputDataError
            If the catalogue or star table cannot be read or lacks a column, or ``objid`` is not a unique
            integer; problems of single galaxies are flags, not errors.
        """
        return predict_catalog(
            self,
            images,
            catalog,
            stars=stars,
            model=model,
            batch_size=batch_size,
            device=device,
            progress=progress,
            recut=recut,
        )
