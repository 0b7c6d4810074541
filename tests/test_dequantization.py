"""Dequantization model/guide pairs: the bounds against exact cell probabilities,
the guide's density, training through fit, and bad input."""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO
from torch import Tensor, nn

from pyro_dgm import infer
from pyro_dgm.flows import MAF, Flow, RealNVP
from pyro_dgm.infer import fit
from pyro_dgm.models.dequantization import (
    UniformDequantization,
    VariationalDequantization,
    dequantization_noise_flow,
)
from pyro_dgm.transforms import ConditionalMaskedAffineCoupling, MaskedAffineCoupling

L = 4  # levels per coordinate in the exact checks: 16 cells in 2-D
ALPHA = 0.05


class GaussianMixture(nn.Module):
    """A fixed 2-D Gaussian mixture (no parameters): its cell probabilities are
    closed forms of the normal cdf."""

    def __init__(self, weights: list[float], locs: list[list[float]], scales: list[list[float]]):
        super().__init__()
        self.register_buffer("weights", torch.tensor(weights, dtype=torch.float64))
        self.register_buffer("locs", torch.tensor(locs, dtype=torch.float64))
        self.register_buffer("scales", torch.tensor(scales, dtype=torch.float64))
        self.event_shape = torch.Size([2])

    def forward(self) -> dist.MixtureSameFamily:
        components = dist.Normal(self.locs, self.scales).to_event(1)
        return dist.MixtureSameFamily(dist.Categorical(probs=self.weights), components)

    def box_probability(self, lower: Tensor, upper: Tensor) -> Tensor:
        """P(lower <= x < upper) for boxes ``(N, 2)``: sum_k w_k prod_i [Phi(b) - Phi(a)]."""
        normal = torch.distributions.Normal(self.locs, self.scales)  # (K, 2)
        mass = normal.cdf(upper[:, None]) - normal.cdf(lower[:, None])  # (N, K, 2)
        return (self.weights * mass.prod(-1)).sum(-1)


# wiggly inside the cells, so that the uniform guide's ELBO is visibly loose
UNIT_MIXTURE = {
    "weights": [0.5, 0.3, 0.2],
    "locs": [[0.3, 0.6], [0.7, 0.2], [0.55, 0.8]],
    "scales": [[0.2, 0.15], [0.18, 0.25], [0.3, 0.12]],
}
LOGIT_MIXTURE = {
    "weights": [0.6, 0.4],
    "locs": [[-0.5, 1.0], [1.2, -0.8]],
    "scales": [[0.9, 0.8], [1.0, 0.7]],
}


def all_cells(repeat: int = 1) -> Tensor:
    grid = torch.cartesian_prod(torch.arange(L), torch.arange(L))
    return grid.repeat(repeat, 1)


def x_box(y: Tensor, preprocess: str) -> tuple[Tensor, Tensor]:
    """The cell y + [0, 1)^2 seen in the density's domain (an axis-aligned box, since
    each pre-processing is an increasing map of each coordinate), written out here
    without the library's transforms."""
    lo, hi = y.double() / L, (y.double() + 1) / L
    if preprocess == "logit":
        lo, hi = (torch.logit(ALPHA + (1 - 2 * ALPHA) * v) for v in (lo, hi))
    return lo, hi


def exact_log_p(density: GaussianMixture, y: Tensor, preprocess: str) -> Tensor:
    return density.box_probability(*x_box(y, preprocess)).log()


def quadrature_in_x(log_density: callable, y: Tensor, preprocess: str, n: int = 200) -> Tensor:
    """log of the integral of a 2-D density over each cell's box in its own domain
    (midpoint rule): no Jacobian enters."""
    out = []
    lo, hi = x_box(y, preprocess)
    t = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    for a, b in zip(lo, hi, strict=True):
        g0, g1 = a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t
        points = torch.cartesian_prod(g0, g1)
        with torch.no_grad():
            mass = log_density(points).exp().mean() * (b - a).prod()
        out.append(mass.log())
    return torch.stack(out)


