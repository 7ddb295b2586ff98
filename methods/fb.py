from dataclasses import dataclass
from typing import Literal

import torch

from ..method import Method, MethodParams, param
from ..posterior import Gaussian
from ..registry import register
from .helpers import Pretrain, pretrain_encoder, require, require_pretrain


@register("fb", aliases=("free-bits",))
class FreeBits(Method):
    """Free bits (Li et al. 2019; Kingma et al. 2016): a KL floor per sentence and dimension (default) or per batch.

    mode='li' (Li et al. 2019, PRE/BNV `--fb 2`): the penalty of sentence i is sum_j max(KL_ij, target/nz), so a
    dimension whose KL is below target/nz gets no gradient (PRE drops such terms with a 0/1 mask: the same
    gradient; the max form keeps the penalty's value meaningful).
    mode='kingma' (Kingma et al. 2016): z is split into `groups` equal groups and the penalty is
    sum_g max(target/groups, E_batch[KL_g]): the KL is averaged over the minibatch first, then clamped.
    The reported KL (ELBO, metrics) is always the true KL. By default (pretrain='ae') this is Li et al.'s AE+FB, the
    FB that the BN-VAE table and Li et al. recommend: encoder from a trained AE, decoder re-initialised;
    pretrain='none' is the from-scratch row (AU 3 on Yahoo). KL weight: the harness's annealing schedule."""

    @dataclass(frozen=True)
    class Params(MethodParams):
        target: float = param(4.0, "λ, the free KL in nats for the whole code, below which the KL gets no "
                                    "gradient ('FB (4)' of the BN-VAE table)", ge=0)
        mode: Literal["li", "kingma"] = param(
            "li", "'li': floor target/nz per sentence and dimension (Li et al.); 'kingma': floor per group on the "
                  "batch-mean KL (Kingma et al.)")
        groups: int = param(0, "kingma only: number of equal groups of z, a divisor of model.nz; 0 = one group "
                               "per dimension", ge=0)
        pretrain: Pretrain = param("ae", "'ae': Li et al.'s recommended AE+FB (encoder from a trained AE, decoder "
                                         "fresh); 'none': the from-scratch FB row")

        def validate(self) -> None:
            require(self.target >= 0, f"fb.target={self.target!r} must be >= 0 nats (BN-VAE table: 4 or 5)")
            require(self.mode in ("li", "kingma"), f"fb.mode={self.mode!r}: choose 'li' or 'kingma'")
            require(self.groups >= 0, f"fb.groups={self.groups!r} must be >= 0 (0 = one group per dimension)")
            require_pretrain("fb", self.pretrain)

        @staticmethod
        def search_space(trial) -> dict:
            return {"target": trial.suggest_float("target", 1.0, 10.0)}

    def check_config(self, cfg) -> None:
        nz, groups = cfg.model.nz, self.params.groups or cfg.model.nz
        require(self.params.mode == "li" or nz % groups == 0,
                f"fb.groups={groups} does not divide model.nz={nz}; choose a divisor of nz (or 0)")

    def before_training(self, ctx) -> None:
        pretrain_encoder(ctx, self.params.pretrain)

    def kl_penalty(self, post: Gaussian) -> torch.Tensor:
        kl = post.kl_per_dim()                                   # [B, nz]
        nz = kl.shape[-1]
        if self.params.mode == "li":
            return kl.clamp(min=self.params.target / nz).sum(-1)
        groups = self.params.groups or nz
        kl_g = kl.view(kl.shape[0], groups, nz // groups).sum(-1)    # [B, G]
        floor = self.params.target / groups
        # sum_g max(floor, mean_B KL_g), written per sentence: its batch mean is the Kingma penalty and its
        # gradient flows only through groups whose batch-mean KL exceeds the floor.
        active = (kl_g.mean(0) > floor).to(kl_g.dtype).detach()
        return (active * kl_g + (1 - active) * floor).sum(-1)
