"""The shape of the code: no import cycle among the harness's and the methods' modules (every import counts:
module level, inside functions, under TYPE_CHECKING), no function longer than 60 lines, the report free of torch."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"collapse_bench": ROOT / "collapse_bench", "collapse_bench.methods": ROOT / "methods"}
MAX_FUNCTION_LINES = 60


def _modules() -> dict[str, Path]:
    """Dotted name -> file, for every module of the harness (methods/ is installed as collapse_bench.methods)."""
    out = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join([package, *parts])] = path
    return out


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The harness modules `name` imports anywhere in its file; `from P import m` counts as P.m where m is one."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            found |= {f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names}
    return {m for m in found if m in known and m != name}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (as a path that returns to its start), or None."""
    state: dict[str, int] = {}          # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        path.pop()
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, set(modules)) for name, path in modules.items()}


def test_the_import_walk_sees_function_level_and_type_only_imports():
    graph = _graph()
    assert "collapse_bench.registry" in graph["collapse_bench.methods.helpers"]     # inside a function
    assert "collapse_bench.model" in graph["collapse_bench.context"]                # under TYPE_CHECKING
    assert "collapse_bench.methods.helpers" in graph["collapse_bench.methods.fb"]   # relative, one level
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle():
    cycle = _cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_report_never_imports_torch_or_training():
    graph = _graph()
    banned = {"collapse_bench.train", "collapse_bench.model", "collapse_bench.method", "collapse_bench.cell",
              "collapse_bench.text"}
    for name, path in _modules().items():
        if name.startswith("collapse_bench.report"):
            assert not graph[name] & banned, f"{name} imports {graph[name] & banned}"
            assert "import torch" not in path.read_text(), name


def test_methods_never_import_the_sweep_store_cli_report_or_text():
    graph = _graph()
    banned = {"collapse_bench.sweep", "collapse_bench.store", "collapse_bench.cli", "collapse_bench.report",
              "collapse_bench.cell", "collapse_bench.train", "collapse_bench.tune", "collapse_bench.text"}
    for name in graph:
        if name.startswith("collapse_bench.methods"):
            assert not graph[name] & banned, f"{name} imports {graph[name] & banned}"


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_no_function_is_longer_than_60_lines(package):
    long = []
    for path in PACKAGES[package].rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, "split these: " + "; ".join(long)
