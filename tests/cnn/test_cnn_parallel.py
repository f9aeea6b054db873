"""The compute budget (images seen whatever the sample size) and the worker processes of the CNN stages."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file, save_file

from morphomass.cnn import run_extract, run_train_cnn
from morphomass.cnn.parallel import Job, available_cores, run_jobs, worker_count
from morphomass.cnn.training import StreamSampler, epoch_images
from morphomass.config import PipelineConfig, load_config
from morphomass.errors import InputDataError
from morphomass.workdir import WorkDir

NETS = ("cnn1", "cnn2", "cnn3", "cnn4")


def _tiny(workers: int, *, budget: int | None = 32) -> PipelineConfig:
    config = load_config("tiny")
    config.cnn.accelerator = "cpu"
    config.cnn.workers = workers
    config.cnn.train_images_budget = budget
    config.cnn.inference_batch_size = 16  # 60 galaxies: 4 batches to share between the workers
    return config


def test_epoch_images() -> None:
    assert epoch_images(40, epochs=2, batch_size=16, train_images=96) == 48
    assert epoch_images(400, epochs=2, batch_size=16, train_images=96) == 48  # whatever the sample size
    assert epoch_images(40, epochs=3, batch_size=16, train_images=96) == 32
    assert epoch_images(40, epochs=4, batch_size=16, train_images=96) == 32  # rounded up to whole batches
    assert epoch_images(40, epochs=3, batch_size=16) == 40  # no budget: one pass
    assert epoch_images(33, epochs=3, batch_size=16) == 32  # ... without a last batch of one image


def test_stream_sampler_sees_every_galaxy_once_before_any_twice() -> None:
    sampler = StreamSampler(10, 4, seed=0)
    assert len(sampler) == 4
    stream = [i for _ in range(5) for i in sampler]  # 5 epochs of 4 = two permutations of 10
    assert sorted(stream[:10]) == sorted(stream[10:]) == list(range(10))
    again = StreamSampler(10, 4, seed=0)
    assert [i for _ in range(5) for i in again] == stream  # seeded


def test_budget_gives_the_same_images_for_two_sample_sizes(
    tmp_path: Path, make_cnn_inputs: Callable[..., pd.DataFrame]
) -> None:
    seen = {}
    for n in (40, 120):
        root = tmp_path / str(n)
        root.mkdir()
        sample = make_cnn_inputs(root, n=n, sizes=(69,))
        config = _tiny(1, budget=96)
        config.cnn.nets, config.cnn.train_cnn4 = {"cnn3": config.cnn.nets["cnn3"]}, False
        config.cnn.epochs = 2
        workdir = WorkDir(root).ensure()
        run_train_cnn(config, workdir, progress=False)
        card = json.loads((workdir.models / "cnn" / "cnn3.json").read_text())
        assert card["n_train"] == int(((sample.split == "train") & sample.has_gz2).sum())
        assert (card["train_images_budget"], card["epoch_images"]) == (96, 48)
        assert [row["images"] for row in card["history"]] == [0, 48, 96]  # a validation every 48 images
        log = pd.read_csv(workdir.models / "cnn" / "cnn3.csv")
        assert log["images"].tolist() == [0, 48, 96]
        seen[card["n_train"]] = card["images_seen"]
    assert len(seen) == 2 and set(seen.values()) == {96}


def test_worker_count(monkeypatch: pytest.MonkeyPatch) -> None:
    config = load_config("quick").cnn
    config.accelerator = "cpu"
    cores = available_cores()
    assert worker_count(config, 4) == min(cores, 4)
    assert worker_count(config, 4, cost=10.0) == 1  # too little work to start processes
    config.workers = 3
    assert worker_count(config, 2, cost=10.0) == 2  # asked for: at most one per job
    config.strategy = "ddp"
    assert worker_count(config, 4) == 1
    config.strategy, config.accelerator = "auto", "gpu"
    assert worker_count(config, 4) == 1  # GPUs train in this process


@pytest.fixture(name="serial_and_parallel", scope="module")
def fixture_serial_and_parallel(
    tmp_path_factory: pytest.TempPathFactory, make_cnn_inputs: Callable[..., pd.DataFrame]
) -> dict[int, tuple[WorkDir, dict]]:
    """Train and extract the same tiny inputs in this process and with two workers."""
    runs = {}
    for workers in (1, 2):
        root = tmp_path_factory.mktemp(f"cnn_workers{workers}")
        make_cnn_inputs(root, n=60, sizes=(32, 69))
        workdir = WorkDir(root).ensure()
        summary = run_train_cnn(_tiny(workers), workdir, progress=False).summary
        run_extract(_tiny(workers), workdir, progress=False)
        runs[workers] = (workdir, summary)
    return runs


def test_workers_give_the_results_of_one_process(
    serial_and_parallel: dict[int, tuple[WorkDir, dict]],
) -> None:
    (serial, serial_summary), (parallel, parallel_summary) = serial_and_parallel[1], serial_and_parallel[2]
    assert (serial_summary["workers"], parallel_summary["workers"]) == (1, 2)
    # each network is seeded on its own; on two cores each worker has one torch thread, as the serial run here
    # (tests/cnn/conftest.py), so the results are identical; with more threads, equal to float rounding
    exact = available_cores() // 2 == 1
    for name in NETS:
        cards = [json.loads((w.models / "cnn" / f"{name}.json").read_text()) for w in (serial, parallel)]
        assert cards[0]["images_seen"] == cards[1]["images_seen"] == 32
        assert cards[0]["best_epoch"] == cards[1]["best_epoch"]
        for a, b in zip(cards[0]["history"], cards[1]["history"], strict=True):
            assert a["val_loss"] == (b["val_loss"] if exact else pytest.approx(b["val_loss"], rel=1e-4))
        weights = [load_file(str(w.models / "cnn" / f"{name}.safetensors")) for w in (serial, parallel)]
        for key, value in weights[0].items():
            torch.testing.assert_close(
                weights[1][key], value, rtol=0 if exact else 1e-4, atol=0 if exact else 1e-5
            )
    tables = [pd.read_parquet(w.features / "cnn.parquet") for w in (serial, parallel)]
    pd.testing.assert_frame_equal(tables[0], tables[1], check_exact=exact, rtol=1e-5, atol=1e-6)


def test_an_error_in_a_worker_names_its_network(
    tmp_path: Path, make_cnn_inputs: Callable[..., pd.DataFrame]
) -> None:
    make_cnn_inputs(tmp_path, n=30, sizes=(32, 69))
    weights = tmp_path / "imagenet.safetensors"
    save_file({"not_resnet18.weight": torch.zeros(2)}, str(weights))
    config = _tiny(2, budget=16)
    config.cnn.train_cnn4 = False
    config.cnn.nets = {"cnn1": config.cnn.nets["cnn1"], "cnn3": config.cnn.nets["cnn3"]}
    config.cnn.nets["cnn1"].pretrained = str(weights)  # read by the checks, refused when cnn1 is built
    with pytest.raises(
        InputDataError, match=r"^cnn.nets.cnn1.pretrained = .*: weights do not fit timm 'resnet18'"
    ):
        run_train_cnn(config, WorkDir(tmp_path).ensure(), progress=False)


def _fail(*, report: Callable[[int], None]) -> None:
    report(1)
    msg = "boom"
    raise RuntimeError(msg)


def test_run_jobs_reports_other_errors_with_the_job_label() -> None:
    with pytest.raises(RuntimeError, match="boom") as info:
        run_jobs(
            {"a": Job(label="job a", function=_fail, images=1)}, workers=1, threads=1, title="t", unit="jobs"
        )
    assert "(raised in the worker process running job a)" in info.value.__notes__
    with pytest.raises(ValueError, match=r"jobs wait for unknown jobs \['b'\]"):
        run_jobs(
            {"a": Job(label="a", function=_fail, after=("b",))}, workers=1, threads=1, title="t", unit="j"
        )


def test_extract_slices_are_whole_batches(serial_and_parallel: dict[int, tuple[WorkDir, dict]]) -> None:
    workdir, _ = serial_and_parallel[2]
    table = pd.read_parquet(workdir.features / "cnn.parquet")
    assert len(table) == 60 and np.isfinite(table.iloc[:, 1:].to_numpy()).all()
