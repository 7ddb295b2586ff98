"""Executors run cells and hand each record to the driver's `on_result` the moment it finishes.

Three backends share one contract, `executor.map(fn, specs, on_result, *, on_start=None, on_step=None)`
(`on_start(spec)` when a cell starts running, `on_step(spec, step, total)` as it trains, where available):

* `serial` (`collapse_bench.sweep.SerialExecutor`): in this process, one cell after another; for one cell,
  debugging and most tests.
* `process` (`ProcessExecutor`): `jobs` spawned worker processes on this machine, one cell each at a time;
  the default of `run` for more than one cell (ARCHITECTURE.md says why).
* `ray` (`RayExecutor`): Ray Core tasks with an explicit CPU request per run (`num_cpus=1` by default; the
  run's torch threads come from its config, `train.threads`, which `run_cell` applies).

`ProcessExecutor` details:

* Workers are started with the `spawn` method (a fresh interpreter: forking a driver that has torch's
  thread pools up can deadlock) with OMP/MKL/OpenBLAS threads set to `threads`, so that BLAS calls outside
  torch (the probe's scikit-learn fits) do not oversubscribe the cores either. They ignore SIGINT: the driver
  owns Ctrl-C and stops them.
* Each worker runs one cell at a time and reports `start`, throttled `step`s and the record over its pipe;
  lists and lazy iterables alike are pulled only when a worker is free.
* A worker that dies (killed, out of memory, segfault) is noticed by its process sentinel: its cell is
  retried up to `retries` times, then becomes a `failed` record naming the exit signal; a fresh worker
  takes its place and the sweep goes on. A cell function that raises becomes a `failed` record too.
* Ctrl-C (or `on_result` raising) terminates every worker and re-raises, after every finished record has
  been handed to `on_result`.
* The worker imports the module that registered each cell's method first, so methods registered outside
  `collapse_bench` (a test module, a plug-in imported by hand) resolve in the worker as in the driver.

`RayExecutor` details:

* Embedded (no address): a single-machine Ray started on first use with explicit `num_cpus`, no dashboard,
  a small object store and worker logs not forwarded to the driver (`log_to_driver=False`; set
  `COLLAPSE_BENCH_RAY_LOG=1` to see them); shut down when `map` returns — only if this executor started
  it. If Ray is already initialised in the process (a test fixture, a notebook), it is used and left up.
* `address="auto"`, `"HOST:PORT"` or `"ray://HOST:PORT"` (or `RAY_ADDRESS` in the environment) joins an
  existing cluster, which is never shut down by us. Ray 2.60 enables token authentication on clusters
  started by `ray start --head` when `~/.ray/auth_token` exists, but a driver given an explicit address
  (including `RAY_ADDRESS`) does not turn token mode on by itself and then fails with `InvalidAuthToken`;
  when joining we therefore switch the driver to token mode whenever a token is available and
  `RAY_AUTH_MODE` is unset (token mode also works against a cluster without authentication).
* Results reach `on_result` in the driver as each task finishes (`ray.wait` loop), so the driver writes
  each result file at once. A task whose worker dies (killed, out of memory, node lost) or whose function
  raises (`RayTaskError`) is resubmitted up to `retries` times, then becomes a `failed` record with the
  cause, in the same schema as `run_cell`'s failed records; the other cells go on. Ray's own task retries
  are off (`max_retries=0`) so that every attempt is accounted for here.
* Ctrl-C (KeyboardInterrupt) cancels every outstanding task, shuts the embedded Ray down and re-raises,
  after everything that finished has been handed to `on_result` (i.e. written).
* `specs` may be a lazy iterable (Optuna's ask-as-you-go in `tune.py`): a list is submitted at once, an
  iterator is pulled only when a CPU slot is free, so at most `slots` runs are in flight.
"""
from __future__ import annotations

import contextlib
import importlib
import inspect
import multiprocessing as mp
import os
import pickle
import signal
import socket
import sys
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from .store import SCHEMA, now, provenance

KINDS = ("serial", "process", "ray")
STEP_EVERY = 0.25                  # seconds between step messages of a process worker
BLAS_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
DEFAULT_OBJECT_STORE_MB = 128      # we only pass small specs and records around
WAIT_SECONDS = 0.5                 # ray.wait poll; keeps Ctrl-C responsive


class ExecutorError(ValueError):
    """A configuration problem of the executor (the CLI prints it as `error: ...`)."""


