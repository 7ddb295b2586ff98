"""The remedies published after 2020 (issue 20): known answers for each formula, and each method's own invariant on a
smoke run (the contract suite, tests/test_methods.py, runs them too; here each is trained once on its own)."""
import math

import pytest
import torch

from collapse_bench import registry
from collapse_bench.cell import CellSpec, build_trainer
from collapse_bench.context import TrainedRun
from collapse_bench import evaluate as ev
from collapse_bench.methods.controlvae import PIController
from collapse_bench.methods.coupled import imq_coupling
from collapse_bench.methods.duvae import FLOOR_UNIT, DUHead
from collapse_bench.methods.mmd import kernel_matrix, mmd
from collapse_bench.methods.twr import regularised_steps

REMEDIES = ["controlvae", "coupled", "duvae", "mmd", "twr", "powerspherical"]
OVERRIDES = {"train": {"epochs": 2}, "eval": {"probe_repeats": 1, "iw_samples": 10},
             "limits": {"max_train": 300, "max_valid": 60, "max_test": 60}}


# --- ControlVAE ------------------------------------------------------------------------------------------
def test_pi_controller_against_a_hand_computed_sequence():
    """set point 2, Kp 0.01, Ki 1e-4 (the authors' defaults); KLs 5, 3, 1, 2. Step 1: e=-3, P=0.01/(1+e^-3)=0.0095257,
    I=3e-4 -> 0.0098257; step 2: e=-1, P=0.0073106, I=4e-4; step 3: e=1, P=0.0026894, I=3e-4; step 4: e=0, P=0.005,
    I=3e-4."""
    c = PIController(2.0, 0.01, 1e-4)
    got = [c(kl) for kl in (5.0, 3.0, 1.0, 2.0)]
    want = [0.01 / (1 + math.exp(-3)) + 3e-4, 0.01 / (1 + math.exp(-1)) + 4e-4,
            0.01 / (1 + math.exp(1)) + 3e-4, 0.005 + 3e-4]
    assert got == pytest.approx(want, abs=1e-12)
    assert got == pytest.approx([0.009825741268224334, 0.007710585786300049, 0.002989414213699951, 0.0053], abs=1e-12)


def test_pi_controller_clips_and_never_freezes_its_integrator():
    """β stays in [0, 1]; as in PID.py the integrator keeps integrating while clipped (their windup guard is dead)."""
    c = PIController(2.0, 0.01, 1e-2)
    up = [c(100.0) for _ in range(50)]
    assert all(0 <= b <= 1 for b in up) and up[-1] == 1.0 and c.integral > 40
    c = PIController(2.0, 0.01, 1e-2)
    down = [c(0.0) for _ in range(50)]
    assert all(b == 0.0 for b in down) and c.integral == pytest.approx(-1.0)


def test_pi_controller_holds_a_plant_at_its_set_point():
    """Closed loop on a plant whose KL falls with β (KL = 10 e^{-5β}): the KL settles at the set point, β at ln5/5."""
    c, beta = PIController(2.0, 0.01, 1e-2), 0.0
    for _ in range(500):
        beta = c(10 * math.exp(-5 * beta))
    assert 10 * math.exp(-5 * beta) == pytest.approx(2.0, abs=1e-6)
    assert beta == pytest.approx(math.log(5) / 5, abs=1e-6)


# --- MMD ----------------------------------------------------------------------------------------------------
def _direct_mmd(x, y, k):
    pairs = lambda a, b: sum(k(u, v) for u in a for v in b) / (len(a) * len(b))  # noqa: E731
    return pairs(x, x) + pairs(y, y) - 2 * pairs(x, y)


@pytest.mark.parametrize("kind", ["rbf", "imq"])
def test_mmd_against_a_direct_double_sum(kind):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(7, 3, generator=g, dtype=torch.float64), torch.randn(5, 3, generator=g, dtype=torch.float64)
    d = 3
    rbf = lambda u, v: math.exp(-float((u - v).pow(2).sum()) / d ** 2)     # noqa: E731  Zhao et al.'s bandwidth
    imq = lambda u, v: 2 * d / (2 * d + float((u - v).pow(2).sum()))      # noqa: E731
    want = _direct_mmd(list(x), list(y), rbf if kind == "rbf" else imq)
    assert float(mmd(x, y, kind)) == pytest.approx(want, rel=1e-10)


