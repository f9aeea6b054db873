"""Benchmark: mock-galaxy rendering + FITS writing, against a one-draw-per-band baseline timed in one run.

The mock renderer (``morphomass.mock.render.render_galaxy``) draws a galaxy's *old* and *young* light groups
once with GalSim and mixes them per band, so its cost should barely grow with the number of bands. The
baseline is the naive renderer: one GalSim ``Convolve(...).drawImage`` set per band, obtained by calling
``render_galaxy`` once per band with a single-band spec (same profiles, same PSF, same stars, same noise
model).

Both render and write the FITS files of quick-preset galaxies (``make_survey`` with the quick configuration
and ``n_galaxies=N``, then ``stage.galaxy_specs`` and ``stage.render_and_write`` into a temporary directory)
in a single process, so galaxies per second is also galaxies per second per core. Each measurement runs in its
own fresh (spawned) process, GalSim warmed up on other galaxies, so that GalSim's caches do not favour
whichever renderer runs second; the best of ``--repeats`` runs is reported. Target: 50 galaxies/s/core.

Usage::

    .venv/bin/python bench/bench_mock_render.py            # N = 200, bands g and ugriz, best of 3
    .venv/bin/python bench/bench_mock_render.py -n 500 --bands g gi ugriz --repeats 1 --seed 7
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import platform
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from astropy.io import fits

from morphomass.config import MockConfig, load_config
from morphomass.mock.render import GalaxyImageSpec, render_galaxy
from morphomass.mock.stage import galaxy_specs, render_and_write
from morphomass.mock.survey import Survey, image_wcs, make_survey
from morphomass.rawformats import write_fits_image

TARGET_PER_CORE = 50.0


def _jobs(
    survey: Survey, mock: MockConfig, out: Path
) -> list[tuple[GalaxyImageSpec, float, float, dict[str, str]]]:
    """Build the render jobs of ``run_mock`` (spec, ra, dec, {band: path}) for the galaxies with images."""
    specs = galaxy_specs(survey, mock)
    images = survey.truth[survey.truth["has_image"]]
    for band in mock.image_bands:
        (out / band).mkdir(parents=True, exist_ok=True)
    return [
        (spec, float(ra), float(dec), {b: str(out / b / f"{int(objid)}.fits") for b in mock.image_bands})
        for spec, objid, ra, dec in zip(specs, images["objid"], images["ra"], images["dec"], strict=True)
    ]


def _single_band(spec: GalaxyImageSpec, k: int) -> GalaxyImageSpec:
    """Restrict a spec to its k-th band (fluxes of the galaxy, of every star and of every neighbour)."""
    return dataclasses.replace(
        spec,
        bands=(spec.bands[k],),
        flux_nmgy=(spec.flux_nmgy[k],),
        star_flux_nmgy=tuple((fluxes[k],) for fluxes in spec.star_flux_nmgy),
        neighbours=tuple(dataclasses.replace(n, flux_nmgy=(n.flux_nmgy[k],)) for n in spec.neighbours),
    )


def naive_render_and_write(jobs: list[tuple[GalaxyImageSpec, float, float, dict[str, str]]]) -> int:
    """Baseline: draw and write every band separately (one full GalSim rendering per band)."""
    for spec, ra, dec, paths in jobs:
        wcs = image_wcs(ra, dec, spec.nx, spec.pixel_scale_arcsec)
        for k, band in enumerate(spec.bands):
            image = render_galaxy(_single_band(spec, k))[band]
            write_fits_image(
                Path(paths[band]), image, wcs, band, {"MOCKSEED": (str(spec.seed), "mock render seed")}
            )
    return len(jobs)


def _timed(function, jobs) -> float:
    """CPU seconds of this process while ``function(jobs)`` runs; it must render every job.

    CPU time, not wall time: the measurement runs in one process, so this is the cost per core, and it does
    not grow when other programs share the machine.
    """
    start = time.process_time()
    done = function(jobs)
    seconds = time.process_time() - start
    if done != len(jobs):
        msg = f"{function.__name__} rendered {done} of {len(jobs)} galaxies"
        raise RuntimeError(msg)
    return seconds


def _check_same_images(a: Path, b: Path, band: str) -> float:
    """Largest |difference| between the two renderers' images in ``band``, relative to each image's peak.

    The first band of a spec draws the same noise in both renderers, so its images must agree to float32
    precision: the baseline renders the same galaxies (later bands differ by their noise realisation only).
    """
    worst = 0.0
    for path in sorted((a / band).glob("*.fits"))[:20]:
        x = fits.getdata(path).astype(np.float64)
        y = fits.getdata(b / band / path.name).astype(np.float64)
        worst = max(worst, float(np.abs(x - y).max() / max(np.abs(x).max(), 1e-12)))
    return worst


def _measure(renderer: str, letters: str, n_galaxies: int, seed: int, out: str) -> tuple[int, float, int]:
    """Draw the survey, warm GalSim up on other galaxies and time one renderer on one band set.

    Returns (galaxies, seconds, median image side in pixels). A fresh process per measurement keeps GalSim's
    profile caches (Sersic tables, which depend on each galaxy's truncation) from favouring whichever renderer
    runs second on the same galaxies.
    """
    config = load_config(
        "quick",
        overrides={
            "mock": {"n_galaxies": n_galaxies, "seed": seed, "workers": 1, "image_bands": list(letters)}
        },
    )
    mock = config.mock
    survey = make_survey(mock, np.random.default_rng(mock.seed))
    warm_mock = mock.model_copy(update={"n_galaxies": 5})
    warm = make_survey(warm_mock, np.random.default_rng(mock.seed + 1))
    with tempfile.TemporaryDirectory() as tmp:
        render_and_write(_jobs(warm, warm_mock, Path(tmp)))
    jobs = _jobs(survey, mock, Path(out))
    seconds = _timed(render_and_write if renderer == "mock" else naive_render_and_write, jobs)
    return len(jobs), seconds, int(np.median([job[0].nx for job in jobs]))


def _in_fresh_process(*args: object) -> tuple[int, float, int]:
    """Run :func:`_measure` in a new spawned interpreter."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(_measure, *args).result()


def run(n_galaxies: int, band_sets: list[str], seed: int, repeats: int) -> list[dict[str, float | str | int]]:
    """Time both renderers on each band set; one row per band set (best of ``repeats`` for each renderer)."""
    rows = []
    for letters in band_sets:
        fast = naive = float("inf")
        for _ in range(repeats):
            with tempfile.TemporaryDirectory() as tmp:
                fast_dir, naive_dir = Path(tmp) / "mock", Path(tmp) / "naive"
                n, fast_s, side = _in_fresh_process("mock", letters, n_galaxies, seed, str(fast_dir))
                n_naive, naive_s, _ = _in_fresh_process("naive", letters, n_galaxies, seed, str(naive_dir))
                if n_naive != n:
                    msg = f"the two renderers saw {n} and {n_naive} galaxies"
                    raise RuntimeError(msg)
                diff = _check_same_images(fast_dir, naive_dir, letters[0])
            fast, naive = min(fast, fast_s), min(naive, naive_s)
        rows.append(
            {
                "bands": letters,
                "n": n,
                "side_px": side,
                "mock_s": fast,
                "naive_s": naive,
                "mock_rate": n / fast,
                "naive_rate": n / naive,
                "speedup": naive / fast,
                "max_rel_diff": diff,
            }
        )
    return rows


def main() -> None:
    """Parse the command line, run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "-n", "--n-galaxies", type=int, default=200, help="galaxies with images (default 200)"
    )
    parser.add_argument(
        "--bands", nargs="+", default=["g", "ugriz"], help="band sets to time (default: g ugriz)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement, best kept (default 3)")
    parser.add_argument("--seed", type=int, default=2019)
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        help="also write the figures as JSON to this file (bench/run_all.py reads it)",
    )
    args = parser.parse_args()
    print(
        f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores visible; python "
        f"{platform.python_version()}; one core per measurement, best of {args.repeats}"
    )
    rows = run(args.n_galaxies, args.bands, args.seed, args.repeats)
    print()
    print(
        f"{'bands':>6} {'galaxies':>8} {'side px':>7} {'mock s':>8} {'mock gal/s/core':>16} {'naive s':>8} "
        f"{'naive gal/s/core':>17} {'mock/naive':>11} {'target':>7}"
    )
    for r in rows:
        print(
            f"{r['bands']:>6} {r['n']:>8d} {r['side_px']:>7d} {r['mock_s']:>8.2f} {r['mock_rate']:>16.1f} "
            f"{r['naive_s']:>8.2f} {r['naive_rate']:>17.1f} {r['speedup']:>10.2f}x {TARGET_PER_CORE:>7.0f}"
        )
    print()
    for r in rows:
        print(
            f"{r['bands']}: mock renderer {r['speedup']:.2f}x the per-band baseline; "
            f"{r['mock_rate'] / TARGET_PER_CORE:.2f}x the target of {TARGET_PER_CORE:.0f} galaxies/s/core; "
            f"first-band images differ from the baseline's by at most {r['max_rel_diff']:.1e} of their peak"
        )
    if args.json is not None:
        figures = {"target_per_core": TARGET_PER_CORE, "repeats": args.repeats, "rows": rows}
        args.json.write_text(json.dumps(figures, indent=2, default=float) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
