"""Whole-epoch parity at the real size: the original BN-VAE code and ours in lockstep (issue 24's cause search).

The original's text_anneal_fb.py main() trains as it always does (its MonoTextData batches, its batch order from
its seed, its skipped one-sentence batches, its KL annealing, SGD, joint clipping). From the outside, at each of its
training calls of VAE.loss this driver
- draws the step's noise from one seeded generator: the reparameterisation's standard normals and the decoder's two
  dropout masks (0/1 bits, p = 0.5), injected on both sides as tests/test_step_parity.py does (Tensor.normal_ and
  F.dropout in the original, torch.randn and F.dropout in ours);
- takes the same step with OUR Trainer/Method code (Method.train_step -> Trainer.optimize) on two copies of our model
  that started from the original's initial weights: `ours` exactly, and `ours+1ulp` with one weight moved by one
  unit in the last place (--perturb) -- the size of a float's rounding error;
- records each side's loss and KL weight, and every --every steps the distance between the parameter vectors
  (original vs ours, ours vs ours+1ulp).
If ours parts from the original as fast as ours parts from itself after a 1-ulp nudge, the two implementations
differ by no more than rounding, and what separates their whole runs is the training's sensitivity to it (the run
is chaotic at this learning rate), not a difference in what is computed.

The original's decoder embedding is built with padding_idx=-1, which freezes the row of the vocabulary's last word
(parity.md, "Left as they are"); by default ours gets the same frozen row here (a gradient hook), so that the
comparison sees float-level differences only; --no-freeze-last-row keeps our behaviour (the word occurs in the first
subset's training file twice).

    OMP_NUM_THREADS=1 python reports/parity/long_parity.py --code work/bnvae --subset first --seed 783435
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from common import (BUDGET, SUBSETS, provenance_of_run, register_original_config, subset_data, subset_results,
                    write_result)
from run_ours import build_method, parity_config
from step_parity import MAPPING, import_original, load_test_module

THRESHOLDS = (1e-6, 1e-4, 1e-2, 1e-1)


class Stop(Exception):
    pass


def our_trainer(corpus, init: dict[str, torch.Tensor] | None, freeze_last_row: bool, clip_order: list[str] | None = None):
    """Our vanilla model on the parity budget, started from the original's initial weights; with `clip_order`, the
    joint gradient clipping sums the parameters' norms in that order (our naming) instead of ours."""
    from collapse_bench.train import Trainer
    cfg = parity_config(1, "pytorch")
    trainer = Trainer(build_method("vanilla"), cfg, corpus, seed=0)
    state = trainer.model.state_dict()
    if init is None:        # ours' own initialisation (Trainer seed 0)
        return trainer
    assert set(state) == set(init), sorted(set(state) ^ set(init))
    trainer.model.load_state_dict(init, strict=True)
    if freeze_last_row:      # the original's nn.Embedding(..., padding_idx=-1): no gradient for the last word's row
        last = state["decoder.embed.weight"].shape[0] - 1
        trainer.model.decoder.embed.weight.register_hook(lambda g: g.index_fill(0, torch.tensor([last]), 0.0))
    if clip_order is not None:
        named = dict(trainer.model.named_parameters())
        assert sorted(clip_order) == sorted(n for n, p in named.items() if p.requires_grad)
        trainer._params = [named[n] for n in clip_order]
    trainer.model.train()
    return trainer


def batch_mix(batches: list[tuple[int, np.ndarray]]) -> dict:
    """(size, labels) per batch -> how many batches, how many of one sentence, and the share of label-pure batches
    among the rest (the BN-VAE issue of parity.md's first row: a file's label order leaking into batches)."""
    multi = [labels for size, labels in batches if size >= 2]
    return {"batches": len(batches), "one_sentence_batches": sum(size == 1 for size, _ in batches),
            "label_pure_share": float(np.mean([len(set(labels.tolist())) == 1 for labels in multi])),
            "mean_minority_share": float(np.mean([min(labels.mean(), 1 - labels.mean()) for labels in multi]))}


def side_checks(corpus, data: Path, MonoTextData, vocab, original_init: dict[str, torch.Tensor]) -> dict:
    """What the lockstep holds equal, measured on each side's own terms: the batches each side would build from the
    training file (the original's MonoTextData batching; ours' bucket_batches with the run seeds 0-3), and the
    initial weights each side draws (the original's, from its main() with its seed; ours, Trainer seed 0): range,
    sd and a two-sample KS test per tensor."""
    from scipy import stats

    from collapse_bench.data import bucket_batches
    mono = MonoTextData(str(data / "train.txt"), label=True, vocab=vocab)
    xs, ys = mono.create_data_batch_labels(batch_size=BUDGET["batch_size"], device="cpu", batch_first=True)
    out = {"original_batches": batch_mix([(len(x), np.asarray([int(v) for v in y], dtype=float))
                                          for x, y in zip(xs, ys)])}
    for seed in range(4):
        out[f"ours_batches_seed{seed}"] = batch_mix([(b.size, b.labels.numpy().astype(float)) for b in
                                                     bucket_batches(corpus.train, BUDGET["batch_size"], seed=seed)])
    ours = our_trainer(corpus, None, False).model.state_dict()
    rng = np.random.default_rng(0)
    init = {}
    for name, o in original_init.items():
        a, b = o.double().reshape(-1).numpy(), ours[name].double().reshape(-1).numpy()
        take = lambda v: v if len(v) <= 20000 else rng.choice(v, 20000, replace=False)  # noqa: E731
        init[name] = {"original": [float(a.min()), float(a.max()), float(a.std())],
                      "ours": [float(b.min()), float(b.max()), float(b.std())],
                      "ks_p": float(stats.ks_2samp(take(a), take(b)).pvalue)}
    out["init_min_max_sd"] = init
    return out


