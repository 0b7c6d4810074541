"""Tests of pyro_dgm.datasets: toys, energies, digits, IDX files and MNIST, load()."""

from __future__ import annotations

import gzip
import itertools
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import integrate, special

from pyro_dgm import datasets
from pyro_dgm.datasets import (
    ENERGY_LOG_Z,
    ENERGY_NAMES,
    TOY_NAMES,
    Dataset,
    digits,
    energy_log_density,
    estimate_toy_entropy,
    log_normalizer,
    mnist,
    read_idx,
    toy,
    toy_dataset,
    toy_entropy,
    toy_log_prob,
    toy_with_labels,
    write_idx,
)

# ---------------------------------------------------------------------------
# Dataset container
# ---------------------------------------------------------------------------


def test_dataset_event_shape_and_repr() -> None:
    d = Dataset("x", torch.zeros(5, 1, 3, 4), torch.zeros(2, 1, 3, 4), torch.zeros(0, 1, 3, 4))
    assert d.event_shape == torch.Size([1, 3, 4])
    assert "train=5" in repr(d) and "test=0" in repr(d)
    with pytest.raises(AttributeError):
        d.name = "y"  # frozen


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"validation": torch.zeros(2, 3)}, "validation: expected event shape"),
        ({"test": torch.zeros(2, 2, dtype=torch.float64)}, "test: expected dtype"),
        ({"num_levels": 4}, "integer dtype"),
        ({"train_labels": torch.zeros(3)}, r"train_labels: expected shape \(4,\)"),
        ({"train": [[0.0, 0.0]]}, "train: expected a torch.Tensor"),
    ],
)
def test_dataset_rejects_inconsistent_splits(kwargs: dict, match: str) -> None:
    args = {"train": torch.zeros(4, 2), "validation": torch.zeros(2, 2), "test": torch.zeros(2, 2)}
    with pytest.raises(ValueError, match=match):
        Dataset("x", **{**args, **kwargs})


def test_dataset_checks_levels() -> None:
    x = torch.tensor([[0, 3]], dtype=torch.uint8)
    Dataset("ok", x, x, x, num_levels=4)
    with pytest.raises(ValueError, match=r"test: expected values in \[0, 2\]"):
        Dataset("bad", x[:, :1], x[:, :1], x[:, 1:], num_levels=3)


def _labelled(n: tuple[int, int, int] = (4, 2, 3)) -> dict:
    splits = {"train": torch.zeros(n[0], 2), "validation": torch.zeros(n[1], 2)}
    splits["test"] = torch.zeros(n[2], 2)
    labels = {f"{s}_labels": torch.arange(len(t)) % 3 for s, t in splits.items()}
    return splits | labels


def test_dataset_contexts_are_one_row_per_example_in_every_split() -> None:
    args = _labelled()
    context = {
        f"{s}_context": torch.ones(len(args[s]), 5) for s in ("train", "validation", "test")
    }
    d = Dataset("x", **args, **context)
    assert d.has_context and d.context_shape == (5,) and "context=(5,)" in repr(d)
    x, c = d.split("validation")
    assert x is d.validation and c is d.validation_context
    assert Dataset("x", **args).split("test") is args["test"]  # no context: the tensor
    for broken, match in [
        ({"test_context": None}, "test_context: expected a context for every split"),
        ({"train_context": torch.ones(3, 5)}, r"train_context: expected 4 rows .* got shape"),
        ({"test_context": torch.ones(3, 4)}, r"test_context: expected rows of shape \(5,\)"),
        ({"validation_context": torch.ones(2, 5).double()}, "dtype torch.float32"),
        ({"train_context": [[1.0]] * 4}, "train_context: expected a torch.Tensor"),
        ({"test_context": torch.full((3, 5), math.nan)}, "test_context: expected finite"),
    ]:
        with pytest.raises(ValueError, match=match):
            Dataset("x", **args, **(context | broken))
    with pytest.raises(ValueError, match="split: expected one of"):
        d.split("training")


