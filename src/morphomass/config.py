"""Typed, validated configuration of the whole pipeline.

A configuration is a :class:`PipelineConfig`: one section per stage plus the cosmology. The class defaults are
the ``paper`` preset (SPEC.md exactly); the ``quick`` and ``tiny`` presets override a few values so that the
pipeline runs in minutes on a laptop or in about a minute in the tests. A TOML file can override any value of
a preset::

    [mock]
    n_galaxies = 500

    [catalog]
    d25_min_arcmin = 0.5

Validation errors name the field (``mock.n_galaxies``), the bad value and what was expected.

Fields marked :data:`RUNTIME` change how a stage runs (parallelism, retries, devices), not what it writes;
they are left out of :func:`stage_config_hash`, the hash the work-directory manifest records per stage. Which
sections each stage's outputs depend on is :data:`STAGE_CONFIG`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StrictBool,
    StrictFloat,
    StrictInt,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from morphomass.errors import ConfigError

__all__ = [
    "DIELEMAN",
    "ENCODER_NAME_PATTERN",
    "PRESETS",
    "PRETRAINED_IMAGENET",
    "PRETRAINED_NONE",
    "RUNTIME",
    "STAGE_CONFIG",
    "CatalogConfig",
    "CnnConfig",
    "CosmologyConfig",
    "EncoderSourceConfig",
    "EvaluateConfig",
    "FetchConfig",
    "GbmConfig",
    "MockConfig",
    "PipelineConfig",
    "PreprocessConfig",
    "StageConfig",
    "load_config",
    "runtime_fields",
    "section_hash",
    "stage_config_hash",
    "without_runtime_fields",
]

SDSS_BANDS: tuple[str, ...] = ("u", "g", "r", "i", "z")
PresetName = Literal["paper", "quick", "tiny"]
#: ``json_schema_extra`` of the fields that change how a stage runs, not what it writes (see
#: :func:`runtime_fields`): ``Field(..., json_schema_extra=RUNTIME)``.
RUNTIME: dict[str, Any] = {"runtime": True}
#: ``cnn.nets.<net>.pretrained`` values that are not a file (the names of :mod:`morphomass.cnn.encoders`).
PRETRAINED_IMAGENET = "imagenet"
PRETRAINED_NONE = "none"
#: Backbone name of the custom CNN3 (re-exported as :data:`morphomass.cnn.architectures.DIELEMAN`).
DIELEMAN = "dieleman"


class _Section(BaseModel):
    """Base of every section: unknown keys are errors, values are checked on assignment too.

    Numbers are typed strictly (``StrictInt``, ``StrictFloat``, ``StrictBool``): a boolean is not an integer
    (``n_galaxies = true`` is an error, not 1), a float is not an integer, a string is not a number; an
    integer is accepted where a real number is expected (TOML's ``3`` for ``3.0``) and stored as a float, so
    the values, and the configuration hashes, are those of the lax types. Real numbers must be finite.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False, allow_inf_nan=False)


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
    angular-diameter distance for pixel sizes. ``convention="paper"`` reproduces Dobbels' own choice,
    D = c z / H0 with c = 3e5 km/s for both.
    """

    convention: Literal["astropy", "paper"] = Field(
        "astropy",
        description=(
            "'astropy': FlatLambdaCDM luminosity and angular-diameter distances; 'paper': D = c z / H0 for "
            "both (D7)"
        ),
    )
    h0_km_s_mpc: StrictFloat = Field(70.0, gt=0, le=200, description="Hubble constant H0 (km/s/Mpc; D7)")
    om0: StrictFloat = Field(
        0.3,
        ge=0,
        le=1,
        description="matter density Omega_m0 of the flat LambdaCDM cosmology (convention 'astropy' only)",
    )


class MockConfig(_Section):
    """The built-in synthetic survey (DESIGN §6, docs/mock.md)."""

    n_galaxies: StrictInt = Field(
        84_723, ge=1, le=10_000_000, description="galaxies with images (pass the D25 cut)"
    )
    seed: StrictInt = Field(
        2019, ge=0, description="seed of the mock survey's random draws (the same seed gives the same survey)"
    )
    image_bands: tuple[str, ...] = Field(("g",), description="SDSS bands rendered as images")
    pixel_scale_arcsec: StrictFloat = Field(
        0.396, gt=0, le=5, description="pixel scale of the rendered images (arcsec/px)"
    )
    psf_fwhm_arcsec: StrictFloat = Field(
        1.4, gt=0, le=10, description="mean seeing FWHM of the Moffat PSF; each galaxy draws its own (arcsec)"
    )
    psf_fwhm_scatter_arcsec: StrictFloat = Field(
        0.2, ge=0, le=5, description="per-galaxy standard deviation of the seeing FWHM (arcsec)"
    )
    psf_moffat_beta: StrictFloat = Field(3.0, gt=1.1, le=20, description="Moffat index beta of the PSF")
    image_d25_min_arcmin: StrictFloat = Field(
        0.4, gt=0, description="HyperLeda D25 above which images are rendered"
    )
    max_image_pixels: StrictInt = Field(
        384, ge=32, le=4096, description="cap on the image side (larger FoVs are cropped)"
    )
    small_galaxy_ratio: StrictFloat = Field(
        1.0, ge=0, le=20, description="GSWLC rows without an image (D25 below the cut) per rendered galaxy"
    )
    missing_mass_fraction: StrictFloat = Field(0.01, ge=0, le=0.5, description="GSWLC rows with -99 mass")
    extra_hyperleda_fraction: StrictFloat = Field(
        0.05, ge=0, le=5, description="unmatched HyperLeda rows per galaxy"
    )
    star_density_per_arcmin2: StrictFloat = Field(
        0.6, ge=0, le=100, description="mean number of field stars per arcmin^2 of image (Poisson)"
    )
    star_catalog_completeness: StrictFloat = Field(
        0.9, ge=0, le=1, description="fraction of the rendered stars listed in stars.csv"
    )
    spurious_star_fraction: StrictFloat = Field(
        0.03, ge=0, le=1, description="catalogued stars with no source"
    )
    gz2_r_mag_limit: StrictFloat = Field(17.0, gt=0, description="GZ2 main sample limit (Petrosian r)")
    gz2_coverage: StrictFloat = Field(
        0.88, ge=0, le=1, description="fraction of the footprint GZ2 classified"
    )
    gz2_classifiers: StrictInt = Field(
        44, ge=1, le=1000, description="median number of volunteers per galaxy"
    )
    workers: StrictInt | None = Field(
        None, ge=1, le=1024, description="rendering processes (default: all cores)", json_schema_extra=RUNTIME
    )

    _bands = field_validator("image_bands")(classmethod(lambda cls, v: _check_bands(tuple(v))))


class FetchConfig(_Section):
    """Download of the real archives (``morphomass fetch``; reference/data_formats.md, README "Real data").

    The image targets are the GSWLC-2 galaxies with a mass, ``chi2_r < chi2_max`` and a HyperLeda match
    within ``hyperleda_radius_arcsec`` whose D25 exceeds ``image_d25_min_arcmin`` (the paper's cuts, SPEC
    D1-D3); keep these no stricter than the ``catalog`` section's. Every base URL may be a mirror, a
    ``file://`` URL or a local folder holding a copy of the archive.
    """

    limit: StrictInt | None = Field(
        None, ge=1, description="download at most this many galaxies (for trials)"
    )
    region: tuple[StrictFloat, StrictFloat, StrictFloat, StrictFloat] | None = Field(
        None, description="RA1 RA2 DEC1 DEC2 in degrees; RA1 > RA2 wraps through RA 0"
    )
    seed: StrictInt = Field(
        0, ge=0, description="which galaxies a limit keeps (a random subset, nested in N)"
    )
    bands: tuple[str, ...] = Field(("g",), description="SDSS bands downloaded as images (D4: g)")
    gswlc_catalogs: tuple[Literal["X2", "A2", "M2", "D2"], ...] = Field(
        ("X2",),
        min_length=1,
        description="GSWLC-2 tables to download: X2 (deepest UV per galaxy), D2, M2, A2 (D1)",
    )
    chi2_max: StrictFloat | None = Field(5.0, gt=0, description="image targets: SED reduced chi2 below this")
    image_d25_min_arcmin: StrictFloat = Field(
        0.4, ge=0, description="image targets: HyperLeda D25 above this"
    )
    hyperleda_radius_arcsec: StrictFloat = Field(
        3.0, gt=0, le=60, description="image targets: HyperLeda match within this (arcsec)"
    )
    hyperleda_d25_min_arcmin: StrictFloat = Field(
        0.2, gt=0, description="HyperLeda rows with a smaller D25 are not fetched"
    )
    hyperleda_source: Literal["auto", "leda", "vizier"] = Field(
        "auto", description="auto: the HyperLeda SQL interface, VizieR VII/237 if that fails"
    )
    hyperleda_ra_step_deg: StrictFloat = Field(
        15.0, gt=0, le=360, description="RA width of one HyperLeda query"
    )
    fov_factor: StrictFloat = Field(1.125, gt=0, le=10, description="image side = fov_factor x D25")
    pixel_scale_arcsec: StrictFloat = Field(
        0.396, gt=0, le=5, description="pixel scale of the downloaded images (arcsec/px; SDSS 0.396)"
    )
    only_primary: StrictBool = Field(True, description="ask the mosaic service for primary frames only")
    single_frame_cutout: StrictBool = Field(
        True, description="cut the image out of one frame when it holds the whole FoV"
    )
    mosaic_order: Literal["bilinear", "bicubic"] = Field(
        "bicubic",
        description="interpolation of the frames reprojected into a mosaic (cut-outs are not resampled)",
    )
    min_coverage: StrictFloat = Field(
        0.95, gt=0, le=1, description="fraction of the FoV the frames must cover"
    )
    photometry_radius_arcsec: StrictFloat = Field(
        3.0, gt=0, le=60, description="nearest primary object within this"
    )
    star_margin_arcmin: StrictFloat = Field(
        0.1, ge=0, le=10, description="stars searched to the FoV half-diagonal + this"
    )
    sql_batch_size: StrictInt = Field(50, ge=1, le=500, description="galaxies per SkyServer SQL query")
    gswlc_url: str = Field(
        "https://salims.pages.iu.edu/gswlc",
        description="base URL, mirror or local folder of the GSWLC-2 tables (GSWLC-<version>.dat.gz)",
    )
    hyperleda_url: str = Field(
        "http://leda.univ-lyon1.fr/G.cgi",
        description="HyperLeda SQL interface (a server or mirror: a local copy cannot answer queries)",
    )
    vizier_url: str = Field(
        "https://vizier.cds.unistra.fr/viz-bin/asu-tsv",
        description="VizieR ASU-TSV service, HyperLeda's fallback (VII/237; a server or mirror)",
    )
    gz2_url: str = Field(
        "https://gz2hart.s3.amazonaws.com/gz2_hart16.csv.gz",
        description="URL, mirror or local file of the Hart+16 GZ2 table (CSV, gzipped or not)",
    )
    skyserver_sql_url: str = Field(
        "https://skyserver.sdss.org/dr12/en/tools/search/x_results.aspx",
        description="SDSS SkyServer SQL search for photometry and stars (a server or mirror)",
    )
    mosaic_url: str = Field(
        "https://dr12.sdss.org/mosaics/script",
        description="SDSS DR12 mosaic service that lists the frames of a field (a server or mirror)",
    )
    frames_url: str = Field(
        "https://data.sdss.org/sas/dr12/env/BOSS_PHOTOOBJ/frames",
        description="base URL, mirror or local folder of the SDSS DR12 frames (.../BOSS_PHOTOOBJ/frames)",
    )
    cache_dir: Path | None = Field(
        None,
        description="download cache (default: <workdir>/cache); share it freely",
        json_schema_extra=RUNTIME,
    )
    frame_cache_max_gb: StrictFloat | None = Field(
        None, gt=0, description="prune least recently used frames above this", json_schema_extra=RUNTIME
    )
    checksums: dict[str, str] = Field(
        default_factory=dict, description="file name -> SHA-256 of the download"
    )
    timeout_s: StrictFloat = Field(
        60.0,
        gt=0,
        le=3600,
        description="connect and read timeout of one HTTP attempt (s)",
        json_schema_extra=RUNTIME,
    )
    retries: StrictInt = Field(
        5,
        ge=0,
        le=100,
        description=(
            "further attempts after a transient failure (timeout, dropped connection, HTTP 408/425/429/5xx)"
        ),
        json_schema_extra=RUNTIME,
    )
    backoff_s: StrictFloat = Field(
        2.0, ge=0, le=600, description="first retry delay; doubles per attempt", json_schema_extra=RUNTIME
    )
    max_backoff_s: StrictFloat = Field(
        120.0,
        ge=0,
        le=3600,
        description="cap on the retry delay and on a server's Retry-After (s)",
        json_schema_extra=RUNTIME,
    )
    requests_per_second: StrictFloat = Field(2.0, gt=0, description="per server", json_schema_extra=RUNTIME)
    workers: StrictInt = Field(
        4, ge=1, le=64, description="galaxies fetched at the same time", json_schema_extra=RUNTIME
    )
    max_consecutive_failures: StrictInt = Field(
        25, ge=1, description="abort when this many galaxies fail in a row", json_schema_extra=RUNTIME
    )

    _bands = field_validator("bands")(classmethod(lambda cls, v: _check_bands(tuple(v))))

    @field_validator("region")
    @classmethod
    def _check_region(cls, region: tuple[float, float, float, float] | None) -> tuple[float, ...] | None:
        if region is None:
            return None
        ra1, ra2, dec1, dec2 = region
        if not (0 <= ra1 <= 360 and 0 <= ra2 <= 360 and -90 <= dec1 < dec2 <= 90) or ra1 == ra2:
            msg = (
                "region must be RA1 RA2 DEC1 DEC2 with RA in [0, 360], RA1 != RA2 and DEC1 < DEC2, "
                f"got {region}"
            )
            raise ValueError(msg)
        return region


class CatalogConfig(_Section):
    """Readers, cross-matches, selection, targets and split (SPEC D1-D3, D6-D9)."""

    d25_min_arcmin: StrictFloat = Field(
        0.4, ge=0, description="keep galaxies whose HyperLeda D25 exceeds this (arcmin; D2)"
    )
    chi2_max: StrictFloat = Field(
        5.0, gt=0, description="keep galaxies whose SED reduced chi2 is below this (D3)"
    )
    hyperleda_radius_arcsec: StrictFloat = Field(
        3.0, gt=0, le=60, description="GSWLC-2 to HyperLeda cross-match radius, one-to-one (arcsec; D2)"
    )
    gz2_radius_arcsec: StrictFloat = Field(
        3.6, gt=0, le=60, description="GSWLC-2 to GZ2 (Hart+16) cross-match radius, one-to-one (arcsec; D8)"
    )
    ml_rel_err_floor: StrictFloat = Field(
        0.05, ge=0, lt=1, description="floor of the relative M/L error (D6)"
    )
    target: str = Field(
        "ml_g",
        min_length=1,
        description=(
            "what the models predict: 'ml_g' (the paper's g-band M/L), 'logmstar' (GSWLC-2 log M*), 'logsfr' "
            "(GSWLC-2 SED log SFR) or any GSWLC-2 column (with its error column, catalog.target_error)"
        ),
    )
    target_error: str | None = Field(
        None,
        min_length=1,
        description="error column of a GSWLC-2 column named by catalog.target (None: '<target>_err')",
    )
    dex_err_floor: StrictFloat = Field(
        0.0217,
        ge=0,
        lt=1,
        description=(
            "floor of the error of a target already in dex (logmstar, logsfr, a user column): 0.0217 dex is "
            "ml_rel_err_floor's 5 % (0.05 / ln 10)"
        ),
    )
    m_sun_ab: dict[str, StrictFloat] = Field(
        default_factory=lambda: {"u": 6.39, "g": 5.11, "r": 4.65, "i": 4.53, "z": 4.50},
        description="absolute AB magnitude of the Sun per band (Willmer 2018)",
    )
    ab_offset_mag: dict[str, StrictFloat] = Field(
        default_factory=lambda: {"u": -0.04, "g": 0.0, "r": 0.0, "i": 0.0, "z": 0.02},
        description="m_AB - modelMag per band (SDSS u and z are not exactly AB)",
    )
    pixel_scale_arcsec: StrictFloat | None = Field(
        None,
        gt=0,
        le=5,
        description="pixel scale for pixel_kpc; None: 0.396 (SDSS), 0.4 with cosmology.convention='paper'",
    )
    gz2_sum_atol: StrictFloat = Field(
        0.01, gt=0, lt=0.5, description="tolerance on per-question sums of the (rounded) Hart+16 fractions"
    )
    test_fraction: StrictFloat = Field(
        0.1, gt=0, lt=1, description="fraction of the sample drawn at random for the test set (D9)"
    )
    val_fraction: StrictFloat = Field(
        0.1, gt=0, lt=1, description="of the galaxies left after the test set; test + val must be below 1"
    )
    split_seed: StrictInt = Field(123, ge=0, description="seed of the random train/val/test split")

    @field_validator("val_fraction")
    @classmethod
    def _check_split(cls, val_fraction: float, info: ValidationInfo) -> float:
        """Keep a training set: ``test_fraction + val_fraction`` below 1."""
        test_fraction = info.data.get("test_fraction")
        if test_fraction is not None and test_fraction + val_fraction >= 1:
            msg = (
                f"test_fraction + val_fraction must be below 1 so that a training set remains, got "
                f"{test_fraction} + {val_fraction} = {test_fraction + val_fraction:g}"
            )
            raise ValueError(msg)
        return val_fraction

    @field_validator("m_sun_ab", "ab_offset_mag", mode="before")
    @classmethod
    def _every_band(cls, value: Any, info: Any) -> Any:
        """Bands a file does not name keep their default value; unknown bands are errors."""
        if not isinstance(value, dict):
            return value
        unknown = sorted(set(value) - set(SDSS_BANDS))
        if unknown:
            msg = f"bands must be among {list(SDSS_BANDS)}, got {unknown}"
            raise ValueError(msg)
        return {**cls.model_fields[info.field_name].default_factory(), **value}


class PreprocessConfig(_Section):
    """Star subtraction, automatic log scaling, resizing and photometric features (SPEC D5, I1-I4, F1-F3)."""

    band: Literal["u", "g", "r", "i", "z"] = Field("g", description="the band whose images the CNNs see")
    noise_target: StrictFloat = Field(0.2, gt=0, lt=1, description="scaled noise level log(1+an)/log(1+a)")
    sigma_clip: StrictFloat = Field(
        3.0,
        gt=0,
        description="clipping threshold (std) of the sigma-clipped background and noise statistics (I3)",
    )
    sigma_clip_maxiters: StrictInt = Field(
        5, ge=1, le=100, description="most iterations of the sigma clipping"
    )
    noise_n_std: StrictFloat = Field(2.0, ge=0, description="noise level n = mean + noise_n_std * std")
    star_search_radius_pix: StrictFloat = Field(
        3.0, gt=0, le=50, description="a star's peak must lie within this of its catalogue position (px; D5)"
    )
    star_detection_sigma: StrictFloat = Field(
        5.0, gt=0, description="star peak above the local background, in sigma"
    )
    star_max_fwhm_arcsec: StrictFloat = Field(3.0, gt=0, description="broader peaks are not point sources")
    star_max_radius_arcsec: StrictFloat = Field(
        12.0, gt=0, description="largest radius of a replaced star disc"
    )
    nucleus_exclusion_arcsec: StrictFloat = Field(
        3.0,
        ge=0,
        description="catalogued stars closer than this to the galaxy centre are left alone (arcsec)",
    )
    image_dtype: Literal["float32", "float16"] = Field(
        "float32", description="dtype of the scaled images in images.zarr"
    )
    chunk_images: StrictInt = Field(32, ge=1, le=4096, description="images per images.zarr chunk")
    workers: StrictInt | None = Field(
        None,
        ge=1,
        le=1024,
        description="processes of the local Dask cluster (default: all cores)",
        json_schema_extra=RUNTIME,
    )
    scheduler: str | None = Field(
        None,
        description="address of a running Dask scheduler (default: a LocalCluster)",
        json_schema_extra=RUNTIME,
    )


class NetConfig(_Section):
    """One CNN: backbone ('dieleman': the custom CNN3, else a timm model), input size (px), initial weights.

    ``pretrained`` is ``"imagenet"``, ``"none"`` or a weights file; the custom CNN3 accepts only ``"none"``.
    """

    backbone: str = Field(
        description="'dieleman': the custom CNN3 (N4); else a timm model (N2 resnet50, N3 legacy_xception)",
    )
    input_size: StrictInt = Field(ge=16, le=1024, description="side of the square input image (px; I4)")
    epochs: StrictInt | None = Field(
        None, ge=1, le=1000, description="this network's epochs (default: cnn.epochs)"
    )
    learning_rate: StrictFloat | None = Field(None, gt=0, le=1, description="default: cnn.learning_rate")
    train_images_budget: StrictInt | None = Field(
        None, ge=1, description="this network's training images (default: cnn.train_images_budget)"
    )
    pretrained: str = Field(
        PRETRAINED_NONE,
        min_length=1,
        description=(
            "'imagenet' (timm's pretrained weights: hub, HF cache or torch cache), 'none' (random init) or a "
            "local weights file"
        ),
    )

    @field_validator("pretrained")
    @classmethod
    def _check_pretrained(cls, pretrained: str, info: ValidationInfo) -> str:
        if info.data.get("backbone") == DIELEMAN and pretrained != PRETRAINED_NONE:
            msg = f"the {DIELEMAN!r} network (the custom CNN3) has no pretrained weights; expected 'none'"
            raise ValueError(msg)
        return pretrained


def _move_pretrained_weights(data: dict[str, Any], default_nets: dict[str, NetConfig]) -> dict[str, Any]:
    """Move the old ``cnn.pretrained_weights`` (net -> file) to ``cnn.nets.<net>.pretrained`` in raw input.

    Raises
    ------
    ConfigError
        If an entry names a network not in ``cnn.nets``, or that network's ``pretrained`` is given too.
    """
    data = dict(data)
    old = data.pop("pretrained_weights")
    if not isinstance(old, dict):
        msg = (
            f"cnn.pretrained_weights = {old!r}: expected a table net -> file (now cnn.nets.<net>.pretrained)"
        )
        raise ConfigError(msg)
    given = "nets" in data
    nets: dict[str, Any] = (
        dict(data["nets"]) if given else {k: v.model_dump() for k, v in default_nets.items()}
    )
    for name, path in old.items():
        if name not in nets:
            msg = f"cnn.pretrained_weights.{name}: no network {name!r} in cnn.nets ({sorted(nets)})"
            raise ConfigError(msg)
        net = nets[name]
        if isinstance(net, NetConfig):
            net = net.model_dump(exclude_unset=given)
        if given and isinstance(net, dict) and "pretrained" in net:
            msg = (
                f"cnn.pretrained_weights.{name} and cnn.nets.{name}.pretrained are both given; keep only "
                f"cnn.nets.{name}.pretrained (cnn.pretrained_weights is its old name)"
            )
            raise ConfigError(msg)
        # a network that is not a table is left as it is, for pydantic's error
        nets[name] = {**net, "pretrained": str(path)} if isinstance(net, dict) else net
    data["nets"] = nets
    return data


#: Names of encoder sources (``cnn.encoders.<name>``): the feature columns are ``enc_<name>_0000`` ...
ENCODER_NAME_PATTERN = r"[a-z][a-z0-9_]*"


class EncoderSourceConfig(_Section):
    """A frozen timm encoder used as a feature source beside CNN1-4 (``cnn.encoders.<name>``).

    Its pooled features of the log-scaled image (optionally reduced by a PCA fitted on the training split)
    enter the GBM as the feature family ``enc_<name>_*``, used only by the experiments named after it
    (``g_morph_enc_<name>``, ``g_enc_<name>``, ``gi_morph_enc_<name>``).
    """

    source: str = Field(
        min_length=1,
        description=(
            "timm hub name ('hf_hub:mwalmsley/zoobot-encoder-greyscale-convnext_nano': the hub when "
            "reachable, else the local Hugging Face cache) or a local weights file (.safetensors, .pth, .pt, "
            ".bin)"
        ),
    )
    input_size: StrictInt = Field(
        ge=16,
        le=1024,
        description="side of the square image fed to the encoder (px); preprocessing makes this size too",
    )
    in_chans: Literal[1, 3] = Field(
        1,
        description=(
            "input channels of the built encoder: 1 (a colour encoder's RGB filters summed by timm) or 3 "
            "(the single band repeated)"
        ),
    )
    architecture: str | None = Field(
        None,
        min_length=1,
        description=(
            "timm architecture of a weights file that does not name it (a hub name, or a file written by "
            "morphomass, needs none)"
        ),
    )
    pca_components: StrictInt | None = Field(
        None,
        ge=1,
        le=65536,
        description=(
            "reduce the pooled features to this many principal components, fitted on the training split "
            "(None: keep every pooled feature)"
        ),
    )
    standardise: StrictBool = Field(
        False,
        description=(
            "subtract the encoder's pretrained mean and divide by its std before encoding (timm's ImageNet "
            "convention); false feeds the [0, 1] log-scaled image as it is (the Zoobot convention)"
        ),
    )

    @field_validator("in_chans", mode="before")
    @classmethod
    def _strict_channels(cls, value: Any) -> Any:
        if isinstance(value, bool):  # Literal[1, 3] would accept True as 1
            msg = f"expected 1 or 3, got {value!r}"
            raise ValueError(msg)
        return value


class CnnConfig(_Section):
    """The four networks and their training (SPEC N1-N7).

    The older table ``pretrained_weights`` (net -> weights file) is still accepted: each entry becomes
    ``nets.<net>.pretrained`` (an error when that is given too or the network does not exist).
    """

    nets: dict[str, NetConfig] = Field(
        default_factory=lambda: {
            # the paper initialised its ResNet50 and Xception from ImageNet
            "cnn1": NetConfig(backbone="resnet50", input_size=197, pretrained=PRETRAINED_IMAGENET),
            "cnn2": NetConfig(backbone="legacy_xception", input_size=128, pretrained=PRETRAINED_IMAGENET),
            "cnn3": NetConfig(backbone="dieleman", input_size=69),
        },
        description="network name -> backbone and input size of a GZ2 network (N2-N4); CNN4 starts from cnn1",
    )
    train_cnn4: StrictBool = Field(
        True, description="train CNN4 (cnn1's weights, dense-1 output, L1~ on M/L)"
    )
    epochs: StrictInt = Field(
        30,
        ge=1,
        le=1000,
        description="training epochs of every network (N6); with a budget, its validation rounds",
    )
    cnn4_epochs: StrictInt | None = Field(None, ge=1, le=1000, description="CNN4's epochs (default: epochs)")
    train_images_budget: StrictInt | None = Field(
        None,
        ge=1,
        description=(
            "compute budget: training images each network sees, split into `epochs` rounds each followed "
            "by a validation, whatever the sample size; None: `epochs` passes over the training set"
        ),
    )
    cnn4_train_images_budget: StrictInt | None = Field(
        None, ge=1, description="CNN4's compute budget (default: train_images_budget)"
    )
    batch_size: StrictInt = Field(32, ge=1, le=4096, description="training images per batch and device")
    learning_rate: StrictFloat = Field(1e-3, gt=0, le=1, description="NAdam learning rate")
    lr_factor: StrictFloat = Field(
        0.3, gt=0, lt=1, description="ReduceLROnPlateau factor on the validation loss"
    )
    lr_patience: StrictInt = Field(4, ge=0, description="ReduceLROnPlateau patience (epochs)")
    dropout: StrictFloat = Field(
        0.25, ge=0, lt=1, description="CNN3 dropout after pooled blocks (rate unstated)"
    )
    augment_rotation_deg: StrictFloat = Field(
        360.0, ge=0, le=360, description="rotations uniform in [0, this)"
    )
    augment_zoom: tuple[StrictFloat, StrictFloat] = Field(
        (0.7, 1.3), description="isotropic zoom range (>1 zooms out)"
    )
    augment_flips: StrictBool = Field(True, description="random horizontal and vertical flips")
    accelerator: Literal["auto", "cpu", "gpu"] = Field(
        "auto",
        description="device of training and extraction ('auto': a GPU when torch sees one)",
        json_schema_extra=RUNTIME,
    )
    devices: StrictInt | Literal["auto"] = Field(
        "auto",
        description="devices per node: a count or 'auto' (every GPU, else 1); more than one trains with DDP",
        json_schema_extra=RUNTIME,
    )
    strategy: str = Field(
        "auto", description="Lightning strategy ('ddp' for several GPUs or nodes)", json_schema_extra=RUNTIME
    )
    num_nodes: StrictInt = Field(
        1,
        ge=1,
        description="Lightning nodes; more than one needs a process per device started by torchrun or srun",
        json_schema_extra=RUNTIME,
    )
    workers: StrictInt | None = Field(
        None,
        ge=1,
        le=1024,
        description=(
            "CPU only: processes that train or extract the networks at the same time (default: all cores); "
            "1 trains in this process"
        ),
        json_schema_extra=RUNTIME,
    )
    precision: Literal["32-true", "16-mixed", "bf16-mixed"] = Field(
        "32-true", description="Lightning training precision"
    )
    deterministic: StrictBool = Field(
        True, description="deterministic algorithms (reproducible on a CPU; on a GPU, warns where none exist)"
    )
    inference_batch_size: StrictInt = Field(
        256,
        ge=1,
        le=65536,
        description="batch of validation and extraction",
        json_schema_extra=RUNTIME,
    )
    inference_precision: Literal["bf16", "fp32"] = Field(
        "bf16",
        description="extraction on a CUDA device: bf16 autocast or fp32 (the CPU always computes in fp32)",
        json_schema_extra=RUNTIME,
    )
    seed: StrictInt = Field(
        0, ge=0, description="seed of the weight initialisation, batch order and augmentation"
    )
    encoders: dict[str, EncoderSourceConfig] = Field(
        default_factory=dict,
        description=(
            "name -> a frozen timm encoder whose pooled features enter the GBM as enc_<name>_* (extract); "
            "empty: none"
        ),
    )

    @field_validator("augment_zoom")
    @classmethod
    def _check_zoom(cls, zoom: tuple[float, float]) -> tuple[float, float]:
        if not 0 < zoom[0] <= zoom[1]:
            msg = f"augment_zoom must be (low, high) with 0 < low <= high, got {zoom}"
            raise ValueError(msg)
        return zoom

    @model_validator(mode="before")
    @classmethod
    def _old_pretrained_weights(cls, data: Any) -> Any:
        """Accept the old ``pretrained_weights`` table (net -> file) as ``nets.<net>.pretrained``."""
        if not isinstance(data, dict) or "pretrained_weights" not in data:
            return data
        default_nets = cls.model_fields["nets"].get_default(call_default_factory=True)
        return _move_pretrained_weights(data, default_nets)

    @model_serializer(mode="wrap")
    def _leave_out_no_encoders(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Dump without ``encoders`` when empty: the hashes of runs without encoders stay as they were."""
        data = handler(self)
        if not self.encoders and isinstance(data, dict):
            data.pop("encoders", None)
        return data

    @field_validator("encoders")
    @classmethod
    def _check_encoder_names(cls, encoders: dict[str, EncoderSourceConfig]) -> dict[str, EncoderSourceConfig]:
        bad = [name for name in encoders if not re.fullmatch(ENCODER_NAME_PATTERN, name)]
        if bad:
            msg = (
                f"encoder names must be lower-case letters, digits and underscores, starting with a letter "
                f"(they name the columns enc_<name>_*), got {bad}"
            )
            raise ValueError(msg)
        return encoders

    @property
    def pretrained_weights(self) -> dict[str, Path]:
        """The networks initialised from a file: net -> ``nets.<net>.pretrained`` (read-only; the old key)."""
        return {
            name: Path(net.pretrained)
            for name, net in self.nets.items()
            if net.pretrained not in (PRETRAINED_IMAGENET, PRETRAINED_NONE)
        }


