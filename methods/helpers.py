"""Public helpers for method authors: parameter checks that name the fix, the BN-floor configuration check,
and Li et al.'s AE-pretrained encoder (`pretrain='ae'`). Registers no method.

    from collapse_bench.methods.helpers import require, pretrain_encoder
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import torch

from ..method import ParamError

if TYPE_CHECKING:
    from ..config import SizeConfig
    from ..context import TrainContext
    from ..model import TextVAE

Pretrain = Literal["none", "ae"]


def require(cond: bool, message: str) -> None:
    """Raise ParamError (a ValueError) with `message`, which should say how to fix the value."""
    if not cond:
        raise ParamError(message)


def require_rate(name: str, value: float) -> None:
    require(0.0 <= value <= 1.0, f"{name}={value!r} is outside [0, 1]; set {name} to a rate between 0 and 1")


def require_bn_floor_config(method: str, cfg: "SizeConfig") -> None:
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

def pretrain_encoder(ctx: "TrainContext", pretrain: str = "ae") -> dict[str, Any] | None:
    """With pretrain='ae' (call it from `before_training`): train the registered `ae` method on the same corpus,
    size config and seed, copy its encoder into this model and keep this model's freshly initialised decoder
    (Li et al.'s `--reset_dec`). It runs inside training, so the AE's time is part of the cell's train_seconds
    (as AE+FB's time includes pretraining in the BN-VAE paper). Returns what it did (None with 'none')."""
    if pretrain != "ae":
        return None
    from .. import registry    # the registry imports this package's modules; resolve `ae` only when needed

    ae_model, timing = ctx.fit_other(registry.get("ae")())
    copied = copy_encoder(ae_model, ctx.model)
    ctx.model.train()
    info = {"ae_steps": timing["steps"], "ae_epochs": timing["epochs"], "ae_seconds": timing["train_seconds"],
            "copied": copied}
    ctx.info["pretrain"] = info
    return info


@torch.no_grad()
def copy_encoder(src: "TextVAE", dst: "TextVAE") -> list[str]:
    """Copy the AE encoder (embedding + LSTM) and the head's linear map into `dst`; the decoder is untouched.

    The head's linear map (every PosteriorHead has one) is copied whole where the shapes agree (Gaussian-type
    heads: mean and log-variance rows), and only its mean rows (the first nz) where `dst` maps the state to nz
    outputs (the vMF direction). Anything else in `dst`'s head (batch norm, learned scales) keeps its initial
    value, as BN-VAE resets BN."""
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
