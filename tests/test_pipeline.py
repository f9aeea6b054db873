"""Stage registry, declared inputs and outputs, skip/redo/resume logic of execute_stage and run_pipeline.

The stages are stand-ins installed as fake modules (fixtures in conftest.py), so these tests neither render a
survey nor train anything.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from morphomass import __version__
from morphomass.config import STAGE_CONFIG, PipelineConfig, load_config, stage_config_hash
from morphomass.errors import WorkdirError
from morphomass.pipeline import RUN_ORDER, STAGES, execute_stage, resolve_runner, run_pipeline
from morphomass.workdir import StageResult, WorkDir, load_manifest, write_text_atomic


class Calls:
    """Counts calls of the fake stages."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def count(self, name: str) -> int:
        """Return how many times stage ``name`` ran."""
        return self.names.count(name)


@pytest.fixture(name="calls")
def fixture_calls() -> Calls:
    return Calls()


@pytest.fixture(name="config")
def fixture_config() -> PipelineConfig:
    return load_config("tiny")


@pytest.fixture(name="wd")
def fixture_wd(tmp_path: Path) -> WorkDir:
    return WorkDir(tmp_path / "work")


@pytest.fixture(name="fake_mock_and_catalog")
def fixture_fake_mock_and_catalog(fake_pipeline, fake_stage, calls: Calls) -> None:
    """Install a mock writing small raw files and a catalog copying one; the later stages are stand-ins."""

    def run_mock(
        config: PipelineConfig, workdir: WorkDir, *, progress: bool = True, force: bool = False
    ) -> StageResult:
        calls.names.append("mock")
        write_text_atomic(workdir.hyperleda, f"pgc|objname\n1|galaxy-{config.mock.seed}\n")
        write_text_atomic(workdir.stars, "objID,ra,dec,type,psfMag_g\n")
        write_text_atomic(workdir.raw_images / "g" / "1.fits", "image")
        return StageResult("mock", outputs=["raw"], summary={"n_galaxies": config.mock.n_galaxies})

    def run_catalog(config: PipelineConfig, workdir: WorkDir, *, progress: bool = True) -> StageResult:
        calls.names.append("catalog")
        write_text_atomic(workdir.sample, workdir.hyperleda.read_text())
        write_text_atomic(workdir.sample_summary, "key,value\n")
        write_text_atomic(workdir.chi2_rejected, "none")
        return StageResult("catalog", outputs=["sample.parquet"], summary={"n_rows": 1})

    fake_stage("mock", run_mock)
    fake_stage("catalog", run_catalog)


def test_registry_order_and_contracts(tmp_path: Path) -> None:
    assert RUN_ORDER == (
        "mock",
        "catalog",
        "preprocess",
        "train-cnn",
        "extract",
        "train-gbm",
        "bundle",
        "evaluate",
    )
    assert set(RUN_ORDER) | {"fetch", "predict"} == set(STAGES)
    assert STAGES["mock"].target == "morphomass.mock:run_mock"
    assert STAGES["bundle"].target == "morphomass.predict:run_bundle"
    assert STAGE_CONFIG["mock"].sections == ("mock",)
    assert STAGES["mock"].inputs == ()
    assert STAGE_CONFIG["catalog"].sections == ("catalog", "cosmology")
    assert STAGES["catalog"].inputs == ("raw",)
    assert STAGES["train-cnn"].function == "run_train_cnn"
    wd = WorkDir(tmp_path)
    # every input of a run stage is an output of an earlier stage
    produced: set[str] = set()
    for name in RUN_ORDER:
        for rel in STAGES[name].input_paths(wd):
            assert any(rel == out or rel.startswith(out + "/") for out in produced), (name, rel)
        produced.update(STAGES[name].output_paths(wd))


