"""Resizing to the networks' input sizes with the paper's interpolations (SPEC I4)."""

from __future__ import annotations

import numpy as np

from morphomass.errors import InputDataError

__all__ = ["crop_square", "resize_image"]


def crop_square(image: np.ndarray) -> np.ndarray:
    """Crop the longer axis of an image symmetrically so that it is square (same centre).

    Parameters
    ----------
    image : (ny, nx) ndarray

    Returns
    -------
    (n, n) ndarray
        A view, ``n = min(ny, nx)``; the image itself when it is already square.
    """
    ny, nx = image.shape
    n = min(ny, nx)
    y0, x0 = (ny - n) // 2, (nx - n) // 2
    return image[y0 : y0 + n, x0 : x0 + n]


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """Resize a square image to ``size`` x ``size`` pixels over the same field of view.

    Pixel-area averaging (``cv2.INTER_AREA``) when shrinking, which conserves the mean surface brightness;
    bicubic interpolation (``cv2.INTER_CUBIC``) when enlarging, clipped to the input's range so that the
    overshoot of the cubic kernel cannot leave [0, 1].

    Parameters
    ----------
    image : (n, n) ndarray of float
        Square image (any unit).
    size : int
        Output side in pixels, >= 1.

    Returns
    -------
    (size, size) ndarray of float32

    Raises
    ------
    InputDataError
        If ``image`` is not a non-empty square 2-D array or ``size`` < 1.
    """
    import cv2

    if image.ndim != 2 or image.shape[0] != image.shape[1] or image.size == 0:
        msg = f"resize_image: image must be a non-empty square 2-D array, got shape {image.shape}"
        raise InputDataError(msg)
    if size < 1:
        msg = f"resize_image: size must be >= 1, got {size!r}"
        raise InputDataError(msg)
    data = np.ascontiguousarray(image, dtype=np.float32)
    n = data.shape[0]
    if size == n:
        return data.copy()
    if size < n:
        return cv2.resize(data, (size, size), interpolation=cv2.INTER_AREA)
    out = cv2.resize(data, (size, size), interpolation=cv2.INTER_CUBIC)
    return np.clip(out, data.min(), data.max(), out=out)
