"""Typed, validated configuration of the whole pipeline.

A configuration is a :class:`PipelineConfig`: one section per stage plus the cosmology. The class defaults are the
``paper`` preset (SPEC.md exactly); the ``quick`` and ``tiny`` presets override a few values so that the pipeline runs
in minutes on a laptop or in about a minute in the tests. A TOML file can override any value of a preset::

    [mock]
    n_galaxies = 500

    [catalog]
    d25_min_arcmin = 0.5

Validation errors name the field (``mock.n_galaxies``), the bad value and what was expected.
"""

from __future__ import annotations

import copy
import hashlib
import json
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from morphomass.errors import ConfigError

__all__ = [
    "PRESETS",
    "CatalogConfig",
    "CnnConfig",
    "CosmologyConfig",
    "EvaluateConfig",
    "FetchConfig",
    "GbmConfig",
    "MockConfig",
    "PipelineConfig",
    "PreprocessConfig",
    "load_config",
    "section_hash",
]

SDSS_BANDS: tuple[str, ...] = ("u", "g", "r", "i", "z")
PresetName = Literal["paper", "quick", "tiny"]


class _Section(BaseModel):
    """Base of every section: unknown keys are errors, values are checked on assignment too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


def _check_bands(bands: tuple[str, ...]) -> tuple[str, ...]:
    unknown = [b for b in bands if b not in SDSS_BANDS]
    if unknown or not bands:
        msg = f"bands must be a non-empty subset of {list(SDSS_BANDS)}, got {list(bands)}"
        raise ValueError(msg)
    if len(set(bands)) != len(bands):
        msg = f"bands must not repeat, got {list(bands)}"
        raise ValueError(msg)
    return tuple(b for b in SDSS_BANDS if b in bands)


class CosmologyConfig(_Section):
    """Distances for luminosities and physical pixel sizes (SPEC D7).

    ``convention="astropy"`` uses ``FlatLambdaCDM(H0, Om0)``: luminosity distance for luminosities and
    angular-diameter distance for pixel sizes. ``convention="paper"`` reproduces Dobbels' own choice, D = c z / H0
    with c = 3e5 km/s for both.
    """

    convention: Literal["astropy", "paper"] = "astropy"
    h0_km_s_mpc: float = Field(70.0, gt=0, le=200)
    om0: float = Field(0.3, ge=0, le=1)


class MockConfig(_Section):
    """The built-in synthetic survey (DESIGN §6, docs/mock.md)."""

    n_galaxies: int = Field(84_723, ge=1, le=10_000_000, description="galaxies with images (pass the D25 cut)")
    seed: int = Field(2019, ge=0)
    image_bands: tuple[str, ...] = ("g",)
    pixel_scale_arcsec: float = Field(0.396, gt=0, le=5)
    psf_fwhm_arcsec: float = Field(1.4, gt=0, le=10)
    psf_fwhm_scatter_arcsec: float = Field(0.2, ge=0, le=5)
    psf_moffat_beta: float = Field(3.0, gt=1.1, le=20)
    image_d25_min_arcmin: float = Field(0.4, gt=0, description="HyperLeda D25 above which images are rendered")
    max_image_pixels: int = Field(384, ge=32, le=4096, description="cap on the image side (larger FoVs are cropped)")
    small_galaxy_ratio: float = Field(
        1.0, ge=0, le=20, description="GSWLC rows without an image (D25 below the cut) per rendered galaxy"
    )
    missing_mass_fraction: float = Field(0.01, ge=0, le=0.5, description="GSWLC rows with -99 mass")
    extra_hyperleda_fraction: float = Field(0.05, ge=0, le=5, description="unmatched HyperLeda rows per galaxy")
    star_density_per_arcmin2: float = Field(0.6, ge=0, le=100)
    star_catalog_completeness: float = Field(0.9, ge=0, le=1)
    spurious_star_fraction: float = Field(0.03, ge=0, le=1, description="catalogued stars with no source")
    gz2_r_mag_limit: float = Field(17.0, gt=0, description="GZ2 main sample limit (Petrosian r)")
    gz2_coverage: float = Field(0.88, ge=0, le=1, description="fraction of the footprint GZ2 classified")
    gz2_classifiers: int = Field(44, ge=1, le=1000, description="median number of volunteers per galaxy")
    workers: int | None = Field(None, ge=1, le=1024, description="rendering processes (default: all cores)")

    _bands = field_validator("image_bands")(classmethod(lambda cls, v: _check_bands(tuple(v))))


class FetchConfig(_Section):
    """Download of the real archives (``morphomass fetch``)."""

    limit: int | None = Field(None, ge=1, description="download at most this many galaxies (for trials)")


class CatalogConfig(_Section):
    """Readers, cross-matches, selection, targets and split (SPEC D1-D3, D6-D9)."""

    d25_min_arcmin: float = Field(0.4, ge=0)
    chi2_max: float = Field(5.0, gt=0)
    hyperleda_radius_arcsec: float = Field(3.0, gt=0, le=60)
    gz2_radius_arcsec: float = Field(3.6, gt=0, le=60)
    ml_rel_err_floor: float = Field(0.05, ge=0, lt=1)
    m_sun_ab: dict[str, float] = Field(
        default_factory=lambda: {"u": 6.39, "g": 5.11, "r": 4.65, "i": 4.53, "z": 4.50},
        description="absolute AB magnitude of the Sun per band (Willmer 2018)",
    )
    test_fraction: float = Field(0.1, gt=0, lt=1)
    val_fraction: float = Field(0.1, gt=0, lt=1)
    split_seed: int = Field(123, ge=0)


class PreprocessConfig(_Section):
    """Star subtraction, automatic log scaling and resizing (SPEC D5, I1-I4)."""

    noise_target: float = Field(0.2, gt=0, lt=1, description="scaled noise level log(1+an)/log(1+a)")
    sigma_clip: float = Field(3.0, gt=0)
    noise_n_std: float = Field(2.0, ge=0, description="noise level n = mean + noise_n_std * std")
    star_search_radius_pix: float = Field(3.0, gt=0, le=50)
    nucleus_exclusion_arcsec: float = Field(3.0, ge=0)
    image_dtype: Literal["float32", "float16"] = "float32"
    workers: int | None = Field(None, ge=1, le=1024)
    scheduler: str | None = Field(None, description="address of a running Dask scheduler (default: a LocalCluster)")


class NetConfig(_Section):
    """One CNN: its backbone and input size."""

    backbone: str
    input_size: int = Field(ge=16, le=1024)


class CnnConfig(_Section):
    """The four networks and their training (SPEC N1-N7)."""

    nets: dict[str, NetConfig] = Field(
        default_factory=lambda: {
            "cnn1": NetConfig(backbone="resnet50", input_size=197),
            "cnn2": NetConfig(backbone="legacy_xception", input_size=128),
            "cnn3": NetConfig(backbone="dieleman", input_size=69),
        }
    )
    train_cnn4: bool = True
    epochs: int = Field(30, ge=1, le=1000)
    batch_size: int = Field(32, ge=1, le=4096)
    learning_rate: float = Field(1e-3, gt=0, le=1)
    lr_factor: float = Field(0.3, gt=0, lt=1)
    lr_patience: int = Field(4, ge=0)
    pretrained_weights: dict[str, Path] = Field(default_factory=dict, description="local ImageNet weight files")
    accelerator: Literal["auto", "cpu", "gpu"] = "auto"
    devices: int | Literal["auto"] = "auto"
    seed: int = Field(0, ge=0)


class GbmConfig(_Section):
    """LightGBM (SPEC G1-G2)."""

    num_leaves: int = Field(40, ge=2)
    min_data_in_leaf: int = Field(150, ge=1)
    feature_fraction: float = Field(0.4, gt=0, le=1)
    bagging_fraction: float = Field(0.8, gt=0, le=1)
    bagging_freq: int = Field(1, ge=0)
    learning_rate: float = Field(0.05, gt=0, le=1)
    max_rounds: int = Field(5000, ge=1)
    early_stopping_rounds: int = Field(100, ge=1)
    cv_folds: int = Field(5, ge=2)
    cv_search: bool = True
    top_k: int = Field(50, ge=1)
    permutation_repeats: int = Field(5, ge=1)
    num_threads: int = Field(0, ge=0, description="0: LightGBM's default (all cores)")
    seed: int = Field(0, ge=0)


class EvaluateConfig(_Section):
    """Experiments, statistics and figures (SPEC E1-E11)."""

    experiments: list[str] = Field(default_factory=lambda: ["all"])
    bootstrap_samples: int = Field(100_000, ge=10)
    seed: int = Field(0, ge=0)


class PipelineConfig(_Section):
    """The whole configuration; class defaults are the ``paper`` preset."""

    preset: PresetName = "paper"
    cosmology: CosmologyConfig = Field(default_factory=CosmologyConfig)
    mock: MockConfig = Field(default_factory=MockConfig)
    fetch: FetchConfig = Field(default_factory=FetchConfig)
    catalog: CatalogConfig = Field(default_factory=CatalogConfig)
    preprocess: PreprocessConfig = Field(default_factory=PreprocessConfig)
    cnn: CnnConfig = Field(default_factory=CnnConfig)
    gbm: GbmConfig = Field(default_factory=GbmConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)


#: Overrides of the class defaults per preset (nested dicts, as a TOML file would give them).
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    "quick": {
        "mock": {"n_galaxies": 3000},
        "cnn": {
            "nets": {
                "cnn1": {"backbone": "resnet18", "input_size": 64},
                "cnn2": {"backbone": "legacy_xception", "input_size": 64},
                "cnn3": {"backbone": "dieleman", "input_size": 69},
            },
            "epochs": 6,
            "batch_size": 64,
        },
        "gbm": {"cv_search": False, "permutation_repeats": 2},
        "evaluate": {"bootstrap_samples": 100_000},
    },
    "tiny": {
        "mock": {"n_galaxies": 60, "image_bands": ["g", "i"], "workers": 1, "max_image_pixels": 128},
        "cnn": {
            "nets": {
                "cnn1": {"backbone": "resnet18", "input_size": 32},
                "cnn2": {"backbone": "legacy_xception", "input_size": 32},
                "cnn3": {"backbone": "dieleman", "input_size": 69},
            },
            "epochs": 1,
            "batch_size": 16,
        },
        "gbm": {"cv_search": False, "min_data_in_leaf": 5, "num_leaves": 8, "max_rounds": 200,
                "early_stopping_rounds": 20, "permutation_repeats": 1},
        "evaluate": {"bootstrap_samples": 1000},
    },
}


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _format_validation_error(err: ValidationError, source: str) -> str:
    lines = []
    for item in err.errors():
        field = ".".join(str(part) for part in item["loc"]) or "<root>"
        bad = item.get("input")
        lines.append(f"{field} = {bad!r}: {item['msg']}")
    return f"invalid configuration ({source}): " + "; ".join(lines)


def load_config(
    preset: str = "quick",
    path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> PipelineConfig:
    """Build a validated configuration from a preset, an optional TOML file and optional overrides.

    Parameters
    ----------
    preset : {'paper', 'quick', 'tiny'}
        Starting point. A ``preset`` key inside the TOML file is ignored in favour of this argument.
    path : str or Path, optional
        TOML file whose tables override the preset (same nesting as :class:`PipelineConfig`).
    overrides : dict, optional
        Nested overrides applied last (the CLI's ``--n-galaxies`` and similar options).

    Returns
    -------
    PipelineConfig

    Raises
    ------
    ConfigError
        Unknown preset, unreadable or malformed TOML, unknown keys, or values out of range; the message names
        the field and the bad value.
    """
    if preset not in PRESETS:
        msg = f"unknown preset {preset!r}; expected one of {sorted(PRESETS)}"
        raise ConfigError(msg)
    data: dict[str, Any] = copy.deepcopy(PRESETS[preset])
    source = f"preset {preset!r}"
    if path is not None:
        path = Path(path)
        try:
            with path.open("rb") as fh:
                file_data = tomllib.load(fh)
        except FileNotFoundError as err:
            msg = f"configuration file {path} does not exist"
            raise ConfigError(msg) from err
        except tomllib.TOMLDecodeError as err:
            msg = f"configuration file {path} is not valid TOML: {err}"
            raise ConfigError(msg) from err
        file_data.pop("preset", None)
        data = _deep_merge(data, file_data)
        source += f" + {path}"
    if overrides:
        data = _deep_merge(data, overrides)
        source += " + command-line options"
    data["preset"] = preset
    try:
        return PipelineConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, source)) from None


def section_hash(config: PipelineConfig, *sections: str) -> str:
    """SHA-256 (hex) of the named configuration sections, stable across runs and key order.

    Parameters
    ----------
    config : PipelineConfig
    *sections : str
        Section names (``"mock"``, ``"cosmology"``, ...); none means the whole configuration.
    """
    dumped = config.model_dump(mode="json")
    chosen = {name: dumped[name] for name in sections} if sections else dumped
    canonical = json.dumps(chosen, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
