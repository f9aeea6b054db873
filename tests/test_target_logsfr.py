"""Any target: a tiny run with ``catalog.target = "logsfr"`` end to end, through the bundle (slow: ~25 s).

The pipeline runs in its own process, as a user would run it; the checks follow the target through the
sample, the GBMs and their intervals, metrics.json, the report, the bundle and a prediction.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from morphomass.predict import load_bundle
from morphomass.rawformats import read_gswlc_dir
from morphomass.targets import read_target
from morphomass.workdir import WorkDir

pytestmark = pytest.mark.slow

_CLI = "import sys; from morphomass.cli import main; sys.exit(main(sys.argv[1:]))"


@pytest.fixture(name="sfr_run", scope="module")
def fixture_sfr_run(tmp_path_factory: pytest.TempPathFactory) -> WorkDir:
    root = tmp_path_factory.mktemp("logsfr")
    config = root / "logsfr.toml"
    config.write_text('[catalog]\ntarget = "logsfr"\n', encoding="utf-8")
    workdir = WorkDir(root / "wd")
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            _CLI,
            "run",
            "--preset",
            "tiny",
            "--config",
            str(config),
            "--workdir",
            str(workdir.root),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return workdir


def test_the_sample_and_the_models_learn_the_sed_sfr(sfr_run: WorkDir) -> None:
    target = read_target(sfr_run.sample)
    assert (target.name, target.kind, target.prediction) == ("logsfr", "difference", "log_sfr")
    sample = pd.read_parquet(sfr_run.sample)
    gswlc = read_gswlc_dir(sfr_run.gswlc_dir)[0].set_index("objid").loc[sample["objid"]]
    np.testing.assert_allclose(sample["target"], gswlc["log_sfr_sed"])
    np.testing.assert_allclose(sample["target_err"], np.maximum(gswlc["log_sfr_sed_err"], 0.0217))
    info = json.loads((sfr_run.gbm_models / "g_morph.json").read_text(encoding="utf-8"))
    assert info["prediction_floor"] is None  # a target in dex is not floored
    predictions = pd.read_parquet(sfr_run.gbm_predictions)
    assert (predictions["pred_g_morph"] < 0).any()  # log SFR of quiescent galaxies: not clipped at a floor


def test_metrics_and_report_name_the_target(sfr_run: WorkDir) -> None:
    metrics = json.loads(sfr_run.metrics.read_text(encoding="utf-8"))
    assert metrics["target"]["name"] == "logsfr" and metrics["target"]["kind"] == "difference"
    assert metrics["target"]["error"] == "log_sfr_sed_err"
    experiments = metrics["experiments"]
    assert not [name for name in experiments if "rmsle" in name]  # no log of a log
    assert "gi_zibetti09" not in experiments  # an M/L relation
    sample = pd.read_parquet(sfr_run.sample).set_index("objid")
    stage = pd.read_parquet(sfr_run.gbm_predictions).set_index("objid")
    test = stage[stage["split"] == "test"]
    diff = test["pred_g_morph"] - sample.loc[test.index, "target"]
    assert experiments["g_morph"]["rmsle"] == pytest.approx(float(np.sqrt(np.mean(diff**2))))  # pred - true
    report = (sfr_run.results / "report.html").read_text(encoding="utf-8")
    assert "Target: <b>logsfr</b>" in report and "log10 star-formation rate" in report
    assert "Intervals on logsfr" in report
    assert (sfr_run.results / "figures" / "fig4_pred_vs_true.png").exists()


def test_the_bundle_predicts_log_sfr_with_intervals(sfr_run: WorkDir) -> None:
    bundle = load_bundle(sfr_run.models)
    assert bundle.target.name == "logsfr"
    sample = pd.read_parquet(sfr_run.sample)
    phot = pd.read_csv(sfr_run.photometry).rename(columns={"objID": "objid"})
    catalog = sample[["objid", "ra", "dec", "z", "d25_arcmin"]].merge(
        phot[["objid", "modelMag_g", "modelMag_i"]], on="objid"
    )
    out = bundle.predict(sfr_run.raw_images, catalog, stars=sfr_run.stars).set_index("objid")
    assert "ml_pred" not in out.columns and "log_mstar_pred" not in out.columns
    for column in ("log_sfr_pred", "log_sfr_lo_68", "log_sfr_hi_68", "log_sfr_lo_95", "log_sfr_hi_95"):
        assert column in out.columns
    stage = pd.read_parquet(sfr_run.gbm_predictions).set_index("objid")
    np.testing.assert_allclose(
        out.loc[stage.index, "log_sfr_pred"], stage["pred_gi_morph"], rtol=1e-5, atol=1e-6
    )
    ok = out["log_sfr_pred"].notna()
    assert ok.all()
    assert (out["log_sfr_lo_95"] <= out["log_sfr_lo_68"]).all() and (
        out["log_sfr_lo_68"] < out["log_sfr_pred"]
    ).all()
    assert (out["log_sfr_pred"] < out["log_sfr_hi_68"]).all() and (
        out["log_sfr_hi_68"] <= out["log_sfr_hi_95"]
    ).all()
    # additive intervals: the half-width is the stage's spread times the calibrated quantile, in dex
    half_width = (out["log_sfr_hi_68"] - out["log_sfr_lo_68"]) / 2
    ratio = half_width.loc[stage.index] / stage["sigma_dex_gi_morph"]
    assert ratio.std() / ratio.mean() < 1e-4


def test_predict_cli_writes_the_targets_columns(sfr_run: WorkDir, tmp_path: Path) -> None:
    sample = pd.read_parquet(sfr_run.sample).head(5)
    catalog_path, out_path = tmp_path / "galaxies.csv", tmp_path / "predictions.csv"
    sample[["objid", "ra", "dec", "z", "d25_arcmin"]].to_csv(catalog_path, index=False)
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            _CLI,
            "-q",
            "predict",
            "--model",
            str(sfr_run.models),
            "--images",
            str(sfr_run.raw_images),
            "--catalog",
            str(catalog_path),
            "--out",
            str(out_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    header = out_path.read_text(encoding="utf-8").splitlines()[0].split(",")
    assert header[:2] == ["objid", "log_sfr_pred"]
    assert "log_sfr_hi_95" in header and not any(name.startswith("ml_") for name in header)
