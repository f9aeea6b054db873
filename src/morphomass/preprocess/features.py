"""Luminosity, image-statistic and metadata features of one galaxy (SPEC F1-F3; Dobbels+19 §3.2).

Luminosity features come from the star-subtracted, *unscaled* image (SPEC I1): every pixel's flux times
4 pi D^2, in solar units of the image's band (:func:`morphomass.photometry.luminosity_per_nanomaggy`, SPEC
D7), so that ``lum_sum`` is directly comparable with the catalogue's ``lum_g``. Image statistics come from the
log-scaled [0, 1] image at its native resolution. Names (DESIGN §2 ``features/photometric.parquet``):

- F1 ``lum_sum, lum_mean, lum_max, lum_min, lum_std, lum_center, lum_center5x5, image_size_pix, scaling_a``
- F2 ``img_sum, img_mean, img_std, img_center, img_center5x5``
- F3 ``redshift, pixel_kpc``
- SPEC B1 classical morphology ``morph_*`` (:data:`morphomass.preprocess.morphology.MORPHOLOGY_FEATURES`), on
  the same star-subtracted, unscaled image
"""

from __future__ import annotations

import numpy as np

from morphomass.errors import InputDataError
from morphomass.preprocess.morphology import MORPHOLOGY_FEATURES, compute_morphology

__all__ = [
    "FEATURE_COLUMNS",
    "IMAGE_FEATURES",
    "LUMINOSITY_FEATURES",
    "METADATA_FEATURES",
    "MORPHOLOGY_FEATURES",
    "compute_photometric_features",
]

LUMINOSITY_FEATURES: tuple[str, ...] = (
    "lum_sum",
    "lum_mean",
    "lum_max",
    "lum_min",
    "lum_std",
    "lum_center",
    "lum_center5x5",
    "image_size_pix",
    "scaling_a",
)
IMAGE_FEATURES: tuple[str, ...] = ("img_sum", "img_mean", "img_std", "img_center", "img_center5x5")
METADATA_FEATURES: tuple[str, ...] = ("redshift", "pixel_kpc")
#: Every feature column of features/photometric.parquet (after ``objid``), in order.
FEATURE_COLUMNS: tuple[str, ...] = (
    LUMINOSITY_FEATURES + IMAGE_FEATURES + METADATA_FEATURES + MORPHOLOGY_FEATURES
)


def _center_stats(image: np.ndarray, center_xy: tuple[float, float]) -> tuple[float, float]:
    """Value of the pixel holding ``center_xy`` and the mean of the 5x5 box around it.

    Clipped to the image.
    """
    ny, nx = image.shape
    ix = min(max(int(round(center_xy[0])), 0), nx - 1)
    iy = min(max(int(round(center_xy[1])), 0), ny - 1)
    box = image[max(iy - 2, 0) : iy + 3, max(ix - 2, 0) : ix + 3]
    return float(image[iy, ix]), float(box.mean(dtype=np.float64))


def compute_photometric_features(
    image_nmgy: np.ndarray,
    image_scaled: np.ndarray,
    *,
    center_xy: tuple[float, float],
    lum_per_nmgy: float,
    scaling_a: float,
    redshift: float,
    pixel_kpc: float,
    morphology: dict[str, float] | None = None,
) -> dict[str, float]:
    """Return the F1-F3 and classical-morphology features of one galaxy.

    Parameters
    ----------
    image_nmgy : (n, n) ndarray of float
        Star-subtracted image before any scaling, nanomaggies per pixel, finite.
    image_scaled : (n, n) ndarray of float
        The same image log-scaled to [0, 1] (same pixels).
    center_xy : (float, float)
        Galaxy centre (x, y) in 0-based pixels; the central pixel is the one holding it.
    lum_per_nmgy : float
        L_sun per nanomaggy at the galaxy's distance (:func:`morphomass.photometry.luminosity_per_nanomaggy`).
    scaling_a : float
        The image's scaling value ``a``.
    redshift : float
        Catalogue redshift.
    pixel_kpc : float
        Pixel size in kpc.
    morphology : dict of str to float, optional
        The ``morph_*`` values when already measured
        (:func:`morphomass.preprocess.morphology.compute_morphology` on ``image_nmgy``); measured
        here when None.

    Returns
    -------
    dict of str to float
        Keys :data:`FEATURE_COLUMNS`; luminosities in L_sun (per pixel, or summed), ``lum_std`` with
        ``ddof=0``, ``image_size_pix`` the side of the unscaled image in pixels.

    Raises
    ------
    InputDataError
        If the two images do not have the same 2-D shape.
    """
    if image_nmgy.ndim != 2 or image_nmgy.shape != image_scaled.shape:
        msg = (
            "compute_photometric_features: image_nmgy and image_scaled must be 2-D with the same shape, "
            f"got {image_nmgy.shape} and {image_scaled.shape}"
        )
        raise InputDataError(msg)
    if morphology is None:
        morphology = compute_morphology(image_nmgy, center_xy=center_xy, pixel_kpc=pixel_kpc).values
    # every luminosity statistic is linear in the flux: take it on the image, then scale (float64
    # accumulators)
    flux_center, flux_center5 = _center_stats(image_nmgy, center_xy)
    img_center, img_center5 = _center_stats(image_scaled, center_xy)
    f64 = np.float64
    return {
        "lum_sum": float(image_nmgy.sum(dtype=f64)) * lum_per_nmgy,
        "lum_mean": float(image_nmgy.mean(dtype=f64)) * lum_per_nmgy,
        "lum_max": float(image_nmgy.max()) * lum_per_nmgy,
        "lum_min": float(image_nmgy.min()) * lum_per_nmgy,
        "lum_std": float(image_nmgy.std(dtype=f64)) * lum_per_nmgy,
        "lum_center": flux_center * lum_per_nmgy,
        "lum_center5x5": flux_center5 * lum_per_nmgy,
        "image_size_pix": float(image_nmgy.shape[1]),
        "scaling_a": float(scaling_a),
        "img_sum": float(image_scaled.sum(dtype=f64)),
        "img_mean": float(image_scaled.mean(dtype=f64)),
        "img_std": float(image_scaled.std(dtype=f64)),
        "img_center": img_center,
        "img_center5x5": img_center5,
        "redshift": float(redshift),
        "pixel_kpc": float(pixel_kpc),
        **{name: float(morphology[name]) for name in MORPHOLOGY_FEATURES},
    }
