"""A loss term: the capacity-controlled objective of Burgess et al. (2018), rec + γ·|KL − C|.

The KL is pulled towards a capacity of C nats per sentence instead of towards 0, so the decoder cannot make z
useless for free. The whole change is `loss`: the shared ELBO body with the KL weight at 0 and the new term added.
"""
from dataclasses import dataclass

from collapse_bench.method import Method, MethodParams, param
from collapse_bench.methods.helpers import require
from collapse_bench.registry import register


@register("example-capacity")
class CapacityVAE(Method):
    """Capacity-controlled VAE (Burgess et al. 2018): rec + γ|KL − C| pulls each sentence's KL to C nats."""

    @dataclass(frozen=True)
    class Params(MethodParams):
        capacity: float = param(5.0, "C, the KL each sentence is pulled to, in nats", ge=0)
        gamma: float = param(1.0, "γ, the weight of |KL − C| in the loss", gt=0)

        def validate(self) -> None:
            require(self.capacity >= 0, f"example-capacity.capacity={self.capacity!r} must be >= 0 nats")
            require(self.gamma > 0, f"example-capacity.gamma={self.gamma!r} must be > 0")

        @staticmethod
        def search_space(trial) -> dict:
            return {"capacity": trial.suggest_float("capacity", 1.0, 15.0)}

    def loss(self, model, batch, kl_weight):
        post = model.posterior(batch.tokens)
        term = self.params.gamma * (post.kl() - self.params.capacity).abs()
        return self.elbo_loss(model, batch.tokens, post, 0.0, extra_terms=term)
