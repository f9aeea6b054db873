"""``cnn.nets.<net>.pretrained`` ("imagenet", "none" or a file): configuration, the train-cnn check, loading.

The hub is offline in every test: ``HF_HUB_OFFLINE=1``, ``HF_HOME`` and ``TORCH_HOME`` point to empty
temporary folders and sockets refuse to connect, so nothing is downloaded.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import timm
import torch
from safetensors.torch import save_file

from factories.hub import offline_hub_cache, put_in_cache
from morphomass.cnn import run_train_cnn
from morphomass.cnn.architectures import build_gz2_net, check_pretrained
from morphomass.config import load_config
from morphomass.errors import ConfigError
from morphomass.workdir import WorkDir

TINY_ARCH = "test_convnext"  # 0.2 M parameters; ImageNet weights on the hub as timm/test_convnext.r160_in1k


@pytest.fixture(name="offline")
def fixture_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Return the offline hub cache of :func:`factories.hub.offline_hub_cache`."""
    return offline_hub_cache(tmp_path, monkeypatch)


def _imagenet_like(seed: int) -> torch.nn.Module:
    """Make a tiny timm model with a 1000-class classifier and 3 input channels, as ImageNet weights are."""
    torch.manual_seed(seed)
    return timm.create_model(TINY_ARCH, pretrained=False, num_classes=1000, in_chans=3).eval()


def _trunk_equals(net: torch.nn.Module, source: torch.nn.Module) -> None:
    """Assert every tensor of the trunk equals the source's (the classifier, which the trunk lacks, aside)."""
    trunk = net.trunk.model.state_dict()
    expected = source.state_dict()
    assert trunk.keys() <= expected.keys()
    assert {k for k in expected if k not in trunk} == {"head.fc.weight", "head.fc.bias"}
    for key, value in trunk.items():
        assert torch.equal(value, expected[key]), key


# ------------------------------------------------------------------------------------------------------------
# configuration


def test_paper_preset_asks_for_imagenet_on_its_timm_networks_only() -> None:
    nets = load_config("paper").cnn.nets
    assert (nets["cnn1"].backbone, nets["cnn1"].pretrained) == ("resnet50", "imagenet")
    assert (nets["cnn2"].backbone, nets["cnn2"].pretrained) == ("legacy_xception", "imagenet")
    assert (nets["cnn3"].backbone, nets["cnn3"].pretrained) == ("dieleman", "none")


@pytest.mark.parametrize("preset", ["quick", "tiny"])
def test_quick_and_tiny_stay_offline(preset: str) -> None:
    config = load_config(preset)
    assert {net.pretrained for net in config.cnn.nets.values()} == {"none"}
    assert config.cnn.pretrained_weights == {}


def test_old_pretrained_weights_key_moves_to_the_network(tmp_path: Path) -> None:
    path = tmp_path / "resnet18.safetensors"
    config = load_config("tiny", overrides={"cnn": {"pretrained_weights": {"cnn1": str(path)}}})
    assert config.cnn.nets["cnn1"].pretrained == str(path)
    assert config.cnn.nets["cnn2"].pretrained == "none"
    assert config.cnn.pretrained_weights == {"cnn1": path}
    # on the paper preset the file replaces the preset's "imagenet"
    paper = load_config("paper", overrides={"cnn": {"pretrained_weights": {"cnn2": str(path)}}})
    assert (paper.cnn.nets["cnn1"].pretrained, paper.cnn.nets["cnn2"].pretrained) == ("imagenet", str(path))
    # a TOML file with the old key loads the same
    toml = tmp_path / "old.toml"
    toml.write_text(f'[cnn.pretrained_weights]\ncnn1 = "{path}"\n', encoding="utf-8")
    assert load_config("tiny", toml).cnn.nets["cnn1"].pretrained == str(path)
    # the old key is not dumped: the configuration holds the value once
    assert "pretrained_weights" not in load_config("tiny", toml).cnn.model_dump()


def test_old_key_and_new_key_for_one_network_is_an_error(tmp_path: Path) -> None:
    overrides = {
        "cnn": {
            "pretrained_weights": {"cnn1": str(tmp_path / "a.safetensors")},
            "nets": {"cnn1": {"pretrained": "imagenet"}},
        }
    }
    with pytest.raises(
        ConfigError, match=r"cnn.pretrained_weights.cnn1 and cnn.nets.cnn1.pretrained are both"
    ):
        load_config("tiny", overrides=overrides)


def test_old_key_for_an_unknown_network_is_an_error(tmp_path: Path) -> None:
    overrides = {"cnn": {"pretrained_weights": {"cnn9": str(tmp_path / "a.safetensors")}}}
    with pytest.raises(
        ConfigError, match=r"^invalid configuration .*cnn.pretrained_weights.cnn9: no network"
    ):
        load_config("tiny", overrides=overrides)


@pytest.mark.parametrize("spec", ["imagenet", "weights.safetensors"])
def test_custom_network_accepts_only_none(spec: str) -> None:
    overrides = {"cnn": {"nets": {"cnn3": {"pretrained": spec}}}}
    with pytest.raises(
        ConfigError, match=r"cnn.nets.cnn3.pretrained = .*'dieleman' network .* expected 'none'"
    ):
        load_config("tiny", overrides=overrides)
    with pytest.raises(ConfigError, match=r"cnn.nets.cnn3.pretrained .*expected 'none'"):
        load_config("tiny", overrides={"cnn": {"pretrained_weights": {"cnn3": spec}}})


