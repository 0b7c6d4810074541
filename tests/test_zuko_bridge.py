"""The zuko bridge: zuko's MAF, NSF and NAF layers as Pyro (conditional) transform modules."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable
from functools import partial
from typing import ClassVar

import pyro
import pyro.distributions as dist
import pytest
import torch
import zuko
from harness import (
    DistributionCase,
    DistributionHarness,
    TransformCase,
    TransformHarness,
    check_gradients,
    check_inverse,
    check_log_det,
)
from pyro.distributions import ConditionalTransformedDistribution, TransformedDistribution
from pyro.infer import SVI, Trace_ELBO
from pyro.infer.autoguide import AutoNormalizingFlow
from pyro.optim import Adam
from torch import Tensor, nn
from zuko.flows.autoregressive import MaskedAutoregressiveTransform
from zuko.flows.neural import MNN

from pyro_dgm.transforms import affine_autoregressive
from pyro_dgm.transforms.zuko import (
    ConditionalZukoTransform,
    ConditionedZukoTransform,
    ZukoTransform,
    zuko_transform,
)

HIDDEN = [16, 16]

# ---------------------------------------------------------------------------
# zuko layers: MAF (affine), NSF (rational-quadratic spline), NAF (monotonic network)
# ---------------------------------------------------------------------------


def maf_layer(features: int = 4, context: int = 0) -> MaskedAutoregressiveTransform:
    return MaskedAutoregressiveTransform(features, context, hidden_features=HIDDEN)


def nsf_layer(features: int = 4, context: int = 0) -> MaskedAutoregressiveTransform:
    flow = zuko.flows.NSF(features, context, transforms=1, bins=6, hidden_features=HIDDEN)
    return flow.transform.transforms[0]


# NAF layers are small (3 features, a monotonic network of 8 units): their slow direction
# is a bisection (25 to 45 network calls per feature), the costliest part of this file.
NAF_FEATURES = 3
NAF_NETWORK = {"signal": 4, "hidden_features": [8, 8]}


def _steepen(layer: MaskedAutoregressiveTransform) -> MaskedAutoregressiveTransform:
    """Scale the last weights of a NAF layer's monotonic network by 4.

    zuko's bisection looks for the preimage in [-10, 10] only (and returns the bound,
    silently, outside it). At zuko's initialisation this small network maps [-10, 10]
    onto about [-2.5, 2.5], so standard-normal inputs of the harness often lie outside
    the image; a trained NAF is steeper. Scaled by 4, the image covers about [-5, 5].
    """
    with torch.no_grad():
        layer.univariate.network[-1].weight.mul_(4.0)
    return layer


def naf_layer(features: int = NAF_FEATURES, context: int = 0) -> MaskedAutoregressiveTransform:
    """zuko's own NAF layer (bisection inverse to zuko's default 1e-6)."""
    flow = zuko.flows.NAF(
        features,
        context,
        transforms=1,
        signal=NAF_NETWORK["signal"],
        hidden_features=HIDDEN,
        network={"hidden_features": NAF_NETWORK["hidden_features"]},
    )
    return _steepen(flow.transform.transforms[0])


class _TightMNN(MNN):
    """zuko's MNN whose bisection runs to zuko's ``eps=1e-12`` instead of its 1e-6 default.

    zuko exposes the tolerance on ``MonotonicTransform`` but not through ``NAF``; the
    stock layer round-trips to about 1e-6 (test_stock_naf_precision), short of the
    harness's 1e-9 in float64.
    """

    def forward(self, signal: Tensor) -> torch.distributions.Transform:
        t = super().forward(signal)
        t.eps = 1e-12
        return t


def tight_naf_layer(
    features: int = NAF_FEATURES, context: int = 0
) -> MaskedAutoregressiveTransform:
    """The layer ``zuko.flows.NAF`` builds (same arguments), with a tight bisection."""
    signal = NAF_NETWORK["signal"]
    layer = MaskedAutoregressiveTransform(
        features=features,
        context=context,
        univariate=_TightMNN(
            signal=signal, stack=features, hidden_features=NAF_NETWORK["hidden_features"]
        ),
        shapes=[(signal,)],
        hidden_features=HIDDEN,
    )
    return _steepen(layer)


LAYERS: dict[str, tuple[Callable[..., MaskedAutoregressiveTransform], int]] = {
    "maf": (maf_layer, 4),
    "nsf": (nsf_layer, 4),
    "naf": (tight_naf_layer, NAF_FEATURES),
}


def _plain(layer: Callable[..., nn.Module], direction: str) -> ZukoTransform:
    return ZukoTransform(layer(), direction)


def _conditional(layer: Callable[..., nn.Module], direction: str) -> ConditionalZukoTransform:
    return ConditionalZukoTransform(layer(context=2), direction)


def _whole_nsf_flow() -> ZukoTransform:
    return ZukoTransform(zuko.flows.NSF(4, transforms=2, hidden_features=HIDDEN).transform)


def _cases() -> list[TransformCase]:
    cases = []
    for name, (layer, features) in LAYERS.items():
        for d in ("maf", "iaf"):
            cases.append(TransformCase(f"zuko_{name}_{d}", partial(_plain, layer, d), (features,)))
            cases.append(
                TransformCase(
                    f"conditional_zuko_{name}_{d}",
                    partial(_conditional, layer, d),
                    (features,),
                    context_dim=2,
                )
            )
    cases.append(TransformCase("zuko_nsf_whole_flow", _whole_nsf_flow, (4,)))
    return cases


class TestZukoBridge(TransformHarness):
    CASES: ClassVar[list[TransformCase]] = _cases()


def _perturb(module: nn.Module, scale: float = 0.1, seed: int = 1) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))


def _flow2d(layer: Callable[..., nn.Module], direction: str) -> Callable[..., dist.Distribution]:
    def factory(validate_args: bool | None = None) -> dist.Distribution:
        torch.manual_seed(3)
        t = ZukoTransform(layer(features=2), direction).double()
        _perturb(t, 0.3)
        base = dist.Normal(torch.zeros(2, dtype=torch.float64), 1.0).to_event(1)
        return TransformedDistribution(base, [t], validate_args=validate_args)

    return factory


class TestZukoBridgeDistributions(DistributionHarness):
    """Total mass 1 by quadrature (a wrong sign of the flipped log-det fails it)."""

    CASES: ClassVar[list[DistributionCase]] = [
        DistributionCase("zuko_maf_maf_2d", _flow2d(maf_layer, "maf"), mass_tolerance=2e-3),
        DistributionCase("zuko_nsf_maf_2d", _flow2d(nsf_layer, "maf"), mass_tolerance=2e-3),
    ]


# ---------------------------------------------------------------------------
# the direction flip, against zuko's own NormalizingFlow
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("flow_cls", [zuko.flows.MAF, zuko.flows.NSF])
def test_log_prob_and_samples_equal_zukos_normalizing_flow(flow_cls: type) -> None:
    flow = flow_cls(4, transforms=2, hidden_features=HIDDEN)
    _perturb(flow)
    t = ZukoTransform(flow.transform)
    d = TransformedDistribution(dist.Normal(torch.zeros(4), 1.0).to_event(1), [t])
    x = 1.5 * torch.randn(10, 4)
    assert torch.allclose(d.log_prob(x), flow().log_prob(x), atol=1e-5)
    # the same base noise goes through zuko's sampling direction
    torch.manual_seed(7)
    zuko_samples = flow().rsample((6,))
    torch.manual_seed(7)
    ours = d.rsample((6,))
    assert torch.allclose(ours, zuko_samples, atol=1e-5)
    # orientation "iaf" is the inverse flow: it scores what "maf" samples by zuko's f^{-1}
    iaf = TransformedDistribution(d.base_dist, [ZukoTransform(flow.transform.inv, "iaf")])
    assert torch.allclose(iaf.log_prob(x), d.log_prob(x), atol=1e-5)


def test_conditional_log_prob_equals_zukos_normalizing_flow() -> None:
    flow = zuko.flows.MAF(4, context=2, transforms=2, hidden_features=HIDDEN)
    _perturb(flow)
    ct = ConditionalZukoTransform(flow.transform)
    base = dist.Normal(torch.zeros(4), 1.0).to_event(1)
    c = torch.randn(10, 2)
    x = torch.randn(10, 4)
    d = ConditionalTransformedDistribution(base, [ct]).condition(c)
    assert torch.allclose(d.log_prob(x), flow(c).log_prob(x), atol=1e-5)
    # a batch of contexts (3, 10, 2) broadcast against values (10, 4)
    cs = torch.randn(3, 10, 2)
    lp = ConditionalTransformedDistribution(base, [ct]).condition(cs).log_prob(x)
    assert lp.shape == (3, 10)
    assert torch.allclose(lp[1], flow(cs[1]).log_prob(x), atol=1e-5)


def test_sampling_agrees_with_scoring() -> None:
    """Sample mean of the flow against its mean by quadrature of exp(log_prob)."""
    torch.manual_seed(5)
    t = ZukoTransform(maf_layer(features=2)).double()
    _perturb(t, 0.3)
    base = dist.Normal(torch.zeros(2, dtype=torch.float64), 1.0).to_event(1)
    d = TransformedDistribution(base, [t])
    with torch.no_grad():
        x = d.sample((20000,))
        axis = torch.linspace(-12, 12, 481, dtype=torch.float64)
        grid = torch.cartesian_prod(axis, axis)
        w = d.log_prob(grid).exp() * (axis[1] - axis[0]) ** 2
    assert abs(w.sum().item() - 1) < 1e-3
    mean = (w[:, None] * grid).sum(0)
    se = x.std(0) / 20000**0.5
    assert ((x.mean(0) - mean).abs() < 5 * se).all(), (x.mean(0), mean, se)


# ---------------------------------------------------------------------------
# stock NAF: bisection precision
# ---------------------------------------------------------------------------


def test_stock_naf_precision() -> None:
    """zuko's NAF inverts by bisection to 1e-6 on [-10, 10]: the round trip reaches about 1e-6
    in float32 and float64 alike, so float64 cannot meet the harness's 1e-9."""
    case = TransformCase(
        "zuko_naf_stock", partial(_plain, naf_layer, "maf"), (NAF_FEATURES,), tolerance=1e-5
    )
    check_inverse(case, torch.float32)
    for direction in ("maf", "iaf"):
        t = ZukoTransform(naf_layer(), direction).double()
        _perturb(t)
        z = torch.randn(50, NAF_FEATURES, dtype=torch.float64)
        with torch.no_grad():
            err = (t._inverse(t._call(z)) - z).abs().max().item()
        assert err < 1e-5
    check_log_det(case)
    check_gradients(case)


