"""SDSS frames: the DR12 mosaic service's script, the frame cache.

Single-frame cut-outs and reprojected mosaics.

The mosaic service (``https://dr12.sdss.org/mosaics/script?...``) answers with a bash script that downloads
the frames covering the requested field and runs SWarp on them (reference/data_formats.md §3.1). Only the
frame list is taken from it; the frames are fetched from ``fetch.frames_url`` (a mirror or a local copy of
``.../BOSS_PHOTOOBJ/frames``) and combined here with reproject onto a north-up TAN grid centred on the galaxy
(mean of overlapping frames; SWarp's median needs at least three), or cut out of a single frame when one frame
holds the whole field of view (no resampling at all). Pixel values stay in nanomaggies per pixel, as in the
frames.
"""

from __future__ import annotations

import bz2
import io
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.nddata import Cutout2D, NoOverlapError, PartialOverlapError
from astropy.wcs import WCS

from morphomass.errors import FetchError, InputDataError
from morphomass.fetch.http import HttpClient, check_not_html, local_path

__all__ = [
    "FrameId",
    "FrameStore",
    "MosaicScript",
    "cutout_from_frame",
    "fov_pixels",
    "mosaic_frames",
    "parse_mosaic_script",
    "read_frame",
    "target_wcs",
]

_FRAME_RE = re.compile(
    r"frames/(?P<rerun>\d+)/(?P<run>\d+)/(?P<camcol>[1-6])/"
    r"frame-(?P<band>[ugriz])-(?P<run6>\d{6})-(?P<camcol2>[1-6])-(?P<field>\d{4})\.fits\.bz2"
)
_CENTER_RE = re.compile(r"^\s*CENTER\s+([-+0-9.eE]+)\s*,\s*([-+0-9.eE]+)", re.MULTILINE)
_SIZE_RE = re.compile(r"^\s*IMAGE_SIZE\s+(\d+)\s*,\s*(\d+)", re.MULTILINE)
_SCALE_RE = re.compile(r"^\s*PIXEL_SCALE\s+([0-9.eE+-]+)", re.MULTILINE)
_NAME_RE = re.compile(r"IMAGEOUT_NAME\s*(\S*)")
_FRAME_SHAPE_MIN = 8
#: Frame pixels kept around the output footprint when a frame is cropped before resampling.
_CROP_MARGIN = 16


@dataclass(frozen=True, order=True)
class FrameId:
    """One SDSS field (the same for every band): rerun, run, camera column, field number."""

    rerun: int
    run: int
    camcol: int
    field: int

    def file_name(self, band: str) -> str:
        """``frame-g-003650-1-0090.fits.bz2``."""
        return f"frame-{band}-{self.run:06d}-{self.camcol}-{self.field:04d}.fits.bz2"

    def rel_path(self, band: str) -> str:
        """Path under ``.../BOSS_PHOTOOBJ/frames/``: ``301/3650/1/frame-g-003650-1-0090.fits.bz2``."""
        return f"{self.rerun}/{self.run}/{self.camcol}/{self.file_name(band)}"


@dataclass(frozen=True)
class MosaicScript:
    """What a mosaic-service script says.

    Attributes
    ----------
    frames : tuple of FrameId
        Fields to combine, each once, in the script's order.
    bands : tuple of str
        Bands the script downloads frames for.
    center_deg : (ra, dec) or None
        SWarp ``CENTER``.
    image_size : (nx, ny) or None
        SWarp ``IMAGE_SIZE`` in pixels.
    pixel_scale_arcsec : float or None
        SWarp ``PIXEL_SCALE``.
    output_name : str or None
        SWarp ``IMAGEOUT_NAME`` (``J132947.00+471338.0-r.fits``).
    """

    frames: tuple[FrameId, ...]
    bands: tuple[str, ...]
    center_deg: tuple[float, float] | None
    image_size: tuple[int, int] | None
    pixel_scale_arcsec: float | None
    output_name: str | None