def cell_quadrature_in_w(
    pair: UniformDequantization, y: Tensor, n: int = 200, moments: bool = False
) -> tuple[Tensor, ...]:
    """log P(y) and the exact uniform ELBO E_u log p_W(y + u), by the midpoint rule over
    u in [0, 1)^2 with the model's own density on the data scale; with ``moments``, also
    Var_u log p_W(y + u) and the relative variance Var_u p_W / P^2 of the uniform
    guide's importance weights."""
    t = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    u = torch.cartesian_prod(t, t)  # (n^2, 2)
    with torch.no_grad():
        log_pw = pair.dequantized_distribution().log_prob(y.double()[:, None] + u)  # (N, n^2)
    log_p = log_pw.logsumexp(-1) - math.log(n * n)
    if not moments:
        return log_p, log_pw.mean(-1)
    relvar = (2 * (log_pw - log_p[:, None])).exp().mean(-1) - 1
    return log_p, log_pw.mean(-1), log_pw.var(-1), relvar


@pytest.fixture(params=["unit", "logit"])
def case(request: pytest.FixtureRequest) -> tuple[str, GaussianMixture]:
    preprocess = request.param
    mixture = GaussianMixture(**(UNIT_MIXTURE if preprocess == "unit" else LOGIT_MIXTURE))
    return preprocess, mixture


# ---------------------------------------------------------------------------
# the model's density on the data scale
# ---------------------------------------------------------------------------


def test_cell_probabilities_match_the_closed_form(case: tuple[str, GaussianMixture]) -> None:
    """P(y) = integral of p_W over the cell (the model's Jacobians) = the mixture's box
    probability in its own domain (the normal cdf, no Jacobian)."""
    preprocess, mixture = case
    pair = UniformDequantization(mixture, L, preprocess=preprocess, alpha=ALPHA)
    y = all_cells()
    exact = exact_log_p(mixture, y, preprocess)
    log_p, _ = cell_quadrature_in_w(pair, y)
    assert torch.allclose(log_p, exact, atol=2e-4), (log_p - exact).abs().max()
    assert exact.exp().sum() <= 1.0  # the cells hold a sub-probability
    # the same cells integrated in the density's domain (helper check of quadrature_in_x)
    assert torch.allclose(quadrature_in_x(mixture().log_prob, y, preprocess), exact, atol=2e-4)


def test_model_log_joint_is_the_density_at_y_plus_u() -> None:
    """log p(y, u) in the model's trace against a hand-written change of variables:
    x = logit(a + (1 - 2a) w / L), log p_W(w) = log p_X(x) + sum log |dx/dw|."""
    flow = RealNVP(2, num_layers=2, hidden_dims=[8]).double()
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.3 * torch.randn_like(p))
    pair = UniformDequantization(flow, L, alpha=ALPHA)
    y = all_cells()
    guide_trace = poutine.trace(pair.guide).get_trace(y)
    trace = poutine.trace(poutine.replay(pair.model, guide_trace)).get_trace(y)
    trace.compute_log_prob()
    u = trace.nodes["u"]["value"]
    w = y.double() + u
    p = ALPHA + (1 - 2 * ALPHA) * w / L
    x = torch.log(p) - torch.log1p(-p)
    log_dx_dw = (math.log((1 - 2 * ALPHA) / L) - torch.log(p * (1 - p))).sum(-1)
    expected = flow().log_prob(x) + log_dx_dw
    assert torch.allclose(trace.nodes["w"]["log_prob"], expected, atol=1e-10)
    assert torch.equal(trace.nodes["u"]["log_prob"], torch.zeros(len(y), dtype=torch.float64))
    assert torch.equal(trace.nodes["w"]["value"], w)


# ---------------------------------------------------------------------------
# the bounds, where log P(y) is known
# ---------------------------------------------------------------------------


