"""The prediction bundle: ``models/bundle.json`` and the files it lists, written, checked and loaded.

A bundle holds everything :mod:`morphomass.predict` needs to turn a FITS image, a redshift and optional SDSS
magnitudes into an M/L, without the training data:

* the preprocessing settings (star subtraction, scaling, image sizes and dtype, the Sun's magnitude in the
  image band, the cosmology and pixel-scale conventions of the catalogue stage),
* the networks (``cnn/<net>.safetensors`` + ``cnn/<net>.json`` cards) and the feature columns each gives,
* the dead-feature list (CNN columns that were zero for every training galaxy, dropped by ``extract``),
* the LightGBM text models (``gbm/g_morph.txt``: g-band image + morphology; ``gbm/gi_morph.txt``: the same
  plus the catalogue g and i luminosities, when the training sample had the i band), their feature names,
  objective and prediction floor,
* the training ranges of redshift, D25, pixel size, fluxes and L_g, to flag extrapolations,
* the versions of morphomass and of the libraries, the full configuration, and the SHA-256 and size of every
  listed file.

File paths are relative to the folder holding ``bundle.json`` (a work directory's ``models/``). The manifest
carries ``bundle_sha256``, the hash of its own canonical JSON without that key, so an edited ``bundle.json``
is refused as firmly as an edited weight file. Nothing is pickled: JSON, safetensors and LightGBM text only.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import importlib.metadata
import json
import logging
import platform
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from morphomass import __version__
from morphomass.cnn.columns import CNN4, CNN4_BASE, cnn4_columns, probability_columns, trunk_columns
from morphomass.config import PipelineConfig
from morphomass.errors import (
    BundleError,
    BundleVersionWarning,
    WorkdirError,
)
from morphomass.preprocess.features import FEATURE_COLUMNS
from morphomass.workdir import WorkDir, file_sha256, load_manifest, write_json_atomic

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "BUNDLE_FORMAT",
    "BUNDLE_FORMAT_VERSION",
    "BUNDLE_NAME",
    "MODEL_EXPERIMENTS",
    "Bundle",
    "bundle_content_sha256",
    "check_compatible",
    "load_bundle",
    "verify_files",
    "write_bundle",
]

logger = logging.getLogger(__name__)

BUNDLE_NAME = "bundle.json"
BUNDLE_FORMAT = "morphomass-bundle"
#: Version of the manifest layout; 1 was the minimal manifest of the first ``train-gbm``.
BUNDLE_FORMAT_VERSION = 2
#: Bundle model key (the catalogue bands it needs besides the image) -> GBM experiment (DESIGN §4 names).
MODEL_EXPERIMENTS: dict[str, str] = {"g": "g_morph", "gi": "gi_morph"}
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
#: Preprocess fields that change how the stage runs, not what it makes (left out of the bundle).
_RUNTIME_PREPROCESS_FIELDS = {"workers", "scheduler"}


# ------------------------------------------------------------------------------------------------ hashing


def bundle_content_sha256(manifest: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of a manifest's canonical JSON (sorted keys, compact), ``bundle_sha256`` left out."""
    content = {k: v for k, v in manifest.items() if k != "bundle_sha256"}
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _file_entry(root: Path, rel: str) -> dict[str, Any]:
    path = root / rel
    return {"sha256": file_sha256(path), "bytes": path.stat().st_size}


# ------------------------------------------------------------------------------------------------ writing


def _library_versions() -> dict[str, str | None]:
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


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        msg = f"{path} not found: {what}"
        raise WorkdirError(msg) from err
    except json.JSONDecodeError as err:
        msg = f"{path} is not valid JSON ({err})"
        raise WorkdirError(msg) from err
    if not isinstance(data, dict):
        msg = f"{path}: expected a JSON object, got {type(data).__name__}"
        raise WorkdirError(msg)
    return data


def _network_columns(name: str, card: dict[str, Any]) -> dict[str, list[str]]:
    """Output key of ``forward_features`` -> feature columns of one network (SPEC F4, DESIGN §2 names)."""
    if card["kind"] == "ml":
        return {"f": cnn4_columns()}
    columns = {"p": probability_columns(name)}
    if name == CNN4_BASE:
        columns["trunk"] = trunk_columns(name, int(card["trunk_features"]))
    return columns


