"""Shared test options, markers and fixtures.

Markers (registered in pyproject.toml, strict): ``slow`` runs with ``--run-slow`` or when ``CI=true`` (CI
runs everything but ``gpu`` and ``network``), ``network`` runs with ``--run-network``, ``gpu`` is skipped
without a CUDA device. CUDA is checked only when a collected test carries the ``gpu`` marker, so torch is not
imported otherwise.
"""

from __future__ import annotations

import os
import sys
import types
from collections.abc import Callable

import pytest

from morphomass.pipeline import RUN_ORDER, STAGES


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="also run @slow tests (default when CI=true)")
    parser.addoption("--run-network", action="store_true", help="also run @network tests (downloads)")


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    run_slow = config.getoption("--run-slow") or os.environ.get("CI", "").lower() == "true"
    run_network = config.getoption("--run-network")
    cuda: bool | None = None  # checked at most once, and only if some test needs it
    for item in items:
        if "slow" in item.keywords and not run_slow:
            item.add_marker(pytest.mark.skip(reason="slow: pass --run-slow"))
        if "network" in item.keywords and not run_network:
            item.add_marker(pytest.mark.skip(reason="network: pass --run-network"))
        if "gpu" in item.keywords:
            if cuda is None:
                cuda = _cuda_available()
            if not cuda:
                item.add_marker(pytest.mark.skip(reason="gpu: no CUDA device"))


@pytest.fixture(name="unbuilt")
def fixture_unbuilt(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Make stages look not built (their modules cannot be imported), whatever this checkout implements."""

    def make_unbuilt(*names: str) -> None:
        for name in names:
            monkeypatch.setitem(sys.modules, STAGES[name].module, None)

    return make_unbuilt


@pytest.fixture(name="fake_stage")
def fixture_fake_stage(monkeypatch: pytest.MonkeyPatch) -> Callable[[str, Callable[..., object]], None]:
    """Install a stand-in runner for a stage (a fake module in ``sys.modules``), e.g. a quiet mock."""

    def install(name: str, runner: Callable[..., object]) -> None:
        stage = STAGES[name]
        module = types.ModuleType(stage.module)
        setattr(module, stage.function, runner)
        monkeypatch.setitem(sys.modules, stage.module, module)

    return install


@pytest.fixture(name="only_mock_built")
def fixture_only_mock_built(unbuilt: Callable[..., None]) -> None:
    """Every stage after the mock looks not built."""
    unbuilt(*(name for name in RUN_ORDER if name != "mock"), "fetch", "predict")