def test_labels_become_a_one_hot_context() -> None:
    d = digits()
    conditional = d.with_label_context()
    assert d.num_classes == 10 and d.train_context is None  # d itself is unchanged
    for split in ("train", "validation", "test"):
        labels, context = getattr(d, f"{split}_labels"), getattr(conditional, f"{split}_context")
        assert context.shape == (len(labels), 10) and context.dtype == torch.float32
        assert torch.equal(context.argmax(-1), labels) and torch.equal(
            context.sum(-1), torch.ones(len(labels))
        )
        assert torch.equal(getattr(conditional, split), getattr(d, split))
    assert torch.equal(conditional.test_labels, d.test_labels)
    wider = d.with_label_context(num_classes=12, dtype=torch.float64)
    assert wider.context_shape == (12,) and wider.train_context.dtype == torch.float64
    with pytest.raises(ValueError, match=r"num_classes .*largest label, 9.*>= 10, got 5"):
        d.with_label_context(num_classes=5)
    with pytest.raises(ValueError, match="train_labels, validation_labels, test_labels: a label"):
        toy_dataset("rings", num_train=10, num_validation=5, num_test=5).with_label_context()
    args = _labelled()
    with pytest.raises(ValueError, match="test_labels: expected integer labels"):
        Dataset("x", **(args | {"test_labels": torch.zeros(3)})).with_label_context()
    with pytest.raises(ValueError, match="validation_labels: expected labels >= 0"):
        Dataset("x", **(args | {"validation_labels": -torch.ones(2).long()})).with_label_context()


# ---------------------------------------------------------------------------
# toys: samplers
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", TOY_NAMES)
def test_toy_shapes_dtypes_and_determinism(name: str) -> None:
    a = toy(name, 500, seed=3)
    assert a.shape == (500, 2) and a.dtype == torch.float32
    assert torch.isfinite(a).all()
    assert torch.equal(a, toy(name, 500, seed=3))
    assert not torch.equal(a, toy(name, 500, seed=4))
    b = toy(name, 500, seed=3, dtype=torch.float64)
    assert b.dtype == torch.float64
    assert torch.equal(b.to(torch.float32), a)  # drawn in float64 whatever the dtype
    assert torch.equal(getattr(datasets, name)(500, seed=3), a)
    assert toy(name, 0).shape == (0, 2)


def test_toy_geometry() -> None:
    # checkerboard: uniform on the black squares of [-4, 4]^2, squares of side 2
    x = toy("checkerboard", 20_000, seed=1, dtype=torch.float64)
    assert ((x >= -4) & (x < 4)).all()
    assert (torch.remainder(torch.floor(x / 2).sum(-1), 2) == 0).all()
    cells = Counter(map(tuple, torch.floor(x / 2).long().tolist()))
    assert len(cells) == 8
    assert max(abs(c / 20_000 - 1 / 8) for c in cells.values()) < 0.01
    # eight Gaussians: centres at radius 2 sqrt 2, std 1 / (2 sqrt 2)
    x = toy("eight_gaussians", 40_000, seed=1, dtype=torch.float64)
    k = torch.round(torch.atan2(x[:, 1], x[:, 0]) / (math.pi / 4)) % 8
    angle = k * math.pi / 4
    centre = 2 * math.sqrt(2) * torch.stack([angle.cos(), angle.sin()], -1)
    assert abs((x - centre).std().item() - 1 / (2 * math.sqrt(2))) < 0.005
    # moons: the noise-free points lie on the two unit half circles
    x = toy("two_moons", 20_000, seed=1, dtype=torch.float64)
    r0 = x.norm(dim=-1)
    r1 = (x - torch.tensor([1.0, 0.5], dtype=torch.float64)).norm(dim=-1)
    dist = torch.minimum((r0 - 1).abs(), (r1 - 1).abs())
    assert dist.median() < 0.1 and x[:, 0].min() > -1.6 and x[:, 0].max() < 2.6
    # rings: radii 0.75 k
    r = toy("rings", 20_000, seed=1, dtype=torch.float64).norm(dim=-1)
    ring = torch.round(r / 0.75).clamp(1, 4)
    assert abs((r - 0.75 * ring).std().item() - 0.08) < 0.004


