"""Step-level parity with the original BN-VAE code (valdersoul/bn-vae text_anneal_fb.py, after He et al. 2019).

tests/data/step_parity_original.json holds figures recorded from the original by reports/parity/step_parity.py
(not its code): a tiny model's initial weights in our parameter naming, the batches in the order the original
trained on them, the reparameterisation noise and decoder-dropout masks it drew, and per SGD step its KL weight,
loss, reconstruction, KL, per-group gradient norms before and after clipping, and its parameters after the step.
Here OUR Trainer / Method code path replays the same batches and noise from the same weights
(Method.train_step -> Method.loss -> Trainer.optimize, i.e. our annealing, loss, joint clipping and SGD) and every
recorded figure must agree to 1e-5 relative (or ten times float32's own rounding on that step, `tolerances`), for vanilla, BN-VAE (gamma 0.7) and δ-VAE (delta 0.1: the original's
--fb 3, whose encoder bounds sigma and mu so that every unit's KL is at least delta).

The noise is injected on both sides at the same two points: the standard normals of the reparameterisation
(torch.randn here, Tensor.normal_ in the original) and F.dropout (both decoders use nn.Dropout(0.5) on the input
embeddings and on the LSTM outputs), which returns input * mask * 2 with the recorded 0/1 mask.
test_parity_catches_per_part_clipping checks that the replay notices encoder / decoder clipped separately.

Regenerate (needs the original code): reports/parity/step_parity.py --code /tmp/orig/bnvae --write-fixture

The figures are float32 and depend on the CPU's kernels where a path amplifies rounding (BN-VAE's batch statistics):
the tolerance of each step is therefore calibrated on the machine that runs the test, from our own float32 and
float64 replays (`tolerances`); a logic difference (the KL weight one increment late, clipping per part) parts by
percents, far above it.
"""
from __future__ import annotations

import base64
import contextlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

FIXTURE = Path(__file__).resolve().parent / "data" / "step_parity_original.json"
RTOL = 1e-5
ROUNDING_FACTOR = 10

# Parameter groups, in our naming. A group is compared when either side has a gradient in it.
GROUPS = {
    "enc_embed": ("encoder.embed.weight",),
    "enc_lstm": ("encoder.lstm.weight_ih_l0", "encoder.lstm.weight_hh_l0", "encoder.lstm.bias_ih_l0",
                 "encoder.lstm.bias_hh_l0"),
    "head": ("head.linear.weight",),          # mu and log sigma^2 (one linear map, no bias)
    "bn": ("head.bn.weight", "head.bn.bias"),  # BN-VAE only; the weight (gamma) has no gradient
    "z_to_h": ("decoder.init_state.weight",),
    "dec_embed": ("decoder.embed.weight",),
    "dec_lstm": ("decoder.lstm.weight_ih_l0", "decoder.lstm.weight_hh_l0", "decoder.lstm.bias_ih_l0",
                 "decoder.lstm.bias_hh_l0"),
    "dec_out": ("decoder.out.weight",),
}


# --------------------------------------------------------------------------- encoding of the fixture

def f32_encode(t: torch.Tensor) -> str:
    return base64.b64encode(t.detach().to(torch.float32).contiguous().numpy().astype("<f4").tobytes()).decode()


def f32_decode(s: str, shape) -> torch.Tensor:
    return torch.from_numpy(np.frombuffer(base64.b64decode(s), dtype="<f4").copy()).view(*shape)


def bits_encode(bits: torch.Tensor) -> str:
    return base64.b64encode(np.packbits(bits.to(torch.uint8).numpy().ravel()).tobytes()).decode()


def bits_decode(s: str, n: int) -> torch.Tensor:
    return torch.from_numpy(np.unpackbits(np.frombuffer(base64.b64decode(s), dtype=np.uint8))[:n].astype(np.float32))


def state_encode(state: dict[str, torch.Tensor]) -> dict[str, dict]:
    out = {}
    for k, v in state.items():
        if v.is_floating_point():
            out[k] = {"shape": list(v.shape), "f32": f32_encode(v)}
        else:
            out[k] = {"shape": list(v.shape), "int": v.reshape(-1).tolist()}
    return out


def state_decode(enc: dict[str, dict]) -> dict[str, torch.Tensor]:
    return {k: f32_decode(v["f32"], v["shape"]) if "f32" in v else torch.tensor(v["int"]).reshape(v["shape"])
            for k, v in enc.items()}


# --------------------------------------------------------------------------- measurements (both sides)

