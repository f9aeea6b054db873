"""A local stand-in for the archives ``morphomass fetch`` talks to, started by the tests on 127.0.0.1.

:func:`build_sky` makes a small universe around a real SDSS frame cut-out (``data/J081316_tr.fits``: real sky,
noise, stars and WCS) cut into two overlapping "frames"; :class:`FakeArchive` serves it in the real formats:
GSWLC-2 ``.dat.gz``, HyperLeda's '|' text, VizieR's TSV, the Hart+16 CSV (gzipped), SkyServer CSV answers to
the fetcher's SQL, DR12 mosaic-service scripts made from the real script in ``data/`` with the frame list
replaced, and bzip2 FITS frames. Faults can be injected per path: an HTTP status, a connection dropped after N
bytes, an HTML page, or any other body.
"""

from __future__ import annotations

import bz2
import gzip
import io
import re
import threading
import warnings
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import numpy as np
import pandas as pd
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

from morphomass import gz2
from morphomass.config import PipelineConfig, load_config
from morphomass.fetch.frames import FrameId
from morphomass.rawformats import GSWLC, write_gswlc, write_gz2

DATA = Path(__file__).parents[1] / "data" / "sdss_real"
FRAME_SOURCE = DATA / "J081316_tr.fits"
SCRIPT_TEMPLATE = DATA / "J132947.00+471338.0.sh"
SAS_PREFIX = "/sas/dr12/env/BOSS_PHOTOOBJ/frames"
REAL_SAS = "https://data.sdss.org/sas/dr12/env/BOSS_PHOTOOBJ/frames"
#: The two frames cut from the 241 x 241 fixture: columns [0, 150) and [95, 241) (55 columns overlap).
FRAME_A = FrameId(301, 3635, 2, 80)
FRAME_B = FrameId(301, 3635, 2, 81)
FRAME_COLUMNS = {FRAME_A: (0, 150), FRAME_B: (95, 241)}
HTML_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>503 Service Unavailable</title></head>"
    b"<body><h1>Service Unavailable</h1></body></html>\n"
)


# ------------------------------------------------------------------------------------------------ the
# universe


@dataclass
class FakeSky:
    """What the fake archives hold (``galaxies`` is the truth the tests check against)."""

    galaxies: pd.DataFrame
    gswlc_text: bytes
    leda: pd.DataFrame
    gz2_text: bytes
    sdss: pd.DataFrame
    stars: pd.DataFrame
    frames: dict[FrameId, tuple[np.ndarray, WCS, bytes]]
    source_data: np.ndarray
    source_wcs: WCS
    region: tuple[float, float, float, float]


