"""The probe through DU-VAE's own semi-supervised script, on one model of each implementation.

SmilesDZgk/DU-VAE's `text_ss.py` (in its first commit, 0f2f855, removed from the repository later; the modules it
imports are unchanged since, so it runs beside the HEAD checkout: copy HEAD's files and that one script into one
folder) trains their `LinearDiscriminator_only` on the frozen posterior mean μ of a trained VAE (SGD lr 1, batch 16,
100 epochs, lr halved after 2 epochs without improvement of the validation loss, the best-validation classifier
scored on the test set), for each labelled subset. It runs unchanged in this process, with, from the outside: a
config module carrying the parity files (`params_ss_<n>`: train<n>.txt, valid, test; `ncluster` 10, their short-Yelp
config's value, of which the two sentiment labels use two), our vocabulary written as their vocab file, `--device
cpu`, one torch thread. Their discriminator reads μ of their VAE in eval mode (BN on running statistics), as
their script builds it (`--gamma 0.5 --delta_rate 1`: the GaussianLSTMEncoder).

The model: `--impl original` loads run_original.py's final checkpoint of their text.py run; `--impl ours` converts
run_ours.py's final model into their state-dict layout (the step-parity mapping, reversed; their CrossEntropyLoss
weights, all ones, added), so the same script probes both. Records: results/probe_ss/<impl>__duvae__seed<s>.json.

    python reports/parity/probe_original_ss.py --code /work/orig/duvae-ss --impl original --seed 0
    python reports/parity/probe_original_ss.py --code /work/orig/duvae-ss --impl ours --seed 0
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import os
import sys
import time
import types
from pathlib import Path

import torch

from common import BUDGET, LABEL_SIZES, RESULTS, WORK, provenance_of_run, subset_data, write_result
from step_parity import BN_MAPPING, MAPPING

FLAGS = ["--gamma", "0.5", "--delta_rate", "1", "--device", "cpu"]


def their_checkpoint(impl: str, seed: int) -> Path:
    """The final model of a parity run in their layout (ours converted once, beside ours' model.pt)."""
    if impl == "original":
        path = WORK / "original" / f"duvae__seed{seed}" / f"model_ckpt_{BUDGET['epochs'] - 1}.pt"
        if not path.exists():
            raise SystemExit(f"no checkpoint at {path}: run run_original.py --method duvae --seed {seed} first")
        return path
    ours = WORK / "ours" / f"duvae__seed{seed}" / "model.pt"
    if not ours.exists():
        raise SystemExit(f"no model at {ours}: run run_ours.py --method duvae --seed {seed} first")
    state = torch.load(ours)
    theirs = {orig: state[name].clone() for name, orig in {**MAPPING, **BN_MAPPING}.items()}
    theirs["decoder.loss.weight"] = torch.ones(state["decoder.out.weight"].shape[0])
    out = ours.with_name("model_in_original_layout.pt")
    torch.save(theirs, out)
    return out


def register_ss_config(data: Path, vocab_file: Path) -> str:
    """Their text_ss.py reads `params_ss_<n>` from config.config_<dataset>: one module with every labelled subset."""
    cfg = types.ModuleType("config.config_parity_ss")
    for n in LABEL_SIZES:
        setattr(cfg, f"params_ss_{n}", {
            "enc_type": "lstm", "dec_type": "lstm", "nz": BUDGET["nz"], "ni": BUDGET["emb"], "enc_nh": BUDGET["hidden"],
            "dec_nh": BUDGET["hidden"], "log_niter": 50, "dec_dropout_in": 0.5, "dec_dropout_out": 0.5,
            "test_nepoch": 5, "train_data": str(data / f"train{n}.txt"), "val_data": str(data / "valid.txt"),
            "test_data": str(data / "test.txt"), "vocab_file": str(vocab_file), "ncluster": 10, "label": True})
    sys.modules[cfg.__name__] = cfg
    return "parity_ss"


def run_ss(script, dataset: str, ckpt: Path, n: int, seed: int, exp_dir: Path, extra: list[str]) -> dict:
    """One text_ss.py run for n labels; its final test accuracy (the last TEST line) and validation accuracy."""
    seen: list[tuple[str, float]] = []
    test = script.test

    def recorded(model, data, labels, mode, args, verbose=True):
        loss, acc = test(model, data, labels, mode, args, verbose)
        seen.append((mode, float(acc)))
        return loss, acc
    script.test = recorded
    sys.argv = ["text_ss.py", "--dataset", dataset, "--num_label", str(n), "--load_path", str(ckpt), "--taskid",
                str(seed), "--exp_dir", str(exp_dir), *FLAGS, *extra]
    t0 = time.perf_counter()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            script.main(script.init_config())
    finally:
        script.test = test
    tests = [acc for mode, acc in seen if mode == "TEST"]
    vals = [acc for mode, acc in seen if mode == "VAL"]
    return {"test_acc": tests[-1], "best_valid_acc": max(vals), "epochs_run": len(vals),
            "seconds": time.perf_counter() - t0}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--code", required=True, help="DU-VAE's HEAD files plus text_ss.py from its commit 0f2f855")
    ap.add_argument("--impl", required=True, choices=("original", "ours"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--labels", type=int, nargs="+", default=list(LABEL_SIZES), help="labelled subsets (a check: one)")
    ap.add_argument("--quick", action="store_true", help="a check of this script: 3 epochs, record not kept")
    a = ap.parse_args()
    out = RESULTS / "probe_ss" / f"{a.impl}__duvae__seed{a.seed}.json"
    if out.exists() and not a.quick:
        print(f"{out} exists; delete it to rerun")
        return
    code = Path(a.code).resolve()
    produced_by = provenance_of_run(code)
    torch.set_num_threads(1)
    data = subset_data("draw")
    vocab_file = data / "vocab.txt"
    vocab_file.write_text("".join(w + "\n" for w in json.loads((data / "vocab.json").read_text())))
    ckpt = their_checkpoint(a.impl, a.seed)
    sys.path.insert(0, str(code))
    os.chdir(code)
    dataset = register_ss_config(data, vocab_file)
    script = importlib.import_module("text_ss")
    extra = ["--epochs", "3"] if a.quick else []
    probe = {str(n): run_ss(script, dataset, ckpt, n, a.seed, WORK / "probe-ss" / f"{a.impl}__seed{a.seed}__{n}",
                            extra) for n in a.labels}
    record = {"implementation": a.impl, "method": "duvae", "seed": a.seed, "checkpoint": str(ckpt.relative_to(WORK)),
              "code": "SmilesDZgk/DU-VAE text_ss.py (commit 0f2f855) with the HEAD modules", "flags": FLAGS,
              "produced_by": produced_by, "probe_text_ss": probe}
    if not a.quick:
        write_result(out, record)
    print(json.dumps({n: p["test_acc"] for n, p in probe.items()}, indent=1))


if __name__ == "__main__":
    main()
