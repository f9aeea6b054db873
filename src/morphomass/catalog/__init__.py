"""The catalogue stage (SPEC D1-D3, D6-D9): readers, cross-matches, selection, targets, GZ2 probabilities,
split.

``run_catalog`` turns ``raw/`` into ``sample.parquet`` (DESIGN §2) and ``results/tables/sample_summary.csv``.
The readers (:mod:`morphomass.catalog.readers`) and the numerics (:mod:`~morphomass.catalog.crossmatch`,
:mod:`~morphomass.catalog.targets`) are usable on their own; the GZ2 tree checks live in :mod:`morphomass.gz2`.
"""

from morphomass.catalog.stage import build_sample, run_catalog

__all__ = ["build_sample", "run_catalog"]
