"""Ready-made flow distributions and the flow model/guide pair."""

from __future__ import annotations

import copy
import re

import pyro
import pyro.distributions as dist
import pytest
import torch
import zuko
from harness import DistributionCase, DistributionHarness
from pyro.infer import Trace_ELBO

import pyro_dgm
from pyro_dgm.flows import (
    IAF,
    MAF,
    NICE,
    Flow,
    Glow,
    MultiScaleGlow,
    MultiScaleRealNVP,
    RealNVP,
    SplineFlow,
    ZukoFlow,
)
from pyro_dgm.models import FlowModel


def _perturbed(flow: Flow) -> Flow:
    """Couplings start as the identity; move them so the checks are not trivial."""
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    return flow


def _flow_case(name: str, make, context: torch.Tensor | None = None) -> DistributionCase:
    def factory(validate_args: bool | None = None) -> dist.TorchDistribution:
        torch.manual_seed(1)
        flow = make().double()
        return flow(None if context is None else context.double())

    return DistributionCase(name, factory, invalid_values=None, mass_tolerance=2e-3)


class TestFlowDistributions(DistributionHarness):
    CASES = [
        _flow_case("maf", lambda: MAF(2, num_layers=3, hidden_dims=[16])),
        _flow_case("iaf", lambda: IAF(2, num_layers=3, hidden_dims=[16])),
        _flow_case("spline", lambda: SplineFlow(2, num_layers=2, hidden_dims=[16])),
        _flow_case("realnvp", lambda: _perturbed(RealNVP(2, num_layers=4, hidden_dims=[16]))),
        _flow_case("nice", lambda: _perturbed(NICE(2, num_layers=4, hidden_dims=[16]))),
        _flow_case("glow", lambda: _perturbed(Glow(2, num_steps=2, hidden_dims=[16]))),
        _flow_case("glow_qr", lambda: _perturbed(Glow(2, 2, [16], parametrization="qr"))),
        _flow_case(
            "conditional_realnvp",
            lambda: _perturbed(RealNVP(2, num_layers=2, hidden_dims=[16], context_dim=3)),
            context=torch.randn(4, 3, generator=torch.Generator().manual_seed(0)),
        ),
        _flow_case("zuko_maf", lambda: ZukoFlow(zuko.flows.MAF(2, transforms=2))),
        _flow_case("zuko_nsf", lambda: ZukoFlow(zuko.flows.NSF(2, transforms=2))),
        _flow_case("zuko_nsf_iaf", lambda: ZukoFlow(zuko.flows.NSF(2, transforms=2), "iaf")),
        _flow_case(
            "zuko_conditional_nsf",
            lambda: ZukoFlow(zuko.flows.NSF(2, context=3, transforms=2)),
            context=torch.randn(4, 3, generator=torch.Generator().manual_seed(0)),
        ),
        _flow_case("maf_1d", lambda: MAF(1, num_layers=2, hidden_dims=[8])),
        _flow_case(
            "conditional_maf",
            lambda: MAF(2, num_layers=2, hidden_dims=[16], context_dim=3),
            context=torch.randn(4, 3, generator=torch.Generator().manual_seed(0)),
        ),
        _flow_case(
            "conditional_iaf",
            lambda: IAF(2, num_layers=2, hidden_dims=[16], context_dim=3),
            context=torch.randn(3, generator=torch.Generator().manual_seed(0)),
        ),
    ]


@pytest.mark.parametrize("flow_class", [MAF, IAF, SplineFlow, RealNVP, NICE, Glow])
def test_flow_elbo_with_empty_guide_is_exact_negative_log_likelihood(flow_class: type) -> None:
    """A flow is a VAE with a deterministic encoder and decoder: Trace_ELBO = -log p(x)."""
    pair = FlowModel(_perturbed(flow_class(3, 2).double()))
    x = torch.randn(20, 3, dtype=torch.float64)
    loss = Trace_ELBO().loss(pair.model, pair.guide, x)
    exact = -pair.flow().log_prob(x).sum()
    assert loss == pytest.approx(exact.item(), rel=1e-12, abs=1e-12)


