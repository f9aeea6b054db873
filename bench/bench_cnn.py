"""Benchmark of the CNN stage: training and inference throughput (images/s) of each network of a preset.

For every network of the preset (CNN1-3 and CNN4, which has CNN1's backbone and input size) it times

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

    .venv/bin/python bench/bench_cnn.py --preset quick --n-train 256
    .venv/bin/python bench/bench_cnn.py --preset paper --device gpu --n-train 4096 --precision bf16-mixed
"""

from __future__ import annotations

import argparse
import logging
import os
import time
import warnings

import numpy as np
import torch

from morphomass.cnn.architectures import build_gz2_net, make_ml_net
from morphomass.cnn.extract import extract_features
from morphomass.cnn.training import fit_network
from morphomass.config import load_config

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


def main() -> None:
    """Parse the command line, run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="quick", choices=["paper", "quick", "tiny"])
    parser.add_argument("--n-train", type=int, default=256, help="training images per network")
    parser.add_argument("--n-val", type=int, default=64, help="validation images per network")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--device", default="cpu", choices=["cpu", "gpu"])
    parser.add_argument("--precision", default="32-true", choices=["32-true", "16-mixed", "bf16-mixed"])
    parser.add_argument("--n-sample", type=int, default=3000, help="sample size for the projected stage time")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore")
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
    nets = {name: (net.backbone, net.input_size, net.epochs or cnn.epochs) for name, net in cnn.nets.items()}
    if cnn.train_cnn4:
        nets["cnn4"] = (*nets["cnn1"][:2], cnn.cnn4_epochs or cnn.epochs)
    header = (
        f"{'net':5} {'backbone':16} {'px':>4} {'train img/s':>12} {'bare loop':>10} {'ratio':>6} "
        f"{'infer img/s':>12} {'bare fwd':>9} {'ratio':>6}"
    )
    print(header)
    projected = projected_cpu = 0.0
    n_train_sample = args.n_sample * TRAIN_FRACTION
    for name, (backbone, size, epochs) in nets.items():
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
        projected += n_fit * epochs / ours_train + args.n_sample / ours_infer
        projected_cpu += n_fit * epochs * cpu_per_train_image + args.n_sample * cpu_infer
        print(
            f"      CPU time per image: training {1000 * cpu_per_train_image:.1f} ms, "
            f"inference {1000 * cpu_infer:.1f} ms"
        )
    print(
        f"projected train-cnn + extract for {args.n_sample} galaxies with the preset's epochs: "
        f"{projected:.0f} s wall ({projected / 60:.1f} min), {projected_cpu:.0f} CPU-s"
    )


if __name__ == "__main__":
    main()
