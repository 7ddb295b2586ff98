"""The leaderboard model: one board per (dataset, size, decoder), one row per label, one cell per metric."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from . import published
from .families import family_of, family_slug
from .load import BOARD_KEYS, probe_key
from .stats import VANILLA, Summary, mark_best, ranks, summarize

ARROWS = {"lower": "↓", "higher": "↑", None: ""}


@dataclass(frozen=True)
class Metric:
    key: str
    title: str
    better: str | None          # "lower", "higher" or None (no better direction)
    digits: int
    scale: float = 1.0          # display = value * scale (probe accuracy as %)
    rank_group: str | None = None   # metrics of one group are averaged into one rank; None: not ranked
    unit: str = ""

    @property
    def arrow(self) -> str:
        return ARROWS[self.better]

    @property
    def hint(self) -> str:
        return {"lower": "lower is better", "higher": "higher is better"}.get(self.better or "", "no better direction")


@dataclass
class Cell:
    summary: Summary | None
    metric: Metric
    best: bool = False
    tied: bool = False
    paper: str | None = None
    delta: Summary | None = None    # paired difference to vanilla (same dataset, size, decoder, seed), over seeds

    def _f(self, x: float) -> str:
        return f"{x * self.metric.scale:.{self.metric.digits}f}"

    @property
    def value(self) -> str:                 # data-value for sorting; '' sorts last
        return "" if self.summary is None else repr(self.summary.mean * self.metric.scale)

    @property
    def main(self) -> str:
        s = self.summary
        return "–" if s is None else self._f(s.mean) if s.n < 2 else f"{self._f(s.mean)} ± {self._f(s.sd)}"

    @property
    def n(self) -> str:
        return "" if self.summary is None else f"({self.summary.n})"

    @property
    def text(self) -> str:
        return f"{self.main} {self.n}".strip()

    @property
    def delta_text(self) -> str:
        d = self.delta
        return "" if d is None else f"Δ {d.mean * self.metric.scale:+.{self.metric.digits}f} vs vanilla"

    @property
    def ci(self) -> str:
        s = self.summary
        return "" if s is None or s.n < 2 else f"[{self._f(s.lo)}, {self._f(s.hi)}]"


@dataclass
class Row:
    label: str
    method: str
    params: dict[str, Any]
    preset: str | None
    n_ok: int
    n_failed: int
    errors: list[str]
    cells: dict[str, Cell] = field(default_factory=dict)
    mean_rank: float | None = None

    @property
    def status(self) -> str:
        return "failed" if self.n_ok == 0 else ("partial" if self.n_failed else "ok")

    @property
    def params_text(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.params.items())

    @property
    def family(self) -> str:
        return family_of(self.method)

    @property
    def family_slug(self) -> str:
        return family_slug(self.family)


@dataclass
class Board:
    dataset: str
    size: str
    metrics: list[Metric]
    rows: list[Row]
    runs: pd.DataFrame
    paper: list[published.PaperTable] = field(default_factory=list)
    paper_matches: dict[str, list[list[str]]] = field(default_factory=dict)  # table title -> labels per paper row
    plots: list[tuple[str, str, str]] = field(default_factory=list)   # (title, inline svg, error if not drawn)
    findings: list = field(default_factory=list)    # report.findings.Finding, on boards that hold vanilla
    decoder: str = "lstm"                           # model.decoder of every run on the board (load.BOARD_KEYS)
    text: list = field(default_factory=list)        # report.text_section.MethodText: what the models write
    text_missing: list[str] = field(default_factory=list)   # labels on the board with no text recorded
    evidence: list = field(default_factory=list)    # build.EvidenceRow: collapse rate, per-sentence differences

    @property
    def anchor(self) -> str:
        return "board-" + "".join(c if c.isalnum() else "-" for c in f"{self.dataset}-{self.size}-{self.decoder}")


def _metrics(runs: pd.DataFrame) -> list[Metric]:
    out = [Metric("nll", "NLL", "lower", 2, rank_group="nll", unit="nats"),
           Metric("ppl", "PPL", "lower", 2),
           Metric("kl", "KL", None, 2, unit="nats"),
           Metric("mi", "MI", "higher", 2, rank_group="mi", unit="nats"),
           Metric("au", "AU", "higher", 1, rank_group="au")]
    probes = sorted((c for c in runs.columns if c.startswith("probe@") and runs[c].notna().any()),
                    key=lambda c: probe_key(c[6:]))
    if probes:
        scale = 100.0 if (runs[probes].abs().max().max() <= 1.0) else 1.0   # fractions shown as %
        out += [Metric(c, f"probe {_count(c[6:])}", "higher", 1, scale, "probe", "% accuracy") for c in probes]
    out.append(Metric("time_ratio", "time ×vanilla", "lower", 2, rank_group="time"))
    if "step_ratio" in runs and runs["step_ratio"].notna().any():
        out.append(Metric("step_ratio", "step ×vanilla", "lower", 2))     # shown, not ranked twice with time
    return out


def _count(k: str) -> str:
    """Label counts as the paper prints them: 1000 → 1k."""
    try:
        n = int(k)
    except ValueError:
        return k
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


def _errors(failed: pd.DataFrame) -> list[str]:
    by_msg: dict[str, list[str]] = {}
    for _, r in failed.iterrows():
        msg = ": ".join(x for x in (r["error_type"], r["error_message"]) if x) or "failed (no error recorded)"
        by_msg.setdefault(msg, []).append(str(r["seed"]))
    return [f"seed{'s' if len(s) > 1 else ''} {', '.join(s)}: {m}" for m, s in by_msg.items()]


def _row(label: str, cells: pd.DataFrame, metrics: list[Metric], tables: list[published.PaperTable]) -> Row:
    ok = cells[cells["status"] == "ok"]
    first = cells.iloc[0]
    params = json.loads(first["params"])
    preset = first.get("preset") if isinstance(first.get("preset"), str) else None
    row = Row(label, first["method"], params, preset, len(ok), len(cells) - len(ok),
              _errors(cells[cells["status"] != "ok"]))
    paper = published.paper_values(tables, preset)
    for m in metrics:
        values = ok[m.key].tolist() if m.key in ok else []
        delta = summarize(ok[f"d_{m.key}"].tolist()) if f"d_{m.key}" in ok and first["method"] != VANILLA else None
        row.cells[m.key] = Cell(summarize(values), m, paper=paper.get(m.key), delta=delta)
    return row


def _mark(rows: list[Row], metrics: list[Metric]) -> None:
    """Best/tied flags per metric and the mean rank over rank groups (probe label counts count once).

    A row with results but no value for a ranked metric shares the last places, so that a method cannot
    climb by not reporting (the LM has no MI); rows with no ok cell get no rank.
    """
    group_ranks: dict[str, dict[str, list[float]]] = {}
    for m in metrics:
        sums = {r.label: r.cells[m.key].summary for r in rows}
        best, tie = mark_best(sums, m.better)
        for r in rows:
            r.cells[m.key].best, r.cells[m.key].tied = r.label in best, r.label in tie
        rk = ranks({k: s.mean for k, s in sums.items() if s}, m.better) if m.rank_group and m.better else {}
        if rk:
            ranked = [r.label for r in rows if r.n_ok]
            last = len(rk) + (sum(label not in rk for label in ranked) + 1) / 2
            for label in ranked:
                group_ranks.setdefault(label, {}).setdefault(str(m.rank_group), []).append(rk.get(label, last))
    for r in rows:
        groups = group_ranks.get(r.label)
        if groups:
            r.mean_rank = sum(sum(v) / len(v) for v in groups.values()) / len(groups)


def _sort_key(r: Row) -> tuple[int, float, str]:
    return (r.status == "failed", math.inf if r.mean_rank is None else r.mean_rank, r.label)


def build_boards(df: pd.DataFrame) -> list[Board]:
    """Boards by dataset, size and decoder (the LSTM's first); rows by mean rank, failed rows last. ``df`` has
    ``time_ratio``."""
    boards = []
    for (dataset, size, decoder), runs in df.groupby(list(BOARD_KEYS), sort=True):
        metrics = _metrics(runs)
        tables = published.tables_for(str(dataset), str(size), str(decoder))
        rows = [_row(str(label), cells, metrics, tables) for label, cells in runs.groupby("label", sort=True)]
        _mark(rows, metrics)
        rows.sort(key=_sort_key)
        matches = {t.title: [[r.label for r in rows if pr.matches(r.preset)] for pr in t.rows]
                   for t in tables}
        boards.append(Board(str(dataset), str(size), metrics, rows, runs, tables, matches, decoder=str(decoder)))
    return sorted(boards, key=lambda b: (b.dataset, b.size, b.decoder != "lstm", b.decoder))


def aggregate_frame(boards: list[Board]) -> pd.DataFrame:
    """The aggregated results.csv: one line per board row, raw units (probe accuracy as in the results)."""
    lines = []
    for b in boards:
        for r in b.rows:
            line: dict[str, Any] = {"dataset": b.dataset, "size": b.size, "decoder": b.decoder, "label": r.label,
                                    "method": r.method,
                                    "params": json.dumps(r.params, sort_keys=True), "status": r.status,
                                    "n_ok": r.n_ok, "n_failed": r.n_failed, "errors": " | ".join(r.errors)}
            for m in b.metrics:
                c, s = r.cells[m.key], r.cells[m.key].summary
                line |= {f"{m.key}_mean": s.mean if s else None, f"{m.key}_sd": s.sd if s else None,
                         f"{m.key}_n": s.n if s else 0, f"{m.key}_ci95_low": s.lo if s else None,
                         f"{m.key}_ci95_high": s.hi if s else None, f"{m.key}_best": c.best,
                         f"{m.key}_tied": c.tied}
                if f"d_{m.key}" in b.runs:
                    line[f"{m.key}_vs_vanilla"] = c.delta.mean if c.delta else None
            line["mean_rank"] = r.mean_rank
            lines.append(line)
    return pd.DataFrame(lines)
