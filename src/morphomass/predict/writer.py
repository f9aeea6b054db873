"""Writing the prediction bundle of a work directory: ``models/bundle.json`` (the ``bundle`` stage).

:func:`write_bundle` gathers what :mod:`morphomass.predict.bundle` describes (networks and their cards, GBM
text models, feature names, dead features, training ranges, preprocessing settings, versions) from the outputs
of the training stages, and :func:`run_bundle` is the pipeline's ``bundle`` stage that calls it after
``train-gbm``. Everything is read through the stages' public functions and constants, so a bundle computes
exactly what the training pipeline computed.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from morphomass import __version__
from morphomass.cnn.columns import CNN4, CNN4_BASE, network_columns
from morphomass.config import PipelineConfig, PreprocessConfig, runtime_fields, stage_config_hash
from morphomass.errors import WorkdirError
from morphomass.photometry import compute_image_m_sun, resolve_pixel_scale_arcsec
from morphomass.predict.bundle import (
    BUNDLE_FORMAT,
    BUNDLE_FORMAT_VERSION,
    MODEL_EXPERIMENTS,
    bundle_content_sha256,
    catalogue_feature_names,
    library_versions,
    model_experiments,
)
from morphomass.preprocess.features import FEATURE_COLUMNS
from morphomass.targets import read_target
from morphomass.workdir import StageResult, WorkDir, file_sha256, load_manifest, write_json_atomic

__all__ = ["run_bundle", "write_bundle"]

logger = logging.getLogger(__name__)


def _bundle_root(workdir: WorkDir) -> Path:
    """Return the folder the bundle's file paths are relative to (the one holding ``bundle.json``)."""
    return workdir.bundle_manifest.parent


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _file_entry(root: Path, rel: str) -> dict[str, Any]:
    path = root / rel
    return {"sha256": file_sha256(path), "bytes": path.stat().st_size}


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        msg = f"{path} not found: {what}"
        raise WorkdirError(msg) from err
    except json.JSONDecodeError as err:
        msg = f"{path} is not valid JSON ({err})"
        raise WorkdirError(msg) from err
    if not isinstance(data, dict):
        msg = f"{path}: expected a JSON object, got {type(data).__name__}"
        raise WorkdirError(msg)
    return data


def _network_columns(name: str, card: dict[str, Any]) -> dict[str, list[str]]:
    """Output key of ``forward_features`` -> feature columns of one network, from its card (SPEC F4)."""
    trunk = int(card["trunk_features"]) if name == CNN4_BASE and card["kind"] != "ml" else 0
    return network_columns(name, kind=card["kind"], trunk_features=trunk)


def _networks(config: PipelineConfig, workdir: WorkDir) -> dict[str, dict[str, Any]]:
    names = [*config.cnn.nets, *([CNN4] if config.cnn.train_cnn4 else [])]
    root = _bundle_root(workdir)
    networks = {}
    for name in names:
        card_path = workdir.cnn_models / f"{name}.json"
        weights_path = workdir.cnn_models / f"{name}.safetensors"
        card_rel, weights_rel = _relative(card_path, root), _relative(weights_path, root)
        card = _read_json(card_path, f"network {name} is not trained; run 'morphomass train-cnn'")
        if not weights_path.is_file():
            msg = f"{weights_path} not found; run 'morphomass train-cnn'"
            raise WorkdirError(msg)
        expected = config.cnn.nets.get(CNN4_BASE if name == CNN4 else name)
        if expected is not None and (card.get("backbone"), card.get("input_size")) != (
            expected.backbone,
            expected.input_size,
        ):
            msg = (
                f"{card_path} is a {card.get('backbone')} at {card.get('input_size')} px but the "
                f"configuration asks for {expected.backbone} at {expected.input_size} px; pass the "
                "configuration the networks were trained with"
            )
            raise WorkdirError(msg)
        networks[name] = {
            "card": card_rel,
            "weights": weights_rel,
            "kind": card["kind"],
            "backbone": card["backbone"],
            "input_size": int(card["input_size"]),
            "columns": _network_columns(name, card),
        }
    return networks


