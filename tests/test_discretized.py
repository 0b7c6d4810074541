"""Discretized distributions: the shared harness, exactness against mpmath / scipy,
extreme parameters, sampling, moments, enumeration and error messages."""

from __future__ import annotations

import itertools
import math
from typing import ClassVar

import mpmath as mp
import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import scipy.stats
import torch
from harness import DistributionCase, DistributionHarness
from pyro.infer import TraceEnum_ELBO, config_enumerate

from pyro_dgm.distributions import Discretized, DiscretizedLogistic, DiscretizedLogisticMixture

F64 = torch.float64
L = 17


def t64(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=F64)


def _invalid(num_levels: int) -> list[torch.Tensor]:
    return [t64(3.5), t64(-1.0), t64(float(num_levels)), t64(float("nan")), t64(2.0, 0.25)]


# ---------------------------------------------------------------------------
# harness: total mass sums to one (also at extreme parameters), support, expand,
# validation
# ---------------------------------------------------------------------------

EXTREME_LOCS = t64(-50.0, 8.2, L + 50.0, 0.0, 16.0, 3.5)
EXTREME_SCALES = t64(1e-3, 1e3, 1e-3, 1e-4, 1e3, 1e-4)


class TestDiscretizedHarness(DistributionHarness):
    CASES: ClassVar[list[DistributionCase]] = [
        DistributionCase(
            "logistic",
            lambda validate_args: DiscretizedLogistic(
                t64(3.3), t64(1.7), L, validate_args=validate_args
            ),
            invalid_values=_invalid(L),
        ),
        DistributionCase(
            "logistic_extremes",
            lambda validate_args: DiscretizedLogistic(
                EXTREME_LOCS, EXTREME_SCALES, L, validate_args=validate_args
            ),
            invalid_values=_invalid(L),
        ),
        DistributionCase(
            "logistic_batch_2x3",
            lambda validate_args: DiscretizedLogistic(
                t64(-3.0, 0.5, 7.9, 12.0, 16.5, 30.0).reshape(2, 3),
                t64(0.1, 2.0, 0.7, 5.0, 0.01, 3.0).reshape(2, 3),
                L,
                validate_args=validate_args,
            ),
            invalid_values=_invalid(L),
        ),
        DistributionCase(
            "logistic_two_levels",
            lambda validate_args: DiscretizedLogistic(
                t64(0.2, 0.5, 40.0), t64(0.3, 1e-3, 1e3), 2, validate_args=validate_args
            ),
            invalid_values=_invalid(2),
        ),
        DistributionCase(
            "logistic_256_levels",
            lambda validate_args: DiscretizedLogistic(
                t64(127.5, -300.0, 255.0), t64(1e-3, 20.0, 1e3), 256, validate_args=validate_args
            ),
            invalid_values=_invalid(256),
        ),
        DistributionCase(
            "mixture",
            lambda validate_args: DiscretizedLogisticMixture(
                t64(0.0, 1.0, -2.0, 3.0, 0.5, -1.0, 10.0, -10.0, 0.0, 2.0, 2.0, 2.0).reshape(4, 3),
                t64(-50.0, 3.3, 67.0, 8.0, 8.0, 8.0, 0.0, 16.0, 5.5, 1.0, 9.0, 15.0).reshape(4, 3),
                t64(1e-4, 1.0, 1e3, 1e-3, 1.0, 1e3, 1e-2, 1e-2, 2.0, 0.5, 0.5, 0.5).reshape(4, 3),
                L,
                validate_args=validate_args,
            ),
            invalid_values=_invalid(L),
        ),
        DistributionCase(
            "mixture_single_component",
            lambda validate_args: DiscretizedLogisticMixture(
                torch.zeros(1, dtype=F64), t64(4.2), t64(0.9), L, validate_args=validate_args
            ),
            invalid_values=_invalid(L),
        ),
        DistributionCase(
            "normal_extremes",
            lambda validate_args: Discretized(
                dist.Normal(EXTREME_LOCS, EXTREME_SCALES), L, validate_args=validate_args
            ),
            invalid_values=_invalid(L),
        ),
        DistributionCase(
            "logistic_base",
            lambda validate_args: Discretized(
                dist.Logistic(EXTREME_LOCS, EXTREME_SCALES), L, validate_args=validate_args
            ),
            invalid_values=_invalid(L),
        ),
        DistributionCase(
            "laplace_generic_cdf",
            lambda validate_args: Discretized(
                dist.Laplace(t64(-4.0, 5.2, 30.0), t64(0.3, 2.0, 1e3)),
                L,
                validate_args=validate_args,
            ),
            invalid_values=_invalid(L),
        ),
        DistributionCase(
            "lognormal_generic_positive_support",
            lambda validate_args: Discretized(
                dist.LogNormal(t64(0.5, 2.0), t64(0.4, 1.0)), L, validate_args=validate_args
            ),
            invalid_values=_invalid(L),
        ),
    ]


