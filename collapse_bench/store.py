"""Durable results: one JSON file per cell, written atomically; provenance for every record."""
from __future__ import annotations

import hashlib
import json
import platform
import re
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from .fileio import atomic_open, atomic_write_text

SCHEMA = 1
_PACKAGES = ("torch", "numpy", "scikit-learn", "pandas", "ray", "optuna")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def short_hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:8]


def safe_name(text: str, identity: str | None = None) -> str:
    """A file-name-safe rendering of `text`; a hash of `identity` (default: `text`, e.g. the exact label behind a
    rounded one) keeps distinct names distinct."""
    identity = text if identity is None else identity
    clean = re.sub(r"[^A-Za-z0-9._=+-]+", "-", text).strip("-")[:80]
    return clean if clean == text == identity else f"{clean}-{short_hash(identity)[:6]}"


def _git(*args: str) -> subprocess.CompletedProcess | None:
    """`git ARGS` in the harness's folder; None when git cannot run."""
    try:
        return subprocess.run(["git", *args], cwd=Path(__file__).resolve().parent, capture_output=True, text=True,
                              timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None


def git_hash() -> str | None:
    out = _git("rev-parse", "--short", "HEAD")
    return (out.stdout.strip() or None) if out is not None else None


def git_dirty() -> bool | None:
    """True when the code that runs is not the commit's: tracked files differ from HEAD, or methods/ holds files git
    does not track (a new method file is code too); None outside git."""
    tracked = _git("status", "--porcelain", "--untracked-files=no")
    if tracked is None or tracked.returncode != 0:
        return None
    untracked = _git("status", "--porcelain", "--untracked-files=all", "--", ":(top)methods")
    return bool(tracked.stdout.strip()) or bool(untracked is not None and untracked.stdout.strip())


# Read once, when this process imports the harness: a worker that runs cells for hours records the commit whose
# code it imported, not whatever HEAD is when a cell starts (someone may commit meanwhile).
_GIT_AT_IMPORT = {"git": git_hash(), "git_dirty": git_dirty()}


def package_versions() -> dict[str, str | None]:
    out = {}
    for p in _PACKAGES:
        try:
            out[p] = version(p)
        except PackageNotFoundError:
            out[p] = None
    return out


def provenance() -> dict:
    from . import __version__
    return {"harness_version": __version__, **_GIT_AT_IMPORT, "packages": package_versions(),
            "python": platform.python_version(), "platform": platform.platform(), "hostname": socket.gethostname(),
            "argv": sys.argv}


@dataclass
class CellResult:
    """What running a cell produced (ok or failed), before it becomes a record; plain data, picklable."""
    status: str = "failed"
    label: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    error: dict[str, Any] | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    timing: dict[str, Any] = field(default_factory=dict)
    curves: list[dict] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)   # provenance() + started, dataset_hash, finished
    scoring: dict[str, Any] = field(default_factory=dict)      # which scoring produced the metrics
    evidence: dict[str, bytes] = field(default_factory=dict)   # files kept beside the record: sentences, model
    text: dict[str, Any] | None = None                          # text.text_evidence: the first seed's cell only


def failed_result(spec, error: dict[str, Any]) -> CellResult:
    """The result of a cell that could not run at all (its worker died, the retries ran out)."""
    stamp = now()
    return CellResult(label=spec.label, params=dict(spec.params), error=error,
                      provenance={**provenance(), "started": stamp, "finished": stamp})


def build_record(spec, result: CellResult) -> dict:
    """The one place a record is laid out, ok or failed: the spec says which cell, the result what happened."""
    return {"schema": SCHEMA, "cell": spec.cell, "method": spec.method, "params": result.params,
            "label": result.label, "dataset": spec.dataset, "size": spec.size, "seed": spec.seed,
            "overrides": spec.overrides, "preset": spec.preset, "status": result.status, "error": result.error,
            "metrics": result.metrics, "scoring": result.scoring, "timing": result.timing, "curves": result.curves,
            "config": result.config, "provenance": result.provenance, "text": result.text}


STALE_FILE = "stale.json"


def read_stale_marks(root: str | Path) -> dict[str, str]:
    try:
        return json.loads((Path(root) / STALE_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


class ResultStore:
    """`root/results/<cell>.json`. Writes go to a temp file in the same folder and are renamed into place,
    so a reader (or a crash) never sees half a file."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.dir = self.root / "results"

    def path(self, cell: str) -> Path:
        return self.dir / f"{cell}.json"

    def load(self, cell: str) -> dict | None:
        try:
            return json.loads(self.path(cell).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def is_done(self, cell: str) -> bool:
        rec = self.load(cell)
        return rec is not None and rec.get("status") == "ok"

    def sentences_path(self, cell: str) -> Path:
        """The per-sentence IW-NLL beside the record (`nll`, `index` into the test split), committed with a study."""
        return self.dir / f"{cell}.sentences.npz"

    def model_path(self, cell: str) -> Path:
        """The kept model (git-ignored): `torch.load(path, weights_only=True)`."""
        return self.root / "models" / f"{cell}.pt"

    def write(self, record: dict, evidence: dict[str, bytes] | None = None) -> Path:
        """The record, and first the files behind it (so a record never names evidence that is not there)."""
        evidence = evidence or {}
        paths = {"sentences": self.sentences_path(record["cell"]), "model": self.model_path(record["cell"])}
        for kind, data in evidence.items():
            with atomic_open(paths[kind], "wb") as f:
                f.write(data)
        path = self.path(record["cell"])
        with atomic_open(path, "w") as f:
            json.dump(record, f, indent=1, default=str, allow_nan=True)
        return path

    def stale_marks(self) -> dict[str, str]:
        """{cell: why} for results kept although their code has changed (`run --keep-stale`); the page shows them."""
        return read_stale_marks(self.root)

    def set_stale_marks(self, marks: dict[str, str]) -> None:
        path = self.root / STALE_FILE
        if marks:
            atomic_write_text(path, json.dumps(dict(sorted(marks.items())), indent=1) + "\n")
        else:
            path.unlink(missing_ok=True)

    def records(self) -> list[dict]:
        out = []
        for p in sorted(self.dir.glob("*.json")):
            try:
                out.append(json.loads(p.read_text()))
            except json.JSONDecodeError:
                continue
        return out
