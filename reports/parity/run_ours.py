"""Run collapse-bench on the parity data and budget (the same 40,000 training sentences the original reads, through
the harness's own loader), keep the final epoch's model, and score it as run_original.py scores the original:
IW-NLL (K=500) on test lines 0-499, KL/MI/AU on lines 0-999, and the raw-mu probe on the full test set.
The harness's own probe (standardised mu) is recorded too, as evidence for the standardisation choice.

    python reports/parity/run_ours.py --method bnvae --seed 0
    python reports/parity/run_ours.py --method vanilla --seed 2 --subset first   # issue 24's file: results/subset-first/
"""
from __future__ import annotations

import argparse
import os
import json
import time

import numpy as np
import torch

from collapse_bench import evaluate as ev
from collapse_bench import registry
from collapse_bench.config import EvalConfig, ModelConfig, SizeConfig, TrainConfig
from collapse_bench.data import DataLimits
from collapse_bench.store import provenance
from collapse_bench.context import TrainCallback
from collapse_bench.train import Trainer
from common import (BUDGET, LABEL_SIZES, METHODS, SUBSETS, TRAIN_FILE_SENTENCES, load_parity_corpus, probe_raw_mu,
                    probe_standardised, provenance_of_run, subset_results, subset_work, write_result)


def parity_config(threads: int, encoder_init: str, subset: str = "draw") -> SizeConfig:
    b = BUDGET
    return SizeConfig(
        "parity",
        ModelConfig(emb=b["emb"], enc_hidden=b["hidden"], dec_hidden=b["hidden"], nz=b["nz"], encoder_init=encoder_init),
        TrainConfig(epochs=b["epochs"], batch_size=b["batch_size"], lr=b["lr"], kl_start=b["kl_start"],
                    warm_up=b["warm_up"], threads=threads, select="last"),
        EvalConfig(iw_samples=b["iw_samples"]),
        # the subset "first" is cut from the whole pool by load_parity_corpus, not by a limit
        DataLimits(max_train=TRAIN_FILE_SENTENCES if subset == "draw" else None))


def build_method(parity_name: str, extra: dict[str, str] | None = None):
    """Our method for a parity row (METHODS[...]["ours"]), with optional extra params as strings."""
    name, params = METHODS[parity_name]["ours"]
    cls = registry.get(name)
    return cls(cls.Params.from_strings(cls.name, {**{k: str(v) for k, v in params.items()}, **(extra or {})}))


class EpochClock(TrainCallback):
    """When each epoch's updates ended (its validation starts)."""

    def __init__(self):
        self.times: list[float] = []

    def before_validation(self, epoch: int) -> None:
        self.times.append(time.perf_counter())


def fixed_phase_agg(method, epochs: int):
    """Agg-VAE whose aggressive phase lasts exactly `epochs` epochs (no MI rule), as the original run it is compared
    with ended its phase."""
    class FixedPhaseAgg(type(method)):
        def on_epoch_end(self, ctx, epoch: int, point: dict) -> None:
            if self.aggressive:
                self.aggressive_epochs = epoch
                self.aggressive = epoch < epochs
    return FixedPhaseAgg(method.params)


