"""The method author's guide (docs/methods.md): its three worked examples pass `check` and run in a sweep."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from collapse_bench import registry
from collapse_bench.cell import CellSpec, run_record
from collapse_bench.contract import check_method

EXAMPLES = Path(__file__).resolve().parents[1] / "docs" / "examples"
NAMES = {"capacity_vae.py": "example-capacity", "variance_floor.py": "example-varfloor",
         "encoder_first.py": "example-encfirst"}


@pytest.fixture(params=sorted(NAMES))
def example(request):
    path = EXAMPLES / request.param
    spec = importlib.util.spec_from_file_location(f"guide_{path.stem}", path)
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
    yield NAMES[request.param]
    registry._METHODS.pop(NAMES[request.param], None)


def test_the_guide_shows_every_example_file():
    guide = (EXAMPLES.parent / "methods.md").read_text()
    assert set(NAMES) == {p.name for p in EXAMPLES.glob("*.py")}
    assert all(f"examples/{f}" in guide for f in NAMES)


def test_each_example_passes_check_and_trains_differently_from_vanilla(example):
    outcomes = check_method(example)
    assert not [o for o in outcomes if o.status == "fail"], outcomes
    over = {"train": {"epochs": 1}, "eval": {"probe_repeats": 1}}
    mine, vanilla = (run_record(CellSpec(m, "synthetic", "smoke", 0, overrides=over)) for m in (example, "vanilla"))
    assert mine["status"] == "ok" and mine["metrics"]["nll"] != vanilla["metrics"]["nll"]
