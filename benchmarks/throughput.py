"""Timing helpers shared by the benchmarks, and the model's throughput against this machine's matmul limit.

The limit for a piece of work is the time this machine takes to run exactly the matrix products the model needs
for it (forward, and for training the two backward products of each) as bare torch.mm calls on the same shapes,
timed in the same run. fraction = limit seconds / actual seconds: 1.0 means every cycle went into the matmuls.

Measurements alternate the subject with its reference (`alternate`), so both see the same load, and are taken
in wall-clock and in this thread's CPU time (`Timing`). With one torch thread every operation of a step runs on
the calling thread, so thread CPU time is the work done; wall-clock also counts the time the thread waited for a
core, which on a shared machine is set by the other processes, not by the code.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from collapse_bench import evaluate as ev
from collapse_bench.config import ModelConfig, size_config
from collapse_bench.data import ENV_VAR, SPECIALS, Batch, Corpus, DataError, DataLimits, Split, Vocab, load_corpus
from collapse_bench.decoders import decoder_width
from collapse_bench.method import Method
from collapse_bench.methods.vanilla import Vanilla
from collapse_bench.model import TextVAE
from collapse_bench.train import Trainer

DATA = Path(os.environ.get(ENV_VAR) or Path(__file__).resolve().parents[2] / "shared" / "data")
# (m, k, n, repeats): `repeats` products [m, k] @ [k, n] one after the other (a recurrence, or layers each with its own
# weight); (m, k, n, repeats, BATCHED): `repeats` independent products of different operands (attention's
# per-sentence, per-head products), run as one batched product, as the model runs them.
Shapes = list[tuple[int, ...]]
BATCHED = True


@dataclass(frozen=True)
class Workload:
    name: str
    cfg: ModelConfig
    vocab: int
    length: int        # words per sentence (targets = length + 1, encoder reads length + 2)
    batch: int = 32


SHORT_YELP = Workload("short-yelp", ModelConfig(128, 512, 512, 32), 8411, 9)
PAPER = Workload("paper", ModelConfig(512, 1024, 1024, 32), 20000, 9)


# ----------------------------------------------------------------------------- timing

@dataclass(frozen=True)
class Timing:
    wall: float
    cpu: float          # this thread's CPU time


def timed(fn: Callable[[], Any]) -> Timing:
    w, c = time.perf_counter(), time.thread_time()
    fn()
    return Timing(time.perf_counter() - w, time.thread_time() - c)


def _plain_runner(target: Callable[[], Any], setup: Callable[[], Any], rounds: int, warmup_rounds: int) -> None:
    for _ in range(warmup_rounds + rounds):
        setup()
        target()


def alternate(subject: Callable[[int], Any], reference: Callable[[int], Any], rounds: int, warmup: int = 0,
              runner: Callable[..., Any] | None = None) -> tuple[list[Timing], list[Timing]]:
    """Timings of reference(0), subject(0), reference(1), subject(1), ...: each round's reference runs right before
    its subject. Warm-up rounds repeat index 0 and are dropped. `runner` is pytest-benchmark's `benchmark.pedantic`
    (the reference runs as its untimed `setup`, so the subject's rounds are also the benchmark's stats; a disabled
    benchmark runs one round, no warm-up) or, by default, a plain loop with the same signature."""
    subj: list[Timing] = []
    ref: list[Timing] = []
    (runner or _plain_runner)(lambda: subj.append(timed(lambda: subject(max(0, len(subj) - warmup)))),
                              setup=lambda: ref.append(timed(lambda: reference(max(0, len(ref) - warmup)))),
                              rounds=rounds, warmup_rounds=warmup)
    drop = max(0, len(subj) - rounds)
    return subj[drop:], ref[drop:]


@dataclass(frozen=True)
class Ratio:
    """Step time of a subject over its reference's. Each round's subject step is bracketed by two reference steps
    and compared with their mean (a load change during the round cancels to first order); medians over rounds."""
    cpu: float
    wall: float
    cpu_se: float       # standard error of the CPU median (from the spread of the rounds)
    rounds: int
    subject_cpu: float  # medians, seconds
    reference_cpu: float

    def info(self) -> dict[str, float]:
        return {"ratio_cpu": round(self.cpu, 3), "ratio_wall": round(self.wall, 3), "ratio_cpu_se": round(self.cpu_se, 3),
                "rounds": self.rounds, "step_cpu_ms": round(1e3 * self.subject_cpu, 2),
                "reference_cpu_ms": round(1e3 * self.reference_cpu, 2)}


def bracketed_ratio(subject: Callable[[int], Any], reference: Callable[[int], Any], rounds: int, warmup: int = 1,
                    runner: Callable[..., Any] | None = None) -> Ratio:
    subj, ref = alternate(subject, reference, rounds, warmup, runner)
    ref.append(timed(lambda: reference(len(ref))))           # closes the last round's bracket
    cpu = [2 * s.cpu / (a.cpu + b.cpu) for s, a, b in zip(subj, ref, ref[1:])]
    wall = [2 * s.wall / (a.wall + b.wall) for s, a, b in zip(subj, ref, ref[1:])]
    q1, _, q3 = np.percentile(cpu, [25, 50, 75])
    se = 1.2533 * (q3 - q1) / 1.349 / len(cpu) ** 0.5    # median's SE, the spread taken from the IQR (normal approx.)
    return Ratio(statistics.median(cpu), statistics.median(wall), float(se), len(cpu),
                 statistics.median(s.cpu for s in subj), statistics.median(r.cpu for r in ref))


def over_budget(ratios: dict[str, Ratio], budgets: dict[str, float]) -> list[str]:
    """One failure message per entry without a budget or whose CPU-time ratio exceeds it; [] if all are within."""
    out = []
    for entry, r in ratios.items():
        if entry not in budgets:
            out.append(f"{entry}: no step-time budget; add one to BUDGET")
        elif r.cpu > budgets[entry]:
            out.append(f"{entry}: step takes {r.cpu:.2f}x vanilla's CPU time (budget {budgets[entry]}x; "
                       f"wall-clock {r.wall:.2f}x, {r.rounds} bracketed rounds, SE {r.cpu_se:.3f})")
    return out


# ----------------------------------------------------------------------------- the matmul limit

class GemmLimit:
    """Runs the bare products of a list of shapes. Operands are views of buffers allocated once per weight shape
    (k, n), so building them is never timed; a row slice of a contiguous buffer is itself contiguous."""

    def __init__(self, max_rows: int = 1):
        self.max_rows = max_rows
        self._bufs: dict[tuple[int, ...], tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def _operands(self, m: int, k: int, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        a, b, c = self._bufs.get((k, n), (None, None, None))
        if a is None or a.shape[0] < m:
            rows = max(m, self.max_rows)
            a, b, c = torch.randn(rows, k), torch.randn(k, n) if b is None else b, torch.randn(rows, n)
            self._bufs[(k, n)] = (a, b, c)
        return a[:m], b, c[:m]

    def prepare(self, shapes: Shapes) -> None:
        for m, k, n, reps, *batched in shapes:
            if batched:
                self._batched(m, k, n, reps)
            else:
                self._operands(m * reps, k, n)

    def _batched(self, m: int, k: int, n: int, reps: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        key = (reps, m, k, n)
        if key not in self._bufs:
            self._bufs[key] = (torch.randn(reps, m, k), torch.randn(reps, k, n), torch.randn(reps, m, n))
        return self._bufs[key]

    def run(self, shapes: Shapes, backward: bool) -> None:
        """forward C = A B; with backward also dA = dC B^T and dB = A^T dC. A repeated product is a recurrence: its
        forward and dA go step by step, but its weight gradient dB is one product over all steps' rows. Batched
        products run as one torch.bmm each way."""
        for m, k, n, reps, *batched in shapes:
            if batched:
                a, b, c = self._batched(m, k, n, reps)
                torch.bmm(a, b)
                if backward:
                    torch.bmm(c, b.transpose(1, 2))
                    torch.bmm(a.transpose(1, 2), c)
                continue
            a, b, c = self._operands(m, k, n)
            for _ in range(reps):
                torch.mm(a, b)
                if backward:
                    torch.mm(c, b.T)
            if backward:
                a, _, c = self._operands(m * reps, k, n)
                torch.mm(a.T, c)


def decoder_shapes(c: ModelConfig, R: int, L: int) -> Shapes:
    """The products of c.decoder's `hidden` on R sentences of L positions (decoders.py), without the softmax layer."""
    if c.decoder == "lstm":
        return [(R * L, c.emb + c.nz, 4 * c.dec_hidden, 1), (R, c.dec_hidden, 4 * c.dec_hidden, L)]
    w, n = decoder_width(c), R * L
    if c.decoder == "cnn":
        blocks = len(c.cnn_dilations)
        return [(n, c.emb + c.nz, w, 1), (n, w, w // 2, blocks), (n, c.cnn_kernel * (w // 2), w // 2, blocks),
                (n, w // 2, w, blocks), (n, w, c.dec_hidden, 1)]
    P = L + (c.tf_z == "memory")                       # the memory prefix is one more position
    d, layers = w // c.tf_heads, c.tf_layers
    return [(n, c.emb, w, 1), (R, c.nz, w, 1),
            (R * P, w, 3 * w, layers), (P, d, P, layers * R * c.tf_heads, BATCHED),
            (P, P, d, layers * R * c.tf_heads, BATCHED),
            (R * P, w, w, layers), (R * P, w, 4 * w, layers), (R * P, 4 * w, w, layers), (n, w, c.dec_hidden, 1)]


def train_shapes(w: Workload) -> Shapes:
    c, B, L = w.cfg, w.batch, w.length + 1
    return [(B * (L + 1), c.emb, 4 * c.enc_hidden, 1), (B, c.enc_hidden, 4 * c.enc_hidden, L + 1),   # encoder
            (B, c.enc_hidden, 2 * c.nz, 1),
            *decoder_shapes(c, B, L),                                                                 # decoder
            (B * L, c.dec_hidden, w.vocab, 1)]                                                       # softmax layer


def iw_shapes(w: Workload, samples: int, chunk_rows: int = 4096, softmax_elems: int = 2**21) -> Shapes:
    """The products of evaluate.iw_nll on one bucket of w.batch sentences of w.length words (w.batch <= chunk_rows):
    the bucket is encoded once, then decoded chunk_rows // w.batch samples per call (the last call takes the rest);
    without gradients the decoder's softmax layer runs in blocks of softmax_elems // vocab rows (model.py)."""
    c, B, L = w.cfg, w.batch, w.length + 1
    out: Shapes = [(B * (L + 1), c.emb, 4 * c.enc_hidden, 1), (B, c.enc_hidden, 4 * c.enc_hidden, L + 1),
                   (B, c.enc_hidden, 2 * c.nz, 1)]
    per_call, block = max(1, chunk_rows // B), max(1, softmax_elems // w.vocab)
    for k in range(0, samples, per_call):
        R = B * min(per_call, samples - k)
        full, rest = divmod(R * L, block)
        out += [*decoder_shapes(c, R, L), (block, c.dec_hidden, w.vocab, full)] + ([(rest, c.dec_hidden, w.vocab, 1)] if rest else [])
    return out


def flops(shapes: Shapes, backward: bool) -> float:
    return sum(2 * m * k * n * r for m, k, n, r, *_ in shapes) * (3 if backward else 1)


# ----------------------------------------------------------------------------- synthetic work

def make(w: Workload, seed: int = 0, method: Method | None = None) -> tuple[TextVAE, torch.Tensor]:
    torch.manual_seed(seed)
    model = (method or Method()).build_model(w.cfg, w.vocab)
    tokens = torch.randint(4, w.vocab, (w.batch, w.length + 2))
    tokens[:, 0], tokens[:, -1] = 1, 2
    return model, tokens


def train_step_fn(w: Workload, method: Method | None = None) -> Callable[[], None]:
    method = method or Method()
    model, tokens = make(w, method=method)
    batch = Batch(tokens, np.arange(w.batch), None)
    params = list(model.parameters())
    opt = torch.optim.SGD(params, lr=0.1)

    def step() -> None:   # Trainer.optimize's body, on one optimiser
        out = method.loss(model, batch, 1.0)
        opt.zero_grad(set_to_none=True)
        out.total.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
    return step


def iw_fn(w: Workload, samples: int, sentences: int = 1) -> Callable[[], np.ndarray]:
    model, _ = make(w)
    model.eval()
    rng = np.random.default_rng(0)
    split = Split([rng.integers(4, w.vocab, w.length) for _ in range(sentences)], None)
    return lambda: ev.iw_nll(Method(), model, split, samples, chunk_rows=4096, batch_size=256, device="cpu")


# ----------------------------------------------------------------------------- real work

@dataclass
class Work:
    """Items (batches or sentence buckets) to time one by one against their matmul limit: subject(i) runs item i,
    reference(i) its bare products (operands built beforehand)."""
    source: str                       # "short-yelp", or the synthetic stand-in and why
    subject: Callable[[int], Any]
    reference: Callable[[int], Any]
    tokens: list[int]                 # predicted tokens per item (sentence-samples x targets for IW-NLL)
    flop: list[float]
    sizes: list[tuple[int, int]]      # (sentences, words per sentence) per item

    def __len__(self) -> int:
        return len(self.tokens)


@functools.lru_cache(maxsize=2)
def short_yelp(limits: DataLimits) -> tuple[Corpus, str]:
    """The short-Yelp corpus, or (if its files are absent) a synthetic stand-in with its vocabulary size and
    length range (2-15 words), random tokens: the same code path on the same kind of shapes."""
    try:
        return load_corpus("short-yelp", DATA, limits, seed=0), "short-yelp"
    except DataError:
        rng = np.random.default_rng(0)

        def split(n: int) -> Split:
            return Split([rng.integers(4, SHORT_YELP.vocab, rng.integers(2, 16)) for _ in range(n)], None)
        vocab = Vocab(list(SPECIALS) + [f"w{i}" for i in range(SHORT_YELP.vocab - 4)])
        return (Corpus("short-yelp-stand-in", vocab, split(limits.max_train or 10000), split(200),
                       split(limits.max_test or 1000)), f"synthetic stand-in (no short-yelp files under {DATA})")


def training_work(batches: int | None, seed: int = 0, model: ModelConfig = SHORT_YELP.cfg) -> Work:
    """Vanilla training steps of the paper's short-Yelp model (Trainer.train_step, both optimisers, clipping) over
    the `default` size's training pool, bucketed and ordered as its first epoch sees them; the first `batches`.
    `model`: another model (e.g. another decoder at the same sizes)."""
    cfg = size_config("default", "short-yelp")
    corpus, source = short_yelp(cfg.limits)
    trainer = Trainer(Vanilla(), cfg.replace(model=dataclasses.asdict(model)), corpus, seed=seed)
    order = [trainer.train_batches[i] for i in trainer.rng.permutation(len(trainer.train_batches))][:batches]
    loads = [Workload("batch", model, len(corpus.vocab), b.tokens.shape[1] - 2, b.size) for b in order]
    limit = GemmLimit()
    for w in loads:
        limit.prepare(train_shapes(w))

    def step(i: int) -> None:
        trainer.method.train_step(trainer.ctx, order[i])
        trainer.step += 1
    return Work(source, step, lambda i: limit.run(train_shapes(loads[i]), backward=True),
                [w.batch * (w.length + 1) for w in loads], [flops(train_shapes(w), True) for w in loads],
                [(w.batch, w.length) for w in loads])


def iw_work(sentences: int, samples: int, seed: int = 0, model: ModelConfig = SHORT_YELP.cfg) -> Work:
    """evaluate.iw_nll with the protocol's chunking on `sentences` test sentences drawn at random (seeded), one item
    per length bucket, with an untrained paper short-Yelp model (the speed does not depend on the weights)."""
    corpus, source = short_yelp(size_config("default", "short-yelp").limits)
    test = corpus.test.subset(np.sort(np.random.default_rng(seed).choice(len(corpus.test), sentences, replace=False)))
    buckets = [test.subset(np.flatnonzero(test.lengths() == n)) for n in np.unique(test.lengths())]
    torch.manual_seed(seed)
    vae = TextVAE(model, len(corpus.vocab)).eval()
    loads = [Workload("bucket", model, len(corpus.vocab), int(b.lengths()[0]), len(b)) for b in buckets]
    limit = GemmLimit()
    for w in loads:
        limit.prepare(iw_shapes(w, samples))
    return Work(source, lambda i: ev.iw_nll(Method(), vae, buckets[i], samples, 4096, 256, "cpu"),
                lambda i: limit.run(iw_shapes(loads[i], samples), backward=False),
                [w.batch * samples * (w.length + 1) for w in loads], [flops(iw_shapes(w, samples), False) for w in loads],
                [(w.batch, w.length) for w in loads])


def fixed_work(w: Workload, rounds: int, samples: int | None = None) -> Work:
    """The synthetic fixed-shape figure: `rounds` items of one random batch (training), or of one random sentence
    scored with `samples` importance samples (IW-NLL)."""
    if samples is None:
        shapes, backward, fn, tokens = train_shapes(w), True, train_step_fn(w), w.batch * (w.length + 1)
    else:
        shapes, backward, fn = iw_shapes(dataclasses.replace(w, batch=1), samples), False, iw_fn(w, samples)
        tokens = samples * (w.length + 1)
    limit = GemmLimit()
    limit.prepare(shapes)
    size = (w.batch if samples is None else 1, w.length)
    return Work(f"synthetic {size[0]} x {w.length} words", lambda i: fn(), lambda i: limit.run(shapes, backward),
                [tokens] * rounds, [flops(shapes, backward)] * rounds, [size] * rounds)


def against_limit(work: Work, warmup: int = 1, runner: Callable[..., Any] | None = None) -> dict[str, Any]:
    """Every item of `work` once, each right after its matmul limit; totals over the items."""
    actual, limit = alternate(work.subject, work.reference, len(work), warmup, runner)
    n = len(actual)                                   # 1 when a disabled benchmark ran a single round
    cpu, wall = sum(t.cpu for t in actual), sum(t.wall for t in actual)
    return {"source": work.source, "items": n, "sentences": sum(s for s, _ in work.sizes[:n]),
            "fraction_cpu": sum(t.cpu for t in limit) / cpu, "fraction_wall": sum(t.wall for t in limit) / wall,
            "tokens_per_cpu_s": sum(work.tokens[:n]) / cpu, "gflop_per_cpu_s": sum(work.flop[:n]) / cpu / 1e9,
            "cpu_seconds": cpu, "wall_seconds": wall}


if __name__ == "__main__":      # python benchmarks/throughput.py [threads]
    import sys
    torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
    for w in (SHORT_YELP, PAPER):
        print(w.name, "synthetic training", against_limit(fixed_work(w, 5), warmup=2))
        print(w.name, "synthetic IW-NLL", against_limit(fixed_work(w, 3, samples=500)))
    print("training on real batches", against_limit(training_work(40), warmup=2))
    print("IW-NLL on real sentences", against_limit(iw_work(24, 100)))