def test_maf_scores_in_one_pass_and_samples_through_the_inverse() -> None:
    flow = MAF(3, num_layers=2).double()
    layers = list(flow.layers)  # AffineAutoregressive modules, in generative order reversed
    x = torch.randn(5, 3, dtype=torch.float64)
    z, ladj = x, torch.zeros(5, dtype=torch.float64)
    for layer in reversed(layers):  # scoring applies each layer's forward network pass
        y = layer._call(z)
        ladj = ladj + layer.log_abs_det_jacobian(z, y)
        z = y
    expected = dist.Normal(0.0, 1.0).log_prob(z).sum(-1) + ladj
    assert torch.allclose(flow().log_prob(x), expected)


def test_float64_flows_score_fresh_data_without_global_dtype_change() -> None:
    for flow in (MAF(3).double(), IAF(3).double()):
        x = torch.randn(4, 3, dtype=torch.float64)
        lp = flow().log_prob(x)
        assert lp.dtype == torch.float64 and torch.isfinite(lp).all()
        assert flow().sample((2,)).dtype == torch.float64
    assert torch.get_default_dtype() == torch.float32


def test_flow_registers_its_parameters_and_buffers() -> None:
    flow = MAF(2, num_layers=2)
    pair = FlowModel(flow)
    pair.model(torch.randn(3, 2))
    store = dict(pyro.get_param_store().named_parameters())
    assert len(store) == len(list(flow.parameters())) > 0
    flow.double()
    assert flow.base_loc.dtype == torch.float64


def test_flow_call_errors() -> None:
    with pytest.raises(ValueError, match="conditional"):
        MAF(2, context_dim=3)()
    with pytest.raises(ValueError, match="takes no context"):
        MAF(2)(torch.zeros(3))
    with pytest.raises(ValueError, match="event_shape"):
        Flow([], event_shape=())
    with pytest.raises(ValueError, match=r"x must have shape \(N, 2\)"):
        FlowModel(MAF(2)).model(torch.zeros(5, 3))


@pytest.mark.parametrize("context_dim", [None, 3])
def test_zuko_flow_scores_as_zuko_does(context_dim: int | None) -> None:
    flow = ZukoFlow(zuko.flows.NSF(2, context=context_dim or 0, transforms=2))
    x = torch.randn(6, 2)
    c = None if context_dim is None else torch.randn(6, 3)
    assert torch.allclose(flow(c).log_prob(x), flow.zuko_flow(c).log_prob(x), atol=1e-5)
    assert {id(p) for p in flow.parameters()} == {id(p) for p in flow.zuko_flow.parameters()}


def test_zuko_flow_rejects_what_it_cannot_bridge() -> None:
    with pytest.raises(ValueError, match="zuko.flows.Flow"):
        ZukoFlow(torch.nn.Linear(2, 2))
    shifted = zuko.flows.MAF(2)
    shifted.base = zuko.flows.UnconditionalDistribution(
        zuko.distributions.DiagNormal, torch.ones(2), torch.ones(2), buffer=True
    )
    with pytest.raises(ValueError, match="standard normal"):
        ZukoFlow(shifted)


@pytest.mark.parametrize(
    "make",
    [
        lambda: MAF(2, num_layers=2),
        lambda: SplineFlow(2, num_layers=2),
        lambda: RealNVP(2, num_layers=2),
        lambda: ZukoFlow(zuko.flows.NSF(2, transforms=2)),
    ],
    ids=["maf", "spline", "realnvp", "zuko_nsf"],
)
def test_scoring_the_same_data_tensor_every_step_trains(make) -> None:
    """torch's transform cache is keyed by tensor identity; full-batch training passes
    the same tensor at every step. A stale cache would raise (backward through a freed
    graph) or freeze the loss; each flow() call must start fresh."""
    pair = FlowModel(make())
    data = torch.randn(64, 2) * 0.5 + 1.0
    svi = pyro.infer.SVI(pair.model, pair.guide, pyro.optim.Adam({"lr": 0.02}), Trace_ELBO())
    first = svi.evaluate_loss(data)
    losses = [svi.step(data) for _ in range(30)]
    assert len(set(losses)) == len(losses), "the loss froze"
    assert svi.evaluate_loss(data) < first
    # and a distribution still scores its own sample through the cache
    d = pair.flow()
    x = d.sample((3,))
    assert torch.allclose(d.log_prob(x), pair.flow().log_prob(x.clone()), atol=1e-4)