def _networks(config: PipelineConfig, models: Path) -> dict[str, dict[str, Any]]:
    names = [*config.cnn.nets, *([CNN4] if config.cnn.train_cnn4 else [])]
    networks = {}
    for name in names:
        card_rel, weights_rel = f"cnn/{name}.json", f"cnn/{name}.safetensors"
        card = _read_json(models / card_rel, f"network {name} is not trained; run 'morphomass train-cnn'")
        if not (models / weights_rel).is_file():
            msg = f"{models / weights_rel} not found; run 'morphomass train-cnn'"
            raise WorkdirError(msg)
        expected = config.cnn.nets.get(CNN4_BASE if name == CNN4 else name)
        if expected is not None and (card.get("backbone"), card.get("input_size")) != (
            expected.backbone,
            expected.input_size,
        ):
            msg = (
                f"{models / card_rel} is a {card.get('backbone')} at {card.get('input_size')} px but the "
                f"configuration asks for {expected.backbone} at {expected.input_size} px; pass the "
                "configuration the networks were trained with"
            )
            raise WorkdirError(msg)
        networks[name] = {
            "card": card_rel,
            "weights": weights_rel,
            "kind": card["kind"],
            "backbone": card["backbone"],
            "input_size": int(card["input_size"]),
            "columns": _network_columns(name, card),
        }
    return networks


def _cnn_features(networks: dict[str, dict[str, Any]], cnn_parquet: Path) -> tuple[list[str], list[str]]:
    """The CNN columns kept by ``extract`` and the dead ones it dropped; checks they fit the networks."""
    import pyarrow.parquet as pq

    kept = [c for c in pq.read_schema(cnn_parquet).names if c != "objid"]
    produced = [c for net in networks.values() for cols in net["columns"].values() for c in cols]
    unknown = sorted(set(kept) - set(produced))
    if unknown:
        msg = (
            f"{cnn_parquet} has columns no network of the configuration produces ({unknown[:3]}...); run "
            "'morphomass extract' again or pass the configuration the features were extracted with"
        )
        raise WorkdirError(msg)
    kept_set = set(kept)
    return kept, [c for c in produced if c not in kept_set]


def _catalogue_feature_names(bands: str) -> list[str]:
    """Names of :func:`morphomass.gbm.table.band_features` for a band set (cat_z, cat_lum_*, cat_ratio_*)."""
    from morphomass.gbm.table import band_features

    probe = pd.DataFrame({"z": [0.1], "dist_mpc": [400.0], **{f"lum_{b}": [1e10] for b in bands}})
    return list(band_features(probe, bands).columns) if bands else []


def _gbm_models(models: Path, producible: set[str]) -> dict[str, dict[str, Any]]:
    out = {}
    for key, experiment in MODEL_EXPERIMENTS.items():
        model_rel, info_path = f"gbm/{experiment}.txt", models / "gbm" / f"{experiment}.json"
        if not (models / model_rel).is_file() or not info_path.is_file():
            if key == "g":
                msg = f"{models / model_rel} (and its .json) not found; run 'morphomass train-gbm' first"
                raise WorkdirError(msg)
            logger.info("bundle: no %s model (%s), no g+i predictions", experiment, model_rel)
            continue
        info = _read_json(info_path, f"run 'morphomass train-gbm' (experiment {experiment})")
        bands = str(info.get("recipe", {}).get("catalog_bands", ""))
        needed = set(info["features"]) - producible - set(_catalogue_feature_names(bands))
        if needed:
            msg = (
                f"{info_path}: the model uses features the bundle cannot compute from an image and a "
                f"catalogue ({sorted(needed)[:3]}...); only the g-band image, CNN and catalogue-band "
                "features are supported"
            )
            raise WorkdirError(msg)
        out[key] = {
            "experiment": experiment,
            "file": model_rel,
            "objective": info["objective"],
            "features": list(info["features"]),
            "catalog_bands": bands,
            "prediction_floor": float(info["prediction_floor"]),
            "best_iteration": info.get("best_iteration"),
            "n_train": info.get("n_train"),
        }
    return out