# ---------------------------------------------------------------------------
# exactness against independent high-precision references
# ---------------------------------------------------------------------------

mp.mp.dps = 50
GRID = list(
    itertools.product([-50.0, -0.3, 3.3, 8.0, 16.2, L + 50.0], [1e-4, 1e-3, 0.3, 1.0, 30.0, 1e3])
)


def _bin_ends(y: int, loc: float, scale: float) -> tuple[mp.mpf, mp.mpf]:
    loc, scale = mp.mpf(loc), mp.mpf(scale)
    return (y - mp.mpf(0.5) - loc) / scale, (y + mp.mpf(0.5) - loc) / scale


def _mp_log_mass(cdf, y: int, loc: float, scale: float, num_levels: int = L) -> float:
    """log(F(b) - F(a)) in 50-digit arithmetic, taken in the upper tail as S(a) - S(b)
    (S(x) = F(-x) for these symmetric cdfs) so that no digits cancel."""
    a, b = _bin_ends(y, loc, scale)
    if y == 0:
        return float(mp.log(cdf(b)))
    if y == num_levels - 1:
        return float(mp.log(cdf(-a)))
    if a + b > 0:
        return float(mp.log(cdf(-a) - cdf(-b)))
    return float(mp.log(cdf(b) - cdf(a)))


def _mp_logistic_cdf(x: mp.mpf) -> mp.mpf:
    return 1 / (1 + mp.exp(-x))


def _reference(cdf, loc: float, scale: float) -> torch.Tensor:
    return torch.tensor([_mp_log_mass(cdf, y, loc, scale) for y in range(L)], dtype=F64)


LEVELS = torch.arange(L, dtype=F64)


def _assert_close_log(got: torch.Tensor, expected: torch.Tensor, rtol: float, what: str) -> None:
    """|got - expected| <= rtol * max(1, |expected|), elementwise; both finite."""
    assert torch.isfinite(got).all(), f"{what}: non-finite log-probs {got}"
    err = ((got - expected).abs() / expected.abs().clamp(min=1.0)).max().item()
    assert err <= rtol, f"{what}: relative error {err:.3g} > {rtol:g}\n{got}\n{expected}"


def test_logistic_is_exact_against_mpmath() -> None:
    for loc, scale in GRID:
        d = DiscretizedLogistic(t64(loc), t64(scale), L)
        expected = _reference(_mp_logistic_cdf, loc, scale)
        _assert_close_log(d.log_prob(LEVELS), expected, 1e-13, f"logistic({loc}, {scale})")


def test_normal_is_accurate_against_mpmath() -> None:
    # the docstring claims a few ulps, and ~1e-13 relative at sigma = 1e3
    for loc, scale in GRID:
        d = Discretized(dist.Normal(t64(loc), t64(scale)), L)
        tol = 2e-13 if scale > 100 else 1e-13
        expected = _reference(mp.ncdf, loc, scale)
        _assert_close_log(d.log_prob(LEVELS), expected, tol, f"normal({loc}, {scale})")


