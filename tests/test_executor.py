"""Executors beyond the contract suite (tests/test_executor_contract.py): the factory and its errors, an
unreachable Ray address, Ray runs of real cells matching serial ones, joining a `ray start --head` cluster,
and `run --executor ray` twice through the CLI.

The Ray tests share one module-scoped Ray (2 CPUs)."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from collapse_bench.executor import (ExecutorError, ProcessExecutor, RayExecutor, SerialExecutor, check_reachable,
                                     make_executor)
from collapse_bench.store import ResultStore
from collapse_bench.cell import CellSpec, run_cell, run_record
from collapse_bench.store import build_record

FAST = {"train": {"epochs": 1}}
NO_PROBE = {"train": {"epochs": 1}, "eval": {"probe_labels": ()}}   # the probe's fits dominate a smoke cell


def fast_spec(seed: int, method: str = "vanilla", overrides: dict = NO_PROBE) -> CellSpec:
    return CellSpec(method, "synthetic", "smoke", seed, overrides=overrides)


# --- no Ray ------------------------------------------------------------------------------------------------
def test_make_executor_kinds_and_errors():
    assert isinstance(make_executor("serial"), SerialExecutor)
    proc = make_executor("process", jobs=3, retries=2, threads=2)
    assert isinstance(proc, ProcessExecutor) and (proc.jobs, proc.retries, proc.threads) == (3, 2, 2)
    ex = make_executor("ray", num_cpus=2, retries=3)
    assert isinstance(ex, RayExecutor) and ex.retries == 3 and ex.num_cpus == 2
    with pytest.raises(ExecutorError, match="serial, process, ray"):
        make_executor("dask")
    with pytest.raises(ExecutorError, match="retries"):
        make_executor("ray", retries=-1)
    with pytest.raises(ExecutorError, match="needs --executor ray"):
        make_executor("serial", address="auto")


def test_unreachable_address_fails_fast():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]      # closed again: nothing listens there
    with pytest.raises(ExecutorError, match="no Ray cluster answers"):   # refused at once, not waited on
        check_reachable(f"127.0.0.1:{port}", timeout=2)
    with pytest.raises(ExecutorError, match="HOST:PORT"):
        check_reachable("nonsense")


# --- Ray ---------------------------------------------------------------------------------------------------
@pytest.mark.ray
def test_ray_gives_the_same_metrics_as_serial(ray_session):
    specs = [fast_spec(0, overrides=FAST), fast_spec(1)]    # one with the probe (slow), one without
    serial = {s.cell: run_record(s) for s in specs}
    got: list[dict] = []
    ex = RayExecutor(num_cpus=2)
    ex.map(run_cell, specs, lambda spec, result: got.append(build_record(spec, result)))
    assert ray_session.is_initialized()          # a Ray it did not start is left running
    assert sorted(r["cell"] for r in got) == sorted(serial)
    for r in got:
        assert r["status"] == "ok", r["error"]
        assert r["metrics"] == serial[r["cell"]]["metrics"]                # bit-identical
        assert [c["valid_loss"] for c in r["curves"]] == [c["valid_loss"] for c in serial[r["cell"]]["curves"]]
        assert r["timing"]["threads"] == 1
    by_cell = {r["cell"]: r for r in got}      # completion order is not submission order
    assert by_cell[specs[0].cell]["metrics"]["probe"]["100"]["n"] == 2


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

    def cell(seed, on_step):
        return {"seed": seed, "status": "ok", "pid": os.getpid()}

    address, out = sys.argv[1], {}
    for how in ("address", "RAY_ADDRESS"):
        if how == "RAY_ADDRESS":
            os.environ["RAY_ADDRESS"] = address
        ex = make_executor("ray", address=address if how == "address" else None)
        got = []
        ex.map(cell, [0, 1], lambda seed, result: got.append(result))
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
