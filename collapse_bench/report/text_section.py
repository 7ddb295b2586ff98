"""The text section of a board: what each method's first-seed model writes (the record's `text`, collapse_bench/text.py).

Per label, the ok record of the lowest seed that carries text: its reconstructions beside their inputs (a greedy
reconstruction identical to that of a different input is marked: the decoder did not use z to tell them apart),
its samples, its interpolation, and a row of the diversity table. Reads records only (no torch)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .load import label_of, seed_key, seed_of, size_of, status_of

EMPTY = "(empty: </s> first)"
DIVERSITY_KEYS = ("unique", "distinct_1", "distinct_2", "self_bleu")


@dataclass
class Recon:
    index: int                  # 1-based, as the page numbers the inputs
    input: str
    greedy: str
    sampled: str
    same_as: int | None         # the first different input whose greedy reconstruction is the same sentence


@dataclass
class MethodText:
    label: str
    seed: str
    cell: str
    anchor: str
    recons: list[Recon] = field(default_factory=list)
    distinct_recons: int | None = None      # different greedy reconstructions of the different inputs
    different_inputs: int = 0
    interpolation: list[tuple[str, str]] = field(default_factory=list)   # (t, sentence)
    greedy: list[str] = field(default_factory=list)
    sampled: list[str] = field(default_factory=list)
    n_samples: int | None = None
    diversity: dict[str, list[str]] = field(default_factory=dict)   # decoding -> formatted DIVERSITY_KEYS
    notes: list[str] = field(default_factory=list)
    error: str = ""

    @property
    def collapsed(self) -> bool:
        """Every different input got the same greedy reconstruction."""
        return self.distinct_recons == 1 and self.different_inputs > 1

    @property
    def recon_count(self) -> str:
        return "–" if self.distinct_recons is None else f"{self.distinct_recons} of {self.different_inputs}"


def _sentence(text: Any, max_tokens: Any) -> str:
    """A generated sentence as shown: '(empty ...)' for none, '…' after one cut at max_tokens (no </s>)."""
    words = str(text or "").split()
    if not words:
        return EMPTY
    cut = isinstance(max_tokens, int) and len(words) >= max_tokens
    return " ".join(words) + (" …" if cut else "")


def _fmt(v: Any, digits: int = 3) -> str:
    if isinstance(v, bool) or v is None:
        return "–"
    if isinstance(v, int):
        return str(v)
    return f"{v:.{digits}f}" if isinstance(v, float) and math.isfinite(v) else "–"


def _strings(v: Any) -> list[str]:
    return [str(x) for x in v] if isinstance(v, list) else []


def _recons(text: dict[str, Any], entry: MethodText) -> None:
    rec = text.get("reconstructions")
    inputs, limit = _strings(text.get("inputs")), text.get("max_tokens")
    if not isinstance(rec, dict):
        return
    greedy, sampled = _strings(rec.get("mode_greedy")), _strings(rec.get("sample_sampled"))
    first_of: dict[str, tuple[int, str]] = {}          # greedy reconstruction -> (first index, its input)
    for i, (inp, g) in enumerate(zip(inputs, greedy), 1):
        seen = first_of.setdefault(g, (i, inp))
        same = seen[0] if seen[0] != i and seen[1] != inp else None
        entry.recons.append(Recon(i, inp, _sentence(g, limit), _sentence(sampled[i - 1] if i <= len(sampled) else "",
                                                                         limit), same))
    pairs = {(inp, g) for inp, g in zip(inputs, greedy)}
    entry.different_inputs = len({inp for inp, _ in pairs})
    entry.distinct_recons = len({g for _, g in pairs})


def _samples(text: dict[str, Any], entry: MethodText) -> None:
    s, limit = text.get("samples"), text.get("max_tokens")
    if not isinstance(s, dict):
        return
    entry.greedy = [_sentence(x, limit) for x in _strings(s.get("greedy"))]
    entry.sampled = [_sentence(x, limit) for x in _strings(s.get("sampled"))]
    entry.n_samples = s.get("n") if isinstance(s.get("n"), int) else None
    div = s.get("diversity") if isinstance(s.get("diversity"), dict) else {}
    for decoding in ("greedy", "sampled"):
        d = div.get(decoding) if isinstance(div.get(decoding), dict) else {}
        entry.diversity[decoding] = [_fmt(d.get(k)) for k in DIVERSITY_KEYS]


def method_text(rec: dict[str, Any], anchor: str) -> MethodText:
    text = rec.get("text") if isinstance(rec.get("text"), dict) else {}
    entry = MethodText(label_of(rec), str(seed_of(rec)), str(rec.get("cell") or ""), anchor,
                       notes=_strings(text.get("notes")))
    err = text.get("error")
    if isinstance(err, dict):
        entry.error = ": ".join(str(err.get(k) or "") for k in ("type", "message") if err.get(k))
        return entry
    _recons(text, entry)
    _samples(text, entry)
    interp, limit = text.get("interpolation"), text.get("max_tokens")
    if isinstance(interp, dict):
        ts = interp.get("t") if isinstance(interp.get("t"), list) else []
        entry.interpolation = [(_fmt(t, 2), _sentence(x, limit)) for t, x in zip(ts, _strings(interp.get("greedy")))]
    return entry


def board_text(records: list[dict[str, Any]], dataset: str, size: str, labels: list[str],
               anchor: str) -> tuple[list[MethodText], list[str]]:
    """(the text of each label in `labels` order that has one, the labels that have none) for one board: each
    label's ok record of the lowest seed with a `text`."""
    first: dict[str, dict[str, Any]] = {}
    for rec in records:
        if (str(rec.get("dataset", "?")), size_of(rec)) != (dataset, size) or status_of(rec) != "ok":
            continue
        if not isinstance(rec.get("text"), dict):
            continue
        label = label_of(rec)
        if label not in first or seed_key(seed_of(rec)) < seed_key(seed_of(first[label])):
            first[label] = rec
    shown = [method_text(first[label], f"{anchor}-text-{i}") for i, label in enumerate(labels) if label in first]
    return shown, [label for label in labels if label not in first]