def parse_mosaic_script(text: str, *, source: str) -> MosaicScript:
    """Read the frame list and the SWarp settings out of a DR12 mosaic-service script.

    Parameters
    ----------
    text : str
        The script.
    source : str
        Its URL, for messages.

    Returns
    -------
    MosaicScript
        ``frames`` is empty when the service found no frame (a position outside the SDSS imaging).

    Raises
    ------
    InputDataError
        An HTML page, or text that is not a mosaic script (no ``#!`` line and no ``swarp`` call).
    """
    stripped = text.lstrip("\ufeff \t\r\n")
    if stripped[:1] == "<":
        title = re.search(r"<title>(.*?)</title>", stripped, re.IGNORECASE | re.DOTALL)
        what = f" (title: {' '.join(title.group(1).split())!r})" if title else ""
        msg = f"{source}: the mosaic service answered with an HTML page{what} instead of a script"
        raise InputDataError(msg)
    if not stripped.startswith("#!") and "swarp" not in text:
        msg = (
            f"{source}: not a mosaic-service script (a bash script running swarp); "
            f"it starts {stripped[:60]!r}"
        )
        raise InputDataError(msg)
    frames: dict[FrameId, None] = {}
    bands: dict[str, None] = {}
    for match in _FRAME_RE.finditer(text):
        if match["run6"].lstrip("0") != match["run"].lstrip("0") or match["camcol2"] != match["camcol"]:
            continue  # path and file name disagree: not a frame reference
        frames[FrameId(int(match["rerun"]), int(match["run"]), int(match["camcol"]), int(match["field"]))] = (
            None
        )
        bands[match["band"]] = None
    center = _CENTER_RE.search(text)
    size = _SIZE_RE.search(text)
    scale = _SCALE_RE.search(text)
    name = _NAME_RE.search(text)
    return MosaicScript(
        frames=tuple(frames),
        bands=tuple(bands),
        center_deg=(float(center[1]), float(center[2])) if center else None,
        image_size=(int(size[1]), int(size[2])) if size else None,
        pixel_scale_arcsec=float(scale[1]) if scale else None,
        output_name=name[1] if name and name[1] else None,
    )


def fov_pixels(d25_arcmin: float, *, fov_factor: float, pixel_scale_arcsec: float) -> int:
    """Side in pixels of the square field of view ``fov_factor x D25`` (at least 8)."""
    return max(_FRAME_SHAPE_MIN, round(fov_factor * d25_arcmin * 60.0 / pixel_scale_arcsec))


def target_wcs(ra_deg: float, dec_deg: float, *, npix: int, pixel_scale_arcsec: float) -> WCS:
    """North-up, east-left TAN WCS (CD matrix) of an ``npix`` x ``npix`` image centred on (ra, dec)."""
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.cunit = ["deg", "deg"]
    wcs.wcs.crval = [ra_deg, dec_deg]
    wcs.wcs.crpix = [(npix + 1) / 2, (npix + 1) / 2]
    scale = pixel_scale_arcsec / 3600.0
    wcs.wcs.cd = [[-scale, 0.0], [0.0, scale]]
    return wcs


def read_frame(path: Path, *, source: str) -> tuple[np.ndarray, WCS]:
    """Read an SDSS frame (``.fits.bz2`` or plain FITS): the primary image (float32 nanomaggies) and its WCS.

    Raises
    ------
    InputDataError
        Corrupt bzip2 or FITS, no 2-D primary image, or no celestial WCS.
    """
    raw = Path(path).read_bytes()
    try:
        if raw[:3] == b"BZh":
            raw = bz2.decompress(raw)
        with fits.open(io.BytesIO(raw), memmap=False) as hdul:
            data = hdul[0].data
            header = hdul[0].header
            if data is None or data.ndim != 2:
                msg = f"{source}: the primary HDU holds no 2-D image"
                raise InputDataError(msg)
            data = np.asarray(data, dtype=np.float32)
    except InputDataError:
        raise
    except (OSError, ValueError, EOFError, TypeError) as err:
        msg = f"{source}: not a readable SDSS frame (bzip2-compressed FITS): {err}"
        raise InputDataError(msg) from err
    wcs = WCS(_celestial_header(header), naxis=2)
    if not wcs.has_celestial:
        msg = f"{source}: the frame header has no celestial WCS"
        raise InputDataError(msg)
    return data, wcs


def _celestial_header(header: fits.Header) -> fits.Header:
    """Only the WCS keywords of a frame header, with the deprecated ``RADECSYS`` renamed ``RADESYS``.

    astropy would otherwise warn (``FITSFixedWarning``) about ``RADECSYS`` and the date keywords of every SDSS
    frame; silencing that with ``warnings.catch_warnings`` is not thread-safe, and frames are read in threads.
    """
    keep = re.compile(
        r"^(NAXIS\d|CTYPE\d|CUNIT\d|CRPIX\d|CRVAL\d|CDELT\d|CROTA\d|CD\d_\d|PC\d_\d|"
        r"LONPOLE|LATPOLE|EQUINOX|RADESYS|PV\d_\d+|(A|B|AP|BP)_(ORDER|\d+_\d+))$"
    )
    out = fits.Header()
    out["NAXIS"] = 2
    for card in header.cards:
        if keep.match(card.keyword):
            out[card.keyword] = card.value
    if "RADECSYS" in header and "RADESYS" not in out:
        out["RADESYS"] = header["RADECSYS"]
    return out


