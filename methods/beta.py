from dataclasses import dataclass

from ..config import TrainConfig
from ..method import Method, MethodParams, param
from ..registry import register
from .helpers import require


@register("beta", aliases=("beta-vae",))
class BetaVAE(Method):
    """β-VAE (Higgins et al. 2017; He et al. 2019's rows): rec + β·KL with a constant β, no annealing."""

    @dataclass(frozen=True)
    class Params(MethodParams):
        beta: float = param(0.4, "constant KL weight β, no annealing; 0 is an autoencoder (BN-VAE quotes 0.4; "
                                 "He et al. report 0.2/0.4/0.6/0.8)", ge=0)

        def validate(self) -> None:
            require(self.beta >= 0, f"beta.beta={self.beta!r} must be >= 0 (0 is an autoencoder; try 0.4)")

        @staticmethod
        def search_space(trial) -> dict:
            return {"beta": trial.suggest_float("beta", 0.1, 1.0)}

    def kl_weight(self, step: int, steps_per_epoch: float, cfg: TrainConfig) -> float:
        return self.params.beta
