"""Configuration: presets, TOML files, overrides, validation messages, runtime fields and hashes."""

from __future__ import annotations

from pathlib import Path

import pytest

from morphomass.config import (
    PRESETS,
    STAGE_CONFIG,
    CnnConfig,
    FetchConfig,
    MockConfig,
    PipelineConfig,
    PreprocessConfig,
    load_config,
    runtime_fields,
    section_hash,
    stage_config_hash,
    without_runtime_fields,
)
from morphomass.errors import ConfigError


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_validates(preset: str) -> None:
    config = load_config(preset)
    assert isinstance(config, PipelineConfig)
    assert config.preset == preset


def test_paper_preset_is_the_class_defaults() -> None:
    assert load_config("paper").model_dump() == PipelineConfig().model_dump()


def test_presets_differ_in_survey_size() -> None:
    sizes = {name: load_config(name).mock.n_galaxies for name in ("paper", "quick", "tiny")}
    assert sizes["paper"] > sizes["quick"] > sizes["tiny"]


def test_toml_overrides_preset_and_keeps_other_values(tmp_path: Path) -> None:
    path = _write(tmp_path, "[mock]\nn_galaxies = 123\n\n[catalog]\nchi2_max = 3.5\n")
    config = load_config("tiny", path)
    assert config.mock.n_galaxies == 123
    assert config.catalog.chi2_max == 3.5
    # values the file does not name keep the preset's
    assert config.mock.image_bands == ("g", "i")
    assert config.cnn.epochs == load_config("tiny").cnn.epochs


def test_overrides_apply_after_toml(tmp_path: Path) -> None:
    path = _write(tmp_path, "[mock]\nn_galaxies = 123\nseed = 7\n")
    config = load_config("tiny", path, {"mock": {"n_galaxies": 9}})
    assert config.mock.n_galaxies == 9
    assert config.mock.seed == 7


def test_preset_key_in_toml_is_ignored(tmp_path: Path) -> None:
    path = _write(tmp_path, 'preset = "paper"\n')
    assert load_config("tiny", path).preset == "tiny"


def test_nested_net_override_merges(tmp_path: Path) -> None:
    path = _write(tmp_path, "[cnn.nets.cnn1]\ninput_size = 48\n")
    nets = load_config("tiny", path).cnn.nets
    assert nets["cnn1"].input_size == 48
    assert nets["cnn1"].backbone == "resnet18"
    assert set(nets) == {"cnn1", "cnn2", "cnn3"}


def test_bands_are_put_in_sdss_order() -> None:
    config = load_config("tiny", overrides={"mock": {"image_bands": ["i", "g"]}})
    assert config.mock.image_bands == ("g", "i")


@pytest.mark.parametrize(
    ("overrides", "pattern"),
    [
        ({"mock": {"n_galaxies": 0}}, r"mock\.n_galaxies = 0: .*greater than or equal to 1"),
        ({"mock": {"bogus_key": 1}}, r"mock\.bogus_key = 1: Extra inputs are not permitted"),
        ({"nonsense": {"a": 1}}, r"nonsense = .*Extra inputs are not permitted"),
        ({"mock": {"image_bands": ["g", "x"]}}, r"mock\.image_bands = \['g', 'x'\]: .*subset of"),
        ({"mock": {"image_bands": ["g", "g"]}}, r"mock\.image_bands = .*must not repeat"),
        ({"mock": {"image_bands": []}}, r"mock\.image_bands = \[\]: .*non-empty"),
        ({"catalog": {"test_fraction": 1.5}}, r"catalog\.test_fraction = 1\.5: .*less than 1"),
        ({"cosmology": {"convention": "mine"}}, r"cosmology\.convention = 'mine'"),
        ({"cnn": {"nets": {"cnn1": {"input_size": 8}}}}, r"cnn\.nets\.cnn1\.input_size = 8"),
        ({"gbm": {"num_leaves": "many"}}, r"gbm\.num_leaves = 'many'"),
    ],
)
def test_invalid_values_name_field_and_value(overrides: dict, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        load_config("tiny", overrides=overrides)


def test_invalid_value_in_file_names_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "[preprocess]\nnoise_target = 2.0\n")
    with pytest.raises(ConfigError, match=rf"{path.name}.*preprocess\.noise_target = 2\.0"):
        load_config("quick", path)


