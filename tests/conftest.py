import os
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def pytest_configure(config: pytest.Config) -> None:
    """Generated corpora are cached in a folder of this test session (worker processes inherit it), not in ~/.cache."""
    if "COLLAPSE_BENCH_CACHE" not in os.environ:
        import tempfile
        os.environ["COLLAPSE_BENCH_CACHE"] = tempfile.mkdtemp(prefix="collapse_bench_cache_")


@pytest.fixture(scope="module")
def ray_session():
    """One Ray per test module; workers can import the test modules (test-only methods register there)."""
    ray = pytest.importorskip("ray")
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(HERE), str(HERE.parent)] + ([old] if old else []))
    owned = not ray.is_initialized()
    if owned:
        ray.init(num_cpus=2, include_dashboard=False, object_store_memory=128 * 2**20, log_to_driver=False,
                 logging_level="warning")
    try:
        yield ray
    finally:
        if owned:
            ray.shutdown()
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


@pytest.fixture
def unreadable_yelp(tmp_path) -> str:
    """A data folder whose yelp files exist but are empty: the corpus check before a sweep passes, and the cell
    itself fails reading them (a failure inside a cell, to be recorded)."""
    from collapse_bench.data.catalog import FILES
    for rel in FILES["yelp"]:
        (tmp_path / "data" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "data" / rel).write_text("")
    return str(tmp_path / "data")
