"""Benchmark: peak memory of ``predict`` at N and 4N galaxies, in one process and on Dask (1 and 2 workers).

Issue 17 asks that the peak memory of predict for 4x the galaxies be at most 1.2x that for 1x. The catalogue
of N galaxies repeats the galaxies of a tiny-preset work directory (built here, not timed, as in
``bench_predict_throughput.py``; ``--bundle PATH`` reuses one) under distinct objids, each mapped to an
existing FITS image (``images`` is a mapping objid -> path), so every galaxy is read, preprocessed and
predicted as a real one.

Each measurement runs in a FRESH Python process:

- ``single``: ``load_bundle(path).predict(mapping, catalog)``, the table kept in memory (nothing written).
  Peak = the process's ``VmHWM`` (``/proc/self/status``: the kernel's peak resident size of its address
  space). Not ``getrusage(RUSAGE_SELF).ru_maxrss``: Linux carries it over fork + exec, so a child of a big
  parent (this script, after building the bundle) reports the parent's size. "after load_bundle" is the
  VmHWM once the bundle is loaded; the difference is what predict itself adds.
- ``dask-K``: ``morphomass.predict.distributed.predict_distributed(..., n_workers=K)`` into a temporary
  folder (``--partition-size`` galaxies per partition, so that both workers of K = 2 have work). A thread of
  the client process reads ``VmHWM`` (the kernel's peak resident size) from ``/proc/<pid>/status`` of each
  descendant process every 0.1 s: the peak per worker is the last value read before it exits (the peak is
  monotonic, so only the work of its last 0.1 s could be missed; workers are idle then). The client's own
  peak (VmHWM) and ``RUSAGE_CHILDREN`` ``ru_maxrss`` after the cluster closed (the largest reaped
  descendant; a ceiling of the per-worker figures, possibly raised by the carry-over above) are reported
  too. CPU s = the client process plus its reaped
  children (``RUSAGE_CHILDREN`` user + system), worker start-up included.

The ratio 4N / N of the single-process peak is the issue's figure (bound: <= 1.2x); each process's peak
includes the interpreter, torch, LightGBM and the bundle (several hundred MiB that do not depend on N).

    .venv/bin/python bench/bench_predict_scaling.py                # N = 200 and 800, tiny bundle built here
    .venv/bin/python bench/bench_predict_scaling.py --n 100 --bundle /path/to/tiny/workdir --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

#: Code run in a fresh process: argv = mode (single | dask), bundle, catalogue parquet, mapping JSON, stars
#: CSV or "", out dir, n_workers, partition size, batch size. Prints one JSON line.
_CHILD = r"""
import json, os, resource, sys, threading, time, warnings, logging
warnings.filterwarnings("ignore")
logging.basicConfig(level=logging.ERROR)
mode, bundle, catalog_path, mapping_path, stars, out_dir, n_workers, part, batch = sys.argv[1:10]
def hwm_mib(pid="self"):
    with open(f"/proc/{pid}/status") as fh:
        return next(int(l.split()[1]) for l in fh if l.startswith("VmHWM:")) / 1024
import pandas as pd
catalog = pd.read_parquet(catalog_path)
mapping = {int(k): v for k, v in json.loads(open(mapping_path).read()).items()}
stars = stars or None
cpu0, wall0 = time.process_time(), time.perf_counter()
result = {"galaxies": len(catalog)}
if mode == "single":
    import torch
    torch.set_num_threads(1)
    from morphomass.predict import load_bundle
    loaded = load_bundle(bundle)
    result["loaded_peak_mib"] = hwm_mib()
    table = loaded.predict(mapping, catalog, stars=stars, batch_size=int(batch), device="cpu")
    result["predicted"] = int(table["ml_pred"].notna().sum())
