"""Joining sample.parquet with the feature tables; feature groups; catalogue luminosities and fluxes."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from factories.gbm_tables import make_synthetic_tables
from morphomass.errors import InputDataError
from morphomass.gbm.table import (
    MPC_CM,
    band_features,
    band_luminosities,
    feature_groups,
    flux_features,
    gz2_truth_columns,
    join_tables,
    load_feature_table,
)
from morphomass.gz2 import ANSWER_COLUMNS


@pytest.fixture(name="tables")
def fixture_tables() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    return make_synthetic_tables(80, rng=np.random.default_rng(0), n_trunk=6, n_dead=1)


def test_inner_join_drops_and_counts_missing_galaxies(tables) -> None:
    sample, phot, cnn = tables
    phot = phot.drop(index=[3, 7]).iloc[::-1]  # missing rows, other order
    cnn = cnn.drop(index=[7, 11])
    table = join_tables(sample, phot, cnn)
    assert table.counts["joined"] == 77
    assert table.counts["sample"] == 80
    kept = sample["objid"].drop(index=[3, 7, 11]).to_numpy()
    np.testing.assert_array_equal(table.meta["objid"].to_numpy(), kept)  # sample order
    by_id = phot.set_index("objid")
    np.testing.assert_allclose(
        table.features["lum_sum"].to_numpy(), by_id.loc[kept, "lum_sum"].to_numpy().astype(np.float32)
    )
    assert table.features.shape[1] == phot.shape[1] - 1 + cnn.shape[1] - 1
    assert "objid" not in table.features.columns
    assert sum(table.counts[s] for s in ("train", "val", "test")) == 77
    assert table.available_bands == ("u", "g", "r", "i", "z")


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda s, p, c: (s.drop(columns="target_err"), p, c), r"lacks the columns \['target_err'\]"),
        (lambda s, p, c: (s.assign(split="holdout"), p, c), "split must be one of"),
        (
            lambda s, p, c: (s.assign(target=s["target"].where(s.index != 5, -1.0)), p, c),
            r"row 5 .*target \(ml_g\) must be finite and > 0",
        ),
        (lambda s, p, c: (s, pd.concat([p, p.iloc[:1]]), c), "appears more than once"),
        (lambda s, p, c: (s, p.assign(objid=p["objid"].astype(float)), c), "must be int64"),
        (lambda s, p, c: (s, p.drop(columns="objid"), c), "has no 'objid' column"),
        (lambda s, p, c: (s, p, c.assign(lum_sum=1.0)), "share the feature columns"),
        (lambda s, p, c: (s, p.assign(img_sum="x"), c), "must be numeric"),
        (lambda s, p, c: (s.assign(split="test"), p, c), "train/val splits hold 0/0"),
    ],
)
def test_join_errors_name_the_problem(tables, mutate, match: str) -> None:
    with pytest.raises(InputDataError, match=match):
        join_tables(*mutate(*tables))


def test_load_feature_table_reads_parquet(tables, tmp_path) -> None:
    paths = [tmp_path / n for n in ("sample.parquet", "phot.parquet", "cnn.parquet")]
    for frame, path in zip(tables, paths, strict=True):
        frame.to_parquet(path)
    assert load_feature_table(*paths).counts["joined"] == 80
    paths[1].write_text("not parquet")
    with pytest.raises(InputDataError, match="phot.parquet as Parquet"):
        load_feature_table(*paths)


def test_feature_groups_follow_the_design_names() -> None:
    cols = [
        "lum_sum",
        "image_size_pix",
        "scaling_a",
        "img_mean",
        "redshift",
        "pixel_kpc",
        "cnn1_p_t01_a01",
        "cnn1_trunk_0000",
        "cnn3_p_t02_a04",
        "cnn4_f00",
        "something_else",
    ]
    groups = feature_groups(cols)
    assert groups["luminosity"] == ["lum_sum", "image_size_pix", "scaling_a"]
    assert groups["image"] == ["img_mean"]
    assert groups["distance"] == ["redshift", "pixel_kpc"]
    assert groups["cnn123"] == ["cnn1_p_t01_a01", "cnn1_trunk_0000", "cnn3_p_t02_a04"]
    assert groups["cnn3_probs"] == ["cnn3_p_t02_a04"]
    assert groups["cnn4"] == ["cnn4_f00"]
    assert groups["other"] == ["something_else"]


def test_band_luminosities_from_flux_or_sample_columns() -> None:
    meta = pd.DataFrame(
        {
            "dist_mpc": [10.0, 100.0],
            "flux_g": [1.0, 2.0],
            "flux_i": [3.0, -1.0],
            "lum_i": [5.0, 6.0],
            "lum_g": [7.0, 8.0],
        }
    )
    lum = band_luminosities(meta, "gi")
    np.testing.assert_allclose(lum["lum_g"], [7.0, 8.0])  # every band has lum_<band>: taken as is
    fluxes = band_luminosities(meta.drop(columns="lum_i"), "gi")  # else 4 pi D^2 f for every band
    d_cm = np.array([10.0, 100.0]) * MPC_CM
    np.testing.assert_allclose(fluxes["lum_g"], 4 * math.pi * d_cm**2 * [1.0, 2.0])
    assert fluxes["lum_i"].iloc[0] == pytest.approx(4 * math.pi * d_cm[0] ** 2 * 3.0)
    assert np.isnan(fluxes["lum_i"].iloc[1])  # negative flux -> missing
    with pytest.raises(InputDataError, match=r"lacks \['flux_u'\]"):
        band_luminosities(meta, "ug")


def test_band_features_are_z_luminosities_and_adjacent_ratios() -> None:
    meta = pd.DataFrame({"z": [0.05], "dist_mpc": [200.0], "lum_g": [2.0], "lum_r": [4.0], "lum_i": [8.0]})
    feats = band_features(meta, "ig")  # any order in, SDSS order out
    assert list(feats.columns) == ["cat_z", "cat_lum_g", "cat_lum_i", "cat_ratio_g_i"]
    assert feats["cat_ratio_g_i"].iloc[0] == pytest.approx(0.25)
    assert list(band_features(meta, "gri").columns)[-2:] == ["cat_ratio_g_r", "cat_ratio_r_i"]


def test_flux_features_divide_by_4_pi_d2() -> None:
    feats = pd.DataFrame({"lum_sum": [4 * math.pi * 100.0], "lum_max": [4 * math.pi], "img_sum": [1.0]})
    out = flux_features(feats, np.array([10.0]))
    assert list(out.columns) == ["flux_sum", "flux_max"]
    assert out["flux_sum"].iloc[0] == pytest.approx(1.0)
    assert out["flux_max"].iloc[0] == pytest.approx(0.01)


def test_gz2_truth_columns(tables) -> None:
    sample = tables[0]
    assert list(gz2_truth_columns(sample).columns) == list(ANSWER_COLUMNS)
    with pytest.raises(InputDataError, match="lacks the GZ2 columns"):
        gz2_truth_columns(sample.drop(columns=ANSWER_COLUMNS[0]))