def test_uniform_elbo_is_below_log_p(case: tuple[str, GaussianMixture]) -> None:
    preprocess, mixture = case
    pair = UniformDequantization(mixture, L, preprocess=preprocess, alpha=ALPHA)
    y = all_cells()
    exact = exact_log_p(mixture, y, preprocess)
    _, exact_elbo, var, _ = cell_quadrature_in_w(pair, y, moments=True)
    gap = exact - exact_elbo
    assert (gap > 0).all() and gap.mean() > 0.1  # Jensen, and visibly loose here
    particles = 400
    estimate = infer.log_likelihood(pair.model, pair.guide, y, num_particles=particles)
    assert estimate.bound == f"ELBO(particles={particles})" and estimate.num_dims == 2
    # a Monte Carlo estimate of the exact ELBO (4 standard errors), below log P
    stderr = (var.sum() / particles).sqrt().item() / len(y)
    assert abs(estimate.nats - exact_elbo.mean().item()) < 4 * stderr, stderr
    assert estimate.nats < exact.mean().item() - 0.5 * gap.mean().item()


def test_importance_weighted_bound_rises_to_log_p(case: tuple[str, GaussianMixture]) -> None:
    preprocess, mixture = case
    pair = UniformDequantization(mixture, L, preprocess=preprocess, alpha=ALPHA)
    means = {}
    # every cell equally often; many points for small K, whose estimates are noisier
    for k, repeat in ((1, 256), (10, 256), (1000, 4)):
        y = all_cells(repeat=repeat)
        exact = exact_log_p(mixture, y, preprocess)
        pointwise = infer.importance_log_likelihood(
            pair.model, pair.guide, y, num_samples=k, batch_size=1024
        )
        assert pointwise.bound == f"IWAE(K={k})"
        assert pointwise.values.shape == (len(y),)
        means[k] = (pointwise.values - exact).mean().item()
    _, _, _, relvar = cell_quadrature_in_w(pair, y, moments=True)
    assert means[1] < means[10] < means[1000] <= 0.005, means
    assert means[1] < -0.05
    # delta method: log of a mean of K weights has bias -r / 2K and sd sqrt(r / K)
    error = pointwise.values - exact
    k = 1000
    assert (error.abs() < 5 * (relvar / k).sqrt() + relvar / k).all()
    assert error.abs().mean() < 0.015 and abs(means[1000]) < 0.01
    bits = pointwise.summary().bits_per_dim
    assert abs(bits - (-exact.mean().item() / (2 * math.log(2)))) < 0.01


def test_variational_guide_is_below_log_p_and_tighter_after_training() -> None:
    preprocess, mixture = "unit", GaussianMixture(**UNIT_MIXTURE)
    y = all_cells(repeat=4)
    exact = exact_log_p(mixture, y, preprocess)
    uniform = UniformDequantization(mixture, L, preprocess=preprocess)
    _, uniform_elbo = cell_quadrature_in_w(uniform, y)
    pair = VariationalDequantization(
        mixture, L, preprocess=preprocess, context_dim=8, hidden_dims=[32, 32], num_layers=4
    ).double()
    before = infer.importance_log_likelihood(
        pair.model, pair.guide, y, num_samples=200
    ).log_weights.mean(0)
    # the default noise flow starts as the uniform guide: same ELBO, up to Monte Carlo error
    assert abs(before.mean().item() - uniform_elbo.mean().item()) < 0.03
    # only the guide trains: the fixed mixture has no parameters
    loss = Trace_ELBO(num_particles=8, vectorize_particles=True, max_plate_nesting=1)
    history = fit(
        pair.model,
        pair.guide,
        y,
        validation=None,
        epochs=60,
        batch_size=len(y),
        loss=loss,
        lr=1e-2,
        progress=False,
    )
    assert history.train_loss[-1] < history.train_loss[0]
    log_w = infer.importance_log_likelihood(pair.model, pair.guide, y, num_samples=500).log_weights
    elbo, stderr = log_w.mean(0), log_w.std(0) / math.sqrt(len(log_w))
    assert (elbo < exact + 4 * stderr + 1e-6).all()  # a lower bound, point by point
    gain = elbo.mean().item() - uniform_elbo.mean().item()
    print(f"gap of the uniform guide {(exact - uniform_elbo).mean():.4f}, closed {gain:.4f}")
    assert gain > 0.5 * (exact - uniform_elbo).mean().item(), gain  # half the gap closed
    iw = log_w.logsumexp(0) - math.log(len(log_w))
    assert (iw - exact).abs().max() < 0.1 and (iw - exact).mean().abs() < 0.01


