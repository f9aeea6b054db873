"""Benchmark: the whole ``preprocess`` stage on 256x256 images.

Against a naive baseline timed in the same run.

The script writes a work directory of N synthetic galaxies (256x256 float32 FITS in nanomaggies with a TAN
WCS, an exponential disc + de Vaucouleurs bulge, SDSS-like noise and 0-3 Moffat stars each, all in
``raw/stars.csv``) and a matching ``sample.parquet``. It then times, on the same files:

- ``stage, 1 worker``: ``run_preprocess`` in this process (``preprocess.workers = 1``): galaxies/s = per core;
- ``stage, K workers``: ``run_preprocess`` on a local Dask cluster of K processes, wall clock including the
  cluster start-up; per core = galaxies/s / K;
- ``naive baseline``: the textbook loop in one process: full-header ``astropy.wcs.WCS``, the same star
  subtraction, ``astropy.stats.sigma_clip`` for the noise level, ``scipy.ndimage.zoom`` (cubic) for every
  size, the same features, then one zarr write of everything.

Output sizes are those of the chosen preset's networks (paper: 69, 128, 197). Target: 100 galaxies/s/core, so
that the paper's 84 723 images take under 10 minutes on 2 cores.

Usage::

    .venv/bin/python bench/bench_preprocess.py                  # N = 1000, paper sizes, all cores
    .venv/bin/python bench/bench_preprocess.py -n 3000 --workers 2 --preset quick
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from morphomass.config import PipelineConfig, load_config
from morphomass.mock.survey import image_wcs
from morphomass.photometry import luminosity_per_nanomaggy
from morphomass.preprocess import stage
from morphomass.preprocess.features import compute_photometric_features
from morphomass.preprocess.fits_image import sky_to_pixel
from morphomass.preprocess.scaling import log_scale, rescale_linear, solve_scaling_a
from morphomass.preprocess.stage import run_preprocess
from morphomass.preprocess.stars import subtract_stars
from morphomass.preprocess.tasks import load_sample, load_star_catalogue, make_galaxy_jobs
from morphomass.rawformats import write_fits_image, write_stars
from morphomass.workdir import WorkDir

TARGET_PER_CORE = 100.0
PIXEL_SCALE_ARCSEC = 0.396
PAPER_IMAGES = 84_723


def _galaxy_image(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic galaxy (nanomaggies per pixel) and the pixel positions of its stars."""
    yy, xx = np.mgrid[:size, :size].astype(np.float64)
    c = (size - 1) / 2.0
    q, pa = rng.uniform(0.3, 1.0), rng.uniform(0, np.pi)
    dx, dy = xx - c, yy - c
    u = dx * np.cos(pa) + dy * np.sin(pa)
    v = (-dx * np.sin(pa) + dy * np.cos(pa)) / q
    r = np.hypot(u, v)
    disc_scale = rng.uniform(0.05, 0.15) * size
    image = rng.uniform(0.02, 0.3) * np.exp(-r / disc_scale)
    image += rng.uniform(0.0, 1.0) * np.exp(-7.67 * ((r / (0.03 * size)) ** 0.25 - 1.0))
    stars = rng.uniform(10, size - 10, (rng.integers(0, 4), 2))
    for x, y in stars:
        alpha = 3.5 / (2 * np.sqrt(2 ** (1 / 3) - 1))
        image += rng.uniform(0.5, 20.0) * (1 + ((xx - x) ** 2 + (yy - y) ** 2) / alpha**2) ** -3
    image += rng.normal(0.0, 0.025, image.shape)
    return image.astype(np.float32), stars


