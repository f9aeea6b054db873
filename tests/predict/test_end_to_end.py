"""The whole pipeline with the tiny preset: run, predict new galaxies, kill-and-resume (slow: ~2 CPU-minutes).

Every ``morphomass`` command runs in its own process, as a user would run it; the interrupted runs are killed
with SIGKILL (no clean-up of any kind) from inside the preprocessing and inside the training of the second
network.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from morphomass.pipeline import RUN_ORDER
from morphomass.predict import load_bundle
from morphomass.workdir import LOCK_INFO_NAME, WorkDir, load_manifest

pytestmark = pytest.mark.slow

#: ``python -c`` program: ``morphomass run --preset tiny`` that SIGKILLs itself at a chosen point (argv:
#: workdir, where). ``preprocess``: once the first task of galaxies is committed; ``train-cnn``: at the first
#: forward pass of the second network (the first one is saved by then).
_RUN_AND_DIE = r"""
import os, signal, sys
import morphomass.cnn.stage as cnn_stage
import morphomass.preprocess.stage as preprocess_stage
from morphomass.cli import main

workdir, where = sys.argv[1], sys.argv[2]
calls = []
if where == "preprocess":
    real_task = preprocess_stage.process_task
    def process_task(task):
        result = real_task(task)
        os.kill(os.getpid(), signal.SIGKILL)
    preprocess_stage.process_task = process_task
