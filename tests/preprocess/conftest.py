"""Fixtures of the preprocessing tests.

The real SDSS cut-outs and a tiny mock survey with a sample.parquet.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from morphomass.config import load_config
from morphomass.workdir import WorkDir

#: Five real SDSS r-band cut-outs (copies of ../shared/fixtures/sdss_real, DESIGN §7, kept in the repository).
REAL_DIR = Path(__file__).resolve().parents[1] / "data" / "sdss_real"
REAL_FITS = sorted(REAL_DIR.glob("*.fits"))


@pytest.fixture(name="real_fits", params=[p.name for p in REAL_FITS] or ["missing"])
def fixture_real_fits(request: pytest.FixtureRequest) -> Path:
    """Each real SDSS cut-out in turn (skipped if the copies in tests/data/sdss_real are missing)."""
    path = REAL_DIR / request.param
    if not path.is_file():
        pytest.skip(f"real SDSS fixtures not found in {REAL_DIR}")
    return path


def make_sample(workdir: WorkDir) -> pd.DataFrame:
    """Write sample.parquet (DESIGN §2 columns this stage reads) for the galaxies of a mock's raw/images/g.

    Positions, redshifts and D25 come from the mock's truth table (a test may read it; stages may not);
    distances use FlatLambdaCDM(70, 0.3), as the catalogue stage does by default.
    """
    from astropy import units as u
    from astropy.cosmology import FlatLambdaCDM

    truth = pd.read_parquet(workdir.mock_truth)
    ids = {int(p.stem) for p in (workdir.raw_images / "g").glob("*.fits")}
    truth = truth[truth["objid"].isin(ids)].sort_values("objid")
    cosmo = FlatLambdaCDM(H0=70, Om0=0.3)
    z = truth["z"].to_numpy()
    dist = cosmo.luminosity_distance(z).to(u.Mpc).value
    sample = pd.DataFrame(
        {
            "objid": truth["objid"].astype(np.int64).to_numpy(),
            "ra": truth["ra"].to_numpy(),
            "dec": truth["dec"].to_numpy(),
            "z": z,
            "d25_arcmin": truth["d25_arcmin_leda"].to_numpy(),
            "lum_g": truth["flux_g_nmgy"].to_numpy() * dist**2 * 10 ** (1 + 0.4 * 5.11),
            "dist_mpc": dist,
            "pixel_kpc": 0.396 * cosmo.kpc_proper_per_arcmin(z).to(u.kpc / u.arcmin).value / 60.0,
            "split": "train",
        }
    )
    sample.to_parquet(workdir.sample, index=False)
    return sample


@pytest.fixture(name="tiny_survey", scope="session")
def fixture_tiny_survey(tmp_path_factory: pytest.TempPathFactory) -> WorkDir:
    """Return a tiny-preset mock survey (60 galaxies, g and i images) with a sample.parquet.

    Never modified by tests.
    """
    from morphomass.mock import run_mock

    workdir = WorkDir(tmp_path_factory.mktemp("tiny-survey"))
    run_mock(load_config("tiny"), workdir, progress=False)
    make_sample(workdir)
    return workdir


@pytest.fixture(name="survey_copy")
def fixture_survey_copy(tiny_survey: WorkDir, tmp_path: Path) -> Callable[[], WorkDir]:
    """Return a function that copies the tiny survey (raw/ and sample.parquet) into a fresh work directory."""

    def copy() -> WorkDir:
        workdir = WorkDir(tmp_path / "work")
        workdir.ensure()
        shutil.copytree(tiny_survey.raw, workdir.raw, dirs_exist_ok=True)
        shutil.copy2(tiny_survey.sample, workdir.sample)
        return workdir

    return copy
