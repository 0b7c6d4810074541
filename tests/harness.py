r"""The shared test harness for every transform and distribution of pyro_dgm.

A transform or distribution joins the harness by one entry: a
:class:`TransformCase` in the ``CASES`` list of a :class:`TransformHarness`
subclass, or a :class:`DistributionCase` in a :class:`DistributionHarness`
subclass. Every ``test_*`` method of the harness then runs on it.

The ``check_*`` functions raise ``AssertionError`` on a defect, so the harness
itself can be tested: ``tests/test_harness.py`` runs it on Pyro's own flows
(which must pass) and on deliberately broken transforms (which must fail).

Nothing here touches torch's global default dtype: float64 checks build float64
modules and inputs explicitly, which is how a user would do it.
"""

from __future__ import annotations

import io
import math
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pyro.distributions as dist
import pytest
import torch
from pyro.distributions import ConditionalTransformModule, TransformedDistribution
from torch.distributions import Transform, constraints

BATCH_SHAPES = [(), (3,), (3, 4)]


# ---------------------------------------------------------------------------
# transforms
# ---------------------------------------------------------------------------


@dataclass
class TransformCase:
    """One transform (or conditional transform) under test.

    Arguments:
        name: The test id.
        factory: Builds a fresh, randomly initialised module in float32 (or a
            parameter-free torch ``Transform``).
        event_shape: The event shape of the transform's input.
        context_dim: For a conditional transform, the size of its context.
        inverse: Whether ``_inverse`` exists in closed form (``False`` for
            planar-type flows: then samples are scored through the cache).
        data_init: The transform initialises itself from the first batch it
            sees (ActNorm); the harness feeds one batch before checking.
        tolerance: Absolute tolerance of the float32 round trip.
    """

    name: str
    factory: Callable[[], torch.nn.Module]
    event_shape: tuple[int, ...]
    context_dim: int | None = None
    inverse: bool = True
    data_init: bool = False
    tolerance: float = 1e-4
    marks: Sequence = field(default_factory=tuple)

    def __repr__(self) -> str:
        return self.name


def _perturb(module: torch.nn.Module, generator: torch.Generator | None = None) -> None:
    """Move every parameter away from its initial value.

    Many layers start as the identity (zero last layer), where a log-det of zero
    and an exact inverse are trivially right; the harness checks them elsewhere.
    """
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.1 * torch.randn(p.shape, dtype=p.dtype, generator=generator))


def build(
    case: TransformCase,
    dtype: torch.dtype = torch.float64,
    batch_shape: tuple[int, ...] = (),
    context: torch.Tensor | None = None,
) -> tuple[torch.nn.Module, Transform, torch.Tensor | None]:
    """Build the module of ``case`` in ``dtype``; return (module, transform, context).

    For a conditional case, ``transform`` is ``module.condition(context)``
    with a context of shape ``batch_shape + (context_dim,)``.
    """
    module = case.factory()
    if isinstance(module, torch.nn.Module):
        module = module.to(dtype)
        _perturb(module)
    if case.context_dim is not None:
        assert isinstance(module, ConditionalTransformModule), (
            f"{case.name}: context_dim given but the factory built {type(module).__name__}"
        )
        if context is None:
            context = torch.randn((*batch_shape, case.context_dim), dtype=dtype)
        transform = module.condition(context)
    else:
        transform = module
    if case.data_init:
        with torch.no_grad():
            x = 1.5 + 2.0 * torch.randn((64, *case.event_shape), dtype=dtype)
            _inverse_bypassing_cache(transform, x)
    return module, transform, context


def _call_bypassing_cache(t: Transform, x: torch.Tensor) -> torch.Tensor:
    return t._call(x)


def _inverse_bypassing_cache(t: Transform, y: torch.Tensor) -> torch.Tensor:
    return t._inverse(y)


def _sample_inputs(
    case: TransformCase, batch_shape: tuple[int, ...], dtype: torch.dtype
) -> torch.Tensor:
    return torch.randn((*batch_shape, *case.event_shape), dtype=dtype)


