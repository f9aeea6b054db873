"""Benchmark for a machine with a GPU: the paper networks' inference and training, and end-to-end predict.

Run by ``bench/gpu_check.sh`` (one short script, ~6-8 min on an H100); it also runs on the CPU with tiny
numbers (``--quick``: fp32 only, a few images) so that it can be tested anywhere. Three parts:

1. **Network throughput on preprocessed tensors** (galaxies/s) of the paper's networks with random weights:
   CNN1 ResNet50 at 197 px, CNN2 Xception (timm ``legacy_xception``) at 128 px, CNN3 the Dieleman network at
   69 px, in bf16 autocast and in fp32 (only fp32 on the CPU). Two figures each: ``from_host``, through
   :func:`morphomass.cnn.extract.extract_features` from a float32 NumPy array in host memory (pinned-memory
   copies with the next batch copied while the current one runs, channels-last, ``batch_size="auto"``: what
   the extract stage and predict do), and ``resident``, bare ``forward_features`` loops on a tensor already on
   the device at the same batch size (the network alone). Their ratio shows what the copies cost.
2. **End-to-end predict** (:meth:`morphomass.predict.Bundle.predict`: reading FITS, CPU preprocessing and
   features, the networks on the device, the GBM) in galaxies/s of wall-clock time, on the device and on the
   CPU, on a tiny-preset bundle built in a temporary folder (mock ... bundle; not timed) or ``--bundle PATH``
   (a work directory, or a bundle inside one, whose raw images and catalogue are used).
3. **One epoch of paper-preset training** (:func:`morphomass.cnn.training.fit_network` with the paper preset's
   ``cnn`` section: batch 32, NAdam, augmentation, validation; ``--train-precision``, default the preset's
   ``32-true``) of every paper network (CNN1-3 and CNN4, which is CNN1 with the M/L head) on ``--train-n``
   synthetic images at its input size, timed from the epoch's own clock, and extrapolated to one epoch over
   59 637 galaxies (the paper's sample) and to the preset's 30 epochs.

Writes ``bench/results/<date>-<machine>-gpu.json`` (machine as bench/run_all.py names it) or ``--out``.
Without a CUDA device and without ``--quick`` or ``--device cpu`` it measures nothing and says so (so that
bench/run_all.py, which runs every ``bench_*.py``, skips it on a CPU machine).

    .venv/bin/python bench/bench_gpu.py                     # on a GPU machine (see bench/gpu_check.sh)
    .venv/bin/python bench/bench_gpu.py --quick --out /tmp/gpu.json   # the CPU smoke run
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.util
import json
import logging
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from morphomass.cnn.architectures import build_gz2_net, make_ml_net
from morphomass.cnn.extract import extract_features, resolve_batch_size

BENCH = Path(__file__).resolve().parent
#: The paper's networks: name -> (backbone, input size).
PAPER_NETWORKS = {"cnn1": ("resnet50", 197), "cnn2": ("legacy_xception", 128), "cnn3": ("dieleman", 69)}
#: Galaxies of the paper's sample (one training epoch is extrapolated to them).
PAPER_GALAXIES = 59_637


def _run_all() -> Any:
    """bench/run_all.py as a module (its machine description and file-name slug)."""
    spec = importlib.util.spec_from_file_location("run_all", BENCH / "run_all.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    if device.type == "cuda" and precision == "bf16":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def network_throughput(
    backbone: str, size: int, *, n: int, device: torch.device, precision: str
) -> dict[str, Any]:
    """Galaxies/s of one network on ``n`` random preprocessed images: from host memory and device-resident."""
    torch.manual_seed(0)
    net = build_gz2_net(backbone).to(device).eval()
    if device.type == "cuda":
        net = net.to(memory_format=torch.channels_last)
    images = np.random.default_rng(0).random((n, size, size), dtype=np.float32)
    batch = resolve_batch_size(net, (size, size), "auto", device=device, precision=precision)
    batch = min(batch, n)
    extract_features(net, images[:batch], batch_size=batch, device=device, precision=precision)  # warm-up
    _sync(device)
    start = time.perf_counter()
    extract_features(net, images, batch_size=batch, device=device, precision=precision)
    _sync(device)
    from_host = n / (time.perf_counter() - start)
    resident = torch.from_numpy(images[:batch])[:, None].to(device)
    if device.type == "cuda":
        resident = resident.contiguous(memory_format=torch.channels_last)
    rounds = max(1, n // batch)
    with torch.inference_mode(), _autocast(device, precision):
        net.forward_features(resident)
        _sync(device)
        start = time.perf_counter()
        for _ in range(rounds):
            net.forward_features(resident)
        _sync(device)
    on_device = rounds * batch / (time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    del net, resident
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {
        "backbone": backbone,
        "input_size": size,
        "precision": precision,
        "batch_size": batch,
        "n": n,
        "from_host_galaxies_per_s": from_host,
        "resident_galaxies_per_s": on_device,
        "from_host_over_resident": from_host / on_device,
        "peak_gpu_memory_gib": peak,
    }


def _throughput_helpers() -> Any:
    """Return bench/bench_predict_throughput.py as a module (bundle builder, work-dir finder, inputs)."""
    sys.path.insert(0, str(BENCH))
    import bench_predict_throughput

    return bench_predict_throughput


def end_to_end(
    bundle_path: Path, *, limit: int | None, devices: list[str], batch_size: int
) -> dict[str, Any]:
    """Wall-clock galaxies/s of ``Bundle.predict`` on a work directory's galaxies, per device."""
    from morphomass.predict import load_bundle

    helpers = _throughput_helpers()
    workdir = helpers.work_dir_of(bundle_path)
    if workdir is None:
        msg = f"{bundle_path}: no work directory (sample.parquet, raw/) around this bundle"
        raise SystemExit(msg)
    sample, images, stars = helpers.prediction_inputs(workdir, limit)
    bundle = load_bundle(bundle_path)
    result: dict[str, Any] = {"bundle": str(bundle_path), "galaxies": len(sample), "batch_size": batch_size}
    for device in devices:
        kwargs = {"stars": stars, "batch_size": batch_size, "device": device}
        bundle.predict(images, sample.head(batch_size), **kwargs)  # warm-up, networks built
        start, cpu = time.perf_counter(), time.process_time()
        out = bundle.predict(images, sample, **kwargs)
        wall = time.perf_counter() - start
        result[device] = {
            "galaxies_per_s": len(sample) / wall,
            "cpu_s_per_galaxy": (time.process_time() - cpu) / len(sample),
            "predicted": int(out["ml_pred"].notna().sum()),
        }
    return result