def test_mmd_known_values_and_sign():
    x, y = torch.tensor([[0.0]]), torch.tensor([[1.0]])
    assert float(mmd(x, y, "rbf")) == pytest.approx(2 - 2 * math.exp(-1), abs=1e-6)
    assert float(mmd(x, y, "imq")) == pytest.approx(2 - 2 * 2 / 3, abs=1e-6)
    z = torch.randn(16, 4)
    assert float(mmd(z, z)) == pytest.approx(0.0, abs=1e-6)
    assert kernel_matrix(z, z).diagonal().allclose(torch.ones(16))
    for seed in range(5):
        torch.manual_seed(seed)
        assert float(mmd(torch.randn(8, 4) * 3 + 1, torch.randn(8, 4))) >= 0.0


# --- Coupled-VAE, TWR-VAE, DU-VAE ---------------------------------------------------------------
def test_imq_coupling_known_values():
    assert imq_coupling(torch.tensor([0.0]), 32).item() == pytest.approx(-7.0)
    d, nz = 64.0, 32
    want = -sum(2 * nz * s / (2 * nz * s + d) for s in (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0))
    assert imq_coupling(torch.tensor([d]), nz).item() == pytest.approx(want)


def test_twr_regularised_steps_follow_the_authors_rounding():
    assert [regularised_steps(10, p) for p in ("none", "last1", "last25", "last50", "last75")] == [10, 1, 2, 5, 8]
    assert regularised_steps(3, "last25") == 1 and regularised_steps(6, "last75") == 4


