import math
from dataclasses import dataclass

from ..config import TrainConfig
from ..method import Method, MethodParams, param
from ..registry import register
from .helpers import Pretrain, pretrain_encoder, require, require_pretrain, require_rate


def cyclical_schedule(t: int, period: float, ratio: float, start: float = 0.0) -> float:
    """Fu et al. 2019: with iteration t = 1, 2, ..., tau = mod(t-1, ceil(period)) / period; the weight rises linearly
    from `start` to 1 while tau <= R and stays at 1 for the rest of the cycle. Computed per iteration, so a
    cycle restarts at `start` for one iteration only (no weight pinned for a whole restart epoch)."""
    tau = ((t - 1) % math.ceil(period)) / period
    if tau > ratio:
        return 1.0
    return min(1.0, start + (1.0 - start) * tau / ratio)


@register("cyclic", aliases=("cyclical",))
class Cyclic(Method):
    """Cyclical KL annealing (Fu et al. 2019): 10-epoch cycles, the weight rising linearly 0 -> 1 over the first half.

    The cycle length is a number of epochs, not a share of the run, as in Fu et al.'s LSTM language-model code
    (cycles of 10 epochs with 5 of warm-up, M = 4 over 40 epochs) and the BN-VAE code's `--cycle` (epochs): a run
    of a different length keeps the cycle the papers used. A run shorter than one cycle is plain annealing."""

    @dataclass(frozen=True)
    class Params(MethodParams):
        cycle_epochs: float = param(10.0, "length of one cycle in epochs, T/M (Fu et al.'s text setup: 10)", gt=0)
        ratio: float = param(0.5, "R, the share of each cycle over which the KL weight rises; 1 for the rest",
                             gt=0, le=1)
        kl_start: float = param(0.0, "KL weight at the start of each cycle (Fu et al.'s f(τ) = τ/R starts at 0)",
                                ge=0, le=1)
        pretrain: Pretrain = param("none", "'ae': encoder from a trained AE, decoder fresh (Li et al.); 'none': "
                                           "from scratch")

        def validate(self) -> None:
            require(self.cycle_epochs > 0, f"cyclic.cycle_epochs={self.cycle_epochs!r} must be > 0 (Fu et al.: 10)")
            require(0.0 < self.ratio <= 1.0, f"cyclic.ratio={self.ratio!r} must be in (0, 1] (Fu et al.: 0.5)")
            require_rate("cyclic.kl_start", self.kl_start)
            require_pretrain("cyclic", self.pretrain)

        @staticmethod
        def search_space(trial) -> dict:
            return {"cycle_epochs": trial.suggest_float("cycle_epochs", 1.0, 20.0),
                    "ratio": trial.suggest_float("ratio", 0.25, 1.0)}

    _iters_per_epoch: int | None = None

    def before_training(self, ctx) -> None:
        # cycles restart on epoch boundaries: count the batches an epoch actually draws
        self._iters_per_epoch = len(ctx.train_batches)
        pretrain_encoder(ctx, self.params.pretrain)

    def period(self, steps_per_epoch: float) -> float:
        return self.params.cycle_epochs * (self._iters_per_epoch or steps_per_epoch)

    def kl_weight(self, step: int, steps_per_epoch: float, cfg: TrainConfig) -> float:
        p = self.params
        # Trainer.step counts from 0 before the first update; Fu et al. count t from 1.
        return cyclical_schedule(step + 1, self.period(steps_per_epoch), p.ratio, p.kl_start)