else:
    import psutil
    from morphomass.predict.distributed import predict_distributed
    peaks, stop = {}, threading.Event()
    def watch():
        me = psutil.Process()
        while not stop.is_set():
            for child in me.children(recursive=True):
                try:
                    hwm = hwm_mib(child.pid)
                    name = " ".join(child.cmdline()[:3])
                except (OSError, StopIteration, psutil.Error):
                    continue
                peaks[child.pid] = (max(hwm, peaks.get(child.pid, (0, ""))[0]), name)
            stop.wait(0.1)
    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    res = predict_distributed(bundle, mapping, catalog, out_dir=out_dir, n_workers=int(n_workers),
                              partition_size=int(part), stars=stars, batch_size=int(batch), device="cpu")
    stop.set()
    thread.join()
    result["summary"] = {k: v for k, v in res.summary.items() if isinstance(v, (int, float, str))}
    # workers: the processes that ran the bundle (large); others (resource tracker, ...) are small
    result["descendants_peak_mib"] = sorted((mib for mib, _ in peaks.values()), reverse=True)
    result["descendants"] = [name for _, name in sorted(peaks.values(), reverse=True)]
children = resource.getrusage(resource.RUSAGE_CHILDREN)
result.update(
    wall_s=time.perf_counter() - wall0,
    cpu_s=time.process_time() - cpu0 + children.ru_utime + children.ru_stime,
    self_peak_mib=hwm_mib(),
    children_max_peak_mib=children.ru_maxrss / 1024,
)
print("RESULT " + json.dumps(result))
"""


def _bench_helpers() -> Any:
    """Import ``bench_predict_throughput`` (beside this file) for its bundle builder and input reader."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_predict_throughput

    return bench_predict_throughput


def repeated_catalog(
    sample: pd.DataFrame, images: dict[int, Path], n: int
) -> tuple[pd.DataFrame, dict[int, str]]:
    """``n`` rows cycling through ``sample`` with new objids 1..n, and the mapping objid -> its image."""
    base = sample[sample["objid"].isin(list(images))].reset_index(drop=True)
    if base.empty:
        msg = "no galaxy of the work directory has an image"
        raise SystemExit(msg)
    rows = base.iloc[[i % len(base) for i in range(n)]].reset_index(drop=True)
    mapping = {i + 1: str(images[int(objid)]) for i, objid in enumerate(rows["objid"])}
    rows["objid"] = range(1, n + 1)
    return rows, mapping


def image_files(folder: Path, band: str) -> dict[int, Path]:
    """Map objid -> FITS file of an image folder (``<band>/<objid>.fits`` or ``<objid>.fits``)."""
    if (folder / band).is_dir():
        folder = folder / band
    return {int(p.name.split(".")[0]): p for p in folder.iterdir() if p.name.split(".")[0].isdigit()}


def run_child(args: list[str]) -> dict[str, Any]:
    """Run :data:`_CHILD` in a fresh interpreter with ``args``; return its result."""
    done = subprocess.run([sys.executable, "-c", _CHILD, *args], capture_output=True, text=True, check=False)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    msg = f"child {args[0]} failed (rc {done.returncode}): {done.stderr.strip()[-2000:]}"
    raise SystemExit(msg)