# ---------------------------------------------------------------------------
# Pyro integration
# ---------------------------------------------------------------------------


def test_stacks_with_pyro_and_pyro_dgm_layers() -> None:
    zt = ZukoTransform(maf_layer())
    _perturb(zt)
    layers = [zt, affine_autoregressive(4), dist.transforms.Permute(torch.tensor([3, 2, 1, 0]))]
    layers.append(ZukoTransform(nsf_layer(), "iaf"))
    d = TransformedDistribution(dist.Normal(torch.zeros(4), 1.0).to_event(1), layers)
    x = d.sample((7,))
    assert x.shape == (7, 4) and not x.requires_grad
    xr = d.rsample((7,))
    assert xr.requires_grad
    lp = d.log_prob(xr)
    assert lp.shape == (7,) and torch.isfinite(lp).all()
    assert torch.allclose(lp, d.log_prob(xr.clone()), atol=1e-4)
    lp.sum().backward()
    assert all(p.grad is not None for p in zt.parameters())


def test_distribution_protocol_around_the_bridge() -> None:
    """support, expand, to_event, mask and pyro.plate on a TransformedDistribution of it."""
    t = ZukoTransform(maf_layer())
    d = TransformedDistribution(dist.Normal(torch.zeros(4), 1.0).to_event(1), [t])
    assert d.support.event_dim == 1
    e = d.expand((3,)).to_event(1)
    x = e.sample()
    assert x.shape == (3, 4) and e.log_prob(x).shape == ()
    assert torch.allclose(e.log_prob(x), d.log_prob(x).sum())
    m = d.expand((3,)).mask(torch.tensor([True, False, True]))
    lp = m.log_prob(m.sample())
    assert lp.shape == (3,) and lp[1] == 0
    outer = TransformedDistribution(d, [dist.transforms.AffineTransform(1.0, 2.0, event_dim=1)])
    assert outer.sample((5,)).shape == (5, 4)

    def model() -> None:
        with pyro.plate("n", 6):
            pyro.sample("x", d)

    trace = pyro.poutine.trace(model).get_trace()
    assert trace.nodes["x"]["value"].shape == (6, 4)
    assert trace.log_prob_sum().isfinite()


