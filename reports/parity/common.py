"""Shared by the parity drivers: the parity data (written once, read by both implementations), the budget,
and the probe both sides are scored with (the original code's protocol: raw mu, LogisticRegression, C on valid)."""
from __future__ import annotations

import json
import os
import sys
import types
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
WORK = Path(os.environ.get("PARITY_WORK", HERE / "work"))      # data files and checkpoints; not committed
RESULTS = HERE / "results"
LABEL_SIZES = (100, 500, 1000, 2000, 10000)

# The budget of the parity issue: model 128/512/32, batch 32, SGD lr 1, KL weight 0.1 -> 1 over 2 epochs,
# 4 epochs, final model; IW-NLL (K=500) on test lines 0-499, KL/MI/AU on test lines 0-999.
TRAIN_FILE_SENTENCES = 40000     # the parity training file (prepare_data.py); a smaller budget reads its head
BUDGET = dict(train_sentences=TRAIN_FILE_SENTENCES, epochs=4, warm_up=2, kl_start=0.1, lr=1.0, batch_size=32, emb=128,
              hidden=512, nz=32, iw_samples=500, iw_sentences=500, latent_sentences=1000)

# The training file of a parity row (--subset): "draw" = the harness's 40,000-sentence training subset (a seeded draw
# from the short-Yelp pool, data seed 0, kept in pool order; the first row of parity.md); "first" = the pool's first
# 40,000 sentences in pool order (issue 24's second row). Everything else (valid, test, labelled subsets, vocabulary)
# is the same file for both.
SUBSETS = ("draw", "first")

AGG_TRAIN_SENTENCES = 1000   # Agg-VAE's smaller budget: the first 1,000 of the 40,000 training lines, rest unchanged

# One table row per method: the original code's flags (valdersoul/bn-vae text_anneal_fb.py) and ours. `init` is
# the encoder init the original applies for that encoder class: its GaussianLSTMEncoder keeps PyTorch's defaults
# (its reset_parameters has the uniform init commented out), its delta and vMF encoders apply U(+-0.01)/U(+-0.1).
METHODS = {
    "vanilla": dict(original=[], ours=("vanilla", {}), init="pytorch"),
    "bnvae": dict(original=["--gamma", "0.7"], ours=("bnvae", {"gamma": 0.7}), init="pytorch"),
    "delta": dict(original=["--fb", "3", "--delta", "0.1"], ours=("delta", {"delta": 0.1}), init="uniform"),
    "vmf": dict(original=["--fb", "4"], ours=("vmf", {"kappa": 13.0}), init="uniform"),
    "cyclic": dict(original=["--cycle", "2"], ours=("cyclic", {}), init="pytorch"),
    # FB (4) with an AE encoder (Li et al.'s recipe, the BN-VAE table's "FB (4) *"): the original trains the AE with
    # text_beta.py --beta 0 on the same budget, then text_anneal_fb.py loads its final checkpoint and resets the
    # decoder; ours is fb's pretrain='ae' (the `ae` method on the same budget and seed, encoder copied, fresh decoder).
    "ae-fb": dict(original=["--fb", "2", "--target_kl", "4", "--reset_dec"], ae_first=True,
                  ours=("fb", {"target": 4.0, "mode": "li", "pretrain": "ae"}), init="pytorch"),
    # Agg-VAE: He et al.'s own text.py (jxhe/vae-lagging-encoder), which runs at most 99 encoder sub-steps per
    # iteration (its counter starts at 1 and stops below 100); its LSTMEncoder applies U(+-0.01). An aggressive
    # iteration costs tens of plain steps, so the issue's smaller budget applies (AGG_TRAIN_SENTENCES).
    "agg": dict(original=["--aggressive", "1"], code="he", ours=("agg", {"inner_steps": 99}), init="uniform",
                budget=dict(train_sentences=AGG_TRAIN_SENTENCES)),
    # DU-VAE: the authors' text.py (SmilesDZgk/DU-VAE, built on He et al.'s code: seed by --taskid, only the best
    # checkpoint kept) with the README's γ, p_drop and δ rate; its GaussianLSTMEncoder keeps PyTorch's initialisation
    # (its reset_parameters only sets the BN weight). Everything else is the parity budget (KL 0.1 -> 1 over 2 of 4
    # epochs, not the README's 0 -> 1 over 10 epochs).
    "duvae": dict(original=["--gamma", "0.5", "--p_drop", "0.2", "--delta_rate", "1"], code="du",
                  ours=("duvae", {"gamma": 0.5, "p_drop": 0.2, "delta_rate": 1.0}), init="pytorch"),
}

