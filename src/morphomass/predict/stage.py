"""``morphomass predict``: a saved bundle applied to a folder of FITS images and a catalogue."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pandas as pd

from morphomass.config import PipelineConfig
from morphomass.errors import InputDataError
from morphomass.predict.bundle import load_bundle
from morphomass.predict.inputs import IMAGE_SUFFIXES
from morphomass.predict.predictor import (
    DEFAULT_FOV_TOLERANCE,
    DEFAULT_MAX_IMAGE_SIDE,
    DEFAULT_REDUCE_ABOVE,
    predict_catalog,
)
from morphomass.workdir import StageResult, atomic_path

__all__ = ["OUTPUT_FORMATS", "check_output_path", "run_predict", "write_predictions"]

logger = logging.getLogger(__name__)

#: Output file extension -> format.
OUTPUT_FORMATS: dict[str, str] = {".csv": "csv", ".parquet": "parquet", ".fits": "fits"}


def write_predictions(table: pd.DataFrame, path: str | Path) -> Path:
    """Write a prediction table atomically as CSV, Parquet or FITS, chosen by the extension.

    Raises
    ------
    InputDataError
        If the extension is not one of :data:`OUTPUT_FORMATS`.
    """
    path = Path(path)
    kind = OUTPUT_FORMATS.get(path.suffix.lower())
    if kind is None:
        msg = f"{path}: expected a {', '.join(OUTPUT_FORMATS)} file name for the predictions"
        raise InputDataError(msg)
    with atomic_path(path) as tmp:
        if kind == "csv":
            table.to_csv(tmp, index=False, lineterminator="\n")
        elif kind == "parquet":
            table.to_parquet(tmp, index=False)
        else:
            from astropy.table import Table

            fits_table = Table.from_pandas(table)
            fits_table.meta["EXTNAME"] = "PREDICTIONS"
            fits_table.write(tmp, format="fits")
    return path


def _same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file (the same resolved path, or one file through links)."""
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and a.samefile(b)
    except OSError:
        return False


def check_output_path(
    out_path: Path, *, catalog_path: Path, stars_path: Path | None, images_dir: Path, band: str
) -> None:
    """Refuse an output path that is one of the prediction's input files.

    Parameters
    ----------
    out_path : Path
        The predictions' file.
    catalog_path, stars_path : Path
        The catalogue and the star table (None: no star table).
    images_dir : Path
        The images' folder (and its ``<band>/`` sub-folder).
    band : str
        The bundle's image band.

    Raises
    ------
    InputDataError
        If ``out_path`` is the catalogue, the star table, or an image name ``<objid>.fits`` in the images'
        folder (``--force`` does not change this).
    """
    out_path = Path(out_path)
    named = {"catalogue (--catalog)": catalog_path, "star table (--stars)": stars_path}
    for what, path in named.items():
        if path is not None and _same_file(out_path, Path(path)):
            msg = f"{out_path}: the output would overwrite the {what} {path}; choose another --out"
            raise InputDataError(msg)
    name = out_path.name.lower()
    stem = next((name[: -len(suffix)] for suffix in IMAGE_SUFFIXES if name.endswith(suffix)), None)
    if stem is None or not stem.lstrip("+-").isdigit():
        return  # find_images reads only <objid><suffix>: no other name is an input image
    for folder in (Path(images_dir), Path(images_dir) / band):
        if folder.is_dir() and out_path.resolve().parent == folder.resolve():
            msg = (
                f"{out_path}: the output would overwrite the input image {folder / out_path.name} of the "
                f"images folder (--images); choose another --out"
            )
            raise InputDataError(msg)


