"""The text itself: every decoder's generation (greedy and sampled, batched over sentences), BLEU and the diversity
figures on known answers, and text evidence (text.py) showing a collapsed model's reconstructions are the same
whatever the input while an active model's differ."""
from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from collapse_bench import registry, text
from collapse_bench.config import ModelConfig, size_config
from collapse_bench.data import Corpus, Split, Vocab
from collapse_bench.data.vocab import BOS, EOS, PAD, SPECIALS
from collapse_bench.model import TextVAE
from collapse_bench.posterior import Gaussian

CFG = ModelConfig(emb=16, enc_hidden=24, dec_hidden=24, nz=8, dec_dropout_in=0.0, dec_dropout_out=0.0)
V = 40
VARIANTS = [("lstm", {}), ("cnn", {}), ("transformer", {"tf_z": "memory"}), ("transformer", {"tf_z": "add"})]
IDS = [f"{d}{'-' + m['tf_z'] if m else ''}" for d, m in VARIANTS]


def _model(name: str = "lstm", *, skip: bool = False, latent: bool = True, scale: float = 0.3, seed: int = 0,
           cfg: ModelConfig = CFG, vocab: int = V, **model) -> TextVAE:
    torch.manual_seed(seed)
    m = TextVAE(dataclasses.replace(cfg, decoder=name, **model), vocab, latent=latent, skip=skip).eval()
    with torch.no_grad():                      # He et al.'s tiny init hides differences: make every weight matter
        for p in m.parameters():
            p.add_(torch.randn(p.shape) * scale)
    return m


def _first_eos_mask(gen: torch.Tensor) -> torch.Tensor:
    """True at the positions up to and including each row's first </s> (every position without one)."""
    after = (gen == EOS).long().cumsum(1) - (gen == EOS).long()      # </s> strictly before this position
    return after == 0


# ------------------------------------------------------------------------------------------------ generation

@pytest.mark.parametrize("name,model", VARIANTS, ids=IDS)
def test_greedy_decoding_is_the_argmax_of_logits_at_every_position(name, model):
    """Greedy decoding's first token is the argmax of `logits` at position 0 given <s>, and every later token the
    argmax given the tokens it wrote before: the stepwise path (the LSTM's kept state, the others' recomputation)
    agrees with the batched training path. After </s> a row holds only <pad>."""
    dec = _model(name, skip=True, **model).decoder
    z = torch.randn(6, CFG.nz)
    gen = dec.generate(z, 12)
    assert gen.shape[0] == 6 and 1 <= gen.shape[1] <= 12
    with torch.no_grad():
        inputs = torch.cat([torch.full((6, 1), BOS), gen[:, :-1]], 1)
        best = dec.logits(inputs, z).argmax(-1)
    assert torch.equal(gen[:, 0], dec.logits(torch.full((6, 1), BOS), z)[:, 0].argmax(-1))
    keep = _first_eos_mask(gen)
    assert torch.equal(gen[keep], best[keep])
    assert (gen[~keep] == PAD).all()


@pytest.mark.parametrize("name,model", VARIANTS, ids=IDS)
def test_rows_stop_at_eos_on_their_own_and_batching_changes_nothing(name, model):
    """Rows whose z asks for </s> at once stop there while the others go on to max_tokens; each row of the batch
    is what decoding it alone gives (greedy and, with one generator per call, the first sampled token)."""
    dec = _model(name, skip=True, **model).decoder
    with torch.no_grad():
        dec.skip.weight[EOS, 0] = 500.0        # </s> wins wherever z_0 > 0 (and z_0 is large enough)
        dec.skip.weight[EOS, 1:] = 0.0
    z = torch.randn(8, CFG.nz)
    z[:, 0] = torch.tensor([1.0, -1.0, 2.0, -2.0, 1.5, -1.5, 3.0, -3.0])
    gen = dec.generate(z, 9)
    stops = z[:, 0] > 0
    assert (gen[stops, 0] == EOS).all() and (gen[stops, 1:] == PAD).all()
    assert gen.shape[1] == 9 and not (gen[~stops] == EOS).any()
    for i in range(8):
        alone = dec.generate(z[i:i + 1], 9)
        assert torch.equal(alone[0], gen[i, :alone.shape[1]]) and (gen[i, alone.shape[1]:] == PAD).all()


