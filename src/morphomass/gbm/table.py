"""The training table: sample.parquet joined with the feature tables, and the feature groups of Table 1.

The g-band image features (``features/photometric.parquet``: SPEC F1-F3) and the CNN features
(``features/cnn.parquet``: F4, plus the ``enc_<name>_*`` columns of the configured encoder sources) are
inner-joined with the sample on ``objid``; galaxies missing from a feature
table (excluded upstream, e.g. failed preprocessing) are dropped and counted. Catalogue quantities (redshift,
band luminosities from the modelMag fluxes, their ratios) come from the sample, not from the images.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from morphomass.errors import InputDataError
from morphomass.gz2 import ANSWER_COLUMNS
from morphomass.targets import ML_G, Target, read_target

__all__ = [
    "BANDS",
    "ENCODER_PREFIX",
    "GROUPS",
    "SPLITS",
    "FeatureTable",
    "band_features",
    "band_luminosities",
    "encoder_columns_of",
    "encoder_names",
    "feature_groups",
    "flux_features",
    "gz2_truth_columns",
    "join_tables",
    "load_feature_table",
]

logger = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "val", "test")
BANDS: tuple[str, ...] = ("u", "g", "r", "i", "z")
#: Columns of sample.parquet this package needs (DESIGN §2).
SAMPLE_COLUMNS: tuple[str, ...] = ("objid", "z", "lum_g", "target", "target_err", "split", "dist_mpc")
#: Feature groups of the ablations (Table 1), by column name: see :func:`feature_groups`.
GROUPS: tuple[str, ...] = (
    "luminosity",
    "image",
    "distance",
    "classical",
    "other",
    "cnn123",
    "cnn3_probs",
    "cnn4",
    "encoders",
)
#: Prefix of the feature columns of the encoder sources (``enc_<name>_0000`` ...; ``cnn.encoders``).
ENCODER_PREFIX = "enc_"
#: F1 features that are not luminosities (no flux counterpart in the 'no distance' ablation).
LUMINOSITY_EXTRA: tuple[str, ...] = ("image_size_pix", "scaling_a")
#: 1 Mpc in cm: catalogue luminosities computed from fluxes are 4 pi D^2 f in nanomaggy cm^2.
MPC_CM = 3.0856775814913673e24


@dataclass(frozen=True)
class FeatureTable:
    """Sample rows and their image/CNN features, aligned row by row.

    Attributes
    ----------
    meta : DataFrame
        The sample.parquet columns of the joined galaxies (``objid``, ``split``, ``target``, ``target_err``,
        ``z``, ``dist_mpc``, ``lum_g``, ``flux_<band>``, ``gz2_p_*``, ...), index 0..N-1.
    features : DataFrame
        The image and CNN feature columns (float32), same rows; ``objid`` removed.
    counts : dict
        Galaxies in the sample, in each feature table, and after the join.
    target : Target
        What ``target`` is (:mod:`morphomass.targets`; the paper's M/L by default).
    """

    meta: pd.DataFrame
    features: pd.DataFrame
    counts: dict[str, int] = field(default_factory=dict)
    target: Target = ML_G

    def split_mask(self, split: str) -> np.ndarray:
        """Boolean mask (N,) of the rows of one split (``train``, ``val`` or ``test``)."""
        return (self.meta["split"] == split).to_numpy()

    @property
    def available_bands(self) -> tuple[str, ...]:
        """Bands with a catalogue flux (``flux_<band>``) or luminosity (``lum_<band>``), in SDSS order."""
        cols = set(self.meta.columns)
        return tuple(b for b in BANDS if f"flux_{b}" in cols or f"lum_{b}" in cols)

    @property
    def encoder_names(self) -> tuple[str, ...]:
        """Names of the encoder sources of the ``enc_<name>_*`` feature columns (:func:`encoder_names`)."""
        return encoder_names(self.features.columns)


def _check_objid(frame: pd.DataFrame, name: str) -> None:
    if "objid" not in frame.columns:
        msg = f"{name} has no 'objid' column; columns are {list(frame.columns)[:8]}..."
        raise InputDataError(msg)
    if not pd.api.types.is_integer_dtype(frame["objid"]):
        msg = f"{name}: column 'objid' must be int64, got {frame['objid'].dtype}"
        raise InputDataError(msg)
    duplicated = frame["objid"].duplicated()
    if duplicated.any():
        msg = f"{name}: objid {int(frame['objid'][duplicated].iloc[0])} appears more than once"
        raise InputDataError(msg)


def _check_sample(sample: pd.DataFrame, name: str, target: Target) -> None:
    _check_objid(sample, name)
    missing = [c for c in SAMPLE_COLUMNS if c not in sample.columns]
    if missing:
        msg = f"{name} lacks the columns {missing} (DESIGN §2)"
        if "target" in missing:
            msg += "; it was written by an older morphomass: rerun 'morphomass catalog --force'"
        raise InputDataError(msg)
    bad_split = ~sample["split"].isin(SPLITS)
    if bad_split.any():
        row = int(np.flatnonzero(bad_split.to_numpy())[0])
        msg = f"{name} row {row}: split must be one of {list(SPLITS)}, got {sample['split'].iloc[row]!r}"
        raise InputDataError(msg)
    positive = ("target_err", "dist_mpc") if target.in_dex else ("target", "target_err", "dist_mpc")
    for col in ("target", "target_err", "dist_mpc"):
        values = sample[col].to_numpy(dtype=np.float64)
        bad = ~np.isfinite(values) | ((values <= 0) if col in positive else False)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            must = "finite and > 0" if col in positive else "finite"
            msg = (
                f"{name} row {row} (objid {int(sample['objid'].iloc[row])}): {col} ({target.name}) must be "
                f"{must}, got {values[row]!r}"
            )
            raise InputDataError(msg)


def _feature_block(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    block = frame.drop(columns="objid")
    non_numeric = [c for c in block.columns if not pd.api.types.is_numeric_dtype(block[c])]
    if non_numeric:
        msg = f"{name}: feature columns must be numeric, got {non_numeric[:5]}"
        raise InputDataError(msg)
    return block.astype(np.float32)


def join_tables(
    sample: pd.DataFrame,
    photometric: pd.DataFrame,
    cnn: pd.DataFrame,
    *,
    names: tuple[str, str, str] = ("sample.parquet", "features/photometric.parquet", "features/cnn.parquet"),
    target: Target = ML_G,
) -> FeatureTable:
    """Inner-join the sample with the two feature tables on ``objid`` (pure; no I/O).

    Parameters
    ----------
    sample : DataFrame
        sample.parquet (DESIGN §2): at least :data:`SAMPLE_COLUMNS`.
    photometric, cnn : DataFrame
        ``objid`` (int64) plus numeric feature columns; their column names must not overlap.
    names : tuple of str
        Names used in error messages.
    target : Target
        What the sample's ``target`` column is (:func:`morphomass.targets.read_target`).

    Returns
    -------
    FeatureTable
        Rows in the sample's order, restricted to galaxies present in all three tables.

    Raises
    ------
    InputDataError
        Missing or duplicated ``objid``, missing sample columns, bad split labels, a non-finite target (or a
        non-positive one for a ratio target), non-positive error
        or distance, non-numeric features, overlapping feature names, or no galaxy left in the training split.
    """
    _check_sample(sample, names[0], target)
    _check_objid(photometric, names[1])
    _check_objid(cnn, names[2])
    overlap = sorted(set(photometric.columns) & set(cnn.columns) - {"objid"})
    if overlap:
        msg = f"{names[1]} and {names[2]} share the feature columns {overlap[:5]}"
        raise InputDataError(msg)
    phot = _feature_block(photometric, names[1])
    cnnf = _feature_block(cnn, names[2])
    keys = sample[["objid"]].reset_index(drop=True)
    keys["_row"] = np.arange(len(keys))
    joined = keys.merge(photometric[["objid"]].assign(_p=np.arange(len(photometric))), on="objid")
    joined = joined.merge(cnn[["objid"]].assign(_c=np.arange(len(cnn))), on="objid").sort_values("_row")
    counts = {"sample": len(sample), "photometric": len(photometric), "cnn": len(cnn), "joined": len(joined)}
    if len(joined) < len(sample):
        logger.info(
            "%d of %d sample galaxies lack image or CNN features and are left out (photometric: %d rows, "
            "cnn: %d rows)",
            len(sample) - len(joined),
            len(sample),
            len(photometric),
            len(cnn),
        )
    meta = sample.iloc[joined["_row"].to_numpy()].reset_index(drop=True)
    features = pd.concat(
        [
            phot.iloc[joined["_p"].to_numpy()].reset_index(drop=True),
            cnnf.iloc[joined["_c"].to_numpy()].reset_index(drop=True),
        ],
        axis=1,
    )
    for split in SPLITS:
        counts[split] = int((meta["split"] == split).sum())
    if counts["train"] == 0 or counts["val"] == 0:
        msg = (
            f"after joining {names[0]} with the feature tables, the train/val splits hold "
            f"{counts['train']}/{counts['val']} galaxies; both need at least one"
        )
        raise InputDataError(msg)
    return FeatureTable(meta=meta, features=features, counts=counts, target=target)


def load_feature_table(sample_path: Path, photometric_path: Path, cnn_path: Path) -> FeatureTable:
    """Read the three Parquet files and :func:`join_tables` them.

    Raises
    ------
    InputDataError
        A file that cannot be read as Parquet, an invalid recorded target, or any problem
        :func:`join_tables` finds.
    """
    frames = []
    for path in (sample_path, photometric_path, cnn_path):
        try:
            frames.append(pd.read_parquet(path))
        except (OSError, ValueError) as err:
            msg = f"cannot read {path} as Parquet: {err}"
            raise InputDataError(msg) from err
    sample, photometric, cnn = frames
    return join_tables(
        sample,
        photometric,
        cnn,
        names=(str(sample_path), str(photometric_path), str(cnn_path)),
        target=read_target(sample_path),
    )


def feature_groups(columns: list[str] | pd.Index) -> dict[str, list[str]]:
    """Sort image/CNN feature names into the ablation groups of Table 1 (by their DESIGN §2 names).

    ``luminosity``: ``lum_*``, ``image_size_pix``, ``scaling_a`` (F1, from the unscaled image); ``image``:
    ``img_*`` (F2); ``distance``: ``redshift``, ``pixel_kpc`` (F3); ``cnn123``: ``cnn1_*``, ``cnn2_*``,
    ``cnn3_*`` (GZ2 probabilities and CNN1's trunk); ``cnn3_probs``: ``cnn3_p_*`` (a subset of ``cnn123``);
    ``cnn4``: ``cnn4_*``; ``classical``: ``morph_*`` (classical morphology: C, A, S, Gini, M20, Sersic n,
    axis ratio, ...); ``encoders``: ``enc_*`` (the frozen encoder sources, every one of them; see
    :func:`encoder_names`); ``other``: anything else.

    Returns
    -------
    dict of str to list of str
        Every key of :data:`GROUPS`, columns in input order.
    """
    groups: dict[str, list[str]] = {g: [] for g in GROUPS}
    for col in columns:
        if col.startswith("lum_") or col in LUMINOSITY_EXTRA:
            groups["luminosity"].append(col)
        elif col.startswith("img_"):
            groups["image"].append(col)
        elif col in ("redshift", "pixel_kpc"):
            groups["distance"].append(col)
        elif col.startswith(("cnn1_", "cnn2_", "cnn3_")):
            groups["cnn123"].append(col)
            if col.startswith("cnn3_p_"):
                groups["cnn3_probs"].append(col)
        elif col.startswith("cnn4_"):
            groups["cnn4"].append(col)
        elif col.startswith("morph_"):
            groups["classical"].append(col)
        elif col.startswith(ENCODER_PREFIX):
            groups["encoders"].append(col)
        else:
            groups["other"].append(col)
    return groups


def _encoder_of(column: str) -> str | None:
    """Return the encoder name of an ``enc_<name>_<k>`` column (``k`` digits), None for any other column."""
    if not column.startswith(ENCODER_PREFIX):
        return None
    name, _, index = column[len(ENCODER_PREFIX) :].rpartition("_")
    return name if name and index.isdigit() else None


def encoder_names(columns: list[str] | pd.Index) -> tuple[str, ...]:
    """Names of the encoder sources of feature columns ``enc_<name>_<k>``, in order of first appearance.

    The name may hold underscores; the digits after the last one are the feature index.

    Examples
    --------
    >>> encoder_names(["lum_sum", "enc_zoobot_nano_0000", "enc_zoobot_nano_0001", "enc_rand_0000"])
    ('zoobot_nano', 'rand')
    """
    names: dict[str, None] = {}
    for col in columns:
        name = _encoder_of(str(col))
        if name is not None:
            names.setdefault(name, None)
    return tuple(names)


def encoder_columns_of(columns: list[str] | pd.Index, name: str) -> list[str]:
    """Return the feature columns ``enc_<name>_<k>`` of one encoder source, in input order."""
    return [str(c) for c in columns if _encoder_of(str(c)) == name]


def band_luminosities(meta: pd.DataFrame, bands: str | tuple[str, ...]) -> pd.DataFrame:
    """Catalogue luminosity per band, in one unit for all bands.

    When the sample has ``lum_<band>`` for every requested band, those are used (L_sun); otherwise every band
    is computed as ``4 pi D^2 flux_<band>`` from the modelMag flux (nanomaggies) and ``dist_mpc``, in
    nanomaggy cm^2 (a fixed multiple of the luminosity density, so ratios between bands are flux ratios).

    Parameters
    ----------
    meta : DataFrame
        Sample rows with ``lum_<band>`` or ``flux_<band>`` and ``dist_mpc`` (Mpc).
    bands : str or tuple of str
        Bands, e.g. ``"gi"``.

    Returns
    -------
    DataFrame
        One float64 column ``lum_<band>`` per band; non-positive values give NaN (missing for LightGBM).

    Raises
    ------
    InputDataError
        If neither all ``lum_<band>`` nor all ``flux_<band>`` columns are present.
    """
    if all(f"lum_{b}" in meta.columns for b in bands):
        values = {b: meta[f"lum_{b}"].to_numpy(dtype=np.float64) for b in bands}
    else:
        missing = [f"flux_{b}" for b in bands if f"flux_{b}" not in meta.columns]
        if missing:
            msg = f"sample.parquet lacks {missing} (and lum_<band> for some of the bands {list(bands)})"
            raise InputDataError(msg)
        dist_cm = meta["dist_mpc"].to_numpy(dtype=np.float64) * MPC_CM
        values = {b: 4.0 * math.pi * dist_cm**2 * meta[f"flux_{b}"].to_numpy(dtype=np.float64) for b in bands}
    return pd.DataFrame({f"lum_{b}": np.where(v > 0, v, np.nan) for b, v in values.items()}, index=meta.index)


def band_features(meta: pd.DataFrame, bands: str) -> pd.DataFrame:
    """Build the global (catalogue) features of a band set: redshift, luminosities, adjacent-band ratios.

    For ``"g"`` this is the paper's reference (z, L_g); for ``"gi"`` the colour GBM of §4.3 (z, L_g, L_i,
    L_g/L_i). Columns: ``cat_z``, ``cat_lum_<b>`` per band, ``cat_ratio_<b1>_<b2>`` for consecutive bands.

    Returns
    -------
    DataFrame of float64
    """
    ordered = "".join(b for b in BANDS if b in bands)
    lum = band_luminosities(meta, ordered)
    out = {"cat_z": meta["z"].to_numpy(dtype=np.float64)}
    for band in ordered:
        out[f"cat_lum_{band}"] = lum[f"lum_{band}"].to_numpy()
    for b1, b2 in zip(ordered, ordered[1:], strict=False):
        out[f"cat_ratio_{b1}_{b2}"] = out[f"cat_lum_{b1}"] / out[f"cat_lum_{b2}"]
    return pd.DataFrame(out, index=meta.index)


def flux_features(features: pd.DataFrame, dist_mpc: np.ndarray) -> pd.DataFrame:
    """Replace the luminosity features ``lum_*`` by fluxes ``flux_* = lum_* / (4 pi D^2)`` ('no distance').

    Parameters
    ----------
    features : DataFrame
        Holding ``lum_*`` columns (luminosities computed with the distance ``dist_mpc``).
    dist_mpc : (N,) array
        Distance in Mpc per row.

    Returns
    -------
    DataFrame
        One float32 column ``flux_<rest>`` per ``lum_<rest>`` (units: the luminosity unit per Mpc^2).
    """
    factor = 1.0 / (4.0 * math.pi * np.asarray(dist_mpc, dtype=np.float64) ** 2)
    lum_cols = [c for c in features.columns if c.startswith("lum_")]
    return pd.DataFrame(
        {f"flux_{c[4:]}": (features[c].to_numpy(np.float64) * factor).astype(np.float32) for c in lum_cols},
        index=features.index,
    )


def gz2_truth_columns(meta: pd.DataFrame) -> pd.DataFrame:
    """Return the 37 true GZ2 probabilities (NaN where no GZ2 match), for the 'cheating' model (E6).

    Raises
    ------
    InputDataError
        If sample.parquet lacks any ``gz2_p_*`` column.
    """
    missing = [c for c in ANSWER_COLUMNS if c not in meta.columns]
    if missing:
        msg = f"sample.parquet lacks the GZ2 columns {missing[:3]}... needed by g_morph_gz2_truth"
        raise InputDataError(msg)
    return meta[list(ANSWER_COLUMNS)].astype(np.float32)
