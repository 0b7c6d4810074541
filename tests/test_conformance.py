r"""Pyro conformance: every pyro_dgm distribution, flow and model/guide pair works
everywhere Pyro's own do (issue 10).

One parametrized suite. Each public distribution and each model/guide pair of
pyro_dgm is ONE entry below; every test in this file then runs on it.

How to add an entry
===================

A distribution, or a module whose call returns one (a flow), joins ``DISTRIBUTIONS``
with one line::

    Dist("glow_image", lambda: GlowImage((1, 4, 4), num_steps=1)),        # called as flow()
    Dist("maf_conditional", lambda: MAF(3, 1, [8], context_dim=2), context_dim=2),
                                                                        # called as flow(context)
    Dist("discretized_logistic", lambda: DiscretizedLogistic(torch.tensor(8.0), 2.0, 17)),
                                                                        # a distribution itself

* ``build`` returns a fresh, small, float32 object: an ``nn.Module`` that is called
  as ``module()`` (or ``module(context)`` with ``context_dim``), or a distribution
  whose batch shape is ``()`` (its event shape is anything).
* ``context_dim``: the module is conditional; the suite calls it with a context of
  shape ``(N, context_dim)`` (then the batch shape is ``(N,)``) and ``(2, 3, context_dim)``.
* ``invertible=False``: the distribution scores only its own samples (through the
  transforms' caches), e.g. planar or Sylvester posteriors; scoring other values is
  not tested for it.

A model/guide pair joins ``PAIRS`` with one line::

    Pair("pixelcnn", lambda: _flow_model(PixelCNN(...), torch.randint(0, 17, (4, 1, 4, 4)))),

``build`` returns a ``Setup(model, guide, args)``: the suite calls ``model(*args)`` and
``guide(*args)``; latent sites are the guide's sample sites. ``improper_prior=True``
marks a model whose prior cannot be sampled (Pyro's ``ImproperUniform``: Pyro's
``Predictive`` cannot run such a model, so only the guide's predictive is tested).

Keep entries tiny (a layer or two, hidden sizes of 8): the whole file must stay fast.
"""

from __future__ import annotations

import gc
import inspect
import logging
import math
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import pyro
import pyro.distributions as dist
import pytest
import torch
import zuko
from pyro import poutine
from pyro.distributions import TransformedDistribution
from pyro.infer import (
    SVI,
    Predictive,
    RenyiELBO,
    Trace_ELBO,
    TraceGraph_ELBO,
    TraceMeanField_ELBO,
)
from pyro.infer.autoguide import (
    AutoDiagonalNormal,
    AutoMultivariateNormal,
    AutoNormal,
    AutoNormalizingFlow,
)
from pyro.infer.autoguide.initialization import init_to_sample
from pyro.nn import PyroModule
from pyro.optim import Adam
from pyro.poutine.util import site_is_subsample
from torch import nn
from torch.distributions import AffineTransform

from pyro_dgm.distributions import (
    Discretized,
    DiscretizedLogistic,
    DiscretizedLogisticMixture,
    PixelCNN,
    WaveNet,
)
from pyro_dgm.flows import IAF, MAF, NICE, Flow, Glow, RealNVP, SplineFlow, ZukoFlow
from pyro_dgm.flows import MultiScaleGlow as ImageGlow
from pyro_dgm.flows import MultiScaleRealNVP as ImageRealNVP
from pyro_dgm.infer import fit
from pyro_dgm.models import (
    VAE,
    AutoregressiveModel,
    EnergyModel,
    FlowGuide,
    FlowModel,
    UniformDequantization,
    VariationalDequantization,
)
from pyro_dgm.models.vae.networks import MLPEncoder
from pyro_dgm.models.vae.posteriors import GaussianPosterior, make_posterior
from pyro_dgm.models.vae.priors import StandardNormalPrior, VampPrior
from pyro_dgm.transforms import (
    ActNorm,
    InvertibleLinear,
    affine_autoregressive,
    conditional_masked_affine_coupling,
    conditional_revnet_block,
    half_mask,
    iterated,
    masked_affine_coupling,
    memory_saving,
    revnet_block,
    zuko_transform,
)

N = 4  # data points in a plate
K = 3  # particles / predictive samples
H = [8]  # hidden sizes of every tiny network


# ---------------------------------------------------------------------------
# the entries
# ---------------------------------------------------------------------------


@dataclass
class Dist:
    """A distribution entry (see the module docstring)."""

    name: str
    build: Callable[[], nn.Module | dist.TorchDistribution]
    context_dim: int | None = None
    invertible: bool = True

    def __repr__(self) -> str:
        return self.name

    def make(self) -> tuple[nn.Module | None, Callable[..., dist.TorchDistribution]]:
        """``(module or None, call)``: ``call(context)`` returns the distribution."""
        obj = self.build()
        if isinstance(obj, nn.Module):
            return obj, lambda context=None: obj() if context is None else obj(context)
        return None, lambda context=None: obj

    def context(self, *batch: int, dtype: torch.dtype = torch.float32) -> torch.Tensor | None:
        if self.context_dim is None:
            return None
        return torch.randn(*(batch or (N,)), self.context_dim, dtype=dtype)


def _zuko(kind: str, context: int = 0, **kw: object) -> nn.Module:
    flows = {"maf": zuko.flows.MAF, "nsf": zuko.flows.NSF, "naf": zuko.flows.NAF}
    return flows[kind](
        3, context=context, transforms=kw.pop("transforms", 2), hidden_features=H, **kw
    )


def _vamp_prior() -> VampPrior:
    encoder = MLPEncoder(3, H)
    return VampPrior(encoder, GaussianPosterior(encoder.context_dim, 2), num_components=3)


