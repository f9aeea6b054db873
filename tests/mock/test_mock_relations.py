"""The structure-population relations pinned in docs/mock.md, measured on >= 10^5 seeded draws (no rendering).

Each test compares a statistic of the drawn population with the value the pinned relation implies, within
four standard errors of that statistic (from the pinned scatter and the number of draws). Where the mock
quantises or clips a quantity (Sersic indices, ages), the expected value is computed through the same
quantisation and clip, so the test checks the relation as drawn.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from morphomass.mock import physics
from morphomass.mock.physics import (
    BULGE_SERSIC_LOG_N,
    BULGE_TO_DISC_HLR,
    BULGE_TO_DISC_HLR_SCATTER_DEX,
    DISC_BT_CONCENTRATION,
    EARLY_TYPE_METALLICITY_PER_DEX_RE,
    ELLIPTICAL_SERSIC_LOG_N,
    NUCLEUS_FLUX_FRACTION,
    NUCLEUS_PROBABILITY,
    bar_probability,
    draw_bulge_sersic_n,
    draw_bulge_to_disc_hlr,
    draw_disc_bulge_fraction,
    draw_elliptical_sersic_n,
    draw_galaxies,
    mean_disc_bulge_fraction,
)

N_DRAWS = 200_000
#: A fine grid over the standard normal: quadrature through a step function (the quantisation) needs it.
_GRID = np.linspace(-7.0, 7.0, 140_001)
_GRID_WEIGHTS = stats.norm.pdf(_GRID) / stats.norm.pdf(_GRID).sum()


@pytest.fixture(scope="module")
def population():
    """One large seeded draw of the parent population (all classes)."""
    return draw_galaxies(1_000_000, np.random.default_rng(2026))


def _median_standard_error(density_at_median: float, n: int) -> float:
    return 1.0 / (2.0 * density_at_median * np.sqrt(n))


def _expected_quantised_mean(log_n_mean: np.ndarray, scatter: float, *, lo: float, hi: float) -> np.ndarray:
    """Return E[clip(round(2 * 10**(m + scatter * e)) / 2, lo, hi)] for e ~ N(0, 1), on a fine grid."""
    values = 10 ** (log_n_mean[:, None] + scatter * _GRID[None, :])
    quantised = np.clip(np.round(values * 2) / 2, lo, hi)
    return (quantised * _GRID_WEIGHTS).sum(axis=1)


@pytest.mark.parametrize("log_mstar", [9.75, 11.0])
def test_median_disc_bulge_fraction_rises_with_mass(log_mstar: float) -> None:
    rng = np.random.default_rng(1)
    bt = draw_disc_bulge_fraction(np.full(N_DRAWS, log_mstar), rng)
    mean = float(mean_disc_bulge_fraction(np.array([log_mstar]))[0])
    law = stats.beta(mean * DISC_BT_CONCENTRATION, (1 - mean) * DISC_BT_CONCENTRATION)
    tolerance = 4 * _median_standard_error(law.pdf(law.median()), N_DRAWS)
    assert abs(np.median(bt) - law.median()) < tolerance
    # The pinned anchors: nearly bulgeless at low mass, B/T ~ 0.2 for massive discs.
    assert (np.median(bt) < 0.08) if log_mstar < 10 else (0.15 < np.median(bt) < 0.25)


def test_bulge_to_disc_size_ratio() -> None:
    ratio = draw_bulge_to_disc_hlr(N_DRAWS, np.random.default_rng(2))
    log_ratio = np.log10(ratio)
    # The clip at [0.04, 0.5] (beyond 3 sigma) leaves the median untouched.
    tolerance = 4 * 1.2533 * BULGE_TO_DISC_HLR_SCATTER_DEX / np.sqrt(N_DRAWS)
    assert abs(np.median(log_ratio) - np.log10(BULGE_TO_DISC_HLR)) < tolerance
    assert abs(np.median(ratio) - 0.131) < 0.002  # r_e / h = 0.22 over 1.678
    assert abs(np.std(log_ratio) - BULGE_TO_DISC_HLR_SCATTER_DEX) < 0.01


def test_bulge_sersic_index_rises_with_bulge_fraction() -> None:
    rng = np.random.default_rng(3)
    intercept, slope, scatter = BULGE_SERSIC_LOG_N
    for bt_value in (0.05, 0.4):
        bt = np.full(N_DRAWS, bt_value)
        n = draw_bulge_sersic_n(bt, rng)
        expected = _expected_quantised_mean(
            np.array([intercept + slope * bt_value]), scatter, lo=1.0, hi=4.5
        )[0]
        assert abs(n.mean() - expected) < 4 * n.std() / np.sqrt(N_DRAWS)
        assert set(np.unique(n)) <= set(np.arange(1.0, 4.51, 0.5))
    assert np.median(draw_bulge_sersic_n(np.full(1000, 0.4), rng)) > np.median(
        draw_bulge_sersic_n(np.full(1000, 0.05), rng)
    )


def test_elliptical_sersic_index_rises_with_mass() -> None:
    rng = np.random.default_rng(4)
    slope, zero, scatter = ELLIPTICAL_SERSIC_LOG_N
    means, expected, errors = [], [], []
    for log_mstar in (10.25, 11.0):
        n = draw_elliptical_sersic_n(np.full(N_DRAWS, log_mstar), rng)
        means.append(n.mean())
        errors.append(n.std() / np.sqrt(N_DRAWS))
        log_n = np.array([zero + slope * (log_mstar - 11.0)])
        expected.append(_expected_quantised_mean(log_n, scatter, lo=2.0, hi=6.0)[0])
    # The slope between the two masses, as drawn, against the pinned relation through the quantisation.
    measured_step, expected_step = means[1] - means[0], expected[1] - expected[0]
    assert abs(measured_step - expected_step) < 4 * np.hypot(*errors)
    assert 1.0 < measured_step < 2.0  # n ~ 3 at log M = 10.25, ~4.5 at 11


def test_compact_ellipticals_are_older_and_more_metal_rich(population) -> None:
    ell = population[(population["cls"] == "elliptical") & population["log_mstar"].between(10.0, 10.6)]
    slope_kpc, pivot, intercept = physics._HLR_KPC_RELATION["elliptical"]
    delta = np.log10(ell["disk_hlr_kpc"]) - (slope_kpc * (ell["log_mstar"] - pivot) + intercept)
    assert len(ell) > 50_000

    # Age: the median moves by -0.6 per dex of size offset (the medians stay below the clip at 1).
    compact = ell[delta.between(-0.20, -0.15)]
    extended = ell[delta.between(0.15, 0.20)]
    age_step = compact["age"].median() - extended["age"].median()
    delta_step = delta[compact.index].mean() - delta[extended.index].mean()
    expected = physics.EARLY_TYPE_AGE_PER_DEX_RE * delta_step
    error = 1.2533 * np.hypot(
        compact["age"].std() / np.sqrt(len(compact)), extended["age"].std() / np.sqrt(len(extended))
    )
    bin_width_term = abs(physics.EARLY_TYPE_AGE_PER_DEX_RE) * 0.05 / 2
    assert abs(age_step - expected) < 4 * error + bin_width_term
    assert age_step > 0.1

    # Metallicity: linear, no clip; least squares with the mass term partialled out.
    design = np.column_stack([np.ones(len(ell)), ell["log_mstar"] - 10.3, delta])
    coef, residual, *_ = np.linalg.lstsq(design, ell["metallicity"].to_numpy(), rcond=None)
    sigma = np.sqrt(residual[0] / (len(ell) - 3))
    error = sigma / (delta.std() * np.sqrt(len(ell)))
    assert abs(coef[2] - EARLY_TYPE_METALLICITY_PER_DEX_RE) < 4 * error


def test_bars_are_more_frequent_in_red_discs(population) -> None:
    discs = population[(population["cls"] == "disk") & (population["bulge_fraction"] > 0.02)]
    colours = physics.rest_colours(discs["age"], discs["metallicity"], discs["burst"])
    g_minus_r = -colours["r"]
    fractions = []
    for lo, hi in ((0.3, 0.5), (0.7, 0.9)):
        sel = (g_minus_r > lo) & (g_minus_r < hi)
        expected = bar_probability(g_minus_r[sel]).mean()
        barred = discs["has_bar"].to_numpy()[sel]
        assert abs(barred.mean() - expected) < 4 * np.sqrt(expected * (1 - expected) / sel.sum())
        fractions.append(barred.mean())
    assert fractions[1] > fractions[0] + 0.15


def test_visible_nuclei_fraction(population) -> None:
    p_low, p_high, pivot = NUCLEUS_PROBABILITY
    for sel, p in ((population["log_mstar"] < pivot, p_low), (population["log_mstar"] >= pivot, p_high)):
        has = (population.loc[sel, "nucleus_flux_fraction"] > 0).to_numpy()
        assert abs(has.mean() - p) < 4 * np.sqrt(p * (1 - p) / has.size)
    fractions = population.loc[population["nucleus_flux_fraction"] > 0, "nucleus_flux_fraction"]
    assert fractions.between(0.02, 0.5).all()
    median, dex, _, _ = NUCLEUS_FLUX_FRACTION
    tolerance = 4 * 1.2533 * dex * np.log(10) * median / np.sqrt(len(fractions))  # lognormal median's SE
    assert abs(np.median(fractions) - median) < tolerance


def test_disc_ages_follow_bulge_fraction_at_fixed_mass(population) -> None:
    discs = population[(population["cls"] == "disk") & population["log_mstar"].between(10.2, 10.4)]
    offset = discs["bulge_fraction"] - mean_disc_bulge_fraction(discs["log_mstar"].to_numpy())
    slope = np.polyfit(offset, discs["age"], 1)[0]
    assert 0.4 < slope < 0.6  # 0.55 before the clips at 0.02 and 0.98
