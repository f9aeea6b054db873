"""Benchmark of the CNN stages: train-cnn and extract in worker processes against one thread; per network.

By default: the stage code itself (:func:`morphomass.cnn.run_train_cnn` and
:func:`morphomass.cnn.run_extract`) on a synthetic work directory of ``--n-galaxies`` random images, with the
preset's networks and compute budgets scaled by ``--budget-scale``, run twice in the same process: first in
one process with one torch thread (``cnn.workers = 1``, ``torch.set_num_threads(1)``), the baseline; then
with the default worker processes (one per core, ``cores // workers`` torch threads each). It prints the
images processed per wall-clock second (training images seen; galaxies x networks for extract), their ratio
(target >= 1.6 on 2 cores) and the cores kept busy (CPU time of the process and its children / wall time).
``--with-threaded-serial`` adds the former default (one process, torch's own threads).

    .venv/bin/python bench/bench_cnn.py --preset quick --n-galaxies 3000 --budget-scale 0.25

``--per-network``: for every network of the preset (CNN1-3 and CNN4, which has CNN1's backbone and input
size) it times

* training with :func:`morphomass.cnn.training.fit_network` (Lightning, on-device augmentation, NAdam,
  validation after each epoch, best-weight bookkeeping), against a baseline measured in the same run: a bare
  PyTorch loop (same network, batch size, optimiser and autocast precision; no Lightning, no augmentation, no
  validation);
* inference with :func:`morphomass.cnn.extract.extract_features` (batched, eval mode, float32, NumPy in and
  out), against a bare ``net(x)`` loop on tensors already on the device (under the training precision).

The images are random (throughput does not depend on their content). It then projects the time of
``train-cnn`` plus ``extract`` for a sample of ``--n-sample`` galaxies (81 % training, 80 % of them with GZ2;
see DESIGN §2), from wall-clock time and from the CPU time of the process. On a shared machine the wall-clock
figures depend on the other load; with ``OMP_NUM_THREADS=1`` the CPU-time figures do not, and give the
single-core cost.

    .venv/bin/python bench/bench_cnn.py --per-network --preset quick --n-train 256
    .venv/bin/python bench/bench_cnn.py --per-network --preset paper --device gpu --n-train 4096 \
        --precision bf16-mixed
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import zarr

from morphomass.cnn import run_extract, run_train_cnn
from morphomass.cnn.architectures import build_gz2_net, make_ml_net
from morphomass.cnn.extract import extract_features
from morphomass.cnn.parallel import available_cores
from morphomass.cnn.training import fit_network
from morphomass.config import PipelineConfig, load_config
from morphomass.gz2 import ANSWER_COLUMNS
from morphomass.workdir import WorkDir

TRAIN_FRACTION = 0.9 * 0.9  # DESIGN §2: 10 % test, then 10 % of the rest validation
GZ2_FRACTION = 0.8  # SPEC D8: ~80 % of the galaxies have a GZ2 match


def _autocast(device: torch.device, precision: str) -> torch.autocast:
    dtype = torch.bfloat16 if precision.startswith("bf16") else torch.float16
    return torch.autocast(device.type, dtype=dtype, enabled=precision != "32-true")


def _baseline_train(
    net: torch.nn.Module,
    images: np.ndarray,
    targets: np.ndarray,
    *,
    batch_size: int,
    device: torch.device,
    lr: float,
    task: str,
    precision: str,
) -> float:
    net = net.to(device).train()
    optimiser = torch.optim.NAdam(net.parameters(), lr=lr)
    x_all = torch.from_numpy(images)[:, None].to(device)
    y_all = torch.from_numpy(targets).to(device)
    start = time.perf_counter()
    for i in range(0, len(images), batch_size):
        x, y = x_all[i : i + batch_size], y_all[i : i + batch_size]
        if len(x) < 2:
            continue
        optimiser.zero_grad()
        with _autocast(device, precision):
            pred = net(x).float()
        loss = torch.nn.functional.mse_loss(pred, y) if task == "gz2" else (pred - y).abs().mean()
        loss.backward()
        optimiser.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return len(images) / (time.perf_counter() - start)


def _baseline_infer(
    net: torch.nn.Module, images: np.ndarray, *, batch_size: int, device: torch.device, precision: str
) -> float:
    net = net.to(device).eval()
    x_all = torch.from_numpy(images)[:, None].to(device)
    with torch.inference_mode(), _autocast(device, precision):
        net(x_all[:batch_size])
        start = time.perf_counter()
        for i in range(0, len(images), batch_size):
            net(x_all[i : i + batch_size])
        if device.type == "cuda":
            torch.cuda.synchronize()
    return len(images) / (time.perf_counter() - start)


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished (joined) children."""
    return sum(
        usage.ru_utime + usage.ru_stime
        for usage in (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN))
    )


