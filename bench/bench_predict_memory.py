"""Benchmark: peak memory of one galaxy's preprocessing in ``morphomass predict``, by image size.

For square images of 512 to 4096 pixels (float32, nanomaggies, TAN WCS at 0.396"/px, a galaxy and noise), a
fresh process imports morphomass, runs ``measure_job`` once on a 64-pixel image (so that the libraries it
imports lazily are loaded), then measures the peak of the memory allocated (tracemalloc, which numpy reports
to) while it runs ``measure_job`` (star subtraction, scaling, resizing, photometric and classical-morphology
features) on the image:

- ``full resolution``: as the preprocess stage runs it (and predict did before images were block-reduced);
- ``predict``: with predict's default ``reduce_above`` (2048 px): a larger image is read in strips and
  block-reduced by ``k`` (the column gives ``k``) to at most 1024 px before the preprocessing.

Each is printed as a multiple of the image's own size, against a baseline measured in the same run: a fresh
process that only reads the same image with astropy. Images above ``max_image_side`` (4096 by default) are
refused by predict from their header. ``--breakdown SIDE`` prints, for one full-resolution image, the peak of
each step above the memory held when it starts (what dominates).
Usage: ``.venv/bin/python bench/bench_predict_memory.py [--sides 512 4096] [--breakdown 1024]``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

_MEASURE = r"""
import sys, tracemalloc
import numpy as np
from astropy.io import fits
from morphomass.config import PreprocessConfig
from morphomass.predict.predictor import DEFAULT_REDUCE_ABOVE
from morphomass.preprocess.tasks import GalaxyJob, measure_job

path, warm, what = sys.argv[1], sys.argv[2], sys.argv[3]
def job(p):
    return GalaxyJob(objid=1, path=p, ra=150.0, dec=2.0, z=0.05, dist_mpc=220.0, pixel_kpc=0.4,
                     stars_radec=np.zeros((0, 2)))
kwargs = {"sizes": (64, 69), "config": PreprocessConfig(), "m_sun_ab": 5.11}
reduce_above = DEFAULT_REDUCE_ABOVE if what == "predict" else None
measure_job(job(warm), **kwargs, reduce_above=reduce_above)  # lazy imports, before the measurement
measure_job(job(warm), **kwargs, reduce_above=16)  # the block-reduced path's imports too
fits.getdata(warm)
factor = 1
tracemalloc.start()
if what == "read":
    data = fits.getdata(path)
    float(np.nansum(data))
else:
    products, _, _ = measure_job(job(path), **kwargs, reduce_above=reduce_above)
    factor = products.block_factor
print(tracemalloc.get_traced_memory()[1], factor)
"""

_BREAKDOWN = r"""
import sys, tracemalloc
import numpy as np
from morphomass.config import PreprocessConfig
import morphomass.preprocess.galaxy as galaxy
import morphomass.preprocess.tasks as tasks

path, warm, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
def job(p):
    return tasks.GalaxyJob(1, p, 150.0, 2.0, 0.05, 220.0, 0.4, np.zeros((0, 2)))
kwargs = {"sizes": (64, 69), "config": PreprocessConfig(), "m_sun_ab": 5.11}
tasks.measure_job(job(warm), **kwargs)
steps = {}
def traced(module, name):
    function = getattr(module, name)
    def run(*args, **kw):
        held = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        out = function(*args, **kw)
        steps[name] = max(steps.get(name, 0), tracemalloc.get_traced_memory()[1] - held)
        return out
    setattr(module, name, run)
for module, name in ((tasks, "load_galaxy_image"), (galaxy, "subtract_stars"), (galaxy, "rescale_linear"),
                     (galaxy, "compute_noise_level"), (galaxy, "log_scale"), (galaxy, "resize_image"),
                     (tasks, "compute_morphology"), (tasks, "compute_photometric_features")):
    traced(module, name)
tracemalloc.start()
tasks.measure_job(job(path), **kwargs)
for name, peak in steps.items():
    print(f"| `{name}` | {peak / size:.1f} |")
"""


def write_image(path: Path, side: int, rng: np.random.Generator) -> int:
    """Write a galaxy image of ``side`` pixels; return its data size in bytes."""
    y, x = np.mgrid[:side, :side] - (side - 1) / 2
    radius = np.hypot(x, y * 1.4)
    image = 50.0 * np.exp(-radius / (side / 12)) + rng.normal(0, 0.02, (side, side))
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [150.0, 2.0]
    wcs.wcs.crpix = [(side + 1) / 2, (side + 1) / 2]
    wcs.wcs.cdelt = [-0.396 / 3600, 0.396 / 3600]
    fits.writeto(path, image.astype(np.float32), wcs.to_header(), overwrite=True)
    return side * side * 4


def _run(script: str, *args: object) -> str:
    done = subprocess.run([sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return done.stdout


def peak_bytes(path: Path, warm: Path, what: str) -> tuple[int, int]:
    """Run one measurement in a fresh process; return its peak allocated memory (bytes) and block factor."""
    peak, factor = _run(_MEASURE, path, warm, what).strip().splitlines()[-1].split()
    return int(peak), int(factor)


def main() -> None:
    """Measure every size and print the table (and the breakdown when asked)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sides", type=int, nargs="+", default=[512, 1024, 2048, 2049, 3072, 4096])
    parser.add_argument("--breakdown", type=int, default=0, help="side of the image to break down (0: none)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        warm = Path(tmp) / "warm.fits"
        write_image(warm, 64, rng)
        if args.breakdown:
            path = Path(tmp) / "breakdown.fits"
            size = write_image(path, args.breakdown, rng)
            print(
                f"{args.breakdown} px, full resolution: peak of each step above what is held when it starts"
            )
            print("| step | peak / image |")
            print("| --- | --- |")
            print(_run(_BREAKDOWN, path, warm, size), end="")
        print(
            "| side px | image MiB | read only: peak / image | full resolution: peak / image | "
            "predict: peak / image (k) |"
        )
        print("| --- | --- | --- | --- | --- |")
        for side in args.sides:
            path = Path(tmp) / f"{side}.fits"
            size = write_image(path, side, rng)
            read = peak_bytes(path, warm, "read")[0] / size
            full = peak_bytes(path, warm, "full")[0] / size
            predict, factor = peak_bytes(path, warm, "predict")
            print(
                f"| {side} | {size / 2**20:.0f} | {read:.1f} | {full:.1f} | {predict / size:.1f} ({factor}) |"
            )
            path.unlink()


if __name__ == "__main__":
    main()