def test_toy_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="name: expected one of"):
        toy("moons2", 10)
    with pytest.raises(ValueError, match="num_samples"):
        toy("rings", -1)
    with pytest.raises(ValueError, match="seed"):
        toy("rings", 10, seed=-1)
    with pytest.raises(ValueError, match="dtype"):
        toy("rings", 10, dtype=torch.int64)


def test_toy_dataset_splits() -> None:
    d = toy_dataset("pinwheel", num_train=300, num_validation=50, num_test=70, seed=5)
    assert d.name == "pinwheel" and d.num_levels is None and d.event_shape == (2,)
    assert (len(d.train), len(d.validation), len(d.test)) == (300, 50, 70)
    assert d.train_labels is None
    again = toy_dataset("pinwheel", num_train=300, num_validation=50, num_test=70, seed=5)
    assert torch.equal(d.train, again.train) and torch.equal(d.test, again.test)
    # independent streams: no split repeats another one's points
    assert not torch.equal(d.train[:50], d.validation)
    assert not torch.equal(d.validation, d.test[:50])
    other = toy_dataset("pinwheel", num_train=300, num_validation=50, num_test=70, seed=6)
    assert not torch.equal(d.train, other.train)
    with pytest.raises(ValueError, match="num_test"):
        toy_dataset("pinwheel", num_test=-1)


@pytest.mark.parametrize("name", TOY_NAMES)
def test_toy_labels_are_the_components_the_points_were_drawn_from(name: str) -> None:
    x, y = toy_with_labels(name, 4000, seed=2, dtype=torch.float64)
    assert torch.equal(x, toy(name, 4000, seed=2, dtype=torch.float64))  # the same points
    _, k = datasets.TOY_COMPONENTS[name]
    assert y.dtype == torch.int64 and set(y.tolist()) == set(range(k))
    # each label is the component that lies nearest: its points are where it is
    if name == "eight_gaussians":
        nearest = torch.round(torch.atan2(x[:, 1], x[:, 0]) / (math.pi / 4)) % 8
    elif name == "rings":
        nearest = torch.round(x.norm(dim=-1) / 0.75).clamp(1, 4) - 1
    elif name == "checkerboard":
        cell = torch.floor(x / 2) + 2  # columns and rows 0..3
        nearest = 2 * cell[:, 0] + (cell[:, 1] >= 2).long()
    elif name == "two_moons":  # distance to each noise-free half circle
        upper = (x.norm(dim=-1) - 1).abs()
        lower = ((x - torch.tensor([1.0, 0.5], dtype=x.dtype)).norm(dim=-1) - 1).abs()
        nearest = (lower < upper).long()
    elif name == "two_spirals":  # the spirals are point reflections of each other
        nearest = None
        assert torch.allclose(x[y == 0].mean(0), -x[y == 1].mean(0), atol=0.15)
    else:  # pinwheel: arm k points along 2 pi k / 5 (turned by the rate)
        angle = torch.atan2(-x[:, 1], x[:, 0]) - 0.25 * math.exp(1)
        nearest = torch.round(angle / (2 * math.pi / 5)) % 5
    if nearest is not None:
        agree = (nearest.long() == y).double().mean().item()
        # the Gaussians overlap (0.27% of points lie nearer a neighbour); the squares do not
        assert agree > {"checkerboard": 0.99999, "eight_gaussians": 0.99}.get(name, 0.9), agree
    d = toy_dataset(name, num_train=50, num_validation=20, num_test=30, seed=1, labels=True)
    plain = toy_dataset(name, num_train=50, num_validation=20, num_test=30, seed=1)
    assert torch.equal(d.test, plain.test) and d.test_labels.shape == (30,)
    assert d.with_label_context().context_shape == (k,) or d.num_classes < k


# ---------------------------------------------------------------------------
# toys: exact densities and entropies
# ---------------------------------------------------------------------------

# (name, half side of the grid, grid step, tolerance on the mass): the density is negligible
# outside the grid and smooth at the scale of the step, where the midpoint rule is very
# accurate (for the pinwheel its error is O(h^4): 4e-6 at h = 0.1, 4e-9 at h = 0.02).
_GRIDS = [
    ("two_moons", 3.0, 0.04, 1e-8),
    ("eight_gaussians", 5.0, 0.08, 1e-8),
    ("rings", 4.0, 0.04, 1e-8),
    ("two_spirals", 4.2, 0.1, 1e-6),
    ("pinwheel", 6.0, 0.1, 1e-5),
]