DISTRIBUTIONS = [
    # discretized likelihoods
    Dist("discretized_logistic", lambda: DiscretizedLogistic(torch.tensor(8.0), 2.0, 17)),
    Dist(
        "discretized_logistic_event",
        lambda: DiscretizedLogistic(torch.tensor([3.0, 8.0, 12.0]), 1.5, 17).to_event(1),
    ),
    Dist(
        "discretized_logistic_mixture",
        lambda: DiscretizedLogisticMixture(
            torch.tensor([0.0, 1.0]), torch.tensor([4.0, 11.0]), torch.tensor([1.0, 2.0]), 17
        ),
    ),
    Dist("discretized_normal", lambda: Discretized(dist.Normal(torch.tensor(6.0), 2.5), 17)),
    # ready-made flows, called as flow()
    Dist("maf", lambda: MAF(3, 2, H)),
    Dist("iaf", lambda: IAF(3, 2, H)),
    Dist("realnvp", lambda: RealNVP(3, 2, H)),
    Dist("nice", lambda: NICE(3, 2, H)),
    Dist("glow", lambda: Glow(3, 2, H)),
    Dist("glow_qr", lambda: Glow(3, 1, H, parametrization="qr")),
    Dist("spline", lambda: SplineFlow(3, 2, H, count_bins=4)),
    # ... and as flow(context)
    Dist("maf_conditional", lambda: MAF(3, 2, H, context_dim=2), context_dim=2),
    Dist("iaf_conditional", lambda: IAF(3, 2, H, context_dim=2), context_dim=2),
    Dist("realnvp_conditional", lambda: RealNVP(3, 2, H, context_dim=2), context_dim=2),
    Dist("nice_conditional", lambda: NICE(3, 2, H, context_dim=2), context_dim=2),
    Dist("glow_conditional", lambda: Glow(3, 1, H, context_dim=2), context_dim=2),
    # zuko's flows through the bridge, both orientations
    Dist("zuko_maf", lambda: ZukoFlow(_zuko("maf"))),
    Dist("zuko_nsf", lambda: ZukoFlow(_zuko("nsf", bins=4))),
    Dist("zuko_naf", lambda: ZukoFlow(_zuko("naf", transforms=1, signal=4))),
    Dist("zuko_maf_iaf", lambda: ZukoFlow(_zuko("maf"), direction="iaf")),
    Dist("zuko_nsf_iaf", lambda: ZukoFlow(_zuko("nsf", bins=4), direction="iaf")),
    Dist("zuko_naf_iaf", lambda: ZukoFlow(_zuko("naf", transforms=1, signal=4), direction="iaf")),
    Dist("zuko_maf_conditional", lambda: ZukoFlow(_zuko("maf", context=2)), context_dim=2),
    Dist("zuko_nsf_conditional", lambda: ZukoFlow(_zuko("nsf", context=2, bins=4)), context_dim=2),
    # the VAE's priors and posteriors (posteriors are called with the encoder's context)
    # multi-scale image flows (1 x 4 x 4 images)
    Dist("image_glow", lambda: ImageGlow((1, 4, 4), num_levels=2, num_steps=1, hidden_channels=8)),
    Dist(
        "image_glow_checkerboard",
        lambda: ImageGlow((1, 4, 4), 2, 1, hidden_channels=8, checkerboard_steps=2),
    ),
    Dist(
        "image_realnvp",
        lambda: ImageRealNVP(
            (1, 4, 4), num_levels=2, num_steps=1, hidden_channels=8, num_blocks=1
        ),
    ),
    # memory-saving backpropagation (the multi-scale flows' flag; stacks in a Flow)
    Dist(
        "image_glow_memory_saving",
        lambda: ImageGlow(
            (1, 4, 4), num_levels=2, num_steps=1, hidden_channels=8, memory_saving=True
        ),
    ),
    Dist(
        "memory_saving_stack",
        lambda: Flow(
            [
                memory_saving(
                    [
                        ActNorm(3),
                        revnet_block(3, H),
                        InvertibleLinear(3),
                        masked_affine_coupling(3, hidden_dims=H),
                    ]
                )
            ],
            event_shape=3,
        ),
    ),
    Dist(
        "memory_saving_stack_conditional",
        lambda: Flow(
            [
                memory_saving(
                    [
                        ActNorm(3),
                        conditional_masked_affine_coupling(3, 2, hidden_dims=H),
                        conditional_revnet_block(3, 2, H),
                    ]
                )
            ],
            event_shape=3,
        ),
        context_dim=2,
    ),
    # autoregressive distributions of integer images and sequences
    Dist(
        "pixelcnn",
        lambda: PixelCNN((1, 2, 3), 5, hidden_channels=4, num_layers=1, num_components=2),
    ),
    Dist(
        "pixelcnn_conditional",
        lambda: PixelCNN(
            (1, 2, 3), 5, hidden_channels=4, num_layers=1, num_components=2, context_dim=2
        ),
        context_dim=2,
    ),
    Dist("wavenet", lambda: WaveNet(4, 5, residual_channels=4, num_layers=2)),
    Dist("vae_normal_prior", lambda: StandardNormalPrior(3)),
    Dist("vae_vamp_prior", _vamp_prior),
    Dist("vae_gaussian_posterior", lambda: make_posterior("gaussian", 4, 3), context_dim=4),
    Dist("vae_iaf_posterior", lambda: make_posterior("iaf", 4, 3, 2, H), context_dim=4),
    Dist(
        "vae_householder_posterior",
        lambda: make_posterior("householder", 4, 3, 2, H),
        context_dim=4,
    ),
    Dist(
        "vae_planar_posterior",
        lambda: make_posterior("planar", 4, 3, 2, H),
        context_dim=4,
        invertible=False,
    ),
    Dist(
        "vae_sylvester_posterior",
        lambda: make_posterior("sylvester", 4, 3, 2, H),
        context_dim=4,
        invertible=False,
    ),
]


@dataclass
class Setup:
    """What a pair entry builds: ``model(*args)`` and ``guide(*args)``."""

    model: Callable
    guide: Callable
    args: tuple


@dataclass
class Pair:
    """A model/guide pair entry (see the module docstring)."""

    name: str
    build: Callable[[], Setup]
    improper_prior: bool = False

    def __repr__(self) -> str:
        return self.name


def _flow_model(flow: Flow, data: torch.Tensor, context: torch.Tensor | None = None) -> Setup:
    pair = FlowModel(flow)
    args = (data,) if context is None else (data, context)
    return Setup(pair.model, pair.guide, args)


def _ar_pair(module: nn.Module, data: torch.Tensor) -> tuple:
    pair = AutoregressiveModel(module)
    return pair.model, pair.guide, (data,)


def _vae(likelihood: str = "gaussian", images: bool = False, **kw: object) -> Setup:
    levels = {
        "bernoulli": 2,
        "discretized_logistic": 17,
        "discretized_logistic_mixture": 17,
        "categorical": 17,
    }
    num_levels = levels.get(likelihood)
    shape = (1, 4, 4) if images else (4,)
    if likelihood == "gaussian":
        x = torch.randn(N, *shape)
    else:
        x = torch.randint(0, num_levels, (N, *shape))
    kw.update(
        likelihood=likelihood,
        flow_hidden_dims=H,
        prior_layers=2,
        posterior_steps=2,
        num_pseudo_inputs=3,
        num_components=2,
    )
    # the protocol of a pair, not a training schedule: KL warm-up (the VampPrior's default)
    # scales the latent site on gradient passes, a little more at every step
    kw.setdefault("warmup_steps", 0)
    if likelihood != "bernoulli" and num_levels is not None:
        kw["num_levels"] = num_levels
    if images:
        vae = VAE.for_images(shape, 2, channels=4, context_dim=8, **kw)
    else:
        vae = VAE.for_vectors(4, 2, hidden_dims=H, **kw)
    return Setup(vae.model, vae.guide, (x,))


