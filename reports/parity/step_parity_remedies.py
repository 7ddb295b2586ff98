"""Step-level parity with the remedies after 2020 whose authors' code can be driven here (issue 20): TWR-VAE,
DU-VAE, and Coupled-VAE's coupling term.

**TWR-VAE** (ruizheliUOA/TWR-VAE, lang_model/main.py, the script that produced the paper's language-model rows).
The script runs as it is (runpy, in this process) on a tiny corpus written in its own format, with its own Corpus
(ids by frequency, sentences sorted by length), BatchIter (consecutive slices of that order; every length's count
here is a multiple of the batch size, so every batch is single-length, as ours), Encoder, Decoder, its train()
loop and its Adam (eps 1e-6, weight decay 1e-5, no clipping, KL weight 1). Recorded per Adam step, in our
parameter naming: the batch, the reparameterisation noise, their loss (kl_loss + recon_loss, both summed over the
batch), the reconstruction and the KL penalty, every parameter group's gradient norm, the parameters after the
step. tests/test_step_parity_remedies.py replays them through our `twr` method (Method.loss on our TextVAE).

Their backbone is not He et al.'s, the one every method of the harness shares, so three shims bring it to ours,
applied from outside (their files are untouched) and nowhere near the method's own code (Encoder.forward's
per-step posteriors and z, Encoder.loss, Decoder.loss, train()):
  1. `--dropout 0`: their dropout sits on the encoder's and the decoder's input embeddings, ours on the decoder's
     input and output; with none on either side there is nothing to align (ours: dec_dropout_in/out 0).
  2. The biases of their posterior maps (linear_mu, linear_var) and of their output layer (out): zeroed and frozen
     (requires_grad False, so Adam skips them); ours have none.
  3. The decoder's initial state: theirs is h0 = c0 = W z, ours (He et al.'s) c0 = W z, h0 = tanh(c0); a forward
     pre-hook on their decoder LSTM replaces h0 by tanh(h0).
Noise: torch.randn_like, their reparameterisation's only draw, returns pre-drawn standard normals (recorded);
our torch.randn reads the same ones.

**DU-VAE** (SmilesDZgk/DU-VAE text.py, the script behind the paper's text rows). Its main() runs unchanged on a tiny
corpus (as step_parity.py runs the BN-VAE code's), for two epochs of 11 updates: the KL weight reaches 1 at the 12th
update, where the variance floor and its dropout switch on (their `args.kl_weight == 1`); the length bucket of 4
sentences is skipped (their `< 16`). Injected noise: Tensor.normal_ (their reparameterisation) and every dropout call
in order (their decoder's F.dropout and the variance's torch.dropout), masks drawn with keep probability 1 - p.
Recorded per update as for the BN-VAE code: the batch, KL weight, loss, reconstruction, KL, the gradient norms of
every group before and after the joint clip, the parameters after the step (read after their decoder optimiser's
step, before any later forward rescales the BN weight); the replay is our Trainer and DUVAE.train_step.

**Coupled-VAE** (ChenWu98/Coupled-VAE). Its training script cannot run as published: every model module
(Modules/vae.py, vae_couple.py, ...) imports `_n_sample` from `Modules.vae_nf_geo`, a file in none of the
repository's commits. Its model also shares nothing with ours (a bidirectional encoder, GRU decoders by default
(`use_lstm = False`) fed toInit(z) as their first input and beside every word, a tanh projection W_c before the
output layer, a BoW branch), so no weight mapping exists and the step-level comparison reduces to the coupling term,
which is the method: their `euclidean` and `compute_imq_dist_couple` (Experiment.py, the functions themselves,
read from the file and executed unchanged with a `config` carrying latent_dim), called as their train_epoch calls
them (`euclidean(init, init_couple.detach())`, batch mean), on seeded signals of a width (emb_dim) other than nz;
recorded: the term and its gradient with respect to both signals.

    python reports/parity/step_parity_remedies.py --twr-code /work/orig/twr --coupled-code /work/orig/coupled \
        --duvae-code /work/orig/duvae [--write-fixture]
"""
from __future__ import annotations

