"""Helpers of the prediction tests: a small trained work directory, made in a few seconds.

The mock, catalogue, preprocess and extract stages run for real on a 24-galaxy mock survey; the networks are
untrained (random weights, saved with the cnn package's own ``save_network``) and the two GBMs (``g_morph``
and ``gi_morph``) are fitted with the gbm package's public functions on the real feature tables. That is
everything a bundle needs, without the minute of training of the tiny preset (the slow end-to-end test does
that).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from morphomass.config import NetConfig, PipelineConfig, load_config
from morphomass.pipeline import execute_stage
from morphomass.workdir import WorkDir, write_json_atomic, write_text_atomic

N_GALAXIES = 24


def small_config() -> PipelineConfig:
    """Return the tiny preset with CNN1 a custom (Dieleman) network at 69 px, CNN4 on top, 24 galaxies."""
    config = load_config("tiny", overrides={"mock": {"n_galaxies": N_GALAXIES, "seed": 11}})
    config.cnn.nets = {"cnn1": NetConfig(backbone="dieleman", input_size=69)}
    return config


def save_networks(config: PipelineConfig, workdir: WorkDir) -> None:
    import torch

    from morphomass.cnn.architectures import build_gz2_net, make_ml_net
    from morphomass.cnn.weights import save_network

    torch.manual_seed(0)
    cnn1 = build_gz2_net("dieleman", dropout=config.cnn.dropout)
    cnn4 = make_ml_net(cnn1)
    for name, net, kind in (("cnn1", cnn1, "gz2"), ("cnn4", cnn4, "ml")):
        card = {
            "name": name,
            "kind": kind,
            "backbone": "dieleman",
            "input_size": 69,
            "dropout": config.cnn.dropout,
            "train_key": f"test-{name}",
            "trunk_features": 128,
            "base": "cnn1" if kind == "ml" else None,
        }
        save_network(workdir.models / "cnn", name, net.eval(), card)


def fit_gbms(config: PipelineConfig, workdir: WorkDir) -> None:
    """g_morph (image + CNN features) and gi_morph (+ catalogue g, i) as the train-gbm stage writes them.

    Each model gets its interval calibration (``intervals_<experiment>.json``), cross-conformal on the
    training rows with 3 folds.
    """
    from morphomass.gbm import Experiment, build_features, fit_booster, lgb_params, load_feature_table
    from morphomass.gbm.train import training_target
    from morphomass.intervals import calibration_levels, fit_cross_conformal

    table = load_feature_table(
        workdir.sample, workdir.features / "photometric.parquet", workdir.features / "cnn.parquet"
    )
    train, val = table.split_mask("train"), table.split_mask("val")
    ml, ml_err = table.meta["target"].to_numpy(), table.meta["target_err"].to_numpy()
    label, weight = training_target(ml, ml_err, objective="l1")
    params = lgb_params(config.gbm, objective="l1", min_data_in_leaf=2, num_leaves=4, min_data_in_bin=1)
    floor = float(table.meta["target"].to_numpy()[train].min())
    for experiment in (Experiment("g_morph"), Experiment("gi_morph", catalog_bands="gi")):
        frame = build_features(table, experiment)
        values = frame.to_numpy(dtype=np.float32)
        columns = [c for c, v in zip(frame.columns, values[train].T, strict=True) if np.nanstd(v) > 0]
        x = frame[columns].to_numpy(dtype=np.float32)
        fit = fit_booster(
            x[train],
            label[train],
            weight[train],
            x[val],
            label[val],
            weight[val],
            params=params,
            feature_names=columns,
            max_rounds=30,
            early_stopping_rounds=30,
        )
        out = workdir.models / "gbm"
        write_text_atomic(out / f"{experiment.name}.txt", fit.booster.model_to_string())
        calibration = fit_cross_conformal(
            x[train],
            label[train],
            weight[train],
            params=params,
            num_rounds=max(1, fit.best_iteration),
            feature_names=columns,
            label_scale="linear",
            levels=calibration_levels(*config.gbm.interval_levels),
            folds=3,
            prediction_floor=floor,
        )
        write_text_atomic(workdir.gbm_interval_calibration(experiment.name), calibration.to_json())
        write_json_atomic(
            out / f"{experiment.name}.json",
            {
                "experiment": experiment.name,
                "recipe": {"catalog_bands": experiment.catalog_bands},
                "objective": "l1",
                "features": columns,
                "prediction_floor": floor,
                "best_iteration": fit.best_iteration,
                "n_train": int(train.sum()),
            },
        )


def predict_catalog_of(workdir: WorkDir, *, magnitudes: tuple[str, ...] = ("g", "i")) -> pd.DataFrame:
    """Return a work directory's sample as a prediction catalogue (objid, ra, dec, z, d25_arcmin, mags)."""
    sample = pd.read_parquet(workdir.sample, columns=["objid", "ra", "dec", "z", "d25_arcmin"])
    phot = pd.read_csv(workdir.photometry).rename(columns={"objID": "objid"})
    columns = ["objid", *(f"modelMag_{b}" for b in magnitudes)]
    return sample.merge(phot[columns], on="objid", how="left")


def read_bundle_json(bundle_dir: Path) -> dict:
    return json.loads((bundle_dir / "bundle.json").read_text(encoding="utf-8"))


def make_trained_workdir(root: Path) -> WorkDir:
    """Run mock, catalog, preprocess, save the untrained networks, extract and fit the GBMs in ``root``."""
    config = small_config()
    workdir = WorkDir(root)
    for stage in ("mock", "catalog", "preprocess"):
        execute_stage(stage, config, workdir, progress=False)
    save_networks(config, workdir)
    execute_stage("extract", config, workdir, progress=False)
    fit_gbms(config, workdir)
    return workdir