elif where == "train-cnn":
    real_fit = cnn_stage.fit_network
    def fit_network(net, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            net.register_forward_pre_hook(lambda module, inputs: os.kill(os.getpid(), signal.SIGKILL))
        return real_fit(net, *args, **kwargs)
    cnn_stage.fit_network = fit_network
sys.exit(main(["run", "--preset", "tiny", "--workdir", workdir]))
"""
_CLI = "import sys; from morphomass.cli import main; sys.exit(main(sys.argv[1:]))"


def _morphomass(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _CLI, *args], capture_output=True, text=True, timeout=600, check=False
    )


def _run_and_die(workdir: Path, where: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _RUN_AND_DIE, str(workdir), where],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def _finished(workdir: Path) -> set[str]:
    return {name for name, rec in load_manifest(WorkDir(workdir))["stages"].items() if "finished_utc" in rec}


@pytest.fixture(name="reference", scope="module")
def fixture_reference(tmp_path_factory: pytest.TempPathFactory) -> WorkDir:
    """Run ``morphomass run --preset tiny`` uninterrupted: its work directory, bundle included."""
    workdir = WorkDir(tmp_path_factory.mktemp("e2e") / "reference")
    done = _morphomass("run", "--preset", "tiny", "--workdir", str(workdir.root))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "bundle " in done.stdout
    assert f"report: {workdir.results / 'report.html'}" in done.stdout
    assert "test L1~" in done.stdout
    assert workdir.bundle_manifest.exists()  # the pipeline's bundle stage wrote it
    return workdir


def _l1_tilde(pred: np.ndarray, true: np.ndarray, err: np.ndarray) -> float:
    return float(np.mean(np.abs(pred - true) / err))


def test_bundle_reproduces_the_pipelines_predictions(reference: WorkDir, tmp_path: Path) -> None:
    """From raw FITS through the bundle: the M/L the train-gbm stage predicted for the same galaxies."""
    sample = pd.read_parquet(reference.sample)
    phot = pd.read_csv(reference.photometry).rename(columns={"objID": "objid"})
    catalog = sample[["objid", "ra", "dec", "z", "d25_arcmin"]].merge(
        phot[["objid", "modelMag_g", "modelMag_i"]], on="objid"
    )
    bundle = load_bundle(reference.models)
    stage = pd.read_parquet(reference.models / "gbm" / "predictions.parquet").set_index("objid")
    with_i = bundle.predict(reference.raw_images, catalog, stars=reference.stars).set_index("objid")
    g_only = bundle.predict(
        reference.raw_images, catalog.drop(columns=["modelMag_g", "modelMag_i"]), stars=reference.stars
    ).set_index("objid")
    assert (with_i["model"] == "gi").all()
    assert (g_only["model"] == "g").all()
    np.testing.assert_allclose(with_i.loc[stage.index, "ml_pred"], stage["pred_gi_morph"], rtol=1e-5)
    np.testing.assert_allclose(g_only.loc[stage.index, "ml_pred"], stage["pred_g_morph"], rtol=1e-5)


def test_predictions_for_new_galaxies(reference: WorkDir, tmp_path: Path) -> None:
    """Freshly rendered mock galaxies (another seed): predicted like the evaluate stage's test galaxies."""
    fresh = tmp_path / "fresh"
    for argv in (["mock", "--seed", "7", "--n-galaxies", "40"], ["catalog"]):
        done = _morphomass("-q", *argv, "--preset", "tiny", "--workdir", str(fresh))
        assert done.returncode == 0, done.stderr[-3000:]
    fresh_wd = WorkDir(fresh)
    truth = pd.read_parquet(fresh_wd.sample)
    assert not set(truth["objid"]) & set(pd.read_parquet(reference.sample)["objid"])
    phot = pd.read_csv(fresh_wd.photometry).rename(columns={"objID": "objid"})
    catalog = truth[["objid", "ra", "dec", "z", "d25_arcmin"]].merge(
        phot[["objid", "modelMag_g", "modelMag_i"]], on="objid"
    )
    catalog_path, out_path = tmp_path / "new_galaxies.csv", tmp_path / "predictions.parquet"
    catalog.to_csv(catalog_path, index=False)
    done = _morphomass(
        "-q",
        "predict",
        "--model",
        str(reference.models),
        "--images",
        str(fresh_wd.raw_images),
        "--catalog",
        str(catalog_path),
        "--stars",
        str(fresh_wd.stars),
        "--out",
        str(out_path),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = pd.read_parquet(out_path).merge(truth[["objid", "ml", "ml_err"]], on="objid")
    assert len(out) == len(catalog)
    assert out["ml_pred"].notna().all() and (out["model"] == "gi").all()

    metrics = json.loads((reference.results / "metrics.json").read_text())["experiments"]
    l1_new = _l1_tilde(out["ml_pred"].to_numpy(), out["ml"].to_numpy(), out["ml_err"].to_numpy())
    constant = float(np.median(out["ml"]))
    l1_constant = _l1_tilde(np.full(len(out), constant), out["ml"].to_numpy(), out["ml_err"].to_numpy())
    # as good on new galaxies as on the test split, within the noise of a few dozen galaxies, and far from
    # what a network gone wrong would give (a constant at the sample median is a generous bar on the mock)
    assert l1_new < 2.0 * metrics["gi_morph"]["l1"]
    assert l1_new < 1.5 * l1_constant
    stage = pd.read_parquet(reference.models / "gbm" / "predictions.parquet")
    test_median = float(stage.loc[stage["split"] != "train", "pred_gi_morph"].median())
    assert 0.5 < float(out["ml_pred"].median()) / test_median < 2.0


def test_kill_and_resume_gives_the_same_results(reference: WorkDir, tmp_path: Path) -> None:
    workdir = tmp_path / "resumed"
    killed = _run_and_die(workdir, "preprocess")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert _finished(workdir) == {"mock", "catalog"}
    assert list((workdir / ".preprocess-partial" / "parts").glob("*.parquet"))
    assert not (workdir / "images.zarr").exists()

    killed = _run_and_die(workdir, "train-cnn")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert "resuming" in killed.stderr
    assert _finished(workdir) == {"mock", "catalog", "preprocess"}
    assert (workdir / "models" / "cnn" / "cnn1.safetensors").exists()
    assert not (workdir / "models" / "cnn" / "cnn2.json").exists()

    done = _morphomass("-q", "run", "--preset", "tiny", "--workdir", str(workdir))
    assert done.returncode == 0, done.stderr[-3000:]
    assert _finished(workdir) == set(RUN_ORDER)
    resumed = json.loads((workdir / "results" / "metrics.json").read_text())
    assert resumed == json.loads((reference.results / "metrics.json").read_text())
    pd.testing.assert_frame_equal(
        pd.read_parquet(workdir / "models" / "gbm" / "predictions.parquet"),
        pd.read_parquet(reference.models / "gbm" / "predictions.parquet"),
    )


def test_two_runs_on_one_work_directory_with_the_tiny_preset(reference: WorkDir, tmp_path: Path) -> None:
    """A second run is refused naming the first; one with --wait runs after it; the outputs are one run's."""
    shared = tmp_path / "shared"
    args = ["-q", "run", "--preset", "tiny", "--workdir", str(shared)]
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE, "text": True}
    first = subprocess.Popen([sys.executable, "-c", _CLI, *args], **quiet)
    deadline = time.monotonic() + 120
    while not (shared / LOCK_INFO_NAME).exists():
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()[1][-3000:]
        time.sleep(0.05)
    refused = _morphomass(*args)
    waited = subprocess.Popen(
        [sys.executable, "-c", _CLI, *args, "--wait"], stderr=subprocess.PIPE, text=True
    )
    assert refused.returncode == 2, refused.stderr[-3000:]
    assert f"pid {first.pid}" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    first_err = first.communicate(timeout=600)[1]
    assert first.returncode == 0, first_err[-3000:]
    waited_err = waited.communicate(timeout=600)[1]
    assert waited.returncode == 0, waited_err[-3000:]
    assert _finished(shared) == set(RUN_ORDER)
    assert json.loads((shared / "results" / "metrics.json").read_text()) == json.loads(
        (reference.results / "metrics.json").read_text()
    )
    pd.testing.assert_frame_equal(
        pd.read_parquet(shared / "models" / "gbm" / "predictions.parquet"),
        pd.read_parquet(reference.models / "gbm" / "predictions.parquet"),
    )
