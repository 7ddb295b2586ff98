"""The study's tiers side by side (`build_study_tiers(study_root)`): each tier's page, then ``tiers.md`` and a small
``index.html`` that set the tiers' findings and per-method figures beside each other, and answer per tier whether
each remedy keeps z alive with each decoder (`alive`).

A board of one tier is matched with the board of another by dataset, decoder and settings (the size differs: that
is what a tier changes). Between the first tier and the last, a finding *moved* when its verdict differs; a method's
figure (KL, AU, NLL difference to vanilla, time ratio to vanilla) as `CRITERION` says."""
from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..baseline import VANILLA
from ..fileio import atomic_write_text
from . import findings as fnd
from .alive import AliveTable, alive_html, alive_markdown, alive_tables
from .build import build_report
from .drift import DRIFT_MD, drift_markdown
from .load import frame, read_records
from .marked import md_cell
from .stats import ALPHA, Summary, add_time_ratio, add_vanilla_deltas, welch_p
from .table import Board, build_boards

TIERS_MD, INDEX_HTML = "tiers.md", "index.html"
NOT_COMPARABLE = "not comparable"     # a verdict that neither holds nor moves
CRITERION = (f"a finding moved when its verdict differs; a method's figure moved when the tiers' seeds differ by a "
             f"two-sided Welch t-test at p ≤ {ALPHA:g}, and held otherwise; with one seed or no variance on a side it "
             f"is untestable unless the means are equal")
# (title, how a row gives the seeds' summary): the figures compared across tiers
FIGURES: tuple[tuple[str, Callable], ...] = (
    ("KL", lambda r: r.cells["kl"].summary),
    ("AU", lambda r: r.cells["au"].summary),
    ("ΔNLL vs vanilla", lambda r: r.cells["nll"].delta),
    ("time ×vanilla", lambda r: r.cells["time_ratio"].summary if "time_ratio" in r.cells else None),
)


def is_run(folder: Path) -> bool:
    return folder.is_dir() and (any((folder / "results").glob("*.json")) or (folder / "results.jsonl").is_file())


def _board_key(b: Board) -> tuple[str, str, str]:
    """(dataset, decoder, settings): the size's name dropped, its `--set` settings kept."""
    settings = b.size.split(" ", 1)[1] if " " in b.size else ""
    return b.dataset, b.decoder, settings


def _where(key: tuple[str, str, str]) -> str:
    dataset, decoder, settings = key
    return " · ".join(x for x in (dataset, decoder, settings) if x)


def tier_frame(folder: Path) -> pd.DataFrame:
    return add_vanilla_deltas(add_time_ratio(frame(read_records(folder).records)))


def tier_boards(df: pd.DataFrame, notes: dict[str, str]) -> dict[tuple[str, str, str], Board]:
    """One tier's boards, with their findings (on boards that hold vanilla), by `_board_key`."""
    out = {}
    for b in build_boards(df):
        if (b.runs["method"] == VANILLA).any() and (b.runs["status"] == "ok").any():
            b.findings = fnd.check_findings(b.runs, b.dataset, notes)
        out[_board_key(b)] = b
    return out


def moved(a: Summary | None, b: Summary | None) -> str:
    if a is None or b is None:
        return "–"
    p = welch_p(a, b)
    if math.isnan(p):
        return "held" if a.mean == b.mean else "untestable"
    return "moved" if p <= ALPHA else "held"


def _shown(s: Summary | None) -> str:
    if s is None:
        return "–"
    return f"{s.mean:.2f} ({s.n})" if s.n < 2 or math.isnan(s.sd) else f"{s.mean:.2f} ± {s.sd:.2f} ({s.n})"


@dataclass
class Tables:
    tiers: list[str]
    findings: list[tuple[str, str, list[str], str]]          # board, claim, verdict per tier, moved/held
    methods: list[tuple[str, str, list[tuple[str, str]]]]   # board, label, per figure (values per tier, moved/held)
    alive: dict[str, list[AliveTable]]                       # tier: does each remedy keep z alive, per decoder


def compare(tiers: dict[str, dict[tuple[str, str, str], Board]],
            alive: dict[str, list[AliveTable]] | None = None) -> Tables:
    """The findings and per-method figures of every tier; moved/held: the first tier against the last."""
    names = list(tiers)
    out = Tables(names, [], [], alive or {})
    for key in sorted({k for boards in tiers.values() for k in boards}):
        verdicts = {t: {f.id: f.verdict for f in tiers[t][key].findings} if key in tiers[t] else {} for t in names}
        for fid, claim, *_ in fnd.FINDINGS:
            vs = [verdicts[t].get(fid, "–") for t in names]
            if set(vs) != {"–"}:
                ends = {vs[0], vs[-1]}
                change = "–" if ends & {"–", NOT_COMPARABLE} else ("held" if len(ends) == 1 else "moved")
                out.findings.append((_where(key), claim, vs, change))
        rows = {t: {r.label: r for r in tiers[t][key].rows} if key in tiers[t] else {} for t in names}
        for label in sorted({lab for t in names for lab in rows[t]}):
            cells = []
            for _, get in FIGURES:
                got = [get(rows[t][label]) if label in rows[t] else None for t in names]
                cells.append((" → ".join(_shown(s) for s in got), moved(got[0], got[-1])))
            out.methods.append((_where(key), label, cells))
    return out


def findings_table(t: Tables) -> list[str]:
    return [f"| board | paper's finding | {' | '.join(t.tiers)} | {t.tiers[0]} → {t.tiers[-1]} |",
            "|---|---|" + "---|" * len(t.tiers) + "---|",
            *(f"| {md_cell(w)} | {md_cell(c)} | {' | '.join(vs)} | {ch} |" for w, c, vs, ch in t.findings)]


