from ..config import TrainConfig
from ..method import Method
from ..registry import register


@register("ae", aliases=("autoencoder",))
class AE(Method):
    """Autoencoder baseline (Li et al. 2019): the Gaussian encoder with KL weight 0, z still sampled."""

    select_on = "recon"

    def kl_weight(self, step: int, steps_per_epoch: float, cfg: TrainConfig) -> float:
        return 0.0
