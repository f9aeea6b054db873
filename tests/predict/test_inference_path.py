"""Predict's network step (``_cnn_features``): the extract stage's forward passes, named as the bundle says.

On the CPU the values are those of plain float32 forward passes of the same batch, bit for bit, whatever
``precision`` says (no autocast on the CPU); ``batch_size="auto"`` is accepted; smaller batches give every
galaxy's values in its own columns.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from morphomass.cnn.architectures import build_gz2_net, make_ml_net
from morphomass.cnn.columns import network_columns
from morphomass.predict.predictor import _cnn_features, _Galaxy

SIZES = {"cnn3": 45, "cnn4": 32}


@pytest.fixture(name="networks")
def fixture_networks() -> tuple[dict[str, torch.nn.Module], dict[str, dict]]:
    torch.manual_seed(0)
    networks = {"cnn3": build_gz2_net("dieleman"), "cnn4": make_ml_net(build_gz2_net("resnet18"))}
    spec = {
        "cnn3": {
            "input_size": SIZES["cnn3"],
            "columns": network_columns("cnn3", kind="gz2", trunk_features=0),
        },
        "cnn4": {
            "input_size": SIZES["cnn4"],
            "columns": network_columns("cnn4", kind="ml", trunk_features=0),
        },
    }
    return networks, spec


def _galaxies(n: int) -> list[_Galaxy]:
    rng = np.random.default_rng(3)
    return [
        _Galaxy(
            row=i, objid=100 + i, images={s: rng.random((s, s), dtype=np.float32) for s in SIZES.values()}
        )
        for i in range(n)
    ]


def _plain(net: torch.nn.Module, galaxies: list[_Galaxy], size: int) -> dict[str, np.ndarray]:
    batch = torch.from_numpy(np.stack([g.images[size] for g in galaxies]))[:, None]
    with torch.inference_mode():
        return {k: v.numpy() for k, v in net.eval().forward_features(batch).items()}


def test_cpu_columns_are_the_plain_forward_passes_bit_for_bit(networks) -> None:
    nets, spec = networks
    galaxies = _galaxies(6)
    expected = {name: _plain(net, galaxies, SIZES[name]) for name, net in nets.items()}
    for precision in ("bf16", "fp32"):
        for batch_size in (len(galaxies), "auto"):
            columns = _cnn_features(
                galaxies, nets, spec, batch_size=batch_size, device=torch.device("cpu"), precision=precision
            )
            assert len(columns) == 37 + 37
            for name, keys in spec.items():
                for key, names in keys["columns"].items():
                    for i, column in enumerate(names):
                        assert columns[column].dtype == np.float32
                        np.testing.assert_array_equal(columns[column], expected[name][key][:, i])


def test_small_batches_keep_each_galaxy_in_its_row(networks) -> None:
    """Batches of 4 (ragged last batch) against one galaxy at a time: same rows, same values to rounding."""
    nets, spec = networks
    galaxies = _galaxies(6)
    batched = _cnn_features(galaxies, nets, spec, batch_size=4, device="cpu")
    one = [_cnn_features([g], nets, spec, batch_size=1, device="cpu") for g in galaxies]
    for column, values in batched.items():
        assert values.shape == (6,)
        np.testing.assert_allclose(values, [o[column][0] for o in one], rtol=1e-4, atol=1e-5)
