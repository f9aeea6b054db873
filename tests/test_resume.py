"""Resume verifies what it skips: output fingerprints, the reason logged, and the last good record kept.

The stages are the stand-ins of conftest.py (``fake_pipeline``), with preprocess and train-gbm replaced by
stand-ins that write a zarr-like folder and LightGBM-like text models, so no survey is rendered.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from morphomass.config import PipelineConfig, load_config
from morphomass.errors import InputDataError, WorkdirError
from morphomass.pipeline import execute_stage, run_pipeline
from morphomass.workdir import (
    StageResult,
    WorkDir,
    load_manifest,
    output_fingerprint,
    write_json_atomic,
    write_text_atomic,
)

CHUNKS = ("69/c/0/0", "69/c/1/0", "69/c/2/0")


@pytest.fixture(name="config")
def fixture_config() -> PipelineConfig:
    return load_config("tiny")


@pytest.fixture(name="wd")
def fixture_wd(tmp_path: Path) -> WorkDir:
    return WorkDir(tmp_path / "work")


@pytest.fixture(name="stages")
def fixture_stages(fake_pipeline: list[str], fake_stage) -> list[str]:
    """Stand-ins for every stage; preprocess writes zarr-like chunks, train-gbm two text models."""

    def run_preprocess(config: PipelineConfig, workdir: WorkDir, *, progress: bool = True) -> StageResult:
        fake_pipeline.append("preprocess")
        write_text_atomic(workdir.images_zarr / "zarr.json", '{"zarr_format": 3}')
        for i, chunk in enumerate(CHUNKS):
            write_text_atomic(workdir.images_zarr / chunk, f"chunk {i} " * 50)
        write_text_atomic(workdir.photometric_features, "features")
        return StageResult("preprocess", outputs=["images.zarr", "features/photometric.parquet"])

    def run_train_gbm(config: PipelineConfig, workdir: WorkDir, *, progress: bool = True) -> StageResult:
        fake_pipeline.append("train-gbm")
        for name in ("g_morph", "constant"):
            write_text_atomic(workdir.gbm_models / f"{name}.txt", f"tree\nversion=v4\n{name}\n" * 20)
        return StageResult("train-gbm", outputs=["models/gbm"])

    fake_stage("preprocess", run_preprocess)
    fake_stage("train-gbm", run_train_gbm)
    return fake_pipeline


def _ran(stages: list[str], before: int) -> list[str]:
    return stages[before:]


def test_deleted_zarr_chunk_redoes_preprocess(
    stages: list[str], config: PipelineConfig, wd: WorkDir, caplog: pytest.LogCaptureFixture
) -> None:
    run_pipeline(config, wd, progress=False)
    assert run_pipeline(config, wd, progress=False).stages("ran") == []
    (wd.images_zarr / CHUNKS[1]).unlink()
    with caplog.at_level(logging.INFO, logger="morphomass"):
        summary = run_pipeline(config, wd, progress=False)
    assert "preprocess" in summary.stages("ran")
    assert (wd.images_zarr / CHUNKS[1]).exists()
    assert any(
        "preprocess: running, because output images.zarr changed" in r.getMessage()
        and "now 3 file(s)" in r.getMessage()
        and "recorded 4 file(s)" in r.getMessage()
        for r in caplog.records
    )


def test_truncated_gbm_model_redoes_train_gbm(
    stages: list[str], config: PipelineConfig, wd: WorkDir, caplog: pytest.LogCaptureFixture
) -> None:
    run_pipeline(config, wd, progress=False)
    model = wd.gbm_models / "g_morph.txt"
    with model.open("r+b") as fh:
        fh.truncate(7)
    before = len(stages)
    with caplog.at_level(logging.INFO, logger="morphomass"):
        summary = run_pipeline(config, wd, progress=False)
    assert "train-gbm" in summary.stages("ran")
    assert _ran(stages, before)[0] == "train-gbm"  # nothing upstream was redone
    assert model.stat().st_size > 7
    assert "train-gbm: running, because output models/gbm changed" in caplog.text


def test_same_size_same_mtime_edit_of_a_small_file_is_seen(
    stages: list[str], config: PipelineConfig, wd: WorkDir
) -> None:
    run_pipeline(config, wd, progress=False)
    model = wd.gbm_models / "g_morph.txt"
    stat = model.stat()
    text = model.read_text()
    model.write_text(text.replace("tree", "TREE", 1))
    os.utime(model, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # the size and the mtime are as recorded
    assert "train-gbm" in run_pipeline(config, wd, progress=False).stages("ran")


def test_vanished_output_file_is_named_and_redone(
    stages: list[str], config: PipelineConfig, wd: WorkDir, caplog: pytest.LogCaptureFixture
) -> None:
    run_pipeline(config, wd, progress=False)
    wd.photometric_features.unlink()
    with caplog.at_level(logging.INFO, logger="morphomass"):
        assert not execute_stage("preprocess", config, wd, progress=False).skipped
    assert "preprocess: running, because output features/photometric.parquet is missing" in caplog.text


def test_unchanged_outputs_are_skipped_after_fingerprinting(
    stages: list[str], config: PipelineConfig, wd: WorkDir
) -> None:
    run_pipeline(config, wd, progress=False)
    record = load_manifest(wd)["stages"]["preprocess"]
    assert set(record["output_fingerprints"]) == set(record["outputs"])
    assert record["output_fingerprints"]["images.zarr"]["files"] == 1 + len(CHUNKS)
    assert execute_stage("preprocess", config, wd, progress=False).skipped


def test_record_without_fingerprints_is_redone(
    stages: list[str], config: PipelineConfig, wd: WorkDir, caplog: pytest.LogCaptureFixture
) -> None:
    run_pipeline(config, wd, progress=False)
    manifest = load_manifest(wd)
    del manifest["stages"]["train-gbm"]["output_fingerprints"]  # as an older morphomass wrote it
    write_json_atomic(wd.manifest, manifest)
    with caplog.at_level(logging.INFO, logger="morphomass"):
        assert not execute_stage("train-gbm", config, wd, progress=False).skipped
    assert "no output fingerprints" in caplog.text


def test_failed_attempt_keeps_the_last_good_record(
    stages: list[str], fake_stage, config: PipelineConfig, wd: WorkDir
) -> None:
    run_pipeline(config, wd, progress=False)
    good = load_manifest(wd)["stages"]["train-gbm"]

    def failing(config: PipelineConfig, workdir: WorkDir, *, progress: bool = True) -> StageResult:
        msg = "features/cnn.parquet: column x is missing"
        raise InputDataError(msg)

    fake_stage("train-gbm", failing)
    with pytest.raises(InputDataError, match="column x is missing"):
        execute_stage("train-gbm", config, wd, progress=False, force=True)
    record = load_manifest(wd)["stages"]["train-gbm"]
    assert {k: v for k, v in record.items() if k != "attempt"} == good
    assert record["attempt"]["error"] == "InputDataError: features/cnn.parquet: column x is missing"
    assert "started_utc" in record["attempt"] and "failed_utc" in record["attempt"]
    # the failed attempt touched no output: an unchanged rerun needs nothing
    assert execute_stage("train-gbm", config, wd, progress=False).skipped


def test_failed_attempt_that_changed_an_output_is_redone(
    stages: list[str], fake_stage, config: PipelineConfig, wd: WorkDir
) -> None:
    run_pipeline(config, wd, progress=False)

    def half_done(config: PipelineConfig, workdir: WorkDir, *, progress: bool = True) -> StageResult:
        write_text_atomic(workdir.gbm_models / "g_morph.txt", "half")
        raise KeyboardInterrupt

    fake_stage("train-gbm", half_done)
    with pytest.raises(KeyboardInterrupt):
        execute_stage("train-gbm", config, wd, progress=False, force=True)
    with pytest.raises(KeyboardInterrupt):  # not skipped: its output no longer matches the record
        execute_stage("train-gbm", config, wd, progress=False)


def test_fingerprint_covers_names_sizes_and_small_contents(tmp_path: Path) -> None:
    folder = tmp_path / "images.zarr"
    write_text_atomic(folder / "zarr.json", "{}")
    write_text_atomic(folder / "69" / "c" / "0", "abc")
    first = output_fingerprint(folder)
    assert first["files"] == 2 and first["bytes"] == 5
    (folder / ".tmp-zarr.json.1.ab").write_text("a temporary file being written")
    assert output_fingerprint(folder) == first  # temporary names are ignored
    (folder / ".zattrs").write_text("{}")  # zarr v2 metadata is hidden but counted
    assert output_fingerprint(folder)["files"] == 3
    with pytest.raises(WorkdirError, match="cannot fingerprint .*nothing: it does not exist"):
        output_fingerprint(tmp_path / "nothing")


@pytest.mark.parametrize(
    ("stages_value", "match"),
    [
        ({"catalog": 5}, r"stages\.catalog: expected a JSON object, got int"),
        ({"catalog": {"outputs": 3}}, r"stages\.catalog\.outputs: expected list, got int"),
        ({"catalog": {"config_hash": True}}, r"stages\.catalog\.config_hash: expected str, got bool"),
        ({"catalog": {"inputs": {"raw": 1}}}, r"stages\.catalog\.inputs\.raw: expected a SHA-256 string"),
        ({"catalog": {"outputs": ["../../etc/passwd"]}}, r"expected paths inside the work directory"),
        ({"catalog": {"seconds": "fast"}}, r"stages\.catalog\.seconds: expected int or float, got str"),
    ],
)
def test_manifest_records_of_the_wrong_type_are_named(tmp_path: Path, stages_value: dict, match: str) -> None:
    wd = WorkDir(tmp_path)
    wd.manifest.write_text(json.dumps({"stages": stages_value}))
    with pytest.raises(WorkdirError, match=match):
        load_manifest(wd)


def test_manifest_not_utf8_is_named(tmp_path: Path) -> None:
    wd = WorkDir(tmp_path)
    wd.manifest.write_bytes(b'{"stages": {"\xff": {}}}')
    with pytest.raises(WorkdirError, match=r"manifest\.json is not UTF-8 text \(byte 13"):
        load_manifest(wd)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=6,
)


def _paths(value: object, prefix: tuple = ()) -> list[tuple]:
    """Every path (a tuple of keys and indices) into a JSON value, the root included."""
    paths = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            paths += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            paths += _paths(child, (*prefix, index))
    return paths


def _replace(value: object, path: tuple, new: object) -> object:
    if not path:
        return new
    copy = json.loads(json.dumps(value))
    target = copy
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = new
    return copy


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_manifest_mutations_never_give_a_traceback(
    data: st.DataObject, stages: list[str], tmp_path_factory: pytest.TempPathFactory, capsys
) -> None:
    from morphomass import cli

    workdir = tmp_path_factory.mktemp("fuzz")
    argv = ["-q", "run", "--workdir", str(workdir), "--preset", "tiny"]
    assert cli.main(argv) == 0
    manifest = json.loads((workdir / "manifest.json").read_text())
    path = data.draw(st.sampled_from(_paths(manifest)), label="path")
    mutated = _replace(manifest, path, data.draw(JSON_VALUES, label="value"))
    (workdir / "manifest.json").write_text(json.dumps(mutated))
    capsys.readouterr()
    status = cli.main(argv)
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert status in (0, 2), err
    if status == 2:
        assert len(err) == 1 and "manifest.json" in err[0], err
    else:
        assert cli.main(argv) == 0  # a normal run, after which the pipeline is whole again