def make_executor(kind: str = "serial", address: str | None = None, num_cpus: int | None = None,
                  retries: int = 0, jobs: int | None = None, threads: int = 1, **options):
    """`serial`, `process` or `ray`. `jobs` is how many cells run at once (`process`: worker processes,
    default all cores / `threads`; `ray`: a cap on runs in flight). For `ray`, `address` joins a cluster;
    `num_cpus` sizes the embedded Ray (or caps the runs in flight on a joined cluster); `retries` resubmits a
    cell whose worker died (`process` and `ray`)."""
    if retries < 0:
        raise ExecutorError(f"--retries must be >= 0, got {retries}")
    if num_cpus is not None and num_cpus < 1:
        raise ExecutorError(f"--num-cpus must be >= 1, got {num_cpus}")
    if jobs is not None and jobs < 1:
        raise ExecutorError(f"--jobs must be >= 1, got {jobs}")
    if address and kind != "ray":
        raise ExecutorError("--ray-address needs --executor ray")
    if kind == "serial":
        from .sweep import SerialExecutor
        return SerialExecutor()
    if kind == "process":
        return ProcessExecutor(jobs or default_jobs(threads), retries=retries, threads=threads)
    if kind == "ray":
        if jobs is not None:
            options.setdefault("max_in_flight", jobs)
        import importlib.util
        if importlib.util.find_spec("ray") is None:
            raise ExecutorError("--executor ray needs Ray: pip install 'collapse-bench[ray]' (ray==2.60.0)")
        return RayExecutor(address=address, num_cpus=num_cpus, retries=retries, **options)
    raise ExecutorError(f"unknown executor {kind!r}; choose one of {', '.join(KINDS)}")


def failed_record(spec, error_type: str, message: str, tb: str = "", *, started: str | None = None,
                  attempts: int | None = None) -> dict:
    """A `failed` record for a cell whose run produced no record of its own (worker died, task raised),
    with the fields `run_cell` would have filled without running anything."""
    try:
        method = spec.make_method()
        label, params = spec.label, method.params.to_dict()
    except Exception:  # noqa: BLE001 - an unknown method must still give a record
        label, params = spec.method, dict(spec.params)
    try:
        cell = spec.cell
    except Exception:  # noqa: BLE001
        cell = f"{spec.method}__{spec.dataset}__{spec.size}__seed{spec.seed}"
    error: dict[str, Any] = {"type": error_type, "message": message, "traceback": tb}
    if attempts is not None:
        error["attempts"] = attempts
    return {"schema": SCHEMA, "cell": cell, "method": spec.method, "params": params, "label": label,
            "dataset": spec.dataset, "size": spec.size, "seed": spec.seed,
            "overrides": getattr(spec, "overrides", {}), "preset": getattr(spec, "preset", None),
            "status": "failed", "error": error,
            "metrics": {}, "timing": {}, "curves": [], "config": {},
            "provenance": {**provenance(), "started": started or now(), "finished": now()}}


def _run_task(fn: Callable, spec) -> dict:
    """Body of every Ray task (module-level so workers import it rather than unpickle a closure)."""
    return fn(spec)


def _token_available() -> bool:
    if os.environ.get("RAY_AUTH_TOKEN"):
        return True
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    return Path(path).expanduser().is_file() if path else (Path.home() / ".ray" / "auth_token").is_file()


def _enable_token_auth_for_join() -> None:
    """See the module docstring: a driver joining by explicit address must be told to send the token."""
    if os.environ.get("RAY_AUTH_MODE") is not None:
        return
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available)
        maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
    except ImportError:  # a later Ray moved it; the environment variable is the documented switch
        if _token_available():
            os.environ["RAY_AUTH_MODE"] = "token"


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """`ray.init("HOST:PORT")` waits a long time on an address where nothing listens; fail fast instead."""
    if address == "auto" or "://" in address:
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ExecutorError(f"--ray-address {address!r}: write auto, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise ExecutorError(f"no Ray cluster answers at {address} ({e}); start one with "
                            f"`ray start --head --port {port}` or omit --ray-address for an embedded Ray")


