"""Automatic log scaling (SPEC I2-I3).

Sigma clipping, the scaling value a, Eq. 1, edge cases, real SDSS images.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.stats import sigma_clipped_stats
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from morphomass.config import load_config
from morphomass.errors import GalaxyImageError, InputDataError
from morphomass.preprocess.galaxy import preprocess_galaxy
from morphomass.preprocess.scaling import (
    DEFAULT_A_MAX,
    SMALLEST_A,
    compute_noise_level,
    log_scale,
    rescale_linear,
    sigma_clipped_mean_std,
    solve_scaling_a,
)

CONFIG = load_config("tiny").preprocess


class TestSigmaClip:
    """The histogram sigma clipping gives astropy's numbers."""

    def test_real_images_match_astropy(self, real_fits: Path) -> None:
        """Test that real images match astropy."""
        data = fits.getdata(real_fits).astype(np.float32)
        mean, _, std = sigma_clipped_stats(data, sigma=3.0, maxiters=5)
        got_mean, got_std = sigma_clipped_mean_std(data, sigma=3.0, maxiters=5)
        assert got_mean == pytest.approx(float(mean), rel=1e-6, abs=1e-9)
        assert got_std == pytest.approx(float(std), rel=1e-6)

    @settings(max_examples=60, deadline=None)
    @given(
        values=arrays(
            np.float64,
            st.integers(1, 400),
            elements=st.one_of(
                st.floats(-1e3, 1e3, allow_nan=False, width=32),
                st.sampled_from([0.0, 1.0, 5.0]),  # ties, as in quantised or saturated images
            ),
        ),
        sigma=st.floats(1.0, 4.0),
        maxiters=st.integers(1, 10),
    )
    def test_any_array_matches_astropy(self, values: np.ndarray, sigma: float, maxiters: int) -> None:
        """Test that any array matches astropy."""
        mean, _, std = sigma_clipped_stats(values, sigma=sigma, maxiters=maxiters)
        got_mean, got_std = sigma_clipped_mean_std(values, sigma=sigma, maxiters=maxiters)
        scale = max(1.0, float(np.abs(values).max()))
        assert got_mean == pytest.approx(float(mean), abs=1e-9 * scale)
        assert got_std == pytest.approx(float(std), abs=1e-9 * scale)

    def test_clips_outliers(self) -> None:
        """Test that clips outliers."""
        rng = np.random.default_rng(0)
        values = np.concatenate([rng.normal(2.0, 0.5, 5000), np.full(200, 1e4)])
        mean, std = sigma_clipped_mean_std(values)
        assert mean == pytest.approx(2.0, abs=0.03)
        assert std == pytest.approx(0.5, rel=0.05)

    def test_rejects_empty_and_non_finite(self) -> None:
        """Test that rejects empty and non finite."""
        with pytest.raises(InputDataError, match="values is empty"):
            sigma_clipped_mean_std(np.array([]))
        with pytest.raises(InputDataError, match="1 non-finite"):
            sigma_clipped_mean_std(np.array([1.0, np.nan, 2.0]))


class TestScalingValue:
    """a solves log(1 + a n) / log(1 + a) = target, with explicit edge cases."""

    @settings(max_examples=100, deadline=None)
    @given(noise_level=st.floats(1e-7, 0.1999), target=st.floats(0.05, 0.95))
    def test_solves_the_equation(self, noise_level: float, target: float) -> None:
        """Test that solves the equation."""
        a = solve_scaling_a(noise_level, target=target)
        if noise_level >= target:
            assert a == 0.0
            return
        if a == 0.0:  # n is below the target by a rounding step: the solution lies below the smallest a
            assert math.log1p(SMALLEST_A * noise_level) / math.log1p(SMALLEST_A) >= target
            return
        assert math.isfinite(a) and a > 0
        level = math.log1p(a * noise_level) / math.log1p(a)
        if a == DEFAULT_A_MAX:  # the solution lies beyond the cap: the cap gets as close as allowed
            assert level <= target
        else:
            assert level == pytest.approx(target, abs=1e-9)

    def test_noisier_images_get_smaller_a(self) -> None:
        """Test that noisier images get smaller a."""
        a = [solve_scaling_a(n) for n in (0.001, 0.01, 0.05, 0.1, 0.19)]
        assert all(x > y for x, y in zip(a, a[1:], strict=False))

    def test_paper_median(self) -> None:
        """The paper's median a = 78 corresponds to a noise level of about 0.0175 of the image range."""
        a = solve_scaling_a(0.0175)
        assert 60 < a < 100

    def test_noise_at_or_above_target_is_linear(self) -> None:
        """Test that noise at or above target is linear."""
        assert solve_scaling_a(0.2) == 0.0
        assert solve_scaling_a(0.7) == 0.0

    def test_zero_noise_gets_the_cap(self) -> None:
        """Test that zero noise gets the cap."""
        assert solve_scaling_a(0.0) == DEFAULT_A_MAX
        assert solve_scaling_a(-0.01, a_max=500.0) == 500.0

    def test_rejects_bad_input(self) -> None:
        """Test that rejects bad input."""
        with pytest.raises(InputDataError, match="noise_level must be finite"):
            solve_scaling_a(float("nan"))
        with pytest.raises(InputDataError, match=r"target must be in \(0, 1\)"):
            solve_scaling_a(0.01, target=1.0)


