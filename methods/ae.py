from ..config import TrainConfig
from ..method import Method
from ..registry import register


@register("ae", aliases=("autoencoder",))
class AE(Method):
    """Autoencoder baseline (Li et al. 2019): the Gaussian encoder with KL weight 0, z still sampled."""

    select_on = "recon"
    generative = False          # KL weight 0: nothing pulls its codes towards N(0, I); no samples from the prior

    def kl_weight(self, step: int, steps_per_epoch: float, cfg: TrainConfig) -> float:
        return 0.0