def _codomain_points(
    t: Transform, case: TransformCase, batch_shape: tuple[int, ...], dtype: torch.dtype
) -> torch.Tensor:
    """Points of the transform's codomain: standard normal ones where the codomain
    holds them (unbounded), else images of standard normal inputs."""
    x = _sample_inputs(case, batch_shape, dtype)
    y = torch.randn(t.forward_shape(x.shape), dtype=dtype)
    if bool(t.codomain.check(y).all()):
        return y
    with torch.no_grad():
        return _call_bypassing_cache(t, x)


def check_inverse(case: TransformCase, dtype: torch.dtype) -> None:
    """``_inverse(_call(x)) == x`` (bypassing the cache), and the same backwards."""
    if not case.inverse:
        return
    tol = case.tolerance if dtype == torch.float32 else 1e-9
    _, t, _ = build(case, dtype, batch_shape=(5,))
    x = _sample_inputs(case, (5,), dtype)
    with torch.no_grad():
        y = _call_bypassing_cache(t, x)
        x_back = _inverse_bypassing_cache(t, y)
        assert y.dtype == dtype and x_back.dtype == dtype, f"{case.name}: dtype not followed"
        err = (x_back - x).abs().max().item()
        assert err < tol, f"{case.name}: inverse(call(x)) differs from x by {err:.3g} ({dtype})"
        y = _codomain_points(t, case, (5,), dtype)
        y_back = _call_bypassing_cache(t, _inverse_bypassing_cache(t, y))
        err = (y_back - y).abs().max().item()
        assert err < tol, f"{case.name}: call(inverse(y)) differs from y by {err:.3g} ({dtype})"


def _flat_jacobian(t: Transform, x: torch.Tensor) -> torch.Tensor:
    """The Jacobian of ``t`` at one event ``x``, as a square matrix (input size)^2."""
    shape = x.shape

    def f(flat: torch.Tensor) -> torch.Tensor:
        return _call_bypassing_cache(t, flat.reshape(shape)).reshape(-1)

    return torch.autograd.functional.jacobian(f, x.reshape(-1))


def check_log_det(case: TransformCase) -> None:
    """``log_abs_det_jacobian`` against the brute-force autograd Jacobian, in float64."""
    module, t, context = build(case, torch.float64, batch_shape=(4,))
    xs = _sample_inputs(case, (4,), torch.float64)
    ys = t(xs)
    ladj = t.log_abs_det_jacobian(xs, ys)
    assert ladj.shape == (4,), f"{case.name}: log-det shape {tuple(ladj.shape)}, expected (4,)"
    for i in range(4):
        # one event at a time; a conditional transform takes that event's context row
        ti = t if context is None else module.condition(context[i])
        jac = _flat_jacobian(ti, xs[i])
        expected = torch.linalg.slogdet(jac).logabsdet
        got = ladj[i]
        assert torch.allclose(got, expected, atol=1e-6, rtol=1e-6), (
            f"{case.name}: log|det J| = {got.item():.8f}, brute force gives {expected.item():.8f}"
        )


def check_batch_shapes(case: TransformCase) -> None:
    """Batch shapes (), (3,), (3, 4) preserved by call, inverse and log-det."""
    for batch_shape in BATCH_SHAPES:
        _, t, _ = build(case, torch.float64, batch_shape=batch_shape)
        x = _sample_inputs(case, batch_shape, torch.float64)
        y = t(x)
        out_shape = t.forward_shape(x.shape)
        assert y.shape == out_shape, f"{case.name}: {tuple(y.shape)} vs forward_shape {out_shape}"
        assert y.shape[: len(batch_shape)] == batch_shape, f"{case.name}: batch shape lost"
        ladj = t.log_abs_det_jacobian(x, y)
        assert ladj.shape == batch_shape, (
            f"{case.name}: log-det shape {tuple(ladj.shape)}, expected batch shape {batch_shape}"
        )
        if case.inverse:
            assert _inverse_bypassing_cache(t, y).shape == x.shape


