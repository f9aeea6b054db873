"""A neighbouring galaxy is not a star: star subtraction (SPEC D5) removes the star and keeps the neighbour.

The scene is rendered by the mock's renderer (a disc galaxy at the centre, one neighbouring galaxy, one field
star, PSF and SDSS-like noise), once with each part and once without, so each part's light is known exactly:
the same seed draws the same noise. Star subtraction runs with the preprocess stage's default options.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from factories.specs import make_spec
from morphomass.config import PreprocessConfig
from morphomass.mock.render import GalaxyImageSpec, NeighbourSpec, render_galaxy
from morphomass.preprocess.stars import subtract_stars

NX = 151
SCALE = 0.396
CENTRE = (NX - 1) / 2
STAR = (40.3, 112.6, 60.0)  # x, y (pixels), g flux (nMgy): g ~ 18
#: A typical mock neighbour: r ~ 18.5 exponential, half-light radius 1.2" (FWHM with the PSF ~1.8").
NEIGHBOUR = NeighbourSpec(
    x_pix=108.4, y_pix=47.2, hlr_arcsec=1.2, sersic_n=1.0, axis_ratio=0.6, pa_deg=35.0, flux_nmgy=(25.0,)
)
#: A large neighbour (half-light radius 2.5", among the largest the mock draws).
EXTENDED = dataclasses.replace(NEIGHBOUR, hlr_arcsec=2.5)


def _spec(*, star: bool, neighbour: NeighbourSpec | None) -> GalaxyImageSpec:
    """Return the scene's spec: a disc galaxy at the centre, with or without the star and the neighbour."""
    return make_spec(
        seed=11,
        nx=NX,
        pixel_scale_arcsec=SCALE,
        flux_nmgy=(400.0,),
        cls="disk",
        bulge_fraction=0.2,
        sersic_n=2.0,
        bulge_hlr_arcsec=1.0,
        disk_hlr_arcsec=5.0,
        cos_incl=0.7,
        axis_ratio=0.7,
        pa_deg=30.0,
        star_x_pix=(STAR[0],) if star else (),
        star_y_pix=(STAR[1],) if star else (),
        star_flux_nmgy=((STAR[2],),) if star else (),
        neighbours=(neighbour,) if neighbour is not None else (),
    )


def _subtract(image: np.ndarray, priors: list[tuple[float, float]]):
    """Run star subtraction with the preprocess stage's default options (converted to pixels)."""
    config = PreprocessConfig()
    return subtract_stars(
        image,
        np.array(priors, dtype=float),
        center_xy=(CENTRE, CENTRE),
        search_radius_pix=config.star_search_radius_pix,
        nucleus_exclusion_pix=config.nucleus_exclusion_arcsec / SCALE,
        detection_sigma=config.star_detection_sigma,
        max_fwhm_pix=config.star_max_fwhm_arcsec / SCALE,
        max_radius_pix=config.star_max_radius_arcsec / SCALE,
        rng=np.random.default_rng(3),
    )


def _aperture(x: float, y: float, radius: float) -> np.ndarray:
    yy, xx = np.mgrid[:NX, :NX]
    return np.hypot(xx - x, yy - y) <= radius


@pytest.mark.parametrize("neighbour", [NEIGHBOUR, EXTENDED], ids=["typical", "extended"])
def test_star_is_removed_and_neighbour_kept(neighbour: NeighbourSpec) -> None:
    full = render_galaxy(_spec(star=True, neighbour=neighbour))["g"]
    no_star = render_galaxy(_spec(star=False, neighbour=neighbour))["g"]
    galaxy = render_galaxy(_spec(star=False, neighbour=None))["g"]
    result = _subtract(full, [STAR[:2]])
    assert result.positions_xy.shape == (1, 2) and result.n_rejected == 0

    star_ap = _aperture(STAR[0], STAR[1], 12.0)
    star_left = (result.image - no_star)[star_ap].sum()
    assert abs(star_left) < 0.03 * STAR[2]  # the star's flux is gone (it was 60 nMgy there)

    neighbour_ap = _aperture(neighbour.x_pix, neighbour.y_pix, 8 * neighbour.hlr_arcsec / SCALE)
    assert not (result.mask & neighbour_ap).any()
    neighbour_flux = (no_star - galaxy)[neighbour_ap].sum()
    assert neighbour_flux == pytest.approx(neighbour.flux_nmgy[0], rel=0.03)
    kept = (result.image - galaxy)[neighbour_ap].sum()
    assert kept == pytest.approx(neighbour_flux, rel=0.03)


@pytest.mark.xfail(
    strict=True,
    reason='known limitation, reported, not fixed here: a typical neighbour (FWHM with the PSF ~1.8", under '
    'the 3" point-source limit) given as a false star prior passes the point-source check and is replaced',
)
def test_neighbour_given_as_a_false_star_prior_is_kept() -> None:
    """A catalogue entry on a neighbouring galaxy (a false prior) should leave the galaxy in place.

    The mock never puts a neighbour in the star catalogue (only its spurious entries, at random positions,
    can land on one), and SDSS's type 6 is its own star/galaxy separation; this records what happens when one
    does.
    """
    full = render_galaxy(_spec(star=True, neighbour=NEIGHBOUR))["g"]
    galaxy = render_galaxy(_spec(star=False, neighbour=None))["g"]
    result = _subtract(full, [STAR[:2], (NEIGHBOUR.x_pix, NEIGHBOUR.y_pix)])
    neighbour_ap = _aperture(NEIGHBOUR.x_pix, NEIGHBOUR.y_pix, 8 * NEIGHBOUR.hlr_arcsec / SCALE)
    kept = (result.image - galaxy)[neighbour_ap].sum()
    assert result.n_rejected == 1
    assert kept == pytest.approx(NEIGHBOUR.flux_nmgy[0], rel=0.03)
