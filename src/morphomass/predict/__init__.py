"""Predictions for new galaxies (DESIGN §1 ``predict``): the model bundle and its application.

``write_bundle(config, workdir)`` (:mod:`~morphomass.predict.writer`; the ``bundle`` stage is ``run_bundle``)
writes ``models/bundle.json`` (every file needed, with SHA-256, versions, configuration, preprocessing
settings, dead features, feature names and training ranges); ``load_bundle(path)``
(:mod:`~morphomass.predict.bundle`) checks and loads it, and ``Bundle.predict(images, catalog)`` returns a
pandas DataFrame. ``run_predict`` is the ``morphomass predict`` command. torch and lightgbm are imported only
when a bundle first predicts. At survey scale, ``predict_distributed``
(:mod:`~morphomass.predict.distributed`) predicts a catalogue on a Dask cluster into one Parquet file per
partition (``read_predictions`` reads them back), and ``predict_hats`` (:mod:`~morphomass.predict.hats`, the
``[scale]`` extra) maps the prediction over an LSDB catalogue's HATS partitions.
"""

from morphomass.errors import BundleError, BundleVersionWarning
from morphomass.predict.bundle import Bundle, load_bundle
from morphomass.predict.distributed import predict_distributed, read_predictions
from morphomass.predict.hats import predict_hats
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
    "predict_distributed",
    "predict_hats",
    "read_predictions",
    "run_bundle",
    "run_predict",
    "write_bundle",
    "write_predictions",
]