# ---------------------------------------------------------------------------
# the guide's density q(u | y)
# ---------------------------------------------------------------------------


def _quadrature_of_q(pair: VariationalDequantization, y: Tensor, n: int) -> Tensor:
    t = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    u = torch.cartesian_prod(t, t)[:, None, :]  # (n^2, 1, 2) against batch (1,)
    with torch.no_grad():
        return pair.noise_distribution(y).log_prob(u)[:, 0]


def test_untrained_guide_is_exactly_uniform() -> None:
    """Normal -> logistic -> sigmoid with identity couplings is Phi: log q(u | y) = 0."""
    pair = VariationalDequantization(GaussianMixture(**UNIT_MIXTURE), L).double()
    log_q = _quadrature_of_q(pair, torch.tensor([[1, 2]]), n=50)
    assert log_q.abs().max() < 1e-9
    sample = pair.noise_distribution(torch.tensor([[0, 3]] * 4000)).sample()
    assert (sample > 0).all() and (sample < 1).all()
    assert abs(sample.mean().item() - 0.5) < 0.02 and abs(sample.var().item() - 1 / 12) < 0.01


def _perturbed_guide(scales: bool) -> VariationalDequantization:
    """A guide far from uniform: every coupling network perturbed at random; with
    ``scales=False`` the log-scale outputs stay zero (shift-only couplings)."""
    pair = VariationalDequantization(
        GaussianMixture(**UNIT_MIXTURE), L, context_dim=4, hidden_dims=[16]
    ).double()
    with torch.no_grad():
        for p in pair.noise_flow.parameters():
            p.add_(0.2 * torch.randn_like(p))
        if not scales:
            for m in pair.noise_flow.modules():
                if isinstance(m, ConditionalMaskedAffineCoupling):
                    last = m.hypernet.layers[-1]  # outputs: D shifts, then D raw log-scales
                    last.weight[2:].zero_()
                    last.bias[2:].zero_()
    return pair


def _sampling_path(d: dist.TransformedDistribution) -> tuple[dist.Distribution, list]:
    """The base distribution and every transform of (nested) transformed distributions."""
    transforms: list = []
    while isinstance(d, dist.TransformedDistribution):
        transforms = list(d.transforms) + transforms
        d = d.base_dist
    return d, transforms


def test_guide_density_is_the_change_of_variables_of_its_sampler() -> None:
    """log q(u | y), scored through the inverses and their analytic log-dets, equals
    log N(eps) - log|det du/deps| with the Jacobian of the sampling path (normal to
    logistic, couplings, sigmoid) computed by autograd in float64."""
    pair = _perturbed_guide(scales=True)
    for y in (torch.tensor([[0, 3]]), torch.tensor([[2, 1]])):
        q = pair.noise_distribution(y)
        base, transforms = _sampling_path(q)

        def sample_path(eps: Tensor, transforms: list = transforms) -> Tensor:
            for t in transforms:
                eps = t(eps)
            return eps

        for eps in torch.randn(8, 1, 2, dtype=torch.float64):
            u = sample_path(eps)
            jac = torch.autograd.functional.jacobian(lambda e: sample_path(e)[0], eps)[:, 0, :]
            expected = base.log_prob(eps) - torch.linalg.slogdet(jac).logabsdet
            with torch.no_grad():
                scored = q.log_prob(u.detach().clone())  # a new tensor: no cache hit
            assert 0 < u.min() and u.max() < 1
            assert torch.allclose(scored, expected, atol=1e-9, rtol=0), (scored, expected)


def test_guide_density_integrates_to_one() -> None:
    """The integral of q(u | y) over [0, 1]^2 is 1 (2-D midpoint rule).

    Shift-only couplings: a coupling whose log-scale tends to a constant c != 0 far
    out (which a ReLU network's does) gives q a power-law singularity u^(e^c - 1) at
    the edges of the square, where a midpoint rule converges too slowly to check
    anything; the log-scales are checked exactly by the test above."""
    pair = _perturbed_guide(scales=False)
    for y in (torch.tensor([[0, 3]]), torch.tensor([[2, 1]])):
        log_q = _quadrature_of_q(pair, y, n=500)
        assert log_q.std() > 0.1  # far from uniform
        mass = log_q.exp().mean().item()
        assert abs(mass - 1.0) < 2e-3, mass


