from dataclasses import dataclass

import torch.nn as nn
import torch.nn.functional as F

from ..config import ModelConfig
from ..method import Loss, Method, MethodParams, param
from ..model import TextVAE
from ..registry import register
from .helpers import require


class BowVAE(TextVAE):
    """TextVAE plus an MLP z -> |V| logits that predicts the sentence's bag of words (trained with the decoder)."""

    def __init__(self, cfg: ModelConfig, vocab_size: int, hidden: int):
        super().__init__(cfg, vocab_size)
        self.bow = nn.Sequential(nn.Linear(cfg.nz, hidden), nn.Tanh(), nn.Linear(hidden, vocab_size))
        self.reset_parameters(self.bow)

    def decoder_parameters(self) -> list[nn.Parameter]:
        return super().decoder_parameters() + [p for p in self.bow.parameters() if p.requires_grad]

    def bow_nll(self, tokens, z):
        """-sum_t log softmax(f(z))[x_t] over the targets w1..wn </s>; z [B, nz] -> [B]."""
        logp = F.log_softmax(self.bow(z), -1)
        return -logp.gather(1, tokens[:, 1:]).sum(-1)


@register("bow", aliases=("bow-vae", "bag-of-words"))
class BagOfWords(Method):
    """Bag-of-words loss (Zhao et al. 2017): an MLP from z must predict every word of x, weight 1; annealed ELBO."""

    @dataclass(frozen=True)
    class Params(MethodParams):
        weight: float = param(1.0, "weight of the bag-of-words loss added to the ELBO (Zhao et al.: 1)", ge=0)
        hidden: int = param(400, "width of the tanh hidden layer of the MLP from z to the vocabulary", ge=1)

        def validate(self) -> None:
            require(self.weight >= 0, f"bow.weight={self.weight!r} must be >= 0 (Zhao et al.: 1)")
            require(self.hidden >= 1, f"bow.hidden={self.hidden!r} must be >= 1 (e.g. 400)")

        @staticmethod
        def search_space(trial) -> dict:
            return {"weight": trial.suggest_float("weight", 0.1, 2.0, log=True)}

    def build_model(self, cfg: ModelConfig, vocab_size: int) -> TextVAE:
        return BowVAE(cfg, vocab_size, self.params.hidden)

    def loss(self, model: BowVAE, batch, kl_weight: float) -> Loss:
        post = model.posterior(batch.tokens)
        z = post.rsample(1)
        rec = -model.decoder.log_prob(batch.tokens, z).squeeze(1)
        bow = model.bow_nll(batch.tokens, z[:, 0])
        return self.elbo_loss(model, batch.tokens, post, kl_weight, rec=rec, extra_terms=self.params.weight * bow,
                              extra={"bow": bow.mean().item()})
