from ..method import Loss, Method
from ..registry import register


@register("lm", aliases=("lstm-lm",))
class LanguageModel(Method):
    """LSTM language model baseline (He et al. 2019's LSTM-LM): the decoder alone, no latent; its NLL is exact."""

    has_latent = False

    def loss(self, model, batch, kl_weight):
        rec = -model.decoder.log_prob(batch.tokens, None)[:, 0]
        return Loss(rec.mean(), rec.detach(), rec.detach() * 0)
