import copy
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import evaluate as ev
from ..config import ModelConfig
from ..method import Method, MethodParams, param
from ..model import PosteriorHead
from ..posterior import Gaussian
from ..registry import register
from .helpers import require, require_bn_floor_config, require_rate

FLOOR_UNIT = 1.0 / (2 * math.pi * math.e)      # a variance whose Gaussian has zero differential entropy


class DUHead(PosteriorHead):
    """Gaussian head with DU-VAE's two changes (the authors' GaussianLSTMEncoder.forward and GaussianEncoderBase.encode,
    SmilesDZgk/DU-VAE modules/encoders/enc_lstm.py and encoder.py):

    * BatchNorm1d on mu whose weight is learned but rescaled before every pass so that its root mean square is
      gamma (w <- w γ / rms(w), outside the graph); bias learned from 0; PyTorch's BN defaults.
    * once `floor_on` (the KL weight has reached 1): var <- var + floor, floor = delta_rate / (2πe); and in training
      the excess var - floor is dropped out (rate p_drop, survivors scaled by 1/(1-p), as torch.dropout) before the
      floor is added back. `floor_on` is a buffer, so a checkpoint carries it."""

    def __init__(self, hidden: int, nz: int, gamma: float, p_drop: float, delta_rate: float):
        super().__init__(hidden, 2 * nz)
        self.gamma, self.p_drop, self.floor = gamma, p_drop, delta_rate * FLOOR_UNIT
        self.bn = nn.BatchNorm1d(nz)
        with torch.no_grad():
            self.bn.weight.fill_(gamma)
            self.bn.bias.zero_()
        self.register_buffer("floor_on", torch.zeros((), dtype=torch.bool))

    def transform(self, stats: torch.Tensor) -> Gaussian:
        mu, logvar = stats.chunk(2, -1)
        with torch.no_grad():
            w = self.bn.weight
            w.mul_(self.gamma / w.pow(2).mean().sqrt())
        mu = self.bn(mu)
        if not bool(self.floor_on):
            return Gaussian(mu, logvar)
        var = logvar.exp()
        if self.training and self.p_drop > 0:
            var = F.dropout(var, self.p_drop, training=True)
        return Gaussian(mu, torch.log(var + self.floor))


