"""A run with an encoder source (``cnn.encoders``, issue 18), end to end through the bundle and predict.

One module-scoped work directory: the real mock (24 galaxies), catalog and preprocess stages, untrained
networks (:func:`factories.trained.save_networks`), ``extract`` with one encoder source ``zoo`` (timm's
``test_convnext`` with random weights from a local safetensors file, at 48 px, a size no network uses, reduced
by a PCA to 3 components), the real ``train-gbm`` and ``bundle`` stages. The bundle then predicts the same
galaxies from their raw FITS images with the default models and with the encoder models ``g_zoo``/``gi_zoo``.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import timm
import torch
from safetensors.torch import save_file

from factories.hub import offline_hub_cache
from factories.trained import predict_catalog_of, read_bundle_json, save_networks, small_config
from morphomass.cnn import sources
from morphomass.cnn.sources import encoder_sources_frame
from morphomass.config import EncoderSourceConfig, PipelineConfig
from morphomass.errors import WorkdirError
from morphomass.pipeline import execute_stage
from morphomass.predict import BundleError, load_bundle, write_bundle
from morphomass.predict.bundle import bundle_content_sha256
from morphomass.workdir import WorkDir, file_sha256

ARCH = "test_convnext"  # 0.2 M parameters, 64 pooled features
SIZE, PCA_K = 48, 3
ENCODER_FILES = ("encoders/zoo.json", "encoders/zoo.safetensors", "encoders/zoo_pca.safetensors")


def _config(raw_file: Path) -> PipelineConfig:
    config = small_config()
    config.cnn.accelerator = "cpu"
    config.cnn.encoders = {
        "zoo": EncoderSourceConfig(
            source=str(raw_file), input_size=SIZE, architecture=ARCH, pca_components=PCA_K
        )
    }
    return config


@pytest.fixture(name="encoded_run", scope="module")
def fixture_encoded_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[PipelineConfig, WorkDir]:
    """Run mock, catalog, preprocess, save untrained networks, extract, train-gbm and bundle (offline)."""
    root = tmp_path_factory.mktemp("encoder_bundle")
    raw_file = root / "zoo_encoder.safetensors"
    torch.manual_seed(5)
    save_file(
        timm.create_model(ARCH, pretrained=False, num_classes=0, in_chans=1).state_dict(), str(raw_file)
    )
    config = _config(raw_file)
    workdir = WorkDir(root / "work")
    with pytest.MonkeyPatch.context() as monkeypatch:
        offline_hub_cache(root, monkeypatch)  # nothing may be downloaded
        for stage in ("mock", "catalog", "preprocess"):
            execute_stage(stage, config, workdir, progress=False)
        save_networks(config, workdir)
        for stage in ("extract", "train-gbm", "bundle"):
            execute_stage(stage, config, workdir, progress=False)
    return config, workdir


def test_the_bundle_lists_the_encoder_files_and_models(encoded_run: tuple[PipelineConfig, WorkDir]) -> None:
    _, workdir = encoded_run
    manifest = read_bundle_json(workdir.models)
    assert manifest["encoders"] == {
        "zoo": {
            "card": "encoders/zoo.json",
            "weights": "encoders/zoo.safetensors",
            "pca": "encoders/zoo_pca.safetensors",
            "input_size": SIZE,
            "columns": [f"enc_zoo_{k:04d}" for k in range(PCA_K)],
        }
    }
    for rel in ENCODER_FILES:  # the bundle folder is models/: extract's files are in it, hashed
        data = (workdir.models / rel).read_bytes()
        assert manifest["files"][rel] == {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    card = json.loads((workdir.models / "encoders/zoo.json").read_text())
    assert card["weights_sha256"] == file_sha256(workdir.models / "encoders/zoo.safetensors")
    assert manifest["preprocessing"]["sizes"] == [SIZE, 69]
    models = manifest["models"]
    experiments = {"g": "g_morph", "gi": "gi_morph", "g_zoo": "g_morph_enc_zoo", "gi_zoo": "gi_morph_enc_zoo"}
    assert {key: model["experiment"] for key, model in models.items()} == experiments
    assert not any(f.startswith("enc_") for k in ("g", "gi") for f in models[k]["features"])
    assert any(f.startswith("enc_zoo_") for f in models["g_zoo"]["features"])
    assert models["g_zoo"]["intervals"] == "gbm/intervals_g_morph_enc_zoo.json"  # train-gbm calibrated it
    assert models["g"]["intervals"] == "gbm/intervals_g_morph.json"
    bundle = load_bundle(workdir.models)
    assert bundle.encoder_names == ["zoo"]
    assert sorted(bundle.model_keys) == ["g", "g_zoo", "gi", "gi_zoo"]
    assert sorted(bundle.interval_calibrations()) == ["g", "g_zoo", "gi", "gi_zoo"]


def test_predict_with_the_encoder_models_reproduces_train_gbm(
    encoded_run: tuple[PipelineConfig, WorkDir],
) -> None:
    """From raw FITS through the bundle: train-gbm's predictions of the same galaxies, with and without it."""
    _, workdir = encoded_run
    bundle = load_bundle(workdir.models)
    stage = pd.read_parquet(workdir.gbm_models / "predictions.parquet").set_index("objid")
    catalog = predict_catalog_of(workdir)
    g_only = catalog.drop(columns=["modelMag_g", "modelMag_i"])
    features = pd.read_parquet(workdir.cnn_features).set_index("objid")
    computed: list[pd.DataFrame] = []

    def spy(*args, **kwargs) -> pd.DataFrame:
        computed.append(encoder_sources_frame(*args, **kwargs))
        return computed[-1]

    def run(table: pd.DataFrame, model: str) -> pd.DataFrame:
        with pytest.MonkeyPatch.context() as monkeypatch:
            monkeypatch.setattr(sources, "encoder_sources_frame", spy)
            out = bundle.predict(workdir.raw_images, table, stars=workdir.stars, model=model)
        return out.set_index("objid").loc[stage.index]

    encoded = run(g_only, "g_zoo")
    # the enc_zoo_* features predict computed from the raw FITS are those extract wrote (one batch, all ok)
    assert len(computed) == 1 and len(computed[0]) == len(catalog)
    again = computed[0].set_axis(catalog["objid"].to_numpy()).loc[features.index]
    np.testing.assert_allclose(again, features[again.columns], rtol=1e-5, atol=1e-6)
    default = run(g_only, "auto")
    assert len(computed) == 1, "no encoder forward pass for the default models"
    assert (encoded["model"] == "g_zoo").all() and (default["model"] == "g").all()
    np.testing.assert_allclose(encoded["ml_pred"], stage["pred_g_morph_enc_zoo"], rtol=1e-5)
    np.testing.assert_allclose(default["ml_pred"], stage["pred_g_morph"], rtol=1e-5)
    for out in (encoded, default):
        assert (out["ml_lo_68"] <= out["ml_pred"]).all() and (out["ml_pred"] <= out["ml_hi_68"]).all()
    with_i = run(catalog, "gi_zoo")
    np.testing.assert_allclose(with_i["ml_pred"], stage["pred_gi_morph_enc_zoo"], rtol=1e-5)
    missing = run(g_only, "gi_zoo")
    assert missing["ml_pred"].isna().all() and missing["flags"].str.contains("magnitudes_missing").all()
    with pytest.raises(Exception, match=r"one of the bundle's models \['g', 'g_zoo', 'gi', 'gi_zoo'\]"):
        bundle.predict(workdir.raw_images, g_only, model="g_nope")


