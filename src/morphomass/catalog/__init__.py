"""The catalogue stage (SPEC D1-D3, D6-D9): cross-matches, selection, targets, GZ2 probabilities, split.

``run_catalog`` turns ``raw/`` into ``sample.parquet`` (DESIGN §2) and ``results/tables/sample_summary.csv``.
The readers of the raw files are in :mod:`morphomass.rawformats`, the selection cuts in
:mod:`morphomass.selection`, fluxes, distances and luminosities in :mod:`morphomass.photometry`; the numerics
here (:mod:`~morphomass.catalog.crossmatch`, :mod:`~morphomass.catalog.targets`) are usable on their own; the
GZ2 tree checks live in :mod:`morphomass.gz2`.
"""

from morphomass.catalog.stage import build_sample, run_catalog

__all__ = ["build_sample", "run_catalog"]
