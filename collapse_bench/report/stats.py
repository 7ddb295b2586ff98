"""Seed statistics: mean ± sd with a 95% t-interval, Welch ties with the best, paired time ratios, ranks."""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

VANILLA = "vanilla"
ALPHA = 0.05


@dataclass(frozen=True)
class Summary:
    n: int
    mean: float
    sd: float        # NaN when n < 2
    lo: float        # 95% t-interval; NaN when n < 2
    hi: float


def summarize(values: Iterable[float]) -> Summary | None:
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if x.size == 0:
        return None
    mean = float(x.mean())
    if x.size < 2:
        return Summary(1, mean, math.nan, math.nan, math.nan)
    sd = float(x.std(ddof=1))
    half = float(stats.t.ppf(1 - ALPHA / 2, x.size - 1)) * sd / math.sqrt(x.size)
    return Summary(int(x.size), mean, sd, mean - half, mean + half)


def welch_p(a: Summary, b: Summary) -> float:
    """Two-sided Welch t-test p-value; NaN when it cannot be computed (n < 2, or no variance on either side)."""
    if a.n < 2 or b.n < 2 or (a.sd == 0 and b.sd == 0):
        return math.nan
    return float(stats.ttest_ind_from_stats(a.mean, a.sd, a.n, b.mean, b.sd, b.n, equal_var=False).pvalue)


def tied(best: Summary, other: Summary) -> bool:
    """Statistically indistinguishable from the best: Welch p > 0.05; untestable pairs tie only on equal means."""
    p = welch_p(best, other)
    return other.mean == best.mean if math.isnan(p) else p > ALPHA


def mark_best(summaries: dict[str, Summary | None], better: str | None) -> tuple[set[str], set[str]]:
    """(best keys, tied-with-best keys) for one metric column; nothing when the metric has no direction."""
    present = {k: s for k, s in summaries.items() if s is not None}
    if better not in ("lower", "higher") or not present:
        return set(), set()
    pick = min if better == "lower" else max
    top = pick(s.mean for s in present.values())
    best = {k for k, s in present.items() if s.mean == top}
    ref = present[min(best)]
    return best, {k for k, s in present.items() if k not in best and tied(ref, s)}


def add_time_ratio(df: pd.DataFrame) -> pd.DataFrame:
    """Column ``time_ratio`` = train_seconds / train_seconds of vanilla with the same dataset, size and seed.

    Paired per seed, then averaged over seeds (not a ratio of means). When a sweep holds several vanilla
    labels, the one without parameters is the reference.
    """
    keys = ["dataset", "size", "seed"]
    out = df.copy()
    out["time_ratio"] = math.nan
    if out.empty:
        return out
    ok = out["status"] == "ok"
    van = out[ok & (out["method"] == VANILLA) & (out["train_seconds"] > 0)]
    van = van.assign(_pref=van["params"] != "{}").sort_values(["_pref", "label"]).drop_duplicates(keys)
    ref = van[[*keys, "train_seconds"]].rename(columns={"train_seconds": "_ref"})
    merged = out[keys].reset_index().merge(ref, on=keys, how="left").set_index("index")["_ref"]
    out["time_ratio"] = (out["train_seconds"] / merged).where(ok)
    return out


def ranks(means: dict[str, float], better: str) -> dict[str, float]:
    """Per-metric rank, 1 = best, equal means share their average rank."""
    s = pd.Series(means, dtype=float).dropna()
    return s.rank(ascending=better == "lower", method="average").to_dict() if not s.empty else {}
