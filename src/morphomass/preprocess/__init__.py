"""Image preprocessing (SPEC D5, I1-I4, F1-F3, B1): star subtraction, log scaling, resizing, features.

The numerics are pure functions (:mod:`.stars`, :mod:`.scaling`, :mod:`.resize`, :mod:`.features`, combined
per galaxy in :mod:`.galaxy`); :mod:`.stage` runs them over the sample with Dask and writes ``images.zarr``
and ``features/photometric.parquet``. :mod:`.cutout` reads part of a large or wide image for ``predict`` (a
re-cut square around the galaxy, block reduction).
"""

from morphomass.preprocess.features import FEATURE_COLUMNS, compute_photometric_features
from morphomass.preprocess.galaxy import GalaxyProducts, preprocess_galaxy
from morphomass.preprocess.morphology import MORPHOLOGY_FEATURES, compute_morphology
from morphomass.preprocess.resize import resize_image
from morphomass.preprocess.scaling import compute_noise_level, log_scale, rescale_linear, solve_scaling_a
from morphomass.preprocess.stage import run_preprocess
from morphomass.preprocess.stars import StarSubtraction, subtract_stars

__all__ = [
    "FEATURE_COLUMNS",
    "MORPHOLOGY_FEATURES",
    "GalaxyProducts",
    "StarSubtraction",
    "compute_noise_level",
    "compute_morphology",
    "compute_photometric_features",
    "log_scale",
    "preprocess_galaxy",
    "rescale_linear",
    "resize_image",
    "run_preprocess",
    "solve_scaling_a",
    "subtract_stars",
]
