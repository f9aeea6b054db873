"""Fixtures of the CNN tests: small synthetic ``sample.parquet`` and ``images.zarr`` as in DESIGN §2.

Each galaxy is an elliptical Gaussian blob with noise. Its GZ2 answers follow its shape (round blobs are
"smooth", flat ones "features or disk"), and its M/L grows with the axis ratio, so a network can learn both
from the image.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import zarr

from morphomass.gz2 import ANSWER_COLUMNS, QUESTIONS, unconditional_probabilities


def render_blobs(
    axis_ratio: np.ndarray, angle: np.ndarray, size: int, *, rng: np.random.Generator
) -> np.ndarray:
    """(n, size, size) float32 images in [0, 1] of elliptical Gaussians with a fixed field of view."""
    coords = (np.arange(size) + 0.5) / size * 2 - 1
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    cos, sin = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    u = cos * xx + sin * yy
    v = (-sin * xx + cos * yy) / axis_ratio[:, None, None]
    image = np.exp(-(u**2 + v**2) / (2 * 0.25**2)) + 0.03 * rng.standard_normal((len(axis_ratio), size, size))
    return np.clip(image, 0, 1).astype(np.float32)


def make_inputs(
    root: Path, *, n: int, sizes: tuple[int, ...], seed: int = 0, dtype: str = "float32", failed: int = 0
) -> pd.DataFrame:
    """Write ``root/sample.parquet`` and ``root/images.zarr`` for ``n`` galaxies; return the sample.

    The first ``failed`` galaxies of the sample get no image, as when preprocessing rejects them.
    """
    rng = np.random.default_rng(seed)
    q = rng.uniform(0.2, 1.0, n)
    angle = rng.uniform(0, np.pi, n)
    conditional = np.zeros((n, len(ANSWER_COLUMNS)))
    start = 0
    for question in QUESTIONS:
        k = len(question.answers)
        conditional[:, start : start + k] = rng.dirichlet(np.ones(k), n)
        start += k
    conditional[:, 0:3] = np.stack([0.95 * q, 0.95 * (1 - q), np.full(n, 0.05)], axis=1)
    probs = unconditional_probabilities(conditional)
    has_gz2 = rng.random(n) < 0.85
    probs[~has_gz2] = np.nan
    split = rng.choice(np.array(["train", "val", "test"]), n, p=[0.7, 0.15, 0.15])
    split[:3] = ["train", "val", "test"]
    ml = 0.5 + 3.0 * q + 0.05 * rng.standard_normal(n)
    sample = pd.DataFrame(
        {
            "objid": rng.permutation(np.arange(10**15, 10**15 + 10 * n, 10)).astype(np.int64)[:n],
            "split": split,
            "has_gz2": has_gz2,
            "ml": ml,
            "ml_err": 0.1 * ml,
            "target": ml,
            "target_err": 0.1 * ml,
        }
    )
    for j, column in enumerate(ANSWER_COLUMNS):
        sample[column] = probs[:, j]
    sample.to_parquet(root / "sample.parquet", index=False)
    store = zarr.open_group(str(root / "images.zarr"), mode="w")
    order = rng.permutation(np.arange(failed, n))  # images.zarr need not be in the sample's order
    for size in sizes:
        group = store.create_group(str(size))
        images = render_blobs(q[order], angle[order], size, rng=rng).astype(dtype)
        group.create_array("images", data=images, chunks=(64, size, size))
        group.create_array("objid", data=sample["objid"].to_numpy()[order])
        group.create_array("scaling_a", data=np.full(len(order), 78.0, dtype=np.float32))
    return sample


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    """Run the CNN tests on one torch thread, then put the thread count back.

    The networks here are tiny; on a machine whose cores are busy with other jobs, torch's OpenMP threads
    spend most of their time waiting for each other (measured: 3.5x the CPU time of one thread for the same
    tests).
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(name="make_cnn_inputs", scope="session")
def fixture_make_cnn_inputs() -> Callable[..., pd.DataFrame]:
    """:func:`make_inputs`: write a synthetic sample.parquet and images.zarr into a folder."""
    return make_inputs


@pytest.fixture(name="blobs")
def fixture_blobs() -> tuple[np.ndarray, np.ndarray]:
    """200 69x69 blob images and their targets (37 GZ2 probabilities following the axis ratio)."""
    rng = np.random.default_rng(1)
    q = rng.uniform(0.2, 1.0, 200)
    images = render_blobs(q, rng.uniform(0, np.pi, 200), 69, rng=rng)
    conditional = np.zeros((200, len(ANSWER_COLUMNS)))
    start = 0
    for question in QUESTIONS:
        conditional[:, start : start + len(question.answers)] = 1.0 / len(question.answers)
        start += len(question.answers)
    conditional[:, 0:3] = np.stack([0.95 * q, 0.95 * (1 - q), np.full(200, 0.05)], axis=1)
    return images, unconditional_probabilities(conditional).astype(np.float32)
