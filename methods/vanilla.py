from ..method import Method
from ..registry import register


@register("vanilla", aliases=("vae",))
class Vanilla(Method):
    """Vanilla VAE: -ELBO with the protocol's linear KL annealing 0.1 -> 1 (He et al. 2019's 'VAE + anneal')."""
