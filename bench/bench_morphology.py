"""Benchmark: classical morphology (``morph_*``) per galaxy, against statmorph timed in the same run.

Times :func:`morphomass.preprocess.morphology.compute_morphology` (what the preprocess stage runs per galaxy)
on SDSS-like synthetic galaxies (GalSim exponential disc + de Vaucouleurs bulge, 1.4" seeing at 0.396"/px,
white noise, a neighbour in half of them) at the sizes of the quick preset's unscaled images (1.125 D25 at
0.396"/px: ~64-200 px), and on the five real SDSS cut-outs (241 px). The baseline is statmorph 0.7
(``SourceMorphology``, the field's reference, Sérsic fit included) on the same images, segmentation and mask.
Budget: 10 ms CPU per galaxy at the quick sizes.

Usage::

    .venv/bin/python bench/bench_morphology.py             # 30 galaxies per size, statmorph on 5 per size
    .venv/bin/python bench/bench_morphology.py -n 100 --baseline 10
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def make_galaxy(size: int, rng: np.random.Generator) -> np.ndarray:
    """Return a bulge + disc galaxy (nanomaggies) of a size that fills ~1/3 of the image, plus noise."""
    import galsim

    re_disc = size / rng.uniform(6.0, 10.0)
    disc = galsim.Exponential(half_light_radius=re_disc, flux=rng.uniform(20, 200)).shear(
        q=rng.uniform(0.2, 1.0), beta=rng.uniform(0, 180) * galsim.degrees
    )
    bulge = galsim.DeVaucouleurs(half_light_radius=0.3 * re_disc, flux=rng.uniform(0, 1) * disc.flux)
    profile = disc + bulge
    if rng.uniform() < 0.5:  # a neighbour
        neighbour = galsim.Exponential(half_light_radius=0.5 * re_disc, flux=0.3 * disc.flux)
        profile += neighbour.shift(rng.uniform(0.25, 0.4) * size, rng.uniform(-0.3, 0.3) * size)
    psf = galsim.Gaussian(fwhm=1.4 / 0.396)
    image = galsim.Convolve(profile, psf).drawImage(nx=size, ny=size, scale=1.0).array.astype(np.float64)
    return image + rng.normal(0.0, 0.03, image.shape)


def _cpu_ms(func, images: list[np.ndarray]) -> float:
    start = time.process_time()
    for image in images:
        func(image)
    return 1e3 * (time.process_time() - start) / max(len(images), 1)


def main() -> None:
    """Run the benchmark and print a table."""
    from factories.morphology import real_star_subtracted, statmorph_reference
    from morphomass.preprocess.morphology import compute_morphology

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=30, help="galaxies per size (ours)")
    parser.add_argument("--baseline", type=int, default=5, help="galaxies per size for statmorph")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 100, 150, 200])
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        help="also write the figures as JSON to this file (bench/run_all.py reads it)",
    )
    args = parser.parse_args()
    import cv2

    cv2.setNumThreads(1)
    rng = np.random.default_rng(0)
    sets = {f"mock {s} px": [make_galaxy(s, rng) for _ in range(args.n)] for s in args.sizes}
    real = sorted((ROOT / "tests" / "data" / "sdss_real").glob("*.fits"))
    if real:
        sets["real SDSS 241 px"] = [real_star_subtracted(p)[0] for p in real]

    def ours(image: np.ndarray) -> None:
        compute_morphology(
            image, center_xy=((image.shape[1] - 1) / 2, (image.shape[0] - 1) / 2), pixel_kpc=1.0
        )

    def baseline(image: np.ndarray) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            statmorph_reference(image, center_xy=((image.shape[1] - 1) / 2, (image.shape[0] - 1) / 2))

    ours(sets[next(iter(sets))][0])  # imports and first-call costs out of the timings
    print(f"{'images':>18} {'n':>4} {'ours ms/gal':>12} {'statmorph ms/gal':>17} {'speed-up':>9}")
    rows = []
    for name, images in sets.items():
        t_ours = _cpu_ms(ours, images)
        t_base = _cpu_ms(baseline, images[: args.baseline])
        print(f"{name:>18} {len(images):>4} {t_ours:>12.2f} {t_base:>17.1f} {t_base / t_ours:>8.0f}x")
        rows.append(
            {
                "images": name,
                "n": len(images),
                "ours_cpu_ms_per_galaxy": t_ours,
                "statmorph_cpu_ms_per_galaxy": t_base,
                "speedup": t_base / t_ours,
            }
        )
    print("CPU time per galaxy (time.process_time), one thread; budget 10 ms at the quick sizes (64-200 px)")
    if args.json is not None:
        figures = {"budget_ms_per_galaxy": 10.0, "rows": rows}
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
