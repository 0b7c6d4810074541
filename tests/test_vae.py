"""VAE model/guide pairs: posterior flows through the harness, the pPCA closed form,
every prior x posterior x likelihood through fit, taking the parts out, scaling, errors."""

from __future__ import annotations

import itertools
import math
from typing import ClassVar

import pyro
import pyro.distributions as dist
import pytest
import torch
from harness import TransformCase, TransformHarness
from pyro import poutine
from pyro.distributions.transforms import ConditionalHouseholder, ConditionalPlanar
from pyro.infer import Trace_ELBO
from pyro.nn import DenseNN
from sklearn.decomposition import PCA
from torch import nn

from pyro_dgm import datasets, infer
from pyro_dgm.flows import MAF
from pyro_dgm.models.vae import (
    LIKELIHOODS,
    POSTERIORS,
    PRIORS,
    VAE,
    BernoulliLikelihood,
    DiscretizedLogisticLikelihood,
    DiscretizedLogisticMixtureLikelihood,
    FlowPosterior,
    GaussianLikelihood,
    GaussianPosterior,
    StandardNormalPrior,
    VampPrior,
    conditional_sylvester,
    flow_prior,
    make_posterior,
)

# ---------------------------------------------------------------------------
# posterior flows through the shared harness
# ---------------------------------------------------------------------------


class TestPosteriorFlowHarness(TransformHarness):
    CASES: ClassVar[list[TransformCase]] = [
        TransformCase(
            "conditional_sylvester",
            lambda: conditional_sylvester(4, 3, hidden_dims=[8], count_householder=2),
            (4,),
            context_dim=3,
            inverse=False,
        ),
        TransformCase(
            "conditional_sylvester_one_reflection",
            lambda: conditional_sylvester(3, 2, hidden_dims=[6], count_householder=1),
            (3,),
            context_dim=2,
            inverse=False,
        ),
        # Pyro's own conditional layers, used by make_posterior as they are
        TransformCase(
            "pyro_conditional_planar",
            lambda: ConditionalPlanar(DenseNN(3, [8], param_dims=[1, 4, 4])),
            (4,),
            context_dim=3,
            inverse=False,
        ),
        TransformCase(
            "pyro_conditional_householder",
            lambda: ConditionalHouseholder(4, DenseNN(3, [8], param_dims=[4, 4]), 2),
            (4,),
            context_dim=3,
        ),
    ]


# ---------------------------------------------------------------------------
# probabilistic PCA: the marginal likelihood in closed form
# ---------------------------------------------------------------------------

F64 = torch.float64


def _linear_vae(
    w: torch.Tensor,
    mu: torch.Tensor,
    sigma: float,
    enc_a: torch.Tensor,
    enc_b: torch.Tensor,
    q_scale: torch.Tensor,
) -> VAE:
    """p(z) = N(0, I), p(x|z) = N(Wz + mu, sigma^2 I); q(z|x) = N(A x + b, diag(q_scale^2))."""
    d, k = w.shape
    posterior, decoder = GaussianPosterior(d, k), nn.Linear(k, d)
    vae = VAE(
        nn.Identity(),
        decoder,
        StandardNormalPrior(k),
        posterior,
        GaussianLikelihood(d, scale=sigma),
        k,
    ).to(F64)
    with torch.no_grad():
        decoder.weight.copy_(w)
        decoder.bias.copy_(mu)
        posterior.head.weight.zero_()
        posterior.head.weight[:k].copy_(enc_a)
        posterior.head.bias[:k].copy_(enc_b)
        posterior.head.bias[k:].copy_(torch.log(torch.expm1(q_scale - 1e-5)))  # inverse softplus
    return vae


