"""Encoder and decoder modules that return distributions (Pyro's and zuko's VAE tutorials)
in pyro_dgm's VAE: accepted where sound, refused with what the argument must be."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch
import zuko
from pyro.infer import Trace_ELBO
from torch import Tensor, nn

from pyro_dgm import infer
from pyro_dgm.flows import ZukoFlow
from pyro_dgm.models import VAE
from pyro_dgm.models.vae import (
    BernoulliLikelihood,
    GaussianLikelihood,
    GaussianPosterior,
    MLPDecoder,
    MLPEncoder,
    StandardNormalPrior,
)

FEATURES, LATENT = 12, 2


class GaussianEncoder(nn.Module):
    """Pyro's vae_flow_prior tutorial's encoder: returns q(z | x)."""

    def __init__(self, features: int = FEATURES, latent: int = LATENT, event: bool = True):
        super().__init__()
        self.hyper = nn.Sequential(nn.Linear(features, 16), nn.ReLU(), nn.Linear(16, 2 * latent))
        self.event = event

    def forward(self, x: Tensor) -> dist.TorchDistribution:
        mu, log_sigma = self.hyper(x).chunk(2, dim=-1)
        d = dist.Normal(mu, log_sigma.exp())
        return d.to_event(1) if self.event else d


class BernoulliDecoder(nn.Module):
    """The tutorial's decoder: returns p(x | z)."""

    def __init__(self, features: int = FEATURES, latent: int = LATENT):
        super().__init__()
        self.hyper = nn.Sequential(nn.Linear(latent, 16), nn.ReLU(), nn.Linear(16, features))

    def forward(self, z: Tensor) -> dist.TorchDistribution:
        return dist.Bernoulli(torch.sigmoid(self.hyper(z))).to_event(1)


def _binary(n: int = 40) -> Tensor:
    # two prototypes with flipped pixels: something a 2-d latent can learn
    protos = torch.tensor([[1.0] * 6 + [0.0] * 6, [0.0] * 6 + [1.0] * 6])
    x = protos[torch.arange(n) % 2]
    flips = torch.rand(n, FEATURES) < 0.05
    return torch.where(flips, 1 - x, x)


def test_the_tutorials_modules_train_and_score() -> None:
    vae = VAE(
        GaussianEncoder(),
        BernoulliDecoder(),
        ZukoFlow(zuko.flows.MAF(LATENT, transforms=2, hidden_features=[8])),
        None,  # the encoder returns q(z | x) itself
        BernoulliLikelihood((FEATURES,)),
        LATENT,
    )
    x = _binary()
    q = vae.posterior(x)
    assert q.batch_shape == (40,) and q.event_shape == (LATENT,)
    assert vae.decode(q.sample()).event_shape == (FEATURES,)
    before = infer.log_likelihood(vae.model, vae.guide, x).nats
    infer.fit(vae.model, vae.guide, x, epochs=60, batch_size=40, lr=1e-2, progress=False, seed=0)
    after = infer.log_likelihood(vae.model, vae.guide, x).nats
    assert after > before + 1.0  # the ELBO per point improved by more than a nat
    result = infer.importance_log_likelihood(
        vae.model, vae.guide, x, num_samples=50, pareto_k_threshold=None
    )
    assert result.summary().nats >= after - 0.5  # the IWAE bound is at least the ELBO
    assert vae.sample(3).shape == (3, FEATURES)
    assert vae.reconstruct(x).shape == x.shape


def test_for_vectors_takes_the_tutorials_modules() -> None:
    vae = VAE.for_vectors(
        FEATURES,
        LATENT,
        encoder=GaussianEncoder(),
        decoder=BernoulliDecoder(),
        posterior=None,
        likelihood="bernoulli",
    )
    x = _binary(8)
    loss = Trace_ELBO().differentiable_loss(vae.model, vae.guide, x)
    loss.backward()
    for name, p in vae.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    # the default parts and own parts mix: an MLP encoder with its posterior head, and the
    # tutorial's decoder
    pyro.clear_param_store()
    mixed = VAE.for_vectors(
        FEATURES, LATENT, hidden_dims=(8,), decoder=BernoulliDecoder(), likelihood="bernoulli"
    )
    assert isinstance(mixed.encoder, MLPEncoder) and isinstance(mixed.variational, nn.Module)
    Trace_ELBO().differentiable_loss(mixed.model, mixed.guide, x)


