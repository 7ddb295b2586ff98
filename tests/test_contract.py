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


def test_check_with_set_model_decoder_runs_every_check_on_that_decoder(capsys, monkeypatch):
    """`python -m collapse_bench check vanilla --set model.decoder=cnn`: every model the checks build has the CNN
    decoder, every check passes, and the header names the setting."""
    from collapse_bench import decoders
    built = []
    monkeypatch.setattr("collapse_bench.model.make_decoder",
                        lambda cfg, *a, **k: built.append(cfg.decoder) or decoders.make_decoder(cfg, *a, **k))
    assert main(["check", "vanilla", "--set", "model.decoder=cnn"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("vanilla: (model.decoder=cnn)") and "every check passed" in out and "[fail]" not in out
    assert built and set(built) == {"cnn"}


@pytest.mark.parametrize("setting, message", [
    ("model.decoder=gru", "model.decoder must be one of lstm, cnn, transformer"),
    ("model.decoders=cnn", "--set model.decoders: unknown field"),
    ("vanilla.beta=1", "a method's parameters are checked at their defaults"),
    ("model.decoder", "SECTION.FIELD=VALUE"),
])
def test_check_refuses_a_bad_set_with_exit_2_before_training(setting, message, capsys, monkeypatch):
    monkeypatch.setattr("collapse_bench.contract.check_method", lambda *a, **k: pytest.fail("a check ran"))
    assert main(["check", "vanilla", "--set", setting]) == 2
    assert message in capsys.readouterr().err