class TestLogScale:
    """Eq. 1 and the linear rescale."""

    def test_endpoints_and_range(self) -> None:
        """Test that endpoints and range."""
        image = np.linspace(0.0, 1.0, 101, dtype=np.float32).reshape(1, -1)
        scaled = log_scale(image, 78.0)
        assert scaled[0, 0] == 0.0
        assert scaled[0, -1] == pytest.approx(1.0, abs=1e-6)
        assert np.all(np.diff(scaled[0]) > 0)
        assert scaled[0, 10] == pytest.approx(math.log1p(7.8) / math.log1p(78.0), rel=1e-6)

    def test_zero_a_is_the_identity(self) -> None:
        """Test that zero a is the identity."""
        image = np.random.default_rng(1).uniform(0, 1, (5, 5)).astype(np.float32)
        np.testing.assert_array_equal(log_scale(image, 0.0), image)

    def test_rejects_negative_a(self) -> None:
        """Test that rejects negative a."""
        with pytest.raises(InputDataError, match="a must be finite and >= 0"):
            log_scale(np.zeros((2, 2)), -1.0)

    def test_rescale_linear(self) -> None:
        """Test that rescale linear."""
        image = np.array([[2.0, 4.0], [6.0, 10.0]])
        scaled, lo, hi = rescale_linear(image)
        np.testing.assert_allclose(scaled, [[0.0, 0.25], [0.5, 1.0]])
        assert (lo, hi) == (2.0, 10.0)

    def test_rescale_constant_image_is_zeros(self) -> None:
        """Test that rescale constant image is zeros."""
        scaled, lo, hi = rescale_linear(np.full((3, 3), 7.0))
        assert lo == hi == 7.0
        np.testing.assert_array_equal(scaled, 0.0)


def test_real_sdss_noise_level_after_scaling(real_fits: Path) -> None:
    """On real SDSS images, a is finite and the scaled noise level is 0.2 within 1e-3.

    The noise level is measured independently.
    """
    data = fits.getdata(real_fits).astype(np.float32)
    n = data.shape[0]
    products = preprocess_galaxy(
        data,
        center_xy=((n - 1) / 2, (n - 1) / 2),
        stars_xy=np.empty((0, 2)),
        pixel_scale_arcsec=0.396,
        sizes=(69,),
        config=CONFIG,
    )
    a = products.scaling_a
    assert math.isfinite(a) and a > 0
    image01 = (data - data.min()) / (data.max() - data.min())
    mean, _, std = sigma_clipped_stats(image01, sigma=3.0, maxiters=5)
    noise = float(mean + 2.0 * std)
    assert math.log1p(a * noise) / math.log1p(a) == pytest.approx(0.2, abs=1e-3)
    assert np.isfinite(products.scaled).all() and products.scaled.min() >= 0 and products.scaled.max() <= 1
    assert compute_noise_level(image01) == pytest.approx(noise, rel=1e-5)


class TestEdgeCases:
    """Constant images, NaN/inf pixels and all-NaN images never give NaN."""

    def _run(self, image: np.ndarray):
        n = image.shape[0]
        return preprocess_galaxy(
            image,
            center_xy=(n / 2, n / 2),
            stars_xy=np.empty((0, 2)),
            pixel_scale_arcsec=0.4,
            sizes=(8, 40),
            config=CONFIG,
        )

    def test_constant_image(self) -> None:
        """Test that constant image."""
        products = self._run(np.full((20, 20), 3.5, dtype=np.float32))
        assert products.constant_image and products.scaling_a == 0.0 and products.noise_level == 0.0
        for image in (products.scaled, *products.resized.values()):
            assert np.isfinite(image).all() and not image.any()

    def test_nan_and_inf_pixels_are_masked_and_counted(self) -> None:
        """Test that nan and inf pixels are masked and counted."""
        rng = np.random.default_rng(3)
        image = rng.normal(0.0, 1.0, (30, 30)).astype(np.float32)
        image[10:13, 10:13] += 40.0
        image[0, :4] = np.nan
        image[5, 5] = np.inf
        image[6, 6] = -np.inf
        products = self._run(image)
        assert products.n_bad_pixels == 6
        assert np.isfinite(products.star_subtracted).all()
        assert all(np.isfinite(im).all() for im in (products.scaled, *products.resized.values()))
        assert math.isfinite(products.scaling_a) and products.scaling_a > 0
        filled = products.star_subtracted[0, :4]
        assert np.all(np.abs(filled) < 0.5)  # the background level, not the image's extremes

    def test_all_nan_image_fails(self) -> None:
        """Test that all nan image fails."""
        with pytest.raises(GalaxyImageError, match="all 100 pixels") as info:
            self._run(np.full((10, 10), np.nan, dtype=np.float32))
        assert info.value.kind == "all_nan"

    def test_noiseless_image_reaches_the_cap_without_nan(self) -> None:
        """Test that noiseless image reaches the cap without nan."""
        image = np.zeros((20, 20), dtype=np.float32)
        image[8:12, 8:12] = 1.0
        products = self._run(image)
        assert products.scaling_a == DEFAULT_A_MAX
        assert np.isfinite(products.scaled).all()