def group_norms(grads: dict[str, torch.Tensor | None]) -> dict[str, float]:
    """L2 norm (float64) over each group's gradients, for the groups with at least one gradient."""
    out = {}
    for group, names in GROUPS.items():
        gs = [grads[n] for n in names if grads.get(n) is not None]
        if gs:
            out[group] = math.sqrt(sum(float(g.double().pow(2).sum()) for g in gs))
    return out


def state_norms(state: dict[str, torch.Tensor], init: dict[str, torch.Tensor]) -> tuple[dict, dict]:
    """Per entry (parameters and BN running statistics): ||x|| and ||x - x_init||, float64."""
    norm, delta = {}, {}
    for k, v in state.items():
        if not v.is_floating_point():
            continue
        norm[k] = float(v.double().norm())
        delta[k] = float((v.double() - init[k].double()).norm())
    return norm, delta


class Noise:
    """The step's recorded noise, handed out in call order: eps for the reparameterisation, 0/1 masks for dropout."""

    def __init__(self, eps: torch.Tensor, bits: torch.Tensor):
        self.eps, self.bits = eps, bits
        self.eps_used = self.bits_used = 0
        self.eps_calls = self.dropout_calls = 0

    def take_eps(self, shape) -> torch.Tensor:
        n = math.prod(shape)
        assert self.eps_used + n <= self.eps.numel(), "more reparameterisation noise drawn than recorded"
        out = self.eps[self.eps_used:self.eps_used + n].view(*shape).clone()
        self.eps_used += n
        self.eps_calls += 1
        return out

    def dropout(self, x: torch.Tensor, p: float, training: bool, inplace: bool = False) -> torch.Tensor:
        assert training and p == 0.5, f"dropout called with p={p}, training={training}"
        n = x.numel()
        assert self.bits_used + n <= self.bits.numel(), "more dropout masks drawn than recorded"
        mask = self.bits[self.bits_used:self.bits_used + n].view(x.shape).to(x.dtype)
        self.bits_used += n
        self.dropout_calls += 1
        return x * (mask * (1.0 / (1.0 - p)))

    def check_used_up(self) -> None:
        assert (self.eps_used, self.bits_used) == (self.eps.numel(), self.bits.numel()), \
            f"noise used {self.eps_used}/{self.eps.numel()} eps, {self.bits_used}/{self.bits.numel()} mask bits"
        assert (self.eps_calls, self.dropout_calls) == (1, 2)


@contextlib.contextmanager
def patched(obj, name, value):
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)


@contextlib.contextmanager
def dropout_from(noise: Noise):
    with patched(torch.nn.functional, "dropout", noise.dropout):
        yield


@contextlib.contextmanager
def clip_spy(named_params: dict[str, torch.nn.Parameter], record: dict):
    """Wrap torch.nn.utils.clip_grad_norm_: on its first call of the step, record every gradient's group norms
    (before clipping) and the total norm it returns; then clip as usual."""
    real = torch.nn.utils.clip_grad_norm_

    def spy(parameters, max_norm, *args, **kwargs):
        if "grad_pre" not in record:
            record["grad_pre"] = group_norms({k: p.grad for k, p in named_params.items()})
            total = real(parameters, max_norm, *args, **kwargs)
            record["clip_total"] = float(total)
            return total
        return real(parameters, max_norm, *args, **kwargs)
    with patched(torch.nn.utils, "clip_grad_norm_", spy):
        yield


# --------------------------------------------------------------------------- our side

def load_fixture() -> dict:
    return json.loads(FIXTURE.read_text())


def build_trainer(fx: dict, run: dict):
    from collapse_bench import registry
    from collapse_bench.config import EvalConfig, ModelConfig, SizeConfig, TrainConfig
    from collapse_bench.data import Corpus, DataLimits, Split, Vocab
    from collapse_bench.train import Trainer

    c = fx["config"]
    cfg = SizeConfig(
        "step-parity",
        ModelConfig(emb=c["emb"], enc_hidden=c["hidden"], dec_hidden=c["hidden"], nz=c["nz"],
                    dec_dropout_in=c["dropout"], dec_dropout_out=c["dropout"]),
        TrainConfig(epochs=1, batch_size=c["batch_size"], optimizer="sgd", lr=c["lr"], clip=c["clip"],
                    kl_start=c["kl_start"], warm_up=c["warm_up"], curve_sentences=8),
        EvalConfig(batch_size=8),
        DataLimits(),
    )
    split = lambda sents: Split([np.asarray(s, dtype=np.int64) for s in sents])  # noqa: E731
    corpus = Corpus("step-parity", Vocab(c["vocab"]), split(fx["corpus"]["train"]), split(fx["corpus"]["valid"]),
                    split(fx["corpus"]["valid"]))
    cls = registry.get(run["method"])
    trainer = Trainer(cls(cls.Params(**run["params"])), cfg, corpus, seed=0)
    init = state_decode(run["init"])
    ours = trainer.model.state_dict()
    assert sorted(ours) == sorted(init), f"fixture names {sorted(set(init) ^ set(ours))} differ from our model's"
    for k, v in ours.items():
        assert tuple(v.shape) == tuple(init[k].shape), f"{k}: ours {tuple(v.shape)}, fixture {tuple(init[k].shape)}"
    trainer.model.load_state_dict(init, strict=True)
    return trainer, init


