"""Neighbouring galaxies and point nuclei of the mock: their statistics, their rendering, their catalogues."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from factories.specs import make_spec
from morphomass.config import load_config
from morphomass.errors import InputDataError
from morphomass.mock import survey as survey_module
from morphomass.mock.neighbours import NEIGHBOUR_BANDS, draw_neighbour_r_mag, draw_neighbours
from morphomass.mock.render import GalaxyImageSpec, NeighbourSpec, render_galaxy
from morphomass.mock.stage import galaxy_specs
from morphomass.mock.survey import NEIGHBOUR_COLUMNS, make_survey

N_IMAGES = 200_000
#: The pinned relation, written out independently of the module: N(<r) = 2050 x 10^(0.42 (r - 21)) per deg^2.
DENSITY_16_21_PER_DEG2 = 2050.0 * (1.0 - 10 ** (0.42 * (16.0 - 21.0)))


@pytest.fixture(name="drawn", scope="module")
def fixture_drawn():
    """Neighbours of 200 000 images of 20-150" (the mock's field sizes), and the sizes."""
    fov = np.random.default_rng(1).uniform(20.0, 150.0, N_IMAGES)
    return fov, draw_neighbours(fov, np.random.default_rng(2))


def test_number_per_image_is_poisson_with_the_sdss_density(drawn) -> None:
    fov, neighbours = drawn
    mean = DENSITY_16_21_PER_DEG2 * (fov / 3600.0) ** 2
    counts = neighbours.counts
    assert counts.shape == (N_IMAGES,) and counts.sum() == neighbours.image_index.size
    # mean number per image: variance of a sum of Poissons is the sum of their means
    assert abs(counts.mean() - mean.mean()) < 4.0 * np.sqrt(mean.sum()) / N_IMAGES
    # fraction of images with at least one neighbour: a sum of Bernoullis with p = 1 - exp(-mean)
    p = 1.0 - np.exp(-mean)
    assert abs((counts > 0).mean() - p.mean()) < 4.0 * np.sqrt((p * (1 - p)).sum()) / N_IMAGES


def test_positions_cover_the_image(drawn) -> None:
    fov, neighbours = drawn
    half = 0.5 * fov[neighbours.image_index]
    for offset in (neighbours.dx_arcsec, neighbours.dy_arcsec):
        assert np.all(np.abs(offset) <= half)
        assert np.mean(offset / half) == pytest.approx(0.0, abs=0.01)
        assert np.mean(np.abs(offset / half)) == pytest.approx(0.5, abs=0.01)  # uniform, not clustered
    k = int(np.argmax(neighbours.counts))
    assert np.all(neighbours.image_index[neighbours.rows_of(k)] == k)


def test_magnitudes_follow_the_counts_slope(drawn) -> None:
    _, neighbours = drawn
    r = neighbours.mag[:, NEIGHBOUR_BANDS.index("r")]
    assert r.min() >= 16.0 and r.max() <= 21.0
    counts, edges = np.histogram(r, bins=np.arange(16.0, 21.01, 0.5))
    centres = 0.5 * (edges[1:] + edges[:-1])
    # weighted least squares of log10 counts on magnitude; var(log10 N) = 1 / (N ln(10)^2)
    weights = counts * np.log(10) ** 2
    design = np.stack([np.ones_like(centres), centres], axis=1)
    cov = np.linalg.inv(design.T @ (weights[:, None] * design))
    slope = (cov @ design.T @ (weights * np.log10(counts)))[1]
    assert abs(slope - 0.42) < 4.0 * np.sqrt(cov[1, 1])


def test_colours_sizes_and_shapes(drawn) -> None:
    _, neighbours = drawn
    mag = {b: neighbours.mag[:, k] for k, b in enumerate(NEIGHBOUR_BANDS)}
    g_r = mag["g"] - mag["r"]
    assert g_r.min() >= 0.2 - 1e-9 and g_r.max() <= 1.1 + 1e-9
    assert np.median(g_r) == pytest.approx(0.65, abs=0.01)
    np.testing.assert_allclose(mag["u"] - mag["g"], 1.6 * g_r + 0.3)
    np.testing.assert_allclose(mag["r"] - mag["i"], 0.45 * g_r)
    np.testing.assert_allclose(mag["i"] - mag["z"], 0.3 * g_r)
    r = mag["r"]
    for m, hlr in ((18.0, 1.2 * 10**0.1), (21.0, 1.2 * 10**-0.2)):
        near = np.abs(r - m) < 0.1
        assert np.median(neighbours.hlr_arcsec[near]) == pytest.approx(hlr, rel=0.05)
    assert set(np.unique(neighbours.sersic_n)) == {1.0, 4.0}
    assert np.mean(neighbours.sersic_n == 1.0) == pytest.approx(0.7, abs=0.01)
    assert neighbours.axis_ratio.min() >= 0.3 and neighbours.axis_ratio.max() <= 1.0
    assert neighbours.pa_deg.min() >= 0.0 and neighbours.pa_deg.max() <= 180.0


def test_draws_are_reproducible_and_empty_fields_have_none() -> None:
    a = draw_neighbours(np.array([60.0, 0.0, 90.0]), np.random.default_rng(3))
    b = draw_neighbours(np.array([60.0, 0.0, 90.0]), np.random.default_rng(3))
    np.testing.assert_array_equal(a.mag, b.mag)
    assert a.counts[1] == 0
    assert draw_neighbour_r_mag(0, np.random.default_rng(0)).shape == (0,)