#: LightGBM parameters the cross-validated search of ``gbm.cv_grid`` may vary.
CV_GRID_PARAMETERS: tuple[str, ...] = (
    "num_leaves",
    "min_data_in_leaf",
    "feature_fraction",
    "bagging_fraction",
    "learning_rate",
    "lambda_l1",
    "lambda_l2",
    "min_sum_hessian_in_leaf",
)


def _check_cv_grid(grid: dict[str, list[int | float]]) -> dict[str, list[int | float]]:
    unknown = [k for k in grid if k not in CV_GRID_PARAMETERS]
    if unknown:
        msg = f"cv_grid keys must be among {list(CV_GRID_PARAMETERS)}, got {unknown}"
        raise ValueError(msg)
    empty = [k for k, v in grid.items() if not v]
    if empty or not grid:
        msg = f"cv_grid needs at least one parameter with at least one value, got {grid}"
        raise ValueError(msg)
    for key in ("num_leaves", "min_data_in_leaf"):
        if any(float(v) != int(v) for v in grid.get(key, [])):
            msg = f"cv_grid.{key} must hold integers, got {grid[key]}"
            raise ValueError(msg)
        if key in grid:
            grid[key] = [int(v) for v in grid[key]]
    return grid


def _check_band_sequence(sequence: list[str]) -> list[str]:
    for bands in sequence:
        _check_bands(tuple(bands))
        if tuple(bands) != tuple(b for b in SDSS_BANDS if b in bands):
            msg = f"band sets must list bands in SDSS order (ugriz), got {bands!r}"
            raise ValueError(msg)
    return sequence