def test_inputs_and_outputs_are_workdir_artefacts(tmp_path: Path) -> None:
    """Declared paths are WorkDir properties, relative to the root as the manifest records them."""
    wd = WorkDir(tmp_path)
    for stage in STAGES.values():
        for name in (*stage.inputs, *stage.outputs):
            assert isinstance(getattr(type(wd), name), property), (stage.name, name)
    assert list(STAGES["preprocess"].input_paths(wd)) == ["sample.parquet", "raw/images", "raw/stars.csv"]
    assert STAGES["train-gbm"].output_paths(wd) == {"models/gbm": wd.gbm_models}
    assert list(STAGES["bundle"].output_paths(wd)) == ["models/bundle.json"]
    assert set(STAGES["bundle"].input_paths(wd)) == {
        "sample.parquet",
        "features/photometric.parquet",
        "features/cnn.parquet",
        "models/cnn",
        "models/gbm",
    }
    # evaluate reads the catalogue's tables and everything train-gbm writes, not only the models
    evaluated = STAGES["evaluate"].input_paths(wd)
    for path in (
        wd.chi2_rejected,
        wd.sample_summary,
        wd.gbm_cv_search,
        wd.gbm_predictions,
        wd.gbm_importance,
    ):
        assert any(path == p or p in path.parents for p in evaluated.values()), path


def test_every_stage_but_predict_has_a_configuration_hash(config: PipelineConfig) -> None:
    for name in STAGES:
        if name != "predict":
            assert len(stage_config_hash(config, name)) == 64
    with pytest.raises(KeyError, match="no configuration hash for stage 'predict'"):
        stage_config_hash(config, "predict")


def test_resolve_runner_imports_the_stage_function(fake_stage) -> None:
    def runner(config: PipelineConfig, workdir: WorkDir, *, progress: bool = True) -> StageResult:
        return StageResult("evaluate", outputs=[])

    fake_stage("evaluate", runner)
    assert resolve_runner("evaluate") is runner


def test_unknown_stage(config: PipelineConfig, wd: WorkDir) -> None:
    with pytest.raises(KeyError, match="unknown stage 'render'"):
        execute_stage("render", config, wd)


def test_stage_runs_then_skips(
    fake_mock_and_catalog, calls: Calls, config: PipelineConfig, wd: WorkDir
) -> None:
    first = execute_stage("mock", config, wd)
    assert not first.skipped
    assert first.seconds > 0
    assert first.summary == {"n_galaxies": config.mock.n_galaxies}
    record = load_manifest(wd)["stages"]["mock"]
    assert record["config_hash"] == stage_config_hash(config, "mock")
    assert record["outputs"] == ["raw"]
    assert record["version"] == __version__
    second = execute_stage("mock", config, wd)
    assert second.skipped
    assert calls.count("mock") == 1
    execute_stage("mock", config, wd, force=True)
    assert calls.count("mock") == 2


def test_config_change_redoes_only_dependent_stage(
    fake_mock_and_catalog, calls: Calls, config: PipelineConfig, wd: WorkDir
) -> None:
    execute_stage("mock", config, wd)
    execute_stage("catalog", config, wd)
    gbm_changed = load_config("tiny", overrides={"gbm": {"num_leaves": 9}})
    assert execute_stage("mock", gbm_changed, wd).skipped
    assert execute_stage("catalog", gbm_changed, wd).skipped
    cosmology_changed = load_config("tiny", overrides={"cosmology": {"h0_km_s_mpc": 67.0}})
    assert execute_stage("mock", cosmology_changed, wd).skipped
    assert not execute_stage("catalog", cosmology_changed, wd).skipped
    assert calls.names == ["mock", "catalog", "catalog"]


def test_input_change_redoes_stage(
    fake_mock_and_catalog, calls: Calls, config: PipelineConfig, wd: WorkDir
) -> None:
    execute_stage("mock", config, wd)
    execute_stage("catalog", config, wd)
    assert execute_stage("catalog", config, wd).skipped
    write_text_atomic(wd.stars, "objID,ra,dec,type,psfMag_g\n1,10.0,0.0,6,17.5\n")
    assert not execute_stage("catalog", config, wd).skipped
    assert calls.count("catalog") == 2