@pytest.mark.parametrize(("name", "half", "h", "tol"), _GRIDS)
def test_toy_log_prob_is_the_density_of_the_samples(
    name: str, half: float, h: float, tol: float
) -> None:
    # mass 1, and the moments of p (midpoint rule) agree with the sample moments
    g = torch.arange(-half + h / 2, half, h, dtype=torch.float64)
    z = torch.stack(torch.meshgrid(g, g, indexing="ij"), dim=-1).reshape(-1, 2)
    w = toy_log_prob(name, z).exp() * h * h
    assert abs(w.sum().item() - 1) < tol
    x = toy(name, 20_000, seed=9, dtype=torch.float64)

    def features(v: torch.Tensor) -> torch.Tensor:
        a, b = v[:, 0], v[:, 1]
        return torch.stack([a, b, a * a, b * b, a * b, torch.sin(2 * a + b)], dim=-1)

    exact = (w[:, None] * features(z)).sum(0)
    f = features(x)
    se = f.std(0) / math.sqrt(len(x))
    assert ((f.mean(0) - exact).abs() < 4.5 * se).all(), (f.mean(0), exact, se)


def test_checkerboard_log_prob() -> None:
    x = torch.tensor([[0.5, 0.5], [0.5, 2.5], [-3.0, -3.0], [4.5, 0.0], [-1.5, 1.0]])
    expected = [-math.log(32), -math.inf, -math.log(32), -math.inf, -math.inf]
    assert toy_log_prob("checkerboard", x).tolist() == pytest.approx(expected)


def test_toy_log_prob_shapes_and_errors() -> None:
    x = toy("rings", 12, dtype=torch.float64).reshape(3, 4, 2)
    lp = toy_log_prob("rings", x)
    assert lp.shape == (3, 4) and lp.dtype == torch.float64
    assert toy_log_prob("rings", x[:1, :1].float()).dtype == torch.float32
    with pytest.raises(ValueError, match=r"x: expected a tensor of shape \(\.\.\., 2\)"):
        toy_log_prob("rings", torch.zeros(3, 3))
    with pytest.raises(ValueError, match="NaN"):
        toy_log_prob("rings", torch.full((1, 2), math.nan))


def _moons_density_quad(x: tuple[float, float]) -> float:
    # independent: scipy's adaptive quadrature of (1/2)(1/pi) N(x; c_m(t), 0.1^2 I) over t
    def f(t: float, m: int) -> float:
        c = (math.cos(t), math.sin(t)) if m == 0 else (1 - math.cos(t), 0.5 - math.sin(t))
        sq = (x[0] - c[0]) ** 2 + (x[1] - c[1]) ** 2
        return math.exp(-sq / 0.02) / (2 * math.pi * 0.01) / (2 * math.pi)

    edges = np.linspace(0, np.pi, 9)
    return sum(
        integrate.quad(f, a, b, args=(m,), epsabs=1e-15, epsrel=1e-9, limit=200)[0]
        for m in (0, 1)
        for a, b in itertools.pairwise(edges)
    )


def _spirals_density_quad(x: tuple[float, float]) -> float:
    # independent: p(x) = 1/2 sum_s int p(n) prod_i q(s x_i - c_i(n)/3) dn, with p(n) = 2n/(3pi)^2
    # and q the density of U(0, 1/6) + N(0, 0.1^2), integrated by scipy's adaptive quadrature
    def q(e: float) -> float:  # 6 (Phi(e / 0.1) - Phi((e - 1/6) / 0.1))
        r = 0.1 * math.sqrt(2)
        return 3 * (math.erfc((e - 1 / 6) / r) - math.erfc(e / r))

    def f(n: float, s: float) -> float:
        c0, c1 = -n * math.cos(n) / 3, n * math.sin(n) / 3
        return 2 * n / (3 * math.pi) ** 2 * q(s * x[0] - c0) * q(s * x[1] - c1)

    edges = np.linspace(0, 3 * np.pi, 61)
    return 0.5 * sum(
        integrate.quad(f, a, b, args=(s,), epsabs=1e-15, epsrel=1e-9, limit=200)[0]
        for s in (1.0, -1.0)
        for a, b in itertools.pairwise(edges)
    )


