"""The train-gbm stage on a small synthetic work directory: outputs, formats, bundle, resume."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from factories.gbm_tables import make_synthetic_tables
from morphomass.config import PipelineConfig, load_config
from morphomass.errors import InputDataError
from morphomass.gbm import run_train_gbm
from morphomass.gbm.experiments import build_features, make_experiments
from morphomass.gbm.stage import INTERVAL_EXPERIMENTS
from morphomass.gbm.table import join_tables
from morphomass.intervals import FOLD_SELECTION_METHOD, IntervalCalibration
from morphomass.workdir import WorkDir

N_DEAD = 2


def _config(**gbm: object) -> PipelineConfig:
    overrides = {"num_threads": 1, "band_sequence": ["gr"], "top_k": 10, **gbm}
    return load_config("tiny", overrides={"gbm": overrides})


def _write_inputs(root) -> tuple[WorkDir, tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]]:
    tables = make_synthetic_tables(400, rng=np.random.default_rng(11), n_trunk=12, n_dead=N_DEAD)
    wd = WorkDir(root).ensure()
    sample, phot, cnn = tables
    sample.to_parquet(wd.sample)
    phot.iloc[:-3].to_parquet(wd.features / "photometric.parquet")  # 3 galaxies failed preprocessing
    cnn.to_parquet(wd.features / "cnn.parquet")
    return wd, tables


@pytest.fixture(name="trained", scope="module")
def fixture_trained(tmp_path_factory):
    wd, tables = _write_inputs(tmp_path_factory.mktemp("gbm"))
    result = run_train_gbm(_config(), wd, progress=False)
    return wd, tables, result


def _info(wd: WorkDir, name: str) -> dict:
    return json.loads((wd.models / "gbm" / f"{name}.json").read_text())


def test_every_experiment_has_a_text_model_and_predictions(trained) -> None:
    wd, tables, result = trained
    names = [e.name for e in make_experiments(["gr"])]
    preds = pd.read_parquet(wd.models / "gbm" / "predictions.parquet")
    assert len(preds) == 397
    spreads = [f"sigma_dex_{n}" for n in INTERVAL_EXPERIMENTS]
    assert list(preds.columns) == ["objid", "split", *(f"pred_{n}" for n in names), *spreads]
    for name in names:
        text = (wd.models / "gbm" / f"{name}.txt").read_text()
        assert text.startswith("tree\n")
        assert np.all(preds[f"pred_{name}"] > 0)
    assert set(result.outputs) == {"models/gbm"}  # no CNN weights here, so no prediction bundle
    assert (
        result.summary["galaxies"]["train"]
        + result.summary["galaxies"]["val"]
        + result.summary["galaxies"]["test"]
        == 397
    )
    assert not list((wd.models / "gbm").glob(".tmp-*"))


def test_intervals_are_calibrated_on_the_training_split_and_give_every_galaxy_a_spread(trained) -> None:
    wd, _, _ = trained
    preds = pd.read_parquet(wd.gbm_predictions)
    n_train = int((preds["split"] == "train").sum())
    index = json.loads(wd.gbm_intervals.read_text())
    assert sorted(index) == sorted(INTERVAL_EXPERIMENTS)
    for name in INTERVAL_EXPERIMENTS:
        path = wd.gbm_interval_calibration(name)
        calibration = IntervalCalibration.from_json(path.read_text(), source=str(path))
        assert calibration.n_calibration == n_train  # every training galaxy, none of val or test
        assert calibration.feature_names == tuple(_info(wd, name)["features"])
        assert calibration.method.endswith(FOLD_SELECTION_METHOD)  # each fold model chose its own features
        assert {0.68, 0.95} <= set(calibration.levels)
        assert calibration.quantile(0.68) < calibration.quantile(0.95)
        sigma = preds[f"sigma_dex_{name}"].to_numpy()
        assert np.all(np.isfinite(sigma)) and np.all(sigma > 0)
        assert sigma.std() > 0  # adaptive: not one width for every galaxy


def test_saved_model_reproduces_the_predictions(trained) -> None:
    import lightgbm as lgb

    wd, tables, _ = trained
    info = _info(wd, "g_morph")
    booster = lgb.Booster(model_file=str(wd.models / "gbm" / "g_morph.txt"))
    assert booster.feature_name() == info["features"]
    sample, phot, cnn = tables
    table = join_tables(sample, phot.iloc[:-3], cnn)
    exp = next(e for e in make_experiments(["gr"]) if e.name == "g_morph")
    x = build_features(table, exp)[info["features"]].to_numpy(np.float32)
    preds = pd.read_parquet(wd.models / "gbm" / "predictions.parquet")
    expected = np.maximum(booster.predict(x), info["prediction_floor"])
    np.testing.assert_allclose(preds["pred_g_morph"].to_numpy(), expected, rtol=1e-6)


def test_feature_selection_and_training_subsets(trained) -> None:
    wd, _, _ = trained
    g_morph = _info(wd, "g_morph")
    assert g_morph["n_candidate_features"] - g_morph["n_features"] == N_DEAD  # dead columns left out
    assert not any(f"cnn1_trunk_{k:04d}" in g_morph["features"] for k in range(N_DEAD))
    top = _info(wd, "g_morph_top50")
    assert top["n_features"] == 10 and set(top["features"]) <= set(g_morph["features"])
    assert _info(wd, "gi_morph")["n_features"] == 10
    assert _info(wd, "loss_gi_morph_l2")["features"] == _info(wd, "gi_morph")["features"]
    assert _info(wd, "loss_g_morph_rmsle")["objective"] == "rmsle"
    half = _info(wd, "g_morph_half_train")
    assert half["n_train"] == pytest.approx(g_morph["n_train"] / 2, abs=1)
    for name in ("g_morph", "gi_gbm", "bands_gr"):
        info = _info(wd, name)
        assert info["best_iteration"] <= info["rounds"] and info["cpu_seconds"] >= 0


def test_importances_and_no_bundle(trained) -> None:
    wd, _, _ = trained
    imp = json.loads((wd.models / "gbm" / "importance.json").read_text())["importance"]
    assert set(imp) == {"g_morph", "ablation_no_cnn4"}
    values = [r["importance"] for r in imp["g_morph"]]
    assert values == sorted(values, reverse=True)
    assert {r["feature"] for r in imp["g_morph"]} <= set(_info(wd, "g_morph")["features"])
    # The bundle is the next stage's work (morphomass.predict.writer), never train-gbm's.
    assert not (wd.models / "bundle.json").exists()


def test_resume_reloads_unchanged_experiments_and_retrains_changed_ones(tmp_path, caplog) -> None:
    wd, _ = _write_inputs(tmp_path)
    config = _config(band_sequence=[])
    gbm_dir = wd.models / "gbm"
    gbm_dir.mkdir(parents=True)
    (gbm_dir / "bands_ugr.txt").write_text("tree\n")  # from an earlier configuration
    (gbm_dir / "bands_ugr.json").write_text("{}")
    run_train_gbm(config, wd, progress=False)
    assert not (gbm_dir / "bands_ugr.txt").exists() and not (gbm_dir / "bands_ugr.json").exists()
    before = {p.name: p.stat().st_mtime_ns for p in gbm_dir.glob("*.txt")}
    preds = pd.read_parquet(gbm_dir / "predictions.parquet")
    with caplog.at_level("INFO", logger="morphomass.gbm.stage"):
        run_train_gbm(config, wd, progress=False)
    assert {p.name: p.stat().st_mtime_ns for p in gbm_dir.glob("*.txt")} == before
    assert "g_morph: unchanged, reloading" in caplog.text
    assert "g_morph: interval calibration unchanged, reloading" in caplog.text
    pd.testing.assert_frame_equal(pd.read_parquet(gbm_dir / "predictions.parquet"), preds)
    run_train_gbm(_config(band_sequence=[], top_k=5), wd, progress=False)
    after = {p.name: p.stat().st_mtime_ns for p in gbm_dir.glob("*.txt")}
    assert after["g_morph_top50.txt"] != before["g_morph_top50.txt"]
    assert after["g_morph.txt"] == before["g_morph.txt"]  # top_k does not change the full model
    with caplog.at_level("INFO", logger="morphomass.gbm.stage"):
        run_train_gbm(_config(band_sequence=[], top_k=5, prefilter_features=20), wd, progress=False)
    assert re.search(r"g_morph: 20 of \d+ candidate features selected", caplog.text)  # the screening model
    assert _info(wd, "g_morph")["n_features"] == 20
    assert _info(wd, "reference_lg_z")["n_features"] == 2  # narrow models are not screened
    assert _info(wd, "g_morph_top50")["n_features"] == 5


def test_missing_input_is_reported(tmp_path) -> None:
    wd, _ = _write_inputs(tmp_path)
    (wd.features / "cnn.parquet").unlink()
    with pytest.raises(InputDataError, match="cnn.parquet"):
        run_train_gbm(_config(), wd, progress=False)


def test_cross_validated_parameters_are_used_and_reused(tmp_path, caplog) -> None:
    wd, _ = _write_inputs(tmp_path)
    config = _config(band_sequence=[], cv_search=True, cv_folds=2, cv_grid={"num_leaves": [3, 6]})
    run_train_gbm(config, wd, progress=False)
    cv = json.loads((wd.models / "gbm" / "cv_search.json").read_text())
    assert {g: e["experiment"] for g, e in cv["groups"].items()} == {
        "morph": "g_morph",
        "colour_morph": "gi_morph",
        "global": "gi_gbm",
    }
    for entry in cv["groups"].values():
        assert [row["num_leaves"] for row in entry["grid"]] == [3, 6]
        assert entry["best"] == {"num_leaves": min(entry["grid"], key=lambda r: r["cv_loss"])["num_leaves"]}
    for name, group in (
        ("g_morph", "morph"),
        ("ablation_no_cnn", "morph"),
        ("gi_morph", "colour_morph"),
        ("loss_gi_morph_l2", "colour_morph"),
        ("reference_lg_z", "global"),
    ):
        assert _info(wd, name)["cv_params"] == cv["groups"][group]["best"]
    leaves = cv["groups"]["morph"]["best"]["num_leaves"]
    assert f"[num_leaves: {leaves}]" in (wd.models / "gbm" / "g_morph.txt").read_text()
    with caplog.at_level("INFO", logger="morphomass.gbm.stage"):
        run_train_gbm(config, wd, progress=False)
    assert "reusing the cross-validated parameters" in caplog.text
