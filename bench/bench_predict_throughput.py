"""Benchmark: ``predict`` galaxies per CPU-second against the bare forward passes of the bundle's networks.

What it times: :meth:`morphomass.predict.Bundle.predict` (the public API: ``load_bundle(path).predict(images,
catalog, stars=...)``) on the galaxies of a work directory: reading each FITS image, star subtraction,
scaling, resizing, the photometric and classical-morphology features, every network of the bundle, the
GBM, the output table. By default it builds a tiny-preset bundle first (mock, catalog, preprocess,
train-cnn, extract, train-gbm, bundle in a temporary work directory, ~1-2 min on 2 cores, not timed);
``--bundle PATH`` reuses one (``bundle.json``, its folder or a work directory; the images, catalogue and
stars default to those of the work directory around it, e.g. a quick run's).

Baseline, timed in the same run with the same torch threads and batch size: the bare forward passes of the
same networks (``bundle.networks("cpu")``, eval mode, ``torch.inference_mode``) on preprocessed tensors of
their input sizes (random values in [0, 1]: the cost does not depend on them), i.e. what prediction would
cost if everything but the networks were free. Ratio = predict CPU per galaxy / bare forward CPU per galaxy
(the issue's goal: within 1.3x).

Then a profile of one more prediction of the same galaxies, with timers (CPU clock) around the functions that
predict calls for each part: reading the image data (``preprocess.tasks.load_galaxy_image``), the
preprocessing (``preprocess_galaxy``: star subtraction, scaling, resizing), the classical morphology, the
photometric features, each network's ``forward_features``, the rest of the network step
(``cnn.extract.extract_features``: stacking, conversions), the GBM (``gbm.train.predict_ml``); the rest
(catalogue, FITS header checks, flags, output table) is the difference to the total. The timers wrap those
functions in this process only (nothing is edited); a name that no longer exists is reported as such.

CPU time is ``time.process_time`` (all threads of this process); with ``--threads 1`` (default) it is the
single-core cost and does not depend on what else runs on the machine. Start-up (loading the bundle, the
first prediction that builds the networks and imports torch and LightGBM) is reported separately.

    .venv/bin/python bench/bench_predict_throughput.py                       # tiny bundle, built here
    .venv/bin/python bench/bench_predict_throughput.py --bundle /path/to/quick/workdir --limit 400
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import os
import platform
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

#: Profile parts: (label, module, function) wrapped with a CPU timer during the profiled prediction. The
#: functions are looked up in their modules at each call by their callers (predict imports them at call time,
#: measure_job calls them as module globals), so wrapping the module attribute times every call.
PARTS: tuple[tuple[str, str, str], ...] = (
    ("read image data", "morphomass.preprocess.tasks", "load_galaxy_image"),
    ("preprocess (stars, scaling, resizing)", "morphomass.preprocess.tasks", "preprocess_galaxy"),
    ("classical morphology", "morphomass.preprocess.tasks", "_morphology"),
    ("photometric features", "morphomass.preprocess.tasks", "compute_photometric_features"),
    ("network step", "morphomass.cnn.extract", "extract_features"),
    ("GBM", "morphomass.gbm.train", "predict_ml"),
)


def work_dir_of(bundle: Path) -> Path | None:
    """Return the work directory around a bundle path (``bundle.json``, ``models/`` or the work dir)."""
    for candidate in (bundle, bundle.parent, bundle.parent.parent):
        if (candidate / "sample.parquet").is_file() and (candidate / "raw").is_dir():
            return candidate
    return None


def build_tiny_bundle(root: Path) -> Path:
    """Run the pipeline's stages up to the bundle with the tiny preset in ``root``; return the work dir."""
    from morphomass.config import load_config
    from morphomass.pipeline import execute_stage
    from morphomass.workdir import WorkDir

    config = load_config("tiny")
    workdir = WorkDir(root)
    for stage in ("mock", "catalog", "preprocess", "train-cnn", "extract", "train-gbm", "bundle"):
        execute_stage(stage, config, workdir, progress=False)
    return root


def prediction_inputs(workdir: Path, limit: int | None) -> tuple[pd.DataFrame, Path, Path | None]:
    """Return a work dir's catalogue (objid, ra, dec, z, d25_arcmin, modelMag_g/i), images and stars."""
    sample = pd.read_parquet(workdir / "sample.parquet", columns=["objid", "ra", "dec", "z", "d25_arcmin"])
    photometry = workdir / "raw" / "sdss_photometry.csv"
    if photometry.is_file():
        phot = pd.read_csv(photometry).rename(columns={"objID": "objid"})
        columns = ["objid", *(c for c in ("modelMag_g", "modelMag_i") if c in phot)]
        sample = sample.merge(phot[columns], on="objid", how="left")
    if limit is not None:
        sample = sample.head(limit)
    stars = workdir / "raw" / "stars.csv"
    return sample.reset_index(drop=True), workdir / "raw" / "images", stars if stars.is_file() else None


