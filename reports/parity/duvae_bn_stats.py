"""How much of a DU-VAE model's test KL is its BN running statistics: each final model of the parity runs (the
original's checkpoints read into our model, as score_original_with_ours.py does; ours as saved), its KL on test
lines 0-999 split into the mean term 0.5·|μ|² and the rest, measured twice: with the BN running statistics the
model ended with (what both evaluations score: momentum 0.1, so mostly the last ~10 training batches of the run)
and with statistics re-estimated over the whole training file (PyTorch's cumulative average, momentum None; the
encoder otherwise untouched). If the two sides' KLs part only in the first, the difference is where the running
statistics stood when training stopped, not the code. The IW-NLL (K = 500, test lines 0-499) and the -ELBO (lines
0-999) are measured both ways too, by our evaluation: how much of each side's NLL is the same effect.

    python reports/parity/duvae_bn_stats.py      # every duvae model found; results/duvae_bn_stats.json
"""
from __future__ import annotations

import json

import numpy as np
import torch

from collapse_bench import evaluate as ev
from collapse_bench.data import bucket_batches
from common import BUDGET, RESULTS, WORK, load_parity_corpus, write_result
from run_ours import build_method, parity_config
from score_original_with_ours import original_in_ours


def kl_terms(method, model, split, cfg) -> dict[str, float]:
    with torch.no_grad():
        post = ev.encode(method, model.eval(), split, cfg.eval.batch_size, torch.device("cpu"))
    mean_term = 0.5 * post.mu.pow(2).sum(-1)
    return {"kl": float(post.kl().mean()), "mean_term": float(mean_term.mean()),
            "rest": float((post.kl() - mean_term).mean())}


def nll_terms(method, model, corpus, cfg, seed: int) -> dict[str, float]:
    """The parity table's IW-NLL and -ELBO of this model, as run_ours.py measures them (seeded alike)."""
    dev = torch.device("cpu")
    t500 = corpus.test.subset(np.arange(BUDGET["iw_sentences"]))
    t1000 = corpus.test.subset(np.arange(BUDGET["latent_sentences"]))
    torch.manual_seed(seed)
    with torch.no_grad():
        nll = ev.iw_nll(method, model.eval(), t500, BUDGET["iw_samples"], cfg.eval.iw_chunk_rows,
                        cfg.eval.batch_size, dev)
        rec, kl = ev.elbo_terms(method, model, t1000, cfg.eval.batch_size, dev)
    return {"iw_nll": float(nll.mean()), "elbo_nll": float((rec + kl).mean())}


def reestimate_bn(model, corpus, cfg) -> None:
    """BN's running mean and variance of the raw means over every training batch (cumulative average)."""
    bn = model.head.bn
    bn.reset_running_stats()
    momentum, bn.momentum = bn.momentum, None
    model.train()
    with torch.no_grad():
        for batch in bucket_batches(corpus.train, cfg.train.batch_size, seed=0):
            if batch.size >= 16:                  # as training skips them
                model.head(model.encoder(batch.tokens))
    bn.momentum = momentum
    model.eval()


def models(method, cfg, vocab_size: int):
    """(implementation, seed, our model holding its weights) for every final DU-VAE model on disk."""
    for ckpt in sorted((WORK / "original").glob(f"duvae__seed*/model_ckpt_{BUDGET['epochs'] - 1}.pt")):
        yield "original", int(ckpt.parent.name.split("seed")[1]), original_in_ours("duvae", method, cfg, vocab_size,
                                                                                     ckpt)
    for path in sorted((WORK / "ours").glob("duvae__seed*/model.pt")):
        model = method.build_model(cfg.model, vocab_size)
        model.load_state_dict(torch.load(path))
        yield "ours", int(path.parent.name.split("seed")[1]), model


def main() -> None:
    torch.set_num_threads(1)
    cfg = parity_config(1, "pytorch")
    method = build_method("duvae")
    corpus = load_parity_corpus("draw")
    test = corpus.test.subset(np.arange(BUDGET["latent_sentences"]))
    rows = []
    for impl, seed, model in models(method, cfg, len(corpus.vocab)):
        torch.manual_seed(seed)
        final = kl_terms(method, model, test, cfg) | nll_terms(method, model, corpus, cfg, seed)
        reestimate_bn(model, corpus, cfg)
        again = kl_terms(method, model, test, cfg) | nll_terms(method, model, corpus, cfg, seed)
        rows.append({"implementation": impl, "seed": seed, "final_running_stats": final,
                     "reestimated_running_stats": again})
        print(rows[-1])
    write_result(RESULTS / "duvae_bn_stats.json", {"about": __doc__.split("\n\n")[0], "runs": rows})


if __name__ == "__main__":
    main()
