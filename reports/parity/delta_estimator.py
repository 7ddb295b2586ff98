"""How much of a δ-VAE's IW-NLL is the estimator: diagnostics of one trained δ-VAE (ours or the original's, both
measured by our code) on the IW-NLL lines (test lines 0-499).

A collapsed δ-VAE's posterior sits at σ a little above σ_l = 0.702 (δ = 0.1), close to 1/√2, where the importance
weights p(z)/q(z|x) of the IW estimator have an unbounded second moment. So with K = 500 samples from q the
estimate -log mean_k w_k of -log p(x) is biased upwards by an amount that depends on where σ and μ sit, which
training noise decides. Recorded per model:
- sigma / mu: where the posterior sits (per-unit means over the sentences), and the share of (sentence, unit) with σ > 1;
- latent_iw_bias: the estimator's bias for a decoder that ignores z, computed in latent space alone
  (-log mean_k p(z_k)/q(z_k|x), z_k ~ q, K = 500; the true value is 0), averaged over 20 repetitions;
- recon_q: E_q[-log p(x|z)] (20 samples per sentence);
- iw_nll_prior: the IW estimate with the prior as proposal (K = 500): exact for a decoder that ignores z, and of low
  variance for a nearly collapsed one, where q-proposals carry latent_iw_bias.

    python reports/parity/delta_estimator.py --impl original --seed 0      # the original's final checkpoint
    python reports/parity/delta_estimator.py --impl ours --seed 2          # ours' model.pt (run_ours.py keeps it)
    python reports/parity/delta_estimator.py --study short-yelp            # the study's δ-VAE cell, seed 0, retrained
"""
from __future__ import annotations

import argparse
import json
import math

import numpy as np
import torch

from collapse_bench import evaluate as ev
from collapse_bench.data import load_corpus
from common import BUDGET, HERE, METHODS, RESULTS, WORK, data_dir, write_result
from run_ours import build_method, parity_config
from score_original_with_ours import final_checkpoint, original_in_ours

SAMPLES = BUDGET["iw_samples"]


def unit_means(x: np.ndarray) -> list[float]:
    """Min, mean and max over units of each unit's mean over the sentences."""
    m = x.mean(0)
    return [float(m.min()), float(m.mean()), float(m.max())]


@torch.no_grad()
def latent_iw_bias(post, samples: int, repeats: int) -> np.ndarray:
    """Per sentence: E[-log mean_k p(z_k)/q(z_k|x)] over `repeats` draws of `samples` z_k ~ q(z|x)."""
    out = []
    for _ in range(repeats):
        z = post.rsample(samples)                                               # [N, K, nz]
        log_w = post.prior_log_prob(z) - post.log_prob(z.transpose(0, 1)).T     # [N, K]
        out.append(-(torch.logsumexp(log_w, 1) - math.log(samples)))
    return torch.stack(out).mean(0).double().numpy()


@torch.no_grad()
def prior_proposal_iw_nll(model, split, nz: int, samples: int, batch_size: int, chunk: int = 50):
    """Per sentence: the IW estimate of -log p(x) with the prior N(0, I) as proposal (its weights are p(x|z_k))."""
    out = np.zeros(len(split))
    for b in ev._buckets(split, batch_size, "cpu"):
        log_px_z = [model.decoder.log_prob(b.tokens, torch.randn(b.size, min(chunk, samples - k), nz))
                    for k in range(0, samples, chunk)]
        ev._scatter(out, b, -(torch.logsumexp(torch.cat(log_px_z, 1), 1) - math.log(samples)))
    return out


@torch.no_grad()
def recon_under_q(method, model, split, samples: int, batch_size: int) -> np.ndarray:
    out = np.zeros(len(split))
    for b in ev._buckets(split, batch_size, "cpu"):
        post = method.eval_posterior(model, b.tokens)
        ev._scatter(out, b, -model.decoder.log_prob(b.tokens, post.rsample(samples)).mean(1))
    return out