def test_far_away_loc_puts_the_mass_on_the_edge_bin() -> None:
    for dtype in (torch.float32, F64):
        below = DiscretizedLogistic(torch.tensor(-50.0, dtype=dtype), 1e-4, L)
        above = DiscretizedLogistic(torch.tensor(L + 50.0, dtype=dtype), 1e-4, L)
        lp_below = below.log_prob(LEVELS.to(dtype))
        lp_above = above.log_prob(LEVELS.to(dtype))
        assert lp_below[0] == 0.0 and lp_above[-1] == 0.0
        # log sigma(-a) = -a up to e^-a: y = L - 1 under loc = -50 is 655000 scales away
        assert lp_below[-1].item() == pytest.approx(-(L - 1.5 + 50.0) / 1e-4, rel=1e-6)
        assert lp_above[0].item() == pytest.approx(-(L + 50.0 - 0.5) / 1e-4, rel=1e-6)
        assert torch.isfinite(lp_below).all() and torch.isfinite(lp_above).all()
        normal = Discretized(dist.Normal(torch.tensor(-50.0, dtype=dtype), 1e-4), L)
        lp = normal.log_prob(LEVELS.to(dtype))
        assert lp[0] == 0.0 and torch.isfinite(lp).all()
        z = (L - 1.5 + 50.0) / 1e-4  # log(1 - Phi(z)) = -z^2/2 - log(z sqrt(2 pi)) + O(z^-2)
        assert lp[-1].item() == pytest.approx(-(z**2) / 2 - math.log(z * math.sqrt(2 * math.pi)))


def test_agrees_with_scipy_where_cdf_differences_are_accurate() -> None:
    loc, scale = t64(-2.0, 3.3, 8.0, 15.7, 20.0), t64(0.7, 1.0, 2.5, 4.0, 1.5)
    y = LEVELS[:, None]
    a, b = ((y - 0.5 - loc) / scale).numpy(), ((y + 0.5 - loc) / scale).numpy()
    for law, d in [
        (scipy.stats.logistic, DiscretizedLogistic(loc, scale, L)),
        (scipy.stats.norm, Discretized(dist.Normal(loc, scale), L)),
        (scipy.stats.laplace, Discretized(dist.Laplace(loc, scale), L)),
    ]:
        mass = law.cdf(b) - law.cdf(a)
        mass[0] = law.cdf(b[0])
        mass[-1] = law.sf(a[-1])
        reliable = mass > 1e-6  # absolute error 1e-16 => relative 1e-10 at most
        assert reliable.sum() > 40
        got = d.log_prob(y).numpy()
        np.testing.assert_allclose(got[reliable], np.log(mass[reliable]), rtol=0, atol=1e-9)


# ---------------------------------------------------------------------------
# gradients
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, F64], ids=["f32", "f64"])
def test_gradients_are_finite_at_tiny_scales_and_far_values(dtype: torch.dtype) -> None:
    locs = torch.tensor([-50.0, 3.3, 3.0, L + 50.0], dtype=dtype)
    for scale_value in (1e-4, 1.0, 1e3):
        loc = locs.clone().requires_grad_()
        scale = torch.full_like(locs, scale_value).requires_grad_()
        logits = torch.zeros(4, 2, dtype=dtype, requires_grad=True)
        y = LEVELS.to(dtype)[:, None]
        for d in [
            DiscretizedLogistic(loc, scale, L),
            Discretized(dist.Normal(loc, scale), L),
            Discretized(dist.Logistic(loc, scale), L),
            DiscretizedLogisticMixture(
                logits, torch.stack([loc, loc + 5], -1), torch.stack([scale, scale], -1), L
            ),
        ]:
            lp = d.log_prob(y)
            assert torch.isfinite(lp).all(), f"{d}: {lp}"
            grads = torch.autograd.grad(lp.sum(), [loc, scale])
            for g in grads:
                assert torch.isfinite(g).all(), f"{d} at scale {scale_value}: gradient {g}"


@pytest.mark.parametrize("dtype", [torch.float32, F64], ids=["f32", "f64"])
def test_normal_tail_gradient_matches_mpmath(dtype: torch.dtype) -> None:
    """d/dloc log Phi((1/2 - loc)/s) = -phi(b)/(s Phi(b)) far in the tail, where
    torch.special.log_ndtr's own gradient is off (and 0 in float32)."""
    for loc_value, scale_value in [(50.0, 1e-4), (3.0, 1e-3), (2.0, 1.0), (-3.0, 1.0)]:
        loc = torch.tensor(loc_value, dtype=dtype, requires_grad=True)
        scale = torch.tensor(scale_value, dtype=dtype)
        lp = Discretized(dist.Normal(loc, scale), L).log_prob(torch.tensor(0, dtype=dtype))
        (grad,) = torch.autograd.grad(lp, loc)
        b = (mp.mpf(0.5) - loc_value) / mp.mpf(scale_value)
        expected = float(-mp.npdf(b) / mp.ncdf(b) / mp.mpf(scale_value))
        rtol = 1e-10 if dtype == F64 else 1e-4
        assert grad.item() == pytest.approx(expected, rel=rtol), (loc_value, scale_value)


