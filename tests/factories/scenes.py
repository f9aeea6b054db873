"""Synthetic scenes for the preprocessing tests: point sources and a galaxy, in pixels."""

from __future__ import annotations

import numpy as np


def moffat(
    shape: tuple[int, int], x: float, y: float, *, flux: float, fwhm: float, beta: float = 3.0
) -> np.ndarray:
    """Return a Moffat point source of total ``flux`` centred at (x, y) (pixels), sampled at pixel centres."""
    alpha = fwhm / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    profile = (1.0 + ((xx - x) ** 2 + (yy - y) ** 2) / alpha**2) ** -beta
    return flux * (beta - 1.0) / (np.pi * alpha**2) * profile


def galaxy(shape: tuple[int, int], *, flux: float, scale_pix: float, q: float = 0.6) -> np.ndarray:
    """Return an exponential disc of total ``flux`` at the image centre (axis ratio q)."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    cy, cx = (shape[0] - 1) / 2, (shape[1] - 1) / 2
    r = np.hypot(xx - cx, (yy - cy) / q)
    disc = np.exp(-r / scale_pix)
    return flux * disc / disc.sum()
