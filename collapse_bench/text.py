"""The text itself: what one trained model writes, for a reader to inspect (the evaluate step).

Posterior collapse is a statement about text: a collapsed model writes the same sentence whatever it is asked to
reconstruct. For one trained model this module writes (`text_evidence`, the record's `text` key; ARCHITECTURE.md):

* reconstructions of `SENTENCES` fixed test sentences (drawn with `SENTENCE_SEED`: the same sentences for every
  cell of a dataset and size): greedy decoding from the mode of q(z|x) (the posterior mean for a Gaussian; the
  method's `eval_posterior`), and sampled decoding (temperature 1) from one z ~ q(z|x);
* `SAMPLES` sentences from z ~ p(z), decoded greedily (their differences come from z alone) and sampled (from z
  and the decoder's own noise), `SHOWN` of each kept, and their diversity: distinct-1/2 and self-BLEU (below);
* an interpolation: greedy decoding at `INTERPOLATION` points on the straight line between the first two sentences'
  modes (vMF: each point put back on the sphere, where its prior lives).

A model without a latent (the LM) has nothing to reconstruct or interpolate: its record says so, and its samples
are the decoder's alone. A method trained with no prior term (`Method.generative` False: the AE) has no samples:
z ~ p(z) is not where its codes lie. Cells run it for the first seed of a board (`TEXT_SEED`); it is seeded, so a
rerun writes the same text. Methods never import this module.

Diversity, as ControlVAE (Shao et al. 2020) reports it: distinct-n = unique n-grams / n-grams over all samples;
self-BLEU = each sample's BLEU-4 against all the other samples as references, averaged (Zhu et al. 2018's Texygen,
which ControlVAE used: NLTK's `sentence_bleu` with `SmoothingFunction().method1`, written out here in `bleu`).
"""
from __future__ import annotations

import math
import time
from collections import Counter
from typing import Sequence

import numpy as np
import torch

from .config import SizeConfig
from .data import Corpus, Vocab
from .data.vocab import EOS
from .evaluate import encode
from .method import Method
from .model import TextVAE, precision

TEXT_SEED = 0           # the run seed whose cell writes text: the first seed of every board (`run` starts at 0)
SENTENCE_SEED = 0       # which test sentences are reconstructed: the same for every cell, whatever its run seed
SENTENCES = 5
SAMPLES = 100           # z ~ p(z) decoded for the diversity figures
SHOWN = 5               # of those, kept in the record
INTERPOLATION = 5       # points from the first sentence's z to the second's, ends included
BLEU_ORDER = 4
EPSILON = 0.1           # NLTK's method1: a zero n-gram match count becomes EPSILON
DECODING = {"greedy": "the argmax token at every step", "sampled": "a draw from the softmax at temperature 1"}
DIVERSITY = (f"over {SAMPLES} samples: unique = different sentences; distinct-n = unique n-grams / n-grams; "
             f"self-BLEU = BLEU-{BLEU_ORDER} of each sample against the other samples (clipped counts, closest-length "
             f"brevity penalty, NLTK's smoothing method1: a zero match count of an order counts as {EPSILON}), "
             f"averaged")


# ------------------------------------------------------------------------------------- diversity (pure Python)

def ngrams(words: Sequence[str], n: int) -> Counter:
    return Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))


def distinct_n(sentences: Sequence[Sequence[str]], n: int) -> float | None:
    """Unique n-grams / n-grams over all the sentences (None when they hold no n-gram)."""
    total: Counter = Counter()
    for s in sentences:
        total.update(ngrams(s, n))
    count = sum(total.values())
    return len(total) / count if count else None


def bleu(hypothesis: Sequence[str], references: Sequence[Sequence[str]], max_n: int = BLEU_ORDER) -> float:
    """Sentence BLEU-max_n with uniform weights, as NLTK's `sentence_bleu(references, hypothesis,
    smoothing_function=SmoothingFunction().method1)`: precisions of n-gram counts clipped by their most frequent
    occurrence in any one reference, over max(1, hypothesis n-grams); 0 if no unigram matches; a zero count of a
    higher order counts as EPSILON; brevity penalty exp(1 - r/c) against the reference length closest to c
    (the shorter on a tie) when c <= r."""
    refs = [ngrams_upto(r, max_n) for r in references]
    best = [{g: max(r[n].get(g, 0) for r in refs) for g in ngrams(hypothesis, n + 1)} for n in range(max_n)]
    return _bleu(hypothesis, best, [len(r) for r in references], max_n)


def ngrams_upto(words: Sequence[str], max_n: int) -> list[Counter]:
    return [ngrams(words, n) for n in range(1, max_n + 1)]


def _bleu(hypothesis: Sequence[str], ref_max: list[dict], ref_lengths: Sequence[int], max_n: int) -> float:
    """BLEU from the hypothesis and, per order, each of its n-grams' largest count in any one reference."""
    c = len(hypothesis)
    log_p = 0.0
    for n in range(1, max_n + 1):
        counts = ngrams(hypothesis, n)
        matched = sum(min(k, ref_max[n - 1].get(g, 0)) for g, k in counts.items())
        if n == 1 and matched == 0:
            return 0.0
        log_p += math.log((matched or EPSILON) / max(1, sum(counts.values()))) / max_n
    r = min(ref_lengths, key=lambda length: (abs(length - c), length))
    penalty = 1.0 if c > r else math.exp(1 - r / c)
    return penalty * math.exp(log_p)