def _ppca(w: torch.Tensor, mu: torch.Tensor, sigma: float) -> tuple:
    """Marginal N(mu, W W^T + s^2 I) and the exact posterior's linear map and covariance."""
    d, k = w.shape
    marginal = dist.MultivariateNormal(mu, w @ w.T + sigma**2 * torch.eye(d, dtype=F64))
    m_inv = torch.linalg.inv(w.T @ w + sigma**2 * torch.eye(k, dtype=F64))
    return marginal, m_inv @ w.T, sigma**2 * m_inv


def test_ppca_with_the_exact_posterior_every_weight_is_the_marginal_likelihood() -> None:
    # orthogonal columns: the exact posterior is diagonal, so the guide can be exact and
    # log p(x, z) - log q(z | x) = log p(x) for every z
    q, _ = torch.linalg.qr(torch.randn(5, 2, dtype=F64))
    w, mu, sigma = q * torch.tensor([2.0, 0.7], dtype=F64), torch.randn(5, dtype=F64), 0.4
    marginal, a, cov = _ppca(w, mu, sigma)
    assert torch.allclose(cov, torch.diag(cov.diagonal()), atol=1e-12)
    vae = _linear_vae(w, mu, sigma, a, -a @ mu, cov.diagonal().sqrt())
    x = marginal.sample((30,))
    result = infer.importance_log_likelihood(vae.model, vae.guide, x, num_samples=7)
    exact = marginal.log_prob(x)
    assert torch.allclose(result.log_weights, exact.expand(7, -1), atol=1e-9)
    assert torch.allclose(result.values, exact, atol=1e-9)
    assert result.bound == "IWAE(K=7)" and result.num_dims == 5


def test_ppca_importance_weighted_estimate_converges_and_the_elbo_stays_below() -> None:
    w, mu, sigma = torch.randn(5, 2, dtype=F64), torch.randn(5, dtype=F64), 0.5
    marginal, a, cov = _ppca(w, mu, sigma)
    q_var = 1.5 * cov.diagonal()  # a diagonal, too wide guide around the exact mean
    vae = _linear_vae(w, mu, sigma, a, -a @ mu, q_var.sqrt())
    x = marginal.sample((50,))
    exact = marginal.log_prob(x)

    # the ELBO: log p(x) - KL(q || p(z|x)), the KL in closed form (the same for every x)
    kl = torch.distributions.kl_divergence(
        dist.MultivariateNormal(torch.zeros(2, dtype=F64), torch.diag(q_var)),
        dist.MultivariateNormal(torch.zeros(2, dtype=F64), cov),
    )
    log_w = infer.importance_log_likelihood(vae.model, vae.guide, x, num_samples=2000).log_weights
    elbo = log_w.mean(0)
    stderr = float(log_w.std() / math.sqrt(log_w.numel()))
    assert float(kl) > 0.05
    assert abs(float((elbo - (exact - kl)).mean())) < 4 * stderr
    assert float((exact - elbo).mean()) > 0.05  # the ELBO stays below log p(x)

    errors = []
    for k in (1, 10, 100, 5000):
        values = infer.importance_log_likelihood(
            vae.model, vae.guide, x, num_samples=k, chunk_size=1000
        ).values
        errors.append(float((values - exact).abs().mean()))
    assert errors == sorted(errors, reverse=True), errors  # closer as K grows
    assert errors[-1] < 0.01, errors