# ---------------------------------------------------------------------------
# the package layout: every flow in pyro_dgm.flows, the old paths still working
# ---------------------------------------------------------------------------


def test_the_flows_package_exports_every_flow_and_the_old_paths_still_work() -> None:
    from pyro_dgm import flows, image_flows

    for name in flows.__all__:
        assert getattr(flows, name).__module__.startswith("pyro_dgm.flows."), name
    # the multi-scale flows no longer share their names with the vector flows
    assert flows.MultiScaleGlow is not flows.Glow
    assert image_flows.Glow is flows.MultiScaleGlow
    assert image_flows.RealNVP is flows.MultiScaleRealNVP
    assert image_flows.MultiScaleFlow is flows.MultiScaleFlow
    for name in ("MultiScaleTransform", "MultiScaleLevel", "SplitPrior"):
        assert getattr(image_flows, name) is getattr(pyro_dgm.transforms, name)
    assert set(image_flows.__all__) <= set(dir(image_flows))


def test_moved_transforms_keep_their_old_import_paths() -> None:
    from pyro_dgm import transforms
    from pyro_dgm.models import vae
    from pyro_dgm.models.vae import posteriors
    from pyro_dgm.transforms import coupling

    for name in ("ConditionalSylvester", "ConditionedSylvester", "conditional_sylvester"):
        assert getattr(posteriors, name) is getattr(transforms, name)
        assert getattr(vae, name) is getattr(transforms, name)
    assert transforms.channel_mask is transforms.channel_half_mask
    assert coupling.channel_mask is coupling.channel_half_mask


# ---------------------------------------------------------------------------
# a held distribution follows the parameters (issue 15)
# ---------------------------------------------------------------------------


def _noise_flow() -> Flow:
    from pyro_dgm.models.dequantization import dequantization_noise_flow

    return dequantization_noise_flow(3, context_dim=2, num_layers=2, hidden_dims=[8])


def _posterior(kind: str) -> torch.nn.Module:
    from pyro_dgm.models.vae.posteriors import make_posterior

    return make_posterior(kind, context_dim=4, latent_dim=3, num_steps=2, hidden_dims=[8])


def _prior() -> Flow:
    from pyro_dgm.models.vae.priors import flow_prior

    return flow_prior(3, "realnvp", num_layers=2, hidden_dims=[8])


# (make, context_dim, event_shape): every kind of flow distribution pyro_dgm builds
HELD = {
    "maf": (lambda: MAF(3, 2, [8]), None, (3,)),
    "iaf": (lambda: IAF(3, 2, [8]), None, (3,)),
    "spline": (lambda: SplineFlow(3, 2, [8], count_bins=4), None, (3,)),
    "realnvp": (lambda: RealNVP(3, 2, [8]), None, (3,)),
    "nice": (lambda: NICE(3, 2, [8]), None, (3,)),
    "glow": (lambda: Glow(3, 2, [8]), None, (3,)),
    "maf_conditional": (lambda: MAF(3, 2, [8], context_dim=2), 2, (3,)),
    "zuko_nsf": (
        lambda: ZukoFlow(zuko.flows.NSF(3, transforms=2, hidden_features=[8])),
        None,
        (3,),
    ),
    "multiscale_glow": (
        lambda: MultiScaleGlow((1, 4, 4), 2, 1, hidden_channels=8),
        None,
        (1, 4, 4),
    ),
    "multiscale_realnvp": (
        lambda: MultiScaleRealNVP((1, 4, 4), 2, 1, hidden_channels=8, num_blocks=1),
        None,
        (1, 4, 4),
    ),
    "vae_iaf_posterior": (lambda: _posterior("iaf"), 4, (3,)),
    "vae_householder_posterior": (lambda: _posterior("householder"), 4, (3,)),
    "vae_flow_prior": (_prior, None, (3,)),
    "dequantization_noise_flow": (_noise_flow, 2, (3,)),
}


