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
