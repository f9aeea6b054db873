"""Predictions for new galaxies (DESIGN §1 ``predict``): the model bundle and its application.

``write_bundle(config, workdir)`` (:mod:`~morphomass.predict.writer`; the ``bundle`` stage is ``run_bundle``)
writes ``models/bundle.json`` (every file needed, with SHA-256, versions, configuration, preprocessing
settings, dead features, feature names and training ranges); ``load_bundle(path)``
(:mod:`~morphomass.predict.bundle`) checks and loads it, and ``Bundle.predict(images, catalog)`` returns a
pandas DataFrame. ``run_predict`` is the ``morphomass predict`` command. torch and lightgbm are imported only
when a bundle first predicts.
"""

from morphomass.errors import BundleError, BundleVersionWarning
from morphomass.predict.bundle import Bundle, load_bundle
from morphomass.predict.predictor import FLAGS, OUTPUT_COLUMNS
from morphomass.predict.stage import run_predict, write_predictions
from morphomass.predict.writer import run_bundle, write_bundle

__all__ = [
    "FLAGS",
    "OUTPUT_COLUMNS",
    "Bundle",
    "BundleError",
    "BundleVersionWarning",
    "load_bundle",
    "run_bundle",
    "run_predict",
    "write_bundle",
    "write_predictions",
]
