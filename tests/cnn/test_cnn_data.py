"""Reading sample.parquet and images.zarr for the CNN stage: targets, image order, and every input error."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import zarr

from morphomass.cnn.data import ImageGroup, gz2_targets, load_sample, ml_targets
from morphomass.errors import InputDataError
from morphomass.gz2 import ANSWER_COLUMNS


@pytest.fixture(name="inputs")
def fixture_inputs(tmp_path: Path, make_cnn_inputs: Callable[..., pd.DataFrame]) -> tuple[Path, pd.DataFrame]:
    return tmp_path, make_cnn_inputs(tmp_path, n=40, sizes=(24,), dtype="float16")


def test_targets_keep_only_usable_rows(inputs: tuple[Path, pd.DataFrame]) -> None:
    root, _ = inputs
    sample = load_sample(root / "sample.parquet")
    sample.loc[sample.index[0], "split"] = "train"
    sample.loc[sample.index[0], "has_gz2"] = True
    sample.loc[sample.index[0], ANSWER_COLUMNS[5]] = np.nan  # a match with one missing probability
    sample.loc[sample.index[1], ["split", "target_err"]] = ["train", 0.0]
    objid, targets = gz2_targets(sample, "train")
    complete = sample[list(ANSWER_COLUMNS)].notna().all(axis=1)
    expected = sample[(sample.split == "train") & sample.has_gz2 & complete]
    np.testing.assert_array_equal(objid, expected.objid)
    assert targets.shape == (len(expected), 37) and targets.dtype == np.float32
    assert sample.objid.iloc[0] not in objid
    ml_id, ml, ml_err = ml_targets(sample, "train")
    assert sample.objid.iloc[1] not in ml_id
    assert len(ml_id) == (sample.split == "train").sum() - 1  # GZ2 match not needed for M/L
    assert np.all(ml_err > 0) and np.all(np.isfinite(ml))


def test_images_come_back_in_the_requested_order(inputs: tuple[Path, pd.DataFrame]) -> None:
    root, sample = inputs
    group = ImageGroup(root / "images.zarr", 24)
    stored = zarr.open_group(str(root / "images.zarr"), mode="r")["24"]
    wanted = sample.objid.to_numpy()[[5, 0, 17, 3]]
    images = group.read(wanted)
    assert images.dtype == np.float16 and images.shape == (4, 24, 24)
    stored_objid = stored["objid"][:]
    for objid, image in zip(wanted, images, strict=True):
        np.testing.assert_array_equal(image, stored["images"][int(np.flatnonzero(stored_objid == objid)[0])])
    assert group.read(np.array([], dtype=np.int64)).shape == (0, 24, 24)


def test_missing_column(tmp_path: Path) -> None:
    pd.DataFrame({"objid": [1], "split": ["train"]}).to_parquet(tmp_path / "s.parquet")
    with pytest.raises(InputDataError, match=r"s.parquet: missing column\(s\) \['has_gz2', 'target'"):
        load_sample(tmp_path / "s.parquet")


def test_duplicate_objid_and_bad_split(inputs: tuple[Path, pd.DataFrame]) -> None:
    root, sample = inputs
    bad = sample.copy()
    bad.loc[1, "objid"] = bad.loc[0, "objid"]
    bad.to_parquet(root / "dup.parquet")
    with pytest.raises(InputDataError, match=f"objid must be unique, {bad.objid[0]} appears more than once"):
        load_sample(root / "dup.parquet")
    bad = sample.copy()
    bad.loc[2, "split"] = "validation"
    bad.to_parquet(root / "split.parquet")
    expected = r"row 2: split must be one of \['train', 'val', 'test'\], got 'validation'"
    with pytest.raises(InputDataError, match=expected):
        load_sample(root / "split.parquet")


def test_image_group_errors(inputs: tuple[Path, pd.DataFrame], tmp_path: Path) -> None:
    root, _ = inputs
    with pytest.raises(InputDataError, match="is not a readable zarr group"):
        ImageGroup(tmp_path / "absent.zarr", 24)
    with pytest.raises(InputDataError, match=r"lacks group '69' \(69-pixel images\), has \['24'\]"):
        ImageGroup(root / "images.zarr", 69)
    with pytest.raises(InputDataError, match="no image for 1 galaxies of sample.parquet .first objid 7."):
        ImageGroup(root / "images.zarr", 24).rows_of(np.array([7]))

    store = zarr.open_group(str(tmp_path / "bad.zarr"), mode="w")
    store.create_group("16").create_array("images", data=np.zeros((3, 16, 16), np.float32))
    with pytest.raises(InputDataError, match=r"bad.zarr/16: missing array 'objid'"):
        ImageGroup(tmp_path / "bad.zarr", 16)
    group = store.create_group("20")
    group.create_array("images", data=np.zeros((3, 20, 18), np.float32))
    group.create_array("objid", data=np.arange(3))
    with pytest.raises(InputDataError, match=r"images: expected shape \(N, 20, 20\), got \(3, 20, 18\)"):
        ImageGroup(tmp_path / "bad.zarr", 20)
    group = store.create_group("12")
    group.create_array("images", data=np.zeros((3, 12, 12), np.float32))
    group.create_array("objid", data=np.arange(4))
    with pytest.raises(InputDataError, match=r"objid: expected shape \(3,\) to match images, got \(4,\)"):
        ImageGroup(tmp_path / "bad.zarr", 12)
    group = store.create_group("8")
    group.create_array("images", data=np.zeros((3, 8, 8), np.float32))
    group.create_array("objid", data=np.array([1, 1, 2]))
    with pytest.raises(InputDataError, match="objid: values must be unique"):
        ImageGroup(tmp_path / "bad.zarr", 8)
