"""Seed statistics: mean ± sd with a 95% t-interval, Welch ties with the best, paired time ratios, ranks."""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import special   # not scipy.stats: its import alone is ~1 s of every `report`

from ..baseline import VANILLA
from .load import BOARD_KEYS

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
    half = float(special.stdtrit(x.size - 1, 1 - ALPHA / 2)) * sd / math.sqrt(x.size)
    return Summary(int(x.size), mean, sd, mean - half, mean + half)


def welch_p(a: Summary, b: Summary) -> float:
    """Two-sided Welch t-test p-value; NaN when it cannot be computed (n < 2, or no variance on either side)."""
    if a.n < 2 or b.n < 2 or (a.sd == 0 and b.sd == 0):
        return math.nan
    va, vb = a.sd ** 2 / a.n, b.sd ** 2 / b.n
    df = (va + vb) ** 2 / (va ** 2 / (a.n - 1) + vb ** 2 / (b.n - 1))     # Welch-Satterthwaite
    return float(2 * special.stdtr(df, -abs(a.mean - b.mean) / math.sqrt(va + vb)))


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


PAIR_KEYS = [*BOARD_KEYS, "seed"]   # dataset, size with its --set overrides (load.size_of), decoder: like with like
DELTA_METRICS = ("nll", "kl", "mi", "au")   # and every probe@N: the differences to vanilla shown beside the values


def vanilla_of(df: pd.DataFrame, col: str, valid: pd.Series) -> pd.Series:
    """For every row, ``col`` of the vanilla cell with the same dataset, size, decoder and seed (NaN where none).

    The reference is an ok vanilla cell where ``valid``; when a sweep holds several vanilla labels, the one
    without parameters."""
    van = df[(df["status"] == "ok") & (df["method"] == VANILLA) & valid]
    van = van.assign(_pref=van["params"] != "{}").sort_values(["_pref", "label"]).drop_duplicates(PAIR_KEYS)
    ref = van[[*PAIR_KEYS, col]].rename(columns={col: "_ref"})
    return df[PAIR_KEYS].reset_index().merge(ref, on=PAIR_KEYS, how="left").set_index("index")["_ref"]


# A CPU cell whose training got less than this share of one core (CPU seconds / wall-clock seconds) was starved
# by other work on the machine: its wall-clock says how busy the machine was, not what the method costs.
STARVED_CPU_SHARE = 0.5


def cpu_share(df: pd.DataFrame) -> pd.Series:
    """Each cell's training CPU seconds per wall-clock second (NaN where the record lacks them)."""
    if "train_cpu_seconds" not in df:
        return pd.Series(math.nan, index=df.index)
    return df["train_cpu_seconds"] / df["train_seconds"].where(df["train_seconds"] > 0)


def starved(df: pd.DataFrame) -> pd.Series:
    """The CPU cells trained on less than `STARVED_CPU_SHARE` of a core (on a GPU the host's CPU time says
    nothing about the cell's speed)."""
    on_cpu = df["device"].fillna("cpu").astype(str).str.startswith("cpu") if "device" in df else True
    return (cpu_share(df) < STARVED_CPU_SHARE) & on_cpu


def add_time_ratio(df: pd.DataFrame) -> pd.DataFrame:
    """Column ``time_ratio`` = train_seconds / train_seconds of vanilla with the same dataset, size, decoder and
    seed.

    Paired per seed, then averaged over seeds (not a ratio of means). When a sweep holds several vanilla
    labels, the one without parameters is the reference. A starved cell (`starved`) has no ratio, and neither has
    a cell whose vanilla was starved: column ``starved`` says which.
    """
    out = df.copy()
    out["time_ratio"] = math.nan
    if out.empty:
        return out
    out["starved"] = starved(out)
    for col, ratio in (("train_seconds", "time_ratio"), ("seconds_per_step", "step_ratio")):
        if col in out:                 # the per-step ratio beside the whole-run one, paired the same way
            timed = out[col].where(~out["starved"])
            out[ratio] = (timed / vanilla_of(out, col, timed > 0)).where(out["status"] == "ok")
    return out


def delta_columns(df: pd.DataFrame) -> list[str]:
    return [c for c in (*DELTA_METRICS, *(c for c in df.columns if c.startswith("probe@"))) if c in df.columns]


def add_vanilla_deltas(df: pd.DataFrame) -> pd.DataFrame:
    """Columns ``d_<metric>`` = metric − vanilla's for the same dataset, size, decoder and seed (paired like the time
    ratio; averaged over seeds later), for NLL, KL, MI, AU and every probe@N. NaN without a vanilla pair."""
    out = df.copy()
    for c in delta_columns(out):
        out[f"d_{c}"] = math.nan if out.empty else (out[c] - vanilla_of(out, c, out[c].notna())).where(out["status"] == "ok")
    return out


def ranks(means: dict[str, float], better: str) -> dict[str, float]:
    """Per-metric rank, 1 = best, equal means share their average rank."""
    s = pd.Series(means, dtype=float).dropna()
    return s.rank(ascending=better == "lower", method="average").to_dict() if not s.empty else {}
