"""Per-fold feature selection of the interval calibration (issue 16): the selector repeats training's."""

from __future__ import annotations

import numpy as np
import pytest

from factories.gbm_tables import make_synthetic_tables
from morphomass.config import load_config
from morphomass.errors import ConfigError
from morphomass.gbm.experiments import make_experiments
from morphomass.gbm.stage import _Trainer, fold_feature_selector
from morphomass.gbm.table import join_tables
from morphomass.gbm.train import training_target


@pytest.fixture(name="trainer", scope="module")
def fixture_trainer(tmp_path_factory) -> _Trainer:
    sample, phot, cnn = make_synthetic_tables(400, rng=np.random.default_rng(11), n_trunk=12, n_dead=2)
    table = join_tables(sample, phot, cnn)
    # screening active (more candidates than 20) and a top-k of 5, so both selection steps run
    config = load_config(
        "tiny",
        overrides={"gbm": {"num_threads": 1, "band_sequence": [], "top_k": 5, "prefilter_features": 20}},
    )
    out = tmp_path_factory.mktemp("gbm")
    trainer = _Trainer(table, config.gbm, out, "inputs", {}, keep={"g_morph", "gi_morph"})
    for exp in make_experiments([]):
        if exp.name in ("g_morph", "gi_morph"):
            trainer.run(exp)
    return trainer


def _selector(trainer: _Trainer, name: str, **kwargs):
    exp = next(e for e in make_experiments([]) if e.name == name)
    label, weight = training_target(
        trainer.table.meta["ml"].to_numpy(), trainer.table.meta["ml_err"].to_numpy(), objective=exp.objective
    )
    train = np.flatnonzero(trainer.table.split_mask("train"))
    frame = trainer.frames.get(name)
    select = fold_feature_selector(
        frame, label, weight, train, trainer.val, exp=exp, config=trainer.config, chosen={}, **kwargs
    )
    return select, frame, train


@pytest.mark.parametrize("name", ["g_morph", "gi_morph"])
def test_selection_on_every_training_row_is_the_point_models(trainer: _Trainer, name: str) -> None:
    select, frame, train = _selector(trainer, name)
    columns = select(np.arange(train.size))
    assert list(frame.columns[columns]) == trainer.info[name]["features"]  # same names, same order
    assert columns.size == (20 if name == "g_morph" else 5)


def test_selection_on_part_of_the_rows_uses_only_those_rows(trainer: _Trainer, caplog) -> None:
    select, frame, train = _selector(trainer, "gi_morph", final_features=trainer.info["gi_morph"]["features"])
    half = np.arange(0, train.size, 2)
    with caplog.at_level("INFO", logger="morphomass.gbm.stage"):
        columns = select(half)
    assert columns.size == 5 and np.unique(columns).size == 5
    assert f"gi_morph: a fold model selects 5 features on {half.size} galaxies" in caplog.text
    # the label of the rows left out does not matter: scrambling it leaves the selection unchanged
    rest = np.setdiff1d(np.arange(train.size), half)
    meta = trainer.table.meta.copy()
    ml = meta["ml"].to_numpy().copy()
    ml[train[rest]] = ml[train[rest]][::-1]
    label, weight = training_target(ml, meta["ml_err"].to_numpy(), objective="l1")
    exp = next(e for e in make_experiments([]) if e.name == "gi_morph")
    other = fold_feature_selector(
        frame, label, weight, train, trainer.val, exp=exp, config=trainer.config, chosen={}
    )
    np.testing.assert_array_equal(other(half), columns)


def test_a_borrowed_selection_is_refused(trainer: _Trainer) -> None:
    exp = next(e for e in make_experiments([]) if e.name == "g_morph_top50")
    frame = trainer.frames["g_morph"]
    label = np.ones(len(frame))
    with pytest.raises(
        ConfigError, match="g_morph_top50: per-fold feature selection is not implemented.*'g_morph'"
    ):
        fold_feature_selector(
            frame, label, None, np.arange(10), trainer.val, exp=exp, config=trainer.config, chosen={}
        )
