"""CNN training with Lightning DDP on several devices: two CPU processes with the gloo backend.

The processes are started by the stage (:func:`morphomass.cnn.parallel.run_ranks`); every file operation
of theirs is traced by an audit hook that a ``sitecustomize`` module installs in each new interpreter, so the
test sees what rank 1 writes (nothing) and what rank 0 writes (the networks' files).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from morphomass.cnn.parallel import ddp_ranks, run_ranks
from morphomass.cnn.training import epoch_images
from morphomass.cnn.weights import load_network
from morphomass.config import PipelineConfig, load_config
from morphomass.errors import ConfigError
from morphomass.pipeline import execute_stage
from morphomass.workdir import WorkDir, load_manifest

#: Installed in every interpreter started with the test's PYTHONPATH: logs each file-changing operation on a
#: path under WATCHED, with the RANK of the process (``-`` outside a rank), to LOG_DIR/<pid>.log.
HOOK = """
import os
import sys

WATCHED = {watched!r}
LOG = open(os.path.join({log_dir!r}, f"{{os.getpid()}}.log"), "a", buffering=1)
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
EVENTS = ("os.rename", "os.remove", "os.mkdir", "os.rmdir", "os.chmod", "os.truncate", "os.link")


def _watched(path):
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    return isinstance(path, str) and os.path.abspath(path).startswith(WATCHED)


def _hook(event, args):
    if event == "open":
        path, mode, flags = args
        writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or bool(flags & WRITE_FLAGS)
        paths = [path] if writes else []
    elif event in EVENTS:
        paths = [a for a in args[:2] if isinstance(a, (str, bytes))]
    else:
        return
    for path in paths:
        if _watched(path):
            LOG.write(f"{{os.environ.get('RANK', '-')}}\\t{{event}}\\t{{os.fsdecode(path)}}\\n")


