"""Benchmark of a frozen encoder feature source: CPU cost per galaxy of a convnext_nano-sized encoder.

What it times: :func:`morphomass.cnn.encoders.encode` (batched, ``torch.inference_mode``, channels-last) with
an encoder of the shape of the Zoobot v2 ``convnext_nano`` encoders, but RANDOM weights
(``timm.create_model("convnext_nano", pretrained=False, num_classes=0)``, 15.0 M parameters; the cost does
not depend on the weights), loaded through :func:`morphomass.cnn.encoders.load_encoder` from a safetensors
file, on random images at its expected input size (224 px). Two variants: ``in_chans=3`` (the single band
repeated to three channels, as the colour encoders take it) and ``in_chans=1`` (the greyscale encoders).

Baseline, timed in the same run: the forward pass of the ``quick`` preset's four networks (CNN1-3 and CNN4,
which has CNN1's backbone and input size) with random weights on their 64/69 px inputs, i.e. what
``morphomass extract`` costs per galaxy today.

Figures: CPU seconds of the process (``time.process_time``, all threads together) per galaxy, and wall seconds
per galaxy, with one torch thread and with all cores; ratio = encoder CPU / baseline CPU at the same thread
count. A warm-up batch is run (and not timed) before each measurement.

    .venv/bin/python bench/bench_encoder.py                 # N = 32 galaxies, ~1-2 min on 2 cores
    .venv/bin/python bench/bench_encoder.py -n 128 --batch-size 32
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import timm
import torch
from safetensors.torch import save_file

from morphomass.cnn.architectures import build_gz2_net, make_ml_net
from morphomass.cnn.encoders import encode, load_encoder
from morphomass.config import load_config

ENCODER_ARCH = "convnext_nano"


def timed(run: Callable[[], object], n: int) -> tuple[float, float]:
    """CPU and wall seconds per galaxy of ``run`` (which processes ``n`` galaxies)."""
    cpu0, wall0 = time.process_time(), time.perf_counter()
    run()
    return (time.process_time() - cpu0) / n, (time.perf_counter() - wall0) / n


def quick_networks() -> list[tuple[str, torch.nn.Module, int]]:
    """Build the quick preset's networks (random weights, eval mode), with their input sizes."""
    cnn = load_config("quick").cnn
    nets = []
    for name, net in cnn.nets.items():
        torch.manual_seed(0)
        nets.append((name, build_gz2_net(net.backbone, dropout=cnn.dropout).eval(), net.input_size))
    if cnn.train_cnn4:
        torch.manual_seed(0)
        cnn1 = cnn.nets["cnn1"]
        nets.append(
            ("cnn4", make_ml_net(build_gz2_net(cnn1.backbone, dropout=cnn.dropout)).eval(), cnn1.input_size)
        )
    return nets


def baseline_pass(
    nets: list[tuple[str, torch.nn.Module, int]], n: int, batch_size: int
) -> Callable[[], None]:
    """Return a function that runs every network over ``n`` random images of its input size, in batches."""
    rng = np.random.default_rng(0)
    inputs = {size: torch.from_numpy(rng.random((n, 1, size, size), dtype=np.float32)) for _, _, size in nets}

    def run() -> None:
        with torch.inference_mode():
            for _, net, size in nets:
                for start in range(0, n, batch_size):
                    net(inputs[size][start : start + batch_size])

    return run


def main() -> None:
    """Time the baseline and the encoder with one thread and with all cores; print a Markdown table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", "--n-galaxies", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--n-sample", type=int, default=100_000, help="galaxies for the projected CPU hours")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    n, batch = args.n_galaxies, args.batch_size
    cores = os.cpu_count() or 1
    print(
        f"torch {torch.__version__}, timm {timm.__version__}, {cores} cores, "
        f"load average {os.getloadavg()[0]:.1f}, N = {n}, batch {batch}"
    )
    nets = quick_networks()
    base_run = baseline_pass(nets, n, batch)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        encoders = {}
        for in_chans in (3, 1):
            torch.manual_seed(0)
            model = timm.create_model(ENCODER_ARCH, pretrained=False, num_classes=0, in_chans=in_chans)
            path = Path(tmp) / f"random_{ENCODER_ARCH}_{in_chans}ch.safetensors"
            save_file(model.state_dict(), path)
            encoders[in_chans] = load_encoder(path, in_chans=in_chans, architecture=ENCODER_ARCH)
        size = encoders[3].input_size
        params = sum(p.numel() for p in encoders[3].model.parameters()) / 1e6
        images = np.random.default_rng(1).random((n, size, size), dtype=np.float32)
        for threads in sorted({1, cores}):
            torch.set_num_threads(threads)
            baseline_pass(nets, batch, batch)()  # warm-up
            base_cpu, base_wall = timed(base_run, n)
            label = "+".join(f"{name}@{px}" for name, _, px in nets)
            rows.append((f"quick CNNs ({label})", threads, base_cpu, base_wall, 1.0))
            for in_chans, encoder in encoders.items():
                encode(encoder, images[:batch], batch_size=batch)  # warm-up
                cpu, wall = timed(lambda e=encoder: encode(e, images, batch_size=batch), n)
                name = f"{ENCODER_ARCH} random, {in_chans} ch @{size} ({params:.1f} M)"
                rows.append((name, threads, cpu, wall, cpu / base_cpu))
    print()
    columns = ("feature source", "threads", "CPU ms/galaxy", "wall ms/galaxy", "CPU vs quick CNNs")
    print("| " + " | ".join(columns) + f" | CPU h / {args.n_sample:,} galaxies |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, threads, cpu, wall, ratio in rows:
        hours = cpu * args.n_sample / 3600
        print(f"| {name} | {threads} | {cpu * 1e3:.1f} | {wall * 1e3:.1f} | {ratio:.2f}x | {hours:.2f} |")


if __name__ == "__main__":
    main()
