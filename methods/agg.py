from dataclasses import dataclass
from typing import Literal

from .. import evaluate as ev
from ..method import Method, MethodParams, param
from ..registry import register
from .helpers import require


@register("agg", aliases=("agg-vae", "aggressive", "lagging"))
class AggressiveVAE(Method):
    """Agg-VAE (He et al. 2019): encoder-only inner loop before each decoder step while validation MI rises.

    Each iteration of the aggressive phase: up to `inner_steps` encoder-only updates on the annealed loss (the
    current batch, then batches drawn uniformly with the run's rng); after every `window` sub-steps the mean
    loss per predicted word of the window is compared with the previous window's and the loop stops once it
    rises. Then one update of the decoder only on the current batch. The phase ends for good after the first
    epoch whose validation MI is lower than the previous epoch's; as in He et al.'s code the first epoch is
    compared with 0, and MI is their per-batch estimate over the whole validation set in training-size batches
    (`stop_mi="full"`: the Trainer's full-set estimate on its curve subset instead — a different quantity, which
    can end the phase at another epoch: reports/parity.md, Agg-VAE). Afterwards: plain annealed VAE steps."""

    relative_cost = 4.0        # He et al.: 2.8-4.6x over a run

    @dataclass(frozen=True)
    class Params(MethodParams):
        inner_steps: int = param(100, "cap on the encoder-only sub-steps before each decoder step (He et al.: 100)",
                                 ge=1)
        window: int = param(15, "sub-steps per loss window: the inner loop stops once a window's mean loss per word "
                                "rises (He et al.: 15)", ge=1)
        stop_mi: Literal["per-batch", "full"] = param(
            "per-batch", "validation MI that ends the aggressive phase when it drops: He et al.'s per-batch "
                         "estimate, or the Trainer's full-set one (another quantity)")

        def validate(self) -> None:
            require(self.inner_steps >= 1, f"agg.inner_steps={self.inner_steps!r} must be >= 1 (He et al.: 100)")
            require(self.window >= 1, f"agg.window={self.window!r} must be >= 1 (He et al.: 15)")
            require(self.stop_mi in ("per-batch", "full"),
                    f"agg.stop_mi={self.stop_mi!r} must be 'per-batch' (He et al.'s estimator) or 'full'")

        @staticmethod
        def search_space(trial) -> dict:
            return {"inner_steps": trial.suggest_int("inner_steps", 10, 100, log=True)}

    aggressive: bool = True
    aggressive_epochs: int = 0
    _prev_mi: float = 0.0

    def before_training(self, ctx) -> None:
        self.aggressive, self.aggressive_epochs, self._prev_mi = True, 0, 0.0

    def _inner_loop(self, ctx, batch, kl_weight: float) -> int:
        p = self.params
        sub, cur, window_loss, window_words, prev = 0, batch, 0.0, 0, float("inf")
        while sub < p.inner_steps:
            out = self.loss(ctx.model, cur, kl_weight)
            ctx.optimize(out.total, which="encoder")
            sub += 1
            window_loss += out.total.item() * cur.size
            window_words += cur.size * (cur.tokens.shape[1] - 1)
            if sub % p.window == 0:
                mean = window_loss / window_words
                if mean > prev:
                    break
                prev, window_loss, window_words = mean, 0.0, 0
            cur = ctx.train_batches[int(ctx.rng.integers(len(ctx.train_batches)))].to(ctx.device)
        return sub

    def train_step(self, ctx, batch) -> dict[str, float]:
        w = self.kl_weight(ctx.step, ctx.steps_per_epoch, ctx.cfg.train)
        inner = self._inner_loop(ctx, batch, w) if self.aggressive else 0
        out = self.loss(ctx.model, batch, w)
        ctx.optimize(out.total, which="decoder" if self.aggressive else "both")
        return {"loss": out.total.item(), "rec": out.rec.mean().item(), "kl": out.kl.mean().item(),
                "kl_weight": w, "inner_steps": float(inner), "aggressive": float(self.aggressive)}

    def on_epoch_end(self, ctx, epoch: int, point: dict[str, float]) -> None:
        if not self.aggressive:
            return
        self.aggressive_epochs = epoch
        if self.params.stop_mi == "full":
            mi = point["valid_mi"]
        else:
            mi = point["valid_mi_per_batch"] = self.per_batch_validation_mi(ctx)
        if mi < self._prev_mi:
            self.aggressive = False
        self._prev_mi = mi

    def per_batch_validation_mi(self, ctx) -> float:
        with ctx.evaluating():
            posts = ev.encode_batches(self, ctx.model, ctx.valid, ctx.cfg.train.batch_size, ctx.device)
            return ev.mutual_information_per_batch(posts)
