"""Assemble the mock survey's catalogues: who is in GSWLC, HyperLeda, GZ2 and the star catalogue.

With what values.

Pure functions: :func:`make_survey` returns tables; :mod:`morphomass.rawformats` writes them in the real
formats.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from astropy.wcs import WCS

from morphomass import gz2
from morphomass.config import MockConfig
from morphomass.mock.neighbours import NEIGHBOUR_BANDS, draw_neighbours
from morphomass.mock.physics import (
    BANDS,
    ELECTRONS_PER_NMGY,
    SDSS_MAG_MINUS_AB,
    SDSS_SPECTRO_LIMIT_R,
    SKY_NOISE_NMGY,
    draw_galaxies,
    observe_galaxies,
)
from morphomass.mock.votes import conditional_answer_probabilities, simulate_votes
from morphomass.photometry import (
    asinh_mag,
    d25_arcmin_from_logd25,
    degrees_to_hours,
    logd25_from_d25_arcmin,
)

__all__ = ["NEIGHBOUR_COLUMNS", "Survey", "image_wcs", "make_survey"]

_OBJID_BASE = 1_237_645_000_000_000_000  # SDSS DR8+ photometric object ids (> 2**53: int64 only)
_DR7_OBJID_BASE = 587_722_000_000_000_000
_GLXID_BASE = 6_375_000_000_000_000_000
#: Columns of the arrays in :attr:`Survey.neighbours`: zero-based pixel position, half-light radius (arcsec),
#: Sérsic index, axis ratio, position angle (degrees from the image's +x axis towards +y), then the flux in
#: nanomaggies in each of ``BANDS``.
NEIGHBOUR_COLUMNS: tuple[str, ...] = (
    "x_pix",
    "y_pix",
    "hlr_arcsec",
    "sersic_n",
    "axis_ratio",
    "pa_deg",
    *(f"flux_{b}_nmgy" for b in BANDS),
)


@dataclass
class Survey:
    """The mock survey's tables (one row per object, in the order they are written).

    ``star_pixels`` and ``neighbours`` are keyed by the objid of the galaxy whose image they lie on; they
    are for rendering only. ``star_pixels[objid]`` is (n_stars, 2 + 5): x, y (zero-based pixels) and the
    flux in each band; ``neighbours[objid]`` is (n_neighbours, len(NEIGHBOUR_COLUMNS)). Neighbouring
    galaxies are in no catalogue.
    """

    truth: pd.DataFrame
    gswlc: pd.DataFrame
    hyperleda: pd.DataFrame
    gz2: pd.DataFrame
    photometry: pd.DataFrame
    stars: pd.DataFrame
    star_pixels: dict[int, np.ndarray]
    neighbours: dict[int, np.ndarray] = field(default_factory=dict)


def image_wcs(ra_deg: float, dec_deg: float, nx: int, pixel_scale_arcsec: float) -> WCS:
    """North-up, east-left TAN WCS of an ``nx`` x ``nx`` image centred on (ra, dec) (CRPIX at the centre)."""
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [ra_deg, dec_deg]
    wcs.wcs.crpix = [(nx + 1) / 2, (nx + 1) / 2]
    scale_deg = pixel_scale_arcsec / 3600.0
    wcs.wcs.cd = [[-scale_deg, 0.0], [0.0, scale_deg]]
    wcs.wcs.cunit = ["deg", "deg"]
    return wcs


def _unique_ids(n: int, base: int, span: int, rng: np.random.Generator) -> np.ndarray:
    ids = np.unique(rng.integers(0, span, size=int(n * 1.2) + 16))
    while ids.size < n:
        ids = np.unique(np.concatenate([ids, rng.integers(0, span, size=n)]))
    return base + rng.permutation(ids)[:n].astype(np.int64)


def _draw_population(config: MockConfig, rng: np.random.Generator) -> pd.DataFrame:
    """Draw flux-limited galaxies until ``n_galaxies`` are large enough for images and small ones are kept."""
    n_small_wanted = int(round(config.small_galaxy_ratio * config.n_galaxies))
    big, small = [], []
    n_big = n_small = 0
    while n_big < config.n_galaxies or n_small < n_small_wanted:
        batch = int(min(max(50_000, 400 * (config.n_galaxies - n_big)), 2_000_000))
        frame = observe_galaxies(draw_galaxies(batch, rng, d25_min_arcmin=config.image_d25_min_arcmin), rng)
        frame = frame[frame["mag_r"] < SDSS_SPECTRO_LIMIT_R].reset_index(drop=True)
        logd25 = np.round(
            logd25_from_d25_arcmin(frame["d25_arcmin"].to_numpy()) + rng.normal(0, 0.04, len(frame)), 2
        )
        frame["logd25"] = logd25
        frame["d25_arcmin_leda"] = d25_arcmin_from_logd25(logd25)
        is_big = frame["d25_arcmin_leda"].to_numpy() > config.image_d25_min_arcmin
        big.append(frame[is_big].iloc[: config.n_galaxies - n_big])
        small.append(frame[~is_big].iloc[: max(n_small_wanted - n_small, 0)])
        n_big += len(big[-1])
        n_small += len(small[-1])
    out = pd.concat(big + small, ignore_index=True)
    out["has_image"] = np.arange(len(out)) < n_big
    order = rng.permutation(len(out))  # interleave small and large galaxies as in a real catalogue
    return out.iloc[order].reset_index(drop=True)


def _sky_positions(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Uniform on the sphere inside an SDSS-like footprint (120 < RA < 240, 0 < Dec < 60 deg)."""
    ra = rng.uniform(120.0, 240.0, n)
    dec = np.degrees(np.arcsin(rng.uniform(0.0, np.sin(np.radians(60.0)), n)))
    return ra, dec


