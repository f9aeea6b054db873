"""The preprocess stage on the tiny mock: outputs, failure report, resume, Dask, CLI."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import zarr
from astropy.io import fits

from morphomass import cli
from morphomass.config import PipelineConfig, load_config
from morphomass.errors import ConfigError, InputDataError
from morphomass.preprocess import stage
from morphomass.preprocess.features import FEATURE_COLUMNS
from morphomass.preprocess.stage import PARTIAL_NAME, run_preprocess
from morphomass.preprocess.tasks import PreprocessTask, make_galaxy_jobs
from morphomass.workdir import WorkDir

SIZES = ("32", "69")  # the tiny preset's networks


def _config(**preprocess: object) -> PipelineConfig:
    return load_config("tiny", overrides={"preprocess": preprocess} if preprocess else None)


def _outputs(workdir: WorkDir) -> dict[str, np.ndarray]:
    group = zarr.open_group(workdir.images_zarr, mode="r")
    out = {
        f"{size}/{name}": np.asarray(group[f"{size}/{name}"][:])
        for size in SIZES
        for name in ("images", "objid", "scaling_a")
    }
    features = pd.read_parquet(workdir.features / "photometric.parquet")
    out.update({f"features/{c}": features[c].to_numpy() for c in features.columns})
    return out


def _assert_same_outputs(a: WorkDir, b: WorkDir) -> None:
    left, right = _outputs(a), _outputs(b)
    assert left.keys() == right.keys()
    for key in left:
        np.testing.assert_array_equal(left[key], right[key], err_msg=key)


@pytest.fixture(name="reference", scope="module")
def fixture_reference(tiny_survey: WorkDir, tmp_path_factory: pytest.TempPathFactory) -> WorkDir:
    """Return the stage run once, in this process, on a copy of the tiny survey.

    Shared by the tests that compare.
    """
    workdir = WorkDir(tmp_path_factory.mktemp("reference"))
    workdir.ensure()
    shutil.copytree(tiny_survey.raw, workdir.raw, dirs_exist_ok=True)
    shutil.copy2(tiny_survey.sample, workdir.sample)
    result = run_preprocess(_config(workers=1), workdir, progress=False)
    assert result.summary["failed"] == 0
    return workdir


def test_outputs_follow_the_contract(reference: WorkDir) -> None:
    sample = pd.read_parquet(reference.sample)
    group = zarr.open_group(reference.images_zarr, mode="r")
    assert sorted(group.group_keys()) == sorted(SIZES)
    assert group.attrs["band"] == "g" and group.attrs["sizes"] == [32, 69]
    features = pd.read_parquet(reference.features / "photometric.parquet")
    assert list(features.columns) == ["objid", *FEATURE_COLUMNS]
    assert features["objid"].dtype == np.int64
    np.testing.assert_array_equal(features["objid"], sample["objid"])
    for size in SIZES:
        images = group[f"{size}/images"]
        assert images.shape == (len(sample), int(size), int(size)) and images.dtype == np.float32
        assert images.chunks[0] == 32  # a loader reads batches, not the whole cube
        data = images[:]
        assert np.isfinite(data).all() and data.min() >= 0.0 and data.max() <= 1.0
        np.testing.assert_array_equal(group[f"{size}/objid"][:], sample["objid"])
        np.testing.assert_array_equal(group[f"{size}/scaling_a"][:], features["scaling_a"])
        # the galaxy sits in the middle of every image: the centre is brighter than the border on average
        n = int(size)
        centre = data[:, n // 2 - 2 : n // 2 + 3, n // 2 - 2 : n // 2 + 3].mean(axis=(1, 2))
        border = np.concatenate([data[:, 0, :], data[:, -1, :]], axis=1).mean(axis=1)
        assert (centre > border).mean() > 0.95
    assert np.all(features["scaling_a"] >= 0) and features.notna().all().all()
    # luminosity from the image (flux x 4 pi D^2) agrees with the catalogue's L_g from the total flux
    ratio = (features["lum_sum"] / sample["lum_g"]).median()
    assert 0.8 < ratio < 1.2
    np.testing.assert_allclose(features["redshift"], sample["z"])
    np.testing.assert_allclose(features["pixel_kpc"], sample["pixel_kpc"])


def test_tables_figure_and_cleanup(reference: WorkDir) -> None:
    failures = pd.read_csv(reference.preprocess_failures)
    assert list(failures.columns) == ["objid", "kind", "reason", "path"] and failures.empty
    galaxies = pd.read_csv(reference.preprocess_galaxies)
    assert len(galaxies) == 60 and galaxies["ok"].all()
    assert galaxies["n_stars_subtracted"].sum() > 0  # the mock has catalogued stars on some images
    png = reference.figures / stage.FIGURE_NAME
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (reference.root / PARTIAL_NAME).exists()


def test_failures_are_recorded_and_the_rest_goes_on(
    survey_copy: Callable[[], WorkDir], reference: WorkDir
) -> None:
    workdir = survey_copy()
    sample = pd.read_parquet(workdir.sample)
    ids = sample["objid"].to_list()
    paths = {objid: workdir.raw_image("g", objid) for objid in ids}
    paths[ids[0]].unlink()  # missing FITS
    paths[ids[1]].write_bytes(b"SIMPLE  = garbage" * 300)  # corrupt FITS
    with fits.open(paths[ids[2]], mode="update") as hdul:  # a WCS that does not cover the galaxy
        hdul[0].header["CRVAL1"] += 1.0
    with fits.open(paths[ids[3]], mode="update") as hdul:  # all-NaN image
        hdul[0].data[:] = np.nan
    sample.loc[4, "dist_mpc"] = np.nan  # a bad sample row
    sample.to_parquet(workdir.sample, index=False)
    result = run_preprocess(_config(workers=1), workdir, progress=False)

    failures = pd.read_csv(workdir.preprocess_failures).set_index("objid")
    expected = {
        ids[0]: "missing_fits",
        ids[1]: "corrupt_fits",
        ids[2]: "wcs_outside",
        ids[3]: "all_nan",
        ids[4]: "bad_sample_row",
    }
    assert failures["kind"].to_dict() == expected and list(failures.index) == ids[:5]  # in sample order
    assert "is missing" in failures.loc[ids[0], "reason"]
    assert "outside the" in failures.loc[ids[2], "reason"]
    assert "NaN" in failures.loc[ids[3], "reason"] and str(paths[ids[3]]) in failures.loc[ids[3], "reason"]
    assert "dist_mpc" in failures.loc[ids[4], "reason"]
    assert result.summary["failed"] == 5 and result.summary["preprocessed"] == 55
    features = pd.read_parquet(workdir.features / "photometric.parquet")
    np.testing.assert_array_equal(features["objid"], ids[5:])
    group = zarr.open_group(workdir.images_zarr, mode="r")
    for size in SIZES:
        np.testing.assert_array_equal(group[f"{size}/objid"][:], ids[5:])
        assert group[f"{size}/images"].shape[0] == 55
        assert np.isfinite(group[f"{size}/images"][:]).all()
    # the kept galaxies' rows are those of the run without failures (rows moved up, not mixed up)
    full = zarr.open_group(reference.images_zarr, mode="r")
    for size in SIZES:
        np.testing.assert_array_equal(group[f"{size}/images"][:], full[f"{size}/images"][5:])
        np.testing.assert_array_equal(group[f"{size}/scaling_a"][:], full[f"{size}/scaling_a"][5:])


def test_resume_after_a_crash(
    survey_copy: Callable[[], WorkDir], reference: WorkDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    workdir = survey_copy()
    original = stage.process_task
    done: list[int] = []

    def crash_on_second(task: PreprocessTask) -> tuple[int, float]:
        if done:
            raise RuntimeError("simulated crash")
        done.append(task.start)
        return original(task)

    monkeypatch.setattr(stage, "process_task", crash_on_second)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_preprocess(_config(workers=1), workdir, progress=False)
    assert (workdir.root / PARTIAL_NAME / "parts").is_dir() and not workdir.images_zarr.exists()

    rerun: list[int] = []

    def record(task: PreprocessTask) -> tuple[int, float]:
        rerun.append(task.start)
        return original(task)

    monkeypatch.setattr(stage, "process_task", record)
    result = run_preprocess(_config(workers=4), workdir, progress=False)  # the worker count may change
    assert done == [0] and 0 not in rerun and rerun  # the finished task is not redone
    assert result.summary["resumed_galaxies"] == 32
    _assert_same_outputs(workdir, reference)


def test_changed_settings_restart_the_interrupted_run(
    survey_copy: Callable[[], WorkDir], monkeypatch: pytest.MonkeyPatch
) -> None:
    workdir = survey_copy()
    original = stage.process_task

    def crash_after_first(task: PreprocessTask) -> tuple[int, float]:
        original(task)
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(stage, "process_task", crash_after_first)
    with pytest.raises(RuntimeError):
        run_preprocess(_config(workers=1), workdir, progress=False)
    monkeypatch.setattr(stage, "process_task", original)
    result = run_preprocess(_config(workers=1, noise_target=0.25), workdir, progress=False)
    assert result.summary["resumed_galaxies"] == 0


def test_dask_scheduler_gives_the_same_outputs(
    survey_copy: Callable[[], WorkDir], reference: WorkDir
) -> None:
    from dask.distributed import LocalCluster

    workdir = survey_copy()
    with LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=False,
        dashboard_address=None,
        scheduler_kwargs={"dashboard_address": ":0"},
    ) as cluster:
        result = run_preprocess(_config(scheduler=cluster.scheduler_address), workdir, progress=False)
    assert result.summary["preprocessed"] == 60
    _assert_same_outputs(workdir, reference)


@pytest.mark.slow
def test_local_process_cluster_gives_the_same_outputs(
    survey_copy: Callable[[], WorkDir],
    reference: WorkDir,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    workdir = survey_copy()
    monkeypatch.setattr(stage, "MIN_GALAXIES_FOR_CLUSTER", 0)
    # INFO at the root and on morphomass's logger (an earlier CLI test may have left it at WARNING)
    with caplog.at_level(logging.INFO), caplog.at_level(logging.INFO, logger="morphomass"):
        run_preprocess(_config(workers=2), workdir, progress=False)
    _assert_same_outputs(workdir, reference)
    # the cluster's start/stop chatter stays off the console; the stage's own summary does not
    chatter = [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("distributed") and r.levelno < logging.WARNING
    ]
    assert not chatter, chatter[:3]
    assert any(r.name.startswith("morphomass") for r in caplog.records)


def test_float16_images_and_smaller_chunks(survey_copy: Callable[[], WorkDir], reference: WorkDir) -> None:
    workdir = survey_copy()
    run_preprocess(_config(workers=1, image_dtype="float16", chunk_images=16), workdir, progress=False)
    group = zarr.open_group(workdir.images_zarr, mode="r")
    full = zarr.open_group(reference.images_zarr, mode="r")
    for size in SIZES:
        images = group[f"{size}/images"]
        assert images.dtype == np.float16 and images.chunks[0] == 16
        np.testing.assert_allclose(images[:].astype(np.float32), full[f"{size}/images"][:], atol=1e-3)


def test_cli_runs_the_stage_then_skips_it(survey_copy: Callable[[], WorkDir]) -> None:
    workdir = survey_copy()
    argv = ["--quiet", "preprocess", "--preset", "tiny", "--workdir", str(workdir.root), "--workers", "1"]
    try:
        assert cli.main(argv) == 0
        assert (workdir.features / "photometric.parquet").exists() and workdir.images_zarr.is_dir()
        stamp = (workdir.features / "photometric.parquet").stat().st_mtime_ns
        assert cli.main(argv) == 0  # up to date: skipped (the worker count is not part of the hash)
        assert (workdir.features / "photometric.parquet").stat().st_mtime_ns == stamp
    finally:
        logging.getLogger("morphomass").setLevel(logging.NOTSET)


def test_after_the_catalogue_stage(survey_copy: Callable[[], WorkDir]) -> None:
    """The contract with the real catalogue stage: its sample.parquet goes through, luminosities agree."""
    from morphomass.pipeline import execute_stage

    workdir = survey_copy()
    workdir.sample.unlink()
    config = _config(workers=1)
    execute_stage("catalog", config, workdir, progress=False)
    result = execute_stage("preprocess", config, workdir, progress=False)
    assert result.summary["failed"] == 0
    sample = pd.read_parquet(workdir.sample)
    features = pd.read_parquet(workdir.features / "photometric.parquet")
    np.testing.assert_array_equal(features["objid"], sample["objid"])
    assert 0.85 < (features["lum_sum"] / sample["lum_g"]).median() < 1.15


def test_stars_near_each_galaxy(tiny_survey: WorkDir) -> None:
    sample = pd.read_parquet(tiny_survey.sample)
    ra, dec = sample["ra"][0], sample["dec"][0]
    stars = pd.DataFrame({"ra": [ra + 0.2 / 60, ra + 2.0], "dec": [dec, dec]})
    jobs = make_galaxy_jobs(sample, stars, image_dir=Path("images"))
    assert len(jobs) == len(sample)
    np.testing.assert_allclose(jobs[0].stars_radec, stars.iloc[[0]].to_numpy())
    assert sum(len(job.stars_radec) for job in jobs) == 1
    assert jobs[0].path == str(Path("images") / f"{sample['objid'][0]}.fits")


class TestInputErrors:
    """Unusable inputs stop the stage with a message naming the file and the field."""

    def test_sample_missing_column(self, survey_copy: Callable[[], WorkDir]) -> None:
        """Test that sample missing column."""
        workdir = survey_copy()
        pd.read_parquet(workdir.sample).drop(columns="dist_mpc").to_parquet(workdir.sample)
        with pytest.raises(InputDataError, match=r"sample.parquet: missing column\(s\) \['dist_mpc'\]"):
            run_preprocess(_config(workers=1), workdir, progress=False)

    def test_sample_duplicate_objid(self, survey_copy: Callable[[], WorkDir]) -> None:
        """Test that sample duplicate objid."""
        workdir = survey_copy()
        sample = pd.read_parquet(workdir.sample)
        pd.concat([sample, sample.iloc[[3]]]).to_parquet(workdir.sample)
        with pytest.raises(InputDataError, match=f"objid {sample['objid'][3]} appears more than once"):
            run_preprocess(_config(workers=1), workdir, progress=False)

    def test_star_catalogue_without_coordinates(self, survey_copy: Callable[[], WorkDir]) -> None:
        """Test that star catalogue without coordinates."""
        workdir = survey_copy()
        workdir.stars.write_text("objID,psfMag_g\n1,18.0\n")
        with pytest.raises(InputDataError, match=r"stars.csv: missing column\(s\) \['ra', 'dec'\]"):
            run_preprocess(_config(workers=1), workdir, progress=False)

    def test_no_star_catalogue_is_a_warning(
        self, survey_copy: Callable[[], WorkDir], caplog: pytest.LogCaptureFixture
    ) -> None:
        """Test that no star catalogue is a warning."""
        workdir = survey_copy()
        workdir.stars.unlink()
        sample = pd.read_parquet(workdir.sample).head(5)
        sample.to_parquet(workdir.sample)
        with caplog.at_level("WARNING", logger="morphomass.preprocess.stage"):
            result = run_preprocess(_config(workers=1), workdir, progress=False)
        assert "no star will be subtracted" in caplog.text
        assert result.summary["preprocessed"] == 5 and result.summary["stars_subtracted"] == 0

    def test_every_galaxy_failing_is_an_error(self, survey_copy: Callable[[], WorkDir]) -> None:
        """Test that every galaxy failing is an error."""
        workdir = survey_copy()
        shutil.rmtree(workdir.raw_images / "g")
        match = "none of the 60 galaxies could be preprocessed.*FITS file is missing"
        with pytest.raises(InputDataError, match=match):
            run_preprocess(_config(workers=1), workdir, progress=False)
        assert len(pd.read_csv(workdir.preprocess_failures)) == 60
        assert not (workdir.root / PARTIAL_NAME).exists()

    def test_no_network_means_no_size(self, survey_copy: Callable[[], WorkDir]) -> None:
        """Test that no network means no size."""
        config = _config(workers=1)
        config.cnn.nets = {}
        with pytest.raises(ConfigError, match="cnn.nets is empty"):
            run_preprocess(config, survey_copy(), progress=False)

    def test_config_rejects_bad_values(self) -> None:
        """Test that config rejects bad values."""
        with pytest.raises(ConfigError, match="preprocess.noise_target"):
            load_config("tiny", overrides={"preprocess": {"noise_target": 1.5}})
        with pytest.raises(ConfigError, match="preprocess.band"):
            load_config("tiny", overrides={"preprocess": {"band": "y"}})
