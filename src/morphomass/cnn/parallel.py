"""Independent pieces of CNN work (networks to train, slices of galaxies to extract) in worker processes.

Small networks on small images keep a second CPU core almost idle with torch's intra-op threads alone; the
networks are independent (CNN4 waits for CNN1), so :func:`run_jobs` runs them side by side in ``spawn``-ed
processes, each with ``cores // workers`` torch threads, the most expensive first (counting what waits for a
job: CNN1 before the others, since CNN4 follows it). Each job must be deterministic on its own (seeded), so
the results do not depend on the order in which the jobs run.

The parent shows one rich progress bar (jobs done, images processed) and re-emits the workers' log records
through its own logging configuration; a worker never writes to the console itself. An error in a worker is
raised again in the parent as the same exception, its message naming the job (a network, say); a worker that
dies (killed, out of memory) becomes a :class:`~morphomass.errors.MorphomassError` naming the job.

This module imports no torch at the top, so that a worker sets up its logging before torch and Lightning
load.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import logging.handlers
import multiprocessing
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from morphomass.errors import MorphomassError

if TYPE_CHECKING:
    from morphomass.config import CnnConfig

__all__ = ["Job", "available_cores", "run_jobs", "worker_count"]

logger = logging.getLogger(__name__)

#: Below this much work (relative units: training images of a ResNet18 at 64 px, ~10 ms each on one core),
#: the default worker count (``cnn.workers`` None) keeps the jobs in this process: starting a worker costs a
#: few seconds (torch, timm and Lightning load).
AUTO_MIN_COST = 2000.0

#: The worker's channel to the parent: ``("log", record)`` and ``("images", label, n)`` messages.
_QUEUE: Any = None


def available_cores() -> int:
    """Return the number of CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def worker_count(cnn: CnnConfig, n_jobs: int, *, cost: float = float("inf")) -> int:
    """Return how many worker processes to use for ``n_jobs`` jobs; 1 means: run them in this process.

    Worker processes are for the CPU only: on a GPU (``accelerator`` ``"gpu"``, or ``"auto"`` with CUDA), with
    a distributed strategy or several devices or nodes, or inside a distributed run, the jobs run in this
    process. Otherwise ``cnn.workers``, at most ``n_jobs``; by default (None) every core, or 1 when the jobs'
    total ``cost`` is below :data:`AUTO_MIN_COST`.
    """
    import torch

    if cnn.accelerator == "gpu" or (cnn.accelerator == "auto" and torch.cuda.is_available()):
        return 1
    if cnn.strategy != "auto" or cnn.num_nodes > 1 or cnn.devices not in ("auto", 1):
        return 1
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return 1
    if cnn.workers is None and cost < AUTO_MIN_COST:
        return 1
    return max(1, min(cnn.workers or available_cores(), n_jobs))


@dataclass(frozen=True)
class Job:
    """One piece of work for :func:`run_jobs`.

    Attributes
    ----------
    label : str
        Names the job in the progress bar and in errors (``"cnn2"``).
    function : callable
        A module-level function, called in the worker as ``function(*args, report=report)``, where
        ``report(n)`` counts ``n`` images done; returns something picklable.
    args : tuple
        Picklable arguments.
    cost : float
        Relative cost (any unit), to start the longest jobs first.
    after : tuple of str
        Keys of the jobs that must finish before this one starts.
    images : int
        Images the job will report in all (the progress bar's share of the job).
    """

    label: str
    function: Callable[..., Any]
    args: tuple[Any, ...] = ()
    cost: float = 1.0
    after: tuple[str, ...] = ()
    images: int = 0


class _ToParent(logging.handlers.QueueHandler):
    """Send log records to the parent as ``("log", record)`` (formatted, picklable)."""

    def enqueue(self, record: logging.LogRecord) -> None:
        self.queue.put_nowait(("log", record))


def _init_worker(queue: Any, threads: int, levels: dict[str, int]) -> None:
    """Route the worker's logging and warnings to the parent, then set its torch threads."""
    global _QUEUE
    _QUEUE = queue
    root = logging.getLogger()
    root.handlers[:] = [_ToParent(queue)]  # before Lightning loads: it then adds no console handler
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    logging.captureWarnings(True)
    import torch

    torch.set_num_threads(threads)
    with contextlib.suppress(RuntimeError):  # only possible before any inter-op work
        torch.set_num_interop_threads(1)


def _report(label: str, n: int) -> None:
    _QUEUE.put_nowait(("images", label, int(n)))