def _encoders(config: PipelineConfig, workdir: WorkDir) -> dict[str, dict[str, Any]]:
    """Return the encoder sources of ``cnn.encoders`` as extract saved them in ``models/encoders``.

    Each entry names the card, weights and PCA (None without one) relative to the bundle folder, the input
    size and the ``enc_<name>_*`` columns; the card must fit the configuration and the files the SHA-256 the
    card records.
    """
    root = _bundle_root(workdir)
    out = {}
    for name, expected in config.cnn.encoders.items():
        card_path = workdir.encoder_card(name)
        card = _read_json(card_path, f"encoder source {name} is not extracted; run 'morphomass extract'")
        recorded = (
            card.get("source"),
            card.get("input_size"),
            card.get("in_chans"),
            card.get("pca_components"),
        )
        wanted = (expected.source, expected.input_size, expected.in_chans, expected.pca_components)
        if recorded != wanted:
            msg = (
                f"{card_path} records encoder source {name} as (source, input_size, in_chans, "
                f"pca_components) = {recorded} but cnn.encoders.{name} asks for {wanted}; run 'morphomass "
                "extract' again or pass the configuration the features were extracted with"
            )
            raise WorkdirError(msg)
        entry: dict[str, Any] = {"card": _relative(card_path, root)}
        for key in ("weights", "pca"):
            if card.get(key) is None:
                entry[key] = None
                continue
            path = workdir.encoder_models / str(card[key])
            if not path.is_file() or file_sha256(path) != card.get(f"{key}_sha256"):
                msg = f"{path} is missing or differs from the SHA-256 {card_path} records; run extract again"
                raise WorkdirError(msg)
            entry[key] = _relative(path, root)
        if entry["weights"] is None:
            msg = f"{card_path} names no weights file; run 'morphomass extract' again"
            raise WorkdirError(msg)
        out[name] = {**entry, "input_size": int(card["input_size"]), "columns": list(card["columns"])}
    return out


def _cnn_features(
    networks: dict[str, dict[str, Any]], encoders: dict[str, dict[str, Any]], cnn_parquet: Path
) -> tuple[list[str], list[str]]:
    """Return the CNN and encoder columns ``extract`` kept and the dead CNN ones; check they fit."""
    import pyarrow.parquet as pq

    kept = [c for c in pq.read_schema(cnn_parquet).names if c != "objid"]
    produced = [c for net in networks.values() for cols in net["columns"].values() for c in cols]
    encoded = [c for source in encoders.values() for c in source["columns"]]
    unknown = sorted(set(kept) - set(produced) - set(encoded))
    if unknown:
        msg = (
            f"{cnn_parquet} has columns no network or encoder source of the configuration produces "
            f"({unknown[:3]}...); run 'morphomass extract' again or pass the configuration the features were "
            "extracted with"
        )
        raise WorkdirError(msg)
    kept_set = set(kept)
    missing = [c for c in encoded if c not in kept_set]  # encoder columns are never dropped as dead
    if missing:
        msg = f"{cnn_parquet} lacks the encoder columns {missing[:3]}...; run 'morphomass extract' again"
        raise WorkdirError(msg)
    return kept, [c for c in produced if c not in kept_set]


def _gbm_models(workdir: WorkDir, producible: set[str], encoders: list[str]) -> dict[str, dict[str, Any]]:
    """Return the bundle's GBMs: ``g``, ``gi`` (if trained), per encoder source ``g_<name>``, ``gi_<name>``.

    ``g`` and ``gi`` need their interval calibration; an encoder model ships its own when train-gbm wrote
    one, else ``intervals`` is None (predict writes NaN bounds for it).
    """
    out = {}
    for key, experiment in model_experiments(encoders).items():
        model_path = workdir.gbm_models / f"{experiment}.txt"
        info_path = workdir.gbm_models / f"{experiment}.json"
        model_rel = _relative(model_path, _bundle_root(workdir))
        if not model_path.is_file() or not info_path.is_file():
            if not key.startswith("gi"):
                msg = f"{model_path} (and its .json) not found; run 'morphomass train-gbm' first"
                raise WorkdirError(msg)
            logger.info("bundle: no %s model (%s), no %s predictions", experiment, model_rel, key)
            continue
        info = _read_json(info_path, f"run 'morphomass train-gbm' (experiment {experiment})")
        bands = str(info.get("recipe", {}).get("catalog_bands", ""))
        needed = set(info["features"]) - producible - set(catalogue_feature_names(bands))
        if needed:
            msg = (
                f"{info_path}: the model uses features the bundle cannot compute from an image and a "
                f"catalogue ({sorted(needed)[:3]}...); only the g-band image, CNN and catalogue-band "
                "features are supported"
            )
            raise WorkdirError(msg)
        interval_path = workdir.gbm_interval_calibration(experiment)
        intervals = _relative(interval_path, _bundle_root(workdir)) if interval_path.is_file() else None
        if intervals is None and key in MODEL_EXPERIMENTS:
            msg = f"{interval_path} not found (the model's interval calibration); run 'morphomass train-gbm'"
            raise WorkdirError(msg)
        if intervals is None:
            logger.info(
                "bundle: model %s (%s) has no interval calibration: NaN interval bounds", key, experiment
            )
        out[key] = {
            "experiment": experiment,
            "file": model_rel,
            "intervals": intervals,
            "objective": info["objective"],
            "features": list(info["features"]),
            "catalog_bands": bands,
            "prediction_floor": None if info["prediction_floor"] is None else float(info["prediction_floor"]),
            "best_iteration": info.get("best_iteration"),
            "n_train": info.get("n_train"),
        }
    return out