def flat(state: dict[str, torch.Tensor], names) -> torch.Tensor:
    return torch.cat([state[n].detach().double().reshape(-1) for n in names])


def distance(a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
    d = a - b
    return {"rel_l2": float(d.norm() / b.norm()), "max_abs": float(d.abs().max())}


def our_step(T, trainer, tokens: torch.Tensor, eps: torch.Tensor, bits: torch.Tensor) -> dict:
    """One update of ours on the original's batch with the step's noise (as tests/test_step_parity.py replays)."""
    from collapse_bench.data import Batch
    from collapse_bench.model import precision
    noise = T.Noise(eps, bits)

    def randn(*shape, **kw):
        shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list, torch.Size)) else shape
        return noise.take_eps(shape).to(kw.get("dtype") or torch.float32)
    with T.patched(torch, "randn", randn), T.dropout_from(noise):
        with precision(trainer.device, trainer.cfg.train.precision):
            logs = trainer.method.train_step(trainer, Batch(tokens, np.arange(len(tokens))))
    trainer.step += 1
    noise.check_used_up()
    return logs


def lockstep(code: Path, subset: str, seed: int, steps: int | None, every: int, perturb: str,
             freeze_last_row: bool, original_clip_order: bool) -> dict:
    T = load_test_module()
    from common import load_parity_corpus
    corpus = load_parity_corpus(subset)
    data = subset_data(subset)
    script, MonoTextData, VocabEntry, VAE = import_original(code)
    cwd = os.getcwd()
    vocab = VocabEntry({w: i for i, w in enumerate(json.loads((data / "vocab.json").read_text()))})
    script.MonoTextData = lambda fname, label=False, max_length=None, vocab=None, _v=vocab: \
        MonoTextData(fname, label=label, max_length=max_length, vocab=vocab or _v)
    register_original_config("longparity", emb=BUDGET["emb"], hidden=BUDGET["hidden"], nz=BUDGET["nz"],
                             batch_size=BUDGET["batch_size"], epochs=1, train=data / "train.txt",
                             valid=data / "valid.txt", test=data / "test1000.txt", label=True)
    gen = torch.Generator().manual_seed(seed)
    rec = {"loss": {"original": [], "ours": [], "ours+1ulp": []}, "kl_weight": {"original": [], "ours": []},
           "batch": [], "last_word_steps": [], "distance": []}
    st: dict = {"k": 0}
    names = list(MAPPING)
    real_loss = VAE.loss
    last_id = len(vocab) - 1
    t0 = time.perf_counter()

    def measure(orig_vae, k: int) -> None:
        o = orig_vae.state_dict()
        po = flat({n: o[MAPPING[n]] for n in names}, names)
        pa, pb = (flat(st[t].model.state_dict(), names) for t in ("ours", "ours+1ulp"))
        rec["distance"].append({"step": k, "original_vs_ours": distance(pa, po), "ours_vs_ours+1ulp": distance(pb, pa),
                                "seconds": time.perf_counter() - t0})

    def spy(self, x, kl_weight, nsamples=1):
        k = st["k"]
        if not self.training or (steps is not None and k == steps):   # the epoch's validation, or enough steps
            measure(self, k)
            raise Stop
        if k == 0:
            o = self.state_dict()
            init = {n: o[t].detach().clone() for n, t in MAPPING.items()}
            inverse = {t: n for n, t in MAPPING.items()}
            order = [inverse[t] for t, p in self.named_parameters() if p.requires_grad and t in inverse]
            rec["clip_order"] = order if original_clip_order else None
            rec["checks"] = side_checks(corpus, data, MonoTextData, vocab, init)
            for tag in ("ours", "ours+1ulp"):
                st[tag] = our_trainer(corpus, init, freeze_last_row, order if original_clip_order else None)
            w = dict(st["ours+1ulp"].model.named_parameters())[perturb]
            with torch.no_grad():
                flat_w = w.view(-1)
                flat_w[0] = torch.nextafter(flat_w[0], torch.tensor(math.inf))
            measure(self, 0)
        elif k % every == 0:
            measure(self, k)
        st["k"] = k + 1
        B, L = x.shape
        eps = torch.randn(B * BUDGET["nz"], generator=gen)
        bits = torch.randint(0, 2, (B * (L - 1) * (BUDGET["emb"] + BUDGET["hidden"]),), generator=gen,
                             dtype=torch.uint8).float()
        for tag in ("ours", "ours+1ulp"):
            logs = our_step(T, st[tag], x, eps, bits)
            rec["loss"][tag].append(logs["loss"])
        rec["kl_weight"]["ours"].append(logs["kl_weight"])
        noise = T.Noise(eps, bits)

        def normal_(t, *a, **kw):
            return t.copy_(noise.take_eps(tuple(t.shape)))
        with T.patched(torch.Tensor, "normal_", normal_), T.dropout_from(noise):
            loss, rc, kl = real_loss(self, x, kl_weight, nsamples)
        noise.check_used_up()
        rec["loss"]["original"].append(loss.mean().item())
        rec["kl_weight"]["original"].append(float(kl_weight))
        rec["batch"].append([B, L])
        if bool((x == last_id).any()):
            rec["last_word_steps"].append(k + 1)
        return loss, rc, kl

    sys.argv = ["text_anneal_fb.py", "--dataset", "longparity", "--seed", str(seed), "--kl_start",
                str(BUDGET["kl_start"]), "--warm_up", str(BUDGET["warm_up"]), "--lr", str(BUDGET["lr"]),
                "--exp_dir", str(subset_data(subset).parent / "long_parity_exp")]
    os.chdir(code)
    try:
        args = script.init_config()
        with T.patched(VAE, "loss", spy), contextlib.redirect_stdout(io.StringIO()):
            try:
                script.main(args)
            except Stop:
                pass
    finally:
        os.chdir(cwd)
    rec["steps"] = st["k"]
    return rec


