"""The extract stage's inference path: batching and prefetching, ``"auto"`` batch size, bf16 against fp32.

On the CPU the batched, prefetching loop must give exactly the outputs of plain float32 forward passes of the
same batches (the results of the extract stage before the GPU path was added), and one galaxy at a time the
same values up to the CPU kernels' batch-dependent summation order. The bf16-against-fp32 tolerance needs a
GPU (marker ``gpu``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import zarr
from torch import nn

from morphomass.cnn.architectures import build_gz2_net, make_ml_net
from morphomass.cnn.extract import (
    AUTO_MAX_BATCH,
    CPU_AUTO_BATCH,
    batch_from_memory,
    extract_features,
    resolve_batch_size,
)
from morphomass.errors import ConfigError

#: bf16 autocast against fp32 on a GPU: largest absolute difference of the GZ2 probabilities (in [0, 1]) ...
BF16_PROB_ATOL = 0.03
#: ... and largest relative (Frobenius-norm) difference of the other outputs (trunk features, CNN4's f, ml).
BF16_REL_TOL = 0.05


class RowStatistics(nn.Module):
    """A network whose outputs for one image depend on that image only, exactly (max and a pixel copy)."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(2.0))

    def forward_features(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each image's largest pixel times ``scale``, keyed ``peak``, and its first 3 pixels, ``corner``."""
        flat = images.flatten(1)
        return {"peak": flat.amax(dim=1) * self.scale, "corner": flat[:, :3]}


def _images(n: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, size, size), dtype=np.float32)


def _plain_forward(net: nn.Module, images: np.ndarray, batch_size: int) -> dict[str, np.ndarray]:
    """Run the extract loop as before the GPU path: float32 batches straight from NumPy, eval mode."""
    net = net.eval()
    parts: dict[str, list[np.ndarray]] = {}
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            batch = torch.from_numpy(np.asarray(images[start : start + batch_size], dtype=np.float32))
            for key, value in net.forward_features(batch[:, None]).items():
                parts.setdefault(key, []).append(value.float().numpy())
    return {key: np.concatenate(value) for key, value in parts.items()}


@pytest.mark.parametrize("batch_size", [1, 3, 4, 10, 64])
def test_batched_prefetching_equals_one_galaxy_at_a_time_exactly(batch_size: int) -> None:
    """Every galaxy once, in order, with its own values, whatever the batch boundaries (ragged last batch)."""
    images = _images(10, 8)
    batched = extract_features(RowStatistics(), images, batch_size=batch_size)
    single = [extract_features(RowStatistics(), images[i : i + 1], batch_size=1) for i in range(len(images))]
    for key in ("peak", "corner"):
        assert batched[key].dtype == np.float32
        np.testing.assert_array_equal(batched[key], np.concatenate([s[key] for s in single]))
    np.testing.assert_array_equal(batched["peak"], 2 * images.reshape(10, -1).max(axis=1))


def test_zarr_float16_images_read_batch_by_batch(tmp_path) -> None:
    """A float16 zarr array gives the values of the same images as a float32 ndarray."""
    images = _images(7, 8).astype(np.float16)
    stored = zarr.open_array(tmp_path / "i.zarr", mode="w", shape=images.shape, chunks=(2, 8, 8), dtype="f2")
    stored[:] = images
    from_zarr = extract_features(RowStatistics(), stored, batch_size=3)
    from_numpy = extract_features(RowStatistics(), images.astype(np.float32), batch_size=7)
    for key in from_numpy:
        np.testing.assert_array_equal(from_zarr[key], from_numpy[key])


@pytest.mark.parametrize(("backbone", "size"), [("dieleman", 45), ("resnet18", 32)])
def test_cpu_outputs_are_the_plain_float32_forward_passes_bit_for_bit(backbone: str, size: int) -> None:
    """CPU: no autocast, no layout change; ``precision`` is ignored; 'auto' is one batch of 256 here."""
    torch.manual_seed(0)
    net = build_gz2_net(backbone)
    images = _images(9, size, seed=1)
    expected = _plain_forward(net, images, batch_size=4)
    for precision in ("bf16", "fp32"):
        got = extract_features(net, images, batch_size=4, precision=precision)
        assert set(got) == {"trunk", "p"}
        for key in expected:
            np.testing.assert_array_equal(got[key], expected[key])
    auto = extract_features(net, images, batch_size="auto")
    for key, value in _plain_forward(net, images, batch_size=len(images)).items():
        np.testing.assert_array_equal(auto[key], value)
    # one galaxy at a time: the same values up to the CPU kernels' batch-dependent summation order
    single = extract_features(net, images, batch_size=1)
    for key in expected:
        np.testing.assert_allclose(single[key], expected[key], rtol=1e-4, atol=1e-5)
    assert all(parameter.is_contiguous() for parameter in net.parameters())  # not made channels-last


