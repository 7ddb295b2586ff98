"""`RayExecutor`: each cell a Ray Core task with an explicit CPU request (`num_cpus=1` by default; the run's
torch threads come from its own config, which the cell function applies).

* Embedded (no address): a single-machine Ray started on first use with explicit `num_cpus`, no dashboard,
  a small object store and worker logs not forwarded to the driver (`log_to_driver=False`; set
  `COLLAPSE_BENCH_RAY_LOG=1` to see them); shut down when `map` returns, only if this executor started
  it. If Ray is already initialised in the process (a test fixture, a notebook), it is used and left up.
* `address="auto"`, `"HOST:PORT"` or `"ray://HOST:PORT"` (or `RAY_ADDRESS` in the environment) joins an
  existing cluster, which is never shut down by us. Ray 2.60 enables token authentication on clusters
  started by `ray start --head` when `~/.ray/auth_token` exists, but a driver given an explicit address
  (including `RAY_ADDRESS`) does not turn token mode on by itself and then fails with `InvalidAuthToken`;
  when joining we therefore switch the driver to token mode whenever a token is available and
  `RAY_AUTH_MODE` is unset (token mode also works against a cluster without authentication).
* Results reach `on_result` as each task finishes (`ray.wait` loop). A task whose worker dies or that raises
  outside the cell is retried by the shared `RetryPolicy`, then reported to `on_failure`; Ray's own task
  retries are off (`max_retries=0`) so that every attempt is accounted for here.
* `on_start` fires when a task is submitted (Ray does not say when it starts); no step events.
* Ctrl-C (or a callback raising) cancels every outstanding task, shuts an embedded Ray down and re-raises,
  after everything that finished was handed over.
* A list is submitted at once (Ray's scheduler sees the whole demand) unless a cap applies (`num_cpus` on a
  joined cluster, `max_in_flight`); a lazy iterable is pulled only when a CPU slot is free.
"""
from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from .base import CellError, CellFn, ExecutorError, Feed, OnFailure, OnResult, RetryPolicy, Task
from .process import local_cpus

DEFAULT_OBJECT_STORE_MB = 128      # we only pass small specs and results around
WAIT_SECONDS = 0.5                 # ray.wait poll; keeps Ctrl-C responsive


def _run_task(fn: CellFn, spec: Any) -> Any:
    """Body of every Ray task (module-level so workers import it rather than unpickle a closure)."""
    return fn(spec, None)


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


def check_reachable(address: str, timeout: float = 5.0) -> None:
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
        self.policy = RetryPolicy(retries)
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
            check_reachable(self.address)
            _enable_token_auth_for_join()
            try:
                ray.init(address=self.address, **common)
            except (ConnectionError, RuntimeError, ValueError) as e:
                hint = (" (ray:// addresses use Ray Client: pip install 'ray[client]==2.60.0')"
                        if self.address.startswith("ray://") else "")
                raise ExecutorError(f"could not join the Ray cluster at {self.address}: {e}{hint}") from e
            self._owned = False
        else:
            ray.init(num_cpus=self.num_cpus or local_cpus(), include_dashboard=False,
                     object_store_memory=self.object_store_mb * 2**20, **common)
            self._owned = True
        self.start_seconds = time.perf_counter() - t0
        if self.verbose:
            where = f"joined {self.address}" if self.address else f"started (num_cpus={self.num_cpus or local_cpus()})"
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

    @property
    def retries(self) -> int:
        return self.policy.retries

    def _capped(self) -> bool:
        return bool((self.address and self.num_cpus) or self.max_in_flight)

    # --- the contract ----------------------------------------------------------------------------
    def map(self, fn: CellFn, specs: Iterable, on_result: OnResult, *,
            on_start: Callable[[Any], None] | None = None, on_step: Callable[[Any, int, int], None] | None = None,
            on_failure: OnFailure | None = None) -> None:
        eager = isinstance(specs, (list, tuple))
        if eager and not specs:
            return                                  # nothing to run: do not start Ray at all
        import ray
        started_here = self.start()
        remote = ray.remote(_run_task).options(**self._task_options())
        fn_ref, feed = ray.put(fn), Feed(specs, self.policy)
        pending: dict[Any, Task] = {}
        try:
            while True:
                limit = len(specs) if eager and not self._capped() else self.slots()
                while len(pending) < limit and (task := feed.next()) is not None:
                    pending[remote.remote(fn_ref, task.spec)] = task
                    if on_start and task.attempt == 1:
                        on_start(task.spec)
                if not pending:
                    break
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=WAIT_SECONDS)
                for ref in ready:
                    task = pending.pop(ref)
                    feed.settle(task, *_outcome(ref), on_result, on_failure)
        except BaseException:
            _cancel(pending)             # Ctrl-C, or a callback raised: stop the runs still going
            raise
        finally:
            if started_here:             # stops an embedded Ray; for a joined cluster only disconnects this driver
                self.shutdown()

    def _task_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"num_cpus": self.cpus_per_task, "max_retries": 0, "retry_exceptions": False,
                                   "name": "collapse-bench-cell"}
        if self.memory_mb:
            options["memory"] = self.memory_mb * 2**20
        return options


def _outcome(ref: Any) -> tuple[Any, CellError | None]:
    import ray
    from ray.exceptions import RayError, RayTaskError
    try:
        return ray.get(ref), None
    except RayTaskError as e:           # raised inside the worker
        cause = e.cause if getattr(e, "cause", None) is not None else e
        return None, CellError(type(cause).__name__, str(cause), getattr(e, "traceback_str", "") or str(e))
    except RayError as e:               # worker died: killed, out of memory, node lost, ...
        return None, CellError("WorkerDied", _died_message(e), str(e))


def _cancel(pending: dict[Any, Task]) -> None:
    import ray
    for ref in pending:
        try:
            ray.cancel(ref, force=True)
        except Exception:  # noqa: BLE001 - best effort while stopping
            pass


def _died_message(e: Exception) -> str:
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"the worker running this cell died (killed, out of memory or crashed): {first}"

