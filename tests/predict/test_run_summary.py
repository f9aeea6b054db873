"""The final summary of ``morphomass run``: stage times (also of skipped stages), figures, metrics, bundle."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from morphomass import cli
from morphomass.config import PipelineConfig
from morphomass.pipeline import RUN_ORDER
from morphomass.workdir import StageResult, WorkDir, write_json_atomic, write_text_atomic

METRICS = {"l1": 2.29, "rmsle": 0.124, "frac_within_015dex": 0.854, "n_test": 7363}


def _fake_evaluate(config: PipelineConfig, workdir: WorkDir, *, progress: bool = True) -> StageResult:
    """Write a metrics.json and a report, as the evaluate stage does."""
    experiments = {
        "g_morph": METRICS,
        "reference_lg_z": {**METRICS, "l1": 4.52},
        "gi_morph": {**METRICS, "l1": 1.12},
    }
    write_json_atomic(workdir.metrics, {"experiments": experiments})
    write_text_atomic(workdir.report, "<html></html>")
    summary = {"test_galaxies": 7363, "experiments": 3, "l1_g_morph": 2.29, "l1_reference_lg_z": 4.52}
    return StageResult("evaluate", outputs=["results/metrics.json"], summary=summary)


def test_run_summary_quotes_metrics_times_report_and_bundle(
    fake_pipeline, fake_stage, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_stage("evaluate", _fake_evaluate)
    workdir = tmp_path / "work"
    assert cli.main(["-q", "run", "--preset", "tiny", "--workdir", str(workdir)]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    evaluate = next(line for line in lines if line.startswith("evaluate "))
    assert evaluate.endswith("7363 test galaxies, g_morph L1~ 2.29, reference L1~ 4.52")
    quoted = (
        "test L1~ (7363 galaxies): g-band + morphology 2.29, reference L_g + z 4.52, g+i + morphology 1.12"
    )
    assert quoted in lines
    assert "g-band + morphology: RMSLE 0.124 dex, 85.4 % within 0.15 dex" in lines
    assert f"report: {workdir / 'results' / 'report.html'}" in lines
    assert f"prediction bundle: {workdir / 'models' / 'bundle.json'}" in lines

    recorded = json.loads((workdir / "manifest.json").read_text())["stages"]
    assert recorded["evaluate"]["summary"]["test_galaxies"] == 7363  # the details stay in the manifest
    assert cli.main(["-q", "run", "--preset", "tiny", "--workdir", str(workdir)]) == 0
    out = capsys.readouterr().out
    for name in RUN_ORDER:  # skipped now, with the times of the run that made the outputs
        row = next(line for line in out.splitlines() if re.search(rf"^{name}\b.*\bskipped\b", line))
        assert f"({recorded[name]['seconds']:.1f})" in row
        assert f"({recorded[name]['cpu_seconds']:.1f})" in row
        assert f"({recorded[name]['cores_busy']:.2f})" in row
    assert "7363 test galaxies, g_morph L1~ 2.29" in out
    assert "test L1~ (7363 galaxies)" in out


@pytest.mark.parametrize(
    ("stage", "summary", "expected"),
    [
        (
            "catalog",
            {"sample": 2890, "split": {"train": 2340, "val": 261, "test": 289}, "gz2_match_fraction": 0.88},
            "sample 2890, train/val/test 2340/261/289, GZ2 matched 88 %",
        ),
        (
            "preprocess",
            {"preprocessed": 2880, "failed": 10, "median_scaling_a": 1234.5},
            "2880 ok, 10 failed, median a 1.23e+03",
        ),
        (
            "train-cnn",
            {
                "nets": {
                    "cnn1": {"status": "trained", "best_val_loss": 0.0512},
                    "cnn4": {"status": "kept", "best_val_loss": 2.5},
                }
            },
            "1 trained, 1 kept, val loss cnn1 0.0512, cnn4 2.5",
        ),
        (
            "bundle",
            {"models": ["g", "gi"], "files": 9, "n_train": 2300},
            "models g, gi, 9 files, 2300 training galaxies",
        ),
        (
            "evaluate",
            {"test_galaxies": 289},
            "289 test galaxies",
        ),  # a figure whose keys are missing is left out
        ("mock", {}, ""),
    ],
)
def test_key_figures(stage: str, summary: dict, expected: str) -> None:
    assert cli.key_figures(stage, summary) == expected
