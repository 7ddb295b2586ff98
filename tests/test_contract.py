"""`python -m collapse_bench check METHOD`: the contract and a method's own invariant, checked before a sweep."""
from __future__ import annotations

import time

import pytest
import torch

from collapse_bench import registry
from collapse_bench.cli import main
from collapse_bench.contract import check_method
from collapse_bench.method import Method


class Sloppy(Method):
    """x"""                                                   # too short to tell a user what it does

    def kl_penalty(self, post):
        noise = torch.rand(1, generator=torch.Generator().manual_seed(time.perf_counter_ns()))
        return (1 + 0.1 * noise) * post.kl()                 # randomness from outside the seeded generators

    def invariant(self, run) -> None:
        assert run.metrics["kl"] > 1e6, "KL must exceed a million nats"


@pytest.fixture
def sloppy():
    registry.register("sloppy-demo")(Sloppy)
    yield "sloppy-demo"
    registry._METHODS.pop("sloppy-demo", None)


def test_a_well_formed_method_passes_every_check():
    outcomes = {o.check: o for o in check_method("bnvae")}
    assert [o.check for o in outcomes.values()] == ["registered", "params", "search space", "sizes", "trains",
                                                   "deterministic", "checkpoint", "invariant"]
    assert all(o.status == "pass" for o in outcomes.values()), outcomes


def test_each_defect_fails_its_own_check_and_says_what_to_fix(sloppy):
    outcomes = {o.check: o for o in check_method(sloppy)}
    failed = {c for c, o in outcomes.items() if o.status == "fail"}
    assert failed == {"registered", "deterministic", "invariant"}, outcomes
    assert "one-line docstring" in outcomes["registered"].detail
    assert "unseeded source" in outcomes["deterministic"].detail
    assert "KL must exceed a million nats" in outcomes["invariant"].detail
    assert outcomes["search space"].status == "skip" and outcomes["trains"].status == "pass"


def test_the_command_exits_1_on_a_failed_check_and_2_on_an_unknown_method(sloppy, capsys):
    assert main(["check", sloppy]) == 1
    out = capsys.readouterr().out
    assert "[fail] invariant: AssertionError: KL must exceed a million nats" in out and "3 checks failed" in out
    assert main(["check", "bnvea"]) == 2
    assert "Did you mean" in capsys.readouterr().err