class GbmConfig(_Section):
    """LightGBM (SPEC G1-G2, E10-E11).

    The tree settings are the paper's (G1). ``max_bin`` and ``prefilter_features`` are speed settings measured
    in bench/bench_gbm.py; ``learning_rate`` is not given by the paper.
    """

    num_leaves: StrictInt = Field(40, ge=2, description="leaves per tree (G1)")
    min_data_in_leaf: StrictInt = Field(150, ge=1, description="fewest training galaxies per leaf (G1)")
    feature_fraction: StrictFloat = Field(
        0.4, gt=0, le=1, description="fraction of the features each tree sees (G1)"
    )
    bagging_fraction: StrictFloat = Field(
        0.8, gt=0, le=1, description="fraction of the training galaxies each bagging draw keeps (G1)"
    )
    bagging_freq: StrictInt = Field(
        1, ge=0, description="draw a new bagging sample every this many trees (0: no bagging)"
    )
    learning_rate: StrictFloat = Field(
        0.1, gt=0, le=1, description="not given by the paper; LightGBM's default"
    )
    max_bin: StrictInt = Field(
        63, ge=3, le=255, description="histogram bins per feature (LightGBM default 255)"
    )
    prefilter_features: StrictInt | None = Field(
        300,
        ge=1,
        description="wide models train on the features a cheap screening model ranks highest (None: all)",
    )
    max_rounds: StrictInt = Field(5000, ge=1, description="most boosting rounds (trees)")
    early_stopping_rounds: StrictInt = Field(
        100, ge=1, description="stop when the validation loss has not improved for this many rounds (G1)"
    )
    early_stopping_min_improvement: StrictFloat = Field(
        5e-4, ge=0, lt=1, description="relative drop of the validation loss that counts as an improvement"
    )
    cv_folds: StrictInt = Field(5, ge=2, description="folds of the cross-validated parameter search (G1)")
    cv_search: StrictBool = Field(
        True, description="choose tree parameters by k-fold CV over cv_grid (G1); false: the values above"
    )
    cv_grid: dict[str, list[StrictInt | StrictFloat]] = Field(
        default_factory=lambda: {"num_leaves": [20, 40, 80], "min_data_in_leaf": [50, 150, 300]},
        description=(
            "parameter -> candidates, searched by k-fold CV per kind of model (gbm.experiments.cv_group)"
        ),
    )
    top_k: StrictInt = Field(
        50, ge=1, description="the top-k models keep this many features, those the trees split on most (G2)"
    )
    permutation_repeats: StrictInt = Field(
        5, ge=1, description="shuffles per feature of the permutation importance on the validation set (E5)"
    )
    band_sequence: list[str] = Field(
        default_factory=lambda: ["g", "gr", "gri", "griz", "ugriz"],
        description="band sets of the Fig. 8 sequence (E10), each with and without morphology",
    )
    num_threads: StrictInt = Field(
        0, ge=0, description="0: one thread for small training matrices, else all cores"
    )
    interval_levels: list[StrictFloat] = Field(
        default_factory=lambda: [0.68, 0.95],
        min_length=1,
        description=(
            "nominal coverages of the prediction intervals that predict writes (each in (0, 1)); a "
            "reliability grid of levels is calibrated besides them"
        ),
    )
    interval_folds: StrictInt = Field(
        5, ge=2, le=50, description="folds of the intervals' cross-conformal calibration (training split)"
    )
    seed: StrictInt = Field(
        0, ge=0, description="seed of LightGBM, the CV folds, the interval calibration and the permutations"
    )

    _cv_grid = field_validator("cv_grid")(classmethod(lambda cls, v: _check_cv_grid(v)))
    _band_sequence = field_validator("band_sequence")(classmethod(lambda cls, v: _check_band_sequence(v)))

    @field_validator("interval_levels")
    @classmethod
    def _check_interval_levels(cls, levels: list[float]) -> list[float]:
        bad = [level for level in levels if not 0 < level < 1]
        if bad:
            msg = f"interval levels are nominal coverages strictly between 0 and 1, got {bad}"
            raise ValueError(msg)
        if len(set(levels)) != len(levels):
            msg = f"interval levels must be distinct, got {levels}"
            raise ValueError(msg)
        return sorted(levels)