@pytest.mark.parametrize("fov", [np.array([[10.0]]), np.array([-1.0]), np.array([np.nan])])
def test_rejects_bad_field_sizes(fov: np.ndarray) -> None:
    with pytest.raises(InputDataError, match="fov_arcsec must be a 1-D array"):
        draw_neighbours(fov, np.random.default_rng(0))


def _spec(**changes) -> GalaxyImageSpec:
    """Return a small elliptical galaxy at the centre of a 121-pixel g+r image, no stars, no neighbours."""
    return make_spec(bands=("g", "r"), flux_nmgy=(300.0, 500.0), **changes)


def test_nucleus_keeps_the_total_flux_and_brightens_the_centre() -> None:
    plain = render_galaxy(_spec())
    nucleated = render_galaxy(_spec(nucleus_flux_fraction=0.3))
    centre = 60
    for k, band in enumerate(("g", "r")):
        flux = _spec().flux_nmgy[k]
        # same seed, same noise draws: the sums differ by the light moved, not by noise
        assert nucleated[band].sum() == pytest.approx(plain[band].sum(), rel=0.01)
        assert nucleated[band].sum() == pytest.approx(flux, rel=0.05)
        core = np.s_[centre - 1 : centre + 2, centre - 1 : centre + 2]
        assert nucleated[band][core].sum() > 1.5 * plain[band][core].sum()
        assert nucleated[band][centre, centre] > plain[band][centre, centre]


@pytest.mark.parametrize("sersic_n", [1.0, 4.0])
def test_rendered_neighbour_adds_its_flux(sersic_n: float) -> None:
    neighbour = NeighbourSpec(
        x_pix=85.3,
        y_pix=34.6,
        hlr_arcsec=1.3,
        sersic_n=sersic_n,
        axis_ratio=0.5,
        pa_deg=70.0,
        flux_nmgy=(40.0, 60.0),
    )
    plain = render_galaxy(_spec())
    crowded = render_galaxy(_spec(neighbours=(neighbour,)))
    yy, xx = np.mgrid[:121, :121]
    for k, band in enumerate(("g", "r")):
        added = crowded[band] - plain[band]
        assert added.sum() == pytest.approx(neighbour.flux_nmgy[k], rel=0.02)
        # the light is where the neighbour is: its centre pixel is the brightest of the difference
        peak = np.unravel_index(np.argmax(added), added.shape)
        assert np.hypot(peak[1] - 85.3, peak[0] - 34.6) < 1.5
        near = np.hypot(xx - 85.3, yy - 34.6) < 8.0 * 1.3 / 0.396 + 15
        assert added[near].sum() == pytest.approx(added.sum(), rel=0.01)


def test_neighbour_off_the_image_is_skipped() -> None:
    far = NeighbourSpec(
        x_pix=-200.0,
        y_pix=60.0,
        hlr_arcsec=1.0,
        sersic_n=1.0,
        axis_ratio=1.0,
        pa_deg=0.0,
        flux_nmgy=(50.0, 50.0),
    )
    np.testing.assert_array_equal(render_galaxy(_spec(neighbours=(far,)))["g"], render_galaxy(_spec())["g"])


def test_survey_neighbours_are_rendered_but_catalogued_nowhere(monkeypatch: pytest.MonkeyPatch) -> None:
    mock = load_config("tiny").mock.model_copy(update={"n_galaxies": 120})
    survey = make_survey(mock, np.random.default_rng(mock.seed))
    monkeypatch.setattr(survey_module, "_neighbours", lambda gal, config, rng: {})
    without = make_survey(mock, np.random.default_rng(mock.seed))
    # drawn last from a child generator: every catalogue is the same with or without them, stars.csv included
    for name in ("gswlc", "hyperleda", "gz2", "photometry", "stars"):
        pd.testing.assert_frame_equal(getattr(survey, name), getattr(without, name))
    pd.testing.assert_frame_equal(
        survey.truth.drop(columns="n_neighbours"), without.truth.drop(columns="n_neighbours")
    )
    truth = survey.truth
    with_image = truth[truth["has_image"]]
    assert (truth.loc[~truth["has_image"], "n_neighbours"] == 0).all()
    assert set(survey.neighbours) == set(with_image["objid"].astype(int))
    for objid, nx, n in zip(
        with_image["objid"], with_image["image_nx"], with_image["n_neighbours"], strict=True
    ):
        table = survey.neighbours[int(objid)]
        assert table.shape == (n, len(NEIGHBOUR_COLUMNS))
        assert np.all((table[:, :2] >= -0.5) & (table[:, :2] <= nx - 0.5))
    assert with_image["n_neighbours"].sum() > 0
    specs = galaxy_specs(survey, mock)
    assert [len(s.neighbours) for s in specs] == with_image["n_neighbours"].tolist()
    band = mock.image_bands[0]
    flux_column = NEIGHBOUR_COLUMNS.index(f"flux_{band}_nmgy")
    spec, objid = next((s, o) for s, o in zip(specs, with_image["objid"], strict=True) if s.neighbours)
    assert spec.neighbours[0].flux_nmgy[0] == survey.neighbours[int(objid)][0, flux_column]
