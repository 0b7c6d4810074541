"""LogitTransform: the shared harness (with codomain-aware inputs where it needs them),
closed forms, the density of the pushed-forward normal, tails and bad arguments; and
NormalToLogisticTransform, the first layer of the dequantization noise flow."""

from __future__ import annotations

import math

import pyro.distributions as dist
import pytest
import torch
from harness import TransformCase, TransformHarness, build
from torch import nn
from torch.distributions import IndependentTransform, SigmoidTransform

from pyro_dgm.transforms.logit import LogitTransform, NormalToLogisticTransform


class _LogitModule(LogitTransform, nn.Module):
    """The harness builds modules (``.to``, ``state_dict``, ``.double``): the
    parameter-free transform joins it as an ``nn.Module`` with nothing in it, the
    way Pyro's ``TransformModule`` mixes the two."""

    def __init__(self, alpha: float, event_dim: int) -> None:
        nn.Module.__init__(self)
        LogitTransform.__init__(self, alpha, event_dim=event_dim)

    __hash__ = LogitTransform.__hash__


def _module(alpha: float, event_dim: int) -> _LogitModule:
    return _LogitModule(alpha, event_dim)


def _codomain_points(t: object, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """Points of the data side, inside the codomain: the unit box."""
    return torch.rand(shape, dtype=dtype).clamp(1e-3, 1 - 1e-3)


class TestLogitTransformHarness(TransformHarness):
    """The whole harness; two of its checks feed standard normal values to the
    *inverse* (``check_inverse``'s second half, ``check_gradients``), which only
    makes sense for a codomain that is all of R^D. Those two are replaced here by
    the same checks on inputs drawn from the codomain (the unit box); the forward
    half of ``check_inverse`` runs unchanged."""

    CASES = [
        TransformCase("logit_vector", lambda: _module(0.05, 1), (4,)),
        TransformCase("logit_image", lambda: _module(1e-6, 3), (2, 3, 3)),
        TransformCase("logit_alpha0", lambda: _module(0.0, 1), (3,)),
    ]

    @pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
    def test_inverse(self, transform_case: TransformCase, dtype: torch.dtype) -> None:
        tol = transform_case.tolerance if dtype == torch.float32 else 1e-9
        _, t, _ = build(transform_case, dtype, batch_shape=(5,))
        z = torch.randn(5, *transform_case.event_shape, dtype=dtype)
        with torch.no_grad():
            v = t._call(z)
            assert v.dtype == dtype
            assert (t._inverse(v) - z).abs().max() < tol
            v = _codomain_points(t, (5, *transform_case.event_shape), dtype)
            assert (t._call(t._inverse(v)) - v).abs().max() < tol

    def test_gradients(self, transform_case: TransformCase) -> None:
        module, t, _ = build(transform_case, torch.float32, batch_shape=(16,))
        assert not list(module.parameters()), "LogitTransform is parameter-free"
        event_dim = len(transform_case.event_shape)
        base = dist.Normal(torch.zeros(16, *transform_case.event_shape), 1.0).to_event(event_dim)
        d = dist.TransformedDistribution(base, [t])
        v = _codomain_points(t, (16, *transform_case.event_shape), torch.float32)
        v.requires_grad_(True)
        d.log_prob(v).sum().backward()
        assert torch.isfinite(v.grad).all() and v.grad.abs().sum() > 0


def test_closed_forms() -> None:
    alpha = 0.05
    t = LogitTransform(alpha)
    v = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    expected = torch.tensor([math.log(alpha / (1 - alpha)), 0.0, math.log((1 - alpha) / alpha)])
    assert torch.allclose(t.inv(v), expected.double(), atol=1e-12)
    z = torch.linspace(-6, 6, 13, dtype=torch.float64)
    s = torch.sigmoid(z)
    assert torch.allclose(t(z), (s - alpha) / (1 - 2 * alpha), atol=1e-14)
    # d/dz of (sigmoid(z) - a) / (1 - 2a) = s (1 - s) / (1 - 2a)
    ladj = t.log_abs_det_jacobian(z, t(z))
    assert torch.allclose(ladj, torch.log(s * (1 - s) / (1 - 2 * alpha)), atol=1e-12)


def test_alpha_zero_is_torchs_sigmoid() -> None:
    z = torch.randn(100, dtype=torch.float64) * 4
    t, ref = LogitTransform(0.0), SigmoidTransform()
    assert torch.allclose(t(z), ref(z))
    assert torch.allclose(t.log_abs_det_jacobian(z, t(z)), ref.log_abs_det_jacobian(z, ref(z)))
    assert t.codomain.check(torch.tensor([0.0, 1.0])).all()


def test_event_dim_sums_the_log_det() -> None:
    z = torch.randn(7, 2, 3, 3, dtype=torch.float64)
    per_value = LogitTransform(0.1).log_abs_det_jacobian(z, None)
    for k in (1, 2, 3):
        t = LogitTransform(0.1, event_dim=k)
        summed = per_value.sum(dim=tuple(range(-k, 0)))
        assert torch.allclose(t.log_abs_det_jacobian(z, t(z)), summed)
        assert t.event_dim == k and t.inv.event_dim == k


def test_pushed_normal_mass_on_the_unit_box() -> None:
    """A standard normal on the logits puts mass Phi(logit(1-a)) - Phi(logit(a)) on [0, 1]
    (a closed form), and mass 1 on the whole codomain: 1-D quadrature of the density."""
    alpha = 0.05
    t = LogitTransform(alpha)
    d = dist.TransformedDistribution(dist.Normal(torch.tensor(0.0).double(), 1.0), [t])
    lower, upper = -alpha / (1 - 2 * alpha), (1 - alpha) / (1 - 2 * alpha)
    n = 200_000
    for lo, hi, expected in [
        (0.0, 1.0, 2 * dist.Normal(0.0, 1.0).cdf(torch.tensor(math.log(19.0))).item() - 1),
        (lower, upper, 1.0),
    ]:
        width = (hi - lo) / n
        v = lo + width * (torch.arange(n, dtype=torch.float64) + 0.5)
        mass = (d.log_prob(v).exp().sum() * width).item()
        assert abs(mass - expected) < 1e-6, (lo, hi, mass, expected)


def test_tails_are_finite_in_float32() -> None:
    t = LogitTransform(1e-6, event_dim=1)
    z = torch.tensor([[-80.0, -20.0, 0.0, 20.0, 80.0]])
    ladj = t.log_abs_det_jacobian(z, t(z))
    assert torch.isfinite(ladj).all()
    assert torch.allclose(
        ladj, -(z.abs() + 2 * torch.log1p(torch.exp(-z.abs()))).sum(-1) - math.log(1 - 2e-6)
    )
    v = torch.tensor([[0.0, 1.0]])
    assert torch.isfinite(t.inv(v)).all()


def test_codomain_and_caching() -> None:
    t = LogitTransform(0.05, event_dim=1)
    c = t.codomain
    assert c.check(torch.tensor([[0.0, 1.0, -0.05, 1.05]])).all()
    assert not c.check(torch.tensor([[0.0, 1.06]])).any()
    cached = t.with_cache(1)
    assert cached == t and cached.alpha == 0.05 and cached.event_dim == 1
    z = torch.randn(3, 2)
    v = cached(z)
    assert cached.inv(v) is z
    assert LogitTransform(0.1) != LogitTransform(0.2)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"alpha": 0.5}, "alpha"),
        ({"alpha": -1e-3}, "alpha"),
        ({"alpha": True}, "alpha"),
        ({"alpha": "0.1"}, "alpha"),
        ({"event_dim": -1}, "event_dim"),
        ({"event_dim": 1.0}, "event_dim"),
    ],
)
def test_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        LogitTransform(**kwargs)


