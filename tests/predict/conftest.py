"""Fixtures of the prediction tests (tests/factories/trained.py makes the trained work directory)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from factories.trained import make_trained_workdir, small_config
from morphomass.workdir import WorkDir


@pytest.fixture(name="trained_workdir", scope="session")
def fixture_trained_workdir(tmp_path_factory: pytest.TempPathFactory) -> WorkDir:
    """Make a work directory: raw/, sample.parquet, images.zarr, feature tables, models/cnn, models/gbm."""
    return make_trained_workdir(tmp_path_factory.mktemp("trained") / "work")


@pytest.fixture(name="bundle_dir")
def fixture_bundle_dir(trained_workdir: WorkDir, tmp_path: Path) -> Path:
    """Copy the trained work directory's models/ with a full bundle.json (a copy free to tamper with)."""
    from morphomass.predict import write_bundle

    write_bundle(small_config(), trained_workdir)
    return Path(shutil.copytree(trained_workdir.models, tmp_path / "models"))


@pytest.fixture(name="client", scope="module")
def fixture_client():
    """One Dask LocalCluster of two worker processes (one thread each) per test module, and its client."""
    from dask.distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            scheduler_kwargs={"dashboard_address": ":0"},  # HTTP endpoints on a free port, never 8787
            silence_logs=logging.ERROR,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client
