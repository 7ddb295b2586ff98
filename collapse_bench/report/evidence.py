"""The evidence under a board's rows, beside the across-seed figures of the table.

* **Per-sentence NLL differences to vanilla** (`sentence_evidence`): every cell keeps its per-sentence IW-NLL
  (``results/<cell>.sentences.npz``: ``nll`` per sentence, ``index`` its position in the test split; the same
  sentences for every cell of a board). A method's seed is paired with vanilla's seed of the same board, sentence by
  sentence through ``index`` (never through the files' order), on the sentences every paired seed has. The paired
  bootstrap (`paired_bootstrap`) resamples sentences with replacement, the same draw for every seed, B times, with a
  fixed generator seed, so the page is the same on every build.
* **Collapse rate** (`collapse_rates`): the share of a method's seeds whose final AU is 0, and (the second,
  stated criterion) whose final KL is below `COLLAPSE_KL` nats; and for each seed the epoch at which it collapsed:
  the first curve point after which AU stays 0 to the end (``never`` when it ends above 0).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..baseline import VANILLA
from .load import decoder_of, has_latent, label_of, num, params_of, seed_key, seed_of, size_of, status_of
from .stats import ALPHA

BOOTSTRAP_B = 2000          # bootstrap replicates
BOOTSTRAP_SEED = 0          # the generator's seed: the same interval on every build
_CHUNK = 100                # replicates drawn at a time (memory: _CHUNK x sentences indices)
COLLAPSE_KL = 0.1           # nats: the second criterion of a collapsed seed
NO_FILE = "no per-sentence file"


def paired_bootstrap(diffs: np.ndarray, b: int = BOOTSTRAP_B, seed: int = BOOTSTRAP_SEED,
                     alpha: float = ALPHA) -> tuple[float, float, float]:
    """(mean, low, high): the mean difference over seeds and sentences of ``diffs`` (seeds x sentences, paired)
    and its percentile bootstrap interval over sentences. Each replicate draws one set of sentence positions with
    replacement and uses it for every seed; the mean over (seeds, drawn sentences) then equals the mean over the
    drawn sentences of each sentence's mean over seeds, which is what is computed (vectorised, in chunks)."""
    d = np.asarray(diffs, dtype=np.float64)
    per_sentence = (d if d.ndim == 1 else d.mean(axis=0)).ravel()
    n = per_sentence.size
    if n == 0:
        raise ValueError("no paired sentences")
    rng = np.random.default_rng(seed)
    reps = np.concatenate([per_sentence[rng.integers(0, n, size=(min(_CHUNK, b - i), n))].mean(axis=1)
                           for i in range(0, b, _CHUNK)])
    lo, hi = np.quantile(reps, [alpha / 2, 1 - alpha / 2])
    return float(per_sentence.mean()), float(lo), float(hi)


def read_sentences(path: Path) -> dict[int, float] | None:
    """{test position: NLL} of one cell's per-sentence file; None when there is none (or it cannot be read)."""
    try:
        with np.load(path) as z:
            return dict(zip(z["index"].astype(np.int64).tolist(), z["nll"].astype(np.float64).tolist(), strict=True))
    except (OSError, KeyError, ValueError):
        return None


def paired_matrix(pairs: list[tuple[dict[int, float], dict[int, float]]]) -> np.ndarray:
    """(method − vanilla) per seed (rows) and sentence (columns: the positions every pair has, ascending)."""
    common = sorted(set.intersection(*(set(m) & set(v) for m, v in pairs))) if pairs else []
    return np.array([[m[i] - v[i] for i in common] for m, v in pairs], dtype=np.float64).reshape(len(pairs), len(common))


@dataclass(frozen=True)
class SentenceEvidence:
    seeds: int = 0              # seeds paired with vanilla's, sentence by sentence
    sentences: int = 0          # sentences every paired seed has
    mean: float = math.nan
    lo: float = math.nan
    hi: float = math.nan
    missing: str = ""           # the seeds without a file (theirs or vanilla's), as shown

    @property
    def text(self) -> str:
        return NO_FILE if not self.seeds else f"{self.mean:+.3f} [{self.lo:+.3f}, {self.hi:+.3f}]"


def on_board(rec: dict[str, Any], dataset: str, size: str, decoder: str) -> bool:
    return (str(rec.get("dataset", "?")), size_of(rec), decoder_of(rec)) == (dataset, size, decoder) \
        and status_of(rec) == "ok"