def cutout_from_frame(
    data: np.ndarray, wcs: WCS, *, ra_deg: float, dec_deg: float, npix: int
) -> tuple[np.ndarray, WCS] | None:
    """Cut an ``npix`` x ``npix`` image centred on (ra, dec) out of one frame, in the frame's own pixel grid.

    Parameters
    ----------
    data : (ny, nx) array
        The frame, nanomaggies per pixel.
    wcs : WCS
        Its celestial WCS.
    ra_deg, dec_deg : float
        Centre, degrees.
    npix : int
        Side of the cut-out in frame pixels.

    Returns
    -------
    (image, wcs) or None
        float32 copy of the pixels and the cut-out's WCS; None when the square does not lie wholly in the
        frame.
    """
    position = SkyCoord(ra_deg * u.deg, dec_deg * u.deg, frame="icrs")
    try:
        cut = Cutout2D(data, position, (npix, npix), wcs=wcs, mode="strict", copy=True)
    except (NoOverlapError, PartialOverlapError, ValueError):
        return None
    return np.asarray(cut.data, dtype=np.float32), cut.wcs


def mosaic_frames(
    frames: Sequence[tuple[np.ndarray, WCS]],
    *,
    ra_deg: float,
    dec_deg: float,
    npix: int,
    pixel_scale_arcsec: float,
    order: str = "bicubic",
) -> tuple[np.ndarray, WCS, float]:
    """Reproject frames onto a north-up TAN grid centred on (ra, dec) and average where they overlap.

    Parameters
    ----------
    frames : sequence of (data, wcs)
        Frames in nanomaggies per pixel (same pixel scale as the output, so values stay per-pixel fluxes).
    ra_deg, dec_deg : float
        Centre, degrees.
    npix : int
        Output side, pixels.
    pixel_scale_arcsec : float
        Output pixel scale.
    order : {'bilinear', 'bicubic'}
        Interpolation of ``reproject_interp``.

    Returns
    -------
    image : (npix, npix) float32 array
        Pixels no frame covers are 0.
    wcs : WCS
        :func:`target_wcs` of the output.
    coverage : float
        Fraction of output pixels covered by at least one frame.
    """
    from reproject import reproject_interp
    from reproject.mosaicking import reproject_and_coadd

    out_wcs = target_wcs(ra_deg, dec_deg, npix=npix, pixel_scale_arcsec=pixel_scale_arcsec)
    # Only the part of each frame under the output (plus a margin for the interpolation kernel and the spline
    # prefilter) is resampled: prefiltering a whole 2048 x 1489 frame would cost ~0.1 s per galaxy.
    edge = np.linspace(-0.5, npix - 0.5, 9)
    border_x = np.concatenate([edge, edge, np.full(9, -0.5), np.full(9, npix - 0.5)])
    border_y = np.concatenate([np.full(9, -0.5), np.full(9, npix - 0.5), edge, edge])
    border = out_wcs.pixel_to_world_values(border_x, border_y)
    pieces = [piece for data, wcs in frames if (piece := _crop(data, wcs, border)) is not None]
    if not pieces:
        return np.zeros((npix, npix), np.float32), out_wcs, 0.0
    image, footprint = reproject_and_coadd(
        pieces,
        out_wcs,
        shape_out=(npix, npix),
        reproject_function=reproject_interp,
        combine_function="mean",
        order=order,
    )
    covered = footprint > 0
    image = np.where(covered & np.isfinite(image), image, 0.0).astype(np.float32)
    return image, out_wcs, float(covered.mean())


def _crop(data: np.ndarray, wcs: WCS, border: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, WCS] | None:
    """Return the part of a frame (float64) and its WCS covering the sky points ``border``.

    ``border`` is (ra, dec); None when the frame does not cover them.
    """
    x, y = wcs.world_to_pixel_values(*border)
    if not (np.isfinite(x).all() and np.isfinite(y).all()):  # the output lies beyond this frame's projection
        return None
    ny, nx = data.shape
    x0, x1 = max(0, int(np.floor(x.min())) - _CROP_MARGIN), min(nx, int(np.ceil(x.max())) + _CROP_MARGIN)
    y0, y1 = max(0, int(np.floor(y.min())) - _CROP_MARGIN), min(ny, int(np.ceil(y.max())) + _CROP_MARGIN)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    return np.asarray(data[y0:y1, x0:x1], dtype=np.float64), wcs[y0:y1, x0:x1]


