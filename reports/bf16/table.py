"""The bf16 scoring drift table of reports/README.md, from the committed records of two runs:

    sh reports/bf16/run.sh                                    # the runs (one core, ~15 min)
    python reports/bf16/table.py                              # prints the table
    python reports/bf16/table.py --update reports/README.md   # rewrites it under its marker comment

Every record was scored with eval.precision=bf16, so its `scoring.precision.check` holds the fp32 and bf16 IW-NLL of
the same sentences with the same random draws (collapse_bench/evaluate.py, `precision_check`); the table is
`collapse_bench.report.drift`'s, one row per size, decoder and method.
"""
from __future__ import annotations

import sys
from pathlib import Path

from collapse_bench.report.drift import drift_rows, drift_table
from collapse_bench.report.load import read_records
from collapse_bench.report.marked import rewrite_marked

HERE = Path(__file__).resolve().parent
RUNS = {"study": HERE / "study", "paper model, 1 epoch": HERE / "paper"}
COMMAND = "python reports/bf16/table.py"


def table() -> list[str]:
    return drift_table(drift_rows({name: read_records(folder).records for name, folder in RUNS.items()}), "size")


def update(page: Path) -> None:
    """Replace the table under MARKER (up to the first blank line); other scripts' tables are left alone."""
    rewrite_marked(page, {COMMAND: table}, strict=False)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--update"]:
        update(Path(sys.argv[2]))
    else:
        print("\n".join(table()))
