"""Images and reference measurements for the classical-morphology tests.

Analytic GalSim Sérsic profiles, the real SDSS cut-outs after our star subtraction, and statmorph's
measurements (the field's reference implementation) on the same sky-subtracted image and segmentation.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from morphomass.preprocess.morphology import estimate_sky, segment_central

#: statmorph attribute per feature (``morph_axis_ratio`` is 1 - ellipticity_centroid).
STATMORPH_NAMES: dict[str, str] = {
    "morph_ellipticity": "ellipticity_centroid",
    "morph_pa_deg": "orientation_centroid",
    "morph_concentration": "concentration",
    "morph_asymmetry": "asymmetry",
    "morph_smoothness": "smoothness",
    "morph_gini": "gini",
    "morph_m20": "m20",
    "morph_sersic_n": "sersic_n",
    "morph_hlr_pix": "rhalf_ellip",
}


def sersic_image(
    *,
    n: float,
    hlr_pix: float,
    q: float = 1.0,
    beta_deg: float = 0.0,
    size: int = 128,
    flux: float = 1e4,
    noise: float = 0.0,
    center_offset: tuple[float, float] = (0.0, 0.0),
    seed: int = 0,
) -> np.ndarray:
    """Render a Sérsic profile (GalSim, no PSF, sampled at pixel centres) plus white Gaussian noise.

    ``hlr_pix`` is the circularised half-light radius: the semi-major axis one is ``hlr_pix / sqrt(q)``
    (GalSim shears conserve area). The centre is the image centre ``((size - 1) / 2, (size - 1) / 2)`` plus
    ``center_offset`` (x, y).
    """
    import galsim

    profile = galsim.Sersic(n=n, half_light_radius=hlr_pix, flux=flux)
    if q != 1.0:
        profile = profile.shear(q=q, beta=beta_deg * galsim.degrees)
    image = profile.drawImage(
        nx=size, ny=size, scale=1.0, method="no_pixel", offset=galsim.PositionD(*center_offset)
    ).array.astype(np.float64)
    if noise:
        image = image + np.random.default_rng(seed).normal(0.0, noise, image.shape)
    return image


def real_star_subtracted(path: Path) -> tuple[np.ndarray, tuple[float, float]]:
    """Run our preprocessing on a real SDSS cut-out (centre = image centre, stars found without priors).

    Returns the star-subtracted, unscaled image (nanomaggies) and the galaxy centre in its pixels.
    """
    from morphomass.config import PreprocessConfig
    from morphomass.preprocess.fits_image import load_fits_image, pixel_scale_arcsec
    from morphomass.preprocess.galaxy import preprocess_galaxy

    data, wcs = load_fits_image(path)
    ny, nx = data.shape
    products = preprocess_galaxy(
        data,
        center_xy=((nx - 1) / 2, (ny - 1) / 2),
        stars_xy=np.empty((0, 2)),
        pixel_scale_arcsec=pixel_scale_arcsec(wcs),
        sizes=(64,),
        config=PreprocessConfig(),
        rng=np.random.default_rng(0),
    )
    return products.star_subtracted.astype(np.float64), products.center_xy


def statmorph_reference(image: np.ndarray, *, center_xy: tuple[float, float]) -> dict[str, Any]:
    """Measure the features with statmorph on our sky-subtracted image, segmentation and mask.

    Returns our feature names (:data:`STATMORPH_NAMES`, ``morph_pa_deg`` in degrees, plus
    ``morph_axis_ratio``), ``flag`` (statmorph's quality flag, 0 good .. 2 bad), ``flag_sersic``,
    ``hlr_2rpetro`` (statmorph's elliptical half-light semi-major axis with the total within 2 elliptical
    Petrosian radii, our definition; statmorph's ``rhalf_ellip`` takes the total at ``rmax_ellip``) and
    ``morph`` (the statmorph object).
    """
    import statmorph
    from statmorph.statmorph import _radius_at_fraction_of_total_ellip

    valid = np.isfinite(image)
    data = np.where(valid, image, 0.0).astype(np.float64)
    sky, sigma = estimate_sky(data, valid)
    data = np.where(valid, data - sky, 0.0)
    found = segment_central(data, center_xy=center_xy, sigma=sigma)
    if found is None:
        msg = "no central segment"
        raise ValueError(msg)
    segment, others = found
    segmap = np.where(segment, 1, np.where(others, 2, 0)).astype(np.int32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        morph = statmorph.SourceMorphology(
            data,
            segmap,
            1,
            mask=~valid,
            weightmap=np.full(data.shape, max(sigma, 1e-12)),
            skybox_size=16,
        )
        out = {name: float(getattr(morph, attr)) for name, attr in STATMORPH_NAMES.items()}
        out["flag"] = float(morph.flag)
        out["flag_sersic"] = float(morph.flag_sersic)
        out["hlr_2rpetro"] = _radius_at_fraction_of_total_ellip(
            morph._cutout_stamp_maskzeroed,
            morph._asymmetry_center,
            morph.elongation_asymmetry,
            morph.orientation_asymmetry,
            2.0 * morph.rpetro_ellip,
            0.5,
        )[0]
    out["morph"] = morph
    out["morph_pa_deg"] = math.degrees(out["morph_pa_deg"])
    out["morph_axis_ratio"] = 1.0 - out["morph_ellipticity"]
    return out