def _gz2_table(ra: np.ndarray, dec: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
    n = len(ra)
    columns: dict[str, Any] = {
        "dr7objid": 587730000000000000 + np.arange(n) * 11,
        "ra": ra,
        "dec": dec,
        "rastring": ["08:13:16.00"] * n,
        "decstring": ["+22:50:00.0"] * n,
        "sample": ["original"] * n,
        "gz2_class": ["Sc"] * n,
        "total_classifications": [44] * n,
        "total_votes": [200] * n,
    }
    fractions = np.zeros((n, len(gz2.ANSWERS)))
    for question in gz2.QUESTIONS:
        idx = [gz2.answer_index(a.answer_id) for a in question.answers]
        draw = np.round(rng.dirichlet(np.ones(len(idx)), size=n), 3)
        draw[:, -1] = np.round(1.0 - draw[:, :-1].sum(axis=1), 3)
        fractions[:, idx] = draw
    for k, answer in enumerate(gz2.ANSWERS):
        columns[gz2.hart16_column(answer, "count")] = np.round(fractions[:, k] * 40).astype(int)
        columns[gz2.hart16_column(answer, "weight")] = np.round(fractions[:, k] * 38, 3)
        for kind in ("fraction", "weighted_fraction", "debiased"):
            columns[gz2.hart16_column(answer, kind)] = fractions[:, k]
        columns[gz2.hart16_column(answer, "flag")] = (fractions[:, k] > 0.8).astype(int)
    return pd.DataFrame(columns)[gz2.hart16_columns()]


def _wcs(header: fits.Header) -> WCS:
    """Return the WCS of a real SDSS header, without astropy's notes on its deprecated RADECSYS keyword."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        return WCS(header)


def build_sky(tmp: Path, *, seed: int = 5) -> FakeSky:
    """Eight image targets on two overlapping frames.

    Also five GSWLC galaxies that are not targets, GZ2 and photometry.
    """
    rng = np.random.default_rng(seed)
    with fits.open(FRAME_SOURCE) as hdul:
        data = np.asarray(hdul[0].data, dtype=np.float32)
        header = hdul[0].header.copy()
    wcs = _wcs(header)
    frames = {}
    for frame, (x0, x1) in FRAME_COLUMNS.items():
        sub_header = header.copy()
        sub_header["CRPIX1"] = header["CRPIX1"] - x0
        sub_header["FRAME"] = frame.field
        sub_header["RUN"], sub_header["CAMCOL"] = frame.run, frame.camcol
        hdul = fits.HDUList(
            [
                fits.PrimaryHDU(data[:, x0:x1], sub_header),
                fits.ImageHDU(np.ones(x1 - x0, np.float32), name="CALIBVEC"),
            ]
        )
        buffer = io.BytesIO()
        hdul.writeto(buffer)
        frames[frame] = (data[:, x0:x1], _wcs(sub_header), bz2.compress(buffer.getvalue()))

    # pixel positions in the 241 x 241 source; (120, 120) is the real galaxy. Two FoVs need both frames.
    target_pix = [(120, 120), (120, 52), (40, 45), (40, 195), (200, 45), (200, 195), (60, 120), (185, 120)]
    logd25 = [0.70, 0.62, 0.62, 0.63, 0.62, 0.64, 0.62, 0.62]
    other_pix = {"small": (150, 200), "chi2": (70, 70), "nomass": (170, 80), "noleda": (100, 210)}
    roles = ["target"] * len(target_pix) + list(other_pix)
    pix = np.array(target_pix + list(other_pix.values()), dtype=float)
    ra, dec = wcs.pixel_to_world_values(pix[:, 0], pix[:, 1])
    ra = np.append(ra, ra[0] + 20.0)  # a target far from any frame (outside the region, outside the imaging)
    dec = np.append(dec, dec[0])
    roles.append("far")
    n = len(roles)
    objid = 1237660000000000000 + np.arange(n, dtype=np.int64) * 1013 + 7
    galaxies = pd.DataFrame(
        {
            "objid": objid,
            "ra": ra,
            "dec": dec,
            "role": roles,
            "logd25": logd25 + [0.50, 0.66, 0.66, 0.66, 0.66],
            "method": ["mosaic", "mosaic"] + ["cutout"] * 6 + [""] * 5,
        }
    )
    galaxies["d25_arcmin"] = 0.1 * 10 ** galaxies["logd25"]
    gswlc = pd.DataFrame({name: np.zeros(n) for name in GSWLC.names})
    gswlc["objid"] = objid
    gswlc["glxid"] = np.where(np.arange(n) % 3 == 0, -99, 6375000000000000000 + np.arange(n))
    gswlc["plate"], gswlc["mjd"], gswlc["fiber_id"] = 2000 + np.arange(n), 53000, 10 + np.arange(n)
    gswlc["ra"], gswlc["dec"] = ra, dec
    gswlc["z"] = rng.uniform(0.02, 0.08, n)
    gswlc["chi2_r"] = np.where(galaxies["role"] == "chi2", 8.0, rng.uniform(0.5, 3.0, n))
    gswlc["log_mstar"] = np.where(galaxies["role"] == "nomass", -99.0, rng.uniform(9.8, 11.0, n))
    gswlc["log_mstar_err"] = np.where(galaxies["role"] == "nomass", -99.0, rng.uniform(0.05, 0.12, n))
    for name in ("log_sfr_sed", "log_sfr_sed_err", "a_fuv", "a_fuv_err", "a_b", "a_b_err", "a_v", "a_v_err"):
        gswlc[name] = rng.uniform(0.0, 1.0, n)
    for name in ("flag_sed", "uv_survey", "flag_uv", "flag_midir", "flag_mgs"):
        gswlc[name] = 1
    gswlc_path = tmp / "GSWLC-X2.dat"
    write_gswlc(gswlc_path, gswlc)
    galaxies["z"] = gswlc["z"]

    has_leda = (galaxies["role"] != "noleda").to_numpy()
    offset = 0.4 / 3600.0
    leda = pd.DataFrame(
        {
            "pgc": 4000 + np.arange(n)[has_leda],
            "objname": [f"PGC{4000 + k:07d}" for k in np.arange(n)[has_leda]],
            "objtype": "G",
            "al2000": (ra[has_leda] + offset) / 15.0,
            "de2000": dec[has_leda] - offset,
            "logd25": galaxies["logd25"].to_numpy()[has_leda],
            "e_logd25": 0.05,
            "logr25": 0.1,
            "pa": np.where(np.arange(has_leda.sum()) % 4 == 1, np.nan, 45.0),
        }
    )

    gz2_rows = [0, 1, 2, 3, 5, 6, n - 1]
    gz2_ra = np.append(ra[gz2_rows] - 0.5 / 3600.0, 200.0)
    gz2_dec = np.append(dec[gz2_rows], -1.0)
    gz2_path = tmp / "gz2_hart16.csv"
    write_gz2(gz2_path, _gz2_table(gz2_ra, gz2_dec, rng))

    sdss = pd.DataFrame({"objID": objid, "ra": ra + 0.2 / 3600.0, "dec": dec})
    sdss.loc[3, "objID"] = objid[3] + 1  # the DR12 objID differs from GSWLC's
    sdss = sdss.drop(index=4).reset_index(drop=True)  # target 4 has no photometric counterpart
    g = rng.uniform(15.5, 17.0, len(sdss))
    for band, colour in zip("ugriz", (1.6, 0.0, -0.7, -1.1, -1.4), strict=True):
        sdss[f"modelMag_{band}"] = g + colour
        sdss[f"modelMagErr_{band}"] = rng.uniform(0.002, 0.03, len(sdss))
    star_pix = rng.uniform(10, 230, size=(6, 2))
    star_ra, star_dec = wcs.pixel_to_world_values(star_pix[:, 0], star_pix[:, 1])
    stars = pd.DataFrame(
        {
            "objID": 1237660000900000000 + np.arange(8, dtype=np.int64),
            "ra": np.append(star_ra, [ra[-1] + 0.01, 10.0]),
            "dec": np.append(star_dec, [dec[-1], 10.0]),
            "type": 6,
            "psfMag_g": rng.uniform(17, 21, 8),
        }
    )
    centre_ra, centre_dec = wcs.pixel_to_world_values(120, 120)
    region = (
        float(centre_ra) - 0.05,
        float(centre_ra) + 0.05,
        float(centre_dec) - 0.05,
        float(centre_dec) + 0.05,
    )
    return FakeSky(
        galaxies=galaxies,
        gswlc_text=gswlc_path.read_bytes(),
        leda=leda,
        gz2_text=gz2_path.read_bytes(),
        sdss=sdss,
        stars=stars,
        frames=frames,
        source_data=data,
        source_wcs=wcs,
        region=region,
    )


# ------------------------------------------------------------------------------------------------ answers


def _values(sql: str, alias: str) -> list[list[str]]:
    """Return the rows of the fetcher's ``(VALUES (...), ...) AS v(<alias>)`` table, as strings."""
    match = re.search(r"VALUES (.*?) AS v\(" + re.escape(alias) + r"\)", sql)
    assert match, sql
    return [t.split(",") for t in re.findall(r"\(([^()]*)\)", match[1])]


def _sep_arcsec(ra1: float, dec1: float, ra2: np.ndarray, dec2: np.ndarray) -> np.ndarray:
    return SkyCoord(ra1, dec1, unit="deg").separation(SkyCoord(ra2, dec2, unit="deg")).arcsec


def answer_sql(sky: FakeSky, sql: str) -> str:
    """SkyServer's CSV answer to the fetcher's photometry and star queries."""
    if "fGetNearestObjEq" in sql:
        radius_arcmin = float(re.search(r"fGetNearestObjEq\(v\.ra,v\.dec,([0-9.eE+-]+)\)", sql)[1])
        columns = [
            "input_id",
            "objID",
            "ra",
            "dec",
            *(c for c in sky.sdss.columns if c.startswith("modelMag")),
        ]
        rows = []
        for objid, ra, dec in _values(sql, "id,ra,dec"):
            sep = _sep_arcsec(float(ra), float(dec), sky.sdss["ra"].to_numpy(), sky.sdss["dec"].to_numpy())
            k = int(np.argmin(sep))
            if sep[k] <= radius_arcmin * 60:
                found = sky.sdss.iloc[k]
                rows.append(
                    [int(objid), int(sky.sdss["objID"].iloc[k]), *found[columns[2:]].astype(float).tolist()]
                )
        table = pd.DataFrame(rows, columns=columns)
    elif "fGetNearbyObjEq" in sql:
        hits = set()
        for ra, dec, radius_arcmin in _values(sql, "ra,dec,r"):
            sep = _sep_arcsec(float(ra), float(dec), sky.stars["ra"].to_numpy(), sky.stars["dec"].to_numpy())
            hits |= set(np.flatnonzero(sep <= float(radius_arcmin) * 60))
        table = sky.stars.iloc[sorted(hits)]
    else:
        raise AssertionError(sql)
    table = table.astype({c: np.int64 for c in ("input_id", "objID", "type") if c in table})
    return "#Table1\n" + table.to_csv(index=False, lineterminator="\n")


def answer_leda(sky: FakeSky, sql: str) -> str:
    """HyperLeda's '|' text for the box of the fetcher's SQL.

    Padded fields, a comment, a trailing '|', NaN.
    """
    box = re.search(
        r"al2000>=([0-9.]+) and al2000<([0-9.]+) and de2000>=([-0-9.]+) and de2000<([-0-9.]+)", sql
    )
    logd25_min = float(re.search(r"logd25>([0-9.]+)", sql)[1])
    h1, h2, d1, d2 = (float(v) for v in box.groups())
    leda = sky.leda
    inside = (
        (leda["al2000"] >= h1)
        & (leda["al2000"] < h2)
        & (leda["de2000"] >= d1)
        & (leda["de2000"] < d2)
        & (leda["logd25"] > logd25_min)
    )
    lines = ["# HyperLeda, meandata", " | ".join(leda.columns) + " |"]
    for row in leda[inside].itertuples(index=False):
        fields = [
            f"{v:.7f}"
            if isinstance(v, float) and not np.isnan(v)
            else ("NaN" if isinstance(v, float) else str(v))
            for v in row
        ]
        lines.append("  " + " | ".join(fields) + " |")
    return "\n".join(lines) + "\n"


def answer_vizier(sky: FakeSky, query: dict[str, str]) -> str:
    """VizieR ASU-TSV of VII/237/pgc (comments, header, units, dashes; degrees)."""
    r1, r2 = (float(v) for v in query["RAJ2000"].split(".."))
    d1, d2 = (float(v) for v in query["DEJ2000"].split(".."))
    leda = sky.leda
    ra = leda["al2000"] * 15
    inside = (ra >= r1) & (ra <= r2) & (leda["de2000"] >= d1) & (leda["de2000"] <= d2)
    lines = [
        "#",
        "#   VizieR Astronomical Server",
        "#RESOURCE=yCat_7237",
        "",
        "PGC\tRAJ2000\tDEJ2000\tOType\tlogD25\te_logD25\tlogR25\tPA",
        '\t"d"\t"d"\t\t[0.1arcmin]\t[0.1arcmin]\t[-]\tdeg',
        "-------\t----------\t----------\t---\t-----\t-----\t-----\t-----",
    ]
    for row, ra_deg in zip(leda[inside].itertuples(index=False), ra[inside], strict=True):
        pa = "" if np.isnan(row.pa) else f"{row.pa:.1f}"
        lines.append(f"{row.pgc}\t{ra_deg:.6f}\t{row.de2000:+.6f}\tG\t{row.logd25:.2f}\t0.05\t0.10\t{pa}")
    return "\n".join(lines) + "\n"


def frames_covering(sky: FakeSky, ra: float, dec: float, size_deg: float) -> list[FrameId]:
    """Return the frames any of a 5 x 5 grid of points of the requested square falls in.

    As the service would list.
    """
    offsets = np.linspace(-size_deg / 2, size_deg / 2, 5)
    dra, ddec = np.meshgrid(offsets / np.cos(np.radians(dec)), offsets)
    chosen = []
    for frame, (_, wcs, _) in sky.frames.items():
        x0, x1 = FRAME_COLUMNS[frame]
        x, y = wcs.world_to_pixel_values((ra + dra).ravel(), (dec + ddec).ravel())
        if np.any((x >= -0.5) & (x <= x1 - x0 - 0.5) & (y >= -0.5) & (y <= 240.5)):
            chosen.append(frame)
    return chosen


def make_mosaic_script(
    frames: list[FrameId], bands: str, ra: float, dec: float, size_deg: float, pixelscale: float
) -> str:
    """Return a DR12 mosaic-service script: the real one in data/, modified.

    Its frames, centre, size and names are replaced.
    """
    template = SCRIPT_TEMPLATE.read_text()
    head, rest = template.split('if [[ -z "${hasPhotoObj}" ]]; then\n', 1)
    swarp_part = rest.split("#\n# Filter = r\n", 1)[1]
    wget, local = [], []
    for band in bands:
        for frame in frames:
            name = frame.file_name(band).removesuffix(".bz2")
            rel = frame.rel_path(band)
            wget.append(
                f"    if [[ ! -f {name} ]]; then\n        wget -q {REAL_SAS}/{rel}\n"
                f"        bzip2 -d -c -k {name}.bz2 > {name}\n    fi\n"
            )
            local.append(
                f"    if [[ ! -f {name} ]]; then\n        bzip2 -d -c -k ${{BOSS_PHOTOOBJ}}/frames/{rel} > "
                f"{name}\n    fi\n"
            )
    script = (
        head + 'if [[ -z "${hasPhotoObj}" ]]; then\n' + "".join(wget) + "else\n" + "".join(local) + "fi\n"
    )
    npix = round(size_deg * 3600 / pixelscale)
    for band in bands:
        out = f"J{ra:09.5f}{dec:+09.5f}-{band}"
        part = re.sub(r"IMAGEOUT_NAME(\s+)\S+", rf"IMAGEOUT_NAME\g<1>{out}.fits", swarp_part)
        part = re.sub(r"WEIGHTOUT_NAME(\s+)\S+", rf"WEIGHTOUT_NAME\g<1>{out}.weight.fits", part)
        part = re.sub(r"CENTER( +)[^#\n]+", rf"CENTER\g<1>{ra:.10f},       {dec:.10f} ", part)
        part = re.sub(r"IMAGE_SIZE( +)\d+,\d+", rf"IMAGE_SIZE\g<1>{npix},{npix}", part)
        names = " ".join(f.file_name(band).removesuffix(".bz2") for f in frames)
        part = re.sub(r"^swarp .*$", f"swarp {names}", part, flags=re.MULTILINE)
        script += f"#\n# Filter = {band}\n" + part
    return script


# ------------------------------------------------------------------------------------------------ the server


@dataclass
class Fault:
    """What the server does instead of answering, ``times`` times.

    ``status``, ``drop`` after N bytes, ``body``.
    """

    kind: str
    times: int = 1
    status: int = 500
    after_bytes: int = 0
    body: bytes = b""


@dataclass
class Request:
    """One request the server received."""

    path: str
    query: dict[str, str]
    headers: dict[str, str]


@dataclass
class FakeArchive:
    """The archives on 127.0.0.1 (start with :meth:`start`); ``requests`` logs every request received."""

    sky: FakeSky
    requests: list[Request] = field(default_factory=list)
    faults: dict[str, list[Fault]] = field(default_factory=dict)
    static: dict[str, tuple[bytes, dict[str, str]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        """Start."""
        self.static.setdefault("/gswlc/GSWLC-X2.dat.gz", (gzip.compress(self.sky.gswlc_text), {}))
        self.static.setdefault("/gz2/gz2_hart16.csv.gz", (gzip.compress(self.sky.gz2_text), {}))
        for frame, (_, _, payload) in self.sky.frames.items():
            for band in "ugriz":
                self.static[f"{SAS_PREFIX}/{frame.rel_path(band)}"] = (payload, {})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.archive = self  # type: ignore[attr-defined]
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def stop(self) -> None:
        """Stop."""
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self) -> str:
        """Url."""
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def fault(self, path: str, kind: str, **kwargs: Any) -> None:
        """Fault."""
        self.faults.setdefault(path, []).append(Fault(kind, **kwargs))

    def take_fault(self, path: str) -> Fault | None:
        """Take fault."""
        with self.lock:
            for fault in self.faults.get(path, []):
                if fault.times > 0:
                    fault.times -= 1
                    return fault
        return None

    def hits(self, prefix: str) -> list[Request]:
        """Hits."""
        with self.lock:
            return [r for r in self.requests if r.path.startswith(prefix)]

    def answer(self, path: str, query: dict[str, str]) -> tuple[int, bytes, dict[str, str]]:
        """Answer."""
        if path in self.static:
            body, headers = self.static[path]
            return 200, body, headers
        if path == "/leda/G.cgi":
            return 200, answer_leda(self.sky, query["sql"]).encode(), {}
        if path == "/vizier/asu-tsv":
            return 200, answer_vizier(self.sky, query).encode(), {}
        if path == "/skyserver/x_results.aspx":
            assert query["format"] == "csv" and query["searchtool"] == "SQL"
            return 200, answer_sql(self.sky, query["cmd"]).encode(), {}
        if path == "/mosaics/script":
            ra, dec, size = float(query["ra"]), float(query["dec"]), float(query["size"])
            frames = frames_covering(self.sky, ra, dec, size)
            text = make_mosaic_script(frames, query["filters"], ra, dec, size, float(query["pixelscale"]))
            return 200, text.encode(), {}
        return 404, b"not found\n", {}

    def config(self, tmp: Path, **fetch: Any) -> PipelineConfig:
        """Return the tiny preset with every fetch URL on this server and quick retries."""
        overrides = {
            "gswlc_url": f"{self.url}/gswlc",
            "hyperleda_url": f"{self.url}/leda/G.cgi",
            "vizier_url": f"{self.url}/vizier/asu-tsv",
            "gz2_url": f"{self.url}/gz2/gz2_hart16.csv.gz",
            "skyserver_sql_url": f"{self.url}/skyserver/x_results.aspx",
            "mosaic_url": f"{self.url}/mosaics/script",
            "frames_url": f"{self.url}{SAS_PREFIX}",
            "cache_dir": str(tmp / "cache"),
            "retries": 2,
            "backoff_s": 0.01,
            "requests_per_second": 1000.0,
            "timeout_s": 10.0,
            "workers": 2,
            "sql_batch_size": 3,
        }
        overrides.update(fetch)
        return load_config("tiny", overrides={"fetch": overrides})


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence the server log
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        archive: FakeArchive = self.server.archive  # type: ignore[attr-defined]
        parsed = urlparse(self.path)
        query = {k: v[0] for k, v in parse_qs(parsed.query, keep_blank_values=True).items()}
        with archive.lock:
            archive.requests.append(Request(parsed.path, query, dict(self.headers)))
        fault = archive.take_fault(parsed.path)
        if fault is not None and fault.kind == "status":
            self._send(fault.status, HTML_PAGE, {"Content-Type": "text/html"})
            return
        if fault is not None and fault.kind in ("html", "body"):
            body = HTML_PAGE if fault.kind == "html" else fault.body
            self._send(200, body, {"Content-Type": "text/html" if fault.kind == "html" else "text/plain"})
            return
        status, body, headers = archive.answer(parsed.path, query)
        start = 0
        range_header = self.headers.get("Range")
        if status == 200 and range_header:
            start = int(re.match(r"bytes=(\d+)-", range_header)[1])
            if start >= len(body):
                self._send(416, b"", {})
                return
            status = 206
            headers = {**headers, "Content-Range": f"bytes {start}-{len(body) - 1}/{len(body)}"}
        cut = fault.after_bytes if fault is not None and fault.kind == "drop" else None
        self._send(status, body[start:], headers, cut=cut)

    def _send(self, status: int, body: bytes, headers: dict[str, str], cut: int | None = None) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body if cut is None else body[:cut])
        self.wfile.flush()
        if cut is not None:
            self.close_connection = True