import argparse
import ast
import importlib
import contextlib
import io
import json
import os
import runpy
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "data" / "step_parity_remedies.json"
TWR_CONFIG = dict(emb=8, hidden=16, nz=4, batch_size=6, lr=0.01, adam_eps=1e-6, weight_decay=1e-5, seed=3)
WORDS_PER_SENTENCE = {3: 12, 5: 6, 8: 12, 11: 6, 16: 12}   # sentence length (words) -> count; multiples of the batch
TWR_RUNS = {"twr": dict(params={"partial": "none"}, flags=[]),
            "twr-last50": dict(params={"partial": "last50"}, flags=["-par", "--partial_type", "last50"]),
            "twr-last25": dict(params={"partial": "last25"}, flags=["-par", "--partial_type", "last25"])}
COUPLED_CONFIG = dict(batch=5, width=7, nz=4, seed=5)
LSTM_SUFFIXES = ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")


class StopParity(Exception):
    pass


def load_test_module():
    import importlib.util
    spec = importlib.util.spec_from_file_location("test_step_parity", ROOT / "tests" / "test_step_parity.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# --------------------------------------------------------------------------- TWR-VAE

def twr_corpus(rng: np.random.Generator) -> dict[str, list[str]]:
    """Sentences of letter words (their Corpus lowercases and splits on punctuation: none here), skewed so that the
    model learns fast; valid and test only have to exist (the run stops inside the first epoch)."""
    words = [f"w{chr(97 + i)}{chr(97 + j)}" for i in range(4) for j in range(5)]
    p = 1.0 / np.arange(1, len(words) + 1) ** 1.5
    p /= p.sum()
    sent = lambda n: " ".join(rng.choice(words, size=n, p=p))  # noqa: E731
    train = [sent(n) for n, count in WORDS_PER_SENTENCE.items() for _ in range(count)]
    rng.shuffle(train)                 # their Corpus sorts by length itself
    return {"train": train, "valid": [sent(4) for _ in range(6)], "test": [sent(5) for _ in range(6)]}


def ours_view(enc, dec, grads: bool = False) -> dict[str, torch.Tensor | None]:
    """Their encoder/decoder tensors (or gradients) under our state-dict names; the head is [mu rows; logvar rows]."""
    def get(p):
        return (None if p.grad is None else p.grad.detach().clone()) if grads else p.detach().clone()
    out = {"encoder.embed.weight": get(enc.embedding.weight), "decoder.embed.weight": get(dec.embedding.weight),
           "decoder.init_state.weight": get(dec.z2h_c.weight), "decoder.out.weight": get(dec.out.weight)}
    for s in LSTM_SUFFIXES:
        out[f"encoder.lstm.{s}"] = get(getattr(enc.rnn, s))
        out[f"decoder.lstm.{s}"] = get(getattr(dec.rnn, s))
    mu, var = get(enc.linear_mu.weight), get(enc.linear_var.weight)
    out["head.linear.weight"] = None if mu is None else torch.cat([mu, var])
    return out


def shim_backbone(enc_mod, dec_mod, st: dict):
    """Shims 2 and 3 of the module docstring, applied as each module is built; `st` keeps the modules."""
    enc_init, dec_init = enc_mod.Encoder.__init__, dec_mod.Decoder.__init__

    def encoder_init(self, *a, **kw):
        enc_init(self, *a, **kw)
        for lin in (self.linear_mu, self.linear_var):
            lin.bias.data.zero_()
            lin.bias.requires_grad_(False)
        st["enc"] = self

    def decoder_init(self, *a, **kw):
        dec_init(self, *a, **kw)
        self.out.bias.data.zero_()
        self.out.bias.requires_grad_(False)
        self.rnn.register_forward_pre_hook(lambda m, args: (args[0], (torch.tanh(args[1][0]), args[1][1])))
        st["dec"] = self
    return [(enc_mod.Encoder, "__init__", encoder_init), (dec_mod.Decoder, "__init__", decoder_init)]


def twr_spies(enc_mod, dec_mod, st: dict, steps: int, T):
    """Patches recording each step: the batch and noise (Encoder.forward, torch.randn_like), the loss terms
    (Encoder.loss, Decoder.loss), the gradients and the parameters after the step (Adam.step, which stops the run
    after `steps` steps)."""
    gen = torch.Generator().manual_seed(TWR_CONFIG["seed"])
    real = {"fwd": enc_mod.Encoder.forward, "kl": enc_mod.Encoder.loss, "rec": dec_mod.Decoder.loss,
            "step": torch.optim.Adam.step, "randn_like": torch.randn_like}

    def forward(self, src):
        if st["init"] is None:
            st["init"] = ours_view(st["enc"], st["dec"])
        st["steps"].append({"tokens": src.t().tolist()})
        return real["fwd"](self, src)

    def randn_like(t, *a, **kw):
        eps = torch.randn(tuple(t.shape), generator=gen)
        st["steps"][-1]["eps"] = T.f32_encode(eps)
        return eps.to(t.dtype)

    def kl_loss(self, mu, logvar):
        out = real["kl"](self, mu, logvar)
        st["steps"][-1].update(kl_steps=int(mu.shape[0]), kl_sum=out.item())
        return out

    def rec_loss(self, prod, target, weight):
        out = real["rec"](self, prod, target, weight)
        st["steps"][-1]["rec_sum"] = out.item()
        return out

    def step(self, *a, **kw):
        rec = st["steps"][-1]
        rec["loss_sum"] = rec["kl_sum"] + rec["rec_sum"]
        rec["grad"] = T.group_norms(ours_view(st["enc"], st["dec"], grads=True))
        out = real["step"](self, *a, **kw)
        rec["param_norm"], rec["param_delta"] = T.state_norms(ours_view(st["enc"], st["dec"]), st["init"])
        if len(st["steps"]) == steps:
            st["final"] = ours_view(st["enc"], st["dec"])
            raise StopParity
        return out
    return [(enc_mod.Encoder, "forward", forward), (torch, "randn_like", randn_like), (enc_mod.Encoder, "loss", kl_loss),
            (dec_mod.Decoder, "loss", rec_loss), (torch.optim.Adam, "step", step)]


def import_twr(code: Path):
    """Their encoder and decoder modules, imported from their folder as main.py imports them."""
    lang = str(code / "lang_model")
    if lang not in sys.path:
        sys.path.insert(0, lang)
    import decoder as dec_mod
    import encoder as enc_mod
    assert Path(enc_mod.__file__).resolve().parent == Path(lang).resolve(), enc_mod.__file__
    return enc_mod, dec_mod


def run_twr_original(code: Path, name: str, corpus: dict[str, list[str]], T) -> dict:
    """One run of their main.py for one epoch (every batch of the tiny corpus); the figures of each step."""
    enc_mod, dec_mod = import_twr(code)
    c = TWR_CONFIG
    steps = sum(n // c["batch_size"] for n in WORDS_PER_SENTENCE.values())
    st: dict = {"init": None, "steps": [], "final": None}
    tmp = Path(tempfile.mkdtemp(prefix="twr_parity_"))
    data = tmp / "lang_model" / "dataset" / "ptb"
    data.mkdir(parents=True)
    for split, fname in (("train", "ptb_train.txt"), ("valid", "ptb_val.txt"), ("test", "ptb_test.txt")):
        (data / fname).write_text("\n".join(corpus[split]) + "\n")
    argv = ["main.py", "-dt", "ptb", "--batch_size", str(c["batch_size"]), "--embedding_size", str(c["emb"]),
            "--hidden_size", str(c["hidden"]), "--zdim", str(c["nz"]), "--dropout", "0", "--lr", str(c["lr"]),
            "--epochs", "1", "--no_cuda", *TWR_RUNS[name]["flags"]]
    patches = shim_backbone(enc_mod, dec_mod, st) + twr_spies(enc_mod, dec_mod, st, steps, T)
    cwd, old_argv = os.getcwd(), sys.argv
    ns: dict = {}
    try:
        os.chdir(tmp)
        sys.argv = argv
        with contextlib.ExitStack() as stack, contextlib.redirect_stdout(io.StringIO()):
            for obj, attr, value in patches:
                stack.enter_context(T.patched(obj, attr, value))
            try:
                ns = runpy.run_path(str(code / "lang_model" / "main.py"), run_name="__main__")
            except StopParity:
                pass
    finally:
        os.chdir(cwd)
        sys.argv = old_argv
    assert st["final"] is not None, f"the original's epoch ended before {steps} steps ({ns.get('ep')})"
    return {"params": TWR_RUNS[name]["params"], "original_flags": argv[1:], "vocab_size": st["dec"].output_dim,
            "init": T.state_encode(st["init"]), "steps": st["steps"], "final": T.state_encode(st["final"])}


# --------------------------------------------------------------------------- Coupled-VAE

def coupled_functions(code: Path, nz: int) -> dict:
    """`euclidean` and `compute_imq_dist_couple` from their Experiment.py, executed alone (the module imports
    nltk, seaborn, sklearn and the model modules that cannot be imported), with the `config` they read."""
    source = (code / "Coupled-VAE" / "Experiment.py").read_text()
    wanted = {"euclidean", "compute_imq_dist_couple"}
    nodes = [n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef) and n.name in wanted]
    assert {n.name for n in nodes} == wanted
    ns = {"torch": torch, "config": types.SimpleNamespace(latent_dim=nz)}
    exec(compile(ast.Module(body=nodes, type_ignores=[]), "Experiment.py", "exec"), ns)
    return {k: ns[k] for k in wanted}


def run_coupled_original(code: Path, T) -> dict:
    """Their coupling term as their train_epoch builds it, on seeded signals: value per sentence, batch mean, and
    the gradients of the mean with respect to the VAE path's signal and the coupled path's."""
    c = COUPLED_CONFIG
    fns = coupled_functions(code, c["nz"])
    gen = torch.Generator().manual_seed(c["seed"])
    init = torch.randn(c["batch"], c["width"], generator=gen, requires_grad=True)
    init_couple = (init.detach() + torch.randn(c["batch"], c["width"], generator=gen)
                   * torch.linspace(0.0, 3.0, c["batch"]).unsqueeze(1)).requires_grad_(True)
    euc = fns["euclidean"](init, init_couple.detach(), clip=None)
    per_sentence = fns["compute_imq_dist_couple"](euc)
    couple_loss = per_sentence.mean(0)
    couple_loss.backward()
    return {"config": c, "init": T.f32_encode(init), "init_couple": T.f32_encode(init_couple),
            "per_sentence": per_sentence.tolist(), "couple_loss": couple_loss.item(),
            "grad_init": T.f32_encode(init.grad), "grad_init_couple_is_none": init_couple.grad is None}


# --------------------------------------------------------------------------- DU-VAE

DU_CONFIG = dict(emb=8, hidden=16, nz=4, dropout=0.5, batch_size=16, lr=1.0, clip=5.0, kl_start=0.1, warm_up=1,
                 gamma=0.5, p_drop=0.2, delta_rate=1.0, seed=7, epochs=2)
# 180 sentences: 11 batches of 16 a step, and one of 4 that their text.py skips (< 16); N/batch = 11.25, so the KL
# weight reaches 1 at the 12th update, the first of epoch 2, and the variance floor and its dropout switch on there.
# (>= 160 sentences: their progress log divides by (N // batch) // 10.)
DU_LENGTHS = {4: 48, 6: 32, 9: 48, 12: 32, 15: 20}


def du_corpus() -> dict:
    from step_parity import VOCAB
    rng = np.random.default_rng(DU_CONFIG["seed"])
    ids = np.arange(4, len(VOCAB) - 1)      # never the last id: their decoder embedding's padding_idx=-1 freezes it
    p = 1.0 / np.arange(1, len(ids) + 1) ** 2
    p /= p.sum()
    train = [rng.choice(ids, size=T, p=p).tolist() for T, n in DU_LENGTHS.items() for _ in range(n)]
    valid = [rng.choice(ids, size=T, p=p).tolist() for T in (4, 4, 6, 6, 9, 9)]
    return {"train": train, "valid": valid}


class MaskTape:
    """Every dropout call of the original's step (their decoder's nn.Dropout(0.5) through F.dropout, their variance
    dropout through torch.dropout), in call order: its rate and a 0/1 mask drawn with keep probability 1 - p."""

    def __init__(self, gen: torch.Generator):
        self.gen, self.calls = gen, []

    def __call__(self, x, p, training=True, inplace=False, train=None):
        training = training if train is None else train          # torch.dropout(input, p, train)
        if not training or p == 0:
            return x
        bits = (torch.rand(x.shape, generator=self.gen) >= p).float()
        self.calls.append({"p": float(p), "n": int(bits.numel()), "bits": T_ENC["bits"](bits)})
        return x * bits.to(x.dtype) / (1.0 - p)


T_ENC: dict = {}


def du_spies(VAE, st: dict, T):
    """VAE.loss: the batch, KL weight, the noise of the step (Tensor.normal_ of the reparameterisation, the dropout
    masks) and the loss terms; clip_grad_norm_: the gradients before and after; SGD.step: the parameters after the
    decoder optimiser's step (the second of each update; before any later forward rescales the BN weight)."""
    from step_parity import mapping_for
    mapping = mapping_for("duvae")
    gen = torch.Generator().manual_seed(DU_CONFIG["seed"])
    real_loss, real_clip, real_step = VAE.loss, torch.nn.utils.clip_grad_norm_, torch.optim.SGD.step

    def ours_state(vae):
        sd = vae.state_dict()
        return {o: sd[t].detach().clone() for o, t in mapping.items()}

    def loss(self, x, kl_weight, args, training=True):
        if not self.training:                           # their validation and progress log: no step
            return real_loss(self, x, kl_weight, args, training)
        if st["vae"] is None:
            st["vae"], st["init"] = self, {**ours_state(self), "head.floor_on": torch.tensor(False)}
        eps = torch.randn(x.shape[0] * DU_CONFIG["nz"], generator=gen)
        tape = MaskTape(gen)
        with T.patched(torch.Tensor, "normal_", lambda t, *a, **k: t.copy_(eps.view(t.shape))), \
                T.patched(torch.nn.functional, "dropout", tape), T.patched(torch, "dropout", tape):
            out = real_loss(self, x, kl_weight, args, training)
        st["steps"].append({"tokens": x.tolist(), "eps": T.f32_encode(eps), "masks": tape.calls,
                            "kl_weight": float(kl_weight), "floor_on": args.kl_weight == 1,
                            "loss": out[0].mean().item(), "rec": out[1].mean().item(), "kl": out[2].mean().item()})
        return out

    def clip(parameters, max_norm, *a, **kw):
        rec, named = st["steps"][-1], dict(st["vae"].named_parameters())
        ours = {o: named[t] for o, t in mapping.items() if t in named}
        rec["grad_pre"] = T.group_norms({k: p.grad for k, p in ours.items()})
        rec["clip_total"] = float(real_clip(parameters, max_norm, *a, **kw))
        rec["grad_post"] = T.group_norms({k: p.grad for k, p in ours.items()})
        return rec["clip_total"]

    def step(self, *a, **kw):
        out = real_step(self, *a, **kw)
        st["sgd_calls"] = st.get("sgd_calls", 0) + 1
        if st["sgd_calls"] % 2 == 0:                    # enc_optimizer.step(), then dec_optimizer.step()
            state = ours_state(st["vae"])
            st["steps"][-1]["param_norm"], st["steps"][-1]["param_delta"] = T.state_norms(state, st["init"])
            if len(st["steps"]) == st["n"]:
                st["final"] = state
                raise StopParity
        return out
    return [(VAE, "loss", loss), (torch.nn.utils, "clip_grad_norm_", clip), (torch.optim.SGD, "step", step)]


def run_du_original(code: Path, corpus: dict, T) -> dict:
    """Their text.py main() for DU_CONFIG's epochs on the tiny corpus (its own batching, skip, annealing, floor
    switch, SGD and joint clipping), stopped after its last training step; the figures of every step."""
    from step_parity import VOCAB
    c = DU_CONFIG
    T_ENC["bits"] = T.bits_encode
    sys.path.insert(0, str(code))
    script = importlib.import_module("text")
    from data import MonoTextData, VocabEntry
    from modules import VAE
    assert script.clip_grad == c["clip"]
    tmp = Path(tempfile.mkdtemp(prefix="du_parity_"))
    words = lambda sent: " ".join(VOCAB[i] for i in sent) + "\n"  # noqa: E731
    (tmp / "train.txt").write_text("".join(map(words, corpus["train"])))
    (tmp / "valid.txt").write_text("".join(map(words, corpus["valid"])))
    from common import register_original_config
    register_original_config("du_stepparity", emb=c["emb"], hidden=c["hidden"], nz=c["nz"], batch_size=c["batch_size"],
                             epochs=c["epochs"], dropout=c["dropout"], train=tmp / "train.txt", valid=tmp / "valid.txt",
                             test=tmp / "valid.txt")
    vocab = VocabEntry({w: i for i, w in enumerate(VOCAB)})
    script.MonoTextData = lambda fname, label=False, max_length=None, vocab_=None, **kw: MonoTextData(
        fname, label=label, max_length=max_length, vocab=vocab)
    steps = c["epochs"] * sum(n // c["batch_size"] for n in DU_LENGTHS.values())
    st = {"vae": None, "init": None, "steps": [], "final": None, "n": steps}
    sys.argv = ["text.py", "--dataset", "du_stepparity", "--kl_start", str(c["kl_start"]), "--warm_up",
                str(c["warm_up"]), "--lr", str(c["lr"]), "--gamma", str(c["gamma"]), "--p_drop", str(c["p_drop"]),
                "--delta_rate", str(c["delta_rate"]), "--nz_new", str(c["nz"])]
    cwd = os.getcwd()
    try:
        os.chdir(tmp)                               # its init_config makes models/<run>/ here
        args = script.init_config()
        with contextlib.ExitStack() as stack, contextlib.redirect_stdout(io.StringIO()):
            for obj, attr, value in du_spies(VAE, st, T):
                stack.enter_context(T.patched(obj, attr, value))
            try:
                script.main(args)
            except StopParity:
                pass
    finally:
        os.chdir(cwd)
    assert st["final"] is not None, f"their run ended before {steps} steps"
    return {"method": "duvae", "params": {"gamma": c["gamma"], "p_drop": c["p_drop"], "delta_rate": c["delta_rate"]},
            "original_flags": sys.argv[1:], "init": T.state_encode(st["init"]), "steps": st["steps"],
            "final": T.state_encode(st["final"])}


# --------------------------------------------------------------------------- main

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--twr-code", type=Path, required=True, help="checkout of ruizheliUOA/TWR-VAE (read only)")
    ap.add_argument("--coupled-code", type=Path, required=True, help="checkout of ChenWu98/Coupled-VAE (read only)")
    ap.add_argument("--duvae-code", type=Path, required=True, help="checkout of SmilesDZgk/DU-VAE (read only)")
    ap.add_argument("--write-fixture", action="store_true", help=f"write {FIXTURE.relative_to(ROOT)}")
    a = ap.parse_args()
    torch.set_num_threads(1)
    T = load_test_module()
    corpus = twr_corpus(np.random.default_rng(TWR_CONFIG["seed"]))
    runs = {name: run_twr_original(a.twr_code.resolve(), name, corpus, T) for name in TWR_RUNS}
    fx = json.loads(json.dumps({
        "about": "Figures recorded from the authors' code by reports/parity/step_parity_remedies.py (TWR-VAE: "
                 "lang_model/main.py with the backbone shims of its docstring; DU-VAE: text.py main(); Coupled-VAE: "
                 "Experiment.py's coupling functions); see tests/test_step_parity_remedies.py.",
        "twr": {"config": TWR_CONFIG, "corpus": corpus, "runs": runs},
        "coupled": run_coupled_original(a.coupled_code.resolve(), T),
        "duvae": du_fixture(a.duvae_code.resolve(), T)}))
    if a.write_fixture:
        FIXTURE.write_text(json.dumps(fx, separators=(",", ":")) + "\n")
        print(f"wrote {FIXTURE} ({FIXTURE.stat().st_size / 1024:.0f} KB)")
    report(fx)


def du_fixture(code: Path, T) -> dict:
    from step_parity import VOCAB
    corpus = du_corpus()
    return {"config": {**DU_CONFIG, "vocab": VOCAB, "n_train": len(corpus["train"])}, "corpus": corpus,
            "runs": {"duvae": run_du_original(code, corpus, T)}}


def report(fx: dict) -> None:
    """Our replay against the recording, per run (the test's comparison, printed)."""
    sys.path.insert(0, str(ROOT / "tests"))
    import test_step_parity_remedies as R
    for name, run in fx["twr"]["runs"].items():
        diffs = R.twr_differences(run, R.replay_twr(fx["twr"], name))
        worst = max((v, k) for d in diffs for k, v in d.items())
        lengths = " ".join(str(len(s["tokens"][0])) for s in run["steps"])
        print(f"== {name}: {len(diffs)} Adam steps, batch lengths {lengths}; KL penalty over "
              f"{[s['kl_steps'] for s in run['steps']]} steps; max rel diff {worst[0]:.2e} ({worst[1]})")
    diffs = R.du_differences(fx["duvae"])
    worst = max((v, k) for d in diffs for k, v in d.items())
    run = fx["duvae"]["runs"]["duvae"]
    print(f"== duvae: {len(diffs)} SGD steps, floor on from step {1 + [s['floor_on'] for s in run['steps']].index(True)}, "
          f"clipped at {[i + 1 for i, s in enumerate(run['steps']) if s['clip_total'] > 5]}; "
          f"max rel diff {worst[0]:.2e} ({worst[1]})")
    d = R.coupled_differences(fx["coupled"])
    print(f"== coupled term: max rel diff {max(d.values()):.2e} ({max(d, key=d.get)})")


if __name__ == "__main__":
    main()
