"""The decoder axis (model.decoder): causality, z reaching the output, the LSTM unchanged, comparable sizes, and
every method with every decoder through the contract at smoke size."""
from __future__ import annotations

import dataclasses
import json
import sys
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode

from collapse_bench import evaluate as ev
from collapse_bench import registry
from collapse_bench.config import DECODERS, ConfigError, ModelConfig, SIZES, size_config
from collapse_bench.data import Split
from collapse_bench.decoders import core_parameters, decoder_width
from collapse_bench.method import Method
from collapse_bench.model import TextVAE

FIXTURES = Path(__file__).parent / "fixtures"
CFG = ModelConfig(emb=16, enc_hidden=24, dec_hidden=24, nz=8, dec_dropout_in=0.0, dec_dropout_out=0.0)
V = 40


def _decoder(name: str, skip: bool = False, **model):
    torch.manual_seed(0)
    model = TextVAE(dataclasses.replace(CFG, decoder=name, **model), V, skip=skip).eval()
    with torch.no_grad():                      # He et al.'s tiny init hides differences: make every weight matter
        for p in model.decoder.parameters():
            p.add_(torch.randn(p.shape) * 0.3)
    return model.decoder


def _tokens(b: int = 3, length: int = 12, seed: int = 1) -> torch.Tensor:
    return torch.randint(4, V, (b, length), generator=torch.Generator().manual_seed(seed))


VARIANTS = [("lstm", {}), ("cnn", {}), ("transformer", {"tf_z": "memory"}), ("transformer", {"tf_z": "add"})]
IDS = [f"{d}{'-' + m['tf_z'] if m else ''}" for d, m in VARIANTS]


def _change(tokens: torch.Tensor, k: int) -> torch.Tensor:
    changed = tokens.clone()
    changed[:, k] = (changed[:, k] + 1 - 4) % (V - 4) + 4
    return changed


@pytest.mark.parametrize("name,model", VARIANTS, ids=IDS)
def test_causal_logits(name, model):
    """Changing input token t+1 never changes the logits at positions <= t (the training path)."""
    dec = _decoder(name, skip=True, **model)
    inputs, z = _tokens()[:, :-1], torch.randn(3, CFG.nz)
    base = dec.logits(inputs, z)
    for t in range(inputs.shape[1] - 1):
        after = dec.logits(_change(inputs, t + 1), z)
        assert torch.equal(after[:, :t + 1], base[:, :t + 1]), f"a position <= {t} saw input {t + 1}"
        assert not torch.equal(after[:, t + 1:], base[:, t + 1:]), f"input {t + 1} was never read"


@pytest.mark.parametrize("name,model", VARIANTS, ids=IDS)
def test_causal_iw_nll_path(name, model):
    """IW-NLL's batched path (no grad, several z per sentence, the chunked output layer): changing token k of a
    sentence never changes log p(x_j | x_<j, z) of the targets before it (positions < k-1; position k-1's target
    is token k itself)."""
    dec = _decoder(name, skip=True, **model)
    tokens, z = _tokens(), torch.randn(3, 4, CFG.nz)
    with torch.no_grad():
        base = dec.token_log_prob(tokens, z)
        for k in range(2, tokens.shape[1] - 1):
            after = dec.token_log_prob(_change(tokens, k), z)
            assert torch.equal(after[..., :k - 1], base[..., :k - 1]), f"a target before token {k} saw it"
            assert not torch.equal(after[..., k:], base[..., k:]), f"token {k} was never read as an input"


@pytest.mark.parametrize("name,model", VARIANTS, ids=IDS)
def test_z_reaches_the_output(name, model):
    dec = _decoder(name, **model)
    tokens = _tokens()
    inputs = tokens[:, :-1]
    z1, z2 = torch.randn(3, CFG.nz), torch.randn(3, CFG.nz)
    with torch.no_grad():
        first = dec.logits(inputs, z1)
        assert not torch.allclose(first[:, 0], dec.logits(inputs, z2)[:, 0]), "z must reach the first position"
        assert not torch.allclose(first[:, -1], dec.logits(inputs, z2)[:, -1]), "z must reach the last position"


