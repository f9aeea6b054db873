"""Permutation importance (SPEC E5) with a known model."""

from __future__ import annotations

import numpy as np
import pytest

from morphomass.errors import InputDataError
from morphomass.gbm.importance import permutation_importance


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    ml = np.exp(0.5 * x[:, 0])
    return x, ml, 0.1 * ml


def _model(a: np.ndarray) -> np.ndarray:  # uses feature 0 strongly, feature 1 weakly, never feature 2
    return np.exp(0.5 * a[:, 0] + 0.05 * a[:, 1])


def test_used_features_matter_and_unused_ones_do_not() -> None:
    x, ml, err = _data()
    mean, std = permutation_importance(x, ml, err, _model, repeats=3, rng=np.random.default_rng(1))
    assert mean[0] > 10 * mean[1] > 0
    assert mean[2] == 0.0 and std[2] == 0.0
    assert std[0] > 0


def test_only_requested_columns_are_permuted() -> None:
    x, ml, err = _data()
    mean, _ = permutation_importance(x, ml, err, _model, columns=[1], repeats=2, rng=np.random.default_rng(1))
    assert mean[0] == 0.0 and mean[1] > 0


def test_batching_does_not_change_the_result() -> None:
    x, ml, err = _data()
    one = permutation_importance(
        x, ml, err, _model, repeats=3, rng=np.random.default_rng(7), max_batch_bytes=1
    )
    many = permutation_importance(x, ml, err, _model, repeats=3, rng=np.random.default_rng(7))
    np.testing.assert_allclose(one[0], many[0])
    np.testing.assert_allclose(one[1], many[1])


def test_errors() -> None:
    x, ml, err = _data()
    with pytest.raises(InputDataError, match="x must be"):
        permutation_importance(x[:10], ml, err, _model, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="repeats must be at least 1"):
        permutation_importance(x, ml, err, _model, repeats=0, rng=np.random.default_rng(0))
