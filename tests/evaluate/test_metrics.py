"""M1-M5 (SPEC; Dobbels+19 Eq. 2, B.1, B.2) against hand-computed values, and their input checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from morphomass.errors import InputDataError
from morphomass.evaluate.metrics import (
    METRIC_KEYS,
    compute_metrics,
    dex_error,
    fraction_over,
    fraction_under,
    fraction_within,
    l1_tilde,
    l1_tilde_per_galaxy,
    l2_tilde,
    median_l1_tilde,
    rmsle,
)

# |pred - true| / err = [2, 0, 1]; pred / true = [0.5, 1, 2]
PRED = np.array([1.0, 2.0, 4.0])
TRUE = np.array([2.0, 2.0, 2.0])
ERR = np.array([0.5, 1.0, 2.0])
LOG2 = math.log10(2.0)


def test_l1_tilde_by_hand() -> None:
    """M1: mean of [2, 0, 1]."""
    assert l1_tilde(PRED, TRUE, ERR) == pytest.approx(1.0)
    np.testing.assert_allclose(l1_tilde_per_galaxy(PRED, TRUE, ERR), [2.0, 0.0, 1.0])


def test_l2_tilde_by_hand() -> None:
    """M2: sqrt((4 + 0 + 1) / 3)."""
    assert l2_tilde(PRED, TRUE, ERR) == pytest.approx(math.sqrt(5 / 3))


def test_rmsle_by_hand() -> None:
    """M3: dex errors [-log 2, 0, log 2]."""
    assert rmsle(PRED, TRUE) == pytest.approx(LOG2 * math.sqrt(2 / 3))
    np.testing.assert_allclose(dex_error(PRED, TRUE), [-LOG2, 0.0, LOG2])


def test_median_l1_by_hand() -> None:
    """M4: median of [2, 0, 1] (and of an even-length set: mean of the middle two)."""
    assert median_l1_tilde(PRED, TRUE, ERR) == pytest.approx(1.0)
    assert median_l1_tilde([1, 2, 4, 8], [2, 2, 2, 2], [1, 1, 1, 1]) == pytest.approx(1.5)


def test_dex_fractions_by_hand() -> None:
    """M5: 0.30 dex under, 0 within, 0.30 dex over -> one third each; a larger threshold takes them all."""
    assert fraction_within(PRED, TRUE) == pytest.approx(1 / 3)
    assert fraction_over(PRED, TRUE) == pytest.approx(1 / 3)
    assert fraction_under(PRED, TRUE) == pytest.approx(1 / 3)
    assert fraction_within(PRED, TRUE, threshold_dex=0.31) == pytest.approx(1.0)


def test_compute_metrics_matches_the_single_functions() -> None:
    m = compute_metrics(PRED, TRUE, ERR)
    assert list(m) == list(METRIC_KEYS)
    assert m["l1"] == pytest.approx(l1_tilde(PRED, TRUE, ERR))
    assert m["l2"] == pytest.approx(l2_tilde(PRED, TRUE, ERR))
    assert m["rmsle"] == pytest.approx(rmsle(PRED, TRUE))
    assert m["median_l1"] == pytest.approx(median_l1_tilde(PRED, TRUE, ERR))
    assert (m["frac_within_015dex"], m["frac_over_015dex"], m["frac_under_015dex"]) == pytest.approx(
        (1 / 3, 1 / 3, 1 / 3)
    )


positive = st.floats(0.01, 100.0)


@settings(max_examples=50, deadline=None)
@given(
    st.integers(1, 30).flatmap(
        lambda n: st.tuples(
            arrays(np.float64, n, elements=positive),
            arrays(np.float64, n, elements=positive),
            arrays(np.float64, n, elements=positive),
            st.floats(0.5, 20.0),
        )
    )
)
def test_metric_properties(data: tuple[np.ndarray, np.ndarray, np.ndarray, float]) -> None:
    """Fractions partition the set; L1~ <= L2~; scaling the errors by k divides L1~ and L2~ by k."""
    pred, true, err, k = data
    m = compute_metrics(pred, true, err)
    assert m["frac_within_015dex"] + m["frac_over_015dex"] + m["frac_under_015dex"] == pytest.approx(1.0)
    assert m["l1"] <= m["l2"] * (1 + 1e-12)
    scaled = compute_metrics(pred, true, err * k)
    assert scaled["l1"] == pytest.approx(m["l1"] / k)
    assert scaled["l2"] == pytest.approx(m["l2"] / k)
    assert scaled["rmsle"] == pytest.approx(m["rmsle"])


@pytest.mark.parametrize(
    ("pred", "true", "err", "match"),
    [
        ([1.0, 2.0], [1.0], [1.0], "true has 1 values but pred has 2"),
        ([[1.0]], [1.0], [1.0], "pred must be a 1-D array"),
        ([np.nan], [1.0], [1.0], "pred holds 1 non-finite"),
        ([1.0], [1.0], [0.0], "err must be positive"),
        ([], [], [], "empty set"),
    ],
)
def test_bad_inputs_are_named(pred: list, true: list, err: list, match: str) -> None:
    with pytest.raises(InputDataError, match=match):
        l1_tilde(pred, true, err)


def test_log_metrics_need_positive_predictions() -> None:
    with pytest.raises(InputDataError, match="pred must be positive for a logarithmic metric"):
        rmsle([0.0, 1.0], [1.0, 1.0])
    with pytest.raises(InputDataError, match="true M/L must be positive for a logarithmic metric"):
        rmsle([1.0], [-1.0])


def test_a_target_in_dex_is_compared_by_differences() -> None:
    pred, true, err = np.array([-1.2, 0.5, 1.0]), np.array([-1.0, 0.45, 1.3]), np.array([0.1, 0.2, 0.3])
    np.testing.assert_allclose(dex_error(pred, true, in_dex=True), pred - true)
    m = compute_metrics(pred, true, err, in_dex=True)
    assert m["l1"] == pytest.approx(np.mean(np.abs(pred - true) / err))  # L1~ needs no positive values
    assert m["rmsle"] == pytest.approx(np.sqrt(np.mean((pred - true) ** 2)))
    assert m["frac_within_015dex"] == pytest.approx(1 / 3)  # only 0.05
    assert m["frac_under_015dex"] == pytest.approx(2 / 3)  # -0.2 and -0.3
    assert m["frac_over_015dex"] == pytest.approx(0.0)