def test_duvae_head_rescales_bn_and_applies_floor_and_dropout():
    torch.manual_seed(0)
    head = DUHead(6, 4, gamma=0.5, p_drop=0.5, delta_rate=1.0)
    with torch.no_grad():
        head.bn.weight.copy_(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    h = torch.randn(10, 6)
    off = head.train()(h)
    assert float(head.bn.weight.detach().pow(2).mean().sqrt()) == pytest.approx(0.5)
    raw_logvar = head.linear(h).chunk(2, -1)[1]
    assert torch.equal(off.logvar, raw_logvar)                      # before the KL weight reaches 1: untouched
    head.floor_on.fill_(True)
    var = head.eval()(h).logvar.exp()
    assert var.allclose(raw_logvar.exp() + FLOOR_UNIT, rtol=1e-5)
    dropped = head.train()(h).logvar.detach().exp()
    kept = dropped.sub(FLOOR_UNIT).div(raw_logvar.exp())           # 0 where dropped, 1/(1-p) = 2 where kept
    assert bool(((kept.abs() < 1e-4) | ((kept - 2).abs() < 1e-4)).all())
    assert float(dropped.detach().min()) >= FLOOR_UNIT * (1 - 1e-6)


# --- Power Spherical (issue 20's alternative to Scale-VAE) -------------------------------------------------------
def _ps_marginal(kappa: float, d: int):
    """Density of w = mu.z under PS(mu, kappa) on S^{d-1}: area(S^{d-2}) (1 + w)^kappa (1 - w²)^((d-3)/2) / N."""
    from collapse_bench.methods.powerspherical import power_spherical_constants
    c = power_spherical_constants(kappa, d)
    log_area_sub = math.log(2) + ((d - 1) / 2) * math.log(math.pi) - math.lgamma((d - 1) / 2)
    return lambda w: math.exp(log_area_sub + kappa * math.log1p(w) + (d - 3) / 2 * math.log(1 - w * w)
                              - c["log_norm"])


@pytest.mark.parametrize("d", [2, 3, 5, 32])
def test_power_spherical_density_normalises_and_its_kl_is_the_quadrature(d):
    from scipy import integrate
    from collapse_bench.methods.powerspherical import power_spherical_constants
    kappa = 13.0
    c, f = power_spherical_constants(kappa, d), _ps_marginal(kappa, d)
    assert integrate.quad(f, -1, 1, limit=200)[0] == pytest.approx(1.0, rel=1e-6)
    log_q = lambda w: kappa * math.log1p(w) - c["log_norm"]                       # noqa: E731
    kl = integrate.quad(lambda w: f(w) * (log_q(w) + c["log_area"]), -1, 1, limit=200)[0]
    assert c["kl"] == pytest.approx(kl, rel=1e-6)
    mean = integrate.quad(lambda w: f(w) * w, -1, 1, limit=200)[0]
    assert c["mean_cos"] == pytest.approx(mean, rel=1e-6)
    if d == 3:      # closed form on S^2: N = 2^(kappa+2) pi / (kappa + 1)
        assert c["log_norm"] == pytest.approx((kappa + 2) * math.log(2) + math.log(math.pi) - math.log(kappa + 1))


def test_power_spherical_sampler_matches_the_density_and_passes_gradients_to_mu():
    from scipy import stats
    from collapse_bench.methods.powerspherical import PowerSpherical, power_spherical_constants
    kappa, d, n = 13.0, 16, 4000
    c = power_spherical_constants(kappa, d)
    torch.manual_seed(0)
    mu = torch.nn.functional.normalize(torch.randn(2, d), dim=-1)
    z = PowerSpherical(mu, kappa).rsample(n // 2)
    torch.testing.assert_close(z.norm(dim=-1), torch.ones(2, n // 2))
    w = (z * mu.unsqueeze(1)).sum(-1).flatten().double().numpy()
    assert stats.kstest((1 + w) / 2, stats.beta(c["alpha"], c["beta"]).cdf).pvalue > 1e-3
    # the part orthogonal to mu is isotropic: its mean is 0 in every direction
    perp = z - (z * mu.unsqueeze(1)).sum(-1, keepdim=True) * mu.unsqueeze(1)
    assert float(perp.mean(1).abs().max()) < 4 * float(perp.std()) / math.sqrt(n // 2)
    mu_leaf = mu.clone().requires_grad_(True)
    PowerSpherical(mu_leaf, kappa).rsample(3).sum().backward()
    assert mu_leaf.grad is not None and mu_leaf.grad.abs().sum() > 0
    # log_prob is the density: its cross form agrees, and the mode beats the antipode
    post = PowerSpherical(mu, kappa)
    torch.testing.assert_close(post.cross_log_prob(z[0]), post.log_prob(z[0].unsqueeze(1)))      # [M, B] both
    assert float(post.log_prob(mu)[0]) > float(post.log_prob(-mu)[0])


def test_power_spherical_scores_with_its_density_and_a_constant_kl(runs):
    run = runs("powerspherical")
    from collapse_bench.methods.powerspherical import power_spherical_constants
    c = power_spherical_constants(run.method.params.kappa, run.cfg.model.nz)
    assert run.metrics["kl"] == pytest.approx(c["kl"], rel=1e-5)
    split = run.corpus.test
    torch.manual_seed(0)
    nll = ev.iw_nll(run.method, run.model, split, 50, 4096, 128, "cpu")
    rec, kl = ev.elbo_terms(run.method, run.model, split, 128, "cpu")
    assert nll.mean() < (rec + kl).mean()                          # the importance-weighted bound is tighter
    assert nll.mean() > (rec + kl).mean() - c["kl"] - 5.0          # and cannot gain much more than the KL


# --- each remedy's invariant on a smoke run -----------------------------------------------------------------
@pytest.fixture(scope="module")
def runs():
    cache = {}

    def get(name: str) -> TrainedRun:
        if name not in cache:
            spec = CellSpec(name, "synthetic", "smoke", 0, registry.get(name).Params().to_dict(), overrides=OVERRIDES)
            trainer = build_trainer(spec)
            trainer.fit()
            metrics = ev.score(trainer.method, trainer.model, trainer.corpus, trainer.cfg.eval, trainer.device, 0)
            cache[name] = TrainedRun(trainer.method, trainer.model, trainer.cfg, trainer.corpus,
                                     trainer.train_batches, metrics)
        return cache[name]
    return get


@pytest.mark.parametrize("name", REMEDIES)
def test_remedy_invariant_at_smoke(name, runs):
    run = runs(name)
    assert all(math.isfinite(run.metrics[k]) for k in ("nll", "kl", "elbo"))
    run.method.invariant(run)


def test_duvae_floor_switched_on_with_the_kl_weight(runs):
    run = runs("duvae")
    assert bool(run.model.head.floor_on)                            # 2 epochs, warm_up 1: the weight reached 1


def test_duvae_trains_only_on_batches_of_16_or_more_and_refuses_smaller_batch_sizes(runs):
    """The authors' text.py skips every training batch of fewer than 16 sentences; so does ours, and a batch size
    that would skip them all is refused."""
    from dataclasses import replace
    from collapse_bench.config import size_config
    from collapse_bench.method import ParamError
    run = runs("duvae")
    sizes = [b.size for b in run.train_batches]
    assert min(sizes) >= 16 and sum(sizes) < len(run.corpus.train)      # the smoke corpus has shorter buckets
    cfg = size_config("smoke", "synthetic")
    method = registry.get("duvae")(registry.get("duvae").Params())
    with pytest.raises(ParamError, match="batch_size"):
        method.check_config(replace(cfg, train=replace(cfg.train, batch_size=8)))
    method.check_config(cfg)


def test_controlvae_starts_at_zero_and_raises_beta_while_kl_is_above_set_point(runs):
    method = runs("controlvae").method
    betas, kls = method.trace["beta"], method.trace["kl"]
    assert betas[0] == 0.0
    for b0, b1, kl in zip(betas, betas[1:], kls):
        if kl > method.params.set_point + 1.0 and 0 < b1 < 1:
            assert b1 > b0 - method.params.kp                       # the integral grows; only P (<= kp) may dip
