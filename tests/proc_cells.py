"""Cheap cell functions for the process-executor tests. Workers import this module by reference, so it must not
import torch (nor collapse_bench.sweep): a worker then starts in well under a second."""
from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable


@dataclass
class Spec:
    seed: int
    work: str = "."                    # a folder for markers and pid files
    method: str = "vanilla"
    dataset: str = "synthetic"
    size: str = "smoke"
    params: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def cell(self) -> str:
        return f"{self.method}__{self.dataset}__{self.size}__seed{self.seed}"


def record(spec: Spec, **extra: Any) -> dict:
    return {"cell": spec.cell, "method": spec.method, "label": spec.method, "dataset": spec.dataset,
            "size": spec.size, "seed": spec.seed, "status": "ok", "error": None, "metrics": {"nll": float(spec.seed)},
            "pid": os.getpid(), **extra}


def timed(spec: Spec) -> dict:
    t0 = time.time()
    time.sleep(1.0)
    return record(spec, t0=t0, t1=time.time())


def stepping(spec: Spec, on_step: Callable[[int, int], None] | None = None) -> dict:
    for i in range(1, 4):
        time.sleep(0.05)
        if on_step:
            on_step(i, 3)
    return record(spec)


def kill_seed1(spec: Spec) -> dict:
    if spec.seed == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return record(spec)


def die_once(spec: Spec) -> dict:
    marker = Path(spec.work) / f"attempted-{spec.seed}"
    if not marker.exists():
        marker.write_text("x")
        os.kill(os.getpid(), signal.SIGKILL)
    return record(spec)


def raise_seed0(spec: Spec) -> dict:
    if spec.seed == 0:
        raise ValueError("bad cell on purpose")
    return record(spec)


def sleepy(spec: Spec) -> dict:
    """Seeds >= 100 sleep for ten minutes (to be interrupted); each writes its pid first."""
    (Path(spec.work) / f"pid-{spec.seed}").write_text(str(os.getpid()))
    time.sleep(600 if spec.seed >= 100 else 0.2)
    return record(spec)