def test_deleted_output_redoes_stage(
    fake_mock_and_catalog, calls: Calls, config: PipelineConfig, wd: WorkDir
) -> None:
    execute_stage("mock", config, wd)
    execute_stage("catalog", config, wd)
    wd.sample.unlink()
    assert not execute_stage("catalog", config, wd).skipped
    assert wd.sample.exists()


def test_runtime_fields_do_not_change_the_hash(config: PipelineConfig) -> None:
    more_workers = load_config(
        "tiny", overrides={"mock": {"workers": 7}, "preprocess": {"scheduler": "tcp://h:8786"}}
    )
    assert stage_config_hash(more_workers, "mock") == stage_config_hash(config, "mock")
    assert stage_config_hash(more_workers, "preprocess") == stage_config_hash(config, "preprocess")
    assert more_workers.mock.workers == 7  # the caller's configuration is not modified
    other_seed = load_config("tiny", overrides={"mock": {"seed": 1}})
    assert stage_config_hash(other_seed, "mock") != stage_config_hash(config, "mock")


def test_preprocess_depends_only_on_the_networks_input_sizes(config: PipelineConfig) -> None:
    longer_training = load_config(
        "tiny", overrides={"cnn": {"epochs": 9, "accelerator": "cpu", "devices": 1}}
    )
    assert stage_config_hash(longer_training, "preprocess") == stage_config_hash(config, "preprocess")
    assert stage_config_hash(longer_training, "train-cnn") != stage_config_hash(config, "train-cnn")
    on_a_gpu = load_config("tiny", overrides={"cnn": {"accelerator": "gpu", "inference_batch_size": 1024}})
    assert stage_config_hash(on_a_gpu, "train-cnn") == stage_config_hash(config, "train-cnn")
    bigger = load_config("tiny", overrides={"cnn": {"nets": {"cnn1": {"input_size": 48}}}})
    assert bigger.image_sizes != config.image_sizes
    assert stage_config_hash(bigger, "preprocess") != stage_config_hash(config, "preprocess")


def test_missing_input_names_the_producer(fake_mock_and_catalog, config: PipelineConfig, wd: WorkDir) -> None:
    wd.raw.mkdir(parents=True)  # an empty raw/ is as good as none
    with pytest.raises(
        WorkdirError, match=r"stage 'catalog' needs raw .*run 'morphomass mock' or 'morphomass fetch'"
    ):
        execute_stage("catalog", config, wd)


def test_missing_declared_output_is_an_error(fake_stage, config: PipelineConfig, wd: WorkDir) -> None:
    fake_stage("catalog", lambda config, workdir, progress: StageResult("catalog", outputs=[]))
    write_text_atomic(wd.stars, "objID\n")
    with pytest.raises(WorkdirError, match=r"stage 'catalog' finished without writing .*sample\.parquet"):
        execute_stage("catalog", config, wd)
    assert "config_hash" not in load_manifest(wd)["stages"]["catalog"]


def test_interrupted_stage_is_redone(fake_stage, config: PipelineConfig, wd: WorkDir, calls: Calls) -> None:
    def crashing_mock(
        config: PipelineConfig, workdir: WorkDir, *, progress: bool, force: bool = False
    ) -> StageResult:
        calls.names.append("mock")
        write_text_atomic(workdir.stars, "half of the survey\n")
        if calls.count("mock") == 1:
            raise KeyboardInterrupt
        return StageResult("mock", outputs=["raw"])

    fake_stage("mock", crashing_mock)
    with pytest.raises(KeyboardInterrupt):
        execute_stage("mock", config, wd)
    attempt = load_manifest(wd)["stages"]["mock"]["attempt"]
    assert "started_utc" in attempt
    assert attempt["error"] == "KeyboardInterrupt"
    assert not execute_stage("mock", config, wd).skipped
    assert execute_stage("mock", config, wd).skipped
    assert calls.count("mock") == 2


