"""The whole preprocessing of one galaxy image, in memory (SPEC D5, I1-I4): no files, no globals."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from morphomass.config import PreprocessConfig
from morphomass.errors import GalaxyImageError
from morphomass.preprocess.resize import crop_square, resize_image
from morphomass.preprocess.scaling import (
    compute_noise_level,
    log_scale,
    rescale_linear,
    sigma_clipped_mean_std,
    solve_scaling_a,
)
from morphomass.preprocess.stars import subtract_stars

__all__ = ["GalaxyProducts", "preprocess_galaxy"]


@dataclass(frozen=True)
class GalaxyProducts:
    """Everything :func:`preprocess_galaxy` makes from one image.

    Attributes
    ----------
    star_subtracted : (n, n) ndarray of float32
        Square, NaN-filled, star-subtracted image in the input unit (nanomaggies): the source of the
        luminosity features.
    scaled : (n, n) ndarray of float32
        ``star_subtracted`` rescaled to [0, 1] and log-scaled with ``scaling_a``.
    resized : dict of int to (size, size) ndarray of float32
        ``scaled`` resized to each requested size, in [0, 1].
    center_xy : (float, float)
        Galaxy centre in the pixels of the square images.
    scaling_a : float
        Scaling value (0 for the linear limit).
    noise_level : float
        Noise level of the [0, 1] image before log scaling.
    n_bad_pixels : int
        Non-finite input pixels (filled with the sigma-clipped background mean).
    n_stars_subtracted, n_star_priors_rejected, n_nucleus_skipped : int
        Star subtraction counts (see :class:`morphomass.preprocess.stars.StarSubtraction`).
    constant_image : bool
        True when the image had a single value (scaled to zeros, ``scaling_a = 0``).
    input_shape : (int, int)
        Shape (ny, nx) of the input image, before it was made square.
    pixel_scale_arcsec : float
        Pixel scale of the input image.
    block_factor : int
        Side of the pixel blocks summed when the input was block-reduced from a larger FITS image (1: not
        reduced; set by :func:`morphomass.preprocess.tasks.measure_job`).
    source_shape : (int, int) or None
        Shape (ny, nx) of the FITS image when the input was cut from it or block-reduced; None otherwise.
    recut : bool
        True when the input is a square cut around the galaxy from a wider FITS image.
    """

    star_subtracted: np.ndarray
    scaled: np.ndarray
    resized: dict[int, np.ndarray]
    center_xy: tuple[float, float]
    scaling_a: float
    noise_level: float
    n_bad_pixels: int
    n_stars_subtracted: int
    n_star_priors_rejected: int
    n_nucleus_skipped: int
    constant_image: bool
    input_shape: tuple[int, int]
    pixel_scale_arcsec: float
    block_factor: int = 1
    source_shape: tuple[int, int] | None = None
    recut: bool = False


def preprocess_galaxy(
    image: np.ndarray,
    *,
    center_xy: tuple[float, float],
    stars_xy: np.ndarray,
    pixel_scale_arcsec: float,
    sizes: tuple[int, ...],
    config: PreprocessConfig,
    rng: np.random.Generator | None = None,
) -> GalaxyProducts:
    """Fill bad pixels, crop square, subtract stars, scale automatically and resize one galaxy image.

    Parameters
    ----------
    image : (ny, nx) ndarray of float
        Galaxy image (nanomaggies per pixel), centred on the galaxy; may hold NaN/inf.
    center_xy : (float, float)
        Galaxy centre (x, y) in 0-based pixels of ``image``.
    stars_xy : (n_stars, 2) ndarray of float
        Catalogued star positions in 0-based pixels of ``image``.
    pixel_scale_arcsec : float
        Pixel size in arcsec (converts the arcsec options of ``config`` to pixels).
    sizes : tuple of int
        Output sizes in pixels.
    config : PreprocessConfig
        Star subtraction and scaling options.
    rng : numpy.random.Generator, optional
        Noise for the replaced star pixels (none when omitted).

    Returns
    -------
    GalaxyProducts

    Raises
    ------
    GalaxyImageError
        ``all_nan`` if no pixel is finite.
    """
    data = np.asarray(image, dtype=np.float32)
    finite = np.isfinite(data)
    n_bad = int(data.size - np.count_nonzero(finite))
    if n_bad == data.size:
        raise GalaxyImageError("all_nan", f"all {data.size} pixels of the image are NaN or infinite")
    if n_bad:
        background, _ = sigma_clipped_mean_std(
            data[finite], sigma=config.sigma_clip, maxiters=config.sigma_clip_maxiters
        )
        data = np.where(finite, data, np.float32(background))

    ny, nx = data.shape
    square = crop_square(data)
    shift_x, shift_y = (nx - square.shape[1]) // 2, (ny - square.shape[0]) // 2
    center = (float(center_xy[0]) - shift_x, float(center_xy[1]) - shift_y)
    stars = np.asarray(stars_xy, dtype=np.float64).reshape(-1, 2) - [shift_x, shift_y]
    n = square.shape[0]
    on_image = ((stars >= -0.5) & (stars < n - 0.5)).all(axis=1)
    # background noise for the star detection: sigma-clipped std of every other pixel in each direction
    noise_std = (
        sigma_clipped_mean_std(
            square[::2, ::2], sigma=config.sigma_clip, maxiters=config.sigma_clip_maxiters
        )[1]
        if on_image.any()
        else None
    )
    subtraction = subtract_stars(
        square,
        stars,
        center_xy=center,
        search_radius_pix=config.star_search_radius_pix,
        nucleus_exclusion_pix=config.nucleus_exclusion_arcsec / pixel_scale_arcsec,
        detection_sigma=config.star_detection_sigma,
        max_fwhm_pix=config.star_max_fwhm_arcsec / pixel_scale_arcsec,
        max_radius_pix=config.star_max_radius_arcsec / pixel_scale_arcsec,
        noise_std=noise_std,
        rng=rng,
    )
    image01, lo, hi = rescale_linear(subtraction.image)
    constant = not hi > lo
    if constant:
        noise_level, a = 0.0, 0.0
    else:
        noise_level = compute_noise_level(
            image01, sigma=config.sigma_clip, maxiters=config.sigma_clip_maxiters, n_std=config.noise_n_std
        )
        a = solve_scaling_a(noise_level, target=config.noise_target)
    scaled = log_scale(image01, a)
    return GalaxyProducts(
        star_subtracted=subtraction.image,
        scaled=scaled,
        resized={size: resize_image(scaled, size) for size in sizes},
        center_xy=center,
        scaling_a=a,
        noise_level=noise_level,
        n_bad_pixels=n_bad,
        n_stars_subtracted=int(subtraction.positions_xy.shape[0]),
        n_star_priors_rejected=subtraction.n_rejected,
        n_nucleus_skipped=subtraction.n_nucleus,
        constant_image=constant,
        input_shape=(int(image.shape[0]), int(image.shape[1])),
        pixel_scale_arcsec=float(pixel_scale_arcsec),
    )
