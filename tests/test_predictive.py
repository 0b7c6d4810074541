"""posterior_predictive of the VAE, the flow and the autoregressive pairs: new draws of x,
not the observed x that Predictive returns, distributed as Predictive(uncondition(model))."""

from __future__ import annotations

import pytest
import torch
from pyro import poutine
from pyro.infer import Predictive

from pyro_dgm.distributions import WaveNet
from pyro_dgm.flows import MAF
from pyro_dgm.models import VAE, AutoregressiveModel, FlowModel


def _vae() -> VAE:
    return VAE.for_vectors(6, latent_dim=2, hidden_dims=(8,), likelihood="bernoulli")


def test_predictive_returns_the_observed_x_posterior_predictive_new_draws() -> None:
    vae = _vae()
    x = torch.randint(0, 2, (4, 6)).float()
    # Pyro's semantics for an observed site: the data, unchanged, in every draw
    observed = Predictive(vae.model, guide=vae.guide, num_samples=3)(x)["x"]
    assert torch.equal(observed, x.expand(3, 4, 6))
    draws = vae.posterior_predictive(x, num_samples=200)
    assert draws.shape == (200, 4, 6)
    assert not draws.requires_grad
    assert set(draws.unique().tolist()) <= {0.0, 1.0}
    assert not torch.equal(draws, x.expand_as(draws))  # new data, not the observed


def test_vae_posterior_predictive_is_predictive_of_the_unconditioned_model() -> None:
    vae = _vae()
    with torch.no_grad():  # a decoder far from 1/2, so that the means say something
        for p in vae.decoder.parameters():
            p.mul_(4.0)
    x = torch.randint(0, 2, (3, 6)).float()
    n = 4000
    ours = vae.posterior_predictive(x, num_samples=n).mean(0)
    pyros = Predictive(
        poutine.uncondition(vae.model),
        guide=vae.guide,
        num_samples=n,
        parallel=True,
        return_sites=["x"],
    )(x)["x"].mean(0)
    # per-pixel frequencies of 1, each with a standard error of at most 0.5 / sqrt(n) = 0.008
    assert torch.allclose(ours, pyros, atol=0.05)
    assert (ours - 0.5).abs().max() > 0.1  # not a coin everywhere: the test can tell
    # the mean of the posterior predictive is that of reconstruct's decoder means
    recon = torch.stack([vae.reconstruct(x) for _ in range(n // 10)]).mean(0)
    assert torch.allclose(ours, recon, atol=0.05)


def test_conditional_vae_posterior_predictive_takes_each_points_context() -> None:
    vae = VAE.for_vectors(4, latent_dim=2, hidden_dims=(8,), condition_dim=3)
    x, c = torch.randn(5, 4), torch.eye(3)[torch.arange(5) % 3]
    assert vae.posterior_predictive(x, num_samples=2, context=c).shape == (2, 5, 4)
    with pytest.raises(ValueError, match="context"):
        vae.posterior_predictive(x, num_samples=2)


def test_flow_model_posterior_predictive_draws_from_the_flow() -> None:
    pair = FlowModel(MAF(2, num_layers=2, hidden_dims=[8]))
    x = torch.randn(3, 2) + 5.0
    assert torch.equal(Predictive(pair.model, num_samples=2)(x)["x"], x.expand(2, 3, 2))
    n = 3000
    ours = pair.posterior_predictive(x, num_samples=n)
    assert ours.shape == (n, 3, 2) and not ours.requires_grad
    pyros = Predictive(
        poutine.uncondition(pair.model), num_samples=n, parallel=True, return_sites=["x"]
    )(x)["x"]
    assert pyros.shape == ours.shape
    # the same distribution: means and standard deviations agree (an untrained flow is
    # close to N(0, I), far from the data at 5: the draws do not copy x)
    assert torch.allclose(ours.mean((0, 1)), pyros.mean((0, 1)), atol=0.1)
    assert torch.allclose(ours.std((0, 1)), pyros.std((0, 1)), rtol=0.1)
    assert ours.mean() < 2.0
    with pytest.raises(ValueError, match="num_samples"):
        pair.posterior_predictive(x, num_samples=0)
    with pytest.raises(ValueError, match=r"x must have shape \(N, 2\)"):
        pair.posterior_predictive(torch.randn(3, 4))


def test_conditional_flow_model_posterior_predictive_follows_the_context() -> None:
    pair = FlowModel(MAF(2, num_layers=1, hidden_dims=[8], context_dim=1))
    with torch.no_grad():  # make the context matter: shift the flow with it
        for p in pair.flow.parameters():
            p.mul_(3.0)
    x = torch.zeros(2, 2)
    c = torch.tensor([[-2.0], [2.0]])
    draws = pair.posterior_predictive(x, num_samples=2000, context=c)
    assert draws.shape == (2000, 2, 2)
    expected = torch.stack([pair.flow(ci).sample((2000,)).mean(0) for ci in c])
    assert torch.allclose(draws.mean(0), expected, atol=0.25)
    assert (expected[0] - expected[1]).abs().max() > 0.5  # the contexts give different rows
    with pytest.raises(ValueError, match="context: expected one row per data point"):
        pair.posterior_predictive(torch.zeros(3, 2), context=c)


def test_autoregressive_posterior_predictive() -> None:
    pair = AutoregressiveModel(WaveNet((1, 5), 3, residual_channels=4, num_layers=2))
    x = torch.zeros(4, 1, 5)
    assert torch.equal(Predictive(pair.model, num_samples=2)(x)["x"], x.expand(2, 4, 1, 5))
    draws = pair.posterior_predictive(x, num_samples=300)
    assert draws.shape == (300, 4, 1, 5)
    assert set(draws.unique().tolist()) <= {0.0, 1.0, 2.0}
    assert (draws != 0).any()  # new draws, not the observed zeros
    naive = pair.posterior_predictive(x, num_samples=2, method="naive")
    assert naive.shape == (2, 4, 1, 5)