def test_gradcheck_float64() -> None:
    y = t64(0.0, 3.0, 9.0, 16.0)[:, None]

    def logistic(loc, scale):
        return DiscretizedLogistic(loc, scale, L, validate_args=False).log_prob(y)

    def normal(loc, scale):
        return Discretized(dist.Normal(loc, scale, validate_args=False), L).log_prob(y)

    def mixture(logits, loc, scale):
        d = DiscretizedLogisticMixture(logits, loc, scale, L, validate_args=False)
        return d.log_prob(y)

    for loc, scale in [(t64(3.3, -20.0, 40.0), t64(1.3, 0.01, 0.05)), (t64(8.0), t64(300.0))]:
        args = (loc.requires_grad_(), scale.requires_grad_())
        assert torch.autograd.gradcheck(logistic, args)
        assert torch.autograd.gradcheck(normal, args)
    logits = t64(0.3, -1.0, 2.0).requires_grad_()
    locs, scales = t64(2.0, 7.5, 40.0).requires_grad_(), t64(1.0, 0.2, 3.0).requires_grad_()
    assert torch.autograd.gradcheck(mixture, (logits, locs, scales))


def test_gradient_reaches_every_parameter() -> None:
    logits = torch.randn(5, 3, requires_grad=True)
    locs = (torch.randn(5, 3) * 4 + 8).requires_grad_()
    scales = torch.rand(5, 3).add(0.5).requires_grad_()
    y = torch.randint(0, L, (10, 5))
    DiscretizedLogisticMixture(logits, locs, scales, L).log_prob(y).sum().backward()
    loc, scale = torch.tensor(4.0, requires_grad=True), torch.tensor(2.0, requires_grad=True)
    Discretized(dist.Normal(loc, scale), L).log_prob(y).sum().backward()
    for p in (logits, locs, scales, loc, scale):
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


# ---------------------------------------------------------------------------
# the three classes agree with each other and with PixelCNN++
# ---------------------------------------------------------------------------


def test_mixture_with_one_component_is_the_discretized_logistic() -> None:
    loc, scale = EXTREME_LOCS, EXTREME_SCALES
    single = DiscretizedLogistic(loc, scale, L)
    mixture = DiscretizedLogisticMixture(
        torch.randn(6, 1, dtype=F64), loc[:, None], scale[:, None], L
    )
    y = LEVELS[:, None]
    torch.testing.assert_close(mixture.log_prob(y), single.log_prob(y), rtol=1e-14, atol=1e-14)


def test_mixture_is_the_weighted_sum_of_components() -> None:
    logits, locs, scales = t64(0.5, -1.0, 2.0), t64(1.3, 7.0, 12.5), t64(0.8, 3.0, 1.5)
    weights = torch.softmax(logits, 0)
    pmf = sum(
        w * DiscretizedLogistic(m, s, L).log_prob(LEVELS).exp()
        for w, m, s in zip(weights, locs, scales, strict=True)
    )
    got = DiscretizedLogisticMixture(logits, locs, scales, L).log_prob(LEVELS)
    torch.testing.assert_close(got, pmf.log(), rtol=1e-13, atol=1e-13)
    # and far from every component, where the direct sum underflows, still finite
    far = DiscretizedLogisticMixture(logits, locs - 500, scales * 1e-3, L).log_prob(LEVELS)
    assert torch.isfinite(far).all() and far[-1] < -1e5


def test_discretized_logistic_base_equals_discretized_logistic() -> None:
    y = LEVELS[:, None]
    exact = DiscretizedLogistic(EXTREME_LOCS, EXTREME_SCALES, L).log_prob(y)
    via_base = Discretized(dist.Logistic(EXTREME_LOCS, EXTREME_SCALES), L).log_prob(y)
    torch.testing.assert_close(via_base, exact, rtol=1e-10, atol=1e-10)


class _OpaqueLogistic(dist.Logistic):
    """A Logistic whose cdf is not the one the fast path knows: takes the generic path."""

    def cdf(self, value: torch.Tensor) -> torch.Tensor:
        return super().cdf(value)


