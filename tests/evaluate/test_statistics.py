"""E8 (one-sided KS, bootstrap of the mean) and the E9 morphology classes."""

from __future__ import annotations

import numpy as np
import pytest

from morphomass.errors import InputDataError
from morphomass.evaluate.statistics import (
    assign_classes,
    bootstrap_means,
    ks_one_sided_pvalue,
    paired_bootstrap_pvalue,
)


def test_ks_is_one_sided() -> None:
    rng = np.random.default_rng(0)
    better = rng.exponential(1.0, 400)
    worse = rng.exponential(2.0, 400)
    assert ks_one_sided_pvalue(better, worse) < 1e-3
    assert ks_one_sided_pvalue(worse, better) > 0.5
    with pytest.raises(InputDataError, match="at least one value"):
        ks_one_sided_pvalue([], [1.0])


def test_bootstrap_mean_and_spread() -> None:
    rng = np.random.default_rng(1)
    values = rng.exponential(2.0, 500)
    boots = bootstrap_means(values, n_resamples=20_000, rng=np.random.default_rng(2))
    assert boots.shape == (20_000,)
    assert boots.mean() == pytest.approx(values.mean(), rel=0.01)
    assert boots.std() == pytest.approx(values.std() / np.sqrt(values.size), rel=0.05)


def test_bootstrap_does_not_depend_on_the_chunk_size() -> None:
    values = np.arange(50.0)
    small = bootstrap_means(
        values, n_resamples=1000, rng=np.random.default_rng(5), max_chunk_bytes=4 * 50 * 7
    )
    large = bootstrap_means(values, n_resamples=1000, rng=np.random.default_rng(5))
    np.testing.assert_array_equal(small, large)


def test_bootstrap_errors() -> None:
    with pytest.raises(InputDataError, match="non-empty 1-D array"):
        bootstrap_means([], n_resamples=10, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="n_resamples must be at least 1"):
        bootstrap_means([1.0], n_resamples=0, rng=np.random.default_rng(0))


def test_paired_bootstrap_resolves_a_small_gain_that_ks_misses() -> None:
    """Two models with the same heavy-tailed per-galaxy L1~, one 8 % better on every galaxy (plus noise)."""
    rng = np.random.default_rng(3)
    reference = rng.lognormal(0.0, 0.8, 264)
    candidate = reference * rng.normal(0.92, 0.05, 264)
    kw = {"n_resamples": 20_000}
    assert ks_one_sided_pvalue(candidate, reference) > 0.01
    assert paired_bootstrap_pvalue(candidate, reference, **kw, rng=np.random.default_rng(4)) < 1e-3
    assert paired_bootstrap_pvalue(reference, candidate, **kw, rng=np.random.default_rng(4)) > 0.99
    # never better: every resample counts, (9 + 1) / (9 + 1)
    assert paired_bootstrap_pvalue(np.ones(5), np.ones(5), n_resamples=9, rng=np.random.default_rng(0)) == 1.0
    with pytest.raises(InputDataError, match="same galaxies"):
        paired_bootstrap_pvalue(np.ones(5), np.ones(4), n_resamples=9, rng=np.random.default_rng(0))
    with pytest.raises(InputDataError, match="non-empty 1-D array"):
        paired_bootstrap_pvalue([], [], n_resamples=9, rng=np.random.default_rng(0))


def test_classes_follow_the_paper_precedence() -> None:
    p_irr = [0.3, 0.3, 0.1, 0.1, 0.1, 0.2]
    p_edge = [0.9, 0.1, 0.5, 0.1, 0.1, 0.4]
    p_feat = [0.9, 0.9, 0.9, 0.5, 0.3, 0.4]
    assert assign_classes(p_irr, p_edge, p_feat).tolist() == [
        "irregular",
        "irregular",
        "edge_on",
        "disk",
        "elliptical",
        "elliptical",
    ]
    # thresholds are configurable
    assert assign_classes([0.1], [0.1], [0.3], feature_min=0.25).tolist() == ["disk"]
    with pytest.raises(InputDataError, match="differ in shape"):
        assign_classes([0.1], [0.1, 0.2], [0.1])