def replay(fx: dict, name: str, dtype: torch.dtype = torch.float32) -> list[dict]:
    """Train our model on the recorded batches with the recorded noise; the figures of every step. With
    dtype=torch.float64 the same replay in double precision (the reference for float32's rounding)."""
    def noise_of(st: dict, dtype: torch.dtype):
        noise = Noise(f32_decode(st["eps"], (-1,)), bits_decode(st["mask_bits"], st["mask_len"]))

        def randn(*shape, **kw):
            shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list, torch.Size)) else shape
            return noise.take_eps(shape).to(kw.get("dtype") or dtype)
        return [(torch, "randn", randn), (torch.nn.functional, "dropout", noise.dropout)], noise.check_used_up
    return replay_with(fx, fx["runs"][name], dtype, noise_of)


def replay_with(fx: dict, run: dict, dtype: torch.dtype, noise_of, logged: tuple[str, ...] = ()) -> list[dict]:
    """Our Trainer / Method path (Method.train_step -> loss -> Trainer.optimize) over the recorded batches, from the
    recorded weights; `noise_of(step, dtype)` gives the step's patches that hand out its recorded noise and a check
    that all of it was used; `logged`: further entries of the step's logs to keep."""
    from collapse_bench.data import Batch
    from collapse_bench.model import precision

    torch.set_num_threads(1)
    trainer, init = build_trainer(fx, run)
    model = trainer.model.to(dtype)
    init = {k: v.to(dtype) if v.is_floating_point() else v for k, v in init.items()}
    named = dict(model.named_parameters())
    model.train()
    out = []
    for st in run["steps"]:
        tokens = torch.tensor(st["tokens"], dtype=torch.long)
        assert tokens.shape[0] >= trainer.method.min_batch_size
        patches, check_used_up = noise_of(st, dtype)
        rec: dict = {}
        # As Trainer.fit does for each batch (its batch order is replaced by the original's).
        with contextlib.ExitStack() as stack:
            for obj, attr, value in patches:
                stack.enter_context(patched(obj, attr, value))
            stack.enter_context(clip_spy(named, rec))
            stack.enter_context(precision(trainer.device, trainer.cfg.train.precision))
            logs = trainer.method.train_step(trainer.ctx, Batch(tokens, np.arange(len(tokens))))
        trainer.step += 1
        check_used_up()
        rec.update({k: logs[k] for k in ("kl_weight", "loss", "rec", "kl", *logged)})
        rec["grad_post"] = group_norms({k: p.grad for k, p in named.items()})
        rec["param_norm"], rec["param_delta"] = state_norms(model.state_dict(), init)
        out.append(rec)
    out[-1]["final"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return out


# --------------------------------------------------------------------------- comparison

SCALARS = ("kl_weight", "loss", "rec", "kl", "clip_total")
DICTS = ("grad_pre", "grad_post", "param_norm", "param_delta")


def rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-12)


def differences(recorded: list[dict], ours: list[dict], final: dict[str, torch.Tensor] | None = None) -> list[dict]:
    """Per step: quantity -> relative difference (ours vs recorded); dict quantities per key, e.g.
    'grad_pre.dec_out'. A key on one side only counts as infinitely different."""
    out = []
    for r, o in zip(recorded, ours):
        d = {q: rel(o[q], r[q]) for q in SCALARS}
        for q in DICTS:
            for k in set(r[q]) | set(o[q]):
                d[f"{q}.{k}"] = rel(o[q][k], r[q][k]) if k in r[q] and k in o[q] else math.inf
        out.append(d)
    if final is not None:
        last = ours[-1]["final"]
        for k, v in final.items():
            ref = v.double()
            scale = max(float(ref.abs().max()), 1e-12)
            out[-1][f"final.{k}"] = float((last[k].double() - ref).abs().max()) / scale
    return out