def test_pyro_module_registers_every_zuko_parameter() -> None:
    for module in [ZukoTransform(nsf_layer()), ConditionalZukoTransform(maf_layer(context=2))]:
        pyro.clear_param_store()
        pyro.module("f", module)
        names = {f"f$$${n}" for n, _ in module.named_parameters()}
        assert len(names) == len(list(module.lazy.parameters())) > 0
        assert set(pyro.get_param_store().keys()) == names


def test_svi_trains_the_bridge() -> None:
    t = ZukoTransform(maf_layer(2))
    data = torch.randn(128, 2) * torch.tensor([0.5, 2.0]) + torch.tensor([3.0, -1.0])

    def model(x: Tensor) -> None:
        pyro.module("flow", t)
        base = dist.Normal(torch.zeros(2), 1.0).to_event(1)
        with pyro.plate("data", len(x)):
            pyro.sample("x", TransformedDistribution(base, [t]), obs=x)

    def guide(x: Tensor) -> None:
        pass

    svi = SVI(model, guide, Adam({"lr": 3e-2}), Trace_ELBO())
    # evaluate_loss scores `data` under no_grad first: a cache keyed by tensor identity
    # alone would hand that graph-less value to every step, and nothing would train
    before = svi.evaluate_loss(data)
    weights = [p.detach().clone() for p in t.parameters()]
    for _ in range(15):
        svi.step(data)
    after = svi.evaluate_loss(data)
    assert after < before - 0.05 * abs(before), (before, after)
    assert all(not torch.equal(w, p) for w, p in zip(weights, t.parameters(), strict=True))


