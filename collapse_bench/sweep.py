"""A sweep is a list of cells (method with params × dataset × size × seed); each cell trains, scores and
becomes one result file. Finished cells are skipped on rerun; a failing cell is recorded and the sweep goes on."""
from __future__ import annotations

import difflib
import itertools
import typing
from pathlib import Path
from typing import Any, Callable, Iterable

from . import presets, registry
from .cell import CellSpec, run_cell
from .config import ConfigError, size_config
from .data import check_dataset
from .data.catalog import check_name
from .executor import SerialExecutor
from .executors.base import CellError
from .method import Method, convert_value
from .fingerprint import staleness
from .store import CellResult, ResultStore, build_record, failed_result

SECTIONS = ("train", "model", "eval", "limits")   # --set SECTION.FIELD; any other prefix names a method

__all__ = ["SECTIONS", "CellSpec", "expand", "expand_presets", "method_settings", "pending", "run_cell",
           "run_sweep", "section_overrides", "stale_cells"]


def pending(specs: Iterable[CellSpec], out_dir: str | Path, overwrite: bool = False,
            keep_stale: bool = False, dearest_first: bool = True) -> list[CellSpec]:
    """The cells a sweep would run (all with `overwrite`, else those without an `ok` result file of the code now,
    or of any code with `keep_stale`), dearest first (with one cell per core, longest-first keeps the last core
    from running alone at the end) or, with `dearest_first=False`, in the given order."""
    store = ResultStore(out_dir)
    todo = [s for s in specs if overwrite or not _reusable(store.load(s.cell), s, keep_stale)]
    if not dearest_first:
        return todo
    return sorted(todo, key=lambda s: -s.make_method().cost())    # stable: equal costs keep their order


def _reusable(record: dict | None, spec: CellSpec, keep_stale: bool) -> bool:
    return record is not None and record.get("status") == "ok" and (keep_stale or not staleness(record, spec.method))


def stale_cells(specs: Iterable[CellSpec], out_dir: str | Path) -> dict[str, str]:
    """{cell: why} for the finished cells whose code (the method's or the harness's) differs from the code now."""
    store = ResultStore(out_dir)
    found = {}
    for spec in specs:
        record = store.load(spec.cell)
        if record is not None and record.get("status") == "ok" and (why := staleness(record, spec.method)):
            found[spec.cell] = why
    return found


def run_sweep(specs: Iterable[CellSpec], out_dir: str | Path, executor=None, *, overwrite: bool = False,
              keep_stale: bool = False, dearest_first: bool = True, fn: Callable[..., CellResult] = run_cell,
              on_result: Callable[[dict], None] | None = None, **events: Callable) -> list[dict]:
    """Run every cell not already finished; the driver writes each record the moment it arrives (a cell that
    could not run at all is recorded as failed). The corpus files of the cells to run are checked first (DataError).
    A finished cell whose code has changed is rerun, or with `keep_stale` kept and listed in OUT/stale.json. `events` (`on_start`, `on_step`) go to the executor's `map`."""
    store = ResultStore(out_dir)
    specs = list(specs)
    todo = pending(specs, out_dir, overwrite, keep_stale, dearest_first)
    for dataset, data_dir in dict.fromkeys((s.dataset, s.data_dir) for s in todo):
        check_dataset(dataset, data_dir)   # a missing corpus is refused before anything runs or is written

    def write(record: dict, evidence: dict[str, bytes] | None = None) -> None:
        store.write(record, evidence)
        if on_result:
            on_result(record)

    def done(spec: CellSpec, result: CellResult) -> None:
        write(build_record(spec, result), result.evidence)

    def failed(spec: CellSpec, error: CellError) -> None:
        write(build_record(spec, failed_result(spec, {"type": error.type, "message": error.message,
                                                      "traceback": error.traceback, "attempts": error.attempts})))

    def mark_stale() -> None:
        cells = {s.cell for s in specs}
        store.set_stale_marks({**{c: why for c, why in store.stale_marks().items() if c not in cells},
                               **stale_cells(specs, out_dir)})

    mark_stale()           # before too: a sweep stopped part-way (a long tier) still marks the stale cells it keeps
    (executor or SerialExecutor()).map(fn, todo, done, on_failure=failed,
                                       **{k: v for k, v in events.items() if v is not None})
    mark_stale()           # a rerun cell loses its mark
    return [r for r in (store.load(s.cell) for s in specs) if r is not None]


