"""Executors: the serial/ray factory, Ray runs matching serial ones, a killed worker, retries, Ctrl-C, lazy
inputs, joining a `ray start --head` cluster, and `run --executor ray` twice.

The Ray tests share one module-scoped Ray (2 CPUs). Cell functions defined here are pickled by reference,
so the fixture puts this folder on the workers' PYTHONPATH (workers inherit the driver's environment)."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest

from collapse_bench.executor import ExecutorError, RayExecutor, _check_reachable, failed_record, make_executor
from collapse_bench.store import ResultStore
from collapse_bench.sweep import CellSpec, SerialExecutor, run_cell, run_sweep

HERE = Path(__file__).resolve().parent
FAST = {"train": {"epochs": 1}}
NO_PROBE = {"train": {"epochs": 1}, "eval": {"probe_labels": ()}}   # the probe's fits dominate a smoke cell


def fast_spec(seed: int, method: str = "vanilla", overrides: dict = NO_PROBE) -> CellSpec:
    return CellSpec(method, "synthetic", "smoke", seed, overrides=overrides)


def fake_record(spec: CellSpec, **extra) -> dict:
    """A cheap stand-in for run_cell's record where the test is about scheduling, not training."""
    return {"cell": spec.cell, "method": spec.method, "seed": spec.seed, "status": "ok", "error": None,
            "metrics": {"nll": float(spec.seed)}, "pid": os.getpid(), **extra}


# --- cell functions run inside Ray workers (module level: imported by reference there) ---------------------
def kill_seed1_mid_training(spec: CellSpec) -> dict:
    def on_step(step: int, total: int) -> None:
        if spec.seed == 1 and step == 5:
            os.kill(os.getpid(), signal.SIGKILL)
    return run_cell(spec, on_step=on_step)


def die_once_then_succeed(spec: CellSpec) -> dict:
    marker = Path(spec.data_dir or ".") / f"attempted-{spec.seed}"
    if not marker.exists():
        marker.write_text("x")
        os.kill(os.getpid(), signal.SIGKILL)
    return fake_record(spec)


def raise_for_seed0(spec: CellSpec) -> dict:
    if spec.seed == 0:
        raise ValueError("bad cell on purpose")
    return fake_record(spec)


SLEEPER_SECONDS = 600     # seeds >= 100; a wait shorter than half of it shows the sleepers did not run out


def sleepy(spec: CellSpec) -> dict:
    time.sleep(0.3 if spec.seed < 100 else SLEEPER_SECONDS)
    return fake_record(spec, t=time.time())


# --- no Ray ------------------------------------------------------------------------------------------------
def test_make_executor_kinds_and_errors():
    assert isinstance(make_executor("serial"), SerialExecutor)
    ex = make_executor("ray", num_cpus=2, retries=3)
    assert isinstance(ex, RayExecutor) and ex.retries == 3 and ex.num_cpus == 2
    with pytest.raises(ExecutorError, match="serial, process, ray"):
        make_executor("dask")
    with pytest.raises(ExecutorError, match="retries"):
        make_executor("ray", retries=-1)
    with pytest.raises(ExecutorError, match="needs --executor ray"):
        make_executor("serial", address="auto")


def test_failed_record_has_run_cells_schema():
    spec = CellSpec("vanilla", "no-such-dataset", "smoke", 3)
    from_run_cell = run_cell(spec)            # fails fast: unknown dataset
    assert from_run_cell["status"] == "failed"
    rec = failed_record(spec, "WorkerCrashedError", "the worker died", "tb", attempts=2)
    assert set(rec) == set(from_run_cell)
    assert set(from_run_cell["error"]) <= set(rec["error"])
    assert (rec["cell"], rec["status"], rec["metrics"], rec["seed"]) == (spec.cell, "failed", {}, 3)
    assert rec["error"]["type"] == "WorkerCrashedError" and rec["error"]["attempts"] == 2


def test_unreachable_address_fails_fast():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]      # closed again: nothing listens there
    t0 = time.perf_counter()
    with pytest.raises(ExecutorError, match="no Ray cluster answers"):
        _check_reachable(f"127.0.0.1:{port}", timeout=2)
    assert time.perf_counter() - t0 < 5
    with pytest.raises(ExecutorError, match="HOST:PORT"):
        _check_reachable("nonsense")


