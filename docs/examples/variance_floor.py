"""A posterior transform: every posterior variance kept above a floor, σ² = floor + softplus(raw).

A remedy that changes q(z|x) gives the model a `PosteriorHead`: the head's linear map (the part AE pretraining
copies) is built by the base class; `transform` turns its output into a posterior. The model initialises the head
after the shared encoder and decoder, so a seed gives every method the same starting weights.
"""
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from collapse_bench.method import Method, MethodParams, param
from collapse_bench.methods.helpers import require
from collapse_bench.model import PosteriorHead
from collapse_bench.posterior import Gaussian
from collapse_bench.registry import register


class FloorHead(PosteriorHead):
    def __init__(self, hidden: int, nz: int, floor: float):
        super().__init__(hidden, 2 * nz)           # mean and raw variance: one linear map, no bias
        self.floor = floor

    def transform(self, stats: torch.Tensor) -> Gaussian:
        mu, raw = stats.chunk(2, -1)
        return Gaussian(mu, torch.log(self.floor + F.softplus(raw)))


@register("example-varfloor")
class VarianceFloorVAE(Method):
    """Variance-floor VAE (collapse-bench guide, example 2): σ² >= a floor in every dimension, so q(z|x) can never become a point mass."""

    @dataclass(frozen=True)
    class Params(MethodParams):
        floor: float = param(0.05, "the smallest posterior variance σ² allowed", gt=0, lt=1)

        def validate(self) -> None:
            require(0 < self.floor < 1, f"example-varfloor.floor={self.floor!r} must be in (0, 1)")

        @staticmethod
        def search_space(trial) -> dict:
            return {"floor": trial.suggest_float("floor", 0.01, 0.5, log=True)}

    def posterior_head(self, cfg) -> FloorHead:
        return FloorHead(cfg.enc_hidden, cfg.nz, self.params.floor)

    def invariant(self, run) -> None:
        run.model.eval()
        with torch.no_grad():
            for batch in run.train_batches:
                low = float(run.model.posterior(batch.tokens).logvar.exp().min())
                assert low >= self.params.floor * (1 - 1e-5), f"a posterior variance {low:.3g} is below the floor"
