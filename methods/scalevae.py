import copy
from dataclasses import dataclass

import torch

from ..config import ModelConfig
from ..method import Loss, Method, MethodParams, param
from ..model import GaussianHead
from ..posterior import Gaussian
from ..registry import register
from .helpers import require, require_rate


class ScaleHead(GaussianHead):
    """He et al.'s Gaussian head plus the running per-dimension scale factors (a buffer, so a checkpoint carries
    them) that the decoder's posterior uses at evaluation."""

    def __init__(self, hidden: int, nz: int):
        super().__init__(hidden, nz)
        self.register_buffer("scale", torch.ones(nz))


def scale_factors(mu: torch.Tensor, target: float, eps: float = 1e-8) -> torch.Tensor:
    """f_j = max(1, target / sd_j), sd_j the batch standard deviation of the means' dimension j (no gradient)."""
    sd = mu.detach().std(0, unbiased=False)
    return torch.clamp(target / (sd + eps), min=1.0)


@register("scalevae", aliases=("scale-vae",))
class ScaleVAE(Method):
    """Scale-VAE (Song et al. 2024): the decoder reads z with per-dimension scaled-up means; KL on the unscaled q.

    No code was found; from the paper's abstract (LREC-COLING 2024, pp. 14347-14357): "each dimension of the mean
    ... is multiplied by a factor to keep that dimension discriminative across data instances. The same factors are
    used for all data instances ... Latent variables from the scaled-up posteriors are fed into the generation
    network, but the original posteriors are still used to calculate the KL term." Assumed here (the paper's exact
    factor was not available): f_j = max(1, target / sd_j) with sd_j the batch standard deviation of dimension j's
    means, recomputed on every training batch and held out of the gradient; z = f ⊙ μ + σ ε. For evaluation (and
    validation) the factors are a running average of the training batches' (momentum 0.1, as BN's running
    statistics), and every metric is of the posterior the decoder reads, N(f ⊙ μ, σ²): its IW-NLL is a valid bound
    with that proposal, and its KL is what the generative model pays; the training loss's KL is on N(μ, σ²).
    Consequence to know: the factors scale the means' common offset too, so while the means barely vary (early in
    training, or collapsed) f is large, the decoder's codes sit far from the prior and the scored KL and IW-NLL
    are large (a smoke check: KL ~1,300 nats); whether the paper scales about 0 or about the batch mean, and how
    it scores, could not be checked without its text."""

    min_batch_size = 2
    relative_cost = 1.0        # step time 1.00x vanilla's (benchmarks/test_method_ratios.py --quick, 2-core CPU)

    @dataclass(frozen=True)
    class Params(MethodParams):
        target: float = param(1.0, "batch standard deviation each dimension of the decoder's means is scaled up to "
                                   "(factor max(1, target/sd)); an assumption, the paper's rule was not available",
                              gt=0)
        momentum: float = param(0.1, "weight of a batch's factors in the running factors used at evaluation",
                                gt=0, le=1)

        def validate(self) -> None:
            require(self.target > 0, f"scalevae.target={self.target!r} must be > 0 (the standard deviation the "
                                     f"scaled means keep; default 1.0, the prior's)")
            require_rate("scalevae.momentum", self.momentum)
            require(self.momentum > 0, f"scalevae.momentum={self.momentum!r} must be > 0 (BN's running-average "
                                       f"weight 0.1 is the default)")

        @staticmethod
        def search_space(trial) -> dict:
            return {"target": trial.suggest_float("target", 0.1, 2.0, log=True)}

    def posterior_head(self, cfg: ModelConfig) -> ScaleHead:
        return ScaleHead(cfg.enc_hidden, cfg.nz)

    def eval_posterior(self, model, tokens: torch.Tensor) -> Gaussian:
        post = model.posterior(tokens)
        return Gaussian(post.mu * model.head.scale, post.logvar)

    def loss(self, model, batch, kl_weight: float) -> Loss:
        post = model.posterior(batch.tokens)
        f = scale_factors(post.mu, self.params.target)
        if model.training:
            with torch.no_grad():
                model.head.scale.lerp_(f, self.params.momentum)
        z = Gaussian(post.mu * f, post.logvar).rsample(1)
        rec = -model.decoder.log_prob(batch.tokens, z).squeeze(1)
        return self.elbo_loss(model, batch.tokens, post, kl_weight, rec=rec,
                              extra={"scale_mean": float(f.mean())})

    def invariant(self, run) -> None:
        """On every training batch: the loss's KL is the unscaled posterior's KL(N(μ, σ²) || N(0, I)); every factor is
        >= 1; the decoder's means f ⊙ μ have batch standard deviation >= target in every dimension whose means vary;
        the running factors used at evaluation are >= 1."""
        model = copy.deepcopy(run.model).train()
        assert float(run.model.head.scale.min()) >= 1 - 1e-6, "a running scale factor is below 1"
        with torch.no_grad():
            for batch in run.train_batches:
                post = model.posterior(batch.tokens)
                out = self.loss(model, batch, 1.0)
                assert torch.allclose(out.kl, post.kl(), rtol=1e-5, atol=1e-6), "the loss's KL is not the unscaled one"
                f = scale_factors(post.mu, self.params.target)
                sd = (post.mu * f).std(0, unbiased=False)
                moving = post.mu.std(0, unbiased=False) > 1e-3
                assert float(f.min()) >= 1.0, "a scale factor is below 1"
                assert bool((sd[moving] >= self.params.target * (1 - 1e-4)).all()), \
                    f"scaled means' batch sd {float(sd[moving].min()):.4g} < target {self.params.target}"