class RayExecutor:
    """Runs each cell as a Ray Core task; see the module docstring."""

    def __init__(self, address: str | None = None, num_cpus: int | None = None, retries: int = 0, *,
                 cpus_per_task: float = 1, memory_mb: int | None = None,
                 object_store_mb: int = DEFAULT_OBJECT_STORE_MB, log_to_driver: bool | None = None,
                 max_in_flight: int | None = None, verbose: bool = True):
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self.num_cpus = num_cpus
        self.retries = retries
        self.cpus_per_task = cpus_per_task
        self.memory_mb = memory_mb
        self.object_store_mb = object_store_mb
        self.log_to_driver = (os.environ.get("COLLAPSE_BENCH_RAY_LOG", "") not in ("", "0")
                              if log_to_driver is None else log_to_driver)
        self.max_in_flight = max_in_flight
        self.verbose = verbose
        self.start_seconds: float | None = None   # how long ray.init took (None if Ray was already up)
        self._owned = False

    # --- lifecycle -------------------------------------------------------------------------------
    def start(self) -> bool:
        """Start or join Ray unless it is already initialised; True if this call did it."""
        import ray
        if ray.is_initialized():
            return False
        t0 = time.perf_counter()
        common = dict(log_to_driver=self.log_to_driver, configure_logging=True, logging_level="warning")
        if self.address:
            _check_reachable(self.address)
            _enable_token_auth_for_join()
            try:
                ray.init(address=self.address, **common)
            except (ConnectionError, RuntimeError, ValueError) as e:
                hint = (" (ray:// addresses use Ray Client: pip install 'ray[client]==2.60.0')"
                        if self.address.startswith("ray://") else "")
                raise ExecutorError(f"could not join the Ray cluster at {self.address}: {e}{hint}") from e
            self._owned = False
        else:
            ray.init(num_cpus=self.num_cpus or _local_cpus(), include_dashboard=False,
                     object_store_memory=self.object_store_mb * 2**20, **common)
            self._owned = True
        self.start_seconds = time.perf_counter() - t0
        if self.verbose:
            where = f"joined {self.address}" if self.address else f"started (num_cpus={self.num_cpus or _local_cpus()})"
            print(f"ray: {where} in {self.start_seconds:.1f}s", file=sys.stderr)
        return True

    def shutdown(self) -> None:
        """Disconnect; an embedded Ray we started stops with it, a joined cluster keeps running."""
        import ray
        if ray.is_initialized():
            ray.shutdown()
        self._owned = False

    def __enter__(self) -> "RayExecutor":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()

    def slots(self) -> int:
        """How many runs fit at once: the cluster's CPUs over the CPUs per run, capped by num_cpus when joining."""
        import ray
        cpus = ray.cluster_resources().get("CPU", 0.0)
        n = int(cpus // self.cpus_per_task) if self.cpus_per_task > 0 else int(cpus)
        if self.address and self.num_cpus:
            n = min(n, int(self.num_cpus // max(self.cpus_per_task, 1e-9)) or 1)
        if self.max_in_flight:
            n = min(n, self.max_in_flight)
        return max(1, n)

    def _capped(self) -> bool:
        return bool((self.address and self.num_cpus) or self.max_in_flight)

    # --- the contract ----------------------------------------------------------------------------
    def map(self, fn: Callable[[Any], dict], specs: Iterable, on_result: Callable[[dict], None], *,
            on_start: Callable[[Any], None] | None = None, on_step: Callable[[Any, int, int], None] | None = None) -> None:
        """`on_start` fires when a task is submitted (Ray does not say when it starts); no step progress."""
        eager = isinstance(specs, (list, tuple))
        if eager and not specs:
            return                                  # nothing to run: do not start Ray at all
        import ray
        from ray.exceptions import RayError, RayTaskError, TaskCancelledError

        started_here = self.start()
        options: dict[str, Any] = {"num_cpus": self.cpus_per_task, "max_retries": 0, "retry_exceptions": False}
        if self.memory_mb:
            options["memory"] = self.memory_mb * 2**20
        remote = ray.remote(_run_task)
        fn_ref = ray.put(fn)
        pending: dict[Any, tuple[Any, int, str]] = {}    # ref -> (spec, attempt, started)
        source = iter(specs)
        exhausted = False

        def submit(spec, attempt: int, started: str | None = None) -> None:
            ref = remote.options(**options, name=_task_name(spec)).remote(fn_ref, spec)
            pending[ref] = (spec, attempt, started or now())
            if on_start and attempt == 1:
                on_start(spec)

        try:
            while True:
                # A list goes to Ray's scheduler at once (it sees the whole demand); an iterator, or a cap set
                # by num_cpus on a joined cluster / max_in_flight, is fed one free slot at a time.
                limit = len(specs) if eager and not self._capped() else self.slots()
                while not exhausted and len(pending) < limit:
                    try:
                        spec = next(source)
                    except StopIteration:
                        exhausted = True
                        break
                    submit(spec, 1)
                if not pending:
                    break
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=WAIT_SECONDS)
                for ref in ready:
                    spec, attempt, started = pending.pop(ref)
                    try:
                        record = ray.get(ref)
                    except TaskCancelledError:
                        continue
                    except RayTaskError as e:       # fn raised inside the worker
                        cause = e.cause if getattr(e, "cause", None) is not None else e
                        err = (type(cause).__name__, str(cause), getattr(e, "traceback_str", "") or str(e))
                    except RayError as e:           # worker died: killed, out of memory, node lost, ...
                        err = (type(e).__name__, _died_message(e), str(e))
                    else:
                        on_result(record)
                        continue
                    if attempt <= self.retries:
                        if self.verbose:
                            print(f"ray: {_task_name(spec)} attempt {attempt} failed ({err[0]}); retrying",
                                  file=sys.stderr)
                        submit(spec, attempt + 1, started)
                    else:
                        on_result(failed_record(spec, *err, started=started, attempts=attempt))
        except BaseException:
            # Ctrl-C, or on_result raised: stop the runs still going and keep what was written.
            for ref in pending:
                try:
                    ray.cancel(ref, force=True)
                except Exception:  # noqa: BLE001 - best effort while stopping
                    pass
            raise
        finally:
            if started_here:       # stops an embedded Ray; for a joined cluster only disconnects this driver
                self.shutdown()


def _died_message(e: Exception) -> str:
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"the worker running this cell died (killed, out of memory or crashed): {first}"


def _task_name(spec) -> str:
    try:
        return str(spec.cell)[:120]
    except Exception:  # noqa: BLE001
        return "cell"


def _local_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_jobs(threads: int = 1) -> int:
    """Cells at once on this machine: one per `threads` cores."""
    return max(1, _local_cpus() // max(1, threads))


def accepts_on_step(fn: Callable) -> bool:
    """Whether `fn(spec, on_step=...)` is allowed (run_cell is; a tuning or test function may not be)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "on_step" or p.kind is p.VAR_KEYWORD for p in params)


def _method_module(spec) -> str | None:
    try:
        from . import registry
        module = registry.get(spec.method).__module__
    except Exception:  # noqa: BLE001 - the worker's own run reports an unknown method
        return None
    return None if module in ("__main__", "__mp_main__") or module.startswith("collapse_bench.") else module


def _worker(conn: Connection, steps: bool) -> None:
    """A process worker: run the cells sent to it, one at a time, until told to stop (None) or orphaned."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)          # the driver stops its workers itself
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})   # blocked since the driver started us
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        except Exception as e:  # noqa: BLE001 - e.g. the spec's class is not importable here: fail that cell only
            conn.send(("raised", type(e).__name__, f"the worker could not load the cell: {e}", traceback.format_exc()))
            continue
        if task is None:
            return
        fn, spec, module = task
        conn.send(("start", os.getpid()))
        last = [0.0]

        def on_step(step: int, total: int) -> None:
            t = time.monotonic()
            if t - last[0] >= STEP_EVERY or step >= total:
                last[0] = t
                conn.send(("step", step, total))
        try:
            if module:
                importlib.import_module(module)
            record = fn(spec, on_step=on_step) if steps and accepts_on_step(fn) else fn(spec)
            conn.send(("done", record))
        except (BrokenPipeError, EOFError):
            return
        except BaseException as e:  # noqa: BLE001 - the driver turns it into a failed record
            conn.send(("raised", type(e).__name__, str(e), traceback.format_exc()))


@contextlib.contextmanager
def _env(values: dict[str, str]):
    """Set environment variables for the processes started inside (spawn copies the environment at start)."""
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


@contextlib.contextmanager
def _sigint_held():
    """While a worker starts, SIGINT is blocked in the driver: the worker inherits the blocked mask through
    exec (so a terminal's Ctrl-C cannot interrupt its start-up; `_worker` then ignores SIGINT and unblocks it),
    and a Ctrl-C that arrives meanwhile stays pending for the driver, which receives it right after, instead of
    being lost as it was when the driver ignored SIGINT around the start (where blocking is not available,
    Windows, it still does that)."""
    if threading.current_thread() is not threading.main_thread():
        yield
    elif hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            yield
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    else:
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, old)