def section_overrides(settings: dict[str, dict[str, str]]) -> dict[str, dict[str, Any]]:
    """The typed SECTION.FIELD overrides among `--set` values (the one place that tells sections from methods)."""
    return {sec: {k: _typed_field(sec, k, v) for k, v in vals.items()}
            for sec, vals in settings.items() if sec in SECTIONS}


def method_settings(settings: dict[str, dict[str, str]], cls: type[Method]) -> dict[str, str]:
    """The `--set METHOD.PARAM` values that name `cls` (by name or alias)."""
    return {k: v for name, vals in settings.items() if name not in SECTIONS and registry.get(name) is cls
            for k, v in vals.items()}


def expand(methods: list[str], datasets: list[str], sizes: list[str], seeds: list[int],
           settings: dict[str, dict[str, str]] | None = None, **common) -> list[CellSpec]:
    """Cells for every combination. `settings` maps a method name (or 'train'/'model'/'eval'/'limits')
    to string values from `--set`, converted to typed values and validated here, before anything runs."""
    settings = settings or {}
    chosen = {registry.get(m).name for m in methods}
    for name in sorted(set(settings) - set(SECTIONS)):
        if _setting_target(name, settings[name]).name not in chosen:
            raise ValueError(f"--set {name}.…: {name!r} is not among --methods {','.join(methods)}; add it "
                             f"(--methods {','.join([*methods, name])}) or drop this --set")
    overrides = section_overrides(settings)
    _check_dataset_names(datasets)
    cells = []
    for m in methods:
        cls = registry.get(m)
        params = cls.Params.from_strings(cls.name, method_settings(settings, cls)).to_dict()
        cells += _grid(datasets, sizes, seeds,
                       lambda d, size, seed: CellSpec(cls.name, d, size, seed, params, overrides, **common))
    return cells


def _grid(datasets: list[str], sizes: list[str], seeds: list[int],
          make: Callable[[str, str, int], CellSpec]) -> list[CellSpec]:
    """One cell per dataset × size × seed (in that order), each refused now if its method rejects its config."""
    cells = []
    for d, size, seed in itertools.product(datasets, sizes, seeds):
        spec = make(d, size, seed)
        spec.make_method().check_config(spec.size_config())
        cells.append(spec)
    return cells


def expand_presets(names: list[str], datasets: list[str], sizes: list[str], seeds: list[int],
                   settings: dict[str, dict[str, str]] | None = None, **common) -> list[CellSpec]:
    """Cells for named paper configurations; `settings` may hold SECTION.FIELD overrides (applied last)."""
    settings = settings or {}
    bad = sorted(set(settings) - set(SECTIONS))
    if bad:
        raise ValueError(f"--set {bad[0]}.…: with --presets only SECTION.FIELD overrides (train, model, eval, limits) "
                         f"apply; a preset fixes its method's params")
    overrides = section_overrides(settings)
    _check_dataset_names(datasets)
    cells = []
    for name in names:
        preset = presets.get(name)
        cells += _grid(datasets, sizes, seeds, lambda d, size, seed: CellSpec(
            preset.method, d, size, seed, preset.method_params(), overrides, preset=name, **common))
    return cells


def _check_dataset_names(datasets: list[str]) -> None:
    for d in dict.fromkeys(datasets):
        check_name(d)


def _setting_target(name: str, values: dict[str, str]) -> type[Method]:
    """The method a `--set NAME.PARAM` names; a typo of a section is as likely as one of a method."""
    try:
        return registry.get(name)
    except registry.UnknownMethodError:
        close = difflib.get_close_matches(name, [*SECTIONS, *registry.names()], n=1)
        hint = f" Did you mean {close[0]}.{next(iter(values), 'FIELD')}?" if close else ""
        raise ConfigError(f"--set {name}.{next(iter(values), '…')}: {name!r} is neither a section "
                          f"({', '.join(SECTIONS)}) nor a method.{hint} Methods: {', '.join(registry.names())} "
                          f"(see `python -m collapse_bench list`).") from None


def _typed_field(section: str, key: str, raw: str) -> Any:
    cls = type(getattr(size_config("smoke", "synthetic"), section))
    hints = typing.get_type_hints(cls)
    if key not in hints:
        raise ValueError(f"--set {section}.{key}: unknown field; {section} fields are: {', '.join(sorted(hints))}")
    if typing.get_origin(hints[key]) is tuple:      # e.g. eval.probe_labels=100,500
        return tuple(convert_value(v, typing.get_args(hints[key])[0], f"{section}.{key}") for v in raw.split(","))
    return convert_value(raw, hints[key], f"{section}.{key}")
