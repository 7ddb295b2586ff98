"""Benchmark modes. Under the project's default `--benchmark-disable` every benchmark runs once on reduced work
(`smoke`: a test that the code runs). `--benchmark-enable` times them (`full`). `--quick` (or the environment
variable COLLAPSE_BENCH_QUICK=1) is CI's timing run: fewer rounds and batches, same assertions, timing on."""
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))   # lets benchmarks import the shared `throughput` helpers

QUICK_ENV = "COLLAPSE_BENCH_QUICK"
_summary: list[str] = []


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--quick", action="store_true", default=False,
                     help=f"quick timing run of the benchmarks for CI (also {QUICK_ENV}=1); turns timing on")


def _quick(config: pytest.Config) -> bool:
    return bool(config.getoption("quick", default=False)) or os.environ.get(QUICK_ENV, "") not in ("", "0")


def pytest_configure(config: pytest.Config) -> None:
    # runs before pytest-benchmark's own (trylast) pytest_configure reads the option
    if _quick(config):
        config.option.benchmark_enable = True


def _mode(config: pytest.Config) -> str:
    if config.getoption("benchmark_disable", default=False) and not config.getoption("benchmark_enable", default=False):
        return "smoke"
    return "quick" if _quick(config) else "full"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A benchmark marked `timed` asserts only on timings: with timing off it would assert nothing, so it is skipped
    (with the reason) instead of reported as a passed test."""
    if _mode(config) != "smoke":
        return
    skip = pytest.mark.skip(reason="timed benchmark: runs with --quick or --benchmark-enable (timing is off here)")
    for item in items:
        if item.get_closest_marker("timed"):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def mode(request: pytest.FixtureRequest) -> str:
    """'smoke' (timing off), 'quick' or 'full'."""
    return _mode(request.config)


@pytest.fixture(scope="session")
def summary():
    """summary(line): one line per measured figure, printed at the end of the run."""
    return _summary.append


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    if _summary:
        mode = _mode(config)
        terminalreporter.section(f"benchmark figures, {mode} run: " + (
            "one round each, not asserted" if mode == "smoke" else "ratios measured side by side in this run"))
        for line in _summary:
            terminalreporter.write_line(line)
