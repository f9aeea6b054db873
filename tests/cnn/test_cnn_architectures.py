"""The networks (SPEC N2-N5): the paper preset's shapes and parameter counts, initialisation, CNN4, errors."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from morphomass.cnn.architectures import OUTPUT_BIAS_INIT, DielemanTrunk, GZ2Net, build_gz2_net, make_ml_net
from morphomass.cnn.training import fit_network
from morphomass.config import load_config
from morphomass.errors import ConfigError
from morphomass.gz2 import QUESTIONS, answer_index

PAPER = load_config("paper").cnn


def _n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_paper_nets_are_the_papers() -> None:
    nets = {name: (net.backbone, net.input_size) for name, net in PAPER.nets.items()}
    assert nets == {"cnn1": ("resnet50", 197), "cnn2": ("legacy_xception", 128), "cnn3": ("dieleman", 69)}
    assert PAPER.train_cnn4 and PAPER.epochs == 30 and PAPER.batch_size == 32
    assert (PAPER.lr_factor, PAPER.lr_patience) == (0.3, 4)
    assert PAPER.augment_rotation_deg == 360 and PAPER.augment_zoom == (0.7, 1.3) and PAPER.augment_flips


def test_cnn3_parameter_count_layer_by_layer() -> None:
    net = build_gz2_net("dieleman")
    per_layer = [
        w.numel() + b.numel()
        for w, b in zip(
            [p for n, p in net.named_parameters() if n.endswith("weight")],
            [p for n, p in net.named_parameters() if n.endswith("bias")],
            strict=True,
        )
    ]
    assert per_layer == [832, 32_832, 73_856, 147_584, 66_048, 18_981]
    assert _n_params(net) == 340_133


def test_cnn3_feature_map_sizes_follow_valid_padding() -> None:
    """69 -> conv5 65 -> pool 32 -> conv4 29 -> pool 14 -> conv3 12 -> pool 6 -> conv3 4 -> global pool."""
    trunk = DielemanTrunk(dropout=0.25)
    x = torch.zeros(1, 1, 69, 69)
    sizes = []
    for layer in trunk.layers:
        x = layer(x)
        if isinstance(layer, torch.nn.Conv2d | torch.nn.MaxPool2d):
            sizes.append(tuple(x.shape[1:]))
    assert sizes == [
        (32, 65, 65),
        (32, 32, 32),
        (64, 29, 29),
        (64, 14, 14),
        (128, 12, 12),
        (128, 6, 6),
        (128, 4, 4),
    ]
    assert tuple(x.shape) == (1, 128)
    dropouts = [m.p for m in trunk.layers if isinstance(m, torch.nn.Dropout)]
    assert dropouts == [0.25, 0.25, 0.25]  # after the first three pooled blocks only


def test_glorot_uniform_initialisation() -> None:
    torch.manual_seed(0)
    net = build_gz2_net("dieleman")
    layers = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)]
    assert len(layers) == 6
    for module in layers:
        fan_in, fan_out = torch.nn.init._calculate_fan_in_and_fan_out(module.weight)
        limit = math.sqrt(6 / (fan_in + fan_out))
        assert module.weight.abs().max() <= limit
        assert module.weight.abs().max() > 0.9 * limit  # uniform over the whole range, not a narrower init
    assert all(torch.all(m.bias == 0) for m in layers[:-1])
    assert torch.all(layers[-1].bias == OUTPUT_BIAS_INIT)  # every answer starts alive


@pytest.mark.parametrize(("name", "trunk_features"), [("cnn1", 2048), ("cnn2", 2048), ("cnn3", 128)])
def test_paper_nets_shapes(name: str, trunk_features: int) -> None:
    net_config = PAPER.nets[name]
    net = build_gz2_net(net_config.backbone).eval()
    images = torch.rand(2, 1, net_config.input_size, net_config.input_size)
    with torch.no_grad():
        out = net.forward_features(images)
    assert out["trunk"].shape == (2, trunk_features)
    assert out["p"].shape == (2, 37)
    root = [answer_index(a.answer_id) for a in QUESTIONS[0].answers]
    np.testing.assert_allclose(out["p"][:, root].sum(1).numpy(), 1.0, rtol=1e-5)


def test_cnn4_reuses_cnn1_and_outputs_one_value() -> None:
    cnn1 = build_gz2_net("resnet18")
    cnn4 = make_ml_net(cnn1)
    for (name, p1), (_, p4) in zip(cnn1.named_parameters(), list(cnn4.named_parameters())[:-2], strict=True):
        assert torch.equal(p1, p4), name
        assert p1.data_ptr() != p4.data_ptr()  # a copy: training CNN4 leaves CNN1 alone
    assert tuple(cnn4.out.weight.shape) == (1, 37)
    out = cnn4.eval().forward_features(torch.rand(2, 1, 32, 32))
    assert out["f"].shape == (2, 37) and out["ml"].shape == (2,)
    assert torch.all(out["f"] >= 0)  # the rectified dense-37 layer


@pytest.mark.slow
@pytest.mark.parametrize("name", ["cnn1", "cnn2", "cnn3", "cnn4"])
def test_paper_nets_train_a_step_on_two_images(name: str) -> None:
    """Every paper-preset network runs a Lightning training epoch of one batch of 2 images on the CPU."""
    config = PAPER.model_copy(update={"accelerator": "cpu", "devices": 1})
    net_config = PAPER.nets["cnn1" if name == "cnn4" else name]
    size = net_config.input_size
    torch.manual_seed(0)
    net = build_gz2_net(net_config.backbone)
    rng = np.random.default_rng(0)
    images = rng.random((2, size, size), dtype=np.float32)
    if name == "cnn4":
        net = make_ml_net(net)
        arrays = (images, np.array([2.0, 3.0], np.float32), np.array([0.2, 0.3], np.float32))
        task = "ml"
    else:
        arrays = (images, rng.dirichlet(np.ones(37), 2).astype(np.float32))
        task = "gz2"
    before = {k: v.clone() for k, v in net.state_dict().items()}
    result = fit_network(net, arrays, arrays, task=task, config=config, epochs=1, progress=False)
    assert result.n_train == 2 and len(result.history) == 2
    assert np.isfinite([row["val_loss"] for row in result.history]).all()
    assert math.isfinite(result.history[1]["train_loss"])
    changed = [
        k for k, v in result.state_dict.items() if v.is_floating_point() and not torch.equal(v, before[k])
    ]
    if result.best_epoch == 1:
        assert changed  # the step moved the weights
    else:
        assert not changed  # the untrained weights were better and were kept


def test_pretrained_weights_come_from_a_local_file(tmp_path: Path) -> None:
    import timm

    torch.manual_seed(1)
    source = timm.create_model("resnet18", num_classes=1000)
    path = tmp_path / "resnet18_imagenet.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    net = build_gz2_net("resnet18", pretrained_path=path)
    assert isinstance(net, GZ2Net)
    assert torch.equal(net.trunk.model.conv1.weight, source.conv1.weight)
    assert torch.equal(net.trunk.model.layer4[1].bn2.running_var, source.layer4[1].bn2.running_var)


def test_single_band_is_replicated_to_three_channels() -> None:
    net = build_gz2_net("resnet18").eval()
    image = torch.rand(1, 1, 32, 32)
    captured = {}

    def keep_input(module: torch.nn.Module, args: tuple[torch.Tensor], output: torch.Tensor) -> None:
        captured["x"] = args[0]

    net.trunk.model.conv1.register_forward_hook(keep_input)
    with torch.no_grad():
        net(image)
    x = captured["x"] * net.trunk.std + net.trunk.mean  # undo the ImageNet standardisation
    for channel in range(3):
        torch.testing.assert_close(x[:, channel], image[:, 0])


def test_unknown_backbone_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="'resnet51' is neither 'dieleman' nor a timm model"):
        build_gz2_net("resnet51")


def test_custom_net_has_no_pretrained_variant(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no pretrained variant"):
        build_gz2_net("dieleman", pretrained_path=tmp_path / "w.safetensors")
