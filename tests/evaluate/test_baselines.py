"""The constant, the colour power law (fitted for L1~, L2~, RMSLE) and Zibetti+09 (SPEC E1, E7, E11)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from morphomass.errors import InputDataError
from morphomass.evaluate.baselines import (
    ZIBETTI09_GI_G,
    colour_from_fluxes,
    fit_constant,
    fit_powerlaw,
    predict_powerlaw,
    weighted_median,
)
from morphomass.evaluate.metrics import l1_tilde


def test_weighted_median_by_hand() -> None:
    assert weighted_median([1, 2, 3, 10], [1, 1, 1, 1]) == 2.0
    assert weighted_median([1, 2, 3, 10], [1, 1, 1, 10]) == 10.0
    assert weighted_median([5.0], [3.0]) == 5.0


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 25).flatmap(
        lambda n: st.tuples(
            arrays(np.float64, n, elements=st.floats(-50, 50)),
            arrays(np.float64, n, elements=st.floats(0.1, 10)),
        )
    )
)
def test_weighted_median_minimises_the_weighted_absolute_deviation(
    data: tuple[np.ndarray, np.ndarray],
) -> None:
    values, weights = data
    best = weighted_median(values, weights)
    cost = lambda c: float(np.sum(weights * np.abs(values - c)))  # noqa: E731
    assert cost(best) <= min(cost(v) for v in values) + 1e-9


def test_fit_constant_is_the_l1_tilde_optimum() -> None:
    rng = np.random.default_rng(0)
    ml = rng.lognormal(0.5, 0.5, 301)
    err = ml * rng.uniform(0.05, 0.3, 301)
    c = fit_constant(ml, err)
    grid = np.linspace(ml.min(), ml.max(), 2001)
    assert (
        l1_tilde(np.full_like(ml, c), ml, err)
        <= min(l1_tilde(np.full_like(ml, g), ml, err) for g in grid) + 1e-12
    )


def test_colour_from_fluxes() -> None:
    np.testing.assert_allclose(colour_from_fluxes([1.0, 2.0], [10**0.4, 2.0]), [1.0, 0.0])
    assert np.isnan(colour_from_fluxes([-1.0], [1.0])[0])
    assert np.isnan(colour_from_fluxes([1.0], [0.0])[0])


def test_zibetti09_coefficients() -> None:
    """Zibetti+09 Table B1 (g-i, g band): M/L_g = 10**(-1.197 + 1.431 (g-i))."""
    assert ZIBETTI09_GI_G == (-1.197, 1.431)
    assert predict_powerlaw([1.0], ZIBETTI09_GI_G)[0] == pytest.approx(10**0.234)


@pytest.mark.parametrize("loss", ["l1", "l2", "rmsle"])
def test_power_law_recovers_noiseless_coefficients(loss: str) -> None:
    colour = np.linspace(0.3, 1.4, 80)
    ml = 10 ** (-0.8 + 1.6 * colour)
    a, b = fit_powerlaw(colour, ml, 0.1 * ml, loss=loss)  # type: ignore[arg-type]
    assert (a, b) == pytest.approx((-0.8, 1.6), abs=1e-4)


def test_l1_power_law_resists_outliers_and_is_a_local_minimum() -> None:
    rng = np.random.default_rng(3)
    colour = rng.uniform(0.3, 1.4, 500)
    ml = 10 ** (-0.8 + 1.6 * colour + rng.normal(0, 0.03, 500))
    err = 0.1 * ml
    ml[:25] *= 3.0  # 5 % wild outliers with small errors
    a, b = fit_powerlaw(colour, ml, err, loss="l1")
    assert (a, b) == pytest.approx((-0.8, 1.6), abs=0.05)
    base = l1_tilde(predict_powerlaw(colour, (a, b)), ml, err)
    for da, db in ((1e-3, 0), (-1e-3, 0), (0, 1e-3), (0, -1e-3)):
        assert l1_tilde(predict_powerlaw(colour, (a + da, b + db)), ml, err) >= base - 1e-9
    a2, b2 = fit_powerlaw(colour, ml, err, loss="l2")
    assert abs(b2 - 1.6) > abs(b - 1.6)  # the squared loss is pulled by the outliers


def test_power_law_skips_missing_colours() -> None:
    colour = np.array([0.5, np.nan, 1.0, 1.5, np.nan])
    ml = 10 ** (0.2 + 0.5 * np.nan_to_num(colour))
    a, b = fit_powerlaw(colour, ml, ml * 0.1, loss="rmsle")
    assert (a, b) == pytest.approx((0.2, 0.5))


def test_power_law_errors() -> None:
    with pytest.raises(InputDataError, match="at least 3 galaxies with a finite colour"):
        fit_powerlaw([0.5, np.nan, 1.0], [1.0, 1.0, 1.0], [0.1, 0.1, 0.1])
    with pytest.raises(InputDataError, match="1-D arrays of one length"):
        fit_powerlaw([0.5, 1.0], [1.0], [0.1])
    with pytest.raises(InputDataError, match="must be positive"):
        fit_powerlaw([0.5, 0.7, 1.0], [1.0, -1.0, 1.0], [0.1, 0.1, 0.1])
    with pytest.raises(ValueError, match="loss must be"):
        fit_powerlaw([0.5, 0.7, 1.0], [1.0, 1.0, 1.0], [0.1, 0.1, 0.1], loss="huber")  # type: ignore[arg-type]
    with pytest.raises(InputDataError, match="non-empty 1-D arrays"):
        weighted_median([], [])
    with pytest.raises(InputDataError, match="weights finite and positive"):
        weighted_median([1.0], [0.0])
    assert math.isfinite(fit_constant([1.0, 2.0], [0.1, 0.2]))
