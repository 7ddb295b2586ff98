"""A sweep is a list of cells (method with params × dataset × size × seed); each cell trains, scores and
becomes one result file. Finished cells are skipped on rerun; a failing cell is recorded and the sweep goes on."""
from __future__ import annotations

import difflib
import functools
import resource
import time
import traceback
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

from . import presets, registry
from .config import ConfigError, SizeConfig, size_config
from .data import Corpus, DataLimits, load_corpus
from .evaluate import score
from .executor import accepts_on_step
from .method import Method, convert_value
from .store import ResultStore, SCHEMA, now, provenance, safe_name, short_hash
from .train import Trainer

SECTIONS = ("train", "model", "eval", "limits")   # --set SECTION.FIELD; any other prefix names a method
DATA_SEED = 0   # every cell of a dataset sees the same subsample and splits, whatever the run seed


@dataclass
class CellSpec:
    method: str
    dataset: str
    size: str
    seed: int
    params: dict[str, Any] = field(default_factory=dict)        # typed method hyperparameters
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)  # {"train": {"epochs": 3}, ...}
    data_dir: str | None = None
    device: str = "cpu"
    preset: str | None = None       # a named paper configuration: its recipe applies before `overrides`

    def make_method(self) -> Method:
        cls = registry.get(self.method)
        return cls(cls.Params(**self.params))

    def size_config(self) -> SizeConfig:
        cfg = size_config(self.size, self.dataset)
        if self.preset:
            cfg = cfg.replace(**presets.get(self.preset).size_overrides())
        return cfg.replace(**self.overrides)

    @property
    def label(self) -> str:
        return f"preset:{self.preset}" if self.preset else self.make_method().label

    @property
    def cell(self) -> str:
        name = f"{safe_name(self.label)}__{self.dataset}__{self.size}__seed{self.seed}"
        return name + (f"__cfg{short_hash(self.overrides)}" if self.overrides else "")


@functools.lru_cache(maxsize=4)
def _corpus(name: str, data_dir: str | None, limits: DataLimits) -> Corpus:
    return load_corpus(name, data_dir, limits, seed=DATA_SEED)


def peak_memory_mb(device: str) -> float:
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process peak RSS (kB on Linux)


