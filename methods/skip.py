from ..config import ModelConfig
from ..method import Method
from ..model import TextVAE
from ..registry import register


@register("skip", aliases=("skip-vae",))
class SkipVAE(Method):
    """Skip-VAE (Dieng et al. 2019): z also feeds the decoder's output layer (logits += W_z z); annealed ELBO."""

    def build_model(self, cfg: ModelConfig, vocab_size: int) -> TextVAE:
        return TextVAE(cfg, vocab_size, skip=True, make_head=self.posterior_head)
