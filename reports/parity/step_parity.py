"""Step-level parity between the original BN-VAE code and ours, on a tiny model.

The original (valdersoul/bn-vae, itself derived from He et al. 2019's vae-lagging-encoder) trains through its own
text_anneal_fb.py main(): its MonoTextData batching (one length per batch), its KL annealing, its SGD optimisers
(lr 1, separate encoder / decoder), its joint clip_grad_norm_(vae.parameters(), 5). Nothing in its files changes;
from the outside this driver
- writes a tiny corpus (30-word vocabulary with <pad>,<s>,</s>,<unk> at ids 0-3; lengths 4-25) and a config module,
  and hands MonoTextData our vocabulary so that word ids agree;
- injects the noise: Tensor.normal_ (its reparameterisation's only random draw) and F.dropout (its decoder's
  nn.Dropout(0.5) on the input embeddings and on the LSTM outputs) read pre-drawn eps and 0/1 masks, the same ones
  our replay reads (torch.randn and F.dropout), so dropout stays at the paper's 0.5 and is deterministic;
- spies on VAE.loss (batch, KL weight, loss, rec, KL; parameters after the previous step) and on clip_grad_norm_
  (per-group gradient norms before and after clipping, the total norm); stops main() after STEPS steps.
Our side replays the recorded batches and noise from the original's initial weights through Trainer / Method
(tests/test_step_parity.py `replay`), and every figure is compared.

Model: emb 8, hidden 16 (encoder and decoder, as the original forces enc_nh = dec_nh), nz 4, dropout 0.5;
batch size 6; SGD lr 1; clip 5; KL weight from 0.1 over warm_up=1 epoch of N/batch iterations (N = 66).
Runs: vanilla (no flags), BN-VAE (--gamma 0.7) and δ-VAE (--fb 3 --delta 0.1), 10 steps each; plus a probe that puts the vocabulary's last id
(29) in the data, where the original's nn.Embedding(..., padding_idx=-1) freezes that decoder embedding row.

Findings (torch 2.13 CPU): with Method.kl_weight raising the weight before each update (as the original's loop
does; before that fix ours used kl_start at the first update and parted at step 1 through the KL weight, 0.1 vs
0.1818, hence the encoder-side gradients by 45%), both runs agree bit for bit at every step, clipping included.
The probe parts at step 1 in the decoder embedding's gradient only: the original's padding_idx=-1 (meant as "no
padding") makes PyTorch treat id V-1 as padding and never update its decoder embedding row; ours updates it.

    cd /work/wt-step && PYTHONPATH=. /work/main/.venv/bin/python reports/parity/step_parity.py \
        --code /tmp/orig/bnvae [--write-fixture]

--long records a whole short run instead (tests/test_long_parity.py, issue 24): vanilla, LONG_EPOCHS epochs of the
tiny corpus (every step of every epoch, the original's own batch order, its validation between epochs passed
through untouched), so the replay crosses epoch boundaries and the KL weight's clamp at 1. At the real size the
original and ours part only through float-level differences that training amplifies (long_parity.py); this is the
guard that nothing but such differences separates them over a whole run.

    python reports/parity/step_parity.py --code reports/parity/work/bnvae --long [--write-fixture]
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import io
import json
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from common import register_original_config

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "data" / "step_parity_original.json"
LONG_FIXTURE = ROOT / "tests" / "data" / "long_parity_original.json"
STEPS = 10
LONG_EPOCHS = 4
SEED = 1
CONFIG = dict(emb=8, hidden=16, nz=4, dropout=0.5, batch_size=6, lr=1.0, clip=5.0, kl_start=0.1, warm_up=1)
VOCAB = ["<pad>", "<s>", "</s>", "<unk>"] + [f"w{i}" for i in range(4, 30)]
LENGTH_COUNTS = {4: 12, 5: 8, 6: 10, 9: 12, 11: 6, 14: 12, 25: 6}   # 66 sentences -> 12 batches, all of >= 2
METHODS = {"vanilla": dict(method="vanilla", params={}, flags=[]),
           "bnvae": dict(method="bnvae", params={"gamma": 0.7}, flags=["--gamma", "0.7"]),
           # its DeltaGaussianLSTMEncoder: the same LSTM and linear map as the Gaussian one, no mu_bn
           "delta": dict(method="delta", params={"delta": 0.1}, flags=["--fb", "3", "--delta", "0.1"])}

# Our state-dict names -> the original's (modules/encoders/enc_lstm.py GaussianLSTMEncoder, modules/decoders/
# dec_lstm.py LSTMDecoder inside modules/vae.py VAE). BN entries only for BN-VAE.
MAPPING = {
    "encoder.embed.weight": "encoder.embed.weight",
    "encoder.lstm.weight_ih_l0": "encoder.lstm.weight_ih_l0",
    "encoder.lstm.weight_hh_l0": "encoder.lstm.weight_hh_l0",
    "encoder.lstm.bias_ih_l0": "encoder.lstm.bias_ih_l0",
    "encoder.lstm.bias_hh_l0": "encoder.lstm.bias_hh_l0",
    "head.linear.weight": "encoder.linear.weight",                 # [2nz, H]: mu rows then logvar rows
    "decoder.embed.weight": "decoder.embed.weight",
    "decoder.lstm.weight_ih_l0": "decoder.lstm.weight_ih_l0",      # input = [embedding, z]
    "decoder.lstm.weight_hh_l0": "decoder.lstm.weight_hh_l0",
    "decoder.lstm.bias_ih_l0": "decoder.lstm.bias_ih_l0",
    "decoder.lstm.bias_hh_l0": "decoder.lstm.bias_hh_l0",
    "decoder.init_state.weight": "decoder.trans_linear.weight",    # c0 = W z, h0 = tanh(c0)
    "decoder.out.weight": "decoder.pred_linear.weight",
}
BN_MAPPING = {f"head.bn.{k}": f"encoder.mu_bn.{k}"
              for k in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")}
# The original builds mu_bn for every run; with --gamma 0 (vanilla) it is never applied: no gradient, no update.
UNUSED_IN_VANILLA = tuple(BN_MAPPING.values())
# Original buffers with no counterpart: the decoder's CrossEntropyLoss class weights, all ones (asserted).
ORIGINAL_CONSTANTS = ("decoder.loss.weight",)


def mapping_for(method: str) -> dict[str, str]:
    """Our names -> the original's for a method's model: BN-VAE's and DU-VAE's encoders add the BN on mu."""
    return {**MAPPING, **(BN_MAPPING if method in ("bnvae", "duvae") else {})}


def import_original(code: Path):
    """The original's training script and the classes a driver hooks (imported from its folder, as it expects)."""
    sys.path.insert(0, str(code))
    cwd = os.getcwd()
    os.chdir(code)
    try:
        script = importlib.import_module("text_anneal_fb")
        from data.text_data import MonoTextData, VocabEntry
        from modules.vae import VAE
    finally:
        os.chdir(cwd)
    return script, MonoTextData, VocabEntry, VAE