def test_quadrature_densities_against_scipy() -> None:
    for name, reference in [
        ("two_moons", _moons_density_quad),
        ("two_spirals", _spirals_density_quad),
    ]:
        x = toy(name, 4, seed=2, dtype=torch.float64)
        x = torch.cat([x, torch.tensor([[0.0, 0.0], [0.3, -0.2]], dtype=torch.float64)])
        ours = toy_log_prob(name, x)
        ref = torch.tensor([math.log(reference(p)) for p in x.tolist()], dtype=torch.float64)
        assert torch.allclose(ours, ref, atol=1e-4, rtol=0), (name, ours - ref)


def test_rings_bessel_form_against_angle_quadrature() -> None:
    # the closed form through I0 against a brute-force sum over 20000 angles
    x = toy("rings", 50, seed=3, dtype=torch.float64)
    theta = torch.linspace(0, 2 * math.pi, 20_001, dtype=torch.float64)[:-1]
    unit = torch.stack([theta.cos(), theta.sin()], dim=-1)
    p = 0
    for r in (0.75, 1.5, 2.25, 3.0):
        sq = (x[:, None, :] - r * unit).square().sum(-1)
        p = p + torch.exp(-0.5 * sq / 0.08**2).mean(-1) / (2 * math.pi * 0.08**2) / 4
    assert torch.allclose(toy_log_prob("rings", x), p.log(), atol=1e-8)


@pytest.mark.parametrize(
    ("name", "n"),
    [
        ("two_moons", 20_000),
        ("eight_gaussians", 50_000),
        ("checkerboard", 1_000),
        ("rings", 50_000),
        ("two_spirals", 3_000),
        ("pinwheel", 10_000),
    ],
)
def test_entropy_estimate_agrees_with_hard_coded(name: str, n: int) -> None:
    h, se = estimate_toy_entropy(name, n, seed=77)
    if name == "checkerboard":
        assert se < 1e-12 and h == pytest.approx(math.log(32), abs=1e-12)
        assert toy_entropy(name) == pytest.approx(math.log(32), abs=1e-12)
    else:
        assert 0 < se < 0.02
        assert abs(h - toy_entropy(name)) < 4 * math.hypot(se, 0.001), (h, se)


def test_eight_gaussians_entropy_below_the_no_overlap_value() -> None:
    # H = log 8 + log(2 pi e s^2) - H(k | x); the overlap of the components makes H(k | x) > 0
    s = 1 / (2 * math.sqrt(2))
    no_overlap = math.log(8) + math.log(2 * math.pi * math.e * s**2)
    assert 0 < no_overlap - toy_entropy("eight_gaussians") < 0.02
    with pytest.raises(ValueError, match="num_samples"):
        estimate_toy_entropy("rings", 1)


# ---------------------------------------------------------------------------
# energies
# ---------------------------------------------------------------------------

_DESIGN_LOG_Z = {"U1": 1.8775, "U2": 2.083, "U3": 2.642, "U4": 2.685}


@pytest.mark.parametrize("name", ENERGY_NAMES)
def test_log_normalizer_matches_table(name: str) -> None:
    value = log_normalizer(name, steps=1001)
    assert value == pytest.approx(ENERGY_LOG_Z[name], abs=1e-4)
    assert value == pytest.approx(_DESIGN_LOG_Z[name], abs=1e-2)


