"""Resizing to the networks' sizes (SPEC I4): area averaging when shrinking, bicubic when enlarging."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from factories.scenes import galaxy
from morphomass.errors import InputDataError
from morphomass.preprocess.resize import crop_square, resize_image


@pytest.mark.parametrize("size", [197, 128, 69, 32])
def test_shrinking_conserves_mean_surface_brightness(size: int) -> None:
    rng = np.random.default_rng(size)
    image = galaxy((256, 256), flux=5e4, scale_pix=20.0) + rng.normal(0.0, 0.05, (256, 256))
    out = resize_image(image, size)
    assert out.shape == (size, size) and out.dtype == np.float32
    assert out.mean() == pytest.approx(image.mean(), rel=0.01)
    # area averaging, not point sampling: the noise of each output pixel averages (256/size)^2 input pixels
    corner = out[: size // 6, : size // 6]
    assert corner.std() < 0.05 * (size / 256) * 1.5


def test_shrinking_real_image(real_fits: Path) -> None:
    data = fits.getdata(real_fits).astype(np.float32)
    scaled = (data - data.min()) / (data.max() - data.min())
    for size in (197, 128, 69):
        out = resize_image(scaled, size)
        assert out.mean() == pytest.approx(scaled.mean(), rel=0.01)
        assert 0.0 <= out.min() and out.max() <= 1.0


def test_enlarging_is_bicubic_and_stays_in_range() -> None:
    import cv2

    rng = np.random.default_rng(0)
    image = rng.uniform(0.0, 1.0, (40, 40)).astype(np.float32)
    out = resize_image(image, 128)
    expected = np.clip(cv2.resize(image, (128, 128), interpolation=cv2.INTER_CUBIC), image.min(), image.max())
    np.testing.assert_array_equal(out, expected)
    assert out.min() >= image.min() and out.max() <= image.max()
    assert out.mean() == pytest.approx(image.mean(), rel=0.02)


@pytest.mark.parametrize("size", [31, 97])
def test_same_field_of_view(size: int) -> None:
    """A blob at a fraction of the field stays at that fraction, shrinking or enlarging."""
    yy, xx = np.mgrid[:64, :64]
    blob = np.exp(-((xx - 47.5) ** 2 + (yy - 15.5) ** 2) / 8.0).astype(np.float32)
    out = resize_image(blob, size)
    oy, ox = np.mgrid[:size, :size]
    x = (out * ox).sum() / out.sum()
    y = (out * oy).sum() / out.sum()
    scale = size / 64
    assert x == pytest.approx((47.5 + 0.5) * scale - 0.5, abs=0.3)
    assert y == pytest.approx((15.5 + 0.5) * scale - 0.5, abs=0.3)


def test_same_size_is_a_copy() -> None:
    image = np.arange(16, dtype=np.float32).reshape(4, 4)
    out = resize_image(image, 4)
    np.testing.assert_array_equal(out, image)
    assert out is not image


def test_crop_square_keeps_the_centre() -> None:
    image = np.arange(5 * 9).reshape(5, 9)
    square = crop_square(image)
    assert square.shape == (5, 5)
    np.testing.assert_array_equal(square, image[:, 2:7])
    assert crop_square(np.ones((4, 4))).shape == (4, 4)


@pytest.mark.parametrize(
    ("image", "size", "match"),
    [
        (np.ones((4, 5)), 2, "square 2-D array"),
        (np.ones(4), 2, "square 2-D array"),
        (np.ones((4, 4)), 0, "size must be >= 1"),
    ],
)
def test_rejects_bad_input(image: np.ndarray, size: int, match: str) -> None:
    with pytest.raises(InputDataError, match=match):
        resize_image(image, size)