def _dequantization(kind: str) -> Setup:
    y = torch.randint(0, 17, (N, 4))
    if kind == "uniform":
        pair = UniformDequantization(RealNVP(4, 2, H), num_levels=17)
    else:
        pair = VariationalDequantization(
            RealNVP(4, 2, H), 17, context_dim=8, num_layers=2, hidden_dims=H
        )
    return Setup(pair.model, pair.guide, (y,))


def _energy() -> Setup:
    energy = EnergyModel(lambda z: -0.5 * (z - 1.0).pow(2).sum(-1), event_shape=(2,))
    return Setup(energy.model, FlowGuide(IAF(2, 2, H)), ())


PAIRS = [
    Pair("flow_model_maf", lambda: _flow_model(MAF(3, 2, H), torch.randn(N, 3))),
    Pair("flow_model_glow", lambda: _flow_model(Glow(3, 1, H), torch.randn(N, 3))),
    Pair(
        "flow_model_maf_conditional",
        lambda: _flow_model(MAF(3, 2, H, context_dim=2), torch.randn(N, 3), torch.randn(N, 2)),
    ),
    Pair(
        "flow_model_zuko_nsf",
        lambda: _flow_model(ZukoFlow(_zuko("nsf", bins=4)), torch.randn(N, 3)),
    ),
    Pair("vae_flow_prior_iaf_posterior", lambda: _vae(prior="flow", posterior="iaf")),
    Pair("vae_vamp_prior_bernoulli", lambda: _vae("bernoulli", prior="vamp")),
    Pair(
        "vae_planar_discretized_logistic", lambda: _vae("discretized_logistic", posterior="planar")
    ),
    Pair(
        "vae_householder_mixture",
        lambda: _vae("discretized_logistic_mixture", prior="flow", posterior="householder"),
    ),
    Pair("vae_sylvester", lambda: _vae(posterior="sylvester")),
    Pair("vae_categorical", lambda: _vae("categorical", prior="vamp")),
    Pair("vae_images_categorical", lambda: _vae("categorical", images=True)),
    Pair(
        "vae_images_flow_prior_iaf",
        lambda: _vae("discretized_logistic", images=True, prior="flow", posterior="iaf"),
    ),
    Pair(
        "image_glow_model",
        lambda: _flow_model(
            ImageGlow((1, 4, 4), 2, 1, hidden_channels=8), torch.randn(N, 1, 4, 4)
        ),
    ),
    Pair(
        "image_glow_memory_saving_model",
        lambda: _flow_model(
            ImageGlow((1, 4, 4), 2, 1, hidden_channels=8, memory_saving=True),
            torch.randn(N, 1, 4, 4),
        ),
    ),
    Pair(
        "pixelcnn_model",
        lambda: Setup(
            *_ar_pair(
                PixelCNN((1, 2, 3), 5, hidden_channels=4, num_layers=1, num_components=2),
                torch.randint(0, 5, (N, 1, 2, 3)),
            )
        ),
    ),
    Pair(
        "wavenet_model",
        lambda: Setup(
            *_ar_pair(
                WaveNet(4, 5, residual_channels=4, num_layers=2), torch.randint(0, 5, (N, 1, 4))
            )
        ),
    ),
    Pair("uniform_dequantization", lambda: _dequantization("uniform")),
    Pair("variational_dequantization", lambda: _dequantization("variational")),
    Pair("energy_flow_guide", _energy, improper_prior=True),
]

# entries by what they can do


def _is_discrete(case: Dist) -> bool:
    return case.make()[1](case.context(N)).support.is_discrete


CONTINUOUS = [c for c in DISTRIBUTIONS if not _is_discrete(c)]
INVERTIBLE = [c for c in DISTRIBUTIONS if c.invertible]
CONDITIONAL_INVERTIBLE = [c for c in INVERTIBLE if c.context_dim is not None]
FLOWS = [c for c in DISTRIBUTIONS if isinstance(c.make()[0], Flow)]
MODULES = [c for c in DISTRIBUTIONS if isinstance(c.make()[0], nn.Module)]
PRIOR_FLOWS = [c for c in FLOWS if c.context_dim is None]
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _ids(cases: list) -> list[str]:
    return [c.name for c in cases]


def over(cases: list) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("case", cases, ids=_ids(cases))


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def _event_dims(d: dist.TorchDistribution) -> int:
    return len(d.event_shape)


def _sum_event(x: torch.Tensor, event_dims: int) -> torch.Tensor:
    return x.reshape(*x.shape[: x.dim() - event_dims], -1).sum(-1) if event_dims else x


def _data(case: Dist, call: Callable, context: torch.Tensor | None) -> torch.Tensor:
    """``N`` values drawn from the entry, one per data point, without gradients."""
    with torch.no_grad():
        d = call(context)
        return d.sample() if context is not None else d.sample((N,))


def _params(module: nn.Module) -> list[torch.Tensor]:
    return [p for p in module.parameters() if p.requires_grad]


def _latent_model(
    call: Callable, context: torch.Tensor | None, event_dims: int, prior: bool = True
) -> Callable:
    """z ~ the entry (or, with ``prior=False``, a standard normal of its shape) in a
    plate of N, y ~ Normal(sum z, 1) observed."""

    def model(y: torch.Tensor) -> None:
        with pyro.plate("data", N):
            d = call(context)
            if not prior:
                d = dist.Normal(torch.zeros(d.event_shape), 1.0).to_event(event_dims)
            z = pyro.sample("z", d)
            pyro.sample("y", dist.Normal(_sum_event(z.to(y.dtype), event_dims), 1.0), obs=y)

    return model


def _latent_guide(
    call: Callable, context: torch.Tensor | None, module: nn.Module | None = None
) -> Callable:
    def guide(y: torch.Tensor) -> None:
        if module is not None:
            pyro.module("entry", module)
        with pyro.plate("data", N):
            pyro.sample("z", call(context))

    return guide


def _loss(elbo: object, model: Callable, guide: Callable, *args: object, seed: int = 7) -> float:
    pyro.set_rng_seed(seed)
    return float(elbo.loss(model, guide, *args))


# ---------------------------------------------------------------------------
# the distribution protocol
# ---------------------------------------------------------------------------


@over(DISTRIBUTIONS)
def test_sample_log_prob_and_shapes(case: Dist) -> None:
    _, call = case.make()
    for batch in ([N], [2, 3]) if case.context_dim else ([],):
        d = call(case.context(*batch) if batch else None)
        assert d.batch_shape == torch.Size(batch)
        x = d.sample((2,))
        assert x.shape == (2, *batch, *d.event_shape)
        assert not x.requires_grad
        lp = d.log_prob(x)
        assert lp.shape == (2, *batch)
        assert torch.isfinite(lp).all()
        assert bool(d.support.check(x).all())
        if d.has_rsample:
            xr = d.rsample((2,))
            assert xr.shape == x.shape
            assert torch.isfinite(d.log_prob(xr)).all()
        else:  # a discrete or mixture distribution says so
            with pytest.raises(NotImplementedError):
                d.rsample()


