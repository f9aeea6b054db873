"""Photometric features (SPEC F1-F3) against values computed by hand on tiny images."""

from __future__ import annotations

import math

import numpy as np
import pytest

from morphomass.errors import InputDataError
from morphomass.preprocess.features import (
    FEATURE_COLUMNS,
    compute_photometric_features,
)


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
