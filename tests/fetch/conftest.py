"""Fixtures of the fetch tests.

The fake universe (module-wide) and its archive server on 127.0.0.1 (per test).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from factories.archive import FakeArchive, FakeSky, build_sky


@pytest.fixture(scope="module", name="sky")
def fixture_sky(tmp_path_factory: pytest.TempPathFactory) -> FakeSky:
    return build_sky(tmp_path_factory.mktemp("sky"))


@pytest.fixture(name="archive")
def fixture_archive(sky: FakeSky) -> Iterator[FakeArchive]:
    archive = FakeArchive(sky)
    archive.start()
    yield archive
    archive.stop()