@pytest.mark.parametrize("event_shape", [(4,), (1, 2, 2)], ids=["vectors", "images"])
def test_the_guide_scores_its_own_samples_through_the_cache(event_shape, monkeypatch) -> None:
    """q(u | y) scores its own draws with the values of the pass that drew them (no
    logit of the sigmoid, no coupling inverse), and any other value through the inverses;
    after a parameter change its own draw is scored afresh."""
    calls = []
    original = MaskedAffineCoupling._inverse

    def counted(layer: MaskedAffineCoupling, y: Tensor) -> Tensor:
        calls.append(1)
        return original(layer, y)

    monkeypatch.setattr(MaskedAffineCoupling, "_inverse", counted)
    pair = VariationalDequantization(
        RealNVP(4, 2, [8]),
        17,
        event_shape=event_shape,
        context_dim=8,
        num_layers=2,
        hidden_dims=[8],
    )
    with torch.no_grad():
        for p in pair.noise_flow.parameters():
            p.add_(0.1 * torch.randn_like(p))
    y = torch.randint(0, 17, (5, *event_shape))
    q = pair.noise_distribution(y)
    u = q.rsample()
    own = q.log_prob(u)
    assert not calls
    fresh = pair.noise_distribution(y).log_prob(u.detach().clone())
    assert calls
    torch.testing.assert_close(own, fresh, atol=1e-4, rtol=1e-4)
    calls.clear()
    with torch.no_grad():
        for p in pair.noise_flow.parameters():
            p.add_(0.05)
    again = q.log_prob(u)
    assert calls
    torch.testing.assert_close(again, pair.noise_distribution(y).log_prob(u.detach().clone()))


# ---------------------------------------------------------------------------
# training on digits, Pyro's ELBO with vectorized particles
# ---------------------------------------------------------------------------


def _digits_slice(n: int = 256) -> tuple[Tensor, int]:
    from pyro_dgm import datasets

    data = datasets.digits()
    return data.train[:n], data.num_levels


@pytest.mark.parametrize("kind", ["uniform", "variational"])
def test_train_on_digits(kind: str) -> None:
    y, num_levels = _digits_slice()
    assert y.shape[1:] == (1, 8, 8)
    flow = RealNVP(64, num_layers=2, hidden_dims=[64])  # flat density, image data
    if kind == "uniform":
        pair = UniformDequantization(flow, num_levels, event_shape=(1, 8, 8))
    else:
        pair = VariationalDequantization(
            flow, num_levels, event_shape=(1, 8, 8), context_dim=16, hidden_dims=[64]
        )
    history = fit(
        pair.model,
        pair.guide,
        y,
        validation=0.25,
        epochs=4,
        batch_size=32,
        lr=2e-3,
        progress=False,
    )
    assert history.train_loss[-1] < history.train_loss[0]
    assert history.validation_loss[-1] < history.validation_loss[0]
    assert all(math.isfinite(v) for v in history.validation_loss)
    names = set(pyro.get_param_store().keys())
    assert any(n.startswith("dequantization.density") for n in names)
    assert any(n.startswith("dequantization.noise_flow") for n in names) == (kind != "uniform")
    bounds = infer.likelihood_bounds(
        pair.model, pair.guide, y[:16], num_samples=(4,), chunk_size=2
    )
    assert [b.bound for b in bounds] == ["ELBO(particles=1)", "IWAE(K=4)"]
    assert all(b.num_dims == 64 and math.isfinite(b.bits_per_dim) for b in bounds)
    assert bounds[1].bits_per_dim < math.log2(num_levels) + 2  # sane after 4 short epochs