def _offset_positions(ra: np.ndarray, dec: np.ndarray, sigma_arcsec: float, rng: np.random.Generator):
    d_dec = rng.normal(0, sigma_arcsec, ra.size) / 3600
    d_ra = rng.normal(0, sigma_arcsec, ra.size) / 3600 / np.cos(np.radians(dec))
    return ra + d_ra, dec + d_dec


def _gswlc_table(gal: pd.DataFrame, config: MockConfig, rng: np.random.Generator) -> pd.DataFrame:
    n = len(gal)
    age, burst = gal["age"].to_numpy(), gal["burst"].to_numpy()
    log_ssfr = -9.3 - 2.6 * age + 1.2 * burst + rng.normal(0, 0.25, n)
    missing = rng.uniform(0, 1, n) < config.missing_mass_fraction
    a_v = gal["a_g_mag"].to_numpy() / 1.17
    has_galex = rng.uniform(0, 1, n) < 0.9
    table = pd.DataFrame(
        {
            "objid": gal["objid"].to_numpy(),
            "glxid": np.where(has_galex, _unique_ids(n, _GLXID_BASE, 10**15, rng), -99),
            "plate": rng.integers(266, 2975, n),
            "mjd": rng.integers(51578, 54500, n),
            "fiber_id": rng.integers(1, 641, n),
            "ra": gal["ra"].to_numpy(),
            "dec": gal["dec"].to_numpy(),
            "z": gal["z"].to_numpy(),
            "chi2_r": gal["chi2_r"].to_numpy(),
            "log_mstar": gal["log_mstar_sed"].to_numpy(),
            "log_mstar_err": gal["log_mstar_err"].to_numpy(),
            "log_sfr_sed": gal["log_mstar"].to_numpy() + log_ssfr,
            "log_sfr_sed_err": rng.uniform(0.0, 1.0, n),  # a rank, made an error below
            "a_fuv": 2.6 * a_v + rng.normal(0, 0.1, n),
            "a_fuv_err": rng.uniform(0.1, 0.4, n),
            "a_b": 1.3 * a_v,
            "a_b_err": rng.uniform(0.05, 0.2, n),
            "a_v": a_v,
            "a_v_err": rng.uniform(0.03, 0.15, n),
            "flag_sed": np.where(missing, 5, 0),
            "uv_survey": rng.choice([1, 2, 3], n, p=[0.6, 0.35, 0.05]),
            "flag_uv": np.where(has_galex, rng.choice([1, 2, 3], n, p=[0.05, 0.25, 0.7]), 0),
            "flag_midir": rng.choice([0, 1, 2, 5], n, p=[0.1, 0.2, 0.65, 0.05]),
            "flag_mgs": np.where(rng.uniform(0, 1, n) < 0.97, 1, 0),
        }
    )
    table["log_sfr_sed"], table["log_sfr_sed_err"] = _sed_sfr(
        table["log_sfr_sed"].to_numpy(), log_ssfr, table["log_sfr_sed_err"].to_numpy(), config.seed
    )
    for col in ("chi2_r", "log_mstar", "log_mstar_err", "log_sfr_sed", "log_sfr_sed_err"):
        table.loc[missing, col] = -99.0
    return table


