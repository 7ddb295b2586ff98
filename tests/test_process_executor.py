"""What only the process executor has: the BLAS thread variables of its workers (replacements included),
Ctrl-C during a worker's start, a driver killed outright, a cell its worker cannot load, a cell function it cannot
send. The contract
itself (events, a killed worker, retries, Ctrl-C, lazy inputs) is in test_executor_contract.py."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import types
from pathlib import Path

import pytest
from proc_cells import Spec, blas_env, block, echo, kill_seed1, wait_for

from collapse_bench.executor import CellError, ExecutorError, ProcessExecutor


def _collect(executor: ProcessExecutor, fn, specs) -> tuple[dict, dict]:
    results: dict[int, dict] = {}
    failures: dict[int, CellError] = {}
    executor.map(fn, specs, lambda s, r: results.__setitem__(s.seed, r),
                 on_failure=lambda s, e: failures.__setitem__(s.seed, e))
    return results, failures


def test_workers_get_the_blas_thread_variables_and_the_driver_keeps_its_own(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    results, _ = _collect(ProcessExecutor(jobs=1, threads=3), blas_env, [Spec(0)])
    assert (results[0]["omp"], results[0]["openblas"]) == ("3", "3")
    assert "OMP_NUM_THREADS" not in os.environ


def test_a_replacement_worker_gets_the_variables_too(monkeypatch, tmp_path):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    # seed 1 kills the only worker; seed 4 runs in the replacement pebble starts from its manager thread
    results, failures = _collect(ProcessExecutor(jobs=1, threads=2), _kill_then_env, [Spec(1), Spec(4)])
    assert list(failures) == [1] and (results[4]["omp"], results[4]["openblas"]) == ("2", "2")


def _kill_then_env(spec: Spec, on_step) -> dict:
    return kill_seed1(spec, on_step) if spec.seed == 1 else blas_env(spec, on_step)


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
    _ctrl_c_during_worker_start(monkeypatch, to_driver=True)
    with pytest.raises(KeyboardInterrupt):       # a lost Ctrl-C would leave the blocking cell running for ever
        ProcessExecutor(jobs=1).map(block, [Spec(100, str(tmp_path))], lambda s, r: None)


def test_a_ctrl_c_while_a_worker_starts_does_not_kill_the_worker(monkeypatch):
    _ctrl_c_during_worker_start(monkeypatch, to_driver=False)
    results, failures = _collect(ProcessExecutor(jobs=1), echo, [Spec(0)])
    assert list(results) == [0] and failures == {}


KILLED_DRIVER = """
import sys
from proc_cells import Spec, block
from collapse_bench.executor import ProcessExecutor
ProcessExecutor(jobs=1).map(block, [Spec(100, sys.argv[1])], lambda s, r: None)
"""


def test_the_workers_of_a_driver_killed_outright_exit_too(tmp_path):
    here = Path(__file__).resolve().parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(here), str(here.parent)])}
    driver = subprocess.Popen([sys.executable, "-c", KILLED_DRIVER, str(tmp_path)], env=env)
    try:
        wait_for(lambda: (tmp_path / "started-100").exists() or driver.poll() is not None, "the cell to start")
        assert driver.poll() is None, "the driver ended before its worker started the cell"
        worker = int((tmp_path / "started-100").read_text())
    finally:
        driver.kill()                      # SIGKILL: no Ctrl-C handling, no pool shutdown
        driver.wait()
    wait_for(lambda: not _alive(worker), f"worker {worker} to exit with its driver", timeout=30)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return not Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except (ProcessLookupError, FileNotFoundError):
        return False


def test_a_cell_the_worker_cannot_load_fails_alone(monkeypatch):
    ghost = types.ModuleType("cb_ghost_module")            # exists in the driver only, not on disk
    ghost.Ghost = type("Ghost", (Spec,), {"__module__": "cb_ghost_module"})
    monkeypatch.setitem(sys.modules, "cb_ghost_module", ghost)
    results, failures = _collect(ProcessExecutor(jobs=1), echo, [ghost.Ghost(0), Spec(1)])
    assert list(results) == [1] and failures[0].type == "ModuleNotFoundError"
    assert "cb_ghost_module" in failures[0].message


def test_a_cell_function_that_cannot_be_sent_is_a_clear_error():
    with pytest.raises(ExecutorError, match="define them at module level"):
        ProcessExecutor(jobs=1).map(lambda spec, on_step: None, [Spec(0)], lambda s, r: None)
