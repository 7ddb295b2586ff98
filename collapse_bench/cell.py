"""One cell: a method with its params × dataset × size × seed, trained and scored.

`run_cell(spec, on_step)` is the function every executor runs; it returns a `CellResult` (store.py) and never
raises for a failure inside the cell. The driver turns the result into a record with `store.build_record`."""
from __future__ import annotations

import functools
import io
import resource
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import numpy as np
import torch

from . import presets, registry
from .config import SizeConfig, size_config
from .context import TrainCallback
from .data import Corpus, DataLimits, load_corpus
from .evaluate import Scores, score_all
from .fingerprint import code_fingerprint, harness_code
from .method import Method
from .store import CellResult, build_record, now, provenance, safe_name, short_hash
from .text import TEXT_SEED, text_evidence
from .train import Trainer

MODEL_FORMAT = 1
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
    keep_model: bool = True         # keep the scored model under OUT/models/ (for `rescore`)

    def make_method(self) -> Method:
        cls = registry.get(self.method)
        return cls(cls.Params(**self.params))

    def size_config(self) -> SizeConfig:
        cfg = size_config(self.size, self.dataset)
        if self.preset:
            cfg = cfg.replace(**presets.get(self.preset).size_overrides())
        return cfg.replace(**self.overrides)

    def callbacks(self) -> list[TrainCallback]:
        """Callbacks this kind of cell adds to its training run (a tuning trial adds its pruner)."""
        return []

    @property
    def label(self) -> str:
        return f"preset:{self.preset}" if self.preset else self.make_method().label

    @property
    def cell(self) -> str:
        label = self.label
        exact = label if self.preset else self.make_method().exact_label     # two tuned values never share a file
        name = f"{safe_name(label, exact)}__{self.dataset}__{self.size}__seed{self.seed}"
        return name + (f"__cfg{short_hash(self.overrides)}" if self.overrides else "")


@functools.lru_cache(maxsize=4)
def load_cell_corpus(dataset: str, data_dir: str | None, limits: DataLimits) -> Corpus:
    """The corpus every cell of `dataset` under `limits` sees (cached per process: a worker runs many cells)."""
    return load_corpus(dataset, data_dir, limits, seed=DATA_SEED)


def corpus_for(spec: CellSpec) -> Corpus:
    return load_cell_corpus(spec.dataset, spec.data_dir, spec.size_config().limits)


def build_trainer(spec: CellSpec, callbacks: Iterable[TrainCallback] = ()) -> Trainer:
    """The cell's Trainer (model built and seeded, nothing trained yet), with the spec's own callbacks first."""
    cfg = spec.size_config()
    torch.set_num_threads(cfg.train.threads)
    return Trainer(spec.make_method(), cfg, corpus_for(spec), seed=spec.seed, device=spec.device,
                   callbacks=[*spec.callbacks(), *callbacks])


class StepReporter(TrainCallback):
    """Forwards every update to `on_step(step, total)` (an executor's progress event)."""

    def __init__(self, on_step: Callable[[int, int], None]):
        self.on_step_fn = on_step

    def on_step(self, step: int, total: int) -> None:
        self.on_step_fn(step, total)


def peak_memory_mb(device: str) -> float:
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process peak RSS (kB on Linux)


def run_cell(spec: CellSpec, on_step: Callable[[int, int], None] | None = None,
             callbacks: Iterable[TrainCallback] = ()) -> CellResult:
    """Train and score one cell. Never raises for a failure inside the cell: the result says `failed` and why."""
    result = CellResult(label=spec.method, params=dict(spec.params),
                        provenance={**provenance(), "started": now()})
    trainer = None
    try:
        result.provenance["code"] = code_fingerprint(spec.method)
        method = spec.make_method()
        cfg = spec.size_config()
        result.label, result.params = spec.label, method.params.to_dict()
        result.config = {**cfg.to_dict(), "device": spec.device, "method": method.params.to_dict()}
        trainer = build_trainer(spec, [*callbacks, *([StepReporter(on_step)] if on_step else [])])
        result.provenance["dataset_hash"] = trainer.corpus.fingerprint()
        timing = trainer.fit()
        t0 = time.perf_counter()
        scores = score_all(trainer.method, trainer.model, trainer.corpus, cfg.eval, trainer.device, spec.seed)
        timing.update(eval_seconds=time.perf_counter() - t0, threads=cfg.train.threads)
        result.metrics, result.scoring = scores.metrics, scoring_note("training run", precision=scores.precision)
        result.evidence = evidence(spec, trainer.model, scores, result.provenance["code"])
        result.text = cell_text(spec, trainer)
        result.status, result.timing = "ok", timing
    except Exception as e:  # noqa: BLE001 - a failed cell must be recorded, not lose the sweep
        result.error = {"type": type(e).__name__, "message": str(e), "traceback": traceback.format_exc()}
    finally:
        if trainer is not None:
            result.curves = trainer.curves
        result.timing["peak_memory_mb"] = peak_memory_mb(spec.device)
        result.provenance["finished"] = now()
    return result


def scoring_note(by: str, **more) -> dict:
    """Which scoring produced a record's metrics: the scoring code's hash, by what, and anything more."""
    return {"code": harness_code()["scoring"], "by": by, **more}


def evidence(spec: CellSpec, model: torch.nn.Module, scores: Scores, code: dict) -> dict[str, bytes]:
    """The files kept beside a record: the per-sentence IW-NLL (committed with a study) and, when the cell keeps
    it, the scored model with every test sentence's posterior mean (OUT/models/, never committed)."""
    out = {"sentences": sentence_file(scores)}
    if spec.keep_model:
        out["model"] = model_file(spec, model, scores, code)
    return out


def sentence_file(scores: Scores) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, nll=scores.nll.astype(np.float64), index=scores.iw_index.astype(np.int32))
    return buf.getvalue()


def model_file(spec: CellSpec, model: torch.nn.Module, scores: Scores, code: dict) -> bytes:
    """A kept model as data only (tensors, strings, numbers: `torch.load(..., weights_only=True)` reads it)."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    mean = None if scores.test_mean is None else torch.from_numpy(scores.test_mean)
    buf = io.BytesIO()
    torch.save({"format": MODEL_FORMAT, "cell": spec.cell, "method": spec.method, "code": code, "state_dict": state,
                "test_mean": mean}, buf)
    return buf.getvalue()
def cell_text(spec: CellSpec, trainer: Trainer) -> dict | None:
    """The record's `text` (text.py) for the board's first seed (spec.seed == TEXT_SEED), else None. A failure is
    written into it instead of failing the cell: the metrics stand, the page shows why the text is missing."""
    if spec.seed != TEXT_SEED:
        return None
    try:
        return text_evidence(trainer.method, trainer.model, trainer.corpus, trainer.cfg, trainer.device, spec.seed)
    except Exception as e:  # noqa: BLE001 - text is evidence beside the metrics, not a reason to lose them
        return {"error": {"type": type(e).__name__, "message": str(e), "traceback": traceback.format_exc()}}


def run_record(spec: CellSpec, on_step: Callable[[int, int], None] | None = None) -> dict:
    """`run_cell` and the record a sweep would write for it (for scripts and tests that want the record)."""
    return build_record(spec, run_cell(spec, on_step))