def test_log_z_u1_over_the_plane_polar() -> None:
    # independent: Gauss-Legendre in polar coordinates over r in [0, 5], theta in [0, 2 pi]
    nr, nt = np.polynomial.legendre.leggauss(200), np.polynomial.legendre.leggauss(400)
    r, wr = 2.5 * (nr[0] + 1), 2.5 * nr[1]
    t, wt = np.pi * (nt[0] + 1), np.pi * nt[1]
    rr, tt = np.meshgrid(r, t, indexing="ij")
    z = torch.from_numpy(np.stack([rr * np.cos(tt), rr * np.sin(tt)], axis=-1))
    f = torch.exp(energy_log_density("U1")(z)).numpy()
    mass = np.einsum("i,j,ij->", wr, wt, f * rr)
    assert math.log(mass) == pytest.approx(ENERGY_LOG_Z["U1"], abs=1e-4)
    # U1 is normalizable: a larger box adds nothing
    assert log_normalizer("U1", box=6.0, steps=601) == pytest.approx(
        log_normalizer("U1", steps=401), abs=1e-6
    )


def _gauss_mass(mean: float, std: float, box: float = 4.0) -> float:
    # int_{-box}^{box} exp(-(z2 - mean)^2 / (2 std^2)) dz2
    return (
        std
        * math.sqrt(2 * math.pi)
        * (special.ndtr((box - mean) / std) - special.ndtr((-box - mean) / std))
    )


def test_log_z_u2_u4_on_the_box_semi_analytic() -> None:
    # independent: the z2 integral in closed form, then scipy's adaptive quadrature in z1
    def w1(a: float) -> float:
        return math.sin(2 * math.pi * a / 4)

    def w2(a: float) -> float:
        return 3 * math.exp(-0.5 * ((a - 1) / 0.6) ** 2)

    def w3(a: float) -> float:
        return 3 * special.expit((a - 1) / 0.3)

    inner = {
        "U2": lambda a: _gauss_mass(w1(a), 0.4),
        "U3": lambda a: _gauss_mass(w1(a), 0.35) + _gauss_mass(w1(a) - w2(a), 0.35),
        "U4": lambda a: _gauss_mass(w1(a), 0.4) + _gauss_mass(w1(a) - w3(a), 0.35),
    }
    for name, f in inner.items():
        mass = integrate.quad(f, -4, 4, limit=200, epsabs=0, epsrel=1e-11)[0]
        assert math.log(mass) == pytest.approx(ENERGY_LOG_Z[name], abs=1e-4), name
    # not normalizable: U2's mass grows with the range of z1 (box 6 vs 4: + log 1.5)
    grow = log_normalizer("U2", box=6.0, steps=601) - log_normalizer("U2", steps=401)
    assert grow == pytest.approx(math.log(1.5), abs=1e-6)


def test_energy_functions() -> None:
    z = torch.randn(3, 5, 2, dtype=torch.float64)
    for name in ENERGY_NAMES:
        u = getattr(datasets, name)(z)
        assert u.shape == (3, 5) and torch.isfinite(u).all()
        assert torch.equal(energy_log_density(name)(z), -u)
    # values at hand-computed points
    a = torch.tensor([2.0, 0.0], dtype=torch.float64)
    expected_u1 = -math.log(1 + math.exp(-0.5 * (4 / 0.6) ** 2))
    assert datasets.U1(a).item() == pytest.approx(expected_u1, abs=1e-12)
    b = torch.tensor([1.0, 1.0], dtype=torch.float64)  # w1 = 1 there, so U2 = 0
    assert datasets.U2(b).item() == pytest.approx(0.0, abs=1e-12)
    c = torch.tensor([1.0, -2.0], dtype=torch.float64)  # w1 = 1, w2 = 3: second bump at z2 = -2
    u3 = -math.log(math.exp(-0.5 * (3 / 0.35) ** 2) + 1)
    assert datasets.U3(c).item() == pytest.approx(u3, abs=1e-12)
    d = torch.tensor([1.0, -0.5], dtype=torch.float64)  # w1 = 1, w3 = 1.5: second bump at -0.5
    u4 = -math.log(math.exp(-0.5 * (1.5 / 0.4) ** 2) + 1)
    assert datasets.U4(d).item() == pytest.approx(u4, abs=1e-12)
    with pytest.raises(ValueError, match="name: expected one of"):
        energy_log_density("U5")
    with pytest.raises(ValueError, match=r"z: expected a tensor of shape \(\.\.\., 2\)"):
        datasets.U1(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="steps"):
        log_normalizer("U1", steps=2)


# ---------------------------------------------------------------------------
# digits
# ---------------------------------------------------------------------------


