"""Score a model trained by the original code with the harness's evaluation: its final checkpoint's weights are
copied into our model (the step-parity mapping: same vocabulary, same layers), then run_ours.score measures it
exactly as it measures ours. For metrics whose original estimator differs from ours (vMF: the BN-VAE code's
`nll_iw` evaluates a Gaussian q with log-variance = mu against a N(0, I) prior, on 5 samples), this gives the
original's model a number measured the same way as ours.

    python reports/parity/score_original_with_ours.py --method vmf --seed 0
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from collapse_bench.data import load_corpus
from common import BUDGET, METHODS, RESULTS, WORK, data_dir, write_result
from run_ours import build_method, parity_config, score
from step_parity import mapping_for


# Our state entries with no counterpart in the original's checkpoint, set to what the original's run ended with:
# DU-VAE's variance floor is on once the KL weight has reached 1 (the original's args.kl_weight == 1 at the end).
OWN_STATE = {"duvae": {"head.floor_on": True}}


def original_in_ours(name: str, method, cfg, vocab_size: int, ckpt: Path):
    """Our model for parity row `name`, holding the weights of the original's checkpoint `ckpt`."""
    original = torch.load(ckpt)
    model = method.build_model(cfg.model, vocab_size)
    state = model.state_dict()
    mapping = mapping_for(name)
    own = OWN_STATE.get(name, {})
    with torch.no_grad():
        for ours_name, original_name in mapping.items():
            src = original[original_name]
            if ours_name == "head.linear.weight" and state[ours_name].shape[0] == cfg.model.nz:
                src = src[: cfg.model.nz]        # a direction head (vMF) reads the mean rows of the original's [2nz, H]
            state[ours_name].copy_(src)
        for ours_name, value in own.items():
            state[ours_name].fill_(value)
    unmapped = sorted(set(state) - set(mapping) - set(own))
    if unmapped:
        raise SystemExit(f"our model has weights the mapping does not fill: {unmapped}")
    model.load_state_dict(state)
    return model


def final_checkpoint(name: str, seed: int, impl: str = "original") -> Path:
    """The last epoch's checkpoint of run_original.py's run (impl "original-shuffled": its --shuffled-train run)."""
    ckpt = WORK / impl / f"{name}__seed{seed}" / f"model_ckpt_{BUDGET['epochs'] - 1}.pt"
    if not ckpt.exists():
        raise SystemExit(f"no checkpoint at {ckpt}: run run_original.py --method {name} --seed {seed} first")
    return ckpt


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--method", required=True, choices=sorted(METHODS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    out = RESULTS / f"original-scored-by-ours__{a.method}__seed{a.seed}.json"
    if out.exists():
        print(f"{out} exists; delete it to rerun")
        return
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    ckpt = final_checkpoint(a.method, a.seed)
    cfg = parity_config(a.threads, METHODS[a.method]["init"])
    method = build_method(a.method)
    corpus = load_corpus("short-yelp", data_dir(), cfg.limits, seed=0)
    model = original_in_ours(a.method, method, cfg, len(corpus.vocab), ckpt)
    metrics, eval_seconds = score(method, model, corpus, cfg, torch.device("cpu"))
    record = {"implementation": "original", "scored_by": "ours", "method": a.method, "seed": a.seed, "checkpoint":
              str(ckpt.relative_to(WORK)), "params": method.params.to_dict(), "budget": BUDGET, "metrics": metrics,
              "timing": {"eval_seconds": eval_seconds, "threads": a.threads}}
    write_result(out, record)
    print(json.dumps(metrics, indent=1))


if __name__ == "__main__":
    main()