@pytest.mark.parametrize("name,model", VARIANTS, ids=IDS)
def test_sampled_decoding_draws_from_the_softmax(name, model):
    """Temperature 1: over 20,000 rows with the same z the first token's frequencies are softmax(logits at
    position 0) (total variation < 0.02; greedy would put everything on one token); a seeded generator repeats."""
    dec = _model(name, **model).decoder
    z = torch.randn(1, CFG.nz).expand(20000, -1)
    first = dec.generate(z, 1, greedy=False, generator=torch.Generator().manual_seed(0))[:, 0]
    with torch.no_grad():
        p = dec.logits(torch.full((1, 1), BOS), z[:1])[0, 0].softmax(-1)
    freq = torch.bincount(first, minlength=V).double() / len(first)
    assert 0.5 * float((freq - p.double()).abs().sum()) < 0.02
    assert float(p.max()) < 0.5                # a real distribution, not one token
    again = lambda seed: dec.generate(z[:50], 10, greedy=False, generator=torch.Generator().manual_seed(seed))  # noqa: E731
    assert torch.equal(again(1), again(1)) and not torch.equal(again(1), again(2))


@pytest.mark.parametrize("name", ["lstm", "cnn", "transformer"])
def test_a_decoder_without_z_generates_rows(name):
    """The LM (no latent): `rows` sentences; greedy decoding gives the same sentence in every row."""
    dec = _model(name, latent=False).decoder
    gen = dec.generate(None, 7, rows=4)
    assert gen.shape[0] == 4 and (gen == gen[:1]).all()
    assert dec.generate(None, 7, rows=30, greedy=False).unique(dim=0).shape[0] > 1
    with pytest.raises(ValueError, match="rows"):
        dec.generate(None, 7)


# ---------------------------------------------------------------------------------------- BLEU and diversity

def s(words: str) -> list[str]:
    return words.split()


def test_bleu_on_known_answers():
    """NLTK's sentence_bleu with SmoothingFunction().method1 (checked against NLTK 3.10.4 on 3,000 random cases
    when this was written; these are hand-computed)."""
    cat = s("the cat sat on the mat")
    assert text.bleu(cat, [cat]) == pytest.approx(1.0)
    assert text.bleu(cat, [s("a dog ran far away")]) == 0.0
    # precisions 5/6, 3/5, 1/4, and 0/3 -> 0.1/3 (method1); equal lengths: no brevity penalty
    assert text.bleu(cat, [s("the cat is on the mat")]) == pytest.approx((5 / 6 * 3 / 5 * 1 / 4 * 0.1 / 3) ** 0.25)
    # Papineni's clipping: 'the' counts at most twice (its most in one reference); the closest length is 7
    hyp, refs = s("the the the the the the the"), [s("the cat is on the mat"), s("there is a cat on the mat")]
    assert text.bleu(hyp, refs) == pytest.approx((2 / 7 * 0.1 / 6 * 0.1 / 5 * 0.1 / 4) ** 0.25)
    # brevity: c = 2 against r = 6 -> exp(1 - 6/2); orders 3 and 4 have no n-gram: 0.1/1 each
    assert text.bleu(s("the cat"), [cat]) == pytest.approx(math.exp(-2) * (1 * 1 * 0.1 * 0.1) ** 0.25)
    assert text.bleu([], [cat]) == 0.0


def test_self_bleu_and_distinct_on_known_answers():
    same = [s("the cat sat on the mat")] * 4
    assert text.self_bleu(same) == pytest.approx(1.0)
    assert text.self_bleu([s("a b c d"), s("e f g h"), s("i j k l")]) == 0.0
    assert text.self_bleu([s("a b c d")]) is None
    two = [s("a b a"), s("a b")]                   # unigrams a b a a b: 2 of 5; bigrams ab ba ab: 2 of 3
    assert text.distinct_n(two, 1) == pytest.approx(2 / 5) and text.distinct_n(two, 2) == pytest.approx(2 / 3)
    assert text.distinct_n([[], []], 1) is None
    assert text.diversity([[], [], s("a")])["unique"] == 2


