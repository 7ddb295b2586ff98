"""`ProcessExecutor`: cells in `jobs` spawned worker processes on this machine, on pebble's `ProcessPool`
(reports/cost/executors.md has the measurements behind the choice).

* Workers are spawned (a fresh interpreter: forking a driver that has torch's thread pools up can deadlock)
  with OMP/MKL/OpenBLAS threads set to `threads`, so that BLAS outside torch (the probe's scikit-learn fits)
  does not oversubscribe the cores either; they ignore SIGINT: the driver owns Ctrl-C and stops them.
* A worker that dies (killed, out of memory, segfault) fails only the cell it held (pebble's `ProcessExpired`);
  pebble starts a fresh worker and the others go on; the cell is retried by the shared `RetryPolicy`.
* `start` and throttled `step` events travel over one `SimpleQueue` (a synchronous pipe write, so a cell's
  events are in the pipe before its result is) and are drained before each finished cell is handed over.
* A list or lazy iterable is pulled only when a worker is free. Each cell is pickled in the driver and unpickled
  inside its task, so a cell the worker cannot load fails alone (pebble's pool would break on it).
* Ctrl-C (or a callback raising) stops every worker and re-raises, after every finished result was handed over.
  A driver killed outright (SIGKILL, a closed session) cannot stop them: each worker sees its parent change and
  exits within `DRIVER_CHECK_SECONDS`, instead of training cells whose results nobody will write.
"""
from __future__ import annotations

import contextlib
import itertools
import os
import pickle
import signal
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, wait
from multiprocessing.context import SpawnContext, SpawnProcess
from typing import Any, Callable, Iterable

from .base import CellError, CellFn, ExecutorError, Feed, OnFailure, OnResult, RetryPolicy, Task

STEP_EVERY = 0.25                  # seconds between step messages of a worker
POLL_SECONDS = 0.1                 # how often the driver looks at the event queue while cells run
DRIVER_CHECK_SECONDS = 1.0         # how often a worker checks that its driver is still its parent
BLAS_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")

_events: Any = None                # in a worker: the queue its cells' start/step events go to


def _init_worker(events: Any, driver: int) -> None:
    global _events
    signal.signal(signal.SIGINT, signal.SIG_IGN)          # the driver stops its workers itself
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})   # blocked since the driver started us
    _events = events
    threading.Thread(target=_exit_with_driver, args=(driver,), name="exit-with-driver", daemon=True).start()


def _exit_with_driver(driver: int) -> None:
    """End this worker once `driver` is no longer its parent (it died and the worker was re-parented). The pid
    is the driver's own, passed in, so a driver that died before this thread started is caught too."""
    while os.getppid() == driver:
        time.sleep(DRIVER_CHECK_SECONDS)
    os._exit(1)


@contextlib.contextmanager
def sigint_held():
    """SIGINT blocked in the calling thread meanwhile (the mask is per thread). A worker started inside inherits
    the blocked mask through exec, so a terminal's Ctrl-C (sent to the whole process group) cannot interrupt its
    start-up; `_init_worker` then ignores SIGINT and unblocks it. A Ctrl-C meanwhile is delivered to the driver's
    main thread (or, if the main thread is the one starting, stays pending and arrives right after)."""
    if not hasattr(signal, "pthread_sigmask"):         # Windows: nothing to hold
        yield
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


class _WorkerProcess(SpawnProcess):
    """A spawned worker started with the BLAS thread variables set and SIGINT held; pebble starts the first
    workers from the driver's thread and replacements from its manager thread, both through here."""
    threads = 1

    def start(self) -> None:
        with thread_env(self.threads), sigint_held():
            super().start()


class _WorkerContext(SpawnContext):
    """The spawn context, its `Process` being `_WorkerProcess` with `threads` BLAS threads."""

    def __init__(self, threads: int):
        super().__init__()
        self.threads = threads

    def Process(self, *args: Any, **kwargs: Any) -> _WorkerProcess:  # noqa: N802 - the multiprocessing name
        process = _WorkerProcess(*args, **kwargs)
        process.threads = self.threads
        return process


