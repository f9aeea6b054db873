"""Prediction for new galaxies: preprocessing, networks and GBM, batch by batch, with per-galaxy flags.

Each galaxy goes through the training pipeline's own code: :func:`morphomass.preprocess.tasks.measure_job`
(star subtraction, automatic scaling, resizing, F1-F3 features), the bundle's networks through
:func:`morphomass.cnn.extract.extract_features` (F4), the catalogue-band features of
:func:`morphomass.gbm.table.band_features`, and the LightGBM text model through
:func:`morphomass.gbm.train.predict_ml`. A galaxy that cannot be predicted gets NaN, a flag and a reason; the
others go on.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from pydantic import ValidationError

from morphomass.config import CosmologyConfig, PreprocessConfig
from morphomass.errors import BundleError, InputDataError
from morphomass.intervals import predict_intervals
from morphomass.predict.inputs import derive_quantities, find_images, read_catalog, read_stars
from morphomass.progress import progress_bar
from morphomass.targets import ML_G, Target

if TYPE_CHECKING:
    from morphomass.predict.bundle import Bundle
    from morphomass.preprocess.tasks import GalaxyJob

__all__ = [
    "DEFAULT_FOV_TOLERANCE",
    "DEFAULT_MAX_IMAGE_SIDE",
    "DEFAULT_REDUCE_ABOVE",
    "FLAGS",
    "FOV_FACTOR",
    "OUTPUT_COLUMNS",
    "interval_columns",
    "level_suffix",
    "output_dtypes",
    "prediction_quantities",
    "fov_flag",
    "predict_catalog",
    "recut_side_arcsec",
    "range_flags",
]

logger = logging.getLogger(__name__)

#: Columns of the prediction table after the predictions and their bounds, and their dtypes.
_TAIL_DTYPES: dict[str, str] = {
    "lum_g": "float64",
    "lum_g_source": "object",
    "model": "object",
    "flags": "object",
    "reason": "object",
}


def prediction_quantities(target: Target = ML_G) -> tuple[str, ...]:
    """Quantities the prediction table holds for a target: each has ``<q>_pred`` and its interval bounds.

    M/L and log M* are one prediction seen two ways (``log_mstar = log10(ml * L_g)``): a bundle trained on
    either writes both (``ml``, ``log_mstar``); any other target writes its own (``log_sfr`` for
    ``logsfr``, the column's name for a user column).
    """
    return ("ml", "log_mstar") if target.name in ("ml_g", "logmstar") else (target.prediction,)


def level_suffix(level: float) -> str:
    """Column suffix of a nominal coverage: 0.68 -> ``"68"``, 0.995 -> ``"99p5"``."""
    return f"{100 * level:.10g}".replace(".", "p")


def interval_columns(levels: Sequence[float], target: Target = ML_G) -> tuple[str, ...]:
    """Interval columns of the prediction table for these levels, e.g. ``ml_lo_68``, ``log_mstar_hi_95``."""
    return tuple(
        f"{quantity}_{side}_{level_suffix(level)}"
        for level in levels
        for quantity in prediction_quantities(target)
        for side in ("lo", "hi")
    )


def output_dtypes(levels: Sequence[float], target: Target = ML_G) -> dict[str, str]:
    """Columns of the prediction table and their dtypes, in order.

    ``objid``; the predictions ``<q>_pred`` of :func:`prediction_quantities` (``ml_pred`` in solar units and
    ``log_mstar_pred`` in log10 Msun for M/L and log M*; ``log_sfr_pred`` for ``logsfr``); their bounds
    ``<q>_lo_<p>, <q>_hi_<p>`` for each nominal coverage p in percent; then ``lum_g``, ``lum_g_source``,
    ``model``, ``flags`` and ``reason``.
    """
    quantities = prediction_quantities(target)
    return {
        "objid": "int64",
        **{f"{q}_pred": "float64" for q in quantities},
        **{name: "float64" for name in interval_columns(levels, target)},
        **_TAIL_DTYPES,
    }


#: Columns of the prediction table of the paper's target without intervals (:func:`output_dtypes`).
OUTPUT_COLUMNS: tuple[str, ...] = tuple(output_dtypes(()))


#: Every flag a galaxy can get (``flags`` holds them joined by ';'). The first six mean no prediction.
FLAGS: dict[str, str] = {
    "missing_image": "no FITS image for the galaxy",
    "image_error": "the image cannot be used: unreadable or truncated FITS, a header with an impossible size "
    "(NAXIS1/NAXIS2 not a positive integer), no celestial WCS, galaxy outside the image, or every pixel NaN "
    "(the reason says which)",
    "image_too_large": "the image is wider or taller than max_image_side pixels: refused before it is read",
    "bad_catalog_row": "ra, dec or z is not a finite number, ra is outside [0, 360), dec outside [-90, 90], "
    "or z <= 0",
    "magnitudes_missing": "the g+i model was asked for but the g or i magnitude is missing",
    "internal_error": "an unexpected error while preprocessing this galaxy (the reason has it)",
    "star_not_found": "a catalogued star on the image was not found as a point source and was left in",
    "star_on_nucleus": "a catalogued star near the galaxy's nucleus was left in",
    "bad_pixels": "NaN or infinite pixels were filled with the background level",
    "constant_image": "the image has a single value",
    "z_outside_training": "redshift outside the training range",
    "size_outside_training": "D25 outside the training range",
    "flux_outside_training": "g flux (modelMag, else the image's total), or i flux for the g+i model, "
    "outside the training range",
    "pixel_scale_mismatch": "the image's pixel scale differs by more than 2 % from the training images'",
    "fov_mismatch": "the image's field of view (side from the WCS) differs from 1.125 x D25 by more than "
    "fov_tolerance",
    "recut": "the image's field of view was wider than fov_tolerance allows: with recut, the square of "
    "1.125 x D25 centred on the catalogue position was cut from it and predicted (pixels beyond the image "
    "are filled: bad_pixels)",
    "interval_extrapolated": "the galaxy is outside the training ranges (z, size or flux flag): its interval "
    "was calibrated on training galaxies unlike it and may not hold its nominal coverage",
    "block_reduced": "the image is wider or taller than reduce_above pixels: its k x k pixel blocks were "
    "summed before preprocessing (features at k times the pixel scale, hence also pixel_scale_mismatch)",
}
#: Failure kinds of the preprocessing (morphomass.preprocess.fits_image.FAILURE_KINDS) -> flag; the other
#: kinds (corrupt FITS, bad WCS, galaxy outside the image, all NaN) are ``image_error``. Rows are checked
#: before.
_KIND_FLAGS = {"missing_fits": "missing_image"}
_RANGE_FLAGS = {
    "z": "z_outside_training",
    "d25_arcmin": "size_outside_training",
    "flux_g_nmgy": "flux_outside_training",
    "flux_i_nmgy": "flux_outside_training",
}
PIXEL_SCALE_TOLERANCE = 0.02
#: The images' side is FOV_FACTOR x D25 (the training images' convention, DESIGN §2).
FOV_FACTOR = 1.125
#: Default relative tolerance on the field of view before ``fov_mismatch``.
DEFAULT_FOV_TOLERANCE = 0.25
#: Default largest image side (pixels) read; larger images get ``image_too_large``.
DEFAULT_MAX_IMAGE_SIDE = 4096
#: Default largest image side (pixels) preprocessed as it is; larger images are block-reduced to at most half
#: of it (``block_reduced``), which bounds the preprocessing's memory (bench/README.md).
DEFAULT_REDUCE_ABOVE = 2048


@dataclass
class _Galaxy:
    """One galaxy on its way through a batch."""

    row: int
    objid: int
    flags: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    failed: bool = False
    features: dict[str, float] = field(default_factory=dict)
    images: dict[int, np.ndarray] = field(default_factory=dict)
    image_flux_nmgy: float = math.nan

    def flag(self, name: str, note: str = "", *, fails: bool = False) -> None:
        if name not in self.flags:
            self.flags.append(name)
        if note:
            self.notes.append(note)
        self.failed = self.failed or fails


def range_flags(values: Mapping[str, float], ranges: Mapping[str, list[float]]) -> list[tuple[str, str]]:
    """Flag the values outside their training range.

    Parameters
    ----------
    values : mapping
        ``z``, ``d25_arcmin``, ``flux_g_nmgy``, ... of one galaxy; NaN values are not checked.
    ranges : mapping
        Training ``[min, max]`` by the same keys; keys without a range are not checked.

    Returns
    -------
    list of (flag, note)
        In the order of ``values``, each flag of :data:`FLAGS` at most once.
    """
    out: list[tuple[str, str]] = []
    for key, value in values.items():
        bounds = ranges.get(key)
        if bounds is None or not math.isfinite(value) or bounds[0] <= value <= bounds[1]:
            continue
        flag = _RANGE_FLAGS[key]
        note = f"{key}={value:.4g} outside the training range [{bounds[0]:.4g}, {bounds[1]:.4g}]"
        if flag not in [f for f, _ in out]:
            out.append((flag, note))
    return out


def _preprocess_config(preprocessing: Mapping[str, Any]) -> PreprocessConfig:
    try:
        return PreprocessConfig.model_validate(preprocessing["settings"])
    except ValidationError as err:
        msg = f"the bundle's preprocessing settings are not valid for this version ({err.errors()[0]['msg']})"
        raise BundleError(msg) from err


def _check_row(galaxy: _Galaxy, row: pd.Series) -> None:
    for name in ("ra", "dec", "z"):
        value = float(row[name])
        if not math.isfinite(value) or (name == "z" and value <= 0):
            galaxy.flag("bad_catalog_row", f"{name} is {value!r}", fails=True)
            return
    ra, dec = float(row["ra"]), float(row["dec"])
    if not 0.0 <= ra < 360.0:
        galaxy.flag("bad_catalog_row", f"ra is {ra!r}, expected 0 <= ra < 360 (degrees)", fails=True)
    elif not -90.0 <= dec <= 90.0:
        galaxy.flag("bad_catalog_row", f"dec is {dec!r}, expected -90 <= dec <= 90 (degrees)", fails=True)


def fov_flag(
    shape: tuple[int, int], pixel_scale_arcsec: float, d25_arcmin: float, *, tolerance: float
) -> str | None:
    """Describe an image whose field of view is not FOV_FACTOR x D25 within a tolerance.

    Parameters
    ----------
    shape : (int, int)
        Image shape (ny, nx) in pixels.
    pixel_scale_arcsec : float
        Pixel size from the WCS.
    d25_arcmin : float
        The catalogue's D25; NaN is not checked.
    tolerance : float
        Largest accepted relative difference of each side from FOV_FACTOR x D25.

    Returns
    -------
    str or None
        The reason of ``fov_mismatch`` (the sides and the accepted range, arcsec), None when it fits.
    """
    expected = FOV_FACTOR * d25_arcmin * 60.0
    if not (math.isfinite(expected) and expected > 0):
        return None
    low, high = expected * (1.0 - tolerance), expected * (1.0 + tolerance)
    width, height = shape[1] * pixel_scale_arcsec, shape[0] * pixel_scale_arcsec
    if low <= width <= high and low <= height <= high:
        return None
    return (
        f"field of view {width:.1f} x {height:.1f} arcsec, expected {FOV_FACTOR} x D25 = {expected:.1f} "
        f"arcsec (+-{tolerance:.0%}: {low:.1f} to {high:.1f})"
    )


def recut_side_arcsec(
    shape: tuple[int, int], pixel_scale_arcsec: float, d25_arcmin: float, *, tolerance: float
) -> float | None:
    """Return the side of the square to cut from an image wider than FOV_FACTOR x D25 allows.

    Parameters
    ----------
    shape, pixel_scale_arcsec, d25_arcmin, tolerance
        As :func:`fov_flag`.

    Returns
    -------
    float or None
        FOV_FACTOR x D25 in arcsec when a side is larger than that by more than ``tolerance`` and neither side
        is smaller by more than it (the image holds the whole field); None otherwise (a narrower image cannot
        be re-cut: :func:`fov_flag` tells).
    """
    expected = FOV_FACTOR * d25_arcmin * 60.0
    if not (math.isfinite(expected) and expected > 0 and math.isfinite(pixel_scale_arcsec)):
        return None
    sides = (shape[0] * pixel_scale_arcsec, shape[1] * pixel_scale_arcsec)
    if min(sides) < expected * (1.0 - tolerance) or max(sides) <= expected * (1.0 + tolerance):
        return None
    return expected


_FITS_BLOCK = 2880
_FITS_CARD = 80
#: Headers longer than this many 2880-byte blocks are left to the full read.
_MAX_HEADER_BLOCKS = 1000


def _card_number(text: str) -> object:
    """Return a header value as an int when it is one, else as the text."""
    try:
        return int(text)
    except ValueError:
        return text


def _primary_header(path: Path) -> dict[str, object] | None:
    """Return the primary header's keyword values (ints where they are), reading only the header blocks.

    None when the file does not start like a FITS file or has no END card in its first blocks.
    """
    import gzip

    opener = gzip.open if path.name.lower().endswith(".gz") else open
    values: dict[str, object] = {}
    try:
        with opener(path, "rb") as stream:
            for _ in range(_MAX_HEADER_BLOCKS):
                block = stream.read(_FITS_BLOCK)
                if len(block) < _FITS_BLOCK or (not values and not block.startswith(b"SIMPLE  =")):
                    return None
                for at in range(0, _FITS_BLOCK, _FITS_CARD):
                    card = block[at : at + _FITS_CARD].decode("ascii", errors="replace")
                    if card[:8] == "END     ":
                        return values
                    if card[8:10] == "= ":
                        values[card[:8].rstrip()] = _card_number(card[10:].split("/", 1)[0].strip())
    except (OSError, EOFError):
        return None
    return None


def _header_naxis(path: Path) -> tuple[object, object] | None:
    """Return NAXIS1, NAXIS2 of the first 2-D image HDU, read from the headers only.

    None when the file cannot be parsed or holds no 2-D HDU: the full read then gives its own error.
    """
    primary = _primary_header(path)
    if primary is None:
        return None
    if primary.get("NAXIS") == 2:
        return primary.get("NAXIS1"), primary.get("NAXIS2")
    from astropy.io import fits  # the image is in an extension (e.g. a compressed image)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # padding and non-standard keyword warnings: the full read judges
            with fits.open(path, memmap=False, lazy_load_hdus=True) as hdul:
                for hdu in hdul:
                    if hdu.header.get("NAXIS") == 2:
                        return hdu.header.get("NAXIS1"), hdu.header.get("NAXIS2")
    except Exception:  # noqa: BLE001 - any unreadable file is reported by load_fits_image
        return None
    return None


def _check_image_size(galaxy: _Galaxy, path: Path, *, max_side: int) -> None:
    """Flag an image whose header gives an impossible or too large size, before its data are read."""
    if not path.is_file():
        return
    naxis = _header_naxis(path)
    if naxis is None:
        return
    for key, value in zip(("NAXIS1", "NAXIS2"), naxis, strict=True):
        if not (isinstance(value, int) and not isinstance(value, bool) and value > 0):
            note = f"corrupt_fits: {path}: header {key} = {value!r}, expected a positive integer"
            galaxy.flag("image_error", note, fails=True)
            return
    nx, ny = naxis
    if max(nx, ny) > max_side:
        note = f"{path}: image {nx} x {ny} pixels, larger than max_image_side = {max_side} pixels per side"
        galaxy.flag("image_too_large", note, fails=True)


def _recut_side(path: str, d25_arcmin: float, *, tolerance: float) -> float | None:
    """Return the side (arcsec) to re-cut an image to, from its header (None: no cut, or unreadable)."""
    from morphomass.errors import GalaxyImageError
    from morphomass.preprocess.cutout import read_fits_geometry
    from morphomass.preprocess.fits_image import pixel_scale_arcsec

    try:
        shape, wcs = read_fits_geometry(path)
    except GalaxyImageError:
        return None  # the full read reports it
    return recut_side_arcsec(shape, pixel_scale_arcsec(wcs), d25_arcmin, tolerance=tolerance)


def _preprocess(
    galaxy: _Galaxy,
    job: GalaxyJob,
    *,
    sizes: tuple[int, ...],
    settings: PreprocessConfig,
    m_sun: float,
    pixel_scale: float,
    fov_tolerance: float,
    d25_arcmin: float,
    recut: bool,
    reduce_above: int | None,
) -> None:
    """Star subtraction, scaling, resizing and F1-F3 features of one galaxy, recorded on ``galaxy``."""
    from morphomass.errors import GalaxyImageError
    from morphomass.photometry import luminosity_per_nanomaggy
    from morphomass.preprocess.tasks import measure_job

    recut_arcsec = _recut_side(job.path, d25_arcmin, tolerance=fov_tolerance) if recut else None
    try:
        products, features, _ = measure_job(
            job,
            sizes=sizes,
            config=settings,
            m_sun_ab=m_sun,
            recut_arcsec=recut_arcsec,
            reduce_above=reduce_above,
        )
    except GalaxyImageError as err:
        galaxy.flag(_KIND_FLAGS.get(err.kind, "image_error"), f"{err.kind}: {err}", fails=True)
        return
    except Exception as err:  # one galaxy must never stop the run; the reason is kept and logged
        note = f"{job.path}: {type(err).__name__}: {err}"
        logger.error(
            "objid %d: unexpected error while preprocessing %s (-v for the traceback)", galaxy.objid, note
        )
        logger.debug("objid %d: traceback", galaxy.objid, exc_info=True)
        galaxy.flag("internal_error", note, fails=True)
        return
    dtype = np.dtype(settings.image_dtype)  # the networks were trained on images stored with this dtype
    galaxy.images = {size: products.resized[size].astype(dtype).astype(np.float32) for size in sizes}
    galaxy.features = features
    galaxy.image_flux_nmgy = features["lum_sum"] / luminosity_per_nanomaggy(job.dist_mpc, m_sun_ab=m_sun)
    if products.source_shape is not None:
        (ny, nx), k = products.source_shape, products.block_factor
        scale = products.pixel_scale_arcsec / k
        if products.recut:
            note = (
                f"image {nx * scale:.1f} x {ny * scale:.1f} arcsec cut to {FOV_FACTOR} x D25 = "
                f"{recut_arcsec:.1f} arcsec around the catalogue position"
            )
            galaxy.flag("recut", note)
        if k > 1:
            height, width = products.input_shape
            what = "the cut" if products.recut else f"image {nx} x {ny} pixels"
            note = (
                f"{what} block-reduced by {k} ({k} x {k} pixel sums) to {width} x {height} pixels of "
                f"{products.pixel_scale_arcsec:.3f} arcsec"
            )
            galaxy.flag("block_reduced", note)
    if products.n_star_priors_rejected:
        galaxy.flag("star_not_found", f"{products.n_star_priors_rejected} catalogued star(s) not found")
    if products.n_nucleus_skipped:
        galaxy.flag("star_on_nucleus", f"{products.n_nucleus_skipped} star(s) on the nucleus left in")
    if products.n_bad_pixels:
        galaxy.flag("bad_pixels", f"{products.n_bad_pixels} NaN/inf pixel(s) filled")
    if products.constant_image:
        galaxy.flag("constant_image")
    if abs(products.pixel_scale_arcsec / pixel_scale - 1.0) > PIXEL_SCALE_TOLERANCE:
        note = f"pixel scale {products.pixel_scale_arcsec:.3f} arcsec, training {pixel_scale:.3f}"
        galaxy.flag("pixel_scale_mismatch", note)
    fov = fov_flag(products.input_shape, products.pixel_scale_arcsec, d25_arcmin, tolerance=fov_tolerance)
    if fov is not None:
        galaxy.flag("fov_mismatch", fov)


def _network_images(galaxies: list[_Galaxy], size: int) -> np.ndarray:
    """(n, size, size) float32 stack of the galaxies' preprocessed images at one network input size."""
    return np.stack([g.images[size] for g in galaxies])


def _cnn_features(
    galaxies: list[_Galaxy],
    networks: Mapping[str, Any],
    spec: Mapping[str, Any],
    *,
    batch_size: int | str,
    device: Any,
    precision: str = "bf16",
) -> dict[str, np.ndarray]:
    """Feature column -> (n,) float32 values of every network of the bundle, for the given galaxies.

    The forward passes are those of the extract stage (:func:`morphomass.cnn.extract.extract_features`):
    batches of ``batch_size`` galaxies (``"auto"``: sized from the GPU's free memory) under
    ``torch.inference_mode``; on a CUDA device channels-last, through pinned memory with the next batch copied
    while the current one runs, and under bf16 autocast unless ``precision="fp32"``. On the CPU: float32, no
    autocast, the same batches as before (bit-identical results).
    """
    from morphomass.cnn.extract import extract_features

    columns: dict[str, np.ndarray] = {}
    for name, net in networks.items():
        size = int(spec[name]["input_size"])
        outputs = extract_features(
            net,
            _network_images(galaxies, size),
            batch_size=batch_size,
            device=device,
            precision=precision,
        )
        for key, names in spec[name]["columns"].items():
            values = outputs[key]
            columns.update({column: values[:, i] for i, column in enumerate(names)})
    return columns


def _needs_i(spec: Mapping[str, Any]) -> bool:
    """Whether a bundle model uses the catalogue's i band (a g+i model: ``gi``, ``gi_<name>``)."""
    return "i" in str(spec["catalog_bands"])


def _choose_model(row: pd.Series, specs: Mapping[str, Any], requested: str) -> str | None:
    """Return the model key of one galaxy, or None when it lacks the magnitudes the requested model needs.

    ``auto``: g+i when the galaxy has g and i magnitudes (and the bundle the model), else g.
    """
    has_gi = all(math.isfinite(row.get(f"lum_{b}", math.nan)) and row.get(f"lum_{b}", 0.0) > 0 for b in "gi")
    if requested == "auto":
        return "gi" if "gi" in specs and has_gi else "g"
    if _needs_i(specs[requested]) and not has_gi:
        return None
    return requested


def _encoder_features(
    galaxies: list[_Galaxy], sources: Mapping[str, Any], needed: set[str], *, batch_size: int
) -> pd.DataFrame:
    """Return the ``enc_<name>_*`` columns of the sources that ``needed`` names, for the galaxies.

    The features of the extract stage (:func:`morphomass.cnn.sources.encoder_sources_frame`) from the same
    preprocessed images at each source's input size; no column (and no forward pass) for a source that no
    chosen model uses.
    """
    from morphomass.cnn.sources import encoder_sources_frame

    used = {name: s for name, s in sources.items() if needed & set(s.columns)}
    if not used:
        return pd.DataFrame(index=pd.RangeIndex(len(galaxies)))
    sizes = {int(s.encoder.input_size) for s in used.values()}
    images = {size: _network_images(galaxies, size) for size in sizes}
    return encoder_sources_frame(used, images, batch_size=batch_size)


def _predict_batch(
    bundle: Bundle,
    rows: pd.DataFrame,
    jobs: list[GalaxyJob],
    paths: list[Path | None],
    *,
    requested: str,
    settings: PreprocessConfig,
    networks: Mapping[str, Any],
    boosters: Mapping[str, Any],
    device: Any,
    fov_tolerance: float,
    sources: Mapping[str, Any] | None = None,
    max_image_side: int,
    recut: bool,
    reduce_above: int | None,
) -> pd.DataFrame:
    from morphomass.gbm.table import band_features
    from morphomass.gbm.train import predict_ml

    manifest = bundle.manifest
    pre = manifest["preprocessing"]
    sizes = tuple(int(s) for s in pre["sizes"])
    ranges = manifest["training_ranges"]
    galaxies = [_Galaxy(row=i, objid=int(objid)) for i, objid in enumerate(rows["objid"])]
    models: list[str | None] = []
    for galaxy, job, path, (_, row) in zip(galaxies, jobs, paths, rows.iterrows(), strict=True):
        model = _choose_model(row, manifest["models"], requested)
        models.append(model)
        _check_row(galaxy, row)
        if model is None:
            galaxy.flag(
                "magnitudes_missing", f"the g+i model {requested} needs modelMag_g and modelMag_i", fails=True
            )
        if galaxy.failed:
            continue
        if path is None:
            galaxy.flag("missing_image", f"no image given for objid {galaxy.objid}", fails=True)
            continue
        _check_image_size(galaxy, path, max_side=max_image_side)
        if galaxy.failed:
            continue
        _preprocess(
            galaxy,
            dataclasses.replace(job, path=str(path)),
            sizes=sizes,
            settings=settings,
            m_sun=float(pre["m_sun_image_band"]),
            pixel_scale=float(pre["pixel_scale_arcsec"]),
            fov_tolerance=fov_tolerance,
            d25_arcmin=float(row["d25_arcmin"]),
            recut=recut,
            reduce_above=reduce_above,
        )
    ok = [g for g in galaxies if not g.failed]
    predictions = np.full(len(galaxies), np.nan)
    levels = bundle.interval_levels
    bounds_dex = {level: np.full((len(galaxies), 2), np.nan) for level in levels}
    calibrations = bundle.interval_calibrations()
    if ok:
        rows_ok = rows.iloc[[g.row for g in ok]].reset_index(drop=True)
        cnn = _cnn_features(ok, networks, manifest["networks"], batch_size=len(ok), device=device)
        chosen_keys = {models[g.row] for g in ok}
        needed = {f for key in chosen_keys if key is not None for f in manifest["models"][key]["features"]}
        encoded = _encoder_features(ok, sources or {}, needed, batch_size=len(ok))
        frame = pd.concat([pd.DataFrame([g.features for g in ok]), pd.DataFrame(cnn), encoded], axis=1)
        for key, booster in boosters.items():
            chosen = np.array([models[g.row] == key for g in ok])
            if not chosen.any():
                continue
            spec = manifest["models"][key]
            x = frame[chosen]
            if spec["catalog_bands"]:
                catalogue = band_features(rows_ok[chosen].reset_index(drop=True), spec["catalog_bands"])
                x = pd.concat([x.reset_index(drop=True), catalogue], axis=1)
            values = x[spec["features"]].to_numpy(dtype=np.float32)
            where = [g.row for g, c in zip(ok, chosen, strict=True) if c]
            floor = -math.inf if spec["prediction_floor"] is None else spec["prediction_floor"]
            predictions[where] = predict_ml(booster, values, objective=spec["objective"], floor=floor)
            calibration = calibrations.get(key)
            if calibration is None:  # an uncalibrated model (encoder models by default): NaN bounds
                continue
            predicted_dex = calibration.to_dex(predictions[where])
            intervals = predict_intervals(calibration, predicted_dex, values, levels=levels)
            for level, (lo, hi) in intervals.items():
                bounds_dex[level][where] = np.column_stack([lo, hi])
    with_i = {key for key, spec in manifest["models"].items() if _needs_i(spec)}
    return _finish(galaxies, rows, predictions, bounds_dex, models, ranges, bundle.target, with_i=with_i)


def _quantity_values(
    target: Target, value: float, bounds_dex: Mapping[float, tuple[float, float]], log_lum: float
) -> dict[str, float]:
    """Return one galaxy's prediction columns from its prediction (target units) and bounds (dex scale).

    For M/L, ``bounds_dex`` bound log10 M/L; for any other target they bound the value itself. M/L and
    log M* follow each other through ``log_lum`` (log10 L_g; NaN when unknown).
    """
    out: dict[str, float] = {}
    if target.name not in ("ml_g", "logmstar"):
        out[f"{target.prediction}_pred"] = value
        for level, (lo, hi) in bounds_dex.items():
            suffix = level_suffix(level)
            out[f"{target.prediction}_lo_{suffix}"], out[f"{target.prediction}_hi_{suffix}"] = lo, hi
        return out
    # what to add to the target's dex scale to get log10 M/L and log10 M*
    to_log_ml, to_log_mstar = (0.0, log_lum) if target.name == "ml_g" else (-log_lum, 0.0)
    centre = (math.log10(value) if value > 0 else math.nan) if target.name == "ml_g" else value
    if target.name == "ml_g":
        out["ml_pred"] = value  # as the booster gave it (no round trip through the log)
    else:
        out["ml_pred"] = 10 ** (centre + to_log_ml) if math.isfinite(centre + to_log_ml) else math.nan
    out["log_mstar_pred"] = centre + to_log_mstar
    for level, (lo, hi) in bounds_dex.items():
        suffix = level_suffix(level)
        out[f"ml_lo_{suffix}"], out[f"ml_hi_{suffix}"] = 10 ** (lo + to_log_ml), 10 ** (hi + to_log_ml)
        out[f"log_mstar_lo_{suffix}"], out[f"log_mstar_hi_{suffix}"] = lo + to_log_mstar, hi + to_log_mstar
    return out


def _finish(
    galaxies: list[_Galaxy],
    rows: pd.DataFrame,
    predictions: np.ndarray,
    bounds_dex: Mapping[float, np.ndarray],
    models: list[str | None],
    ranges: Mapping[str, list[float]],
    target: Target,
    *,
    with_i: set[str] | frozenset[str] = frozenset({"gi"}),
) -> pd.DataFrame:
    """Make the output rows of a batch: L_g, the predictions, intervals, model, range flags, reasons.

    ``predictions`` are in the target's units; ``bounds_dex`` maps each nominal level to the (N, 2) lower
    and upper bounds on the target's dex scale (the interval calibration's ``to_dex``); ``with_i`` are
    the model keys that use the i band (their galaxies' i flux is checked against its training range).
    """
    records = []
    for galaxy, (_, row), value in zip(galaxies, rows.iterrows(), predictions, strict=True):
        lum_g, source = float(row.get("lum_g", math.nan)), "modelMag"
        if not (math.isfinite(lum_g) and lum_g > 0):
            lum_g, source = galaxy.features.get("lum_sum", math.nan), "image"
        if not galaxy.failed:
            flux_g = float(row.get("flux_g", math.nan))
            values = {
                "z": float(row["z"]),
                "d25_arcmin": float(row["d25_arcmin"]),
                "flux_g_nmgy": flux_g if math.isfinite(flux_g) else galaxy.image_flux_nmgy,
            }
            if models[galaxy.row] in with_i:
                values["flux_i_nmgy"] = float(row["flux_i"])
            outside = range_flags(values, ranges)
            for flag, note in outside:
                galaxy.flag(flag, note)
            if outside and math.isfinite(value):
                galaxy.flag(
                    "interval_extrapolated",
                    "outside the training ranges: " + ", ".join(f for f, _ in outside),
                )
        predicted = math.isfinite(value)
        log_lum = math.log10(lum_g) if predicted and math.isfinite(lum_g) and lum_g > 0 else math.nan
        bounds = {level: tuple(float(v) for v in values[galaxy.row]) for level, values in bounds_dex.items()}
        quantities = _quantity_values(target, float(value), bounds, log_lum) if predicted else {}
        records.append(
            {
                "objid": galaxy.objid,
                **quantities,
                "lum_g": lum_g if predicted and math.isfinite(lum_g) else math.nan,
                "lum_g_source": source if predicted and math.isfinite(lum_g) else "",
                "model": models[galaxy.row] if predicted else "",
                "flags": ";".join(galaxy.flags),
                "reason": "; ".join(galaxy.notes),
            }
        )
    return pd.DataFrame.from_records(records, columns=list(output_dtypes(list(bounds_dex), target)))


def predict_catalog(
    bundle: Bundle,
    images: str | Path | Mapping[int, str | Path],
    catalog: str | Path | pd.DataFrame,
    *,
    stars: str | Path | pd.DataFrame | None = None,
    model: str = "auto",
    batch_size: int = 64,
    device: str = "auto",
    progress: bool = False,
    fov_tolerance: float = DEFAULT_FOV_TOLERANCE,
    max_image_side: int = DEFAULT_MAX_IMAGE_SIDE,
    recut: bool = False,
    reduce_above: int | None = DEFAULT_REDUCE_ABOVE,
) -> pd.DataFrame:
    """Predict every galaxy of a catalogue with a bundle (the work of :meth:`Bundle.predict`, which see).

    Parameters
    ----------
    fov_tolerance : float
        Largest accepted relative difference of the image's sides from :data:`FOV_FACTOR` x D25; beyond it the
        galaxy is predicted and flagged ``fov_mismatch`` (or re-cut, with ``recut``).
    max_image_side : int
        Largest image side in pixels; a larger image is refused (``image_too_large``) from its header, before
        its data are read.
    recut : bool
        Cut an image whose field of view is wider than ``fov_tolerance`` allows (and nowhere narrower) to the
        :data:`FOV_FACTOR` x D25 square centred on the catalogue position (:func:`recut_side_arcsec`;
        :class:`astropy.nddata.Cutout2D` on the WCS; only that square is read) and predict it, flagged
        ``recut`` instead of ``fov_mismatch``. A narrower image is still flagged ``fov_mismatch``.
    reduce_above : int or None
        An image (or re-cut square) wider or taller than this many pixels is read in strips and block-reduced
        (sums of k x k pixels, k the smallest integer bringing it to at most ``reduce_above / 2`` pixels) and
        flagged ``block_reduced``; its features are measured at k times the pixel scale. This bounds the
        preprocessing's memory to about 3x the image (bench/README.md). None never reduces.
    The other parameters are those of :meth:`Bundle.predict`.

    Returns
    -------
    pandas.DataFrame
        :func:`output_dtypes` of the bundle's interval levels, one row per catalogue row in order: ``ml_pred``
        (M/L_g, solar units), ``log_mstar_pred`` (log10 M*/M_sun = log10(ml_pred * L_g)), the calibrated
        interval bounds of both at each level (``ml_lo_68`` ... ``log_mstar_hi_95``; NaN for a model without
        an interval calibration), ``lum_g`` (L_sun,g; from ``modelMag_g``, else from the star-subtracted
        image: ``lum_g_source``), ``model`` (``g``, ``gi`` or an encoder model's key, empty without a
        prediction), ``flags`` (names of :data:`FLAGS` joined by ';') and ``reason`` (notes
        for the flags).
    """
    from morphomass.cnn.extract import resolve_device
    from morphomass.preprocess.tasks import make_galaxy_jobs

    if model != "auto" and model not in bundle.model_keys:
        msg = f"model must be 'auto' or one of the bundle's models {bundle.model_keys}, got {model!r}"
        raise InputDataError(msg)
    if batch_size < 1:
        msg = f"batch_size must be at least 1, got {batch_size}"
        raise InputDataError(msg)
    if not (isinstance(fov_tolerance, int | float) and 0 < fov_tolerance < math.inf):
        msg = f"fov_tolerance must be a positive number (a fraction, e.g. 0.25), got {fov_tolerance!r}"
        raise InputDataError(msg)
    if isinstance(max_image_side, bool) or not isinstance(max_image_side, int) or max_image_side < 1:
        msg = f"max_image_side must be a positive integer (pixels), got {max_image_side!r}"
        raise InputDataError(msg)
    if reduce_above is not None and (
        isinstance(reduce_above, bool) or not isinstance(reduce_above, int) or reduce_above < 2
    ):
        msg = f"reduce_above must be None or an integer of at least 2 (pixels), got {reduce_above!r}"
        raise InputDataError(msg)
    if not isinstance(recut, bool):
        msg = f"recut must be True or False, got {recut!r}"
        raise InputDataError(msg)
    pre = bundle.manifest["preprocessing"]
    settings = _preprocess_config(pre)
    table = derive_quantities(
        read_catalog(catalog),
        cosmology=CosmologyConfig.model_validate(pre["cosmology"]),
        m_sun_ab=pre["m_sun_ab"],
        ab_offset_mag=pre["ab_offset_mag"],
        pixel_scale_arcsec=pre["pixel_scale_arcsec"],
    )
    paths = find_images(images, table["objid"].to_numpy(), band=pre["band"])
    star_table = read_stars(stars)
    if stars is None:
        logger.info("predict: no star catalogue given, no star is subtracted")
    jobs = make_galaxy_jobs(table, star_table, image_dir=Path("."))
    torch_device = resolve_device(device)
    networks = bundle.networks(torch_device)
    boosters = bundle.boosters()
    sources = bundle.encoder_sources(torch_device)
    parts = []
    with progress_bar("predicting galaxies", total=len(table), enabled=progress) as advance:
        for start in range(0, len(table), batch_size):
            stop = start + batch_size
            parts.append(
                _predict_batch(
                    bundle,
                    table.iloc[start:stop],
                    jobs[start:stop],
                    paths[start:stop],
                    requested=model,
                    settings=settings,
                    networks=networks,
                    boosters=boosters,
                    device=torch_device,
                    sources=sources,
                    fov_tolerance=float(fov_tolerance),
                    max_image_side=max_image_side,
                    recut=recut,
                    reduce_above=reduce_above,
                )
            )
            advance(len(parts[-1]))
    if not parts:
        return pd.DataFrame(
            {c: pd.Series(dtype=t) for c, t in output_dtypes(bundle.interval_levels, bundle.target).items()}
        )
    return pd.concat(parts, ignore_index=True)