def methods_table(t: Tables, boards: set[str] | None = None) -> list[str]:
    """Each method's figures tier by tier; `boards`: only these boards (as `_where` names them)."""
    return [f"| board | method | {' | '.join(title for title, _ in FIGURES)} |", "|---|---|" + "---|" * len(FIGURES),
            *(f"| {md_cell(w)} | {md_cell(lab)} | " + " | ".join(f"{v} **{m}**" for v, m in cells) + " |"
              for w, lab, cells in t.methods if boards is None or w in boards)]


def markdown(t: Tables) -> str:
    """tiers.md: the findings at every tier, then each method's figures (tier by tier, `→` between them)."""
    arrow = " → ".join(t.tiers)
    lines = [f"# The study's tiers: {', '.join(t.tiers)}", "", "Verdicts and figures of each tier, side by side; "
             f"moved/held compares {t.tiers[0]} with {t.tiers[-1]}: {CRITERION}.",
             "", "## Findings", "", *findings_table(t), "", f"## Methods (mean ± sd (seeds), {arrow})", "",
             *methods_table(t)]
    for tier, tables in t.alive.items():
        lines += ["", f"## Does each remedy keep z alive? ({tier})", "", *alive_markdown(tables, "###")]
    return "\n".join(lines).rstrip("\n") + "\n"


def index_html(t: Tables, pages: dict[str, str]) -> str:
    """index.html: a link to each tier's page and the two tables (self-contained, escaped, no scripts)."""
    e = html.escape
    head = "".join(f"<th>{e(x)}</th>" for x in ("board", "paper's finding", *t.tiers, f"{t.tiers[0]} → {t.tiers[-1]}"))
    finds = "".join("<tr>" + "".join(f"<td>{e(x)}</td>" for x in (w, c, *vs)) + f'<td class="{ch}">{e(ch)}</td></tr>'
                    for w, c, vs, ch in t.findings)
    mhead = "".join(f"<th>{e(x)}</th>" for x in ("board", "method", *(title for title, _ in FIGURES)))
    methods = "".join("<tr>" + f"<td>{e(w)}</td><td>{e(lab)}</td>" +
                      "".join(f'<td>{e(v)} <b class="{m}">{e(m)}</b></td>' for v, m in cells) + "</tr>"
                      for w, lab, cells in t.methods)
    alive = "".join(f"<h2>Does each remedy keep z alive? ({e(tier)})</h2>{alive_html(tables)}"
                    for tier, tables in t.alive.items())
    links = "".join(f'<li><a href="{e(href)}">{e(name)}</a></li>' for name, href in pages.items())
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>collapse-bench study tiers</title>'
            f'<link rel="icon" href="data:,"><style>body{{font:14px/1.4 system-ui,sans-serif;margin:1.5em auto;'
            f'padding:0 1em}} table{{border-collapse:collapse}} td,th{{border-bottom:1px solid #e3e3e3;padding:.3em .45em;'
            f'text-align:left;vertical-align:top}} .moved,.notalive{{color:#8a1f1f}} .held,.alive{{color:#1f6a1f}}</style>'
            f'</head><body>'
            f"<h1>The study's tiers</h1><ul>{links}</ul><p>Moved/held compares {e(t.tiers[0])} with {e(t.tiers[-1])}: "
            f"{e(CRITERION)}.</p><h2>Findings</h2><table><thead><tr>{head}</tr></thead><tbody>{finds}</tbody></table>"
            f"<h2>Methods (mean ± sd (seeds), {e(' → '.join(t.tiers))})</h2><table><thead><tr>{mhead}</tr></thead>"
            f"<tbody>{methods}</tbody></table>{alive}</body></html>\n")


def study_tiers(study_root: Path, tiers: Sequence[str] | None = None) -> list[str]:
    """The tiers under ``study_root`` that hold results: ``tiers`` in their order, else every such folder."""
    names = list(tiers) if tiers is not None else sorted(d.name for d in Path(study_root).iterdir() if d.is_dir())
    return [t for t in names if is_run(Path(study_root) / t)]


def tier_tables(root: Path, names: Sequence[str]) -> Tables:
    """The tiers' findings, figures and z-alive tables, from their records (no page is written)."""
    frames = {t: tier_frame(root / t) for t in names}
    return compare({t: tier_boards(frames[t], fnd.read_notes(root / t)) for t in names},
                   {t: alive_tables(frames[t]) for t in names})


def build_study_tiers(study_root: str | Path, tiers: Sequence[str] | None = None, *,
                      warn: Callable[[str], None] | None = None) -> Path:
    """Each tier's page (``<root>/<tier>/leaderboard.html``), then ``<root>/tiers.md`` and ``<root>/index.html``
    setting the tiers side by side, and ``<root>/drift.md`` (the bf16 scoring checks); return the index's path. ``tiers``: their names in order (config.STUDY_TIERS)."""
    root = Path(study_root)
    names = study_tiers(root, tiers)
    if not names:
        raise ValueError(f"{root}: no tier folder with results ({', '.join(tiers or ()) or 'none named'})")
    pages = {t: build_report(root / t, warn=warn).relative_to(root).as_posix() for t in names}
    tables = tier_tables(root, names)
    atomic_write_text(root / TIERS_MD, markdown(tables))
    atomic_write_text(root / DRIFT_MD, drift_markdown({t: read_records(root / t).records for t in names}))
    atomic_write_text(root / INDEX_HTML, index_html(tables, pages))
    return root / INDEX_HTML
