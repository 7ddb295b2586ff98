"""The step-time budget check fails a slow method (issue 10: the CI speed check seen failing once).

A throw-away method, registered only while this module runs, does vanilla's step plus a second decoder pass over
half the batch (weight 0 in the loss: extra forward and backward matmuls, the same update), ~1.5x vanilla's step.
It is measured as test_method_ratios measures the built-in methods (bracketed against vanilla, thread CPU time,
medians) on the `default` size's model (2000 words) and a random batch of 32 x 10 words, and judged by the same
`over_budget` with the 1.1x budget of BN-VAE and friends (TIGHT): it must fail, while vanilla itself and BN-VAE
must pass. Timed only in the timing runs (--quick, --benchmark-enable); timing off (the plain test command) the
check's logic is tested on fixed ratios instead."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from collapse_bench import registry
from collapse_bench.config import size_config
from collapse_bench.method import Loss, Method
from test_method_ratios import TIGHT, make_method
from throughput import Ratio, Workload, bracketed_ratio, over_budget, train_step_fn

NAME = "slowed-for-budget-test"
ROUNDS = 25
WORKLOAD = Workload("default", size_config("default", "short-yelp").model, 2000, 10)   # a smaller vocabulary: faster


class Slowed(Method):
    """Test-only: vanilla plus a second, weight-0 pass of the decoder over half the batch."""

    def loss(self, model, batch, kl_weight: float) -> Loss:
        out = super().loss(model, batch, kl_weight)
        half = max(1, batch.size // 2)
        extra = model.decoder.log_prob(batch.tokens[:half], torch.zeros(half, 1, model.cfg.nz)).mean()
        return dataclasses.replace(out, total=out.total + 0.0 * extra)


@pytest.fixture(scope="module")
def registered():
    registry.register(NAME)(Slowed)      # not at import: tests that list every method must not see it
    yield
    registry._METHODS.pop(NAME, None)


def _ratio(cpu: float) -> Ratio:
    return Ratio(cpu=cpu, wall=cpu + 0.2, cpu_se=0.01, rounds=25, subject_cpu=cpu * 0.01, reference_cpu=0.01)


def test_budget_check_fails_the_entries_over_or_without_a_budget():
    """over_budget on fixed ratios: above the budget fails, at or below it passes, an entry without a budget fails;
    each failure names the entry, its ratio and budget (or the fix)."""
    ratios = {"slowed": _ratio(1.5), "at-budget": _ratio(TIGHT), "vanilla-like": _ratio(1.02), "new": _ratio(1.0)}
    budgets = {"slowed": TIGHT, "at-budget": TIGHT, "vanilla-like": TIGHT}
    failures = over_budget(ratios, budgets)
    assert [f.split(":")[0] for f in failures] == ["slowed", "new"], failures
    assert "1.50x vanilla's CPU time (budget 1.1x; wall-clock 1.70x, 25 bracketed rounds, SE 0.010)" in failures[0]
    assert failures[1] == "new: no step-time budget; add one to BUDGET"
    assert over_budget({"slowed": _ratio(1.5)}, {"slowed": 1.6}) == []
    assert over_budget({}, budgets) == []


def test_budget_check_fails_a_slowed_method_and_passes_vanilla_like_ones(mode, registered, summary):
    if mode == "smoke":
        pytest.skip("timed: runs with --quick or --benchmark-enable (its logic is tested on fixed ratios above)")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        vanilla = train_step_fn(WORKLOAD, make_method("vanilla"))
        ratios = {}
        for name in (NAME, "vanilla", "bnvae"):
            step = train_step_fn(WORKLOAD, make_method(name))
            ratios[name] = bracketed_ratio(lambda i: step(), lambda i: vanilla(), ROUNDS)
    finally:
        torch.set_num_threads(before)
    budgets = dict.fromkeys(ratios, TIGHT)
    failures = over_budget(ratios, budgets)
    for name, r in ratios.items():
        summary(f"budget check: {name} {r.cpu:.3f}x vanilla (SE {r.cpu_se:.3f}), budget {budgets[name]}x -> "
                f"{'FAIL' if any(f.startswith(name + ':') for f in failures) else 'pass'}")
    print("\n".join(failures))
    assert [f.split(":")[0] for f in failures] == [NAME], failures
    assert ratios[NAME].cpu > 1.3