@pytest.mark.parametrize("kind", ["uniform", "variational"])
def test_vectorized_particles(kind: str) -> None:
    """Pyro's Trace_ELBO with vectorize_particles: the loss is the negative ELBO of the
    data (known exactly here), and gradients reach the guide."""
    mixture = GaussianMixture(**UNIT_MIXTURE)
    cls = UniformDequantization if kind == "uniform" else VariationalDequantization
    kwargs = {} if kind == "uniform" else {"context_dim": 4, "hidden_dims": [16]}
    pair = cls(mixture, L, preprocess="unit", **kwargs).double()
    y = all_cells()
    _, exact_elbo = cell_quadrature_in_w(UniformDequantization(mixture, L, preprocess="unit"), y)
    elbo = Trace_ELBO(num_particles=1000, vectorize_particles=True, max_plate_nesting=1)
    loss = elbo.differentiable_loss(pair.model, pair.guide, y)
    # the variational guide starts as the uniform one: both losses estimate -sum ELBO
    assert abs(loss.item() / len(y) + exact_elbo.mean().item()) < 0.02
    if kind == "variational":
        loss.backward()
        grads = [p.grad for p in pair.noise_flow.parameters() if p.grad is not None]
        assert grads and any(g.abs().sum() > 0 for g in grads)


def test_data_dtypes_and_event_shapes() -> None:
    """uint8, int64, bool and float data holding integers give the same joint; a flat
    density and an image-shaped one agree on image data."""
    y = torch.randint(0, 2, (5, 1, 2, 2))
    flat = UniformDequantization(Flow([], event_shape=(4,)), 2, event_shape=(1, 2, 2))
    image = UniformDequantization(Flow([], event_shape=(1, 2, 2)), 2)
    u = torch.rand(5, 1, 2, 2)
    values = []
    for pair in (flat, image):
        for data in (y.to(torch.uint8), y, y.bool(), y.float()):
            conditioned = poutine.condition(pair.model, data={"u": u})
            trace = poutine.trace(conditioned).get_trace(data)
            trace.compute_log_prob()
            values.append(trace.nodes["w"]["log_prob"])
    assert all(torch.equal(v, values[0]) for v in values)
    # standard normal logits, checked by hand
    w = y + u
    p = ALPHA + (1 - 2 * ALPHA) * w / 2
    x = torch.logit(p)
    expected = (
        (
            torch.distributions.Normal(0.0, 1.0).log_prob(x)
            + math.log((1 - 2 * ALPHA) / 2)
            - torch.log(p * (1 - p))
        )
        .flatten(1)
        .sum(-1)
    )
    assert torch.allclose(values[0], expected, atol=1e-5)


def test_fixed_distribution_as_density() -> None:
    """A plain Distribution is a density with no parameters: same joint as the Flow
    with no layers (a standard normal)."""
    y, u = torch.randint(0, 4, (6, 2)), torch.rand(6, 2)
    values = []
    for density in (dist.Normal(torch.zeros(2), 1.0).to_event(1), Flow([], event_shape=(2,))):
        pair = UniformDequantization(density, 4)
        trace = poutine.trace(poutine.condition(pair.model, data={"u": u})).get_trace(y)
        trace.compute_log_prob()
        values.append(trace.nodes["w"]["log_prob"])
    assert torch.allclose(values[0], values[1])


def test_maf_density_and_variational_guide_run_in_float64() -> None:
    pair = VariationalDequantization(MAF(3, num_layers=2), 5, context_dim=4).double()
    y = torch.randint(0, 5, (6, 3))
    result = infer.log_likelihood(pair.model, pair.guide, y)
    assert math.isfinite(result.nats)
    assert pair.noise_distribution(y).sample().dtype == torch.float64


# ---------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------


@pytest.fixture
def pair() -> UniformDequantization:
    return UniformDequantization(RealNVP(4, num_layers=2), 17, event_shape=(1, 2, 2))


