"""Published figures of Zhu et al. 2020 (BN-VAE, ACL), transcribed from shared/reference/published.md.

Values are kept as printed ('≤332.1', '-' for not reported). Each paper row maps to our method name and
the parameters a result must carry to be that row; ``None`` for a parameter means any value.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .load import num

CITATION = "Zhu et al. 2020, “A Batch Normalized Inference Network Keeps the KL Vanishing Away”, ACL"

# Our parameter names for the paper's bracketed numbers (β, λ, δ, κ, γ); the first name present is used.
PARAM_NAMES: dict[str, tuple[str, ...]] = {
    "beta": ("beta",),
    "lambda": ("target",),    # fb.target is the paper's λ
    "delta": ("delta",),
    "kappa": ("kappa",),
    "gamma": ("gamma",),
}


@dataclass(frozen=True)
class PaperRow:
    model: str                       # as printed
    method: str | None               # our registry name; None when the harness has no such method
    values: tuple[str, ...]          # one per column of the table, as printed
    params: dict[str, float | None] = field(default_factory=dict)
    pretrained: bool | None = False  # None: either
    section: str = ""

    def matches(self, method: str, params: dict[str, Any]) -> bool:
        if self.method is None or method != self.method:
            return False
        if self.pretrained is not None and is_pretrained(params) != self.pretrained:
            return False
        return all(want is None or math.isclose(_param(params, name), want, rel_tol=1e-9)
                   for name, want in self.params.items())


@dataclass(frozen=True)
class PaperTable:
    title: str
    columns: tuple[str, ...]         # display titles
    keys: tuple[str, ...]            # our metric key per column
    rows: tuple[PaperRow, ...]


def is_pretrained(params: dict[str, Any]) -> bool:
    p = params.get("pretrain")
    return p is True or (isinstance(p, str) and p.lower() == "ae")


def _param(params: dict[str, Any], name: str) -> float:
    for key in PARAM_NAMES.get(name, (name,)):
        if key in params:
            return num(params[key])
    return math.nan


def _lm(model: str, method: str | None, yahoo: str, yelp: str, params: dict[str, float | None] | None = None,
        pretrained: bool = False, section: str = "") -> tuple[Any, ...]:
    return model, method, tuple(yahoo.split()), tuple(yelp.split()), params or {}, pretrained, section


_SCRATCH, _PRE = "without a pretrained AE encoder", "with a pretrained AE encoder"
_LM_ROWS = [  # model, method, Yahoo NLL KL MI AU, Yelp NLL KL MI AU
    _lm("CNN-VAE", None, "≤332.1 10.0 - -", "≤359.1 7.6 - -", section=_SCRATCH),
    _lm("LSTM-LM", "lm", "328 - - -", "351.1 - - -", section=_SCRATCH),
    _lm("VAE", "vanilla", "328.6 0.0 0.0 0.0", "357.9 0.0 0.0 0.0", section=_SCRATCH),
    _lm("β-VAE (0.4)", "beta", "328.7 6.3 2.8 8.0", "358.2 4.2 2.0 4.2", {"beta": 0.4}, section=_SCRATCH),
    _lm("cyclic *", "cyclic", "330.6 2.1 2.0 2.3", "359.5 2.0 1.9 4.1", section=_SCRATCH),
    _lm("Skip-VAE *", "skip", "328.5 2.3 1.3 8.1", "357.6 1.9 1.0 7.4", section=_SCRATCH),
    _lm("SA-VAE", "savae", "327.2 5.2 2.7 9.8", "355.9 2.8 1.7 8.4", section=_SCRATCH),
    _lm("Agg-VAE", "agg", "326.7 5.7 2.9 15.0", "355.9 3.8 2.4 11.3", section=_SCRATCH),
    _lm("FB (4)", "fb", "331.0 4.1 3.8 3.0", "359.2 4.0 1.9 32.0", {"lambda": 4.0}, section=_SCRATCH),
    _lm("FB (5)", "fb", "330.6 5.7 2.0 3.0", "359.8 4.9 1.3 32.0", {"lambda": 5.0}, section=_SCRATCH),
    _lm("δ-VAE (0.1) *", "delta", "330.7 3.2 0.0 0.0", "359.8 3.2 0.0 0.0", {"delta": 0.1}, section=_SCRATCH),
    _lm("vMF-VAE (13) *", "vmf", "327.4 2.0 - 32.0", "357.5 2.0 - 32.0", {"kappa": 13.0}, section=_SCRATCH),
    _lm("BN-VAE (0.6) *", "bnvae", "326.7 6.2 5.6 32.0", "356.5 6.5 5.4 32.0", {"gamma": 0.6}, section=_SCRATCH),
    _lm("BN-VAE (0.7) *", "bnvae", "327.4 8.8 7.4 32.0", "355.9 9.1 7.4 32.0", {"gamma": 0.7}, section=_SCRATCH),
    _lm("cyclic *", "cyclic", "333.1 25.8 9.1 32.0", "361.5 20.5 9.3 32.0", pretrained=True, section=_PRE),
    _lm("FB (4) *", "fb", "326.2 8.1 6.8 32.0", "356.0 7.6 6.6 32.0", {"lambda": 4.0}, True, _PRE),
    _lm("δ-VAE (0.15) *", "delta", "331.0 5.6 1.1 11.2", "359.4 5.2 0.5 5.9", {"delta": 0.15}, True, _PRE),
    _lm("vMF-VAE (13) *", "vmf", "328.4 2.0 - 32.0", "357.0 2.0 - 32.0", {"kappa": 13.0}, True, _PRE),
    _lm("BN-VAE (0.6) *", "bnvae", "326.7 6.4 5.8 32.0", "355.5 6.6 5.9 32.0", {"gamma": 0.6}, True, _PRE),
    _lm("BN-VAE (0.7) *", "bnvae", "326.5 9.1 7.6 32.0", "355.7 9.1 7.5 32.0", {"gamma": 0.7}, True, _PRE),
]

_TIME_ROWS = [  # model, method, params, pretrained, Yahoo hours ratio, Yelp hours ratio
    ("VAE", "vanilla", {}, False, "3.83 1.00", "4.50 1.00"),
    ("SA-VAE", "savae", {}, False, "52.99 12.80", "59.37 12.64"),
    ("Agg-VAE", "agg", {}, False, "11.76 2.84", "21.44 4.56"),
    ("AE+FB", "fb", {}, True, "7.70 2.01", "9.22 2.05"),
    ("BN-VAE", "bnvae", {}, None, "3.98 1.04", "4.60 1.02"),
]

_CLS_ROWS = [  # model, method, params, pretrained, accuracy % at 100 500 1k 2k 10k labels
    ("AE", "ae", {}, False, "81.1 86.2 90.3 89.4 94.1"),
    ("VAE", "vanilla", {}, False, "66.1 82.6 88.4 89.6 94.5"),
    ("δ-VAE", "delta", {}, False, "61.8 61.9 62.6 62.9 93.8"),
    ("Agg-VAE", "agg", {}, False, "80.9 85.9 88.8 90.6 93.7"),
    ("cyclic", "cyclic", {}, False, "62.4 75.5 80.3 88.7 94.2"),
    ("FB (9)", "fb", {"lambda": 9.0}, False, "79.8 84.4 88.8 91.12 94.7"),
    ("AE+FB (6)", "fb", {"lambda": 6.0}, True, "87.6 90.2 92.0 93.4 94.9"),
    ("BN-VAE (0.7)", "bnvae", {"gamma": 0.7}, False, "88.8 91.6 92.5 94.1 95.4"),
]

_PROBE_KEYS = ("probe@100", "probe@500", "probe@1000", "probe@2000", "probe@10000")


def _lm_tables(dataset: str) -> list[PaperTable]:
    i, name = (0, "Yahoo") if dataset == "yahoo" else (1, "Yelp")
    lm_rows = tuple(PaperRow(m, meth, (yahoo, yelp)[i], p, pre, sec)
                    for m, meth, yahoo, yelp, p, pre, sec in _LM_ROWS)
    time_rows = tuple(PaperRow(m, meth, tuple(v[i].split()), p, pre) for m, meth, p, pre, *v in _TIME_ROWS)
    return [PaperTable(f"Language modelling, {name}", ("NLL", "KL", "MI", "AU"), ("nll", "kl", "mi", "au"), lm_rows),
            PaperTable(f"Training time, {name} (GPU hours, ratio to VAE)", ("hours", "ratio"), ("", "time_ratio"),
                       time_rows)]


def tables_for(dataset: str, size: str) -> list[PaperTable]:
    """The paper's tables for a board: LM and time on yelp/yahoo, the probe on short-yelp; size 'paper' only."""
    if size != "paper":
        return []
    if dataset in ("yelp", "yahoo"):
        return _lm_tables(dataset)
    if dataset == "short-yelp":
        return [PaperTable("Semi-supervised classification, short Yelp (accuracy %)",
                           ("100", "500", "1k", "2k", "10k"), _PROBE_KEYS,
                           tuple(PaperRow(m, meth, tuple(v.split()), p, pre) for m, meth, p, pre, v in _CLS_ROWS))]
    return []


def paper_values(tables: list[PaperTable], method: str, params: dict[str, Any]) -> dict[str, str]:
    """Printed paper value per our metric key, for the first matching row of each table."""
    out: dict[str, str] = {}
    for t in tables:
        row = next((r for r in t.rows if r.matches(method, params)), None)
        if row is not None:
            out |= {k: ("–" if v == "-" else v) for k, v in zip(t.keys, row.values, strict=True) if k}
    return out