class EvaluateConfig(_Section):
    """Experiments, statistics and figures (SPEC E1-E11)."""

    experiments: list[str] = Field(
        default_factory=lambda: ["all"], description="experiments to evaluate and report, by name, or 'all'"
    )
    bootstrap_samples: StrictInt = Field(
        100_000, ge=10, description="bootstrap resamples of the significance tests (E8)"
    )
    interval_resamples: StrictInt = Field(
        1000, ge=10, description="bootstrap resamples of the test galaxies for every metric's SE and 95 % CI"
    )
    dex_threshold: StrictFloat = Field(0.15, gt=0, le=2, description="M5 threshold (dex)")
    irregular_min_p: StrictFloat = Field(
        0.2, ge=0, le=1, description="E9: irregular if CNN1 P(irregular) above"
    )
    edge_on_min_p: StrictFloat = Field(
        0.4, ge=0, le=1, description="E9: else edge-on if CNN1 P(edge-on) above"
    )
    feature_min_p: StrictFloat = Field(
        0.4, ge=0, le=1, description="E9: else disk if CNN1 P(features or disk) above"
    )
    powerlaw_colour_margin_mag: StrictFloat = Field(
        0.5,
        ge=0,
        description="power-law test galaxies with g-i beyond the training range +- this are excluded",
    )
    figure_formats: list[Literal["png", "pdf", "svg"]] = Field(
        default_factory=lambda: ["png", "pdf"],
        description="file formats each figure is written in (results/figures)",
    )
    figure_dpi: StrictInt = Field(120, ge=30, le=600, description="figure resolution (dpi)")
    seed: StrictInt = Field(0, ge=0, description="seed of the bootstraps (E8 tests, metric intervals)")


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

    @property
    def image_sizes(self) -> tuple[int, ...]:
        """Side lengths (pixels) of the images preprocessing makes: the networks' and encoders' inputs."""
        sizes = {net.input_size for net in self.cnn.nets.values()}
        sizes |= {encoder.input_size for encoder in self.cnn.encoders.values()}
        return tuple(sorted(sizes))