def test_digits() -> None:
    from sklearn.datasets import load_digits

    d = digits()
    assert d.name == "digits" and d.num_levels == 17 and d.event_shape == (1, 8, 8)
    assert (len(d.train), len(d.validation), len(d.test)) == (1257, 180, 360)
    for x, y in [
        (d.train, d.train_labels),
        (d.validation, d.validation_labels),
        (d.test, d.test_labels),
    ]:
        assert x.dtype == torch.uint8 and x.min() >= 0 and x.max() <= 16
        assert (
            y.dtype == torch.int64 and y.shape == (len(x),) and set(y.tolist()) <= set(range(10))
        )
    assert d.train.max() == 16
    # disjoint and covering: the splits together are exactly the 1797 images, each once
    bunch = load_digits()
    original = Counter(
        (img.astype(np.uint8).tobytes(), int(lab))
        for img, lab in zip(bunch.images, bunch.target, strict=True)
    )
    ours = Counter(
        (img.numpy().tobytes(), int(lab))
        for x, y in [
            (d.train, d.train_labels),
            (d.validation, d.validation_labels),
            (d.test, d.test_labels),
        ]
        for img, lab in zip(x[:, 0], y, strict=True)
    )
    assert ours == original
    # the documented split: permutation by RandomState(seed), test first, then validation
    perm = np.random.RandomState(1).permutation(1797)
    d1 = digits(seed=1)
    assert np.array_equal(d1.test[:, 0].numpy(), bunch.images[perm[:360]].astype(np.uint8))
    assert np.array_equal(d1.validation_labels.numpy(), bunch.target[perm[360:540]])
    assert torch.equal(digits(seed=1).train, d1.train)
    assert not torch.equal(d1.train, d.train)
    with pytest.raises(ValueError, match="seed"):
        digits(seed=-1)


# ---------------------------------------------------------------------------
# IDX files and MNIST
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_idx_round_trip(tmp_path: Path, suffix: str, dtype: type) -> None:
    rng = np.random.default_rng(0)
    array = (rng.normal(size=(3, 4, 5)) * 50).astype(dtype)
    path = write_idx(tmp_path / f"a-idx3{suffix}", array)
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.shape == (3, 4, 5)
    assert np.array_equal(back, array)
    raw = path.read_bytes()
    assert (raw[:2] == b"\x1f\x8b") == (suffix == ".gz")
    assert torch.equal(
        torch.from_numpy(read_idx(write_idx(path, torch.from_numpy(array)))),
        torch.from_numpy(array),
    )


def test_idx_header_bytes(tmp_path: Path) -> None:
    write_idx(tmp_path / "i", np.zeros((2, 3, 4), dtype=np.uint8))
    assert (tmp_path / "i").read_bytes()[:16] == bytes.fromhex("00000803000000020000000300000004")
    write_idx(tmp_path / "j", np.array([258], dtype=np.int32))
    assert (tmp_path / "j").read_bytes() == bytes.fromhex("00000c010000000100000102")
    with pytest.raises(ValueError, match="dtype"):
        write_idx(tmp_path / "k", np.zeros(3, dtype=np.int64))


def test_read_idx_errors(tmp_path: Path) -> None:
    good = write_idx(tmp_path / "good", np.arange(12, dtype=np.uint8).reshape(3, 4)).read_bytes()
    (tmp_path / "short").write_bytes(good[:-1])
    with pytest.raises(ValueError, match=r"short: IDX header says shape \(3, 4\)"):
        read_idx(tmp_path / "short")
    (tmp_path / "magic").write_bytes(b"\x01\x02\x08\x02" + good[4:])
    with pytest.raises(ValueError, match="magic: not an IDX file: magic number 0x01020802"):
        read_idx(tmp_path / "magic")
    (tmp_path / "type").write_bytes(b"\x00\x00\x07\x02" + good[4:])
    with pytest.raises(ValueError, match="0x00000702"):
        read_idx(tmp_path / "type")
    (tmp_path / "bad.gz").write_bytes(gzip.compress(good)[:-8])
    with pytest.raises(ValueError, match="corrupt gzip"):
        read_idx(tmp_path / "bad.gz")
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "absent")


