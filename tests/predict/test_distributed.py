"""Prediction on a Dask cluster: the single-process numbers, every galaxy once, resumable, a worker killed."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from factories.trained import predict_catalog_of, small_config
from morphomass import cli
from morphomass.errors import InputDataError
from morphomass.predict import load_bundle, write_bundle
from morphomass.predict.distributed import PARTITIONS_NAME, part_name, predict_distributed, read_predictions
from morphomass.workdir import WorkDir

N_GALAXIES = 24
PARTITION_SIZE = 6


@pytest.fixture(name="setup", scope="module")
def fixture_setup(trained_workdir: WorkDir, tmp_path_factory: pytest.TempPathFactory):
    """Return the bundle (a copy), 24 galaxies (5 without an image) and their single-process predictions."""
    write_bundle(small_config(), trained_workdir)
    bundle_dir = Path(shutil.copytree(trained_workdir.models, tmp_path_factory.mktemp("d") / "models"))
    sample = predict_catalog_of(trained_workdir)
    no_image = sample.iloc[: N_GALAXIES - len(sample)].assign(objid=lambda t: t["objid"] + 10**15)
    catalog = pd.concat([sample, no_image]).sample(frac=1.0, random_state=3).reset_index(drop=True)
    assert len(catalog) == N_GALAXIES
    expected = load_bundle(bundle_dir).predict(
        trained_workdir.raw_images, catalog, stars=trained_workdir.stars, batch_size=5
    )
    return bundle_dir, catalog, expected


def _assert_same(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert list(got.columns) == list(expected.columns)
    assert got["objid"].tolist() == expected["objid"].tolist()  # every galaxy once, in catalogue order
    for column in expected.columns:
        if pd.api.types.is_numeric_dtype(expected[column]):
            np.testing.assert_allclose(got[column], expected[column], rtol=1e-12, atol=0, err_msg=column)
        else:
            assert got[column].tolist() == expected[column].tolist(), column


def _run(setup, trained_workdir: WorkDir, out_dir: Path, client, **options):
    bundle_dir, catalog, _ = setup
    return predict_distributed(
        bundle_dir,
        trained_workdir.raw_images,
        catalog,
        out_dir=out_dir,
        client=client,
        partition_size=PARTITION_SIZE,
        stars=trained_workdir.stars,
        batch_size=4,
        **options,
    )


def test_two_workers_give_the_single_process_predictions(setup, trained_workdir, client, tmp_path) -> None:
    from morphomass.predict import distributed

    _, _, expected = setup
    result = _run(setup, trained_workdir, tmp_path / "out", client)
    assert result.summary["partitions"] == 4
    assert result.summary["partitions_written"] == 4
    assert result.summary["galaxies"] == N_GALAXIES
    assert result.summary["predicted"] == int(expected["ml_pred"].notna().sum())
    assert sorted((tmp_path / "out").glob("part-*.parquet")) == [
        tmp_path / "out" / part_name(i) for i in range(4)
    ]
    _assert_same(read_predictions(tmp_path / "out"), expected)
    loaded = client.run(lambda: len(distributed._BUNDLES))  # noqa: SLF001  the per-process cache
    assert all(n <= 1 for n in loaded.values()) and sum(loaded.values()) >= 1  # loaded once per worker


def test_a_rerun_skips_finished_partitions(setup, trained_workdir, client, tmp_path) -> None:
    _, _, expected = setup
    out = tmp_path / "out"
    _run(setup, trained_workdir, out, client)
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("part-*.parquet")}
    (out / part_name(2)).unlink()
    result = _run(setup, trained_workdir, out, client)
    assert result.summary["partitions_skipped"] == 3
    assert result.summary["partitions_written"] == 1
    after = {p.name: p.stat().st_mtime_ns for p in out.glob("part-*.parquet")}
    assert {k: v for k, v in after.items() if k != part_name(2)} == {
        k: v for k, v in mtimes.items() if k != part_name(2)
    }
    _assert_same(read_predictions(out), expected)
    with pytest.raises(InputDataError, match="another partition_size"):
        predict_distributed(
            setup[0], trained_workdir.raw_images, setup[1], out_dir=out, client=client, partition_size=5
        )


def test_a_killed_worker_costs_only_its_partitions(setup, trained_workdir, client, tmp_path) -> None:
    """One worker exits right after its first partition is written; every galaxy still comes once."""
    from dask.distributed import WorkerPlugin

    marker = str(tmp_path / "killed")

    class KillAfterFirstPart(WorkerPlugin):  # defined here so that cloudpickle sends it by value
        def transition(self, key, start, finish, **kwargs) -> None:
            if finish == "memory" and str(key).startswith("morphomass-predict-part"):
                try:
                    os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                except FileExistsError:
                    return
                os._exit(1)

    client.register_plugin(KillAfterFirstPart(), name="kill-after-first-part")
    try:
        result = _run(setup, trained_workdir, tmp_path / "out", client)
    finally:
        client.unregister_worker_plugin("kill-after-first-part")
    assert Path(marker).exists()  # a worker did die
    assert result.summary["partitions_written"] == 4
    _assert_same(read_predictions(tmp_path / "out"), setup[2])
    client.wait_for_workers(2, timeout=60)


def test_read_predictions_refuses_an_unfinished_folder(setup, trained_workdir, client, tmp_path) -> None:
    with pytest.raises(InputDataError, match="no _partitions.json"):
        read_predictions(tmp_path)
    out = tmp_path / "out"
    _run(setup, trained_workdir, out, client)
    (out / part_name(1)).write_bytes(b"changed")
    with pytest.raises(InputDataError, match=r"1 of 4 partitions are missing or modified \(first part-00001"):
        read_predictions(out)
    (out / PARTITIONS_NAME).write_text("[]")
    with pytest.raises(InputDataError, match="not a morphomass-partitioned-predictions record"):
        read_predictions(out)
    with pytest.raises(InputDataError, match="partition_size must be a positive integer"):
        predict_distributed(
            setup[0], trained_workdir.raw_images, setup[1], out_dir=out, client=client, partition_size=0
        )


def test_an_image_mapping_travels_per_partition(setup, trained_workdir, client, tmp_path) -> None:
    bundle_dir, catalog, expected = setup
    band = load_bundle(bundle_dir).manifest["preprocessing"]["band"]
    images = {int(o): trained_workdir.raw_images / band / f"{o}.fits" for o in catalog["objid"]}
    dropped = int(expected.loc[expected["flags"] == "", "objid"].iloc[0])
    del images[dropped]  # no entry: flagged missing_image, the others as before
    predict_distributed(
        bundle_dir,
        images,
        catalog,
        out_dir=tmp_path / "out",
        client=client,
        partition_size=PARTITION_SIZE,
        stars=trained_workdir.stars,
    )
    got = read_predictions(tmp_path / "out").set_index("objid")
    assert got.loc[dropped, "flags"] == "missing_image"
    keep = expected["objid"] != dropped
    _assert_same(got.drop(index=dropped).reset_index(), expected[keep].reset_index(drop=True))
    with pytest.raises(InputDataError, match="model must be 'auto' or one of the bundle's models"):
        predict_distributed(bundle_dir, images, catalog, out_dir=tmp_path / "x", client=client, model="ugriz")
    with pytest.raises(InputDataError, match="batch_size must be at least 1, got 0"):
        predict_distributed(bundle_dir, images, catalog, out_dir=tmp_path / "x", client=client, batch_size=0)
    with pytest.raises(InputDataError, match="expected a folder of FITS images"):
        predict_distributed(bundle_dir, tmp_path / "none", catalog, out_dir=tmp_path / "x", client=client)


def test_an_unreachable_scheduler_is_a_one_line_error(setup, trained_workdir, tmp_path) -> None:
    import dask

    bundle_dir, catalog, _ = setup
    with (
        dask.config.set({"distributed.comm.timeouts.connect": "1s"}),
        pytest.raises(InputDataError, match=r"cannot reach the Dask scheduler at 'tcp://127.0.0.1:1'"),
    ):
        predict_distributed(
            bundle_dir, trained_workdir.raw_images, catalog, out_dir=tmp_path, client="tcp://127.0.0.1:1"
        )


def test_cli_predicts_on_a_scheduler_into_a_folder(setup, trained_workdir, client, tmp_path, capsys) -> None:
    bundle_dir, catalog, expected = setup
    catalog_path = tmp_path / "catalog.csv"
    catalog.to_csv(catalog_path, index=False)
    args = ["-q", "predict", "--model", str(bundle_dir), "--images", str(trained_workdir.raw_images)]
    args += ["--catalog", str(catalog_path), "--stars", str(trained_workdir.stars), "--preset", "tiny"]
    out = tmp_path / "out"
    assert (
        cli.main(
            [*args, "--scheduler", client.scheduler.address, "--partition-size", "12", "--out", str(out)]
        )
        == 0
    )
    assert "partitions: 2" in capsys.readouterr().out
    _assert_same(read_predictions(out), expected)

    assert cli.main([*args, "--workers", "1", "--out", str(tmp_path / "p.parquet")]) == 2
    assert "expected a folder (partitioned Parquet)" in capsys.readouterr().err
    assert cli.main([*args, "--workers", "1", "--scheduler", "tcp://127.0.0.1:1", "--out", str(out)]) == 2
    assert "--workers and --scheduler exclude each other" in capsys.readouterr().err
    assert cli.main([*args, "--out", str(out)]) == 2
    assert "a folder of partitions needs --workers or --scheduler" in capsys.readouterr().err
