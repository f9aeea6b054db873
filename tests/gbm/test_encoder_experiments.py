"""The encoder-source feature family (``enc_<name>_*``) and its experiments; the paper's ones leave it out."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from factories.gbm_tables import make_synthetic_tables
from morphomass.errors import InputDataError
from morphomass.gbm.experiments import Experiment, build_features, cv_group, make_experiments
from morphomass.gbm.table import FeatureTable, encoder_columns_of, encoder_names, feature_groups, join_tables

CATALOG_G = ["cat_z", "cat_lum_g"]
CATALOG_GI = ["cat_z", "cat_lum_g", "cat_lum_i", "cat_ratio_g_i"]


@pytest.fixture(name="tables", scope="module")
def fixture_tables() -> tuple[FeatureTable, FeatureTable]:
    """Return the synthetic table, and the same plus the columns of encoders ``zoo_v2`` and ``rand``."""
    plain = join_tables(*make_synthetic_tables(60, rng=np.random.default_rng(1), n_trunk=5, n_dead=1))
    rng = np.random.default_rng(2)
    extra = {f"enc_zoo_v2_{k:04d}": rng.normal(size=60).astype(np.float32) for k in range(3)}
    extra |= {f"enc_rand_{k:04d}": rng.normal(size=60).astype(np.float32) for k in range(2)}
    features = pd.concat([plain.features, pd.DataFrame(extra)], axis=1)
    return plain, dataclasses.replace(plain, features=features)


def test_encoder_columns_form_their_own_group_and_names() -> None:
    columns = ["lum_sum", "enc_zoo_v2_0000", "cnn4_f00", "enc_rand_0000", "enc_zoo_v2_0001", "enc_bad"]
    groups = feature_groups(columns)
    assert groups["encoders"] == ["enc_zoo_v2_0000", "enc_rand_0000", "enc_zoo_v2_0001", "enc_bad"]
    assert groups["other"] == []
    assert encoder_names(columns) == ("zoo_v2", "rand")
    assert encoder_columns_of(columns, "zoo_v2") == ["enc_zoo_v2_0000", "enc_zoo_v2_0001"]
    assert encoder_columns_of(columns, "zoo") == []


def test_without_encoders_the_experiments_are_unchanged() -> None:
    before = make_experiments(["g", "gr"])
    assert make_experiments(["g", "gr"], encoder_names=()) == before
    with_source = make_experiments(["g", "gr"], encoder_names=("zoo_v2",))
    assert with_source[: len(before)] == before
    added = {e.name: e for e in with_source[len(before) :]}
    assert set(added) == {"g_morph_enc_zoo_v2", "g_enc_zoo_v2", "gi_morph_enc_zoo_v2", "gi_enc_zoo_v2"}
    assert all(e.encoders == ("zoo_v2",) for e in added.values())
    groups = {name: cv_group(e) for name, e in added.items()}
    assert groups == {
        "g_morph_enc_zoo_v2": "morph",
        "g_enc_zoo_v2": "colour_morph",
        "gi_morph_enc_zoo_v2": "colour_morph",
        "gi_enc_zoo_v2": "colour_morph",
    }
    no_i = [e.name for e in make_experiments(["g"], available_bands="g", encoder_names=("rand",))]
    assert "g_enc_rand" in no_i and "gi_enc_rand" not in no_i


def test_paper_experiments_leave_every_encoder_out(tables: tuple[FeatureTable, FeatureTable]) -> None:
    plain, with_encoders = tables
    for experiment in make_experiments(["gr"]):
        if experiment.features_from is None:
            frame = build_features(with_encoders, experiment)
            assert list(frame.columns) == list(build_features(plain, experiment).columns), experiment.name


def test_encoder_experiments_add_only_their_source(tables: tuple[FeatureTable, FeatureTable]) -> None:
    plain, with_encoders = tables
    by = {e.name: e for e in make_experiments(["g"], encoder_names=with_encoders.encoder_names)}
    zoo = [f"enc_zoo_v2_{k:04d}" for k in range(3)]
    g_morph = list(build_features(plain, by["g_morph"]).columns)
    assert list(build_features(with_encoders, by["g_morph_enc_zoo_v2"]).columns) == g_morph + zoo
    assert list(build_features(with_encoders, by["g_enc_zoo_v2"]).columns) == zoo + CATALOG_G
    assert list(build_features(with_encoders, by["gi_enc_rand"]).columns) == [
        "enc_rand_0000",
        "enc_rand_0001",
        *CATALOG_GI,
    ]
    gi_morph = list(build_features(plain, by["gi_morph"]).columns)
    assert list(build_features(with_encoders, by["gi_morph_enc_zoo_v2"]).columns) == [
        *gi_morph[: -len(CATALOG_GI)],
        *zoo,
        *CATALOG_GI,
    ]
    values = build_features(with_encoders, by["g_enc_zoo_v2"])[zoo].to_numpy()
    np.testing.assert_array_equal(values, with_encoders.features[zoo].to_numpy())


def test_missing_encoder_columns_name_the_source(tables: tuple[FeatureTable, FeatureTable]) -> None:
    plain, _ = tables
    with pytest.raises(InputDataError, match=r"encoder source 'zoo' \(enc_zoo_\*\).*cnn\.encoders\.zoo"):
        build_features(plain, Experiment("g_enc_zoo", morphology=False, catalog_bands="g", encoders=("zoo",)))