def _write_mnist(folder: Path, n_train: int = 30, n_test: int = 10, gz: bool = True) -> dict:
    rng = np.random.default_rng(1)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for i, (stem, a) in enumerate(arrays.items()):
        write_idx(folder / (stem + (".gz" if gz and i % 2 == 0 else "")), a)  # mixed on purpose
    return arrays


def test_mnist_from_tiny_files(tmp_path: Path) -> None:
    arrays = _write_mnist(tmp_path)
    d = mnist(tmp_path, validation_size=5)
    assert d.name == "mnist" and d.num_levels == 256 and d.event_shape == (1, 28, 28)
    assert d.train.dtype == torch.uint8 and d.train_labels.dtype == torch.int64
    images, labels = arrays["train-images-idx3-ubyte"], arrays["train-labels-idx1-ubyte"]
    assert np.array_equal(d.train[:, 0].numpy(), images[:25])
    assert np.array_equal(d.validation[:, 0].numpy(), images[25:])
    assert np.array_equal(d.train_labels.numpy(), labels[:25])
    assert np.array_equal(d.validation_labels.numpy(), labels[25:])
    assert np.array_equal(d.test[:, 0].numpy(), arrays["t10k-images-idx3-ubyte"])
    assert np.array_equal(d.test_labels.numpy(), arrays["t10k-labels-idx1-ubyte"])
    assert len(mnist(tmp_path, validation_size=0).validation) == 0
    conditional = d.with_label_context()  # the files' labels, one-hot
    assert conditional.context_shape == (
        1 + int(max(labels.max(), arrays["t10k-labels-idx1-ubyte"].max())),
    )
    assert torch.equal(conditional.test_context.argmax(-1), d.test_labels)
    with pytest.raises(
        ValueError,
        match=r"validation_size \(of 30 training images\): expected an int in \[0, 29\]",
    ):
        mnist(tmp_path, validation_size=30)
    loaded = datasets.load("mnist", path=tmp_path, validation_size=5)
    assert torch.equal(loaded.train, d.train)


def test_mnist_missing_files(tmp_path: Path) -> None:
    _write_mnist(tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte.gz").unlink()
    (tmp_path / "train-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError) as info:
        mnist(tmp_path)
    message = str(info.value)
    assert "t10k-images-idx3-ubyte" in message and "train-labels-idx1-ubyte" in message
    assert str(tmp_path) in message and "train-images" not in message.split("(")[0]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        mnist(tmp_path / "nowhere")


def test_mnist_bad_magic_and_sizes(tmp_path: Path) -> None:
    arrays = _write_mnist(tmp_path, gz=False)
    # a label file where the test images should be: magic 0x00000801, not 0x00000803
    write_idx(tmp_path / "t10k-images-idx3-ubyte", arrays["t10k-labels-idx1-ubyte"])
    with pytest.raises(
        ValueError,
        match=r"t10k-images-idx3-ubyte: expected IDX magic number 0x00000803, found "
        r"0x00000801",
    ):
        mnist(tmp_path)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", arrays["t10k-images-idx3-ubyte"][:9])
    with pytest.raises(ValueError, match="has 9 images but t10k-labels-idx1-ubyte has 10"):
        mnist(tmp_path)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((10, 14, 14), dtype=np.uint8))
    with pytest.raises(ValueError, match="test images"):
        mnist(tmp_path)


# ---------------------------------------------------------------------------
# load
# ---------------------------------------------------------------------------


def test_load() -> None:
    assert torch.equal(datasets.load("digits").test, digits().test)
    d = datasets.load("rings", num_train=20, num_validation=5, num_test=5, seed=2)
    assert torch.equal(
        d.train, toy_dataset("rings", num_train=20, num_validation=5, num_test=5, seed=2).train
    )
    with pytest.raises(ValueError, match="name: expected one of") as info:
        datasets.load("cifar10")
    assert all(n in str(info.value) for n in ("digits", "mnist", *TOY_NAMES))
    with pytest.raises(ValueError, match="path"):
        datasets.load("mnist")
    assert set(datasets.__all__) <= set(dir(datasets))
