"""The ``catalog`` stage: raw catalogues -> ``sample.parquet`` (SPEC D1-D3, D6-D9; DESIGN §2).

GSWLC-2 is the parent catalogue. Each galaxy is matched to HyperLeda by position (one-to-one, nearest within
``hyperleda_radius_arcsec``) and to its SDSS photometry by ``objid``. The cuts of
:func:`morphomass.selection.sample_cuts`, in order, each with a logged count: a HyperLeda match, a known D25
above ``d25_min_arcmin``, a valid redshift, mass and chi2, valid g photometry, then ``chi2_r < chi2_max``. The
galaxies rejected by the last cut only are kept apart (with their M/L) for Fig. 2. Survivors get L_g from the
g modelMag, M/L_g and its floored error, fluxes and luminosities in every band, the distance and the pixel
size in kpc, the GZ2 probabilities of their one-to-one match within ``gz2_radius_arcsec`` and a seeded
train/val/test split.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from morphomass import gz2
from morphomass.catalog.crossmatch import match_sky
from morphomass.catalog.targets import compute_ml, make_split
from morphomass.config import SDSS_BANDS, CatalogConfig, CosmologyConfig, PipelineConfig
from morphomass.errors import InputDataError
from morphomass.gz2 import make_gz2_targets
from morphomass.photometry import (
    compute_distances_mpc,
    compute_luminosity,
    compute_pixel_kpc,
    flux_from_asinh_mag,
    resolve_pixel_scale_arcsec,
)
from morphomass.progress import progress_bar
from morphomass.rawformats import read_gswlc_dir, read_gz2, read_hyperleda, read_photometry, read_stars
from morphomass.selection import CHI2_CUT, Cut, sample_cuts
from morphomass.targets import Target, resolve_target, target_metadata
from morphomass.workdir import StageResult, WorkDir, atomic_path, write_text_atomic

__all__ = ["build_sample", "run_catalog", "sample_columns"]

logger = logging.getLogger(__name__)

#: Columns shared by sample.parquet and the chi2-rejected table, in order.
_CORE_COLUMNS = [
    "objid",
    "ra",
    "dec",
    "z",
    "d25_arcmin",
    "chi2_r",
    "logmstar",
    "logmstar_err",
    "lum_g",
    "ml",
    "ml_err",
    "target",
    "target_err",
]


def sample_columns(bands: list[str]) -> list[str]:
    """Columns of ``sample.parquet`` in order (DESIGN §2), for photometry in ``bands``."""
    return [
        *_CORE_COLUMNS,
        "split",
        "has_gz2",
        *gz2.ANSWER_COLUMNS,
        *(f"flux_{b}" for b in bands),
        *(f"lum_{b}" for b in bands if b != "g"),
        "dist_mpc",
        "pixel_kpc",
    ]


class _CutFlow:
    """Running selection mask with a summary row per cut (and a log line)."""

    def __init__(self, n: int, description: str) -> None:
        self.keep = np.ones(n, dtype=bool)
        self.rows: list[tuple[str, float, str]] = [("n_gswlc", n, description)]

    def cut(self, cut: Cut) -> None:
        """Apply one selection cut (:func:`morphomass.selection.sample_cuts`) and record it."""
        dropped = int((self.keep & cut.reject).sum())
        self.keep &= ~cut.reject
        self.rows.append((f"dropped_{cut.key}", dropped, cut.description))
        left = int(self.keep.sum())
        self.rows.append((f"n_after_{cut.key}", left, f"galaxies left after dropping: {cut.description}"))
        logger.info("catalog: dropped %d galaxies (%s); %d left", dropped, cut.description, self.keep.sum())

    def add(self, key: str, value: float, description: str) -> None:
        self.rows.append((key, value, description))


def _take(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``values[index]`` along the first axis, NaN where ``index`` is -1 (no match)."""
    out = np.full((index.size, *values.shape[1:]), np.nan)
    found = index >= 0
    out[found] = values[index[found]]
    return out


