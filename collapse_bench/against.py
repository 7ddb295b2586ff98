"""Rank new methods against a published folder without rerunning its baselines (`run --methods mine --against DIR`).

A cell of DIR is comparable with a new cell when they share dataset, size, seed and settings (the `--set`
sections, the decoder among them), and DIR's cell was trained and scored by the code that runs now (its code
fingerprint is today's: the harness's training and scoring sources, and its own method's module). Every new cell
needs DIR's vanilla cell of its board and seed (the baseline every difference is paired with); otherwise nothing
runs and the error names what differs. The comparable cells of DIR are copied into OUT (records and their
per-sentence files; DIR is only read) and listed in OUT/against.json, which the page shows."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from .baseline import VANILLA
from .cell import CellSpec
from .config import ConfigError
from .fileio import atomic_write_text
from .fingerprint import staleness
from .store import ResultStore

AGAINST_FILE = "against.json"


def board_key(dataset: str, size: str, seed: int, overrides: dict) -> tuple:
    return dataset, size, seed, json.dumps(overrides or {}, sort_keys=True)


def _describe(key: tuple) -> str:
    dataset, size, seed, overrides = key
    shown = "" if overrides == "{}" else f", settings {overrides}"
    return f"{dataset}, size {size}, seed {seed}{shown}"


def comparable_cells(specs: list[CellSpec], folder: Path) -> list[dict]:
    """DIR's finished cells on the boards of `specs`, of today's code; ConfigError naming what differs when a
    board lacks its vanilla baseline or holds cells of other code."""
    store = ResultStore(folder)
    if not store.dir.is_dir():
        raise ConfigError(f"--against {folder}: no results/ folder there; give a folder of finished cells, e.g. "
                          f"--against reports/study/quick")
    wanted = {board_key(s.dataset, s.size, s.seed, s.overrides) for s in specs}
    by_board: dict[tuple, list[dict]] = {}
    for rec in store.records():
        if rec.get("status") == "ok" and rec.get("preset") is None:
            by_board.setdefault(board_key(rec["dataset"], rec["size"], rec["seed"], rec.get("overrides")), []).append(rec)
    problems = []
    for key in sorted(wanted):
        cells = by_board.get(key, [])
        if not any(r["method"] == VANILLA for r in cells):
            problems.append(f"no vanilla cell for {_describe(key)}{_nearest(key, by_board)}")
        problems += [f"{r['cell']}: {why}" for r in cells if (why := _other_code(r))]
    if problems:
        raise ConfigError(f"--against {folder}: its cells are not comparable with the ones asked for, nothing was "
                          f"run or written:\n  " + "\n  ".join(problems) +
                          "\n  (rerun the baselines with this code: python -m collapse_bench run --methods vanilla "
                          "... --out DIR, or drop --against)")
    new = {(s.method, s.cell) for s in specs}
    return [r for key in sorted(wanted) for r in by_board[key] if (r["method"], r["cell"]) not in new]


def _other_code(record: dict) -> str | None:
    try:
        return staleness(record, record["method"])
    except KeyError as e:            # a method DIR ran that is not registered here
        return f"its method is not registered here ({e})"


def _nearest(key: tuple, boards: dict[tuple, list[dict]]) -> str:
    """What the folder's boards of the same dataset differ in (a hint at the fix)."""
    same = [k for k in boards if k[0] == key[0]]
    if not same:
        return f" (it holds no {key[0]} cells)"
    sizes, seeds, settings = ({k[i] for k in same} for i in (1, 2, 3))
    return f" (its {key[0]} cells: sizes {sorted(sizes)}, seeds {sorted(seeds)}, settings {sorted(settings)})"


def borrow(records: list[dict], folder: Path, out: Path) -> None:
    """Copy DIR's comparable records (and their per-sentence files) into OUT; list them in OUT/against.json."""
    src, dest = ResultStore(folder), ResultStore(out)
    for rec in records:
        dest.write(rec)
        if src.sentences_path(rec["cell"]).is_file():
            shutil.copyfile(src.sentences_path(rec["cell"]), dest.sentences_path(rec["cell"]))
    atomic_write_text(out / AGAINST_FILE, json.dumps({"dir": str(folder), "cells": sorted(r["cell"] for r in records)},
                                                     indent=1) + "\n")
