"""Gradient boosting (SPEC G1-G2, E2-E7, E10-E11): LightGBM on the image, CNN and catalogue features.

``run_train_gbm`` trains every experiment of :func:`~morphomass.gbm.experiments.make_experiments` and writes
``models/gbm/``. lightgbm is imported only when a model is trained or loaded.
"""

from morphomass.gbm.experiments import Experiment, build_features, make_experiments
from morphomass.gbm.importance import permutation_importance
from morphomass.gbm.stage import run_train_gbm
from morphomass.gbm.table import FeatureTable, feature_groups, join_tables, load_feature_table
from morphomass.gbm.train import (
    cv_search,
    fit_booster,
    lgb_params,
    predict_ml,
    rank_by_split_count,
    training_target,
)

__all__ = [
    "Experiment",
    "FeatureTable",
    "build_features",
    "cv_search",
    "feature_groups",
    "fit_booster",
    "join_tables",
    "lgb_params",
    "load_feature_table",
    "make_experiments",
    "permutation_importance",
    "predict_ml",
    "rank_by_split_count",
    "run_train_gbm",
    "training_target",
]
