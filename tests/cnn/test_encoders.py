"""Pretrained weights and frozen encoders (morphomass.cnn.encoders), offline.

A tiny timm model (``test_convnext``, 0.2 M parameters) is written by the tests in the Hugging Face hub cache
layout (``models--<org>--<name>/snapshots/<rev>/{config.json, model.safetensors}`` and ``refs/main``, by
timm's own ``save_for_hf``) under a temporary ``HF_HOME``, with ``HF_HUB_OFFLINE=1`` and sockets refused:
nothing is downloaded.
"""

from __future__ import annotations

import argparse
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import save_file

from factories.hub import offline_hub_cache, put_in_cache
from morphomass.cnn.encoders import (
    Pca,
    apply_pca,
    create_timm_model,
    encode,
    encoder_columns,
    encoder_name,
    fit_pca,
    load_encoder,
    load_pca,
    read_state_dict,
    resolve_pretrained,
    save_encoder_weights,
    save_pca,
)
from morphomass.errors import ConfigError, InputDataError

ARCH = "test_convnext"
SIZE = 160  # test_convnext's pretrained input size
REPO = "morphotest/tiny-encoder"


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Return the offline hub cache of :func:`factories.hub.offline_hub_cache`."""
    return offline_hub_cache(tmp_path, monkeypatch)


def tiny_model(
    *, in_chans: int = 1, num_classes: int = 0, seed: int = 0, arch: str = ARCH
) -> torch.nn.Module:
    torch.manual_seed(seed)
    return timm.create_model(arch, pretrained=False, num_classes=num_classes, in_chans=in_chans).eval()


def images(n: int = 5, size: int = SIZE, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).random((n, size, size), dtype=np.float32)


def reference_features(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)[:, None]).numpy()


# ------------------------------------------------------------------------------------------------------------
# frozen encoders from the hub cache and from files


def test_hub_name_loads_offline_from_the_cache(hub_cache: Path) -> None:
    model = tiny_model()
    put_in_cache(hub_cache, REPO, model)
    encoder = load_encoder(f"hf_hub:{REPO}")
    assert (encoder.name, encoder.architecture, encoder.input_size) == ("tiny_encoder", ARCH, SIZE)
    assert (encoder.in_chans, encoder.num_features) == (1, 64)
    assert not encoder.model.training
    assert not any(p.requires_grad for p in encoder.model.parameters())
    x = images()
    np.testing.assert_array_equal(encode(encoder, x, batch_size=5), reference_features(model, x))


def test_three_channel_encoder_gives_the_features_of_the_repeated_band(hub_cache: Path) -> None:
    put_in_cache(hub_cache, REPO, tiny_model())
    one = load_encoder(f"hf_hub:{REPO}", in_chans=1)
    three = load_encoder(f"hf_hub:{REPO}", in_chans=3)
    assert three.model.stem[0].in_channels == 3
    x = images(3)
    np.testing.assert_allclose(encode(three, x), encode(one, x), rtol=1e-4, atol=1e-5)


def test_missing_hub_name_names_repo_cache_and_offline(hub_cache: Path) -> None:
    with pytest.raises(ConfigError, match=r"'morphotest/absent'.*HF_HUB_OFFLINE=1.*cache") as info:
        load_encoder("hf_hub:morphotest/absent")
    assert str(hub_cache) in str(info.value)
    assert "\n" not in str(info.value)


def test_hub_repo_without_weights_fails(hub_cache: Path) -> None:
    snapshot = put_in_cache(hub_cache, REPO, tiny_model())
    (snapshot / "model.safetensors").unlink()
    with pytest.raises(ConfigError, match=r"no weights from Hugging Face repo 'morphotest/tiny-encoder'"):
        load_encoder(f"hf_hub:{REPO}")


def test_hub_repo_with_weights_of_another_network_fails(hub_cache: Path) -> None:
    snapshot = put_in_cache(hub_cache, REPO, tiny_model())
    save_file(tiny_model(arch="test_resnet").state_dict(), snapshot / "model.safetensors")
    with pytest.raises(
        InputDataError, match=r"do not fit timm 'test_convnext': \d+ missing .*\d+ unexpected"
    ):
        load_encoder(f"hf_hub:{REPO}")


def test_local_safetensors_file_loads_with_its_architecture(tmp_path: Path) -> None:
    model = tiny_model(seed=3)
    path = tmp_path / "my_encoder.safetensors"
    save_file(model.state_dict(), path)
    encoder = load_encoder(path, architecture=ARCH)
    assert (encoder.name, encoder.input_size) == ("my_encoder", SIZE)
    x = images(2)
    np.testing.assert_array_equal(encode(encoder, x), reference_features(model, x))
    with pytest.raises(ConfigError, match="does not name its architecture"):
        load_encoder(path)


def test_file_with_wrong_shapes_fails_naming_the_key(tmp_path: Path) -> None:
    state = tiny_model().state_dict()
    state["head.norm.weight"] = torch.ones(32)
    path = tmp_path / "wrong.safetensors"
    save_file(state, path)
    with pytest.raises(InputDataError, match=r"1 wrong shape \(head\.norm\.weight \(32,\) vs \(64,\)\)"):
        load_encoder(path, architecture=ARCH)


def test_encoder_file_round_trip_keeps_mode_hash_and_features(tmp_path: Path, hub_cache: Path) -> None:
    put_in_cache(hub_cache, REPO, tiny_model(seed=5))
    encoder = load_encoder(f"hf_hub:{REPO}")
    path = tmp_path / "bundle" / "encoders" / "tiny.safetensors"
    path.parent.mkdir(parents=True)
    old = os.umask(0o022)
    try:
        digest = save_encoder_weights(encoder, path)
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    again = load_encoder(path)  # the header names the architecture: no hub, no other file
    assert (again.name, again.source, again.architecture) == ("tiny_encoder", f"hf_hub:{REPO}", ARCH)
    assert (again.input_size, again.mean, again.std) == (encoder.input_size, encoder.mean, encoder.std)
    x = images(3)
    np.testing.assert_array_equal(encode(again, x), encode(encoder, x))


def test_encode_shape_dtype_determinism_and_batching(hub_cache: Path) -> None:
    put_in_cache(hub_cache, REPO, tiny_model())
    encoder = load_encoder(f"hf_hub:{REPO}")
    x = images(5)
    first = encode(encoder, x, batch_size=2)
    assert first.shape == (5, 64)
    assert first.dtype == np.float32
    np.testing.assert_array_equal(encode(encoder, x, batch_size=2), first)
    np.testing.assert_allclose(encode(encoder, x, batch_size=5), first, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(encode(encoder, x.astype(np.float16), batch_size=2), first, atol=2e-2)
    standardised = encode(encoder, x, standardise=True)
    np.testing.assert_allclose(standardised, encode(encoder, (x - 0.5) / 0.5), rtol=1e-5, atol=1e-6)
    with pytest.raises(InputDataError, match=r"images must be \(N, 160, 160\)"):
        encode(encoder, images(2, size=64))
    with pytest.raises(ConfigError, match="batch_size"):
        encode(encoder, x, batch_size=0)


def test_first_convolution_that_cannot_fit_fails(tmp_path: Path) -> None:
    state = tiny_model().state_dict()
    stem = state["stem.0.weight"]
    state["stem.0.weight"] = torch.zeros(stem.shape[0] + 1, *stem.shape[1:])
    path = tmp_path / "stem.safetensors"
    save_file(state, path)
    with pytest.raises(
        InputDataError, match=r"stem\.safetensors: weights do not fit timm 'test_convnext' \("
    ):
        load_encoder(path, architecture=ARCH)


def test_load_encoder_rejects_bad_arguments_and_headers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tiny_model().state_dict()
    path = tmp_path / "w.safetensors"
    save_file(state, path)
    with pytest.raises(ConfigError, match="in_chans must be 1 or 3"):
        load_encoder(path, in_chans=2, architecture=ARCH)
    with pytest.raises(ConfigError, match="'no_such_net' is not a timm model"):
        load_encoder(path, architecture="no_such_net")
    with pytest.raises(ConfigError, match=r"weights file .*absent\.safetensors not found"):
        load_encoder(tmp_path / "absent.safetensors", architecture=ARCH)
    bad_args = tmp_path / "args.safetensors"
    save_file(state, bad_args, metadata={"architecture": ARCH, "model_args": '{"no_such_argument": 1}'})
    with pytest.raises(InputDataError, match=r"args\.safetensors: cannot build timm 'test_convnext'"):
        load_encoder(bad_args)
    bad_json = tmp_path / "json.safetensors"
    save_file(state, bad_json, metadata={"architecture": ARCH, "mean": "[0.5"})
    with pytest.raises(InputDataError, match=r"the 'mean' entry of its safetensors header is not JSON"):
        load_encoder(bad_json)

    def unreadable(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_bytes", unreadable)
    with pytest.raises(
        InputDataError, match=r"cannot read weights file .*w\.safetensors \(Permission denied\)"
    ):
        read_state_dict(path)


# ------------------------------------------------------------------------------------------------------------
# pretrained initialisation


def test_imagenet_not_cached_offline_names_what_was_tried(hub_cache: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"'imagenet' for 'test_convnext'.*'timm/test_convnext\.r160_in1k'"
    ) as e:
        resolve_pretrained("imagenet", ARCH)
    text = str(e.value)
    assert str(hub_cache) in text and "HF_HUB_OFFLINE=1" in text
    assert "cnn.pretrained to a local weights file" in text and "'none'" in text
    assert "\n" not in text


def test_imagenet_from_url_offline_fails_without_network(hub_cache: Path) -> None:
    # legacy_xception's timm weights are a GitHub URL (torch.hub cache), not a hub repo
    with pytest.raises(ConfigError, match=r"xception-43020ad28\.pth.*torch hub cache.*HF_HUB_OFFLINE=1"):
        resolve_pretrained("imagenet", "legacy_xception", field="cnn.nets.cnn2.pretrained")


def test_imagenet_from_the_cache_is_adapted_to_one_channel(hub_cache: Path) -> None:
    rgb = tiny_model(in_chans=3, num_classes=1000, seed=7)
    put_in_cache(hub_cache, "timm/test_convnext.r160_in1k", rgb)
    state = resolve_pretrained("imagenet", ARCH)
    assert state is not None and "head.fc.weight" in state
    torch.testing.assert_close(state["stem.0.weight"], rgb.state_dict()["stem.0.weight"])
    grey = create_timm_model(ARCH, pretrained="imagenet", in_chans=1)
    loaded = grey.state_dict()
    assert "head.fc.weight" not in loaded
    torch.testing.assert_close(
        loaded["stem.0.weight"], rgb.state_dict()["stem.0.weight"].sum(1, keepdim=True)
    )
    torch.testing.assert_close(
        loaded["stages.1.blocks.0.mlp.fc1.weight"], state["stages.1.blocks.0.mlp.fc1.weight"]
    )


def test_pretrained_specs_none_file_and_errors(tmp_path: Path, hub_cache: Path) -> None:
    assert resolve_pretrained("none", "resnet50") is None
    rgb = tiny_model(in_chans=3, num_classes=1000, seed=2)
    pth = tmp_path / "weights.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in rgb.state_dict().items()}}, pth)
    state = resolve_pretrained(pth, ARCH)
    assert state is not None and set(state) == set(rgb.state_dict())  # unwrapped, DDP prefix removed
    model = create_timm_model(ARCH, pretrained=str(pth), in_chans=3)
    torch.testing.assert_close(model.state_dict()["stem.0.weight"], rgb.state_dict()["stem.0.weight"])
    with pytest.raises(
        ConfigError, match=r"cnn.pretrained = '.*absent.pth': no such file.*'imagenet' or 'none'"
    ):
        resolve_pretrained(tmp_path / "absent.pth", ARCH)
    with pytest.raises(ConfigError, match="'resnet_999' is not a timm model"):
        resolve_pretrained("imagenet", "resnet_999")
    with pytest.raises(ConfigError, match="timm has no pretrained weights for 'coatnet_0_224'.*or to 'none'"):
        resolve_pretrained("imagenet", "coatnet_0_224")
    with pytest.raises(InputDataError, match=r"do not fit timm 'test_resnet'"):
        create_timm_model("test_resnet", pretrained=pth)


def test_read_state_dict_refuses_pickles_bad_files_and_suffixes(tmp_path: Path) -> None:
    pickled = tmp_path / "object.pth"
    torch.save({"w": torch.zeros(2), "options": argparse.Namespace(a=1)}, pickled)
    with pytest.raises(InputDataError, match="weights_only=True"):
        read_state_dict(pickled)
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a safetensors file")
    with pytest.raises(InputDataError, match="not a valid safetensors file"):
        read_state_dict(broken)
    not_tensors = tmp_path / "numbers.pt"
    torch.save({"epoch": 3}, not_tensors)
    with pytest.raises(InputDataError, match="does not hold a state dict"):
        read_state_dict(not_tensors)
    odd = tmp_path / "weights.h5"
    odd.write_bytes(b"")
    with pytest.raises(ConfigError, match=r"must end in one of \.safetensors"):
        read_state_dict(odd)


# ------------------------------------------------------------------------------------------------------------
# PCA and names


def correlated_features(n: int = 40, f: int = 8, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (
        rng.standard_normal((n, 3)) @ rng.standard_normal((3, f)) * 5 + rng.standard_normal((n, f))
    ).astype(np.float32)


def test_pca_fit_apply_and_exact_round_trip(tmp_path: Path) -> None:
    features = correlated_features()
    pca = fit_pca(features, 3)
    assert pca.components.shape == (3, 8)
    np.testing.assert_allclose(pca.components @ pca.components.T, np.eye(3), atol=1e-12)
    projected = apply_pca(features, pca)
    assert projected.dtype == np.float32 and projected.shape == (40, 3)
    variances = projected.var(axis=0)
    assert variances[0] >= variances[1] >= variances[2] > 0
    np.testing.assert_allclose(projected.mean(axis=0), 0, atol=1e-4)
    path = tmp_path / "pca.safetensors"
    digest = save_pca(pca, path)
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    loaded = load_pca(path)
    np.testing.assert_array_equal(loaded.mean, pca.mean)
    np.testing.assert_array_equal(loaded.components, pca.components)
    np.testing.assert_array_equal(apply_pca(features, loaded), projected)
    # the sign convention makes a refit on the same data identical
    np.testing.assert_array_equal(fit_pca(features, 3).components, pca.components)


def test_pca_errors(tmp_path: Path) -> None:
    features = correlated_features(n=5, f=8)
    with pytest.raises(ConfigError, match=r"n_components must be in 1\.\.min\(galaxies, features\) = 5"):
        fit_pca(features, 6)
    with pytest.raises(InputDataError, match="finite"):
        fit_pca(np.full((4, 3), np.nan), 1)
    pca = fit_pca(features, 2)
    with pytest.raises(InputDataError, match="have 7 columns, the PCA was fitted on 8"):
        apply_pca(features[:, :7], pca)
    path = tmp_path / "pca.safetensors"
    save_pca(Pca(mean=np.zeros(3), components=np.zeros((2, 4))), path)
    with pytest.raises(InputDataError, match=r"needs 'mean' \(F,\) and 'components' \(K, F\)"):
        load_pca(path)
    path.write_bytes(b"garbage")
    with pytest.raises(InputDataError, match="not a valid safetensors file"):
        load_pca(path)
    with pytest.raises(InputDataError, match="cannot read PCA file"):
        load_pca(tmp_path / "absent.safetensors")


def test_encoder_names_and_columns() -> None:
    assert encoder_name("hf_hub:mwalmsley/zoobot-encoder-greyscale-convnext_nano@v2") == (
        "zoobot_encoder_greyscale_convnext_nano"
    )
    assert encoder_name("/models/My.Encoder.safetensors") == "my_encoder"
    assert encoder_columns("zoo", 2) == ["enc_zoo_0000", "enc_zoo_0001"]
    with pytest.raises(ConfigError, match="lower-case letters"):
        encoder_columns("Zoo-1", 2)