def make_bench_workdir(root: Path, n: int, *, size: int = 256, seed: int = 0) -> WorkDir:
    """Write raw/images/g/*.fits, raw/stars.csv and sample.parquet for ``n`` synthetic galaxies."""
    rng = np.random.default_rng(seed)
    workdir = WorkDir(root).ensure()
    star_rows, sample_rows = [], []
    for k in range(n):
        objid = 1_237_000_000_000_000_000 + k
        ra, dec = rng.uniform(120, 240), rng.uniform(0, 60)
        wcs = image_wcs(ra, dec, size, PIXEL_SCALE_ARCSEC)
        image, stars = _galaxy_image(size, rng)
        write_fits_image(workdir.raw_image("g", objid), image, wcs, "g")
        for sra, sdec in zip(*wcs.wcs_pix2world(stars[:, 0], stars[:, 1], 0), strict=True):
            star_rows.append(
                {
                    "objID": 1_238_000_000_000_000_000 + len(star_rows),
                    "ra": float(sra),
                    "dec": float(sdec),
                    "type": 6,
                    "psfMag_g": 18.0,
                }
            )
        z = rng.uniform(0.02, 0.1)
        dist_mpc = 3e5 * z / 70.0
        sample_rows.append(
            {
                "objid": objid,
                "ra": ra,
                "dec": dec,
                "z": z,
                "d25_arcmin": size * PIXEL_SCALE_ARCSEC / 60 / 1.125,
                "dist_mpc": dist_mpc,
                "pixel_kpc": PIXEL_SCALE_ARCSEC * dist_mpc / 206.265,
            }
        )
    write_stars(workdir.stars, pd.DataFrame(star_rows, columns=["objID", "ra", "dec", "type", "psfMag_g"]))
    pd.DataFrame(sample_rows).to_parquet(workdir.sample, index=False)
    return workdir


def run_naive(workdir: WorkDir, config: PipelineConfig, out: Path) -> int:
    """Return the naive baseline over the whole sample, in this process; returns the number of galaxies."""
    import zarr
    from astropy.io import fits
    from astropy.stats import sigma_clip
    from astropy.wcs import WCS
    from scipy.ndimage import zoom

    pp = config.preprocess
    sizes = sorted({net.input_size for net in config.cnn.nets.values()})
    jobs = make_galaxy_jobs(
        load_sample(workdir.sample), load_star_catalogue(workdir.stars), image_dir=workdir.raw_images / "g"
    )
    images = {s: [] for s in sizes}
    rows = []
    for job in jobs:
        with fits.open(job.path) as hdul, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data = hdul[0].data.astype(np.float32)
            wcs = WCS(hdul[0].header)
        ((cx, cy),) = sky_to_pixel(wcs, job.ra, job.dec)
        stars_xy = sky_to_pixel(wcs, job.stars_radec[:, 0], job.stars_radec[:, 1])
        cleaned = subtract_stars(
            data,
            stars_xy,
            center_xy=(cx, cy),
            nucleus_exclusion_pix=7.6,
            max_fwhm_pix=7.6,
            max_radius_pix=30.0,
            rng=np.random.default_rng(job.objid),
        ).image
        image01 = rescale_linear(cleaned)[0]
        clipped = sigma_clip(image01, sigma=pp.sigma_clip, maxiters=pp.sigma_clip_maxiters)
        a = solve_scaling_a(float(clipped.mean() + pp.noise_n_std * clipped.std()), target=pp.noise_target)
        scaled = log_scale(image01, a)
        for s in sizes:
            images[s].append(np.clip(zoom(scaled, s / scaled.shape[0], order=3), 0, 1))
        rows.append(
            compute_photometric_features(
                cleaned,
                scaled,
                center_xy=(cx, cy),
                scaling_a=a,
                redshift=job.z,
                pixel_kpc=job.pixel_kpc,
                lum_per_nmgy=luminosity_per_nanomaggy(job.dist_mpc, m_sun_ab=5.11),
            )
        )
    group = zarr.open_group(out / "images.zarr", mode="w")
    for s in sizes:
        group.create_array(f"{s}/images", data=np.stack(images[s]), chunks=(32, s, s))
    pd.DataFrame(rows).to_parquet(out / "photometric.parquet")
    return len(jobs)


def _time_stage(workdir: WorkDir, config: PipelineConfig) -> tuple[float, float]:
    """Run the stage from scratch; return (wall seconds, CPU seconds of this process and of the tasks)."""
    for path in (workdir.images_zarr, workdir.features / "photometric.parquet"):
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    start, cpu_start = time.perf_counter(), time.process_time()
    result = run_preprocess(config, workdir, progress=False)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    in_process = config.preprocess.workers == 1
    return wall, cpu if in_process else cpu + result.summary["task_cpu_seconds"]