#: Overrides of the class defaults per preset (nested dicts, as a TOML file would give them).
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    "quick": {
        # ~8 800 galaxies after the cuts, so that the test split holds ~880 (DESIGN §5: at least 800)
        "mock": {"n_galaxies": 10_000},
        "cnn": {
            # a fixed compute budget (training images per network), whatever the sample size: what 6, 2, 6 and
            # 3 epochs over the ~1 770 (GZ2) and ~2 110 (CNN4) training galaxies of a 3 000-galaxy mock cost,
            # rounded to whole batches per validation round (`epochs` rounds each)
            "nets": {
                "cnn1": {"backbone": "resnet18", "input_size": 64},
                # Xception costs ~3x ResNet18 per image on a CPU (depthwise convolutions): 2 rounds and a
                # third of the images keep it near the cost of CNN1 (bench/README.md)
                "cnn2": {
                    "backbone": "legacy_xception",
                    "input_size": 64,
                    "epochs": 2,
                    "train_images_budget": 3_584,
                },
                # measured on the quick mock: 3e-4 suits the ResNet18s trained from scratch (CNN1, CNN4), 1e-3
                # the custom network
                "cnn3": {"backbone": "dieleman", "input_size": 69, "learning_rate": 1e-3},
            },
            "epochs": 6,
            "train_images_budget": 10_752,
            "cnn4_epochs": 3,
            "cnn4_train_images_budget": 6_336,
            "batch_size": 64,
            "learning_rate": 3e-4,
        },
        "gbm": {
            "cv_grid": {"feature_fraction": [0.4, 1.0], "min_data_in_leaf": [50, 150]},
            "permutation_repeats": 2,
        },
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
        "gbm": {
            "cv_search": False,
            "min_data_in_leaf": 5,
            "num_leaves": 8,
            "max_rounds": 200,
            "early_stopping_rounds": 20,
            "permutation_repeats": 1,
        },
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
        Unknown preset, unreadable or malformed TOML, unknown keys, values out of range or of the wrong type
        (a boolean for a number), non-finite numbers, split fractions summing to 1 or more, or no network in
        ``cnn.nets``; the message names the field and the bad value.
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
        except UnicodeDecodeError as err:
            msg = f"configuration file {path}: expected UTF-8 TOML; byte {err.start} is not UTF-8"
            msg += f" ({err.reason})"
            raise ConfigError(msg) from err
        file_data.pop("preset", None)
        data = _deep_merge(data, file_data)
        source += f" + {path}"
    if overrides:
        data = _deep_merge(data, overrides)
        source += " + command-line options"
    data["preset"] = preset
    cnn_data = data.get("cnn")
    if isinstance(cnn_data, dict) and "pretrained_weights" in cnn_data:
        # done here too, not only by the model's validator, for a one-line message without the section's repr
        try:
            data["cnn"] = _move_pretrained_weights(
                cnn_data, CnnConfig.model_fields["nets"].get_default(call_default_factory=True)
            )
        except ConfigError as err:
            raise ConfigError(f"invalid configuration ({source}): {err}") from None
    try:
        config = PipelineConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, source)) from None
    if not config.cnn.nets:
        # checked here, not on the model: `train-cnn --nets cnn4` empties the nets of a loaded configuration
        msg = (
            f"invalid configuration ({source}): cnn.nets = {{}}: expected at least one network "
            "(preprocessing makes the images at the networks' input sizes)"
        )
        raise ConfigError(msg)
    return config


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


