"""Generated tables inside hand-written markdown: each `<!-- table: COMMAND -->` line is followed by COMMAND's table
(up to the next blank line), which `rewrite_marked` replaces with the table made now."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

PREFIX, SUFFIX = "<!-- table: ", " -->"


def rewrite_marked(page: Path, tables: Mapping[str, Callable[[], list[str]]], *, strict: bool = True) -> None:
    """Replace the table below every marker whose COMMAND is in `tables`; with `strict`, an unknown COMMAND is an
    error naming the known ones (otherwise it is left as it is, for another script's tables)."""
    lines, out, skipping = page.read_text(encoding="utf-8").split("\n"), [], False
    for line in lines:
        if skipping:
            skipping = line != ""
            if skipping:
                continue
        out.append(line)
        if line.startswith(PREFIX) and line.endswith(SUFFIX):
            command = line[len(PREFIX):-len(SUFFIX)]
            if command in tables:
                out.extend(tables[command]())
                skipping = True
            elif strict:
                raise SystemExit(f"{page}: unknown table command {command!r}; known: {sorted(tables)}")
    page.write_text("\n".join(out), encoding="utf-8")


def md_cell(text: str) -> str:
    """`text` inside a markdown table cell: its pipes escaped."""
    return text.replace("|", "\\|")