def tolerances(fx: dict, name: str) -> list[float]:
    """Per step: RTOL, or ROUNDING_FACTOR times float32's own rounding on this path if larger (the largest relative
    difference between our float32 and float64 replays at that step). BN-VAE's batch statistics of 6 sentences
    amplify rounding (1e-5 .. 1e-2 over the 10 steps), so its figures legitimately depend on the CPU's kernels:
    a fixture recorded on another CPU parts from ours at 6e-5 at step 1 and 1.7e-2 at step 10, about twice the
    float32-vs-float64 difference at every step, while the original run live on the same CPU agrees to 1e-5."""
    rounding = differences(replay(fx, name, torch.float64), replay(fx, name))
    return [max(RTOL, ROUNDING_FACTOR * max(d.values())) for d in rounding]


def first_parting(diffs: list[dict], tols: list[float]) -> tuple[int, list[tuple[str, float]]] | None:
    """(1-based step, [(quantity, rel diff)] above that step's tolerance) for the first step with any, else None."""
    for i, (d, tol) in enumerate(zip(diffs, tols), 1):
        bad = sorted(((k, v) for k, v in d.items() if not v <= tol), key=lambda kv: -kv[1])
        if bad:
            return i, bad
    return None


def check(fx: dict, name: str) -> None:
    run = fx["runs"][name]
    diffs = differences(run["steps"], replay(fx, name), state_decode(run["final"]))
    part = first_parting(diffs, tolerances(fx, name))
    assert part is None, (f"{name}: parts from the original at step {part[0]} of {len(diffs)}: "
                          + ", ".join(f"{k} rel {v:.3g}" for k, v in part[1][:8]))


# --------------------------------------------------------------------------- tests

@pytest.fixture(scope="module")
def fx():
    return load_fixture()


def test_fixture_covers_what_it_should(fx):
    assert FIXTURE.stat().st_size < 500_000
    for name, run in fx["runs"].items():
        assert len(run["steps"]) >= 8
        assert len({len(s["tokens"][0]) for s in run["steps"]}) >= 3, "a handful of lengths"
        clipped = [s for s in run["steps"] if s["clip_total"] > fx["config"]["clip"]]
        assert clipped, f"{name}: no step exceeds the clip norm, so clipping is not exercised"
        for s in clipped:  # joint clipping leaves a total norm of exactly `clip`
            post = math.sqrt(sum(v * v for v in s["grad_post"].values()))
            assert post == pytest.approx(fx["config"]["clip"], rel=1e-4)
    runs = fx["runs"]
    assert "bn" in runs["bnvae"]["steps"][0]["grad_pre"] and "bn" not in runs["vanilla"]["steps"][0]["grad_pre"]
    delta = runs["delta"]["params"]["delta"]
    assert all(s["kl"] >= fx["config"]["nz"] * delta for s in runs["delta"]["steps"]), "δ-VAE's KL floor nz·δ"


@pytest.mark.parametrize("name", ["vanilla", "bnvae", "delta"])
def test_steps_agree_with_the_original(fx, name):
    check(fx, name)


def test_parity_catches_per_part_clipping(fx, monkeypatch):
    """Clipping the encoder and decoder separately (not jointly, as the original does) must make the replay part
    from the original at the first step whose gradient norm exceeds the clip, in the clipped gradients."""
    from collapse_bench.train import Trainer

    def per_part(self, loss, which="both"):
        for o in self.optimizers:
            o.zero_grad(set_to_none=True)
        loss.backward()
        for params in (self.model.encoder_parameters(), self.model.decoder_parameters()):
            torch.nn.utils.clip_grad_norm_(params, self.cfg.train.clip)
        for o in self.optimizers:
            o.step()
    names = ("vanilla", "bnvae", "delta")
    tols = {name: tolerances(fx, name) for name in names}       # of the correct, joint clipping
    monkeypatch.setattr(Trainer, "optimize", per_part)
    for name in names:
        steps = fx["runs"][name]["steps"]
        # clip_total is what the first clip_grad_norm_ call returns (the encoder's norm alone here): leave it out
        diffs = [{k: v for k, v in d.items() if k != "clip_total"} for d in differences(steps, replay(fx, name))]
        step, bad = first_parting(diffs, tols[name])
        first_clipped = 1 + next(i for i, s in enumerate(steps) if s["clip_total"] > fx["config"]["clip"])
        assert step == first_clipped, (name, step, first_clipped, bad[:3])
        assert any(k.startswith("grad_post.") and v > 0.01 for k, v in bad), (name, bad[:3])
