"""What a method's training hooks and a trainer's callbacks receive: a small, documented view of one training
run (`TrainContext`), and the callback base class (`TrainCallback`). Defined apart from the Trainer so that
methods never import training code."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ContextManager

if TYPE_CHECKING:
    import numpy as np
    import torch

    from .config import SizeConfig
    from .data import Batch, Corpus, Split
    from .model import TextVAE


@dataclass
class TrainContext:
    """One training run as a method's hooks see it.

    `optimize(loss, which)` zeroes the gradients, backpropagates, clips all parameters jointly and steps the
    encoder's, the decoder's or both optimisers (`which` = "encoder" | "decoder" | "both"); `evaluating()` is a
    context (eval mode, eval precision, no gradients; train mode after); `fit_other(method)` trains another
    method on this run's corpus, configuration and seed and returns (its trained model, its timing) — AE
    pretraining uses it. `step` counts the updates made so far (0 before the first), `epoch` the current epoch
    (1-based; 0 before training)."""

    model: "TextVAE"
    cfg: "SizeConfig"
    device: "torch.device"
    rng: "np.random.Generator"              # batch order, and any random batch a method draws
    train_batches: "list[Batch]"
    valid: "Split"
    steps_per_epoch: float                  # N / batch size, as the reference code anneals
    optimize: Callable[..., None]
    evaluating: Callable[[], ContextManager]
    fit_other: Callable[..., tuple]
    step: int = 0
    epoch: int = 0
    info: dict = field(default_factory=dict)   # what a hook did, for tests and scripts (e.g. AE pretraining)


@dataclass
class TrainedRun:
    """A finished training run as a method's `invariant` sees it (the contract check builds it): the trained model
    (eval mode), the run's configuration and corpus, its training batches, and its test-set metrics."""

    method: Any
    model: "TextVAE"
    cfg: "SizeConfig"
    corpus: "Corpus"
    train_batches: "list[Batch]"
    metrics: dict


class TrainCallback:
    """Observe (or stop, by raising) a training run. Every method is optional; the Trainer calls them in order:
    `on_step` after each update, `on_curve_point` for a latent-statistics point inside an epoch,
    `before_validation` when the epoch's updates are done, `on_epoch_end` after the epoch's validation with its
    curve point (the method's own on_epoch_end has run)."""

    def on_step(self, step: int, total: int) -> None:
        pass

    def before_validation(self, epoch: int) -> None:
        pass

    def on_curve_point(self, point: dict) -> None:
        pass

    def on_epoch_end(self, epoch: int, point: dict) -> None:
        pass
