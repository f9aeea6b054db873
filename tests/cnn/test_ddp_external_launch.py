"""CNN training launched externally: ``morphomass train-cnn`` on every rank, as torchrun starts it.

The slow test starts two ``morphomass train-cnn`` processes with the environment torchrun gives its workers on
two nodes of one process each (``cnn.num_nodes = 2``), on the CPU with the gloo backend; the audit hook of
``test_ddp`` traces what each rank writes. The fast tests cover the rank read from the environment and the
pipeline's rules for the ranks other than 0 (no lock, no manifest record, only train-cnn).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from test_ddp import HOOK  # the audit hook that logs each file-changing operation with the process's RANK

from morphomass.cli import main
from morphomass.cnn.parallel import LaunchRank, ddp_ranks, free_port, launch_rank
from morphomass.config import load_config
from morphomass.errors import ConfigError, WorkdirError
from morphomass.pipeline import execute_stage
from morphomass.workdir import StageResult, WorkDir, load_manifest, write_text_atomic

#: Every variable that tells a process it is a rank of a distributed run (cleared before each fast test).
LAUNCH_VARIABLES = (
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "GROUP_RANK",
    "NODE_RANK",
    "TORCHELASTIC_RUN_ID",
    "SLURM_PROCID",
    "SLURM_NTASKS",
    "SLURM_JOB_NAME",
)

#: train-cnn of the tiny preset, cut down: CNN1 (a ResNet18 at 32 px) and CNN4, 64 images each, on the CPU
#: with DDP on two nodes of one device each.
CONFIG_TOML = """
[cnn]
accelerator = "cpu"
devices = 1
num_nodes = 2
strategy = "ddp"
epochs = 2
cnn4_epochs = 2
train_images_budget = 64
batch_size = 8
inference_batch_size = 16
"""

CLI = "import sys; from morphomass.cli import main; sys.exit(main())"


def _torchrun_env(rank: int, *, world_size: int, port: int) -> dict[str, str]:
    """Return what ``torchrun --nnodes=<world_size> --nproc-per-node=1 --node-rank=<rank>`` gives a worker.

    The workers' own TCP store on rank 0 stands in for torchrun's agent store (no agent here).
    """
    return {
        "RANK": str(rank),
        "LOCAL_RANK": "0",
        "GROUP_RANK": str(rank),
        "ROLE_RANK": str(rank),
        "ROLE_NAME": "default",
        "WORLD_SIZE": str(world_size),
        "LOCAL_WORLD_SIZE": "1",
        "GROUP_WORLD_SIZE": str(world_size),
        "ROLE_WORLD_SIZE": str(world_size),
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
        "TORCHELASTIC_RUN_ID": "morphomass-test",
        "TORCHELASTIC_RESTART_COUNT": "0",
        "TORCHELASTIC_MAX_RESTARTS": "0",
        "TORCHELASTIC_USE_AGENT_STORE": "False",
        "OMP_NUM_THREADS": "1",
    }


def _wait_as_torchrun(processes: list[subprocess.Popen[bytes]], *, timeout_s: float) -> list[int | None]:
    """Wait for every process; as torchrun does, stop the others once one fails (they would wait for it).

    Returns the exit codes; None for a process stopped because another failed or the time ran out.
    """
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            codes = [process.poll() for process in processes]
            if all(code == 0 for code in codes) or any(code not in (None, 0) for code in codes):
                break
            time.sleep(0.2)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.wait()
    return [process.returncode if process.returncode >= 0 else None for process in processes]


@pytest.mark.slow
def test_train_cnn_under_torchrun_on_two_nodes_writes_only_on_rank_zero(
    tmp_path: Path, make_cnn_inputs: Callable[..., pd.DataFrame]
) -> None:
    root = tmp_path / "work"
    root.mkdir()
    make_cnn_inputs(root, n=40, sizes=(32,))
    config_path = tmp_path / "ddp.toml"
    config_path.write_text(CONFIG_TOML)
    hook_dir, log_dir = tmp_path / "hook", tmp_path / "trace"
    hook_dir.mkdir()
    log_dir.mkdir()
    (hook_dir / "sitecustomize.py").write_text(HOOK.format(watched=str(root), log_dir=str(log_dir)))
    base = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARIABLES}
    base["PYTHONPATH"] = os.pathsep.join([str(hook_dir), *filter(None, [os.environ.get("PYTHONPATH")])])
    command = [sys.executable, "-c", CLI, "-q", "train-cnn", "--workdir", str(root), "--preset", "tiny"]
    command += ["--config", str(config_path), "--nets", "cnn1,cnn4"]
    port = free_port()
    logs = [tmp_path / f"rank{rank}.txt" for rank in range(2)]
    with contextlib.ExitStack() as files:
        ranks = [
            subprocess.Popen(  # in the work directory: Lightning's default_root_dir must stay empty too
                command,
                cwd=root,
                env={**base, **_torchrun_env(rank, world_size=2, port=port)},
                stdout=files.enter_context(log.open("wb")),
                stderr=subprocess.STDOUT,
            )
            for rank, log in enumerate(logs)
        ]
        codes = _wait_as_torchrun(ranks, timeout_s=300)
    assert codes == [0, 0], "\n".join(  # None: stopped after the other rank failed
        f"rank {rank} exited with {code}:\n{log.read_text()}"
        for rank, (code, log) in enumerate(zip(codes, logs, strict=True))
    )

    manifest = load_manifest(WorkDir(root))
    assert set(manifest["stages"]) == {"train-cnn"}  # one record, by rank 0
    record = manifest["stages"]["train-cnn"]
    assert "finished_utc" in record and record["summary"]["nets"]["cnn4"]["status"] == "trained"
    models = root / "models" / "cnn"
    assert sorted(p.name for p in models.iterdir()) == sorted(
        f"{net}.{suffix}" for net in ("cnn1", "cnn4") for suffix in ("csv", "json", "safetensors")
    )
    for net in ("cnn1", "cnn4"):  # trained by both ranks together: the budget counts the images of both
        card = json.loads((models / f"{net}.json").read_text())
        assert card["world_size"] == 2 and card["images_seen"] == 64

    trace = [
        tuple(line.split("\t"))
        for path in sorted(log_dir.glob("*.log"))
        for line in path.read_text().splitlines()
    ]
    assert [entry for entry in trace if entry[0] == "1"] == []  # rank 1: no lock, no folder, no file
    written = {Path(entry[2]).name for entry in trace if entry[0] == "0"}
    assert {".morphomass.lock", "manifest.json", "cnn1.safetensors", "cnn4.json"} <= written
    assert {entry[0] for entry in trace} == {"0"}


@pytest.fixture(name="no_launch")
def fixture_no_launch(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Clear the variables of any launcher around the test (they may be set where the tests run)."""
    for name in LAUNCH_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_launch_rank_reads_torchrun_and_slurm_variables(no_launch: pytest.MonkeyPatch) -> None:
    assert launch_rank() is None
    no_launch.setenv("LOCAL_RANK", "1")  # alone (Lightning's own launcher): no global rank to read
    assert launch_rank() is None
    no_launch.setenv("SLURM_PROCID", "3")
    no_launch.setenv("SLURM_NTASKS", "8")
    no_launch.setenv("SLURM_JOB_NAME", "train")
    assert launch_rank() == LaunchRank(3, 8, "srun")
    no_launch.setenv("SLURM_JOB_NAME", "interactive")  # srun --job-name=interactive: Lightning ignores SLURM
    assert launch_rank() is None
    no_launch.setenv("RANK", "5")  # torchrun started by srun, one per node: torchrun's global rank counts
    no_launch.setenv("WORLD_SIZE", "16")
    assert launch_rank() == LaunchRank(5, 16, "torchrun")

    no_launch.setenv("RANK", "16")
    with pytest.raises(ConfigError, match=r"^environment variables RANK = 16 and WORLD_SIZE = 16: the rank"):
        launch_rank()
    no_launch.setenv("RANK", "one")
    with pytest.raises(ConfigError, match=r"^environment variable RANK = 'one': expected an integer >= 0$"):
        launch_rank()
    no_launch.setenv("RANK", "1")
    no_launch.delenv("WORLD_SIZE")  # RANK alone is not torchrun's
    assert launch_rank() is None
    no_launch.setenv("SLURM_NTASKS", "0")
    no_launch.setenv("SLURM_JOB_NAME", "train")
    with pytest.raises(
        ConfigError, match=r"^environment variable SLURM_NTASKS = '0': expected an integer >= 1$"
    ):
        launch_rank()


