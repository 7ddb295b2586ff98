import math
from dataclasses import dataclass

from ..method import Method, MethodParams, param
from ..registry import register
from .helpers import require


class PIController:
    """The authors' controller (ControlVAE-ICML2020, Language_modeling/Text_gen_PTB/PID.py, `PIDControl.pid`):
    e = set_point - KL; P = kp / (1 + exp(e)); I <- I - ki * e (their Ki is passed negative, -1e-4, into
    I + Ki e); beta = clip(P + I, beta_min, beta_max). Their anti-windup test (`W_k1 < 0 and W_k1 > 1`) can never
    hold, so the integrator is never frozen; neither is it here. Their Kd is accepted and unused; not here."""

    def __init__(self, set_point: float, kp: float, ki: float, beta_min: float = 0.0, beta_max: float = 1.0):
        self.set_point, self.kp, self.ki, self.beta_min, self.beta_max = set_point, kp, ki, beta_min, beta_max
        self.integral = 0.0

    def __call__(self, kl: float) -> float:
        e = self.set_point - kl
        # kp / (1 + exp(e)) written so that a large |e| cannot overflow
        p = self.kp * (math.exp(-e) / (1.0 + math.exp(-e)) if e > 0 else 1.0 / (1.0 + math.exp(e)))
        self.integral -= self.ki * e
        return min(max(p + self.integral, self.beta_min), self.beta_max)


@register("controlvae", aliases=("control-vae", "pid"))
class ControlVAE(Method):
    """ControlVAE (Shao et al. 2020): a PI controller sets the KL weight β every step so the KL tracks a set point.

    As the authors' PTB code (vae_train.py, `_run_epoch`): β starts at 0; after each update's forward pass the
    batch-mean KL of that pass goes through the controller and the result is the weight of the next update; no
    annealing schedule (train.kl_start / warm_up are not used); β is clipped to [beta_min, beta_max] = [0, 1] as in
    PID.py. Defaults are their run script's and argparse's: set point 2.0 (run_vae_transform_ptb_pid.sh),
    Kp 0.01, Ki 1e-4 (passed as -1e-4). The trace of (KL, β) is kept on the method (`trace`) for the invariant."""

    relative_cost = 1.0        # step time 0.98x vanilla's (benchmarks/test_method_ratios.py --quick, 2-core CPU)

    @dataclass(frozen=True)
    class Params(MethodParams):
        set_point: float = param(2.0, "KL (nats per sentence) the controller holds the batch KL at (their PTB "
                                      "script: 2.0)", ge=0)
        kp: float = param(0.01, "proportional gain Kp of kp/(1+exp(e)) (their default 0.01)", ge=0)
        ki: float = param(1e-4, "integral gain: I -= ki*(set_point - KL) each step (their Ki=-1e-4)", gt=0)
        beta_max: float = param(1.0, "upper clip of β (PID.py: 1)", gt=0, le=1)

        def validate(self) -> None:
            require(self.set_point >= 0, f"controlvae.set_point={self.set_point!r} must be >= 0 nats (their PTB "
                                         f"script: 2.0)")
            require(self.kp >= 0, f"controlvae.kp={self.kp!r} must be >= 0 (the paper's code: 0.01)")
            require(self.ki > 0, f"controlvae.ki={self.ki!r} must be > 0: the integral that drives the KL to its set "
                                 f"point (the paper's code: 1e-4, written there as Ki=-1e-4)")
            require(0 < self.beta_max <= 1, f"controlvae.beta_max={self.beta_max!r} must be in (0, 1] (PID.py: 1)")

        @staticmethod
        def search_space(trial) -> dict:
            return {"set_point": trial.suggest_float("set_point", 0.5, 15.0, log=True),
                    "ki": trial.suggest_float("ki", 1e-5, 1e-3, log=True)}

    def __init__(self, params=None):
        super().__init__(params)
        self._reset()

    def _reset(self) -> None:
        p = self.params
        self.controller = PIController(p.set_point, p.kp, p.ki, 0.0, p.beta_max)
        self.beta = 0.0
        self.trace: dict[str, list[float]] = {"beta": [], "kl": []}

    def before_training(self, ctx) -> None:
        self._reset()

    def kl_weight(self, step, steps_per_epoch, cfg) -> float:
        return self.beta

    def train_step(self, ctx, batch) -> dict[str, float]:
        w = self.beta
        out = self.loss(ctx.model, batch, w)
        ctx.optimize(out.total)
        kl = out.kl.mean().item()
        self.trace["beta"].append(w)
        self.trace["kl"].append(kl)
        self.beta = self.controller(kl)
        return {"loss": out.total.item(), "rec": out.rec.mean().item(), "kl": kl, "kl_weight": w, **out.extra}

    def invariant(self, run) -> None:
        """Every β used lies in [0, beta_max]; the first is 0; and each β is the controller's answer to the KL of
        the update before it (the recorded KL sequence replayed through a fresh controller gives the recorded βs):
        β rises while the KL is above the set point and falls while it is below, until clipped."""
        betas, kls = self.trace["beta"], self.trace["kl"]
        assert betas, "no update recorded"
        assert betas[0] == 0.0, f"the first update's β is {betas[0]}, not 0 (the authors' start)"
        lo, hi = min(betas), max(betas)
        assert 0.0 <= lo and hi <= self.params.beta_max, f"β left [0, {self.params.beta_max}]: [{lo}, {hi}]"
        p = self.params
        replay = PIController(p.set_point, p.kp, p.ki, 0.0, p.beta_max)
        expected = [0.0] + [replay(k) for k in kls[:-1]]
        worst = max(abs(a - b) for a, b in zip(expected, betas))
        assert worst <= 1e-12, f"β is not the PI controller's output on the recorded KLs (off by {worst:.3g})"
