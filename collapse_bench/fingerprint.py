"""What code produced a cell: the method's own module (its source's hash; the distribution and version of a
plug-in) and the harness's training and scoring code. A finished cell whose fingerprint differs from the code
now is stale: a sweep reruns it (or keeps it, marked, when asked) instead of reusing its number silently."""
from __future__ import annotations

import functools
import hashlib
import sys
from importlib.metadata import PackageNotFoundError, packages_distributions, version
from pathlib import Path

from . import __version__, registry

_PACKAGE = Path(__file__).resolve().parent
# The code every cell's numbers depend on, whatever the method: model, losses, training, data, config; and scoring.
# A change of the scoring sources alone leaves a kept model valid: `rescore` scores it again.
TRAINING_SOURCES = ("config.py", "model.py", "decoders.py", "posterior.py", "method.py", "context.py", "train.py",
                    "cell.py", "data/*.py", "methods/helpers.py")
SCORING_SOURCES = ("evaluate.py", "probe.py", "text.py")      # text.py: what the models write
HARNESS_SOURCES = TRAINING_SOURCES + SCORING_SOURCES


def _sha256(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def _harness_files(patterns: tuple[str, ...] = HARNESS_SOURCES) -> list[Path]:
    files = []
    for pattern in patterns:
        folder = _PACKAGE
        if pattern.startswith("methods/"):        # the methods folder is installed as collapse_bench.methods
            folder = Path(sys.modules["collapse_bench.methods"].__file__).resolve().parent
            pattern = pattern.removeprefix("methods/")
        files += sorted(folder.glob(pattern))
    return files


@functools.lru_cache(maxsize=1)
def harness_code() -> dict:
    """The harness's version, one hash of its training and scoring sources, and one of each part (read once per
    process)."""
    registry.names()                               # loads collapse_bench.methods (helpers.py is hashed)
    return {"version": __version__, "sha256": _sha256(_harness_files()),
            "training": _sha256(_harness_files(TRAINING_SOURCES)), "scoring": _sha256(_harness_files(SCORING_SOURCES))}


@functools.lru_cache(maxsize=None)
def method_code(name: str) -> dict:
    """The registered method's module, the hash of its source file, and the distribution that installed it."""
    cls = registry.get(name)
    module = sys.modules.get(cls.__module__)
    path = Path(getattr(module, "__file__", "") or "")
    top = cls.__module__.split(".")[0]
    dist = (packages_distributions().get(top) or [None])[0]
    try:
        dist_version = version(dist) if dist else None
    except PackageNotFoundError:
        dist_version = None
    return {"module": cls.__module__, "sha256": _sha256([path]) if path.is_file() else None,
            "distribution": dist, "version": dist_version}


def code_fingerprint(name: str) -> dict:
    """{"method": method_code, "harness": harness_code, "fingerprint": one short hash of both}."""
    method, harness = method_code(name), harness_code()
    digest = hashlib.sha256(repr((sorted(method.items()), sorted(harness.items()))).encode()).hexdigest()[:12]
    return {"fingerprint": digest, "method": method, "harness": harness}


def staleness(record: dict, method: str) -> str | None:
    """Why a finished record's code differs from the code now (None: the same code, or a record from before
    fingerprints, which cannot tell)."""
    then = (record.get("provenance") or {}).get("code")
    if not then:
        return None
    now = code_fingerprint(method)
    if then.get("fingerprint") == now["fingerprint"]:
        return None
    changed = [part for part in ("method", "harness") if then.get(part) != now[part]]
    return " and ".join({"method": "the method's code", "harness": "the harness's training/scoring code"}[p]
                        for p in changed) + " changed"