def test_linear_vae_trained_with_fit_reaches_the_ppca_maximum_likelihood() -> None:
    # one principal component: the exact posterior is then a 1-D Gaussian with a constant
    # variance, which the diagonal guide can match, so at the optimum the ELBO is tight and
    # the decoder is the pPCA maximum-likelihood solution (with two or more components the
    # ELBO's pull towards orthogonal columns converges too slowly for a quick test)
    d, k, n = 5, 1, 400
    w = 1.5 * torch.randn(d, k)
    x = torch.randn(n, k) @ w.T + torch.randn(d) + 0.3 * torch.randn(n, d)
    sklearn_mean = float(PCA(n_components=k).fit(x.numpy()).score(x.numpy()))
    # the same maximum from the eigenvalues of the (1/n) covariance (Tipping & Bishop, 1999)
    centered = x.double() - x.double().mean(0)
    eig = torch.linalg.eigvalsh(centered.T @ centered / n).flip(0)
    noise = eig[k:].mean()
    mle = -0.5 * (d * math.log(2 * math.pi) + eig[:k].log().sum() + (d - k) * noise.log() + d)
    assert abs(float(mle) - sklearn_mean) < 1e-3

    vae = VAE(
        nn.Identity(),
        nn.Linear(k, d),
        StandardNormalPrior(k),
        GaussianPosterior(d, k),
        GaussianLikelihood(d),
        k,
    )
    loss = Trace_ELBO(num_particles=16, vectorize_particles=True, max_plate_nesting=1)
    for lr, epochs in ((0.05, 150), (0.005, 100)):
        infer.fit(
            vae.model,
            vae.guide,
            x,
            validation=None,
            epochs=epochs,
            batch_size=n,
            lr=lr,
            patience=None,
            progress=False,
            loss=loss,
        )
    elbo = infer.log_likelihood(vae.model, vae.guide, x, num_particles=20)
    iw = infer.importance_log_likelihood(vae.model, vae.guide, x, num_samples=500).summary()
    assert mle - 0.1 < elbo.nats < iw.nats + 0.01
    assert mle - 0.05 < iw.nats < mle + 0.01
    assert abs(float(vae.likelihood.scale.detach()) - float(noise.sqrt())) < 0.02


# ---------------------------------------------------------------------------
# every prior x posterior x likelihood through fit on digits
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits() -> datasets.Dataset:
    return datasets.digits()


def _data_for(likelihood: str, y: torch.Tensor) -> torch.Tensor:
    if likelihood == "bernoulli":
        return (y >= 8).to(torch.uint8)  # binarized at 8 of 17 levels
    if likelihood == "gaussian":
        return y.float() / 16
    return y


def _tiny(prior: str, posterior: str, likelihood: str, **kwargs: object) -> VAE:
    options: dict[str, object] = {
        "latent_dim": 4,
        "prior": prior,
        "posterior": posterior,
        "likelihood": likelihood,
        "num_levels": None if likelihood in ("bernoulli", "gaussian") else 17,
        "channels": 4,
        "context_dim": 8,
        "prior_layers": 2,
        "posterior_steps": 2,
        "flow_hidden_dims": [8],
        "num_pseudo_inputs": 3,
        "num_components": 2,
    }
    options.update(kwargs)
    return VAE.for_images((1, 8, 8), **options)


@pytest.mark.parametrize(
    "prior,posterior,likelihood", list(itertools.product(PRIORS, POSTERIORS, LIKELIHOODS))
)
def test_every_combination_trains_through_fit(
    digits: datasets.Dataset, prior: str, posterior: str, likelihood: str
) -> None:
    x = _data_for(likelihood, digits.train[:16])
    vae = _tiny(prior, posterior, likelihood)
    history = infer.fit(
        vae.model, vae.guide, x, validation=None, epochs=1, batch_size=16, progress=False
    )
    assert history.steps == 1 and math.isfinite(history.train_loss[0])

    vae.zero_grad()
    Trace_ELBO().differentiable_loss(vae.model, vae.guide, x).backward()
    for name, p in vae.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"zero gradient in {name}"

    result = infer.importance_log_likelihood(
        vae.model, vae.guide, x[:3], num_samples=4, chunk_size=2
    )
    assert result.log_weights.shape == (4, 3) and torch.isfinite(result.values).all()
    if likelihood != "gaussian":  # a probability mass: log P(x) <= 0
        assert (result.values < 0).all()