@pytest.mark.parametrize("name,model", VARIANTS, ids=IDS)
def test_batched_iw_path_matches_training_path(name, model):
    """IW-NLL's no-grad path (chunked output layer, n z per sentence) scores what the training path scores."""
    dec = _decoder(name, skip=True, **model)
    tokens, z = _tokens(), torch.randn(3, 5, CFG.nz)
    with torch.no_grad():
        fast = dec.log_prob(tokens, z)
    slow = torch.stack([dec.log_prob(tokens, z[:, k:k + 1])[:, 0] for k in range(5)], 1).detach()
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-4)


class PeakTensorBytes(TorchDispatchMode):
    """The peak over time of the bytes held by tensors that ops allocate inside the mode (a storage counts from the
    op that creates it until the last tensor on it is gone; views of outside tensors, such as weights, count
    nothing)."""

    def __init__(self):
        super().__init__()
        self.live = self.peak = 0
        self.storages: dict[int, list[int]] = {}        # data_ptr -> [tensors alive on it, bytes]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in pytree.tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.untyped_storage().nbytes():
                self._hold(t)
        return out

    def _hold(self, t: torch.Tensor) -> None:
        key = t.untyped_storage().data_ptr()
        if key in self.storages:
            self.storages[key][0] += 1
        elif t._is_view():
            return
        else:
            self.storages[key] = [1, t.untyped_storage().nbytes()]
            self.live += self.storages[key][1]
            self.peak = max(self.peak, self.live)
        weakref.finalize(t, self._release, key)

    def _release(self, key: int) -> None:
        held = self.storages[key]
        held[0] -= 1
        if held[0] == 0:
            self.live -= held[1]
            del self.storages[key]


def _iw_nll_footprint(model: TextVAE, sentences: int, samples: int, chunk_rows: int) -> tuple[int, int]:
    """(the most rows one decoder call scored, the peak bytes of tensors allocated) of IW-NLL on `sentences`
    sentences of one length (one bucket) with `samples` z each."""
    rows = []
    hidden = model.decoder.hidden
    model.decoder.hidden = lambda inputs, z: rows.append(inputs.shape[0]) or hidden(inputs, z)
    split = Split([np.arange(4, 16) % (V - 4) + 4 for _ in range(sentences)], None)
    torch.manual_seed(0)
    try:
        with PeakTensorBytes() as mem:
            ev.iw_nll(Method(), model, split, samples=samples, chunk_rows=chunk_rows, batch_size=sentences,
                      device="cpu")
    finally:
        del model.decoder.hidden
    return max(rows), mem.peak


@pytest.mark.parametrize("name,model", VARIANTS, ids=IDS)
def test_iw_nll_memory_is_bounded_by_chunk_rows(name, model):
    """Each decoder call of IW-NLL scores at most eval.iw_chunk_rows (sentence, sample) rows, so its memory is set by
    the chunk, not by the number of samples or sentences: for every decoder as for the LSTM. The peak of allocated
    tensor bytes with 64-row chunks stays put when K grows 8x, and is far below one call over all 1,024 rows."""
    dec_model = _decoder(name, **model)
    vae = TextVAE(dataclasses.replace(CFG, decoder=name, **model), V).eval()
    vae.decoder = dec_model
    rows_small, peak_small = _iw_nll_footprint(vae, sentences=8, samples=16, chunk_rows=64)
    rows_many_k, peak_many_k = _iw_nll_footprint(vae, sentences=8, samples=128, chunk_rows=64)
    rows_whole, peak_whole = _iw_nll_footprint(vae, sentences=8, samples=128, chunk_rows=1024)
    assert rows_small == rows_many_k == 64 and rows_whole == 1024
    assert peak_many_k <= 1.25 * peak_small, (peak_small, peak_many_k)        # K x 8: the same footprint
    assert peak_whole >= 6 * peak_many_k, (peak_many_k, peak_whole)           # 16x the rows per call: ~16x


def test_lstm_decoder_unchanged():
    """The default decoder's seeded init and outputs equal those of the code before the decoder axis (70d4748), bit
    for bit at one torch thread, as cells run (with two, oneDNN's LSTM backward-ready path may split its sums
    differently when the machine is busy: the last bits of one value moved)."""
    sys.path.insert(0, str(FIXTURES))
    threads = torch.get_num_threads()
    try:
        from make_lstm_fixture import fixture
        torch.set_num_threads(1)
        assert fixture() == json.loads((FIXTURES / "lstm_decoder_log_prob.json").read_text())
    finally:
        sys.path.remove(str(FIXTURES))
        torch.set_num_threads(threads)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("dataset", ["short-yelp", "ptb", "yahoo"])
