"""The sample-selection cuts of SPEC D1-D3 on tiny arrays."""

from __future__ import annotations

import numpy as np

from morphomass.selection import CHI2_CUT, sample_cuts, selected

NAN = float("nan")


def _cuts(**overrides: object) -> dict[str, np.ndarray]:
    # galaxy:      ok    no match  no D25  small  z<=0  no mass  no chi2  chi2 6  bad phot
    values: dict[str, object] = {
        "matched": [True, False, True, True, True, True, True, True, True],
        "d25_arcmin": [0.5, NAN, NAN, 0.4, 0.5, 0.5, 0.5, 0.5, 0.5],
        "z": [0.05, 0.05, 0.05, 0.05, 0.0, 0.05, 0.05, 0.05, 0.05],
        "logmstar": [10.0, 10.0, 10.0, 10.0, 10.0, NAN, 10.0, 10.0, 10.0],
        "logmstar_err": [0.1] * 9,
        "chi2_r": [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, NAN, 6.0, 1.0],
        "photometry_ok": [True] * 8 + [False],
        "radius_arcsec": 3.0,
        "d25_min_arcmin": 0.4,
        "chi2_max": 5.0,
    }
    values.update(overrides)
    return {cut.key: cut.reject for cut in sample_cuts(**values)}  # type: ignore[arg-type]


def test_each_cut_rejects_its_galaxy_in_order() -> None:
    cuts = _cuts()
    assert list(cuts) == [
        "no_hyperleda",
        "no_d25",
        "d25",
        "missing_redshift",
        "missing_mass",
        "missing_chi2",
        "missing_photometry",
        CHI2_CUT,
    ]
    assert np.flatnonzero(cuts["no_hyperleda"]).tolist() == [1]
    assert np.flatnonzero(cuts["no_d25"]).tolist() == [1, 2]  # the unmatched galaxy has no diameter either
    assert np.flatnonzero(cuts["d25"]).tolist() == [1, 2, 3]  # D25 > 0.4' strictly (SPEC D2)
    assert np.flatnonzero(cuts["missing_redshift"]).tolist() == [4]
    assert np.flatnonzero(cuts["missing_mass"]).tolist() == [5]
    assert np.flatnonzero(cuts["missing_chi2"]).tolist() == [6]
    assert np.flatnonzero(cuts["missing_photometry"]).tolist() == [8]
    assert np.flatnonzero(cuts[CHI2_CUT]).tolist() == [6, 7]  # chi2 < 5 (SPEC D3)


def test_without_chi2_max_or_photometry_those_cuts_are_left_out() -> None:
    cuts = sample_cuts(
        matched=[True, True],
        d25_arcmin=[0.5, 0.5],
        z=[0.05, 0.05],
        logmstar=[10.0, 10.0],
        logmstar_err=[0.1, 0.1],
        chi2_r=[NAN, 40.0],
        radius_arcsec=3.0,
        d25_min_arcmin=0.4,
        chi2_max=None,
    )
    assert [cut.key for cut in cuts] == ["no_hyperleda", "no_d25", "d25", "missing_redshift", "missing_mass"]
    assert selected(cuts).tolist() == [True, True]


def test_descriptions_name_the_thresholds() -> None:
    cuts = sample_cuts(
        matched=[True],
        d25_arcmin=[0.5],
        z=[0.05],
        logmstar=[10.0],
        logmstar_err=[0.1],
        chi2_r=[1.0],
        radius_arcsec=3.0,
        d25_min_arcmin=0.4,
        chi2_max=5.0,
    )
    descriptions = {cut.key: cut.description for cut in cuts}
    assert descriptions["no_hyperleda"] == "no HyperLeda galaxy within 3 arcsec"
    assert descriptions["d25"] == "D25 <= 0.4 arcmin"
    assert descriptions[CHI2_CUT] == "SED reduced chi2 >= 5"
    assert selected(cuts).tolist() == [True]