# ---------------------------------------------------------------------------
# shapes
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("posterior", POSTERIORS)
def test_shapes_of_the_parts(posterior: str) -> None:
    vae = _tiny("flow", posterior, "discretized_logistic")
    y = torch.randint(0, 17, (5, 1, 8, 8), dtype=torch.uint8)
    q = vae.posterior(y)
    assert q.batch_shape == (5,) and q.event_shape == (4,)
    p = vae.prior()
    assert p.batch_shape == () and p.event_shape == (4,)
    z = q.rsample((3,))
    assert z.shape == (3, 5, 4) and q.log_prob(z).shape == (3, 5)
    likelihood = vae.decode(z)
    assert likelihood.batch_shape == (3, 5) and likelihood.event_shape == (1, 8, 8)
    assert likelihood.log_prob(y).shape == (3, 5)
    samples = vae.sample(6)
    assert samples.shape == (6, 1, 8, 8)
    assert ((samples >= 0) & (samples <= 16) & (samples == samples.round())).all()
    means = vae.reconstruct(y)
    assert means.shape == (5, 1, 8, 8) and ((means >= 0) & (means <= 16)).all()
    trace = poutine.trace(vae.model).get_trace(y)
    assert trace.nodes["z"]["value"].shape == (5, 4)
    assert trace.nodes["x"]["fn"].batch_shape == (5,)


@pytest.mark.parametrize("posterior", POSTERIORS)
def test_flow_posteriors_broadcast_over_particles(posterior: str) -> None:
    # the importance sampler adds a particle dimension left of the data: each particle
    # must see its own point's context, exactly as without the particle dimension
    post = make_posterior(posterior, context_dim=3, latent_dim=4, num_steps=2, hidden_dims=[8])
    h, z0 = torch.randn(5, 3), torch.randn(6, 5, 4)
    if isinstance(post, FlowPosterior):
        transforms = [t.condition(h) for t in post.transforms]
        for t in transforms:
            y = t(z0)
            ladj = t.log_abs_det_jacobian(z0, y)
            assert y.shape == (6, 5, 4) and ladj.shape == (6, 5)
            for k in range(6):
                yk = t._call(z0[k])
                assert torch.allclose(yk, y[k], atol=1e-6)
                assert torch.allclose(t.log_abs_det_jacobian(z0[k], t(z0[k])), ladj[k], atol=1e-5)
    q = post(h).expand((6, 5))
    z = q.rsample()
    assert z.shape == (6, 5, 4) and torch.isfinite(q.log_prob(z)).all()


def test_mnist_sized_images_and_vectors() -> None:
    vae = VAE.for_images(
        (1, 28, 28),
        latent_dim=3,
        channels=4,
        context_dim=8,
        posterior="iaf",
        prior="vamp",
        num_pseudo_inputs=2,
    )
    x = torch.randint(0, 2, (2, 1, 28, 28))
    assert vae.decoder(torch.randn(7, 2, 3)).shape == (7, 2, 1, 28, 28)
    assert torch.isfinite(Trace_ELBO().differentiable_loss(vae.model, vae.guide, x))
    assert vae.num_dims == 784

    pyro.clear_param_store()
    vec = VAE.for_vectors(
        6, latent_dim=2, hidden_dims=[16, 8], prior="flow", posterior="sylvester"
    )
    assert vec.posterior(torch.randn(4, 6)).batch_shape == (4,)
    assert torch.isfinite(
        Trace_ELBO().differentiable_loss(vec.model, vec.guide, torch.randn(4, 6))
    )
    assert vec.sample(3).shape == (3, 6)


# ---------------------------------------------------------------------------
# the parts: likelihoods, VampPrior, take-out
# ---------------------------------------------------------------------------