def _bundle_copy(workdir: WorkDir, tmp_path: Path) -> Path:
    return Path(shutil.copytree(workdir.models, tmp_path / "models"))


@pytest.mark.parametrize("rel", ENCODER_FILES)
def test_a_changed_encoder_file_is_refused_in_one_line(
    encoded_run: tuple[PipelineConfig, WorkDir], tmp_path: Path, rel: str
) -> None:
    bundle_dir = _bundle_copy(encoded_run[1], tmp_path)
    data = bytearray((bundle_dir / rel).read_bytes())
    data[len(data) // 2] ^= 0x01
    (bundle_dir / rel).write_bytes(bytes(data))
    with pytest.raises(BundleError, match=re.escape(rel.split("/")[1]) + " was modified") as err:
        load_bundle(bundle_dir)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda m: m["encoders"]["zoo"].pop("columns"), r"encoders\.zoo\.columns must be a list of strings"),
        (lambda m: m["encoders"]["zoo"].update(input_size=40), r"encoders\.zoo\.input_size must be one of"),
        (
            lambda m: m["encoders"]["zoo"].update(pca="gbm/x.json"),
            r"encoders\.zoo\.pca = 'gbm/x\.json' is not",
        ),
        (lambda m: m.pop("encoders"), r"models keys must be among \['g', 'gi'\], got 'g_zoo'"),
        (lambda m: m["encoders"]["zoo"].update(input_size=69), r"zoo\.json describes encoder 'zoo' at 48 px"),
    ],
)
def test_a_bad_encoders_section_is_refused_naming_the_key(
    encoded_run: tuple[PipelineConfig, WorkDir], tmp_path: Path, change, match: str
) -> None:
    bundle_dir = _bundle_copy(encoded_run[1], tmp_path)
    manifest = read_bundle_json(bundle_dir)
    change(manifest)
    manifest["bundle_sha256"] = bundle_content_sha256(manifest)
    (bundle_dir / "bundle.json").write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(BundleError, match=match) as err:
        load_bundle(bundle_dir)
    assert "\n" not in str(err.value)


