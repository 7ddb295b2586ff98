"""The Method base class: the hooks a posterior-collapse remedy overrides.

The default implementation is the vanilla VAE of He et al. 2019 with the protocol's linear KL annealing.
"""
from __future__ import annotations

import dataclasses
import inspect
import math
import types
import typing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from .config import ModelConfig, SizeConfig, TrainConfig
from .context import TrainContext, TrainedRun
from .model import PosteriorHead, TextVAE
from .posterior import Posterior

if TYPE_CHECKING:
    from .data import Batch


class ParamError(ValueError):
    pass


def param(default: Any, meaning: str, *, ge: float | None = None, gt: float | None = None,
          le: float | None = None, lt: float | None = None) -> Any:
    """A MethodParams field with its meaning (what `list METHOD` prints, in the method's own words) and, for a
    number, the range its `validate` accepts (ge/gt/le/lt; tests/test_methods.py checks that the two agree):
    `gamma: float = param(0.6, "the fixed BN weight on mu", gt=0)`."""
    bounds = {k: v for k, v in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt)) if v is not None}
    return dataclasses.field(default=default, metadata={"help": meaning, **bounds})


def shown(value: Any) -> str:
    """A parameter value as labels and file names show it: a float with more than 4 significant digits (a tuned
    value) rounded to 4, anything else as str() writes it (so `gamma=0.6` stays `gamma=0.6`). Runs use the value."""
    if isinstance(value, float) and math.isfinite(value) and float(f"{value:.4g}") != value:
        return f"{value:.4g}"
    return str(value)


@dataclass(frozen=True)
class MethodParams:
    """Hyperparameters of a method. Subclasses add typed fields and override `validate`."""

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        pass

    @staticmethod
    def search_space(trial) -> dict[str, Any]:
        """The method's Optuna search space over these fields (its only declaration), e.g.
        {"gamma": trial.suggest_float("gamma", 0.3, 1.0)}; {} if there is nothing to tune."""
        return {}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_strings(cls, method: str, values: dict[str, str]) -> "MethodParams":
        """Build from CLI strings (`--set bnvae.gamma=0.7`), converting each to its field's type."""
        hints = typing.get_type_hints(cls)
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs = {}
        for key, raw in values.items():
            if key not in known:
                raise ParamError(f"{method} has no parameter {key!r}; its parameters are: "
                                 f"{', '.join(sorted(known)) or '(none)'}")
            kwargs[key] = convert_value(raw, hints[key], f"{method}.{key}")
        return cls(**kwargs)


def convert_value(raw: str, hint: Any, where: str) -> Any:
    if not isinstance(raw, str):
        return raw
    options = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    if type(None) in options and raw.lower() in ("none", "null", ""):
        return None
    for t in options:
        if typing.get_origin(t) is typing.Literal:
            if raw in typing.get_args(t):
                return raw
            continue
        try:
            if t is bool:
                if raw.lower() in ("true", "1", "yes"):
                    return True
                if raw.lower() in ("false", "0", "no"):
                    return False
                raise ValueError(raw)
            if t in (int, float, str):
                return t(raw)
        except ValueError:
            continue
    choices = [v for t in options if typing.get_origin(t) is typing.Literal for v in typing.get_args(t)]
    if choices:
        raise ParamError(f"{where}={raw!r}: choose one of {', '.join(map(repr, choices))}")
    raise ParamError(f"{where}={raw!r} is not a valid {' or '.join(getattr(t, '__name__', str(t)) for t in options)}")


@dataclass
class Loss:
    total: torch.Tensor                 # scalar to backpropagate
    rec: torch.Tensor                   # [B] reconstruction -log p(x|z)
    kl: torch.Tensor                    # [B] true KL(q(z|x) || p(z)) (for logging, whatever the penalty)
    extra: dict[str, float] = dataclasses.field(default_factory=dict)