def train_epoch(
    name: str, backbone: str, size: int, *, n: int, device: torch.device, precision: str
) -> dict[str, Any]:
    """One epoch of paper-preset training of one network on ``n`` synthetic images; per-image time."""
    from morphomass.cnn.training import fit_network
    from morphomass.config import load_config

    cnn = load_config("paper").cnn.model_copy(
        update={
            "accelerator": "gpu" if device.type == "cuda" else "cpu",
            "devices": 1,
            "precision": precision,
        }
    )
    rng = np.random.default_rng(0)
    n_val = max(8, n // 8)
    images = rng.random((n + n_val, size, size), dtype=np.float32)
    torch.manual_seed(0)
    net: torch.nn.Module = build_gz2_net(backbone, dropout=cnn.dropout)
    if name == "cnn4":
        net = make_ml_net(net)
        ml = rng.uniform(0.5, 5, len(images)).astype(np.float32)
        arrays: tuple[np.ndarray, ...] = (images, ml, (0.1 * ml).astype(np.float32))
        task = "ml"
    else:
        arrays = (images, rng.dirichlet(np.ones(37), len(images)).astype(np.float32))
        task = "gz2"
    train = tuple(a[:n] for a in arrays)
    val = tuple(a[n:] for a in arrays)
    result = fit_network(net, train, val, task=task, config=cnn, epochs=1, progress=False)
    seconds = float(result.history[-1]["seconds"])
    per_image = seconds / n
    return {
        "backbone": backbone,
        "input_size": size,
        "precision": precision,
        "batch_size": cnn.batch_size,
        "n_train": n,
        "epoch_seconds": seconds,
        "images_per_s": n / seconds,
        "extrapolated_epoch_s_59637": per_image * PAPER_GALAXIES,
        "extrapolated_30_epochs_h_59637": per_image * PAPER_GALAXIES * cnn.epochs / 3600,
    }


def main() -> None:
    """Parse the command line, run the three parts and write the JSON file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CPU smoke run: fp32, tiny numbers")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--n-infer", type=int, default=8192, help="images per network throughput figure")
    parser.add_argument("--train-n", type=int, default=2048, help="synthetic training images per network")
    parser.add_argument("--train-precision", default="32-true", choices=["32-true", "bf16-mixed", "16-mixed"])
    parser.add_argument(
        "--bundle", type=Path, default=None, help="existing bundle (default: build a tiny one)"
    )
    parser.add_argument("--predict-limit", type=int, default=None, help="first N galaxies of the work dir")
    parser.add_argument("--predict-batch", type=int, default=64, help="galaxies per predict batch")
    parser.add_argument("--skip", nargs="*", default=[], choices=["throughput", "predict", "train"])
    parser.add_argument("--out", type=Path, default=None, help="JSON file (default: bench/results/...)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore")
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if device.type == "cpu" and not args.quick:
            # bench/run_all.py runs every bench_*.py: without a GPU this one is skipped, not run at GPU sizes
            print("no CUDA device: nothing measured (--quick for the CPU smoke run, --device cpu to insist)")
            return
    else:
        device = torch.device(args.device)
    if args.quick:
        args.n_infer, args.train_n = min(args.n_infer, 8), min(args.train_n, 16)
        args.predict_limit = args.predict_limit or 8
    precisions = ["bf16", "fp32"] if device.type == "cuda" and not args.quick else ["fp32"]
    run_all = _run_all()
    info = run_all.machine()
    figures: dict[str, Any] = {"machine": info, "device": str(device), "torch": torch.__version__}
    figures["started"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    begin = time.perf_counter()
    if "throughput" not in args.skip:
        rows = []
        for name, (backbone, size) in PAPER_NETWORKS.items():
            for precision in precisions:
                row = {
                    "network": name,
                    **network_throughput(backbone, size, n=args.n_infer, device=device, precision=precision),
                }
                rows.append(row)
                print(
                    f"{name} {backbone:16} {size:>4} px {precision:5} batch {row['batch_size']:>5}: "
                    f"from host {row['from_host_galaxies_per_s']:9.1f} gal/s, resident "
                    f"{row['resident_galaxies_per_s']:9.1f} gal/s ({row['from_host_over_resident']:.2f})",
                    flush=True,
                )
        figures["throughput"] = rows
        # the paper's three networks one after the other (CNN4 costs about CNN1 again)
        for precision in precisions:
            chosen = [r for r in rows if r["precision"] == precision]
            seconds = sum(1 / r["from_host_galaxies_per_s"] for r in chosen)
            figures[f"cnn1_3_from_host_galaxies_per_s_{precision}"] = 1 / seconds
    if "predict" not in args.skip:
        with tempfile.TemporaryDirectory(prefix="bench_gpu_") as tmp:
            bundle_path = args.bundle
            if bundle_path is None:
                start = time.perf_counter()
                bundle_path = _throughput_helpers().build_tiny_bundle(Path(tmp) / "work")
                print(f"built a tiny bundle in {time.perf_counter() - start:.0f} s (not timed)", flush=True)
            devices = ["cpu"] if device.type == "cpu" else ["gpu", "cpu"]
            figures["predict"] = end_to_end(
                bundle_path, limit=args.predict_limit, devices=devices, batch_size=args.predict_batch
            )
            for key in devices:
                print(f"predict on {key}: {figures['predict'][key]['galaxies_per_s']:.1f} gal/s", flush=True)
    if "train" not in args.skip:
        rows = []
        nets = {**PAPER_NETWORKS, "cnn4": PAPER_NETWORKS["cnn1"]}
        for name, (backbone, size) in nets.items():
            row = {
                "network": name,
                **train_epoch(
                    name, backbone, size, n=args.train_n, device=device, precision=args.train_precision
                ),
            }
            rows.append(row)
            print(
                f"train {name} {backbone:16} {size:>4} px: {row['images_per_s']:8.1f} img/s, one epoch of "
                f"{PAPER_GALAXIES} galaxies {row['extrapolated_epoch_s_59637']:8.0f} s",
                flush=True,
            )
        figures["train"] = rows
        figures["train_epoch_s_59637_all_networks"] = sum(r["extrapolated_epoch_s_59637"] for r in rows)
    figures["seconds"] = time.perf_counter() - begin
    out = args.out
    if out is None:
        day = dt.date.today().isoformat()
        out = BENCH / "results" / f"{day}-{run_all.machine_slug(info)}-gpu.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"wrote {out} ({figures['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
