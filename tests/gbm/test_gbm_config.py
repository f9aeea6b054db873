"""Validation of the gbm and evaluate configuration sections."""

from __future__ import annotations

import pytest

from morphomass.config import load_config
from morphomass.errors import ConfigError


def test_presets_load() -> None:
    for preset in ("paper", "quick", "tiny"):
        config = load_config(preset)
        assert config.gbm.top_k >= 1
        assert config.evaluate.figure_formats
    assert load_config("paper").gbm.cv_search
    assert not load_config("tiny").gbm.cv_search


@pytest.mark.parametrize(
    ("gbm", "match"),
    [
        ({"band_sequence": ["ig"]}, "SDSS order"),
        ({"band_sequence": ["gy"]}, "subset of"),
        ({"cv_grid": {"max_depth": [3]}}, "cv_grid keys must be among"),
        ({"cv_grid": {"num_leaves": []}}, "at least one value"),
        ({"cv_grid": {"num_leaves": [20.5]}}, "must hold integers"),
        ({"max_bin": 300}, "gbm.max_bin"),
        ({"prefilter_features": 0}, "gbm.prefilter_features"),
    ],
)
def test_bad_gbm_values_are_named(gbm: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_config("tiny", overrides={"gbm": gbm})


def test_integer_grid_values_stay_integers() -> None:
    config = load_config(
        "tiny", overrides={"gbm": {"cv_grid": {"num_leaves": [20.0, 40], "learning_rate": [0.1]}}}
    )
    assert config.gbm.cv_grid["num_leaves"] == [20, 40]
    assert all(isinstance(v, int) for v in config.gbm.cv_grid["num_leaves"])


def test_bad_evaluate_values_are_named() -> None:
    with pytest.raises(ConfigError, match="evaluate.figure_formats"):
        load_config("tiny", overrides={"evaluate": {"figure_formats": ["gif"]}})
    with pytest.raises(ConfigError, match="evaluate.irregular_min_p"):
        load_config("tiny", overrides={"evaluate": {"irregular_min_p": 1.5}})
