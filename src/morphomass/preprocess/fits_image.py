"""Reading one galaxy's FITS image and placing catalogue positions on it, with per-galaxy failure reasons.

Survey cut-outs and mosaics are simple FITS files: one 2-D floating-point image in the primary HDU with a TAN
WCS in its header. Those are read on a fast path: the header cards are split from the file's bytes, the data
are viewed with numpy, and the WCS is parsed by wcslib (:class:`astropy.wcs.Wcsprm`) from the WCS cards only,
which is ten to twenty times cheaper than building a full :class:`astropy.wcs.WCS` from a full survey header.
Anything else (scaled integers, extensions, compression, SIP or lookup-table distortions) goes through
:mod:`astropy.io.fits` and :class:`astropy.wcs.WCS`. Both paths return the same pixels and positions.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from morphomass.errors import GalaxyImageError

__all__ = ["FAILURE_KINDS", "load_fits_image", "pixel_scale_arcsec", "sky_to_pixel"]

#: Failure kinds recorded in results/tables/preprocess_failures.csv.
FAILURE_KINDS: tuple[str, ...] = (
    "missing_fits",
    "corrupt_fits",
    "bad_wcs",
    "wcs_outside",
    "all_nan",
    "bad_sample_row",
    "internal_error",
)

#: Header keywords of a celestial WCS; the rest of a survey header is never given to the WCS parser.
_WCS_PREFIXES: tuple[str, ...] = (
    "NAXIS",
    "WCSAXES",
    "CTYPE",
    "CUNIT",
    "CRPIX",
    "CRVAL",
    "CDELT",
    "CD1_",
    "CD2_",
    "PC1_",
    "PC2_",
    "CROTA",
    "PV1_",
    "PV2_",
    "LONPOLE",
    "LATPOLE",
    "RADESYS",
    "RADECSYS",
    "EQUINOX",
    "EPOCH",
    "MJD-OBS",
    "DATE-OBS",
)
#: Keywords that need the full astropy WCS (SIP polynomials, distortion lookup tables).
_DISTORTION_PREFIXES: tuple[str, ...] = (
    "A_ORDER",
    "B_ORDER",
    "AP_ORDER",
    "BP_ORDER",
    "CPDIS",
    "D2IMDIS",
    "DP1",
    "DP2",
)
_BLOCK = 2880
_CARD = 80


def _header_cards(buf: bytes) -> tuple[list[str], int] | None:
    """Return the primary header's 80-character cards and the byte offset of its data.

    None without an END card.
    """
    cards: list[str] = []
    pos = 0
    while pos + _BLOCK <= len(buf):
        block = buf[pos : pos + _BLOCK].decode("ascii", errors="replace")
        pos += _BLOCK
        for i in range(0, _BLOCK, _CARD):
            card = block[i : i + _CARD]
            if card[:8] == "END     ":
                return cards, pos
            cards.append(card)
    return None


def _card_value(card: str) -> str:
    return card[10:].split("/", 1)[0].strip()


def _fast_read(buf: bytes, path: Path) -> tuple[np.ndarray, list[str]] | None:
    """Return the data and header cards of a simple float primary image; None when the file needs astropy."""
    if not buf.startswith(b"SIMPLE  =") or len(buf) < _BLOCK:
        return None
    parsed = _header_cards(buf)
    if parsed is None:
        return None
    cards, offset = parsed
    values = {card[:8].rstrip(): _card_value(card) for card in cards if card[8:10] == "= "}
    try:
        bitpix, naxis = int(values["BITPIX"]), int(values["NAXIS"])
        if naxis != 2 or bitpix not in (-32, -64):
            return None
        nx, ny = int(values["NAXIS1"]), int(values["NAXIS2"])
        bscale, bzero = float(values.get("BSCALE", "1")), float(values.get("BZERO", "0"))
    except (KeyError, ValueError):
        return None
    if (bscale, bzero) != (1.0, 0.0):
        return None  # scaled data: let astropy apply the scaling
    nbytes = nx * ny * abs(bitpix) // 8
    if len(buf) < offset + nbytes:
        msg = f"{path}: truncated FITS file ({len(buf)} bytes, the {nx}x{ny} image needs {offset + nbytes})"
        raise GalaxyImageError("corrupt_fits", msg)
    dtype = ">f4" if bitpix == -32 else ">f8"
    data = np.frombuffer(buf, dtype=dtype, count=nx * ny, offset=offset).reshape(ny, nx).astype(np.float32)
    return data, cards


def _astropy_read(path: Path) -> tuple[np.ndarray, list[str]]:
    from astropy.io import fits

    try:
        with fits.open(path, memmap=False) as hdul:
            hdu = next((h for h in hdul if h.is_image and h.data is not None and h.data.ndim == 2), None)
            if hdu is None:
                raise GalaxyImageError("corrupt_fits", f"{path}: no HDU holds a 2-D image")
            data = np.asarray(hdu.data, dtype=np.float32)
            cards = [card.image for card in hdu.header.cards]
    except GalaxyImageError:
        raise
    except (OSError, ValueError, TypeError, IndexError, KeyError, fits.VerifyError) as err:
        raise GalaxyImageError("corrupt_fits", f"{path}: unreadable FITS file ({err})") from err
    return data, cards


def _make_wcs(cards: list[str], path: Path) -> Any:
    from astropy.wcs import WCS, Wcsprm

    distorted = any(card.startswith(_DISTORTION_PREFIXES) for card in cards)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # FITSFixedWarning for deprecated keywords that wcsfix repairs
            if distorted:
                wcs = WCS("".join(cards), naxis=2)
                wcsprm = wcs.wcs
            else:
                header = "".join(card for card in cards if card.startswith(_WCS_PREFIXES))
                wcsprm = wcs = Wcsprm(header.encode("ascii", "replace"))
                wcsprm.fix()
                wcsprm.set()
    except Exception as err:  # wcslib raises several types for a malformed or singular WCS
        raise GalaxyImageError("bad_wcs", f"{path}: header has no usable WCS ({err})") from err
    if wcsprm.naxis != 2 or wcsprm.lng < 0 or wcsprm.lat < 0:
        msg = f"{path}: header has no celestial WCS (CTYPE1/2 missing or not RA/Dec)"
        raise GalaxyImageError("bad_wcs", msg)
    return wcs


def load_fits_image(path: str | Path) -> tuple[np.ndarray, Any]:
    """Read the 2-D image and the celestial WCS of a FITS file.

    Parameters
    ----------
    path : str or Path
        FITS file; the first HDU holding 2-D data is used (the primary HDU for SDSS cut-outs and mosaics).

    Returns
    -------
    data : (ny, nx) ndarray of float32
        Pixel values as stored (native byte order); may hold NaN.
    wcs : astropy.wcs.Wcsprm or astropy.wcs.WCS
        Celestial WCS; use it through :func:`sky_to_pixel` and :func:`pixel_scale_arcsec`.

    Raises
    ------
    GalaxyImageError
        ``missing_fits`` if the file does not exist; ``corrupt_fits`` if it cannot be parsed, is truncated or
        holds no 2-D image; ``bad_wcs`` if its header has no usable celestial WCS.
    """
    path = Path(path)
    if not path.is_file():
        raise GalaxyImageError("missing_fits", f"{path}: FITS file is missing")
    try:
        buf = path.read_bytes()
    except OSError as err:
        raise GalaxyImageError("corrupt_fits", f"{path}: cannot read the file ({err})") from err
    fast = _fast_read(buf, path)
    data, cards = fast if fast is not None else _astropy_read(path)
    return data, _make_wcs(cards, path)


def sky_to_pixel(wcs: Any, ra_deg: Any, dec_deg: Any) -> np.ndarray:
    """Sky positions to 0-based pixel positions.

    Parameters
    ----------
    wcs : astropy.wcs.Wcsprm or astropy.wcs.WCS
        From :func:`load_fits_image`.
    ra_deg, dec_deg : float or (n,) ndarray of float
        ICRS coordinates in degrees.

    Returns
    -------
    (n, 2) ndarray of float64
        (x, y) pixel positions; NaN where the projection fails.
    """
    ra = np.atleast_1d(np.asarray(ra_deg, dtype=np.float64))
    dec = np.atleast_1d(np.asarray(dec_deg, dtype=np.float64))
    if ra.size == 0:
        return np.empty((0, 2))
    with warnings.catch_warnings(), np.errstate(invalid="ignore"):
        warnings.simplefilter("ignore")
        if hasattr(wcs, "all_world2pix"):
            x, y = wcs.all_world2pix(ra, dec, 0)
            return np.column_stack([x, y])
        result = wcs.s2p(np.column_stack([ra, dec]), 0)
    pixels = np.asarray(result["pixcrd"], dtype=np.float64)
    pixels[np.asarray(result["stat"]) != 0] = np.nan
    return pixels


def pixel_scale_arcsec(wcs: Any) -> float:
    """Pixel size in arcsec: the square root of the pixel's area on the sky at the reference point.

    Parameters
    ----------
    wcs : astropy.wcs.Wcsprm or astropy.wcs.WCS
        From :func:`load_fits_image`.

    Returns
    -------
    float
    """
    wcsprm = wcs.wcs if hasattr(wcs, "wcs") else wcs
    matrix = np.diag(wcsprm.get_cdelt()) @ wcsprm.get_pc()
    return float(math.sqrt(abs(np.linalg.det(matrix)))) * 3600.0
