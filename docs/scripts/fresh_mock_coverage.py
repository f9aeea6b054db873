"""Coverage of a bundle's prediction intervals on freshly rendered mock galaxies never in its sample.

Renders a new mock survey with another seed (quick preset settings, ``--n-galaxies`` image galaxies) in a work
directory of its own, runs the catalogue stage on it (the paper's cuts and M/L_g from the GSWLC-format table,
as for training), predicts every selected galaxy from its raw FITS image with the bundle (``Bundle.predict``,
the catalogue's magnitudes given, so the g+i model is used where the bundle has it unless ``--model g``),
and prints the fraction of galaxies whose catalogue M/L lies inside each interval, with its Clopper-Pearson
95 % interval, beside the nominal level. The mock's truth file is not read: the target is the catalogue's
M/L, as in training. Usage::

    python docs/scripts/fresh_mock_coverage.py BUNDLE_DIR WORKDIR [--n-galaxies 2000] [--seed 7] [--model g]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from morphomass.catalog import run_catalog
from morphomass.config import load_config
from morphomass.intervals import binomial_interval
from morphomass.mock import run_mock
from morphomass.predict import load_bundle
from morphomass.predict.predictor import level_suffix
from morphomass.workdir import WorkDir


def main() -> None:
    """Render, select, predict and print the coverage table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("bundle", type=Path, help="bundle.json, its folder or a work directory")
    parser.add_argument("workdir", type=Path, help="new work directory for the fresh mock")
    parser.add_argument("--n-galaxies", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--model", choices=["auto", "g", "gi"], default="auto", help="as Bundle.predict's")
    args = parser.parse_args()
    config = load_config("quick", overrides={"mock": {"n_galaxies": args.n_galaxies, "seed": args.seed}})
    workdir = WorkDir(args.workdir)
    if not workdir.sample.exists():
        run_mock(config, workdir, progress=True)
        run_catalog(config, workdir, progress=True)
    sample = pd.read_parquet(workdir.sample)
    phot = pd.read_csv(workdir.photometry).rename(columns={"objID": "objid"})
    catalog = sample[["objid", "ra", "dec", "z", "d25_arcmin"]].merge(
        phot[["objid", "modelMag_g", "modelMag_i"]], on="objid", how="left"
    )
    bundle = load_bundle(args.bundle)
    out = bundle.predict(workdir.raw_images, catalog, stars=workdir.stars, model=args.model, progress=True)
    merged = out.merge(sample[["objid", "ml"]], on="objid", validate="one_to_one")
    ok = merged["ml_pred"].notna()
    models = dict(merged.loc[ok, "model"].value_counts())
    print(f"{int(ok.sum())} of {len(merged)} galaxies predicted (seed {args.seed}); models {models}")
    print("| nominal | covered | coverage | 95 % interval | median width (dex) |")
    print("| --- | --- | --- | --- | --- |")
    for level in bundle.interval_levels:
        suffix = level_suffix(level)
        lo, hi = merged[f"ml_lo_{suffix}"][ok], merged[f"ml_hi_{suffix}"][ok]
        inside = (lo <= merged["ml"][ok]) & (merged["ml"][ok] <= hi)
        k, n = int(inside.sum()), int(ok.sum())
        ci = binomial_interval(k, n)
        width = np.median(np.log10(hi) - np.log10(lo))
        print(f"| {level:.0%} | {k} / {n} | {k / n:.3f} | [{ci[0]:.3f}, {ci[1]:.3f}] | {width:.3f} |")


if __name__ == "__main__":
    main()