@over(CONDITIONAL_INVERTIBLE)
def test_context_broadcasts_against_values(case: Dist) -> None:
    """A context (B, C) scores values (M, 1, D) as the broadcast (M, B) batch, and a
    context (M, B, C) scores values (B, D): Pyro's ConditionalAutoRegressiveNN alone
    expands the context to the values' shape and fails on both."""
    _, call = case.make()
    context = case.context(N)
    event = call(context).event_shape
    with torch.no_grad():  # values in the support (integers for discrete distributions)
        x = call(context).sample((2,))[:, :1]
        y = call(context).sample()
    lp = call(context).log_prob(x)
    assert lp.shape == (2, N)
    torch.testing.assert_close(
        lp, call(context).log_prob(x.expand(2, N, *event)), atol=1e-5, rtol=1e-5
    )
    wide = case.context(2, N)
    lp = call(wide).log_prob(y)
    assert lp.shape == (2, N)
    for i in range(2):
        torch.testing.assert_close(lp[i], call(wide[i]).log_prob(y), atol=1e-5, rtol=1e-5)


@over(DISTRIBUTIONS)
def test_expand_to_event_and_mask(case: Dist) -> None:
    _, call = case.make()
    context = case.context(N)
    d = call(context)
    e = d.expand((2, *d.batch_shape))
    assert e.batch_shape == (2, *d.batch_shape)
    x = e.rsample() if e.has_rsample else e.sample()
    assert x.shape == (*e.batch_shape, *e.event_shape)
    lp = e.log_prob(x)
    assert lp.shape == e.batch_shape
    if case.invertible:  # each slice scores as the unexpanded distribution does
        for i in range(2):
            torch.testing.assert_close(
                lp[i], call(context).log_prob(x[i].clone()), atol=1e-4, rtol=1e-4
            )
    ev = e.to_event(1)
    assert ev.batch_shape == e.batch_shape[:-1]
    assert ev.event_shape == (e.batch_shape[-1], *e.event_shape)
    torch.testing.assert_close(ev.log_prob(x), lp.sum(-1))
    mask = torch.zeros(e.batch_shape, dtype=torch.bool)
    mask[0] = True
    m = e.mask(mask)
    torch.testing.assert_close(m.log_prob(x), torch.where(mask, lp, 0.0))
    assert m.sample().shape == x.shape


@over(DISTRIBUTIONS)
def test_support(case: Dist) -> None:
    _, call = case.make()
    d = call(case.context(N))
    support = d.support
    assert support.event_dim == len(d.event_shape)
    x = d.sample((50,))
    assert bool(support.check(x).all())
    if support.is_discrete:
        assert torch.equal(x, x.round())


@over(DISTRIBUTIONS)
def test_mean_and_variance_or_a_reason(case: Dist) -> None:
    _, call = case.make()
    d = call(case.context(N))
    with torch.no_grad():
        x = d.sample((4000,))
    for name, estimate in (("mean", x.mean(0)), ("variance", x.var(0))):
        try:
            value = getattr(d, name)
        except NotImplementedError as error:
            message = str(error)
            assert name in message and len(message) > 40, f"{name}: {message!r}"
            continue
        assert value.shape == (*d.batch_shape, *d.event_shape)
        # Monte Carlo check of the closed form: 6 standard errors (4000 draws)
        var = x.var(0)
        tol = 6 * (var / 4000).sqrt() if name == "mean" else 6 * var * math.sqrt(2 / 4000)
        assert ((value - estimate).abs() <= tol + 1e-3).all(), (name, value, estimate)


@over(DISTRIBUTIONS)
def test_transformed_distribution_around_it(case: Dist) -> None:
    _, call = case.make()
    context = case.context(N)
    d = call(context)
    scale = 1.0 if d.support.is_discrete else 2.0  # integer shift keeps levels levels
    t = AffineTransform(3.0, scale, event_dim=len(d.event_shape), cache_size=1)
    td = TransformedDistribution(d, [t])
    y = td.rsample((2,)) if td.has_rsample else td.sample((2,))
    assert y.shape == (2, *d.batch_shape, *d.event_shape)
    lp = td.log_prob(y)
    assert lp.shape == (2, *d.batch_shape) and torch.isfinite(lp).all()
    if case.invertible:
        numel = math.prod(d.event_shape)
        expected = call(context).log_prob((y.detach() - 3.0) / scale) - numel * math.log(scale)
        torch.testing.assert_close(lp, expected, atol=1e-4, rtol=1e-4)


# ---------------------------------------------------------------------------
# inside models and guides
# ---------------------------------------------------------------------------


@over(DISTRIBUTIONS)
def test_plate_with_subsample_size(case: Dist) -> None:
    _, call = case.make()
    size, sub = 10, 3
    contexts = case.context(size)

    def model() -> torch.Tensor:
        with pyro.plate("data", size, subsample_size=sub) as idx:
            d = call(contexts[idx] if contexts is not None else None)
            return pyro.sample("x", d)

    tr = poutine.trace(model).get_trace()
    site = tr.nodes["x"]
    assert site["value"].shape[0] == sub
    assert site["scale"] == size / sub
    own = site["fn"].log_prob(site["value"]).sum()  # through the cache
    torch.testing.assert_close(tr.log_prob_sum(), size / sub * own)
    if case.invertible:
        idx = tr.nodes["data"]["value"]
        d = call(contexts[idx] if contexts is not None else None)
        fresh = d.log_prob(site["value"].clone()).sum()
        torch.testing.assert_close(tr.log_prob_sum(), size / sub * fresh, atol=1e-4, rtol=1e-4)


@over(INVERTIBLE)
def test_trace_replay_condition_block_scale(case: Dist) -> None:
    _, call = case.make()
    context = case.context(N)
    event_dims = len(call(context).event_shape)
    model = _latent_model(call, context, event_dims)
    y = torch.randn(N)
    t1 = poutine.trace(model).get_trace(y)
    z = t1.nodes["z"]["value"]
    t2 = poutine.trace(poutine.replay(model, trace=t1)).get_trace(y)
    assert torch.equal(t2.nodes["z"]["value"], z)
    torch.testing.assert_close(t2.log_prob_sum(), t1.log_prob_sum(), atol=1e-4, rtol=1e-4)
    if case.invertible:  # conditioning scores the given value afresh
        t3 = poutine.trace(poutine.condition(model, data={"z": z.clone()})).get_trace(y)
        assert t3.nodes["z"]["is_observed"]
        torch.testing.assert_close(t3.log_prob_sum(), t1.log_prob_sum(), atol=1e-4, rtol=1e-4)
    t4 = poutine.trace(poutine.block(model, hide=["z"])).get_trace(y)
    assert "z" not in t4.nodes and "y" in t4.nodes
    t5 = poutine.trace(poutine.scale(poutine.replay(model, trace=t1), 0.5)).get_trace(y)
    torch.testing.assert_close(t5.log_prob_sum(), 0.5 * t2.log_prob_sum())


