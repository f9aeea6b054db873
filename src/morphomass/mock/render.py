"""Render one mock galaxy, with its field stars, PSF and noise, in every band (GalSim).

The light of a galaxy is split into an *old* group (Sérsic bulge or spheroid, bar) and a *young* group
(inclined exponential disc with thickness, logarithmic spiral arms, star-forming clumps, a merger's tidal
arc), each rendered once with GalSim and convolved with the galaxy's Moffat PSF. A band's image is the sum of
the two groups with that band's flux in each (bulges are redder than discs), an edge-on dust lane, catalogue
stars and noise. Drawing two groups instead of one image per band keeps the cost independent of the number of
bands. A galaxy may have a point nucleus (the PSF at its centre, a fixed fraction of its light in every band,
taken out of the rest of its light), and its image holds neighbouring galaxies (Sérsic profiles convolved with
the same PSF, each drawn once on a small stamp and scaled to its flux in each band).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import galsim
import numpy as np
from numpy.typing import NDArray

from morphomass.mock.physics import DUST_RATIO, ELECTRONS_PER_NMGY, SKY_NOISE_NMGY

__all__ = ["GalaxyImageSpec", "NeighbourSpec", "render_galaxy"]

_GSPARAMS = galsim.GSParams(folding_threshold=1e-2, maxk_threshold=2e-3, maximum_fft_size=8192)
#: Colour of the old group relative to the young one, m_old - m_young per band minus that in g (mag).
#: Gaussian knots per spiral arm: each costs one k-space drawing, so this sets much of a spiral's render time.
_KNOTS_PER_ARM = 15
_MIN_TRUNC_HLR = 4.0
_MAX_TRUNC_HLR = 64.0
_OLD_MINUS_YOUNG_MAG = {"u": 0.45, "g": 0.0, "r": -0.15, "i": -0.25, "z": -0.30}
#: A neighbour's de Vaucouleurs (n = 4) profile is truncated at this many half-light radii (its flux is that
#: of the truncated profile); a fixed ratio keeps GalSim's Sérsic table cached. Its stamp reaches this far
#: (an exponential: 6 hlr, beyond which it has 0.05 % of its light) plus a margin for the PSF's wings.
_NEIGHBOUR_TRUNC_HLR = 8.0
_NEIGHBOUR_EXP_STAMP_HLR = 6.0
#: PSF margin of a neighbour's stamp, in PSF FWHM: a Moffat (beta = 3) has 0.3 % of its light beyond 4 FWHM.
_NEIGHBOUR_STAMP_PSF_FWHM = 4.0


@dataclass(frozen=True)
class NeighbourSpec:
    """A neighbouring galaxy on the image: position, shape and flux per band.

    ``x_pix``/``y_pix`` are zero-based pixel positions, ``hlr_arcsec`` the half-light radius of the
    circularised profile, ``sersic_n`` 1 (exponential) or another Sérsic index, ``pa_deg`` the position angle
    from the image's +x axis towards +y, and ``flux_nmgy`` the flux in each of the spec's bands (nanomaggies).
    """

    x_pix: float
    y_pix: float
    hlr_arcsec: float
    sersic_n: float
    axis_ratio: float
    pa_deg: float
    flux_nmgy: tuple[float, ...]


@dataclass(frozen=True)
class GalaxyImageSpec:
    """Everything needed to render one galaxy; angles in degrees, sizes in arcsec, fluxes in nanomaggies.

    ``star_x_pix``/``star_y_pix`` are zero-based pixel positions of the field stars and ``star_flux_nmgy``
    their fluxes per band (shape (n_stars, n_bands)). ``nucleus_flux_fraction`` (0 to 0.5) of the galaxy's
    flux ``flux_nmgy`` is in a point nucleus at its centre, in every band; ``neighbours`` are the neighbouring
    galaxies on the image.
    """

    seed: int
    nx: int
    pixel_scale_arcsec: float
    bands: tuple[str, ...]
    flux_nmgy: tuple[float, ...]
    cls: str
    bulge_fraction: float
    sersic_n: float
    bulge_hlr_arcsec: float
    disk_hlr_arcsec: float
    cos_incl: float
    axis_ratio: float
    pa_deg: float
    has_bar: bool
    n_arms: int
    arm_pitch_deg: float
    arm_strength: float
    n_clumps: int
    clump_fraction: float
    companion_flux_ratio: float
    companion_sep_arcsec: float
    has_dust_lane: bool
    dust_lane_a_g_mag: float
    psf_fwhm_arcsec: float
    psf_beta: float
    star_x_pix: tuple[float, ...] = ()
    star_y_pix: tuple[float, ...] = ()
    star_flux_nmgy: tuple[tuple[float, ...], ...] = ()
    background_offset_nmgy: float = 0.0
    nucleus_flux_fraction: float = 0.0
    neighbours: tuple[NeighbourSpec, ...] = ()


def _in_disk_plane(profile: galsim.GSObject, cos_incl: float, pa_deg: float) -> galsim.GSObject:
    """Project a face-on profile onto the sky: squash by cos i along the minor axis, rotate to the PA.

    GalSim's transform scales the flux by the Jacobian determinant; projection conserves it, so it is undone.
    """
    squash = max(cos_incl, 0.05)
    return (
        profile.transform(1.0, 0.0, 0.0, squash).withScaledFlux(1.0 / squash).rotate(pa_deg * galsim.degrees)
    )


def _spiral_arms(spec: GalaxyImageSpec, flux: float, rng: np.random.Generator) -> galsim.GSObject:
    """Logarithmic spiral arms as chains of Gaussian knots in the disc plane (face-on), flux ``flux``."""
    scale = spec.disk_hlr_arcsec / 1.68  # exponential scale length
    tan_pitch = math.tan(math.radians(spec.arm_pitch_deg))
    knots = []
    radii = np.linspace(0.5 * scale, 3.2 * scale, _KNOTS_PER_ARM)
    weights = np.exp(-radii / scale) * radii
    weights /= weights.sum() * spec.n_arms
    phase0 = rng.uniform(0, 2 * math.pi)
    for arm in range(spec.n_arms):
        phase = phase0 + 2 * math.pi * arm / spec.n_arms
        for r, w in zip(radii, weights, strict=True):
            theta = phase + math.log(r / (0.5 * scale)) / tan_pitch
            knot = galsim.Gaussian(sigma=max(0.22 * r, 0.3), flux=flux * w, gsparams=_GSPARAMS)
            knots.append(knot.shift(r * math.cos(theta), r * math.sin(theta)))
    return galsim.Sum(knots)


def _clumps(n: int, radius_arcsec: float, flux: float, rng: np.random.Generator) -> galsim.GSObject:
    """Compact star-forming clumps scattered with an exponential radial distribution."""
    r = rng.exponential(radius_arcsec / 1.68, n)
    theta = rng.uniform(0, 2 * math.pi, n)
    w = rng.dirichlet(np.ones(n)) * flux
    return galsim.Sum(
        [
            galsim.Gaussian(sigma=rng.uniform(0.25, 0.6), flux=wi, gsparams=_GSPARAMS).shift(
                ri * math.cos(t), ri * math.sin(t)
            )
            for ri, t, wi in zip(r, theta, w, strict=True)
        ]
    )


def _truncation(spec: GalaxyImageSpec, hlr_arcsec: float) -> float:
    """Return the truncation radius of a Sérsic profile: beyond the image diagonal, 4 to 64 hlr.

    Light beyond the image diagonal is never seen.

    Without it, large high-index profiles make GalSim ask for FFTs of several GB. The ratio to the half-light
    radius is rounded up to a power of sqrt(2), so that GalSim's cache of Sérsic tables (keyed by index and
    this ratio, 100 entries) serves most galaxies: the 9 indices of the mock times 9 ratios fit in it. Past 64
    hlr a Sérsic profile with n <= 5 holds less than 0.2 % of its light, far below the sky noise per pixel.
    """
    ratio = max(0.75 * spec.nx * spec.pixel_scale_arcsec / hlr_arcsec, _MIN_TRUNC_HLR)
    ratio = min(2.0 ** (math.ceil(2.0 * math.log2(ratio) - 1e-9) / 2.0), _MAX_TRUNC_HLR)
    return ratio * hlr_arcsec


def _old_and_young(
    spec: GalaxyImageSpec, rng: np.random.Generator
) -> tuple[galsim.GSObject | None, galsim.GSObject | None, float, float]:
    """Old and young light profiles and their nominal g-band fluxes (fractions of the galaxy's light).

    The nominal fluxes ignore the Sérsic truncation: light beyond the truncation radius stays missing from the
    image instead of being put back inside it.
    """
    bt = spec.bulge_fraction
    pa = spec.pa_deg * galsim.degrees
    old_parts: list[galsim.GSObject] = []
    young_parts: list[galsim.GSObject] = []
    if spec.cls == "elliptical":
        q = spec.axis_ratio
        hlr = spec.bulge_hlr_arcsec * math.sqrt(q)
        spheroid = galsim.Sersic(
            n=spec.sersic_n,
            half_light_radius=hlr,
            flux=1.0,
            trunc=_truncation(spec, hlr),
            flux_untruncated=True,
            gsparams=_GSPARAMS,
        )
        old_parts.append(spheroid.shear(q=q, beta=pa))
        return galsim.Sum(old_parts), None, 1.0, 0.0
    if bt > 0:
        q_bulge = max(spec.axis_ratio, 0.6)
        bulge_flux = bt * (0.8 if spec.has_bar else 1.0)
        hlr = spec.bulge_hlr_arcsec * math.sqrt(q_bulge)
        bulge = galsim.Sersic(
            n=spec.sersic_n,
            half_light_radius=hlr,
            flux=bulge_flux,
            trunc=_truncation(spec, hlr),
            flux_untruncated=True,
            gsparams=_GSPARAMS,
        )
        old_parts.append(bulge.shear(q=q_bulge, beta=pa))
        if spec.has_bar:
            bar = galsim.Sersic(
                n=0.5,
                half_light_radius=0.9 * spec.disk_hlr_arcsec * math.sqrt(0.3),
                flux=0.2 * bt,
                gsparams=_GSPARAMS,
            ).shear(q=0.3, beta=rng.uniform(0, 180) * galsim.degrees)
            old_parts.append(_in_disk_plane(bar, spec.cos_incl, spec.pa_deg))
    disk_flux = 1.0 - bt
    arm_flux = disk_flux * spec.arm_strength if spec.n_arms > 0 else 0.0
    clump_flux = disk_flux * spec.clump_fraction if spec.n_clumps > 0 else 0.0
    smooth_flux = disk_flux - arm_flux - clump_flux
    if spec.cls == "irregular":
        q = spec.axis_ratio
        young_parts.append(
            galsim.Exponential(
                half_light_radius=spec.disk_hlr_arcsec * math.sqrt(q), flux=smooth_flux, gsparams=_GSPARAMS
            )
            .shear(q=q, beta=pa)
            .shift(*rng.normal(0, 0.15 * spec.disk_hlr_arcsec, 2))
        )
    else:
        incl = math.acos(min(max(spec.cos_incl, 0.0), 1.0)) * galsim.radians
        young_parts.append(
            galsim.InclinedExponential(
                incl,
                half_light_radius=spec.disk_hlr_arcsec,
                scale_h_over_r=0.12,
                flux=smooth_flux,
                gsparams=_GSPARAMS,
            ).rotate(pa)
        )
    if arm_flux > 0:
        young_parts.append(_in_disk_plane(_spiral_arms(spec, arm_flux, rng), spec.cos_incl, spec.pa_deg))
    if clump_flux > 0:
        clumps = _clumps(spec.n_clumps, spec.disk_hlr_arcsec, clump_flux, rng)
        young_parts.append(
            _in_disk_plane(clumps, spec.cos_incl, spec.pa_deg) if spec.cls == "disk" else clumps
        )
    if spec.cls == "merger":
        # A companion (a fraction of the main galaxy's light, shared old/young like it) and a tidal arc of
        # knots.
        angle = rng.uniform(0, 2 * math.pi)
        dx, dy = spec.companion_sep_arcsec * math.cos(angle), spec.companion_sep_arcsec * math.sin(angle)
        comp_q = rng.uniform(0.5, 1.0)
        companion = (
            galsim.Sersic(
                n=2.0,
                half_light_radius=0.7 * spec.bulge_hlr_arcsec / max(bt, 0.3) ** 0.5,
                flux=spec.companion_flux_ratio,
                gsparams=_GSPARAMS,
            )
            .shear(q=comp_q, beta=rng.uniform(0, 180) * galsim.degrees)
            .shift(dx, dy)
        )
        old_parts.append(companion * bt)
        young_parts.append(companion * (1 - bt))
        arc_r = np.linspace(0.6, 1.8, 12) * spec.companion_sep_arcsec
        arc_t = angle + np.linspace(0.4, 1.6, 12) * rng.choice([-1, 1])
        young_parts.append(
            galsim.Sum(
                [
                    galsim.Gaussian(sigma=0.12 * r, flux=0.1 / 12, gsparams=_GSPARAMS).shift(
                        r * math.cos(t), r * math.sin(t)
                    )
                    for r, t in zip(arc_r, arc_t, strict=True)
                ]
            )
        )
    old = galsim.Sum(old_parts) if old_parts else None
    young = galsim.Sum(young_parts) if young_parts else None
    companion = spec.companion_flux_ratio if spec.cls == "merger" else 0.0
    arc = 0.1 if spec.cls == "merger" else 0.0
    return old, young, bt * (1 + companion), (1 - bt) * (1 + companion) + arc


def _dust_lane_transmission(spec: GalaxyImageSpec, shape: tuple[int, int]) -> NDArray[np.float64]:
    """g-band transmission of an edge-on dust lane along the major axis, smoothed to the seeing."""
    ny, nx = shape
    y, x = np.mgrid[0:ny, 0:nx].astype(float)
    x -= (nx - 1) / 2
    y -= (ny - 1) / 2
    pa = math.radians(spec.pa_deg)
    # GalSim's position angle is measured from +x towards +y; major axis along (cos pa, sin pa).
    along = (x * math.cos(pa) + y * math.sin(pa)) * spec.pixel_scale_arcsec
    across = (-x * math.sin(pa) + y * math.cos(pa)) * spec.pixel_scale_arcsec
    width = max(
        0.12 * spec.disk_hlr_arcsec * math.sqrt(max(spec.cos_incl, 0.05)) + 0.5 * spec.psf_fwhm_arcsec, 0.4
    )
    extent = np.exp(-np.abs(along) / (1.5 * spec.disk_hlr_arcsec))
    depth = spec.dust_lane_a_g_mag * extent * np.exp(-0.5 * (across / width) ** 2)
    return 10 ** (-0.4 * depth)


def _star_image(
    psf: galsim.GSObject, x_pix: float, y_pix: float, spec: GalaxyImageSpec
) -> NDArray[np.float64]:
    """Return a unit-flux point source at zero-based pixel position (x, y).

    On a blank image of the galaxy's size.
    """
    image = galsim.ImageD(spec.nx, spec.nx, scale=spec.pixel_scale_arcsec)  # GalSim bounds are 1-based
    half = 15
    ix, iy = int(round(x_pix)), int(round(y_pix))
    bounds = galsim.BoundsI(ix + 1 - half, ix + 1 + half, iy + 1 - half, iy + 1 + half) & image.bounds
    if bounds.isDefined():
        stamp = image[bounds]
        psf.drawImage(
            image=stamp,
            offset=(x_pix + 1 - stamp.true_center.x, y_pix + 1 - stamp.true_center.y),
            add_to_image=True,
        )
    return image.array


def _neighbour_stamp(
    neighbour: NeighbourSpec, psf: galsim.GSObject, spec: GalaxyImageSpec
) -> tuple[slice, slice, NDArray[np.float64]] | None:
    """Draw a unit-flux neighbour on a small stamp; return the image slices it covers and the stamp.

    None when the stamp lies wholly off the image. Light that falls off the image is lost, as on the sky.
    """
    hlr = neighbour.hlr_arcsec
    if neighbour.sersic_n == 1.0:
        profile = galsim.Exponential(half_light_radius=hlr, gsparams=_GSPARAMS)
        extent = _NEIGHBOUR_EXP_STAMP_HLR * hlr
    else:
        profile = galsim.Sersic(
            n=neighbour.sersic_n,
            half_light_radius=hlr,
            trunc=_NEIGHBOUR_TRUNC_HLR * hlr,
            flux_untruncated=False,
            gsparams=_GSPARAMS,
        )
        extent = _NEIGHBOUR_TRUNC_HLR * hlr
    profile = profile.shear(q=neighbour.axis_ratio, beta=neighbour.pa_deg * galsim.degrees)
    half = int(
        math.ceil((extent + _NEIGHBOUR_STAMP_PSF_FWHM * spec.psf_fwhm_arcsec) / spec.pixel_scale_arcsec)
    )
    ix, iy = int(round(neighbour.x_pix)), int(round(neighbour.y_pix))
    # GalSim bounds are 1-based and inclusive
    bounds = galsim.BoundsI(ix + 1 - half, ix + 1 + half, iy + 1 - half, iy + 1 + half) & galsim.BoundsI(
        1, spec.nx, 1, spec.nx
    )
    if not bounds.isDefined():
        return None
    stamp = galsim.ImageD(bounds, scale=spec.pixel_scale_arcsec)
    galsim.Convolve(profile, psf).drawImage(
        image=stamp,
        offset=(neighbour.x_pix + 1 - stamp.true_center.x, neighbour.y_pix + 1 - stamp.true_center.y),
    )
    rows = slice(bounds.ymin - 1, bounds.ymax)
    cols = slice(bounds.xmin - 1, bounds.xmax)
    return rows, cols, stamp.array


def render_galaxy(spec: GalaxyImageSpec) -> dict[str, NDArray[np.float32]]:
    """Render the galaxy's image in each band.

    Parameters
    ----------
    spec : GalaxyImageSpec

    Returns
    -------
    dict
        band -> (nx, nx) float32 array in nanomaggies per pixel, sky-subtracted (noise around a small residual
        background offset), galaxy centred on the image centre.
    """
    rng = np.random.default_rng(spec.seed)
    psf = galsim.Moffat(beta=spec.psf_beta, fwhm=spec.psf_fwhm_arcsec, gsparams=_GSPARAMS)
    old, young, old_g, young_g = _old_and_young(spec, rng)
    draw = {"nx": spec.nx, "ny": spec.nx, "scale": spec.pixel_scale_arcsec}
    old_img = galsim.Convolve(old, psf).drawImage(**draw).array if old is not None else 0.0
    young_img = galsim.Convolve(young, psf).drawImage(**draw).array if young is not None else 0.0
    lane = _dust_lane_transmission(spec, (spec.nx, spec.nx)) if spec.has_dust_lane else None

    stars = [_star_image(psf, x, y, spec) for x, y in zip(spec.star_x_pix, spec.star_y_pix, strict=True)]
    nucleus_fraction = spec.nucleus_flux_fraction
    centre = (spec.nx - 1) / 2
    nucleus = _star_image(psf, centre, centre, spec) if nucleus_fraction > 0 else None
    neighbours = [(n, _neighbour_stamp(n, psf, spec)) for n in spec.neighbours]

    images: dict[str, NDArray[np.float32]] = {}
    for k, band in enumerate(spec.bands):
        # old_img and young_img carry their g-band flux fractions; reweight the old group by its colour.
        colour_weight = 10 ** (-0.4 * _OLD_MINUS_YOUNG_MAG[band])
        img = spec.flux_nmgy[k] * (colour_weight * old_img + young_img) / (colour_weight * old_g + young_g)
        if nucleus is not None:
            # the nucleus's light is taken out of the rest of the galaxy: the total flux stays flux_nmgy
            img = (1.0 - nucleus_fraction) * img + nucleus_fraction * spec.flux_nmgy[k] * nucleus
        if lane is not None:
            # The lane redistributes light; its integrated attenuation is already in the catalogue's A_band.
            laned = img * lane ** DUST_RATIO[band]
            img = laned * (img.sum() / laned.sum())
        for stamp, fluxes in zip(stars, spec.star_flux_nmgy, strict=True):
            img = img + fluxes[k] * stamp
        for neighbour, drawn in neighbours:
            if drawn is not None:
                rows, cols, stamp = drawn
                img[rows, cols] += neighbour.flux_nmgy[k] * stamp
        sky = SKY_NOISE_NMGY[band]
        sigma = np.sqrt(sky**2 + np.clip(img, 0, None) / ELECTRONS_PER_NMGY)
        img = (
            img
            + spec.background_offset_nmgy * sky / SKY_NOISE_NMGY["g"]
            + rng.normal(0, 1, img.shape) * sigma
        )
        images[band] = img.astype(np.float32)
    return images