def test_auto_normalizing_flow_accepts_the_bridge() -> None:
    def model() -> None:
        pyro.sample("z", dist.Normal(torch.tensor([1.0, -1.0, 0.0]), 0.5).to_event(1))

    def init_transform(dim: int) -> ZukoTransform:
        return ZukoTransform(MaskedAutoregressiveTransform(dim, hidden_features=[8]), "iaf")

    guide = AutoNormalizingFlow(model, init_transform)
    svi = SVI(model, guide, Adam({"lr": 1e-2}), Trace_ELBO())
    svi.step()
    names = {f"AutoNormalizingFlow.transform$$${n}" for n, _ in guide.transform.named_parameters()}
    assert len(names) == 4 and names <= set(pyro.get_param_store())
    before = [pyro.param(n).detach().clone() for n in names]
    for _ in range(3):
        assert torch.isfinite(torch.tensor(svi.step()))
    assert all(not torch.equal(b, pyro.param(n)) for b, n in zip(before, names, strict=True))
    assert guide()["z"].shape == (3,)


# ---------------------------------------------------------------------------
# caching
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("direction", ["maf", "iaf"])
def test_cache_holds_one_entry(direction: str) -> None:
    t = ZukoTransform(maf_layer(), direction)
    d = TransformedDistribution(dist.Normal(torch.zeros(4), 1.0).to_event(1), [t])
    first = d.rsample((8,))
    d.log_prob(first)
    ref = weakref.ref(first)
    for _ in range(20):
        x = d.rsample((8,))
        d.log_prob(x)
        xc = x.clone()
        d.log_prob(xc)
    del first
    gc.collect()
    assert ref() is None, "the transform keeps an old sample alive: its cache grows"
    assert t._cached_x_y[1] is xc
    # the remembered log-det belongs to the last sample ("iaf": computed while sampling)
    # or to the last scored value ("maf": computed while scoring)
    assert t._ladj_memo[1] is (x if direction == "iaf" else xc)


@pytest.mark.parametrize("direction", ["maf", "iaf"])
def test_remembered_log_det_is_reused_only_for_the_same_pair(direction: str) -> None:
    t = ZukoTransform(nsf_layer(), direction)
    _perturb(t)
    z = torch.randn(5, 4)
    x = t(z)
    ladj = t.log_abs_det_jacobian(z, x)
    fresh = t.log_abs_det_jacobian(z.clone(), x.clone())  # recomputed from zuko
    assert torch.allclose(ladj, fresh, atol=1e-5)
    other = torch.randn(5, 4)
    assert not torch.allclose(t.log_abs_det_jacobian(other, t(other)), ladj)
    nocache = ZukoTransform(nsf_layer(), direction, cache_size=0)
    nocache(z)
    assert nocache._ladj_memo is None