@pytest.mark.parametrize(
    "y, match",
    [
        (torch.tensor([[[[0.5, 1.0], [2.0, 3.25]]]]), r"non-integer values 0\.5, 3\.25"),
        (torch.tensor([[[[0, 1], [-1, 3]]]]), r"\{0, \.\.\., 16\}.*got values -1"),
        (
            torch.tensor([[[[0, 17], [20, 3]]]]),
            (
                r"got values 17, 20.*num_levels=17 is inconsistent"
                r".*max\(y\) = 20 needs num_levels >= 21"
            ),
        ),
        (torch.tensor([[[[0.0, float("nan")], [2.0, 3.0]]]]), "NaN"),
        (torch.zeros(3, 4, dtype=torch.long), r"shape \(N, 1, 2, 2\).*got \(3, 4\)"),
        (torch.zeros(3, 1, 2, 2, 1, dtype=torch.long), r"shape \(N, 1, 2, 2\)"),
        (torch.zeros(0, 1, 2, 2, dtype=torch.long), "no data point"),
        ([[0, 1], [2, 3]], "Tensor"),
    ],
)
def test_bad_data(pair: UniformDequantization, y: object, match: str) -> None:
    for call in (pair.model, pair.guide, pair.check_data):
        with pytest.raises(ValueError, match=match):
            call(y)
    with pytest.raises(ValueError, match=match):
        VariationalDequantization(RealNVP(4), 17, event_shape=(1, 2, 2)).guide(y)


def test_bad_data_in_evaluation(pair: UniformDequantization) -> None:
    y = torch.full((2, 1, 2, 2), 30)
    with pytest.raises(ValueError, match="num_levels=17 is inconsistent"):
        infer.log_likelihood(pair.model, pair.guide, y)
    with pytest.raises(ValueError, match="num_levels=17 is inconsistent"):
        infer.importance_log_likelihood(pair.model, pair.guide, y, num_samples=2)


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: UniformDequantization(RealNVP(4), 1), "num_levels"),
        (lambda: UniformDequantization(RealNVP(4), 17.0), "num_levels"),
        (lambda: UniformDequantization(RealNVP(4), 17, preprocess="scale"), "preprocess"),
        (lambda: UniformDequantization(RealNVP(4), 17, event_shape=(1, 3, 3)), "same number"),
        (lambda: UniformDequantization(RealNVP(4, context_dim=2), 17), "unconditional"),
        (lambda: UniformDequantization("flow", 17), "nn.Module"),
        (
            lambda: UniformDequantization(dist.Normal(torch.zeros(3, 4), 1.0).to_event(1), 17),
            r"batch shape \(3,\)",
        ),
        (lambda: UniformDequantization(dist.Normal(0.0, 1.0), 17), "non-empty event shape"),
        (lambda: UniformDequantization(RealNVP(4), 17, alpha=0.5), "alpha"),
        (
            lambda: VariationalDequantization(
                RealNVP(4), 17, noise_flow=dequantization_noise_flow(5, 3)
            ),
            r"event shape \(4,\)",
        ),
        (lambda: dequantization_noise_flow(1, 3), "input_dim >= 2"),
        (lambda: dequantization_noise_flow(4, 3, num_layers=1), "num_layers"),
    ],
)
def test_bad_construction(build: callable, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build()


def test_samples_are_levels_whose_frequencies_follow_the_cell_masses() -> None:
    """y = floor(w), w ~ p_W conditioned on [0, L): level k has the cell mass of [k, k+1)."""
    from pyro_dgm.models import UniformDequantization

    density = dist.Normal(torch.tensor([0.0]), torch.tensor([1.0])).to_event(1)
    pair = UniformDequantization(density, 5, event_shape=(1,), preprocess="unit")
    y = pair.sample(20_000)
    assert y.dtype == torch.long and y.shape == (20_000, 1)
    assert y.min() >= 0 and y.max() <= 4
    # w = 5 x with x ~ N(0, 1): level k is x in [k/5, (k+1)/5), given x in [0, 1)
    normal = torch.distributions.Normal(0.0, 1.0)
    edges = torch.arange(6.0) / 5
    cells = normal.cdf(edges[1:]) - normal.cdf(edges[:-1])
    cells = cells / cells.sum()
    freq = torch.bincount(y[:, 0], minlength=5).float() / 20_000
    assert torch.allclose(freq, cells, atol=0.015), (freq, cells)


def test_sampling_a_density_outside_the_box_is_an_error() -> None:
    from pyro_dgm.models import UniformDequantization

    density = dist.Normal(torch.tensor([-50.0]), torch.tensor([1.0])).to_event(1)
    pair = UniformDequantization(density, 5, event_shape=(1,), preprocess="unit")
    with pytest.raises(ValueError, match="inside"):
        pair.sample(10, max_rounds=3)