@over([c for c in CONTINUOUS])
def test_vectorized_particles_and_elbos_with_a_latent(case: Dist) -> None:
    """The entry as a prior and as a guide: K vectorized particles score as K separate
    draws; Trace_ELBO, TraceGraph_ELBO and TraceMeanField_ELBO agree under one seed;
    RenyiELBO and vectorized Trace_ELBO give finite losses and gradients."""
    module, call = case.make()
    context = case.context(N)
    event_dims = len(call(context).event_shape)
    model = _latent_model(call, context, event_dims, prior=case.invertible)
    guide = _latent_guide(call, context, module)
    y = torch.randn(N)
    with pyro.plate("particles", K, dim=-2):
        gt = poutine.trace(guide).get_trace(y)
    z = gt.nodes["z"]["value"]
    assert z.shape[:2] == (K, N)
    gt.compute_log_prob()
    lp = gt.nodes["z"]["log_prob"]
    assert lp.shape == (K, N) and torch.isfinite(lp).all()
    if case.invertible:
        for k in range(K):
            torch.testing.assert_close(
                lp[k], call(context).log_prob(z[k].clone()), atol=1e-4, rtol=1e-4
            )
    elbo = Trace_ELBO(num_particles=K, vectorize_particles=True, max_plate_nesting=1)
    loss = elbo.loss_and_grads(model, guide, y)
    assert math.isfinite(loss)
    if module is not None and _params(module):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in _params(module))
    reference = _loss(Trace_ELBO(), model, guide, y)
    assert math.isclose(
        _loss(TraceGraph_ELBO(), model, guide, y), reference, rel_tol=1e-4, abs_tol=1e-3
    )
    if call(context).has_rsample:  # both need a reparameterized guide
        assert math.isclose(
            _loss(TraceMeanField_ELBO(), model, guide, y), reference, rel_tol=1e-4, abs_tol=1e-3
        )
        assert math.isfinite(RenyiELBO(alpha=0.5, num_particles=2).loss(model, guide, y))


@over([c for c in INVERTIBLE])
def test_vectorized_particles_as_a_likelihood(case: Dist) -> None:
    """The entry observes data under K vectorized particles; a conditional entry takes
    a latent context drawn per particle ((K, N, C) against values (N, D))."""
    _, call = case.make()
    data = _data(case, call, case.context(N))
    cdim = case.context_dim

    def model(x: torch.Tensor) -> None:
        with pyro.plate("data", N):
            c = pyro.sample("c", dist.Normal(torch.zeros(cdim or 1), 1.0).to_event(1))
            pyro.sample("x", call(c) if cdim else call(), obs=x)

    def guide(x: torch.Tensor) -> None:
        with pyro.plate("data", N):
            pyro.sample("c", dist.Normal(torch.zeros(cdim or 1), 1.0).to_event(1))

    with pyro.plate("particles", K, dim=-2):
        gt = poutine.trace(guide).get_trace(data)
        mt = poutine.trace(poutine.replay(model, trace=gt)).get_trace(data)
    mt.compute_log_prob()
    lp = mt.nodes["x"]["log_prob"]
    assert lp.shape == (K, N)
    c = gt.nodes["c"]["value"]
    for k in range(K):
        expected = (call(c[k]) if cdim else call()).log_prob(data)
        torch.testing.assert_close(lp[k], expected, atol=1e-4, rtol=1e-4)
    elbo = Trace_ELBO(num_particles=K, vectorize_particles=True, max_plate_nesting=1)
    assert math.isfinite(elbo.loss(model, guide, data))


@over(DISTRIBUTIONS)
@pytest.mark.parametrize("parallel", [False, True], ids=["sequential", "parallel"])
def test_predictive_prior_and_posterior(case: Dist, parallel: bool) -> None:
    _, call = case.make()
    context = case.context(N)
    d = call(context)
    event = d.event_shape

    def prior_model() -> None:
        with pyro.plate("data", N):
            pyro.sample("x", call(context))

    samples = Predictive(prior_model, num_samples=K, parallel=parallel)()
    assert samples["x"].shape == (K, N, *event)
    assert bool(d.support.check(samples["x"]).all())
    model = _latent_model(call, context, len(event), prior=case.invertible)
    guide = _latent_guide(call, context)
    y = torch.randn(N)
    post = Predictive(model, guide=guide, num_samples=K, parallel=parallel)(y)
    assert post["z"].shape == (K, N, *event)
    assert post["y"].shape == (K, N)  # observed: the data, repeated
    assert torch.equal(post["y"], y.expand(K, N))
    assert bool(d.support.check(post["z"]).all())


# ---------------------------------------------------------------------------
# registration, state, dtype and device
# ---------------------------------------------------------------------------


class _UserGuide(PyroModule):
    """A user's PyroModule guide holding a flow: no pyro.module call anywhere."""

    def __init__(self, flow: Flow, context: torch.Tensor | None) -> None:
        super().__init__()
        self.flow = flow
        self.context = context

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        with pyro.plate("data", N):
            return pyro.sample("z", self.flow(self.context))


@over(FLOWS)
def test_pyro_module_registration_and_param_store_round_trip(case: Dist, tmp_path) -> None:
    flow, _ = case.make()
    context = case.context(N)
    guide = _UserGuide(flow, context)
    event = flow.event_shape

    def model(y: torch.Tensor) -> None:
        with pyro.plate("data", N):
            z = pyro.sample("z", dist.Normal(torch.zeros(event), 1.0).to_event(len(event)))
            pyro.sample("y", dist.Normal(_sum_event(z, len(event)), 1.0), obs=y)

    y = torch.randn(N)
    svi = SVI(model, guide, Adam({"lr": 0.05}), Trace_ELBO())
    svi.step(y)
    store = pyro.get_param_store()
    expected = {f"flow$$${n}" for n, p in flow.named_parameters() if p.requires_grad}
    assert set(store.keys()) == expected
    own = dict(flow.named_parameters())
    assert all(store[f"flow$$${n}"] is own[n] for n in own)  # the flow's own tensors
    before = {n: p.detach().clone() for n, p in own.items()}
    svi.step(y)
    svi.step(y)
    assert any(not torch.equal(before[n], p) for n, p in flow.named_parameters())
    values = torch.randn(N, *event)
    with poutine.trace():
        trained = flow(context).log_prob(values)
    path = tmp_path / "params.pt"
    store.save(path)
    # a fresh flow picks the saved parameters up from the store. Buffers (an LU
    # permutation, ActNorm's flag) are not parameters and not in a param store, so it is
    # built as the first one was, then its parameters are changed
    torch.manual_seed(0)
    fresh, _ = case.make()
    _perturb(fresh)
    fresh_guide = _UserGuide(fresh, context)
    pyro.clear_param_store()
    store.load(path)
    with poutine.trace():  # scoring first: a data-dependent init must not run now
        reloaded = fresh_guide.flow(context).log_prob(values)
    for n, p in fresh.named_parameters():
        torch.testing.assert_close(p, own[n].detach())
    torch.testing.assert_close(reloaded, trained)
    poutine.trace(fresh_guide).get_trace(y)