def test_likelihoods_against_direct_formulas() -> None:
    from pyro_dgm.distributions import DiscretizedLogistic

    eta = torch.randn(3, 2, 2, 4)  # two parameters per pixel of (1, 4)... images (1, 2, 4)
    y = torch.randint(0, 17, (3, 1, 2, 4))
    single = DiscretizedLogisticLikelihood((1, 2, 4), 17)(eta)
    loc, raw = eta[:, :1], eta[:, 1:]
    direct = DiscretizedLogistic((loc + 1) * 8, (nn.functional.softplus(raw) + 1e-3) * 8, 17)
    assert torch.allclose(single.log_prob(y), direct.log_prob(y).sum((-3, -2, -1)))
    # a one-component mixture is the single discretized logistic
    mixture = DiscretizedLogisticMixtureLikelihood((1, 2, 4), 17, num_components=1)(
        torch.cat([torch.zeros(3, 1, 2, 4), eta], dim=1)
    )
    assert torch.allclose(mixture.log_prob(y), single.log_prob(y), atol=1e-5)

    logits, b = torch.randn(3, 6), torch.randint(0, 2, (3, 6)).float()
    bern = BernoulliLikelihood(6)(logits).log_prob(b)
    expected = (
        b * nn.functional.logsigmoid(logits) + (1 - b) * nn.functional.logsigmoid(-logits)
    ).sum(-1)
    assert torch.allclose(bern, expected)

    gauss = GaussianLikelihood(6, init_scale=0.3)
    x = torch.randn(3, 6)
    lp = dist.Normal(logits, 0.3).log_prob(x).sum(-1)
    assert torch.allclose(gauss(logits).log_prob(x), lp, atol=1e-5)
    predicted = GaussianLikelihood(6, scale="decoder")
    assert predicted.num_params == 2 and predicted.param_shape == (12,)
    assert torch.allclose(
        predicted(torch.cat([logits, eta.reshape(3, -1)[:, :6]], -1)).log_prob(x),
        dist.Normal(logits, nn.functional.softplus(eta.reshape(3, -1)[:, :6]) + 1e-3)
        .log_prob(x)
        .sum(-1),
    )


@pytest.mark.parametrize("posterior", ["gaussian", "iaf"])
def test_vamp_prior_is_the_mixture_of_gaussian_stages_at_the_pseudo_inputs(
    posterior: str,
) -> None:
    vae = _tiny("vamp", posterior, "bernoulli")
    z = torch.randn(7, 4)
    prior = vae.prior
    assert isinstance(prior, VampPrior) and prior.num_components == 3
    loc, scale = vae.variational.gaussian(vae.encoder(prior.pseudo_inputs))
    per_component = torch.stack(
        [dist.Normal(loc[k], scale[k]).log_prob(z).sum(-1) for k in range(3)]
    )
    expected = per_component.logsumexp(0) - math.log(3)
    assert torch.allclose(prior().log_prob(z), expected, atol=1e-5)
    if posterior == "gaussian":  # the components are then the posteriors themselves
        q = vae.variational(vae.encoder(prior.pseudo_inputs))
        assert torch.allclose(
            q.log_prob(z[:, None]).logsumexp(-1) - math.log(3), expected, atol=1e-5
        )


def test_prior_and_posterior_taken_into_a_model_of_ones_own(digits: datasets.Dataset) -> None:
    x = _data_for("bernoulli", digits.train[:8])
    vae = _tiny("flow", "iaf", "bernoulli")

    def model(x: torch.Tensor) -> None:  # the VAE's model, written by hand from its parts
        pyro.module("vae", vae)
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", vae.prior())
            pyro.sample("x", vae.decode(z), obs=x.float())

    def guide(x: torch.Tensor) -> None:
        pyro.module("vae", vae)
        with pyro.plate("data", len(x)):
            pyro.sample("z", vae.posterior(x))

    losses = []
    for m, g in ((model, guide), (vae.model, vae.guide)):
        pyro.set_rng_seed(3)
        losses.append(Trace_ELBO().differentiable_loss(m, g, x))
    assert torch.allclose(losses[0], losses[1])

    # a different decoder of one's own, with the VAE's flow prior and IAF guide
    head = nn.Linear(4, 64)

    def my_model(x: torch.Tensor) -> None:
        pyro.module("head", head)
        pyro.module("vae", vae)
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", vae.prior())
            pyro.sample("x", dist.Bernoulli(logits=head(z)).to_event(1), obs=x.flatten(1).float())

    history = infer.fit(
        my_model, guide, x, validation=None, epochs=2, batch_size=8, progress=False
    )
    assert all(math.isfinite(v) for v in history.train_loss)
    vae.zero_grad()
    Trace_ELBO().differentiable_loss(my_model, guide, x).backward()
    for module in (vae.prior, vae.encoder, vae.variational):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())
    assert all(p.grad is None for p in vae.decoder.parameters())  # not in this model


