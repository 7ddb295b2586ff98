"""Reading corpus text files: lines, tokenised lines, `label<TAB>text` lines; `DataError` for bad files."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np


class DataError(ValueError):
    """Malformed or missing data; the message names the file (and line) and the fix."""


def read_lines(path: str | Path) -> list[str]:
    """Lines of a (possibly gzipped) UTF-8 file; a blank line is an error."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        lines = f.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for i, line in enumerate(lines):
        if not line.strip():
            raise DataError(f"{path}:{i + 1}: blank line; every line must hold one example, so delete it")
    return [line.rstrip("\r") for line in lines]


def read_text(path: Path) -> list[list[str]]:
    """One whitespace-tokenised sentence per line."""
    return [line.split() for line in read_lines(path)]


def read_labelled(path: Path) -> tuple[list[list[str]], np.ndarray]:
    """`label<TAB>text` lines with a non-negative integer label."""
    lines = read_lines(path)
    toks, labels = [], np.empty(len(lines), dtype=np.int64)
    for i, line in enumerate(lines):
        lab, tab, text = line.partition("\t")
        try:
            labels[i] = int(lab) if tab else -1
        except ValueError:
            labels[i] = -1
        if labels[i] < 0:
            raise DataError(f"{path}:{i + 1}: expected 'label<TAB>text' with a non-negative integer label, got "
                            f"{line[:60]!r}; fix the line, e.g. '1\\tthe food was great .'")
        toks.append(text.split())
    return toks, labels