def _perturb(module: nn.Module) -> None:
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.1 * torch.randn_like(p))


def _check_dtype_device(module: nn.Module, dtype: torch.dtype, device: str) -> None:
    for name, t in [*module.named_parameters(), *module.named_buffers()]:
        if t.is_floating_point():
            assert t.dtype == dtype, name
        assert t.device.type == device, name


@over(MODULES)
@pytest.mark.parametrize("device", DEVICES)
def test_double_and_to_device_move_everything(case: Dist, device: str) -> None:
    module, call = case.make()
    module.double().to(device)
    _check_dtype_device(module, torch.float64, device)
    context = case.context(N, dtype=torch.float64)
    context = context.to(device) if context is not None else None
    d = call(context)
    x = d.rsample((2,)) if d.has_rsample else d.sample((2,))
    assert x.dtype == torch.float64 and x.device.type == device
    lp = d.log_prob(x)
    assert lp.dtype == torch.float64 and torch.isfinite(lp).all()
    if case.invertible:
        assert torch.isfinite(call(context).log_prob(x.detach().clone())).all()


# ---------------------------------------------------------------------------
# model/guide pairs
# ---------------------------------------------------------------------------


def _latents(setup: Setup) -> list[str]:
    tr = poutine.trace(setup.guide).get_trace(*setup.args)
    return [
        n
        for n, s in tr.nodes.items()
        if s["type"] == "sample" and not s["is_observed"] and not site_is_subsample(s)
    ]


def _roots(setup: Setup) -> list[nn.Module]:
    found = []
    for f in (setup.model, setup.guide):
        obj = getattr(f, "__self__", f)
        if isinstance(obj, nn.Module) and all(obj is not r for r in found):
            found.append(obj)
    return found


@over(PAIRS)
def test_pair_trace_replay_condition_block_scale(case: Pair) -> None:
    s = case.build()
    latents = _latents(s)
    pyro.set_rng_seed(3)
    gt = poutine.trace(s.guide).get_trace(*s.args)
    mt = poutine.trace(poutine.replay(s.model, trace=gt)).get_trace(*s.args)
    for name in latents:
        assert torch.equal(mt.nodes[name]["value"], gt.nodes[name]["value"])
    elbo = mt.log_prob_sum() - gt.log_prob_sum()
    assert torch.isfinite(elbo)
    # the ELBO Pyro computes is the one these traces give
    loss = _loss(Trace_ELBO(), s.model, s.guide, *s.args, seed=3)
    assert math.isclose(loss, -float(elbo.detach()), rel_tol=1e-5, abs_tol=1e-4)
    data = {n: gt.nodes[n]["value"] for n in latents}
    ct = poutine.trace(poutine.condition(s.model, data=data)).get_trace(*s.args)
    assert all(ct.nodes[n]["is_observed"] for n in latents)
    torch.testing.assert_close(ct.log_prob_sum(), mt.log_prob_sum(), atol=1e-3, rtol=1e-5)
    bt = poutine.trace(poutine.block(poutine.replay(s.model, trace=gt), hide=latents))
    bt = bt.get_trace(*s.args)
    assert not set(latents) & set(bt.nodes)
    st = poutine.trace(poutine.scale(poutine.replay(s.model, trace=gt), 0.5)).get_trace(*s.args)
    torch.testing.assert_close(st.log_prob_sum(), 0.5 * mt.log_prob_sum(), atol=1e-3, rtol=1e-5)


def _accepts_data_size(fn: Callable) -> bool:
    return "data_size" in inspect.signature(fn).parameters


@over([p for p in PAIRS if _accepts_data_size(p.build().model)])
def test_pair_subsampled_plate(case: Pair) -> None:
    s = case.build()
    size = 10 * N
    pyro.set_rng_seed(5)
    gt = poutine.trace(s.guide).get_trace(*s.args, data_size=size)
    mt = poutine.trace(poutine.replay(s.model, trace=gt)).get_trace(*s.args, data_size=size)
    full = poutine.trace(poutine.replay(s.model, trace=gt)).get_trace(*s.args)
    for tr in (gt, mt):
        for site in tr.nodes.values():
            if site["type"] == "sample" and not site_is_subsample(site):
                assert site["scale"] == size / N
    torch.testing.assert_close(
        mt.log_prob_sum(), size / N * full.log_prob_sum(), atol=1e-3, rtol=1e-5
    )


@over(PAIRS)
def test_pair_vectorized_particles(case: Pair) -> None:
    """Every site of K vectorized particles scores as the particle run on its own."""
    s = case.build()
    latents = _latents(s)
    with pyro.plate("particles", K, dim=-2):
        gt = poutine.trace(s.guide).get_trace(*s.args)
        mt = poutine.trace(poutine.replay(s.model, trace=gt)).get_trace(*s.args)
    mt.compute_log_prob()
    gt.compute_log_prob()
    for k in range(K):
        one = {n: gt.nodes[n]["value"][k] for n in latents}
        single = poutine.trace(poutine.condition(s.model, data=one)).get_trace(*s.args)
        single.compute_log_prob()
        for name, site in single.nodes.items():
            if site["type"] == "sample" and not site_is_subsample(site):
                vec = mt.nodes[name]["log_prob"]
                vec = vec[k] if vec.dim() and vec.shape[0] == K else vec
                torch.testing.assert_close(
                    vec.expand_as(site["log_prob"]) if vec.dim() else vec,
                    site["log_prob"],
                    atol=2e-4,
                    rtol=1e-4,
                )
    elbo = Trace_ELBO(num_particles=K, vectorize_particles=True, max_plate_nesting=1)
    loss = elbo.loss_and_grads(s.model, s.guide, *s.args)
    assert math.isfinite(loss)
    grads = [p.grad for r in _roots(s) for p in _params(r)]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    if not latents:  # no latent: every particle is the exact log-likelihood
        assert math.isclose(loss, _loss(Trace_ELBO(), s.model, s.guide, *s.args), rel_tol=1e-5)