def test_for_images_takes_own_modules() -> None:
    class FlatEncoder(GaussianEncoder):
        def forward(self, x: Tensor) -> dist.TorchDistribution:
            return super().forward(x.flatten(-3))

    class ImageDecoder(BernoulliDecoder):
        def forward(self, z: Tensor) -> dist.TorchDistribution:
            probs = torch.sigmoid(self.hyper(z)).unflatten(-1, (1, 3, 4))
            return dist.Bernoulli(probs).to_event(3)

    vae = VAE.for_images(
        (1, 3, 4), LATENT, encoder=FlatEncoder(), decoder=ImageDecoder(), posterior=None
    )
    x = _binary(6).reshape(6, 1, 3, 4)
    assert torch.isfinite(Trace_ELBO().differentiable_loss(vae.model, vae.guide, x))
    assert vae.posterior_predictive(x, 2).shape == (2, 6, 1, 3, 4)


def _vae(encoder: nn.Module, decoder: nn.Module, posterior: nn.Module | None, **kw) -> VAE:
    likelihood = kw.pop("likelihood", BernoulliLikelihood((FEATURES,)))
    return VAE(encoder, decoder, StandardNormalPrior(LATENT), posterior, likelihood, LATENT, **kw)


def test_refusals_say_what_the_argument_must_be() -> None:
    x = _binary(4)
    # an encoder that returns q(z | x), and a posterior head for features as well
    vae = _vae(GaussianEncoder(), BernoulliDecoder(), GaussianPosterior(8, LATENT))
    with pytest.raises(ValueError, match=r"encoder: returned a distribution .*posterior=None"):
        vae.posterior(x)
    # posterior=None, but the encoder returns features
    vae = _vae(MLPEncoder(FEATURES, (8,)), BernoulliDecoder(), None)
    with pytest.raises(ValueError, match=r"encoder: with posterior=None .*GaussianPosterior\(8"):
        vae.posterior(x)
    # q(z | x) over the coordinates one by one (no .to_event(1)): the hint says so
    vae = _vae(GaussianEncoder(event=False), BernoulliDecoder(), None)
    with pytest.raises(ValueError, match=r"event shape \(2,\).*\.to_event\(1\)"):
        vae.posterior(x)
    # a decoder returning p(x | z) leaves a learned likelihood scale untrained
    vae = _vae(
        GaussianEncoder(),
        BernoulliDecoder(),
        None,
        likelihood=GaussianLikelihood((FEATURES,)),
    )
    with pytest.raises(ValueError, match=r"decoder: returned p\(x \| z\).*'log_scale'"):
        vae.decode(torch.zeros(4, LATENT))
    # a decoder's distribution over the wrong event shape
    vae = _vae(
        GaussianEncoder(),
        BernoulliDecoder(features=FEATURES - 1),
        None,
    )
    with pytest.raises(ValueError, match=r"decoder: expected p\(x \| z\) .*event shape \(12,\)"):
        vae.decode(torch.zeros(4, LATENT))
    # a conditional VAE concatenates the context to encoder features: none to concatenate
    with pytest.raises(ValueError, match=r"posterior: None .*conditional"):
        _vae(GaussianEncoder(), BernoulliDecoder(), None, condition_dim=3)
    # a posterior by name needs the encoder's feature size
    with pytest.raises(ValueError, match=r"posterior='iaf' .*context_dim"):
        VAE.for_vectors(FEATURES, LATENT, encoder=GaussianEncoder(), posterior="iaf")
    # an encoder that returns neither
    vae = _vae(nn.Identity(), MLPDecoder(LATENT, (FEATURES,)), GaussianPosterior(FEATURES, 2))
    vae.encoder = type("Odd", (nn.Module,), {"forward": lambda self, x: (x, x)})()
    with pytest.raises(ValueError, match=r"encoder: expected features h .*got tuple"):
        vae.posterior(x)


def test_default_parts_are_unchanged() -> None:
    vae = VAE.for_vectors(FEATURES, LATENT, hidden_dims=(8,), likelihood="bernoulli")
    pyro.set_rng_seed(1)
    x = _binary(5)
    assert vae.posterior(x).batch_shape == (5,)
    assert isinstance(vae.decode(torch.zeros(5, LATENT)).base_dist, dist.Bernoulli)
