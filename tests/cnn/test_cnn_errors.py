"""The remaining error paths of the CNN stage: each raise names what was expected and what came."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import zarr

from morphomass.cnn import normalisation, run_extract, run_train_cnn
from morphomass.cnn.architectures import build_gz2_net, make_ml_net
from morphomass.cnn.extract import (
    drop_dead_columns,
    extract_feature_table,
    extract_features,
    resolve_device,
)
from morphomass.cnn.weights import build_from_card, save_network
from morphomass.config import PipelineConfig, load_config
from morphomass.errors import ConfigError, InputDataError
from morphomass.gz2 import QUESTIONS
from morphomass.workdir import WorkDir


def _cnn3_only() -> PipelineConfig:
    config = load_config("tiny")
    config.cnn.accelerator = "cpu"
    config.cnn.nets, config.cnn.train_cnn4 = {"cnn3": config.cnn.nets["cnn3"]}, False
    return config


def _card(name: str, kind: str = "gz2") -> dict:
    return {
        "name": name,
        "kind": kind,
        "backbone": "dieleman",
        "input_size": 69,
        "dropout": 0.25,
        "train_key": "untrained",
    }


def test_tree_plan_needs_contiguous_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(normalisation, "QUESTIONS", (QUESTIONS[1], QUESTIONS[0], *QUESTIONS[2:]))
    with pytest.raises(ValueError, match=r"answers of GZ2 question t02 are not contiguous .*: \[3, 4\]"):
        normalisation._tree_plan()


def test_tree_plan_rejects_a_gate_after_its_question(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(normalisation, "QUESTIONS", QUESTIONS[1:2])  # t02 alone, gated by a02
    monkeypatch.setattr(normalisation, "answer_index", {"a04": 0, "a05": 1, "a02": 5}.__getitem__)
    with pytest.raises(ValueError, match="t02 is gated by a02, which comes after it in tree order"):
        normalisation._tree_plan()


def test_resolve_device() -> None:
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError, match="cnn.accelerator must be 'auto', 'cpu' or 'gpu', got 'tpu'"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="cnn.accelerator = 'gpu' but torch sees no CUDA device"):
            resolve_device("gpu")


def test_drop_dead_columns() -> None:
    table = pd.DataFrame({"objid": [1, 2, 3], "a": [0.0, 0.0, 5.0], "b": [0.0, 1.0, 0.0], "c": [0.0] * 3})
    kept, dropped = drop_dead_columns(table, np.array([True, False, False]))
    assert dropped == ["a", "b", "c"] and list(kept.columns) == ["objid"]
    kept, dropped = drop_dead_columns(table, np.array([True, True, False]))
    assert dropped == ["a", "c"] and list(kept.columns) == ["objid", "b"]
    with pytest.raises(ValueError, match=r"train_mask must have shape \(3,\), got \(2,\)"):
        drop_dead_columns(table, np.array([True, False]))


def test_extract_features_of_no_image() -> None:
    out = extract_features(build_gz2_net("dieleman"), np.zeros((0, 69, 69), np.float32), batch_size=4)
    assert out["p"].shape == (0, 37) and out["trunk"].shape == (0, 128)


def test_extract_feature_table_needs_every_size() -> None:
    networks = {"cnn3": (build_gz2_net("dieleman"), _card("cnn3"))}
    with pytest.raises(InputDataError, match=r"network cnn3 needs 69-pixel images; got sizes \[32\]"):
        extract_feature_table(networks, {32: np.zeros((2, 32, 32), np.float32)})


def test_image_groups_must_hold_the_same_galaxies(
    tmp_path: Path, make_cnn_inputs: Callable[..., pd.DataFrame]
) -> None:
    make_cnn_inputs(tmp_path, n=12, sizes=(32, 69))
    store = zarr.open_group(str(tmp_path / "images.zarr"), mode="r+")
    store["32"]["objid"][:] = store["32"]["objid"][:][::-1]
    workdir = WorkDir(tmp_path).ensure()
    config = load_config("tiny")
    config.cnn.nets = {"cnn1": config.cnn.nets["cnn1"], "cnn3": config.cnn.nets["cnn3"]}
    config.cnn.train_cnn4 = False
    for name in ("cnn1", "cnn3"):
        card = {
            **_card(name),
            "backbone": config.cnn.nets[name].backbone,
            "input_size": config.cnn.nets[name].input_size,
        }
        save_network(workdir.models / "cnn", name, build_gz2_net(card["backbone"]), card)
    with pytest.raises(InputDataError, match=r"groups 32 and 69 hold different galaxies"):
        run_extract(config, workdir, progress=False)


def test_card_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"card of cnn3 lacks \['train_key'\]"):
        card = {k: v for k, v in _card("cnn3").items() if k != "train_key"}
        save_network(tmp_path, "cnn3", build_gz2_net("dieleman"), card)
    with pytest.raises(InputDataError, match="card of cnn3: kind must be 'gz2' or 'ml', got 'sfr'"):
        build_from_card(_card("cnn3", kind="sfr"))


def test_no_training_galaxy_with_an_image(
    tmp_path: Path,
    make_cnn_inputs: Callable[..., pd.DataFrame],
) -> None:
    sample = make_cnn_inputs(tmp_path, n=20, sizes=(69,), failed=20 - 1)
    sample.loc[19, "split"] = "test"  # the only galaxy with an image is a test galaxy
    sample.to_parquet(tmp_path / "sample.parquet", index=False)
    workdir = WorkDir(tmp_path).ensure()
    with pytest.raises(
        InputDataError,
        match=r"no train galaxy with both an image in .*images.zarr/69 and a "
        r"usable target for cnn3",
    ):
        run_train_cnn(_cnn3_only(), workdir, progress=False)
    save_network(workdir.models / "cnn", "cnn3", build_gz2_net("dieleman"), _card("cnn3"))
    with pytest.raises(InputDataError, match="no training galaxy with images; dead feature columns"):
        run_extract(_cnn3_only(), workdir, progress=False)


def test_cnn4_needs_ml_targets_and_a_gz2_base(
    tmp_path: Path,
    make_cnn_inputs: Callable[..., pd.DataFrame],
) -> None:
    sample = make_cnn_inputs(tmp_path, n=20, sizes=(69,))
    workdir = WorkDir(tmp_path).ensure()
    config = _cnn3_only()
    config.cnn.nets, config.cnn.train_cnn4 = {}, True
    save_network(workdir.models / "cnn", "cnn1", make_ml_net(build_gz2_net("dieleman")), _card("cnn1", "ml"))
    with pytest.raises(InputDataError, match="cnn1.json: CNN4 needs a GZ2 network as base, got kind 'ml'"):
        run_train_cnn(config, workdir, progress=False)
    save_network(workdir.models / "cnn", "cnn1", build_gz2_net("dieleman"), _card("cnn1"))
    sample["target"] = np.nan
    sample.to_parquet(tmp_path / "sample.parquet", index=False)
    with pytest.raises(
        InputDataError, match="no train galaxy with a finite target and a positive target_err"
    ):
        run_train_cnn(config, workdir, progress=False)
