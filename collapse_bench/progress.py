"""Sweep progress on stderr: on a terminal one tqdm bar over cells (done / running / failed, elapsed, ETA) with
a step bar per running cell; elsewhere (CI, a log file) one plain line per finished cell. Imports no torch."""
from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

from tqdm import tqdm

from .store import ResultStore


def _num(v: Any, spec: str) -> str:
    return "–" if v is None else format(v, spec)


def cell_line(record: dict, seconds: float | None = None, record_path: Path | None = None) -> str:
    """`[ok] label dataset/size seed0  NLL .. KL .. MI .. AU .. probe@N ..  12.3 s`, or the error's first line and
    where its record (with the traceback) is, `record_path`."""
    m, t = record.get("metrics") or {}, record.get("timing") or {}
    head = f"[{record.get('status')}] {record.get('label', record.get('method'))} " \
           f"{record.get('dataset')}/{record.get('size')} seed{record.get('seed')}"
    if record.get("status") == "ok":
        probe = m.get("probe") or {}
        first = min(probe, key=int) if probe else None
        latent = m.get("has_latent", True)          # a model without z (the LM) has no KL, MI or AU: '–', as the table
        kl, mi, au = ((_num(m.get("kl"), ".2f"), _num(m.get("mi"), ".2f"), _num(m.get("au"), "d")) if latent
                      else ("–", "–", "–"))
        body = (f"NLL {_num(m.get('nll'), '.2f')}  KL {kl}  MI {mi}  AU {au}"
                + (f"  probe@{first} {probe[first]['mean']:.3f}" if first else ""))
    else:
        err = record.get("error") or {}
        body = f"{err.get('type', 'error')}: {str(err.get('message', '')).strip().splitlines()[0] if err.get('message') else ''}"
        if record_path is not None:
            body += f"  (traceback in {record_path})"
    if seconds is None and t.get("wall_seconds") is not None:
        seconds = t["wall_seconds"] + (t.get("eval_seconds") or 0.0)
    return f"{head}  {body}" + (f"  {seconds:.1f} s" if seconds is not None else "")


def _fallback_shape(stream: TextIO) -> dict[str, int]:
    """Some terminals (a pty opened without a size: `script`, some CI runners) report 0 x 0, where tqdm would
    draw nothing at all; give it a size there and let it query the terminal everywhere else."""
    try:
        cols, rows = os.get_terminal_size(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return {"ncols": 100, "nrows": 40}
    return {} if cols > 0 and rows > 0 else {"ncols": cols or 100, "nrows": rows or 40}


class SweepProgress:
    """Receives the executor's events (`start`, `step`) and the driver's finished records (`finish`)."""

    def __init__(self, total: int, *, out: str | Path | None = None, stream: TextIO | None = None,
                 tty: bool | None = None, step_bars: bool = True, mininterval: float = 0.1):
        self.store = ResultStore(out) if out is not None else None    # where a failed cell's line points
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.failed = 0
        self.started: dict[str, float] = {}
        self.cell_bars: dict[str, tuple[tqdm, int]] = {}     # cell -> (step bar, its line below the main bar)
        self.step_bars = step_bars and self.tty
        self.mininterval = mininterval
        self.shape = _fallback_shape(self.stream) if self.tty else {}
        self.bar = tqdm(total=total, desc="cells", unit="cell", file=self.stream, mininterval=mininterval, **self.shape,
                        bar_format="{desc}: {n_fmt}/{total_fmt} |{bar:24}| {elapsed} elapsed, ETA {remaining}{postfix}",
                        disable=not self.tty) if total else None
        self._postfix()
        self._stop = threading.Event()
        if self.bar is not None and self.tty:   # keep elapsed/ETA moving between events (Ray sends no steps)
            threading.Thread(target=self._tick, name="sweep-progress", daemon=True).start()

    def _tick(self) -> None:
        while not self._stop.wait(1.0):
            self.bar.refresh()

    def _postfix(self, refresh: bool = True) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(f"running {len(self.started)}, failed {self.failed}", refresh=refresh)

    def start(self, spec: Any) -> None:
        self.started[spec.cell] = time.monotonic()
        if self.step_bars:
            free = min(set(range(1, len(self.cell_bars) + 2)) - {p for _, p in self.cell_bars.values()})
            bar = tqdm(desc=f"  {spec.method} {spec.dataset} seed{spec.seed}"[:40], unit="step", position=free,
                       leave=False, file=self.stream, mininterval=self.mininterval, **self.shape,
                       bar_format="{desc}: {n_fmt}/{total_fmt} |{bar:24}| {rate_fmt}, ETA {remaining}")
            self.cell_bars[spec.cell] = (bar, free)
        self._postfix()

    def step(self, spec: Any, step: int, total: int) -> None:
        if spec.cell in self.cell_bars:
            bar = self.cell_bars[spec.cell][0]
            bar.total = total
            bar.update(step - bar.n)

    def finish(self, record: dict) -> None:
        cell = record.get("cell", "")
        t0 = self.started.pop(cell, None)
        if cell in self.cell_bars:
            self.cell_bars.pop(cell)[0].close()
        self.failed += record.get("status") != "ok"
        path = self.store.path(cell) if self.store is not None and cell else None
        line = cell_line(record, None if t0 is None else time.monotonic() - t0, path)
        if self.tty:
            tqdm.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)
        self._postfix(refresh=False)
        if self.bar is not None:
            self.bar.update(1)
            self.bar.refresh()      # update() alone may skip drawing within mininterval of the last draw

    def close(self) -> None:
        self._stop.set()
        for bar, _ in self.cell_bars.values():
            bar.close()
        self.cell_bars.clear()
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> "SweepProgress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