def check_distribution_shapes(case: TransformCase) -> None:
    """A ``TransformedDistribution`` around the transform samples and scores."""
    batch_shape = (3,)
    _, t, _ = build(case, torch.float64, batch_shape=batch_shape)
    event_dim = len(case.event_shape)
    base = dist.Normal(
        torch.zeros((*batch_shape, *case.event_shape), dtype=torch.float64), 1.0
    ).to_event(event_dim)
    d = TransformedDistribution(base, [t])
    x = d.rsample((2,))
    assert x.shape == (2, *batch_shape, *t.forward_shape(case.event_shape)), tuple(x.shape)
    lp = d.log_prob(x)
    assert lp.shape == (2, *batch_shape), f"{case.name}: log_prob shape {tuple(lp.shape)}"
    assert torch.isfinite(lp).all()
    if case.inverse:
        # scoring a fresh tensor (not the cached sample) takes the inverse path
        lp_fresh = d.log_prob(x.clone())
        assert torch.allclose(lp, lp_fresh, atol=1e-8), f"{case.name}: cache changes log_prob"


def check_gradients(case: TransformCase) -> None:
    """Every parameter gets a finite, non-zero gradient from the flow's loss."""
    module, t, _ = build(case, torch.float32, batch_shape=(16,))
    event_dim = len(case.event_shape)
    base = dist.Normal(torch.zeros((16, *case.event_shape)), 1.0).to_event(event_dim)
    d = TransformedDistribution(base, [t])
    params = dict(module.named_parameters()) if isinstance(module, torch.nn.Module) else {}
    if case.inverse:
        data = _codomain_points(t, case, (16,), torch.float32).requires_grad_()
        loss = -d.log_prob(data).sum()
    else:
        x = d.rsample()  # scored through the cache: no inverse needed
        loss = (d.log_prob(x) + x.pow(2).flatten(1).sum(-1)).sum()
    if not params:  # a parameter-free transform: the gradient must reach the data
        assert case.inverse, f"{case.name}: no parameters and no inverse: nothing to check"
        (grad,) = torch.autograd.grad(loss, data)
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0, (
            f"{case.name}: no data gradient"
        )
        return
    module.zero_grad()
    loss.backward()
    for name, p in params.items():
        assert p.grad is not None, f"{case.name}: no gradient reaches {name}"
        assert torch.isfinite(p.grad).all(), f"{case.name}: non-finite gradient in {name}"
        assert p.grad.abs().sum() > 0, f"{case.name}: zero gradient in {name}"


def check_conditioning(case: TransformCase) -> None:
    """A conditional transform's output depends on its context."""
    if case.context_dim is None:
        return
    module, t, context = build(case, torch.float64, batch_shape=(5,))
    x = _sample_inputs(case, (5,), torch.float64)
    y1 = _call_bypassing_cache(t, x)
    y2 = _call_bypassing_cache(module.condition(context + 1.0), x)
    assert not torch.allclose(y1, y2), f"{case.name}: the context does not change the output"


def check_cache(case: TransformCase) -> None:
    """With ``cache_size=1``, the inverse of the last output is the last input itself."""
    _, t, _ = build(case, torch.float64, batch_shape=(5,))
    x = _sample_inputs(case, (5,), torch.float64)
    y = t(x)
    if t._cache_size == 1:
        assert t.inv(y) is x, f"{case.name}: cache_size=1 but inv(t(x)) is not x"
    else:
        assert case.inverse, f"{case.name}: no inverse and no cache: its samples cannot be scored"


def check_state_dict(case: TransformCase) -> None:
    """``state_dict`` saved and loaded with ``weights_only=True`` reproduces the transform."""
    module, t, context = build(case, torch.float64, batch_shape=(5,))
    x = _sample_inputs(case, (5,), torch.float64)
    if not isinstance(module, torch.nn.Module):  # parameter-free: the object itself pickles
        clone = pickle.loads(pickle.dumps(module))
        assert torch.equal(_call_bypassing_cache(t, x), _call_bypassing_cache(clone, x))
        return
    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    fresh = case.factory().to(torch.float64)
    fresh.load_state_dict(state)
    t2 = fresh.condition(context) if case.context_dim is not None else fresh
    assert torch.allclose(_call_bypassing_cache(t, x), _call_bypassing_cache(t2, x)), (
        f"{case.name}: a reloaded state_dict gives another transform"
    )