def self_bleu(sentences: Sequence[Sequence[str]], max_n: int = BLEU_ORDER) -> float | None:
    """The mean over sentences of `bleu(sentence, all the other sentences)` (None for fewer than two). Each
    n-gram's largest count among the others comes from its two largest counts over all sentences, so the cost is
    linear in the number of sentences, not quadratic."""
    if len(sentences) < 2:
        return None
    counts = [ngrams_upto(s, max_n) for s in sentences]
    top: list[dict] = [{} for _ in range(max_n)]          # n-gram -> (largest count, its sentence, second largest)
    for i, per_order in enumerate(counts):
        for n, c in enumerate(per_order):
            for g, k in c.items():
                a, j, b = top[n].get(g, (0, -1, 0))
                top[n][g] = (k, i, a) if k > a else (a, j, max(b, k))
    lengths = [len(s) for s in sentences]
    scores = []
    for i, s in enumerate(sentences):
        others = [{g: (a if j != i else b) for g in counts[i][n] for a, j, b in [top[n][g]]} for n in range(max_n)]
        scores.append(_bleu(s, others, lengths[:i] + lengths[i + 1:], max_n))
    return sum(scores) / len(scores)


def diversity(sentences: Sequence[Sequence[str]]) -> dict[str, float | int | None]:
    """distinct-1/2, self-BLEU, and how many different sentences there are (`unique`: an empty sentence has no
    n-gram, so a model that writes nothing has no distinct-n and a self-BLEU of 0; `unique` still says 1)."""
    return {"unique": len({tuple(s) for s in sentences}), "distinct_1": distinct_n(sentences, 1),
            "distinct_2": distinct_n(sentences, 2), "self_bleu": self_bleu(sentences)}


# ------------------------------------------------------------------------------------------------ decoding

def words_of(vocab: Vocab, tokens: torch.Tensor) -> list[list[str]]:
    """Rows of generated ids [R, T] -> their words, up to (not including) the first </s>."""
    out = []
    for row in tokens.tolist():
        end = row.index(EOS) if EOS in row else len(row)
        out.append([vocab.itos[i] for i in row[:end]])
    return out


def max_tokens(cfg: SizeConfig, corpus: Corpus) -> int:
    """Tokens a generated sentence may take, </s> included: the corpus's length limit (else its longest test
    sentence), plus one."""
    longest = cfg.limits.max_len or int(corpus.test.lengths().max(initial=1))
    return longest + 1


def text_evidence(method: Method, model: TextVAE, corpus: Corpus, cfg: SizeConfig, device, seed: int) -> dict:
    """The record's `text` for a trained model (eval mode, eval precision), seeded by `seed` without touching
    the caller's random state."""
    t0 = time.perf_counter()
    model.eval()
    with torch.random.fork_rng(), torch.no_grad(), precision(device, cfg.eval.precision):
        torch.manual_seed(seed)
        out = _evidence(method, model, corpus, cfg, device)
    return {"seed": seed, **out, "seconds": round(time.perf_counter() - t0, 3)}


def _evidence(method: Method, model: TextVAE, corpus: Corpus, cfg: SizeConfig, device) -> dict:
    test, vocab, limit = corpus.test, corpus.vocab, max_tokens(cfg, corpus)
    index = np.sort(np.random.default_rng(SENTENCE_SEED).choice(len(test), min(SENTENCES, len(test)), replace=False))
    chosen = test.subset(index)
    say = lambda tokens: [" ".join(w) for w in words_of(vocab, tokens)]  # noqa: E731
    out: dict = {"decoding": DECODING, "max_tokens": limit, "test_index": index.tolist(),
                 "inputs": [" ".join(vocab.itos[i] for i in s) for s in chosen.sentences],
                 "reconstructions": None, "interpolation": None, "samples": None, "notes": []}
    dec = model.decoder
    post = encode(method, model, chosen, cfg.eval.batch_size, device) if model.has_latent else None
    if post is None:
        out["notes"].append(f"{method.name} has no latent variable: no reconstructions and no interpolation; its "
                            f"samples are its decoder's alone")
    else:
        out["reconstructions"] = {"mode_greedy": say(dec.generate(post.mode, limit)),
                                  "sample_sampled": say(dec.generate(post.rsample(1)[:, 0], limit, greedy=False))}
        out["interpolation"] = _interpolation(post, dec, limit, say) if len(index) >= 2 else None
    if not method.generative:
        out["notes"].append(f"{method.name} is trained without a prior term, so z ~ p(z) is not where its codes lie: "
                            f"no samples")
        return out
    z = post.sample_prior(SAMPLES) if post is not None else None
    greedy, sampled = (words_of(vocab, dec.generate(z, limit, greedy=g, rows=SAMPLES)) for g in (True, False))
    out["samples"] = {"n": SAMPLES, "greedy": [" ".join(w) for w in greedy[:SHOWN]],
                      "sampled": [" ".join(w) for w in sampled[:SHOWN]],
                      "diversity": {"greedy": diversity(greedy), "sampled": diversity(sampled)},
                      "measures": DIVERSITY}
    return out


def _interpolation(post, dec, limit: int, say) -> dict:
    """Greedy decoding on the line from the first sentence's mode to the second's (put back on the prior's
    support: a vMF's sphere)."""
    t = torch.linspace(0, 1, INTERPOLATION, device=post.mode.device, dtype=post.mode.dtype)[:, None]
    z = post.to_support((1 - t) * post.mode[0] + t * post.mode[1])
    return {"t": [round(float(x), 4) for x in t[:, 0]], "greedy": say(dec.generate(z, limit))}
