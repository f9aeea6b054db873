"""Benchmark: peak memory of one galaxy's preprocessing (what ``morphomass predict`` runs per image).

For square images of 512 to 4096 pixels (float32, nanomaggies, TAN WCS at 0.396"/px, a galaxy and noise), a
fresh process imports morphomass and runs ``measure_job`` (star subtraction, scaling, resizing, photometric
and classical-morphology features) on one image. Printed: the peak of the memory it allocates (tracemalloc,
which numpy reports to; started after the imports) as a multiple of the image's own size, against a baseline
measured in the same run: a fresh process that only reads the same image with astropy. Images above
``max_image_side`` (4096 by default) are refused by predict before their data are read (``image_too_large``).
Usage: ``.venv/bin/python bench/bench_predict_memory.py``.
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
from morphomass.preprocess.tasks import GalaxyJob, measure_job

path, what = sys.argv[1], sys.argv[2]
tracemalloc.start()
if what == "read":
    data = fits.getdata(path)
    float(np.nansum(data))
else:
    job = GalaxyJob(objid=1, path=path, ra=150.0, dec=2.0, z=0.05, dist_mpc=220.0, pixel_kpc=0.4,
                    stars_radec=np.zeros((0, 2)))
    measure_job(job, sizes=(64, 69), config=PreprocessConfig(), m_sun_ab=5.11)
print(tracemalloc.get_traced_memory()[1])
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


def peak_bytes(path: Path, what: str) -> int:
    """Run one measurement in a fresh process; return the peak memory it allocated (bytes)."""
    done = subprocess.run([sys.executable, "-c", _MEASURE, str(path), what], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return int(done.stdout.strip().splitlines()[-1])


def main() -> None:
    """Measure every size and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sides", type=int, nargs="+", default=[512, 1024, 2048, 4096])
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print("| side px | image MiB | read only: peak / image | measure_job: peak / image |")
    print("| --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        for side in args.sides:
            path = Path(tmp) / f"{side}.fits"
            size = write_image(path, side, rng)
            read, job = peak_bytes(path, "read") / size, peak_bytes(path, "job") / size
            print(f"| {side} | {size / 2**20:.0f} | {read:.1f} | {job:.1f} |")


if __name__ == "__main__":
    main()