def _photometry_for(gswlc: pd.DataFrame, photometry: pd.DataFrame, bands: list[str]) -> pd.DataFrame:
    """Photometry rows aligned with GSWLC rows by objid (NaN where a galaxy has none)."""
    position = pd.Index(photometry["objid"]).get_indexer(gswlc["objid"])
    columns = [f"model_mag{kind}_{b}" for b in bands for kind in ("", "_err")]
    return pd.DataFrame(_take(photometry[columns].to_numpy(dtype=np.float64), position), columns=columns)


def _missing_target_cut(gswlc: pd.DataFrame, target: Target) -> Cut:
    """Rows whose target or error is missing, or whose error is not positive (a difference target)."""
    value = gswlc[target.column].to_numpy(dtype=np.float64)
    error = gswlc[target.error_column].to_numpy(dtype=np.float64)
    with np.errstate(invalid="ignore"):
        reject = ~np.isfinite(value) | ~(error > 0)
    return Cut("no_target", f"no {target.column} or no positive {target.error_column}", reject)


def build_sample(
    gswlc: pd.DataFrame,
    hyperleda: pd.DataFrame,
    photometry: pd.DataFrame,
    gz2_table: pd.DataFrame,
    *,
    catalog: CatalogConfig,
    cosmology: CosmologyConfig,
    target: Target,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Cross-match, select and compute the targets (no I/O).

    Parameters
    ----------
    gswlc, hyperleda, photometry, gz2_table : pandas.DataFrame
        Tables as returned by :func:`~morphomass.rawformats.read_gswlc_dir`,
        :func:`~morphomass.rawformats.read_hyperleda`, :func:`~morphomass.rawformats.read_photometry` and
        :func:`~morphomass.rawformats.read_gz2` (weighted fractions).
    catalog : CatalogConfig
        Cuts, radii, M/L error floor, solar magnitudes, AB offsets, pixel scale and split.
    cosmology : CosmologyConfig
        Distance convention.
    target : Target
        What the models will learn (:func:`~morphomass.targets.resolve_target` of ``catalog.target``).

    Returns
    -------
    sample : pandas.DataFrame
        One row per selected galaxy, sorted by ``objid``, columns :func:`sample_columns` (DESIGN §2);
        ``target`` and ``target_err`` are ``catalog.target`` and its (floored) error (``ml``, ``ml_err`` for
        the paper's target).
    chi2_rejected : pandas.DataFrame
        Galaxies that pass every cut but ``chi2_r < chi2_max``, with the first 11 sample columns and
        ``dist_mpc``.
    summary : pandas.DataFrame
        Columns ``key``, ``value``, ``description``: counts after each cut, match fractions, M/L statistics.

    Raises
    ------
    InputDataError
        If the photometry has no g band, or no galaxy passes the selection.
    """
    bands = [b for b in SDSS_BANDS if f"model_mag_{b}" in photometry.columns]
    if "g" not in bands:
        msg = "the SDSS photometry has no g band (modelMag_g, modelMagErr_g), needed for L_g"
        raise InputDataError(msg)
    flow = _CutFlow(len(gswlc), "GSWLC-2 rows")
    flow.add("n_hyperleda", len(hyperleda), "HyperLeda rows")

    h_index, h_sep = match_sky(
        gswlc["ra"],
        gswlc["dec"],
        hyperleda["ra"],
        hyperleda["dec"],
        radius_arcsec=catalog.hyperleda_radius_arcsec,
    )
    matched = h_index >= 0
    d25 = _take(hyperleda["d25_arcmin"].to_numpy(dtype=np.float64), h_index)
    z = gswlc["z"].to_numpy(dtype=np.float64)
    logmstar = gswlc["log_mstar"].to_numpy(dtype=np.float64)
    logmstar_err = gswlc["log_mstar_err"].to_numpy(dtype=np.float64)
    chi2 = gswlc["chi2_r"].to_numpy(dtype=np.float64)
    phot = _photometry_for(gswlc, photometry, bands)
    fluxes = {
        b: flux_from_asinh_mag(phot[f"model_mag_{b}"], b, ab_offset_mag=catalog.ab_offset_mag[b])
        for b in bands
    }
    mag_err_g = phot["model_mag_err_g"].to_numpy()
    with np.errstate(invalid="ignore"):
        photometry_ok = ~(np.isnan(fluxes["g"]) | ~(fluxes["g"] > 0) | ~(mag_err_g >= 0))
    cuts = {
        cut.key: cut
        for cut in sample_cuts(
            matched=matched,
            d25_arcmin=d25,
            z=z,
            logmstar=logmstar,
            logmstar_err=logmstar_err,
            chi2_r=chi2,
            radius_arcsec=catalog.hyperleda_radius_arcsec,
            d25_min_arcmin=catalog.d25_min_arcmin,
            chi2_max=catalog.chi2_max,
            photometry_ok=photometry_ok,
        )
    }
    if target.in_dex:
        cuts["no_target"] = _missing_target_cut(gswlc, target)
    flow.cut(cuts.pop("no_hyperleda"))
    flow.add(
        "hyperleda_match_fraction",
        float(matched.mean()) if matched.size else 0.0,
        "fraction of GSWLC-2 rows with a HyperLeda match",
    )
    flow.add(
        "hyperleda_median_sep_arcsec",
        float(np.nanmedian(h_sep)) if matched.any() else float("nan"),
        "median separation of the HyperLeda matches (arcsec)",
    )
    chi2_cut = cuts.pop(CHI2_CUT)
    for cut in cuts.values():  # SPEC D2, D1, D3 (chi2 known), valid photometry
        flow.cut(cut)

    valid = np.flatnonzero(flow.keep)
    dist_lum, dist_ang = compute_distances_mpc(
        z[valid], convention=cosmology.convention, h0_km_s_mpc=cosmology.h0_km_s_mpc, om0=cosmology.om0
    )
    lum = {b: compute_luminosity(fluxes[b][valid], dist_lum, m_sun_ab=catalog.m_sun_ab[b]) for b in bands}
    ml, ml_err = compute_ml(
        logmstar[valid],
        logmstar_err[valid],
        lum["g"],
        mag_err_g[valid],
        rel_err_floor=catalog.ml_rel_err_floor,
    )
    if target.in_dex:
        target_value = gswlc[target.column].to_numpy(dtype=np.float64)[valid]
        error = gswlc[target.error_column].to_numpy(dtype=np.float64)[valid]
        target_err = np.maximum(error, catalog.dex_err_floor)
    else:
        target_value, target_err = ml, ml_err
    pixel_scale = resolve_pixel_scale_arcsec(catalog.pixel_scale_arcsec, convention=cosmology.convention)
    table = pd.DataFrame(
        {
            "objid": gswlc["objid"].to_numpy(dtype=np.int64)[valid],
            "ra": gswlc["ra"].to_numpy(dtype=np.float64)[valid],
            "dec": gswlc["dec"].to_numpy(dtype=np.float64)[valid],
            "z": z[valid],
            "d25_arcmin": d25[valid],
            "chi2_r": chi2[valid],
            "logmstar": logmstar[valid],
            "logmstar_err": logmstar_err[valid],
            "lum_g": lum["g"],
            "ml": ml,
            "ml_err": ml_err,
            "target": target_value,
            "target_err": target_err,
            **{f"flux_{b}": fluxes[b][valid] for b in bands},
            **{f"lum_{b}": lum[b] for b in bands if b != "g"},
            "dist_mpc": dist_lum,
            "pixel_kpc": compute_pixel_kpc(dist_ang, pixel_scale_arcsec=pixel_scale),
        }
    )
    flow.cut(chi2_cut)  # SPEC D3: the galaxies it alone rejects are kept apart
    passes_chi2 = flow.keep[valid]
    chi2_rejected = table.loc[~passes_chi2, [*_CORE_COLUMNS, "dist_mpc"]]
    sample = table.loc[passes_chi2].sort_values("objid", kind="stable").reset_index(drop=True)
    if sample.empty:
        msg = "no galaxy passes the catalogue selection: " + "; ".join(
            f"{key} = {value}" for key, value, _ in flow.rows if key.startswith(("n_", "dropped_"))
        )
        raise InputDataError(msg)

    g_index, _ = match_sky(
        sample["ra"],
        sample["dec"],
        gz2_table["ra"],
        gz2_table["dec"],
        radius_arcsec=catalog.gz2_radius_arcsec,
    )
    has_gz2 = g_index >= 0
    if len(gz2_table) and not has_gz2.any():
        logger.warning(
            "catalog: none of the %d sample galaxies has a GZ2 row within %g arcsec (does the GZ2 table of "
            "%d rows cover another part of the sky?): no galaxy gets GZ2 probabilities (0 %% match)",
            len(sample),
            catalog.gz2_radius_arcsec,
            len(gz2_table),
        )
    fraction_columns = [c for c in gz2_table.columns if c not in ("dr7objid", "ra", "dec")]
    probabilities = np.full((len(sample), len(gz2.ANSWERS)), np.nan)
    reached_unvoted = np.zeros(len(sample), dtype=bool)
    if has_gz2.any():
        conditional = gz2_table[fraction_columns].to_numpy(dtype=np.float64)[g_index[has_gz2]]
        probabilities[has_gz2], reached_unvoted[has_gz2] = make_gz2_targets(conditional)
    if reached_unvoted.any():
        logger.info(
            "catalog: %d GZ2 matches have a reachable question without votes; its answers share its "
            "probability equally",
            reached_unvoted.sum(),
        )
    sample["split"] = make_split(
        len(sample),
        test_fraction=catalog.test_fraction,
        val_fraction=catalog.val_fraction,
        rng=np.random.default_rng(catalog.split_seed),
    )
    sample["has_gz2"] = has_gz2
    sample[list(gz2.ANSWER_COLUMNS)] = probabilities
    sample = sample[sample_columns(bands)]

    flow.add("n_sample", len(sample), "galaxies in sample.parquet")
    for name in ("train", "val", "test"):
        flow.add(f"n_{name}", int((sample["split"] == name).sum()), f"{name} split")
    flow.add(
        "n_gz2",
        int(has_gz2.sum()),
        f"sample galaxies with a GZ2 match within {catalog.gz2_radius_arcsec:g} arcsec",
    )
    flow.add("gz2_match_fraction", float(has_gz2.mean()), "fraction of the sample with a GZ2 match")
    flow.add(
        "n_gz2_reached_unvoted",
        int(reached_unvoted.sum()),
        "GZ2 matches with a reachable question that has no votes (answers shared equally)",
    )
    ml_sample = sample["ml"].to_numpy()
    for stat, value in (("min", ml_sample.min()), ("median", np.median(ml_sample)), ("max", ml_sample.max())):
        flow.add(f"ml_{stat}", float(value), f"{stat} M/L_g of the sample (M_sun/L_sun,g)")
    flow.add(
        "ml_median_chi2_rejected",
        float(chi2_rejected["ml"].median()) if len(chi2_rejected) else np.nan,
        f"median M/L_g of the galaxies with chi2_r >= {catalog.chi2_max:g}",
    )
    if target.in_dex:
        values = sample["target"].to_numpy()
        for stat, value in (("min", values.min()), ("median", np.median(values)), ("max", values.max())):
            flow.add(f"target_{stat}", float(value), f"{stat} {target.name} of the sample ({target.unit})")
    keys, values, descriptions = zip(*flow.rows, strict=True)
    summary = pd.DataFrame(
        {"key": list(keys), "value": pd.Series(values, dtype=object), "description": list(descriptions)}
    )
    return sample, chi2_rejected.sort_values("objid").reset_index(drop=True), summary


def _write_sample(sample: pd.DataFrame, target: Target, path: Path) -> None:
    """Write ``sample.parquet`` with its target recorded in the schema metadata (:func:`read_target`)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(sample, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), **target_metadata(target)})
    pq.write_table(table, path)