# ------------------------------------------------------------------------------------------------------------
# the train-cnn check and loading


def test_train_cnn_stops_before_training_when_imagenet_weights_cannot_be_had(
    tmp_path: Path, offline: Path, make_cnn_inputs: Callable[..., pd.DataFrame]
) -> None:
    make_cnn_inputs(tmp_path, n=12, sizes=(32, 69))
    workdir = WorkDir(tmp_path).ensure()
    config = load_config("tiny", overrides={"cnn": {"nets": {"cnn1": {"pretrained": "imagenet"}}}})
    config.cnn.accelerator, config.cnn.workers = "cpu", 1
    assert config.cnn.nets["cnn1"].backbone == "resnet18"
    with pytest.raises(ConfigError) as caught:
        run_train_cnn(config, workdir, progress=False)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("cnn.nets.cnn1.pretrained = 'imagenet' for 'resnet18': ")
    assert "timm/resnet18.a1_in1k" in message and str(offline) in message  # what was tried
    assert "to a local weights file" in message and "'none'" in message  # how to do otherwise
    models = tmp_path / "models" / "cnn"
    assert not models.exists() or not any(models.iterdir())


def test_imagenet_weights_in_the_hub_cache_are_found_offline_and_loaded(offline: Path) -> None:
    source = _imagenet_like(seed=3)
    put_in_cache(offline, "timm/test_convnext.r160_in1k", source)
    config = load_config(
        "tiny", overrides={"cnn": {"nets": {"cnn1": {"backbone": TINY_ARCH, "pretrained": "imagenet"}}}}
    )
    check_pretrained(config.cnn.nets)  # no error
    spec = config.cnn.nets["cnn1"]
    _trunk_equals(build_gz2_net(spec.backbone, pretrained=spec.pretrained), source)


def test_local_weights_file_loads_into_the_trunk(tmp_path: Path, offline: Path) -> None:
    source = _imagenet_like(seed=5)
    path = tmp_path / "imagenet.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    config = load_config(
        "tiny", overrides={"cnn": {"nets": {"cnn1": {"backbone": TINY_ARCH, "pretrained": str(path)}}}}
    )
    check_pretrained(config.cnn.nets)  # no error
    spec = config.cnn.nets["cnn1"]
    net = build_gz2_net(spec.backbone, pretrained=spec.pretrained)
    _trunk_equals(net, source)
    assert not torch.equal(net.trunk.model.stem[0].weight, _imagenet_like(seed=6).stem[0].weight)
    # the older keyword gives the same network
    _trunk_equals(build_gz2_net(spec.backbone, pretrained_path=path), source)


def test_missing_or_mismatched_file_is_refused_before_training(tmp_path: Path) -> None:
    missing = tmp_path / "missing.safetensors"
    config = load_config("tiny", overrides={"cnn": {"nets": {"cnn1": {"pretrained": str(missing)}}}})
    with pytest.raises(
        ConfigError, match=r"^cnn.nets.cnn1.pretrained = .*missing.safetensors.: no such file"
    ):
        check_pretrained(config.cnn.nets)
    with pytest.raises(ConfigError, match="give pretrained='imagenet' or pretrained_path, not both"):
        build_gz2_net("resnet18", pretrained="imagenet", pretrained_path=missing)


def test_none_builds_the_same_random_trunk_as_timm() -> None:
    torch.manual_seed(11)
    net = build_gz2_net("resnet18", pretrained="none")
    torch.manual_seed(11)
    reference = timm.create_model("resnet18", num_classes=0, global_pool="avg", in_chans=3)
    for key, value in reference.state_dict().items():
        assert torch.equal(net.trunk.model.state_dict()[key], value), key


def test_imagenet_weights_reach_the_network_that_trains(
    tmp_path: Path,
    offline: Path,
    make_cnn_inputs: Callable[..., pd.DataFrame],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from morphomass.cnn import stage

    source = _imagenet_like(seed=4)
    put_in_cache(offline, "timm/test_convnext.r160_in1k", source)
    make_cnn_inputs(tmp_path, n=12, sizes=(32,))
    net = {"backbone": TINY_ARCH, "input_size": 32, "pretrained": "imagenet"}
    config = load_config("tiny", overrides={"cnn": {"nets": {"cnn1": net}, "train_cnn4": False}})
    config.cnn.accelerator, config.cnn.workers = "cpu", 1
    config.cnn.nets = {"cnn1": config.cnn.nets["cnn1"]}
    built: list[torch.nn.Module] = []

    def keep_a_copy(*args: Any, **kwargs: Any) -> torch.nn.Module:
        built.append(build_gz2_net(*args, **kwargs))
        return copy.deepcopy(built[-1])  # the copy trains, the kept one shows the initial weights

    monkeypatch.setattr(stage, "build_gz2_net", keep_a_copy)
    summary = run_train_cnn(config, WorkDir(tmp_path).ensure(), progress=False).summary
    assert summary["nets"]["cnn1"]["status"] == "trained"
    card = json.loads((tmp_path / "models" / "cnn" / "cnn1.json").read_text(encoding="utf-8"))
    assert card["pretrained_weights"] == "imagenet"
    assert len(built) == 1
    _trunk_equals(built[0], source)
