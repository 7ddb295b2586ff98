"""Read result records (``DIR/results/*.json``, else ``DIR/results.jsonl``) into records and frames.

Anything schema-conforming must load; so must a record missing optional parts. Unreadable files are
collected, not raised, so that one torn file cannot hide a whole sweep.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

METRICS = ("nll", "ppl", "elbo", "recon", "kl", "mi", "au")
TIMING = ("train_seconds", "train_cpu_seconds", "steps", "seconds_per_step", "eval_seconds", "peak_memory_mb",
          "threads")
PROVENANCE = ("harness_version", "git", "python", "platform", "hostname", "started", "finished", "dataset_hash")
CURVE_KEYS = ("valid_kl", "valid_mi", "valid_au", "train_kl", "valid_loss", "kl_weight")
LATENT_METRICS = ("kl", "mi", "au")
LATENT_CURVES = ("valid_kl", "valid_mi", "valid_au", "train_kl")
# What makes a board: a remedy is only ever compared with vanilla of the same dataset, size (with its overrides) and
# decoder (stats.PAIR_KEYS adds the seed).
BOARD_KEYS = ("dataset", "size", "decoder")


@dataclass
class Loaded:
    records: list[dict[str, Any]] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)   # (file name, reason)
    source: str = ""


def read_records(run_dir: str | Path) -> Loaded:
    run_dir = Path(run_dir)
    results = run_dir / "results"
    files = sorted(results.glob("*.json")) if results.is_dir() else []
    out = Loaded(source=str(results))
    if files:
        for f in files:
            try:
                rec = json.loads(f.read_text(encoding="utf-8"))
                _check(rec)
                out.records.append(rec)
            except (OSError, ValueError) as e:
                out.unreadable.append((f.name, f"{type(e).__name__}: {e}"))
    elif (run_dir / "results.jsonl").is_file():     # rebuilding from a shared results.jsonl alone
        out.source = str(run_dir / "results.jsonl")
        for i, line in enumerate((run_dir / "results.jsonl").read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    rec = json.loads(line)
                    _check(rec)
                    out.records.append(rec)
                except ValueError as e:
                    out.unreadable.append((f"results.jsonl:{i}", f"{type(e).__name__}: {e}"))
    out.records = distinct_labels(out.records)
    out.records.sort(key=lambda r: (str(r.get("dataset")), str(r.get("size")), decoder_of(r), label_of(r),
                                    seed_key(seed_of(r))))
    return out


def distinct_labels(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records, where a label shared by different params (a label rounds tuned floats to 4 significant
    digits) is replaced by the exact one, `method(k=v, ...)` with every digit: the report groups cells by
    label and must never pool two configurations."""
    params: dict[str, set[str]] = {}
    for r in records:
        params.setdefault(label_of(r), set()).add(json.dumps(params_of(r), sort_keys=True, default=str))
    shared = {label for label, p in params.items() if len(p) > 1}
    return [{**r, "label": _exact_label(r)} if label_of(r) in shared else r for r in records]


def _exact_label(rec: dict[str, Any]) -> str:
    inner = ", ".join(f"{k}={v}" for k, v in params_of(rec).items())
    return f"{rec.get('method', '?')}({inner})"


def _check(rec: Any) -> None:
    if not isinstance(rec, dict):
        raise ValueError("a result file must hold a JSON object")


def seed_key(seed: Any) -> tuple[int, int, str]:
    return (0, seed, "") if isinstance(seed, int) and not isinstance(seed, bool) else (1, 0, str(seed))


def seed_of(rec: dict[str, Any]) -> int | str | None:
    """Seeds stay ints; anything else odd becomes text so that it can still key and pair cells."""
    s = rec.get("seed")
    if s is None or (isinstance(s, int) and not isinstance(s, bool)):
        return s
    return int(s) if isinstance(s, float) and s.is_integer() else str(s)