# ---------------------------------------------------------------------------
# plate scaling, KL warm-up
# ---------------------------------------------------------------------------


def test_data_size_scales_every_site_and_fit_passes_it(digits: datasets.Dataset) -> None:
    x = _data_for("discretized_logistic", digits.train[:10])
    vae = _tiny("vamp", "planar", "discretized_logistic", warmup_steps=0)  # no KL warm-up
    guide_trace = poutine.trace(vae.guide).get_trace(x, data_size=60)
    scaled = poutine.trace(poutine.replay(vae.model, trace=guide_trace)).get_trace(x, data_size=60)
    plain = poutine.trace(poutine.replay(vae.model, trace=guide_trace)).get_trace(x)
    assert guide_trace.nodes["z"]["scale"] == 6.0
    assert scaled.nodes["z"]["scale"] == 6.0 and scaled.nodes["x"]["scale"] == 6.0
    assert torch.allclose(scaled.log_prob_sum(), 6 * plain.log_prob_sum())

    # fit passes the training-set size: the loss it reports is per data point
    pyro.set_rng_seed(1)
    per_point = infer.evaluate_loss(vae.model, vae.guide, x)
    pyro.set_rng_seed(1)
    with torch.no_grad():
        total = Trace_ELBO().loss(vae.model, vae.guide, x)
    assert abs(per_point - total / 10) < 1e-4 * abs(per_point)
    with pytest.raises(ValueError, match="data_size"):
        vae.model(x, data_size=5)


def test_kl_warm_up_scales_the_latent_site_in_model_and_guide_on_gradient_passes() -> None:
    vae = _tiny("normal", "iaf", "bernoulli", warmup_steps=4)
    x = torch.randint(0, 2, (3, 1, 8, 8))
    scales = []
    for _ in range(5):
        guide_trace = poutine.trace(vae.guide).get_trace(x)
        model_trace = poutine.trace(poutine.replay(vae.model, trace=guide_trace)).get_trace(x)
        assert guide_trace.nodes["z"]["scale"] == model_trace.nodes["z"]["scale"]
        assert model_trace.nodes["x"]["scale"] == 1.0  # the likelihood is never scaled
        scales.append(model_trace.nodes["z"]["scale"])
    assert scales == [0.25, 0.5, 0.75, 1.0, 1.0]

    vae = _tiny("normal", "gaussian", "bernoulli", kl_weight=0.5, name="beta")
    with torch.no_grad():  # evaluation: the true ELBO
        assert poutine.trace(vae.guide).get_trace(x).nodes["z"]["scale"] == 1.0
    assert poutine.trace(vae.guide).get_trace(x).nodes["z"]["scale"] == 0.5
    vae.kl_weight = 2.0
    assert poutine.trace(vae.model).get_trace(x).nodes["z"]["scale"] == 2.0
    with pytest.raises(ValueError, match="kl_weight"):
        vae.kl_weight = 0.0


# ---------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------


