"""Posterior families q(z|x) behind one interface.

Every posterior holds parameters with a leading batch dimension B. `log_prob` broadcasts z of shape
[..., B, nz] against them; `cross_log_prob` scores M codes against all B posteriors (for the MI mixture).
"""
from __future__ import annotations

import dataclasses
import math

import torch

LOG_2PI = math.log(2 * math.pi)


class Posterior:
    nz: int

    def rsample(self, n: int) -> torch.Tensor:            # [B, n, nz], reparameterised where possible
        raise NotImplementedError

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:  # z [..., B, nz] -> [..., B]
        raise NotImplementedError

    def prior_log_prob(self, z: torch.Tensor) -> torch.Tensor:  # z [..., nz] -> [...]
        raise NotImplementedError

    def kl(self) -> torch.Tensor:                         # [B] KL(q(z|x) || p(z)), closed form
        raise NotImplementedError

    def entropy(self) -> torch.Tensor:                    # [B] exact differential entropy of q(z|x)
        raise NotImplementedError

    @property
    def mean(self) -> torch.Tensor:                       # [B, nz] E_q[z], the probe's feature
        raise NotImplementedError

    @property
    def au_feature(self) -> torch.Tensor:                 # [B, nz] whose variance over the data counts active units
        return self.mean

    @property
    def mode(self) -> torch.Tensor:                       # [B, nz] the most probable z (text evidence decodes it)
        return self.mean

    def sample_prior(self, n: int) -> torch.Tensor:       # [n, nz] z ~ p(z), the prior `prior_log_prob` scores
        raise NotImplementedError

    def to_support(self, z: torch.Tensor) -> torch.Tensor:   # z [..., nz] -> the nearest point where p(z) lives
        return z

    def cross_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log q(z_i | x_j) for codes z [M, nz] against every posterior j: [M, B]."""
        return self.log_prob(z.unsqueeze(1))

    # Posteriors are dataclasses of batch-first tensors (plus constants), so these work for every family.
    def _map(self, fn) -> "Posterior":
        return dataclasses.replace(self, **{f.name: fn(getattr(self, f.name)) for f in dataclasses.fields(self)
                                            if isinstance(getattr(self, f.name), torch.Tensor)})

    def detach(self) -> "Posterior":
        return self._map(lambda t: t.detach())

    def __getitem__(self, idx) -> "Posterior":
        return self._map(lambda t: t[idx])

    @staticmethod
    def cat(posts: list["Posterior"]) -> "Posterior":
        first = posts[0]
        tensors = {f.name: torch.cat([getattr(p, f.name) for p in posts]) for f in dataclasses.fields(first)
                   if isinstance(getattr(first, f.name), torch.Tensor)}
        return dataclasses.replace(first, **tensors)


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    return -0.5 * (z.shape[-1] * LOG_2PI + z.pow(2).sum(-1))


@dataclasses.dataclass
class Gaussian(Posterior):
    """Diagonal Gaussian with a standard-normal prior."""
    mu: torch.Tensor
    logvar: torch.Tensor

    @property
    def nz(self) -> int:
        return self.mu.shape[-1]

    @property
    def mean(self) -> torch.Tensor:
        return self.mu

    def rsample(self, n: int) -> torch.Tensor:
        eps = torch.randn(self.mu.shape[0], n, self.nz, device=self.mu.device, dtype=self.mu.dtype)
        return self.mu.unsqueeze(1) + eps * (0.5 * self.logvar).exp().unsqueeze(1)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return -0.5 * (self.nz * LOG_2PI + self.logvar.sum(-1) + ((z - self.mu).pow(2) / self.logvar.exp()).sum(-1))

    def prior_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return standard_normal_log_prob(z)

    def sample_prior(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.nz, device=self.mu.device, dtype=self.mu.dtype)

    def kl_per_dim(self) -> torch.Tensor:
        return 0.5 * (self.mu.pow(2) + self.logvar.exp() - self.logvar - 1)

    def kl(self) -> torch.Tensor:
        return self.kl_per_dim().sum(-1)

    def entropy(self) -> torch.Tensor:
        return 0.5 * (self.nz * (LOG_2PI + 1) + self.logvar.sum(-1))

    def cross_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        # sum_d (z-mu)^2/var expanded into three matrix products: O(M*B*nz) in BLAS, no [M, B, nz] tensor.
        # In float64: the expansion cancels large terms when posteriors are sharp (var ~ 1e-5).
        z, mu, logvar = z.double(), self.mu.double(), self.logvar.double()
        inv_var = (-logvar).exp()
        quad = z.pow(2) @ inv_var.T - 2 * z @ (mu * inv_var).T + (mu.pow(2) * inv_var).sum(-1)
        return -0.5 * (self.nz * LOG_2PI + logvar.sum(-1) + quad)