@pytest.mark.parametrize("direction", ["maf", "iaf"])
def test_cache_is_not_reused_across_parameter_updates_or_into_autograd(direction: str) -> None:
    t = ZukoTransform(maf_layer(), direction)
    _perturb(t)
    d = TransformedDistribution(dist.Normal(torch.zeros(4), 1.0).to_event(1), [t])
    x = torch.randn(6, 4)
    with torch.no_grad():
        lp_no_grad = d.log_prob(x)
    lp = d.log_prob(x)  # same tensor: the graph-less entry must not be handed out
    assert lp.requires_grad and torch.allclose(lp, lp_no_grad, atol=1e-6)
    assert t.inv(x) is t.inv(x)  # parameters unchanged: the entry is reused
    with torch.no_grad():
        for p in t.parameters():
            p.add_(0.1)
    expected = TransformedDistribution(d.base_dist, [ZukoTransform(t.lazy, direction)])
    assert torch.allclose(d.log_prob(x), expected.log_prob(x.clone()), atol=1e-5)
    assert not torch.allclose(d.log_prob(x), lp, atol=1e-3)


@pytest.mark.parametrize("layer", ["maf", "nsf"])
@pytest.mark.parametrize("direction", ["maf", "iaf"])
def test_clone_of_a_sample_scores_the_same(layer: str, direction: str) -> None:
    t = ZukoTransform(LAYERS[layer][0](), direction)
    _perturb(t)
    d = TransformedDistribution(dist.Normal(torch.zeros(4), 1.0).to_event(1), [t])
    x = d.sample((32,))
    assert torch.allclose(d.log_prob(x), d.log_prob(x.clone()), atol=1e-5)


# ---------------------------------------------------------------------------
# the helper and bad input
# ---------------------------------------------------------------------------


def test_zuko_transform_picks_the_right_wrapper() -> None:
    assert type(zuko_transform(maf_layer())) is ZukoTransform
    assert type(zuko_transform(maf_layer(context=2))) is ConditionalZukoTransform
    assert type(zuko_transform(zuko.flows.NAF(3, transforms=2).transform)) is ZukoTransform
    assert type(zuko_transform(zuko.flows.NSF(3, 5).transform)) is ConditionalZukoTransform
    realnvp_inverse = zuko.flows.RealNVP(4, 1).transform.inv
    assert type(zuko_transform(realnvp_inverse)) is ConditionalZukoTransform
    assert type(zuko_transform(zuko.flows.GF(3).transform)) is ZukoTransform
    assert type(zuko_transform(zuko.flows.CNF(3, 2).transform)) is ConditionalZukoTransform
    assert zuko_transform(maf_layer(), "iaf").direction == "iaf"


class _Opaque(zuko.lazy.LazyTransform):
    """A lazy type the bridge does not know: the helper probes it with ``input_dim``."""

    def __init__(self, context: int) -> None:
        super().__init__()
        self.inner = maf_layer(3, context)

    def forward(self, c: Tensor | None = None) -> torch.distributions.Transform:
        return self.inner(c)


def test_zuko_transform_probes_unknown_lazy_types() -> None:
    assert type(zuko_transform(_Opaque(0), input_dim=3)) is ZukoTransform
    assert type(zuko_transform(_Opaque(2), input_dim=3)) is ConditionalZukoTransform
    with pytest.raises(ValueError, match="input_dim"):
        zuko_transform(_Opaque(0))


