from dataclasses import dataclass
from typing import Literal

import torch

from ..method import Loss, Method, MethodParams, param
from ..registry import register
from .helpers import require

Kernel = Literal["rbf", "imq"]


def kernel_matrix(x: torch.Tensor, y: torch.Tensor, kind: str = "rbf") -> torch.Tensor:
    """k(x_i, y_j) for x [N, d], y [M, d] -> [N, M].

    rbf: exp(-||x - y||^2 / d^2), the bandwidth of Zhao et al.'s MMD-VAE code (ShengjiaZhao/MMD-Variational-
    Autoencoder, mmd_vae.py `compute_kernel`: exp(-mean_d (x - y)^2 / d)). imq: C / (C + ||x - y||^2) with
    C = 2 d (the prior's variance 1), Tolstikhin et al.'s WAE kernel, which Coupled-VAE's WAE also uses."""
    d = x.shape[-1]
    sq = (x.unsqueeze(1) - y.unsqueeze(0)).pow(2).sum(-1)
    if kind == "rbf":
        return torch.exp(-sq / d ** 2)
    c = 2.0 * d
    return c / (c + sq)


def mmd(x: torch.Tensor, y: torch.Tensor, kind: str = "rbf") -> torch.Tensor:
    """The biased (V-statistic) MMD^2 of Zhao et al.'s code: mean k(x,x') + mean k(y,y') - 2 mean k(x,y). It is the
    squared RKHS distance between the two samples' mean embeddings, so it is >= 0 for these positive-definite
    kernels (up to rounding)."""
    return kernel_matrix(x, x, kind).mean() + kernel_matrix(y, y, kind).mean() - 2 * kernel_matrix(x, y, kind).mean()


@register("mmd", aliases=("mmd-vae", "infovae", "info-vae"))
class MMDVAE(Method):
    """MMD-VAE / InfoVAE (Zhao et al. 2019): rec + (1-α)·KL + (α+λ-1)·MMD(q(z), p(z)); defaults α=λ=1: MMD for KL.

    InfoVAE's objective with the batch's sampled codes z ~ q(z|x) (the ones the decoder reads) as the sample of the
    aggregate posterior and as many N(0, I) draws as the prior's sample; the biased MMD estimator and the kernel
    exp(-||x-y||²/d²) of the authors' MMD-VAE code (their MNIST model: loss = nll + mmd, i.e. α = λ = 1, which
    puts the MMD in place of the KL). The KL part keeps the harness's annealing (its weight times 1-α). Their code
    is TensorFlow on images; on text (He et al.'s LSTM VAE) this is the paper's objective on our model."""

    relative_cost = 1.0        # step time 0.98x vanilla's (benchmarks/test_method_ratios.py --quick, 2-core CPU)

    @dataclass(frozen=True)
    class Params(MethodParams):
        alpha: float = param(1.0, "α: the KL enters with weight 1-α (1: no KL, Zhao et al.'s MMD-VAE)", ge=0, le=1)
        lam: float = param(1.0, "λ: the MMD enters with weight α+λ-1 (MMD-VAE: α=λ=1, weight 1)", gt=0)
        kernel: Kernel = param("rbf", "MMD kernel: 'rbf' exp(-|x-y|²/d²) (Zhao et al.'s code) or 'imq' 2d/(2d+|x-y|²)")

        def validate(self) -> None:
            require(0 <= self.alpha <= 1, f"mmd.alpha={self.alpha!r} must be in [0, 1] (the KL's weight is 1-α; "
                                          f"Zhao et al.'s MMD-VAE: 1)")
            require(self.lam > 0, f"mmd.lam={self.lam!r} must be > 0 (Zhao et al.'s MMD-VAE: 1)")
            require(self.alpha + self.lam - 1 >= 0, f"mmd: alpha + lam - 1 = {self.alpha + self.lam - 1!r} is the "
                                                    f"MMD's weight and must be >= 0 (Zhao et al.'s MMD-VAE: alpha=1, "
                                                    f"lam=1)")
            require(self.kernel in ("rbf", "imq"), f"mmd.kernel={self.kernel!r}: choose 'rbf' or 'imq'")

        @staticmethod
        def search_space(trial) -> dict:
            return {"alpha": trial.suggest_float("alpha", 0.0, 1.0),
                    "lam": trial.suggest_float("lam", 1.0, 1000.0, log=True)}

    @property
    def mmd_weight(self) -> float:
        return self.params.alpha + self.params.lam - 1.0

    def loss(self, model, batch, kl_weight: float) -> Loss:
        post = model.posterior(batch.tokens)
        z = post.rsample(1)
        rec = -model.decoder.log_prob(batch.tokens, z).squeeze(1)
        codes = z[:, 0]
        m = mmd(codes, torch.randn_like(codes), self.params.kernel)
        extra = (self.mmd_weight * m).expand(rec.shape[0])
        return self.elbo_loss(model, batch.tokens, post, kl_weight * (1.0 - self.params.alpha), rec=rec,
                              extra_terms=extra, extra={"mmd": m.item()})

    def invariant(self, run) -> None:
        """The MMD term is >= 0 (up to rounding) on every training batch of the trained model (its estimator against
        a direct double sum is a unit test: tests/test_remedies.py)."""
        model = run.model
        with torch.no_grad():
            for batch in run.train_batches:
                codes = model.posterior(batch.tokens).rsample(1)[:, 0]
                prior = torch.randn_like(codes)
                m = float(mmd(codes, prior, self.params.kernel))
                assert m >= -1e-6, f"MMD {m:.3g} < 0 on a batch of {batch.size}"