def test_generic_cdf_path_is_accurate_where_masses_are_not_tiny() -> None:
    loc, scale = t64(-2.0, 3.3, 8.0, 15.7), t64(0.7, 1.0, 2.5, 4.0)
    y = LEVELS[:, None]
    exact = DiscretizedLogistic(loc, scale, L).log_prob(y)
    generic = Discretized(_OpaqueLogistic(loc, scale), L).log_prob(y)
    reliable = exact > math.log(1e-6)
    torch.testing.assert_close(generic[reliable], exact[reliable], rtol=0, atol=1e-9)


def test_generic_cdf_path_gives_minus_inf_not_nan_when_the_mass_underflows() -> None:
    loc = torch.tensor(-200.0, dtype=F64, requires_grad=True)
    d = Discretized(dist.Laplace(loc, t64(1.0)), L)
    lp = d.log_prob(LEVELS)
    assert lp[0] == 0.0 and torch.isneginf(lp[1:]).all()
    assert not torch.isnan(lp).any()


def _pixelcnn_log_prob(
    x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor, levels: int
) -> torch.Tensor:
    """PixelCNN++'s formula (pixel_cnn_pp/nn.py, discretized_logistic_mix_loss), one
    component, generalised from 256 to `levels` levels, with its mid-bin fallback."""
    half_bin = 1.0 / (levels - 1)
    centered = x - mean
    inv_stdv = torch.exp(-log_scale)
    plus_in = inv_stdv * (centered + half_bin)
    min_in = inv_stdv * (centered - half_bin)
    cdf_delta = torch.sigmoid(plus_in) - torch.sigmoid(min_in)
    log_cdf_plus = plus_in - torch.nn.functional.softplus(plus_in)
    log_one_minus_cdf_min = -torch.nn.functional.softplus(min_in)
    mid_in = inv_stdv * centered
    log_pdf_mid = mid_in - log_scale - 2.0 * torch.nn.functional.softplus(mid_in)
    interior = torch.where(
        cdf_delta > 1e-5,
        torch.log(torch.clamp(cdf_delta, min=1e-12)),
        log_pdf_mid - math.log((levels - 1) / 2),
    )
    return torch.where(
        x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_min, interior)
    )


def test_pixelcnn_scale_matches_pixelcnn_and_beats_its_fallback() -> None:
    levels = 256
    y = torch.arange(levels, dtype=F64)[:, None]
    x = 2 * y / (levels - 1) - 1
    mean, log_scale = t64(-0.6, 0.0, 0.35, 0.99), t64(-2.0, -4.5, -3.0, -1.0)
    ours = DiscretizedLogistic.from_pixelcnn_scale(mean, log_scale.exp(), levels).log_prob(y)
    theirs = _pixelcnn_log_prob(x, mean, log_scale, levels)
    no_fallback = (
        torch.sigmoid((x - mean + 1 / 255) / log_scale.exp())
        - torch.sigmoid((x - mean - 1 / 255) / log_scale.exp())
    ) > 1e-5
    no_fallback |= (y == 0) | (y == levels - 1)
    assert no_fallback.sum() > 100 and (~no_fallback).sum() > 100
    torch.testing.assert_close(ours[no_fallback], theirs[no_fallback], rtol=1e-10, atol=1e-10)
    # where PixelCNN++ falls back to the mid-bin density, ours stays exact
    rows, cols = (~no_fallback).nonzero(as_tuple=True)
    pick = torch.linspace(0, len(rows) - 1, 40).long()
    for r, c in zip(rows[pick].tolist(), cols[pick].tolist(), strict=True):
        loc = (mean[c].item() + 1) * (levels - 1) / 2
        scale = math.exp(log_scale[c].item()) * (levels - 1) / 2
        exact = _mp_log_mass(_mp_logistic_cdf, r, loc, scale, levels)
        our_err = abs(ours[r, c].item() - exact)
        their_err = abs(theirs[r, c].item() - exact)
        assert our_err <= 1e-12 * max(1.0, abs(exact))
        assert our_err <= their_err
    mixture = DiscretizedLogisticMixture.from_pixelcnn_scale(
        torch.zeros(4, 1, dtype=F64), mean[:, None], log_scale.exp()[:, None], levels
    )
    torch.testing.assert_close(mixture.log_prob(y), ours, rtol=1e-13, atol=1e-13)


# ---------------------------------------------------------------------------
# float32
# ---------------------------------------------------------------------------


