"""Where SA-VAE's training step spends its time, at the study's size on real short-Yelp batches.

Times (this thread's CPU time, one torch thread, so other processes on the machine do not enter) the vanilla
step and the SA-VAE step on the same batches, and splits the SA-VAE step into its parts: the encoder, the
10 SVI steps, the final loss, and the backward pass through the unrolled refinement (for the default, Kim et al.'s
finite-difference reverse pass: one more gradient evaluation per step). Also times the exact second-order reverse
pass, the refinement without second-order terms (the gradient then stops at the refined posterior) and fewer SVI
steps, and one gradient evaluation alone: the finite-difference step's floor is 21 of them. Writes a text table to reports/cost/savae_profile.txt.

    python reports/cost/profile_savae.py [--batches 6] [--out reports/cost/savae_profile.txt]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch

from collapse_bench import registry
from collapse_bench.config import size_config
from collapse_bench.data import ENV_VAR
from collapse_bench.cell import load_cell_corpus
from collapse_bench.methods.savae import _Unrolled
from collapse_bench.train import Trainer

ROOT = Path(__file__).resolve().parents[2]


def cpu(fn) -> float:
    t = time.thread_time()
    fn()
    return time.thread_time() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", type=int, default=6)
    ap.add_argument("--data-dir", default=os.environ.get(ENV_VAR) or str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--out", type=Path, default=ROOT / "reports" / "cost" / "savae_profile.txt")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = size_config("study", "short-yelp")
    corpus = load_cell_corpus("short-yelp", args.data_dir, cfg.limits)

    def trainer(name: str, **params) -> Trainer:
        cls = registry.get(name)
        return Trainer(cls(cls.Params(**params)), cfg, corpus, seed=0)

    van = trainer("vanilla")
    variants = (("SA-VAE, 10 steps, finite differences (Kim et al.'s reverse pass; the harness's default)", "fd", {}),
                ("10 steps, exact second order (svi_backward='exact')", "exact", {"svi_backward": "exact"}),
                ("10 steps, first order only (the gradient stops at the refined posterior)", "first", {}),
                ("5 steps, finite differences", "fd", {"svi_steps": 5}))
    batches = [b for b in van.train_batches if b.tokens.shape[1] - 2 == 9][:args.batches]   # the median length
    w = 1.0

    def vanilla_step(b):
        van.optimize(van.method.loss(van.model, b, w).total)

    def savae_parts(b, sa: Trainer, reverse: str) -> dict[str, float]:
        m, model = sa.method, sa.model
        parts = {}
        t = time.thread_time()
        post = m.amortized_posterior(model, b.tokens)
        parts["encoder"] = time.thread_time() - t
        t = time.thread_time()
        if reverse == "fd":
            refined = m.refine_fd(model, post, b.tokens, w)
        else:
            refined = m.refine(model, post, b.tokens, w, create_graph=reverse == "exact")
        parts["svi steps"] = time.thread_time() - t
        t = time.thread_time()
        rec = -model.decoder.log_prob(b.tokens, refined.rsample(1)).squeeze(1)
        loss = (rec + w * refined.kl()).mean()
        parts["final loss"] = time.thread_time() - t
        t = time.thread_time()
        sa.optimize(loss)
        parts["backward (reverse pass) + clip + SGD"] = time.thread_time() - t
        return parts

    def one_gradient(b, sa: Trainer) -> float:
        """One SVI gradient evaluation: decoder forward + gradient w.r.t. (mu, log sigma^2) and the decoder."""
        post = sa.method.amortized_posterior(sa.model, b.tokens)
        unrolled = _Unrolled(sa.model, b.tokens, w, sa.method.params, list(sa.model.decoder.parameters()))
        return cpu(lambda: unrolled._grads(post.mu, post.logvar))

    for b in batches[:2]:                      # warm-up
        vanilla_step(b)
    v = statistics.median(cpu(lambda b=b: vanilla_step(b)) for b in batches)
    rows = []
    for label, reverse, params in variants:
        sa = trainer("savae", **params)
        savae_parts(batches[0], sa, reverse)                   # warm-up
        runs = [savae_parts(b, sa, reverse) for b in batches]
        rows.append((label, {k: statistics.median(r[k] for r in runs) for k in runs[0]}))
    g = statistics.median(one_gradient(b, trainer("savae")) for b in batches)
    lines = [f"SA-VAE step profile: study size (64/128/128, nz 32), short-Yelp batches of 32 x 9 words, "
             f"1 torch thread, thread CPU time, median of {len(batches)} batches",
             f"vanilla step: {v * 1000:.1f} ms",
             f"one SVI gradient evaluation (decoder forward + gradient w.r.t. (mu, log σ²) and the decoder's weights): "
             f"{g * 1000:.1f} ms = {g / v:.2f}x vanilla's step; the finite-difference step takes 2 per SVI step "
             f"(one forward, one reverse) plus the final loss: 21 for 10 steps, a floor of {21 * g / v:.1f}x", ""]
    for label, parts in rows:
        total = sum(parts.values())
        lines.append(f"{label}: {total * 1000:.1f} ms = {total / v:.1f}x vanilla's step")
        for k, s in parts.items():
            lines.append(f"    {k:24s} {s * 1000:8.1f} ms  {s / total:6.1%}  ({s / v:5.1f}x vanilla's step)")
        lines.append("")
    text = "\n".join(lines)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