def run_cell(spec: CellSpec, on_step: Callable[[int, int], None] | None = None) -> dict:
    """Train and score one cell. Never raises for a failure inside the cell: returns a 'failed' record."""
    record: dict[str, Any] = {"schema": SCHEMA, "cell": spec.cell, "method": spec.method, "params": spec.params,
                              "label": spec.method, "dataset": spec.dataset, "size": spec.size, "seed": spec.seed,
                              "overrides": spec.overrides, "preset": spec.preset,
                              "status": "failed", "error": None, "metrics": {}, "timing": {}, "curves": [],
                              "config": {}, "provenance": {**provenance(), "started": now()}}
    trainer = None
    try:
        method = spec.make_method()
        cfg = spec.size_config()
        record.update(label=spec.label, params=method.params.to_dict(),
                      config={**cfg.to_dict(), "device": spec.device, "method": method.params.to_dict()})
        torch.set_num_threads(cfg.train.threads)
        corpus = _corpus(spec.dataset, spec.data_dir, cfg.limits)
        record["provenance"]["dataset_hash"] = corpus.fingerprint()
        total = cfg.train.epochs * max(1, len(corpus.train) // cfg.train.batch_size)
        trainer = Trainer(method, cfg, corpus, seed=spec.seed, device=spec.device,
                          on_step=(lambda s: on_step(s, total)) if on_step else None)
        timing = trainer.fit()
        t0 = time.perf_counter()
        record["metrics"] = score(method, trainer.model, corpus, cfg.eval, trainer.device, spec.seed)
        timing.update(eval_seconds=time.perf_counter() - t0, threads=cfg.train.threads)
        record.update(status="ok", timing=timing)
    except Exception as e:  # noqa: BLE001 - a failed cell must be recorded, not lose the sweep
        record["error"] = {"type": type(e).__name__, "message": str(e), "traceback": traceback.format_exc()}
    finally:
        if trainer is not None:
            record["curves"] = trainer.curves
        record["timing"]["peak_memory_mb"] = peak_memory_mb(spec.device)
        record["provenance"]["finished"] = now()
    return record


class SerialExecutor:
    """Runs cells one after another in this process."""

    def map(self, fn: Callable[[CellSpec], dict], specs: Iterable[CellSpec], on_result: Callable[[dict], None], *,
            on_start: Callable[[CellSpec], None] | None = None,
            on_step: Callable[[CellSpec, int, int], None] | None = None) -> None:
        steps = on_step is not None and accepts_on_step(fn)
        for spec in specs:
            if on_start:
                on_start(spec)
            on_result(fn(spec, on_step=functools.partial(on_step, spec)) if steps else fn(spec))


def pending(specs: Iterable[CellSpec], out_dir: str | Path, overwrite: bool = False) -> list[CellSpec]:
    """The cells a sweep would run (all with `overwrite`, else those without an `ok` result file), dearest first:
    with one cell per core, longest-first keeps the last core from running alone at the end."""
    store = ResultStore(out_dir)
    todo = [s for s in specs if overwrite or not store.is_done(s.cell)]
    return sorted(todo, key=lambda s: -_cost(s))    # stable: equal costs keep their order


def _cost(spec) -> float:
    make = getattr(spec, "make_method", None)      # executors also run duck-typed specs
    return make().cost() if make else 1.0


def run_sweep(specs: Iterable[CellSpec], out_dir: str | Path, executor=None, *, overwrite: bool = False,
              fn: Callable[[CellSpec], dict] = run_cell, on_result: Callable[[dict], None] | None = None,
              **events: Callable) -> list[dict]:
    """Run every cell not already finished; the driver writes each record the moment it arrives.
    `events` (`on_start`, `on_step`) go to the executor's `map`."""
    store = ResultStore(out_dir)
    specs = list(specs)
    todo = pending(specs, out_dir, overwrite)

    def done(record: dict) -> None:
        store.write(record)
        if on_result:
            on_result(record)

    (executor or SerialExecutor()).map(fn, todo, done, **{k: v for k, v in events.items() if v is not None})
    return [r for r in (store.load(s.cell) for s in specs) if r is not None]


def expand(methods: list[str], datasets: list[str], sizes: list[str], seeds: list[int],
           settings: dict[str, dict[str, str]] | None = None, **common) -> list[CellSpec]:
    """Cells for every combination. `settings` maps a method name (or 'train'/'model'/'eval'/'limits')
    to string values from `--set`, converted to typed values and validated here, before anything runs."""
    settings = settings or {}
    sections = {k: v for k, v in settings.items() if k in SECTIONS}
    chosen = {registry.get(m).name for m in methods}
    for name in sorted(set(settings) - set(sections)):
        if _setting_target(name, settings[name]).name not in chosen:
            raise ValueError(f"--set {name}.…: {name!r} is not among --methods {','.join(methods)}")
    overrides = {sec: {k: _typed_field(sec, k, v) for k, v in vals.items()} for sec, vals in sections.items()}
    cells = []
    for m in methods:
        cls = registry.get(m)
        given = {k: v for name, vals in settings.items() if name not in sections and registry.get(name) is cls
                 for k, v in vals.items()}
        params = cls.Params.from_strings(cls.name, given).to_dict()
        for d in datasets:
            for size in sizes:
                for seed in seeds:
                    spec = CellSpec(cls.name, d, size, seed, params, overrides, **common)
                    cls(cls.Params(**params)).check_config(spec.size_config())  # validate overrides now
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
    overrides = {sec: {k: _typed_field(sec, k, v) for k, v in vals.items()} for sec, vals in settings.items()}
    cells = []
    for name in names:
        preset = presets.get(name)
        for d in datasets:
            for size in sizes:
                for seed in seeds:
                    spec = CellSpec(preset.method, d, size, seed, preset.method_params(), overrides, preset=name,
                                    **common)
                    spec.make_method().check_config(spec.size_config())
                    cells.append(spec)
    return cells


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
