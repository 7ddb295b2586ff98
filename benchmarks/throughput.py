"""Throughput of the model against this machine's matmul limit, measured side by side in one process.

The limit for a workload is the time the machine takes to run exactly the matrix products the model needs
(forward, and for training the two backward products of each) as bare torch.mm calls on the same shapes.
fraction = limit seconds / actual seconds: 1.0 means every cycle went into the matmuls.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import numpy as np
import torch

from collapse_bench import evaluate as ev
from collapse_bench.config import ModelConfig
from collapse_bench.data import Batch, Split
from collapse_bench.method import Method
from collapse_bench.model import TextVAE


@dataclass(frozen=True)
class Workload:
    name: str
    cfg: ModelConfig
    vocab: int
    length: int        # words per sentence (targets = length + 1, encoder reads length + 2)
    batch: int = 32


SHORT_YELP = Workload("short-yelp", ModelConfig(128, 512, 512, 32), 8411, 9)
PAPER = Workload("paper", ModelConfig(512, 1024, 1024, 32), 20000, 9)


def median_time(fn, rounds: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def gemm_seconds(shapes: list[tuple[int, int, int, int]], backward: bool, rounds: int = 5) -> float:
    """Time of the products (m, k, n, repeats) as bare matmuls; with backward, also dA = dC B^T and dB = A^T dC."""
    ops = []
    for m, k, n, reps in shapes:
        a, b, c = torch.randn(m, k), torch.randn(k, n), torch.randn(m, n)
        ops.append((lambda a=a, b=b: torch.mm(a, b), reps))
        if backward:
            ops.append((lambda c=c, b=b: torch.mm(c, b.T), reps))
            ops.append((lambda a=a, c=c: torch.mm(a.T, c), reps))

    def run():
        for op, reps in ops:
            for _ in range(reps):
                op()
    return median_time(run, rounds)


def train_shapes(w: Workload) -> list[tuple[int, int, int, int]]:
    c, B, L = w.cfg, w.batch, w.length + 1
    return [(B * (L + 1), c.emb, 4 * c.enc_hidden, 1), (B, c.enc_hidden, 4 * c.enc_hidden, L + 1),   # encoder
            (B, c.enc_hidden, 2 * c.nz, 1),
            (B * L, c.emb + c.nz, 4 * c.dec_hidden, 1), (B, c.dec_hidden, 4 * c.dec_hidden, L),      # decoder
            (B * L, c.dec_hidden, w.vocab, 1)]                                                       # softmax layer


def iw_shapes(w: Workload, samples: int) -> list[tuple[int, int, int, int]]:
    c, L = w.cfg, w.length + 1
    return [((L + 1), c.emb, 4 * c.enc_hidden, 1), (1, c.enc_hidden, 4 * c.enc_hidden, L + 1),
            (samples * L, c.emb + c.nz, 4 * c.dec_hidden, 1), (samples, c.dec_hidden, 4 * c.dec_hidden, L),
            (samples * L, c.dec_hidden, w.vocab, 1)]


def flops(shapes, backward: bool) -> float:
    return sum(2 * m * k * n * r for m, k, n, r in shapes) * (3 if backward else 1)


def make(w: Workload, seed: int = 0):
    torch.manual_seed(seed)
    model = TextVAE(w.cfg, w.vocab)
    tokens = torch.randint(4, w.vocab, (w.batch, w.length + 2))
    tokens[:, 0], tokens[:, -1] = 1, 2
    return model, tokens


def train_step_fn(w: Workload, method: Method | None = None):
    method = method or Method()
    model, tokens = make(w)
    batch = Batch(tokens, np.arange(w.batch), None)
    params = list(model.parameters())
    opt = torch.optim.SGD(params, lr=0.1)

    def step():   # Trainer.optimize's body, on one optimiser
        out = method.loss(model, batch, 1.0)
        opt.zero_grad(set_to_none=True)
        out.total.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
    return step


def iw_fn(w: Workload, samples: int, sentences: int = 1):
    model, _ = make(w)
    model.eval()
    rng = np.random.default_rng(0)
    split = Split([rng.integers(4, w.vocab, w.length) for _ in range(sentences)], None)
    return lambda: ev.iw_nll(Method(), model, split, samples, chunk_rows=4096, batch_size=256, device="cpu")


def measure_training(w: Workload, rounds: int = 5) -> dict:
    step = train_step_fn(w)
    actual = median_time(step, rounds, warmup=2)
    limit = gemm_seconds(train_shapes(w), backward=True, rounds=rounds)
    tokens = w.batch * (w.length + 1)
    return {"tokens_per_s": tokens / actual, "limit_tokens_per_s": tokens / limit, "fraction": limit / actual,
            "gflops_per_s": flops(train_shapes(w), True) / actual / 1e9}


def measure_iw(w: Workload, samples: int = 500, rounds: int = 3) -> dict:
    fn = iw_fn(w, samples)
    actual = median_time(fn, rounds)
    limit = gemm_seconds(iw_shapes(w, samples), backward=False, rounds=rounds)
    return {"seconds_per_sentence": actual, "limit_seconds_per_sentence": limit, "fraction": limit / actual,
            "gflops_per_s": flops(iw_shapes(w, samples), False) / actual / 1e9}


if __name__ == "__main__":
    import sys
    torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
    for w in (SHORT_YELP, PAPER):
        print(w.name, "train", measure_training(w))
        print(w.name, "iw", measure_iw(w))
