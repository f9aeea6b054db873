r"""Benchmark: catalogue readers and one-to-one cross-match at real-archive sizes, against plain baselines.

The readers check every line (field count, numbers, int64 ids, duplicates, coordinates) and report the line
and field of any error, so they do more than a typed ``pandas.read_csv``. This script measures what that costs
on synthetic files of the real sizes (``--scale 1``: GSWLC-X2 659 229 rows x 24 columns, Hart+16 239 695 rows
x 231 columns, HyperLeda 1 000 000 rows), written in the real formats into a temporary directory:

* ``read_gswlc`` against ``pandas.read_csv(sep=r"\s+", header=None, dtype=...)`` (typed, no checks);
* ``read_gz2`` against ``pandas.read_csv(usecols=<the 40 columns>)`` (typed, no checks);
* ``read_hyperleda`` against ``pandas.read_csv(sep="|", usecols=...)``;
* ``match_sky`` (one-to-one, nearest within 3") against ``SkyCoord.match_to_catalog_sky`` (nearest neighbour
  only, not one-to-one, no radius).

Usage::

    .venv/bin/python bench/bench_catalog.py              # scale 0.25 (~1 min)
    .venv/bin/python bench/bench_catalog.py --scale 1    # real sizes
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from astropy import units as u
from astropy.coordinates import SkyCoord

from morphomass import gz2
from morphomass.catalog.crossmatch import match_sky
from morphomass.rawformats import GSWLC, read_gswlc, read_gz2, read_hyperleda

FULL_ROWS = {"gswlc": 659_229, "gz2": 239_695, "hyperleda": 1_000_000}


def _timed(func: Callable[[], object], repeats: int) -> float:
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        best = min(best, time.perf_counter() - start)
    return best


def _sky(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    ra = rng.uniform(110.0, 260.0, n)
    dec = np.degrees(np.arcsin(rng.uniform(np.sin(np.radians(-10.0)), np.sin(np.radians(70.0)), n)))
    return ra, dec


def _write_gswlc(path: Path, ra: np.ndarray, dec: np.ndarray, rng: np.random.Generator) -> None:
    n = ra.size
    table = pd.DataFrame({name: rng.uniform(0, 2, n) for name in GSWLC.names})
    for name, kind in GSWLC.kinds().items():
        if kind == "int":
            table[name] = rng.integers(0, 5, n)
    table["objid"] = 1_237_645_000_000_000_000 + rng.permutation(10 * n)[:n]
    table["glxid"] = np.where(rng.uniform(size=n) < 0.1, -99, 6_375_000_000_000_000_000 + np.arange(n))
    table["ra"], table["dec"] = ra, dec
    table.to_csv(path, sep=" ", header=False, index=False, float_format="%.4f")


def _write_gz2(path: Path, ra: np.ndarray, dec: np.ndarray, rng: np.random.Generator) -> None:
    n = ra.size
    cond = np.zeros((n, len(gz2.ANSWERS)))
    for question in gz2.QUESTIONS:
        idx = [gz2.answer_index(a.answer_id) for a in question.answers]
        cond[:, idx] = rng.dirichlet(np.ones(len(idx)), n)
    columns: dict[str, object] = {
        "dr7objid": 587_722_000_000_000_000 + np.arange(n),
        "ra": ra,
        "dec": dec,
        "rastring": "10:00:00.00",
        "decstring": "+10:00:00.0",
        "sample": "original",
        "gz2_class": "Ei",
        "total_classifications": 44,
        "total_votes": 150,
    }
    for k, answer in enumerate(gz2.ANSWERS):
        for suffix in gz2.HART16_SUFFIXES:
            columns[gz2.hart16_column(answer, suffix)] = np.round(cond[:, k], 3)
    pd.DataFrame(columns).to_csv(path, index=False, float_format="%.6g")


def _write_hyperleda(path: Path, ra: np.ndarray, dec: np.ndarray, rng: np.random.Generator) -> None:
    n = ra.size
    table = pd.DataFrame(
        {
            "pgc": np.arange(1, n + 1),
            "objname": [f"PGC{k:07d}" for k in range(1, n + 1)],
            "objtype": "G",
            "al2000": ra / 15,
            "de2000": dec,
            "logd25": np.round(rng.uniform(0.2, 1.5, n), 2),
            "e_logd25": 0.05,
            "logr25": 0.2,
            "pa": 45.0,
        }
    )
    table.to_csv(path, sep="|", index=False, float_format="%.7f")


def main(argv: list[str] | None = None) -> None:
    """Write the synthetic files, time readers and cross-match against their baselines, print the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.25, help="fraction of the real sizes (1 = real)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        help="also write the figures as JSON to this file (bench/run_all.py reads it)",
    )
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    rows = {name: max(1000, int(n * args.scale)) for name, n in FULL_ROWS.items()}
    gal_ra, gal_dec = _sky(rows["gswlc"], rng)
    n_leda_match = min(rows["gswlc"], rows["hyperleda"] // 2)
    extra_ra, extra_dec = _sky(rows["hyperleda"] - n_leda_match, rng)
    leda_ra = np.concatenate([gal_ra[:n_leda_match] + rng.normal(0, 0.3, n_leda_match) / 3600, extra_ra])
    leda_dec = np.concatenate([gal_dec[:n_leda_match] + rng.normal(0, 0.3, n_leda_match) / 3600, extra_dec])
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        _write_gswlc(folder / "GSWLC-X2.dat", gal_ra, gal_dec, rng)
        _write_gz2(folder / "gz2_hart16.csv", gal_ra[: rows["gz2"]], gal_dec[: rows["gz2"]], rng)
        _write_hyperleda(folder / "hyperleda.csv", leda_ra, leda_dec, rng)
        dtypes = {
            k: (np.int64 if kind == "int" else np.float64) for k, kind in enumerate(GSWLC.kinds().values())
        }
        fractions = [gz2.hart16_column(a, "weighted_fraction") for a in gz2.ANSWERS]
        gz2_columns = ["dr7objid", "ra", "dec", *fractions]
        cases = {
            f"read_gswlc ({rows['gswlc']} rows)": (
                lambda: read_gswlc(folder / "GSWLC-X2.dat"),
                lambda: pd.read_csv(folder / "GSWLC-X2.dat", sep=r"\s+", header=None, dtype=dtypes),
            ),
            f"read_gz2 ({rows['gz2']} rows)": (
                lambda: read_gz2(folder / "gz2_hart16.csv"),
                lambda: pd.read_csv(folder / "gz2_hart16.csv", usecols=gz2_columns),
            ),
            f"read_hyperleda ({len(leda_ra)} rows)": (
                lambda: read_hyperleda(folder / "hyperleda.csv"),
                lambda: pd.read_csv(
                    folder / "hyperleda.csv",
                    sep="|",
                    usecols=["pgc", "al2000", "de2000", "logd25", "logr25", "pa"],
                ),
            ),
            f"match_sky ({rows['gswlc']} x {len(leda_ra)})": (
                lambda: match_sky(gal_ra, gal_dec, leda_ra, leda_dec, radius_arcsec=3.0),
                lambda: SkyCoord(gal_ra * u.deg, gal_dec * u.deg).match_to_catalog_sky(
                    SkyCoord(leda_ra * u.deg, leda_dec * u.deg)
                ),
            ),
        }
        print(f"scale {args.scale:g}, best of {args.repeats}")
        print(f"{'case':45s} {'morphomass [s]':>15s} {'baseline [s]':>13s} {'ratio':>7s}")
        rows = []
        for name, (ours, baseline) in cases.items():
            t_ours, t_base = _timed(ours, args.repeats), _timed(baseline, args.repeats)
            print(f"{name:45s} {t_ours:15.2f} {t_base:13.2f} {t_ours / t_base:7.2f}")
            rows.append(
                {"case": name, "morphomass_s": t_ours, "baseline_s": t_base, "ratio": t_ours / t_base}
            )
    if args.json is not None:
        figures = {"scale": args.scale, "repeats": args.repeats, "rows": rows}
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
