"""The experiment recipes (DESIGN §4 names) and the feature matrices they build."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

from factories.gbm_tables import make_synthetic_tables
from morphomass.errors import InputDataError
from morphomass.gbm.experiments import Experiment, build_features, cv_group, make_experiments
from morphomass.gbm.table import join_tables

DESIGN_NAMES = {
    "reference_lg_z",
    "g_morph",
    "ablation_no_cnn4",
    "ablation_no_cnn123",
    "ablation_no_luminosity",
    "ablation_no_distance",
    "ablation_no_cnn",
    "g_morph_top50",
    "g_morph_half_train",
    "g_morph_no_total_luminosity",
    "g_morph_gz2_truth",
    "gi_gbm",
    "gi_morph",
}
#: Ours beyond the paper: classical morphology alone and beside the CNNs, with g and with g + i.
CLASSICAL_NAMES = {"g_classical", "g_morph_classical", "gi_classical", "gi_morph_classical"}


@pytest.fixture(name="table", scope="module")
def fixture_table():
    return join_tables(*make_synthetic_tables(60, rng=np.random.default_rng(1), n_trunk=5, n_dead=1))


def test_experiment_names_follow_design() -> None:
    exps = make_experiments(["g", "gr", "ugriz"])
    names = [e.name for e in exps]
    assert DESIGN_NAMES | CLASSICAL_NAMES <= set(names)
    assert {
        "bands_g",
        "bands_g_morph",
        "bands_gr",
        "bands_ugriz_morph",
        "loss_g_morph_l2",
        "loss_g_morph_rmsle",
        "loss_gi_morph_l2",
        "loss_gi_morph_rmsle",
    } <= set(names)
    pattern = re.compile(r"^(bands_[ugriz]+(_morph)?|loss_(g_morph|gi_morph)_(l2|rmsle))$")
    assert all(n in DESIGN_NAMES | CLASSICAL_NAMES or pattern.match(n) for n in names)
    assert len(set(names)) == len(names)
    for k, exp in enumerate(exps):  # reused feature lists come from earlier experiments
        if exp.features_from is not None:
            assert exp.features_from in names[:k]


def test_missing_bands_leave_experiments_out() -> None:
    names = [e.name for e in make_experiments(["g", "gr", "gri"], available_bands="gr")]
    assert "bands_gr" in names and "bands_gri" not in names
    assert not any(n.startswith("gi_") or n.startswith("loss_gi") for n in names)


def test_feature_sets(table) -> None:
    all_features = [c for c in table.features.columns if not c.startswith("morph_")]  # the paper's F1-F4
    by = {e.name: e for e in make_experiments(["gri"])}

    def cols(name: str) -> list[str]:
        return list(build_features(table, by[name]).columns)

    assert cols("g_morph") == all_features
    assert cols("reference_lg_z") == ["cat_z", "cat_lum_g"]
    assert cols("gi_gbm") == ["cat_z", "cat_lum_g", "cat_lum_i", "cat_ratio_g_i"]
    assert cols("gi_morph") == all_features + ["cat_z", "cat_lum_g", "cat_lum_i", "cat_ratio_g_i"]
    assert not any(c.startswith("cnn4_") for c in cols("ablation_no_cnn4"))
    assert any(c.startswith("cnn4_") for c in cols("ablation_no_cnn123"))
    assert not any(c.startswith(("cnn1_", "cnn2_", "cnn3_")) for c in cols("ablation_no_cnn123"))
    assert not any(c.startswith("cnn") for c in cols("ablation_no_cnn"))
    no_lum = cols("ablation_no_luminosity")
    assert not any(c.startswith("lum_") or c in ("image_size_pix", "scaling_a") for c in no_lum)
    no_dist = cols("ablation_no_distance")
    assert "redshift" not in no_dist and "pixel_kpc" not in no_dist
    assert not any(c.startswith("lum_") for c in no_dist)
    assert {"flux_sum", "flux_center5x5", "image_size_pix", "scaling_a"} <= set(no_dist)
    assert "lum_sum" not in cols("g_morph_no_total_luminosity")
    truth = cols("g_morph_gz2_truth")
    assert not any(c.startswith("cnn3_p_") for c in truth)
    assert sum(c.startswith("gz2_p_") for c in truth) == 37
    assert cols("bands_gri") == [
        "cat_z",
        "cat_lum_g",
        "cat_lum_r",
        "cat_lum_i",
        "cat_ratio_g_r",
        "cat_ratio_r_i",
    ]


def test_no_distance_fluxes_are_independent_of_the_distance(table) -> None:
    """A galaxy's flux features equal its luminosity features / (4 pi D^2)."""
    frame = build_features(table, Experiment("x", drop_groups=("distance",), fluxes=True))
    ratio = frame["flux_sum"].to_numpy(np.float64) / table.features["lum_sum"].to_numpy(np.float64)
    np.testing.assert_allclose(ratio, 1 / (4 * np.pi * table.meta["dist_mpc"].to_numpy() ** 2), rtol=1e-5)


def test_build_features_errors(table) -> None:
    with pytest.raises(InputDataError, match="unknown bands"):
        build_features(table, Experiment("bad", morphology=False, catalog_bands="gy"))
    with pytest.raises(InputDataError, match="has no features"):
        build_features(table, Experiment("empty", morphology=False))


def test_cv_groups() -> None:
    groups = {e.name: cv_group(e) for e in make_experiments(["gr"])}
    assert groups["g_morph"] == groups["ablation_no_distance"] == groups["loss_g_morph_rmsle"] == "morph"
    assert groups["gi_morph"] == groups["bands_gr_morph"] == "colour_morph"
    assert groups["reference_lg_z"] == groups["gi_gbm"] == groups["bands_gr"] == "global"


def test_classical_morphology_enters_only_the_experiments_that_ask_for_it(table) -> None:
    features = table.features.drop(columns=[c for c in table.features.columns if c.startswith("morph_")])
    with_classical = dataclasses.replace(
        table, features=features.assign(morph_concentration=3.0, morph_gini=0.5)
    )
    by_name = {e.name: e for e in make_experiments(["g"])}
    for name in ("g_morph", "ablation_no_cnn4", "gi_morph"):
        columns = build_features(with_classical, by_name[name]).columns
        assert not any(c.startswith("morph_") for c in columns)
    both = build_features(with_classical, by_name["g_morph_classical"]).columns
    assert {"morph_concentration", "morph_gini"} <= set(both)
    classical_only = build_features(with_classical, by_name["g_classical"]).columns
    assert {"morph_concentration", "morph_gini"} <= set(classical_only)
    assert not any(c.startswith(("cnn1_", "cnn2_", "cnn3_", "cnn4_")) for c in classical_only)
    assert set(build_features(with_classical, by_name["g_morph"]).columns) == set(both) - {
        "morph_concentration",
        "morph_gini",
    }


def test_classical_experiments_refuse_a_table_without_classical_features(table) -> None:
    features = table.features.drop(columns=[c for c in table.features.columns if c.startswith("morph_")])
    old_table = dataclasses.replace(table, features=features)
    by_name = {e.name: e for e in make_experiments(["g"])}
    with pytest.raises(InputDataError, match="morph_.*rerun 'morphomass preprocess --force'"):
        build_features(old_table, by_name["g_classical"])
