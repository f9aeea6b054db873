"""Prediction columns per target: names, order, and how M/L, log M* and their bounds follow each other."""

from __future__ import annotations

import math

import pytest

from morphomass.predict.predictor import _quantity_values, output_dtypes, prediction_quantities
from morphomass.targets import BUILTIN_TARGETS, ML_G

LOGMSTAR, LOGSFR = BUILTIN_TARGETS["logmstar"], BUILTIN_TARGETS["logsfr"]


def test_columns_follow_the_target() -> None:
    assert list(output_dtypes([0.68], ML_G))[:7] == [
        "objid",
        "ml_pred",
        "log_mstar_pred",
        "ml_lo_68",
        "ml_hi_68",
        "log_mstar_lo_68",
        "log_mstar_hi_68",
    ]
    assert prediction_quantities(LOGMSTAR) == ("ml", "log_mstar")  # one prediction, seen two ways
    assert list(output_dtypes([0.95], LOGSFR))[:4] == [
        "objid",
        "log_sfr_pred",
        "log_sfr_lo_95",
        "log_sfr_hi_95",
    ]
    assert list(output_dtypes([], LOGSFR))[-5:] == ["lum_g", "lum_g_source", "model", "flags", "reason"]


def test_ml_target_gives_log_mstar_through_the_luminosity() -> None:
    out = _quantity_values(ML_G, 2.0, {0.68: (math.log10(1.5), math.log10(3.0))}, log_lum=10.0)
    assert out["ml_pred"] == 2.0  # exactly the booster's value
    assert out["log_mstar_pred"] == pytest.approx(10.0 + math.log10(2.0))
    assert (out["ml_lo_68"], out["ml_hi_68"]) == pytest.approx((1.5, 3.0))
    assert (out["log_mstar_lo_68"], out["log_mstar_hi_68"]) == pytest.approx(
        (10.0 + math.log10(1.5), 10.0 + math.log10(3.0))
    )
    no_lum = _quantity_values(ML_G, 2.0, {0.68: (0.1, 0.5)}, log_lum=math.nan)
    assert (
        no_lum["ml_pred"] == 2.0
        and math.isnan(no_lum["log_mstar_pred"])
        and math.isnan(no_lum["log_mstar_lo_68"])
    )


def test_log_mstar_target_gives_ml_through_the_luminosity() -> None:
    out = _quantity_values(LOGMSTAR, 10.3, {0.95: (10.1, 10.6)}, log_lum=10.0)
    assert out["log_mstar_pred"] == 10.3
    assert (out["log_mstar_lo_95"], out["log_mstar_hi_95"]) == (10.1, 10.6)
    assert out["ml_pred"] == pytest.approx(10**0.3)
    assert (out["ml_lo_95"], out["ml_hi_95"]) == pytest.approx((10**0.1, 10**0.6))
    no_lum = _quantity_values(LOGMSTAR, 10.3, {0.95: (10.1, 10.6)}, log_lum=math.nan)
    assert no_lum["log_mstar_pred"] == 10.3 and no_lum["log_mstar_lo_95"] == 10.1  # needs no L_g
    assert math.isnan(no_lum["ml_pred"]) and math.isnan(no_lum["ml_hi_95"])


def test_other_targets_keep_their_own_additive_bounds() -> None:
    out = _quantity_values(LOGSFR, -0.4, {0.68: (-0.9, 0.1)}, log_lum=10.0)
    assert out == {"log_sfr_pred": -0.4, "log_sfr_lo_68": -0.9, "log_sfr_hi_68": 0.1}
