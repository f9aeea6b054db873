"""Fixtures of the catalogue tests (raw files from tests/factories/rawfiles.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from factories.rawfiles import Galaxy, write_survey
from morphomass.workdir import WorkDir


@pytest.fixture(name="survey")
def fixture_survey(tmp_path: Path) -> Callable[..., WorkDir]:
    """``survey(galaxies, stars=True)`` writes raw/ under a fresh folder of tmp_path."""
    counter = iter(range(1000))

    def make(galaxies: list[Galaxy], *, stars: bool = True) -> WorkDir:
        return write_survey(tmp_path / f"work{next(counter)}", galaxies, stars=stars)

    return make
