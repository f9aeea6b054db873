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
from hypothesis import settings

from morphomass.config import PipelineConfig
from morphomass.pipeline import RUN_ORDER, STAGES
from morphomass.workdir import StageResult, WorkDir, write_text_atomic

# Property and fuzz tests draw random examples locally, to find new cases; on CI (CI=true) they draw the same
# examples every run, so that a submission's result does not depend on the luck of the draw.
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI", "").lower() == "true":
    settings.load_profile("ci")


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


def write_stand_in_outputs(name: str, workdir: WorkDir) -> StageResult:
    """Write every declared output of a stage as a small stand-in file (a folder gets one file in it)."""
    outputs = STAGES[name].output_paths(workdir)
    for rel, path in outputs.items():
        if rel == "raw":  # what the later stages read from raw/
            write_text_atomic(workdir.raw_images / "g" / "1.fits", name)
            write_text_atomic(workdir.stars, name)
        elif not path.suffix:
            write_text_atomic(path / "stand-in.txt", name)
        else:
            write_text_atomic(path, name)
    return StageResult(name, outputs=list(outputs))


@pytest.fixture(name="fake_stage")
def fixture_fake_stage(monkeypatch: pytest.MonkeyPatch) -> Callable[[str, Callable[..., object]], None]:
    """Install a stand-in runner for a stage (in a fake module in ``sys.modules``), e.g. a quiet mock.

    Stages that share a module (``train-cnn`` and ``extract``) share its fake too.
    """
    modules: dict[str, types.ModuleType] = {}

    def install(name: str, runner: Callable[..., object]) -> None:
        stage = STAGES[name]
        if stage.module not in modules:
            modules[stage.module] = types.ModuleType(stage.module)
            monkeypatch.setitem(sys.modules, stage.module, modules[stage.module])
        setattr(modules[stage.module], stage.function, runner)

    return install


@pytest.fixture(name="fake_pipeline")
def fixture_fake_pipeline(fake_stage: Callable[[str, Callable[..., object]], None]) -> list[str]:
    """Replace every stage of ``morphomass run`` (and fetch) by a stand-in that writes its declared outputs.

    Returns the list of the stages run, in order; replace single stages afterwards with ``fake_stage``.
    """
    ran: list[str] = []

    def stand_in(name: str) -> Callable[..., StageResult]:
        def run(
            config: PipelineConfig, workdir: WorkDir, *, progress: bool = True, force: bool = False
        ) -> StageResult:
            ran.append(name)
            return write_stand_in_outputs(name, workdir)

        return run

    for name in (*RUN_ORDER, "fetch"):
        fake_stage(name, stand_in(name))
    return ran