def runtime_fields(section: type[BaseModel]) -> tuple[str, ...]:
    """Return the names of a section's fields marked :data:`RUNTIME`, in declaration order."""
    return tuple(
        name
        for name, info in section.model_fields.items()
        if isinstance(info.json_schema_extra, dict) and info.json_schema_extra.get("runtime") is True
    )


def without_runtime_fields(config: PipelineConfig) -> PipelineConfig:
    """Return a copy of ``config`` with every :data:`RUNTIME` field at its default (``config`` unchanged)."""
    neutral = config.model_copy(deep=True)
    for section_name in PipelineConfig.model_fields:
        section = getattr(neutral, section_name)
        if not isinstance(section, BaseModel):
            continue
        for field_name in runtime_fields(type(section)):
            default = type(section).model_fields[field_name].get_default(call_default_factory=True)
            setattr(section, field_name, default)
    return neutral


@dataclass(frozen=True)
class StageConfig:
    """The configuration a stage's outputs depend on.

    Attributes
    ----------
    sections : tuple of str
        Sections of :class:`PipelineConfig` (``"catalog"``, ``"cosmology"``, ...).
    derived : tuple of str
        Properties of :class:`PipelineConfig` hashed too, for a dependence on a few fields of another stage's
        section (the preprocess stage makes images at the networks' input sizes).
    """

    sections: tuple[str, ...]
    derived: tuple[str, ...] = ()


