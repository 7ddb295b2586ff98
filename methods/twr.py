from dataclasses import dataclass
from typing import Literal

import torch

from ..method import Loss, Method, MethodParams, param
from ..posterior import Gaussian
from ..registry import register
from .helpers import require

Partial = Literal["none", "last1", "last25", "last50", "last75"]
_FRACTION = {"last25": 0.25, "last50": 0.5, "last75": 0.75}


def regularised_steps(length: int, partial: str) -> int:
    """How many of the last time steps carry a KL (the authors' encoder.py: `round(L * fraction)`; last1: 1)."""
    if partial == "none":
        return length
    if partial == "last1":
        return 1
    return round(length * _FRACTION[partial])


@register("twr", aliases=("twr-vae", "timestep-wise"))
class TWRVAE(Method):
    """TWR-VAE (Li et al. 2020): a posterior at every encoder time step, the mean of their KLs in the loss; z from the last.

    As the authors' code (ruizheliUOA/TWR-VAE lang_model/encoder.py, main.py; z_type 'normal'): the same linear map
    turns the encoder's hidden state after every token into (μ_t, log σ²_t); the decoder reads a sample of the last
    step's posterior, which is also the q(z|x) every metric scores; the loss is rec + (1/T) Σ_t KL(q_t || p), the
    KLs' mean over the T regularised steps: their `Encoder.loss` sums over steps, batch and dimensions and divides by
    `mu.shape[0]`, and their mu is time-major [T, B, nz], so it divides by the number of steps, not by the batch
    (step-level parity, reports/parity/step_parity_remedies.py, found it: the sum made the penalty T times theirs).
    With `partial` (their -par --partial_type) only the last round(T·fraction) steps are regularised, and the mean is
    over them. The penalty takes the harness's annealed weight; the authors' recipe (Adam 1e-4, weight 1, no
    annealing) is the `twr` preset. Their loss sums over the batch where ours averages (the same gradient up to the
    factor B; with Adam, the same update up to its eps and weight decay). Their batches are padded and the padded
    steps' KLs count too; here batches are single-length, so no padding."""

    relative_cost = 1.0        # step time 0.96x vanilla's (benchmarks/test_method_ratios.py --quick, 2-core CPU)

    @dataclass(frozen=True)
    class Params(MethodParams):
        partial: Partial = param("none", "which steps carry a KL: 'none' = every step (the README's main model), or "
                                         "the last 1 / 25% / 50% / 75% of them (TWR-VAE-LSTM-lastN)")

        def validate(self) -> None:
            require(self.partial in ("none", "last1", "last25", "last50", "last75"),
                    f"twr.partial={self.partial!r}: choose 'none' (every step, the paper's main model), 'last1', "
                    f"'last25', 'last50' or 'last75'")

        @staticmethod
        def search_space(trial) -> dict:
            return {"partial": trial.suggest_categorical("partial", ["none", "last25", "last50", "last75"])}

    def step_posteriors(self, model, tokens: torch.Tensor) -> Gaussian:
        """q_t(z|x_{<=t}) for every step: Gaussian with mu, logvar [B, L, nz]."""
        return model.head(model.encoder.states(tokens))

    def step_kl(self, steps: Gaussian) -> torch.Tensor:
        """[B] the mean of the regularised steps' KLs (the authors' Encoder.loss)."""
        kl = steps.kl()                                   # [B, L]
        return kl[:, kl.shape[1] - regularised_steps(kl.shape[1], self.params.partial):].mean(-1)

    def loss(self, model, batch, kl_weight: float) -> Loss:
        steps = self.step_posteriors(model, batch.tokens)
        post = steps[:, -1]
        penalty = self.step_kl(steps)
        return self.elbo_loss(model, batch.tokens, post, 0.0, extra_terms=kl_weight * penalty,
                              extra={"kl_steps": penalty.mean().item()})

    def invariant(self, run) -> None:
        """On the longest training batch: the posterior at step t is the one the encoder gives the prefix x_{<=t}
        (every step's KL is of a real posterior), the last step's is the q(z|x) that is scored, and the loss's penalty
        is the mean of the regularised steps' KLs, each >= 0."""
        model = run.model
        batch = max(run.train_batches, key=lambda b: (b.tokens.shape[1], b.size))
        with torch.no_grad():
            steps = self.step_posteriors(model, batch.tokens)
            length = batch.tokens.shape[1]
            for t in sorted({0, length // 2, length - 1}):
                prefix = model.posterior(batch.tokens[:, :t + 1])
                assert torch.allclose(steps.mu[:, t], prefix.mu, atol=1e-5), f"step {t}'s mean is not its prefix's"
            assert torch.allclose(steps.mu[:, -1], model.posterior(batch.tokens).mu, atol=1e-5)
            kl = steps.kl()
            assert bool((kl >= -1e-5).all()), "a per-step KL is negative"
            k = regularised_steps(length, self.params.partial)
            assert torch.allclose(self.step_kl(steps), kl[:, length - k:].sum(-1) / k), "penalty is not the steps' KL mean"