def test_self_bleu_equals_each_sentence_against_all_the_others():
    """The two-largest-counts shortcut gives exactly the mean of `bleu(sentence, the others)`, ties included."""
    rng = np.random.default_rng(0)
    sents = [[f"w{i}" for i in rng.integers(0, 6, rng.integers(0, 9))] for _ in range(40)]
    sents += [sents[3], sents[3]]                  # repeated sentences: the largest count is shared
    brute = np.mean([text.bleu(x, sents[:i] + sents[i + 1:]) for i, x in enumerate(sents)])
    assert text.self_bleu(sents) == pytest.approx(brute, abs=1e-12)


# -------------------------------------------------------------------------------------------- text evidence

SMALL = ModelConfig(emb=8, enc_hidden=16, dec_hidden=16, nz=4, dec_dropout_in=0.0, dec_dropout_out=0.0)
WORDS = 26


def toy_corpus() -> Corpus:
    rng = np.random.default_rng(0)
    vocab = Vocab(list(SPECIALS) + [f"w{i}" for i in range(WORDS)])
    split = Split([rng.integers(4, 4 + WORDS, rng.integers(3, 8)) for _ in range(40)])
    return Corpus("toy", vocab, split, split, split)


def toy_model(*, ignore_z: bool = False, method: str = "vanilla") -> tuple[object, TextVAE]:
    """A model with large random weights (z matters), or the same with the decoder's z weights zeroed: a decoder
    that ignores z, which is what posterior collapse leaves."""
    m = registry.get(method)()
    torch.manual_seed(0)
    model = m.build_model(SMALL, 4 + WORDS)
    for p in model.parameters():
        torch.nn.init.uniform_(p, -0.5, 0.5)
    if ignore_z and model.has_latent:
        with torch.no_grad():
            model.decoder.init_state.weight.zero_()
            model.decoder.lstm.weight_ih_l0[:, SMALL.emb:].zero_()
    return m, model.eval()


def evidence(method: str = "vanilla", *, ignore_z: bool = False, seed: int = 0, built=None) -> dict:
    m, model = built or toy_model(ignore_z=ignore_z, method=method)
    return text.text_evidence(m, model, toy_corpus(), size_config("smoke", "synthetic"), "cpu", seed)


def test_a_collapsed_models_reconstructions_are_the_same_whatever_the_input():
    """The decoder ignoring z writes one sentence for five different inputs, greedy from the posterior mode, and
    along the interpolation; the same model with z wired in writes five different ones."""
    collapsed, active = evidence(ignore_z=True), evidence()
    assert collapsed["inputs"] == active["inputs"] and len(set(active["inputs"])) == text.SENTENCES
    assert len(set(collapsed["reconstructions"]["mode_greedy"])) == 1
    assert len(set(collapsed["interpolation"]["greedy"])) == 1
    assert collapsed["samples"]["diversity"]["greedy"]["unique"] == 1
    assert collapsed["samples"]["diversity"]["greedy"]["self_bleu"] == pytest.approx(1.0)
    assert len(set(active["reconstructions"]["mode_greedy"])) == text.SENTENCES
    assert len(set(active["interpolation"]["greedy"])) > 1
    assert active["samples"]["diversity"]["greedy"]["unique"] > 50      # (random weights write loops: its
    assert active["samples"]["diversity"]["greedy"]["self_bleu"] < 0.95   # self-BLEU stays high, but under 1)