def _make_workdir(root: Path, *, n: int, sizes: tuple[int, ...], seed: int = 0) -> WorkDir:
    """Write a synthetic sample.parquet and images.zarr (random images, DESIGN §2 split fractions)."""
    rng = np.random.default_rng(seed)
    split = rng.choice(np.array(["train", "val", "test"]), n, p=[0.81, 0.09, 0.10])
    ml = rng.uniform(0.5, 5, n)
    sample = pd.DataFrame(
        {
            "objid": np.arange(n, dtype=np.int64) + 10**15,
            "split": split,
            "has_gz2": rng.random(n) < GZ2_FRACTION,
            "ml": ml,
            "ml_err": 0.1 * ml,
        }
    )
    probs = rng.dirichlet(np.ones(len(ANSWER_COLUMNS)), n)
    for j, column in enumerate(ANSWER_COLUMNS):
        sample[column] = probs[:, j]
    sample.to_parquet(root / "sample.parquet", index=False)
    store = zarr.open_group(str(root / "images.zarr"), mode="w")
    for size in sizes:
        group = store.create_group(str(size))
        group.create_array(
            "images", data=rng.random((n, size, size), dtype=np.float32), chunks=(64, size, size)
        )
        group.create_array("objid", data=sample["objid"].to_numpy())
        group.create_array("scaling_a", data=np.full(n, 78.0, dtype=np.float32))
    return WorkDir(root).ensure()


def _time_stage(config: PipelineConfig, workdir: WorkDir, *, threads: int | None) -> dict[str, float]:
    """Run train-cnn then extract from scratch; wall and CPU seconds and images of each."""
    shutil.rmtree(workdir.models / "cnn", ignore_errors=True)
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        wall, cpu = time.perf_counter(), _cpu_seconds()
        train = run_train_cnn(config, workdir, progress=False).summary
        train_wall, train_cpu = time.perf_counter() - wall, _cpu_seconds() - cpu
        wall, cpu = time.perf_counter(), _cpu_seconds()
        extract = run_extract(config, workdir, progress=False).summary
        extract_wall, extract_cpu = time.perf_counter() - wall, _cpu_seconds() - cpu
    finally:
        torch.set_num_threads(before)
    return {
        "workers": train["workers"],
        "train_images": sum(net["images_seen"] for net in train["nets"].values()),
        "train_wall": train_wall,
        "train_cpu": train_cpu,
        "extract_images": extract["n_galaxies"] * len(train["nets"]),
        "extract_wall": extract_wall,
        "extract_cpu": extract_cpu,
    }


def _write_json(path: Path | None, figures: dict) -> None:
    if path is not None:
        path.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