def check_dtype_following(case: TransformCase) -> None:
    """``.double()`` moves every parameter and buffer; outputs follow the input dtype."""
    module = case.factory()
    tensors = []
    if isinstance(module, torch.nn.Module):
        module.double()
        tensors = [*module.named_parameters(), *module.named_buffers()]
    for name, tensor in tensors:
        if tensor.is_floating_point():
            assert tensor.dtype == torch.float64, f"{case.name}: {name} stays {tensor.dtype}"
    _, t, _ = build(case, torch.float64, batch_shape=(2,))
    x = _sample_inputs(case, (2,), torch.float64)
    y = t(x)
    assert y.dtype == torch.float64
    assert t.log_abs_det_jacobian(x, y).dtype == torch.float64


class TransformHarness:
    """Subclass with ``CASES = [TransformCase(...), ...]`` to run every check."""

    CASES: list[TransformCase] = []

    @pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
    def test_inverse(self, transform_case: TransformCase, dtype: torch.dtype) -> None:
        check_inverse(transform_case, dtype)

    def test_log_det(self, transform_case: TransformCase) -> None:
        check_log_det(transform_case)

    def test_batch_shapes(self, transform_case: TransformCase) -> None:
        check_batch_shapes(transform_case)

    def test_distribution_shapes(self, transform_case: TransformCase) -> None:
        check_distribution_shapes(transform_case)

    def test_gradients(self, transform_case: TransformCase) -> None:
        check_gradients(transform_case)

    def test_conditioning(self, transform_case: TransformCase) -> None:
        check_conditioning(transform_case)

    def test_cache(self, transform_case: TransformCase) -> None:
        check_cache(transform_case)

    def test_state_dict(self, transform_case: TransformCase) -> None:
        check_state_dict(transform_case)

    def test_dtype_following(self, transform_case: TransformCase) -> None:
        check_dtype_following(transform_case)


# ---------------------------------------------------------------------------
# distributions
# ---------------------------------------------------------------------------


@dataclass
class DistributionCase:
    """One distribution under test.

    Arguments:
        name: The test id.
        factory: Builds the distribution (float64 parameters), with
            ``validate_args`` as given.
        invalid_values: Values outside the support that ``log_prob`` must
            reject with a ``ValueError`` when ``validate_args=True``; ``None``
            only for a support that is the whole real space (nothing lies
            outside it).
        mass_tolerance: Tolerance of the total mass check.
    """

    name: str
    factory: Callable[..., dist.TorchDistribution]
    invalid_values: list[torch.Tensor] | None = None
    mass_tolerance: float = 1e-6
    marks: Sequence = field(default_factory=tuple)

    def __repr__(self) -> str:
        return self.name

    def make(self, validate_args: bool | None = None) -> dist.TorchDistribution:
        return self.factory(validate_args=validate_args)


def _event_numel(d: dist.TorchDistribution) -> int:
    return math.prod(d.event_shape)


def _integer_bounds(support: constraints.Constraint) -> tuple[int, int] | None:
    base = support
    while isinstance(base, constraints.independent):
        base = base.base_constraint
    if isinstance(base, constraints.integer_interval):
        return int(base.lower_bound), int(base.upper_bound)
    if base is constraints.boolean:
        return 0, 1
    return None


