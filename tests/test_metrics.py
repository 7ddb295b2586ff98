"""Metric code against cases with a known answer."""
import math

import numpy as np
import pytest
import torch

from collapse_bench import evaluate as ev
from collapse_bench.config import ModelConfig
from collapse_bench.data import Split
from collapse_bench.method import Method
from collapse_bench.model import TextVAE
from collapse_bench.posterior import Gaussian
from collapse_bench.probe import draw_subsets, probe

V = 30
CFG = ModelConfig(emb=8, enc_hidden=16, dec_hidden=16, nz=4, dec_dropout_in=0.0, dec_dropout_out=0.0)


def random_split(n=60, seed=0) -> Split:
    rng = np.random.default_rng(seed)
    return Split([rng.integers(4, V, rng.integers(1, 7)) for _ in range(n)], None)


def make_model(ignore_z=False, prior_posterior=False, seed=0) -> TextVAE:
    torch.manual_seed(seed)
    m = TextVAE(CFG, V)
    for p in m.parameters():                   # larger weights than the protocol init: a non-trivial model
        torch.nn.init.uniform_(p, -0.5, 0.5)
    with torch.no_grad():
        if ignore_z:
            m.decoder.init_state.weight.zero_()
            m.decoder.lstm.weight_ih_l0[:, CFG.emb:].zero_()   # the z columns of the input weights
        if prior_posterior:
            m.head.linear.weight.zero_()           # mu = 0, log var = 0 for every x
    return m.eval()


def exact_nll(model: TextVAE, split: Split) -> np.ndarray:
    out = np.zeros(len(split))
    for i, s in enumerate(split.sentences):
        tokens = torch.tensor([[1, *s.tolist(), 2]])
        out[i] = -model.decoder.log_prob(tokens, torch.zeros(1, 1, CFG.nz)).item()
    return out


def test_iw_nll_equals_exact_likelihood_when_decoder_ignores_z_and_q_is_prior():
    model, split = make_model(ignore_z=True, prior_posterior=True), random_split()
    nll = ev.iw_nll(Method(), model, split, samples=50, chunk_rows=64, batch_size=16, device="cpu")
    np.testing.assert_allclose(nll, exact_nll(model, split), rtol=1e-5, atol=1e-4)


def test_iw_nll_converges_to_exact_likelihood_when_decoder_ignores_z():
    model, split = make_model(ignore_z=True), random_split(20)
    torch.manual_seed(1)
    nll = ev.iw_nll(Method(), model, split, samples=4000, chunk_rows=4000, batch_size=16, device="cpu")
    # log mean_k p(z_k)/q(z_k) -> 0; with 4000 samples and a mild q the error is far below 0.05 nats
    np.testing.assert_allclose(nll, exact_nll(model, split), atol=0.05)


def test_iw_nll_is_independent_of_chunking():
    model, split = make_model(ignore_z=True, prior_posterior=True), random_split()
    a = ev.iw_nll(Method(), model, split, samples=30, chunk_rows=7, batch_size=5, device="cpu")
    b = ev.iw_nll(Method(), model, split, samples=30, chunk_rows=10_000, batch_size=64, device="cpu")
    np.testing.assert_allclose(a, b, rtol=1e-5)


def test_iw_nll_never_exceeds_negative_elbo():
    model, split = make_model(seed=3), random_split(40)
    torch.manual_seed(0)
    nll = ev.iw_nll(Method(), model, split, samples=200, chunk_rows=2000, batch_size=16, device="cpu")
    recs = [ev.elbo_terms(Method(), model, split, 16, "cpu") for _ in range(50)]
    neg_elbo = np.mean([r + k for r, k in recs], 0)
    assert nll.mean() <= neg_elbo.mean()
    assert (nll <= neg_elbo + 0.05).mean() > 0.95   # per sentence too, up to Monte-Carlo noise


def test_posterior_equal_to_prior_gives_zero_kl_au_mi():
    model, split = make_model(prior_posterior=True), random_split()
    post = ev.encode(Method(), model, split, 16, "cpu")
    torch.manual_seed(0)
    stats = ev.latent_stats(post, 0.01)
    assert stats.kl == pytest.approx(0.0, abs=1e-7)
    assert stats.au == 0
    assert abs(stats.mi) < 0.5   # Monte-Carlo noise of log q(z_i) around the exact entropy term