def _cpu(run: Callable[[], Any]) -> tuple[float, float, Any]:
    """CPU and wall seconds of ``run()``, and its result."""
    cpu, wall = time.process_time(), time.perf_counter()
    result = run()
    return time.process_time() - cpu, time.perf_counter() - wall, result


def bare_forward_cpu(
    networks: dict[str, Any], sizes: dict[str, int], n: int, *, batch_size: int
) -> dict[str, float]:
    """CPU seconds per galaxy of each network's bare ``forward_features`` on ``n`` random images.

    The images have the network's input size; ``forward_features`` is what predict calls (the outputs and the
    trunk features in one pass).
    """
    import torch

    rng = np.random.default_rng(0)
    per_net = {}
    for name, net in networks.items():
        size = sizes[name]
        images = torch.from_numpy(rng.random((n, 1, size, size), dtype=np.float32))
        with torch.inference_mode():
            net.forward_features(images[:batch_size])  # warm-up (first-call allocations)
            start = time.process_time()
            for i in range(0, n, batch_size):
                net.forward_features(images[i : i + batch_size])
            per_net[name] = (time.process_time() - start) / n
    return per_net


class _ForwardTimer:
    """Time each network's ``forward_features`` (what predict calls) by wrapping it on the instance."""

    def __init__(self, networks: dict[str, Any]) -> None:
        self.seconds = dict.fromkeys(networks, 0.0)
        self._networks = networks
        for name, net in networks.items():
            net.forward_features = self._timed(name, net.forward_features)

    def _timed(self, name: str, forward: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            start = time.process_time()
            try:
                return forward(*args, **kwargs)
            finally:
                self.seconds[name] += time.process_time() - start

        return run

    def remove(self) -> None:
        """Put the networks' own methods back."""
        for net in self._networks.values():
            del net.forward_features


@contextlib.contextmanager
def part_timers() -> Iterator[dict[str, float | None]]:
    """Time the functions of :data:`PARTS` during the block; yield label -> CPU seconds (None: absent)."""
    seconds: dict[str, float | None] = {}
    restore = []
    for label, module_name, name in PARTS:
        module = importlib.import_module(module_name)
        original = getattr(module, name, None)
        if original is None:
            seconds[label] = None
            continue
        seconds[label] = 0.0

        def timed(*args: Any, _f: Callable[..., Any] = original, _label: str = label, **kwargs: Any) -> Any:
            start = time.process_time()
            try:
                return _f(*args, **kwargs)
            finally:
                seconds[_label] += time.process_time() - start  # type: ignore[operator]

        setattr(module, name, timed)
        restore.append((module, name, original))
    try:
        yield seconds
    finally:
        for module, name, original in restore:
            setattr(module, name, original)


def machine() -> str:
    """One line naming the machine: host, CPU model, cores, torch and its threads."""
    import torch

    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{platform.node()}, {model}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; "
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)"
    )