def bench_stage(args: argparse.Namespace) -> None:
    """Time train-cnn and extract with worker processes against one process with one thread."""
    config = load_config(args.preset)
    cnn = config.cnn
    cnn.accelerator = "cpu"
    scale = args.budget_scale
    for net in cnn.nets.values():
        if net.train_images_budget is not None:
            net.train_images_budget = max(1, round(scale * net.train_images_budget))
    for field in ("train_images_budget", "cnn4_train_images_budget"):
        if getattr(cnn, field) is not None:
            setattr(cnn, field, max(1, round(scale * getattr(cnn, field))))
    sizes = tuple(sorted({net.input_size for net in cnn.nets.values()}))
    print(
        f"preset {args.preset} (budgets x {scale}), {args.n_galaxies} galaxies, {available_cores()} cores, "
        f"torch {torch.__version__}, load average {os.getloadavg()[0]:.1f}"
    )
    runs = {}
    with tempfile.TemporaryDirectory(prefix="bench_cnn_") as tmp:
        workdir = _make_workdir(Path(tmp), n=args.n_galaxies, sizes=sizes)
        serial = config.model_copy(deep=True)
        serial.cnn.workers = 1
        runs["1 process, 1 thread (baseline)"] = _time_stage(serial, workdir, threads=1)
        if args.with_threaded_serial:
            runs[f"1 process, {torch.get_num_threads()} threads"] = _time_stage(serial, workdir, threads=None)
        parallel = config.model_copy(deep=True)
        parallel.cnn.workers = args.workers
        runs["worker processes"] = _time_stage(parallel, workdir, threads=None)
    base = runs["1 process, 1 thread (baseline)"]
    print(
        f"{'run':32} {'workers':>7} {'train img/s':>11} {'ratio':>6} {'cores busy':>10} "
        f"{'extract img/s':>13} {'ratio':>6} {'cores busy':>10}"
    )
    rows = []
    for label, run in runs.items():
        train_rate = run["train_images"] / run["train_wall"]
        extract_rate = run["extract_images"] / run["extract_wall"]
        rows.append(
            {
                "run": label,
                **run,
                "train_images_per_s": train_rate,
                "train_ratio": train_rate / (base["train_images"] / base["train_wall"]),
                "extract_images_per_s": extract_rate,
                "extract_ratio": extract_rate / (base["extract_images"] / base["extract_wall"]),
            }
        )
        print(
            f"{label:32} {run['workers']:>7} {train_rate:>11.1f} "
            f"{train_rate / (base['train_images'] / base['train_wall']):>6.2f} "
            f"{run['train_cpu'] / run['train_wall']:>10.2f} {extract_rate:>13.1f} "
            f"{extract_rate / (base['extract_images'] / base['extract_wall']):>6.2f} "
            f"{run['extract_cpu'] / run['extract_wall']:>10.2f}"
        )
    for label, run in runs.items():
        print(
            f"{label}: train-cnn {run['train_images']} images in {run['train_wall']:.1f} s "
            f"({run['train_cpu']:.1f} CPU-s), extract {run['extract_images']} in {run['extract_wall']:.1f} s "
            f"({run['extract_cpu']:.1f} CPU-s)"
        )
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    _write_json(
        args.json,
        {
            "mode": "stage",
            "preset": args.preset,
            "n_galaxies": args.n_galaxies,
            "cores": available_cores(),
            "rows": rows,
        },
    )


