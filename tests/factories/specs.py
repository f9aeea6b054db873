"""A mock image specification with every structural field set to a plain value, for rendering tests."""

from __future__ import annotations

import dataclasses
from typing import Any

from morphomass.mock.render import GalaxyImageSpec

#: A smooth elliptical at the centre of a 121-pixel g-band image: no bar, arms, clumps, stars or neighbours.
_PLAIN = GalaxyImageSpec(
    seed=7,
    nx=121,
    pixel_scale_arcsec=0.396,
    bands=("g",),
    flux_nmgy=(300.0,),
    cls="elliptical",
    bulge_fraction=1.0,
    sersic_n=3.0,
    bulge_hlr_arcsec=2.0,
    disk_hlr_arcsec=2.0,
    cos_incl=1.0,
    axis_ratio=0.8,
    pa_deg=20.0,
    has_bar=False,
    n_arms=0,
    arm_pitch_deg=15.0,
    arm_strength=0.0,
    n_clumps=0,
    clump_fraction=0.0,
    companion_flux_ratio=0.0,
    companion_sep_arcsec=0.0,
    has_dust_lane=False,
    dust_lane_a_g_mag=0.0,
    psf_fwhm_arcsec=1.4,
    psf_beta=3.0,
)


def make_spec(**changes: Any) -> GalaxyImageSpec:
    """Return the plain elliptical's spec with ``changes`` applied (any :class:`GalaxyImageSpec` field)."""
    return dataclasses.replace(_PLAIN, **changes)
