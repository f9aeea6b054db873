"""Frozen encoders as feature sources (``cnn.encoders``, issue 18): offline, through extract and train-gbm.

One module-scoped work directory: the real mock (24 galaxies), catalog and preprocess stages, untrained
networks (:func:`factories.trained.save_networks`), then ``extract`` with two encoder sources made of timm's
``test_convnext`` with random weights: ``zoo`` by its hub name from an offline hub cache the test writes
(:mod:`factories.hub`), reduced by a PCA to 3 components, and ``raw`` from a local safetensors file (all 64
pooled features), each at its own input size. Then ``train-gbm`` trains the experiments with the encoders.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import timm
import torch
from safetensors.torch import save_file

from factories.hub import offline_hub_cache, put_in_cache
from factories.trained import save_networks, small_config
from morphomass.cnn import run_extract
from morphomass.cnn.data import ImageGroup
from morphomass.cnn.encoders import encode, fit_pca, load_encoder
from morphomass.cnn.sources import (
    encoder_source_features,
    encoder_source_from_bytes,
    encoder_sources_frame,
    fit_encoder_source,
    load_configured_encoder,
    read_encoder_source,
    read_encoder_sources,
)
from morphomass.config import EncoderSourceConfig, PipelineConfig, load_config
from morphomass.errors import ConfigError, InputDataError
from morphomass.pipeline import execute_stage
from morphomass.workdir import WorkDir, file_sha256, load_manifest

ARCH = "test_convnext"  # 0.2 M parameters, 64 pooled features
REPO = "morphotest/zoo-encoder"
ZOO_SIZE, RAW_SIZE, PCA_K = 32, 48, 3


def _model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return timm.create_model(ARCH, pretrained=False, num_classes=0, in_chans=1).eval()


def _config(raw_file: Path) -> PipelineConfig:
    config = small_config()
    config.cnn.accelerator = "cpu"
    config.cnn.encoders = {
        "zoo": EncoderSourceConfig(source=f"hf_hub:{REPO}", input_size=ZOO_SIZE, pca_components=PCA_K),
        "raw": EncoderSourceConfig(source=str(raw_file), input_size=RAW_SIZE, architecture=ARCH),
    }
    return config


@pytest.fixture(name="encoded", scope="module")
def fixture_encoded(tmp_path_factory: pytest.TempPathFactory) -> tuple[PipelineConfig, WorkDir, Path]:
    """Run mock, catalog, preprocess, save untrained networks, extract with the two encoder sources."""
    root = tmp_path_factory.mktemp("encoder_source")
    raw_file = root / "raw_encoder.safetensors"
    save_file(_model(2).state_dict(), str(raw_file))
    config = _config(raw_file)
    workdir = WorkDir(root / "work")
    with pytest.MonkeyPatch.context() as monkeypatch:
        cache = offline_hub_cache(root, monkeypatch)
        put_in_cache(cache, REPO, _model(1))
        for stage in ("mock", "catalog", "preprocess"):
            execute_stage(stage, config, workdir, progress=False)
        save_networks(config, workdir)
        execute_stage("extract", config, workdir, progress=False)
    return config, workdir, cache


def _train_rows(workdir: WorkDir, objid: np.ndarray) -> np.ndarray:
    sample = pd.read_parquet(workdir.sample, columns=["objid", "split"])
    return np.isin(objid, sample.loc[sample["split"] == "train", "objid"].to_numpy())


def test_encoder_sizes_are_preprocessed_and_hashes_unchanged_without_encoders() -> None:
    config = load_config("tiny", overrides={"cnn": {"encoders": {"zoo": {"source": "x", "input_size": 40}}}})
    assert config.image_sizes == (32, 40, 69)
    assert load_config("tiny").image_sizes == (32, 69)
    assert "encoders" not in load_config("tiny").model_dump()["cnn"]  # default hashes unchanged
    assert config.model_dump()["cnn"]["encoders"]["zoo"]["pca_components"] is None


@pytest.mark.parametrize(
    ("entry", "match"),
    [
        ({"Zoo": {"source": "x", "input_size": 40}}, "lower-case letters"),
        ({"zoo": {"source": "x", "input_size": 40, "in_chans": 2}}, "in_chans"),
        ({"zoo": {"source": "x", "input_size": 40, "pca_components": 0}}, "pca_components"),
        ({"zoo": {"input_size": 40}}, "source"),
    ],
)
def test_bad_encoder_entries_name_the_field(entry: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_config("tiny", overrides={"cnn": {"encoders": entry}})


def test_extract_writes_encoder_columns(encoded: tuple[PipelineConfig, WorkDir, Path]) -> None:
    _, workdir, _ = encoded
    table = pd.read_parquet(workdir.cnn_features)
    zoo = [c for c in table.columns if c.startswith("enc_zoo_")]
    raw = [c for c in table.columns if c.startswith("enc_raw_")]
    assert zoo == [f"enc_zoo_{k:04d}" for k in range(PCA_K)]
    assert raw == [f"enc_raw_{k:04d}" for k in range(64)]
    assert any(c.startswith("cnn1_") for c in table.columns)  # the CNN features are still there
    assert table[zoo + raw].dtypes.eq(np.float32).all()
    assert np.isfinite(table[zoo + raw].to_numpy()).all()


def test_encoder_files_are_hashed_in_the_manifest(encoded: tuple[PipelineConfig, WorkDir, Path]) -> None:
    _, workdir, _ = encoded
    record = load_manifest(workdir)["stages"]["extract"]
    folder = workdir.encoder_models
    expected = {"zoo.safetensors", "zoo_pca.safetensors", "zoo.json", "raw.safetensors", "raw.json"}
    assert {p.name for p in folder.iterdir()} == expected
    assert {f"models/encoders/{name}" for name in expected} <= set(record["outputs"])
    summary = record["summary"]["encoders"]
    assert summary["zoo"]["weights_sha256"] == file_sha256(folder / "zoo.safetensors")
    assert summary["zoo"]["pca_sha256"] == file_sha256(folder / "zoo_pca.safetensors")
    assert summary["raw"]["pca_sha256"] is None
    card = json.loads(workdir.encoder_card("zoo").read_text())
    assert (card["source"], card["input_size"], card["pca_components"]) == (f"hf_hub:{REPO}", ZOO_SIZE, PCA_K)
    assert card["pca_fitted_on"]["split"] == "train"


def test_pca_is_fitted_on_the_training_rows_only(encoded: tuple[PipelineConfig, WorkDir, Path]) -> None:
    _, workdir, _ = encoded
    group = ImageGroup(workdir.images_zarr, ZOO_SIZE)
    train = _train_rows(workdir, group.objid)
    assert 0 < train.sum() < len(train)
    saved = read_encoder_source(workdir.encoder_models, "zoo")
    raw = encode(saved.encoder, group.images[:])
    refit = fit_pca(raw[train], PCA_K)
    np.testing.assert_allclose(saved.pca.components, refit.components, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(saved.pca.mean, refit.mean, rtol=1e-6, atol=1e-8)
    everyone = fit_pca(raw, PCA_K)
    assert not np.allclose(saved.pca.mean, everyone.mean, rtol=1e-3, atol=0)


def test_saved_sources_rebuild_the_extracted_features(
    encoded: tuple[PipelineConfig, WorkDir, Path],
) -> None:
    _, workdir, _ = encoded
    table = pd.read_parquet(workdir.cnn_features).set_index("objid")
    for name, size in (("zoo", ZOO_SIZE), ("raw", RAW_SIZE)):
        source = read_encoder_source(workdir.encoder_models, name)
        group = ImageGroup(workdir.images_zarr, size)
        values = encoder_source_features(source, group.images[:])
        expected = table.loc[group.objid, source.columns].to_numpy()
        np.testing.assert_allclose(values, expected, rtol=1e-5, atol=1e-6)
    # the weights file alone rebuilds the hub encoder, with no hub cache
    encoder = load_encoder(workdir.encoder_models / "zoo.safetensors")
    assert (encoder.name, encoder.architecture, encoder.input_size) == ("zoo", ARCH, ZOO_SIZE)


def test_prediction_helpers_rebuild_every_source_from_the_models_folder(
    encoded: tuple[PipelineConfig, WorkDir, Path], tmp_path: Path
) -> None:
    _, workdir, _ = encoded
    copied = tmp_path / "bundle" / "encoders"  # what a bundle holds: the folder alone, no hub cache
    shutil.copytree(workdir.encoder_models, copied)
    sources = read_encoder_sources(copied)
    assert list(sources) == ["raw", "zoo"]
    table = pd.read_parquet(workdir.cnn_features)
    rows = [0, 5, 7]  # three galaxies, in the order predict gives them
    objid = table["objid"].to_numpy()[rows]
    images = {}
    for size in (ZOO_SIZE, RAW_SIZE):
        group = ImageGroup(workdir.images_zarr, size)
        images[size] = group.images[:][group.rows_of(objid)]
    frame = encoder_sources_frame(sources, images)
    assert list(frame.columns) == sources["raw"].columns + sources["zoo"].columns
    np.testing.assert_allclose(
        frame.to_numpy(), table.iloc[rows][frame.columns].to_numpy(), rtol=1e-5, atol=1e-6
    )
    with pytest.raises(InputDataError, match="needs 48-pixel images"):
        encoder_sources_frame(sources, {ZOO_SIZE: images[ZOO_SIZE]})
    assert encoder_sources_frame({}, images).shape == (3, 0)
    assert read_encoder_sources(tmp_path / "nothing") == {}


def test_tampered_or_mismatched_files_are_refused(
    encoded: tuple[PipelineConfig, WorkDir, Path], tmp_path: Path
) -> None:
    _, workdir, _ = encoded
    folder = tmp_path / "encoders"
    shutil.copytree(workdir.encoder_models, folder)
    card = json.loads((folder / "zoo.json").read_text())
    weights = (folder / "zoo.safetensors").read_bytes()
    with pytest.raises(InputDataError, match="names a PCA"):
        encoder_source_from_bytes(card, weights, None, where=folder)
    with pytest.raises(InputDataError, match="card records"):
        encoder_source_from_bytes({**card, "input_size": 64}, weights, None, where=folder)
    raw_pca = (folder / "zoo_pca.safetensors").read_bytes()
    with pytest.raises(InputDataError, match="columns"):
        encoder_source_from_bytes({**card, "columns": card["columns"][:2]}, weights, raw_pca, where=folder)
    data = bytearray((folder / "zoo_pca.safetensors").read_bytes())
    data[-1] ^= 1
    (folder / "zoo_pca.safetensors").write_bytes(bytes(data))
    with pytest.raises(InputDataError, match="SHA-256 differs"):
        read_encoder_source(folder, "zoo")
    with pytest.raises(InputDataError, match="cannot read the card"):
        read_encoder_source(folder, "nothing")


def test_unavailable_source_and_too_many_components_fail_clearly(
    encoded: tuple[PipelineConfig, WorkDir, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, workdir, _ = encoded
    offline_hub_cache(tmp_path, monkeypatch)  # an empty cache: the hub encoder cannot be had
    work = WorkDir(tmp_path / "work")
    shutil.copytree(workdir.root, work.root)
    with pytest.raises(ConfigError, match=r"cnn\.encoders\.zoo: .*morphotest/zoo-encoder"):
        run_extract(config, work, progress=False)
    too_many = config.model_copy(deep=True)
    too_many.cnn.encoders = {
        "raw": config.cnn.encoders["raw"].model_copy(update={"pca_components": 64}),
    }
    with pytest.raises(ConfigError, match=r"cnn\.encoders\.raw\.pca_components = 64"):
        run_extract(too_many, work, progress=False)


def test_extract_without_encoders_removes_their_files(
    encoded: tuple[PipelineConfig, WorkDir, Path], tmp_path: Path
) -> None:
    config, workdir, _ = encoded
    work = WorkDir(tmp_path / "work")
    shutil.copytree(workdir.root, work.root)
    plain = config.model_copy(deep=True)
    plain.cnn.encoders = {}
    result = run_extract(plain, work, progress=False)
    assert not any(work.encoder_models.iterdir())
    assert result.summary["encoders"] == {}
    assert not any(c.startswith("enc_") for c in pd.read_parquet(work.cnn_features).columns)


def test_train_gbm_trains_the_encoder_experiments(encoded: tuple[PipelineConfig, WorkDir, Path]) -> None:
    config, workdir, _ = encoded
    execute_stage("train-gbm", config, workdir, progress=False)
    infos = {
        path.stem: json.loads(path.read_text())
        for path in workdir.gbm_models.glob("*.json")
        if (workdir.gbm_models / f"{path.stem}.txt").is_file()
    }
    for name in ("zoo", "raw"):
        for experiment in (f"g_morph_enc_{name}", f"g_enc_{name}", f"gi_morph_enc_{name}", f"gi_enc_{name}"):
            assert experiment in infos
        only = infos[f"g_enc_{name}"]["features"]
        assert any(f.startswith(f"enc_{name}_") for f in only)
        assert all(f.startswith((f"enc_{name}_", "cat_")) for f in only)
        assert any(f.startswith(f"enc_{name}_") for f in infos[f"g_morph_enc_{name}"]["features"])
    for experiment in ("g_morph", "gi_morph", "ablation_no_cnn", "reference_lg_z"):
        assert not any(f.startswith("enc_") for f in infos[experiment]["features"])


def test_fit_encoder_source_options_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "enc.safetensors"
    save_file(_model(3).state_dict(), str(path))
    config = EncoderSourceConfig(source=str(path), input_size=40, in_chans=3, architecture=ARCH)
    encoder = load_configured_encoder("three", config)
    assert (encoder.name, encoder.input_size, encoder.in_chans) == ("three", 40, 3)
    images = np.random.default_rng(0).random((6, 40, 40), dtype=np.float32)
    train = np.array([True, True, True, True, False, False])
    source, values = fit_encoder_source(encoder, images, train, standardise=True)
    assert source.pca is None and source.columns == [f"enc_three_{k:04d}" for k in range(64)]
    np.testing.assert_array_equal(values, encode(encoder, images, standardise=True))
    assert not np.allclose(values, encode(encoder, images))
    with pytest.raises(InputDataError, match=r"train_rows must have shape \(6,\)"):
        fit_encoder_source(encoder, images, train[:3])
    with pytest.raises(InputDataError, match="no training galaxy"):
        fit_encoder_source(encoder, images, np.zeros(6, dtype=bool), pca_components=2)
    with pytest.raises(ConfigError, match=r"cnn\.encoders\.three\.pca_components = 5: more than the 4"):
        fit_encoder_source(encoder, images, train, pca_components=5)
    with pytest.raises(ConfigError, match=r"cnn\.encoders\.gone: .*not found"):
        load_configured_encoder(
            "gone", config.model_copy(update={"source": str(tmp_path / "no.safetensors")})
        )