def _range(values: pd.Series) -> list[float] | None:
    finite = values.to_numpy(dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    return [float(finite.min()), float(finite.max())] if finite.size else None


def _training_ranges(workdir: WorkDir, bands: set[str]) -> tuple[dict[str, list[float]], int]:
    """Ranges of the training galaxies that have image features (the GBMs' training rows)."""
    import pyarrow.parquet as pq

    available = set(pq.read_schema(workdir.sample).names)
    columns = [
        "objid",
        "split",
        "z",
        "d25_arcmin",
        "pixel_kpc",
        "lum_g",
        *(f"flux_{b}" for b in sorted(bands) if f"flux_{b}" in available),
    ]
    missing = [c for c in columns if c not in available]
    if missing:
        msg = f"{workdir.sample} lacks {missing}, needed for the bundle's training ranges"
        raise WorkdirError(msg)
    sample = pd.read_parquet(workdir.sample, columns=columns)
    with_features = pd.read_parquet(workdir.photometric_features, columns=["objid"])["objid"]
    train = sample[(sample["split"] == "train") & sample["objid"].isin(with_features)]
    names = {
        "z": "z",
        "d25_arcmin": "d25_arcmin",
        "pixel_kpc": "pixel_kpc",
        "lum_g_lsun": "lum_g",
        **{f"flux_{b}_nmgy": f"flux_{b}" for b in sorted(bands) if f"flux_{b}" in available},
    }
    ranges = {key: _range(train[col]) for key, col in names.items()}
    return {k: v for k, v in ranges.items() if v is not None}, len(train)


def _check_manifest(config: PipelineConfig, workdir: WorkDir) -> None:
    """Check the configuration is the one the catalogue and preprocess stages ran with (when recorded)."""
    stages = load_manifest(workdir)["stages"]
    for name in ("catalog", "preprocess"):
        recorded = stages.get(name, {}).get("config_hash")
        if recorded is not None and recorded != stage_config_hash(config, name):
            msg = (
                f"the configuration differs from the one the {name} stage ran with in {workdir.root} "
                "(manifest.json); write the bundle with the same preset and configuration file"
            )
            raise WorkdirError(msg)


def _preprocessing(
    config: PipelineConfig, networks: dict[str, dict[str, Any]], encoders: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    band = config.preprocess.band
    catalog = config.catalog
    pixel_scale = resolve_pixel_scale_arcsec(
        catalog.pixel_scale_arcsec, convention=config.cosmology.convention
    )
    return {
        "band": band,
        "settings": config.preprocess.model_dump(mode="json", exclude=set(runtime_fields(PreprocessConfig))),
        "sizes": sorted({spec["input_size"] for spec in (*networks.values(), *encoders.values())}),
        # the images are SDSS nanomaggies: the Sun's magnitude on their system, as in the preprocess stage
        "m_sun_image_band": compute_image_m_sun(catalog.m_sun_ab, catalog.ab_offset_mag, band=band),
        "m_sun_ab": dict(catalog.m_sun_ab),
        "ab_offset_mag": dict(catalog.ab_offset_mag),
        "pixel_scale_arcsec": float(pixel_scale),
        "cosmology": config.cosmology.model_dump(mode="json"),
    }


def write_bundle(config: PipelineConfig, workdir: WorkDir) -> Path:
    """Write ``models/bundle.json`` for the trained models of a work directory.

    Parameters
    ----------
    config : PipelineConfig
        The configuration the work directory was made with (checked against the manifest's catalogue and
        preprocess records when present).
    workdir : WorkDir
        Reads ``models/cnn/``, ``models/encoders/`` (the sources of ``cnn.encoders``, listed with their
        hashes), ``models/gbm/g_morph.*`` (and ``gi_morph.*`` if present; per encoder source
        ``g_morph_enc_<name>.*`` and ``gi_morph_enc_<name>.*`` if present), ``features/cnn.parquet``
        (column names), ``features/photometric.parquet`` (objid) and ``sample.parquet``.

    Returns
    -------
    Path
        The bundle manifest, ``models/bundle.json`` (written atomically).

    Raises
    ------
    WorkdirError
        If a network, a GBM or a feature table is missing, or does not fit the configuration.
    """
    root = _bundle_root(workdir)
    _check_manifest(config, workdir)
    networks = _networks(config, workdir)
    encoders = _encoders(config, workdir)
    kept, dead = _cnn_features(networks, encoders, workdir.cnn_features)
    gbm = _gbm_models(workdir, set(FEATURE_COLUMNS) | set(kept), list(encoders))
    bands = {"g", *(b for model in gbm.values() for b in model["catalog_bands"])}
    ranges, n_train = _training_ranges(workdir, bands)
    files = sorted(
        {
            *(n["card"] for n in networks.values()),
            *(n["weights"] for n in networks.values()),
            *(e[key] for e in encoders.values() for key in ("card", "weights", "pca") if e[key] is not None),
            *(m["file"] for m in gbm.values()),
            *(m["intervals"] for m in gbm.values() if m["intervals"] is not None),
        }
    )
    manifest: dict[str, Any] = {
        "format": BUNDLE_FORMAT,
        "format_version": BUNDLE_FORMAT_VERSION,
        "morphomass_version": __version__,
        "created_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "versions": library_versions(),
        "preset": config.preset,
        "config": config.model_dump(mode="json"),
        "target": asdict(read_target(workdir.sample)),
        "interval_levels": list(config.gbm.interval_levels),
        "preprocessing": _preprocessing(config, networks, encoders),
        "networks": networks,
        **({"encoders": encoders} if encoders else {}),  # absent without sources: bundles as before
        "features": {"photometric": list(FEATURE_COLUMNS), "cnn": kept, "dead": dead},
        "models": gbm,
        "training_ranges": ranges,
        "n_train": n_train,
        "files": {rel: _file_entry(root, rel) for rel in files},
    }
    manifest["bundle_sha256"] = bundle_content_sha256(manifest)
    path = workdir.bundle_manifest
    write_json_atomic(path, manifest)
    logger.info(
        "bundle: %s (%d files, models %s, %d dead CNN features)", path, len(files), sorted(gbm), len(dead)
    )
    return path


def run_bundle(config: PipelineConfig, workdir: WorkDir, *, progress: bool = True) -> StageResult:
    """Write the prediction bundle of a work directory (the ``bundle`` stage, after ``train-gbm``).

    Parameters
    ----------
    config : PipelineConfig
        The configuration the work directory was made with.
    workdir : WorkDir
        Reads ``sample.parquet``, ``features/photometric.parquet``, ``features/cnn.parquet``, ``models/cnn/``
        and ``models/gbm/``.
    progress : bool
        Not used: writing a bundle takes a second.

    Returns
    -------
    StageResult
        Outputs ``models/bundle.json``; the summary has the models, the number of files, of training galaxies
        and of dead CNN features.

    Raises
    ------
    WorkdirError
        If a network, a GBM or a feature table is missing, or does not fit the configuration.
    """
    del progress
    path = write_bundle(config, workdir)
    manifest = json.loads(path.read_text(encoding="utf-8"))
    return StageResult(
        stage="bundle",
        outputs=[workdir.relative(path)],
        summary={
            "models": sorted(manifest["models"]),
            "files": len(manifest["files"]),
            "n_train": manifest["n_train"],
            "dead_features": len(manifest["features"]["dead"]),
        },
    )
