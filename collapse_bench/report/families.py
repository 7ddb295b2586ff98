"""The methods' families, the one place the page groups methods by (the board's family column and filter, one
small panel of curves per family). A method not listed (a plug-in, a new remedy) goes to ``OTHER``."""
from __future__ import annotations

FAMILIES: dict[str, tuple[str, ...]] = {
    "weighting and annealing": ("vanilla", "beta", "anneal", "cyclic", "controlvae"),
    "encoder-side constraints": ("bnvae", "bnvae-su", "delta", "vmf", "powerspherical", "fb", "duvae", "mmd", "twr",
                                 "eae"),
    "decoder weakening": ("word-dropout", "bow", "skip", "coupled"),
    "optimisation schedules": ("agg", "savae"),
    "deterministic baselines": ("ae", "lm"),
}
OTHER = "other"
_OF = {m: fam for fam, methods in FAMILIES.items() for m in methods}
ORDER = (*FAMILIES, OTHER)


def family_of(method: str) -> str:
    return _OF.get(method, OTHER)


def family_key(family: str) -> int:
    """The families' order on the page: as FAMILIES lists them, `other` last."""
    return ORDER.index(family) if family in ORDER else len(ORDER)


def family_slug(family: str) -> str:
    """The family as an HTML attribute value (the filter's key)."""
    return "".join(c if c.isalnum() else "-" for c in family)
