import math
from dataclasses import dataclass
from typing import Literal

from ..config import TrainConfig
from ..method import Method, MethodParams, param
from ..registry import register
from .helpers import require, require_rate


def linear_schedule(t: float, total: float, start: float) -> float:
    """start -> 1 linearly over `total` iterations, then 1."""
    if total <= 0:
        return 1.0
    return min(1.0, start + (1.0 - start) * t / total)


def sigmoid_schedule(t: float, total: float, start: float, steepness: float) -> float:
    """start -> 1 along a logistic curve centred at total/2 with slope `steepness`/total, rescaled so that it
    is exactly `start` at t=0 and exactly 1 from t=total on (Bowman et al. give the shape, not the constants)."""
    if total <= 0:
        return 1.0
    s = lambda u: 1.0 / (1.0 + math.exp(-steepness * (u - 0.5)))  # noqa: E731
    lo, hi = s(0.0), s(1.0)
    u = min(max(t / total, 0.0), 1.0)
    return start + (1.0 - start) * (s(u) - lo) / (hi - lo)


@register("anneal", aliases=("kl-anneal", "bowman"))
class Anneal(Method):
    """KL cost annealing (Bowman et al. 2016): KL weight kl_start -> 1 along a sigmoid (default) or linear ramp."""

    @dataclass(frozen=True)
    class Params(MethodParams):
        schedule: Literal["sigmoid", "linear"] = param(
            "sigmoid", "shape of the KL weight's ramp: Bowman et al.'s sigmoid or He et al.'s linear one")
        kl_start: float = param(0.0, "KL weight at the first step (Bowman et al.'s starts at 0)", ge=0, le=1)
        warm_up: float | None = param(None, "epochs (of N/batch iterations) until the weight is 1; none: the size's "
                                            "train.warm_up", gt=0)
        steepness: float = param(10.0, "slope of the sigmoid over the warm-up (sigmoid only)", gt=0)

        def validate(self) -> None:
            require(self.schedule in ("sigmoid", "linear"),
                    f"anneal.schedule={self.schedule!r}: choose 'sigmoid' or 'linear'")
            require_rate("anneal.kl_start", self.kl_start)
            require(self.warm_up is None or self.warm_up > 0,
                    f"anneal.warm_up={self.warm_up!r} must be > 0 epochs (or none to use train.warm_up)")
            require(self.steepness > 0, f"anneal.steepness={self.steepness!r} must be > 0 (e.g. 10)")

        @staticmethod
        def search_space(trial) -> dict:
            return {"schedule": trial.suggest_categorical("schedule", ["sigmoid", "linear"]),
                    "warm_up": trial.suggest_float("warm_up", 1.0, 10.0),
                    "steepness": trial.suggest_float("steepness", 4.0, 16.0)}

    def kl_weight(self, step: int, steps_per_epoch: float, cfg: TrainConfig) -> float:
        p = self.params
        total = (cfg.warm_up if p.warm_up is None else p.warm_up) * steps_per_epoch
        if p.schedule == "linear":
            return linear_schedule(step, total, p.kl_start)
        return sigmoid_schedule(step, total, p.kl_start, p.steepness)
