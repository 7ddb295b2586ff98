"""The process executor (spawned workers, one cell each): parallel cells, start/step events, a killed worker,
retries, a raising cell, lazy inputs, Ctrl-C; and the serial executor's step events. The cells are the cheap
functions of `proc_cells` (no torch), so a worker starts in well under a second."""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
import types

import pytest
from proc_cells import Spec, die_once, kill_seed1, raise_seed0, sleepy, stepping, timed

from collapse_bench.executor import ProcessExecutor
from collapse_bench.store import ResultStore
from collapse_bench.sweep import SerialExecutor, run_sweep


def test_process_workers_run_cells_at_once_in_their_own_processes():
    got: list[dict] = []
    ProcessExecutor(jobs=2).map(timed, [Spec(0), Spec(1)], got.append)
    a, b = sorted(got, key=lambda r: r["seed"])
    assert a["pid"] != b["pid"] and os.getpid() not in (a["pid"], b["pid"])
    assert a["t0"] < b["t1"] and b["t0"] < a["t1"]                       # overlapping in time


def test_process_executor_reports_start_and_steps():
    events: list[tuple] = []
    ProcessExecutor(jobs=1).map(stepping, [Spec(0), Spec(1)], lambda r: events.append(("done", r["seed"])),
                                on_start=lambda s: events.append(("start", s.seed)),
                                on_step=lambda s, i, n: events.append(("step", s.seed, i, n)))
    for seed in (0, 1):
        mine = [e for e in events if e[1] == seed]
        assert mine[0] == ("start", seed) and ("step", seed, 3, 3) in mine and mine[-1] == ("done", seed)


def test_a_killed_worker_is_a_failed_cell_the_sweep_goes_on_and_a_rerun_resumes(tmp_path):
    specs = [Spec(s, str(tmp_path)) for s in range(4)]
    records = run_sweep(specs, tmp_path, ProcessExecutor(jobs=2), fn=kill_seed1)
    by = {r["seed"]: r for r in records}
    assert [by[s]["status"] for s in range(4)] == ["ok", "failed", "ok", "ok"]
    assert by[1]["error"]["type"] == "WorkerDied" and "SIGKILL" in by[1]["error"]["message"]
    ran: list[int] = []
    run_sweep(specs, tmp_path, SerialExecutor(), fn=lambda s: ran.append(s.seed) or {**by[0], "cell": s.cell})
    assert ran == [1]


def test_a_dead_worker_is_retried_and_a_raising_cell_is_recorded(tmp_path):
    got: list[dict] = []
    ProcessExecutor(jobs=2, retries=1).map(die_once, [Spec(0, str(tmp_path)), Spec(1, str(tmp_path))], got.append)
    assert sorted(r["status"] for r in got) == ["ok", "ok"]
    got.clear()
    ProcessExecutor(jobs=2).map(raise_seed0, [Spec(0), Spec(1), Spec(2)], got.append)
    by = {r["seed"]: r for r in got}
    assert by[0]["status"] == "failed" and by[0]["error"]["type"] == "ValueError"
    assert "bad cell on purpose" in by[0]["error"]["message"] and by[1]["status"] == by[2]["status"] == "ok"


def test_a_cell_the_worker_cannot_load_fails_alone(monkeypatch):
    ghost = types.ModuleType("cb_ghost_module")            # exists in the driver only, not on disk
    ghost.Ghost = type("Ghost", (Spec,), {"__module__": "cb_ghost_module"})
    monkeypatch.setitem(sys.modules, "cb_ghost_module", ghost)
    got: list[dict] = []
    ProcessExecutor(jobs=1).map(timed, [ghost.Ghost(0), Spec(1)], got.append)
    by = {r["seed"]: r for r in got}
    assert by[0]["status"] == "failed" and by[0]["error"]["type"] == "ModuleNotFoundError"
    assert "could not load the cell" in by[0]["error"]["message"] and by[1]["status"] == "ok"


def test_a_lazy_iterable_is_pulled_only_when_a_worker_is_free():
    pulled, done = [], []

    def specs():
        for s in range(5):
            pulled.append(s)
            assert len(pulled) - len(done) <= 2
            yield Spec(s)

    ProcessExecutor(jobs=2).map(timed, specs(), done.append)
    assert sorted(r["seed"] for r in done) == list(range(5))


def test_ctrl_c_stops_the_workers_and_keeps_finished_cells(tmp_path):
    specs = [Spec(0, str(tmp_path)), Spec(100, str(tmp_path)), Spec(101, str(tmp_path))]

    def on_result(record):
        threading.Timer(1.5, os.kill, (os.getpid(), signal.SIGINT)).start()

    t0 = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        run_sweep(specs, tmp_path, ProcessExecutor(jobs=2), fn=sleepy, on_result=on_result)
    assert time.perf_counter() - t0 < 60
    store = ResultStore(tmp_path)
    assert store.is_done(specs[0].cell) and store.load(specs[1].cell) is None
    pid = int((tmp_path / "pid-100").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)                                                   # the sleeper is gone, and reaped


def _ctrl_c_during_worker_start(monkeypatch, to_driver: bool) -> None:
    """Send SIGINT (a terminal's Ctrl-C) right after a worker process is started, while the driver is inside
    its start-up window; to the worker always, to the driver if asked."""
    import multiprocessing.context as mpc
    real_start = mpc.SpawnProcess.start

    def start_then_ctrl_c(self):
        real_start(self)
        os.kill(self.pid, signal.SIGINT)
        if to_driver:
            os.kill(os.getpid(), signal.SIGINT)
    monkeypatch.setattr(mpc.SpawnProcess, "start", start_then_ctrl_c)


def test_a_ctrl_c_while_a_worker_starts_reaches_the_driver(tmp_path, monkeypatch):
    """The driver used to ignore SIGINT around a worker's start and so lost a Ctrl-C that came then: the sweep
    ran on. Now SIGINT is held (blocked) meanwhile and delivered right after."""
    _ctrl_c_during_worker_start(monkeypatch, to_driver=True)
    t0 = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        ProcessExecutor(jobs=1).map(sleepy, [Spec(0, str(tmp_path))], lambda r: None)   # a lost Ctrl-C: it just ends
    assert time.perf_counter() - t0 < 30


def test_a_ctrl_c_while_a_worker_starts_does_not_kill_the_worker(tmp_path, monkeypatch):
    _ctrl_c_during_worker_start(monkeypatch, to_driver=False)
    got: list[dict] = []
    ProcessExecutor(jobs=1).map(sleepy, [Spec(0, str(tmp_path))], got.append)
    assert [r["status"] for r in got] == ["ok"]


def test_serial_executor_passes_steps_to_cells_that_take_them():
    events: list[tuple] = []
    SerialExecutor().map(stepping, [Spec(0)], lambda r: events.append(("done",)),
                         on_start=lambda s: events.append(("start",)), on_step=lambda s, i, n: events.append((i, n)))
    assert events == [("start",), (1, 3), (2, 3), (3, 3), ("done",)]
    SerialExecutor().map(lambda s: {"cell": s.cell}, [Spec(0)], events.append, on_step=lambda *a: None)   # no on_step
