"""Star subtraction with catalogue priors (SPEC D5) on images the tests build, with known stars and galaxy."""

from __future__ import annotations

import numpy as np
import pytest

from factories.scenes import galaxy, moffat
from morphomass.errors import InputDataError
from morphomass.preprocess.stars import subtract_stars

SHAPE = (101, 101)
CENTER = (50.0, 50.0)
NOISE = 1.0
FWHM = 3.5
#: (x, y, flux): on the sky, on the galaxy's outskirts, faint (peak ~30 sigma), near the image edge
STARS = [(20.3, 80.6, 3000.0), (66.8, 57.2, 1500.0), (85.4, 15.1, 600.0), (2.2, 40.7, 2000.0)]
OPTIONS = {
    "nucleus_exclusion_pix": 7.5,
    "max_fwhm_pix": 8.0,
    "max_radius_pix": 30.0,
    "search_radius_pix": 3.0,
}


@pytest.fixture(name="scene")
def fixture_scene() -> dict[str, np.ndarray]:
    """Return a galaxy at the centre, four catalogued stars and Gaussian noise; the parts kept apart."""
    rng = np.random.default_rng(11)
    gal = galaxy(SHAPE, flux=12000.0, scale_pix=8.0)
    stars = sum(moffat(SHAPE, x, y, flux=f, fwhm=FWHM) for x, y, f in STARS)
    noise = rng.normal(0.0, NOISE, SHAPE)
    return {"galaxy": gal, "stars": stars, "noise": noise, "image": (gal + stars + noise).astype(np.float32)}


def _aperture(x: float, y: float, radius: float) -> np.ndarray:
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
    return np.hypot(xx - x, yy - y) <= radius


def test_catalogued_stars_drop_to_the_background(scene: dict[str, np.ndarray]) -> None:
    priors = np.array([(x + 0.8, y - 0.6) for x, y, _ in STARS])  # catalogue positions off by ~1 px
    result = subtract_stars(scene["image"], priors, center_xy=CENTER, rng=np.random.default_rng(0), **OPTIONS)
    assert result.positions_xy.shape == (len(STARS), 2) and result.n_rejected == 0
    np.testing.assert_allclose(result.positions_xy, [(x, y) for x, y, _ in STARS], atol=0.3)
    for x, y, flux in STARS:
        aperture = _aperture(x, y, 2.0 * FWHM)
        residual = (result.image - scene["galaxy"])[aperture]
        # the star's flux is gone: what is left is the background, within the noise of the aperture (and of
        # the background fit); a star left in place would leave its whole flux and a peak of 30-160 sigma
        assert abs(residual.sum()) < 4.0 * NOISE * np.sqrt(aperture.sum()) + 0.05 * flux
        assert residual.max() < 6.0 * NOISE
        assert result.mask[aperture].all()


def test_replaced_pixels_follow_the_galaxy_under_the_star(scene: dict[str, np.ndarray]) -> None:
    """Without added noise the fill is the smooth local background: the galaxy's light, not the sky's."""
    x, y, _ = STARS[1]
    result = subtract_stars(scene["image"], np.array([[x, y]]), center_xy=CENTER, **OPTIONS)
    core = _aperture(x, y, 3.0)
    fill, truth = result.image[core], scene["galaxy"][core]
    assert truth.mean() > 3.0 * NOISE  # the test is meaningful: the galaxy is well above the sky there
    assert abs(fill.mean() - truth.mean()) < 0.2 * truth.mean()


def test_galaxy_centre_is_never_subtracted(
    scene: dict[str, np.ndarray], caplog: pytest.LogCaptureFixture
) -> None:
    priors = np.array([[CENTER[0] + 1.5, CENTER[1] - 2.0], [STARS[0][0], STARS[0][1]]])
    with caplog.at_level("INFO", logger="morphomass.preprocess.stars"):
        result = subtract_stars(scene["image"], priors, center_xy=CENTER, **OPTIONS)
    assert result.n_nucleus == 1 and result.positions_xy.shape == (1, 2)
    centre = _aperture(*CENTER, 15.0)
    assert not result.mask[centre].any()
    np.testing.assert_array_equal(result.image[centre], scene["image"][centre])
    assert "nucleus" in caplog.text


