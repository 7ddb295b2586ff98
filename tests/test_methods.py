"""Every registered method: one contract suite parametrised over the registry, then each remedy's own invariant
measured on a model trained at `smoke` size. To fit the suite in a few CPU minutes the smoke run is cut to one
epoch over 400 training sentences (100 valid / 100 test); each model is trained once per module and shared."""
from __future__ import annotations

import copy
import dataclasses
import io
import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats
from scipy.special import gammaln

from collapse_bench import evaluate as ev
from collapse_bench import registry
from collapse_bench.cli import main as cli_main
from collapse_bench.data import BOS, UNK
from collapse_bench.method import ParamError
from collapse_bench.posterior import Gaussian
from collapse_bench.cell import CellSpec, build_trainer, run_record
from collapse_bench.context import TrainedRun
from collapse_bench.train import Trainer

DATASET, SIZE, SEED = "synthetic", "smoke", 0
OVERRIDES = {"train": {"epochs": 1}, "limits": {"max_train": 400, "max_valid": 100, "max_test": 100}}
# the built-in registry (test files may register throw-away methods of their own)
METHODS = [n for n in registry.names() if registry.get(n).__module__.startswith("collapse_bench.methods.")]

# One invalid value per method with hyperparameters: the contract test checks each is rejected.
BAD_PARAMS = {
    "agg": {"inner_steps": 0}, "anneal": {"kl_start": 1.5}, "beta": {"beta": -0.1}, "bnvae": {"gamma": 0.0},
    "bnvae-su": {"tau": 1.0}, "bow": {"weight": -1.0}, "cyclic": {"ratio": 0.0}, "delta": {"delta": 0.0},
    "eae": {"proposal_std": 0.0}, "fb": {"target": -1.0}, "savae": {"svi_momentum": 1.0},
    "vmf": {"kappa": -1.0}, "word-dropout": {"rate": 1.5},
    "controlvae": {"ki": 0.0}, "coupled": {"couple_weight": -0.1}, "duvae": {"p_drop": 1.0}, "mmd": {"alpha": 1.5},
    "twr": {"partial": "last10"}, "powerspherical": {"kappa": 0.0},
}


@dataclasses.dataclass
class Trained:
    spec: CellSpec
    method: object
    trainer: Trainer
    metrics: dict
    timing: dict

    @property
    def model(self):
        return self.trainer.model

    @property
    def corpus(self):
        return self.trainer.corpus

    @property
    def cfg(self):
        return self.trainer.cfg

    def batch(self, min_size: int = 2):
        """The largest training batch (train mode statistics need more than one sentence)."""
        return max(self.trainer.train_batches, key=lambda b: (b.size, b.tokens.shape[1]))


def make_spec(name: str, **params) -> CellSpec:
    return CellSpec(name, DATASET, SIZE, SEED, params=params, overrides=OVERRIDES)


def train_and_score(spec: CellSpec) -> Trained:
    """What run_cell does, keeping the trainer (and so the model)."""
    trainer = build_trainer(spec)
    timing = trainer.fit()
    metrics = ev.score(trainer.method, trainer.model, trainer.corpus, trainer.cfg.eval, trainer.device, spec.seed)
    return Trained(spec, trainer.method, trainer, metrics, timing)


@pytest.fixture(scope="module")
def trained():
    cache: dict[tuple, Trained] = {}

    def get(name: str, train: dict | None = None, **params) -> Trained:
        key = (name, tuple(sorted(params.items())), tuple(sorted((train or {}).items())))
        if key not in cache:
            spec = make_spec(name, **params)
            if train:
                spec.overrides = {**spec.overrides, "train": {**spec.overrides["train"], **train}}
            cache[key] = train_and_score(spec)
        return cache[key]
    return get


def eval_outputs(t: Trained, model) -> dict[str, np.ndarray]:
    """Seeded evaluation outputs of `model` on 64 test sentences (means, ELBO terms, IW-NLL with 5 samples)."""
    split = t.corpus.test.subset(np.arange(48))
    model.eval()
    torch.manual_seed(123)
    rec, kl = ev.elbo_terms(t.method, model, split, 32, "cpu")
    out = {"rec": rec, "kl": kl}
    torch.manual_seed(123)
    out["nll"] = ev.iw_nll(t.method, model, split, 5, 4096, 32, "cpu")
    if model.has_latent:
        torch.manual_seed(123)
        out["mean"] = ev.encode(t.method, model, split, 32, "cpu").mean.numpy()
    return out


# ------------------------------------------------------------------------------------------ contract suite

@pytest.mark.parametrize("name", METHODS)
def test_trains_with_finite_metrics(name, trained):
    t = trained(name)
    m = t.metrics
    for key in ("nll", "ppl", "elbo", "recon", "kl", "mi"):
        assert math.isfinite(m[key]), f"{name}: {key} = {m[key]}"
    assert m["nll"] > 0 and m["ppl"] > 1
    assert 0 <= m["au"] <= t.cfg.model.nz
    assert t.timing["steps"] > 0 and t.timing["train_seconds"] > 0
    assert all(math.isfinite(c["train_loss"]) and math.isfinite(c["valid_loss"]) for c in t.trainer.curves)
    if not t.model.has_latent:
        assert m["kl"] == 0 and m["mi"] == 0


@pytest.mark.parametrize("name", METHODS)
def test_deterministic_for_a_seed(name, trained):
    """run_cell (the CLI path) with the same seed reproduces the metrics of the fixture's run exactly."""
    record = run_record(make_spec(name))
    assert record["status"] == "ok", record["error"]
    again, first = record["metrics"], trained(name).metrics
    for key in ("nll", "ppl", "elbo", "recon", "kl", "mi", "au"):
        assert again[key] == first[key], f"{name}: {key} {again[key]} != {first[key]}"
    assert again["probe"] == first["probe"]