def _sed_sfr(
    log_sfr: np.ndarray, log_ssfr: np.ndarray, rank: np.ndarray, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """GSWLC-like SED SFRs: the galaxy's log SFR plus a fitting error that grows as star formation fades.

    GSWLC-2's SED SFR errors are about 0.1 dex for star-forming galaxies and several tenths of a dex for
    quiescent ones (their UV and mid-IR constrain little). Here the error runs from 0.08-0.2 dex at
    log sSFR >= -10 to 0.4-0.7 dex at log sSFR <= -12 (``rank`` in [0, 1) places a galaxy in its range), and
    the catalogue value is drawn from it. The noise comes from its own stream (``seed`` and a fixed key), so
    every other mock column is what it was before SFRs had errors.
    """
    quiescence = np.clip((-10.0 - log_ssfr) / 2.0, 0.0, 1.0)
    low = 0.08 + 0.32 * quiescence
    high = 0.2 + 0.5 * quiescence
    error = low + (high - low) * rank
    noise = np.random.default_rng([seed, 0x5F12]).normal(0.0, 1.0, log_sfr.size)
    return log_sfr + error * noise, error


def _photometry_table(gal: pd.DataFrame, config: MockConfig, rng: np.random.Generator) -> pd.DataFrame:
    n = len(gal)
    hlr_pix = np.maximum(gal["disk_hlr_arcsec"].to_numpy(), 1.0) / config.pixel_scale_arcsec
    aperture_pix = np.pi * (2.0 * hlr_pix) ** 2
    table = {"objID": gal["objid"].to_numpy(), "ra": gal["ra"].to_numpy(), "dec": gal["dec"].to_numpy()}
    missing = rng.uniform(0, 1, n) < 0.003
    errs = {}
    for band in BANDS:
        flux = gal[f"flux_{band}_nmgy"].to_numpy()
        sigma = np.sqrt(SKY_NOISE_NMGY[band] ** 2 * aperture_pix + flux / ELECTRONS_PER_NMGY)
        observed = flux + rng.normal(0, 1, n) * sigma
        sdss_mag = asinh_mag(observed, band) + SDSS_MAG_MINUS_AB[band]  # modelMag is on the SDSS system
        table[f"modelMag_{band}"] = np.where(missing, -9999.0, sdss_mag)
        errs[f"modelMagErr_{band}"] = np.where(missing, -9999.0, 2.5 / np.log(10) * sigma / np.abs(observed))
    table.update(errs)
    return pd.DataFrame(table)


def _hyperleda_table(gal: pd.DataFrame, config: MockConfig, rng: np.random.Generator) -> pd.DataFrame:
    n = len(gal)
    ra, dec = _offset_positions(gal["ra"].to_numpy(), gal["dec"].to_numpy(), 0.25, rng)
    logd25 = gal["logd25"].to_numpy().astype(float)
    no_diameter = (~gal["has_image"].to_numpy()) & (rng.uniform(0, 1, n) < 0.02)
    logd25 = np.where(no_diameter, np.nan, logd25)
    n_extra = int(round(config.extra_hyperleda_fraction * n))
    extra_ra, extra_dec = _sky_positions(n_extra, rng)
    pgc = rng.permutation(np.arange(1_000, 1_000 + 4 * (n + n_extra)))[: n + n_extra]
    pa_astro = np.mod(gal["pa_deg"].to_numpy() - 90.0, 180.0)
    logr25 = np.log10(1 / gal["axis_ratio"].to_numpy()) + rng.normal(0, 0.03, n)
    table = pd.DataFrame(
        {
            "pgc": pgc,
            "objname": [f"PGC{p:07d}" for p in pgc],
            "objtype": "G",
            "al2000": degrees_to_hours(np.concatenate([ra, extra_ra])),
            "de2000": np.concatenate([dec, extra_dec]),
            "logd25": np.concatenate([logd25, np.round(rng.uniform(0.2, 1.2, n_extra), 2)]),
            "e_logd25": np.round(rng.uniform(0.03, 0.09, n + n_extra), 2),
            "logr25": np.round(np.concatenate([np.clip(logr25, 0, 1.2), rng.uniform(0, 0.5, n_extra)]), 2),
            "pa": np.round(np.concatenate([pa_astro, rng.uniform(0, 180, n_extra)]), 1),
        }
    )
    return table.iloc[rng.permutation(len(table))].reset_index(drop=True)


def _gz2_class_label(counts_frac: np.ndarray) -> str:
    """Return a Hart+16-like gz2_class string from the unconditional vote fractions."""
    p = dict(zip((a.answer_id for a in gz2.ANSWERS), counts_frac, strict=True))
    if p["a03"] > 0.5:
        return "A"
    if p["a01"] >= p["a02"]:
        return "E" + max((("r", p["a16"]), ("i", p["a17"]), ("c", p["a18"])), key=lambda t: t[1])[0]
    if p["a04"] > p["a05"]:
        return "Se" + max((("r", p["a25"]), ("b", p["a26"]), ("n", p["a27"])), key=lambda t: t[1])[0]
    bulge = max((("d", p["a10"]), ("c", p["a11"]), ("b", p["a12"]), ("a", p["a13"])), key=lambda t: t[1])[0]
    return ("SB" if p["a06"] > p["a07"] else "S") + bulge


def _sexagesimal(ra: np.ndarray, dec: np.ndarray) -> tuple[list[str], list[str]]:
    ra_h = degrees_to_hours(ra)
    ras, decs = [], []
    for h, d in zip(ra_h, dec, strict=True):
        hh, rem = divmod(h * 3600.0, 3600.0)
        mm, ss = divmod(rem, 60.0)
        ras.append(f"{int(hh):02d}:{int(mm):02d}:{ss:05.2f}")
        sign = "-" if d < 0 else "+"
        dd, rem = divmod(abs(d) * 3600.0, 3600.0)
        mm, ss = divmod(rem, 60.0)
        decs.append(f"{sign}{int(dd):02d}:{int(mm):02d}:{ss:04.1f}")
    return ras, decs


def _gz2_table(gal: pd.DataFrame, config: MockConfig, rng: np.random.Generator) -> pd.DataFrame:
    in_gz2 = (gal["mag_r"].to_numpy() < config.gz2_r_mag_limit) & (
        rng.uniform(0, 1, len(gal)) < config.gz2_coverage
    )
    sub = gal[in_gz2]
    n = len(sub)
    cond = conditional_answer_probabilities(sub, rng)
    n_class = np.maximum(rng.poisson(config.gz2_classifiers, n), 10)
    counts = simulate_votes(cond, n_class, rng)
    weights = counts * rng.uniform(0.85, 1.0, counts.shape)
    ra, dec = _offset_positions(sub["ra"].to_numpy(), sub["dec"].to_numpy(), 0.3, rng)
    ras, decs = _sexagesimal(ra, dec)
    columns: dict[str, object] = {
        "dr7objid": _unique_ids(n, _DR7_OBJID_BASE, 10**13, rng),
        "ra": ra,
        "dec": dec,
        "rastring": ras,
        "decstring": decs,
        "sample": "original",
    }
    fraction = np.zeros(counts.shape)
    weighted = np.zeros(counts.shape)
    for question in gz2.QUESTIONS:
        idx = [gz2.answer_index(a.answer_id) for a in question.answers]
        total = counts[:, idx].sum(axis=1, keepdims=True)
        wtotal = weights[:, idx].sum(axis=1, keepdims=True)
        fraction[:, idx] = np.divide(counts[:, idx], total, out=np.zeros((n, len(idx))), where=total > 0)
        weighted[:, idx] = np.divide(weights[:, idx], wtotal, out=np.zeros((n, len(idx))), where=wtotal > 0)
    # Hart+16 debiasing raises feature fractions of distant galaxies; mimic its direction, not its details.
    debiased = np.clip(weighted * (1 + 0.8 * sub["z"].to_numpy()[:, None] * (np.arange(37) % 2 == 1)), 0, 1)
    unconditional = gz2.unconditional_probabilities(weighted)
    columns["gz2_class"] = [_gz2_class_label(row) for row in unconditional]
    columns["total_classifications"] = n_class
    columns["total_votes"] = counts.sum(axis=1)
    for k, answer in enumerate(gz2.ANSWERS):
        columns[gz2.hart16_column(answer, "count")] = counts[:, k]
        columns[gz2.hart16_column(answer, "weight")] = np.round(weights[:, k], 3)
        columns[gz2.hart16_column(answer, "fraction")] = np.round(fraction[:, k], 3)
        columns[gz2.hart16_column(answer, "weighted_fraction")] = np.round(weighted[:, k], 3)
        columns[gz2.hart16_column(answer, "debiased")] = np.round(debiased[:, k], 3)
        columns[gz2.hart16_column(answer, "flag")] = ((debiased[:, k] > 0.8) & (counts[:, k] >= 20)).astype(
            int
        )
    table = pd.DataFrame(columns)[gz2.hart16_columns()]
    table.index = sub.index
    return table


def _stars(gal: pd.DataFrame, config: MockConfig, rng: np.random.Generator):
    """Field stars on each image: pixel positions and fluxes for rendering, and the star catalogue rows."""
    rows, pixels = [], {}
    colours = {"u": 1.2, "g": 0.0, "r": -0.5, "i": -0.7, "z": -0.8}
    for objid, ra, dec, nx in zip(gal["objid"], gal["ra"], gal["dec"], gal["image_nx"], strict=True):
        area_arcmin2 = (nx * config.pixel_scale_arcsec / 60.0) ** 2
        n_star = rng.poisson(config.star_density_per_arcmin2 * area_arcmin2)
        x = rng.uniform(2, nx - 3, n_star)
        y = rng.uniform(2, nx - 3, n_star)
        keep = np.hypot(x - (nx - 1) / 2, y - (nx - 1) / 2) * config.pixel_scale_arcsec > 3.0
        x, y = x[keep], y[keep]
        mag_g = 14.0 + 8.0 * np.sqrt(rng.uniform(0, 1, x.size))  # counts rise towards faint magnitudes
        colour_scale = rng.uniform(0.3, 2.0, x.size)
        mags = np.stack([mag_g + colours[b] * colour_scale for b in BANDS], axis=1)
        pixels[int(objid)] = np.column_stack([x, y, 10 ** (-0.4 * (mags - 22.5))])
        catalogued = rng.uniform(0, 1, x.size) < config.star_catalog_completeness
        n_spurious = rng.binomial(max(x.size, 1), config.spurious_star_fraction)
        sx = np.concatenate([x[catalogued], rng.uniform(2, nx - 3, n_spurious)])
        sy = np.concatenate([y[catalogued], rng.uniform(2, nx - 3, n_spurious)])
        smag = np.concatenate([mag_g[catalogued], 21.0 + rng.uniform(0, 1.5, n_spurious)])
        if sx.size:
            wcs = image_wcs(float(ra), float(dec), int(nx), config.pixel_scale_arcsec)
            sra, sdec = wcs.wcs_pix2world(sx, sy, 0)
            rows.append(pd.DataFrame({"ra": sra, "dec": sdec, "psfMag_g": smag}))
    stars = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=["ra", "dec", "psfMag_g"])
    stars.insert(0, "objID", _unique_ids(len(stars), _OBJID_BASE + 5 * 10**14, 10**14, rng))
    stars.insert(3, "type", 6)
    return stars, pixels