def _twins(name: str) -> tuple[torch.nn.Module, torch.nn.Module, torch.Tensor | None, tuple]:
    """Two identical, perturbed copies of the entry, and a context for it."""
    make, context_dim, shape = HELD[name]
    torch.manual_seed(1)
    a = make()
    with torch.no_grad():
        for p in a.parameters():
            p.add_(0.1 * torch.randn_like(p))
    context = None if context_dim is None else torch.randn(6, context_dim)
    return a, copy.deepcopy(a), context, shape


def _call(module: torch.nn.Module, context: torch.Tensor | None) -> dist.TorchDistribution:
    return module() if context is None else module(context)


def _grads(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.grad.clone() for p in module.parameters() if p.grad is not None]


@pytest.mark.parametrize("name", list(HELD))
def test_a_held_distribution_trains_as_a_fresh_one_each_step(name: str) -> None:
    """torch's transform cache is keyed by tensor identity: a distribution held across
    optimizer steps scored the same data tensor with the first step's values (then
    "backward through the graph a second time"). It must recompute, as zuko's do."""
    held_module, fresh_module, context, shape = _twins(name)
    x = torch.randn(6, *shape)
    held = _call(held_module, context)
    optimizers = [torch.optim.Adam(m.parameters(), lr=0.05) for m in (held_module, fresh_module)]
    for _ in range(3):
        losses = [-held.log_prob(x).mean(), -_call(fresh_module, context).log_prob(x).mean()]
        for optimizer, loss in zip(optimizers, losses, strict=True):
            optimizer.zero_grad()
            loss.backward()
        torch.testing.assert_close(losses[0], losses[1])
        for g_held, g_fresh in zip(_grads(held_module), _grads(fresh_module), strict=True):
            torch.testing.assert_close(g_held, g_fresh)
        for optimizer in optimizers:
            optimizer.step()


@pytest.mark.parametrize("name", list(HELD))
def test_no_grad_then_grad(name: str) -> None:
    """A score under no_grad must not leave a graph-less result for the next score."""
    module, fresh, context, shape = _twins(name)
    x = torch.randn(6, *shape)
    d = _call(module, context)
    with torch.no_grad():
        first = d.log_prob(x)
    second = d.log_prob(x)
    second.sum().backward()
    _call(fresh, context).log_prob(x).sum().backward()
    torch.testing.assert_close(first, second.detach())
    assert _grads(module) and len(_grads(module)) == len(_grads(fresh))
    for g, g_fresh in zip(_grads(module), _grads(fresh), strict=True):
        torch.testing.assert_close(g, g_fresh)


@pytest.mark.parametrize("name", list(HELD))
def test_grad_then_no_grad(name: str) -> None:
    """After a step, a score under no_grad is the new parameters' and carries no graph."""
    module, _, context, shape = _twins(name)
    x = torch.randn(6, *shape)
    d = _call(module, context)
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
    before = d.log_prob(x)
    before.sum().backward()
    optimizer.step()
    with torch.no_grad():
        after = d.log_prob(x)
        expected = _call(module, context).log_prob(x)
    assert not after.requires_grad
    torch.testing.assert_close(after, expected)
    assert not torch.allclose(after, before.detach())