@pytest.mark.parametrize("name", METHODS)
def test_checkpoint_round_trip(name, trained):
    t = trained(name)
    buf = io.BytesIO()
    torch.save(t.model.state_dict(), buf)
    torch.manual_seed(999)
    fresh = t.method.build_model(t.cfg.model, len(t.corpus.vocab))
    before = eval_outputs(t, fresh)
    buf.seek(0)
    fresh.load_state_dict(torch.load(buf))
    want, got = eval_outputs(t, t.model), eval_outputs(t, fresh)
    assert set(got) == set(want)
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=f"{name}: {key}")
    assert not np.array_equal(before["rec"], want["rec"]), "loading the checkpoint changed nothing"


@pytest.mark.parametrize("name", METHODS)
def test_the_method_invariant_holds_on_its_trained_run(name, trained):
    """Each method's own `invariant` (a no-op where none is declared) on the contract suite's run, BN methods with
    their paper's optimiser."""
    t = trained(name, train=PAPER_OPTIMISER) if name.startswith("bnvae") else trained(name)
    t.method.invariant(TrainedRun(t.method, t.model, t.cfg, t.corpus, t.trainer.train_batches, t.metrics))


@pytest.fixture(scope="module")
def listing():
    import contextlib
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli_main(["list"]) == 0
    return out.getvalue()


@pytest.mark.parametrize("name", METHODS)
def test_listed_with_description(name, listing):
    cls = registry.get(name)
    desc = cls.description()
    assert len(desc) > 20, f"{name} needs a one-line docstring description"
    assert any(line.startswith(f"{name} ") and desc in line for line in listing.splitlines())


@pytest.mark.parametrize("name", METHODS)
def test_params_validate_and_search_space(name):
    import optuna
    cls = registry.get(name)
    fields = {f.name for f in dataclasses.fields(cls.Params)}
    cls.Params()  # the defaults are valid
    if not fields:
        assert cls.Params.search_space(None) == {}
        return
    assert name in BAD_PARAMS, f"add an invalid value for {name} to BAD_PARAMS"
    with pytest.raises(ValueError) as err:
        cls.Params(**BAD_PARAMS[name])
    assert name in str(err.value)  # the message names the parameter to fix
    (key, bad), = BAD_PARAMS[name].items()
    with pytest.raises(ParamError):
        cls.Params.from_strings(name, {key: str(bad)})
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    space = cls.Params.search_space(trial)
    assert space and set(space) <= fields
    cls.Params(**space)  # every suggestion is valid


def _outside(bound: str, edge: float, integer: bool) -> float:
    """A value just past a declared bound (gt/ge below it, lt/le above it)."""
    step = 1 if integer else 1e-6
    return {"gt": edge, "ge": edge - step, "lt": edge, "le": edge + step}[bound]


@pytest.mark.parametrize("name", METHODS)
def test_declared_ranges_are_what_validate_accepts(name):
    """`list METHOD` prints each number's range from its `param(..., ge=/gt=/le=/lt=)`: validate must refuse just
    past each bound and accept an inclusive bound itself, so the printed range is the enforced one."""
    cls = registry.get(name)
    for f in dataclasses.fields(cls.Params):
        integer = isinstance(f.default, int) and not isinstance(f.default, bool)
        for bound in ("gt", "ge", "lt", "le"):
            if bound not in f.metadata:
                continue
            edge = f.metadata[bound]
            with pytest.raises(ParamError, match=f.name):
                cls.Params(**{f.name: _outside(bound, edge, integer)})
            if bound in ("ge", "le"):
                cls.Params(**{f.name: int(edge) if integer else float(edge)})


# ------------------------------------------------------------------------------------------ invariants

def _raw_head_var(model, tokens) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch variance (biased, as BN normalises with) of the head's two raw linear outputs, per dimension."""
    with torch.no_grad():
        m, s = model.head.linear(model.encoder(tokens)).chunk(2, -1)
    return m.var(0, unbiased=False), s.var(0, unbiased=False)


def _batch_stats_posterior(model, tokens):
    """The posterior with BN in train mode (batch statistics), on a copy so the running stats stay put."""
    model = copy.deepcopy(model).train()
    with torch.no_grad():
        return model.posterior(tokens)


# The BN floors need the raw means' batch variance far above BN's eps; the paper's SGD (lr 1) keeps it there,
# Adam does not (see BNVAE's docstring), so the BN models of these tests train with the paper's optimiser.
PAPER_OPTIMISER = {"optimizer": "sgd", "lr": 1.0}


def test_bnvae_kl_floor_with_batch_statistics(trained):
    """BN in train mode fixes each mean's batch moments: mean_batch mu_j^2 = gamma^2 v_j / (v_j + eps) + beta_j^2
    (v_j the raw means' batch variance), and the Gaussian KL is >= sum_j mu_j^2 / 2. So the batch-mean KL is >= the
    floor sum_j (gamma^2 v_j / (v_j + eps) + beta_j^2) / 2, computed here from the raw means and the module's
    beta and eps, and the mean part of the KL sits on it exactly: without BN it would be sum_j mean_batch m_j^2 / 2,
    whatever the encoder makes of it."""
    t = trained("bnvae", train=PAPER_OPTIMISER)
    bn = t.model.head.bn
    gamma, nz = t.method.params.gamma, t.cfg.model.nz
    assert not bn.weight.requires_grad and torch.all(bn.weight == gamma), "gamma must stay fixed"
    assert bn.bias.requires_grad and bn.bias.abs().max() > 0, "beta must be learned"
    beta = bn.bias.detach()
    for b in t.trainer.train_batches:
        v, _ = _raw_head_var(t.model, b.tokens)
        assert float(v.min()) > 100 * bn.eps, "the raw means collapsed towards BN's eps"
        floor = 0.5 * float((gamma ** 2 * v / (v + bn.eps) + beta.pow(2)).sum())
        assert floor >= nz * gamma ** 2 / 2 * (1 - 0.01)          # the paper's nz gamma^2 / 2, while v >> eps
        post = _batch_stats_posterior(t.model, b.tokens)
        assert float(post.kl().mean()) >= floor * (1 - 1e-4)
        assert float(0.5 * post.mean.pow(2).sum(-1).mean()) == pytest.approx(floor, rel=1e-4)