def test_run_pipeline_runs_every_stage_and_skips_them_when_current(
    fake_mock_and_catalog, fake_pipeline: list[str], calls: Calls, config: PipelineConfig, wd: WorkDir
) -> None:
    summary = run_pipeline(config, wd, progress=False)
    assert [o.stage for o in summary.outcomes] == list(RUN_ORDER)
    assert summary.stages("ran") == list(RUN_ORDER)
    assert fake_pipeline == list(RUN_ORDER[2:])
    assert summary.outcomes[0].seconds > 0
    assert all(o.cpu_seconds >= 0 for o in summary.outcomes)
    again = run_pipeline(config, wd, progress=False)
    assert again.stages("skipped") == list(RUN_ORDER)
    assert calls.names == ["mock", "catalog"]
    forced = run_pipeline(config, wd, force=True, progress=False)
    assert forced.stages("ran") == list(RUN_ORDER)


def test_manifest_records_times_and_summary(
    fake_mock_and_catalog, config: PipelineConfig, wd: WorkDir
) -> None:
    result = execute_stage("mock", config, wd)
    assert result.cpu_seconds >= 0
    record = load_manifest(wd)["stages"]["mock"]
    assert record["summary"] == {"n_galaxies": config.mock.n_galaxies}
    assert record["cpu_seconds"] == pytest.approx(result.cpu_seconds, abs=1e-3)
    # cores_busy is CPU / wall before the manifest rounds both to the millisecond: for a stage of a few ms
    # that rounding alone moves the ratio a lot, so compare within the bounds it allows
    cpu, wall, half_ms = record["cpu_seconds"], record["seconds"], 5e-4
    low = max(cpu - half_ms, 0.0) / (wall + half_ms) - 0.005
    high = (cpu + half_ms) / max(wall - half_ms, 1e-9) + 0.005
    assert low <= record["cores_busy"] <= high


def test_a_changed_evaluate_input_redoes_evaluate(
    fake_mock_and_catalog, fake_pipeline: list[str], config: PipelineConfig, wd: WorkDir
) -> None:
    run_pipeline(config, wd, progress=False)
    write_text_atomic(wd.gbm_cv_search, "{}")  # train-gbm's cross-validation, read by evaluate
    summary = run_pipeline(config, wd, progress=False)
    # models/gbm is train-gbm's output, changed by hand: train-gbm is redone, and what reads it follows
    assert summary.stages("ran") == ["train-gbm", "bundle", "evaluate"]


def test_run_pipeline_does_not_mock_over_real_data(
    fake_mock_and_catalog, calls: Calls, config: PipelineConfig, wd: WorkDir
) -> None:
    write_text_atomic(wd.hyperleda, "pgc|objname\n7|real\n")  # raw/ filled by someone else (fetch)
    write_text_atomic(wd.stars, "objID,ra,dec,type,psfMag_g\n")
    write_text_atomic(wd.raw_images / "g" / "7.fits", "image")
    summary = run_pipeline(config, wd, progress=False)
    assert summary.outcomes[0].status == "not needed"
    assert calls.names == ["catalog"]
    assert wd.sample.read_text() == "pgc|objname\n7|real\n"


def test_run_pipeline_redoes_mock_after_mock_config_change(
    fake_mock_and_catalog, calls: Calls, config: PipelineConfig, wd: WorkDir
) -> None:
    run_pipeline(config, wd, progress=False)
    reseeded = load_config("tiny", overrides={"mock": {"seed": 99}})
    summary = run_pipeline(reseeded, wd, progress=False)
    assert summary.stages("ran") == list(RUN_ORDER)  # a new sample: every later stage is redone
    assert "galaxy-99" in wd.sample.read_text()
