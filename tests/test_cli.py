"""The ``morphomass`` command line: subcommands, options -> configuration, exit codes and messages."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

from morphomass import __version__, cli
from morphomass.config import PipelineConfig
from morphomass.pipeline import RUN_ORDER
from morphomass.workdir import StageResult, WorkDir, write_text_atomic

SUBCOMMANDS = {
    "mock": ["--n-galaxies", "--seed", "--preview"],
    "fetch": ["--limit"],
    "catalog": [],
    "preprocess": ["--workers", "--scheduler"],
    "train-cnn": ["--nets"],
    "extract": [],
    "train-gbm": [],
    "bundle": [],
    "evaluate": ["--experiments"],
    "run": [],
    "predict": ["--model", "--images", "--catalog", "--out"],
}
COMMON = ["--workdir", "--preset", "--config", "--force"]
#: Every command that writes into the work directory takes --wait (predict writes elsewhere).
WRITERS = sorted(set(SUBCOMMANDS) - {"predict"})


@pytest.fixture(autouse=True)
def _restore_logging():
    """Put logging back after each test (the CLI configures it globally)."""
    root = logging.getLogger()
    package = logging.getLogger("morphomass")
    saved = (root.handlers[:], root.level, package.level)
    yield
    root.handlers[:], root.level = saved[0], saved[1]
    package.setLevel(saved[2])


@pytest.fixture(name="recorded")
def fixture_recorded(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, PipelineConfig, bool]]:
    """Replace stage execution by a recorder of (stage, config, force)."""
    calls: list[tuple[str, PipelineConfig, bool]] = []

    def execute_stage(name, config, workdir, *, force=False, progress=True, wait=False):
        calls.append((name, config, force))
        return StageResult(name, outputs=["x"], seconds=0.5, summary={"rows": 3})

    monkeypatch.setattr(cli, "execute_stage", execute_stage)
    return calls


def _fake_mock(
    config: PipelineConfig, workdir: WorkDir, *, progress: bool = True, force: bool = False
) -> StageResult:
    write_text_atomic(workdir.stars, "objID,ra,dec,type,psfMag_g\n")
    write_text_atomic(workdir.raw_image("g", 1), "image")
    return StageResult("mock", outputs=["raw"], summary={"galaxies_with_images": config.mock.n_galaxies})


def _error_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def test_every_design_subcommand_exists() -> None:
    assert set(cli.cli.commands) == set(SUBCOMMANDS)


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_help_of_every_subcommand(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([name, "--help"]) == 0
    out = capsys.readouterr().out
    assert f"Usage: morphomass {name} [OPTIONS]" in out
    for option in COMMON + SUBCOMMANDS[name]:
        assert option in out, option


def test_top_level_help_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "--verbose" in out
    assert "--quiet" in out
    assert cli.main(["--version"]) == 0
    assert __version__ in capsys.readouterr().out


def test_predict_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "cat.csv").write_text("objid\n")
    (tmp_path / "out.csv").write_text("old\n")
    argv = [
        "predict",
        "--model",
        str(tmp_path),
        "--images",
        str(tmp_path),
        "--catalog",
        str(tmp_path / "cat.csv"),
        "--out",
        str(tmp_path / "out.csv"),
    ]
    assert cli.main(argv) == 2
    lines = _error_lines(capsys)
    assert len(lines) == 1
    assert "out.csv already exists; pass --force" in lines[0]
    assert (tmp_path / "out.csv").read_text() == "old\n"


def test_predict_missing_catalog_is_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "predict",
        "--model",
        str(tmp_path),
        "--images",
        str(tmp_path),
        "--catalog",
        str(tmp_path / "no.csv"),
        "--out",
        str(tmp_path / "out.csv"),
    ]
    assert cli.main(argv) == 2
    lines = _error_lines(capsys)
    assert len(lines) == 1
    assert "no.csv" in lines[0]


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ("[mock]\nn_galaxies = -5\n", ["mock.n_galaxies = -5", "greater than or equal to 1"]),
        ("[mock]\nimage_bands = ['g', 'y']\n", ["mock.image_bands", "'y'"]),
        ("[catalog]\nchi2_maxx = 3\n", ["catalog.chi2_maxx = 3", "Extra inputs"]),
        ("[mock\n", ["is not valid TOML"]),
    ],
)
def test_bad_config_exits_2_with_one_line(
    toml: str, expected: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str], recorded: list
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    assert cli.main(["mock", "--workdir", str(tmp_path / "w"), "--config", str(path)]) == 2
    lines = _error_lines(capsys)
    assert len(lines) == 1
    assert "bad.toml" in lines[0]
    for text in expected:
        assert text in lines[0]
    assert recorded == []  # nothing ran


def test_missing_config_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["run", "--workdir", str(tmp_path), "--config", str(tmp_path / "nope.toml")]) == 2
    lines = _error_lines(capsys)
    assert len(lines) == 1
    assert "nope.toml does not exist" in lines[0]


def test_bad_option_value_exits_2(capsys: pytest.CaptureFixture[str], recorded: list) -> None:
    assert cli.main(["mock", "--n-galaxies", "0"]) == 2
    lines = _error_lines(capsys)
    assert len(lines) == 1
    assert "mock.n_galaxies = 0" in lines[0]
    assert recorded == []


@pytest.mark.parametrize(
    "argv",
    [
        ["mock", "--preset", "huge"],
        ["catalog", "--bogus"],
        ["mock", "--seed", "abc"],
        ["-v", "-q", "run"],
        ["preprocess", "--workers", "2", "--scheduler", "tcp://h:8786"],
    ],
)
def test_usage_errors_exit_2_with_one_line(
    argv: list[str], capsys: pytest.CaptureFixture[str], recorded
) -> None:
    assert cli.main(argv) == 2
    lines = _error_lines(capsys)
    assert len(lines) == 1
    assert "error:" in lines[0]
    assert recorded == []


def test_mock_options_map_to_config(
    recorded: list, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        cli.main(
            [
                "mock",
                "--workdir",
                str(tmp_path),
                "--preset",
                "tiny",
                "--n-galaxies",
                "17",
                "--seed",
                "5",
                "--force",
            ]
        )
        == 0
    )
    ((name, config, force),) = recorded
    assert (name, config.mock.n_galaxies, config.mock.seed, force) == ("mock", 17, 5, True)
    assert config.preset == "tiny"
    out = capsys.readouterr().out
    assert "mock: done in 0.5 s" in out
    assert "rows: 3" in out


def test_toml_and_options_combine(recorded: list, tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[mock]\nn_galaxies = 40\nseed = 8\n")
    assert cli.main(["mock", "--config", str(path), "--seed", "9"]) == 0
    config = recorded[0][1]
    assert (config.mock.n_galaxies, config.mock.seed, config.preset) == (40, 9, "quick")


@pytest.mark.parametrize(
    ("argv", "check"),
    [
        (["fetch", "--limit", "12"], lambda c: c.fetch.limit == 12),
        (
            ["preprocess", "--workers", "3"],
            lambda c: c.preprocess.workers == 3 and c.preprocess.scheduler is None,
        ),
        (["preprocess", "--scheduler", "tcp://h:8786"], lambda c: c.preprocess.scheduler == "tcp://h:8786"),
        (["train-cnn", "--nets", "cnn1,cnn4"], lambda c: set(c.cnn.nets) == {"cnn1"} and c.cnn.train_cnn4),
        (
            ["train-cnn", "--nets", "cnn2, cnn3"],
            lambda c: set(c.cnn.nets) == {"cnn2", "cnn3"} and not c.cnn.train_cnn4,
        ),
        (["train-cnn"], lambda c: set(c.cnn.nets) == {"cnn1", "cnn2", "cnn3"} and c.cnn.train_cnn4),
        (
            ["evaluate", "--experiments", "g_morph,constant"],
            lambda c: c.evaluate.experiments == ["g_morph", "constant"],
        ),
        (["evaluate"], lambda c: c.evaluate.experiments == ["all"]),
        (["catalog", "--preset", "paper"], lambda c: c.preset == "paper"),
    ],
)
def test_stage_options_map_to_config(argv: list[str], check, recorded: list) -> None:
    assert cli.main(argv) == 0
    ((name, config, force),) = recorded
    assert name == argv[0]
    assert not force
    assert check(config)


def test_unknown_net_exits_2(recorded: list, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["train-cnn", "--nets", "cnn1,cnn9"]) == 2
    lines = _error_lines(capsys)
    assert len(lines) == 1
    assert "--nets" in lines[0]
    assert "cnn9" in lines[0]
    assert recorded == []


def test_run_prints_one_line_per_stage(
    fake_pipeline, fake_stage, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_stage("mock", _fake_mock)
    workdir = tmp_path / "work"
    assert cli.main(["run", "--workdir", str(workdir), "--preset", "tiny"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert lines[0].split() == ["stage", "status", "wall", "s", "CPU", "s", "cores", "key", "figures"]
    rows = {line.split()[0]: line for line in lines[1 : len(RUN_ORDER) + 1]}
    assert list(rows) == list(RUN_ORDER)
    assert re.fullmatch(r"mock +ran +\d+\.\d +\d+\.\d +\d+\.\d\d  60 galaxies with images", rows["mock"])
    assert all(" ran " in row for row in rows.values())
    assert lines[len(RUN_ORDER) + 1].startswith("total")
    assert not any("{" in line or "not built" in line for line in lines)
    assert (workdir / "raw" / "stars.csv").exists()
    assert (workdir / "manifest.json").exists()
    # a second run skips every stage, with the times and figures of the run that made the outputs
    assert cli.main(["run", "--workdir", str(workdir), "--preset", "tiny"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"mock +skipped +\(\d+\.\d\) +\(\d+\.\d\) +\(\d+\.\d\d\)  60 galaxies with images", out)


def test_mock_preview_prints_path(
    fake_stage, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_stage("mock", _fake_mock)
    preview = types.ModuleType("morphomass.mock.preview")

    def make_preview(config: PipelineConfig, workdir: WorkDir) -> Path:
        path = workdir.figures / "mock_preview.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\x89PNG")
        return path

    preview.make_preview = make_preview
    monkeypatch.setitem(sys.modules, "morphomass.mock.preview", preview)
    assert cli.main(["mock", "--workdir", str(tmp_path), "--preset", "tiny", "--preview"]) == 0
    out = capsys.readouterr().out
    assert f"preview: {tmp_path / 'results' / 'figures' / 'mock_preview.png'}" in out


def test_verbosity_sets_package_log_level(recorded: list) -> None:
    assert cli.main(["-q", "catalog"]) == 0
    assert logging.getLogger("morphomass").level == logging.WARNING
    assert cli.main(["-v", "catalog"]) == 0
    assert logging.getLogger("morphomass").level == logging.DEBUG
    assert cli.main(["catalog"]) == 0
    assert logging.getLogger("morphomass").level == logging.INFO


def _console_script() -> Path:
    script = Path(sys.executable).parent / "morphomass"
    if not script.exists():
        pytest.skip("the morphomass console script is not installed next to this Python")
    return script


def test_console_script_returns_the_status(tmp_path: Path) -> None:
    bad = subprocess.run(
        [_console_script(), "mock", "--n-galaxies", "0", "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2
    assert "mock.n_galaxies = 0" in bad.stderr
    ok = subprocess.run([_console_script(), "--help"], capture_output=True, text=True, check=False)
    assert ok.returncode == 0
    assert "train-gbm" in ok.stdout


def test_cli_import_does_not_load_heavy_libraries() -> None:
    code = "import sys, morphomass.cli; print(sorted({'torch', 'lightgbm', 'galsim'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_python_dash_m_runs_the_command_line_and_importing_it_does_nothing() -> None:
    ran = subprocess.run(
        [sys.executable, "-m", "morphomass", "--help"], capture_output=True, text=True, check=False
    )
    assert ran.returncode == 0 and "train-gbm" in ran.stdout
    imported = subprocess.run(
        [sys.executable, "-c", "import morphomass.__main__; print('imported')", "-W"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert imported.returncode == 0 and imported.stdout.strip() == "imported"  # argv not taken as a command


@pytest.mark.parametrize("name", WRITERS)
def test_every_writing_command_takes_wait(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([name, "--help"]) == 0
    assert "--wait" in capsys.readouterr().out


def _stage_raising(fake_stage, error: BaseException) -> None:
    def run(config: PipelineConfig, workdir: WorkDir, *, progress: bool = True) -> StageResult:
        raise error

    fake_stage("catalog", run)


def _catalog(workdir: Path, *options: str) -> int:
    """Run ``morphomass catalog`` (``-q`` unless other group options are given) on a raw/ with one file."""
    write_text_atomic(WorkDir(workdir).stars, "objID,ra,dec,type,psfMag_g\n")
    return cli.main([*(options or ["-q"]), "catalog", "--workdir", str(workdir), "--preset", "tiny"])


def test_config_that_is_not_utf8_exits_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], recorded: list
) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes("[mock]\n# Galaxien mit Bildern, größer\nseed = 3\n".encode("latin-1"))
    assert cli.main(["catalog", "--workdir", str(tmp_path / "w"), "--config", str(path)]) == 2
    lines = _error_lines(capsys)
    assert len(lines) == 1
    assert "latin1.toml" in lines[0] and "UTF-8" in lines[0]
    assert recorded == []


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b'{"stages": {"catalog": {"version": "0.1\xe9"}}}', "manifest.json is not UTF-8 text"),
        (b"[1, 2, 3]", "manifest.json has no 'stages' mapping"),
        (b'{"stages": {"catalog": []}}', "stages.catalog: expected a JSON object, got list"),
        (
            b'{"stages": {"catalog": {"outputs": {"a": 1}}}}',
            "stages.catalog.outputs: expected list, got dict",
        ),
        (b'{"stages": {"mock": {"inputs": "raw"}}}', "stages.mock.inputs: expected dict, got str"),
        (b"[" * 100_000, "manifest.json is nested too deeply"),
    ],
)
def test_bad_manifest_exits_2_naming_it(
    content: bytes, expected: str, fake_pipeline, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / "manifest.json").write_bytes(content)
    assert _catalog(workdir) == 2
    lines = _error_lines(capsys)
    assert len(lines) == 1, lines
    assert expected in lines[0]
    assert fake_pipeline == []
    assert (workdir / "manifest.json").read_bytes() == content  # left as it was


@pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads files whatever their mode"
)
def test_unreadable_raw_exits_2_naming_the_file(
    fake_pipeline, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    workdir = tmp_path / "work"
    write_text_atomic(WorkDir(workdir).hyperleda, "pgc|objname\n")
    WorkDir(workdir).hyperleda.chmod(0)
    try:
        assert _catalog(workdir) == 2
    finally:
        WorkDir(workdir).hyperleda.chmod(0o644)
    lines = _error_lines(capsys)
    assert len(lines) == 1
    assert "hyperleda.csv: Permission denied (PermissionError)" in lines[0]


def test_permission_error_of_a_stage_exits_2_naming_the_file(
    fake_pipeline, fake_stage, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # works as root too: the stage meets a read-only raw/ (what open() raises there, with the file name)
    path = tmp_path / "work" / "raw" / "hyperleda.csv"
    _stage_raising(fake_stage, PermissionError(13, "Permission denied", str(path)))
    assert _catalog(tmp_path / "work") == 2
    lines = _error_lines(capsys)
    assert lines == [f"morphomass: error: {path}: Permission denied (PermissionError)"]


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (json.JSONDecodeError("Expecting value", "x", 0), "an input file is not valid JSON"),
        (RecursionError("maximum recursion depth exceeded"), "nested too deeply"),
        (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"), "an input file is not UTF-8"),
    ],
)
def test_undecodable_input_exits_2_with_one_line(
    error: Exception, expected: str, fake_pipeline, fake_stage, tmp_path: Path, capsys
) -> None:
    _stage_raising(fake_stage, error)
    assert _catalog(tmp_path / "work") == 2
    lines = _error_lines(capsys)
    assert len(lines) == 1
    assert expected in lines[0]


def test_workdir_errors_exit_2(fake_pipeline, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["train-gbm", "--workdir", str(tmp_path / "work"), "--preset", "tiny"]) == 2
    lines = _error_lines(capsys)
    assert len(lines) == 1
    assert "stage 'train-gbm' needs sample.parquet" in lines[0]


def test_a_bug_is_one_line_and_its_traceback_only_under_verbose(
    fake_pipeline, fake_stage, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _stage_raising(fake_stage, ZeroDivisionError("division by zero"))
    assert _catalog(tmp_path / "work") == 1
    lines = _error_lines(capsys)
    bug = "morphomass: internal error (a bug): ZeroDivisionError: division by zero"
    assert lines == [f"{bug}; run with -v for the traceback"]
    assert _catalog(tmp_path / "work", "-v") == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert (
        err.rstrip().splitlines()[-1]
        == "morphomass: internal error (a bug): ZeroDivisionError: division by zero"
    )


def test_interrupt_is_one_line(fake_pipeline, fake_stage, tmp_path: Path, capsys) -> None:
    _stage_raising(fake_stage, KeyboardInterrupt())
    assert _catalog(tmp_path / "work") == 130
    assert _error_lines(capsys) == ["morphomass: interrupted"]


def test_mock_force_reaches_the_mock_and_keeps_foreign_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    workdir = tmp_path / "work"
    foreign = workdir / "raw" / "notes.txt"
    foreign.parent.mkdir(parents=True)
    foreign.write_text("mine\n")
    argv = ["-q", "mock", "--workdir", str(workdir), "--preset", "tiny", "--n-galaxies", "4"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "notes.txt" in err[0] and "--force" in err[0]
    assert cli.main([*argv, "--force"]) == 0
    assert foreign.read_text() == "mine\n"
    assert (workdir / "raw" / "stars.csv").exists()