def main() -> None:
    """Parse the command line, build or load the bundle, time, profile and print the tables."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--bundle", type=Path, default=None, help="existing bundle (default: build a tiny one)"
    )
    parser.add_argument("--images", type=Path, default=None, help="image folder (default: the work dir's)")
    parser.add_argument("--catalog", type=Path, default=None, help="catalogue file (default: the work dir's)")
    parser.add_argument("--stars", type=Path, default=None, help="star catalogue (default: the work dir's)")
    parser.add_argument("--limit", type=int, default=None, help="predict the first N galaxies only")
    parser.add_argument("--batch-size", type=int, default=64, help="galaxies per batch (predict's default)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: per-core cost)")
    parser.add_argument("--keep", type=Path, default=None, help="build the tiny bundle here and keep it")
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        help="also write the figures as JSON to this file (bench/run_all.py reads it)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore")
    import torch

    torch.set_num_threads(args.threads)
    from morphomass.predict import load_bundle

    with tempfile.TemporaryDirectory(prefix="bench_predict_") as tmp:
        built = args.bundle is None
        if built:
            root = args.keep or Path(tmp) / "work"
            start = time.perf_counter()
            build_tiny_bundle(root)
            print(f"built a tiny-preset bundle in {root} in {time.perf_counter() - start:.0f} s (not timed)")
            bundle_path = root
        else:
            bundle_path = args.bundle
        workdir = work_dir_of(bundle_path)
        if workdir is None and (args.images is None or args.catalog is None):
            parser.error(f"{bundle_path}: no work directory around it; give --images and --catalog")
        catalog: pd.DataFrame | Path
        if args.catalog is None:
            catalog, images, stars = prediction_inputs(workdir, args.limit)  # type: ignore[arg-type]
        else:
            catalog, images, stars = args.catalog, args.images, None
        images = args.images or images
        stars = args.stars or stars
        n = len(catalog) if isinstance(catalog, pd.DataFrame) else len(pd.read_csv(catalog))
        print(machine())

        load_cpu, load_wall, bundle = _cpu(lambda: load_bundle(bundle_path))
        manifest = bundle.manifest
        sizes = {name: int(spec["input_size"]) for name, spec in manifest["networks"].items()}
        warm = catalog.head(min(8, n)) if isinstance(catalog, pd.DataFrame) else catalog

        def predict(table: Any) -> pd.DataFrame:
            return bundle.predict(images, table, stars=stars, batch_size=args.batch_size, device="cpu")

        first_cpu, first_wall, _ = _cpu(lambda: predict(warm))
        cpu, wall, out = _cpu(lambda: predict(catalog))
        predicted = int(out["ml_pred"].notna().sum())
        networks = bundle.networks("cpu")
        bare = bare_forward_cpu(networks, sizes, max(n, args.batch_size), batch_size=args.batch_size)
        bare_total = sum(bare.values())
        per_galaxy = cpu / n

        timer = _ForwardTimer(networks)
        with part_timers() as parts:
            prof_cpu, _, _ = _cpu(lambda: predict(catalog))
        timer.remove()

    bundle_label = "tiny (built here)" if built else str(args.bundle)
    preset = manifest.get("preset", "?")
    nets = ", ".join(f"{k} {v['backbone']}@{v['input_size']}" for k, v in manifest["networks"].items())
    print(f"bundle: {bundle_label}, preset {preset}; networks {nets}")
    print(
        f"{n} galaxies ({predicted} predicted), batch {args.batch_size}; start-up: load_bundle "
        f"{load_cpu:.2f} CPU-s, first predict of {min(8, n)} galaxies {first_cpu:.2f} CPU-s"
    )
    print()
    print("| what | CPU ms / galaxy | galaxies / CPU-s | vs bare forward passes |")
    print("| --- | --- | --- | --- |")
    print(
        f"| predict (end to end) | {1e3 * per_galaxy:.1f} | {1 / per_galaxy:.1f} | "
        f"{per_galaxy / bare_total:.2f}x |"
    )
    print(f"| bare forward passes, all networks | {1e3 * bare_total:.1f} | {1 / bare_total:.1f} | 1.00x |")
    for name, seconds in bare.items():
        print(f"| bare forward, {name} @{sizes[name]} px | {1e3 * seconds:.1f} | {1 / seconds:.1f} | - |")
    print(f"wall: predict {wall:.2f} s for {n} galaxies ({n / wall:.1f} galaxies/s)")
    print()
    print(f"profile (timers, CPU clock; {1e3 * prof_cpu / n:.1f} CPU ms / galaxy in the profiled run):")
    print("| part | CPU ms / galaxy | share |")
    print("| --- | --- | --- |")
    rows: list[tuple[str, float | None]] = []
    for label, seconds in parts.items():
        if label == "network step":
            rows += [(f"network {name} forward_features", t) for name, t in timer.seconds.items()]
            step = None if seconds is None else max(0.0, seconds - sum(timer.seconds.values()))
            rows.append(("networks: stacking, conversions", step))
        else:
            rows.append((label, seconds))
    rows.append(("rest (catalogue, headers, flags, table)", prof_cpu - sum(t or 0.0 for _, t in rows)))
    for label, seconds in rows:
        if seconds is None:
            print(f"| {label} | not found (renamed?) | - |")
        else:
            print(f"| {label} | {1e3 * seconds / n:.2f} | {seconds / prof_cpu:.1%} |")

    if args.json is not None:
        figures = {
            "bundle": bundle_label,
            "preset": preset,
            "networks": {k: f"{v['backbone']}@{v['input_size']}" for k, v in manifest["networks"].items()},
            "galaxies": n,
            "predicted": predicted,
            "batch_size": args.batch_size,
            "threads": args.threads,
            "load_bundle_cpu_s": load_cpu,
            "first_predict_cpu_s": first_cpu,
            "predict_cpu_ms_per_galaxy": 1e3 * per_galaxy,
            "predict_galaxies_per_cpu_s": 1 / per_galaxy,
            "predict_wall_s": wall,
            "bare_forward_cpu_ms_per_galaxy": {k: 1e3 * v for k, v in bare.items()},
            "bare_forward_total_cpu_ms_per_galaxy": 1e3 * bare_total,
            "bare_forward_galaxies_per_cpu_s": 1 / bare_total,
            "predict_vs_bare_forward": per_galaxy / bare_total,
            "profiled_run_cpu_ms_per_galaxy": 1e3 * prof_cpu / n,
            "profile": [
                {
                    "part": label,
                    "cpu_ms_per_galaxy": None if t is None else 1e3 * t / n,
                    "share": None if t is None else t / prof_cpu,
                }
                for label, t in rows
            ],
        }
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
