"""The mock's pure population functions.

Asinh magnitudes, isophotal radii, the selectable-redshift bound and the GZ2 votes.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import gammaincinv

from morphomass import gz2
from morphomass.mock.physics import (
    CLASSES,
    SDSS_SPECTRO_LIMIT_R,
    draw_galaxies,
    isophotal_radius_arcsec,
    max_selectable_redshift,
    observe_galaxies,
)
from morphomass.mock.votes import simulate_votes

# ---------------------------------------------------------------------------------- asinh_mag

# ---------------------------------------------------------------------------------- isophotes


def _exponential_r25(mag: np.ndarray, hlr: np.ndarray, q: np.ndarray, isophote: float) -> np.ndarray:
    """Analytic isophotal radius of an exponential (Sersic n = 1) profile.

    I(R) = I_e exp(-b (R / hlr - 1)) with b = b_1 the exact half-light constant (gamma(2, b) = 1/2) and
    I_e = F / (2 pi n e^b b^-2n Gamma(2n) hlr^2 q) = F b^2 / (2 pi e^b hlr^2 q). Setting
    I(R) = 10^(-0.4 mu_iso) and mu_e = -2.5 log10 I_e gives R = hlr (1 + (mu_iso - mu_e) ln10 / (2.5 b)).
    """
    b = gammaincinv(2.0, 0.5)
    flux = 10 ** (-0.4 * mag)
    i_e = flux * b**2 / (2 * np.pi * np.exp(b) * hlr**2 * q)
    mu_e = -2.5 * np.log10(i_e)
    return hlr * (1 + (isophote - mu_e) * np.log(10) / (2.5 * b))


def test_isophotal_radius_of_an_exponential_matches_the_analytic_solution() -> None:
    mag = np.array([14.0, 15.5, 16.0, 17.0, 17.5])
    hlr = np.array([6.0, 3.0, 4.0, 2.0, 8.0])
    q = np.array([1.0, 0.7, 0.4, 0.9, 0.25])
    n = np.ones(5)
    expected = _exponential_r25(mag, hlr, q, 25.0)
    assert (expected > hlr).all()  # the cases are ones where the isophote lies outside the half-light radius
    got = isophotal_radius_arcsec([(mag, hlr, n, q)], 25.0)
    # The function returns the last point of its logarithmic radius grid (1.9 % steps) inside the isophote.
    assert (got <= expected * (1 + 1e-9)).all(), (got, expected)
    np.testing.assert_allclose(got, expected, rtol=0.025)
    # A fainter isophote lies further out by exactly ln10 / (2.5 b) half-light radii per magnitude.
    got_26 = isophotal_radius_arcsec([(mag, hlr, n, q)], np.full(5, 26.0))
    np.testing.assert_allclose(got_26, _exponential_r25(mag, hlr, q, 26.0), rtol=0.025)


def test_isophotal_radius_adds_components_and_is_zero_below_the_isophote() -> None:
    mag = np.array([15.0, 16.0])
    hlr = np.array([3.0, 5.0])
    n = np.array([1.0, 4.0])
    q = np.array([0.8, 0.6])
    whole = isophotal_radius_arcsec([(mag, hlr, n, q)], 25.0)
    halves = isophotal_radius_arcsec([(mag + 2.5 * np.log10(2), hlr, n, q)] * 2, 25.0)
    np.testing.assert_allclose(halves, whole, rtol=1e-9)
    absent = np.full(2, np.inf)  # an absent component adds nothing
    np.testing.assert_allclose(isophotal_radius_arcsec([(mag, hlr, n, q), (absent, hlr, n, q)], 25.0), whole)
    too_faint = isophotal_radius_arcsec(
        [(np.array([30.0]), np.array([2.0]), np.array([1.0]), np.array([1.0]))], 25.0
    )
    assert too_faint[0] == 0.0


# ---------------------------------------------------------------------------------- selection bound


def test_max_selectable_redshift_bounds_every_selectable_galaxy() -> None:
    rng = np.random.default_rng(20190417)
    candidates = observe_galaxies(draw_galaxies(200_000, rng), rng)
    d25_min_arcmin = 0.4
    selectable = candidates[
        (candidates["mag_r"] < SDSS_SPECTRO_LIMIT_R) & (candidates["d25_arcmin"] > d25_min_arcmin)
    ]
    assert len(selectable) > 100
    checked = 0
    for name in CLASSES:
        group = selectable[selectable["cls"] == name]
        if group.empty:
            continue
        bound = max_selectable_redshift(group["log_mstar"].to_numpy(), name, d25_min_arcmin=d25_min_arcmin)
        above = group["z"].to_numpy() > bound
        assert not above.any(), (name, group.loc[above, ["z", "log_mstar", "mag_r", "d25_arcmin"]].head())
        checked += len(group)
    assert checked == len(selectable)
    # The bound is not vacuous: it excludes a good part of the unrestricted volume.
    for name in ("elliptical", "disk"):
        group = candidates[candidates["cls"] == name]
        bound = max_selectable_redshift(group["log_mstar"].to_numpy(), name, d25_min_arcmin=d25_min_arcmin)
        assert (group["z"].to_numpy() > bound).mean() > 0.2


def test_restricted_draw_stays_below_the_bound() -> None:
    rng = np.random.default_rng(3)
    frame = draw_galaxies(5000, rng, d25_min_arcmin=0.4)
    # Masses are drawn on a 0.005 dex grid and jittered within a cell, redshifts below the bound at the cell
    # centre; the bound rises with mass, so it holds at the top of the cell.
    half_cell_dex = 0.0025
    for name in CLASSES:
        group = frame[frame["cls"] == name]
        log_mstar = group["log_mstar"].to_numpy()
        bound = max_selectable_redshift(log_mstar + half_cell_dex, name, d25_min_arcmin=0.4)
        assert (group["z"].to_numpy() <= bound + 1e-9).all(), name
        assert (np.diff(max_selectable_redshift(np.sort(log_mstar), name, d25_min_arcmin=0.4)) >= 0).all()
    assert frame["z"].between(0.01, 0.3).all()
    # The restriction matters: it moves draws to low redshift, where small galaxies can pass the cut.
    assert (frame["z"] < 0.1).mean() > (draw_galaxies(5000, rng)["z"] < 0.1).mean()


# ---------------------------------------------------------------------------------- GZ2 votes


def _random_conditional(n: int, rng: np.random.Generator) -> np.ndarray:
    """Random per-question answer probabilities (sometimes not normalised, sometimes nearly degenerate)."""
    cond = np.zeros((n, len(gz2.ANSWERS)))
    for question in gz2.QUESTIONS:
        idx = [gz2.answer_index(a.answer_id) for a in question.answers]
        alpha = rng.choice([0.05, 1.0, 5.0])
        probs = rng.dirichlet(np.full(len(idx), alpha), n) + 1e-12
        cond[:, idx] = probs * rng.uniform(0.5, 2.0, (n, 1))
    return cond


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_simulated_votes_obey_the_decision_tree(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 400
    n_classifiers = rng.integers(0, 120, n)
    counts = simulate_votes(_random_conditional(n, rng), n_classifiers, rng)
    assert counts.shape == (n, len(gz2.ANSWERS))
    assert np.issubdtype(counts.dtype, np.integer)
    assert (counts >= 0).all()

    def total(task: str) -> np.ndarray:
        question = next(q for q in gz2.QUESTIONS if q.task == task)
        return counts[:, [gz2.answer_index(a.answer_id) for a in question.answers]].sum(axis=1)

    np.testing.assert_array_equal(total("t01"), n_classifiers)
    np.testing.assert_array_equal(total("t06"), n_classifiers - counts[:, gz2.answer_index("a03")])
    for question in gz2.QUESTIONS:
        if question.parent is not None:
            np.testing.assert_array_equal(
                total(question.task), counts[:, gz2.answer_index(question.parent)], err_msg=question.task
            )
    # The walk goes deep: later questions do get votes.
    assert total("t11").sum() > 0 and total("t08").sum() > 0


def test_simulated_votes_follow_the_probabilities() -> None:
    rng = np.random.default_rng(7)
    n = 2000
    cond = np.zeros((n, len(gz2.ANSWERS)))
    for question in gz2.QUESTIONS:
        cond[:, [gz2.answer_index(a.answer_id) for a in question.answers]] = 1.0
    a01, a02, a03 = (gz2.answer_index(a) for a in ("a01", "a02", "a03"))
    cond[:, [a01, a02, a03]] = [0.7, 0.25, 0.05]
    counts = simulate_votes(cond, np.full(n, 50), rng)
    share = counts[:, [a01, a02, a03]].sum(axis=0) / (50 * n)
    np.testing.assert_allclose(share, [0.7, 0.25, 0.05], atol=0.01)


def test_votes_are_reproducible() -> None:
    cond = _random_conditional(50, np.random.default_rng(1))
    n_classifiers = np.full(50, 40)
    first = simulate_votes(cond, n_classifiers, np.random.default_rng(9))
    again = simulate_votes(cond, n_classifiers, np.random.default_rng(9))
    np.testing.assert_array_equal(first, again)
    assert math.isclose(first[:, :3].sum(), 50 * 40)