def test_closed_form_kl_matches_monte_carlo():
    torch.manual_seed(0)
    post = Gaussian(torch.randn(5, 3), torch.randn(5, 3) * 0.5)
    z = post.rsample(200_000)                                   # [B, n, nz]
    mc = (post.log_prob(z.transpose(0, 1)) - post.prior_log_prob(z).T).mean(0)
    np.testing.assert_allclose(mc.numpy(), post.kl().numpy(), atol=0.02)


def test_entropy_matches_monte_carlo():
    torch.manual_seed(0)
    post = Gaussian(torch.randn(4, 3), torch.randn(4, 3))
    z = post.rsample(100_000)
    np.testing.assert_allclose(-post.log_prob(z.transpose(0, 1)).mean(0).numpy(), post.entropy().numpy(), atol=0.02)


def test_cross_log_prob_matches_broadcast_log_prob():
    torch.manual_seed(0)
    post = Gaussian(torch.randn(7, 5), torch.randn(7, 5))
    z = torch.randn(11, 5)
    np.testing.assert_allclose(post.cross_log_prob(z).numpy(), post.log_prob(z.unsqueeze(1)).numpy(), rtol=1e-4, atol=1e-4)


def test_mi_of_two_separated_clusters_is_log_two():
    # half the posteriors at -10, half at +10, unit variance: z identifies the cluster, nothing more
    # (estimator noise: sd of the log q(z_i|x_i) term is sqrt(nz/2)/sqrt(N) = 0.01 here)
    mu = torch.cat([torch.full((5000, 2), -10.0), torch.full((5000, 2), 10.0)])
    torch.manual_seed(0)
    assert ev.mutual_information(Gaussian(mu, torch.zeros_like(mu))) == pytest.approx(math.log(2), abs=0.04)


def test_mi_never_exceeds_log_n():
    # log q(z_i) >= log q(z_i|x_i) - log N, so MI <= log N up to the Monte-Carlo noise of the exact-entropy
    # estimator (sd sqrt(nz/2)/sqrt(N) = 0.03 here); sharp distinct posteriors reach the cap.
    torch.manual_seed(0)
    n = 2000
    post = Gaussian(torch.randn(n, 4) * 100, torch.full((n, 4), -10.0))
    mi = ev.mutual_information(post)
    assert mi <= math.log(n) + 0.12
    assert mi == pytest.approx(math.log(n), abs=0.12)


def test_per_batch_mi_is_each_batch_estimate_weighted_by_batch_size():
    # sharp distinct posteriors reach each estimate's cap: log 10 in the batches of 10, log 40 in those of 40,
    # weighted 1:4 by sentences (the unweighted mean would be 3.00, the full-set estimate log 5000 = 8.52)
    torch.manual_seed(0)
    posts = [Gaussian(torch.randn(n, 4) * 100, torch.full((n, 4), -10.0)) for n in [10] * 100 + [40] * 100]
    want = (1000 * math.log(10) + 4000 * math.log(40)) / 5000
    assert ev.mutual_information_per_batch(posts) == pytest.approx(want, abs=0.1)


def test_active_units_counts_dimensions_with_variance_at_threshold():
    mu = torch.zeros(100, 3)
    mu[:, 0] = torch.linspace(-1, 1, 100)      # variance ~0.34
    mu[:50, 1], mu[50:, 1] = -0.05, 0.05       # variance 0.0025 * 100/99
    count, var = ev.active_units(Gaussian(mu, torch.zeros_like(mu)), 0.01)
    assert count == 1
    assert var[1] == pytest.approx(0.0025 * 100 / 99)   # unbiased (N-1), as in the reference code


def test_perplexity_counts_end_of_sentence():
    split = Split([np.array([5, 6]), np.array([7])], None)   # 3 + 2 predicted tokens
    assert ev.perplexity(np.array([3.0, 2.0]), split) == pytest.approx(math.e)


def test_probe_separable_features_reach_full_accuracy_and_noise_is_chance():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 600)
    signal = (y[:, None] * 4.0 + rng.normal(size=(600, 3))).astype(float)
    noise = rng.normal(size=(600, 3))
    draws = draw_subsets(400, (100,), 3, seed=0)
    parts = lambda x: (x[:400], y[:400], (x[400:500], y[400:500]), (x[500:], y[500:]))  # noqa: E731
    good = probe(*parts(signal)[:2], draws, *parts(signal)[2:])
    bad = probe(*parts(noise)[:2], draws, *parts(noise)[2:])
    assert good["100"]["mean"] > 0.97 and good["100"]["n"] == 3
    assert bad["100"]["mean"] < 0.65
