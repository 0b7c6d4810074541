"""Ready-made flow distributions and the flow model/guide pair."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch
import zuko
from harness import DistributionCase, DistributionHarness
from pyro.infer import Trace_ELBO

from pyro_dgm.flows import IAF, MAF, NICE, Flow, Glow, RealNVP, SplineFlow, ZukoFlow
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
