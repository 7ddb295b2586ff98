from dataclasses import dataclass, field
from typing import Literal

import torch

from ..method import Loss, Method, MethodParams, param
from ..posterior import Gaussian
from ..registry import register
from .helpers import require


def _clip_batch(g: torch.Tensor, max_norm: float) -> torch.Tensor:
    """Scale g so that its norm over the whole batch is <= max_norm (differentiable: it sits in the unrolled graph)."""
    return g * (max_norm / (g.norm() + 1e-6)).clamp(max=1.0)


def _joint_scale(tensors: list[torch.Tensor], max_norm: float) -> torch.Tensor:
    """The factor of Kim et al.'s clip_grad_norm over a list: one norm for all of them together."""
    total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(tensors)))
    return (max_norm / (total + 1e-6)).clamp(max=1.0)


def _difference_quotient(at_rv: list[torch.Tensor], at_x: list[torch.Tensor], scale: torch.Tensor,
                         r: float) -> list[torch.Tensor]:
    """(scale * at_rv - at_x) / r, elementwise over the lists (foreach kernels: these are the decoder's weights)."""
    out = torch._foreach_mul(at_rv, scale)
    torch._foreach_sub_(out, at_x)
    torch._foreach_div_(out, r)
    return out


def _svi_loss(model, tokens: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, kl_weight: float) -> torch.Tensor:
    """The batch mean of the negative ELBO with one fresh reparameterised sample: what each SVI step descends."""
    q = Gaussian(mu, logvar)
    return (-model.decoder.log_prob(tokens, q.rsample(1))[:, 0] + kl_weight * q.kl()).mean()


def _rng_state(device: torch.device):
    return torch.get_rng_state(), (torch.cuda.get_rng_state(device) if device.type == "cuda" else None)


def _set_rng_state(device: torch.device, state) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


