"""Executors run cells and hand each result to the driver the moment it finishes. One contract
(`collapse_bench.executors.base`): `map(fn, specs, on_result, *, on_start=None, on_step=None, on_failure=None)`,
specs and results opaque, `fn(spec, on_step)`, infrastructure failures to `on_failure(spec, CellError)` after the
one `RetryPolicy`. Three backends:

* `serial` (`SerialExecutor`): in this process, one cell after another; for one cell, debugging and tests.
* `process` (`ProcessExecutor`): `jobs` spawned workers on this machine (pebble's `ProcessPool`); the default
  of `run` for more than one cell (ARCHITECTURE.md and reports/cost/executors.md say why).
* `ray` (`RayExecutor`): Ray Core tasks, embedded or on a cluster joined by address.

Nothing here imports the sweep, the store, the registry or training: executors know nothing about cells.
"""
from __future__ import annotations

import importlib.util
from typing import Any

from .executors.base import CellError, CellFailed, ExecutorError, RetryPolicy, SerialExecutor
from .executors.process import ProcessExecutor, default_jobs, exit_text, local_cpus
from .executors.ray_tasks import RayExecutor, check_reachable

KINDS = ("serial", "process", "ray")

__all__ = ["CellError", "CellFailed", "ExecutorError", "KINDS", "ProcessExecutor", "RayExecutor", "RetryPolicy",
           "SerialExecutor", "check_reachable", "default_jobs", "exit_text", "local_cpus", "make_executor"]


def make_executor(kind: str = "serial", address: str | None = None, num_cpus: int | None = None,
                  retries: int = 0, jobs: int | None = None, threads: int = 1, **options: Any):
    """`serial`, `process` or `ray`. `jobs` is how many cells run at once (`process`: worker processes,
    default all cores / `threads`; `ray`: a cap on runs in flight). For `ray`, `address` joins a cluster;
    `num_cpus` sizes the embedded Ray (or caps the runs in flight on a joined cluster); `retries` runs a
    cell again whose worker died."""
    RetryPolicy(retries)                                   # validates --retries
    if num_cpus is not None and num_cpus < 1:
        raise ExecutorError(f"--num-cpus must be >= 1, got {num_cpus}")
    if jobs is not None and jobs < 1:
        raise ExecutorError(f"--jobs must be >= 1, got {jobs}")
    if address and kind != "ray":
        raise ExecutorError("--ray-address needs --executor ray")
    if kind == "serial":
        return SerialExecutor(retries=retries)
    if kind == "process":
        return ProcessExecutor(jobs or default_jobs(threads), retries=retries, threads=threads)
    if kind == "ray":
        if jobs is not None:
            options.setdefault("max_in_flight", jobs)
        if importlib.util.find_spec("ray") is None:
            raise ExecutorError("--executor ray needs Ray: pip install 'collapse-bench[ray]' (ray==2.60.0)")
        return RayExecutor(address=address, num_cpus=num_cpus, retries=retries, **options)
    raise ExecutorError(f"unknown executor {kind!r}; choose one of {', '.join(KINDS)}")
