"""The mock writes only into its own raw/: never a fetched one, others with force; deletes only its files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from morphomass.config import PipelineConfig, load_config
from morphomass.errors import WorkdirError
from morphomass.mock import run_mock
from morphomass.mock.stage import MOCK_FILES_NAME
from morphomass.workdir import WorkDir, write_json_atomic


def _config(seed: int) -> PipelineConfig:
    return load_config(
        "tiny", overrides={"mock": {"n_galaxies": 8, "seed": seed, "workers": 1, "image_bands": ["g"]}}
    )


def _snapshot(workdir: WorkDir) -> dict[str, bytes]:
    """Every file of the work directory (manifest included) -> its bytes."""
    return {
        p.relative_to(workdir.root).as_posix(): p.read_bytes() for p in workdir.root.rglob("*") if p.is_file()
    }


def _listed(workdir: WorkDir) -> set[str]:
    return set(json.loads((workdir.raw / MOCK_FILES_NAME).read_text(encoding="utf-8"))["files"])


@pytest.fixture(scope="module", name="mocked")
def fixture_mocked(tmp_path_factory: pytest.TempPathFactory) -> WorkDir:
    """Make a raw/ with one mock run (seed 5, 8 galaxies); copy it before changing it."""
    workdir = WorkDir(tmp_path_factory.mktemp("mocked"))
    run_mock(_config(5), workdir, progress=False)
    return workdir


def _copy(workdir: WorkDir, tmp_path: Path) -> WorkDir:
    shutil.copytree(workdir.root, tmp_path / "work")
    return WorkDir(tmp_path / "work")


def _fetched(tmp_path: Path) -> WorkDir:
    """Make a work directory whose raw/ came from a finished fetch (one catalogue and one image)."""
    workdir = WorkDir(tmp_path / "fetched").ensure()
    workdir.hyperleda.write_text("pgc|objname\n1|real galaxy\n", encoding="utf-8")
    workdir.raw_image("g", 42).parent.mkdir(parents=True)
    workdir.raw_image("g", 42).write_bytes(b"real image")
    stages = {"fetch": {"config_hash": "x", "outputs": ["raw"], "finished_utc": "2026-01-02T03:04:05+00:00"}}
    write_json_atomic(workdir.manifest, {"stages": stages})
    return workdir


@pytest.mark.parametrize("force", [False, True])
def test_fetched_raw_is_refused_even_with_force(tmp_path: Path, force: bool) -> None:
    workdir = _fetched(tmp_path)
    before = _snapshot(workdir)
    with pytest.raises(
        WorkdirError,
        match=r"raw holds the archives 'morphomass fetch' downloaded .*manifest\.json records a fetch "
        r"finished 2026-01-02T03:04:05\+00:00.*not even with --force: use another work directory",
    ):
        run_mock(_config(5), workdir, progress=False, force=force)
    assert _snapshot(workdir) == before


def test_foreign_files_are_refused_without_force(tmp_path: Path) -> None:
    workdir = WorkDir(tmp_path).ensure()
    workdir.gz2.write_text("dr7objid,ra,dec\n", encoding="utf-8")
    (workdir.raw / "notes.txt").write_text("mine", encoding="utf-8")
    before = _snapshot(workdir)
    with pytest.raises(
        WorkdirError,
        match=r"raw holds 2 file\(s\) the mock did not write \(gz2_hart16\.csv, notes\.txt; "
        r".*\.mock-files\.json\); use another work directory, or --force",
    ):
        run_mock(_config(5), workdir, progress=False)
    assert _snapshot(workdir) == before


def test_force_overwrites_its_names_and_keeps_the_other_files(tmp_path: Path, mocked: WorkDir) -> None:
    workdir = WorkDir(tmp_path).ensure()
    workdir.hyperleda.write_text("pgc|objname\n1|user's own\n", encoding="utf-8")
    foreign_image = workdir.raw_image("g", 42)
    foreign_image.parent.mkdir(parents=True)
    foreign_image.write_bytes(b"user's image")
    (workdir.raw / "notes.txt").write_text("mine", encoding="utf-8")
    run_mock(_config(5), workdir, progress=False, force=True)
    # the files of the mock's names are the mock's; the others are kept, byte for byte, and not listed
    assert workdir.hyperleda.read_bytes() == mocked.hyperleda.read_bytes()
    assert foreign_image.read_bytes() == b"user's image"
    assert (workdir.raw / "notes.txt").read_text(encoding="utf-8") == "mine"
    assert _listed(workdir) == _listed(mocked)
    assert {"images/g/42.fits", "notes.txt"}.isdisjoint(_listed(workdir))


def test_rerun_deletes_only_the_images_it_wrote(tmp_path: Path, mocked: WorkDir) -> None:
    workdir = _copy(mocked, tmp_path)
    old_images = {rel for rel in _listed(workdir) if rel.startswith("images/")}
    foreign_image = workdir.raw_image("g", 42)
    foreign_image.write_bytes(b"user's image")
    run_mock(_config(6), workdir, progress=False, force=True)
    new_images = {rel for rel in _listed(workdir) if rel.startswith("images/")}
    assert new_images and old_images.isdisjoint(new_images)
    assert not any((workdir.raw / rel).exists() for rel in old_images)
    assert all((workdir.raw / rel).is_file() for rel in new_images)
    assert foreign_image.read_bytes() == b"user's image"


def test_rerun_of_its_own_raw_needs_no_force(tmp_path: Path, mocked: WorkDir) -> None:
    workdir = _copy(mocked, tmp_path)
    again = run_mock(_config(5), workdir, progress=False)
    assert again.summary["images_rendered"] == 0
    assert _listed(workdir) == _listed(mocked)


def test_raw_of_an_older_mock_without_a_list_is_adopted(tmp_path: Path, mocked: WorkDir) -> None:
    workdir = _copy(mocked, tmp_path)
    (workdir.raw / MOCK_FILES_NAME).unlink()
    write_json_atomic(workdir.manifest, {"stages": {"mock": {"finished_utc": "2026-01-01T00:00:00+00:00"}}})
    again = run_mock(_config(5), workdir, progress=False)
    assert again.summary["images_rendered"] == 0
    assert _listed(workdir) == _listed(mocked)


def test_unreadable_file_list_is_named(tmp_path: Path, mocked: WorkDir) -> None:
    workdir = _copy(mocked, tmp_path)
    (workdir.raw / MOCK_FILES_NAME).write_text("[1, 2", encoding="utf-8")
    before = _snapshot(workdir)
    with pytest.raises(
        WorkdirError, match=r"\.mock-files\.json: expected the mock's file list.*could not read"
    ):
        run_mock(_config(5), workdir, progress=False)
    assert _snapshot(workdir) == before
