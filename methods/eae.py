import math
from dataclasses import dataclass

import torch
import torch.nn as nn
from scipy.special import digamma, gammaln

from ..config import ModelConfig, TrainConfig
from ..method import Loss, Method, MethodParams, param
from ..model import PosteriorHead
from ..posterior import Gaussian
from ..registry import register
from .helpers import require


def kl_entropy(z: torch.Tensor, k: int = 1) -> torch.Tensor:
    """Kozachenko-Leonenko k-nearest-neighbour entropy estimate (nats) of the N codes z [N, d]:
    psi(N) - psi(k) + log V_d + (d/N) sum_i log rho_{i,k}, with rho_{i,k} the Euclidean distance from z_i to
    its k-th nearest other code and V_d the volume of the unit d-ball. k is capped at N - 1; distances are
    floored at 1e-6 so that duplicate sentences (identical codes) cannot send the estimate to -inf."""
    n, d = z.shape
    k = min(k, n - 1)
    dist = torch.cdist(z, z)
    dist = dist + torch.diag(torch.full((n,), float("inf"), dtype=z.dtype, device=z.device))
    rho = dist.topk(k, dim=1, largest=False).values[:, -1].clamp(min=1e-6)
    log_vd = (d / 2) * math.log(math.pi) - gammaln(d / 2 + 1)
    return digamma(n) - digamma(k) + log_vd + d * torch.log(rho).mean()


class CodeHead(PosteriorHead):
    """Linear map (no bias) to a deterministic code, then BatchNorm1d without affine (zero mean, unit variance
    per dimension within a training batch; running statistics at evaluation). The posterior handed to the
    harness is the scoring proposal N(code, s^2 I) of EAE's docstring."""

    def __init__(self, hidden: int, nz: int, proposal_std: float):
        super().__init__(hidden, nz)
        self.bn = nn.BatchNorm1d(nz, affine=False)
        self.log_var = 2 * math.log(proposal_std)

    def transform(self, stats: torch.Tensor) -> Gaussian:
        code = self.bn(stats)
        return Gaussian(code, torch.full_like(code, self.log_var))


@register("eae", aliases=("entropic-ae",))
class EntropicAE(Method):
    """Entropic autoencoder (Ghose et al. 2020): BN'd deterministic code, loss rec − λ·(kNN entropy of the batch).

    Training: z = BN(W h(x)) (no affine), loss = mean_i rec_i(z_i) - lambda * H_KL(z_batch), k = 1 nearest
    neighbour; no KL term, no annealing, no sampling. Scoring proposal (EAE has no q(z|x)): every metric
    (IW-NLL, ELBO, KL, MI, AU, probe) treats q(z|x) = N(code(x), s^2 I) with s = proposal_std (default 0.1)
    and the N(0, I) prior; the IW-NLL is then a valid upper bound on -log p(x) of the generative model
    z ~ N(0, I), x ~ p(x|z), but how tight it is depends on s. Model selection: validation reconstruction (as
    for the AE), which draws z from that proposal."""

    min_batch_size = 2
    select_on = "recon"

    @dataclass(frozen=True)
    class Params(MethodParams):
        lam: float = param(1.0, "λ, weight of the batch's kNN entropy subtracted from the reconstruction; 0 is "
                                 "a BN autoencoder (the paper's value was not verified)", ge=0)
        k: int = param(1, "which nearest neighbour the Kozachenko-Leonenko entropy estimate uses", ge=1)
        proposal_std: float = param(0.1, "s of the scoring proposal N(code, s²I) that stands in for q(z|x) in "
                                         "every metric", gt=0)

        def validate(self) -> None:
            require(self.lam >= 0, f"eae.lam={self.lam!r} must be >= 0 (0 is a BN autoencoder; try 1)")
            require(self.k >= 1, f"eae.k={self.k!r} must be >= 1 (1 is typical)")
            require(self.proposal_std > 0, f"eae.proposal_std={self.proposal_std!r} must be > 0 (e.g. 0.1)")

        @staticmethod
        def search_space(trial) -> dict:
            return {"lam": trial.suggest_float("lam", 0.1, 10.0, log=True),
                    "proposal_std": trial.suggest_float("proposal_std", 0.03, 0.5, log=True)}

    def posterior_head(self, cfg: ModelConfig) -> CodeHead:
        return CodeHead(cfg.enc_hidden, cfg.nz, self.params.proposal_std)

    def kl_weight(self, step: int, steps_per_epoch: float, cfg: TrainConfig) -> float:
        return 0.0

    def loss(self, model, batch, kl_weight: float) -> Loss:
        post = model.posterior(batch.tokens)
        code = post.mu
        rec = -model.decoder.log_prob(batch.tokens, code.unsqueeze(1)).squeeze(1)
        entropy = kl_entropy(code, self.params.k)
        total = rec.mean() - self.params.lam * entropy
        return Loss(total, rec.detach(), post.kl().detach(), {"entropy": entropy.item()})
