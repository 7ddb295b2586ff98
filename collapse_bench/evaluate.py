"""The scoring protocol of He et al. 2019 / Li et al. 2019: IW-NLL, PPL, ELBO, KL, MI, AU.

Everything runs in eval mode (no dropout; BN uses running statistics) over single-length buckets, batched
over sentences and importance samples together; there is no Python loop over sentences or samples.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .config import EvalConfig
from .data import Batch, Corpus, Split, bucket_batches
from .method import Method
from .model import TextVAE, precision
from .posterior import Posterior
from .probe import draw_subsets, probe

MI_ESTIMATOR = "full-set mixture (Li et al. 2019): log q(z) mixes q(z|x_j) over the whole evaluation set"


def _buckets(split: Split, batch_size: int, device) -> list[Batch]:
    return [b.to(device) for b in bucket_batches(split, batch_size)]


def _scatter(out: np.ndarray, batch: Batch, values: torch.Tensor) -> None:
    out[batch.index] = values.detach().cpu().double().numpy()


@torch.no_grad()
def encode(method: Method, model: TextVAE, split: Split, batch_size: int, device) -> Posterior:
    """Evaluation posterior for every sentence of the split, in split order."""
    batches = _buckets(split, batch_size, device)
    posts = [method.eval_posterior(model, b.tokens) for b in batches]
    order = torch.as_tensor(np.argsort(np.concatenate([b.index for b in batches])), device=device)
    return Posterior.cat(posts)[order]


def encode_batches(method: Method, model: TextVAE, split: Split, batch_size: int, device) -> list[Posterior]:
    """Evaluation posterior of each single-length batch of at most batch_size (He et al.'s batching)."""
    return [method.eval_posterior(model, b.tokens) for b in _buckets(split, batch_size, device)]


SCORE_SEED = 7919         # scoring draws from torch seeded at SCORE_SEED + the cell's seed
IW_SUBSET_SEED = 0      # eval.iw_sentences: the same test sentences for every cell, whatever its run seed


@torch.no_grad()
def elbo_terms(method: Method, model: TextVAE, split: Split, batch_size: int, device) -> tuple[np.ndarray, np.ndarray]:
    """Per-sentence 1-sample reconstruction -log p(x|z) and closed-form KL (the LM: exact NLL and 0)."""
    rec, kl = np.zeros(len(split)), np.zeros(len(split))
    for b in _buckets(split, batch_size, device):
        if not model.has_latent:
            _scatter(rec, b, -model.decoder.log_prob(b.tokens, None)[:, 0])
            continue
        post = method.eval_posterior(model, b.tokens)
        _scatter(rec, b, -model.decoder.log_prob(b.tokens, post.rsample(1))[:, 0])
        _scatter(kl, b, post.kl())
    return rec, kl


@torch.no_grad()
def iw_nll(method: Method, model: TextVAE, split: Split, samples: int, chunk_rows: int, batch_size: int,
           device) -> np.ndarray:
    """Per-sentence importance-weighted -log p(x) with K samples from q(z|x) (exact for the LM).

    log p(x) ~= logsumexp_k [log p(z_k) + log p(x|z_k) - log q(z_k|x)] - log K. Each decoder call scores
    at most `chunk_rows` (sentence, sample) rows: a whole bucket of sentences times a slice of the samples.
    """
    out = np.zeros(len(split))
    for b in _buckets(split, batch_size, device):
        if not model.has_latent:
            _scatter(out, b, -model.decoder.log_prob(b.tokens, None)[:, 0])
            continue
        post = method.eval_posterior(model, b.tokens)
        for rows in torch.arange(b.size).split(max(1, chunk_rows)):
            sub, tokens = post[rows], b.tokens[rows]
            per_call = max(1, chunk_rows // len(rows))
            log_w = []
            for k in range(0, samples, per_call):
                z = sub.rsample(min(per_call, samples - k))                      # [B, k, nz]
                log_q = sub.log_prob(z.transpose(0, 1)).T                        # [B, k]
                log_w.append(sub.prior_log_prob(z) + model.decoder.log_prob(tokens, z) - log_q)
            ll = torch.logsumexp(torch.cat(log_w, 1), 1) - math.log(samples)
            out[b.index[rows.numpy()]] = -ll.cpu().double().numpy()
    return out


@torch.no_grad()
def mutual_information(post: Posterior, chunk: int = 1024) -> float:
    """I_q(x;z) = E_x E_q[log q(z|x)] - E_x E_q[log q(z)], with one z per x and q(z) mixed over the whole set.

    The estimate is at most log N for N sentences.
    """
    n = post.mean.shape[0]
    z = post.rsample(1)[:, 0]
    log_qz = torch.cat([torch.logsumexp(post.cross_log_prob(zc), 1) for zc in z.split(chunk)]) - math.log(n)
    return float((-post.entropy()).mean() - log_qz.mean())


@torch.no_grad()
def mutual_information_per_batch(posts: list[Posterior]) -> float:
    """He et al.'s estimator (`calc_mi` in jxhe/vae-lagging-encoder): `mutual_information` inside each batch, q(z)
    mixed over that batch only, averaged with batch-size weights. At most log(batch size): a different quantity
    from the full-set estimate, and the two can disagree on whether MI rose between two epochs."""
    sizes = [p.mean.shape[0] for p in posts]
    return sum(mutual_information(p) * n for p, n in zip(posts, sizes)) / sum(sizes)


@torch.no_grad()
def active_units(post: Posterior, threshold: float = 0.01) -> tuple[int, np.ndarray]:
    """Dimensions whose posterior mean varies across the data: Var_x(E_q[z_j]) >= threshold (unbiased); the
    posterior family picks the feature (vMF: its direction mu, as published)."""
    f = post.au_feature
    var = f.double().var(0, unbiased=True).cpu().numpy() if f.shape[0] > 1 else np.zeros(f.shape[1])
    return int((var >= threshold).sum()), var


@dataclass
class LatentStats:
    kl: float
    mi: float
    au: int


def latent_stats(post: Posterior, au_threshold: float) -> LatentStats:
    return LatentStats(kl=float(post.kl().mean()), mi=mutual_information(post), au=active_units(post, au_threshold)[0])


def perplexity(nll: np.ndarray, split: Split) -> float:
    return float(math.exp(nll.sum() / split.num_tokens()))


def probe_features(method: Method, model: TextVAE, split: Split, batch_size: int, device) -> np.ndarray:
    return encode(method, model, split, batch_size, device).mean.cpu().double().numpy()


def iw_index(test_sentences: int, iw_sentences: int | None) -> np.ndarray:
    """Positions in the test split of the sentences IW-NLL is measured on: all, or a fixed seeded subset of
    `iw_sentences` (the same for every cell, whatever its run seed, so per-sentence figures pair across cells)."""
    if iw_sentences is None or iw_sentences >= test_sentences:
        return np.arange(test_sentences)
    return np.sort(np.random.default_rng(IW_SUBSET_SEED).choice(test_sentences, iw_sentences, replace=False))


def iw_lines(test: Split, iw_sentences: int | None) -> Split:
    """The test sentences IW-NLL is measured on (`iw_index`)."""
    if iw_sentences is None or iw_sentences >= len(test):
        return test
    return test.subset(iw_index(len(test), iw_sentences))


@dataclass
class Scores:
    """A scoring's metrics and the evidence behind them: the per-sentence IW-NLL on the test sentences `iw_index`
    and every test sentence's posterior mean (None without a latent)."""
    metrics: dict
    nll: np.ndarray
    iw_index: np.ndarray
    test_mean: np.ndarray | None = None
    precision: dict | None = None       # the precision asked for and used, and the bf16 check (`precision_check`)


def score_all(method: Method, model: TextVAE, corpus: Corpus, cfg: EvalConfig, device, seed: int) -> Scores:
    """Every test metric of the protocol for a trained model (eval mode, best checkpoint), with its evidence.
    Seeded from the cell's seed, so scoring a kept model again gives the same figures. Asked for bf16, it first
    checks bf16 against fp32 on a fixed subset (`precision_check`) and scores in fp32 where the drift is not
    negligible."""
    model.eval()
    check = precision_check(method, model, corpus, cfg, device, seed) if cfg.precision == "bf16" else None
    used = "bf16" if check and check["within_bound"] else "fp32"
    torch.manual_seed(SCORE_SEED + seed)
    with precision(device, used):
        scores = _score(method, model, corpus, cfg, device, seed)
    scores.precision = {"asked": cfg.precision, "used": used, "check": check}
    return scores


def precision_check(method: Method, model: TextVAE, corpus: Corpus, cfg: EvalConfig, device, seed: int) -> dict:
    """Per-sentence IW-NLL of the first `bf16_check_sentences` IW-NLL sentences in fp32 and in bf16, the same
    random draws for both: their mean and largest |difference| (nats), and whether the mean is within
    `bf16_bound`."""
    iw_test = iw_lines(corpus.test, cfg.iw_sentences)
    subset = iw_test.subset(np.arange(min(cfg.bf16_check_sentences, len(iw_test))))
    nll = {}
    for name in ("fp32", "bf16"):
        torch.manual_seed(SCORE_SEED + seed)
        with precision(device, name):
            nll[name] = iw_nll(method, model, subset, cfg.iw_samples, cfg.iw_chunk_rows, cfg.batch_size, device)
    diff = np.abs(nll["bf16"] - nll["fp32"])
    return {"sentences": len(subset), "mean_abs_diff": float(diff.mean()), "max_abs_diff": float(diff.max()),
            "fp32_mean_nll": float(nll["fp32"].mean()), "bound": cfg.bf16_bound,
            "within_bound": bool(diff.mean() <= cfg.bf16_bound)}


def score(method: Method, model: TextVAE, corpus: Corpus, cfg: EvalConfig, device, seed: int) -> dict:
    """Every test metric of the protocol for a trained model (`score_all`'s metrics)."""
    return score_all(method, model, corpus, cfg, device, seed).metrics


def _score(method: Method, model: TextVAE, corpus: Corpus, cfg: EvalConfig, device, seed: int) -> Scores:
    test = corpus.test
    index = iw_index(len(test), cfg.iw_sentences)
    iw_test = iw_lines(test, cfg.iw_sentences)
    nll = iw_nll(method, model, iw_test, cfg.iw_samples, cfg.iw_chunk_rows, cfg.batch_size, device)
    rec, kl = elbo_terms(method, model, test, cfg.batch_size, device)
    metrics = {"nll": float(nll.mean()), "ppl": perplexity(nll, iw_test), "iw_sentences": len(iw_test), "elbo": float((rec + kl).mean()),
               "recon": float(rec.mean()), "kl": float(kl.mean()), "mi": 0.0, "au": 0, "probe": {},
               "iw_samples": cfg.iw_samples if model.has_latent else 0, "mi_estimator": MI_ESTIMATOR,
               "test_sentences": len(test), "has_latent": model.has_latent}
    if not model.has_latent:
        return Scores(metrics, nll, index)
    post = encode(method, model, test, cfg.batch_size, device)
    stats = latent_stats(post, cfg.au_threshold)
    metrics.update(mi=stats.mi, au=stats.au)
    metrics["probe"] = _probe(method, model, corpus, cfg, device, seed)
    return Scores(metrics, nll, index, post.mean.detach().float().cpu().numpy())


def _probe(method: Method, model: TextVAE, corpus: Corpus, cfg: EvalConfig, device, seed: int) -> dict:
    test = corpus.test
    if corpus.num_classes and test.labels is not None and corpus.valid.labels is not None:
        feats = lambda split: probe_features(method, model, split, cfg.batch_size, device)  # noqa: E731
        valid, tst = (feats(corpus.valid), corpus.valid.labels), (feats(test), test.labels)
        if corpus.label_subsets:   # fixed subsets (Li et al.): one draw each
            sizes = [n for n in cfg.probe_labels if n in corpus.label_subsets]
            pools = [corpus.label_subsets[n] for n in sizes]
            x = np.concatenate([feats(p) for p in pools]) if pools else np.zeros((0, 1))
            y = np.concatenate([p.labels for p in pools]) if pools else np.zeros(0, dtype=np.int64)
            starts = np.cumsum([0] + [len(p) for p in pools])
            draws = {n: [np.arange(starts[i], starts[i + 1])] for i, n in enumerate(sizes)}
        else:
            draws = draw_subsets(len(corpus.train), cfg.probe_labels, cfg.probe_repeats, seed)
            used = np.unique(np.concatenate([i for d in draws.values() for i in d])) if draws else np.zeros(0, int)
            x_used = feats(corpus.train.subset(used)) if len(used) else np.zeros((0, 1))
            x = np.zeros((len(corpus.train), x_used.shape[1]))
            x[used] = x_used
            y = corpus.train.labels
        return probe(x, y, draws, valid, tst)
    return {}