@register("duvae", aliases=("du-vae",))
class DUVAE(Method):
    """DU-VAE (Shen et al. 2021): BN on mu with weight RMS γ; dropout on σ² and a floor once the KL weight is 1.

    As the authors' code (text.py with GaussianLSTMEncoder; the README's text command: --gamma 0.5 --p_drop 0.2
    --delta_rate 1 --kl_start 0 --warm_up 10): BN on the means is on from the start (the paper's "diversity"); the
    variance floor delta_rate/(2πe) and the dropout of the variances (the "uncertainty") switch on at the first update
    whose annealed KL weight is exactly 1 (`args.kl_weight == 1` in enc_lstm.py / encoder.py) and stay on, also for
    every evaluation afterwards (their test() runs with kl_weight 1). Dropout only in training. The KL in the loss is
    that of the dropped-out posterior (encoder.py `encode`). Their text.py skips every training batch of fewer than 16
    sentences (`if batch_data.size(0) < 16: continue`, before the KL weight is raised), so ours does too
    (min_batch_size 16: on the parity file 7 of 1,258 batches, 39 sentences per epoch) and refuses a
    train.batch_size below 16. Their encoder keeps PyTorch's initialisation (its reset_parameters only sets the BN
    weight), so as BN-VAE it needs model.encoder_init='pytorch' and SGD."""

    min_batch_size = 16        # text.py's skip of batches under 16 sentences (also keeps BN off 1-sentence batches)
    relative_cost = 1.0        # step time 0.98x vanilla's, floor and dropout on (test_method_ratios.py --quick)

    @dataclass(frozen=True)
    class Params(MethodParams):
        gamma: float = param(0.5, "γ: the RMS the BN weight on mu is rescaled to before every pass (README: 0.5)", gt=0)
        p_drop: float = param(0.2, "dropout rate on the posterior variances in training, once the KL weight is 1 "
                                   "(README: 0.2)", ge=0, lt=1)
        delta_rate: float = param(1.0, "variance floor in units of 1/(2πe), added once the KL weight is 1 "
                                       "(README: 1)", ge=0)

        def validate(self) -> None:
            require(self.gamma > 0, f"duvae.gamma={self.gamma!r} must be > 0 (the RMS of BN's weight on mu; the "
                                    f"authors' README: 0.5)")
            require_rate("duvae.p_drop", self.p_drop)
            require(self.p_drop < 1, f"duvae.p_drop={self.p_drop!r} must be < 1 (a rate of 1 drops every "
                                     f"variance; the authors' README: 0.2)")
            require(self.delta_rate >= 0, f"duvae.delta_rate={self.delta_rate!r} must be >= 0 (the floor in units "
                                          f"of 1/(2πe); the authors' README: 1)")

        @staticmethod
        def search_space(trial) -> dict:
            return {"gamma": trial.suggest_float("gamma", 0.3, 1.0),
                    "p_drop": trial.suggest_float("p_drop", 0.0, 0.5)}

    def check_config(self, cfg) -> None:
        require_bn_floor_config("duvae", cfg)
        require(cfg.train.batch_size >= self.min_batch_size,
                f"duvae with train.batch_size={cfg.train.batch_size}: the authors' text.py skips training batches of "
                f"fewer than {self.min_batch_size} sentences, so every batch would be skipped; use a batch size >= "
                f"{self.min_batch_size} (the paper's: 32)")

    def posterior_head(self, cfg: ModelConfig) -> DUHead:
        p = self.params
        return DUHead(cfg.enc_hidden, cfg.nz, p.gamma, p.p_drop, p.delta_rate)

    def train_step(self, ctx, batch) -> dict[str, float]:
        if self.kl_weight(ctx.step, ctx.steps_per_epoch, ctx.cfg.train) == 1.0:
            ctx.model.head.floor_on.fill_(True)
        return super().train_step(ctx, batch) | {"floor_on": float(ctx.model.head.floor_on)}

    def invariant(self, run) -> None:
        """BN's weight has RMS γ; on every training batch (BN on batch statistics) the BN'd means' batch second moment
        sum_j mean_b mu_bj² equals sum_j (w_j² v_j/(v_j+eps) + b_j²) (v_j the raw means' batch variance), which is
        nz·γ² + |b|² while v_j >> eps, a floor under the KL's mean term; once the floor is on (the KL weight reached
        1) no test-set posterior variance is below delta_rate/(2πe)."""
        model = copy.deepcopy(run.model).train()
        head = model.head
        rms = float(head.bn.weight.detach().pow(2).mean().sqrt())
        assert abs(rms - self.params.gamma) <= 1e-5 * self.params.gamma, f"BN weight RMS {rms} != γ {self.params.gamma}"
        with torch.no_grad():
            for batch in run.train_batches:
                raw_mu = head.linear(model.encoder(batch.tokens)).chunk(2, -1)[0]
                v = raw_mu.var(0, unbiased=False)
                w, b = head.bn.weight, head.bn.bias
                target = float((w.pow(2) * v / (v + head.bn.eps) + b.pow(2)).sum())
                second = float(head(model.encoder(batch.tokens)).mu.pow(2).sum(-1).mean())
                assert abs(second - target) <= 1e-3 * max(target, 1e-3), \
                    f"batch second moment of BN'd means {second:.5f} != {target:.5f}"
        if bool(run.model.head.floor_on):
            self._check_floor(run)

    def _check_floor(self, run) -> None:
        floor = self.params.delta_rate * FLOOR_UNIT
        device = next(run.model.parameters()).device
        with torch.no_grad():
            var = ev.encode(self, run.model.eval(), run.corpus.test, run.cfg.eval.batch_size, device).logvar.exp()
        assert float(var.min()) >= floor * (1 - 1e-5), f"test posterior variance {float(var.min()):.4g} < {floor:.4g}"