class Method:
    """Vanilla VAE."""                  # subclasses: first docstring line is the `list` description

    name: ClassVar[str] = "method"
    aliases: ClassVar[tuple[str, ...]] = ()
    Params: ClassVar[type[MethodParams]] = MethodParams
    has_latent: ClassVar[bool] = True
    select_on: ClassVar[str] = "elbo"    # validation criterion: "elbo" (rec + KL) or "recon"
    min_batch_size: ClassVar[int] = 1     # BN methods skip training batches smaller than this
    relative_cost: ClassVar[float] = 1.0  # rough training cost over vanilla's; sweeps start the dearest cells first
    generative: ClassVar[bool] = True     # False: trained with no prior term (the AE), so z ~ p(z) is not where
                                          # its codes lie and text evidence (text.py) draws no samples from p(z)

    def __init__(self, params: MethodParams | None = None):
        self.params = params if params is not None else self.Params()

    @classmethod
    def description(cls) -> str:
        return inspect.cleandoc(cls.__doc__ or "").splitlines()[0] if cls.__doc__ else ""

    @property
    def label(self) -> str:
        """The configuration as shown (console, tables, file names): tuned floats rounded by `shown`."""
        return self._label(shown)

    @property
    def exact_label(self) -> str:
        """The configuration with every digit: what tells two runs apart (result file names hash it)."""
        return self._label(str)

    def _label(self, fmt: typing.Callable[[Any], str]) -> str:
        p = self.params.to_dict()
        return f"{self.name}({', '.join(f'{k}={fmt(v)}' for k, v in p.items())})" if p else self.name

    def cost(self) -> float:
        """Expected training cost over vanilla's (AE pretraining, pretrain='ae', adds one vanilla run)."""
        return self.relative_cost + (getattr(self.params, "pretrain", "none") == "ae")

    def check_config(self, cfg: SizeConfig) -> None:
        """Refuse (ParamError naming the fix) a run configuration under which the method is not itself. Called
        when a sweep is expanded, before anything runs or is written."""

    # --- model ---------------------------------------------------------------------------------
    def posterior_head(self, cfg: ModelConfig) -> PosteriorHead | None:
        """The one place a remedy changes q(z|x): a PosteriorHead (None: the Gaussian head)."""
        return None

    def build_model(self, cfg: ModelConfig, vocab_size: int) -> TextVAE:
        """The model; override only to change its structure (a decoder skip path, an extra output layer)."""
        return TextVAE(cfg, vocab_size, latent=self.has_latent, make_head=self.posterior_head)

    def eval_posterior(self, model: TextVAE, tokens: torch.Tensor) -> Posterior:
        """q(z|x) used for every metric (called under torch.no_grad); SA-VAE refines it."""
        return model.posterior(tokens)

    # --- loss ----------------------------------------------------------------------------------
    def kl_weight(self, step: int, steps_per_epoch: float, cfg: TrainConfig) -> float:
        """Linear annealing kl_start -> 1 over warm_up epochs of N/batch iterations (He et al. 2019).

        As in the reference loop (`kl_weight = min(1.0, kl_weight + anneal_rate)` before each update), the weight
        is raised one increment before it is used: the update at step s (0 for the first) uses
        kl_start + (s + 1) * (1 - kl_start) / (warm_up * steps_per_epoch), never kl_start itself."""
        if cfg.warm_up == 0:
            return cfg.kl_start
        return min(1.0, cfg.kl_start + (1.0 - cfg.kl_start) * (step + 1) / (cfg.warm_up * steps_per_epoch))

    def kl_penalty(self, post: Posterior) -> torch.Tensor:
        """[B] KL term that enters the loss (free bits and friends change this)."""
        return post.kl()

    def loss(self, model: TextVAE, batch: "Batch", kl_weight: float) -> Loss:
        """The training loss of one batch (add a term, or change the decoder's input, here)."""
        return self.elbo_loss(model, batch.tokens, model.posterior(batch.tokens), kl_weight)

    def elbo_loss(self, model: TextVAE, tokens: torch.Tensor, post: Posterior, kl_weight: float, *,
                  rec: torch.Tensor | None = None, z: torch.Tensor | None = None,
                  extra_terms: torch.Tensor | None = None, extra: dict[str, float] | None = None) -> Loss:
        """mean(rec + kl_weight * kl_penalty(post) + extra_terms) with one sample z ~ q (or the given [B, 1, nz]
        z); `rec` [B] replaces -log p(x|z) where the method computes it itself (e.g. from dropped-out inputs)."""
        if rec is None:
            z = post.rsample(1) if z is None else z
            rec = -model.decoder.log_prob(tokens, z).squeeze(1)
        terms = rec + kl_weight * self.kl_penalty(post)
        total = (terms if extra_terms is None else terms + extra_terms).mean()
        return Loss(total, rec.detach(), post.kl().detach(), extra or {})

    # --- training ------------------------------------------------------------------------------
    def before_training(self, ctx: TrainContext) -> None:
        """Before the first epoch, counted as training time (e.g. AE pretraining: helpers.pretrain_encoder)."""

    def train_step(self, ctx: TrainContext, batch: "Batch") -> dict[str, float]:
        """One update; returns the logged figures (loss, rec, kl, kl_weight, and any extra)."""
        w = self.kl_weight(ctx.step, ctx.steps_per_epoch, ctx.cfg.train)
        out = self.loss(ctx.model, batch, w)
        ctx.optimize(out.total)
        return {"loss": out.total.item(), "rec": out.rec.mean().item(), "kl": out.kl.mean().item(),
                "kl_weight": w, **out.extra}

    # --- the method's own guarantee ------------------------------------------------------------
    def invariant(self, run: TrainedRun) -> None:
        """Raise AssertionError, saying what failed, unless what the method guarantees holds on a trained run (e.g.
        BN-VAE's KL floor). `python -m collapse_bench check METHOD` and the test suite call it at every size and
        decoder they train; the default declares nothing."""

    def on_epoch_end(self, ctx: TrainContext, epoch: int, point: dict[str, float]) -> None:
        """After each epoch's validation, before lr decay / early stopping. `point` is the epoch's curve point
        (validation metrics, kl_weight, train_loss, ...): entries the method adds are recorded with it."""
