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

:func:`run_ranks` is the other kind of parallelism: one job (training with DDP) in ``world_size`` processes
at once, the ranks of a single-node ``torch.distributed`` run that wait for each other; the first to fail
stops the others.

:func:`launch_rank` tells a process that torchrun or srun started (one rank of a run on one node or
several, each rank running ``morphomass train-cnn``) which rank it is: rank 0 takes the work directory's lock
and writes the models and the manifest, the other ranks train in step with it and write nothing
(:mod:`morphomass.pipeline`).

This module imports no torch at the top, so that a worker sets up its logging before torch and Lightning
load.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import logging.handlers
import multiprocessing
import multiprocessing.connection
import os
import socket
import sys
import threading
import traceback
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from morphomass.errors import ConfigError, MorphomassError

if TYPE_CHECKING:
    from morphomass.config import CnnConfig

__all__ = [
    "Job",
    "LaunchRank",
    "available_cores",
    "ddp_ranks",
    "free_port",
    "launch_rank",
    "launched_externally",
    "run_jobs",
    "run_ranks",
    "worker_count",
]

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


def launched_externally() -> bool:
    """Return whether this process is a rank of a distributed run that something else started.

    True inside an initialised ``torch.distributed`` process group, under torchrun or Lightning's own DDP
    launcher (``LOCAL_RANK`` set; :func:`run_ranks` sets it too) and under a SLURM job step that Lightning
    recognises (``srun``).
    """
    import torch
    from lightning.fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return True
    return "LOCAL_RANK" in os.environ or TorchElasticEnvironment.detect() or SLURMEnvironment.detect()


@dataclass(frozen=True)
class LaunchRank:
    """The place of this process among those of a distributed run that something else started.

    Attributes
    ----------
    rank : int
        Global rank, ``0 .. world_size - 1``; rank 0 alone writes into the work directory.
    world_size : int
        Processes of the run, on every node together.
    launcher : {'torch.distributed', 'torchrun', 'srun'}
        Where the rank was read: an initialised process group, ``RANK``/``WORLD_SIZE`` (torchrun) or
        ``SLURM_PROCID``/``SLURM_NTASKS`` (srun).
    """

    rank: int
    world_size: int
    launcher: str


def _env_int(name: str, *, low: int) -> int:
    """Return the environment variable ``name`` as an integer >= ``low``."""
    text = os.environ[name]
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if value < low:
        msg = f"environment variable {name} = {text!r}: expected an integer >= {low}"
        raise ConfigError(msg)
    return value


def launch_rank() -> LaunchRank | None:
    """Return this process's rank in a distributed run started by torchrun or srun; None outside one.

    Read, in this order, from an initialised ``torch.distributed`` process group (only when torch is loaded
    already: this function loads neither torch nor Lightning, so that every stage may ask), from ``RANK`` and
    ``WORLD_SIZE`` (set by torchrun, also when srun starts one torchrun per node, and by :func:`run_ranks`),
    and from ``SLURM_PROCID`` and ``SLURM_NTASKS`` where Lightning's ``SLURMEnvironment`` detects a SLURM job
    (``SLURM_NTASKS`` set, the job not named ``bash`` or ``interactive``). The batch script of an ``sbatch``
    job has those SLURM variables too and reads as rank 0 of ``SLURM_NTASKS``: rank 0 behaves as a process
    outside any distributed run, so only the ranks other than 0 must be told apart (those srun started).

    Raises
    ------
    ConfigError
        If one of these variables is not a non-negative integer (``WORLD_SIZE``, ``SLURM_NTASKS``: positive)
        or the rank is not below the world size. (``RANK`` without ``WORLD_SIZE`` is not torchrun's.)
    """
    if "torch" in sys.modules:
        import torch

        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return LaunchRank(
                torch.distributed.get_rank(), torch.distributed.get_world_size(), "torch.distributed"
            )
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        launch = LaunchRank(_env_int("RANK", low=0), _env_int("WORLD_SIZE", low=1), "torchrun")
        names = "RANK", "WORLD_SIZE"
    elif (
        "SLURM_NTASKS" in os.environ
        and "SLURM_PROCID" in os.environ
        and os.environ.get("SLURM_JOB_NAME") not in ("bash", "interactive")
    ):
        launch = LaunchRank(_env_int("SLURM_PROCID", low=0), _env_int("SLURM_NTASKS", low=1), "srun")
        names = "SLURM_PROCID", "SLURM_NTASKS"
    else:
        return None
    if launch.rank >= launch.world_size:
        msg = (
            f"environment variables {names[0]} = {launch.rank} and {names[1]} = {launch.world_size}: "
            f"the rank must be below {launch.world_size}"
        )
        raise ConfigError(msg)
    return launch