def test_float32_follows_float64() -> None:
    y = LEVELS[:, None]
    wide = EXTREME_SCALES > 100
    for make, tol_narrow, tol_wide in [
        (lambda m, s: DiscretizedLogistic(m, s, L), 2e-7, 2e-7),
        # the normal path loses ~log10(scale) digits when bins are much narrower than scale
        (lambda m, s: Discretized(dist.Normal(m, s), L), 1e-6, 1e-4),
    ]:
        lp64 = make(EXTREME_LOCS, EXTREME_SCALES).log_prob(y)
        lp32 = make(EXTREME_LOCS.float(), EXTREME_SCALES.float()).log_prob(y.float())
        assert lp32.dtype == torch.float32
        _assert_close_log(lp32.double()[:, ~wide], lp64[:, ~wide], tol_narrow, "float32")
        _assert_close_log(lp32.double()[:, wide], lp64[:, wide], tol_wide, "float32, wide")


# ---------------------------------------------------------------------------
# sampling
# ---------------------------------------------------------------------------


def _chi_square(samples: torch.Tensor, log_pmf: torch.Tensor) -> tuple[float, float]:
    """Pearson's statistic over the levels and its 99.9% quantile (bins with expected
    count >= 5; the others pooled)."""
    n = samples.numel()
    counts = torch.bincount(samples.long().flatten(), minlength=len(log_pmf)).double()
    expected = n * log_pmf.exp()
    big = expected >= 5
    obs = torch.cat([counts[big], counts[~big].sum()[None]])
    exp = torch.cat([expected[big], expected[~big].sum()[None]])
    keep = exp > 0
    stat = ((obs[keep] - exp[keep]) ** 2 / exp[keep]).sum().item()
    return stat, float(scipy.stats.chi2.ppf(0.999, int(keep.sum()) - 1))


def test_sample_frequencies_match_the_pmf() -> None:
    levels = torch.arange(12, dtype=F64)
    for d in [
        DiscretizedLogistic(torch.tensor(5.3, dtype=F64), 2.0, 12),
        DiscretizedLogisticMixture(t64(0.0, 1.0), t64(1.0, 8.5), t64(0.7, 1.5), 12),
        Discretized(dist.Normal(torch.tensor(4.4, dtype=F64), 3.0), 12),
    ]:
        samples = d.sample((4000,))
        assert samples.dtype == F64 and samples.shape == (4000,)
        assert (samples == samples.round()).all()
        stat, limit = _chi_square(samples, d.log_prob(levels))
        assert stat < limit, f"{d}: chi-square {stat:.1f} >= {limit:.1f}"


def test_samples_at_extreme_parameters() -> None:
    d = DiscretizedLogistic(t64(-50.0, L + 50.0, 3.2, 9.0), t64(1e-4, 1e-4, 1e-4, 1e3), L)
    s = d.sample((500,))
    assert (s[:, 0] == 0).all() and (s[:, 1] == L - 1).all() and (s[:, 2] == 3).all()
    # scale 1e3: nearly all the mass in the two open edge bins, about half each
    edge = (s[:, 3] == 0) | (s[:, 3] == L - 1)
    assert edge.float().mean() > 0.97
    assert 0.4 < (s[:, 3] == 0).float().mean() < 0.6


# ---------------------------------------------------------------------------
# moments
# ---------------------------------------------------------------------------


def test_mean_variance_entropy_against_scipy_pmf() -> None:
    loc, scale = t64(-2.0, 3.3, 8.0, 15.7), t64(0.7, 1.0, 2.5, 4.0)
    y = np.arange(L)[:, None]
    a, b = (y - 0.5 - loc.numpy()) / scale.numpy(), (y + 0.5 - loc.numpy()) / scale.numpy()
    pmf = scipy.stats.logistic.cdf(b) - scipy.stats.logistic.cdf(a)
    pmf[0], pmf[-1] = scipy.stats.logistic.cdf(b[0]), scipy.stats.logistic.sf(a[-1])
    mean = (y * pmf).sum(0)
    variance = ((y - mean) ** 2 * pmf).sum(0)
    entropy = -(pmf * np.log(pmf)).sum(0)
    d = DiscretizedLogistic(loc, scale, L)
    np.testing.assert_allclose(d.mean.numpy(), mean, rtol=1e-12)
    np.testing.assert_allclose(d.variance.numpy(), variance, rtol=1e-12)
    np.testing.assert_allclose(d.entropy().numpy(), entropy, rtol=1e-12)
    assert d.mean.shape == d.variance.shape == d.entropy().shape == (4,)


