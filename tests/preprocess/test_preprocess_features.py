"""Photometric features (SPEC F1-F3) against values computed by hand on tiny images."""

from __future__ import annotations

import math

import numpy as np
import pytest

from morphomass.errors import InputDataError
from morphomass.preprocess.features import (
    FEATURE_COLUMNS,
    compute_photometric_features,
    luminosity_per_nanomaggy,
)


def test_luminosity_of_one_nanomaggy() -> None:
    """1 nmgy is AB 22.5; at 10 pc (1e-5 Mpc) the absolute magnitude is 22.5, i.e. L = 10**(-0.4 (22.5 - 5.11))."""
    assert luminosity_per_nanomaggy(1e-5, m_sun_ab=5.11) == pytest.approx(
        10 ** (-0.4 * (22.5 - 5.11)), rel=1e-12
    )
    # a galaxy of magnitude 15 at 100 Mpc has M = 15 - 35 = -20: L = 10**(0.4 * 25.11) = 1.107e10 L_sun
    flux_nmgy = 10 ** ((22.5 - 15.0) / 2.5)
    assert flux_nmgy * luminosity_per_nanomaggy(100.0, m_sun_ab=5.11) == pytest.approx(1.1066e10, rel=1e-4)
    # flux x 4 pi D^2: doubling the distance quadruples the luminosity
    assert luminosity_per_nanomaggy(200.0, m_sun_ab=5.11) == pytest.approx(
        4 * luminosity_per_nanomaggy(100.0, m_sun_ab=5.11), rel=1e-12
    )


@pytest.mark.parametrize("dist", [0.0, -3.0, float("nan"), float("inf")])
def test_luminosity_rejects_bad_distance(dist: float) -> None:
    with pytest.raises(InputDataError, match="dist_mpc must be finite and > 0"):
        luminosity_per_nanomaggy(dist, m_sun_ab=5.11)


def test_features_by_hand() -> None:
    # a 6x6 image: zeros except a 3x3 block of 1..9 with its 5 (the centre pixel) at (x=3, y=2), and one -2
    image = np.zeros((6, 6), dtype=np.float32)
    image[1:4, 2:5] = np.arange(1, 10).reshape(3, 3)
    image[5, 0] = -2.0
    scaled = np.full((6, 6), 0.25, dtype=np.float32)
    scaled[2, 3] = 1.0
    features = compute_photometric_features(
        image, scaled, center_xy=(3.2, 1.9), lum_per_nmgy=10.0, scaling_a=78.0, redshift=0.05, pixel_kpc=0.4
    )
    assert list(features) == list(FEATURE_COLUMNS)
    # sum = 45 - 2 = 43 nmgy; 36 pixels; values {1..9, -2, 26 zeros}
    mean = 43 / 36
    var = (sum(v * v for v in range(1, 10)) + 4) / 36 - mean**2  # (285 + 4) / 36 - mean^2
    expected = {
        "lum_sum": 430.0,
        "lum_mean": 10 * mean,
        "lum_max": 90.0,
        "lum_min": -20.0,
        "lum_std": 10 * math.sqrt(var),
        "lum_center": 50.0,  # pixel (y=2, x=3) holds 5
        # 5x5 box rows 0..4, cols 1..5: holds the whole 3x3 block (45) and 16 zeros -> 45 / 25
        "lum_center5x5": 10 * 45 / 25,
        "image_size_pix": 6.0,
        "scaling_a": 78.0,
        "img_sum": 35 * 0.25 + 1.0,
        "img_mean": (35 * 0.25 + 1.0) / 36,
        "img_std": math.sqrt((35 * 0.0625 + 1.0) / 36 - ((35 * 0.25 + 1.0) / 36) ** 2),
        "img_center": 1.0,
        "img_center5x5": (24 * 0.25 + 1.0) / 25,
        "redshift": 0.05,
        "pixel_kpc": 0.4,
    }
    for name, value in expected.items():
        assert features[name] == pytest.approx(value, rel=1e-6), name


def test_centre_box_is_clipped_at_the_edge() -> None:
    image = np.arange(16, dtype=np.float32).reshape(4, 4)
    features = compute_photometric_features(
        image, image / 15, center_xy=(0.0, 0.0), lum_per_nmgy=1.0, scaling_a=1.0, redshift=0.1, pixel_kpc=1.0
    )
    assert features["lum_center"] == 0.0
    assert features["lum_center5x5"] == pytest.approx(np.mean([0, 1, 2, 4, 5, 6, 8, 9, 10]))


def test_rejects_mismatched_images() -> None:
    with pytest.raises(InputDataError, match="same shape"):
        compute_photometric_features(
            np.zeros((4, 4)),
            np.zeros((5, 5)),
            center_xy=(2, 2),
            lum_per_nmgy=1.0,
            scaling_a=1.0,
            redshift=0.1,
            pixel_kpc=1.0,
        )
