"""Training and IW-NLL throughput as a fraction of the matmul limit measured in the same run, and the
drift of bf16 autocast against fp32. Timed with `pytest benchmarks --benchmark-enable`; under the default
`--benchmark-disable` every benchmark runs once, on reduced work, as a smoke test."""
import json

import pytest
import torch

from collapse_bench.config import size_config
from collapse_bench.data import load_corpus
from collapse_bench.evaluate import score
from collapse_bench.methods.vanilla import Vanilla
from collapse_bench.train import Trainer
from throughput import PAPER, SHORT_YELP, flops, gemm_seconds, iw_fn, iw_shapes, train_shapes, train_step_fn

THREADS = 2
FLOOR = 0.65   # regression guard only; the target is 0.9 (met at 1 thread, not yet at 2: see the closing notes)


@pytest.fixture(autouse=True)
def threads():
    before = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("workload", [SHORT_YELP, PAPER], ids=lambda w: w.name)
def test_training_throughput(benchmark, workload):
    step = train_step_fn(workload)
    benchmark.pedantic(step, rounds=7 if benchmark.enabled else 1, warmup_rounds=2 if benchmark.enabled else 0)
    if benchmark.enabled:
        actual = benchmark.stats.stats.median
        limit = gemm_seconds(train_shapes(workload), backward=True, rounds=7)
        tokens = workload.batch * (workload.length + 1)
        info = {"tokens_per_s": tokens / actual, "limit_tokens_per_s": tokens / limit, "fraction_of_limit": limit / actual,
                "gflop_per_s": flops(train_shapes(workload), True) / actual / 1e9, "threads": THREADS}
        benchmark.extra_info.update(info)
        print(json.dumps({workload.name: info}))
        assert info["fraction_of_limit"] >= FLOOR


@pytest.mark.parametrize("workload", [SHORT_YELP, PAPER], ids=lambda w: w.name)
def test_iw_nll_throughput(benchmark, workload):
    samples = 500 if benchmark.enabled else 20
    fn = iw_fn(workload, samples)
    benchmark.pedantic(fn, rounds=3 if benchmark.enabled else 1, warmup_rounds=1 if benchmark.enabled else 0)
    if benchmark.enabled:
        actual = benchmark.stats.stats.median
        limit = gemm_seconds(iw_shapes(workload, samples), backward=False, rounds=3)
        info = {"seconds_per_sentence": actual, "sentences_per_s": 1 / actual, "limit_seconds_per_sentence": limit,
                "fraction_of_limit": limit / actual, "samples": samples, "threads": THREADS,
                "gflop_per_s": flops(iw_shapes(workload, samples), False) / actual / 1e9}
        benchmark.extra_info.update(info)
        print(json.dumps({workload.name: info}))
        assert info["fraction_of_limit"] >= FLOOR


def test_bf16_drift_against_fp32(benchmark):
    """Train once in fp32; score it in fp32 and in bf16 (same seed). Then train and score in bf16 throughout."""
    size = "default" if benchmark.enabled else "smoke"
    cfg = size_config(size, "synthetic")
    corpus = load_corpus("synthetic", limits=cfg.limits)

    def trained(precision: str):
        c = cfg.replace(train={"precision": precision})
        t = Trainer(Vanilla(), c, corpus, seed=0)
        t.fit()
        return t

    fp32 = trained("fp32")
    metrics = {}
    for name, model, prec in (("fp32", fp32.model, "fp32"), ("bf16_eval", fp32.model, "bf16")):
        torch.manual_seed(0)
        metrics[name] = score(Vanilla(), model, corpus, cfg.eval.__class__(**{**cfg.eval.__dict__, "precision": prec}),
                              "cpu", seed=0)
    bf16 = benchmark.pedantic(trained, args=("bf16",), rounds=1)
    torch.manual_seed(0)
    metrics["bf16_train_and_eval"] = score(Vanilla(), bf16.model, corpus, cfg.eval.__class__(
        **{**cfg.eval.__dict__, "precision": "bf16"}), "cpu", seed=0)
    keys = ("nll", "ppl", "elbo", "recon", "kl", "mi", "au")
    drift = {run: {k: metrics[run][k] - metrics["fp32"][k] for k in keys} for run in ("bf16_eval", "bf16_train_and_eval")}
    benchmark.extra_info.update({"size": size, "fp32": {k: metrics["fp32"][k] for k in keys}, "drift": drift})
    print(json.dumps({"size": size, "fp32": {k: metrics["fp32"][k] for k in keys}, "drift": drift}))
    # scoring the same model in bf16 must stay close: a broken autocast path shows up as a large NLL change
    assert abs(drift["bf16_eval"]["nll"]) < 0.02 * metrics["fp32"]["nll"]