def _range(values: pd.Series) -> list[float] | None:
    finite = values.to_numpy(dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    return [float(finite.min()), float(finite.max())] if finite.size else None


def _training_ranges(workdir: WorkDir, bands: set[str]) -> tuple[dict[str, list[float]], int]:
    """Ranges of the training galaxies that have image features (the GBMs' training rows)."""
    import pyarrow.parquet as pq

    available = set(pq.read_schema(workdir.sample).names)
    columns = [
        "objid",
        "split",
        "z",
        "d25_arcmin",
        "pixel_kpc",
        "lum_g",
        *(f"flux_{b}" for b in sorted(bands) if f"flux_{b}" in available),
    ]
    missing = [c for c in columns if c not in available]
    if missing:
        msg = f"{workdir.sample} lacks {missing}, needed for the bundle's training ranges"
        raise WorkdirError(msg)
    sample = pd.read_parquet(workdir.sample, columns=columns)
    with_features = pd.read_parquet(workdir.features / "photometric.parquet", columns=["objid"])["objid"]
    train = sample[(sample["split"] == "train") & sample["objid"].isin(with_features)]
    names = {
        "z": "z",
        "d25_arcmin": "d25_arcmin",
        "pixel_kpc": "pixel_kpc",
        "lum_g_lsun": "lum_g",
        **{f"flux_{b}_nmgy": f"flux_{b}" for b in sorted(bands) if f"flux_{b}" in available},
    }
    ranges = {key: _range(train[col]) for key, col in names.items()}
    return {k: v for k, v in ranges.items() if v is not None}, len(train)


def _check_manifest(config: PipelineConfig, workdir: WorkDir) -> None:
    """The configuration must be the one the catalogue and preprocess stages ran with (when recorded)."""
    from morphomass.pipeline import stage_config_hash

    stages = load_manifest(workdir)["stages"]
    for name in ("catalog", "preprocess"):
        recorded = stages.get(name, {}).get("config_hash")
        if recorded is not None and recorded != stage_config_hash(config, name):
            msg = (
                f"the configuration differs from the one the {name} stage ran with in {workdir.root} "
                "(manifest.json); write the bundle with the same preset and configuration file"
            )
            raise WorkdirError(msg)


def _preprocessing(config: PipelineConfig, networks: dict[str, dict[str, Any]]) -> dict[str, Any]:
    from morphomass.catalog.targets import PAPER_PIXEL_ARCSEC, SDSS_PIXEL_ARCSEC

    band = config.preprocess.band
    catalog = config.catalog
    pixel_scale = catalog.pixel_scale_arcsec or (
        PAPER_PIXEL_ARCSEC if config.cosmology.convention == "paper" else SDSS_PIXEL_ARCSEC
    )
    return {
        "band": band,
        "settings": config.preprocess.model_dump(mode="json", exclude=_RUNTIME_PREPROCESS_FIELDS),
        "sizes": sorted({net["input_size"] for net in networks.values()}),
        # the images are SDSS nanomaggies: the Sun's magnitude on their system, as in the preprocess stage
        "m_sun_image_band": float(catalog.m_sun_ab[band] - catalog.ab_offset_mag[band]),
        "m_sun_ab": dict(catalog.m_sun_ab),
        "ab_offset_mag": dict(catalog.ab_offset_mag),
        "pixel_scale_arcsec": float(pixel_scale),
        "cosmology": config.cosmology.model_dump(mode="json"),
    }


def write_bundle(config: PipelineConfig, workdir: WorkDir) -> Path:
    """Write ``models/bundle.json`` for the trained models of a work directory.

    Parameters
    ----------
    config : PipelineConfig
        The configuration the work directory was made with (checked against the manifest's catalogue and
        preprocess records when present).
    workdir : WorkDir
        Reads ``models/cnn/``, ``models/gbm/g_morph.*`` (and ``gi_morph.*`` if present),
        ``features/cnn.parquet`` (column names), ``features/photometric.parquet`` (objid) and
        ``sample.parquet``.

    Returns
    -------
    Path
        The bundle manifest, ``models/bundle.json`` (written atomically).

    Raises
    ------
    WorkdirError
        If a network, a GBM or a feature table is missing, or does not fit the configuration.
    """
    models = workdir.models
    _check_manifest(config, workdir)
    networks = _networks(config, models)
    kept, dead = _cnn_features(networks, workdir.features / "cnn.parquet")
    gbm = _gbm_models(models, set(FEATURE_COLUMNS) | set(kept))
    bands = {"g", *(b for model in gbm.values() for b in model["catalog_bands"])}
    ranges, n_train = _training_ranges(workdir, bands)
    files = sorted(
        {
            *(n["card"] for n in networks.values()),
            *(n["weights"] for n in networks.values()),
            *(m["file"] for m in gbm.values()),
        }
    )
    manifest: dict[str, Any] = {
        "format": BUNDLE_FORMAT,
        "format_version": BUNDLE_FORMAT_VERSION,
        "morphomass_version": __version__,
        "created_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "versions": _library_versions(),
        "preset": config.preset,
        "config": config.model_dump(mode="json"),
        "target": "ml_g",
        "preprocessing": _preprocessing(config, networks),
        "networks": networks,
        "features": {"photometric": list(FEATURE_COLUMNS), "cnn": kept, "dead": dead},
        "models": gbm,
        "training_ranges": ranges,
        "n_train": n_train,
        "files": {rel: _file_entry(models, rel) for rel in files},
    }
    manifest["bundle_sha256"] = bundle_content_sha256(manifest)
    path = models / BUNDLE_NAME
    write_json_atomic(path, manifest)
    logger.info(
        "bundle: %s (%d files, models %s, %d dead CNN features)", path, len(files), sorted(gbm), len(dead)
    )
    return path


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
            msg += "; it is the minimal manifest of an older train-gbm: write the full one with write_bundle"
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
    here = _library_versions()
    for name, version in (manifest.get("versions") or {}).items():
        if name == "python" or version is None or name not in here:
            continue
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


def verify_files(manifest: Mapping[str, Any], root: Path) -> None:
    """Check that every listed file exists with its recorded size and SHA-256.

    Raises
    ------
    BundleError
        Naming the first missing or modified file.
    """
    for rel, entry in sorted((manifest.get("files") or {}).items()):
        path = root / rel
        if not path.is_file():
            msg = f"bundle file {path} is missing (listed in {root / BUNDLE_NAME})"
            raise BundleError(msg)
        digest = file_sha256(path)
        if path.stat().st_size != entry.get("bytes") or digest != entry.get("sha256"):
            msg = (
                f"bundle file {path} was modified after the bundle was written: SHA-256 {digest[:12]}... "
                f"differs from the recorded {str(entry.get('sha256'))[:12]}...; refusing to use it"
            )
            raise BundleError(msg)


def _resolve(path: str | Path) -> Path:
    path = Path(path)
    for candidate in (path, path / BUNDLE_NAME, path / "models" / BUNDLE_NAME):
        if candidate.is_file():
            return candidate
    msg = f"no prediction bundle at {path}: expected {BUNDLE_NAME}, a folder holding it, or a work directory"
    raise BundleError(msg)


def _required_keys(manifest: Mapping[str, Any], where: str) -> None:
    required = ("preprocessing", "networks", "features", "models", "training_ranges", "files")
    missing = [k for k in required if not isinstance(manifest.get(k), dict)]
    if missing:
        msg = f"{where} lacks the sections {missing}"
        raise BundleError(msg)
    if "g" not in manifest["models"]:
        msg = f"{where} has no g-band model (models.g)"
        raise BundleError(msg)


def load_bundle(path: str | Path) -> Bundle:
    """Load a prediction bundle after checking its format, versions and every file's SHA-256.

    Parameters
    ----------
    path : str or Path
        ``bundle.json``, the folder holding it (a work directory's ``models/``) or a work directory.

    Returns
    -------
    Bundle
        Networks and GBMs are read on the first :meth:`Bundle.predict`.

    Raises
    ------
    BundleError
        If there is no bundle, ``bundle.json`` is not valid JSON or was edited, the format or morphomass
        version is incompatible, or a listed file is missing or modified.
    """
    manifest_path = _resolve(path)
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        msg = f"{manifest_path} is not valid JSON ({err})"
        raise BundleError(msg) from err
    if not isinstance(manifest, dict):
        msg = f"{manifest_path}: expected a JSON object"
        raise BundleError(msg)
    check_compatible(manifest, where=str(manifest_path))
    if manifest.get("bundle_sha256") != bundle_content_sha256(manifest):
        msg = (
            f"{manifest_path} was modified after it was written (its content hash does not match "
            "bundle_sha256); refusing to use it"
        )
        raise BundleError(msg)
    _required_keys(manifest, str(manifest_path))
    verify_files(manifest, manifest_path.parent)
    return Bundle(manifest_path.parent, manifest)


class Bundle:
    """A loaded prediction bundle (use :func:`load_bundle`); the networks and GBMs load on first use.

    Parameters
    ----------
    root : Path
        Folder holding ``bundle.json`` and the files it lists.
    manifest : dict
        The parsed, checked ``bundle.json``.
    """

    def __init__(self, root: Path, manifest: dict[str, Any]) -> None:
        self.root = Path(root)
        self.manifest = manifest
        self._networks: dict[str, Any] | None = None
        self._boosters: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return (
            f"Bundle({str(self.root)!r}, models={self.model_keys}, "
            f"networks={list(self.manifest['networks'])}, morphomass {self.manifest['morphomass_version']})"
        )

    @property
    def model_keys(self) -> list[str]:
        """The models: ``"g"`` (image + morphology) and, if trained, ``"gi"`` (+ g and i magnitudes)."""
        return list(self.manifest["models"])

    @property
    def training_ranges(self) -> dict[str, list[float]]:
        """``[min, max]`` of the training galaxies: ``z``, ``d25_arcmin``, ``pixel_kpc``, ``flux_g_nmgy``."""
        return dict(self.manifest["training_ranges"])

    def networks(self, device: Any = "cpu") -> dict[str, Any]:
        """The networks by name, weights loaded, in eval mode on ``device`` (loaded once)."""
        if self._networks is None:
            from morphomass.cnn.weights import load_network

            names = self.manifest["networks"]
            self._networks = {name: load_network(self.root / "cnn", name)[0] for name in names}
        return {name: net.to(device) for name, net in self._networks.items()}

    def boosters(self) -> dict[str, Any]:
        """The LightGBM boosters by model key (loaded once, from their text files)."""
        if self._boosters is None:
            import lightgbm as lgb

            self._boosters = {
                key: lgb.Booster(model_file=str(self.root / model["file"]))
                for key, model in self.manifest["models"].items()
            }
        return self._boosters

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
    ) -> pd.DataFrame:
        """Predict the M/L and stellar mass of every galaxy of a catalogue from its image.

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
        model : {'auto', 'g', 'gi'}
            ``auto`` uses the g+i model for the galaxies with g and i magnitudes (when the bundle has it) and
            the g-band model otherwise.
        batch_size : int
            Galaxies per batch through the networks.
        device : {'auto', 'cpu', 'gpu'}
        progress : bool
            Show a progress bar.

        Returns
        -------
        pandas.DataFrame
            One row per catalogue row, in order: see :data:`morphomass.predict.predictor.OUTPUT_COLUMNS`.

        Raises
        ------
        InputDataError
            If the catalogue or star table cannot be read or lacks a column, or ``objid`` is not a unique
            integer; problems of single galaxies are flags, not errors.
        """
        from morphomass.predict.predictor import predict_catalog

        return predict_catalog(
            self,
            images,
            catalog,
            stars=stars,
            model=model,
            batch_size=batch_size,
            device=device,
            progress=progress,
        )