def _run_in_worker(payload: bytes, key: int, steps: bool) -> Any:
    _events.put((key, "start", os.getpid()))
    fn, spec = pickle.loads(payload)       # here, so that a cell this worker cannot load fails alone
    last = [0.0]

    def on_step(step: int, total: int) -> None:
        t = time.monotonic()
        if t - last[0] >= STEP_EVERY or step >= total:
            last[0] = t
            _events.put((key, "step", step, total))
    return fn(spec, on_step if steps else None)


@contextlib.contextmanager
def thread_env(threads: int):
    """BLAS thread variables for the workers started inside (spawn copies the environment at each start, and
    the pool may start a replacement worker at any time while it runs)."""
    values = {k: str(threads) for k in BLAS_THREAD_VARS}
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def exit_text(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _payload(fn: CellFn, spec: Any) -> bytes:
    """The cell for a worker, pickled here: the worker unpickles it inside the task, where a failure (a spec
    class it cannot import) fails that cell only instead of pebble's whole pool."""
    try:
        return pickle.dumps((fn, spec))
    except (pickle.PicklingError, AttributeError, TypeError) as e:
        raise ExecutorError(f"the process executor sends the cell function and spec to its workers by reference; "
                            f"{fn!r} or {spec!r} cannot be (define them at module level): {e}") from e


def _outcome(future: Future) -> tuple[Any, CellError | None]:
    from pebble import ProcessExpired
    try:
        return future.result(), None
    except ProcessExpired as e:
        return None, CellError("WorkerDied", f"the worker running this cell died ({exit_text(e.exitcode)}: "
                                             f"out of memory, killed or crashed)")
    except Exception as e:  # noqa: BLE001 - raised outside the cell's own handling, or the cell could not load
        return None, CellError.from_exception(e, getattr(e, "traceback", None))


class ProcessExecutor:
    """Cells in `jobs` spawned worker processes; see the module docstring."""

    def __init__(self, jobs: int | None = None, retries: int = 0, threads: int = 1):
        self.jobs = jobs or default_jobs(threads)
        self.policy = RetryPolicy(retries)
        self.threads = threads

    @property
    def retries(self) -> int:
        return self.policy.retries

    def map(self, fn: CellFn, specs: Iterable, on_result: OnResult, *,
            on_start: Callable[[Any], None] | None = None, on_step: Callable[[Any, int, int], None] | None = None,
            on_failure: OnFailure | None = None) -> None:
        from pebble import ProcessPool
        workers = min(self.jobs, len(specs)) if isinstance(specs, (list, tuple)) else self.jobs
        if workers == 0:
            return
        ctx = _WorkerContext(self.threads)
        feed, events, keys = Feed(specs, self.policy), ctx.SimpleQueue(), itertools.count()
        running: dict[Future, tuple[int, Task]] = {}
        pool = ProcessPool(workers, initializer=_init_worker, initargs=(events, os.getpid()),
                           context=ctx)
        try:
            while True:
                while len(running) < workers and (task := feed.next()) is not None:
                    key = next(keys)
                    payload = _payload(fn, task.spec)
                    running[pool.schedule(_run_in_worker, (payload, key, on_step is not None))] = (key, task)
                if not running:
                    break
                done, _ = wait(running, timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)
                _drain(events, {key: task for key, task in running.values()}, on_start, on_step)
                for future in done:
                    task = running.pop(future)[1]
                    feed.settle(task, *_outcome(future), on_result, on_failure)
        except BaseException:
            pool.stop()
            raise
        finally:
            pool.close()
            pool.join()


def _drain(events: Any, tasks: dict[int, Task], on_start: Callable[[Any], None] | None,
           on_step: Callable[[Any, int, int], None] | None) -> None:
    """Hand the queued start/step events of running cells to the callbacks (a retried cell starts once)."""
    while not events.empty():
        key, kind, *rest = events.get()
        task = tasks.get(key)
        if task is None:
            continue
        if kind == "start" and on_start and task.attempt == 1:
            on_start(task.spec)
        elif kind == "step" and on_step:
            on_step(task.spec, rest[0], rest[1])


def local_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_jobs(threads: int = 1) -> int:
    """Cells at once on this machine: one per `threads` cores."""
    return max(1, local_cpus() // max(1, threads))
