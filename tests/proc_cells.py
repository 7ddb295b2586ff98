"""Cheap top-level cell functions for the executor contract suite: `fn(spec, on_step)`, no torch, so a worker
starts in well under a second. Workers import this module by reference (the tests put its folder on the
workers' PYTHONPATH). Cells coordinate through marker files in `spec.work`, the one thing every executor's
workers share with the test, instead of sleeping."""
from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

Step = Callable[[int, int], None] | None
HANG_GUARD = 120.0          # seconds a cell waits for a marker before giving up (the test then fails, not hangs)


@dataclass(frozen=True)
class Spec:
    seed: int
    work: str = "."         # a folder for markers and pid files
    peers: int = 1          # `meet`: how many cells must have started before any may finish


def result(spec: Spec, **extra: Any) -> dict:
    return {"seed": spec.seed, "pid": os.getpid(), **extra}


def mark(spec: Spec, name: str) -> None:
    (Path(spec.work) / f"{name}-{spec.seed}").write_text(str(os.getpid()))


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = HANG_GUARD) -> None:
    """Wait until `predicate()` holds (a marker file appears); the timeout only keeps a broken run from hanging."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what}")
        time.sleep(0.01)


def echo(spec: Spec, on_step: Step) -> dict:
    return result(spec)


def stepping(spec: Spec, on_step: Step) -> dict:
    for i in range(1, 4):
        if on_step:
            on_step(i, 3)
    return result(spec)


def meet(spec: Spec, on_step: Step) -> dict:
    """Marks its start, then finishes only once `spec.peers` cells have started: two cells that both return
    ran at the same time."""
    mark(spec, "started")
    wait_for(lambda: len(list(Path(spec.work).glob("started-*"))) >= spec.peers, f"{spec.peers} cells to start")
    return result(spec)


def kill_seed1(spec: Spec, on_step: Step) -> dict:
    if spec.seed == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return result(spec)


def die_once(spec: Spec, on_step: Step) -> dict:
    marker = Path(spec.work) / f"attempted-{spec.seed}"
    if not marker.exists():
        marker.write_text("x")
        os.kill(os.getpid(), signal.SIGKILL)
    return result(spec)


def raise_seed0(spec: Spec, on_step: Step) -> dict:
    if spec.seed == 0:
        raise ValueError("bad cell on purpose")
    return result(spec)


def block(spec: Spec, on_step: Step) -> dict:
    """Seeds >= 100 mark their start (with their pid) and block until a `release` file appears; others return."""
    if spec.seed >= 100:
        mark(spec, "started")
        wait_for(lambda: (Path(spec.work) / "release").exists(), "the release file", timeout=600)
    return result(spec)


def blas_env(spec: Spec, on_step: Step) -> dict:
    """The BLAS thread variables the worker was started with."""
    return result(spec, omp=os.environ.get("OMP_NUM_THREADS"), openblas=os.environ.get("OPENBLAS_NUM_THREADS"))