def load_test_module():
    spec = importlib.util.spec_from_file_location("test_step_parity", ROOT / "tests" / "test_step_parity.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def make_corpus(probe_last_word: bool = False) -> dict:
    rng = np.random.default_rng(SEED)
    ids = np.arange(4, 29)                                  # never id 29 (the last) unless probing
    p = 1.0 / np.arange(1, len(ids) + 1) ** 2               # skewed, so the model learns fast and clipping bites
    p /= p.sum()
    train = [rng.choice(ids, size=T, p=p).tolist() for T, n in LENGTH_COUNTS.items() for _ in range(n)]
    valid = [rng.choice(ids, size=T, p=p).tolist() for T in (4, 4, 6, 6, 9, 9, 5, 5)]
    if probe_last_word:
        for s in train[::3]:
            s[1] = len(VOCAB) - 1
    return {"train": train, "valid": valid}


class StopParity(Exception):
    pass


def run_original(code: Path, name: str, corpus: dict, steps: int = STEPS, epochs: int = 1) -> dict:
    """Train the original's main() for `steps` SGD steps (over up to `epochs` epochs); the figures of each step, in
    our naming. Its validation between epochs (VAE.loss in eval mode) runs untouched and is no step."""
    T = load_test_module()
    spec = METHODS[name]
    mapping = mapping_for(spec["method"])
    script, MonoTextData, VocabEntry, VAE = import_original(code)
    cwd = os.getcwd()
    tmp = Path(tempfile.mkdtemp(prefix="step_parity_"))
    words = lambda s: " ".join(VOCAB[i] for i in s) + "\n"  # noqa: E731
    (tmp / "train.txt").write_text("".join(map(words, corpus["train"])))
    (tmp / "valid.txt").write_text("".join(map(words, corpus["valid"])))
    register_original_config("stepparity", emb=CONFIG["emb"], hidden=CONFIG["hidden"], nz=CONFIG["nz"],
                             batch_size=CONFIG["batch_size"], epochs=epochs, dropout=CONFIG["dropout"],
                             train=tmp / "train.txt", valid=tmp / "valid.txt", test=tmp / "valid.txt")
    our_vocab = VocabEntry({w: i for i, w in enumerate(VOCAB)})

    def with_our_vocab(fname, label=False, max_length=None, vocab=None):
        return MonoTextData(fname, label=label, max_length=max_length, vocab=our_vocab)
    script.MonoTextData = with_our_vocab

    gen = torch.Generator().manual_seed(SEED)
    out = {"steps": [], "init": None}
    st: dict = {"k": 0, "vae": None}

    def ours_state(vae) -> dict[str, torch.Tensor]:
        sd = vae.state_dict()
        return {o: sd[t].detach().clone() for o, t in mapping.items()}

    def named_ours(vae) -> dict[str, torch.nn.Parameter]:
        params = dict(vae.named_parameters())
        return {o: params[t] for o, t in mapping.items() if t in params}

    def check_mapping(vae) -> None:
        names = set(vae.state_dict())
        targets = list(mapping.values())
        assert len(set(targets)) == len(targets), "an original entry is mapped twice"
        unused = set(UNUSED_IN_VANILLA) if spec["method"] == "vanilla" else set()
        unused |= set(ORIGINAL_CONSTANTS)
        assert bool((vae.decoder.loss.weight == 1).all())
        assert not (set(targets) & unused) and set(targets) | unused == names, \
            f"unmapped original entries {sorted(names - set(targets) - unused)}"

    real_loss = VAE.loss
    real_clip = torch.nn.utils.clip_grad_norm_

    def loss_spy(self, x, kl_weight, nsamples=1):
        k = st["k"]
        if not self.training and 0 < k < steps:     # the validation between epochs: not a training step
            return real_loss(self, x, kl_weight, nsamples)
        assert self.training or k == steps, "a validation before the first step"
        assert nsamples == 1
        if k == 0:
            check_mapping(self)
            st["vae"] = self
            out["init"] = ours_state(self)
        else:   # the parameters after step k
            rec = out["steps"][-1]
            rec["param_norm"], rec["param_delta"] = T.state_norms(ours_state(self), out["init"])
            if spec["method"] == "vanilla":
                assert all(p.grad is None for n, p in self.named_parameters() if n in UNUSED_IN_VANILLA)
        if k == steps:
            out["final"] = ours_state(self)
            raise StopParity
        st["k"] = k + 1
        B, L = x.shape
        eps = torch.randn(B * CONFIG["nz"], generator=gen)
        bits = torch.randint(0, 2, (B * (L - 1) * (CONFIG["emb"] + CONFIG["hidden"]),), generator=gen,
                             dtype=torch.uint8).float()
        noise = T.Noise(eps, bits)

        def normal_(t, *a, **kw):
            assert not a and not kw, "the original draws standard normals only"
            return t.copy_(noise.take_eps(tuple(t.shape)))
        with T.patched(torch.Tensor, "normal_", normal_), T.dropout_from(noise):
            loss, rc, kl = real_loss(self, x, kl_weight, nsamples)
        noise.check_used_up()
        out["steps"].append({"tokens": x.tolist(), "eps": T.f32_encode(eps), "mask_bits": T.bits_encode(bits),
                             "mask_len": int(bits.numel()), "kl_weight": float(kl_weight),
                             "loss": loss.mean().item(), "rec": rc.mean().item(), "kl": kl.mean().item()})
        return loss, rc, kl

    def clip_spy(parameters, max_norm, *a, **kw):
        rec, vae = out["steps"][-1], st["vae"]
        assert "grad_pre" not in rec, "clip_grad_norm_ called twice in a step"
        named = named_ours(vae)
        rec["grad_pre"] = T.group_norms({k: p.grad for k, p in named.items()})
        total = real_clip(parameters, max_norm, *a, **kw)
        rec["clip_total"] = float(total)
        rec["grad_post"] = T.group_norms({k: p.grad for k, p in named.items()})
        return total

    sys.argv = ["text_anneal_fb.py", "--dataset", "stepparity", "--seed", str(SEED), "--kl_start",
                str(CONFIG["kl_start"]), "--warm_up", str(CONFIG["warm_up"]), "--lr", str(CONFIG["lr"]),
                "--exp_dir", str(tmp / "exp"), *spec["flags"]]
    os.chdir(code)
    try:
        args = script.init_config()
        assert script.clip_grad == CONFIG["clip"] and args.opt == "sgd" and args.momentum == 0
        with T.patched(VAE, "loss", loss_spy), T.patched(torch.nn.utils, "clip_grad_norm_", clip_spy), \
                contextlib.redirect_stdout(io.StringIO()):
            try:
                script.main(args)
            except StopParity:
                pass
            else:
                raise RuntimeError(f"the original's {epochs} epoch(s) ended before {steps} steps")
    finally:
        os.chdir(cwd)
        shutil.rmtree(tmp, ignore_errors=True)
    return {"method": spec["method"], "params": spec["params"], "original_flags": spec["flags"],
            "init": T.state_encode(out["init"]), "steps": out["steps"], "final": T.state_encode(out["final"])}


def fixture(runs: dict, corpus: dict) -> dict:
    return {
        "about": "Figures recorded from the original BN-VAE code (valdersoul/bn-vae text_anneal_fb.py main(), "
                 "driven by reports/parity/step_parity.py); see tests/test_step_parity.py.",
        "config": {**CONFIG, "vocab": VOCAB, "seed": SEED, "n_train": len(corpus["train"])},
        "mapping_ours_to_original": {**MAPPING, **BN_MAPPING},
        "corpus": corpus,
        "runs": runs,
    }


def compare(fx: dict, name: str, T) -> tuple[list[dict], tuple | None]:
    run = fx["runs"][name]
    diffs = T.differences(run["steps"], T.replay(fx, name), T.state_decode(run["final"]))
    return diffs, T.first_parting(diffs, [T.RTOL] * len(diffs))   # live, on one machine: no rounding allowance


def report(fx: dict, name: str, T) -> None:
    diffs, part = compare(fx, name, T)
    steps = fx["runs"][name]["steps"]
    print(f"\n== {name}: {len(steps)} steps; batch (B, L) = "
          + " ".join(f"{len(s['tokens'])}x{len(s['tokens'][0])}" for s in steps))
    print("   KL weight:  " + " ".join(f"{s['kl_weight']:.4f}" for s in steps))
    print("   clip total: " + " ".join(f"{s['clip_total']:.3g}" for s in steps))
    cats: dict[str, float] = {}
    for d in diffs:
        for k, v in d.items():
            c = k.split(".")[0] if "." in k and not k.startswith(("grad", "final")) else k
            cats[c] = max(cats.get(c, 0.0), v)
    width = max(map(len, cats))
    for c, v in sorted(cats.items()):
        print(f"   max rel diff {c:<{width}}  {v:.2e}")
    if part is None:
        print("   -> agree at every step (rel tol 1e-5)")
    else:
        step, bad = part
        print(f"   -> first part at step {step}: " + ", ".join(f"{k} {v:.3g}" for k, v in bad[:10]))


def batches_per_epoch(corpus: dict) -> int:
    """The original's one-length batches of CONFIG's size per epoch (it skips none here: every length has >= 2)."""
    return sum(math.ceil(n / CONFIG["batch_size"]) for n in LENGTH_COUNTS.values())


def main_long(code: Path, write: bool, T) -> None:
    corpus = make_corpus()
    steps = LONG_EPOCHS * batches_per_epoch(corpus)
    run = run_original(code, "vanilla", corpus, steps=steps, epochs=LONG_EPOCHS)
    fx = json.loads(json.dumps({**fixture({"vanilla": run}, corpus), "epochs": LONG_EPOCHS}))
    if write:
        LONG_FIXTURE.write_text(json.dumps(fx, separators=(",", ":")) + "\n")
        print(f"wrote {LONG_FIXTURE} ({LONG_FIXTURE.stat().st_size / 1024:.0f} KB)")
    report(fx, "vanilla", T)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--code", type=Path, required=True, help="checkout of valdersoul/bn-vae (read only)")
    ap.add_argument("--write-fixture", action="store_true", help=f"write {FIXTURE.relative_to(ROOT)} "
                                                                 f"({LONG_FIXTURE.relative_to(ROOT)} with --long)")
    ap.add_argument("--long", action="store_true", help=f"a whole run of {LONG_EPOCHS} epochs (vanilla)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    torch.Tensor.cuda = lambda self, *args, **kw: self   # CPU (utils.calc_mi: the validation between epochs)
    T = load_test_module()
    if a.long:
        return main_long(a.code.resolve(), a.write_fixture, T)
    corpus = make_corpus()
    runs = {name: run_original(a.code.resolve(), name, corpus) for name in METHODS}
    fx = json.loads(json.dumps(fixture(runs, corpus)))
    if a.write_fixture:
        FIXTURE.parent.mkdir(parents=True, exist_ok=True)
        FIXTURE.write_text(json.dumps(fx, separators=(",", ":")) + "\n")
        print(f"wrote {FIXTURE} ({FIXTURE.stat().st_size / 1024:.0f} KB)")
    for name in METHODS:
        report(fx, name, T)
    # Probe: the vocabulary's last word in the data (the original's decoder embedding has padding_idx=-1).
    probe_corpus = make_corpus(probe_last_word=True)
    probe = json.loads(json.dumps(fixture({"vanilla": run_original(a.code.resolve(), "vanilla", probe_corpus)},
                                          probe_corpus)))
    print("\n[probe: id 29, the vocabulary's last word, in every third sentence]", end="")
    report(probe, "vanilla", T)


if __name__ == "__main__":
    main()
