"""Score a finished run again from its kept models, without retraining (`python -m collapse_bench rescore OUT`).

Every cell keeps its scored model under OUT/models/ (`cell.model_file`). Rescoring loads each one as data
(`torch.load(weights_only=True)`: a kept model is never code), checks that it was trained by the code that would
train it now (the method's module and the harness's training sources; the scoring sources may differ: that is the
point), scores it with the run's evaluation settings and any `--set eval.FIELD=VALUE`, and writes new records into
another folder, each saying which scoring produced it. Nothing is written when any model is missing or foreign."""
from __future__ import annotations

import time
from pathlib import Path

import torch

from .cell import CellSpec, build_trainer, cell_text, corpus_for, scoring_note, sentence_file
from .config import ConfigError
from .evaluate import score_all
from .fingerprint import harness_code, method_code
from .store import ResultStore, now

FIX_MISSING = "rerun the cell with `run` (it keeps its model under OUT/models/)"


def spec_of(record: dict, data_dir: str | None, device: str) -> CellSpec:
    """The cell a record describes, as the sweep built it."""
    return CellSpec(record["method"], record["dataset"], record["size"], record["seed"], dict(record["params"]),
                    dict(record.get("overrides") or {}), data_dir=data_dir, device=device, preset=record.get("preset"))


def load_kept(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def foreign_code(kept: dict, method: str) -> str | None:
    """Why a kept model cannot be scored by this code (None: its training code is today's)."""
    then, now_method, now_training = kept.get("code") or {}, method_code(method), harness_code()["training"]
    differs = []
    if (then.get("method") or {}).get("sha256") != now_method["sha256"]:
        differs.append(f"the method's module ({(then.get('method') or {}).get('sha256')} then, "
                       f"{now_method['sha256']} now)")
    if (then.get("harness") or {}).get("training") != now_training:
        differs.append(f"the harness's training code ({(then.get('harness') or {}).get('training')} then, "
                       f"{now_training} now)")
    return " and ".join(differs) or None


def other_data(record: dict, data_dir: str | None) -> str | None:
    """Why the corpus a record was trained on is not the one found now (None: the same files)."""
    then = (record.get("provenance") or {}).get("dataset_hash")
    found = corpus_for(spec_of(record, data_dir, "cpu")).fingerprint()
    return None if then == found else f"its corpus differs ({then} then, {found} now; --data-dir?)"


def check_models(store: ResultStore, records: list[dict], data_dir: str | None) -> dict[str, dict]:
    """{cell: kept model} for every record, or ConfigError naming each missing or foreign model and the fix."""
    kept, problems = {}, []
    for rec in records:
        if why := other_data(rec, data_dir):
            problems.append(f"{rec['cell']}: {why}")
            continue
        path = store.model_path(rec["cell"])
        if not path.is_file():
            problems.append(f"{rec['cell']}: no kept model at {path}; {FIX_MISSING}")
            continue
        try:
            model = load_kept(path)
        except Exception as e:  # noqa: BLE001 - weights_only refuses anything but data; say so, whatever it was
            problems.append(f"{rec['cell']}: {path} is not a kept model that loads as data ({type(e).__name__}: "
                            f"{str(e).splitlines()[0][:160]}); {FIX_MISSING}")
            continue
        why = foreign_code(model, rec["method"]) if model.get("cell") == rec["cell"] else \
            f"the file holds cell {model.get('cell')!r}"
        if why:
            git = (rec.get("provenance") or {}).get("git")
            problems.append(f"{rec['cell']}: its model belongs to other code: {why}; check out the commit that "
                            f"trained it (git {git}) to rescore it, or {FIX_MISSING}")
        kept[rec["cell"]] = model
    if problems:
        raise ConfigError(f"rescore: {len(problems)} of {len(records)} cells cannot be rescored, nothing was "
                          f"written:\n  " + "\n  ".join(problems))
    return kept


def rescore_record(record: dict, kept: dict, eval_overrides: dict, data_dir: str | None, device: str,
                   source: Path) -> tuple[dict, bytes]:
    """The record with metrics from its kept model scored under the run's eval settings plus `eval_overrides`."""
    spec = spec_of(record, data_dir, device)
    trainer = build_trainer(spec)
    trainer.model.load_state_dict(kept["state_dict"])
    trainer.model.to(trainer.device)
    cfg = spec.size_config().replace(eval=eval_overrides)
    t0 = time.perf_counter()
    scores = score_all(trainer.method, trainer.model, trainer.corpus, cfg.eval, trainer.device, spec.seed)
    note = scoring_note("rescore", precision=scores.precision, source=str(source), eval_overrides=eval_overrides,
                        rescored=now(), seconds=round(time.perf_counter() - t0, 3),
                        trained_by=record.get("scoring") or None)
    config = {**record.get("config", {}), "eval": cfg.to_dict()["eval"]}
    text = cell_text(spec, trainer)                     # the first seed's text, written by this scoring
    return {**record, "metrics": scores.metrics, "config": config, "scoring": note, "text": text}, \
        sentence_file(scores)


def rescore(source: Path, dest: Path, eval_overrides: dict, methods: list[str] | None = None,
            data_dir: str | None = None, device: str = "cpu", on_record=None) -> list[dict]:
    """Rescore every finished cell of `source` (or of `methods`) into `dest`; `source` is never written."""
    if dest.resolve() == source.resolve():
        raise ConfigError(f"rescore: --out {dest} is the source folder; rescored records go to another folder so "
                          f"that the scores of the training run stay, e.g. --out {source}-rescored")
    store = ResultStore(source)
    records = [r for r in store.records() if r.get("status") == "ok" and (not methods or r["method"] in methods)]
    if not records:
        raise ConfigError(f"rescore: no finished cells in {store.dir}" + (f" for {', '.join(methods)}" if methods
                                                                         else "") + "; give the --out folder of a run")
    kept = check_models(store, records, data_dir)
    out, written = ResultStore(dest), []
    for rec in records:
        new, sentences = rescore_record(rec, kept[rec["cell"]], eval_overrides, data_dir, device, source)
        out.write(new, {"sentences": sentences})
        written.append(new)
        if on_record:
            on_record(new)
    return written
