"""Shared pieces of the remedies: validation helpers, encoder initialisation, and the AE-pretrained
encoder (`pretrain=ae`) of Li et al. 2019 that several remedies offer. Registers no method."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Literal

import torch

from ..method import ParamError

if TYPE_CHECKING:
    from ..model import TextVAE
    from ..train import Trainer

Pretrain = Literal["none", "ae"]


def require(cond: bool, message: str) -> None:
    """Raise ParamError (a ValueError) with `message`, which should say how to fix the value."""
    if not cond:
        raise ParamError(message)


def require_rate(name: str, value: float) -> None:
    require(0.0 <= value <= 1.0, f"{name}={value!r} is outside [0, 1]; set {name} to a rate between 0 and 1")


def require_bn_floor_config(method: str, cfg) -> None:
    """BN on the raw means bounds the KL only while their batch variance stays far above BN's eps (1e-5)."""
    require(cfg.train.optimizer == "sgd",
            f"{method} with train.optimizer={cfg.train.optimizer!r}: Adam shrinks the raw means' batch variance below "
            f"BN's eps and the KL floor is lost (KL -> 0); use the paper's optimiser: --set train.optimizer=sgd "
            f"--set train.lr=1.0")
    require(cfg.model.encoder_init == "pytorch",
            f"{method} with model.encoder_init='uniform': U(+-0.01) starts the raw means with batch variance ~1e-10, "
            f"far below BN's eps, and the KL floor is void; use --set model.encoder_init=pytorch (the BN-VAE code's)")


def require_pretrain(method: str, value: str) -> None:
    require(value in ("none", "ae"), f"{method}.pretrain={value!r}: choose 'none' or 'ae'")


# --------------------------------------------------------------------------- pretrain=ae (Li et al. 2019)

class PretrainAE:
    """Mixin for methods with a `pretrain` param: with pretrain='ae', before training, train the registered
    `ae` method on the same corpus, size config and seed, copy its encoder into this model and keep this
    model's freshly initialised decoder (Li et al.'s `--reset_dec`). Runs inside Trainer.fit, so the AE's
    time is part of the cell's train_seconds (as AE+FB's time includes pretraining in the BN-VAE paper)."""

    pretrain_info: dict[str, Any] | None = None

    def before_training(self, trainer: "Trainer") -> None:
        super().before_training(trainer)
        if getattr(self.params, "pretrain", "none") == "ae":
            self.pretrain_info = pretrain_encoder(trainer)


def pretrain_encoder(trainer: "Trainer") -> dict[str, Any]:
    from .. import registry
    from ..train import Trainer

    t0 = time.perf_counter()
    ae_cls = registry.get("ae")
    # A fresh Trainer reseeds the global RNGs with the cell's seed, so the AE is exactly the `ae` cell's model.
    ae = Trainer(ae_cls(), trainer.cfg, trainer.corpus, seed=trainer.seed, device=str(trainer.device))
    timing = ae.fit()
    copied = copy_encoder(ae.model, trainer.model)
    trainer.model.train()
    return {"seconds": time.perf_counter() - t0, "ae_steps": timing["steps"], "ae_epochs": timing["epochs"],
            "copied": copied}


@torch.no_grad()
def copy_encoder(src: "TextVAE", dst: "TextVAE") -> list[str]:
    """Copy the AE encoder (embedding + LSTM) and the head's linear map into `dst`; the decoder is untouched.

    The head's linear layer is copied whole where the shapes agree (Gaussian-type heads: mean and log-variance
    rows), and only its mean rows (the first nz) where `dst` maps the state to nz outputs (the vMF direction).
    Anything else in `dst`'s head (batch norm, learned scales) keeps its initial value, as BN-VAE resets BN."""
    dst.encoder.load_state_dict(src.encoder.state_dict())
    copied = [f"encoder.{k}" for k in src.encoder.state_dict()]
    w_src = src.head.linear.weight
    w_dst = dst.head.linear.weight
    nz = dst.cfg.nz
    if w_dst.shape == w_src.shape:
        w_dst.copy_(w_src)
        copied.append("head.linear.weight")
    elif w_dst.shape == (nz, w_src.shape[1]):
        w_dst.copy_(w_src[:nz])
        copied.append("head.linear.weight[:nz] (mean path)")
    else:
        raise ValueError(f"cannot copy the AE head {tuple(w_src.shape)} into a head of shape {tuple(w_dst.shape)}")
    return copied