#: Stage name -> the configuration its outputs depend on (hashed into the work-directory manifest).
STAGE_CONFIG: dict[str, StageConfig] = {
    "mock": StageConfig(("mock",)),
    "fetch": StageConfig(("fetch",)),
    "catalog": StageConfig(("catalog", "cosmology")),
    "preprocess": StageConfig(("preprocess",), derived=("image_sizes",)),
    "train-cnn": StageConfig(("cnn",)),
    "extract": StageConfig(("cnn",)),
    "train-gbm": StageConfig(("gbm",)),
    # the bundle records the whole configuration; these sections define what its models compute
    "bundle": StageConfig(("cosmology", "catalog", "preprocess", "cnn", "gbm")),
    "evaluate": StageConfig(("evaluate", "gbm")),
}


def stage_config_hash(config: PipelineConfig, stage: str) -> str:
    """SHA-256 (hex) of the configuration a stage depends on (:data:`STAGE_CONFIG`), runtime fields left out.

    Parameters
    ----------
    config : PipelineConfig
    stage : str
        A key of :data:`STAGE_CONFIG`.

    Raises
    ------
    KeyError
        If the stage has no entry in :data:`STAGE_CONFIG`.
    """
    try:
        needs = STAGE_CONFIG[stage]
    except KeyError:
        msg = f"no configuration hash for stage {stage!r}; expected one of {list(STAGE_CONFIG)}"
        raise KeyError(msg) from None
    neutral = without_runtime_fields(config)
    hashed = section_hash(neutral, *needs.sections)
    if not needs.derived:
        return hashed
    derived = {name: getattr(neutral, name) for name in needs.derived}
    canonical = json.dumps({"sections": hashed, "derived": derived}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