def test_bad_toml_names_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "[mock\nn_galaxies = 3\n")
    with pytest.raises(ConfigError, match=rf"{path.name} is not valid TOML"):
        load_config("quick", path)


def test_missing_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(ConfigError, match=r"absent\.toml does not exist"):
        load_config("quick", path)


def test_unknown_preset_lists_the_choices() -> None:
    with pytest.raises(
        ConfigError, match=r"unknown preset 'huge'; expected one of \['paper', 'quick', 'tiny'\]"
    ):
        load_config("huge")


def test_assignment_is_validated() -> None:
    config = load_config("tiny")
    with pytest.raises(ValueError, match="n_galaxies"):
        config.mock.n_galaxies = -3


def test_section_hash_is_stable() -> None:
    first = section_hash(load_config("quick"), "mock", "cosmology")
    second = section_hash(load_config("quick"), "mock", "cosmology")
    assert first == second
    assert len(first) == 64
    int(first, 16)  # hex digest


def test_section_hash_ignores_section_order() -> None:
    config = load_config("quick")
    assert section_hash(config, "mock", "cosmology") == section_hash(config, "cosmology", "mock")


def test_section_hash_is_sensitive_to_its_sections_only() -> None:
    base = load_config("quick")
    changed_mock = load_config("quick", overrides={"mock": {"seed": base.mock.seed + 1}})
    changed_gbm = load_config("quick", overrides={"gbm": {"num_leaves": base.gbm.num_leaves + 1}})
    assert section_hash(changed_mock, "mock") != section_hash(base, "mock")
    assert section_hash(changed_gbm, "mock") == section_hash(base, "mock")
    assert section_hash(changed_gbm, "gbm") != section_hash(base, "gbm")
    # no section named: the whole configuration
    assert section_hash(changed_gbm) != section_hash(base)


def test_section_hash_sees_float_changes() -> None:
    base = load_config("quick")
    nudged = load_config("quick", overrides={"cosmology": {"om0": base.cosmology.om0 + 1e-9}})
    assert section_hash(nudged, "cosmology") != section_hash(base, "cosmology")


def test_runtime_fields_are_marked_on_the_models() -> None:
    assert runtime_fields(MockConfig) == ("workers",)
    assert runtime_fields(PreprocessConfig) == ("workers", "scheduler")
    assert runtime_fields(CnnConfig) == (
        "accelerator",
        "devices",
        "strategy",
        "num_nodes",
        "workers",
        "inference_batch_size",
        "inference_precision",
    )
    assert set(runtime_fields(FetchConfig)) == {
        "workers",
        "timeout_s",
        "retries",
        "backoff_s",
        "max_backoff_s",
        "requests_per_second",
        "cache_dir",
        "frame_cache_max_gb",
        "max_consecutive_failures",
    }


def test_without_runtime_fields_resets_them_and_copies() -> None:
    config = load_config("tiny", overrides={"preprocess": {"workers": 3}, "cnn": {"accelerator": "cpu"}})
    neutral = without_runtime_fields(config)
    assert (neutral.preprocess.workers, neutral.cnn.accelerator) == (None, "auto")
    assert (config.preprocess.workers, config.cnn.accelerator) == (3, "cpu")
    assert neutral.mock.workers is None and config.mock.workers == 1  # the tiny preset's value, reset


#: ``stage_config_hash`` of the quick preset. A change of these values makes every existing work directory
#: redo the stage: change a value only on purpose (a new field, another default), never in a refactor.
QUICK_HASHES = {
    "mock": "3f27865aae541201e4318344a396bcf7ba506c1db677b966cbf18b1efcae5c1f",
    "fetch": "36c7315bf01d0bd328b0d88336be7b7f0cbd1dcf9ca31a17b982dedc4199992d",
    "catalog": "6070ac1ab720990f71b97d068545191ac54bd9b8bb0e29d6c8ca483b615360c7",  # + catalog.target*
    "preprocess": "0a852bdbd95aa4d6786661bb3fb475b2d85675295516ec54b0ee9317fd22e0d9",
    "train-cnn": "f890f4480c2e034988fe578572337aa5a71f820c79a1d61ae124384429532a79",
    "extract": "f890f4480c2e034988fe578572337aa5a71f820c79a1d61ae124384429532a79",
    "train-gbm": "c85b295265082dce5c7762cc6febe1612466f638c5a5f057ef2655d1ec92980b",
    "evaluate": "f166d26adbe1e98832a7c5d27e73c8b1ff197629f3dd236b83831a3bbe57c41e",
}