def check_total_mass(case: DistributionCase) -> None:
    """Mass sums to 1: exactly over the support for discrete distributions,
    by quadrature (1-D, 2-D events) or Monte Carlo for continuous ones."""
    d = case.make()
    if d.support.is_discrete:
        bounds = _integer_bounds(d.support)
        assert bounds is not None, f"{case.name}: cannot enumerate support {d.support}"
        lo, hi = bounds
        n = _event_numel(d)
        assert (hi - lo + 1) ** n <= 200_000, f"{case.name}: support too large to enumerate"
        values = torch.arange(lo, hi + 1, dtype=torch.float64)
        grid = torch.cartesian_prod(*[values] * n) if n > 1 else values[:, None]
        grid = grid.reshape(-1, *(1,) * len(d.batch_shape), *d.event_shape)
        log_mass = d.log_prob(grid).logsumexp(0)
        assert torch.allclose(log_mass, torch.zeros_like(log_mass), atol=case.mass_tolerance), (
            f"{case.name}: total mass {log_mass.exp()} differs from 1"
        )
        return
    n = _event_numel(d)
    assert n <= 2, f"{case.name}: continuous mass check is for 1-D and 2-D events"
    with torch.no_grad():
        samples = d.sample((4000,)).reshape(4000, -1, n)
    lo = samples.quantile(0.0005, dim=0).min(0).values - 3 * samples.std(0).max(0).values
    hi = samples.quantile(0.9995, dim=0).max(0).values + 3 * samples.std(0).max(0).values
    steps = 2001 if n == 1 else 401
    axes = [torch.linspace(lo[i], hi[i], steps, dtype=torch.float64) for i in range(n)]
    cell = math.prod(float(a[1] - a[0]) for a in axes)
    points = torch.cartesian_prod(*axes) if n > 1 else axes[0][:, None]
    points = points.reshape(-1, *(1,) * len(d.batch_shape), *d.event_shape)
    # full batch shape: broadcasting of log_prob is the conformance suite's concern
    points = points.expand(-1, *d.batch_shape, *d.event_shape)
    with torch.no_grad():
        mass = torch.cat([d.log_prob(chunk).exp() for chunk in points.split(20_000)]).sum(0)
    mass = mass * cell
    assert torch.allclose(mass, torch.ones_like(mass), atol=case.mass_tolerance), (
        f"{case.name}: quadrature mass {mass} differs from 1"
    )


def check_support(case: DistributionCase) -> None:
    """Samples lie in the support, with the declared shapes."""
    d = case.make()
    x = d.sample((7,))
    assert x.shape == (7, *d.batch_shape, *d.event_shape)
    assert d.support.check(x).all(), f"{case.name}: samples outside {d.support}"
    assert d.log_prob(x).shape == (7, *d.batch_shape)


def check_expand(case: DistributionCase) -> None:
    """``expand`` adds batch dimensions on the left; samples and scores follow."""
    d = case.make()
    new_batch = (2, *d.batch_shape)
    e = d.expand(new_batch)
    assert e.batch_shape == new_batch and e.event_shape == d.event_shape
    x = e.sample()
    assert x.shape == (*new_batch, *d.event_shape)
    lp = e.log_prob(x)
    assert lp.shape == new_batch
    assert torch.allclose(lp[0], d.log_prob(x[0]))


def check_validation(case: DistributionCase) -> None:
    """With ``validate_args=True``, values outside the support raise ``ValueError``."""
    d = case.make(validate_args=True)
    if case.invalid_values is None:
        assert d.support in (constraints.real,) or (
            isinstance(d.support, constraints.independent)
            and d.support.base_constraint is constraints.real
        ), f"{case.name}: bounded support {d.support} needs invalid_values"
        return
    for bad in case.invalid_values:
        with pytest.raises(ValueError):
            d.log_prob(bad)


class DistributionHarness:
    """Subclass with ``CASES = [DistributionCase(...), ...]`` to run every check."""

    CASES: list[DistributionCase] = []

    def test_total_mass(self, distribution_case: DistributionCase) -> None:
        check_total_mass(distribution_case)

    def test_support(self, distribution_case: DistributionCase) -> None:
        check_support(distribution_case)

    def test_expand(self, distribution_case: DistributionCase) -> None:
        check_expand(distribution_case)

    def test_validation(self, distribution_case: DistributionCase) -> None:
        check_validation(distribution_case)


__all__ = [
    "DistributionCase",
    "DistributionHarness",
    "TransformCase",
    "TransformHarness",
    "build",
    "check_batch_shapes",
    "check_cache",
    "check_conditioning",
    "check_distribution_shapes",
    "check_dtype_following",
    "check_expand",
    "check_gradients",
    "check_inverse",
    "check_log_det",
    "check_state_dict",
    "check_support",
    "check_total_mass",
    "check_validation",
]