# --- Ray ---------------------------------------------------------------------------------------------------
@pytest.mark.ray
def test_ray_gives_the_same_metrics_as_serial(ray_session):
    specs = [fast_spec(0, overrides=FAST), fast_spec(1)]    # one with the probe (slow), one without
    serial = {r["cell"]: r for r in (run_cell(s) for s in specs)}
    got: list[dict] = []
    ex = RayExecutor(num_cpus=2)
    ex.map(run_cell, specs, got.append)
    assert ray_session.is_initialized()          # a Ray it did not start is left running
    assert sorted(r["cell"] for r in got) == sorted(serial)
    for r in got:
        assert r["status"] == "ok", r["error"]
        assert r["metrics"] == serial[r["cell"]]["metrics"]                # bit-identical
        assert [c["valid_loss"] for c in r["curves"]] == [c["valid_loss"] for c in serial[r["cell"]]["curves"]]
        assert r["timing"]["threads"] == 1
    by_cell = {r["cell"]: r for r in got}      # completion order is not submission order
    assert by_cell[specs[0].cell]["metrics"]["probe"]["100"]["n"] == 2


@pytest.mark.ray
def test_killed_worker_leaves_a_failed_record_and_rerun_runs_only_it(ray_session, tmp_path):
    specs = [fast_spec(s) for s in (0, 1, 2)]
    seen: list[dict] = []
    run_sweep(specs, tmp_path, RayExecutor(), fn=kill_seed1_mid_training, on_result=seen.append)
    store = ResultStore(tmp_path)
    recs = {s.seed: store.load(s.cell) for s in specs}
    assert len(seen) == 3
    assert recs[0]["status"] == recs[2]["status"] == "ok"
    dead = recs[1]
    assert dead["status"] == "failed" and dead["metrics"] == {}
    assert dead["error"]["type"] == "WorkerCrashedError"
    assert "died" in dead["error"]["message"] and dead["error"]["attempts"] == 1
    assert dead["label"] == "vanilla" and dead["provenance"]["started"]
    mtimes = {s.seed: store.path(s.cell).stat().st_mtime_ns for s in specs}

    again: list[dict] = []
    run_sweep(specs, tmp_path, RayExecutor(), fn=run_cell, on_result=again.append)
    assert [r["cell"] for r in again] == [specs[1].cell]                   # only the failed one
    assert store.load(specs[1].cell)["status"] == "ok"
    assert all(store.path(specs[s].cell).stat().st_mtime_ns == mtimes[s] for s in (0, 2))

    third: list[dict] = []
    run_sweep(specs, tmp_path, RayExecutor(), fn=run_cell, on_result=third.append)
    assert third == []


@pytest.mark.ray
def test_a_dead_worker_is_retried(ray_session, tmp_path):
    specs = [CellSpec("vanilla", "synthetic", "smoke", s, data_dir=str(tmp_path)) for s in (0, 1)]
    got: list[dict] = []
    RayExecutor(retries=1, verbose=False).map(die_once_then_succeed, specs, got.append)
    assert sorted(r["seed"] for r in got) == [0, 1] and all(r["status"] == "ok" for r in got)
    got = []
    for p in tmp_path.glob("attempted-*"):
        p.unlink()
    RayExecutor(retries=0, verbose=False).map(die_once_then_succeed, specs, got.append)
    assert all(r["status"] == "failed" for r in got)


@pytest.mark.ray
def test_an_exception_in_the_task_is_a_failed_record_and_the_others_go_on(ray_session):
    got: list[dict] = []
    RayExecutor().map(raise_for_seed0, [fast_spec(0), fast_spec(1)], got.append)
    by_seed = {r["seed"]: r for r in got}
    assert by_seed[1]["status"] == "ok"
    err = by_seed[0]["error"]
    assert by_seed[0]["status"] == "failed" and err["type"] == "ValueError"
    assert err["message"] == "bad cell on purpose" and "raise_for_seed0" in err["traceback"]


@pytest.mark.ray
def test_a_lazy_iterable_is_pulled_only_when_a_slot_is_free(ray_session):
    pulled, done = [], []

    def specs():
        for s in range(5):
            pulled.append(s)
            assert len(pulled) - len(done) <= 2, "more runs in flight than CPU slots"
            yield fast_spec(s)

    RayExecutor().map(sleepy, specs(), done.append)
    assert sorted(r["seed"] for r in done) == list(range(5))


