"""The train-cnn and extract stages on a synthetic tiny work directory; the paper's 2196 features; errors.

One tiny-preset ``run_train_cnn`` (all four networks, 1 epoch, 60 galaxies) is shared by the module.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from morphomass.cnn import run_extract, run_train_cnn
from morphomass.cnn.architectures import build_gz2_net, make_ml_net
from morphomass.cnn.columns import cnn4_columns, probability_columns, trunk_columns
from morphomass.cnn.data import ImageGroup
from morphomass.cnn.weights import load_network, save_network
from morphomass.config import PipelineConfig, load_config
from morphomass.errors import ConfigError, InputDataError, WorkdirError
from morphomass.pipeline import execute_stage
from morphomass.workdir import WorkDir


def _reject_nan(token: str) -> None:
    msg = f"{token} is not JSON"
    raise ValueError(msg)


def _tiny() -> PipelineConfig:
    config = load_config("tiny")
    config.cnn.accelerator = "cpu"
    return config


@pytest.fixture(name="trained", scope="module")
def fixture_trained(
    tmp_path_factory: pytest.TempPathFactory,
    make_cnn_inputs: Callable[..., pd.DataFrame],
) -> tuple[WorkDir, pd.DataFrame, dict]:
    root = tmp_path_factory.mktemp("cnn_tiny")
    sample = make_cnn_inputs(root, n=60, sizes=(32, 69))
    workdir = WorkDir(root).ensure()
    result = run_train_cnn(_tiny(), workdir, progress=False)
    return workdir, sample, result.summary


def test_train_writes_weights_cards_logs_and_figure(trained: tuple[WorkDir, pd.DataFrame, dict]) -> None:
    workdir, sample, summary = trained
    models = workdir.models / "cnn"
    assert set(summary["nets"]) == {"cnn1", "cnn2", "cnn3", "cnn4"}
    assert all(entry["status"] == "trained" for entry in summary["nets"].values())
    for name in ("cnn1", "cnn2", "cnn3", "cnn4"):
        card = json.loads((models / f"{name}.json").read_text(), parse_constant=_reject_nan)  # strict JSON
        assert card["name"] == name and len(card["history"]) == 2  # epoch 0 and the one tiny epoch
        log = pd.read_csv(models / f"{name}.csv")
        assert list(log.columns) == ["epoch", "train_loss", "val_loss", "lr", "images", "seconds"]
        assert log["epoch"].tolist() == [0, 1]
        assert log["train_loss"].isna().tolist() == [True, False]  # no training before epoch 1
        np.testing.assert_allclose(log["val_loss"], [row["val_loss"] for row in card["history"]])
        weights = load_file(str(models / f"{name}.safetensors"))
        n_saved = sum(
            v.numel()
            for k, v in weights.items()
            if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))
        )
        assert n_saved == card["n_parameters"]
    cnn4 = json.loads((models / "cnn4.json").read_text())
    assert (cnn4["kind"], cnn4["base"]) == ("ml", "cnn1")
    assert (cnn4["backbone"], cnn4["input_size"]) == ("resnet18", 32)
    n_gz2_train = int(((sample.split == "train") & sample.has_gz2).sum())
    assert json.loads((models / "cnn3.json").read_text())["n_train"] == n_gz2_train
    assert cnn4["n_train"] == int((sample.split == "train").sum())  # CNN4 uses galaxies without GZ2 too
    png = workdir.figures / "cnn_training_curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_rerun_keeps_trained_networks_and_retrains_missing_ones(
    trained: tuple[WorkDir, pd.DataFrame, dict],
) -> None:
    workdir, _, _ = trained
    models = workdir.models / "cnn"
    before = (models / "cnn1.safetensors").read_bytes()
    for suffix in ("json", "safetensors", "csv"):
        (models / f"cnn3.{suffix}").unlink()
    summary = run_train_cnn(_tiny(), workdir, progress=False).summary["nets"]
    assert {name: entry["status"] for name, entry in summary.items()} == {
        "cnn1": "kept",
        "cnn2": "kept",
        "cnn3": "trained",
        "cnn4": "kept",
    }
    assert (models / "cnn1.safetensors").read_bytes() == before
    assert (models / "cnn3.safetensors").exists()


def test_extract_features_for_every_galaxy(trained: tuple[WorkDir, pd.DataFrame, dict]) -> None:
    workdir, sample, _ = trained
    summary = run_extract(_tiny(), workdir, progress=False).summary
    table = pd.read_parquet(workdir.features / "cnn.parquet")
    expected = [
        *probability_columns("cnn1"),
        *trunk_columns("cnn1", 512),
        *probability_columns("cnn2"),
        *probability_columns("cnn3"),
        *cnn4_columns(),
    ]
    assert summary["n_features_before_drop"] == len(expected) == 37 * 3 + 512 + 37
    assert [c for c in expected if c in table.columns] == list(table.columns[1:])  # kept in this order
    assert summary["n_features"] == table.shape[1] - 1 == len(expected) - summary["n_dropped"]
    np.testing.assert_array_equal(table["objid"], sample["objid"])  # every galaxy, in the sample's order
    assert all(table[c].dtype == np.float32 for c in table.columns[1:])
    train = table[sample["split"].to_numpy() == "train"]
    assert not (train.iloc[:, 1:] == 0).all().any()  # no column left that is zero for every training galaxy

    # the features are the networks' outputs for the right images
    net, _ = load_network(workdir.models / "cnn", "cnn3")
    group = ImageGroup(workdir.images_zarr, 69)
    some = sample["objid"].to_numpy()[[4, 11]]
    with torch.no_grad():
        p = net(torch.from_numpy(group.read(some).astype(np.float32))[:, None]).numpy()
    kept = [c for c in probability_columns("cnn3") if c in table.columns]
    rows = table.set_index("objid").loc[some]
    columns = [probability_columns("cnn3").index(c) for c in kept]
    np.testing.assert_allclose(rows[kept].to_numpy(), p[:, columns], rtol=1e-5, atol=1e-6)


def test_extract_is_deterministic(trained: tuple[WorkDir, pd.DataFrame, dict]) -> None:
    workdir, _, _ = trained
    path = workdir.features / "cnn.parquet"
    run_extract(_tiny(), workdir, progress=False)
    first = pd.read_parquet(path)
    run_extract(_tiny(), workdir, progress=False)
    pd.testing.assert_frame_equal(first, pd.read_parquet(path), check_exact=True)


def test_stages_run_through_the_pipeline(trained: tuple[WorkDir, pd.DataFrame, dict]) -> None:
    workdir, _, _ = trained
    first = execute_stage("train-cnn", _tiny(), workdir, progress=False)
    assert not first.skipped and "results/figures/cnn_training_curves.png" in first.outputs
    assert execute_stage("train-cnn", _tiny(), workdir, progress=False).skipped
    assert not execute_stage("extract", _tiny(), workdir, progress=False).skipped


def test_extract_refuses_networks_that_do_not_match_the_configuration(
    trained: tuple[WorkDir, pd.DataFrame, dict],
) -> None:
    workdir, _, _ = trained
    config = _tiny()
    config.cnn.nets["cnn1"].input_size = 48
    with pytest.raises(
        WorkdirError,
        match=r"cnn1.json is a resnet18 at 32 px but the configuration asks for "
        r"resnet18 at 48 px; run 'morphomass train-cnn' again",
    ):
        run_extract(config, workdir, progress=False)
    config = _tiny()
    config.cnn.nets["cnn5"] = config.cnn.nets["cnn3"]
    with pytest.raises(WorkdirError, match=r"cnn5.safetensors \(and its .json card\) not found"):
        run_extract(config, workdir, progress=False)


@pytest.mark.slow
def test_paper_configuration_gives_2196_features(
    tmp_path: Path,
    make_cnn_inputs: Callable[..., pd.DataFrame],
) -> None:
    """Untrained paper networks saved as train-cnn saves them: 37 x 3 + 2048 + 37 columns before the drop."""
    sample = make_cnn_inputs(tmp_path, n=5, sizes=(197, 128, 69))
    workdir = WorkDir(tmp_path).ensure()
    config = load_config("paper")
    config.cnn.accelerator = "cpu"
    config.cnn.inference_batch_size = 4
    torch.manual_seed(0)
    for name, net_config in config.cnn.nets.items():
        net = build_gz2_net(net_config.backbone)
        card = {
            "name": name,
            "kind": "gz2",
            "backbone": net_config.backbone,
            "input_size": net_config.input_size,
            "dropout": config.cnn.dropout,
            "train_key": "untrained",
        }
        save_network(workdir.models / "cnn", name, net, card)
        if name == "cnn1":
            cnn4_card = {**card, "name": "cnn4", "kind": "ml"}
            save_network(workdir.models / "cnn", "cnn4", make_ml_net(net), cnn4_card)
    summary = run_extract(config, workdir, progress=False).summary
    assert summary["n_features_before_drop"] == 2196
    table = pd.read_parquet(workdir.features / "cnn.parquet")
    assert table.shape == (len(sample), 1 + 2196 - summary["n_dropped"])
    expected = [
        *probability_columns("cnn1"),
        *trunk_columns("cnn1", 2048),
        *probability_columns("cnn2"),
        *probability_columns("cnn3"),
        *cnn4_columns(),
    ]
    assert [c for c in expected if c in table.columns] == list(table.columns[1:])


def test_galaxies_without_images_are_skipped_then_get_nan_features(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    make_cnn_inputs: Callable[..., pd.DataFrame],
) -> None:
    sample = make_cnn_inputs(tmp_path, n=40, sizes=(69,), failed=3)
    sample.loc[:2, ["split", "has_gz2"]] = ["train", True]
    sample.to_parquet(tmp_path / "sample.parquet", index=False)
    workdir = WorkDir(tmp_path).ensure()
    config = _tiny()
    config.cnn.nets, config.cnn.train_cnn4 = {"cnn3": config.cnn.nets["cnn3"]}, False
    with caplog.at_level(logging.WARNING, logger="morphomass.cnn"):
        summary = run_train_cnn(config, workdir, progress=False).summary
        run_extract(config, workdir, progress=False)
    n_train = int(((sample.split == "train") & sample.has_gz2).sum())
    assert summary["nets"]["cnn3"]["n_train"] == n_train - 3
    assert f"cnn3: 3 of {n_train} train galaxies have no image in images.zarr/69" in caplog.text
    assert "3 of 40 galaxies of the sample have no image" in caplog.text
    table = pd.read_parquet(workdir.features / "cnn.parquet")
    assert len(table) == 40
    assert table.iloc[:3, 1:].isna().all().all() and table.iloc[3:, 1:].notna().all().all()


def test_no_gz2_training_galaxy(tmp_path: Path, make_cnn_inputs: Callable[..., pd.DataFrame]) -> None:
    sample = make_cnn_inputs(tmp_path, n=12, sizes=(69,))
    sample["has_gz2"] = False
    sample.to_parquet(tmp_path / "sample.parquet", index=False)
    config = _tiny()
    config.cnn.nets = {"cnn3": config.cnn.nets["cnn3"]}
    with pytest.raises(InputDataError, match="no train galaxy with a GZ2 match .* network cnn3 cannot be"):
        run_train_cnn(config, WorkDir(tmp_path).ensure(), progress=False)


def test_cnn4_needs_cnn1(tmp_path: Path, make_cnn_inputs: Callable[..., pd.DataFrame]) -> None:
    make_cnn_inputs(tmp_path, n=12, sizes=(69,))
    config = _tiny()
    config.cnn.nets = {}
    with pytest.raises(
        WorkdirError,
        match=r"CNN4 starts from cnn1's trained weights, but .*cnn1.safetensors "
        r"does not exist",
    ):
        run_train_cnn(config, WorkDir(tmp_path).ensure(), progress=False)


def test_configuration_errors(tmp_path: Path, make_cnn_inputs: Callable[..., pd.DataFrame]) -> None:
    make_cnn_inputs(tmp_path, n=12, sizes=(69,))
    workdir = WorkDir(tmp_path).ensure()
    config = _tiny()
    config.cnn.nets["cnn1"].pretrained = str(tmp_path / "missing.safetensors")
    with pytest.raises(ConfigError, match=r"cnn.nets.cnn1.pretrained = .*missing.safetensors.: no such file"):
        run_train_cnn(config, workdir, progress=False)
    config = _tiny()
    config.cnn.nets, config.cnn.train_cnn4 = {}, False
    with pytest.raises(ConfigError, match="there is no network to train"):
        run_train_cnn(config, workdir, progress=False)
    with pytest.raises(ConfigError, match="there is no network to extract features from"):
        run_extract(config, workdir, progress=False)


def test_broken_card_and_weights(trained: tuple[WorkDir, pd.DataFrame, dict], tmp_path: Path) -> None:
    workdir, _, _ = trained
    models = tmp_path / "models"
    shutil.copytree(workdir.models / "cnn", models)
    (models / "cnn3.json").write_text("{not json")
    with pytest.raises(InputDataError, match=r"cnn3.json is not valid JSON"):
        load_network(models, "cnn3")
    (models / "cnn3.json").write_text(json.dumps({"name": "cnn3"}))
    with pytest.raises(InputDataError, match=r"cnn3.json: missing key\(s\) \['kind', 'backbone'"):
        load_network(models, "cnn3")
    card = json.loads((workdir.models / "cnn" / "cnn2.json").read_text())
    (models / "cnn3.json").write_text(json.dumps(card))  # an Xception card for the custom network's weights
    with pytest.raises(InputDataError, match="weights do not fit the architecture of its card"):
        load_network(models, "cnn3")