def first_step_above(a: list[float], b: list[float], tol: float) -> int | None:
    """1-based step of the first relative loss difference above tol (0 for 'bit-identical' with tol=0)."""
    for i, (x, y) in enumerate(zip(a, b), 1):
        if abs(x - y) > tol * abs(y):
            return i
    return None


def summary(rec: dict) -> dict:
    L = rec["loss"]
    out = {}
    for pair, (a, b) in {"original_vs_ours": ("ours", "original"), "ours_vs_ours+1ulp": ("ours+1ulp", "ours")}.items():
        out[pair] = {"first_step_loss_differs": first_step_above(L[a], L[b], 0.0),
                     **{f"first_step_rel_loss_diff_above_{t:g}": first_step_above(L[a], L[b], t) for t in THRESHOLDS},
                     "mean_loss_last_100": [float(np.mean(L[a][-100:])), float(np.mean(L[b][-100:]))]}
    kw = rec["kl_weight"]
    out["kl_weight_max_abs_diff"] = float(max(abs(x - y) for x, y in zip(kw["ours"], kw["original"])))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--code", type=Path, required=True, help="checkout of valdersoul/bn-vae")
    ap.add_argument("--subset", choices=SUBSETS, default="first")
    ap.add_argument("--seed", type=int, default=783435, help="the original's --seed (batch order) and the noise seed")
    ap.add_argument("--steps", type=int, help="stop after this many updates (default: the whole first epoch)")
    ap.add_argument("--every", type=int, default=25, help="parameter distances every this many steps")
    ap.add_argument("--perturb", default="decoder.lstm.weight_hh_l0", help="our parameter whose first entry moves 1 ulp")
    ap.add_argument("--no-freeze-last-row", action="store_true", help="train the last word's decoder row in ours")
    ap.add_argument("--original-clip-order", action="store_true",
                    help="ours sums the parameters' gradient norms for the joint clip in the original's order "
                         "(vae.parameters(): its decoder registers trans_linear before the LSTM, ours init_state after)")
    ap.add_argument("--out", type=Path, help="result JSON (default results[/subset-*]/long_parity__seedN.json)")
    a = ap.parse_args()
    produced_by = provenance_of_run(a.code.resolve())
    torch.set_num_threads(1)
    torch.Tensor.cuda = lambda self, *args, **kw: self
    rec = lockstep(a.code.resolve(), a.subset, a.seed, a.steps, a.every, a.perturb, not a.no_freeze_last_row,
                   a.original_clip_order)
    result = {"about": "original text_anneal_fb.py and ours in lockstep from the same weights, batches and noise "
                       "(reports/parity/long_parity.py)", "subset": a.subset, "seed": a.seed, "perturb": a.perturb,
              "freeze_last_row": not a.no_freeze_last_row, "original_clip_order": a.original_clip_order,
              "produced_by": produced_by, "summary": summary(rec), **rec}
    name = f"long_parity__seed{a.seed}" + ("__original-clip-order" if a.original_clip_order else "") \
        + ("" if a.steps is None else f"__{a.steps}steps")
    out = a.out or subset_results(a.subset) / f"{name}.json"
    write_result(out, result)
    print(json.dumps(result["summary"], indent=1))
    for d in rec["distance"]:
        print(f"step {d['step']:5d}  original vs ours {d['original_vs_ours']['rel_l2']:.3e}   "
              f"ours vs ours+1ulp {d['ours_vs_ours+1ulp']['rel_l2']:.3e}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