def test_bnvae_su_kl_floor_with_batch_statistics(trained):
    """Su's head: mu_j = g_j BN(m_j) with g_j^2 = tau + (1 - tau) sigmoid(theta_j), so the batch-mean KL is >= the
    floor sum_j g_j^2 v_j / (v_j + eps) / 2 >= nz tau / 2 (v_j >> eps), its mean part sits on that floor exactly,
    and with the sigma branch's (1 - tau)(1 - sigmoid(theta_j)) the batch's second moment mean(mu^2 + sigma^2)
    is the prior's, 1 per dimension (+ the 1e-6 added to the variance)."""
    t = trained("bnvae-su", train=PAPER_OPTIMISER)
    head, nz, tau = t.model.head, t.cfg.model.nz, t.method.params.tau
    assert head.theta.abs().max() > 0, "theta must be learned"
    share = torch.sigmoid(head.theta.detach())
    g_mu2, g_sigma2 = tau + (1 - tau) * share, (1 - tau) * (1 - share)
    for b in t.trainer.train_batches:
        v_m, v_s = _raw_head_var(t.model, b.tokens)
        assert float(v_m.min()) > 1000 * head.bn_mu.eps and float(v_s.min()) > 1000 * head.bn_sigma.eps
        floor = 0.5 * float((g_mu2 * v_m / (v_m + head.bn_mu.eps)).sum())
        assert floor >= nz * tau / 2 * (1 - 1e-3)                  # v_m / (v_m + eps) >= 0.999
        post = _batch_stats_posterior(t.model, b.tokens)
        assert float(post.kl().mean()) >= floor * (1 - 1e-4)
        assert float(0.5 * post.mean.pow(2).sum(-1).mean()) == pytest.approx(floor, rel=1e-4)
        second = (post.mean.pow(2) + post.logvar.exp()).mean(0)
        torch.testing.assert_close(second, g_mu2 * v_m / (v_m + head.bn_mu.eps) + g_sigma2 * v_s / (v_s + head.bn_sigma.eps)
                                   + 1e-6, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(second, torch.ones(nz), rtol=2e-3, atol=0)


def test_delta_kl_at_least_nz_delta_for_every_sentence(trained):
    from collapse_bench.methods.delta import variance_bounds
    t = trained("delta")
    delta, nz = t.method.params.delta, t.cfg.model.nz
    post = ev.encode(t.method, t.model, t.corpus.test, 128, "cpu")
    per_dim = post.kl_per_dim()
    assert per_dim.shape[0] == len(t.corpus.test)
    assert float(per_dim.min()) >= delta - 1e-5
    assert float(post.kl().min()) >= nz * delta - 1e-4
    s_l, s_u = variance_bounds(delta)
    for s in (s_l, s_u):
        assert abs(math.log(s) - s + 2 * delta + 1) < 1e-10
    var = post.logvar.exp()
    assert float(var.min()) >= s_l * (1 - 1e-5) and float(var.max()) <= s_u * (1 + 1e-5)
    # protocol 2.10's table: sigma in [0.702, 1.331] for delta 0.1 and [0.641, 1.409] for 0.15
    assert [round(math.sqrt(x), 3) for x in variance_bounds(0.1)] == [0.702, 1.331]
    assert [round(math.sqrt(x), 3) for x in variance_bounds(0.15)] == [0.641, 1.409]


def _vmf_marginal(kappa: float, d: int, log_c: float):
    """Density of t = mu.z on [-1, 1] implied by C_d(kappa): C e^{kappa t} (1 - t^2)^{(d-3)/2} area(S^{d-2})."""
    log_area_sub = math.log(2) + ((d - 1) / 2) * math.log(math.pi) - gammaln((d - 1) / 2)
    return lambda x: math.exp(log_c + kappa * x + log_area_sub + ((d - 3) / 2) * math.log1p(-x * x))


@pytest.mark.parametrize("d", [2, 3, 5, 16, 32])
def test_vmf_density_normalises(d):
    from collapse_bench.methods.vmf import vmf_constants
    kappa = 13.0
    c = vmf_constants(kappa, d)
    f = _vmf_marginal(kappa, d, c["log_c"])
    total, _ = integrate.quad(f, -1, 1, limit=200)
    assert total == pytest.approx(1.0, rel=1e-6)
    if d == 3:  # closed form C_3(kappa) = kappa / (4 pi sinh kappa)
        assert c["log_c"] == pytest.approx(math.log(kappa / (4 * math.pi * math.sinh(kappa))), rel=1e-10)
    # KL(vMF || uniform) = E_t[log C + kappa t] + log area(S^{d-1}), by quadrature
    kl, _ = integrate.quad(lambda x: f(x) * (c["log_c"] + kappa * x + c["log_area"]), -1, 1, limit=200)
    assert c["kl"] == pytest.approx(kl, rel=1e-6)


def test_vmf_trained_kl_is_its_closed_form_and_scores_use_the_vmf_density(trained):
    from collapse_bench.methods.vmf import VonMisesFisher, guu_kl, vmf_constants
    t = trained("vmf")
    kappa, d = t.method.params.kappa, t.cfg.model.nz
    post = ev.encode(t.method, t.model, t.corpus.test, 128, "cpu")
    assert isinstance(post, VonMisesFisher)
    torch.testing.assert_close(post.mu.norm(dim=-1), torch.ones(len(t.corpus.test)))
    c = vmf_constants(kappa, d)
    f = _vmf_marginal(kappa, d, c["log_c"])
    kl_quad, _ = integrate.quad(lambda x: f(x) * (c["log_c"] + kappa * x + c["log_area"]), -1, 1, limit=200)
    assert t.metrics["kl"] == pytest.approx(kl_quad, rel=1e-5)
    assert float(post.kl().std()) == 0.0
    # the paper's setting: exact 2.17 nats (BNV's Guu-form expression 2.08)
    assert vmf_constants(13.0, 32)["kl"] == pytest.approx(2.17, abs=0.005)
    assert guu_kl(13.0, 32) == pytest.approx(2.08, abs=0.005)
    # log q is the vMF density, so the importance-weighted bound beats the 1-sample ELBO
    split = t.corpus.test.subset(np.arange(100))
    torch.manual_seed(0)
    nll = ev.iw_nll(t.method, t.model, split, 50, 4096, 128, "cpu")
    rec, kl = ev.elbo_terms(t.method, t.model, split, 128, "cpu")
    assert nll.mean() < (rec + kl).mean()
    assert nll.mean() > (rec + kl).mean() - float(c["kl"]) - 5.0   # a valid bound cannot gain much more than KL


def test_vmf_wood_sampler_matches_the_density():
    from collapse_bench.methods.vmf import VonMisesFisher, vmf_constants
    kappa, d, n = 13.0, 16, 4000
    c = vmf_constants(kappa, d)
    torch.manual_seed(0)
    mu = torch.nn.functional.normalize(torch.randn(2, d), dim=-1)
    z = VonMisesFisher(mu, kappa).rsample(n // 2)                          # [2, n/2, d]
    torch.testing.assert_close(z.norm(dim=-1), torch.ones(2, n // 2))
    w = (z * mu.unsqueeze(1)).sum(-1).flatten().double().numpy()
    f = _vmf_marginal(kappa, d, c["log_c"])
    grid = np.linspace(-1, 1, 2001)
    dens = np.array([f(x) if abs(x) < 1 else 0.0 for x in grid])
    cdf_grid = np.concatenate([[0.0], np.cumsum((dens[1:] + dens[:-1]) / 2 * np.diff(grid))])
    assert cdf_grid[-1] == pytest.approx(1.0, abs=1e-4)
    assert stats.kstest(w, lambda x: np.interp(x, grid, cdf_grid)).pvalue > 1e-3
    assert w.mean() == pytest.approx(c["mean_cos"], abs=4 * w.std() / math.sqrt(n))
    # gradients reach the encoder through mu
    mu_leaf = mu.clone().requires_grad_(True)
    VonMisesFisher(mu_leaf, kappa).rsample(3).sum().backward()
    assert mu_leaf.grad is not None and mu_leaf.grad.abs().sum() > 0


def test_fb_per_dimension_penalty_meets_its_target(trained):
    t = trained("fb")
    nz = t.cfg.model.nz
    tokens = t.batch().tokens
    with torch.no_grad():
        post0 = t.model.posterior(tokens)
    kl0 = post0.kl_per_dim()
    fb = registry.get("fb")
    # the trained method's own target, and one in the middle of this model's per-dimension KLs
    for method in (t.method, fb(fb.Params(target=float(kl0.median()) * nz))):
        target = method.params.target
        mu = post0.mu.clone().requires_grad_(True)
        post = Gaussian(mu, post0.logvar)
        kl = post.kl_per_dim()
        pen = method.kl_penalty(post)
        assert bool((pen >= target * (1 - 1e-6)).all()), "each sentence pays at least the target"
        torch.testing.assert_close(pen, kl.clamp(min=target / nz).sum(-1))
        pen.sum().backward()
        below = (kl < target / nz).detach()
        assert bool((mu.grad[below] == 0).all()), "no gradient below the floor"
        assert bool((mu.grad[~below & (mu.detach().abs() > 1e-6)] != 0).all()), "full gradient above it"
    assert below.any() and (~below).any()
    # Kingma et al.'s batch-level clamp on the same posterior: mean over the batch first, then the floor
    g4 = 4
    kl_g = kl0.view(len(tokens), g4, nz // g4).sum(-1).mean(0)
    target = float(kl_g.median()) * g4
    kingma = fb(fb.Params(target=target, mode="kingma", groups=g4))
    mu = post0.mu.clone().requires_grad_(True)
    pen_k = kingma.kl_penalty(Gaussian(mu, post0.logvar))
    assert float(pen_k.mean().detach()) == pytest.approx(float(kl_g.clamp(min=target / g4).sum()), rel=1e-5)
    pen_k.mean().backward()
    g = mu.grad.view(len(tokens), g4, nz // g4)
    low = kl_g <= target / g4
    assert low.any() and (~low).any()
    for j in range(g4):
        assert bool((g[:, j] == 0).all()) == bool(low[j])


def test_linear_annealing_raises_the_weight_before_each_update():
    """He et al.'s loop (and BN-VAE's text_anneal_fb.py) does `kl_weight = min(1, kl_weight + rate)` before each
    update, so the first update (Trainer.step 0) already uses kl_start + rate. Found by tests/test_step_parity.py."""
    from collapse_bench.config import TrainConfig
    cfg, spe = TrainConfig(kl_start=0.1, warm_up=2), 50.0
    rate = (1.0 - cfg.kl_start) / (cfg.warm_up * spe)
    for name in ("vanilla", "bnvae"):
        m = registry.get(name)()
        w = cfg.kl_start
        for step in range(130):
            w = min(1.0, w + rate)
            assert m.kl_weight(step, spe, cfg) == pytest.approx(w, rel=1e-12), (name, step)
    assert registry.get("vanilla")().kl_weight(0, spe, TrainConfig(kl_start=0.1, warm_up=0)) == 0.1


def test_anneal_schedules_have_their_shape():
    from collapse_bench.config import size_config
    cfg = size_config("smoke", DATASET).train
    spe, total = 40.0, cfg.warm_up * 40.0
    for schedule in ("linear", "sigmoid"):
        m = registry.get("anneal")(registry.get("anneal").Params(schedule=schedule))
        w = np.array([m.kl_weight(s, spe, cfg) for s in range(int(total) + 20)])
        assert w[0] == 0.0 and w[int(total)] == pytest.approx(1.0) and np.all(w[int(total):] == 1.0)
        assert np.all(np.diff(w) >= -1e-12)
        assert w[int(total) // 2] == pytest.approx(0.5, abs=1e-9)   # both pass (T/2, 1/2)
        quarter, three_q = w[int(total) // 4], w[3 * int(total) // 4]
        if schedule == "linear":
            assert quarter == pytest.approx(0.25) and three_q == pytest.approx(0.75)
        else:  # S-shape: slow start, steep middle, slow finish; symmetric about the midpoint
            assert quarter < 0.2 and three_q > 0.8 and quarter + three_q == pytest.approx(1.0)
    m = registry.get("anneal")(registry.get("anneal").Params(schedule="linear", kl_start=0.1, warm_up=2.0))
    assert m.kl_weight(0, spe, cfg) == pytest.approx(0.1) and m.kl_weight(40, spe, cfg) == pytest.approx(0.55)


def test_cyclic_schedule_cycles_are_epochs_long(trained):
    t = trained("cyclic", cycle_epochs=0.25)   # 4 cycles in the 1-epoch test run
    p, per_epoch = t.method.params, len(t.trainer.train_batches)
    total = t.cfg.train.epochs * per_epoch
    assert t.trainer.step == total
    w = np.array([t.method.kl_weight(s, t.trainer.steps_per_epoch, t.cfg.train) for s in range(total)])
    period = math.ceil(p.cycle_epochs * per_epoch)
    starts = np.flatnonzero(w == p.kl_start)
    assert starts[0] == 0 and np.all(np.diff(starts) == period), "a restart every cycle_epochs epochs"
    first = w[:period]
    rising = first[first < 1.0]
    assert np.all(np.diff(rising) > 0), "rises every iteration (no weight pinned for a restart epoch)"
    assert len(rising) == pytest.approx(p.ratio * p.cycle_epochs * per_epoch, abs=1.0)
    assert np.all(first[len(rising):] == 1.0)
    # the default is Fu et al.'s 10-epoch cycle whatever the run's length: a 1-epoch run is still rising
    default = registry.get("cyclic")()
    default._iters_per_epoch = per_epoch
    assert default.kl_weight(total - 1, t.trainer.steps_per_epoch, t.cfg.train) == pytest.approx((total - 1) / (5 * per_epoch))
    # Fu et al.'s formula on a round example: T = 100, M = 4 (period 25), R = 0.5
    from collapse_bench.methods.cyclic import cyclical_schedule
    ws = [cyclical_schedule(i, 25, 0.5) for i in range(1, 101)]
    assert ws[:3] == pytest.approx([0.0, 0.08, 0.16]) and ws[12] == pytest.approx(0.96)
    assert ws[13:25] == [1.0] * 12 and ws[25] == 0.0 and ws[26] == pytest.approx(0.08)


def test_word_dropout_drops_at_its_rate(trained):
    t = trained("word-dropout")
    rate = t.method.params.rate
    model = t.model.train()
    seen = []
    orig = model.decoder.logits

    def spy(inputs, z):
        seen.append(inputs.clone())
        return orig(inputs, z)

    model.decoder.logits = spy
    try:
        torch.manual_seed(0)
        for b in t.trainer.train_batches:
            before = len(seen)
            t.method.loss(model, b, 1.0)
            assert len(seen) == before + 1
            inp, src = seen[-1], b.tokens[:, :-1]
            assert bool((inp[:, 0] == BOS).all()), "<s> is never dropped"
            changed = inp != src
            assert bool((inp[changed] == UNK).all())
            seen[-1] = (changed[:, 1:] | (src[:, 1:] == UNK)).float()
    finally:
        del model.decoder.logits
        model.eval()
    flags = torch.cat([s.flatten() for s in seen])
    n = flags.numel()
    assert float(flags.mean()) == pytest.approx(rate, abs=4 * math.sqrt(rate * (1 - rate) / n))
    # evaluation never drops words: the ELBO's reconstruction is the decoder on the intact sentence
    split = t.corpus.test.subset(np.arange(32))
    torch.manual_seed(1)
    rec, _ = ev.elbo_terms(t.method, t.model, split, 32, "cpu")
    torch.manual_seed(1)
    rec_plain, _ = ev.elbo_terms(registry.get("vanilla")(), t.model, split, 32, "cpu")
    np.testing.assert_array_equal(rec, rec_plain)


def test_savae_refined_elbo_no_worse_than_amortised(trained):
    t = trained("savae")
    model = t.model.eval()
    tokens = t.batch().tokens

    def elbo(post, n=64):
        torch.manual_seed(7)
        with torch.no_grad():
            z = post.rsample(n)
            return float((model.decoder.log_prob(tokens, z).mean(1) - post.kl()).mean())

    with torch.no_grad():
        amortised = t.method.amortized_posterior(model, tokens)
        torch.manual_seed(3)
        refined = t.method.eval_posterior(model, tokens)
    assert not torch.equal(refined.mu, amortised.mu), "eval_posterior must refine"
    assert not refined.mu.requires_grad
    assert elbo(refined) >= elbo(amortised)
    # training backpropagates through the unrolled steps: the encoder gets a gradient from the refined loss
    model.train()
    model.zero_grad()
    t.method.loss(model, t.batch(), 1.0).total.backward()
    model.eval()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.head.parameters())


def test_agg_inner_loop_and_phase_end(trained):
    t = trained("agg")
    cfg, corpus = t.cfg, t.corpus
    method = registry.get("agg")()
    trainer = Trainer(method, cfg, corpus, seed=SEED)
    ctx = trainer.ctx
    method.before_training(ctx)
    calls = []
    ctx.optimize = lambda loss, which="both": (calls.append(which), trainer.optimize(loss, which))
    enc0 = [p.detach().clone() for p in trainer.model.encoder_parameters()]
    dec0 = [p.detach().clone() for p in trainer.model.decoder_parameters()]
    logs = method.train_step(ctx, trainer.train_batches[0])
    n = int(logs["inner_steps"])
    assert calls == ["encoder"] * n + ["decoder"]
    assert 1 <= n <= method.params.inner_steps and (n % method.params.window == 0 or n == method.params.inner_steps)
    assert any(not torch.equal(a, b) for a, b in zip(enc0, trainer.model.encoder_parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(dec0, trainer.model.decoder_parameters()))
    # the phase ends at the first epoch whose validation MI drops, for good; stop_mi="full" reads the curve's MI
    method.params = dataclasses.replace(method.params, stop_mi="full")
    for epoch, mi in enumerate([0.2, 0.5, 0.4, 0.9], 1):
        method.on_epoch_end(ctx, epoch, {"valid_mi": mi})
        assert method.aggressive == (epoch < 3)
    calls.clear()
    assert method.train_step(ctx, trainer.train_batches[0])["inner_steps"] == 0 and calls == ["both"]
    # the default, He et al.'s rule: their per-batch estimate decides (and is recorded), not the full-set curve
    method.params = dataclasses.replace(method.params, stop_mi="per-batch")
    method.before_training(ctx)
    per_batch = iter([0.2, 0.5, 0.4, 0.9])
    method.per_batch_validation_mi = lambda ctx: next(per_batch)
    for epoch, full_set_mi in enumerate([0.9, 0.8, 0.7, 0.6], 1):
        point = {"valid_mi": full_set_mi}
        method.on_epoch_end(ctx, epoch, point)
        assert method.aggressive == (epoch < 3) and ("valid_mi_per_batch" in point) == (epoch <= 3)
    # the trained run (default rule) recorded its phase consistently with its per-batch MI curve
    assert t.method.params.stop_mi == "per-batch"
    mis = [0.0] + [c["valid_mi_per_batch"] for c in t.trainer.curves if "valid_mi_per_batch" in c]
    drop = next((e for e in range(1, len(mis)) if mis[e] < mis[e - 1]), None)
    assert t.method.aggressive == (drop is None) and len(mis) - 1 == (drop or t.timing["epochs"])


def test_agg_per_batch_mi_is_he_et_al_estimate_on_the_validation_set(trained):
    t = trained("agg")
    t.trainer.model.train()
    torch.manual_seed(0)
    got = t.method.per_batch_validation_mi(t.trainer.ctx)
    assert t.trainer.model.training          # back in train mode
    t.trainer.model.eval()
    torch.manual_seed(0)
    posts = ev.encode_batches(t.method, t.trainer.model, t.corpus.valid, t.cfg.train.batch_size, "cpu")
    assert got == ev.mutual_information_per_batch(posts)
    assert sum(p.mean.shape[0] for p in posts) == len(t.corpus.valid)
    assert max(p.mean.shape[0] for p in posts) == t.cfg.train.batch_size


def test_skip_feeds_z_to_the_output_layer(trained):
    t = trained("skip")
    dec = t.model.decoder.eval()
    assert dec.skip is not None and dec.skip.weight.abs().max() > 0
    tokens = t.batch().tokens[:, :-1]
    z = torch.randn(tokens.shape[0], t.cfg.model.nz)
    with torch.no_grad():
        with_skip = dec.logits(tokens, z)
        skip, dec.skip = dec.skip, None
        try:
            without = dec.logits(tokens, z)
        finally:
            dec.skip = skip
        torch.testing.assert_close(with_skip - without, skip(z).unsqueeze(1).expand_as(with_skip))


def test_bow_head_is_trained_and_predicts_the_bag(trained):
    t = trained("bow")
    model = t.model
    assert {id(p) for p in model.bow.parameters()} <= {id(p) for p in model.decoder_parameters()}
    torch.manual_seed(SEED)
    fresh = t.method.build_model(t.cfg.model, len(t.corpus.vocab))
    assert not torch.equal(fresh.bow[2].weight, model.bow[2].weight), "the BoW MLP must be trained"
    tokens = t.batch().tokens
    z = torch.randn(tokens.shape[0], t.cfg.model.nz)
    with torch.no_grad():
        logp = torch.log_softmax(model.bow(z), -1)
        want = -torch.stack([logp[i, tokens[i, 1:]].sum() for i in range(len(tokens))])
        torch.testing.assert_close(model.bow_nll(tokens, z), want)


def test_eae_entropy_estimator_and_proposal(trained):
    from collapse_bench.methods.eae import kl_entropy
    torch.manual_seed(0)
    for d in (2, 8):
        est = float(kl_entropy(torch.randn(3000, d), k=1))
        assert est == pytest.approx(0.5 * d * math.log(2 * math.pi * math.e), abs=0.1 * d)
    t = trained("eae")
    model, s = copy.deepcopy(t.model).train(), t.method.params.proposal_std
    tokens = t.batch().tokens
    with torch.no_grad():
        post = model.posterior(tokens)
    # BN without affine: zero mean, unit variance per dimension within the batch
    torch.testing.assert_close(post.mu.mean(0), torch.zeros(t.cfg.model.nz), atol=1e-5, rtol=0)
    with torch.no_grad():
        v = model.head.linear(model.encoder(tokens)).var(0, unbiased=False)
    torch.testing.assert_close(post.mu.var(0, unbiased=False), v / (v + model.head.bn.eps), atol=1e-4, rtol=1e-3)
    torch.testing.assert_close(post.logvar, torch.full_like(post.logvar, 2 * math.log(s)))
    # the code is deterministic: the reconstruction term does not sample
    model.eval()
    with torch.no_grad():
        a, b = t.method.loss(model, t.batch(), 0.0), t.method.loss(model, t.batch(), 0.0)
    torch.testing.assert_close(a.rec, b.rec, rtol=0, atol=0)


@pytest.mark.parametrize("name", ["fb", "vmf"])
def test_pretrain_ae_starts_from_the_ae_encoder(name, trained):
    ae = trained("ae").model   # the registered `ae` cell with the same data, size and seed
    spec = make_spec(name, pretrain="ae")
    method, cfg = spec.make_method(), spec.size_config()
    trainer = Trainer(method, cfg, trained("ae").corpus, seed=SEED)
    enc0 = copy.deepcopy(trainer.model.encoder.state_dict())
    dec0 = copy.deepcopy(trainer.model.decoder.state_dict())
    method.before_training(trainer.ctx)
    for k, v in ae.encoder.state_dict().items():
        assert torch.equal(trainer.model.encoder.state_dict()[k], v), k
    assert any(not torch.equal(enc0[k], v) for k, v in trainer.model.encoder.state_dict().items())
    w = trainer.model.head.linear.weight
    assert torch.equal(w, ae.head.linear.weight[: w.shape[0]])
    for k, v in dec0.items():
        assert torch.equal(trainer.model.decoder.state_dict()[k], v), f"decoder {k} must stay freshly initialised"
    assert trainer.ctx.info["pretrain"]["ae_steps"] == trained("ae").timing["steps"]


def test_pretrain_time_counts_as_training_time():
    """pretrain='ae' trains the AE inside Trainer.fit, on fit's clock: the AE's time, as the pretraining measures it
    apart from fit, is in the cell's before_training_seconds and adds to the time of the cell's own steps in
    train_seconds. Were the pretraining run or timed outside fit's training time, train_seconds would be the
    cell's steps alone and before_training_seconds ~0."""
    trainer = build_trainer(make_spec("bnvae", pretrain="ae"))
    timing = trainer.fit()
    ae = trainer.ctx.info.get("pretrain")
    assert ae is not None and ae["ae_steps"] > 0 and ae["ae_seconds"] > 0, ae
    own_steps = timing["seconds_per_step"] * timing["steps"]
    assert own_steps > 0
    assert timing["before_training_seconds"] >= ae["ae_seconds"]
    assert timing["train_seconds"] >= (ae["ae_seconds"] + own_steps) * (1 - 1e-9)


@pytest.mark.parametrize("name", ["bnvae", "bnvae-su"])
def test_bn_methods_run_at_every_size_and_refuse_a_void_floor(name):
    from collapse_bench.config import SIZES, size_config
    method = registry.get(name)()
    for size in SIZES:
        method.check_config(size_config(size, DATASET))    # every size the harness offers keeps the floor
    smoke = size_config("smoke", DATASET)
    with pytest.raises(ParamError, match="train.optimizer=sgd"):
        method.check_config(smoke.replace(train={"optimizer": "adam"}))
    with pytest.raises(ParamError, match="model.encoder_init=pytorch"):
        method.check_config(smoke.replace(model={"encoder_init": "uniform"}))
    with pytest.raises(ValueError, match="train.optimizer=sgd"):     # refused before anything runs
        from collapse_bench.sweep import expand
        expand([name], [DATASET], ["smoke"], [0], {"train": {"optimizer": "adam"}})


def test_bnvae_at_smoke_size_keeps_its_floor_on_the_test_set():
    """`run --methods bnvae --size smoke` as a user runs it: the scored test KL (BN running statistics) is above
    nz*gamma^2/2 (it was 0.02 against 2.88 when smoke trained with Adam)."""
    record = run_record(CellSpec("bnvae", DATASET, "smoke", 0, registry.get("bnvae").Params().to_dict()))
    assert record["status"] == "ok", record["error"]
    cfg = record["config"]
    assert record["metrics"]["kl"] >= cfg["model"]["nz"] * cfg["method"]["gamma"] ** 2 / 2


def test_savae_svi_step_is_whole_batch_mean_and_clip(trained):
    """He et al.'s rerun: the SVI loss is the batch mean, and each variable's gradient is clipped over the batch
    (not per sentence): one step with a tiny clip moves mu by exactly lr * clip in Frobenius norm, and every
    sentence by the same fraction of its own gradient."""
    t = trained("savae")
    model = t.model.eval()
    tokens = t.batch(min_size=8).tokens[:8]
    method = registry.get("savae")(registry.get("savae").Params(svi_steps=1, svi_momentum=0.0, svi_clip=1e-3))
    with torch.no_grad():
        start = method.amortized_posterior(model, tokens)
    mu0 = start.mu.detach().requires_grad_(True)
    torch.manual_seed(5)
    q = Gaussian(mu0, start.logvar.detach())
    g = torch.autograd.grad((-model.decoder.log_prob(tokens, q.rsample(1))[:, 0] + q.kl()).mean(), mu0)[0]
    torch.manual_seed(5)
    with torch.enable_grad():
        refined = method.refine(model, start, tokens, 1.0, create_graph=False)
    step = refined.mu - start.mu
    assert float(step.norm()) == pytest.approx(1e-3, rel=1e-4)
    torch.testing.assert_close(step, -1e-3 * g / g.norm(), rtol=1e-3, atol=5e-8)   # float32 cancellation in step


def _savae_gradients(reverse: str, dtype: torch.dtype, clip: float) -> tuple[dict, float]:
    """One training step's parameter gradients of SA-VAE with the given reverse pass, and the next random draw."""
    params = registry.get("savae").Params(svi_backward=reverse, svi_clip=clip)
    trainer = build_trainer(make_spec("savae", **params.to_dict()))
    model = trainer.model.to(dtype).train()
    batch = max(trainer.train_batches, key=lambda b: (b.size, b.tokens.shape[1]))
    torch.manual_seed(11)
    trainer.method.loss(model, batch, 0.5).total.backward()
    return {n: q.grad for n, q in model.named_parameters() if q.grad is not None}, torch.rand(1).item()


@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-7), (torch.float32, 0.1)])
def test_savae_finite_difference_reverse_pass_matches_exact(dtype, tolerance):
    """Kim et al.'s reverse pass (finite-difference Hessian-vector products, r = 1e-5) and exact second-order
    autograd give the same encoder and decoder gradients where no clip is active: to 1e-7 relative per parameter
    tensor in float64 (measured 6e-10: the same algorithm), to 0.1 in float32 (measured <= 0.04: the difference
    quotient of float32 gradients at r = 1e-5 is good to a few per cent, as in Kim et al.'s runs). Both modes
    draw the same random numbers (each step's sample and dropout masks are replayed in the reverse pass)."""
    fd, after_fd = _savae_gradients("fd", dtype, clip=1e9)
    exact, after_exact = _savae_gradients("exact", dtype, clip=1e9)
    assert after_fd == after_exact
    assert fd.keys() == exact.keys() and any(n.startswith("encoder") for n in fd)
    for name in exact:
        error = float((fd[name] - exact[name]).norm() / exact[name].norm())
        assert error <= tolerance, (name, error)


def test_savae_finite_difference_keeps_kim_et_al_clips():
    """Kim et al.'s backward_mom clips the running gradient w.r.t. (mu, log sigma^2) jointly at each step, and each
    step's H_θx v before it reaches the decoder: with a tiny clip c and an upstream gradient far above it, the
    gradient reaching the encoder's output has joint norm <= c, and the decoder (which the upstream loss does not
    touch directly) receives at most svi_steps * c."""
    clip, steps = 1e-3, 4
    trainer = build_trainer(make_spec("savae", svi_clip=clip, svi_steps=steps))
    model = trainer.model.double().train()
    tokens = max(trainer.train_batches, key=lambda b: (b.size, b.tokens.shape[1])).tokens
    with torch.no_grad():
        start = model.posterior(tokens)
    mu0, lv0 = start.mu.clone().requires_grad_(True), start.logvar.clone().requires_grad_(True)
    refined = trainer.method.refine_fd(model, Gaussian(mu0, lv0), tokens, 1.0)
    model.zero_grad()
    (1e3 * (refined.mu ** 2 + refined.logvar ** 2).sum()).backward()
    to_encoder = math.hypot(float(mu0.grad.norm()), float(lv0.grad.norm()))
    to_decoder = math.sqrt(sum(float(q.grad.norm()) ** 2 for q in model.decoder.parameters() if q.grad is not None))
    assert 0 < to_encoder <= clip * (1 + 1e-6)
    assert 0 < to_decoder <= steps * clip * (1 + 1e-6)


def test_vmf_active_units_are_counted_on_the_direction():
    from collapse_bench.methods.vmf import VonMisesFisher
    torch.manual_seed(0)
    d = 32
    # per-dimension variance of the direction between 0.01 and 0.01 / A^2: active on mu, not on E_q[z] = A mu
    mu = torch.nn.functional.normalize(torch.ones(4000, d) + 0.9 * torch.randn(4000, d), dim=-1)
    post = VonMisesFisher(mu, 13.0)
    a = post._const()["mean_cos"]
    var = mu.var(0)
    assert bool(((var > 0.011) & (var * a ** 2 < 0.009)).all())
    assert ev.active_units(post)[0] == d
    assert ev.active_units(Gaussian(post.mean, torch.zeros_like(mu)))[0] == 0    # E_q[z] would count none


def test_encoder_init_follows_the_bn_vae_code_unless_uniform_is_asked():
    """The BN-VAE code's Gaussian encoder keeps PyTorch's defaults (embedding N(0, 1), LSTM/linear
    U(+-1/sqrt(fan))); He et al.'s and Li et al.'s code use U(+-0.1) / U(+-0.01). The decoder is uniform in all."""
    from collapse_bench.config import size_config
    cfg = size_config("smoke", DATASET).model
    for name in ("vanilla", "bnvae", "fb", "cyclic"):
        torch.manual_seed(0)
        model = registry.get(name)().build_model(cfg, 500)
        assert 0.9 < float(model.encoder.embed.weight.detach().std()) < 1.1
        bound = 1 / math.sqrt(cfg.enc_hidden)
        assert 0.9 * bound < float(model.head.linear.weight.detach().abs().max()) <= bound
        assert float(model.decoder.embed.weight.detach().abs().max()) <= cfg.emb_init_range
    uniform = dataclasses.replace(cfg, encoder_init="uniform")
    model = registry.get("vanilla")().build_model(uniform, 500)
    assert float(model.encoder.embed.weight.detach().abs().max()) <= uniform.emb_init_range
    assert float(model.encoder.lstm.weight_hh_l0.detach().abs().max()) <= uniform.init_range
