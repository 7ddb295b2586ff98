"""Where a real training epoch spends its time: the harness against the original BN-VAE code, on the same batches.

Issue 10 asks whether the harness is clearly ahead of the original on real work (>= 1.25x) and, if not, where a
real epoch loses time. This measures both implementations on exactly the same training batches, in the order a
real epoch draws them: the parity budget (reports/parity.md: the short-Yelp pool's 40k-sentence training subset,
model 128/512/512/32 over the 8,411-word vocabulary, batch 32, SGD lr 1, joint clipping at 5, KL weight 1), vanilla
VAE, one torch thread each. Each batch is trained by one implementation and then the other, alternating which goes
first, and timed in this thread's CPU time (what the step costs, whatever else shares the machine). Then both are
profiled with torch.profiler and their time is split by kind of operation.

    python reports/cost/profile_epoch.py --code /tmp/orig/bnvae [--batches 200] > reports/cost/epoch_profile.txt

Needs the parity data (python reports/parity/prepare_data.py) and a checkout of valdersoul/bn-vae. The original is
imported from its folder and driven from here, its files untouched.
"""
from __future__ import annotations

import argparse
import collections
import importlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "parity"))
from common import BUDGET, WORK, register_original_config  # noqa: E402

from collapse_bench.config import ModelConfig, SizeConfig, TrainConfig, EvalConfig  # noqa: E402
from collapse_bench.data import Batch, DataLimits, bucket_batches, load_corpus  # noqa: E402
from collapse_bench.methods.vanilla import Vanilla  # noqa: E402
from collapse_bench.train import Trainer  # noqa: E402

# kind of work -> aten operator names (self time); everything else is "other operators"
KINDS = {
    "LSTM kernels (forward + backward)": ("aten::mkldnn_rnn_layer", "aten::mkldnn_rnn_layer_backward"),
    "matrix products (output layer, linear layers)": ("aten::mm", "aten::addmm", "aten::bmm"),
    "softmax and cross-entropy": ("aten::_log_softmax", "aten::_log_softmax_backward_data", "aten::nll_loss_forward",
                                  "aten::nll_loss_backward"),
    "dropout masks": ("aten::bernoulli_",),
    "embedding gradients": ("aten::embedding_dense_backward", "aten::index_select", "aten::index_add_"),
    "optimiser, clipping, zeroing": ("Optimizer.step#SGD.step", "Optimizer.zero_grad#SGD.zero_grad",
                                     "aten::linalg_vector_norm", "aten::_foreach_norm", "aten::_foreach_mul_",
                                     "aten::_foreach_add_", "aten::add_", "aten::fill_", "aten::zero_"),
}


def ours(corpus, seed: int):
    cfg = SizeConfig("parity", ModelConfig(emb=BUDGET["emb"], enc_hidden=BUDGET["hidden"], dec_hidden=BUDGET["hidden"],
                                           nz=BUDGET["nz"], encoder_init="pytorch"),
                     TrainConfig(epochs=1, batch_size=BUDGET["batch_size"], lr=BUDGET["lr"], kl_start=1.0, warm_up=0,
                                 threads=1), EvalConfig(), DataLimits(max_train=BUDGET["train_sentences"]))
    method = Vanilla(Vanilla.Params())
    trainer = Trainer(method, cfg, corpus, seed=seed)

    def step(tokens: torch.Tensor) -> None:
        method.train_step(trainer.ctx, Batch(tokens, np.arange(tokens.shape[0])))
    return step


def original(code: Path, vocab_words: list[str], seed: int):
    sys.path.insert(0, str(code))
    cwd = os.getcwd()
    os.chdir(code)
    try:
        register_original_config("profile", emb=BUDGET["emb"], hidden=BUDGET["hidden"], nz=BUDGET["nz"],
                                 batch_size=BUDGET["batch_size"], epochs=1)
        script = importlib.import_module("text_anneal_fb")
        from data.text_data import VocabEntry
        from modules import GaussianLSTMEncoder, LSTMDecoder, VAE
        from utils import uniform_initializer
    finally:
        os.chdir(cwd)
    sys.argv = ["text_anneal_fb.py", "--dataset", "profile", "--seed", str(seed)]
    args = script.init_config()
    args.device = "cpu"
    vocab = VocabEntry({w: i for i, w in enumerate(vocab_words)})
    init, emb_init = uniform_initializer(0.01), uniform_initializer(0.1)
    vae = VAE(GaussianLSTMEncoder(args, len(vocab), init, emb_init), LSTMDecoder(args, vocab, init, emb_init), args)
    vae.train()
    enc = torch.optim.SGD(vae.encoder.parameters(), lr=BUDGET["lr"], momentum=0)
    dec = torch.optim.SGD(vae.decoder.parameters(), lr=BUDGET["lr"], momentum=0)

    def step(tokens: torch.Tensor) -> None:     # the body of its training loop (text_anneal_fb.py, fb == 0)
        enc.zero_grad()
        dec.zero_grad()
        loss, loss_rc, loss_kl = vae.loss(tokens, 1.0, nsamples=1)
        loss.mean(dim=-1).backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 5.0)
        enc.step()
        dec.step()
        loss_rc.sum().item(), loss_kl.sum().item()
    return step