def test_bad_data_is_refused_with_a_named_error() -> None:
    vae = _tiny("normal", "gaussian", "discretized_logistic")
    for bad in (torch.zeros(8, 8), torch.zeros(2, 1, 8, 7), torch.zeros(0, 1, 8, 8)):
        with pytest.raises(ValueError, match=r"x must have shape \(N, 1, 8, 8\)"):
            vae.model(bad)
    with pytest.raises(ValueError, match=r"integers in \{0, ..., 16\}"):
        vae.guide(torch.full((2, 1, 8, 8), 17))
    with pytest.raises(ValueError, match=r"integers in \{0, ..., 16\}"):
        vae.posterior(torch.full((2, 1, 8, 8), 0.5))
    pyro.clear_param_store()
    binary = _tiny("normal", "gaussian", "bernoulli")
    with pytest.raises(ValueError, match=r"integers in \{0, ..., 1\}"):
        binary.model(torch.full((2, 1, 8, 8), 2))
    pyro.clear_param_store()
    gaussian = _tiny("normal", "gaussian", "gaussian")
    with pytest.raises(ValueError, match="floating tensor"):
        gaussian.model(torch.zeros(2, 1, 8, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="NaN"):
        gaussian.model(torch.full((2, 1, 8, 8), math.nan))


def test_bad_arguments_are_refused_with_a_named_error() -> None:
    with pytest.raises(ValueError, match="likelihood must be one of"):
        VAE.for_images((1, 8, 8), likelihood="poisson")
    with pytest.raises(ValueError, match="prior must be one of"):
        VAE.for_images((1, 8, 8), prior="laplace")
    with pytest.raises(ValueError, match="posterior must be one of"):
        VAE.for_images((1, 8, 8), posterior="radial")
    with pytest.raises(ValueError, match="needs num_levels"):
        VAE.for_images((1, 8, 8), likelihood="discretized_logistic")
    with pytest.raises(ValueError, match="binary data"):
        VAE.for_images((1, 8, 8), likelihood="bernoulli", num_levels=17)
    with pytest.raises(ValueError, match="image_shape"):
        VAE.for_images((8, 8))
    with pytest.raises(ValueError, match="latent_dim"):
        VAE.for_vectors(4, latent_dim=0)
    with pytest.raises(ValueError, match="kl_weight"):
        VAE.for_vectors(4, kl_weight=-1.0)
    with pytest.raises(ValueError, match="event shape"):
        VAE(
            nn.Identity(),
            nn.Linear(3, 4),
            StandardNormalPrior(2),
            GaussianPosterior(4, 3),
            GaussianLikelihood(4),
            latent_dim=3,
        )
    with pytest.raises(ValueError, match="likelihood must be a Likelihood"):
        VAE(
            nn.Identity(),
            nn.Linear(2, 4),
            StandardNormalPrior(2),
            GaussianPosterior(4, 2),
            "gaussian",
            latent_dim=2,
        )
    with pytest.raises(ValueError, match="init must have shape"):
        VampPrior(nn.Identity(), GaussianPosterior(4, 2), 3, (4,), init=torch.zeros(2, 4))
    with pytest.raises(ValueError, match="kind must be one of"):
        flow_prior(4, kind="glow")
    with pytest.raises(ValueError, match="decoder output must have shape"):
        BernoulliLikelihood((1, 8, 8))(torch.zeros(2, 2, 8, 8))


def test_a_param_store_holding_another_vae_under_the_same_name_is_refused() -> None:
    x = torch.randint(0, 2, (3, 1, 8, 8))
    first, second = (
        _tiny("normal", "gaussian", "bernoulli"),
        _tiny("normal", "gaussian", "bernoulli"),
    )
    first.model(x)
    with pytest.raises(ValueError, match="clear_param_store"):
        second.model(x)
    pyro.clear_param_store()
    second.model(x)  # fine once the store is cleared
    third = _tiny("normal", "gaussian", "bernoulli", name="third")
    third.guide(x)  # or under another name


def test_flow_prior_kinds_score_the_same_way() -> None:
    for kind in ("maf", "realnvp", "iaf"):
        prior = flow_prior(3, kind=kind, num_layers=2, hidden_dims=[8])
        z = torch.randn(5, 3)
        assert prior().log_prob(z).shape == (5,)
    assert isinstance(flow_prior(3), MAF)


def test_pseudo_inputs_start_from_data_points(digits: datasets.Dataset) -> None:
    vae = _tiny("vamp", "gaussian", "discretized_logistic")
    vae.init_pseudo_inputs(digits.train[:3])
    assert torch.allclose(vae.prior.pseudo_inputs, digits.train[:3].float() / 16)
    with pytest.raises(ValueError, match="3 data points"):
        vae.init_pseudo_inputs(digits.train[:4])
    with pytest.raises(ValueError, match="not a VampPrior"):
        _tiny("flow", "gaussian", "bernoulli", name="other").init_pseudo_inputs(digits.train[:3])


# -- conditional VAE ---------------------------------------------------------------------


def test_a_conditional_vae_models_x_given_its_label(digits: datasets.Dataset) -> None:
    """q(z | x, c) and p(x | z, c) see the label: after a short fit on (x, one-hot label),
    the test ELBO with the true labels is clearly above the ELBO with shifted labels."""
    data = digits.with_label_context()
    vae = VAE.for_images(
        (1, 8, 8), latent_dim=4, likelihood="discretized_logistic", num_levels=17,
        channels=8, context_dim=32, condition_dim=10,
    )  # fmt: skip
    infer.fit(vae.model, vae.guide, data, epochs=6, lr=3e-3, progress=False, seed=0)
    x, c = data.split("test")
    true = infer.log_likelihood(vae.model, vae.guide, (x, c), num_particles=4).nats
    wrong = infer.log_likelihood(vae.model, vae.guide, (x, c.roll(1, -1)), num_particles=4)
    assert true > wrong.nats + 2.0, (true, wrong.nats)  # nats per image
    draws = vae.sample(3, torch.eye(10))
    assert draws.shape == (3, 10, 1, 8, 8) and 0 <= draws.min() and draws.max() <= 16
    assert vae.reconstruct(x[:5], c[:5]).shape == (5, 1, 8, 8)
    # the importance-weighted bound takes (x, context) batches too, particles broadcast
    iwae = infer.importance_log_likelihood(
        vae.model, vae.guide, (x[:20], c[:20]), num_samples=8, pareto_k_threshold=None
    )
    assert iwae.values.shape == (20,) and torch.isfinite(iwae.values).all()


def test_conditional_vae_shapes_and_errors() -> None:
    vae = VAE.for_vectors(3, latent_dim=2, hidden_dims=[8], condition_dim=4, posterior="iaf")
    assert vae.decoder.latent_dim == 2 + 4 and vae.condition_dim == 4
    x, c = torch.randn(5, 3), torch.eye(4)[torch.tensor([0, 1, 2, 3, 0])]
    Trace_ELBO().differentiable_loss(vae.model, vae.guide, x, c).backward()
    assert vae.sample(7, c[:2]).shape == (7, 2, 3)
    assert vae.posterior(x, c).batch_shape == (5,)
    for call, match in [
        (lambda: vae.model(x), r"conditional \(condition_dim=4\): expected a floating tensor"),
        (lambda: vae.guide(x, c[:3]), r"context: expected shape \(5, 4\), got \(3, 4\)"),
        (lambda: vae.model(x, c.long()), "got Tensor of dtype torch.int64"),
        (lambda: vae.sample(2, torch.zeros(3)), r"expected shape \(..., 4\), got \(3,\)"),
    ]:
        with pytest.raises(ValueError, match=match):
            call()
    plain = VAE.for_vectors(3, latent_dim=2, hidden_dims=[8])
    with pytest.raises(ValueError, match="built without condition_dim"):
        plain.model(x, c)
    with pytest.raises(ValueError, match="prior='vamp' mixes the posterior"):
        VAE.for_vectors(3, prior="vamp", condition_dim=4)
    with pytest.raises(ValueError, match="condition_dim: expected an int >= 1, got 0"):
        VAE.for_images((1, 8, 8), condition_dim=0)
