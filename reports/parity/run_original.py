"""Run the original code (valdersoul/bn-vae's text_anneal_fb.py; for Agg-VAE jxhe/vae-lagging-encoder's text.py) on
the parity data and budget, then score its final model with its own evaluation functions (test(), calc_mi, calc_au,
calc_iwnll) and the raw-mu probe.

Changes to the original, all made here from the outside (its files are untouched):
- CPU: Tensor.cuda() returns the tensor (calc_mi calls .cuda()); one torch thread (one run per core).
- Data: a config module `config.config_parity` with the parity files, 4 epochs; the vocabulary is the harness's
  (MonoTextData gets it when the script builds its own), so both sides score the same 8,411-word softmax.
- Budget: the script's final IW-NLL over its test file is replaced by the evaluation below on the *final*
  epoch's checkpoint (--save_ckpt keeps one per epoch); its test file is test lines 0-999. calc_iwnll gets
  same-length batches of 32 instead of single sentences (the same per-sentence estimator, faster).

- FB with an AE encoder (--method ae-fb): the AE is text_beta.py --beta 0 on the same budget and seed; the VAE run
  loads its final checkpoint with --load_path --reset_dec, as the repository's README describes.
- Agg-VAE (--method agg): text.py keeps only its best model, so the model is saved at each validation (the final
  one is scored); its seed is --taskid (an index into its own seed list).

    python reports/parity/run_original.py --code /path/to/bn-vae --method bnvae --seed 0
    python reports/parity/run_original.py --code /path/to/bn-vae --method vanilla --seed 202 --subset first

--subset first trains on the pool's first 40,000 sentences (prepare_data.py --subset first) and writes its record
under results/subset-first/. Each record keeps the validation curve of the script's own test() (valid -ELBO, KL,
MI per epoch) and what produced it (command, this repository's commit, the original checkout's commit).
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from common import (BUDGET, HE_STYLE, LABEL_SIZES, METHODS, SUBSETS, TRAIN_FILE_SENTENCES, probe_raw_mu, probe_standardised,
                    provenance_of_run, register_original_config, subset_data, subset_results, subset_work,
                    write_result)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--code", required=True, help="checkout of valdersoul/bn-vae (jxhe/vae-lagging-encoder for agg)")
    ap.add_argument("--method", required=True, choices=sorted(METHODS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--shuffled-train", action="store_true",
                    help="train on a seeded shuffle of the training file (result tagged 'original-shuffled'): the "
                         "file is in pool order, and this tests what that order does to the original's batches")
    ap.add_argument("--subset", choices=SUBSETS, default="draw", help="which 40,000 training sentences (common.SUBSETS)")
    ap.add_argument("--quick", action="store_true", help="a tiny budget to check this script, results not kept")
    a = ap.parse_args()
    a.code = str(Path(a.code).resolve())
    produced_by = provenance_of_run(a.code)
    tag = "-shuffled" if a.shuffled_train else ""
    spec = METHODS[a.method]
    BUDGET.update(spec.get("budget", {}))
    if a.quick:
        BUDGET.update(epochs=1, iw_samples=100)    # calc_iwnll draws samples in chunks of 100
        tag += "-quick"
    out = subset_results(a.subset) / f"original{tag}__{a.method}__seed{a.seed}.json"
    if out.exists() and not a.quick:
        print(f"{out} exists; delete it to rerun")
        return
    torch.set_num_threads(a.threads)
    torch.Tensor.cuda = lambda self, *args, **kw: self   # CPU
    data = subset_data(a.subset)
    run_dir = subset_work(a.subset) / f"original{tag}" / f"{a.method}__seed{a.seed}"
    train_file = data / "train.txt"
    if a.shuffled_train:
        lines = train_file.read_text().splitlines(keepends=True)
        train_file = data / "train_shuffled.txt"       # the same sentences; order from a fixed seed, not the run's
        train_file.write_text("".join(lines[i] for i in np.random.default_rng(0).permutation(len(lines))))
    n_train = 1000 if a.quick else BUDGET["train_sentences"]
    if n_train < TRAIN_FILE_SENTENCES:     # a smaller budget: the first n lines (run_ours.py keeps the same sentences)
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        head = run_dir.parent / f"train_head{n_train}.txt"
        head.write_text("".join(train_file.read_text().splitlines(keepends=True)[:n_train]))
        train_file = head
    sys.path.insert(0, a.code)
    os.chdir(a.code)   # the script imports its packages relative to its folder
    files = dict(emb=BUDGET["emb"], hidden=BUDGET["hidden"], nz=BUDGET["nz"], batch_size=BUDGET["batch_size"],
                 epochs=BUDGET["epochs"], train=train_file, valid=data / "valid.txt", test=data / "test1000.txt",
                 label=True)
    register_original_config("parity", **files)
    # text_beta.py has no --gamma, but the repository's encoder reads args.gamma (text_anneal_fb.py's default is 0:
    # no batch norm); the AE's config module supplies that default
    register_original_config("parity_ae", **files, gamma=0.0)
    from data.text_data import MonoTextData, VocabEntry
    vocab = VocabEntry({w: i for i, w in enumerate(json.loads((data / "vocab.json").read_text()))})
    common_flags = ["--seed", str(a.seed), "--lr", str(BUDGET["lr"]),
                    "--save_ckpt", str(BUDGET["epochs"]), "--iw_nsamples", str(BUDGET["iw_samples"])]
    final_ckpt = f"model_ckpt_{BUDGET['epochs'] - 1}.pt"
    ae = None
    he_style = HE_STYLE.get(spec.get("code"))
    if he_style:     # He et al.'s text.py (or DU-VAE's fork of it): seed by --taskid, no checkpoints per epoch
        vae_run = run_script("text", ["--dataset", "parity", "--taskid", str(a.seed), "--kl_start",
                                      str(BUDGET["kl_start"]), "--warm_up", str(BUDGET["warm_up"]), "--iw_nsamples",
                                      str(BUDGET["iw_samples"]), *spec["original"]], vocab,
                             keep_last=run_dir / final_ckpt)
    else:
        load = []
        if spec.get("ae_first"):     # Li et al.'s AE: text_beta.py with KL weight 0, the same budget and seed
            ae_dir = run_dir.with_name(run_dir.name + "__ae")     # beside run_dir: the scripts empty their exp_dir
            ae = run_script("text_beta", ["--dataset", "parity_ae", *common_flags, "--beta", "0", "--exp_dir",
                                          str(ae_dir)], vocab)
            load = ["--load_path", str(ae_dir / final_ckpt)]
        vae_run = run_script("text_anneal_fb", ["--dataset", "parity", *common_flags, "--kl_start",
                                                str(BUDGET["kl_start"]), "--warm_up", str(BUDGET["warm_up"]),
                                                "--exp_dir", str(run_dir), *load, *spec["original"]], vocab)
    script, args = vae_run["script"], vae_run["args"]
    test = script.test
    log = (run_dir / "log.txt").read_text() if (run_dir / "log.txt").exists() else ""

    # ---- evaluate the final epoch's model with the original's own functions
    import modules
    if he_style:     # He et al. keep the evaluation functions in text.py (DU-VAE's imports calc_mi there)
        calc_au, calc_iwnll, calc_mi = script.calc_au, script.calc_iwnll, script.calc_mi
        enc_cls = getattr(modules, he_style[1])
    else:
        from utils import calc_au, calc_iwnll, calc_mi
        enc_cls = {3: modules.DeltaGaussianLSTMEncoder, 4: modules.VMFLSTMEncoder}.get(args.fb, modules.GaussianLSTMEncoder)
    VAE, LSTMDecoder = modules.VAE, modules.LSTMDecoder
    np.random.seed(a.seed)
    torch.manual_seed(a.seed)

    def init(t):            # any init: the checkpoint overwrites it
        torch.nn.init.uniform_(t, -0.01, 0.01)
    emb_init = init
    vae = VAE(enc_cls(args, len(vocab), init, emb_init), LSTMDecoder(args, vocab, init, emb_init), args)
    vae.load_state_dict(torch.load(run_dir / final_ckpt))
    vae.eval()
    sets = {name: MonoTextData(str(data / f"{name}.txt"), label=True, vocab=vocab)
            for name in ["test500", "test1000", "valid", "test"] + [f"train{n}" for n in LABEL_SIZES]}
    t1 = time.perf_counter()
    with torch.no_grad():
        b1000 = sets["test1000"].create_data_batch(batch_size=BUDGET["batch_size"], device="cpu", batch_first=True)
        _, nll_elbo, kl, _, _ = test(vae, b1000, "TEST", args)
        mi = calc_mi(vae, b1000) if getattr(args, "fb", 0) != 4 else float("nan")
        au, _ = calc_au(vae, b1000)
        # the script scores IW-NLL one sentence at a time; the estimate is per sentence, so same-length batches of
        # 32 give the same estimator with the same function (VAE.nll_iw), several times faster
        b500 = sets["test500"].create_data_batch(batch_size=BUDGET["batch_size"], device="cpu", batch_first=True)
        iw_nll, iw_ppl = calc_iwnll(vae, b500, args)
        feats, labels = {}, {}
        for name, ds in sets.items():
            if name.startswith("test") and name != "test":
                continue
            xs, ys = [], []
            batches, label_batches = ds.create_data_batch_labels(batch_size=256, device="cpu", batch_first=True)
            for bx, by in zip(batches, label_batches):
                xs.append(vae.encoder(bx)[0].numpy())
                ys += [int(v) for v in by]
            feats[name], labels[name] = np.concatenate(xs), np.array(ys)
    probe = probe_raw_mu(feats, labels)
    probe_std = probe_standardised(feats, labels)
    eval_wall = time.perf_counter() - t1
    record = {"implementation": "original", "train_order": "shuffled" if a.shuffled_train else "pool",
              "subset": a.subset, "produced_by": produced_by,
              "code": he_style[0] if he_style else
                      "valdersoul/bn-vae " + ("text_beta.py --beta 0, then " if ae else "") + "text_anneal_fb.py",
              "script_seed": getattr(args, "seed", a.seed),
              "method": a.method, "seed": a.seed, "flags": vae_run["argv"], "ae_flags": ae and ae["argv"],
              "budget": BUDGET,
              "metrics": {"iw_nll": float(iw_nll), "iw_ppl": float(iw_ppl), "kl": float(kl), "mi": float(mi),
                          "au": int(au), "elbo_nll": float(nll_elbo), "probe_raw_mu": probe,
                          "probe_standardised": probe_std},
              "valid_curve": vae_run["valid_curve"],
              "timing": {"train_wall_seconds": vae_run["train_wall"] + (ae["train_wall"] if ae else 0.0),
                         "epoch_seconds": vae_run["epoch_seconds"], "ae_epoch_seconds": ae and ae["epoch_seconds"],
                         "logging_seconds": vae_run["logging_seconds"],
                         "eval_seconds": eval_wall, "threads": a.threads},
              "log_tail": log.splitlines()[-12:]}
    if not a.quick:
        write_result(out, record)
    print(json.dumps(record["metrics"], indent=1))


def run_script(module: str, argv: list[str], vocab, keep_last: Path | None = None) -> dict:
    """Run one of the original's training scripts in this process: our vocabulary (so both sides score the same
    softmax), its end-of-run IW-NLL replaced by the evaluation in main(), the wall time of each epoch recorded
    (from the start or the previous validation to this validation); with `keep_last`, the model is saved there at
    each validation (for scripts that keep only their best checkpoint)."""
    from data.text_data import MonoTextData
    script = importlib.import_module(module)

    def with_our_vocab(fname, label=False, max_length=None, vocab=None, _ours=vocab):
        return MonoTextData(fname, label=label, max_length=max_length, vocab=vocab or _ours)
    script.MonoTextData = with_our_vocab
    calc_iwnll = script.calc_iwnll
    script.calc_iwnll = lambda *args, **kw: (float("nan"), float("nan"))
    epoch_ends: list[float] = []
    valid_curve: list[dict] = []
    test = script.test

    def timed_test(model, batches, mode, args, verbose=True):
        if mode == "VAL":
            epoch_ends.append(time.perf_counter())
            if keep_last:
                keep_last.parent.mkdir(parents=True, exist_ok=True)
                torch.save(model.state_dict(), keep_last)
        result = test(model, batches, mode, args, verbose)
        if mode == "VAL" and len(result) >= 3:     # (loss, nll = -ELBO per sentence, kl, ...) in both scripts
            valid_curve.append({"epoch": len(valid_curve) + 1, "valid_loss": float(result[1]),
                                "valid_kl": float(result[2])})
        return result
    script.test = timed_test
    plain = {k: getattr(script, k) for k in ("calc_mi", "calc_au") if hasattr(script, k)}
    logging_seconds = time_progress_logging(script, epoch_ends)
    sys.argv = [f"{module}.py", *argv]
    args = script.init_config()
    t0 = time.perf_counter()
    script.main(args)
    script.test, script.calc_iwnll = test, calc_iwnll
    for k, fn in plain.items():
        setattr(script, k, fn)
    starts = [t0] + epoch_ends[:-1]
    return {"script": script, "args": args, "argv": argv, "train_wall": time.perf_counter() - t0,
            "valid_curve": valid_curve,
            "epoch_seconds": [e - s for s, e in zip(starts, epoch_ends)],
            "logging_seconds": [logging_seconds.get(i, 0.0) for i in range(len(epoch_ends))]}


def time_progress_logging(script, epoch_ends: list[float]) -> dict[int, float]:
    """Seconds per epoch that He et al.'s text.py (and DU-VAE's fork) spend in their progress log: in epoch 0, every
    log_niter iterations, calc_mi then calc_au over the whole validation set, called from main() (the validation's
    own calc_mi runs inside test(), its calc_au right after test(VAL) with no calc_mi from main() before it). Part of
    the script's epoch time; recorded so that the epoch time can be read without it. Scripts without a module-level
    calc_mi / calc_au (the BN-VAE code) are left alone."""
    seconds: dict[int, float] = {}
    if not (hasattr(script, "calc_mi") and hasattr(script, "calc_au")):
        return seconds
    pending = {"au": False}

    def timed(fn, kind):
        def wrapper(*args, **kw):
            caller = sys._getframe(1).f_code.co_name
            logging = caller == "main" and (kind == "mi" or pending["au"])
            t = time.perf_counter()
            out = fn(*args, **kw)
            if logging:
                epoch = len(epoch_ends)
                seconds[epoch] = seconds.get(epoch, 0.0) + time.perf_counter() - t
                pending["au"] = kind == "mi"
            return out
        return wrapper
    script.calc_mi, script.calc_au = timed(script.calc_mi, "mi"), timed(script.calc_au, "au")
    return seconds


if __name__ == "__main__":
    main()
