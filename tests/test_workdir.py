"""Work directory: paths, atomic writes, tree hashes and the manifest's skip/redo logic."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from morphomass.errors import WorkdirError
from morphomass.workdir import (
    TEMP_PREFIX,
    WorkDir,
    atomic_path,
    atomic_write,
    cores_busy,
    load_manifest,
    record_stage,
    stage_is_current,
    tree_sha256,
    write_json_atomic,
    write_text_atomic,
)


class Interrupted(Exception):
    """Stands for a crash or Ctrl-C in the middle of a write."""


def _leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.startswith(TEMP_PREFIX)]


def test_paths_follow_the_design_layout(tmp_path: Path) -> None:
    wd = WorkDir(tmp_path)
    assert wd.raw_image("g", 587722981741363294) == tmp_path / "raw/images/g/587722981741363294.fits"
    assert wd.gswlc_dir == tmp_path / "raw/gswlc"
    assert wd.sample == tmp_path / "sample.parquet"
    assert wd.images_zarr == tmp_path / "images.zarr"
    assert wd.figures == tmp_path / "results/figures"
    assert wd.manifest == tmp_path / "manifest.json"


def test_ensure_creates_folders_and_raw_starts_empty(tmp_path: Path) -> None:
    wd = WorkDir(tmp_path / "w")
    assert wd.raw_is_empty()
    wd.ensure()
    assert all(p.is_dir() for p in (wd.raw, wd.features, wd.models, wd.figures, wd.tables))
    assert wd.raw_is_empty()  # folders alone do not count
    write_text_atomic(wd.raw / "stars.csv", "objID,ra,dec,type,psfMag_g\n")
    assert not wd.raw_is_empty()


def test_atomic_write_success(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "out.txt"
    with atomic_write(target, "w") as fh:
        fh.write("hello\n")
        assert not target.exists()  # nothing under the final name before the block ends
    assert target.read_text() == "hello\n"
    assert _leftovers(tmp_path) == []


def test_interrupted_write_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    with pytest.raises(Interrupted), atomic_write(target, "wb") as fh:
        fh.write(b"partial")
        raise Interrupted
    assert not target.exists()
    assert _leftovers(tmp_path) == []


def test_interrupted_write_keeps_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old and complete\n")
    with pytest.raises(Interrupted), atomic_write(target, "w") as fh:
        fh.write("new but")
        raise Interrupted
    assert target.read_text() == "old and complete\n"
    assert _leftovers(tmp_path) == []


def test_keyboard_interrupt_is_cleaned_up_too(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    with pytest.raises(KeyboardInterrupt), atomic_write(target, "w") as fh:
        fh.write("x")
        raise KeyboardInterrupt
    assert not target.exists()
    assert _leftovers(tmp_path) == []


def test_atomic_path_directory_replaces_old_directory(tmp_path: Path) -> None:
    target = tmp_path / "store.zarr"
    target.mkdir()
    (target / "stale").write_text("old")
    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "fresh").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["fresh"]
    assert _leftovers(tmp_path) == []


def test_interrupted_directory_write_keeps_old_directory(tmp_path: Path) -> None:
    target = tmp_path / "store.zarr"
    target.mkdir()
    (target / "old").write_text("old")
    with pytest.raises(Interrupted), atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "half").write_text("half")
        raise Interrupted
    assert sorted(p.name for p in target.iterdir()) == ["old"]
    assert _leftovers(tmp_path) == []


def test_atomic_path_requires_something_written(tmp_path: Path) -> None:
    target = tmp_path / "never.txt"
    with pytest.raises(WorkdirError, match="nothing was written"), atomic_path(target):
        pass
    assert not target.exists()


def test_atomic_write_rejects_other_modes(tmp_path: Path) -> None:
    with (
        pytest.raises(ValueError, match="mode must be 'wb' or 'w', got 'a'"),
        atomic_write(tmp_path / "x", "a"),
    ):
        pass


def test_tree_hash_sees_content_and_names_but_not_hidden_files(tmp_path: Path) -> None:
    tree = tmp_path / "raw"
    (tree / "images/g").mkdir(parents=True)
    (tree / "images/g/1.fits").write_bytes(b"abc")
    first = tree_sha256(tree)
    (tree / f"{TEMP_PREFIX}junk").write_bytes(b"in progress")
    assert tree_sha256(tree) == first
    (tree / "images/g/1.fits").write_bytes(b"abd")
    changed_content = tree_sha256(tree)
    assert changed_content != first
    (tree / "images/g/1.fits").rename(tree / "images/g/2.fits")
    assert tree_sha256(tree) not in (first, changed_content)


def test_tree_hash_of_missing_path(tmp_path: Path) -> None:
    with pytest.raises(WorkdirError, match="does not exist"):
        tree_sha256(tmp_path / "nothing")


def _record(wd: WorkDir, *, config_hash: str = "c1", inputs: dict | None = None) -> None:
    record_stage(
        wd,
        "catalog",
        config_hash=config_hash,
        inputs=inputs or {"raw": "h1"},
        outputs=["sample.parquet"],
        seconds=1.23456,
        version="0.1.0",
    )


def test_manifest_absent_is_empty(tmp_path: Path) -> None:
    assert load_manifest(WorkDir(tmp_path)) == {"stages": {}}


def test_stage_is_current_only_when_everything_matches(tmp_path: Path) -> None:
    wd = WorkDir(tmp_path).ensure()
    assert not stage_is_current(wd, "catalog", "c1", {"raw": "h1"})  # never ran
    (tmp_path / "sample.parquet").write_bytes(b"table")
    _record(wd)
    assert stage_is_current(wd, "catalog", "c1", {"raw": "h1"})
    assert not stage_is_current(wd, "catalog", "c2", {"raw": "h1"})  # configuration changed
    assert not stage_is_current(wd, "catalog", "c1", {"raw": "h2"})  # input changed
    assert not stage_is_current(wd, "preprocess", "c1", {"raw": "h1"})  # another stage
    (tmp_path / "sample.parquet").unlink()
    assert not stage_is_current(wd, "catalog", "c1", {"raw": "h1"})  # output deleted since


def test_record_stage_content_and_redo(tmp_path: Path) -> None:
    wd = WorkDir(tmp_path).ensure()
    (tmp_path / "sample.parquet").write_bytes(b"table")
    _record(wd)
    record = load_manifest(wd)["stages"]["catalog"]
    assert record["config_hash"] == "c1"
    assert record["outputs"] == ["sample.parquet"]
    assert record["seconds"] == pytest.approx(1.235)
    assert record["version"] == "0.1.0"
    _record(wd, config_hash="c2")  # a redo replaces the record
    assert load_manifest(wd)["stages"]["catalog"]["config_hash"] == "c2"
    assert _leftovers(tmp_path) == []


def test_corrupt_manifest_is_reported(tmp_path: Path) -> None:
    wd = WorkDir(tmp_path).ensure()
    wd.manifest.write_text("{not json")
    with pytest.raises(WorkdirError, match="manifest.json is not valid JSON"):
        load_manifest(wd)
    write_json_atomic(wd.manifest, {"version": 1})
    with pytest.raises(WorkdirError, match="has no 'stages' mapping"):
        load_manifest(wd)
    assert json.loads(wd.manifest.read_text()) == {"version": 1}


def test_cores_busy_is_cpu_over_wall_time() -> None:
    assert cores_busy(90.0, 60.0) == 1.5
    assert cores_busy(1.0, 3.0) == 0.33
    assert cores_busy(5.0, 0.0) == 0.0  # a stage that took no measurable time
