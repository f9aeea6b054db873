"""The GBM experiments of the paper (SPEC E2-E4, E6, E7, E10, E11): their feature sets and training options.

Each experiment is an :class:`Experiment` recipe; :func:`make_experiments` lists them in training order (an
experiment that reuses another's selected features comes after it) and :func:`build_features` turns a recipe
into the feature matrix. Names follow DESIGN §4. The non-GBM baselines (constant, power laws) live in
``morphomass.evaluate``.

The features of the frozen encoder sources (``cnn.encoders.<name>``: columns ``enc_<name>_*``) enter only
the experiments that name them (:attr:`Experiment.encoders`); every experiment of the paper leaves them out.
For each encoder source ``<name>`` :func:`make_experiments` adds:

* ``g_morph_enc_<name>``: ``g_morph`` plus the encoder's features;
* ``g_enc_<name>``: the reference (z, L_g) plus the encoder's features only (no image or CNN feature: the
  model of a user without a trained CNN);
* ``gi_morph_enc_<name>``: ``gi_morph`` plus the encoder's features (top-k retrain, as ``gi_morph``);
* ``gi_enc_<name>``: the colour GBM (z, L_g, L_i, L_g/L_i) plus the encoder's features only.

The ``gi_*`` ones need the i band.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from morphomass.errors import InputDataError
from morphomass.gbm.table import (
    BANDS,
    FeatureTable,
    band_features,
    encoder_columns_of,
    feature_groups,
    flux_features,
    gz2_truth_columns,
)
from morphomass.gbm.train import Objective

__all__ = ["CV_GROUPS", "Experiment", "build_features", "cv_group", "make_experiments"]


@dataclass(frozen=True)
class Experiment:
    """How to build and train one GBM.

    Attributes
    ----------
    name : str
        DESIGN §4 name (``g_morph``, ``ablation_no_cnn4``, ``bands_gri_morph``, ``loss_g_morph_l2``, ...).
    morphology : bool
        Include the g-band image and CNN features (F1-F4).
    classical : bool
        Also include the classical morphology features (``morph_*``: concentration, asymmetry, smoothness,
        Gini, M20, Sersic index, axis ratio, ...); the paper's experiments leave them out.
    drop_groups : tuple of str
        Feature groups of :func:`~morphomass.gbm.table.feature_groups` to leave out.
    drop_columns : tuple of str
        Single image features to leave out.
    catalog_bands : str
        Global catalogue features of these bands (:func:`~morphomass.gbm.table.band_features`): '' for none,
        ``'g'`` is (z, L_g), ``'gi'`` is (z, L_g, L_i, L_g/L_i).
    fluxes : bool
        Replace the luminosity features by fluxes (the 'no distance' ablation).
    gz2_truth : bool
        Replace CNN3's probabilities by the true GZ2 ones (the 'cheating' model, E6).
    objective : {'l1', 'l2', 'rmsle'}
    top_k : bool
        Retrain on the ``gbm.top_k`` features the trees split on most (SPEC G2): those of the
        ``features_from`` model if given, else of a model first trained on all of this experiment's features.
    features_from : str or None
        An earlier experiment whose final feature list (and, with ``top_k``, whose model's ranking) replaces
        the features built here: ``g_morph_top50`` is the top-k of ``g_morph``; ``loss_gi_morph_l2``
        re-optimises the features selected by ``gi_morph`` for another loss.
    train_fraction : float
        Fraction of the training split used (a seeded random subset).
    encoders : tuple of str
        Encoder sources whose ``enc_<name>_*`` features are added (with or without ``morphology``); the
        others' are left out.
    """

    name: str
    morphology: bool = True
    classical: bool = False
    drop_groups: tuple[str, ...] = ()
    drop_columns: tuple[str, ...] = ()
    catalog_bands: str = ""
    fluxes: bool = False
    gz2_truth: bool = False
    objective: Objective = "l1"
    top_k: bool = False
    features_from: str | None = None
    train_fraction: float = 1.0
    encoders: tuple[str, ...] = ()


#: Cross-validation groups (the kind of model) and the experiment whose features represent each.
CV_GROUPS: dict[str, str] = {"morph": "g_morph", "colour_morph": "gi_morph", "global": "gi_gbm"}


def cv_group(experiment: Experiment) -> str:
    """Name the kind of model an experiment is, for the hyperparameter search (SPEC G1).

    ``global``: catalogue features only; ``colour_morph``: image features plus catalogue bands; ``morph``:
    image features only. The experiments of a group share the parameters chosen by cross-validating one of
    them. Encoder features count as image features.
    """
    if not experiment.morphology and not experiment.encoders:
        return "global"
    return "colour_morph" if experiment.catalog_bands else "morph"


def make_experiments(
    band_sequence: list[str] | tuple[str, ...],
    *,
    available_bands: str = "ugriz",
    encoder_names: list[str] | tuple[str, ...] = (),
    log_losses: bool = True,
) -> list[Experiment]:
    """All GBM experiments, in training order.

    Parameters
    ----------
    band_sequence : list of str
        Band sets of the Fig. 8 sequence (``["g", "gr", "gri", "griz", "ugriz"]``); each gives ``bands_<set>``
        (global features only) and ``bands_<set>_morph`` (plus the g-band morphology, top-k retrain).
    available_bands : str
        Bands with catalogue fluxes; band sets needing others are left out (and so are ``gi_*`` without i).
    encoder_names : sequence of str
        Encoder sources (``cnn.encoders``; :attr:`~morphomass.gbm.table.FeatureTable.encoder_names`): each
        adds ``g_morph_enc_<name>``, ``g_enc_<name>`` and, with g and i, ``gi_morph_enc_<name>`` and
        ``gi_enc_<name>``, after the other experiments.
    log_losses : bool
        Include the ``rmsle`` loss experiments (E11); False for a target already in dex (logmstar,
        logsfr), whose log is meaningless.

    Returns
    -------
    list of Experiment
    """
    exps = [
        Experiment("reference_lg_z", morphology=False, catalog_bands="g"),
        Experiment("g_morph"),
        Experiment("ablation_no_cnn4", drop_groups=("cnn4",)),
        Experiment("ablation_no_cnn123", drop_groups=("cnn123",)),
        Experiment("ablation_no_luminosity", drop_groups=("luminosity",)),
        Experiment("ablation_no_distance", drop_groups=("distance",), fluxes=True),
        Experiment("ablation_no_cnn", drop_groups=("cnn123", "cnn4")),
        Experiment("g_morph_top50", features_from="g_morph", top_k=True),
        Experiment("g_morph_half_train", train_fraction=0.5),
        Experiment("g_morph_no_total_luminosity", drop_columns=("lum_sum",)),
        Experiment("g_morph_gz2_truth", gz2_truth=True),
        Experiment("loss_g_morph_l2", objective="l2"),
        Experiment("loss_g_morph_rmsle", objective="rmsle"),
        # Classical morphology beside the CNNs (g + classical, g + both; g + CNN is g_morph).
        Experiment("g_classical", classical=True, drop_groups=("cnn123", "cnn4")),
        Experiment("g_morph_classical", classical=True),
    ]
    if "g" in available_bands and "i" in available_bands:
        exps += [
            Experiment("gi_gbm", morphology=False, catalog_bands="gi"),
            Experiment("gi_morph", catalog_bands="gi", top_k=True),
            Experiment(
                "gi_classical", catalog_bands="gi", classical=True, drop_groups=("cnn123", "cnn4"), top_k=True
            ),
            Experiment("gi_morph_classical", catalog_bands="gi", classical=True, top_k=True),
            Experiment("loss_gi_morph_l2", catalog_bands="gi", objective="l2", features_from="gi_morph"),
            Experiment(
                "loss_gi_morph_rmsle", catalog_bands="gi", objective="rmsle", features_from="gi_morph"
            ),
        ]
    for bands in band_sequence:
        if all(b in available_bands for b in bands):
            exps += [
                Experiment(f"bands_{bands}", morphology=False, catalog_bands=bands),
                Experiment(f"bands_{bands}_morph", catalog_bands=bands, top_k=True),
            ]
    has_gi = "g" in available_bands and "i" in available_bands
    for name in encoder_names:
        source = (name,)
        exps += [
            Experiment(f"g_morph_enc_{name}", encoders=source),
            Experiment(f"g_enc_{name}", morphology=False, catalog_bands="g", encoders=source),
        ]
        if has_gi:
            exps += [
                Experiment(f"gi_morph_enc_{name}", catalog_bands="gi", top_k=True, encoders=source),
                Experiment(f"gi_enc_{name}", morphology=False, catalog_bands="gi", encoders=source),
            ]
    if not log_losses:
        exps = [e for e in exps if e.objective != "rmsle"]
    return exps


def build_features(table: FeatureTable, experiment: Experiment) -> pd.DataFrame:
    """Build the feature matrix of one experiment (before any top-k or ``features_from`` selection).

    Parameters
    ----------
    table : FeatureTable
    experiment : Experiment

    Returns
    -------
    DataFrame
        One row per galaxy of ``table``; image/CNN features keep their names, catalogue features are
        ``cat_*``, the 'no distance' fluxes ``flux_*`` and the true GZ2 probabilities ``gz2_p_*``.

    Raises
    ------
    InputDataError
        If a band of ``catalog_bands`` is not in the sample, the GZ2 columns are missing, or an encoder of
        ``encoders`` has no ``enc_<name>_*`` column.
    """
    parts = []
    groups = feature_groups(table.features.columns)
    encoder_columns = []
    for name in experiment.encoders:
        columns = encoder_columns_of(table.features.columns, name)
        if not columns:
            msg = (
                f"experiment {experiment.name} needs the features of encoder source {name!r} (enc_{name}_*), "
                f"which features/cnn.parquet lacks; configure cnn.encoders.{name} and rerun 'morphomass "
                "extract'"
            )
            raise InputDataError(msg)
        encoder_columns += columns
    if experiment.morphology:
        drop = {c for g in experiment.drop_groups for c in groups[g]} | set(experiment.drop_columns)
        drop |= set(groups["encoders"]) - set(encoder_columns)
        if not experiment.classical:
            drop |= set(groups["classical"])
        elif not groups["classical"]:
            msg = (
                f"experiment {experiment.name} needs the classical morphology features (morph_*), which "
                "features/photometric.parquet lacks: it was written by an older morphomass; rerun "
                "'morphomass preprocess --force'"
            )
            raise InputDataError(msg)
        if experiment.gz2_truth:
            drop |= set(groups["cnn3_probs"])
        if experiment.fluxes:  # the luminosities become fluxes; image size and scaling a do not use D
            drop |= {c for c in groups["luminosity"] if c.startswith("lum_")}
        parts.append(table.features[[c for c in table.features.columns if c not in drop]])
        if experiment.fluxes:
            parts.append(flux_features(table.features, table.meta["dist_mpc"].to_numpy()))
        if experiment.gz2_truth:
            parts.append(gz2_truth_columns(table.meta))
    elif encoder_columns:
        parts.append(table.features[encoder_columns])
    if experiment.catalog_bands:
        unknown = [b for b in experiment.catalog_bands if b not in BANDS]
        if unknown:
            msg = f"experiment {experiment.name}: unknown bands {unknown}"
            raise InputDataError(msg)
        parts.append(band_features(table.meta, experiment.catalog_bands))
    if not parts:
        msg = f"experiment {experiment.name} has no features"
        raise InputDataError(msg)
    return pd.concat(parts, axis=1)
