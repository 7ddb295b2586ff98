from dataclasses import dataclass

import torch
import torch.nn as nn

from ..config import ModelConfig
from ..method import Method, MethodParams, param
from ..model import PosteriorHead
from ..posterior import Gaussian
from ..registry import register
from .helpers import require, require_bn_floor_config

SIGMA_VAR_EPS = 1e-6   # variance = sigma_hat^2 + eps, so log sigma^2 (and the KL) stay finite at sigma_hat = 0


class SuBNHead(PosteriorHead):
    """Su (2020): BN without affine on the mu branch and on the sigma branch, scaled by
    gamma_mu = sqrt(tau + (1 - tau) sigmoid(theta)) and gamma_sigma = sqrt((1 - tau) sigmoid(-theta)),
    theta learned per dimension (init 0), so gamma_mu^2 + gamma_sigma^2 = 1 and the aggregate posterior has
    the prior's second moment.

    Choice of the sigma branch (the post leaves it open): as in Su's Keras snippet, the BN-ed branch is the
    standard deviation itself, sigma_hat = gamma_sigma * BN(s(x)) (it may be negative; only its square
    matters), with variance sigma_hat^2 + 1e-6 so that log sigma^2 is finite. It is not treated as log sigma^2
    (a different model some ports use). BN eps 1e-8 as in the post; running statistics at evaluation."""

    def __init__(self, hidden: int, nz: int, tau: float):
        super().__init__(hidden, 2 * nz)
        self.bn_mu = nn.BatchNorm1d(nz, affine=False, eps=1e-8)
        self.bn_sigma = nn.BatchNorm1d(nz, affine=False, eps=1e-8)
        self.theta = nn.Parameter(torch.zeros(nz))
        self.tau = tau

    def scales(self) -> tuple[torch.Tensor, torch.Tensor]:
        s = torch.sigmoid(self.theta)
        return torch.sqrt(self.tau + (1 - self.tau) * s), torch.sqrt((1 - self.tau) * (1 - s))

    def transform(self, stats: torch.Tensor) -> Gaussian:
        m, s = stats.chunk(2, -1)
        g_mu, g_sigma = self.scales()
        mu = g_mu * self.bn_mu(m)
        sigma = g_sigma * self.bn_sigma(s)
        return Gaussian(mu, torch.log(sigma.pow(2) + SIGMA_VAR_EPS))


@register("bnvae-su", aliases=("bn-vae-su", "su"))
class BNVAESu(Method):
    """BN-VAE, Su's variant (Su 2020): BN on mu and sigma, γ_μ² = τ + (1−τ)σ(θ) with τ=0.5, θ learned; E[KL] >= nz·τ/2.

    The sigma branch is the standard deviation (Su's snippet), not log sigma^2: see SuBNHead. As for `bnvae`,
    the encoder uses PyTorch's default initialisation by default (Su's Keras code used Keras defaults), since
    the floor needs the raw batch variance well above BN's eps. Training batches of fewer than 2 sentences
    are skipped; the harness's KL annealing applies."""

    min_batch_size = 2

    @dataclass(frozen=True)
    class Params(MethodParams):
        tau: float = param(0.5, "τ, the share of the prior's variance the means must keep: γ_μ² = τ + (1−τ)σ(θ); "
                                "sets the KL floor nz·τ/2 (Su: 0.5)", gt=0, lt=1)

        def validate(self) -> None:
            require(0.0 < self.tau < 1.0, f"bnvae-su.tau={self.tau!r} must be in (0, 1) (Su: 0.5); "
                                          f"it sets the KL floor nz*tau/2")

        @staticmethod
        def search_space(trial) -> dict:
            return {"tau": trial.suggest_float("tau", 0.1, 0.9)}

    def check_config(self, cfg) -> None:
        require_bn_floor_config("bnvae-su", cfg)

    def posterior_head(self, cfg: ModelConfig) -> SuBNHead:
        return SuBNHead(cfg.enc_hidden, cfg.nz, self.params.tau)   # theta starts at 0
