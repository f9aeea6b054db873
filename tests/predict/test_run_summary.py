"""The final summary of ``morphomass run``: stage times (also of skipped stages), key metrics, report, bundle."""

from __future__ import annotations

import json
import re
import sys
import types
from collections.abc import Callable
from pathlib import Path

import pytest

from morphomass import cli
from morphomass.config import PipelineConfig
from morphomass.pipeline import RUN_ORDER, STAGES
from morphomass.workdir import StageResult, WorkDir, write_json_atomic, write_text_atomic

METRICS = {"l1": 2.29, "rmsle": 0.124, "frac_within_015dex": 0.854, "n_test": 7363}


def _fake_runner(name: str) -> Callable[..., StageResult]:
    """A stand-in stage that writes its declared outputs (the evaluate one a metrics.json and a report)."""

    def run(config: PipelineConfig, workdir: WorkDir) -> StageResult:
        for rel in STAGES[name].outputs:
            path = workdir.root / rel
            if rel == "results/metrics.json":
                experiments = {
                    "g_morph": METRICS,
                    "reference_lg_z": {**METRICS, "l1": 4.52},
                    "gi_morph": {**METRICS, "l1": 1.12},
                }
                write_json_atomic(path, {"experiments": experiments})
            elif rel == "raw":  # what the preprocess stage reads from raw/
                write_text_atomic(path / "images" / "g" / "1.fits", name)
                write_text_atomic(path / "stars.csv", name)
            elif rel in ("models/cnn", "models/gbm"):
                write_text_atomic(path / "stand-in.txt", name)
            else:
                write_text_atomic(path, name)
        return StageResult(name, outputs=list(STAGES[name].outputs))

    return run


@pytest.fixture(name="fake_pipeline")
def fixture_fake_pipeline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every stage of ``morphomass run`` replaced by a stand-in (train-cnn and extract share a module)."""
    modules: dict[str, types.ModuleType] = {}
    for name in RUN_ORDER:
        stage = STAGES[name]
        module = modules.setdefault(stage.module, types.ModuleType(stage.module))
        setattr(module, stage.function, _fake_runner(name))
    for module_name, module in modules.items():
        monkeypatch.setitem(sys.modules, module_name, module)


def test_run_summary_quotes_metrics_times_report_and_bundle(
    fake_pipeline, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    workdir = tmp_path / "work"
    assert cli.main(["-q", "run", "--preset", "tiny", "--workdir", str(workdir)]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert lines[-1] == "every stage is built"
    quoted = (
        "test L1~ (7363 galaxies): g-band + morphology 2.29, reference L_g + z 4.52, g+i + morphology 1.12"
    )
    assert quoted in lines
    assert "g-band + morphology: RMSLE 0.124 dex, 85.4 % within 0.15 dex" in lines
    assert f"report: {workdir / 'results' / 'report.html'}" in lines
    assert f"prediction bundle: {workdir / 'models' / 'bundle.json'}" in lines

    recorded = json.loads((workdir / "manifest.json").read_text())["stages"]
    assert cli.main(["-q", "run", "--preset", "tiny", "--workdir", str(workdir)]) == 0
    out = capsys.readouterr().out
    for name in RUN_ORDER:  # skipped now, with the time of the run that made the outputs
        row = next(line for line in out.splitlines() if re.search(rf"\b{name}\b.*\bskipped\b", line))
        assert f"({recorded[name]['seconds']:.1f})" in row
    assert "test L1~ (7363 galaxies)" in out


def test_run_summary_quotes_no_metrics_before_evaluate_runs(
    fake_pipeline, unbuilt, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    unbuilt("evaluate")
    workdir = tmp_path / "work"
    (workdir / "results").mkdir(parents=True)
    (workdir / "results" / "metrics.json").write_text(json.dumps({"experiments": {"g_morph": METRICS}}))
    assert cli.main(["-q", "run", "--preset", "tiny", "--workdir", str(workdir)]) == 0
    out = capsys.readouterr().out
    assert "test L1~" not in out  # a stale metrics.json is not quoted
    assert out.splitlines()[-1].startswith("not built yet in morphomass")