@over(PAIRS)
def test_pair_elbo_variants(case: Pair) -> None:
    s = case.build()
    reference = _loss(Trace_ELBO(), s.model, s.guide, *s.args)
    graph = _loss(TraceGraph_ELBO(), s.model, s.guide, *s.args)
    assert math.isclose(graph, reference, rel_tol=1e-4, abs_tol=1e-3)
    mean_field = TraceMeanField_ELBO()
    assert math.isfinite(mean_field.loss_and_grads(s.model, s.guide, *s.args))
    renyi = RenyiELBO(alpha=0.5, num_particles=2)
    value = renyi.loss_and_grads(s.model, s.guide, *s.args)
    assert math.isfinite(value)
    if not _latents(s):  # without latents every bound is the log-likelihood
        assert math.isclose(value, reference, rel_tol=1e-5)
        assert math.isclose(_loss(mean_field, s.model, s.guide, *s.args), reference, rel_tol=1e-5)


@over(PAIRS)
@pytest.mark.parametrize("parallel", [False, True], ids=["sequential", "parallel"])
def test_pair_predictive(case: Pair, parallel: bool) -> None:
    s = case.build()
    latents = _latents(s)
    gt = poutine.trace(s.guide).get_trace(*s.args)
    if case.improper_prior:  # the guide's own predictive
        post = Predictive(s.guide, num_samples=K, parallel=parallel)(*s.args)
    else:
        post = Predictive(s.model, guide=s.guide, num_samples=K, parallel=parallel)(*s.args)
    for name in latents:
        assert post[name].shape == (K, *gt.nodes[name]["value"].shape)
        assert torch.isfinite(post[name]).all()
    if not case.improper_prior:
        prior = Predictive(s.model, num_samples=K, parallel=parallel)(*s.args)
        for name in latents:
            assert prior[name].shape == (K, *gt.nodes[name]["value"].shape)
            assert torch.isfinite(prior[name]).all()
            assert not torch.equal(prior[name][0], prior[name][1])


def _registered_modules(setup: Setup) -> dict[str, nn.Module]:
    """The modules a pair registers with ``pyro.module``, by their registered names,
    found from the param store (names ``module$$$param``) and the parameters' identity."""
    pyro.clear_param_store()
    Trace_ELBO().loss(setup.model, setup.guide, *setup.args)
    store = pyro.get_param_store()
    found: dict[str, nn.Module] = {}
    for full in store:
        module_name, param_name = full.split("$$$")
        if module_name in found:
            continue
        for root in _roots(setup):
            for m in root.modules():
                try:
                    if m.get_parameter(param_name) is store[full]:
                        found[module_name] = m
                        break
                except AttributeError:
                    continue
            if module_name in found:
                break
    names = {full.split("$$$")[0] for full in store}
    assert set(found) == names
    return found


@over(PAIRS)
def test_pair_param_store_round_trip(case: Pair, tmp_path) -> None:
    s = case.build()
    svi = SVI(s.model, s.guide, Adam({"lr": 0.01}), Trace_ELBO())
    svi.step(*s.args)
    saved = {n: v.detach().clone() for n, v in pyro.get_param_store().items()}
    trained_loss = _loss(Trace_ELBO(), s.model, s.guide, *s.args)
    path = tmp_path / "params.pt"
    pyro.get_param_store().save(path)
    torch.manual_seed(0)  # same construction (buffers), other parameters
    fresh = case.build()
    for root in _roots(fresh):
        _perturb(root)
    modules = _registered_modules(fresh)
    pyro.clear_param_store()
    pyro.get_param_store().load(path)
    for name, module in modules.items():  # Pyro's way to load a store into modules
        pyro.module(name, module, update_module_params=True)
    for n, v in pyro.get_param_store().items():
        torch.testing.assert_close(v, saved[n])
    fresh_args = s.args  # same data
    reloaded = _loss(Trace_ELBO(), fresh.model, fresh.guide, *fresh_args)
    assert math.isclose(reloaded, trained_loss, rel_tol=1e-5, abs_tol=1e-4)


@over(PAIRS)
@pytest.mark.parametrize("device", DEVICES)
def test_pair_double_and_to_device(case: Pair, device: str) -> None:
    s = case.build()
    for root in _roots(s):
        root.double().to(device)
        _check_dtype_device(root, torch.float64, device)
    args = tuple((a.double() if a.is_floating_point() else a).to(device) for a in s.args)
    pyro.set_rng_seed(0)
    gt = poutine.trace(s.guide).get_trace(*args)
    mt = poutine.trace(poutine.replay(s.model, trace=gt)).get_trace(*args)
    for tr in (gt, mt):
        for name, site in tr.nodes.items():
            latent = site["type"] == "sample" and not site["is_observed"]
            if latent and not site_is_subsample(site):
                assert site["value"].dtype == torch.float64, name
    value = mt.log_prob_sum() - gt.log_prob_sum()
    assert value.dtype == torch.float64 and torch.isfinite(value)


# ---------------------------------------------------------------------------
# autoguides on a model whose prior is a pyro_dgm flow
# ---------------------------------------------------------------------------


def _flow_prior_model(prior: Flow) -> Callable:
    for p in prior.parameters():  # a fixed (pre-trained) prior: only the guide learns
        p.requires_grad_(False)
    event_dims = len(prior.event_shape)

    def model(x: torch.Tensor) -> None:
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", prior())
            pyro.sample("x", dist.Normal(z, 0.5).to_event(event_dims), obs=x)

    return model


AUTOGUIDES = {
    "AutoNormal": partial(AutoNormal, init_loc_fn=init_to_sample),
    "AutoDiagonalNormal": partial(AutoDiagonalNormal, init_loc_fn=init_to_sample),
    "AutoMultivariateNormal": AutoMultivariateNormal,
}


@over(PRIOR_FLOWS)
@pytest.mark.parametrize("guide_name", list(AUTOGUIDES))
def test_autoguides_on_a_flow_prior(case: Dist, guide_name: str) -> None:
    prior, _ = case.make()
    model = _flow_prior_model(prior)
    guide = AUTOGUIDES[guide_name](model)
    x = torch.randn(N, *prior.event_shape) + 1.0
    svi = SVI(model, guide, Adam({"lr": 0.05}), Trace_ELBO())
    svi.step(x)
    store = pyro.get_param_store()
    names = list(store.keys())
    assert names and all(n.startswith(guide_name) for n in names)
    before = {n: store[n].detach().clone() for n in names}
    svi.step(x)
    svi.step(x)
    assert all(not torch.equal(before[n], store[n].detach()) for n in names)
    for parallel in (False, True):
        post = Predictive(model, guide=guide, num_samples=K, parallel=parallel)(x)
        assert post["z"].shape == (K, *x.shape) and torch.isfinite(post["z"]).all()


def _mean_loss(model: Callable, guide: Callable, x: torch.Tensor) -> float:
    elbo = Trace_ELBO(num_particles=256, vectorize_particles=True, max_plate_nesting=1)
    pyro.set_rng_seed(11)
    with torch.no_grad():
        return float(elbo.loss(model, guide, x))