def _device_count(cnn: CnnConfig) -> int:
    """Return the devices ``cnn.devices`` asks for: an integer as it is; "auto": every GPU, else 1."""
    import torch

    if cnn.devices != "auto":
        return int(cnn.devices)
    gpu = cnn.accelerator == "gpu" or (cnn.accelerator == "auto" and torch.cuda.is_available())
    return max(1, torch.cuda.device_count()) if gpu else 1


def ddp_ranks(cnn: CnnConfig) -> int:
    """Return how many processes train-cnn starts to train with DDP; 1: train in this process.

    Several devices on this node (``cnn.devices`` > 1, or ``"auto"`` with several GPUs) with a DDP strategy
    (``"ddp"``, ``"ddp_spawn"``, ``"ddp_fork"``, ... or ``"auto"``) give one process per device, started by
    :func:`run_ranks`. Inside a distributed run started elsewhere (:func:`launched_externally`: torchrun,
    srun, on one node or several) it is 1: this process is one of the ranks and Lightning joins them. There,
    under torchrun (:func:`launch_rank`), ``devices x num_nodes`` must be the ``WORLD_SIZE`` torchrun gave, so
    that a mismatch stops every rank at once with one line instead of leaving some waiting for the others
    (Lightning checks the same under srun).

    Raises
    ------
    ConfigError
        If several devices are asked for with a strategy other than DDP, several nodes without processes
        started on each of them, or devices and nodes that do not make torchrun's world size.
    """
    devices = _device_count(cnn)
    launch = launch_rank()
    if launch is not None and launch.launcher != "srun" and launch.world_size > 1:
        if devices * cnn.num_nodes != launch.world_size:
            msg = (
                f"cnn.devices = {cnn.devices!r} ({devices} per node) x cnn.num_nodes = {cnn.num_nodes} make "
                f"{devices * cnn.num_nodes} processes, but {launch.launcher} started {launch.world_size} "
                "(WORLD_SIZE): set cnn.devices to the processes per node and cnn.num_nodes to the nodes"
            )
            raise ConfigError(msg)
        return 1
    if (devices == 1 and cnn.num_nodes == 1) or launched_externally():
        return 1
    if cnn.num_nodes > 1:
        msg = (
            f"cnn.num_nodes = {cnn.num_nodes}: training on several nodes needs one process per device, "
            "started on every node by torchrun or srun (each running 'morphomass train-cnn'); train-cnn "
            "starts processes on this node only"
        )
        raise ConfigError(msg)
    if cnn.strategy != "auto" and not cnn.strategy.startswith("ddp"):
        msg = (
            f"cnn.strategy = {cnn.strategy!r} with cnn.devices = {cnn.devices!r} ({devices} devices): "
            "train-cnn trains on several devices with DDP only ('ddp', 'ddp_spawn', 'ddp_fork' or 'auto')"
        )
        raise ConfigError(msg)
    return devices


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


# --------------------------------------------------------------------------------------- ranks of one DDP run
def free_port() -> int:
    """Return a TCP port of 127.0.0.1 free now (the rendezvous of a single-node distributed run)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _RankTraceback(Exception):
    """The traceback of an error raised in a rank process (the cause of the error raised in the parent)."""


def _rank_env(rank: int, *, world_size: int, port: int, threads: int) -> dict[str, str]:
    """Environment of one rank: what Lightning's own DDP launcher gives the processes it starts."""
    return {
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
        "WORLD_SIZE": str(world_size),
        "NODE_RANK": "0",
        "LOCAL_RANK": str(rank),
        "RANK": str(rank),
        "OMP_NUM_THREADS": str(threads),  # else Lightning sets cores // world_size torch threads itself
    }


def _rank_main(
    rank: int,
    env: dict[str, str],
    queue: Any,
    threads: int,
    levels: dict[str, int],
    conn: multiprocessing.connection.Connection,
) -> None:
    """Body of a rank process: environment and logging first, then the job it is sent, then its result."""
    os.environ.update(env)
    _init_worker(queue, threads, levels)
    try:
        function, args = conn.recv()  # after the logging set-up: unpickling the function loads torch
        result = function(*args, rank=rank, report=functools.partial(_report, f"rank {rank}"))
    except BaseException as err:
        text = "".join(traceback.format_exception(err))
        try:
            conn.send(("error", err, text))
        except Exception:  # an error that cannot be pickled: its text
            conn.send(("error", MorphomassError(f"{type(err).__name__}: {err}"), text))
    else:
        conn.send(("ok", result, ""))
    finally:
        conn.close()


