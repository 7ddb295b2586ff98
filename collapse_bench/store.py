"""Durable results: one JSON file per cell, written atomically; provenance for every record."""
from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

SCHEMA = 1
_PACKAGES = ("torch", "numpy", "scikit-learn", "pandas", "ray", "optuna")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def short_hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:8]


def safe_name(text: str) -> str:
    """A file-name-safe rendering; a hash of the original keeps distinct names distinct."""
    clean = re.sub(r"[^A-Za-z0-9._=+-]+", "-", text).strip("-")[:80]
    return clean if clean == text else f"{clean}-{short_hash(text)[:6]}"


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
    """True when tracked files differ from HEAD (the code that ran is not the commit's); None outside git."""
    out = _git("status", "--porcelain", "--untracked-files=no")
    return bool(out.stdout.strip()) if out is not None and out.returncode == 0 else None


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

    def write(self, record: dict) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.path(record["cell"])
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".tmp-", suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump(record, f, indent=1, default=str, allow_nan=True)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)   # mkstemp creates 0600; results are meant to be shared
        os.replace(tmp, path)
        return path

    def records(self) -> list[dict]:
        out = []
        for p in sorted(self.dir.glob("*.json")):
            try:
                out.append(json.loads(p.read_text()))
            except json.JSONDecodeError:
                continue
        return out