def test_comparable_parameter_counts(size, dataset):
    """At every size the CNN's and the Transformer's cores are within 15% of the LSTM's (the embedding and the
    output layer have the same shapes in all three)."""
    cfg = size_config(size, dataset).model
    lstm = core_parameters(cfg)
    for name in ("cnn", "transformer"):
        other = core_parameters(dataclasses.replace(cfg, decoder=name))
        assert abs(other - lstm) / lstm < 0.15, (name, other, lstm)


def test_width_setting_and_errors():
    cfg = dataclasses.replace(CFG, decoder="transformer", dec_width=32)
    assert decoder_width(cfg) == 32
    with pytest.raises(ConfigError, match="model.decoder must be one of"):
        ModelConfig(decoder="gru")
    with pytest.raises(ConfigError, match="divide model.dec_width"):
        ModelConfig(decoder="transformer", dec_width=30, tf_heads=4)
    with pytest.raises(ConfigError, match="tf_z"):
        ModelConfig(tf_z="cross")


@pytest.mark.parametrize("decoder", [d for d in DECODERS if d != "lstm"])
@pytest.mark.parametrize("method", sorted(registry.names()))
def test_contract_with_each_decoder(method, decoder):
    """Every method trains, scores, is deterministic, survives a checkpoint and keeps its invariant with each
    decoder at smoke size (the LSTM's are tests/test_contract.py's)."""
    from collapse_bench.config import size_config
    from collapse_bench.contract import check_method
    from collapse_bench.method import ParamError
    try:
        registry.get(method)().check_config(size_config("smoke", "synthetic").replace(model={"decoder": decoder}))
    except ParamError as refused:          # defined for one decoder only: refused at expansion, with the reason
        assert "model.decoder" in str(refused)
        pytest.skip(f"{method} refuses the {decoder} decoder: {refused}")
    outcomes = check_method(method, "synthetic", overrides={"model": {"decoder": decoder}})
    failed = [o for o in outcomes if o.status == "fail"]
    assert not failed, failed


@pytest.mark.parametrize("decoder", DECODERS)
def test_decoder_optimizer_by_decoder_and_its_lr_halves_with_the_encoders(decoder):
    """train.dec_optimizer='auto': the LSTM decoder trains as the encoder (the protocol's SGD lr 1), the CNN and the
    Transformer with Adam at train.dec_lr; the encoder keeps the protocol's SGD either way (BN-VAE's floor needs it),
    and an lr halving halves both."""
    from collapse_bench.data import load_corpus
    from collapse_bench.train import Trainer
    cfg = size_config("smoke", "synthetic").replace(model={"decoder": decoder})
    t = Trainer(registry.get("vanilla")(), cfg, load_corpus("synthetic", None, cfg.limits), seed=0)
    adam = decoder != "lstm"
    assert cfg.decoder_optimizer() == ("adam" if adam else "same")
    assert isinstance(t.enc_opt, torch.optim.SGD) and t.enc_opt.param_groups[0]["lr"] == cfg.train.lr
    assert isinstance(t.dec_opt, torch.optim.Adam if adam else torch.optim.SGD)
    assert t.dec_opt.param_groups[0]["lr"] == (cfg.train.dec_lr if adam else cfg.train.lr)
    t.lr *= cfg.train.lr_decay
    t._make_optimizers()
    assert t.dec_opt.param_groups[0]["lr"] == pytest.approx(cfg.train.lr_decay * (cfg.train.dec_lr if adam
                                                                                    else cfg.train.lr))
    same = cfg.replace(train={"dec_optimizer": "same"})
    assert same.decoder_optimizer() == "same"
    assert cfg.replace(model={"decoder": "lstm"}, train={"dec_optimizer": "adam"}).decoder_optimizer() == "adam"
    with pytest.raises(ConfigError, match="train.dec_optimizer must be one of auto, same, adam"):
        cfg.replace(train={"dec_optimizer": "rmsprop"})
