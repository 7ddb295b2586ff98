"""Typed, validated run configuration and the five sizes: smoke, default, study, deep, paper."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields

from .data import DataLimits

SIZES = ("smoke", "default", "study", "deep", "paper")
DECODERS = ("lstm", "cnn", "transformer")
# Yang et al. 2017's CNN decoders: dilations of their residual blocks (filter 3); receptive field 1 + 2 * sum.
CNN_CONFIGS = {"scnn": (1, 2, 4), "mcnn": (1, 2, 4, 8, 16), "lcnn": (1, 2, 4, 8, 16) * 2,
               "vlcnn": (1, 2, 4, 8, 16) * 3}
PRECISIONS = ("fp32", "bf16")
DEC_OPTIMIZERS = ("auto", "same", "adam")
# train.dec_optimizer="auto": the LSTM decoder trains as the encoder (the protocol's SGD lr 1); the CNN and the
# Transformer train with Adam at train.dec_lr, the optimiser their papers use. Under SGD lr 1 the CNN's ReLUs die
# and the Transformer's validation loss jumps between epochs (reports/decoders.md, the SGD table), and Adam on the
# encoder lets BN-VAE's raw means shrink below BN's eps (methods/bnvae.py), so the encoder keeps the protocol's.
AUTO_ADAM_DECODERS = ("cnn", "transformer")


class ConfigError(ValueError):
    pass


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


@dataclass(frozen=True)
class ModelConfig:
    emb: int = 512
    enc_hidden: int = 1024
    dec_hidden: int = 1024
    nz: int = 32
    dec_dropout_in: float = 0.5
    dec_dropout_out: float = 0.5
    init_range: float = 0.01       # U(-r, r) for LSTM/linear weights (He et al. 2019)
    emb_init_range: float = 0.1
    # "pytorch": the encoder and its head keep PyTorch's default init (embedding N(0, 1), LSTM/linear
    # U(+-1/sqrt(fan))), as the BN-VAE code's Gaussian encoder does (its uniform init is commented out); the
    # decoder always takes the ranges above. "uniform": the ranges above everywhere, as He et al.'s code.
    encoder_init: str = "pytorch"
    # The decoder axis (collapse_bench/decoders.py). dec_width: the CNN's channels / the Transformer's width;
    # 0 sizes it so its core has as many parameters as the LSTM decoder's at the same size.
    decoder: str = "lstm"
    dec_width: int = 0
    cnn_dilations: tuple[int, ...] = CNN_CONFIGS["mcnn"]   # receptive field 63: the sentences of every size
    cnn_kernel: int = 3
    cnn_dropout: float = 0.0        # dropout on each residual block's branch (Yang et al.: 0.1 at each layer)
    tf_layers: int = 2
    tf_heads: int = 4
    tf_z: str = "memory"            # how z reaches the Transformer: "memory" (a prefix it attends to) or "add"

    def __post_init__(self):
        _check(self.encoder_init in ("uniform", "pytorch"),
               f"model.encoder_init must be 'uniform' or 'pytorch', got {self.encoder_init!r}")
        self._check_decoder()
        for n in ("emb", "enc_hidden", "dec_hidden"):
            _check(getattr(self, n) > 0, f"model.{n} must be > 0, got {getattr(self, n)}")
        _check(self.nz >= 0, f"model.nz must be >= 0, got {self.nz}")
        for n in ("dec_dropout_in", "dec_dropout_out"):
            _check(0 <= getattr(self, n) < 1, f"model.{n} must be in [0, 1), got {getattr(self, n)}")

    def _check_decoder(self) -> None:
        _check(self.decoder in DECODERS, f"model.decoder must be one of {', '.join(DECODERS)}, got {self.decoder!r}")
        _check(self.dec_width >= 0 and self.dec_width % 2 == 0,
               f"model.dec_width must be 0 (matched to the LSTM's parameter count) or an even width, got "
               f"{self.dec_width}")
        _check(len(self.cnn_dilations) >= 1 and all(d >= 1 for d in self.cnn_dilations),
               f"model.cnn_dilations must be dilations >= 1, e.g. 1,2,4,8,16; got {self.cnn_dilations}")
        _check(self.cnn_kernel >= 2, f"model.cnn_kernel must be >= 2 (Yang et al.: 3), got {self.cnn_kernel}")
        _check(0 <= self.cnn_dropout < 1, f"model.cnn_dropout must be in [0, 1), got {self.cnn_dropout}")
        _check(self.tf_layers >= 1, f"model.tf_layers must be >= 1, got {self.tf_layers}")
        _check(self.tf_heads >= 1 and self.dec_width % self.tf_heads == 0,
               f"model.tf_heads must be >= 1 and divide model.dec_width; got {self.tf_heads} for {self.dec_width}")
        _check(self.tf_z in ("memory", "add"), f"model.tf_z must be 'memory' or 'add', got {self.tf_z!r}")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 100
    batch_size: int = 32
    optimizer: str = "sgd"          # "sgd" (He et al.: lr 1.0, no momentum) or "adam"
    adam_beta1: float = 0.9         # Adam's beta1 (PyTorch's default; Yang et al.: 0.5); beta2 is 0.999
    lr: float = 1.0
    dec_optimizer: str = "auto"     # the decoder's: "same" as the encoder's, "adam" at dec_lr, "auto" (see below)
    dec_lr: float = 1e-3            # the decoder's Adam lr where dec_optimizer resolves to "adam"
    clip: float = 5.0
    kl_start: float = 0.1           # linear KL annealing kl_start -> 1 over warm_up epochs (1.0 disables)
    warm_up: float = 10.0           # in epochs of N_train / batch_size iterations, as in the reference code
    decay_patience: int = 2         # epochs of no validation improvement before lr halving
    decay_from_epoch: int = 15      # lr halving allowed from this epoch on
    lr_decay: float = 0.5
    max_decays: int = 5
    threads: int = 1                # torch intra-op threads; fixed so serial and parallel runs time alike
    curve_sentences: int = 2000     # validation sentences used for the per-epoch MI/AU curve
    curve_points_per_epoch: int = 1  # >1 adds MI/AU/per-dimension-KL points inside each epoch (not timed as training)
    precision: str = "fp32"         # "bf16": autocast matmuls to bfloat16 (2x matmul rate on CPUs with AMX/AVX512-BF16)
    select: str = "best"            # the scored model: "best" validation checkpoint (the protocol) or the "last" epoch's

    def __post_init__(self):
        _check(self.select in ("best", "last"), f"train.select must be 'best' or 'last', got {self.select!r}")
        _check(self.epochs >= 1, f"train.epochs must be >= 1, got {self.epochs}")
        _check(self.batch_size >= 1, f"train.batch_size must be >= 1, got {self.batch_size}")
        _check(self.optimizer in ("sgd", "adam"), f"train.optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        _check(self.lr > 0, f"train.lr must be > 0, got {self.lr}")
        _check(self.dec_optimizer in DEC_OPTIMIZERS,
               f"train.dec_optimizer must be one of {', '.join(DEC_OPTIMIZERS)}, got {self.dec_optimizer!r}")
        _check(self.dec_lr > 0, f"train.dec_lr must be > 0, got {self.dec_lr}")
        _check(0 <= self.adam_beta1 < 1, f"train.adam_beta1 must be in [0, 1), got {self.adam_beta1}")
        _check(0 <= self.kl_start <= 1, f"train.kl_start must be in [0, 1], got {self.kl_start}")
        _check(self.warm_up >= 0, f"train.warm_up must be >= 0, got {self.warm_up}")
        _check(self.threads >= 1, f"train.threads must be >= 1, got {self.threads}")
        _check(self.curve_points_per_epoch >= 1,
               f"train.curve_points_per_epoch must be >= 1, got {self.curve_points_per_epoch}")
        _check(self.precision in PRECISIONS, f"train.precision must be one of {PRECISIONS}, got {self.precision!r}")


@dataclass(frozen=True)
class EvalConfig:
    iw_samples: int = 500           # K of the importance-weighted NLL
    iw_sentences: int | None = None  # IW-NLL/PPL on a fixed seeded subset of this many test sentences (None: all)
    iw_chunk_rows: int = 4096       # (sentence, sample) rows scored per decoder call; bounds memory
    probe_labels: tuple[int, ...] = (100, 500, 1000, 2000, 10000)
    probe_repeats: int = 5          # seeded subsets per label count where subsets are drawn
    au_threshold: float = 0.01
    batch_size: int = 256           # sentences per evaluation batch (still single-length buckets)
    precision: str = "fp32"         # "bf16" autocasts scoring too; its drift against fp32 is in benchmarks/
    bf16_check_sentences: int = 50  # a bf16 scoring first scores this many IW-NLL sentences in both precisions
    bf16_bound: float = 0.01        # ... and falls back to fp32 where their mean |difference| exceeds this (nats)

    def __post_init__(self):
        _check(self.iw_samples >= 1, f"eval.iw_samples must be >= 1, got {self.iw_samples}")
        _check(self.iw_sentences is None or self.iw_sentences >= 1,
               f"eval.iw_sentences must be None or >= 1, got {self.iw_sentences}")
        _check(self.iw_chunk_rows >= 1, "eval.iw_chunk_rows must be >= 1")
        _check(all(n > 0 for n in self.probe_labels), "eval.probe_labels must be positive")
        _check(self.precision in PRECISIONS, f"eval.precision must be one of {PRECISIONS}, got {self.precision!r}")
        _check(self.bf16_check_sentences >= 1,
               f"eval.bf16_check_sentences must be >= 1 (a bf16 score is always checked), got "
               f"{self.bf16_check_sentences}")
        _check(self.bf16_bound >= 0, f"eval.bf16_bound must be >= 0 nats, got {self.bf16_bound}")


@dataclass(frozen=True)
class SizeConfig:
    name: str
    model: ModelConfig
    train: TrainConfig
    eval: EvalConfig
    limits: DataLimits = field(default_factory=DataLimits)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def replace(self, **sections: dict) -> "SizeConfig":
        """Override fields by section, e.g. replace(train={'epochs': 3})."""
        out = self
        for section, values in sections.items():
            cur = getattr(out, section)
            known = {f.name for f in fields(cur)}
            bad = set(values) - known
            _check(not bad, f"unknown {section} field(s) {sorted(bad)}; known: {sorted(known)}")
            out = dataclasses.replace(out, **{section: dataclasses.replace(cur, **values)})
        return out

    def decoder_optimizer(self) -> str:
        """What the decoder's parameters train with: 'same' (the encoder's optimiser and lr) or 'adam' (dec_lr)."""
        choice = self.train.dec_optimizer
        if choice == "auto":
            return "adam" if self.model.decoder in AUTO_ADAM_DECODERS else "same"
        return choice


# The paper's model per corpus (LAG/PRE config files, protocol section 1.2).
# The CNN decoder there is Yang et al.'s LCNN (receptive field 125), their CNN-VAE row on Yahoo and Yelp.
_PAPER_MODELS = {
    "yahoo": ModelConfig(512, 1024, 1024, 32, cnn_dilations=CNN_CONFIGS["lcnn"]),
    "yelp": ModelConfig(512, 1024, 1024, 32, cnn_dilations=CNN_CONFIGS["lcnn"]),
    "yahoo-mini": ModelConfig(512, 1024, 1024, 32, cnn_dilations=CNN_CONFIGS["lcnn"]),
    "short-yelp": ModelConfig(128, 512, 512, 32),
    "ptb": ModelConfig(256, 256, 256, 32),
    "synthetic": ModelConfig(50, 50, 50, 32),
}


def size_config(size: str, dataset: str) -> SizeConfig:
    """smoke: seconds, for tests (its numbers mean nothing). default: minutes on a CPU. paper: the protocol exactly,
    for real hardware. Every size trains the encoder with the protocol's SGD lr 1.0 (Adam lets BN-VAE's raw means
    shrink below BN's eps and escape its KL floor, and a method's guarantee must hold at every size), and the decoder
    as `SizeConfig.decoder_optimizer` says (the LSTM's alike; the CNN's and the Transformer's with Adam)."""
    if size == "smoke":
        return SizeConfig(
            "smoke",
            ModelConfig(emb=32, enc_hidden=64, dec_hidden=64, nz=16),
            TrainConfig(epochs=2, optimizer="sgd", lr=1.0, kl_start=0.1, warm_up=1, curve_sentences=200),
            EvalConfig(iw_samples=20, probe_labels=(100,), probe_repeats=2, batch_size=128),
            DataLimits(max_train=800, max_valid=200, max_test=200, max_len=30),
        )
    if size == "default":
        # IW-NLL on a fixed seeded half of the 1,000 test sentences (KL, MI, AU, probe keep all 1,000): at K = 100
        # it was 13 of the ~55 s of a synthetic cell, every (sentence, sample, token) row through the output
        # softmax at the matmul limit; the same sentences for every cell keep the comparison paired.
        return SizeConfig(
            "default",
            ModelConfig(emb=64, enc_hidden=128, dec_hidden=128, nz=32),
            TrainConfig(epochs=8, optimizer="sgd", lr=1.0, kl_start=0.1, warm_up=4, curve_sentences=1000),
            EvalConfig(iw_samples=100, iw_sentences=500, probe_labels=(100, 500, 1000, 2000), probe_repeats=3),
            DataLimits(max_train=10000, max_valid=1000, max_test=1000, max_len=60),
        )
    if size == "study":
        return study_config(dataset)
    if size == "deep":
        return deep_config(dataset)
    if size == "paper":
        return SizeConfig("paper", _PAPER_MODELS.get(dataset, ModelConfig()), TrainConfig(), EvalConfig(), DataLimits())
    raise ConfigError(f"unknown size {size!r}; choose one of {', '.join(SIZES)}")


# The published study (reports/study, `python -m collapse_bench study`): every method, short-Yelp and PTB, three
# seeds, in at most 2 hours on 2 CPU cores with one cell per core. Why these numbers:
# * Measured at this size (first attempt, 2 busy cores): an SA-VAE cell trains for ~11 min on 3,000 short-Yelp
#   sentences x 4 epochs (10 SVI steps with exact second-order backprop: 24x vanilla's step in benchmarks/, and
#   the refinement again at every validation point), a vanilla cell for ~30 s; Agg-VAE is 41x vanilla's step
#   while aggressive. Per (dataset, seed) that is ~45 vanilla trainings; 6 such pairs in 2 h x 2 cores.
# * The IW-NLL dominates evaluation: every (token, sample) row passes the output softmax over the real
#   vocabulary (~15k rows/s per core at this size), so K = 500 on 1,000 test sentences is 6 min per short-Yelp
#   cell and 12 per PTB cell, more than the whole training budget. The study takes K = 100 on a fixed seeded
#   subset of 300 test sentences (the same for every cell, so methods are compared on the same sentences);
#   KL, MI, AU and the probe use 1,000 test sentences. K = 100 underestimates log p(x) a little more than
#   K = 500 for models with a wide posterior; the NLL column is the study's, not the paper's.
# * The paper's short-Yelp model (128/512/512) trains at ~2,500 tok/s per core here. The `default` model
#   (64/128/128; nz 32 as in the paper, so AU is out of 32 and BN-VAE's floor nz*gamma^2/2 is the paper's) is
#   ~2x faster; 4 epochs of 2,400 short-Yelp pool sentences (11 tokens) or of 1,200 PTB sentences (21 tokens),
#   the same number of tokens, fit the budget.
# * 4 epochs with the KL weight 0.1 -> 1 over the first 2 (the parity budget, reports/parity.md, scaled down):
#   collapse, when it happens, happens within the annealing; the last 2 epochs run at weight 1. Two curve points
#   per epoch (MI, AU, KL per unit on 500 validation sentences) draw where collapse happens.
# * The rest of the protocol unchanged: full-set MI, AU at 0.01, probe at 100 ... 10k labels with C on 1,000
#   validation sentences; test and validation are seeded subsamples (data seed 0).
STUDY_TRAIN_SENTENCES = {"short-yelp": 2400, "ptb": 1200}
STUDY_DATASETS = ("short-yelp", "ptb")
STUDY_SEEDS = (0, 1, 2)
# The methods of the study's tiers. Pinned so that registering a method does not add cells to a published tier:
# a new remedy joins when the study is rerun with it, by adding it here.
STUDY_METHODS = ("ae", "agg", "anneal", "beta", "bnvae", "bnvae-su", "bow", "controlvae", "coupled", "cyclic",
                 "delta", "duvae", "eae", "fb", "lm", "mmd", "powerspherical", "savae", "skip", "twr", "vanilla",
                 "vmf", "word-dropout")
# The deep tier: the quick tier's cell with 11x the training sentences (so >= 10x its optimiser steps: ~3,400 on
# short-Yelp against ~330), everything else the same, so that a finding that moves between the tiers moved with
# the budget alone.
DEEP_FACTOR = 11


@dataclass(frozen=True)
class StudyTier:
    """One tier of the study: its size, its boards (dataset, decoder), seeds and methods, and the methods that run
    fewer seeds (with the reason, shown on the page)."""
    name: str
    size: str
    boards: tuple[tuple[str, str], ...]
    seeds: tuple[int, ...] = STUDY_SEEDS
    methods: tuple[str, ...] = STUDY_METHODS
    fewer_seeds: dict[str, tuple[tuple[int, ...], str]] = field(default_factory=dict)
    keep_stale: bool = False       # keep finished cells of earlier code (marked on the page) instead of rerunning


STUDY_TIERS = {
    # 2 hours on 2 cores hold ~14,400 core-seconds; measured at this size a cell takes 40-50 s (15-24 s training,
    # 14 s IW-NLL, 4 s the bf16 check), an Agg-VAE cell ~500 s and an SA-VAE cell ~350 s: three seeds of every
    # method on the four boards would be ~6.3 core-hours, so these two run one seed here (~4.3 in all).
    "quick": StudyTier("quick", "study", (("short-yelp", "lstm"), ("short-yelp", "cnn"),
                                          ("short-yelp", "transformer"), ("ptb", "lstm")), fewer_seeds={
        "savae": ((0,), "one seed: an SA-VAE cell trains ~20x a vanilla cell's time (~350 s here); three seeds on "
                        "four boards would take a third of the tier's 2 hours on 2 cores"),
        "agg": ((0,), "one seed: an Agg-VAE cell trains ~25x a vanilla cell's time here (~500 s: its aggressive "
                      "phase lasts most of a 4-epoch run); three seeds on four boards would take 40% of the tier's "
                      "budget")}),
    # The deep tier takes longer than one stretch of work while the code moves on: its finished cells are kept
    # and marked when the code changes (`study --rerun-stale` reruns them); each record names its code.
    "deep": StudyTier("deep", "deep", (("short-yelp", "lstm"),), keep_stale=True, fewer_seeds={
        "savae": ((0,), "one seed: an SA-VAE cell trains ~20x a vanilla cell's time (~80 min at this size on one "
                        "core), three would be a third of the tier's 12 core-hours")}),
}


def study_config(dataset: str) -> SizeConfig:
    return SizeConfig(
        "study",
        ModelConfig(emb=64, enc_hidden=128, dec_hidden=128, nz=32),
        TrainConfig(epochs=4, optimizer="sgd", lr=1.0, kl_start=0.1, warm_up=2, curve_sentences=500,
                    curve_points_per_epoch=2),
        EvalConfig(iw_samples=100, iw_sentences=300, probe_labels=(100, 500, 1000, 2000, 10000), probe_repeats=3,
                   precision="bf16"),
        DataLimits(max_train=STUDY_TRAIN_SENTENCES.get(dataset, 2400), max_valid=1000, max_test=1000),
    )


def deep_config(dataset: str) -> SizeConfig:
    """The study's cell with DEEP_FACTOR x the training sentences (the deep tier), scored in fp32 (its first cells
    were, and scoring is a small part of a cell 11x as long)."""
    quick = study_config(dataset)
    limits = dataclasses.replace(quick.limits, max_train=DEEP_FACTOR * STUDY_TRAIN_SENTENCES.get(dataset, 2400))
    return dataclasses.replace(quick, name="deep", eval=dataclasses.replace(quick.eval, precision="fp32"),
                               limits=limits)