@pytest.mark.ray
def test_ctrl_c_cancels_outstanding_runs_and_keeps_finished_ones(ray_session, tmp_path):
    specs = [fast_spec(0), fast_spec(100), fast_spec(101)]    # seed >= 100 sleeps for 10 minutes

    def on_result(rec):
        threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()

    t0 = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        run_sweep(specs, tmp_path, RayExecutor(), fn=sleepy, on_result=on_result)
    assert time.perf_counter() - t0 < SLEEPER_SECONDS / 2     # not waited out (86-93 s seen on a loaded machine)
    store = ResultStore(tmp_path)
    assert store.is_done(specs[0].cell)
    assert store.load(specs[1].cell) is None and store.load(specs[2].cell) is None
    # The sleepers were cancelled: both CPUs are free again for new work.
    got: list[dict] = []
    t0 = time.perf_counter()
    RayExecutor().map(sleepy, [fast_spec(1), fast_spec(2)], got.append)
    assert len(got) == 2 and time.perf_counter() - t0 < SLEEPER_SECONDS / 2


# --- against a separate cluster / through the CLI (subprocesses, each with a timeout) ------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ray_head():
    """`ray start --head --block` on loopback with its own temp dir; stopped by signalling that process (which
    stops what it started) rather than `ray stop`, which would kill every Ray on the machine."""
    ray_bin = Path(sys.executable).with_name("ray")
    if not ray_bin.exists():
        pytest.skip("no `ray` command next to this Python")
    port = _free_port()
    temp = tempfile.mkdtemp(prefix="cbray", dir="/tmp")      # short: Ray's socket paths must fit 107 bytes
    log = open(Path(temp) / "head.log", "w")
    head = subprocess.Popen([str(ray_bin), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
                             f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
                             f"--temp-dir={temp}", "--object-store-memory=100000000"],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if head.poll() is not None or time.time() > deadline:
                    pytest.fail(f"ray start --head did not come up: {Path(temp, 'head.log').read_text()[-2000:]}")
                time.sleep(0.3)
        yield f"127.0.0.1:{port}"
    finally:
        head.send_signal(signal.SIGTERM)
        try:
            head.wait(timeout=45)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(head.pid, signal.SIGKILL)     # the session we created for it, if anything is left
        except ProcessLookupError:
            pass
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


JOIN_SCRIPT = textwrap.dedent("""
    import json, os, sys
    import ray
    from collapse_bench.executor import make_executor
    from collapse_bench.sweep import CellSpec

    def cell(spec):
        return {"cell": spec.cell, "seed": spec.seed, "status": "ok", "pid": os.getpid()}

    address, out = sys.argv[1], {}
    for how in ("address", "RAY_ADDRESS"):
        if how == "RAY_ADDRESS":
            os.environ["RAY_ADDRESS"] = address
        ex = make_executor("ray", address=address if how == "address" else None)
        got = []
        ex.map(cell, [CellSpec("vanilla", "synthetic", "smoke", s) for s in (0, 1)], got.append)
        out[how] = {"statuses": [r["status"] for r in got], "initialized_after": ray.is_initialized()}
    print("RESULT " + json.dumps(out))
""")


@pytest.mark.ray
def test_joins_a_cluster_started_with_ray_start_and_leaves_it_running(ray_head, tmp_path):
    script = tmp_path / "join.py"
    script.write_text(JOIN_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
    proc = subprocess.run([sys.executable, str(script), ray_head], capture_output=True, text=True, timeout=180,
                          env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    import json
    out = json.loads(next(l for l in proc.stdout.splitlines() if l.startswith("RESULT "))[7:])
    for how in ("address", "RAY_ADDRESS"):
        assert out[how]["statuses"] == ["ok", "ok"]
        assert out[how]["initialized_after"] is False           # disconnected after map
    assert "joined 127.0.0.1" in proc.stderr
    # the cluster is still up: we joined it, we did not own it
    host, port = ray_head.split(":")
    socket.create_connection((host, int(port)), timeout=5).close()


@pytest.mark.ray
def test_cli_run_with_ray_writes_results_and_a_rerun_runs_nothing(tmp_path):
    cmd = [sys.executable, "-m", "collapse_bench", "run", "--methods", "vanilla,ae", "--size", "smoke",
           "--seeds", "0", "--executor", "ray", "--num-cpus", "2", "--set", "train.epochs=1", "--no-report",
           "--out", str(tmp_path)]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    assert first.stderr.count("[ok]") == 2 and "ray: started (num_cpus=2)" in first.stderr
    recs = ResultStore(tmp_path).records()
    assert len(recs) == 2 and all(r["status"] == "ok" for r in recs)
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "[ok]" not in second.stderr and "ray: started" not in second.stderr   # nothing ran, Ray not even started