def test_moments_far_from_the_edges_follow_sheppard() -> None:
    """With bins much narrower than the scale and the edges far away, the discretized
    mean is loc and the variance is the continuous one plus 1/12 (Sheppard's
    correction; the error is exponentially small in the scale)."""
    loc, scale = t64(127.3, 100.0), t64(3.0, 2.5)
    d = DiscretizedLogistic(loc, scale, 256)
    torch.testing.assert_close(d.mean, loc, rtol=1e-12, atol=0)
    torch.testing.assert_close(d.variance, scale**2 * math.pi**2 / 3 + 1 / 12, rtol=1e-10, atol=0)
    n = Discretized(dist.Normal(loc, scale), 256)
    torch.testing.assert_close(n.variance, scale**2 + 1 / 12, rtol=1e-10, atol=0)
    # at the edge, the open bin pulls the mean in: for loc = -50 every draw is 0
    assert DiscretizedLogistic(t64(-50.0), t64(1e-2), L).mean.item() == 0.0


# ---------------------------------------------------------------------------
# enumeration, shapes, Pyro integration
# ---------------------------------------------------------------------------


def _three_kinds(batch: int) -> list:
    loc = torch.linspace(2.0, 12.0, batch, dtype=F64)
    return [
        DiscretizedLogistic(loc, t64(1.5), L),
        DiscretizedLogisticMixture(
            torch.zeros(batch, 2, dtype=F64), torch.stack([loc, loc + 3], -1), t64(1.0, 2.0), L
        ),
        Discretized(dist.Normal(loc, t64(2.0)), L),
    ]


def test_enumerate_support_shapes() -> None:
    for d in _three_kinds(3):
        support = d.enumerate_support()
        assert support.shape == (L, 3) and support.dtype == F64
        assert (support[:, 1] == LEVELS).all()
        assert d.enumerate_support(expand=False).shape == (L, 1)
        assert d.has_enumerate_support and d.support.is_discrete
        assert d.log_prob(d.enumerate_support()).logsumexp(0).abs().max() < 1e-12


@pytest.mark.parametrize("kind", [0, 1, 2], ids=["logistic", "mixture", "normal"])
def test_trace_enum_elbo_marginalizes_the_levels(kind: int) -> None:
    x = t64(3.2, 7.9, 10.5)

    @config_enumerate
    def model() -> None:
        with pyro.plate("data", 3):
            y = pyro.sample("y", _three_kinds(3)[kind])
            pyro.sample("x", dist.Normal(y, 1.0), obs=x)

    def guide() -> None:
        pass

    loss = TraceEnum_ELBO(max_plate_nesting=1).loss(model, guide)
    prior = _three_kinds(3)[kind].log_prob(LEVELS[:, None])
    likelihood = dist.Normal(LEVELS[:, None], 1.0).log_prob(x)
    expected = -(prior + likelihood).logsumexp(0).sum().item()
    assert loss == pytest.approx(expected, rel=1e-10)


def test_to_event_scores_images() -> None:
    loc = torch.rand(5, 4, 4) * 16
    d = DiscretizedLogistic(loc, 0.8, L).to_event(2)
    y = d.sample()
    assert d.batch_shape == (5,) and d.event_shape == (4, 4) and y.shape == (5, 4, 4)
    lp = d.log_prob(y.to(torch.uint8))
    torch.testing.assert_close(lp, DiscretizedLogistic(loc, 0.8, L).log_prob(y).sum((-1, -2)))


def test_expand_and_repr() -> None:
    for d in _three_kinds(3):
        e = d.expand((2, 3))
        assert e.batch_shape == (2, 3) and e.num_levels == L
        torch.testing.assert_close(e.mean, d.mean.expand(2, 3))
        assert f"num_levels: {L}" in repr(d)


def test_integer_values_are_accepted() -> None:
    d = DiscretizedLogistic(t64(3.3, 9.0), t64(1.0, 2.0), L, validate_args=True)
    expected = d.log_prob(t64(3.0, 16.0))
    for dtype in (torch.uint8, torch.int32, torch.long):
        got = d.log_prob(torch.tensor([3, 16], dtype=dtype))
        assert got.dtype == F64
        torch.testing.assert_close(got, expected)