class _CountInverses:
    """Counts the inverse passes of Pyro's affine autoregressive layers."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from pyro_dgm.transforms.autoregressive import AffineAutoregressive

        self.calls = 0
        original = AffineAutoregressive._inverse

        def counted(layer: AffineAutoregressive, y: torch.Tensor) -> torch.Tensor:
            self.calls += 1
            return original(layer, y)

        for cls in AffineAutoregressive.__mro__[:1] + tuple(AffineAutoregressive.__subclasses__()):
            monkeypatch.setattr(cls, "_inverse", counted)
            monkeypatch.setattr(cls, "_inverse_stable", counted, raising=False)


@pytest.mark.parametrize("kind", ["iaf", "iaf_conditional", "vae_iaf_posterior"])
def test_iaf_scores_its_own_samples_without_an_inverse(kind: str, monkeypatch) -> None:
    """Scoring a fresh sample stays one pass (the cache); after a parameter change the
    same tensor is scored afresh through the inverse; a sample drawn without a graph is
    scored through the inverse where a gradient is needed."""
    if kind == "vae_iaf_posterior":
        module, context = _posterior("iaf"), torch.randn(5, 4)
    else:
        context = torch.randn(5, 2) if kind == "iaf_conditional" else None
        module = IAF(3, 2, [8], context_dim=2 if context is not None else None)
    counter = _CountInverses(monkeypatch)
    d = _call(module, context)
    x = d.rsample() if context is not None else d.rsample((5,))
    cached = d.log_prob(x)
    assert counter.calls == 0
    torch.testing.assert_close(
        cached, _call(module, context).log_prob(x.detach().clone()), atol=1e-4, rtol=1e-4
    )
    assert counter.calls > 0  # the clone is another value: through the inverses
    counter.calls = 0
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.05)
    again = d.log_prob(x)
    assert counter.calls > 0
    torch.testing.assert_close(
        again, _call(module, context).log_prob(x.detach().clone()), atol=1e-4, rtol=1e-4
    )
    counter.calls = 0
    y = d.sample()
    with torch.no_grad():
        d.log_prob(y)
    assert counter.calls == 0  # no gradient wanted: the cache of sample() will do
    d.log_prob(y).sum().backward()  # a gradient wanted: the inverse, with a graph
    assert counter.calls > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())


@pytest.mark.parametrize("kind", ["planar", "sylvester"])
def test_posteriors_without_an_inverse_score_their_own_samples(kind: str) -> None:
    post = _posterior(kind)
    h = torch.randn(5, 4)
    q = post(h)
    z = q.rsample()
    lp = q.log_prob(z)
    assert lp.shape == (5,) and torch.isfinite(lp).all()
    lp.sum().backward()
    assert all(p.grad is not None for p in post.parameters())
    with torch.no_grad():
        assert not q.log_prob(z).requires_grad
    y = q.sample()  # no graph and no inverse: scored through the cache of its pass
    torch.testing.assert_close(q.log_prob(y), q.log_prob(y))
    with pytest.raises((NotImplementedError, KeyError)):
        q.log_prob(z.detach().clone())  # another value: there is no inverse


# ---------------------------------------------------------------------------
# readable errors for a value of the wrong shape or dtype
# ---------------------------------------------------------------------------

WRONG = {
    "maf": (lambda: MAF(3, 2, [8]), (3,)),
    "iaf": (lambda: IAF(3, 2, [8]), (3,)),
    "spline": (lambda: SplineFlow(3, 2, [8], count_bins=4), (3,)),
    "realnvp": (lambda: RealNVP(3, 2, [8]), (3,)),
    "nice": (lambda: NICE(3, 2, [8]), (3,)),
    "glow": (lambda: Glow(3, 2, [8]), (3,)),
    "zuko_maf": (lambda: ZukoFlow(zuko.flows.MAF(3, transforms=1)), (3,)),
    "multiscale_glow": (lambda: MultiScaleGlow((1, 4, 4), 1, 1, hidden_channels=4), (1, 4, 4)),
}


@pytest.mark.parametrize("name", list(WRONG))
def test_a_value_of_another_dtype_names_both_dtypes_and_the_fix(name: str) -> None:
    make, shape = WRONG[name]
    flow = make()
    for dtype in (torch.float64, torch.int64):
        with pytest.raises(ValueError, match=rf"torch.float32.*{dtype}.*x\.float\(\)") as error:
            flow().log_prob(torch.zeros(4, *shape, dtype=dtype))
        if dtype == torch.float64:
            assert "flow.double()" in str(error.value)
    flow.double()
    with pytest.raises(ValueError, match=r"x\.double\(\), or the flow with flow\.float\(\)"):
        flow().log_prob(torch.zeros(4, *shape))


@pytest.mark.parametrize("name", list(WRONG))
def test_a_value_of_another_event_shape_is_named_without_validation(name: str) -> None:
    make, shape = WRONG[name]
    wrong = (4, *shape[:-1], shape[-1] + 1)
    expected = re.escape(f"expected shape batch + {shape} (the flow's event shape), got {wrong}")
    with pyro.validation_enabled(False), pytest.raises(ValueError, match=expected):
        make()().log_prob(torch.zeros(wrong))
