from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..data import UNK
from ..method import Loss, Method, MethodParams, param
from ..registry import register
from .helpers import require_rate


def drop_words(inputs: torch.Tensor, rate: float) -> torch.Tensor:
    """Replace each decoder input word with <unk> with probability `rate`; position 0 (<s>) is kept."""
    if rate <= 0:
        return inputs
    drop = torch.rand(inputs.shape, device=inputs.device) < rate
    drop[:, 0] = False
    return inputs.masked_fill(drop, UNK)


@register("word-dropout", aliases=("wdrop", "word_dropout"))
class WordDropout(Method):
    """Word dropout (Bowman et al. 2016): decoder input words -> <unk> at `rate` during training; annealed ELBO."""

    @dataclass(frozen=True)
    class Params(MethodParams):
        rate: float = param(0.25, "share of the decoder's input words replaced by <unk> in training, 1 − "
                                  "Bowman's keep rate k (0.25-0.5 is typical)", ge=0, le=1)

        def validate(self) -> None:
            require_rate("word-dropout.rate", self.rate)

        @staticmethod
        def search_space(trial) -> dict:
            return {"rate": trial.suggest_float("rate", 0.0, 0.75)}

    def loss(self, model, batch, kl_weight: float) -> Loss:
        post = model.posterior(batch.tokens)
        z = post.rsample(1)[:, 0]
        inputs, targets = batch.tokens[:, :-1], batch.tokens[:, 1:]   # targets stay intact
        logits = model.decoder.logits(drop_words(inputs, self.params.rate), z)
        rec = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                              reduction="none").view_as(targets).sum(-1)
        return self.elbo_loss(model, batch.tokens, post, kl_weight, rec=rec)