def _trains(
    model: Callable, guide: Callable, x: torch.Tensor, steps: int = 60, lr: float = 0.03
) -> tuple[float, float, dict, dict]:
    svi = SVI(model, guide, Adam({"lr": lr}), Trace_ELBO())
    svi.step(x)  # creates the parameters
    store = pyro.get_param_store()
    start = {n: v.detach().clone() for n, v in store.items()}
    first = _mean_loss(model, guide, x)
    for _ in range(steps):
        svi.step(x)
    last = _mean_loss(model, guide, x)
    return first, last, start, {n: v.detach().clone() for n, v in store.items()}


@pytest.mark.parametrize("guide_name", list(AUTOGUIDES))
def test_autoguide_loss_drops_on_a_maf_prior(guide_name: str) -> None:
    model = _flow_prior_model(MAF(3, 2, H))
    guide = AUTOGUIDES[guide_name](model)
    first, last, start, end = _trains(model, guide, torch.randn(N, 3) + 2.0)
    assert last < first - 1.0, (first, last)
    assert set(start) == set(end) and all(not torch.equal(start[n], end[n]) for n in start)


# AutoNormalizingFlow / AutoIAFNormal-style guides built from pyro_dgm transforms
FLOW_GUIDE_TRANSFORMS = {
    # AutoIAFNormal's recipe with pyro_dgm's (dtype-safe) affine_autoregressive
    "iaf_pyro_dgm": partial(iterated, 2, affine_autoregressive, hidden_dims=[32]),
    "masked_affine_coupling": lambda d: masked_affine_coupling(d, half_mask(d), [32]),
    # zuko's lazy transforms through the bridge, IAF direction (cheap sampling)
    "zuko_maf_iaf": lambda d: zuko_transform(
        zuko.flows.MAF(d, transforms=2, hidden_features=H).transform, "iaf"
    ),
    "zuko_nsf_iaf": lambda d: zuko_transform(
        zuko.flows.NSF(d, transforms=1, hidden_features=H, bins=4).transform, "iaf"
    ),
}


@pytest.mark.parametrize("name", list(FLOW_GUIDE_TRANSFORMS))
def test_auto_normalizing_flow_from_pyro_dgm_transforms(name: str) -> None:
    model = _flow_prior_model(MAF(3, 2, H))
    guide = AutoNormalizingFlow(model, FLOW_GUIDE_TRANSFORMS[name])
    first, last, start, end = _trains(model, guide, torch.randn(N, 3) + 2.0)
    transform_params = [n for n in start if "transform" in n]
    expected = {p for p in guide.transform.parameters() if p.requires_grad}
    assert len(transform_params) == len(expected) > 0  # every weight in the param store
    assert all(not torch.equal(start[n], end[n]) for n in transform_params)
    assert last < first - 1.0, (first, last)


# ---------------------------------------------------------------------------
# caches: bounded, and a clone still scores correctly
# ---------------------------------------------------------------------------


@over(FLOWS)
def test_cache_is_bounded(case: Dist) -> None:
    flow, _ = case.make()
    context = case.context(N)
    refs = []
    for _ in range(12):
        d = flow(context)
        x = d.rsample((2,))
        d.log_prob(x).sum().backward()
        refs.append(weakref.ref(x))
        del x, d
    gc.collect()
    alive = sum(r() is not None for r in refs)
    assert alive <= 1, f"{alive} of 12 samples are still held by the flow"


@over([c for c in FLOWS if c.invertible])
def test_a_cloned_sample_scores_like_the_sample(case: Dist) -> None:
    flow, _ = case.make()
    d = flow(case.context(N))
    x = d.rsample((3,))
    cached = d.log_prob(x)
    fresh = d.log_prob(x.clone())  # not the cached tensor: the inverse is taken
    torch.testing.assert_close(fresh, cached, atol=1e-4, rtol=1e-4)
    fresh.sum().backward()  # and the clone is differentiable through the inverse


@pytest.mark.parametrize("kind", ["maf", "nsf"])
@pytest.mark.parametrize("direction", ["maf", "iaf"])
def test_zuko_bridge_orientation(kind: str, direction: str) -> None:
    """``direction="iaf"`` samples through zuko's forward map f (one pass), "maf" through
    f^{-1}; both score with the same density as zuko's own flow for "maf"."""
    zflow = _zuko(kind, bins=4) if kind == "nsf" else _zuko(kind)
    flow = ZukoFlow(zflow, direction=direction)
    torch.manual_seed(4)
    x = flow().rsample((5,))
    torch.manual_seed(4)
    z = torch.randn(5, 3)
    f = zflow.transform(None)
    with torch.no_grad():
        expected = f(z) if direction == "iaf" else f.inv(z)
    torch.testing.assert_close(x.detach(), expected, atol=1e-4, rtol=1e-4)
    if direction == "maf":
        torch.testing.assert_close(
            flow().log_prob(x.detach()), zflow().log_prob(x.detach()), atol=1e-4, rtol=1e-4
        )


# ---------------------------------------------------------------------------
# no "Guessed max_plate_nesting" line per loss call
# ---------------------------------------------------------------------------


@pytest.fixture
def pyro_log(caplog):
    """caplog for Pyro's logger (it does not propagate to the root logger)."""
    logger = logging.getLogger("pyro")
    logger.addHandler(caplog.handler)
    caplog.set_level(logging.INFO, logger="pyro")
    yield caplog
    logger.removeHandler(caplog.handler)


def _guesses(caplog) -> int:
    return sum("Guessed max_plate_nesting" in r.getMessage() for r in caplog.records)


def test_user_elbo_guesses_at_most_once(pyro_log) -> None:
    s = _vae(prior="flow", posterior="iaf")
    elbo = Trace_ELBO(num_particles=2, vectorize_particles=True)
    for _ in range(4):
        elbo.loss(s.model, s.guide, *s.args)
    assert _guesses(pyro_log) == 1  # Pyro's own: once per ELBO object, not per call
    pyro_log.clear()
    elbo = Trace_ELBO(num_particles=2, vectorize_particles=True, max_plate_nesting=1)
    for _ in range(4):
        elbo.loss(s.model, s.guide, *s.args)
    assert _guesses(pyro_log) == 0


def test_fit_does_not_log_per_loss_call(pyro_log) -> None:
    vae = VAE.for_vectors(
        4,
        2,
        hidden_dims=H,
        prior="flow",
        posterior="iaf",
        flow_hidden_dims=H,
        prior_layers=2,
        posterior_steps=2,
    )
    x = torch.randn(24, 4)
    loss = Trace_ELBO(num_particles=2, vectorize_particles=True)
    history = fit(
        vae.model, vae.guide, x, epochs=2, batch_size=4, loss=loss, progress=False, validation=0.25
    )
    assert len(history.epoch) == 2
    assert _guesses(pyro_log) <= 1  # about 2 x (5 training + 2 validation) loss calls
