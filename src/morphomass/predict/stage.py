"""``morphomass predict``: a saved bundle applied to a folder of FITS images and a catalogue."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pandas as pd

from morphomass.config import PipelineConfig
from morphomass.errors import InputDataError
from morphomass.predict.bundle import load_bundle
from morphomass.workdir import StageResult, atomic_path

__all__ = ["OUTPUT_FORMATS", "run_predict", "write_predictions"]

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


def run_predict(
    config: PipelineConfig,
    *,
    model_dir: Path,
    images_dir: Path,
    catalog_path: Path,
    out_path: Path,
    stars_path: Path | None = None,
    progress: bool = True,
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

    Returns
    -------
    StageResult
        Outputs ``[out_path]``; the summary counts the galaxies, those predicted per model, and each flag.

    Raises
    ------
    BundleError
        If the bundle is missing, tampered with or incompatible.
    InputDataError
        If the catalogue, star table or output name is unusable.
    """
    start = time.perf_counter()
    if Path(out_path).suffix.lower() not in OUTPUT_FORMATS:
        msg = f"{out_path}: expected a {', '.join(OUTPUT_FORMATS)} file name for the predictions"
        raise InputDataError(msg)
    bundle = load_bundle(model_dir)
    table = bundle.predict(
        images_dir,
        catalog_path,
        stars=stars_path,
        batch_size=config.cnn.inference_batch_size,
        device=config.cnn.accelerator,
        progress=progress,
    )
    write_predictions(table, out_path)
    flags = table["flags"].str.split(";").explode()
    predicted_models = table.loc[table["model"] != "", "model"]
    summary = {
        "galaxies": len(table),
        "predicted": int(table["ml_pred"].notna().sum()),
        "by_model": {str(k): int(v) for k, v in predicted_models.value_counts().items()},
        "flags": {str(k): int(v) for k, v in flags[flags != ""].value_counts().items()},
    }
    logger.info(
        "predict: %d of %d galaxies predicted, written to %s", summary["predicted"], len(table), out_path
    )
    return StageResult(
        stage="predict", outputs=[str(out_path)], seconds=time.perf_counter() - start, summary=summary
    )