def num(x: Any) -> float:
    """A finite float, else NaN (missing, null, non-numeric, bool or non-finite)."""
    if isinstance(x, bool) or x is None:
        return math.nan
    try:
        v = float(x)
    except (TypeError, ValueError):
        return math.nan
    return v if math.isfinite(v) else math.nan


def params_of(rec: dict[str, Any]) -> dict[str, Any]:
    p = rec.get("params")
    return p if isinstance(p, dict) else {}


def label_of(rec: dict[str, Any]) -> str:
    if rec.get("label"):
        return str(rec["label"])
    p = params_of(rec)
    inner = ",".join(f"{k}={v}" for k, v in sorted(p.items()))
    return f"{rec.get('method', '?')}({inner})" if inner else str(rec.get("method", "?"))


def status_of(rec: dict[str, Any]) -> str:
    s = rec.get("status")
    if s is None:
        return "ok" if rec.get("metrics") else "failed"
    return "ok" if s == "ok" else "failed"


def _error(rec: dict[str, Any]) -> tuple[str, str, str]:
    """(type, message, traceback), empty strings where absent."""
    err = rec.get("error")
    if isinstance(err, dict):
        kind, message, trace = (str(err.get(k) or "") for k in ("type", "message", "traceback"))
        return kind, message, trace
    return ("", str(err), "") if err else ("", "", "")


def probe_key(k: Any) -> tuple[int, float, str]:
    return (0, float(k), "") if not math.isnan(num(k)) else (1, 0.0, str(k))


def _probe(metrics: dict[str, Any]) -> dict[str, float]:
    probe = metrics.get("probe")
    if not isinstance(probe, dict):
        return {}
    out = {}
    for k, v in probe.items():
        out[f"probe@{k}"] = num(v.get("mean") if isinstance(v, dict) else v)
    return out


def has_latent(rec: dict[str, Any]) -> bool:
    """False for a model without z (the LM): the engine writes KL/MI/AU = 0 and iw_samples = 0 for it."""
    m = rec.get("metrics") if isinstance(rec.get("metrics"), dict) else {}
    return m.get("has_latent") is not False and m.get("iw_samples") != 0


def size_of(rec: dict[str, Any]) -> str:
    """The size, qualified by any `--set SECTION.FIELD` overrides but the decoder (a key of its own, `decoder_of`):
    such cells get their own board, are paired only with vanilla cells of the same setting, and never sit beside
    the paper's figures."""
    size = str(rec.get("size", "?"))
    over = rec.get("overrides") if isinstance(rec.get("overrides"), dict) else {}
    items = [f"{sec}.{k}={v}" for sec, vals in sorted(over.items()) if isinstance(vals, dict)
             for k, v in sorted(vals.items()) if (sec, k) != ("model", "decoder")]
    return f"{size} ({', '.join(items)})" if items else size


def decoder_of(rec: dict[str, Any]) -> str:
    """The record's decoder: config.model.decoder, else (a cell that failed before its config was known) the
    `--set model.decoder` override; records from before the decoder axis ran the LSTM."""
    for part in (rec.get("config"), rec.get("overrides")):
        model = part.get("model") if isinstance(part, dict) else None
        if isinstance(model, dict) and model.get("decoder"):
            return str(model["decoder"])
    return "lstm"