# The code families run_original.py drives through He et al.'s text.py interface (seed = --taskid, evaluation
# functions in text.py, only the best checkpoint kept): their repository and the encoder class to rebuild
HE_STYLE = {"he": ("jxhe/vae-lagging-encoder text.py", "LSTMEncoder"),
            "du": ("SmilesDZgk/DU-VAE text.py", "GaussianLSTMEncoder")}


def register_original_config(dataset: str, *, emb: int, hidden: int, nz: int, batch_size: int, epochs: int,
                             dropout: float = 0.5, train="", valid="", test="", **extra) -> None:
    """The BN-VAE code reads its settings from a module `config.config_<dataset>` (`--dataset <dataset>`): register
    one in memory, so that its files stay untouched."""
    cfg = types.ModuleType(f"config.config_{dataset}")
    cfg.params = {"enc_type": "lstm", "dec_type": "lstm", "nz": nz, "ni": emb, "enc_nh": hidden, "dec_nh": hidden,
                  "log_niter": 50, "dec_dropout_in": dropout, "dec_dropout_out": dropout, "batch_size": batch_size,
                  "epochs": epochs, "test_nepoch": 5, "train_data": str(train), "val_data": str(valid),
                  "test_data": str(test), **extra}
    sys.modules[cfg.__name__] = cfg


def subset_data(subset: str) -> Path:
    """The folder of the parity files of a subset (prepare_data.py writes it)."""
    return WORK / ("data" if subset == "draw" else f"data-{subset}")


def subset_results(subset: str) -> Path:
    """Where a subset's result records go: the first row's stay at results/ (table.py's main table)."""
    return RESULTS if subset == "draw" else RESULTS / f"subset-{subset}"


def subset_work(subset: str) -> Path:
    """Where a subset's runs keep their checkpoints (not committed)."""
    return WORK if subset == "draw" else WORK / f"subset-{subset}"


def load_parity_corpus(subset: str):
    """The harness's short-Yelp corpus with the training file of `subset` (SUBSETS), through the harness's loader."""
    from collapse_bench.data import DataLimits, load_corpus
    if subset == "draw":
        return load_corpus("short-yelp", data_dir(), DataLimits(max_train=TRAIN_FILE_SENTENCES), seed=0)
    if subset != "first":
        raise SystemExit(f"unknown subset {subset!r}; known: {SUBSETS}")
    corpus = load_corpus("short-yelp", data_dir(), DataLimits(), seed=0)
    corpus.train = corpus.train.subset(np.arange(TRAIN_FILE_SENTENCES))
    return corpus


def provenance_of_run(code: str | os.PathLike | None = None) -> dict:
    """What produced a result: the command, this repository's commit (and whether its tree was dirty), and the commit
    of the original code's checkout when one ran."""
    import subprocess

    def git(cwd, *args):
        try:
            return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return None
    root = HERE.parents[1]
    out = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "harness_commit": git(root, "rev-parse", "HEAD"),
           "harness_dirty": bool(git(root, "status", "--porcelain", "--untracked-files=no"))}
    if code is not None:
        out["original_commit"] = git(code, "rev-parse", "HEAD")
    return out


def data_dir() -> Path:
    d = os.environ.get("COLLAPSE_BENCH_DATA") or str(HERE.parents[2] / "shared" / "data")
    if not Path(d).is_dir():
        raise SystemExit(f"no corpus folder at {d}: set COLLAPSE_BENCH_DATA to the shared data folder")
    return Path(d)


def probe_raw_mu(features: dict[str, np.ndarray], labels: dict[str, np.ndarray]) -> dict[str, float]:
    """The original code's probe: LogisticRegression on the raw posterior mean, C chosen on valid,
    accuracy on the full test set; one fit per labelled subset (Li et al.'s fixed files)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    out = {}
    for n in LABEL_SIZES:
        x, y = features[f"train{n}"], labels[f"train{n}"]
        best, best_acc = None, -1.0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            for c in (0.01, 0.1, 1.0, 10.0, 100.0):
                clf = LogisticRegression(C=c, max_iter=1000).fit(x, y)
                acc = clf.score(features["valid"], labels["valid"])
                if acc > best_acc:
                    best, best_acc = clf, acc
        out[str(n)] = float(best.score(features["test"], labels["test"]))
    return out


def probe_standardised(features: dict[str, np.ndarray], labels: dict[str, np.ndarray]) -> dict[str, float]:
    """The harness's probe (standardised mu) on the same features, for the standardisation evidence."""
    from collapse_bench.probe import fit_and_score
    return {str(n): fit_and_score(features[f"train{n}"], labels[f"train{n}"], features["valid"], labels["valid"],
                                  features["test"], labels["test"])[0] for n in LABEL_SIZES}


def write_result(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1))
    tmp.replace(path)
