"""Real-data download: GSWLC-2, HyperLeda, Galaxy Zoo 2 (Hart+16), SDSS DR12 photometry, stars and images.

``run_fetch`` writes ``raw/`` in the formats of DESIGN §2 (the ones the mock writes) from the archives named
in reference/data_formats.md; every base URL is configuration (``[fetch]`` section), so a mirror or a local
copy works.
"""

from morphomass.fetch.stage import run_fetch

__all__ = ["run_fetch"]