def _neighbours(gal: pd.DataFrame, config: MockConfig, rng: np.random.Generator) -> dict[int, np.ndarray]:
    """Neighbouring galaxies on each image (:func:`morphomass.mock.neighbours.draw_neighbours`), in pixels."""
    nx = gal["image_nx"].to_numpy(dtype=np.float64)
    scale = config.pixel_scale_arcsec
    drawn = draw_neighbours(nx * scale, rng)
    centre = (nx[drawn.image_index] - 1.0) / 2.0
    table = np.column_stack(
        [
            centre + drawn.dx_arcsec / scale,
            centre + drawn.dy_arcsec / scale,
            drawn.hlr_arcsec,
            drawn.sersic_n,
            drawn.axis_ratio,
            drawn.pa_deg,
            *(10 ** (-0.4 * (drawn.mag[:, NEIGHBOUR_BANDS.index(b)] - 22.5)) for b in BANDS),
        ]
    )
    starts = np.cumsum(drawn.counts) - drawn.counts
    return {
        int(objid): table[start : start + count]
        for objid, start, count in zip(gal["objid"], starts, drawn.counts, strict=True)
    }


def make_survey(config: MockConfig, rng: np.random.Generator) -> Survey:
    """Draw the whole mock survey (catalogues only; images are rendered from ``truth`` afterwards).

    Parameters
    ----------
    config : MockConfig
    rng : numpy.random.Generator
        The only source of randomness: the same seed gives the same survey.

    Returns
    -------
    Survey
        ``truth`` has one row per GSWLC galaxy with every true property, ``has_image``, ``image_nx``,
        ``psf_fwhm_arcsec``, ``render_seed`` and ``n_neighbours`` (neighbouring galaxies on its image); the
        other tables are the raw catalogues. Neighbours are drawn last, from a child generator, so that they
        leave every other draw unchanged.
    """
    gal = _draw_population(config, rng)
    n = len(gal)
    gal.insert(0, "objid", _unique_ids(n, _OBJID_BASE, 10**14, rng))
    gal["ra"], gal["dec"] = _sky_positions(n, rng)
    side_pix = np.round(1.125 * gal["d25_arcmin_leda"].to_numpy() * 60 / config.pixel_scale_arcsec)
    gal["image_nx"] = np.where(gal["has_image"], np.minimum(side_pix, config.max_image_pixels), 0).astype(
        np.int64
    )
    gal["psf_fwhm_arcsec"] = np.clip(
        rng.normal(config.psf_fwhm_arcsec, config.psf_fwhm_scatter_arcsec, n), 0.8, config.psf_fwhm_arcsec * 2
    )
    gal["dust_lane_a_g_mag"] = np.where(gal["has_dust_lane"], rng.uniform(0.8, 2.0, n), 0.0)
    gal["background_offset_nmgy"] = rng.normal(0.003, 0.002, n)
    gal["render_seed"] = rng.integers(0, 2**63 - 1, n)
    gal["ml_true"] = 10 ** gal["log_ml_g_target"]
    gal["inclination_deg"] = np.degrees(np.arccos(np.clip(gal["cos_incl"], 0, 1)))
    gswlc = _gswlc_table(gal, config, rng)
    photometry = _photometry_table(gal, config, rng)
    hyperleda = _hyperleda_table(gal, config, rng)
    gz2_table = _gz2_table(gal, config, rng)
    gal["in_gz2"] = gal.index.isin(gz2_table.index)
    stars, star_pixels = _stars(gal[gal["has_image"]], config, rng)
    neighbours = _neighbours(gal[gal["has_image"]], config, np.random.default_rng(rng.integers(2**63)))
    gal["n_neighbours"] = np.array([len(neighbours.get(int(o), ())) for o in gal["objid"]], dtype=np.int64)
    return Survey(
        truth=gal,
        gswlc=gswlc,
        hyperleda=hyperleda,
        gz2=gz2_table.reset_index(drop=True),
        photometry=photometry,
        stars=stars,
        star_pixels=star_pixels,
        neighbours=neighbours,
    )