def run_ranks(
    function: Callable[..., Any],
    args: tuple[Any, ...] = (),
    *,
    world_size: int,
    threads: int,
    title: str,
    images: int = 0,
    progress: bool = True,
) -> list[Any]:
    """Run ``function(*args, rank=r, report=report)`` in ``world_size`` processes at once; return the results.

    The processes are the ranks ``0 .. world_size - 1`` of one single-node ``torch.distributed`` run: each
    gets the environment that Lightning's own DDP launcher gives the processes it starts (``MASTER_ADDR``
    127.0.0.1, a free ``MASTER_PORT``, ``WORLD_SIZE``, ``NODE_RANK`` 0, ``LOCAL_RANK`` = ``RANK`` = the rank,
    and ``OMP_NUM_THREADS`` = ``threads``), so a Lightning ``Trainer`` with the ``"ddp"`` strategy in it joins
    the process group instead of starting processes of its own. Unlike Lightning's launchers, nothing runs the
    caller's script again (the command line, the work directory's lock) and the results come back to the
    caller. Logging and progress reach the parent as with :func:`run_jobs`.

    The ranks wait for each other in collective operations, so one that fails or dies would leave the others
    waiting for ever: the first failure terminates the other ranks and is raised in the parent.

    Parameters
    ----------
    function : callable
        A module-level function; ``report(n)`` counts ``n`` images done (call it from one rank only).
    args : tuple
        Picklable arguments, the same for every rank.
    world_size : int
        Processes (>= 1).
    threads : int
        Torch threads per process.
    title : str
        Progress bar and error messages (``"train-cnn"``).
    images : int
        Images the ranks will report in all (the progress bar's total).
    progress : bool
        Show the progress bar.

    Returns
    -------
    list
        The result of each rank, in rank order.

    Raises
    ------
    MorphomassError
        The error a rank raised (its message naming the rank), or one naming the rank that died.
    """
    if world_size < 1:
        msg = f"world_size must be >= 1, got {world_size}"
        raise ValueError(msg)
    levels = {
        "": logging.getLogger().getEffectiveLevel(),
        "morphomass": logging.getLogger("morphomass").getEffectiveLevel(),
    }
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    port = free_port()
    pipes = [context.Pipe() for _ in range(world_size)]
    processes = [
        context.Process(
            target=_rank_main,
            args=(
                rank,
                _rank_env(rank, world_size=world_size, port=port, threads=threads),
                queue,
                threads,
                levels,
                pipes[rank][1],
            ),
            name=f"{title}-rank{rank}",
        )
        for rank in range(world_size)
    ]
    results: dict[int, Any] = {}
    failure: tuple[int, BaseException, str] | None = None
    bar = _Bar(title, "ranks", world_size, images, enabled=progress)
    with bar.shown():
        listener = threading.Thread(target=_listen, args=(queue, bar), name="cnn-ranks-log", daemon=True)
        listener.start()
        try:
            for process, (_, child_end) in zip(processes, pipes, strict=True):
                process.start()
                child_end.close()  # the child holds its own end: EOF here once it exits
            for parent_end, _ in pipes:
                parent_end.send((function, args))
            pending = set(range(world_size))
            while pending and failure is None:
                multiprocessing.connection.wait(
                    [pipes[r][0] for r in pending] + [processes[r].sentinel for r in pending]
                )
                for rank in sorted(pending):
                    message = _receive(pipes[rank][0])
                    if message is None:
                        if processes[rank].exitcode is None:
                            continue  # still running
                        died = MorphomassError(
                            f"{title}: rank {rank} of {world_size} stopped unexpectedly (exit code "
                            f"{processes[rank].exitcode}; killed by the system, out of memory?)"
                        )
                        failure = (rank, died, "")
                        break
                    status, value, text = message
                    pending.discard(rank)
                    if status != "ok":
                        failure = (rank, value, text)
                        break
                    results[rank] = value
                    bar.job_done()
        finally:
            for process in processes:
                if process.pid is None:
                    continue
                if len(results) < world_size and process.is_alive():
                    process.terminate()  # a failure or an interrupt: it would wait for the others for ever
                process.join()
            for parent_end, _ in pipes:
                parent_end.close()
            queue.put(None)
            listener.join()
            queue.close()
    if failure is not None:
        rank, err, text = failure
        if not text:  # a rank that died
            raise err
        named = _named(err, f"{title} (rank {rank} of {world_size})")
        raise named from _RankTraceback(text)
    return [results[rank] for rank in range(world_size)]


def _receive(conn: multiprocessing.connection.Connection) -> tuple[str, Any, str] | None:
    """Return the message a rank sent, or None if it has sent none yet (or exited without one)."""
    try:
        return conn.recv() if conn.poll() else None
    except EOFError:
        return None