def kinds_of(prof) -> dict[str, float]:
    out: dict[str, float] = collections.Counter()
    names = {n: k for k, ops in KINDS.items() for n in ops}
    for e in prof.key_averages():
        out[names.get(e.key, "other operators")] += e.self_cpu_time_total / 1e6
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--code", required=True, help="checkout of valdersoul/bn-vae")
    ap.add_argument("--batches", type=int, default=200)
    ap.add_argument("--profiled", type=int, default=60, help="batches under torch.profiler, per implementation")
    a = ap.parse_args()
    torch.set_num_threads(1)
    data_dir = os.environ.get("COLLAPSE_BENCH_DATA") or str(HERE.parents[2] / "shared" / "data")
    corpus = load_corpus("short-yelp", data_dir, DataLimits(max_train=BUDGET["train_sentences"]), seed=0)
    vocab_words = json.loads((WORK / "data" / "vocab.json").read_text())
    assert vocab_words == list(corpus.vocab.itos), "parity vocabulary differs from the loader's: rerun prepare_data.py"
    # a real epoch's batches, in the order the epoch draws them
    batches = bucket_batches(corpus.train, BUDGET["batch_size"], seed=0)
    order = np.random.default_rng(0).permutation(len(batches))
    chosen = [batches[i].tokens for i in order if batches[i].size >= 2][:a.batches]
    tokens = sum(t.shape[0] * (t.shape[1] - 1) for t in chosen)     # predicted tokens: w1..wn </s>
    steps = {"ours": ours(corpus, 0), "original": original(Path(a.code), vocab_words, 0)}
    for t in chosen[:5]:                                             # warm-up
        for fn in steps.values():
            fn(t)
    cpu = {k: 0.0 for k in steps}
    wall = {k: 0.0 for k in steps}
    for i, t in enumerate(chosen):
        for name in (list(steps) if i % 2 == 0 else list(steps)[::-1]):
            w0, c0 = time.perf_counter(), time.thread_time()
            steps[name](t)
            cpu[name] += time.thread_time() - c0
            wall[name] += time.perf_counter() - w0
    print(f"{len(chosen)} training batches of a real short-Yelp epoch (parity budget, vanilla VAE), {tokens} predicted "
          f"tokens, mean {tokens / len(chosen):.0f} per batch; one torch thread; torch {torch.__version__}")
    print(f"{'implementation':<12} {'tok/s (thread CPU)':>20} {'tok/s (wall)':>14} {'ms/step (CPU)':>14}")
    for k in steps:
        print(f"{k:<12} {tokens / cpu[k]:>20.0f} {tokens / wall[k]:>14.0f} {1e3 * cpu[k] / len(chosen):>14.1f}")
    print(f"ours / original throughput: {cpu['original'] / cpu['ours']:.3f} (thread CPU), "
          f"{wall['original'] / wall['ours']:.3f} (wall)\n")

    from torch.profiler import ProfilerActivity, profile
    split = {}
    for k, fn in steps.items():
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            w0 = time.perf_counter()         # the profiler's operator times are wall-clock intervals: so is the total
            for t in chosen[:a.profiled]:
                fn(t)
            total = time.perf_counter() - w0
        split[k] = (kinds_of(prof), total)
    print(f"where the time goes ({a.profiled} batches under torch.profiler: self time of operators, wall-clock, so "
          f"on a shared machine each kind also carries its share of waiting for a core; the profiler's own cost is "
          f"in 'Python, dispatch and profiler'):")
    print(f"{'kind of work':<48} " + " ".join(f"{k + ' s':>12} {'%':>5}" for k in steps))
    kinds = list(KINDS) + ["other operators"]
    for kind in kinds:
        print(f"{kind:<48} " + " ".join(f"{split[k][0][kind]:>12.2f} {100 * split[k][0][kind] / split[k][1]:>5.1f}"
                                        for k in steps))
    rest = {k: split[k][1] - sum(split[k][0].values()) for k in steps}
    print(f"{'Python, dispatch and profiler':<48} " + " ".join(f"{rest[k]:>12.2f} {100 * rest[k] / split[k][1]:>5.1f}"
                                                               for k in steps))
    print(f"{'total (wall-clock)':<48} " + " ".join(f"{split[k][1]:>12.2f} {100.0:>5.1f}" for k in steps))


if __name__ == "__main__":
    main()
