"""The study's tables in reports/README.md, from the committed tiers (reports/study/quick and reports/study/deep):

    python reports/study/table.py                              # prints every table
    python reports/study/table.py --update reports/README.md   # rewrites each under its marker comment

The tables are `collapse_bench.report.tiers`'s, the same as `reports/study/tiers.md` (which `study` and
`report reports/study` write): the findings at both budgets, each method's figures on the board both tiers ran, and
per dataset and tier whether each remedy keeps z alive with each decoder.
"""
from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from collapse_bench.config import STUDY_TIERS
from collapse_bench.report.alive import alive_table
from collapse_bench.report.marked import rewrite_marked
from collapse_bench.report.tiers import Tables, findings_table, methods_table, study_tiers, tier_tables

HERE = Path(__file__).resolve().parent
COMMAND = "python reports/study/table.py"


def tables() -> dict[str, Callable[[], list[str]]]:
    t: Tables = tier_tables(HERE, study_tiers(HERE, list(STUDY_TIERS)))
    shared = {w for w, _, verdicts, _ in t.findings if "–" not in verdicts}      # the boards every tier ran
    out = {f"{COMMAND} findings": lambda: findings_table(t),
           f"{COMMAND} methods": lambda: methods_table(t, shared)}
    for tier in t.tiers:                       # the first tier's keep their short name
        for table in t.alive.get(tier, []):
            key = f"{COMMAND} alive {table.dataset}" + ("" if tier == t.tiers[0] else f" {tier}")
            out[key] = lambda table=table: alive_table(table)
    return out


if __name__ == "__main__":
    made = tables()
    if sys.argv[1:2] == ["--update"]:
        rewrite_marked(Path(sys.argv[2]), made, strict=False)
    else:
        for command, lines in made.items():
            print(f"<!-- table: {command} -->", *lines(), "", sep="\n")
