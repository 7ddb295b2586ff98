"""reports/decoders.md, the decoder axis's closing table (issue 21), generated from a run's records: vanilla, BN-VAE
and FB under each decoder on short-Yelp at size `default`, one seed, one core, one cell at a time
(reports/decoders/run.sh), then

    python reports/decoders/table.py reports/decoders/default [--data-dir ../shared/data] [--out reports/decoders.md] \
        [--extra "reports/decoders/default-sgd=every decoder under the protocol's SGD lr 1" ...]

Every figure is read from the records (the report package's loading and pairing: the time ratio is a cell's
training seconds over vanilla's of the same decoder, dataset, size and seed); the parameter counts are those of the
model each decoder's records configure, built on the corpus's vocabulary.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import torch

from collapse_bench.cell import load_cell_corpus
from collapse_bench.config import DECODERS, ModelConfig
from collapse_bench.data import DataLimits
from collapse_bench.decoders import core_parameters, decoder_width
from collapse_bench.model import TextVAE
from collapse_bench.report.load import read_records, frame
from collapse_bench.report.stats import add_time_ratio

COLUMNS = [("nll", "NLL", ".2f"), ("kl", "KL", ".2f"), ("mi", "MI", ".2f"), ("au", "AU", ".0f"), ("ppl", "PPL", ".1f"),
           ("train_seconds", "train s", ".0f"), ("time_ratio", "time ×vanilla", ".2f")]


def _config(rec: dict, section: str, cls):
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in rec["config"][section].items()}
    return cls(**values)


def parameter_counts(records: list[dict], data_dir: str) -> pd.DataFrame:
    """Per decoder: its width, its core (every parameter outside the shared embedding and output layer), the
    whole decoder and the whole model (encoder and posterior head included), as the records configure them."""
    rows, seen = [], set()
    for rec in records:
        cfg = _config(rec, "model", ModelConfig)
        if rec.get("status") != "ok" or cfg.decoder in seen:
            continue
        seen.add(cfg.decoder)
        vocab = len(load_cell_corpus(rec["dataset"], data_dir, _config(rec, "limits", DataLimits)).vocab)
        with torch.device("meta"):
            model = TextVAE(cfg, vocab)
        rows.append({"decoder": cfg.decoder, "width": decoder_width(cfg), "core": core_parameters(cfg),
                     "decoder total": sum(p.numel() for p in model.decoder.parameters()),
                     "model total": sum(p.numel() for p in model.parameters()), "vocabulary": vocab})
    return pd.DataFrame(rows).sort_values("decoder", key=lambda d: d.map(DECODERS.index))


def _markdown(df: pd.DataFrame, formats: dict[str, str], default: str = ",") -> str:
    head = "| " + " | ".join(df.columns) + " |\n|" + "---|" * len(df.columns) + "\n"

    def cell(column: str, v) -> str:
        return "–" if pd.isna(v) else v if isinstance(v, str) else format(v, formats.get(column, default))
    return head + "".join("| " + " | ".join(cell(c, v) for c, v in row.items()) + " |\n" for _, row in df.iterrows())


def results_table(run_dir: Path) -> tuple[pd.DataFrame, list[dict]]:
    loaded = read_records(run_dir)
    df = add_time_ratio(frame(loaded.records))
    df = df[df["status"] == "ok"].copy()
    df["_d"], df["_m"] = df["decoder"].map(DECODERS.index), df["method"] != "vanilla"
    df = df.sort_values(["_d", "_m", "label"])
    table = df[["decoder", "label", *(k for k, _, _ in COLUMNS)]].rename(columns={k: t for k, t, _ in COLUMNS})
    return table, loaded.records


def curves_table(records: list[dict], key: str) -> pd.DataFrame:
    """`key` of every cell's validation curve at the end of each epoch (points inside an epoch left out)."""
    rows = []
    for rec in records:
        if rec.get("status") != "ok":
            continue
        points = {f"epoch {c['epoch']:g}": c[key] for c in rec.get("curves", [])
                  if not c.get("partial") and c.get(key) is not None}
        rows.append({"decoder": rec["config"]["model"]["decoder"], "label": rec["label"]} | points)
    df = pd.DataFrame(rows)
    order = df["decoder"].map(DECODERS.index) * 2 + (df["label"] != "vanilla")
    return df.assign(_o=order).sort_values(["_o", "label"]).drop(columns="_o")


def build(run_dir: Path, data_dir: str) -> str:
    table, records = results_table(run_dir)
    counts = parameter_counts(records, data_dir)
    ok = [r for r in records if r.get("status") == "ok"]
    seeds = sorted({r["seed"] for r in ok})
    prov = sorted({(r["provenance"].get("git") + (" (dirty)" if r["provenance"].get("git_dirty") else ""),
                    r["provenance"].get("packages", {}).get("torch")) for r in ok})
    iw = sorted({f"K = {r['metrics']['iw_samples']} on {r['metrics']['iw_sentences']}" for r in ok})
    harness = sorted({r["provenance"]["code"]["harness"]["sha256"] for r in ok})
    return "\n".join([
        "# The decoder axis at size `default` on short-Yelp",
        "",
        f"Generated by `reports/decoders/table.py` from the {len(ok)} records in `{run_dir}` (do not edit by hand); "
        f"the run: `reports/decoders/run.sh`. Seeds {', '.join(map(str, seeds))}; IW-NLL {', '.join(iw)} test "
        f"sentences; commits {', '.join(f'{g} (torch {t})' for g, t in prov)}; training and scoring sources "
        f"(fingerprint.harness_code) {', '.join(harness)}.",
        "",
        "Time ×vanilla: the cell's training seconds over vanilla's with the same decoder (one core, cells one at a "
        "time). One seed: differences within a decoder are single draws, not findings.",
        "",
        _markdown(table, {t: f for _, t, f in COLUMNS}),
        "Parameters per decoder (core: everything but the shared embedding and output layer, matched to the LSTM's "
        "by `model.dec_width=0`):",
        "",
        _markdown(counts, {}),
        "Validation KL at the end of each epoch (the curve subset of the validation split):",
        "",
        _markdown(curves_table(ok, "valid_kl"), {}, ".3f"),
        "Validation reconstruction loss (nats per sentence) at the end of each epoch:",
        "",
        _markdown(curves_table(ok, "valid_recon"), {}, ".2f"),
    ])


def extra(run_dir: Path, heading: str) -> str:
    """Another run's results and validation KL curves under `heading` (the evidence behind a setting)."""
    table, records = results_table(run_dir)
    ok = [r for r in records if r.get("status") == "ok"]
    prov = sorted({r["provenance"].get("git") + (" (dirty)" if r["provenance"].get("git_dirty") else "") for r in ok})
    return "\n".join(["", f"## {heading}", "", f"From the {len(ok)} records in `{run_dir}` (commits "
                      f"{', '.join(prov)}); time ×vanilla where that run has the decoder's vanilla.", "",
                      _markdown(table, {t: f for _, t, f in COLUMNS}), "Validation KL at the end of each epoch:", "",
                      _markdown(curves_table(ok, "valid_kl"), {}, ".3f")])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--data-dir", default="../shared/data", help="the corpora (for the vocabulary size)")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "decoders.md")
    ap.add_argument("--extra", action="append", default=[], metavar="DIR=HEADING",
                    help="another run's table, under its heading")
    args = ap.parse_args()
    parts = [build(args.run_dir, args.data_dir)]
    for item in args.extra:
        folder, _, heading = item.partition("=")
        parts.append(extra(Path(folder), heading))
    args.out.write_text("\n".join(parts) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