def _row(rec: dict[str, Any], file_index: int) -> dict[str, Any]:
    metrics = rec.get("metrics") if isinstance(rec.get("metrics"), dict) else {}
    timing = rec.get("timing") if isinstance(rec.get("timing"), dict) else {}
    prov = rec.get("provenance") if isinstance(rec.get("provenance"), dict) else {}
    cfg = rec.get("config") if isinstance(rec.get("config"), dict) else {}
    etype, emsg, trace = _error(rec)
    row: dict[str, Any] = {
        "cell": str(rec.get("cell") or f"record{file_index}"),
        "method": str(rec.get("method", "?")), "label": label_of(rec),
        "preset": str(rec["preset"]) if rec.get("preset") else None,
        "params": json.dumps(params_of(rec), sort_keys=True, default=str),
        "dataset": str(rec.get("dataset", "?")), "size": size_of(rec), "decoder": decoder_of(rec),
        "seed": seed_of(rec), "status": status_of(rec), "error_type": etype, "error_message": emsg, "traceback": trace,
        "config": json.dumps(cfg, sort_keys=True, indent=1, default=str),
    }
    latent = has_latent(rec)
    row |= {k: num(metrics.get(k)) if latent or k not in LATENT_METRICS else math.nan for k in METRICS}
    row |= {k: num(timing.get(k)) for k in TIMING}
    row |= {k: (None if prov.get(k) is None else str(prov[k])) for k in PROVENANCE}
    pk = prov.get("packages")
    row["torch"] = str(pk["torch"]) if isinstance(pk, dict) and pk.get("torch") else None
    row["device"] = str(cfg["device"]) if cfg.get("device") else None
    row |= {k: (None if metrics.get(k) is None else str(metrics[k]))
            for k in ("iw_samples", "iw_sentences", "mi_estimator")}
    row |= _probe(metrics)
    return row


def frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    rows = [_row(r, i) for i, r in enumerate(records)]
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=["cell", "method", "label", "params", "dataset", "size", "decoder", "seed", "status",
                                     "error_type", "error_message", *METRICS, *TIMING])
    probes = sorted((c for c in df.columns if c.startswith("probe@")), key=lambda c: probe_key(c[6:]))
    rest = [c for c in df.columns if not c.startswith("probe@")]
    return df[rest + probes]


def curves_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Long frame of per-epoch curves of the ok cells: dataset, size, decoder, label, seed, epoch, step, curve keys."""
    rows = []
    for rec in records:
        curves = rec.get("curves")
        if status_of(rec) != "ok" or not isinstance(curves, list):
            continue
        base = {"dataset": str(rec.get("dataset", "?")), "size": size_of(rec),   # the board's keys, as the table
                "decoder": decoder_of(rec), "label": label_of(rec), "seed": str(seed_of(rec))}
        latent = has_latent(rec)
        for i, point in enumerate(curves, 1):
            if isinstance(point, dict):
                rows.append(base | {"epoch": num(point.get("epoch", i)), "step": num(point.get("step"))}
                            | {k: num(point.get(k)) if latent or k not in LATENT_CURVES else math.nan
                               for k in CURVE_KEYS})
    return pd.DataFrame(rows, columns=[*BOARD_KEYS, "label", "seed", "epoch", "step", *CURVE_KEYS])


def kl_dims_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Long frame of the per-dimension KL at every curve point of the ok cells: dataset, size, decoder, label, seed,
    epoch, step, dim, kl (dimensions as recorded; only posterior families with a per-dimension KL record them)."""
    rows = []
    for rec in records:
        curves = rec.get("curves")
        if status_of(rec) != "ok" or not isinstance(curves, list):
            continue
        base = {"dataset": str(rec.get("dataset", "?")), "size": size_of(rec), "decoder": decoder_of(rec),
                "label": label_of(rec), "seed": str(seed_of(rec))}
        for i, point in enumerate(curves, 1):
            dims = point.get("valid_kl_dims") if isinstance(point, dict) else None
            if isinstance(dims, list):
                at = {"epoch": num(point.get("epoch", i)), "step": num(point.get("step"))}
                rows.extend(base | at | {"dim": d, "kl": num(v)} for d, v in enumerate(dims))
    return pd.DataFrame(rows, columns=[*BOARD_KEYS, "label", "seed", "epoch", "step", "dim", "kl"])


def load_results(run_dir: str | Path) -> pd.DataFrame:
    """One row per result file (failed cells included, status 'failed'); probe columns ``probe@<labels>``."""
    return frame(read_records(run_dir).records)