def _run_in_worker(label: str, function: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    return function(*args, report=functools.partial(_report, label))


def _priorities(jobs: Mapping[str, Job]) -> dict[str, float]:
    """Cost of each job plus that of the longest chain of jobs waiting for it."""
    waiting_for: dict[str, list[str]] = {key: [] for key in jobs}
    for key, job in jobs.items():
        for before in job.after:
            waiting_for[before].append(key)

    @functools.cache
    def priority(key: str) -> float:
        return jobs[key].cost + max((priority(k) for k in waiting_for[key]), default=0.0)

    return {key: priority(key) for key in jobs}


class _Bar:
    """One rich progress bar: ``<title> [done/total <unit>]`` and the images processed."""

    def __init__(self, title: str, unit: str, n_jobs: int, images: int, *, enabled: bool) -> None:
        self.title, self.unit, self.n_jobs, self.done = title, unit, n_jobs, 0
        self._progress = None
        if enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("images"),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
            )
            self._task = self._progress.add_task(self._description(), total=images)

    def _description(self) -> str:
        return f"{self.title} [{self.done}/{self.n_jobs} {self.unit}]"

    def advance(self, n: int) -> None:
        """Count ``n`` more images."""
        if self._progress is not None:
            self._progress.advance(self._task, n)

    def job_done(self) -> None:
        """Count one more finished job."""
        self.done += 1
        if self._progress is not None:
            self._progress.update(self._task, description=self._description())

    @contextlib.contextmanager
    def shown(self) -> Iterator[_Bar]:
        """Display the bar while the block runs."""
        if self._progress is None:
            yield self
            return
        with self._progress:
            yield self


def _listen(queue: Any, bar: _Bar) -> None:
    """Handle the workers' messages in the parent until ``None`` arrives."""
    while (item := queue.get()) is not None:
        if item[0] == "log":
            record = item[1]
            target = logging.getLogger(record.name)
            if target.isEnabledFor(record.levelno):
                target.handle(record)
        else:
            bar.advance(item[2])


def _named(err: BaseException, label: str) -> BaseException:
    """Return the error to raise in the parent for a job's failure: the same one, naming the job."""
    if isinstance(err, BrokenProcessPool):
        msg = (
            f"{label}: its worker process stopped unexpectedly (killed by the system, out of memory?); "
            "set cnn.workers = 1 to run the networks one after the other in this process"
        )
        return MorphomassError(msg)
    if isinstance(err, MorphomassError) and label not in str(err):
        try:
            return type(err)(f"{label}: {err}")
        except TypeError:  # an error class with another signature
            pass
    if label not in str(err):
        err.add_note(f"(raised in the worker process running {label})")
    return err


def run_jobs(
    jobs: Mapping[str, Job],
    *,
    workers: int,
    threads: int,
    title: str,
    unit: str,
    progress: bool = True,
) -> dict[str, Any]:
    """Run jobs in ``workers`` spawned processes, each with ``threads`` torch threads; return their results.

    A job starts once the jobs in its ``after`` have finished; among the jobs ready, the one with the most
    work ahead of it (its cost plus the longest chain waiting for it) starts first. After a failure no other
    job starts, the running ones finish (what they save is kept), and the first failure is raised.

    Parameters
    ----------
    jobs : mapping of str to Job
        Key -> job; the keys in ``after`` must be keys of ``jobs``.
    workers, threads : int
    title, unit : str
        Progress bar: ``"<title> [2/4 <unit>]"``.
    progress : bool
        Show the progress bar.

    Returns
    -------
    dict
        Key -> the job's result, for every job.

    Raises
    ------
    MorphomassError
        The error a job raised (its message naming the job), or one naming the job whose worker died.
    """
    unknown = sorted({k for job in jobs.values() for k in job.after} - set(jobs))
    if unknown:
        msg = f"jobs wait for unknown jobs {unknown}"
        raise ValueError(msg)
    priority = _priorities(jobs)
    levels = {
        "": logging.getLogger().getEffectiveLevel(),
        "morphomass": logging.getLogger("morphomass").getEffectiveLevel(),
    }
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    results: dict[str, Any] = {}
    failure: tuple[str, BaseException] | None = None
    bar = _Bar(title, unit, len(jobs), sum(job.images for job in jobs.values()), enabled=progress)
    with bar.shown():
        listener = threading.Thread(target=_listen, args=(queue, bar), name="cnn-workers-log", daemon=True)
        listener.start()
        try:
            with ProcessPoolExecutor(
                workers, mp_context=context, initializer=_init_worker, initargs=(queue, threads, levels)
            ) as pool:
                waiting = dict(jobs)
                running: dict[Future[Any], str] = {}
                while (waiting and failure is None) or running:
                    if failure is None:
                        ready = [k for k, job in waiting.items() if all(a in results for a in job.after)]
                        ready.sort(key=lambda k: -priority[k])
                        for key in ready[: workers - len(running)]:
                            job = waiting.pop(key)
                            running[pool.submit(_run_in_worker, job.label, job.function, job.args)] = key
                    if not running:
                        msg = f"jobs {sorted(waiting)} wait for each other"
                        raise ValueError(msg)
                    finished, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in finished:
                        key = running.pop(future)
                        try:
                            results[key] = future.result()
                        except BaseException as err:
                            if failure is None:
                                failure = (key, err)
                                if running:
                                    logger.warning(
                                        "%s failed; waiting for %s to finish",
                                        jobs[key].label,
                                        ", ".join(jobs[k].label for k in running.values()),
                                    )
                        else:
                            bar.job_done()
        finally:
            queue.put(None)
            listener.join()
            queue.close()
    if failure is not None:
        key, err = failure
        named = _named(err, jobs[key].label)
        if named is err:
            raise err
        raise named from err
    return results