def _vanilla_by_seed(recs: list[dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    """The reference of each seed: the vanilla cell without parameters first, as stats pairs the table."""
    van = sorted((r for r in recs if r.get("method") == VANILLA), key=lambda r: (bool(params_of(r)), label_of(r)))
    out: dict[Any, dict[str, Any]] = {}
    for r in van:
        out.setdefault(seed_of(r), r)
    return out


def sentence_evidence(records: list[dict[str, Any]], results_dir: Path, board: tuple[str, str, str],
                      b: int = BOOTSTRAP_B) -> dict[str, SentenceEvidence]:
    """Per label of the board ``(dataset, size, decoder)`` but vanilla's: its per-sentence differences to vanilla."""
    recs = [r for r in records if on_board(r, *board)]
    van = _vanilla_by_seed(recs)
    files: dict[str, dict[int, float] | None] = {}

    def sentences(rec: dict[str, Any]) -> dict[int, float] | None:
        cell = str(rec.get("cell"))
        if cell not in files:
            files[cell] = read_sentences(results_dir / f"{cell}.sentences.npz")
        return files[cell]

    out = {}
    for label in sorted({label_of(r) for r in recs if r.get("method") != VANILLA}):
        mine = sorted((r for r in recs if label_of(r) == label), key=lambda r: seed_key(seed_of(r)))
        pairs, missing = [], []
        for r in mine:
            ref = van.get(seed_of(r))
            m, v = sentences(r), (sentences(ref) if ref is not None else None)
            if m is None or v is None:
                missing.append(str(seed_of(r)))
            else:
                pairs.append((m, v))
        d = paired_matrix(pairs)
        gone = f"{NO_FILE}: seed{'s' * (len(missing) > 1)} {', '.join(missing)}" if missing else ""
        out[label] = SentenceEvidence(len(pairs), d.shape[1], *paired_bootstrap(d, b), gone) if d.size else \
            SentenceEvidence(missing=gone)
    return out


def collapse_epoch(curves: Any) -> str:
    """The epoch of the first curve point after which validation AU stays 0 to the end; 'never' when the last
    point's AU is above 0; '–' without AU points."""
    pts = [(num(p.get("epoch", i)), num(p.get("valid_au"))) for i, p in enumerate(curves or [], 1) if isinstance(p, dict)]
    pts = [(e, au) for e, au in pts if not math.isnan(au)]
    if not pts:
        return "–"
    if pts[-1][1] != 0:
        return "never"
    k = len(pts) - 1
    while k > 0 and pts[k - 1][1] == 0:
        k -= 1
    return f"{pts[k][0]:g}"


@dataclass(frozen=True)
class Collapse:
    seeds: int                          # ok seeds with a latent
    au_zero: int                        # of them, final AU = 0
    kl_small: int                       # of them, final KL < COLLAPSE_KL
    epochs: tuple[tuple[str, str], ...]  # (seed, collapse epoch or 'never')

    @property
    def au_text(self) -> str:
        return f"{self.au_zero}/{self.seeds}" if self.seeds else "–"

    @property
    def kl_text(self) -> str:
        return f"{self.kl_small}/{self.seeds}" if self.seeds else "–"

    @property
    def epochs_text(self) -> str:
        return ", ".join(f"seed {s}: {e}" for s, e in self.epochs) or "–"


def collapse_rates(records: list[dict[str, Any]], board: tuple[str, str, str]) -> dict[str, Collapse]:
    """Per label of the board: how many seeds collapsed by each criterion, and when (models without z: none)."""
    by: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        if on_board(r, *board):
            by.setdefault(label_of(r), []).append(r)
    out = {}
    for label, recs in sorted(by.items()):
        latent = sorted((r for r in recs if has_latent(r)), key=lambda r: seed_key(seed_of(r)))
        metric = [r.get("metrics") if isinstance(r.get("metrics"), dict) else {} for r in latent]
        out[label] = Collapse(len(latent), sum(num(m.get("au")) == 0 for m in metric),
                              sum(num(m.get("kl")) < COLLAPSE_KL for m in metric),
                              tuple((str(seed_of(r)), collapse_epoch(r.get("curves"))) for r in latent))
    return out