def test_svi_recovers_the_parameters() -> None:
    truth = DiscretizedLogistic(t64(5.3), t64(1.5), 12)
    data = truth.sample((2000,))
    loc = torch.tensor(2.0, dtype=F64, requires_grad=True)
    log_scale = torch.tensor(1.0, dtype=F64, requires_grad=True)
    opt = torch.optim.Adam([loc, log_scale], lr=0.1)
    for _ in range(150):
        opt.zero_grad()
        loss = -DiscretizedLogistic(loc, log_scale.exp(), 12).log_prob(data).mean()
        loss.backward()
        opt.step()
    assert abs(loc.item() - 5.3) < 0.1 and abs(log_scale.exp().item() - 1.5) < 0.1


# ---------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------


def test_value_errors_name_the_bad_values() -> None:
    d = DiscretizedLogistic(t64(3.0), t64(1.0), L, validate_args=True)
    with pytest.raises(
        ValueError, match=r"DiscretizedLogistic: .*\{0, \.\.\., 16\}; got 3\.5, 17"
    ):
        d.log_prob(t64(3.5, 17.0, 2.0))
    with pytest.raises(ValueError, match="got -1$"):
        d.log_prob(torch.tensor([-1, 4]))
    with pytest.raises(ValueError, match="got nan"):
        d.log_prob(t64(float("nan")))
    with pytest.raises(ValueError, match=r"\(and 2 more\)"):
        d.log_prob(torch.arange(10, dtype=F64) + 0.5)
    m = DiscretizedLogisticMixture(t64(0.0, 0.0), t64(1.0, 2.0), t64(1.0, 1.0), 5)
    with pytest.raises(ValueError, match=r"DiscretizedLogisticMixture: .*; got 5"):
        m.log_prob(t64(5.0))
    n = Discretized(dist.Normal(0.0, 1.0), 3)
    with pytest.raises(ValueError, match=r"Discretized: .*\{0, \.\.\., 2\}; got 0\.5"):
        n.log_prob(torch.tensor(0.5))
    # with validation off, nothing is checked (Pyro's contract)
    free = DiscretizedLogistic(t64(3.0), t64(1.0), L, validate_args=False)
    assert torch.isfinite(free.log_prob(t64(3.5)))


@pytest.mark.parametrize("bad", [1, 0, 2.5, True, "17", None])
def test_num_levels_must_be_an_int_of_at_least_two(bad: object) -> None:
    for make in [
        lambda: DiscretizedLogistic(0.0, 1.0, bad),
        lambda: DiscretizedLogisticMixture(torch.zeros(2), torch.zeros(2), 1.0, bad),
        lambda: Discretized(dist.Normal(0.0, 1.0), bad),
        lambda: DiscretizedLogistic.from_pixelcnn_scale(0.0, 1.0, bad),
    ]:
        with pytest.raises(ValueError, match=f"num_levels must be an int >= 2; got {bad!r}"):
            make()


def test_parameter_errors() -> None:
    with pytest.raises(ValueError, match="scale"):
        DiscretizedLogistic(t64(1.0), t64(0.0), L, validate_args=True)
    with pytest.raises(ValueError, match="scales"):
        DiscretizedLogisticMixture(
            t64(0.0, 0.0), t64(1.0, 2.0), t64(1.0, -1.0), L, validate_args=True
        )
    with pytest.raises(ValueError, match=r"do not broadcast: loc \(3,\), scale \(2,\)"):
        DiscretizedLogistic(torch.zeros(3), torch.ones(2), L)
    with pytest.raises(ValueError, match=r"logits \(3,\), locs \(2,\)"):
        DiscretizedLogisticMixture(torch.zeros(3), torch.zeros(2), 1.0, L)
    with pytest.raises(ValueError, match=r"last dimension \(\.\.\., K\)"):
        DiscretizedLogisticMixture(torch.tensor(0.0), torch.tensor(1.0), 1.0, L)


def test_base_errors() -> None:
    with pytest.raises(ValueError, match=r"univariate .*event_shape \(3,\)"):
        Discretized(dist.Normal(torch.zeros(3), 1.0).to_event(1), L)
    with pytest.raises(ValueError, match="continuous"):
        Discretized(dist.Poisson(3.0), L)
    with pytest.raises(ValueError, match="StudentT has no cdf"):
        Discretized(dist.StudentT(3.0, 0.0, 1.0), L)
    with pytest.raises(ValueError, match="torch distribution"):
        Discretized(torch.zeros(3), L)
