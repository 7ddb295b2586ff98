"""An extra optimiser step: k encoder-only updates on each batch before the joint update (a short Agg-VAE).

`train_step` receives the run's context: `ctx.optimize(loss, which="encoder")` steps the encoder's optimiser
alone (gradients clipped jointly, as every step), `ctx.step` / `ctx.steps_per_epoch` drive the KL schedule.
"""
from dataclasses import dataclass

from collapse_bench.method import Method, MethodParams, param
from collapse_bench.methods.helpers import require
from collapse_bench.registry import register


@register("example-encfirst")
class EncoderFirstVAE(Method):
    """Encoder-first VAE (collapse-bench guide, example 3): k encoder-only updates on each batch before the joint one, so q(z|x) does not lag."""
    relative_cost = 2.0                     # k + 1 backward passes per step at the default k = 1

    @dataclass(frozen=True)
    class Params(MethodParams):
        encoder_steps: int = param(1, "k, encoder-only updates on each batch before the joint one", ge=1)

        def validate(self) -> None:
            require(self.encoder_steps >= 1, f"example-encfirst.encoder_steps={self.encoder_steps!r} must be >= 1")

        @staticmethod
        def search_space(trial) -> dict:
            return {"encoder_steps": trial.suggest_int("encoder_steps", 1, 5)}

    def train_step(self, ctx, batch) -> dict:
        w = self.kl_weight(ctx.step, ctx.steps_per_epoch, ctx.cfg.train)
        for _ in range(self.params.encoder_steps):
            ctx.optimize(self.loss(ctx.model, batch, w).total, which="encoder")
        out = self.loss(ctx.model, batch, w)
        ctx.optimize(out.total)
        return {"loss": out.total.item(), "rec": out.rec.mean().item(), "kl": out.kl.mean().item(), "kl_weight": w}