def main() -> None:
    """Run the benchmark and print its ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=1000, help="galaxies (default 1000)")
    parser.add_argument("--size", type=int, default=256, help="image side in pixels (default 256)")
    parser.add_argument(
        "--workers", type=int, default=len(os.sched_getaffinity(0)), help="Dask worker processes"
    )
    parser.add_argument("--preset", default="paper", choices=["paper", "quick", "tiny"], help="output sizes")
    parser.add_argument(
        "--naive-n", type=int, default=None, help="galaxies for the naive baseline (default n/4)"
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        help="also write the figures as JSON to this file (bench/run_all.py reads it)",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-preprocess-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        workdir = make_bench_workdir(root / "work", args.n, size=args.size)
        print(f"wrote {args.n} galaxies of {args.size}x{args.size} px in {time.perf_counter() - t0:.1f} s")
        sizes = sorted({net.input_size for net in load_config(args.preset).cnn.nets.values()})
        print(
            f"python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs, "
            f"sizes {sizes}, "
            f"load average before {os.getloadavg()[0]:.1f}"
        )

        one = load_config(args.preset, overrides={"preprocess": {"workers": 1}})
        many = load_config(args.preset, overrides={"preprocess": {"workers": args.workers}})
        wall_one, cpu_one = _time_stage(workdir, one)
        stage.MIN_GALAXIES_FOR_CLUSTER = 0  # the K-worker run uses the cluster whatever N
        wall_many, cpu_many = _time_stage(workdir, many)

        naive_n = args.naive_n or max(args.n // 4, 1)
        naive_dir = WorkDir(root / "naive")
        naive_dir.ensure()
        shutil.copytree(workdir.raw, naive_dir.raw, dirs_exist_ok=True)
        load_sample(workdir.sample).head(naive_n).to_parquet(naive_dir.sample, index=False)
        start, cpu_start = time.perf_counter(), time.process_time()
        run_naive(naive_dir, one, root / "naive-out")
        wall_naive, cpu_naive = time.perf_counter() - start, time.process_time() - cpu_start
    print(f"load average after {os.getloadavg()[0]:.1f} (other processes share the cores: compare gal/CPU-s)")

    rows = (
        ("stage, 1 worker (in-process)", args.n, wall_one, 1, cpu_one),
        (f"stage, {args.workers} workers (Dask)", args.n, wall_many, args.workers, cpu_many),
        ("naive baseline, 1 process", naive_n, wall_naive, 1, cpu_naive),
    )
    naive_rate = naive_n / cpu_naive
    print(
        f"{'':30s}{'galaxies':>9s}{'wall s':>8s}{'gal/s/core':>11s}{'CPU s':>8s}{'gal/CPU-s':>10s}"
        f"{'vs naive':>9s}{'vs target':>10s}"
    )
    figures: dict = {"size_px": args.size, "sizes": sizes, "target_per_core": TARGET_PER_CORE, "rows": []}
    for name, n, wall, cores, cpu in rows:
        rate = n / cpu
        print(
            f"{name:30s}{n:9d}{wall:8.2f}{n / wall / cores:11.1f}{cpu:8.2f}{rate:10.1f}"
            f"{rate / naive_rate:8.2f}x{rate / TARGET_PER_CORE:9.2f}x"
        )
        figures["rows"].append(
            {
                "run": name,
                "galaxies": n,
                "wall_s": wall,
                "galaxies_per_s_per_core": n / wall / cores,
                "cpu_s": cpu,
                "galaxies_per_cpu_s": rate,
                "vs_naive": rate / naive_rate,
                "vs_target": rate / TARGET_PER_CORE,
            }
        )
    per_core = args.n / cpu_many
    minutes = PAPER_IMAGES / (per_core * 2) / 60
    print(
        f"paper sample ({PAPER_IMAGES} images of this size) on 2 dedicated cores at "
        f"{per_core:.0f} gal/CPU-s: "
        f"{minutes:.1f} min (target < 10 min: {'met' if minutes < 10 else 'not met'})"
    )
    if args.json is not None:
        figures["paper_sample_minutes_on_2_cores"] = minutes
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
