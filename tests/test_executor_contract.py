"""The executor contract, one suite over serial / process / Ray: results and events per spec, cells side by
side, a killed worker failing only its cell, the shared retry policy, a raising cell, lazy inputs, Ctrl-C.
Cells are the cheap functions of `proc_cells` and coordinate through marker files, never sleeps."""
from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from proc_cells import Spec, block, die_once, echo, kill_seed1, meet, raise_seed0, stepping, wait_for

from collapse_bench.executor import CellError, CellFailed, ProcessExecutor, RayExecutor, SerialExecutor

HERE = Path(__file__).resolve().parent
KINDS = ["serial", "process", pytest.param("ray", marks=pytest.mark.ray)]


@pytest.fixture(scope="module")
def ray_up():
    """One embedded Ray (2 CPUs) for the module, its workers able to import `proc_cells`; skipped with the
    reason if Ray is missing or cannot start here."""
    ray = pytest.importorskip("ray")
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(HERE)] + ([old] if old else []))
    try:
        ray.init(num_cpus=2, include_dashboard=False, object_store_memory=128 * 2**20, log_to_driver=False,
                 logging_level="warning")
    except Exception as e:  # noqa: BLE001 - any start failure is a reason to skip, named
        pytest.skip(f"Ray cannot start here: {e}")
    yield
    ray.shutdown()
    os.environ.pop("PYTHONPATH", None) if old is None else os.environ.__setitem__("PYTHONPATH", old)


@pytest.fixture(params=KINDS)
def make(request):
    """A factory of the executor under test: `make(retries=0)`, two cells at a time where there is a choice."""
    if request.param == "ray":
        request.getfixturevalue("ray_up")
        return lambda retries=0: RayExecutor(retries=retries, verbose=False)
    if request.param == "process":
        return lambda retries=0: ProcessExecutor(jobs=2, retries=retries)
    return lambda retries=0: SerialExecutor(retries=retries)


class Log:
    """Every callback of one `map`, in order."""

    def __init__(self):
        self.events: list[tuple] = []
        self.results: dict[int, dict] = {}
        self.failures: dict[int, CellError] = {}

    def callbacks(self) -> dict:
        return dict(on_start=lambda s: self.events.append(("start", s.seed)),
                    on_step=lambda s, i, n: self.events.append(("step", s.seed, i, n)),
                    on_failure=self.failure)

    def result(self, spec: Spec, res: dict) -> None:
        self.events.append(("done", spec.seed))
        self.results[spec.seed] = res

    def failure(self, spec: Spec, error: CellError) -> None:
        self.events.append(("failed", spec.seed))
        self.failures[spec.seed] = error


def test_results_come_with_their_spec_and_start_before_done(make):
    log = Log()
    make().map(echo, [Spec(s) for s in range(3)], log.result, **log.callbacks())
    assert sorted(log.results) == [0, 1, 2] and all(log.results[s]["seed"] == s for s in range(3))
    for seed in range(3):
        mine = [e[0] for e in log.events if e[1] == seed]
        assert mine == ["start", "done"]
    assert log.failures == {}


def test_steps_reach_on_step_where_the_executor_carries_them(make):
    executor, log = make(), Log()
    executor.map(stepping, [Spec(0), Spec(1)], log.result, **log.callbacks())
    for seed in (0, 1):
        mine = [e for e in log.events if e[1] == seed]
        assert mine[0] == ("start", seed) and mine[-1] == ("done", seed)
        if not isinstance(executor, RayExecutor):          # Ray has no step events (documented)
            assert ("step", seed, 3, 3) in mine


def test_two_workers_run_cells_at_the_same_time_in_their_own_processes(make, tmp_path):
    executor = make()
    if isinstance(executor, SerialExecutor):
        pytest.skip("serial runs one cell at a time in this process")
    log = Log()
    executor.map(meet, [Spec(s, str(tmp_path), peers=2) for s in (0, 1)], log.result, **log.callbacks())
    assert log.failures == {}                       # each finished only after both had started
    pids = {log.results[s]["pid"] for s in (0, 1)}
    assert len(pids) == 2 and os.getpid() not in pids