def main() -> None:
    """Parse the command line, build or take the bundle, measure N and 4N, print the tables."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=200, help="galaxies of the small run (the large: 4x)")
    parser.add_argument("--bundle", type=Path, default=None, help="tiny work dir (default: build one)")
    parser.add_argument("--partition-size", type=int, default=100, help="galaxies per Dask partition")
    parser.add_argument("--batch-size", type=int, default=64, help="galaxies per batch (predict's default)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="Dask worker counts")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures as JSON here")
    args = parser.parse_args()
    helpers = _bench_helpers()
    from morphomass.predict import load_bundle

    with tempfile.TemporaryDirectory(prefix="bench_scaling_") as tmp_name:
        tmp = Path(tmp_name)
        if args.bundle is None:
            start = time.perf_counter()
            workdir = helpers.build_tiny_bundle(tmp / "work")
            print(f"built a tiny-preset bundle in {time.perf_counter() - start:.0f} s (not timed)")
        else:
            workdir = helpers.work_dir_of(args.bundle)
            if workdir is None:
                parser.error(f"{args.bundle}: no work directory (sample.parquet, raw/) around it")
        band = str(load_bundle(workdir).manifest["preprocessing"]["band"])
        sample, folder, stars = helpers.prediction_inputs(workdir, None)
        images = image_files(folder, band)
        print(helpers.machine())
        print(f"{len(images)} distinct images of the work directory, repeated under new objids")

        rows: list[dict[str, Any]] = []
        for n in (args.n, 4 * args.n):
            catalog, mapping = repeated_catalog(sample, images, n)
            cat_path, map_path = tmp / f"catalog-{n}.parquet", tmp / f"mapping-{n}.json"
            catalog.to_parquet(cat_path, index=False)
            map_path.write_text(json.dumps(mapping), encoding="utf-8")
            common = [str(workdir), str(cat_path), str(map_path), str(stars or "")]
            single = run_child(["single", *common, "", "0", "0", str(args.batch_size)])
            single.update(mode="single", n=n)
            rows.append(single)
            print(f"N={n} single: {single['self_peak_mib']:.0f} MiB, {single['wall_s']:.1f} s", flush=True)
            for k in args.workers:
                out = tmp / f"out-{n}-{k}"
                extra = [str(out), str(k), str(args.partition_size), str(args.batch_size)]
                dask = run_child(["dask", *common, *extra])
                dask.update(
                    mode=f"dask-{k}", n=n, workers=k, worker_peaks_mib=dask["descendants_peak_mib"][:k]
                )
                rows.append(dask)
                peaks = ", ".join(f"{p:.0f}" for p in dask["worker_peaks_mib"])
                print(f"N={n} dask {k}: workers {peaks} MiB, {dask['wall_s']:.1f} s", flush=True)

    def get(mode: str, n: int) -> dict[str, Any]:
        return next(r for r in rows if r["mode"] == mode and r["n"] == n)

    small, large = get("single", args.n), get("single", 4 * args.n)
    ratio = large["self_peak_mib"] / small["self_peak_mib"]
    print()
    print("Single process (`load_bundle(...).predict(mapping, catalog)`, peak = VmHWM of the process):")
    print()
    print("| N | peak MiB | after load_bundle MiB | predict's own MiB | wall s | CPU s | ratio vs N |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in (small, large):
        print(
            f"| {r['n']} | {r['self_peak_mib']:.0f} | {r['loaded_peak_mib']:.0f} | "
            f"{r['self_peak_mib'] - r['loaded_peak_mib']:.0f} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | "
            f"{r['self_peak_mib'] / small['self_peak_mib']:.2f}x |"
        )
    verdict = "holds" if ratio <= 1.2 else "FAILS"
    print(f"\nratio 4N/N of the peak: {ratio:.2f}x (issue 17's bound: <= 1.2x: {verdict})")
    print()
    print(
        f"Dask (`predict_distributed(..., n_workers=K)`, partitions of {args.partition_size}; "
        "peak per worker = VmHWM sampled per process; max child = RUSAGE_CHILDREN ru_maxrss; "
        "CPU = client + children):"
    )
    print()
    print(
        "| N | workers | wall s | CPU s | peak MiB per worker | max child MiB | client MiB "
        "| worker ratio vs N |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for k in args.workers:
        base = max(get(f"dask-{k}", args.n)["worker_peaks_mib"])
        for n in (args.n, 4 * args.n):
            r = get(f"dask-{k}", n)
            peaks = ", ".join(f"{p:.0f}" for p in r["worker_peaks_mib"])
            print(
                f"| {n} | {k} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {peaks} | "
                f"{r['children_max_peak_mib']:.0f} | {r['self_peak_mib']:.0f} | "
                f"{max(r['worker_peaks_mib']) / base:.2f}x |"
            )
    if args.json is not None:
        figures = {
            "n": args.n,
            "partition_size": args.partition_size,
            "batch_size": args.batch_size,
            "machine": f"{platform.node()}, {os.cpu_count()} cores",
            "single_peak_ratio_4n_over_n": ratio,
            "runs": rows,
        }
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
