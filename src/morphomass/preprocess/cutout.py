"""Reading a galaxy from part of a FITS image: a re-cut square around it, or a block-reduced large image.

The preprocess stage reads every image whole (:func:`morphomass.preprocess.fits_image.load_fits_image`); its
images are a few hundred pixels wide. ``morphomass predict`` also meets images far larger than the networks
and the morphology need, and images of a wider field than 1.125 x D25. :func:`load_galaxy_image` reads such
an image through :attr:`astropy.io.fits.ImageHDU.section`, so that the full image is never in memory:

- a *re-cut* (:class:`astropy.nddata.Cutout2D`) reads only the square of a given side centred on the galaxy's
  catalogue position (placed with the image's WCS); where the square reaches beyond the image its pixels are
  NaN (filled later like any bad pixel);
- a *block reduction* (:func:`block_sum`) sums the flux of ``k`` x ``k`` pixel blocks, reading a strip of
  block rows at a time, when the image (or the cut) is wider or taller than ``reduce_above`` pixels; ``k`` is
  the smallest integer that brings both sides to at most half of ``reduce_above`` (:func:`block_factor`), so
  that the preprocessing's working memory (about 21 times the image it processes, bench/README.md) stays
  below about three times the image read.

Positions on the result come from the full image's WCS, shifted by the cut's origin and divided by the block
factor (:meth:`GalaxyImage.sky_to_pixel`); its pixel scale is the WCS's times the block factor.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from morphomass.errors import GalaxyImageError
from morphomass.preprocess.fits_image import _make_wcs, load_fits_image, pixel_scale_arcsec, sky_to_pixel

__all__ = ["GalaxyImage", "block_factor", "block_sum", "load_galaxy_image", "read_fits_geometry"]

#: Bytes of float64 pixels read per strip by :func:`block_sum` from a file.
_STRIP_BYTES = 1 << 20


@dataclass(frozen=True)
class GalaxyImage:
    """The pixels of one galaxy's image as the preprocessing gets them, and where they came from.

    Attributes
    ----------
    data : (ny, nx) ndarray of float32
        Pixel values (nanomaggies per pixel for survey images; a reduced pixel holds the sum of its block);
        may hold NaN.
    wcs : astropy.wcs.Wcsprm or astropy.wcs.WCS
        Celestial WCS of the *FITS image* (before any cut or reduction).
    origin_xy : (float, float)
        Position in the FITS image's pixels of the first pixel of the region that was read (0, 0 when the
        whole image was read).
    block_factor : int
        Side of the summed pixel blocks (1: not reduced).
    source_shape : (int, int)
        Shape (ny, nx) of the FITS image.
    recut : bool
        True when ``data`` is a square cut around the galaxy.
    """

    data: np.ndarray
    wcs: Any
    origin_xy: tuple[float, float] = (0.0, 0.0)
    block_factor: int = 1
    source_shape: tuple[int, int] = (0, 0)
    recut: bool = False

    @property
    def pixel_scale_arcsec(self) -> float:
        """Pixel size of ``data`` in arcsec (the WCS's, times the block factor)."""
        scale = pixel_scale_arcsec(self.wcs)
        return scale if self.block_factor == 1 else scale * self.block_factor

    def sky_to_pixel(self, ra_deg: Any, dec_deg: Any) -> np.ndarray:
        """Return the (n, 2) 0-based pixel positions (x, y) on ``data`` of sky positions in degrees."""
        xy = sky_to_pixel(self.wcs, ra_deg, dec_deg)
        if self.origin_xy == (0.0, 0.0) and self.block_factor == 1:
            return xy
        k = self.block_factor
        return (xy - np.asarray(self.origin_xy) - (k - 1) / 2.0) / k


def block_factor(shape: tuple[int, int], reduce_above: int | None) -> int:
    """Return the block size that brings an image of ``shape`` to at most ``reduce_above / 2`` pixels a side.

    Parameters
    ----------
    shape : (int, int)
        Image shape (ny, nx).
    reduce_above : int or None
        Largest side (pixels) read unreduced; None: never reduce.

    Returns
    -------
    int
        1 when neither side exceeds ``reduce_above``; else the smallest ``k`` with ``max(shape) / k <=
        reduce_above // 2`` (so at least 3).
    """
    side = max(shape)
    if reduce_above is None or side <= reduce_above:
        return 1
    return math.ceil(side / max(reduce_above // 2, 1))


def block_sum(source: Any, factor: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Sum ``factor`` x ``factor`` pixel blocks of an image, reading a strip of block rows at a time.

    The rows and columns left over by the division are trimmed evenly from both ends. A block holding NaN or
    infinite pixels gets the mean of its finite pixels times the block's area (NaN when none is finite), so
    that its flux is kept.

    Parameters
    ----------
    source : (ny, nx) array-like
        An ndarray or an :attr:`astropy.io.fits.ImageHDU.section` (only the strips are read).
    factor : int
        Block side in pixels, >= 1.

    Returns
    -------
    data : (ny // factor, nx // factor) ndarray of float32
        Block sums (sums are taken in float64).
    origin_xy : (int, int)
        Pixel (x, y) of ``source`` where the first block starts.

    Raises
    ------
    ValueError
        If ``factor`` < 1 or larger than a side of the image.
    """
    ny, nx = source.shape
    if factor < 1 or factor > min(ny, nx):
        msg = f"block_sum: factor must be between 1 and the shorter side {min(ny, nx)}, got {factor}"
        raise ValueError(msg)
    my, mx = ny // factor, nx // factor
    y0, x0 = (ny - my * factor) // 2, (nx - mx * factor) // 2
    out = np.empty((my, mx), dtype=np.float32)
    area = float(factor * factor)
    step = max(1, _STRIP_BYTES // (8 * factor * factor * mx))
    for i in range(0, my, step):
        j = min(i + step, my)
        rows = slice(y0 + i * factor, y0 + j * factor)
        strip = np.asarray(source[rows, x0 : x0 + mx * factor], dtype=np.float64)
        blocks = strip.reshape(j - i, factor, mx, factor)
        finite = np.isfinite(blocks)
        count = finite.sum(axis=(1, 3))
        total = np.where(finite, blocks, 0.0).sum(axis=(1, 3))
        with np.errstate(invalid="ignore", divide="ignore"):
            out[i:j] = np.where(count == area, total, total * (area / count))
    return out, (x0, y0)


def _image_hdu(hdul: Any, path: Path) -> Any:
    """Return the first HDU whose header declares a 2-D image (its data are not read)."""
    for hdu in hdul:
        if hdu.header.get("NAXIS") == 2 and hdu.is_image:
            return hdu
    raise GalaxyImageError("corrupt_fits", f"{path}: no HDU holds a 2-D image")


def _cards(hdu: Any) -> list[str]:
    return [card.image for card in hdu.header.cards]


@contextmanager
def _open(path: Path) -> Iterator[Any]:
    """Open a FITS file lazily (no data read); astropy's errors become ``corrupt_fits``."""
    from astropy.io import fits

    if not path.is_file():
        raise GalaxyImageError("missing_fits", f"{path}: FITS file is missing")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # non-standard cards: the WCS parser judges what it needs
            hdul = fits.open(path, memmap=False, lazy_load_hdus=True)
    except (OSError, ValueError, TypeError, IndexError, KeyError) as err:
        raise GalaxyImageError("corrupt_fits", f"{path}: unreadable FITS file ({err})") from err
    try:
        yield hdul
    finally:
        hdul.close()


def _image_shape(path: Path) -> tuple[int, int]:
    with _open(path) as hdul:
        ny, nx = (int(n) for n in _image_hdu(hdul, path).section.shape)
    return ny, nx


def _is_large(path: Path, reduce_above: int) -> bool:
    """Tell whether the header gives a side above ``reduce_above`` (False if unreadable: the read says)."""
    try:
        return block_factor(_image_shape(path), reduce_above) > 1
    except GalaxyImageError:
        return False


def read_fits_geometry(path: str | Path) -> tuple[tuple[int, int], Any]:
    """Read the shape and the WCS of a FITS image from its headers only.

    Returns
    -------
    shape : (int, int)
        (ny, nx) of the first 2-D image HDU.
    wcs : astropy.wcs.Wcsprm or astropy.wcs.WCS
        Its celestial WCS (as :func:`morphomass.preprocess.fits_image.load_fits_image` makes it).

    Raises
    ------
    GalaxyImageError
        ``missing_fits``, ``corrupt_fits`` or ``bad_wcs``, as :func:`load_fits_image`.
    """
    path = Path(path)
    with _open(path) as hdul:
        hdu = _image_hdu(hdul, path)
        ny, nx = (int(n) for n in hdu.section.shape)
        return (ny, nx), _make_wcs(_cards(hdu), path)


def _read(source: Any, path: Path, what: Any) -> np.ndarray:
    """Evaluate ``what(source)``, turning astropy's read errors into ``corrupt_fits``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return what(source)
    except (OSError, ValueError, TypeError, IndexError, KeyError, EOFError) as err:
        raise GalaxyImageError("corrupt_fits", f"{path}: unreadable FITS data ({err})") from err


def load_galaxy_image(
    path: str | Path,
    *,
    ra_deg: float,
    dec_deg: float,
    recut_arcsec: float | None = None,
    reduce_above: int | None = None,
) -> GalaxyImage:
    """Read a galaxy's image whole, or the square around it, block-reduced when it is large.

    Without ``recut_arcsec``, and when neither side exceeds ``reduce_above``, this is exactly
    :func:`morphomass.preprocess.fits_image.load_fits_image` (the preprocess stage's reader).

    Parameters
    ----------
    path : str or Path
        FITS file (the first HDU holding a 2-D image is used).
    ra_deg, dec_deg : float
        The galaxy's position (degrees): the centre of a re-cut.
    recut_arcsec : float, optional
        Side (arcsec) of the square cut around the galaxy (rounded to whole pixels; Cutout2D, partial
        overlap filled with NaN); None reads the whole image.
    reduce_above : int, optional
        Images (or cuts) wider or taller than this many pixels are block-reduced (:func:`block_factor`,
        :func:`block_sum`); None never reduces.

    Returns
    -------
    GalaxyImage

    Raises
    ------
    GalaxyImageError
        ``missing_fits``, ``corrupt_fits``, ``bad_wcs`` as :func:`load_fits_image`; ``wcs_outside`` when a
        re-cut or a reduction is asked for and the WCS puts the galaxy outside the image.
    """
    path = Path(path)
    if recut_arcsec is None:
        if reduce_above is None or not _is_large(path, reduce_above):
            data, wcs = load_fits_image(path)
            return GalaxyImage(data, wcs, source_shape=(int(data.shape[0]), int(data.shape[1])))
    with _open(path) as hdul:
        hdu = _image_hdu(hdul, path)
        wcs = _make_wcs(_cards(hdu), path)
        section = hdu.section
        ny, nx = (int(n) for n in section.shape)
        cx, cy = sky_to_pixel(wcs, ra_deg, dec_deg)[0]
        if not (-0.5 <= cx < nx - 0.5 and -0.5 <= cy < ny - 0.5):
            msg = (
                f"{path}: the WCS puts the galaxy (ra={ra_deg:.6f}, dec={dec_deg:.6f}) at pixel "
                f"({cx:.1f}, {cy:.1f}), outside the {nx}x{ny} image"
            )
            raise GalaxyImageError("wcs_outside", msg)
        source: Any = section
        origin = (0.0, 0.0)
        if recut_arcsec is not None:
            from astropy.nddata import Cutout2D

            side = max(1, round(recut_arcsec / pixel_scale_arcsec(wcs)))
            cut = _read(
                section,
                path,
                lambda s: Cutout2D(s, (cx, cy), (side, side), mode="partial", fill_value=np.nan, copy=True),
            )
            # Cutout2D.to_cutout_position ignores origin_cutout, which is not 0 for a partial overlap
            origin = (
                float(cut.origin_original[0] - cut.origin_cutout[0]),
                float(cut.origin_original[1] - cut.origin_cutout[1]),
            )
            source = np.asarray(cut.data, dtype=np.float32)
        factor = block_factor(source.shape, reduce_above)
        if factor > min(source.shape):
            msg = f"{path}: a {source.shape[1]}x{source.shape[0]} image cannot be block-reduced by {factor}"
            raise GalaxyImageError("corrupt_fits", msg)
        if factor > 1:
            source, (bx, by) = _read(source, path, lambda s: block_sum(s, factor))
            origin = (origin[0] + bx, origin[1] + by)
    return GalaxyImage(
        np.asarray(source, dtype=np.float32),
        wcs,
        origin_xy=origin,
        block_factor=factor,
        source_shape=(ny, nx),
        recut=recut_arcsec is not None,
    )