def run_catalog(config: PipelineConfig, workdir: WorkDir, *, progress: bool = True) -> StageResult:
    """Read ``raw/``, select the sample and write ``sample.parquet`` and the summary tables.

    Parameters
    ----------
    config : PipelineConfig
        Uses ``config.catalog`` and ``config.cosmology``.
    workdir : WorkDir
    progress : bool
        Show a progress bar over the steps.

    Returns
    -------
    StageResult
        Outputs ``sample.parquet``, ``results/tables/sample_summary.csv`` and
        ``results/tables/sample_chi2_rejected.parquet``; the summary has the sample size, the split sizes, the
        GZ2 match fraction and the median M/L.

    Raises
    ------
    InputDataError
        A raw file is missing or malformed (the message names the file, line and field), or no galaxy passes
        the selection.
    """
    start = time.perf_counter()
    workdir.ensure()
    cat = config.catalog
    with progress_bar("catalogue", total=6, enabled=progress) as advance:
        gswlc, gswlc_paths = read_gswlc_dir(workdir.gswlc_dir)
        logger.info("catalog: %d GSWLC-2 rows from %s", len(gswlc), ", ".join(p.name for p in gswlc_paths))
        advance(1)
        hyperleda = read_hyperleda(workdir.hyperleda)
        advance(1)
        photometry = read_photometry(workdir.photometry)
        advance(1)
        gz2_table = read_gz2(workdir.gz2, sum_atol=cat.gz2_sum_atol)
        if gz2_table.empty:
            logger.warning(
                "catalog: %s has a header and no rows (expected the Hart+16 table, one row per classified "
                "galaxy): no galaxy gets GZ2 probabilities (0 %% match), the GZ2 networks get no targets",
                workdir.gz2,
            )
        advance(1)
        # stars.csv is read by preprocess; checking it here reports a malformed file before any image work.
        n_stars = len(read_stars(workdir.stars)) if workdir.stars.exists() else None
        advance(1)
        target = resolve_target(cat.target, cat.target_error, gswlc.dtypes)
        sample, chi2_rejected, summary = build_sample(
            gswlc, hyperleda, photometry, gz2_table, catalog=cat, cosmology=config.cosmology, target=target
        )
        advance(1)
    if n_stars is not None:
        summary.loc[len(summary)] = ["n_stars", n_stars, "point sources in raw/stars.csv"]
    with atomic_path(workdir.chi2_rejected) as tmp:
        chi2_rejected.to_parquet(tmp, index=False)
    write_text_atomic(workdir.sample_summary, summary.to_csv(index=False, lineterminator="\n"))
    with atomic_path(workdir.sample) as tmp:  # the declared output last
        _write_sample(sample, target, tmp)
    seconds = time.perf_counter() - start
    counts = sample["split"].value_counts()
    values = dict(zip(summary["key"], summary["value"], strict=True))
    logger.info(
        "catalog: %d GSWLC-2 rows -> %d with a HyperLeda match (%.1f %%) -> %d with D25 > %g' -> %d with "
        "valid mass and photometry -> %d with chi2_r < %g (train/val/test %d/%d/%d); GZ2 matches %.1f %%; "
        "M/L_g min/median/max %.3g/%.3g/%.3g; summary in %s",
        values["n_gswlc"],
        values["n_after_no_hyperleda"],
        100 * values["hyperleda_match_fraction"],
        values["n_after_d25"],
        cat.d25_min_arcmin,
        values["n_after_missing_photometry"],
        len(sample),
        cat.chi2_max,
        counts.get("train", 0),
        counts.get("val", 0),
        counts.get("test", 0),
        100 * values["gz2_match_fraction"],
        values["ml_min"],
        values["ml_median"],
        values["ml_max"],
        workdir.sample_summary,
    )
    result_summary = {
        "gswlc_rows": len(gswlc),
        "sample": len(sample),
        "split": {name: int(counts.get(name, 0)) for name in ("train", "val", "test")},
        "gz2_match_fraction": round(float(sample["has_gz2"].mean()), 4),
        "ml_median": round(float(sample["ml"].median()), 4),
        "target": target.name,
    }
    outputs = [workdir.relative(p) for p in (workdir.sample, workdir.sample_summary, workdir.chi2_rejected)]
    return StageResult(stage="catalog", outputs=outputs, seconds=seconds, summary=result_summary)
