"""The work-directory lock: one writer at a time, a clear refusal naming the holder, --wait, stale locks.

Other processes are real (``subprocess``): a holder that takes the lock and sleeps, and ``morphomass`` itself
with the stand-in stages of conftest.py installed, so the concurrency test runs the real CLI and lock in
three processes without rendering a survey.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from morphomass import cli
from morphomass.config import load_config
from morphomass.errors import WorkdirLockedError
from morphomass.pipeline import RUN_ORDER, execute_stage, run_pipeline
from morphomass.workdir import LOCK_INFO_NAME, WorkDir, tree_sha256, workdir_lock

TESTS = Path(__file__).parent

HOLDER = """
import sys, time
from morphomass.workdir import WorkDir, workdir_lock
with workdir_lock(WorkDir(sys.argv[1])):
    print("held", flush=True)
    sys.stdin.readline()
"""

#: ``morphomass`` with every stage replaced by the stand-ins of conftest.py; SLOW_STAGE sleeps SLOW_SECONDS.
FAKE_CLI = f"""
import os, sys, time, types
sys.path.insert(0, {str(TESTS)!r})
from conftest import write_stand_in_outputs
from morphomass import cli
from morphomass.pipeline import RUN_ORDER, STAGES

def stand_in(name):
    def run(config, workdir, *, progress=True, force=False):
        if name == os.environ.get("SLOW_STAGE"):
            time.sleep(float(os.environ["SLOW_SECONDS"]))
        return write_stand_in_outputs(name, workdir)
    return run

for name in (*RUN_ORDER, "fetch"):
    stage = STAGES[name]
    module = sys.modules.setdefault(stage.module, types.ModuleType(stage.module))
    setattr(module, stage.function, stand_in(name))
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.fixture(autouse=True)
def _restore_logging():
    """Put logging back after each test (the CLI configures it globally)."""
    root = logging.getLogger()
    package = logging.getLogger("morphomass")
    saved = (root.handlers[:], root.level, package.level)
    yield
    root.handlers[:], root.level = saved[0], saved[1]
    package.setLevel(saved[2])


@pytest.fixture(name="holder")
def fixture_holder(tmp_path: Path):
    """Start a process that holds the lock of ``tmp_path / 'work'`` until its stdin is closed."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path / "work")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    with proc:  # closes the pipes
        yield proc
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def _error_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def test_second_writer_exits_2_naming_the_holder(
    holder: subprocess.Popen, fake_pipeline: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wd = tmp_path / "work"
    info = json.loads((wd / LOCK_INFO_NAME).read_text())
    for command in ("run", "catalog", "mock"):
        assert cli.main([command, "--workdir", str(wd), "--preset", "tiny"]) == 2
        lines = _error_lines(capsys)
        assert len(lines) == 1
        assert f"is in use by another morphomass process: pid {holder.pid}" in lines[0]
        assert f"started {info['started_utc']}" in lines[0]
        assert "pass --wait" in lines[0]
    assert fake_pipeline == []  # nothing ran
    with pytest.raises(WorkdirLockedError, match=rf"pid {holder.pid} on .*, started "):
        execute_stage("catalog", load_config("tiny"), WorkDir(wd))


def test_stale_lock_of_a_dead_process_is_taken_over(
    holder: subprocess.Popen, fake_pipeline: list[str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    wd = WorkDir(tmp_path / "work")
    holder.send_signal(signal.SIGKILL)  # dies holding the lock: its info file stays behind
    holder.wait(timeout=10)
    assert json.loads((wd.root / LOCK_INFO_NAME).read_text())["pid"] == holder.pid
    with caplog.at_level(logging.INFO, logger="morphomass"):
        summary = run_pipeline(load_config("tiny"), wd, progress=False)
    assert summary.stages("ran") == list(RUN_ORDER)
    assert f"taking over the lock of pid {holder.pid}" in caplog.text
    assert not (wd.root / LOCK_INFO_NAME).exists()  # released


def test_lock_is_reentrant_within_a_process(fake_pipeline: list[str], tmp_path: Path) -> None:
    wd = WorkDir(tmp_path / "work")
    with workdir_lock(wd), workdir_lock(wd):
        assert json.loads((wd.root / LOCK_INFO_NAME).read_text())["pid"] == os.getpid()
        run_pipeline(load_config("tiny"), wd, progress=False)
    assert fake_pipeline == list(RUN_ORDER)
    assert not (wd.root / LOCK_INFO_NAME).exists()


def _fake_cli(args: list[str], **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", FAKE_CLI, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200", **env},
    )


def _output_hashes(root: Path) -> dict[str, str]:
    """SHA-256 of every file of a work directory but the manifest and the lock's files."""
    return {
        p.relative_to(root).as_posix(): tree_sha256(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "manifest.json" and not p.name.startswith(".morphomass.lock")
    }


def test_two_runs_on_one_work_directory(tmp_path: Path) -> None:
    single, shared = tmp_path / "single", tmp_path / "shared"
    args = ["--preset", "tiny", "-q"]
    alone = _fake_cli(["run", "--workdir", str(single), *args[:2]])
    first = _fake_cli(["run", "--workdir", str(shared), *args[:2]], SLOW_STAGE="catalog", SLOW_SECONDS="3")
    deadline = time.monotonic() + 20
    while not (shared / LOCK_INFO_NAME).exists():
        assert time.monotonic() < deadline and first.poll() is None, first.communicate()
        time.sleep(0.05)
    refused = _fake_cli(["run", "--workdir", str(shared), *args[:2]])
    waiting = _fake_cli(["-q", "run", "--workdir", str(shared), "--wait", *args[:2]])
    _, refused_err = refused.communicate(timeout=60)
    assert refused.returncode == 2, refused_err
    assert f"is in use by another morphomass process: pid {first.pid}" in refused_err
    assert len(refused_err.strip().splitlines()) == 1
    first_out, first_err = first.communicate(timeout=60)
    assert first.returncode == 0, first_err
    waited_out, waited_err = waiting.communicate(timeout=60)
    assert waiting.returncode == 0, waited_err
    assert "waiting for it to finish" in waited_err
    rows = [line.split() for line in waited_out.splitlines() if line.split()[:1] in ([s] for s in RUN_ORDER)]
    assert [row[1] for row in rows] == ["skipped"] * len(RUN_ORDER)  # the first run did everything
    alone_err = alone.communicate(timeout=60)[1]
    assert alone.returncode == 0, alone_err
    assert _output_hashes(shared) == _output_hashes(single)
    assert len(_output_hashes(single)) > 5