def test_write_bundle_refuses_an_encoder_of_another_configuration(
    encoded_run: tuple[PipelineConfig, WorkDir],
) -> None:
    config, workdir = encoded_run
    other = config.model_copy(deep=True)
    other.cnn.encoders["zoo"] = other.cnn.encoders["zoo"].model_copy(update={"pca_components": 2})
    with pytest.raises(
        WorkdirError, match=r"zoo\.json records encoder source zoo as .* cnn\.encoders\.zoo asks"
    ):
        write_bundle(other, workdir)


def test_a_model_without_a_calibration_gets_nan_bounds(
    encoded_run: tuple[PipelineConfig, WorkDir], tmp_path: Path
) -> None:
    config, workdir = encoded_run
    copy = WorkDir(Path(shutil.copytree(workdir.root, tmp_path / "work")))
    copy.gbm_interval_calibration("gi_morph_enc_zoo").unlink()  # as a bundle of an older train-gbm
    write_bundle(config, copy)
    manifest = read_bundle_json(copy.models)
    assert manifest["models"]["gi_zoo"]["intervals"] is None
    assert manifest["models"]["g_zoo"]["intervals"] == "gbm/intervals_g_morph_enc_zoo.json"
    catalog = predict_catalog_of(copy)
    out = load_bundle(copy.models).predict(copy.raw_images, catalog, stars=copy.stars, model="gi_zoo")
    assert (
        out["ml_pred"].notna().all() and out["ml_lo_68"].isna().all() and out["log_mstar_hi_95"].isna().all()
    )


def test_predict_command_uses_the_encoder_model(
    encoded_run: tuple[PipelineConfig, WorkDir], tmp_path: Path
) -> None:
    from morphomass.cli import main

    _, workdir = encoded_run
    catalog = predict_catalog_of(workdir).drop(columns=["modelMag_g", "modelMag_i"]).head(4)
    catalog_path = tmp_path / "galaxies.csv"
    catalog.to_csv(catalog_path, index=False)
    argv = ["-q", "predict", "--model", str(workdir.models), "--images", str(workdir.raw_images)]
    argv += ["--catalog", str(catalog_path), "--stars", str(workdir.stars)]
    assert main([*argv, "--out", str(tmp_path / "zoo.csv"), "--use", "g_zoo"]) == 0
    out = pd.read_csv(tmp_path / "zoo.csv").set_index("objid")
    stage = pd.read_parquet(workdir.gbm_models / "predictions.parquet").set_index("objid")
    assert (out["model"] == "g_zoo").all()
    np.testing.assert_allclose(out["ml_pred"], stage.loc[out.index, "pred_g_morph_enc_zoo"], rtol=1e-5)
    assert main([*argv, "--out", str(tmp_path / "bad.csv"), "--use", "g_nope"]) == 2  # one line, no table
    assert not (tmp_path / "bad.csv").exists()