@dataclass
class _Unrolled:
    """Kim et al.'s OptimN2N (`optim_n2n.py`): the SVI steps run without a graph, keeping each step's point, its
    clipped gradient, the decoder's gradient and the random state; the reverse pass then needs one more gradient
    per step, at x_k + r v, for the finite-difference Hessian-vector products H_xx v and H_θx v."""
    model: torch.nn.Module
    tokens: torch.Tensor
    kl_weight: float
    p: "SemiAmortizedVAE.Params"
    params: list[torch.Tensor]
    tape: list[tuple] = field(default_factory=list)

    def _grads(self, mu: torch.Tensor, logvar: torch.Tensor) -> tuple[torch.Tensor, ...]:
        mu, logvar = mu.detach().requires_grad_(True), logvar.detach().requires_grad_(True)
        with torch.enable_grad():
            loss = _svi_loss(self.model, self.tokens, mu, logvar, self.kl_weight)
            return torch.autograd.grad(loss, (mu, logvar, *self.params))

    def forward(self, mu: torch.Tensor, logvar: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p, velocity = self.p, None
        for _ in range(p.svi_steps):
            state = _rng_state(mu.device)
            g_mu, g_lv, *g_params = self._grads(mu, logvar)
            g_x = (_clip_batch(g_mu, p.svi_clip), _clip_batch(g_lv, p.svi_clip))
            self.tape.append(((mu, logvar), g_x, g_params, state))
            velocity = [-g for g in g_x] if velocity is None else [p.svi_momentum * v - g
                                                                   for v, g in zip(velocity, g_x)]
            mu, logvar = mu + p.svi_lr * velocity[0], logvar + p.svi_lr * velocity[1]
        return mu, logvar

    def reverse(self, d_x: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Gradients w.r.t. the starting (mu, log sigma^2) and the decoder's share through the steps, from the
        gradient w.r.t. the final (mu, log sigma^2); Kim et al.'s `backward_mom`, clips included."""
        p, r = self.p, self.p.svi_fd_eps
        d_v = [torch.zeros_like(d) for d in d_x]
        d_params = [torch.zeros_like(q) for q in self.params]
        resume = _rng_state(d_x[0].device)
        for x, g_x, g_params, state in reversed(self.tape):
            d_v = [v + p.svi_lr * d for v, d in zip(d_v, d_x)]
            _set_rng_state(x[0].device, state)             # the step's own sample and dropout masks
            g_rv = list(self._grads(*(xi + r * v for xi, v in zip(x, d_v))))
            scale = _joint_scale(g_rv, p.svi_clip)
            h_params = _difference_quotient(g_rv[2:], g_params, scale, r)
            torch._foreach_mul_(h_params, _joint_scale(h_params, p.svi_clip))
            torch._foreach_sub_(d_params, h_params)
            d_x = [d - h for d, h in zip(d_x, _difference_quotient(g_rv[:2], list(g_x), scale, r))]
            d_x = torch._foreach_mul(d_x, _joint_scale(d_x, p.svi_clip))
            d_v = [p.svi_momentum * v for v in d_v]
        _set_rng_state(d_x[0].device, resume)
        return d_x, d_params


class _FiniteDifferenceRefine(torch.autograd.Function):
    """(mu_0, log sigma_0^2, decoder parameters) -> (mu_K, log sigma_K^2): forward as the SVI steps, backward as
    Kim et al.'s finite-difference reverse pass (no double-backward graph)."""

    @staticmethod
    def forward(ctx, unrolled: _Unrolled, mu, logvar, *params):
        ctx.unrolled = unrolled
        return unrolled.forward(mu.detach(), logvar.detach())

    @staticmethod
    def backward(ctx, d_mu, d_logvar):
        d_x, d_params = ctx.unrolled.reverse([d_mu, d_logvar])
        ctx.unrolled = None
        return (None, *d_x, *d_params)


@register("savae", aliases=("sa-vae", "semi-amortized"))
class SemiAmortizedVAE(Method):
    """SA-VAE (Kim et al. 2018): 10 SVI steps refine the encoder's (mu, log sigma^2), at training and evaluation.

    Refinement: SGD (lr 1, momentum 0.5) on the batch's negative ELBO averaged over its sentences (annealed KL
    weight in training, weight 1 at evaluation) with respect to (mu, log sigma^2), one fresh reparameterised
    sample per step; the gradient of each variable is clipped at norm 5 over the whole batch. This is the setting
    of He et al.'s rerun, which produced the published SA-VAE row (Kim et al.'s own code uses 20 steps).

    Training differentiates the final loss through the unrolled refinement as Kim et al.'s code does
    (`svi_backward="fd"`, `optim_n2n.py`): the steps run without a graph, and the reverse pass takes one more
    gradient per step, at x_k + r v (r = 1e-5), for finite-difference Hessian-vector products; the encoder learns
    through all its steps and the decoder receives its direct gradient plus -H_θx v per step (their
    `acc_param_grads`). Their clips are kept: the gradient at x_k + r v is clipped at 5 jointly with the
    decoder's, and so are H_θx v and the running gradient w.r.t. (mu, log sigma^2). `svi_backward="exact"`
    backpropagates through the steps with second-order autograd instead (tests/test_methods.py: the two agree
    where no clip is active). Evaluation runs the same refinement under torch.enable_grad and returns the refined
    Gaussian, which is then the IW-NLL proposal and the posterior of KL, MI and AU."""

    relative_cost = 20.0       # per step here (reports/cost/savae_profile.txt); He et al.: 12.8x

    @dataclass(frozen=True)
    class Params(MethodParams):
        svi_steps: int = param(10, "SVI steps refining the encoder's (mu, log σ²) per batch; 0 is a plain VAE "
                                   "(He et al.'s rerun: 10, Kim et al.'s code: 20)", ge=0)
        svi_lr: float = param(1.0, "learning rate of the SVI steps (SGD, Kim et al.: 1)", gt=0)
        svi_momentum: float = param(0.5, "momentum of the SVI steps (Kim et al.: 0.5)", ge=0, lt=1)
        svi_clip: float = param(5.0, "cap on each variable's gradient norm over the whole batch (Kim et al.: 5)",
                                gt=0)
        eval_svi: bool = param(True, "refine at evaluation too, so every metric uses the refined posterior "
                                     "(Kim et al. do)")
        svi_backward: Literal["fd", "exact"] = param(
            "fd", "the reverse pass through the steps: 'fd', Kim et al.'s finite differences; 'exact', "
                  "second-order autograd")
        svi_fd_eps: float = param(1e-5, "the finite-difference step r of the reverse pass (Kim et al.: 1e-5)", gt=0)

        def validate(self) -> None:
            require(self.svi_steps >= 0, f"savae.svi_steps={self.svi_steps!r} must be >= 0 (He et al.'s rerun: 10)")
            require(self.svi_lr > 0, f"savae.svi_lr={self.svi_lr!r} must be > 0 (Kim et al.: 1)")
            require(0.0 <= self.svi_momentum < 1.0,
                    f"savae.svi_momentum={self.svi_momentum!r} must be in [0, 1) (Kim et al.: 0.5)")
            require(self.svi_clip > 0, f"savae.svi_clip={self.svi_clip!r} must be > 0 (Kim et al.: 5)")
            require(self.svi_backward in ("fd", "exact"),
                    f"savae.svi_backward={self.svi_backward!r} must be 'fd' (Kim et al.'s code) or 'exact'")
            require(self.svi_fd_eps > 0, f"savae.svi_fd_eps={self.svi_fd_eps!r} must be > 0 (Kim et al.: 1e-5)")

        @staticmethod
        def search_space(trial) -> dict:
            return {"svi_steps": trial.suggest_int("svi_steps", 5, 30),
                    "svi_lr": trial.suggest_float("svi_lr", 0.25, 2.0, log=True)}

    def refine(self, model, post: Gaussian, tokens: torch.Tensor, kl_weight: float, *, create_graph: bool) -> Gaussian:
        """Run the SVI steps from `post` with autograd. With create_graph the result stays differentiable w.r.t.
        `post` and the decoder (the exact reverse pass); otherwise it starts from a detached copy and returns a
        detached Gaussian."""
        p = self.params
        mu, logvar = post.mu, post.logvar
        if not create_graph:
            mu, logvar = mu.detach().requires_grad_(True), logvar.detach().requires_grad_(True)
        v_mu = v_lv = None
        for _ in range(p.svi_steps):
            loss = _svi_loss(model, tokens, mu, logvar, kl_weight)
            g_mu, g_lv = torch.autograd.grad(loss, (mu, logvar), create_graph=create_graph)
            g_mu, g_lv = _clip_batch(g_mu, p.svi_clip), _clip_batch(g_lv, p.svi_clip)
            v_mu = -g_mu if v_mu is None else p.svi_momentum * v_mu - g_mu
            v_lv = -g_lv if v_lv is None else p.svi_momentum * v_lv - g_lv
            mu, logvar = mu + p.svi_lr * v_mu, logvar + p.svi_lr * v_lv
        out = Gaussian(mu, logvar)
        return out if create_graph else out.detach()

    def refine_fd(self, model, post: Gaussian, tokens: torch.Tensor, kl_weight: float) -> Gaussian:
        """The SVI steps with Kim et al.'s finite-difference reverse pass behind them."""
        params = [q for q in model.decoder.parameters() if q.requires_grad]
        unrolled = _Unrolled(model, tokens, kl_weight, self.params, params)
        mu, logvar = _FiniteDifferenceRefine.apply(unrolled, post.mu, post.logvar, *params)
        return Gaussian(mu, logvar)

    def loss(self, model, batch, kl_weight: float) -> Loss:
        post = model.posterior(batch.tokens)
        if self.params.svi_steps and self.params.svi_backward == "fd":
            post = self.refine_fd(model, post, batch.tokens, kl_weight)
        else:
            post = self.refine(model, post, batch.tokens, kl_weight, create_graph=True)
        return self.elbo_loss(model, batch.tokens, post, kl_weight)

    def eval_posterior(self, model, tokens: torch.Tensor) -> Gaussian:
        post = model.posterior(tokens)
        if not self.params.eval_svi or self.params.svi_steps == 0:
            return post
        with torch.enable_grad():
            return self.refine(model, post, tokens, 1.0, create_graph=False)

    def amortized_posterior(self, model, tokens: torch.Tensor) -> Gaussian:
        """The encoder's own q(z|x), before refinement."""
        return model.posterior(tokens)
