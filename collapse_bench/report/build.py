"""Assemble the page: records → boards → plots → one self-contained HTML, plus results.csv and results.jsonl."""
from __future__ import annotations

import json
import math
from importlib import resources
from pathlib import Path
from typing import Any, Callable

from dataclasses import dataclass

import jinja2
import pandas as pd
from markupsafe import Markup

from ..baseline import VANILLA
from ..fileio import atomic_write_text
from ..store import read_stale_marks
from . import findings as fnd
from . import published
from .evidence import BOOTSTRAP_B, COLLAPSE_KL, Collapse, SentenceEvidence, collapse_rates, sentence_evidence
from .families import family_key, family_slug
from .load import Loaded, curves_frame, frame, kl_dims_frame, read_records, seed_key
from .plots import board_plots, palette
from .stats import STARVED_CPU_SHARE, Summary, add_time_ratio, add_vanilla_deltas, cpu_share
from .table import Board, aggregate_frame, build_boards
from .text_section import board_text

CSV_NAME, JSONL_NAME, FINDINGS_NAME = "results.csv", "results.jsonl", "findings.md"
AGAINST_FILE = "against.json"     # written by `run --against DIR` (collapse_bench/against.py): the borrowed cells


@dataclass(frozen=True)
class EvidenceRow:
    label: str
    family: str
    family_slug: str
    across_seeds: str               # the table's paired NLL difference over seeds, with its t-interval
    sentences: SentenceEvidence | None   # None: vanilla itself
    collapse: Collapse | None


def _delta_text(d: Summary | None) -> str:
    if d is None:
        return "–"
    ci = f" [{d.lo:+.3f}, {d.hi:+.3f}]" if d.n >= 2 else ""
    return f"{d.mean:+.3f}{ci} ({d.n})"


def board_evidence(board: Board, records: list[dict[str, Any]], results_dir: Path) -> list[EvidenceRow]:
    """The board's collapse rates and per-sentence NLL differences to vanilla, by family, then label."""
    key = (board.dataset, board.size, board.decoder)
    sentences, collapse = sentence_evidence(records, results_dir, key), collapse_rates(records, key)
    rows = sorted(board.rows, key=lambda r: (family_key(r.family), r.label))
    return [EvidenceRow(r.label, r.family, r.family_slug,
                        "reference" if r.method == VANILLA else _delta_text(r.cells["nll"].delta),
                        sentences.get(r.label), collapse.get(r.label)) for r in rows if r.n_ok]


def read_against(run_dir: Path) -> dict[str, Any] | None:
    """OUT/against.json ({"dir": ..., "cells": [...]}) when the run borrowed cells, else None."""
    path = run_dir / AGAINST_FILE
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    cells = data.get("cells") if isinstance(data, dict) else None
    return {"dir": str(data.get("dir", "?")), "cells": sorted(str(c) for c in cells)} if isinstance(cells, list) \
        else None


def _uniq(values: Any, sep: str = ", ") -> str:
    vals = sorted({str(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))})
    return sep.join(vals) if vals else "–"


def _seeds(values: Any) -> str:
    seeds = {v for v in values if v is not None and v == v}   # v == v drops NaN
    return ", ".join(str(s) for s in sorted(seeds, key=seed_key)) or "–"


def _info(df: pd.DataFrame, loaded: Loaded) -> dict[str, str]:
    def u(c: str) -> str:
        return _uniq(df.get(c, []))

    n_ok = int((df["status"] == "ok").sum())
    threads = _uniq(int(t) for t in df.get("threads", []) if t == t)
    return {
        "harness_version": u("harness_version"), "git": u("git"),
        "started": min((s for s in df.get("started", []) if isinstance(s, str)), default="–"),
        "finished": max((s for s in df.get("finished", []) if isinstance(s, str)), default="–"),
        "machine": " · ".join([u("hostname"), u("platform"), f"Python {u('python')}", f"torch {u('torch')}",
                               f"device {u('device')}", f"threads {threads}"]),
        "datasets": u("dataset"), "sizes": u("size"), "seeds": _seeds(df.get("seed", [])),
        "cells": f"{len(df)} ({n_ok} ok, {len(df) - n_ok} failed)",
        "protocol": f"IW samples {u('iw_samples')} on {u('iw_sentences')} test sentences; MI estimator {u('mi_estimator')}",
        "source": loaded.source,
    }