def main() -> None:
    """Parse the command line, run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--per-network", action="store_true", help="per-network throughput against bare loops"
    )
    parser.add_argument(
        "--n-galaxies", type=int, default=3000, help="stage mode: galaxies of the work directory"
    )
    parser.add_argument("--budget-scale", type=float, default=0.25, help="stage mode: x the preset's budgets")
    parser.add_argument("--workers", type=int, default=None, help="stage mode: cnn.workers (default: cores)")
    parser.add_argument("--with-threaded-serial", action="store_true", help="stage mode: also 1 process")
    parser.add_argument("--preset", default="quick", choices=["paper", "quick", "tiny"])
    parser.add_argument("--n-train", type=int, default=256, help="training images per network")
    parser.add_argument("--n-val", type=int, default=64, help="validation images per network")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--device", default="cpu", choices=["cpu", "gpu"])
    parser.add_argument("--precision", default="32-true", choices=["32-true", "16-mixed", "bf16-mixed"])
    parser.add_argument("--n-sample", type=int, default=3000, help="sample size for the projected stage time")
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        help="also write the figures as JSON to this file (bench/run_all.py reads it)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore")
    if not args.per_network:
        bench_stage(args)
        return
    config = load_config(args.preset)
    cnn = config.cnn.model_copy(
        update={"accelerator": args.device, "devices": 1, "precision": args.precision}
    )
    device = torch.device("cuda" if args.device == "gpu" else "cpu")
    print(
        f"preset {args.preset}, device {device}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, "
        f"load average {os.getloadavg()[0]:.1f}, n_train {args.n_train}, epochs {args.epochs}, "
        f"batch {cnn.batch_size}, precision {args.precision}"
    )
    rng = np.random.default_rng(0)
    nets = {
        name: (
            net.backbone,
            net.input_size,
            net.epochs or cnn.epochs,
            net.train_images_budget or cnn.train_images_budget,
        )
        for name, net in cnn.nets.items()
    }
    if cnn.train_cnn4:
        nets["cnn4"] = (
            *nets["cnn1"][:2],
            cnn.cnn4_epochs or cnn.epochs,
            cnn.cnn4_train_images_budget or cnn.train_images_budget,
        )
    header = (
        f"{'net':5} {'backbone':16} {'px':>4} {'train img/s':>12} {'bare loop':>10} {'ratio':>6} "
        f"{'infer img/s':>12} {'bare fwd':>9} {'ratio':>6}"
    )
    print(header)
    projected = projected_cpu = 0.0
    n_train_sample = args.n_sample * TRAIN_FRACTION
    rows = []
    for name, (backbone, size, epochs, budget) in nets.items():
        images = rng.random((args.n_train + args.n_val, size, size), dtype=np.float32)
        torch.manual_seed(0)
        net = build_gz2_net(backbone, dropout=cnn.dropout)
        if name == "cnn4":
            net = make_ml_net(net)
            targets = rng.uniform(0.5, 5, len(images)).astype(np.float32)
            arrays = (images, targets, (0.1 * targets).astype(np.float32))
            task = "ml"
        else:
            targets = rng.dirichlet(np.ones(37), len(images)).astype(np.float32)
            arrays = (images, targets)
            task = "gz2"
        train = tuple(a[: args.n_train] for a in arrays)
        val = tuple(a[args.n_train :] for a in arrays)
        cpu = time.process_time()
        result = fit_network(net, train, val, task=task, config=cnn, epochs=args.epochs, progress=False)
        cpu_train = time.process_time() - cpu
        ours_train = args.n_train * args.epochs / result.history[-1]["seconds"]
        base_train = _baseline_train(
            net,
            train[0],
            train[1],
            batch_size=cnn.batch_size,
            device=device,
            lr=cnn.learning_rate,
            task=task,
            precision=args.precision,
        )
        n_infer = min(len(images), 4 * cnn.inference_batch_size)
        start, cpu = time.perf_counter(), time.process_time()
        extract_features(net, images[:n_infer], batch_size=cnn.inference_batch_size, device=device)
        ours_infer = n_infer / (time.perf_counter() - start)
        cpu_infer = (time.process_time() - cpu) / n_infer
        base_infer = _baseline_infer(
            net,
            images[:n_infer],
            batch_size=cnn.inference_batch_size,
            device=device,
            precision=args.precision,
        )
        print(
            f"{name:5} {backbone:16} {size:>4} {ours_train:>12.1f} {base_train:>10.1f} "
            f"{ours_train / base_train:>6.2f} {ours_infer:>12.1f} {base_infer:>9.1f} "
            f"{ours_infer / base_infer:>6.2f}"
        )
        n_fit = n_train_sample * (1.0 if name == "cnn4" else GZ2_FRACTION)
        # the fit's CPU time covers the validation before training too: charge it all to the training images
        cpu_per_train_image = cpu_train / (args.n_train * args.epochs)
        seen = budget if budget is not None else n_fit * epochs  # the preset's compute budget, if any
        projected += seen / ours_train + args.n_sample / ours_infer
        projected_cpu += seen * cpu_per_train_image + args.n_sample * cpu_infer
        print(
            f"      CPU time per image: training {1000 * cpu_per_train_image:.1f} ms, "
            f"inference {1000 * cpu_infer:.1f} ms"
        )
        rows.append(
            {
                "net": name,
                "backbone": backbone,
                "input_size": size,
                "train_images_per_s": ours_train,
                "bare_train_images_per_s": base_train,
                "train_ratio": ours_train / base_train,
                "infer_images_per_s": ours_infer,
                "bare_infer_images_per_s": base_infer,
                "infer_ratio": ours_infer / base_infer,
                "train_cpu_ms_per_image": 1000 * cpu_per_train_image,
                "infer_cpu_ms_per_image": 1000 * cpu_infer,
            }
        )
    print(
        f"projected train-cnn + extract for {args.n_sample} galaxies with the preset's epochs or budgets: "
        f"{projected:.0f} s wall ({projected / 60:.1f} min), {projected_cpu:.0f} CPU-s"
    )
    _write_json(
        args.json,
        {
            "mode": "per-network",
            "preset": args.preset,
            "device": str(device),
            "precision": args.precision,
            "n_train": args.n_train,
            "rows": rows,
            "projected_n_sample": args.n_sample,
            "projected_wall_s": projected,
            "projected_cpu_s": projected_cpu,
        },
    )


if __name__ == "__main__":
    main()
