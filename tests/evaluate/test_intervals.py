"""B2: bootstrap standard errors and 95 % intervals of every metric, the paired test's verdict."""

from __future__ import annotations

import numpy as np
import pytest

from morphomass.errors import InputDataError
from morphomass.evaluate.metrics import METRIC_KEYS, compute_metrics
from morphomass.evaluate.results import compute_intervals
from morphomass.evaluate.statistics import (
    NOT_RESOLVED,
    RESOLVED,
    bootstrap_metrics,
    draw_bootstrap_counts,
    is_resolved,
    paired_bootstrap_pvalue,
    summarize_bootstrap,
    verdict,
)


def _galaxies(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return true M/L, its error (20 %) and a prediction off by err x N(0, 1): per-galaxy L1~ = |N(0, 1)|."""
    true = rng.lognormal(1.0, 0.5, n)
    err = 0.2 * true
    pred = true + err * rng.normal(0.0, 1.0, n)
    return np.abs(pred), true, err


def test_counts_are_resamples_with_replacement() -> None:
    counts = draw_bootstrap_counts(7, n_resamples=500, rng=np.random.default_rng(0))
    assert counts.shape == (500, 7)
    assert np.all(counts.sum(axis=1) == 7) and np.all(counts == np.round(counts)) and counts.min() >= 0
    assert counts.mean(axis=0) == pytest.approx(np.ones(7), abs=0.1)  # each galaxy drawn once on average
    small = draw_bootstrap_counts(7, n_resamples=500, rng=np.random.default_rng(0), max_chunk_bytes=8 * 7 * 3)
    np.testing.assert_array_equal(small, counts)
    with pytest.raises(InputDataError, match="n must be at least 1"):
        draw_bootstrap_counts(0, n_resamples=5, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="n_resamples must be at least 1"):
        draw_bootstrap_counts(5, n_resamples=0, rng=np.random.default_rng(0))


def test_bootstrap_metrics_equal_the_metrics_of_each_resample() -> None:
    rng = np.random.default_rng(1)
    pred, true, err = _galaxies(41, rng)
    indices = rng.integers(0, 41, size=(30, 41))
    counts = np.stack([np.bincount(i, minlength=41) for i in indices]).astype(float)
    boot = bootstrap_metrics(pred, true, err, counts)
    assert set(boot) == set(METRIC_KEYS)
    for key in METRIC_KEYS:
        expected = [compute_metrics(pred[i], true[i], err[i])[key] for i in indices]
        np.testing.assert_allclose(boot[key], expected, rtol=1e-12, atol=1e-15)
    # an even-sized resample: the median averages the two middle values, as np.median does
    even = np.zeros((1, 41))
    even[0, :4] = [1, 2, 0, 1]
    l1 = np.abs(pred - true) / err
    expanded = np.repeat(l1[:4], [1, 2, 0, 1])
    assert bootstrap_metrics(pred, true, err, even)["median_l1"][0] == pytest.approx(np.median(expanded))
    # a resample with none of these galaxies has no metric
    assert np.isnan(bootstrap_metrics(pred, true, err, np.zeros((1, 41)))["l1"][0])
    with pytest.raises(InputDataError, match=r"counts must have shape \(n_resamples, 41\)"):
        bootstrap_metrics(pred, true, err, np.ones((3, 40)))


def test_the_95_percent_interval_covers_the_true_value() -> None:
    """1000 independent test sets of 200 galaxies: the interval of L1~ covers E|N(0,1)| = sqrt(2/pi) ~95 %."""
    rng = np.random.default_rng(2)
    truth = np.sqrt(2 / np.pi)
    covered = 0
    reps = 1000
    for _ in range(reps):
        pred, true, err = _galaxies(200, rng)
        counts = draw_bootstrap_counts(200, n_resamples=400, rng=rng)
        _, (lo, hi) = summarize_bootstrap(bootstrap_metrics(pred, true, err, counts)["l1"])
        covered += lo <= truth <= hi
    assert covered / reps == pytest.approx(0.95, abs=0.025)


def test_standard_error_agrees_with_the_analytic_one() -> None:
    rng = np.random.default_rng(3)
    pred, true, err = _galaxies(500, rng)
    counts = draw_bootstrap_counts(500, n_resamples=4000, rng=rng)
    boot = bootstrap_metrics(pred, true, err, counts)
    l1 = np.abs(pred - true) / err
    se, (lo, hi) = summarize_bootstrap(boot["l1"])
    assert se == pytest.approx(l1.std() / np.sqrt(l1.size), rel=0.05)  # plug-in SE of a mean
    assert lo < l1.mean() < hi
    within = np.mean(np.abs(np.log10(pred / true)) < 0.15)
    se_frac, _ = summarize_bootstrap(boot["frac_within_015dex"])
    assert se_frac == pytest.approx(np.sqrt(within * (1 - within) / 500), rel=0.05)  # binomial SE


def test_summaries_of_degenerate_distributions() -> None:
    assert summarize_bootstrap([1.0, 3.0, np.nan]) == (pytest.approx(np.sqrt(2.0)), (1.05, 2.95))
    se, interval = summarize_bootstrap([2.0, np.nan])
    assert np.isnan(se) and interval == (2.0, 2.0)
    se, interval = summarize_bootstrap([np.nan])
    assert np.isnan(se) and np.isnan(interval).all()
    with pytest.raises(ValueError, match=r"level must be in \(0, 1\)"):
        summarize_bootstrap([1.0, 2.0], level=95)


def test_intervals_of_a_model_that_skips_galaxies() -> None:
    """A model that does not apply to some test galaxies is scored on the resampled galaxies it applies to."""
    rng = np.random.default_rng(4)
    pred, true, err = _galaxies(300, rng)
    counts = draw_bootstrap_counts(300, n_resamples=500, rng=rng)
    full = compute_intervals(pred, true, err, counts, threshold_dex=0.15)
    assert set(full) == {"se", "ci95"}
    assert set(full["se"]) == set(full["ci95"]) == set(METRIC_KEYS)
    skipping = pred.copy()
    skipping[:100] = np.nan
    part = compute_intervals(skipping, true, err, counts, threshold_dex=0.15)
    assert part["se"]["l1"] > full["se"]["l1"]  # fewer galaxies, wider
    lo, hi = part["ci95"]["l1"]
    assert lo < compute_metrics(pred[100:], true[100:], err[100:])["l1"] < hi


def test_paired_pvalue_is_small_for_a_better_model_and_uniform_for_equal_ones() -> None:
    rng = np.random.default_rng(5)
    reference = rng.lognormal(0.0, 0.8, 300)
    better = reference * rng.normal(0.85, 0.05, 300)
    assert paired_bootstrap_pvalue(better, reference, n_resamples=2000, rng=rng) < 0.01
    # two models with the same error distribution: p is roughly uniform
    pvalues = np.array(
        [
            paired_bootstrap_pvalue(
                rng.lognormal(0.0, 0.8, 100), rng.lognormal(0.0, 0.8, 100), n_resamples=200, rng=rng
            )
            for _ in range(300)
        ]
    )
    assert pvalues.mean() == pytest.approx(0.5, abs=0.06)
    assert np.mean(pvalues < 0.05) < 0.1 and np.mean(pvalues > 0.5) > 0.35


def test_verdict() -> None:
    assert is_resolved(0.009) and not is_resolved(0.01) and not is_resolved(0.3)
    assert verdict(1e-4) == RESOLVED == "resolved"
    assert verdict(0.01) == NOT_RESOLVED == "not resolved at this sample size"
    assert verdict(0.04, alpha=0.05) == "resolved"