@pytest.mark.parametrize("stage", sorted(QUICK_HASHES))
def test_stage_config_hashes_keep_their_values(stage: str) -> None:
    assert stage_config_hash(load_config("quick"), stage) == QUICK_HASHES[stage]


def test_stage_config_hash_ignores_runtime_fields_only() -> None:
    config = load_config("quick")
    busy = load_config(
        "quick", overrides={"fetch": {"workers": 9, "cache_dir": "/tmp/c"}, "mock": {"workers": 2}}
    )
    changed = load_config("quick", overrides={"preprocess": {"chunk_images": 7}})
    for stage in STAGE_CONFIG:
        assert stage_config_hash(busy, stage) == stage_config_hash(config, stage)
    assert stage_config_hash(changed, "preprocess") != stage_config_hash(config, "preprocess")
    assert stage_config_hash(changed, "bundle") != stage_config_hash(config, "bundle")
    assert stage_config_hash(changed, "catalog") == stage_config_hash(config, "catalog")


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("[mock]\nn_galaxies = true\n", r"mock\.n_galaxies = True: Input should be a valid integer"),
        ("[gbm]\nnum_leaves = 40.0\n", r"gbm\.num_leaves = 40\.0: Input should be a valid integer"),
        ("[catalog]\nchi2_max = false\n", r"catalog\.chi2_max = False: Input should be a valid number"),
        ("[cnn]\naugment_flips = 1\n", r"cnn\.augment_flips = 1: Input should be a valid boolean"),
        ("[gbm.cv_grid]\nnum_leaves = [true]\n", r"gbm\.cv_grid\.num_leaves\.0\.int = True"),
        ("[fetch]\nrequests_per_second = inf\n", r"fetch\.requests_per_second = inf: .*finite number"),
        ("[cosmology]\nh0_km_s_mpc = nan\n", r"cosmology\.h0_km_s_mpc = nan: .*finite number"),
        ("[catalog.m_sun_ab]\ng = -inf\n", r"catalog\.m_sun_ab\.g = -inf: .*finite number"),
        (
            "[catalog]\ntest_fraction = 0.6\nval_fraction = 0.5\n",
            r"catalog\.val_fraction = 0\.5: .*val_fraction must be below 1.*0\.6 \+ 0\.5 = 1\.1",
        ),
        (
            "[catalog]\ntest_fraction = 0.5\nval_fraction = 0.5\n",
            r"catalog\.val_fraction = 0\.5: .*must be below 1.* = 1$",
        ),
    ],
)
def test_strict_types_finite_numbers_and_split_in_a_file(tmp_path: Path, text: str, pattern: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError, match=rf"{path.name}.*{pattern}"):
        load_config("quick", path)


def test_integers_are_accepted_for_reals_with_the_same_hash(tmp_path: Path) -> None:
    # TOML writes 5 for 5.0: accepted, stored as a float, hashed as the lax float was
    as_int = load_config(
        "quick", _write(tmp_path, "[catalog]\nchi2_max = 5\n[cosmology]\nh0_km_s_mpc = 70\n")
    )
    assert isinstance(as_int.catalog.chi2_max, float)
    for stage in ("catalog", "bundle"):
        assert stage_config_hash(as_int, stage) == stage_config_hash(load_config("quick"), stage)


def test_assignment_is_strict_and_finite() -> None:
    config = load_config("tiny")
    with pytest.raises(ValueError, match="valid integer"):
        config.cnn.epochs = True
    with pytest.raises(ValueError, match="finite number"):
        config.fetch.requests_per_second = float("inf")
    with pytest.raises(ValueError, match="test_fraction \\+ val_fraction must be below 1"):
        config.catalog.val_fraction = 0.95
    assert (config.cnn.epochs, config.catalog.val_fraction) == (1, 0.1)


def test_empty_nets_is_refused_at_load(tmp_path: Path) -> None:
    path = _write(tmp_path, "[cnn]\nnets = {}\n")
    with pytest.raises(
        ConfigError, match=rf"{path.name}\): cnn\.nets = \{{\}}: expected at least one network"
    ):
        load_config("paper", path)


def test_a_config_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes("[mock]\n# r\xe9glage\nseed = 3\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1\.toml: expected UTF-8 TOML; byte \d+ is not UTF-8"):
        load_config("tiny", path)