def study_cell(dataset: str) -> None:
    """Retrain the study's seed-0 δ-VAE cell of `dataset` (deterministic: its IW-NLL must equal the committed cell's)
    and record where its posterior sits and the estimator's latent-space bias at the study's K and at K = 500."""
    from collapse_bench.cell import CellSpec, build_trainer

    out = RESULTS / "delta_estimator" / f"study__{dataset}__seed0.json"
    spec = CellSpec("delta", dataset, "study", 0, params={"delta": 0.1}, data_dir=str(data_dir()))
    committed = json.loads((HERE.parent / "study" / "results" / f"{spec.cell}.json").read_text())["metrics"]["nll"]
    trainer = build_trainer(spec)
    method, cfg, corpus = trainer.method, trainer.cfg, trainer.corpus
    trainer.fit()                                       # as cell.run_cell, which scores right after
    model = trainer.model.eval()
    lines = ev.iw_lines(corpus.test, cfg.eval.iw_sentences)     # evaluate.score's IW-NLL lines
    with torch.no_grad():
        nll = float(ev.iw_nll(method, model, lines, cfg.eval.iw_samples, cfg.eval.iw_chunk_rows, cfg.eval.batch_size,
                              "cpu").mean())
        post = ev.encode(method, model, lines, cfg.eval.batch_size, "cpu")
    if nll != committed:
        raise SystemExit(f"the retrained cell does not reproduce the committed one: IW-NLL {nll} against {committed}")
    sigma = post.logvar.mul(0.5).exp().numpy()
    torch.manual_seed(0)
    metrics = {"nll": nll, "iw_samples": cfg.eval.iw_samples,
               "sigma_unit_means": unit_means(sigma),
               **{f"latent_iw_bias_k{k}": float(latent_iw_bias(post, k, repeats=20).mean())
                  for k in (cfg.eval.iw_samples, SAMPLES)}}
    write_result(out, {"implementation": "study", "method": "delta", "dataset": dataset, "seed": 0, "cell": spec.cell,
                       "lines": len(lines), "metrics": metrics})
    print(json.dumps(metrics, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--study", metavar="DATASET", help="retrain the study's seed-0 δ-VAE cell of DATASET instead")
    ap.add_argument("--impl",
                    help="original / original-shuffled (run_original.py), or ours / ours<tag> (run_ours.py --tag)")
    ap.add_argument("--seed", type=int)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    if a.study:
        return study_cell(a.study)
    if a.impl is None or a.seed is None:
        ap.error("give --impl and --seed (or --study DATASET)")
    out = RESULTS / "delta_estimator" / f"{a.impl}__delta__seed{a.seed}.json"
    if out.exists():
        print(f"{out} exists; delete it to rerun")
        return
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    cfg = parity_config(a.threads, METHODS["delta"]["init"])
    method = build_method("delta")
    corpus = load_corpus("short-yelp", data_dir(), cfg.limits, seed=0)
    if a.impl.startswith("original"):
        model = original_in_ours("delta", method, cfg, len(corpus.vocab), final_checkpoint("delta", a.seed, a.impl))
    else:
        path = WORK / a.impl / f"delta__seed{a.seed}" / "model.pt"
        if not path.exists():
            raise SystemExit(f"no model at {path}: run run_ours.py --method delta --seed {a.seed} first")
        model = method.build_model(cfg.model, len(corpus.vocab))
        model.load_state_dict(torch.load(path))
    model.eval()
    lines = corpus.test.subset(np.arange(BUDGET["iw_sentences"]))
    post = ev.encode(method, model, lines, cfg.eval.batch_size, "cpu")
    sigma, mu = post.logvar.mul(0.5).exp().numpy(), post.mean.numpy()
    metrics = {
        "sigma_unit_means": unit_means(sigma),
        "mu_unit_means": unit_means(mu),
        "share_sigma_above_1": float((sigma > 1).mean()),
        "latent_iw_bias": float(latent_iw_bias(post, SAMPLES, repeats=20).mean()),
        "recon_q": float(recon_under_q(method, model, lines, 20, cfg.eval.batch_size).mean()),
        "iw_nll_prior": float(prior_proposal_iw_nll(model, lines, cfg.model.nz, SAMPLES, cfg.eval.batch_size).mean()),
    }
    write_result(out, {"implementation": a.impl, "method": "delta", "seed": a.seed, "lines": len(lines),
                       "samples": SAMPLES, "metrics": metrics})
    print(json.dumps(metrics, indent=1))


if __name__ == "__main__":
    main()