def test_empty_input_gives_empty_outputs_of_the_right_width() -> None:
    torch.manual_seed(0)
    out = extract_features(make_ml_net(build_gz2_net("dieleman")), np.zeros((0, 45, 45), np.float32))
    assert out["f"].shape == (0, 37)
    assert out["ml"].shape == (0,)


def test_batch_from_memory_is_a_power_of_two_within_bounds() -> None:
    assert batch_from_memory(1000, 10, fraction=0.5) == 32  # 50 fit -> 32
    assert batch_from_memory(1000, 10, fraction=1.0) == 64  # 100 fit -> 64
    assert batch_from_memory(5, 10) == 1
    assert batch_from_memory(0, 10) == 1
    assert batch_from_memory(80e9, 1e3) == AUTO_MAX_BATCH
    assert batch_from_memory(1e9, 0) == AUTO_MAX_BATCH
    assert batch_from_memory(1e9, 1e6, largest=256) == 256


def test_resolve_batch_size_and_option_errors() -> None:
    net = build_gz2_net("dieleman")
    cpu = torch.device("cpu")
    assert resolve_batch_size(net, (45, 45), "auto", device=cpu) == CPU_AUTO_BATCH
    assert resolve_batch_size(net, (45, 45), 17, device=cpu) == 17
    for bad in (0, -3, True, 2.5, "big"):
        with pytest.raises(ConfigError, match="batch_size"):
            extract_features(net, _images(2, 45), batch_size=bad)
    with pytest.raises(ConfigError, match="precision"):
        extract_features(net, _images(2, 45), precision="fp16")


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


@pytest.mark.gpu
@pytest.mark.parametrize(
    ("backbone", "size"), [("dieleman", 69), ("resnet50", 197), ("legacy_xception", 128)]
)
def test_bf16_agrees_with_fp32_on_a_gpu(backbone: str, size: int) -> None:
    """bf16 autocast within BF16_PROB_ATOL and BF16_REL_TOL of fp32 on a GPU; fp32 there near the CPU's.

    fp32 on the GPU (cuDNN may use TF32 convolutions) is within 1e-2 relative of the CPU; 'auto' batches give
    the values of batches of 16.
    """
    torch.manual_seed(0)
    net = build_gz2_net(backbone)
    images = _images(40, size, seed=2)
    cpu = extract_features(net, images, batch_size=16, device="cpu")
    fp32 = extract_features(net, images, batch_size=16, device="cuda", precision="fp32")
    bf16 = extract_features(net, images, batch_size=16, device="cuda", precision="bf16")
    auto = extract_features(net, images, batch_size="auto", device="cuda", precision="bf16")
    assert next(net.parameters()).device.type == "cuda"
    for key in cpu:
        assert _relative(fp32[key], cpu[key]) < 1e-2, key
    assert np.abs(bf16["p"] - fp32["p"]).max() <= BF16_PROB_ATOL
    assert _relative(bf16["trunk"], fp32["trunk"]) <= BF16_REL_TOL
    for key in bf16:
        np.testing.assert_allclose(auto[key], bf16[key], rtol=1e-2, atol=1e-2)
    ml_net = make_ml_net(build_gz2_net(backbone))
    ml32 = extract_features(ml_net, images, batch_size=16, device="cuda", precision="fp32")
    ml16 = extract_features(ml_net, images, batch_size=16, device="cuda", precision="bf16")
    for key in ("f", "ml"):
        assert _relative(ml16[key], ml32[key]) <= BF16_REL_TOL, key


@pytest.mark.gpu
def test_auto_batch_on_a_gpu_is_a_power_of_two() -> None:
    net = build_gz2_net("dieleman").to("cuda").to(memory_format=torch.channels_last)
    chosen = resolve_batch_size(net, (69, 69), "auto", device=torch.device("cuda"))
    assert 1 <= chosen <= AUTO_MAX_BATCH
    assert chosen & (chosen - 1) == 0