@dataclass
class _Slot:
    proc: Any
    conn: Connection
    task: tuple[Any, int, str] | None = None     # (spec, attempt, started)


class ProcessExecutor:
    """Cells in `jobs` spawned worker processes on this machine; see the module docstring."""

    def __init__(self, jobs: int | None = None, retries: int = 0, threads: int = 1):
        self.jobs = jobs or default_jobs(threads)
        self.retries = retries
        self.threads = threads

    def _spawn(self, ctx, steps: bool) -> _Slot:
        parent, child = ctx.Pipe(duplex=True)
        proc = ctx.Process(target=_worker, args=(child, steps), daemon=True, name="collapse-bench-worker")
        with _env({k: str(self.threads) for k in BLAS_THREAD_VARS}), _sigint_held():
            proc.start()
        child.close()       # so that the parent's end sees EOF when the worker dies
        return _Slot(proc, parent)

    def map(self, fn: Callable[[Any], dict], specs: Iterable, on_result: Callable[[dict], None], *,
            on_start: Callable[[Any], None] | None = None, on_step: Callable[[Any, int, int], None] | None = None) -> None:
        eager = isinstance(specs, (list, tuple))
        if eager and not specs:
            return
        ctx = mp.get_context("spawn")
        source: Iterator = iter(specs)
        retry: deque[tuple[Any, int, str]] = deque()
        exhausted = False
        slots: list[_Slot] = []

        def next_task() -> tuple[Any, int, str] | None:
            nonlocal exhausted
            if retry:
                return retry.popleft()
            if exhausted:
                return None
            try:
                return next(source), 1, now()
            except StopIteration:
                exhausted = True
                return None

        def start(task: tuple[Any, int, str], slot: _Slot | None = None) -> None:
            if slot is None:
                slot = self._spawn(ctx, on_step is not None)
                slots.append(slot)
            slot.task = task
            try:
                slot.conn.send((fn, task[0], _method_module(task[0])))
            except (pickle.PicklingError, AttributeError, TypeError) as e:
                raise ExecutorError(f"the process executor sends the cell function to its workers by reference; "
                                    f"{fn!r} cannot be (define it at module level): {e}") from e

        def lost(slot: _Slot, error: tuple[str, str, str]) -> None:
            spec, attempt, started = slot.task
            slot.task = None
            if error[0] == "WorkerDied" and attempt <= self.retries:
                retry.append((spec, attempt + 1, started))
            else:
                on_result(failed_record(spec, *error, started=started,
                                        attempts=attempt if error[0] == "WorkerDied" else None))

        try:
            while len(slots) < self.jobs and (task := next_task()) is not None:
                start(task)
            while busy := [s for s in slots if s.task is not None]:
                ready = set(wait([s.conn for s in busy] + [s.proc.sentinel for s in busy]))
                for slot in busy:
                    if slot.conn not in ready and slot.proc.sentinel not in ready:
                        continue
                    while slot.task is not None and slot.conn.poll():
                        try:
                            msg = slot.conn.recv()
                        except (EOFError, OSError):
                            break
                        if msg[0] == "start":
                            if on_start:
                                on_start(slot.task[0])
                        elif msg[0] == "step":
                            if on_step:
                                on_step(slot.task[0], msg[1], msg[2])
                        elif msg[0] == "done":
                            slot.task = None
                            on_result(msg[1])
                        else:
                            lost(slot, msg[1:])
                    alive = slot.proc.is_alive()
                    if slot.task is not None and not alive:
                        slot.proc.join()
                        lost(slot, ("WorkerDied", f"the worker running this cell died "
                                                  f"({exit_text(slot.proc.exitcode)}: out of memory, killed or crashed)", ""))
                    if slot.task is None and (task := next_task()) is not None:
                        if not alive:                   # a fresh worker takes a dead one's place
                            slots.remove(slot)
                            slot.conn.close()
                        start(task, slot if alive else None)
        except BaseException:
            self._stop(slots, force=True)
            raise
        self._stop(slots)

    @staticmethod
    def _stop(slots: list[_Slot], force: bool = False) -> None:
        for s in slots:
            if force:
                s.proc.terminate()
            else:
                with contextlib.suppress(OSError):
                    s.conn.send(None)
        for s in slots:
            s.proc.join(timeout=5)
            if s.proc.is_alive():
                s.proc.kill()
                s.proc.join()
            s.conn.close()