def _starved(df: pd.DataFrame) -> list[tuple[str, str]]:
    """(cell, its share of a core) of the starved cells (`stats.starved`)."""
    rows = df[df["starved"]] if "starved" in df else df.iloc[:0]
    return sorted((str(c), f"{share:.0%}") for c, share in zip(rows["cell"], cpu_share(rows), strict=True))


def _fmt(x: Any, digits: int = 2) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else (
        f"{x:.{digits}f}" if isinstance(x, float) else str(x))


def _runs(board: Board) -> list[dict[str, str]]:
    out = []
    for r in board.runs.sort_values(["label", "cell"]).to_dict("records"):
        err = ": ".join(x for x in (r["error_type"], r["error_message"]) if x)
        out.append({"cell": r["cell"], "seed": _fmt(r["seed"]), "status": r["status"],
                    "train_seconds": _fmt(r["train_seconds"]), "seconds_per_step": _fmt(r["seconds_per_step"], 4),
                    "eval_seconds": _fmt(r["eval_seconds"]), "peak_memory_mb": _fmt(r["peak_memory_mb"], 0),
                    "threads": _fmt(r["threads"], 0), "device": _fmt(r.get("device")), "torch": _fmt(r.get("torch")),
                    "git": _fmt(r.get("git")), "finished": _fmt(r.get("finished")), "error": err,
                    "traceback": r.get("traceback") or "", "config": r.get("config") or "{}"})
    return out


def _template() -> jinja2.Template:
    # autoescape=True: every plug-in or config string is escaped; only our own SVG is passed as Markup.
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    text = resources.files(__package__).joinpath("templates/leaderboard.html").read_text(encoding="utf-8")
    return env.from_string(text)


def build_report(run_dir: str | Path, out_file: str | Path | None = None, *,
                 warn: Callable[[str], None] | None = None) -> Path:
    """Build the leaderboard from ``run_dir/results/*.json`` (or ``run_dir/results.jsonl``); return its path.

    Writes ``results.csv`` (aggregated) and ``results.jsonl`` (raw records) beside the HTML. Unreadable result
    files are left out with a warning on the page, and passed to ``warn`` (e.g. to print them) as well.
    """
    run_dir = Path(run_dir)
    out = Path(out_file) if out_file is not None else run_dir / "leaderboard.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    loaded = read_records(run_dir)
    if warn is not None:
        for name, why in loaded.unreadable:
            warn(f"unreadable result file left out of the leaderboard: {name}: {why}")
    df = add_vanilla_deltas(add_time_ratio(frame(loaded.records)))
    starved_cells = _starved(df)
    if warn is not None:
        for cell, share in starved_cells:
            warn(f"{cell}: trained on {share} of a core, its time is left out of the time ratios")
    boards = build_boards(df)
    curves, dims = curves_frame(loaded.records), kl_dims_frame(loaded.records)
    pal = palette(dict(zip(df["label"], df["method"], strict=True)))
    notes = fnd.read_notes(run_dir)
    for b in boards:
        b.plots = [(title, Markup(svg), err, fam) for title, svg, err, fam in board_plots(b, curves, pal, dims)]
        b.evidence = board_evidence(b, loaded.records, run_dir / "results")
        if (b.runs["method"] == VANILLA).any() and (b.runs["status"] == "ok").any():
            b.findings = fnd.check_findings(b.runs, b.dataset, notes, b.decoder)
        b.text, b.text_missing = board_text(loaded.records, b.dataset, b.size, [r.label for r in b.rows], b.anchor)
    found = [f for b in boards for f in b.findings]
    if found:
        atomic_write_text(out.parent / FINDINGS_NAME, fnd.markdown(found))
    atomic_write_text(out.parent / JSONL_NAME,
           "".join(json.dumps(r, sort_keys=True, ensure_ascii=False, default=str) + "\n" for r in loaded.records))
    atomic_write_text(out.parent / CSV_NAME, aggregate_frame(boards).to_csv(index=False))
    families = sorted({r.family for b in boards for r in b.rows}, key=family_key)
    html = _template().render(info=_info(df, loaded), boards=boards, unreadable=loaded.unreadable,
                              families=[(f, family_slug(f)) for f in families], against=read_against(run_dir),
                              bootstrap_b=BOOTSTRAP_B, collapse_kl=COLLAPSE_KL,
                              stale=sorted(read_stale_marks(run_dir).items()), starved=starved_cells,
                              starved_share=f"{STARVED_CPU_SHARE:.0%}",
                              citation=published.CITATION, csv_name=CSV_NAME, jsonl_name=JSONL_NAME, runs_of=_runs)
    atomic_write_text(out, html)
    return out
