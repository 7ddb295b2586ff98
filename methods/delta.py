import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from scipy.optimize import brentq

from ..config import ModelConfig
from ..method import Method, MethodParams, param
from ..model import PosteriorHead
from ..posterior import Gaussian
from ..registry import register
from .helpers import Pretrain, pretrain_encoder, require, require_pretrain


def variance_bounds(delta: float) -> tuple[float, float]:
    """The two roots s_l < 1 < s_u of ln s - s + 2 delta + 1 = 0: the variances at which a zero-mean Gaussian
    dimension has KL exactly delta. (The function is 2 delta at s = 1 and tends to -inf at 0 and at +inf.)"""
    f = lambda s: math.log(s) - s + 2 * delta + 1  # noqa: E731
    lo = 1.0
    while f(lo) > 0:
        lo /= 2
    hi = 2.0
    while f(hi) > 0:
        hi *= 2
    return brentq(f, lo, 1.0, xtol=1e-14), brentq(f, 1.0, hi, xtol=1e-14)


class DeltaHead(PosteriorHead):
    """Linear map (no bias) to raw (m, v); sigma = sigma_l + (sigma_u - sigma_l) / clamp(1 + e^-v, 1, 50) stays in
    [sigma_l, sigma_u], and mu = sqrt(2 delta + 1 + ln sigma^2 - sigma^2 + relu(m) + 1e-6) >= 0, so that each
    dimension's KL is delta + relu(m)/2 + 5e-7 >= delta (Razavi et al. 2019, as in BNV's encoder)."""

    def __init__(self, hidden: int, nz: int, delta: float):
        super().__init__(hidden, 2 * nz)
        self.delta = delta
        s_l, s_u = variance_bounds(delta)
        self.sigma_l, self.sigma_u = math.sqrt(s_l), math.sqrt(s_u)

    def transform(self, stats: torch.Tensor) -> Gaussian:
        raw_mu, raw_v = stats.chunk(2, -1)
        gate = 1.0 / (1.0 + torch.exp(-raw_v)).clamp(1.0, 50.0)
        sigma = self.sigma_l + (self.sigma_u - self.sigma_l) * gate
        var = sigma.pow(2)
        mu = torch.sqrt((2 * self.delta + 1 + torch.log(var) - var).clamp(min=0) + F.relu(raw_mu) + 1e-6)
        return Gaussian(mu, torch.log(var))


@register("delta", aliases=("delta-vae", "δ-vae"))
class DeltaVAE(Method):
    """δ-VAE (Razavi et al. 2019): posterior variance and mean constrained so that KL >= δ in every dimension.

    The variance range [sigma_l^2, sigma_u^2] is solved in code from delta (brentq), not tabulated; the
    clamp(min=0) inside the square root only absorbs float rounding at the two ends of the range.
    δ = 0.1 from scratch, 0.15 with pretrain=ae in the BN-VAE table."""

    @dataclass(frozen=True)
    class Params(MethodParams):
        delta: float = param(0.1, "δ, the least KL of every latent dimension in nats (BN-VAE table: 0.1 from "
                                   "scratch, 0.15 with pretrain='ae')", gt=0)
        pretrain: Pretrain = param("none", "'ae': encoder from a trained AE, decoder fresh (Li et al.); 'none': "
                                           "from scratch")

        def validate(self) -> None:
            require(self.delta > 0, f"delta.delta={self.delta!r} must be > 0 nats per dimension (paper: 0.1 or 0.15)")
            require_pretrain("delta", self.pretrain)

        @staticmethod
        def search_space(trial) -> dict:
            return {"delta": trial.suggest_float("delta", 0.05, 0.3)}

    def posterior_head(self, cfg: ModelConfig) -> DeltaHead:
        return DeltaHead(cfg.enc_hidden, cfg.nz, self.params.delta)

    def before_training(self, ctx) -> None:
        pretrain_encoder(ctx, self.params.pretrain)

    def invariant(self, run) -> None:
        """Every sentence's KL is at least δ in every dimension (so at least nz·δ), whatever the encoder learned."""
        run.model.eval()
        with torch.no_grad():
            for batch in run.train_batches:
                low = float(run.model.posterior(batch.tokens).kl_per_dim().min())
                assert low >= self.params.delta - 1e-5, f"a dimension's KL {low:.6f} is below δ = {self.params.delta}"