def test_ddp_ranks_wants_torchrun_world_size_from_devices_and_nodes(no_launch: pytest.MonkeyPatch) -> None:
    cnn = load_config("tiny", overrides={"cnn": {"accelerator": "cpu", "devices": 1, "strategy": "ddp"}}).cnn
    no_launch.setenv("RANK", "1")
    no_launch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match=r"^cnn.devices = 1 \(1 per node\) x cnn.num_nodes = 1 make 1 proc"):
        ddp_ranks(cnn)
    cnn.num_nodes = 2
    assert ddp_ranks(cnn) == 1  # this process is one of the ranks: it starts none


def test_run_and_other_stages_are_refused_on_the_ranks(
    no_launch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "work"
    no_launch.setenv("WORLD_SIZE", "2")
    for rank in ("1", "0"):  # under torchrun rank 0 knows it is one of several ranks, and refuses as well
        no_launch.setenv("RANK", rank)
        assert main(["run", "--workdir", str(root), "--preset", "tiny"]) == 2
        line = capsys.readouterr().err
        assert line.startswith(
            f"morphomass: error: 'morphomass run' was started as rank {rank} of 2 (torchrun), but only "
            "train-cnn runs on several ranks: run the stages before it in one process"
        )
        assert line.count("\n") == 1
    assert main(["mock", "--workdir", str(root), "--preset", "tiny"]) == 2  # refused before its lock
    assert "run 'mock' in one process" in capsys.readouterr().err
    with pytest.raises(
        ConfigError, match=r"rank 0 of 2 \(torchrun\), but only train-cnn .*: run 'extract' in"
    ):
        execute_stage("extract", load_config("tiny"), WorkDir(root))
    assert not root.exists()  # refused before anything was touched

    no_launch.delenv("RANK")
    no_launch.delenv("WORLD_SIZE")
    no_launch.setenv("SLURM_NTASKS", "2")
    no_launch.setenv("SLURM_PROCID", "1")
    with pytest.raises(ConfigError, match=r"rank 1 of 2 \(srun\), but only train-cnn runs on several ranks"):
        execute_stage("extract", load_config("tiny"), WorkDir(root))
    no_launch.setenv("SLURM_PROCID", "0")  # srun's rank 0 looks like an sbatch batch script: runs as usual
    with pytest.raises(WorkdirError, match=r"^stage 'extract' needs sample.parquet"):
        execute_stage("extract", load_config("tiny"), WorkDir(root))


def test_a_rank_other_than_zero_runs_train_cnn_without_lock_or_record(
    no_launch: pytest.MonkeyPatch, tmp_path: Path, fake_stage: Callable[[str, Callable[..., object]], None]
) -> None:
    workdir = WorkDir(tmp_path / "work").ensure()
    workdir.sample.write_text("sample")
    (workdir.images_zarr / "32").mkdir(parents=True)
    (workdir.images_zarr / "32" / "zarr.json").write_text("{}")
    calls: list[str] = []

    def train(config: object, workdir: WorkDir, *, progress: bool = True) -> StageResult:
        calls.append(os.environ.get("RANK", "-"))
        if os.environ.get("RANK", "0") == "0":
            write_text_atomic(workdir.cnn_models / "cnn1.json", "{}")
        return StageResult("train-cnn", outputs=["models/cnn"])

    fake_stage("train-cnn", train)
    config = load_config("tiny")
    execute_stage("train-cnn", config, workdir)  # outside any launch: runs and records
    recorded = workdir.manifest.read_bytes()

    def no_lock(*args: object, **kwargs: object) -> None:
        raise AssertionError("a rank other than 0 took the lock")

    no_launch.setattr("morphomass.pipeline.workdir_lock", no_lock)
    no_launch.setenv("RANK", "1")
    no_launch.setenv("WORLD_SIZE", "2")
    assert execute_stage("train-cnn", config, workdir).skipped  # up to date for rank 0 too: skipped
    result = execute_stage("train-cnn", config, workdir, force=True)
    assert not result.skipped and calls == ["-", "1"]
    assert workdir.manifest.read_bytes() == recorded  # nothing recorded by rank 1
    no_launch.setattr("morphomass.pipeline.stage_config_hash", lambda config, name: "another configuration")
    execute_stage("train-cnn", config, workdir)  # stale for rank 0 as well: rank 1 runs in step with it
    assert calls == ["-", "1", "1"] and workdir.manifest.read_bytes() == recorded
