"""One-to-one nearest-neighbour sky matching with known offsets."""

from __future__ import annotations

import numpy as np
import pytest

from factories.rawfiles import offset_position
from morphomass.catalog.crossmatch import match_sky


def _catalogue(
    ra: float, dec: float, offsets_arcsec: list[tuple[float, float]]
) -> tuple[np.ndarray, np.ndarray]:
    points = [offset_position(ra, dec, east, north) for east, north in offsets_arcsec]
    return np.array([p[0] for p in points]), np.array([p[1] for p in points])


def test_inside_and_outside_the_radius() -> None:
    ra, dec = np.array([150.0, 200.0]), np.array([20.0, -30.0])
    cat_ra, cat_dec = (
        np.array(v)
        for v in zip(
            offset_position(150.0, 20.0, 2.0, 2.0),  # 2.83" away
            offset_position(200.0, -30.0, 0.0, 3.1),
            strict=True,
        )
    )
    index, sep = match_sky(ra, dec, cat_ra, cat_dec, radius_arcsec=3.0)
    assert index.tolist() == [0, -1]
    assert sep[0] == pytest.approx(np.hypot(2.0, 2.0), rel=1e-4)
    assert np.isnan(sep[1])
    index, sep = match_sky(ra, dec, cat_ra, cat_dec, radius_arcsec=3.2)  # a larger radius takes it
    assert index.tolist() == [0, 1]
    assert sep[1] == pytest.approx(3.1, rel=1e-4)


def test_the_nearest_of_two_candidates_wins() -> None:
    cat_ra, cat_dec = _catalogue(10.0, 60.0, [(0.0, 2.5), (1.0, 0.5), (-3.5, 0.0)])
    index, sep = match_sky([10.0], [60.0], cat_ra, cat_dec, radius_arcsec=3.6)
    assert index.tolist() == [1]
    assert sep[0] == pytest.approx(np.hypot(1.0, 0.5), rel=1e-4)


def test_one_to_one_the_closer_source_keeps_a_shared_entry() -> None:
    # sources A and B both have entry 0 as nearest; A is closer, so B falls back to its second candidate
    # (entry 1); source C's only candidate is entry 0 too, and it is taken: C gets nothing
    ra0, dec0 = 180.0, 0.0
    a = offset_position(ra0, dec0, 0.5, 0.0)
    b = offset_position(ra0, dec0, -1.0, 0.0)
    c = offset_position(ra0, dec0, 0.0, -2.2)
    cat_ra, cat_dec = _catalogue(ra0, dec0, [(0.0, 0.0), (-3.0, 0.0)])
    index, sep = match_sky([a[0], b[0], c[0]], [a[1], b[1], c[1]], cat_ra, cat_dec, radius_arcsec=2.5)
    assert index.tolist() == [0, 1, -1]
    assert sep[:2] == pytest.approx([0.5, 2.0], rel=1e-4)
    assert np.isnan(sep[2])
    # whatever order the sources come in
    index, _ = match_sky([c[0], b[0], a[0]], [c[1], b[1], a[1]], cat_ra, cat_dec, radius_arcsec=2.5)
    assert index.tolist() == [-1, 1, 0]


def test_no_candidate_and_empty_inputs() -> None:
    index, sep = match_sky([10.0], [10.0], [50.0], [10.0], radius_arcsec=3.0)
    assert index.tolist() == [-1] and np.isnan(sep).all()
    index, sep = match_sky([10.0, 11.0], [10.0, 11.0], [], [], radius_arcsec=3.0)
    assert index.tolist() == [-1, -1] and sep.shape == (2,)
    index, sep = match_sky([], [], [10.0], [10.0], radius_arcsec=3.0)
    assert index.shape == (0,) and sep.shape == (0,)
    with pytest.raises(ValueError, match="radius_arcsec must be positive, got 0"):
        match_sky([1.0], [1.0], [1.0], [1.0], radius_arcsec=0)


def test_separation_is_on_the_sphere_across_ra_zero_and_at_high_dec() -> None:
    # 0.0002 deg of RA across 0/360 at the equator is 0.72"; 0.002 deg of RA at dec 80 is 1.25"
    index, sep = match_sky([359.9999, 40.0], [0.0, 80.0], [0.0001, 40.002], [0.0, 80.0], radius_arcsec=1.3)
    assert index.tolist() == [0, 1]
    assert sep == pytest.approx([0.72, 0.002 * 3600 * np.cos(np.radians(80.0))], rel=1e-3)