def test_bad_input_raises_value_error() -> None:
    with pytest.raises(ValueError, match="LazyTransform"):
        ZukoTransform(nn.Linear(3, 3))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="direction"):
        ZukoTransform(maf_layer(), "forward")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ConditionalZukoTransform"):
        ZukoTransform(maf_layer(context=2))
    with pytest.raises(ValueError, match="ZukoTransform"):
        ConditionalZukoTransform(maf_layer())
    with pytest.raises(ValueError, match="cache_size"):
        ZukoTransform(maf_layer(), cache_size=2)
    t = ZukoTransform(maf_layer())
    with pytest.raises(ValueError, match="4 features"):
        t(torch.randn(5, 3))
    with pytest.raises(ValueError, match="4 features"):
        t.inv(torch.randn(5, 3))
    ct = ConditionalZukoTransform(maf_layer(context=2))
    with pytest.raises(ValueError, match="context"):
        ct.condition(torch.randn(5, 3))
    with pytest.raises(ValueError, match="context"):
        ct.condition(torch.tensor(1.0))
    assert isinstance(ct.condition(torch.randn(2)), ConditionedZukoTransform)


def test_state_dict_and_double_reach_the_zuko_parameters() -> None:
    t = ZukoTransform(naf_layer())
    keys = set(t.state_dict())
    assert {f"lazy.{k}" for k in t.lazy.state_dict()} == keys
    t.double()
    assert all(p.dtype == torch.float64 for p in t.lazy.parameters())
    assert "direction='maf'" in repr(t)


# ---------------------------------------------------------------------------
# an already-inverted zuko flow (Pyro's flow-guide tutorial) given direction="iaf"
# ---------------------------------------------------------------------------


def _network_passes(flow: zuko.flows.Flow, draw: Callable[[], Tensor]) -> int:
    """How many times ``draw`` runs the hyper-networks of ``flow``'s layers."""
    calls = []
    hooks = [
        layer.hyper.register_forward_hook(lambda *_: calls.append(1))
        for layer in flow.transform.modules()
        if isinstance(layer, MaskedAutoregressiveTransform)
    ]
    try:
        draw()
    finally:
        for hook in hooks:
            hook.remove()
    return len(calls)


def test_zuko_flow_refuses_an_inverted_transform_with_direction_iaf() -> None:
    from pyro_dgm.flows import ZukoFlow

    flow = zuko.flows.MAF(4, transforms=2, hidden_features=HIDDEN)
    flow.transform = flow.transform.inv  # the tutorial's trick for cheap sampling
    with pytest.raises(ValueError, match=r"flow: .*already inverted.*direction='maf'"):
        ZukoFlow(flow, direction="iaf")
    # what the message offers: the .inv with "maf", or no .inv with "iaf" -- the same map,
    # sampled in one pass per layer
    kept = ZukoFlow(flow)
    plain = zuko.flows.MAF(4, transforms=2, hidden_features=HIDDEN)
    plain.load_state_dict(
        {k.replace("transform.transform.", "transform."): v for k, v in flow.state_dict().items()}
    )
    dropped = ZukoFlow(plain, direction="iaf")
    torch.manual_seed(3)
    a = kept().sample((5,))
    torch.manual_seed(3)
    b = dropped().sample((5,))
    assert torch.allclose(a, b, atol=1e-6)
    assert _network_passes(flow, lambda: kept().sample((5,))) == 2  # one per layer
    assert _network_passes(plain, lambda: dropped().sample((5,))) == 2
    # the double flip itself, built at the transform level, takes D = 4 or more per layer
    with pytest.warns(UserWarning, match="already inverted"):
        twice = ZukoTransform(flow.transform, "iaf")
    d = TransformedDistribution(dist.Normal(torch.zeros(4), 1.0).to_event(1), [twice])
    assert _network_passes(flow, lambda: d.sample((5,))) >= 2 * 4


def test_bridge_warns_about_an_inverted_transform_only_with_direction_iaf() -> None:
    import warnings

    lazy = zuko.flows.MAF(3, transforms=2, hidden_features=HIDDEN).transform
    conditional = zuko.flows.MAF(3, context=2, transforms=2, hidden_features=HIDDEN).transform
    for build in (ZukoTransform, ConditionalZukoTransform, zuko_transform):
        inverted = (conditional if build is ConditionalZukoTransform else lazy).inv
        with pytest.warns(UserWarning, match="lazy_transform: .*already inverted") as caught:
            t = build(inverted, "iaf")
        assert len(caught) == 1, build  # once, not once per wrapper or per condition()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            if isinstance(t, ConditionalZukoTransform):
                t.condition(torch.randn(2))  # conditioning does not warn again
            build(inverted, "maf")  # the tutorial's .inv in the default direction: fine
            build(inverted.inv, "iaf")  # zuko's orientation flipped once: fine
