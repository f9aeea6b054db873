"""The prediction bundle: ``models/bundle.json`` and the files it lists, checked and loaded.

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
:mod:`morphomass.predict.writer` writes the bundle of a work directory.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import platform
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from morphomass import __version__
from morphomass.errors import BundleError, BundleVersionWarning
from morphomass.predict.predictor import predict_catalog
from morphomass.workdir import WorkDir, file_sha256

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "BUNDLE_FORMAT",
    "BUNDLE_FORMAT_VERSION",
    "BUNDLE_NAME",
    "MODEL_EXPERIMENTS",
    "RECORDED_LIBRARIES",
    "Bundle",
    "bundle_content_sha256",
    "check_compatible",
    "library_versions",
    "load_bundle",
    "verify_files",
]

#: File name of the manifest (a work directory's ``models/bundle.json``).
BUNDLE_NAME = WorkDir(Path()).bundle_manifest.name
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
    here = library_versions()
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
    for candidate in (path, path / BUNDLE_NAME, WorkDir(path).bundle_manifest):
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
        """Return the networks by name, weights loaded, in eval mode on ``device`` (loaded once)."""
        if self._networks is None:
            from morphomass.cnn.weights import load_network

            names = self.manifest["networks"]
            self._networks = {name: load_network(self.root / "cnn", name)[0] for name in names}
        return {name: net.to(device) for name, net in self._networks.items()}

    def boosters(self) -> dict[str, Any]:
        """Return the LightGBM boosters by model key (loaded once, from their text files)."""
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
