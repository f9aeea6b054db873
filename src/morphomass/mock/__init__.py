"""The built-in synthetic survey (DESIGN §6): a small universe rendered with GalSim.

Written in the real formats.

See docs/mock.md for its physics and calibration. ``mock_truth.parquet`` is for diagnostics and tests only: no
pipeline stage reads it.
"""

from morphomass.mock.stage import run_mock, write_catalogues
from morphomass.mock.survey import make_survey

__all__ = ["make_survey", "run_mock", "write_catalogues"]