class FrameStore:
    """Frames on disk (a cache shared between galaxies and runs) and the last few decoded ones in memory.

    Parameters
    ----------
    client : HttpClient
    base_url : str
        ``.../BOSS_PHOTOOBJ/frames`` (network URL, ``file://`` URL or local folder).
    cache_dir : Path
        Where the ``.fits.bz2`` files are kept, under ``<rerun>/<run>/<camcol>/``.
    memory_frames : int
        Decoded frames kept in memory (about 12 MB each).
    max_bytes : int, optional
        Disk budget of the cache; :meth:`prune` removes the least recently used frames above it.
    """

    def __init__(
        self,
        client: HttpClient,
        *,
        base_url: str,
        cache_dir: Path,
        memory_frames: int = 16,
        max_bytes: int | None = None,
    ) -> None:
        self.client = client
        self.base_url = base_url.rstrip("/")
        self.cache_dir = Path(cache_dir)
        self.memory_frames = memory_frames
        self.max_bytes = max_bytes
        self._decoded: OrderedDict[Path, tuple[np.ndarray, WCS]] = OrderedDict()
        self._lock = threading.Lock()

    def path(self, frame: FrameId, band: str) -> Path:
        """Cache path of one frame."""
        return self.cache_dir / frame.rel_path(band)

    def url(self, frame: FrameId, band: str) -> str:
        """Where one frame is fetched from."""
        return f"{self.base_url}/{frame.rel_path(band)}"

    def get(self, frame: FrameId, band: str) -> tuple[np.ndarray, WCS]:
        """Return the frame's image and WCS, from memory, the disk cache or the server.

        One new download if corrupt.

        A local copy of the archive (``base_url`` a folder or ``file://`` URL) is read in place, not cached.

        Raises
        ------
        FetchError
            The frame could not be downloaded, or is missing from the local copy.
        InputDataError
            The frame is not a readable bzip2-compressed FITS image (twice, for a downloaded one).
        """
        url = self.url(frame, band)
        local = local_path(url)
        path = local if local is not None else self.path(frame, band)
        with self._lock:
            if path in self._decoded:
                self._decoded.move_to_end(path)
                return self._decoded[path]
        if local is not None:
            if not local.is_file():
                msg = f"frame {local} is missing from the local copy of the archive"
                raise FetchError(msg)
            decoded = read_frame(local, source=url)
        else:
            decoded = self._download_and_read(url, path)
        with self._lock:
            self._decoded[path] = decoded
            while len(self._decoded) > self.memory_frames:
                self._decoded.popitem(last=False)
        return decoded

    def _download_and_read(self, url: str, path: Path) -> tuple[np.ndarray, WCS]:
        for attempt in (0, 1):
            self.client.download(url, path, validate=lambda p: _check_bzip2_fits(p, source=url))
            with self.client.file_lock(path):
                if not path.exists():
                    continue  # pruned between the download and now
                try:
                    decoded = read_frame(path, source=url)
                except InputDataError:
                    path.unlink(missing_ok=True)  # damaged: download it once more
                    if attempt == 1:
                        raise
                    continue
                path.touch()
                return decoded
        msg = f"{url}: the frame vanished from the cache twice while being read"
        raise FetchError(msg)

    def prune(self) -> int:
        """Remove least recently used frames until the cache fits ``max_bytes``.

        Return how many were removed.
        """
        if self.max_bytes is None or not self.cache_dir.exists():
            return 0
        files = [(p.stat().st_mtime, p.stat().st_size, p) for p in self.cache_dir.rglob("*.fits.bz2")]
        total = sum(size for _, size, _ in files)
        removed = 0
        for _, size, path in sorted(files):
            if total <= self.max_bytes:
                break
            lock = self.client.file_lock(path)
            if not lock.acquire(blocking=False):
                continue
            try:
                path.unlink(missing_ok=True)
            finally:
                lock.release()
            total -= size
            removed += 1
        return removed


def _check_bzip2_fits(path: Path, *, source: str) -> None:
    """Cheap check of a downloaded frame: bzip2 magic (or plain FITS); full decoding happens on use."""
    with open(path, "rb") as fh:
        head = fh.read(6)
    if head[:3] != b"BZh" and head != b"SIMPLE":
        check_not_html(path, source=source, expected="a bzip2-compressed FITS frame")
        msg = f"{source}: not a bzip2-compressed FITS frame (starts with {head!r})"
        raise InputDataError(msg)
