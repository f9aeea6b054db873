"""Prediction of an LSDB (HATS) catalogue, lazily over its partitions (the optional ``[scale]`` extra).

:func:`predict_hats` maps the prediction over the partitions of an :class:`lsdb.Catalog` holding the
catalogue columns and returns a lazy catalogue of the input columns plus the prediction columns, which
``write_catalog(path)`` writes back as HATS (``to_hats`` in lsdb before 0.7.3) or ``compute()`` gathers.
Each Dask worker loads the bundle once (:func:`~morphomass.predict.distributed.cached_bundle`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from morphomass.errors import InputDataError
from morphomass.predict.bundle import load_bundle
from morphomass.predict.distributed import cached_bundle
from morphomass.predict.inputs import CATALOG_COLUMNS, read_stars
from morphomass.predict.predictor import output_dtypes

__all__ = ["predict_hats"]


def _import_lsdb() -> Any:
    try:
        import lsdb
    except ImportError as err:
        msg = "predict_hats needs lsdb and hats: pip install 'morphomass[scale]'"
        raise ImportError(msg) from err
    return lsdb


def _image_of(rows: pd.DataFrame, image_column: str | None, image_template: str | None) -> dict[int, str]:
    objids = rows["objid"].astype("int64").to_numpy()
    if image_column is not None:
        return {int(o): str(p) for o, p in zip(objids, rows[image_column].to_numpy(), strict=True)}
    template = str(image_template)
    records = rows.to_dict(orient="records")
    return {
        int(o): template.format_map({**record, "objid": int(o)})
        for o, record in zip(objids, records, strict=True)
    }


def _predict_partition(
    rows: pd.DataFrame,
    *,
    bundle_path: str,
    bundle_sha256: str,
    image_column: str | None,
    image_template: str | None,
    stars: pd.DataFrame | None,
    options: dict[str, Any],
    predicted_dtypes: dict[str, str],
) -> pd.DataFrame:
    """Predict one HATS partition: its rows (index ``_healpix_29``) with the prediction columns added."""
    out = rows.copy()
    if len(rows) == 0:
        for column, dtype in predicted_dtypes.items():
            out[column] = pd.Series([], index=rows.index, dtype=dtype)
        return out
    bundle = cached_bundle(bundle_path, bundle_sha256)
    catalog = pd.DataFrame(
        {
            c: rows[c].to_numpy("int64") if c == "objid" else rows[c].to_numpy("float64", na_value=np.nan)
            for c in rows.columns
            if _is_catalog_column(c)
        }
    )
    table = bundle.predict(_image_of(rows, image_column, image_template), catalog, stars=stars, **options)
    for column, dtype in predicted_dtypes.items():
        out[column] = pd.Series(table[column].to_numpy(), index=rows.index).astype(dtype)
    return out


def _is_catalog_column(name: str) -> bool:
    return name in CATALOG_COLUMNS or name.startswith("modelMag_")


def predict_hats(
    catalog: Any,
    bundle_path: str | Path,
    *,
    image_column: str | None = None,
    image_template: str | None = None,
    stars: str | Path | pd.DataFrame | None = None,
    model: str = "auto",
    batch_size: int = 64,
    device: str = "auto",
    recut: bool = False,
) -> Any:
    """Predict every galaxy of an LSDB catalogue, lazily, one task per HATS partition.

    Parameters
    ----------
    catalog : lsdb.Catalog
        Holding ``objid``, ``ra``, ``dec`` (degrees), ``z``, ``d25_arcmin`` and optionally
        ``modelMag_<band>``, plus ``image_column`` when given.
    bundle_path : str or Path
        The bundle (``bundle.json``, its folder or a work directory), on a file system every worker sees.
    image_column : str, optional
        Column holding each galaxy's FITS path.
    image_template : str, optional
        Instead of ``image_column``: a path template filled with the row's columns, e.g.
        ``"/data/images/{objid}.fits"``.
    stars : str, Path or pandas.DataFrame, optional
        Star catalogue for the star subtraction, read here and sent with every task (keep it small).
    model, batch_size, device, recut
        As for :meth:`~morphomass.predict.bundle.Bundle.predict`.

    Returns
    -------
    lsdb.Catalog
        Lazy: the input's columns and then the prediction columns of
        :func:`~morphomass.predict.predictor.output_dtypes` (``objid`` once), one row per input row.
        ``write_catalog(path)`` (``to_hats`` in older lsdb) writes it as HATS; ``compute()`` returns a
        DataFrame.

    Raises
    ------
    ImportError
        If lsdb is not installed (the ``[scale]`` extra).
    InputDataError
        If neither or both of ``image_column`` and ``image_template`` are given, or a catalogue column or
        the image column is missing.
    BundleError
        If the bundle is missing, tampered with or incompatible.
    """
    _import_lsdb()
    if (image_column is None) == (image_template is None):
        msg = "predict_hats: give exactly one of image_column and image_template"
        raise InputDataError(msg)
    columns = list(catalog.columns)
    needed = [*CATALOG_COLUMNS, *([image_column] if image_column is not None else [])]
    missing = [c for c in needed if c not in columns]
    if missing:
        msg = f"predict_hats: the catalogue lacks column(s) {missing}; it has {columns}"
        raise InputDataError(msg)
    bundle = load_bundle(bundle_path)
    predicted = {
        column: "string[pyarrow]" if dtype == "object" else dtype
        for column, dtype in output_dtypes(bundle.interval_levels, bundle.target).items()
        if column not in columns
    }
    meta = _predict_partition(
        catalog.meta,  # the partitions' empty frame (index _healpix_29, their dtypes)
        bundle_path="",
        bundle_sha256="",
        image_column=image_column,
        image_template=image_template,
        stars=None,
        options={},
        predicted_dtypes=predicted,
    )
    return catalog.map_partitions(
        _predict_partition,
        bundle_path=str(Path(bundle_path).resolve()),
        bundle_sha256=str(bundle.manifest["bundle_sha256"]),
        image_column=image_column,
        image_template=image_template,
        stars=None if stars is None else read_stars(stars),
        options={"model": model, "batch_size": batch_size, "device": device, "recut": recut},
        predicted_dtypes=predicted,
        meta=meta,
    )
