import copy
from dataclasses import dataclass

import torch
import torch.nn as nn

from ..config import ModelConfig
from ..method import Method, MethodParams, param
from ..model import PosteriorHead
from ..posterior import Gaussian
from ..registry import register
from .helpers import Pretrain, pretrain_encoder, require, require_bn_floor_config, require_pretrain


class BNHead(PosteriorHead):
    """GaussianHead with BatchNorm1d on mu: weight fixed at gamma (no gradient), bias beta learned from 0;
    log sigma^2 untouched. PyTorch's BN defaults (momentum 0.1, eps 1e-5): batch statistics in train mode,
    running statistics in eval mode."""

    def __init__(self, hidden: int, nz: int, gamma: float):
        super().__init__(hidden, 2 * nz)
        self.bn = nn.BatchNorm1d(nz)
        with torch.no_grad():
            self.bn.weight.fill_(gamma)
            self.bn.bias.zero_()
        self.bn.weight.requires_grad_(False)

    def transform(self, stats: torch.Tensor) -> Gaussian:
        mu, logvar = stats.chunk(2, -1)
        return Gaussian(self.bn(mu), logvar)


@register("bnvae", aliases=("bn-vae",))
class BNVAE(Method):
    """BN-VAE (Zhu et al. 2020): batch norm on mu with γ fixed (0.6), β learned; E[KL] >= nz(γ²+β²)/2.

    The bound is really sum_j (gamma^2 v_j / (v_j + eps) + beta_j^2) / 2 with v_j the batch variance of the raw
    mean and eps = 1e-5 (PyTorch's BN default, as in BNV): it only holds while v_j >> eps. Hence
    model.encoder_init='pytorch' (the harness default, as BNV's Gaussian encoder): with He et al.'s U(+-0.01)
    encoder the raw means start with v ~ 1e-10 and the floor is void from the first step (check_config refuses it).
    Optimiser: the paper's SGD (lr 1) keeps v growing (BN makes the loss scale-invariant in the raw means), but
    Adam turns the tiny O(eps/v) KL gradient on the scale into full-size steps and shrinks v below eps within
    one epoch at `default` size on short-yelp, escaping the floor (KL -> 0). Run BN-VAE with
    `--set train.optimizer=sgd --set train.lr=1.0` to reproduce the paper (train.optimizer is the encoder's; the
    CNN and Transformer decoders take Adam of their own, train.dec_optimizer). A decoder that reads nothing from z
    leaves only the KL term on the encoder, and SGD shrinks v below eps too (the Transformer at `default`:
    ARCHITECTURE.md, "BN-VAE with a decoder that ignores z").
    Training batches of fewer than 2 sentences are skipped (as in BNV), since batch statistics need two. The KL
    weight follows the harness's annealing schedule. With pretrain='ae' the encoder and head's linear map come
    from the AE, the BN layer keeps weight=gamma, bias=0 (BNV resets it) and the decoder is fresh."""

    min_batch_size = 2

    @dataclass(frozen=True)
    class Params(MethodParams):
        gamma: float = param(0.6, "γ, BN's weight on mu, fixed (no gradient): sets the KL floor nz·γ²/2 "
                                  "(0.6 and 0.7 in the BN-VAE table)", gt=0)
        pretrain: Pretrain = param("none", "'ae': encoder and head's linear map from a trained AE (Li et al.), BN "
                                           "reset, decoder fresh; 'none': from scratch")

        def validate(self) -> None:
            require(self.gamma > 0, f"bnvae.gamma={self.gamma!r} must be > 0 (it sets the KL floor nz*gamma^2/2; "
                                    f"the paper uses 0.6 or 0.7)")
            require_pretrain("bnvae", self.pretrain)

        @staticmethod
        def search_space(trial) -> dict:
            return {"gamma": trial.suggest_float("gamma", 0.3, 1.0)}

    def check_config(self, cfg) -> None:
        require_bn_floor_config("bnvae", cfg)

    def posterior_head(self, cfg: ModelConfig) -> BNHead:
        return BNHead(cfg.enc_hidden, cfg.nz, self.params.gamma)

    def before_training(self, ctx) -> None:
        pretrain_encoder(ctx, self.params.pretrain)

    def invariant(self, run) -> None:
        """On every training batch, with BN on batch statistics: batch-mean KL >= sum_j (γ² v_j/(v_j+eps) + β_j²)/2,
        v_j the raw means' batch variance (the paper's nz(γ²+β²)/2 while v_j >> eps)."""
        model = copy.deepcopy(run.model).train()       # batch statistics; the copy's running stats absorb them
        bn = model.head.bn
        with torch.no_grad():
            for batch in run.train_batches:
                raw_mu = model.head.linear(model.encoder(batch.tokens)).chunk(2, -1)[0]
                v = raw_mu.var(0, unbiased=False)
                floor = 0.5 * float((bn.weight.pow(2) * v / (v + bn.eps) + bn.bias.pow(2)).sum())
                kl = float(model.posterior(batch.tokens).kl().mean())
                assert kl >= floor * (1 - 1e-4), f"batch-mean KL {kl:.4f} is below the BN floor {floor:.4f}"