def run_predict(
    config: PipelineConfig,
    *,
    model_dir: Path,
    images_dir: Path,
    catalog_path: Path,
    out_path: Path,
    stars_path: Path | None = None,
    progress: bool = True,
    fov_tolerance: float = DEFAULT_FOV_TOLERANCE,
    max_image_side: int = DEFAULT_MAX_IMAGE_SIDE,
    recut: bool = False,
    reduce_above: int | None = DEFAULT_REDUCE_ABOVE,
    model: str = "auto",
) -> StageResult:
    """Predict M/L and stellar mass for the galaxies of a catalogue and write the table (DESIGN §1 predict).

    Parameters
    ----------
    config : PipelineConfig
        Only the runtime options are used: ``cnn.accelerator`` and ``cnn.inference_batch_size`` (galaxies per
        batch). Everything that defines the prediction comes from the bundle.
    model_dir : Path
        The bundle: ``bundle.json``, its folder (a work directory's ``models/``) or a work directory.
    images_dir : Path
        Folder of FITS images ``<objid>.fits``, directly or in a ``<band>/`` sub-folder.
    catalog_path : Path
        CSV, Parquet or FITS catalogue (see :meth:`morphomass.predict.bundle.Bundle.predict`).
    out_path : Path
        Output table; ``.csv``, ``.parquet`` or ``.fits``.
    stars_path : Path, optional
        Star catalogue (``ra``, ``dec``, ``type``) for the star subtraction.
    progress : bool
        Show a progress bar.
    fov_tolerance : float
        Largest relative difference of an image's side from 1.125 x D25 before the flag ``fov_mismatch``.
    max_image_side : int
        Images larger than this many pixels per side are refused (``image_too_large``) from their header.
    recut : bool
        Cut an image wider than ``fov_tolerance`` allows to the 1.125 x D25 square around the galaxy (flag
        ``recut``); see :func:`morphomass.predict.predictor.predict_catalog`.
    reduce_above : int or None
        Images larger than this many pixels per side are block-reduced (flag ``block_reduced``).
    model : str
        ``auto`` (g+i where the galaxy has g and i magnitudes, else g) or one of the bundle's model keys
        (:attr:`~morphomass.predict.bundle.Bundle.model_keys`: ``g``, ``gi``, ``g_<name>``, ``gi_<name>``).

    Returns
    -------
    StageResult
        Outputs ``[out_path]``; the summary counts the galaxies, those predicted per model, and each flag.

    Raises
    ------
    BundleError
        If the bundle is missing, tampered with or incompatible.
    InputDataError
        If the catalogue, star table or output name is unusable, or the output would overwrite an input file
        (the catalogue, the star table or an image).
    """
    start = time.perf_counter()
    if Path(out_path).suffix.lower() not in OUTPUT_FORMATS:
        msg = f"{out_path}: expected a {', '.join(OUTPUT_FORMATS)} file name for the predictions"
        raise InputDataError(msg)
    bundle = load_bundle(model_dir)
    check_output_path(
        Path(out_path),
        catalog_path=Path(catalog_path),
        stars_path=None if stars_path is None else Path(stars_path),
        images_dir=Path(images_dir),
        band=str(bundle.manifest["preprocessing"]["band"]),
    )
    table = predict_catalog(
        bundle,
        images_dir,
        catalog_path,
        stars=stars_path,
        model=model,
        batch_size=config.cnn.inference_batch_size,
        device=config.cnn.accelerator,
        progress=progress,
        fov_tolerance=fov_tolerance,
        max_image_side=max_image_side,
        recut=recut,
        reduce_above=reduce_above,
    )
    write_predictions(table, out_path)
    flags = table["flags"].str.split(";").explode()
    predicted_models = table.loc[table["model"] != "", "model"]
    summary = {
        "galaxies": len(table),
        "predicted": int((table["model"] != "").sum()),
        "by_model": {str(k): int(v) for k, v in predicted_models.value_counts().items()},
        "flags": {str(k): int(v) for k, v in flags[flags != ""].value_counts().items()},
    }
    logger.info(
        "predict: %d of %d galaxies predicted, written to %s", summary["predicted"], len(table), out_path
    )
    return StageResult(
        stage="predict", outputs=[str(out_path)], seconds=time.perf_counter() - start, summary=summary
    )