def test_a_killed_worker_fails_only_its_cell_and_the_others_go_on(make):
    executor = make()
    if isinstance(executor, SerialExecutor):
        pytest.skip("a killed cell kills the serial executor's own process")
    log = Log()
    executor.map(kill_seed1, [Spec(s) for s in range(4)], log.result, **log.callbacks())
    assert sorted(log.results) == [0, 2, 3] and list(log.failures) == [1]
    error = log.failures[1]
    assert error.type == "WorkerDied" and "died" in error.message and error.attempts == 1
    if isinstance(executor, ProcessExecutor):
        assert "SIGKILL" in error.message


def test_a_dead_worker_is_retried_by_the_shared_policy(make, tmp_path):
    executor = make(retries=1)
    if isinstance(executor, SerialExecutor):
        pytest.skip("a killed cell kills the serial executor's own process")
    log = Log()
    executor.map(die_once, [Spec(s, str(tmp_path)) for s in (0, 1)], log.result, **log.callbacks())
    assert sorted(log.results) == [0, 1] and log.failures == {}
    assert [e for e in log.events if e[0] == "start"].count(("start", 0)) == 1      # a retry is not a new start


def test_a_raising_cell_is_reported_with_its_traceback_and_the_others_go_on(make):
    log = Log()
    make().map(raise_seed0, [Spec(s) for s in range(3)], log.result, **log.callbacks())
    assert sorted(log.results) == [1, 2] and list(log.failures) == [0]
    error = log.failures[0]
    assert (error.type, error.message, error.attempts) == ("ValueError", "bad cell on purpose", 1)
    assert "raise_seed0" in error.traceback


def test_without_on_failure_a_failed_cell_raises(make):
    with pytest.raises(CellFailed, match="bad cell on purpose"):
        make().map(raise_seed0, [Spec(0)], lambda spec, res: None)


def test_retries_apply_to_a_raising_cell_too(make):
    log = Log()
    make(retries=2).map(raise_seed0, [Spec(0)], log.result, **log.callbacks())
    assert log.failures[0].attempts == 3 and log.events.count(("start", 0)) == 1


def test_a_lazy_iterable_is_pulled_only_when_a_worker_is_free(make):
    executor, pulled, done = make(), [], []
    room = 1 if isinstance(executor, SerialExecutor) else 2

    def specs():
        for s in range(5):
            pulled.append(s)
            assert len(pulled) - len(done) <= room, "more cells in flight than workers"
            yield Spec(s)

    executor.map(echo, specs(), lambda spec, res: done.append(spec.seed))
    assert sorted(done) == list(range(5))


@pytest.mark.parametrize("stop", [KeyboardInterrupt, RuntimeError], ids=["ctrl_c", "callback_raises"])
def test_ctrl_c_or_a_raising_callback_stops_the_running_cells_and_keeps_the_finished_ones(make, tmp_path, stop):
    executor = make()
    serial = isinstance(executor, SerialExecutor)
    specs = [Spec(0, str(tmp_path)), Spec(100, str(tmp_path)), Spec(101, str(tmp_path))]
    done: list[int] = []

    def on_result(spec: Spec, res: dict) -> None:
        done.append(spec.seed)
        if not serial:          # a blocking cell holds a worker (serial: none has started yet)
            wait_for(lambda: any(tmp_path.glob("started-*")), "a blocking cell to start")
        if stop is KeyboardInterrupt:
            os.kill(os.getpid(), signal.SIGINT)        # as a terminal's Ctrl-C reaches the driver
            wait_for(lambda: False, "the SIGINT to arrive")   # KeyboardInterrupt comes out of this wait
        raise RuntimeError("the driver stops here")

    with pytest.raises(stop):
        executor.map(block, specs, on_result)
    assert done == [0]
    assert serial or any(tmp_path.glob("started-*"))
    for marker in tmp_path.glob("started-*"):           # the blocked workers are gone
        pid = int(marker.read_text())
        wait_for(lambda: not _alive(pid), f"worker {pid} to stop")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        state = Path(f"/proc/{pid}/stat").read_text().split(") ")[1]
    except (ProcessLookupError, FileNotFoundError):
        return False
    return not state.startswith("Z")                    # a zombie has stopped too
