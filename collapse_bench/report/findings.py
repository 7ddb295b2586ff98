"""The papers' qualitative findings, each checked on a board's results: reproduced, partly, not, or not comparable.

Every verdict is computed from the cells with a stated criterion and shows its evidence; explanations of a verdict
(scale, budget, an implementation difference) are a person's reading and come from an optional notes file
(``OUT/findings_notes.json``: {finding id: text}, or {"DATASET:ID" or "DATASET:DECODER:ID": text} for one
board), shown beside the verdict.

A finding names the methods it is about (the paper's claim is about BN-VAE, say); every parameter it needs (δ, γ,
nz) is read from those methods' own records, never assumed: a record without it makes the finding not comparable.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .stats import VANILLA, Summary, summarize, tied

NOTES_FILE = "findings_notes.json"
COST_TOLERANCE = 1.5        # a cost reproduces within this factor of the paper's ratio (the study issue's criterion)
LITTLE_KL = 0.5             # nats above vanilla's KL that count as "keeps some KL"
ZERO = 0.5                  # KL, MI (nats) and AU below this count as "about 0"


@dataclass(frozen=True)
class Finding:
    id: str
    dataset: str
    claim: str
    criterion: str
    verdict: str            # "reproduced", "partly reproduced", "not reproduced", "not comparable"
    evidence: str
    note: str = ""
    decoder: str = "lstm"   # the board's model.decoder (the papers' findings are the LSTM's)

    @property
    def where(self) -> str:
        """The board as findings.md names it: the dataset, and the decoder where it is not the LSTM."""
        return self.dataset if self.decoder == "lstm" else f"{self.dataset} · {self.decoder} decoder"


class _Missing(LookupError):
    pass


class _Board:
    """The ok cells of one (dataset, size, decoder) board, by method (the first label of a method when it has
    several)."""

    def __init__(self, runs: pd.DataFrame):
        ok = runs[runs["status"] == "ok"]
        self.by_method = {m: g[g["label"] == sorted(g["label"].unique())[0]] for m, g in ok.groupby("method")}

    def has(self, *methods: str) -> bool:
        return all(m in self.by_method for m in methods)

    def s(self, method: str, col: str) -> Summary | None:
        g = self.by_method.get(method)
        return None if g is None or col not in g else summarize(g[col].tolist())

    def req(self, method: str, col: str) -> Summary:
        s = self.s(method, col)
        if s is None:
            raise _Missing(f"{method} has no {col}")
        return s

    def param(self, method: str, key: str) -> float:
        """The method's parameter ``key`` as its (first label's) records give it."""
        value = json.loads(self.by_method[method]["params"].iloc[0] or "{}").get(key)
        if value is None:
            raise _Missing(f"{method}'s records give no parameter {key}")
        return float(value)

    def nz(self, method: str) -> int:
        """The latent size of the method's runs, from their records' config."""
        cfg = json.loads(self.by_method[method]["config"].iloc[0] or "{}")
        nz = (cfg.get("model") or {}).get("nz")
        if nz is None:
            raise _Missing(f"{method}'s records give no model.nz")
        return int(nz)

    def best(self, col: str, higher: bool) -> tuple[str, set[str]]:
        """The method with the best mean of ``col`` and every method tied with it (Welch, as the table)."""
        sums = {m: s for m in self.by_method if (s := self.s(m, col)) is not None}   # no latent: MI is NaN
        if not sums:
            raise _Missing(f"no method has {col}")
        top = (max if higher else min)(sums, key=lambda m: sums[m].mean)
        return top, {top} | {m for m, s in sums.items() if tied(sums[top], s)}


def _f(s: Summary | None, digits: int = 2, scale: float = 1.0) -> str:
    if s is None:
        return "–"
    m = f"{s.mean * scale:.{digits}f}"
    return m if s.n < 2 or math.isnan(s.sd) else f"{m} ± {s.sd * scale:.{digits}f}"


def _seeds(b: _Board, m: str) -> int:
    return len(b.by_method[m])


def _vanilla_collapses(b: _Board) -> tuple[str, str]:
    kl, mi, au = b.req(VANILLA, "kl"), b.req(VANILLA, "mi"), b.req(VANILLA, "au")
    ok = kl.mean < ZERO and au.mean < ZERO
    return ("reproduced" if ok else "not reproduced",
            f"{VANILLA} KL {_f(kl)}, MI {_f(mi)}, AU {_f(au, 1)} ({_seeds(b, VANILLA)} seeds)")


LITTLE_KL_METHODS = ("beta", "cyclic", "skip")


def _little_kl(b: _Board) -> tuple[str, str]:
    van = b.req(VANILLA, "kl")
    kls = {m: b.req(m, "kl") for m in LITTLE_KL_METHODS}
    keep = [m for m, kl in kls.items() if kl.mean - van.mean >= LITTLE_KL]
    parts = [f"{m} KL {_f(kl)} (AU {_f(b.s(m, 'au'), 1)})" for m, kl in kls.items()]
    verdict = ("reproduced" if len(keep) == len(kls) else "partly reproduced" if keep else "not reproduced")
    return verdict, "; ".join(parts) + f"; {VANILLA} KL {_f(van)}"


def _delta_floor(b: _Board) -> tuple[str, str]:
    floor = b.nz("delta") * b.param("delta", "delta")
    kl, mi = b.req("delta", "kl"), b.req("delta", "mi")
    on_floor = floor <= kl.mean < floor + 1.0
    verdict = "reproduced" if on_floor and mi.mean < ZERO else "partly reproduced" if on_floor or mi.mean < ZERO \
        else "not reproduced"
    return verdict, f"δ-VAE KL {_f(kl)} against its floor nz·δ = {floor:.2f}; MI {_f(mi)}"


def _bnvae(b: _Board) -> tuple[str, str]:
    nz, gamma = b.nz("bnvae"), b.param("bnvae", "gamma")
    floor = nz * gamma ** 2 / 2
    kl, au, mi = b.req("bnvae", "kl"), b.req("bnvae", "au"), b.req("bnvae", "mi")
    au_all = bool((b.by_method["bnvae"]["au"] == nz).all())
    top, ties = b.best("mi", higher=True)
    best_mi = "bnvae" in ties
    checks = [au_all, kl.mean >= floor, best_mi]
    verdict = "reproduced" if all(checks) else "partly reproduced" if any(checks) else "not reproduced"
    mi_text = "the best MI" if top == "bnvae" else ("tied with the best MI" if best_mi else
                                                    f"not the best MI (best: {top} {_f(b.s(top, 'mi'))})")
    return verdict, (f"BN-VAE (γ {gamma:g}) AU {_f(au, 1)} of {nz} ({'every' if au_all else 'not every'} seed at {nz}); "
                     f"KL {_f(kl)} against nz·γ²/2 = {floor:.2f}; MI {_f(mi)}, {mi_text}")


BEST_PROBE_METHODS = ("agg", "bnvae")


def _probe100(b: _Board) -> tuple[str, str]:
    col = "probe@100"
    if not any(col in g and g[col].notna().any() for g in b.by_method.values()):
        return "not comparable", "no labels on this dataset (no probe)"
    top, ties = b.best(col, higher=True)
    parts = [f"{m} {_f(b.s(m, col), 1, 100)}%" + (" (best)" if m == top else " (tied with the best)" if m in ties
                                                 else "") for m in BEST_PROBE_METHODS]
    both = set(BEST_PROBE_METHODS) <= ties
    verdict = "reproduced" if both else "partly reproduced" if ties & set(BEST_PROBE_METHODS) else "not reproduced"
    return verdict, (f"{'; '.join(parts)}; best {top} {_f(b.s(top, col), 1, 100)}%; "
                     f"{VANILLA} {_f(b.s(VANILLA, col), 1, 100)}%")


def _cost(method: str, lo: float, hi: float) -> Callable[[_Board], tuple[str, str]]:
    def check(b: _Board) -> tuple[str, str]:
        run, step = b.s(method, "time_ratio"), b.s(method, "step_ratio")
        if run is None:
            return "not comparable", "no vanilla cell of the same seed to pair with"
        inside = lo / COST_TOLERANCE <= run.mean <= hi * COST_TOLERANCE
        paper = f"{lo:g}×" if lo == hi else f"{lo:g}–{hi:g}×"
        return ("reproduced" if inside else "not reproduced",
                f"whole-run training time {_f(run)}× vanilla (per step {_f(step)}×); paper {paper}")
    return check


# (id, claim, criterion, methods needed, check)
FINDINGS: tuple[tuple[str, str, str, tuple[str, ...], Callable[[_Board], tuple[str, str]]], ...] = (
    ("vanilla-collapses", "The vanilla VAE collapses: KL ≈ 0, AU 0.",
     f"vanilla's mean KL < {ZERO} nats and mean AU < {ZERO}", (VANILLA,), _vanilla_collapses),
    ("little-kl", "β-VAE, cyclic annealing and Skip-VAE keep a little KL.",
     f"each one's mean KL ≥ vanilla's + {LITTLE_KL} nats", (VANILLA, *LITTLE_KL_METHODS), _little_kl),
    ("delta-floor", "δ-VAE sits on its floor with MI ≈ 0.",
     f"mean KL in [nz·δ, nz·δ + 1) and mean MI < {ZERO}", ("delta",), _delta_floor),
    ("bnvae", "BN-VAE keeps AU = nz with KL above nz·γ²/2 and the best MI.",
     "AU = nz in every seed, mean KL ≥ nz·γ²/2, MI best or tied with the best (Welch p > 0.05)", ("bnvae",), _bnvae),
    ("probe-100", "Agg-VAE and BN-VAE give the best probe accuracy at 100 labels.",
     "both best or tied with the best at 100 labels", BEST_PROBE_METHODS, _probe100),
    ("cost-bnvae", "BN-VAE costs ≈ 1.03× vanilla's training time.", "whole-run ratio within a factor 1.5 of 1.03",
     ("bnvae", VANILLA), _cost("bnvae", 1.03, 1.03)),
    ("cost-agg", "Agg-VAE costs 2.8–4.6× vanilla's training time.", "whole-run ratio in [2.8/1.5, 4.6·1.5]",
     ("agg", VANILLA), _cost("agg", 2.8, 4.6)),
    ("cost-savae", "SA-VAE costs ≈ 12.8× vanilla's training time.", "whole-run ratio within a factor 1.5 of 12.8",
     ("savae", VANILLA), _cost("savae", 12.8, 12.8)),
)


def check_findings(runs: pd.DataFrame, dataset: str, notes: dict[str, str] | None = None,
                   decoder: str = "lstm") -> list[Finding]:
    """Every finding on one board's cells (``runs``: the board's rows with time_ratio and step_ratio). A note keyed
    `DATASET:DECODER:ID` explains one board's finding; `DATASET:ID` and `ID` notes are the LSTM boards'."""
    notes = notes or {}
    board = _Board(runs)
    keys = [f"{dataset}:{decoder}:{{}}", *((f"{dataset}:{{}}", "{}") if decoder == "lstm" else ())]
    out = []
    for fid, claim, criterion, needs, check in FINDINGS:
        missing = [m for m in needs if not board.has(m)]
        if missing:
            verdict, evidence = "not comparable", f"not run here: {', '.join(missing)}"
        else:
            try:
                verdict, evidence = check(board)
            except _Missing as e:
                verdict, evidence = "not comparable", f"not measured: {e}"
        note = next((notes[k.format(fid)] for k in keys if k.format(fid) in notes), "")
        out.append(Finding(fid, dataset, claim, criterion, verdict, evidence, note, decoder))
    return out


def read_notes(run_dir: Path) -> dict[str, str]:
    path = Path(run_dir) / NOTES_FILE
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: must hold a JSON object {{finding id: note}}")
    return {str(k): str(v) for k, v in data.items()}


def markdown(findings: list[Finding]) -> str:
    """The findings as a Markdown table (for reports/README.md)."""
    rows = ["| dataset | paper's finding | verdict | evidence (mean ± sd over seeds) | why |", "|---|---|---|---|---|"]
    for f in findings:
        rows.append(f"| {f.where} | {f.claim} | **{f.verdict}** | {f.evidence} | {f.note or '–'} |")
    return "\n".join(rows) + "\n"
