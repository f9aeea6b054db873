"""Prediction of an LSDB (HATS) catalogue: HATS in, predictions as HATS out, the single-process numbers."""

from __future__ import annotations

import os
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from factories.trained import predict_catalog_of, small_config
from morphomass.errors import InputDataError
from morphomass.predict import load_bundle, write_bundle
from morphomass.predict.hats import predict_hats
from morphomass.workdir import WorkDir

# lsdb 0.11.1 sets pandas' 'mode.chained_assignment' option when it is imported, which pandas 3.1 deprecates
# (Pandas4Warning at import time); nothing of ours can avoid it, so the import alone is shielded from it.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r"The 'mode\.chained_assignment' option is deprecated")
    if os.environ.get("CI"):  # .ci/run installs the [scale] extra: there these tests must run, never skip
        import lsdb
    else:
        lsdb = pytest.importorskip("lsdb", reason="the [scale] extra is not installed")

# lsdb 0.11.1 and nested-pandas 0.7.2 call set_index/drop with inplace=True, which pandas 3.1 deprecates
# (Pandas4Warning, inside their loaders); nothing of ours can avoid it.
pytestmark = pytest.mark.filterwarnings(
    r"ignore:The inplace keyword in NestedFrame\.(set_index|drop) is deprecated:pandas.errors.Pandas4Warning"
)


@pytest.fixture(name="setup", scope="module")
def fixture_setup(trained_workdir: WorkDir, tmp_path_factory: pytest.TempPathFactory):
    """Return the bundle (a copy), the catalogue and its single-process predictions."""
    write_bundle(small_config(), trained_workdir)
    bundle_dir = Path(shutil.copytree(trained_workdir.models, tmp_path_factory.mktemp("h") / "models"))
    catalog = predict_catalog_of(trained_workdir)
    catalog.loc[catalog.index[::4], "modelMag_i"] = np.nan  # some galaxies predicted by the g model
    expected = load_bundle(bundle_dir).predict(
        trained_workdir.raw_images, catalog, stars=trained_workdir.stars
    )
    return bundle_dir, catalog, expected


def test_hats_in_predictions_as_hats_out(setup, trained_workdir, client, tmp_path) -> None:
    bundle_dir, catalog, expected = setup
    band = load_bundle(bundle_dir).manifest["preprocessing"]["band"]
    lsdb.from_dataframe(catalog, ra_column="ra", dec_column="dec", partition_rows=6).write_catalog(
        tmp_path / "in", catalog_name="galaxies", progress_bar=False
    )
    galaxies = lsdb.read_hats(tmp_path / "in")
    assert galaxies.npartitions > 1
    template = str(trained_workdir.raw_images / band / "{objid}.fits")
    predicted = predict_hats(galaxies, bundle_dir, image_template=template, stars=trained_workdir.stars)
    predicted.write_catalog(tmp_path / "out", catalog_name="predictions", progress_bar=False)

    got = lsdb.read_hats(tmp_path / "out").compute().set_index("objid").loc[expected["objid"]]
    assert len(got) == len(expected)  # every galaxy once
    for column in expected.columns.drop("objid"):
        want = expected[column].to_numpy()
        if pd.api.types.is_numeric_dtype(expected[column]):
            values = got[column].to_numpy(dtype="float64", na_value=np.nan)
            np.testing.assert_allclose(values, want, rtol=1e-6, atol=0, err_msg=column)
        else:
            assert got[column].fillna("").tolist() == list(want), column
    assert (expected["model"] == "g").any() and (expected["model"] == "gi").any()
    np.testing.assert_allclose(got["z"].to_numpy(dtype="float64"), catalog["z"].to_numpy(), rtol=0)


def test_an_image_column_instead_of_a_template(setup, trained_workdir, client) -> None:
    bundle_dir, catalog, expected = setup
    band = load_bundle(bundle_dir).manifest["preprocessing"]["band"]
    paths = [str(trained_workdir.raw_images / band / f"{o}.fits") for o in catalog["objid"]]
    galaxies = lsdb.from_dataframe(catalog.assign(image=paths), partition_rows=10)
    got = predict_hats(galaxies, bundle_dir, image_column="image", stars=trained_workdir.stars).compute()
    got = got.set_index("objid").loc[expected["objid"]]
    np.testing.assert_allclose(got["ml_pred"].to_numpy("float64"), expected["ml_pred"], rtol=1e-6)
    assert got["flags"].fillna("").tolist() == expected["flags"].tolist()


def test_bad_arguments_are_one_line_errors(setup, monkeypatch) -> None:
    bundle_dir, catalog, _ = setup
    galaxies = lsdb.from_dataframe(catalog)
    with pytest.raises(InputDataError, match="give exactly one of image_column and image_template"):
        predict_hats(galaxies, bundle_dir)
    with pytest.raises(InputDataError, match="give exactly one of image_column and image_template"):
        predict_hats(galaxies, bundle_dir, image_column="image", image_template="{objid}.fits")
    with pytest.raises(InputDataError, match=r"lacks column\(s\) \['image'\]"):
        predict_hats(galaxies, bundle_dir, image_column="image")
    with pytest.raises(InputDataError, match=r"lacks column\(s\) \['z'\]"):
        predict_hats(lsdb.from_dataframe(catalog.drop(columns="z")), bundle_dir, image_template="{objid}")
    monkeypatch.setitem(sys.modules, "lsdb", None)
    with pytest.raises(ImportError, match=r"pip install 'morphomass\[scale\]'"):
        predict_hats(galaxies, bundle_dir, image_template="{objid}.fits")