sys.addaudithook(_hook)
"""


def _config() -> PipelineConfig:
    """Return the tiny preset with one small GZ2 network and CNN4 (reading CNN1's weights from rank 0)."""
    config = load_config(
        "tiny",
        overrides={
            "cnn": {
                "accelerator": "cpu",
                "devices": 2,
                "strategy": "ddp_spawn",
                "epochs": 2,
                "cnn4_epochs": 2,
                "train_images_budget": 64,
                "batch_size": 8,
                "inference_batch_size": 16,
            }
        },
    )
    config.cnn.nets = {"cnn1": config.cnn.nets["cnn1"]}  # resnet18 at 32 px
    return config


def _trace(log_dir: Path) -> list[tuple[str, str, str]]:
    return [
        tuple(line.split("\t"))  # type: ignore[misc]
        for path in sorted(log_dir.glob("*.log"))
        for line in path.read_text().splitlines()
    ]


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_writes_one_manifest_record_and_one_set_of_files(
    tmp_path: Path, make_cnn_inputs: Callable[..., pd.DataFrame], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "work"
    root.mkdir()
    make_cnn_inputs(root, n=40, sizes=(32,))
    workdir = WorkDir(root).ensure()
    hook_dir, log_dir = tmp_path / "hook", tmp_path / "trace"
    hook_dir.mkdir()
    log_dir.mkdir()
    (hook_dir / "sitecustomize.py").write_text(HOOK.format(watched=str(root), log_dir=str(log_dir)))
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join([str(hook_dir), *os.environ.get("PYTHONPATH", "").split(os.pathsep)])
    )
    before = {p.relative_to(root) for p in root.rglob("*")}

    result = execute_stage("train-cnn", _config(), workdir, progress=False)

    assert result.summary["ddp_ranks"] == 2 and result.summary["workers"] == 2
    manifest = load_manifest(workdir)
    assert set(manifest["stages"]) == {"train-cnn"}
    assert manifest["stages"]["train-cnn"]["summary"]["ddp_ranks"] == 2
    # one set of model files, the figure, the manifest; nothing else (no Lightning logs or checkpoints)
    models = root / "models" / "cnn"
    assert sorted(p.name for p in models.iterdir()) == sorted(
        f"{net}.{suffix}" for net in ("cnn1", "cnn4") for suffix in ("csv", "json", "safetensors")
    )
    written = {p.relative_to(root) for p in root.rglob("*") if p.is_file()} - before
    assert {str(p) for p in written if not str(p).startswith("models/cnn/")} <= {
        "manifest.json",
        ".morphomass.lock",
        ".morphomass.lock.json",
        "results/figures/cnn_training_curves.png",
    }
    for net in ("cnn1", "cnn4"):
        card = json.loads((models / f"{net}.json").read_text())
        # the budget counts both ranks: 2 validation rounds of 32 images = 2 steps of 2 ranks x 8 images
        assert card["world_size"] == 2 and card["images_seen"] == 64 and card["epoch_images"] == 32
        assert [row["images"] for row in card["history"]] == [0, 32, 64]
        load_network(models, net)  # complete, loadable weights

    trace = _trace(log_dir)
    assert {rank for rank, _, _ in trace} <= {"0", "1"}  # only the ranks load the hook (not this process)
    assert [entry for entry in trace if entry[0] == "1"] == []  # rank 1 writes nothing
    renamed = {Path(path).name for rank, event, path in trace if rank == "0" and event == "os.rename"}
    assert {
        "cnn1.safetensors",
        "cnn1.json",
        "cnn4.safetensors",
        "cnn4.json",
    } <= renamed  # the hook sees writes


def test_the_budget_counts_the_images_of_every_rank() -> None:
    # steps of world_size x batch_size images, so that every rank has whole batches
    assert epoch_images(40, epochs=2, batch_size=8, train_images=64, world_size=2) == 32
    assert epoch_images(40, epochs=2, batch_size=8, train_images=40, world_size=2) == 32  # rounded up
    assert epoch_images(40, epochs=2, batch_size=8, train_images=40) == 24
    # no budget: every rank takes an equal share of one pass, less a last batch of one image per rank
    assert epoch_images(40, epochs=2, batch_size=8, world_size=2) == 40
    assert epoch_images(34, epochs=2, batch_size=8, world_size=2) == 32  # shares of 17 = 2 x 8 + 1


def test_ddp_ranks() -> None:
    config = _config().cnn
    assert ddp_ranks(config) == 2
    config.devices = 1
    assert ddp_ranks(config) == 1
    config.devices, config.strategy = 2, "deepspeed"
    with pytest.raises(ConfigError, match=r"^cnn.strategy = 'deepspeed' with cnn.devices = 2 \(2 devices\)"):
        ddp_ranks(config)
    config.strategy, config.num_nodes = "ddp", 2
    with pytest.raises(ConfigError, match=r"^cnn.num_nodes = 2: training on several nodes needs"):
        ddp_ranks(config)


def _fail_on_rank_one(marker: str, *, rank: int, report: Callable[[int], None]) -> int:
    if rank == 1:
        msg = f"no good (WORLD_SIZE {os.environ['WORLD_SIZE']}, LOCAL_RANK {os.environ['LOCAL_RANK']})"
        raise ValueError(msg)
    time.sleep(120)  # as a rank waiting for the failed one in a collective operation
    Path(marker).write_text("rank 0 was waited for")
    return rank


@pytest.mark.slow
def test_run_ranks_stops_the_other_ranks_after_a_failure(tmp_path: Path) -> None:
    marker = tmp_path / "finished"
    with pytest.raises(ValueError, match=r"^no good \(WORLD_SIZE 2, LOCAL_RANK 1\)\n") as info:
        run_ranks(_fail_on_rank_one, (str(marker),), world_size=2, threads=1, title="t", progress=False)
    assert "raised in the worker process running t (rank 1 of 2)" in "".join(info.value.__notes__)
    assert not marker.exists()  # rank 0 was stopped, not waited for
