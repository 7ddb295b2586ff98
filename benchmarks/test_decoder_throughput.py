"""Each decoder's training and IW-NLL throughput on real short-Yelp batches, as a fraction of the matmul limit of
its own shapes (throughput.decoder_shapes), and its training step time over the LSTM's on the same batches.

The three decoders are at the paper's short-Yelp sizes (emb 128, dec_hidden 512, nz 32), the CNN and the
Transformer as wide as makes their core as large as the LSTM's (decoders.decoder_width: CNN 360 channels, MCNN
dilations; Transformer width 224, 2 layers, 4 heads). Vanilla steps, one torch thread, thread CPU time, as
test_throughput.py.

Floor (issue 21): each decoder's training and IW-NLL throughput at >= 0.8 of its matmul limit in fp32, asserted
in the timed modes (--quick, --benchmark-enable). The limit is each decoder's own products timed side by side in
the same run, never an absolute time; it leaves out the elementwise work (ReLU, the causal padding, LayerNorm,
GELU, the attention softmax), which is what keeps the CNN and the Transformer below the LSTM. Measured on the
loaded 2-core development machine, 1 thread, thread CPU time (below FLOOR): 0.85-1.02; the CNN's IW-NLL is the
closest to the floor (0.85-0.88; its ReLUs and causal padding are not in its limit), so the floor leaves ~6% for
other CPUs and load, and a lost batching or chunking, which costs far more, fails it.
The step over the LSTM's is information (no budget)."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from collapse_bench.config import DECODERS
from throughput import SHORT_YELP, against_limit, bracketed_ratio, iw_work, training_work

BATCHES = {"smoke": 1, "quick": 20, "full": 80}
SENTENCES = {"smoke": 1, "quick": 12, "full": 32}
SAMPLES = {"smoke": 10, "quick": 100, "full": 500}
FLOOR = 0.8
# Measured fraction_cpu, quick | full (one run each, every decoder side by side with its limit; the 2-core development
# machine under other load, 1 thread; quick: 20 batches, 12 sentences x 100 samples; full: 80 batches, 32 x 500):
#   training  lstm 0.98 | 1.02   cnn 0.90 | 0.92   transformer 0.93 | 0.96
#   IW-NLL    lstm 0.94 | 0.92   cnn 0.88 | 0.85   transformer 0.88 | 0.90
# Since the CNN and the Transformer train with Adam (train.dec_optimizer=auto; its update is elementwise work outside
# the limit), quick: training cnn 0.83 with PyTorch's per-tensor Adam, 0.90 with the fused Adam the Trainer now
# builds; transformer 0.89 -> 0.95; IW-NLL unchanged (0.87, 0.89).


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _model(decoder: str):
    return dataclasses.replace(SHORT_YELP.cfg, decoder=decoder)


def _report(summary, name: str, info: dict) -> None:
    info = {k: round(v, 4) if isinstance(v, float) else v for k, v in info.items()}
    print(json.dumps({name: info}))
    summary(f"{name}: " + ", ".join(f"{k} {v}" for k, v in info.items() if k != "source") + f" ({info.get('source')})")


@pytest.mark.timed
@pytest.mark.parametrize("decoder", DECODERS)
def test_decoder_training_throughput(benchmark, decoder, mode, summary):
    info = against_limit(training_work(BATCHES[mode], model=_model(decoder)), warmup=2, runner=benchmark.pedantic)
    benchmark.extra_info.update(info)
    _report(summary, f"training {decoder}", info | {"floor": FLOOR})
    assert info["fraction_cpu"] >= FLOOR, f"{decoder} training at {info['fraction_cpu']:.2f} of its matmul limit"


@pytest.mark.timed
@pytest.mark.parametrize("decoder", DECODERS)
def test_decoder_iw_nll_throughput(benchmark, decoder, mode, summary):
    info = against_limit(iw_work(SENTENCES[mode], SAMPLES[mode], model=_model(decoder)), warmup=1,
                         runner=benchmark.pedantic)
    benchmark.extra_info.update(info)
    _report(summary, f"iw_nll {decoder}", info | {"samples": SAMPLES[mode], "floor": FLOOR})
    assert info["fraction_cpu"] >= FLOOR, f"{decoder} IW-NLL at {info['fraction_cpu']:.2f} of its matmul limit"


@pytest.mark.timed
@pytest.mark.parametrize("decoder", [d for d in DECODERS if d != "lstm"])
def test_decoder_step_over_lstm(benchmark, decoder, mode, summary):
    """The decoder's vanilla training step over the LSTM's on the same real batches, bracketed rounds."""
    subject = training_work(BATCHES[mode], model=_model(decoder))
    reference = training_work(BATCHES[mode], model=_model("lstm"))
    n = len(subject)
    ratio = bracketed_ratio(lambda i: subject.subject(i % n), lambda i: reference.subject(i % n), n,
                            runner=benchmark.pedantic)
    benchmark.extra_info.update(ratio.info())
    _report(summary, f"step {decoder} / lstm", ratio.info())
    assert ratio.cpu > 0
