import math
from dataclasses import dataclass

from ..config import TrainConfig
from ..method import Method, MethodParams
from ..registry import register
from ._common import Pretrain, PretrainAE, require, require_pretrain, require_rate


def cyclical_schedule(t: int, total: float, cycles: int, ratio: float, start: float = 0.0) -> float:
    """Fu et al. 2019: with iteration t = 1..T, tau = mod(t-1, ceil(T/M)) / (T/M); the weight rises linearly
    from `start` to 1 while tau <= R and stays at 1 for the rest of the cycle. Computed per iteration, so a
    cycle restarts at `start` for one iteration only (no weight pinned for a whole restart epoch)."""
    period = total / cycles
    tau = ((t - 1) % math.ceil(period)) / period
    if tau > ratio:
        return 1.0
    return min(1.0, start + (1.0 - start) * tau / ratio)


@register("cyclic", aliases=("cyclical",))
class Cyclic(PretrainAE, Method):
    """Cyclical KL annealing (Fu et al. 2019): M=4 cycles over the run, linear 0 -> 1 over the first R=0.5 of each."""

    @dataclass(frozen=True)
    class Params(MethodParams):
        cycles: int = 4             # M
        ratio: float = 0.5          # R: share of each cycle spent increasing the weight
        kl_start: float = 0.0       # f(0); Fu et al.'s f(tau) = tau/R starts at 0
        pretrain: Pretrain = "none"

        def validate(self) -> None:
            require(self.cycles >= 1, f"cyclic.cycles={self.cycles!r} must be >= 1 (Fu et al.: 4)")
            require(0.0 < self.ratio <= 1.0, f"cyclic.ratio={self.ratio!r} must be in (0, 1] (Fu et al.: 0.5)")
            require_rate("cyclic.kl_start", self.kl_start)
            require_pretrain("cyclic", self.pretrain)

        @staticmethod
        def search_space(trial) -> dict:
            return {"cycles": trial.suggest_int("cycles", 1, 8),
                    "ratio": trial.suggest_float("ratio", 0.25, 1.0)}

    _iters_per_epoch: int | None = None

    def before_training(self, trainer) -> None:
        # The schedule spans the run's total iterations: epochs x the batches actually drawn per epoch.
        self._iters_per_epoch = len(trainer.train_batches)
        super().before_training(trainer)

    def total_iterations(self, steps_per_epoch: float, cfg: TrainConfig) -> float:
        return cfg.epochs * (self._iters_per_epoch or steps_per_epoch)

    def kl_weight(self, step: int, steps_per_epoch: float, cfg: TrainConfig) -> float:
        p = self.params
        # Trainer.step counts from 0 before the first update; Fu et al. count t from 1.
        return cyclical_schedule(step + 1, self.total_iterations(steps_per_epoch, cfg), p.cycles, p.ratio, p.kl_start)