def test_priors_without_a_point_source_are_rejected(scene: dict[str, np.ndarray]) -> None:
    """Empty sky, the galaxy's flank and an extended blob are left untouched."""
    image = scene["image"] + moffat(SHAPE, 22.0, 22.0, flux=8000.0, fwhm=16.0).astype(np.float32)
    priors = np.array([[35.0, 88.0], [CENTER[0] - 13.0, CENTER[1] + 2.0], [22.0, 22.0]])
    result = subtract_stars(image, priors, center_xy=CENTER, **OPTIONS)
    assert result.n_rejected == 3 and result.positions_xy.shape == (0, 2)
    assert not result.mask.any()
    np.testing.assert_array_equal(result.image, image)


def test_only_masked_pixels_change_and_input_is_kept(scene: dict[str, np.ndarray]) -> None:
    image = scene["image"]
    before = image.copy()
    priors = np.array([(x, y) for x, y, _ in STARS] + [(500.0, 500.0)])  # one prior off the image
    result = subtract_stars(image, priors, center_xy=CENTER, rng=np.random.default_rng(1), **OPTIONS)
    np.testing.assert_array_equal(image, before)
    np.testing.assert_array_equal(result.image[~result.mask], image[~result.mask])
    assert (result.image[result.mask] != image[result.mask]).mean() > 0.99
    assert result.radii_pix.shape == (len(STARS),) and np.all(result.radii_pix >= 2.0)


def test_added_noise_matches_the_sky(scene: dict[str, np.ndarray]) -> None:
    x, y, _ = STARS[0]
    prior = np.array([[x, y]])
    smooth = subtract_stars(scene["image"], prior, center_xy=CENTER, **OPTIONS)
    noisy = subtract_stars(scene["image"], prior, center_xy=CENTER, rng=np.random.default_rng(5), **OPTIONS)
    again = subtract_stars(scene["image"], prior, center_xy=CENTER, rng=np.random.default_rng(5), **OPTIONS)
    np.testing.assert_array_equal(noisy.image, again.image)
    disc = smooth.mask
    assert smooth.image[disc].std() < 0.3 * NOISE
    assert noisy.image[disc].std() == pytest.approx(NOISE, rel=0.25)


def test_no_priors_returns_the_image() -> None:
    image = np.ones((10, 10), dtype=np.float32)
    result = subtract_stars(image, np.empty((0, 2)), center_xy=(5, 5))
    np.testing.assert_array_equal(result.image, image)
    assert not result.mask.any() and result.n_rejected == result.n_nucleus == 0


@pytest.mark.parametrize(
    ("image", "stars", "options", "match"),
    [
        (np.ones(5), np.empty((0, 2)), {}, "non-empty 2-D array"),
        (np.full((5, 5), np.nan), np.empty((0, 2)), {}, "non-finite pixels"),
        (np.ones((5, 5)), np.ones((2, 3)), {}, r"stars_xy must have shape \(n, 2\)"),
        (np.ones((5, 5)), np.empty((0, 2)), {"search_radius_pix": 0.0}, "search_radius_pix must be > 0"),
        (
            np.ones((5, 5)),
            np.empty((0, 2)),
            {"nucleus_exclusion_pix": -1.0},
            "nucleus_exclusion_pix must be >= 0",
        ),
        (np.ones((5, 5)), np.empty((0, 2)), {"annulus_width_pix": 1.0}, "annulus_width_pix must be >= 2"),
    ],
)
def test_rejects_bad_input(image: np.ndarray, stars: np.ndarray, options: dict, match: str) -> None:
    with pytest.raises(InputDataError, match=match):
        subtract_stars(image, stars, center_xy=(2, 2), **options)
