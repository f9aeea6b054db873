"""Measure CNN-recipe variants of the quick preset on the validation split ("statistical power", item 6).

Each variant is a set of ``cnn`` overrides of the quick preset that keeps the CNN compute budget about the
same. For each one, this script retrains the networks (``train-cnn``), extracts the features (``extract``) and
retrains every GBM (``train-gbm``, with its cross-validated parameter search) in a work directory of its own
whose inputs (raw/, sample.parquet, images.zarr, features/photometric.parquet) are hard links to those of a
finished default run given by ``--base``. It then scores the *validation* split only: L1~ of the single-band
models (reference L_g + z, g + CNN morphology, g + classical, g + both) and the g+i ones, each with its
bootstrap SE, and the paired difference of g + all morphology against the first variant with its one-sided
paired bootstrap p-value. Test-split numbers are never read: the recipe is chosen on the validation split.

Usage (about 8 minutes per variant on 2 idle cores)::

    .venv/bin/python bench/cnn_recipe_sweep.py --base WORKDIR --out DIR [--variants NAME ...]

``--base`` must hold a finished default (quick) run; its own models are scored as the variant ``current``
(no retraining). Results: ``DIR/sweep.json`` and a markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from morphomass.cnn import run_extract, run_train_cnn
from morphomass.config import load_config
from morphomass.evaluate.metrics import l1_tilde_per_galaxy
from morphomass.evaluate.statistics import bootstrap_means, paired_bootstrap_pvalue
from morphomass.gbm import run_train_gbm
from morphomass.workdir import WorkDir

#: Variant name -> cnn overrides of the quick preset. The budgets are chosen to cost about the same CPU time
#: as the current recipe (per-image training costs from bench/README.md: ResNet18 at 64 px 15.5 ms, Xception
#: 44.4 ms, the CNN3 network 5.8 ms).
VARIANTS: dict[str, dict[str, Any]] = {
    "current": {},
    # the same recipe with another seed: the run-to-run scatter that any difference must beat
    "seed1": {"seed": 1},
    # Xception learns little in 2 rounds of 1 792 images (its validation loss stays above the training
    # mean's): half its images (79 CPU-s) go to CNN1 instead (+5 120 images at 15.5 ms)
    "cnn2_to_cnn1": {
        "nets": {"cnn1": {"train_images_budget": 15_872}, "cnn2": {"epochs": 1, "train_images_budget": 1_792}}
    },
    # the same images in batches of 32: twice the optimiser steps
    "batch32": {"batch_size": 32},
    # no zoom augmentation: the image side is fixed to 1.125 x D25, so a zoom shows a size the data never have
    "no_zoom": {"augment_zoom": [1.0, 1.0]},
}

#: Validation-split models scored (``pred_<name>`` columns of models/gbm/predictions.parquet).
MODELS: tuple[str, ...] = (
    "reference_lg_z",
    "g_morph",
    "g_classical",
    "g_morph_classical",
    "gi_gbm",
    "gi_morph",
    "gi_morph_classical",
)
#: The yardstick: g + all morphology (CNN and classical).
YARDSTICK = "g_morph_classical"


def _link_inputs(base: Path, dest: Path) -> None:
    """Hard-link the inputs of train-cnn from ``base`` into a fresh ``dest`` (the manifest is not copied)."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for name in ("raw", "images.zarr"):
        shutil.copytree(base / name, dest / name, copy_function=os.link)
    (dest / "features").mkdir()
    os.link(base / "sample.parquet", dest / "sample.parquet")
    os.link(base / "features" / "photometric.parquet", dest / "features" / "photometric.parquet")


def _val_scores(workdir: Path) -> dict[str, np.ndarray]:
    """Per-galaxy L1~ of each model on the validation split."""
    sample = pd.read_parquet(workdir / "sample.parquet", columns=["objid", "ml", "ml_err"])
    pred = pd.read_parquet(workdir / "models" / "gbm" / "predictions.parquet")
    val = pred[pred["split"] == "val"].merge(sample, on="objid", how="left", validate="one_to_one")
    return {
        m: l1_tilde_per_galaxy(val[f"pred_{m}"], val["ml"], val["ml_err"])
        for m in MODELS
        if f"pred_{m}" in val
    }


def run_variant(name: str, base: Path, out: Path) -> dict[str, Any]:
    """Retrain the CNNs and GBMs of one variant (or score the base run for ``current``)."""
    if name == "current":
        return {"name": name, "workdir": str(base), "seconds": {}}
    overrides = VARIANTS[name]
    config = load_config("quick", overrides={"cnn": overrides})
    dest = out / name
    _link_inputs(base, dest)
    workdir = WorkDir(dest)
    seconds = {}
    for stage, run in (("train-cnn", run_train_cnn), ("extract", run_extract), ("train-gbm", run_train_gbm)):
        start = time.perf_counter()
        run(config, workdir, progress=False)
        seconds[stage] = round(time.perf_counter() - start, 1)
        print(f"{name}: {stage} {seconds[stage]} s", flush=True)
    return {"name": name, "workdir": str(dest), "seconds": seconds, "overrides": overrides}


def main() -> None:
    """Run the variants and print the validation-split table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--base", type=Path, required=True, help="work directory of a finished quick run")
    parser.add_argument("--out", type=Path, required=True, help="folder for the variants' work directories")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--resamples", type=int, default=2000)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    done_path = args.out / "sweep.json"
    done = json.loads(done_path.read_text()) if done_path.exists() else {}
    for name in args.variants:
        if name not in done:
            done[name] = run_variant(name, args.base, args.out)
            done_path.write_text(json.dumps(done, indent=1))
    rng = np.random.default_rng(2019)
    reference = _val_scores(Path(done[args.variants[0]]["workdir"]))[YARDSTICK]
    header = "| variant | " + " | ".join(MODELS) + f" | {YARDSTICK} - first | paired p |"
    print(header)
    print("|" + " --- |" * (len(MODELS) + 3))
    for name in args.variants:
        scores = _val_scores(Path(done[name]["workdir"]))
        cells = []
        for m in MODELS:
            se = bootstrap_means(scores[m], n_resamples=args.resamples, rng=rng).std(ddof=1)
            cells.append(f"{scores[m].mean():.3f} ± {se:.3f}")
        diff = scores[YARDSTICK].mean() - reference.mean()
        p = paired_bootstrap_pvalue(scores[YARDSTICK], reference, n_resamples=args.resamples, rng=rng)
        done[name]["val_l1"] = {m: float(scores[m].mean()) for m in MODELS}
        done[name]["paired_p_vs_first"] = p
        print(f"| {name} | " + " | ".join(cells) + f" | {diff:+.3f} | {p:.3g} |")
    done_path.write_text(json.dumps(done, indent=1))


if __name__ == "__main__":
    main()