class TestLogitTransformInTheSharedHarness(TransformHarness):
    """The parameter-free transform goes through the same harness as every layer."""

    CASES = [
        TransformCase("logit_elementwise", lambda: LogitTransform(0.05), ()),
        TransformCase("logit_vector", lambda: LogitTransform(0.05, event_dim=1), (4,)),
        TransformCase("logit_image", lambda: LogitTransform(1e-6, event_dim=3), (1, 3, 3)),
    ]


# ---------------------------------------------------------------------------
# the normal-to-logistic map
# ---------------------------------------------------------------------------


class TestNormalToLogisticHarness(TransformHarness):
    """The guide's fixed first layer through the shared harness."""

    class _Module(IndependentTransform, nn.Module):
        """Elementwise, so the harness (events of rank >= 1, modules) sees it through
        torch's IndependentTransform as a parameter-free module."""

        def __init__(self) -> None:
            nn.Module.__init__(self)
            IndependentTransform.__init__(self, NormalToLogisticTransform(), 1)

        __hash__ = nn.Module.__hash__

    CASES = [TransformCase("normal_to_logistic", _Module, (3,))]

    def test_gradients(self, transform_case: TransformCase) -> None:
        # the harness's check needs parameters (its loss has no graph without them);
        # here: there are none, and the log-density's gradient reaches the input
        module = transform_case.factory()
        assert not list(module.parameters())
        base = dist.Normal(torch.zeros(16, 3), 1.0).to_event(1)
        x = torch.randn(16, 3, requires_grad=True)
        dist.TransformedDistribution(base, [module]).log_prob(x).sum().backward()
        assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_normal_to_logistic_tails() -> None:
    t = NormalToLogisticTransform()
    eps = torch.tensor([-30.0, -8.0, 0.0, 8.0, 30.0], dtype=torch.float64)
    z = t(eps)
    # logit(Phi(e)) ~ -e^2 / 2 for large negative e; odd function
    assert torch.allclose(z, -z.flip(0)) and z[0] < -400
    assert torch.allclose(t._inverse(z), eps, rtol=1e-6)
    assert torch.isfinite(t.log_abs_det_jacobian(eps, z)).all()


def test_normal_to_logistic_then_a_sigmoid_is_the_normal_cdf() -> None:
    eps = torch.linspace(-5, 5, 11, dtype=torch.float64)
    u = torch.sigmoid(NormalToLogisticTransform()(eps))
    assert torch.allclose(u, torch.distributions.Normal(0.0, 1.0).cdf(eps), atol=1e-12)
    cached = NormalToLogisticTransform(cache_size=1)
    z = cached(eps)
    assert cached.inv(z) is eps and cached == NormalToLogisticTransform()