def score(method, model, corpus, cfg: SizeConfig, dev) -> tuple[dict, float]:
    """The parity evaluation of a trained model: IW-NLL (K=500) on test lines 0-499, KL/MI/AU on lines 0-999, the
    raw-mu probe (the original's protocol) and the harness's standardised probe on the full test set."""
    t1 = time.perf_counter()
    model.eval()
    test = corpus.test
    t500, t1000 = test.subset(np.arange(BUDGET["iw_sentences"])), test.subset(np.arange(BUDGET["latent_sentences"]))
    with torch.no_grad():
        nll = ev.iw_nll(method, model, t500, BUDGET["iw_samples"], cfg.eval.iw_chunk_rows, cfg.eval.batch_size, dev)
        rec, kl = ev.elbo_terms(method, model, t1000, cfg.eval.batch_size, dev)
        stats = ev.latent_stats(ev.encode(method, model, t1000, cfg.eval.batch_size, dev), cfg.eval.au_threshold)
        splits = {"valid": corpus.valid, "test": test, **{f"train{n}": corpus.label_subsets[n] for n in LABEL_SIZES}}
        feats = {k: ev.probe_features(method, model, s, cfg.eval.batch_size, dev) for k, s in splits.items()}
        labels = {k: s.labels for k, s in splits.items()}
    metrics = {"iw_nll": float(nll.mean()), "iw_ppl": ev.perplexity(nll, t500), "kl": float(kl.mean()),
               "mi": stats.mi, "au": stats.au, "elbo_nll": float((rec + kl).mean()),
               "probe_raw_mu": probe_raw_mu(feats, labels), "probe_standardised": probe_standardised(feats, labels)}
    return metrics, time.perf_counter() - t1


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--method", required=True, choices=sorted(METHODS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tag", default="", help="suffix of the result name, e.g. for an ablation")
    ap.add_argument("--set", action="append", default=[], help="extra method param NAME=VALUE")
    ap.add_argument("--init", choices=("pytorch", "uniform"), help="encoder init (default: the original's)")
    ap.add_argument("--subset", choices=SUBSETS, default="draw", help="which 40,000 training sentences (common.SUBSETS)")
    ap.add_argument("--quick", action="store_true", help="a tiny budget to check this script, results not kept")
    ap.add_argument("--agg-aggressive-epochs", type=int,
                    help="ablation (agg only): end the aggressive phase after this many epochs instead of by the MI "
                         "rule, e.g. to replay the original's decision (its rule reads a different MI estimator)")
    a = ap.parse_args()
    BUDGET.update(METHODS[a.method].get("budget", {}))
    if a.quick:
        BUDGET.update(train_sentences=300, epochs=1, iw_samples=5, iw_sentences=20, latent_sentences=50)
        a.tag += "-quick"
    if a.agg_aggressive_epochs is not None:
        if a.method != "agg":
            raise SystemExit("--agg-aggressive-epochs applies to --method agg only")
        a.tag += f"-aggressive{a.agg_aggressive_epochs}"
    out = subset_results(a.subset) / f"ours{a.tag}__{a.method}__seed{a.seed}.json"
    if out.exists() and not a.quick:
        print(f"{out} exists; delete it to rerun")
        return
    torch.set_num_threads(a.threads)
    cfg = parity_config(a.threads, a.init or METHODS[a.method]["init"], a.subset)
    method = build_method(a.method, dict(kv.split("=", 1) for kv in a.set))
    produced_by = provenance_of_run()
    corpus = load_parity_corpus(a.subset)
    if BUDGET["train_sentences"] < len(corpus.train):   # a smaller budget: the head of the parity training file
        corpus.train = corpus.train.subset(np.arange(BUDGET["train_sentences"]))
    if a.agg_aggressive_epochs is not None:
        method = fixed_phase_agg(method, a.agg_aggressive_epochs)
    epoch_ends = EpochClock()
    trainer = Trainer(method, cfg, corpus, seed=a.seed, callbacks=[epoch_ends])
    t0 = time.perf_counter()
    timing = trainer.fit()
    train_wall = time.perf_counter() - t0
    if not a.quick:      # the final model, for later analysis (as the original's driver keeps its checkpoints)
        run_dir = subset_work(a.subset) / f"ours{a.tag}" / f"{a.method}__seed{a.seed}"
        run_dir.mkdir(parents=True, exist_ok=True)
        torch.save(trainer.model.state_dict(), run_dir / "model.pt")
    metrics, eval_seconds = score(method, trainer.model, corpus, cfg, trainer.device)
    record = {"implementation": "ours", "method": a.method, "params": method.params.to_dict(), "seed": a.seed,
              "subset": a.subset, "produced_by": produced_by, "train_sentences": len(corpus.train),
              "budget": BUDGET, "config": cfg.to_dict(),
              "metrics": metrics,
              "timing": {"train_wall_seconds": train_wall, "epoch_seconds": np.diff([t0] + epoch_ends.times).tolist(),
                         "eval_seconds": eval_seconds, "threads": a.threads, **timing},
              "curves": trainer.curves, "provenance": provenance(),
              "harness_commit": os.environ.get("PARITY_COMMIT")}
    if not a.quick:
        write_result(out, record)
    print(json.dumps(record["metrics"], indent=1))


if __name__ == "__main__":
    main()
