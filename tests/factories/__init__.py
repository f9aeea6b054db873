"""Test data factories: small synthetic inputs that the tests make, gathered where a test writer finds them.

- :mod:`factories.archive`: a local stand-in for the real archives (GSWLC, HyperLeda, VizieR, GZ2, SkyServer,
  the mosaic service and SDSS frames) served on 127.0.0.1, around a real SDSS cut-out (fetch tests).
- :mod:`factories.rawfiles`: small raw files in the real formats of DESIGN §2 (catalogue tests).
- :mod:`factories.scenes`: point sources and galaxies in pixels (preprocessing tests).
- :mod:`factories.specs`: a plain mock image specification to change field by field (rendering tests).
- :mod:`factories.morphology`: analytic profiles and real cut-outs for the classical morphology tests.
- :mod:`factories.trained`: a tiny trained work directory and its bundle, shared by the prediction tests.
- :mod:`factories.gbm_tables`: synthetic sample and feature tables with the DESIGN §2 columns (GBM and
  evaluate tests, ``bench/bench_gbm.py``).

Import them as ``from factories.archive import FakeArchive`` (``tests/`` is on the path of every test).
"""
