"""Reading the CNN stage's inputs: training targets from ``sample.parquet`` and images from ``images.zarr``.

``images.zarr`` (DESIGN §2) holds one group per input size, named by the size in pixels (``"69"``, ``"128"``,
``"197"``, ...), each with three arrays of the same length N (the galaxies that preprocessing did not reject):

* ``images``: (N, S, S) float32 or float16, the log-scaled images in [0, 1];
* ``objid``: (N,) int64, the galaxies' keys (the order of the rows);
* ``scaling_a``: (N,) the automatic scaling values (not used by the networks).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import zarr
from numpy.typing import NDArray

from morphomass.errors import InputDataError
from morphomass.gz2 import ANSWER_COLUMNS

__all__ = [
    "SAMPLE_COLUMNS",
    "ImageGroup",
    "gz2_targets",
    "load_sample",
    "ml_targets",
]

#: Columns of ``sample.parquet`` the CNN stage reads.
SAMPLE_COLUMNS: tuple[str, ...] = ("objid", "split", "has_gz2", "target", "target_err", *ANSWER_COLUMNS)
SPLITS = ("train", "val", "test")


def load_sample(path: Path, *, columns: tuple[str, ...] = SAMPLE_COLUMNS) -> pd.DataFrame:
    """Read the columns of ``sample.parquet`` the CNN stage needs and check them.

    Parameters
    ----------
    path : Path
        ``sample.parquet``.
    columns : tuple of str
        Columns to read; ``objid`` and ``split`` are always read.

    Returns
    -------
    pandas.DataFrame
        The columns asked for, one row per galaxy, ``objid`` int64 and unique.

    Raises
    ------
    InputDataError
        If a column is missing, ``objid`` repeats or ``split`` holds an unknown value.
    """
    import pyarrow.parquet as pq

    columns = tuple(dict.fromkeys(("objid", "split", *columns)))
    available = set(pq.read_schema(path).names)
    missing = [c for c in columns if c not in available]
    if missing:
        msg = f"{path}: missing column(s) {missing}; the CNN stage needs {list(columns)}"
        raise InputDataError(msg)
    sample = pd.read_parquet(path, columns=list(columns))
    sample["objid"] = sample["objid"].astype(np.int64)
    duplicated = sample["objid"][sample["objid"].duplicated()]
    if len(duplicated):
        msg = f"{path}: objid must be unique, {int(duplicated.iloc[0])} appears more than once"
        raise InputDataError(msg)
    bad = ~sample["split"].isin(SPLITS)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        msg = f"{path}: row {row}: split must be one of {list(SPLITS)}, got {sample['split'].iloc[row]!r}"
        raise InputDataError(msg)
    return sample


def gz2_targets(sample: pd.DataFrame, split: str) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
    """Select the galaxies of one split with a GZ2 match and their 37 unconditional probabilities.

    Parameters
    ----------
    sample : pandas.DataFrame
        As returned by :func:`load_sample`.
    split : {'train', 'val', 'test'}

    Returns
    -------
    objid : (n,) int64
    targets : (n, 37) float32
        In :data:`morphomass.gz2.ANSWER_COLUMNS` order. Rows with ``has_gz2`` false or any NaN are left out.
    """
    probs = sample[list(ANSWER_COLUMNS)].to_numpy(np.float32)
    in_split = (sample["split"] == split).to_numpy()
    keep = in_split & sample["has_gz2"].to_numpy(bool) & np.isfinite(probs).all(axis=1)
    return sample["objid"].to_numpy(np.int64)[keep], probs[keep]


def ml_targets(
    sample: pd.DataFrame, split: str
) -> tuple[NDArray[np.int64], NDArray[np.float32], NDArray[np.float32]]:
    """Select the galaxies of one split with a usable regression target (CNN4), with or without a GZ2 match.

    The target is ``catalog.target`` (the sample's ``target`` column: M/L_g by default, as in the paper).

    Returns
    -------
    objid : (n,) int64
    ml : (n,) float32
        The target (M/L_g in solar units by default).
    ml_err : (n,) float32
        Its uncertainty (positive). Rows with a non-finite target or a non-positive error are left out.
    """
    ml = sample["target"].to_numpy(np.float32)
    ml_err = sample["target_err"].to_numpy(np.float32)
    keep = (sample["split"] == split).to_numpy() & np.isfinite(ml) & np.isfinite(ml_err) & (ml_err > 0)
    return sample["objid"].to_numpy(np.int64)[keep], ml[keep], ml_err[keep]


class ImageGroup:
    """One input size of ``images.zarr``: read images by galaxy key.

    Parameters
    ----------
    path : Path
        ``images.zarr``.
    size : int
        Input size in pixels (the group's name).
    """

    def __init__(self, path: Path, size: int) -> None:
        self.path = Path(path)
        self.size = int(size)
        where = f"{self.path}/{self.size}"
        try:
            root = zarr.open_group(str(self.path), mode="r")
        except (FileNotFoundError, zarr.errors.GroupNotFoundError) as err:
            msg = f"{self.path} is not a readable zarr group ({err})"
            raise InputDataError(msg) from err
        if str(self.size) not in root:
            msg = f"{self.path} lacks group {str(self.size)!r} ({self.size}-pixel images), has {sorted(root)}"
            raise InputDataError(msg)
        group = root[str(self.size)]
        for name in ("images", "objid"):
            if name not in group:
                msg = f"{where}: missing array {name!r} (expected images (N, S, S), objid (N,) and scaling_a)"
                raise InputDataError(msg)
        self.images = group["images"]
        shape = tuple(self.images.shape)
        if len(shape) != 3 or shape[1:] != (self.size, self.size):
            msg = f"{where}/images: expected shape (N, {self.size}, {self.size}), got {shape}"
            raise InputDataError(msg)
        self.objid = np.asarray(group["objid"][:], dtype=np.int64)
        if self.objid.shape != (shape[0],):
            msg = f"{where}/objid: expected shape ({shape[0]},) to match images, got {self.objid.shape}"
            raise InputDataError(msg)
        self._rows = pd.Index(self.objid)
        if not self._rows.is_unique:
            msg = f"{where}/objid: values must be unique"
            raise InputDataError(msg)

    def contains(self, objid: NDArray[np.int64]) -> NDArray[np.bool_]:
        """Whether each galaxy has an image of this size ((n,) bool; preprocessing failures have none)."""
        return self._rows.get_indexer(np.asarray(objid, dtype=np.int64)) >= 0

    def rows_of(self, objid: NDArray[np.int64]) -> NDArray[np.int64]:
        """Row numbers of the given galaxies.

        Raises
        ------
        InputDataError
            If a galaxy has no image of this size.
        """
        rows = self._rows.get_indexer(np.asarray(objid, dtype=np.int64))
        if (rows < 0).any():
            absent = np.asarray(objid)[rows < 0]
            msg = (
                f"{self.path}/{self.size}: no image for {len(absent)} galaxies of sample.parquet "
                f"(first objid {int(absent[0])}); rerun 'morphomass preprocess'"
            )
            raise InputDataError(msg)
        return rows.astype(np.int64)

    def read(self, objid: NDArray[np.int64]) -> NDArray[np.floating]:
        """Images of the given galaxies, in that order: (n, S, S) in the stored dtype (float32 or float16)."""
        rows = self.rows_of(objid)
        if len(rows) == 0:
            return np.empty((0, self.size, self.size), dtype=self.images.dtype)
        order = np.argsort(rows, kind="stable")
        data = np.empty((len(rows), self.size, self.size), dtype=self.images.dtype)
        data[order] = self.images.oindex[rows[order]]
        return data