def test_text_is_seeded_small_and_leaves_the_callers_random_state_alone():
    built = toy_model()
    torch.manual_seed(123)
    before = torch.get_rng_state()
    first = evidence(built=built)
    assert torch.equal(torch.get_rng_state(), before)
    again, other = evidence(), evidence(seed=1)
    strip = lambda e: {k: v for k, v in e.items() if k not in ("seconds", "seed")}  # noqa: E731
    assert strip(first) == strip(again) and strip(first) != strip(other)
    assert first["reconstructions"]["mode_greedy"] == strip(other)["reconstructions"]["mode_greedy"]  # no noise
    assert len(first["samples"]["greedy"]) == text.SHOWN == len(first["samples"]["sampled"])
    assert len(json.dumps(first)) < 6000
    ends = first["interpolation"]["greedy"][0], first["interpolation"]["greedy"][-1]
    assert list(ends) == first["reconstructions"]["mode_greedy"][:2]   # t = 0 and 1 are the first two's modes


def test_without_a_latent_or_a_prior_the_record_says_so():
    lm, ae = evidence("lm"), evidence("ae")
    assert lm["reconstructions"] is None and lm["interpolation"] is None and "no latent" in lm["notes"][0]
    assert lm["samples"]["diversity"]["greedy"]["unique"] == 1        # greedy without z: one sentence
    assert ae["samples"] is None and "prior term" in ae["notes"][0]
    assert len(ae["reconstructions"]["mode_greedy"]) == text.SENTENCES


def test_vmf_decodes_its_direction_and_samples_its_sphere():
    from collapse_bench.methods.vmf import VonMisesFisher
    post = VonMisesFisher(torch.nn.functional.normalize(torch.randn(3, 6), dim=-1), 13.0)
    assert torch.equal(post.mode, post.mu) and not torch.allclose(post.mean, post.mu)
    assert torch.allclose(post.sample_prior(50).norm(dim=-1), torch.ones(50))
    assert torch.allclose(post.to_support(0.5 * (post.mu[0] + post.mu[1])).norm(), torch.tensor(1.0))
    g = Gaussian(torch.randn(3, 6), torch.zeros(3, 6))
    assert torch.equal(g.mode, g.mu) and g.sample_prior(7).shape == (7, 6)
    assert torch.equal(g.to_support(g.mu), g.mu)


# --------------------------------------------------------------------------------------------------- the cell

def test_the_first_seeds_cell_writes_text_and_a_failure_leaves_the_metrics(monkeypatch):
    from collapse_bench import cell
    one = {"train": {"epochs": 1}}
    first = cell.run_record(cell.CellSpec("lm", "synthetic", "smoke", 0, overrides=one))
    other = cell.run_record(cell.CellSpec("lm", "synthetic", "smoke", 1, overrides=one))
    assert first["status"] == other["status"] == "ok"
    assert first["text"]["samples"]["n"] == text.SAMPLES and other["text"] is None
    assert first["text"]["inputs"] and len(json.dumps(first["text"])) < 6000

    def broken(*args, **kwargs):
        raise RuntimeError("no text today")
    monkeypatch.setattr(cell, "text_evidence", broken)
    failed = cell.run_record(cell.CellSpec("lm", "synthetic", "smoke", 0, overrides=one))
    assert failed["status"] == "ok" and failed["metrics"]["nll"] == first["metrics"]["nll"]
    assert failed["text"]["error"]["message"] == "no text today"


@pytest.mark.parametrize("name", registry.names())
def test_every_method_writes_its_text(name):
    """Each registered method's model (untrained, smoke size) through text evidence: reconstructions where it has a
    latent, samples where it has a prior, and every sentence within the length limit."""
    from collapse_bench.cell import CellSpec, build_trainer
    trainer = build_trainer(CellSpec(name, "synthetic", "smoke", 0))
    method = trainer.method
    out = text.text_evidence(method, trainer.model, trainer.corpus, trainer.cfg, "cpu", 0)
    assert (out["reconstructions"] is not None) == trainer.model.has_latent == (out["interpolation"] is not None)
    assert (out["samples"] is not None) == method.generative
    sentences = [*(out["reconstructions"] or {}).get("mode_greedy", []), *(out["samples"] or {}).get("sampled", [])]
    assert sentences and all(len(x.split()) <= out["max_tokens"] for x in sentences)
