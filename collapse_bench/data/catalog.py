"""Which datasets exist, which files each needs, and where they are looked for (`--data-dir`, else
$COLLAPSE_BENCH_DATA). `check_dataset` answers from file existence alone, before anything is loaded."""
from __future__ import annotations

import difflib
import os
from pathlib import Path

from .files import DataError

DATASETS: tuple[str, ...] = ("synthetic", "ptb", "short-yelp", "yahoo-mini", "yelp", "yahoo")
ENV_VAR = "COLLAPSE_BENCH_DATA"

SHORT_YELP, SHEN, YAHOO, YELP = "short_yelp_li2019", "yelp_shen2017", "yahoo_yang2017", "yelp_yang2017"
LABEL_SIZES = (100, 500, 1000, 2000, 10000)
SHEN_FILES = tuple(f"{SHEN}/sentiment.{part}.{c}" for part in ("dev", "test") for c in (0, 1))
FILES: dict[str, tuple[str, ...]] = {
    "ptb": ("ptb/ptb.train.txt", "ptb/ptb.valid.txt", "ptb/ptb.test.txt"),
    "short-yelp": (f"{SHORT_YELP}/vocab.txt", f"{SHORT_YELP}/short_yelp.valid.txt", f"{SHORT_YELP}/short_yelp.test.txt",
                   *(f"{SHORT_YELP}/short_yelp.train.{n}.txt" for n in LABEL_SIZES), *SHEN_FILES),
    "yahoo-mini": (f"{YAHOO}/vocab.txt", f"{YAHOO}/yahoo.valid.txt", f"{YAHOO}/yahoo.test.txt"),
    "yelp": (f"{YELP}/vocab.txt", *(f"{YELP}/yelp.{s}.txt" for s in ("train", "valid", "test"))),
    "yahoo": (f"{YAHOO}/vocab.txt", *(f"{YAHOO}/yahoo.{s}.txt" for s in ("train", "valid", "test"))),
}
_MISSING_HINT = {
    "yelp": " The Yelp LM text (Yang et al. 2017) is not in the staged data; 'short-yelp' is the Yelp corpus that is.",
    "yahoo": " yahoo.train.txt (Yang et al. 2017) is not in the staged data; 'yahoo-mini' uses its valid/test files.",
}


def default_data_dir() -> Path | None:
    """$COLLAPSE_BENCH_DATA, or None when unset or blank."""
    v = os.environ.get(ENV_VAR, "").strip()
    return Path(v) if v else None


def check_dataset(name: str, data_dir: str | Path | None) -> None:
    """Raise DataError unless dataset `name` is known and every file it needs exists under `data_dir` (None:
    $COLLAPSE_BENCH_DATA). Cheap: checks names and file existence, reads nothing; meant to run before a sweep."""
    check_name(name)
    if name != "synthetic":
        dataset_files(name, data_dir)


def check_name(name: str) -> None:
    """Raise DataError, with the closest known name, unless `name` is one of DATASETS."""
    if name not in DATASETS:
        close = difflib.get_close_matches(name, DATASETS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise DataError(f"unknown dataset {name!r}.{hint} Known datasets: {', '.join(DATASETS)}.")


def dataset_files(name: str, data_dir: str | Path | None) -> dict[str, Path]:
    """Map each file dataset `name` needs (its path relative to the data directory) to the existing file, plain or
    gzipped; or raise one DataError naming every missing file, where it looked, and how to point elsewhere."""
    files = FILES[name]
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    if root is None:
        raise DataError(f"dataset {name!r} needs data files and no data directory was given: pass --data-dir DIR or "
                        f"set {ENV_VAR}=DIR, where DIR contains {', '.join(files)} (each may be gzipped as NAME.gz). "
                        f"'synthetic' needs no files.")
    found = {rel: _existing(root, rel) for rel in files}
    missing = [str(root / rel) for rel, p in found.items() if p is None]
    if missing:
        given_by = "given by --data-dir or data_dir" if data_dir is not None else f"from {ENV_VAR}"
        absent = "" if root.is_dir() else ", a directory that does not exist"
        raise DataError(f"dataset {name!r}: {len(missing)} of {len(files)} expected files are missing in {root} "
                        f"({given_by}{absent}): {', '.join(missing)} (a gzipped NAME.gz is also accepted)."
                        f"{_MISSING_HINT.get(name, '')} Put the files there, or point --data-dir DIR or "
                        f"{ENV_VAR}=DIR at the directory that holds them.")
    return found  # type: ignore[return-value]


def _existing(root: Path, rel: str) -> Path | None:
    for p in (root / rel, root / (rel + ".gz")):
        if p.is_file():
            return p
    return None
