"""M/L and the split against independent formulas and real numbers (photometry: tests/test_photometry.py)."""

from __future__ import annotations

import numpy as np
import pytest

from morphomass.catalog.targets import compute_ml, make_split


def test_ml_and_its_floored_error() -> None:
    # Dobbels' first galaxy: logM = 10.328326, L_g = 8.880467e9 -> M/L = 2.398
    ml, ml_err = compute_ml(10.328326, 0.01, 8.880467e9, 0.002, rel_err_floor=0.05)
    assert ml == pytest.approx(2.398, abs=5e-4)
    assert ml_err == pytest.approx(0.05 * ml)  # ln10 * 0.0100 = 2.3 % is below the floor
    ml, ml_err = compute_ml(
        np.array([10.0, 10.0]),
        np.array([0.1, 0.1]),
        np.array([1e10, 1e10]),
        np.array([0.0, 0.25]),
        rel_err_floor=0.05,
    )
    np.testing.assert_allclose(ml, [1.0, 1.0])
    np.testing.assert_allclose(ml_err, np.log(10) * np.hypot(0.1, [0.0, 0.1]))


def test_split_sizes_follow_spec_d9() -> None:
    split = make_split(73_627, test_fraction=0.1, val_fraction=0.1, rng=np.random.default_rng(0))
    counts = {name: int((split == name).sum()) for name in ("train", "val", "test")}
    assert counts == {"train": 59_637, "val": 6_627, "test": 7_363}  # the paper's numbers
    split = make_split(100, test_fraction=0.1, val_fraction=0.1, rng=np.random.default_rng(0))
    assert [(split == name).sum() for name in ("train", "val", "test")] == [81, 9, 10]


def test_split_is_seeded_and_random() -> None:
    a = make_split(500, test_fraction=0.1, val_fraction=0.1, rng=np.random.default_rng(123))
    b = make_split(500, test_fraction=0.1, val_fraction=0.1, rng=np.random.default_rng(123))
    c = make_split(500, test_fraction=0.1, val_fraction=0.1, rng=np.random.default_rng(124))
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()
    test_rows = np.flatnonzero(a == "test")
    assert test_rows.min() < 100 and test_rows.max() > 400  # spread over the rows, not a block
    with pytest.raises(ValueError, match=r"test_fraction must be in \(0, 1\), got 1\.0"):
        make_split(10, test_fraction=1.0, val_fraction=0.1, rng=np.random.default_rng(0))
