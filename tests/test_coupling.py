"""Masked coupling layers (RealNVP affine, NICE additive): harness, math, masks, stacks."""

from __future__ import annotations

import io
from typing import ClassVar

import pyro.distributions as dist
import pytest
import torch
from harness import TransformCase, TransformHarness
from torch import Tensor, nn

from pyro_dgm.nn import CouplingMLP
from pyro_dgm.transforms.coupling import (
    AdditiveCoupling,
    ConditionalAdditiveCoupling,
    ConditionalMaskedAffineCoupling,
    MaskedAffineCoupling,
    additive_coupling,
    alternating_mask,
    channel_half_mask,
    checkerboard_mask,
    conditional_additive_coupling,
    conditional_masked_affine_coupling,
    half_mask,
    masked_affine_coupling,
    random_mask,
)


class ConvHypernet(torch.nn.Module):
    """A tiny convolutional hypernet for image events ``(..., C, H, W)``.

    Returns ``(shift, raw_scale)`` (``outputs=2``) or a shift (``outputs=1``) of the
    event's shape; with ``context_dim``, the context is broadcast over the pixels and
    concatenated as extra input channels.
    """

    def __init__(self, channels: int, context_dim: int | None = None, outputs: int = 2) -> None:
        super().__init__()
        self.channels, self.outputs = channels, outputs
        self.context_dim = context_dim
        extra = 0 if context_dim is None else context_dim
        self.conv1 = torch.nn.Conv2d(channels + extra, 4, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(4, outputs * channels, 3, padding=1)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor | tuple[Tensor, Tensor]:
        batch, (c, h, w) = x.shape[:-3], x.shape[-3:]
        z = x.reshape(-1, c, h, w)
        if context is not None:
            ctx = context.reshape(-1, context.shape[-1], 1, 1).expand(-1, -1, h, w)
            z = torch.cat([z, ctx], dim=1)
        z = self.conv2(torch.tanh(self.conv1(z))).reshape(*batch, self.outputs * c, h, w)
        if self.outputs == 1:
            return z
        return z[..., :c, :, :], z[..., c:, :, :]


IMAGE = (2, 4, 4)


class TestCouplingHarness(TransformHarness):
    CASES: ClassVar[list[TransformCase]] = [
        TransformCase("affine_half", lambda: masked_affine_coupling(4), (4,)),
        TransformCase(
            "affine_alternating",
            lambda: masked_affine_coupling(5, mask=alternating_mask(5, flip=True)),
            (5,),
        ),
        TransformCase(
            "affine_random",
            lambda: masked_affine_coupling(6, mask=random_mask(6), hidden_dims=[8, 8]),
            (6,),
        ),
        TransformCase("additive_half", lambda: additive_coupling(4), (4,)),
        TransformCase(
            "additive_alternating",
            lambda: additive_coupling(5, mask=alternating_mask(5)),
            (5,),
        ),
        TransformCase(
            "conditional_affine",
            lambda: conditional_masked_affine_coupling(4, 2),
            (4,),
            context_dim=2,
        ),
        TransformCase(
            "conditional_additive",
            lambda: conditional_additive_coupling(4, 2, mask=alternating_mask(4)),
            (4,),
            context_dim=2,
        ),
        TransformCase(
            "affine_image_checkerboard",
            lambda: MaskedAffineCoupling(checkerboard_mask(4, 4, 2), ConvHypernet(2)),
            IMAGE,
        ),
        TransformCase(
            "affine_image_channel",
            lambda: MaskedAffineCoupling(channel_half_mask(2, 4, 4, flip=True), ConvHypernet(2)),
            IMAGE,
        ),
        TransformCase(
            "additive_image_checkerboard",
            lambda: AdditiveCoupling(checkerboard_mask(4, 4, 2), ConvHypernet(2, outputs=1)),
            IMAGE,
        ),
        TransformCase(
            "conditional_affine_image",
            lambda: ConditionalMaskedAffineCoupling(
                checkerboard_mask(4, 4, 2, flip=True), ConvHypernet(2, context_dim=2)
            ),
            IMAGE,
            context_dim=2,
        ),
    ]


def _perturbed(module: torch.nn.Module, std: float = 0.3) -> torch.nn.Module:
    with torch.no_grad():
        for p in module.parameters():
            p.add_(std * torch.randn_like(p))
    return module


# ---------------------------------------------------------------------------
# the math, against independent computations
# ---------------------------------------------------------------------------


def test_affine_coupling_matches_elementwise_formula() -> None:
    """y_i = x_i where m_i = 1, else x_i exp(b tanh(raw_i / b)) + t_i; log-det = sum s."""
    torch.manual_seed(1)
    d, bound = 5, 1.5
    mask = torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0], dtype=torch.float64)
    a = torch.randn(d, d, dtype=torch.float64)
    c = 3.0 * torch.randn(d, d, dtype=torch.float64)

    def hypernet(xm: Tensor) -> tuple[Tensor, Tensor]:
        return xm @ a, xm @ c

    t = MaskedAffineCoupling(mask, hypernet, scale_bound=bound).double()
    x = torch.randn(7, d, dtype=torch.float64)
    y = t(x)
    for n in range(7):
        xm = x[n] * mask
        shift, raw = xm @ a, xm @ c
        total = 0.0
        for i in range(d):
            if mask[i] == 1:
                assert y[n, i] == x[n, i]  # bit for bit
            else:
                s = bound * torch.tanh(raw[i] / bound)
                assert torch.isclose(y[n, i], x[n, i] * torch.exp(s) + shift[i], atol=1e-12)
                total += s.item()
        assert abs(t.log_abs_det_jacobian(x, y)[n].item() - total) < 1e-12
    assert torch.allclose(t._inverse(y.clone()), x, atol=1e-12)


def test_affine_coupling_jacobian_has_coupling_structure() -> None:
    """Kept rows of the Jacobian are unit rows; transformed entries depend on
    themselves only through a diagonal block."""
    torch.manual_seed(2)
    t = _perturbed(masked_affine_coupling(6, mask=alternating_mask(6))).double()
    x = torch.randn(6, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(t._call, x)
    kept = t.mask.bool()
    free = ~kept
    assert torch.equal(jac[kept], torch.eye(6, dtype=torch.float64)[kept])
    block = jac[free][:, free]
    assert torch.equal(block, torch.diag(block.diagonal()))
    assert jac[free][:, kept].abs().sum() > 0  # the kept half does drive the rest


def test_scale_is_bounded_smoothly() -> None:
    """A huge raw scale gives a log-scale of +-b (not inf), and a finite, non-zero gradient
    at moderate values (no hard clamp)."""
    mask = half_mask(4).double()
    for sign in (1.0, -1.0):
        raw = torch.full((4,), sign * 1e4, dtype=torch.float64)
        t = MaskedAffineCoupling(mask, lambda xm, r=raw: (torch.zeros_like(xm), r + 0 * xm))
        x = torch.randn(3, 4, dtype=torch.float64)
        y = t(x)
        assert torch.isfinite(y).all()
        assert torch.allclose(t.log_abs_det_jacobian(x, y), torch.full((3,), sign * 4.0).double())
    raw = torch.tensor([0.0, 0.0, 3.0, -5.0], dtype=torch.float64, requires_grad=True)
    t = MaskedAffineCoupling(mask, lambda xm: (torch.zeros_like(xm), raw + 0 * xm))
    x = torch.randn(4, dtype=torch.float64)
    t.log_abs_det_jacobian(x, t(x)).backward()
    expected = 1 - torch.tanh(raw.detach()[2:] / 2.0) ** 2  # d/draw of b tanh(raw / b)
    assert torch.allclose(raw.grad[2:], expected)
    assert (raw.grad[2:] > 0).all() and torch.equal(raw.grad[:2], torch.zeros(2).double())


@pytest.mark.parametrize(
    "factory",
    [
        lambda: masked_affine_coupling(4),
        lambda: additive_coupling(4, mask=alternating_mask(4)),
        lambda: conditional_masked_affine_coupling(4, 3).condition(torch.randn(5, 3)),
        lambda: conditional_additive_coupling(4, 3).condition(torch.randn(5, 3)),
    ],
    ids=["affine", "additive", "conditional_affine", "conditional_additive"],
)
def test_helpers_start_as_the_identity(factory) -> None:
    t = factory()
    x = torch.randn(5, 4)
    y = t(x)
    assert torch.equal(y, x)
    assert torch.equal(t.log_abs_det_jacobian(x, y), torch.zeros(5))


def test_additive_log_det_is_exactly_zero() -> None:
    torch.manual_seed(3)
    t = _perturbed(additive_coupling(4), std=1.0).double()
    x = torch.randn(3, 5, 4, dtype=torch.float64)
    y = t(x)
    ladj = t.log_abs_det_jacobian(x, y)
    assert ladj.shape == (3, 5) and ladj.dtype == torch.float64 and ladj.device == x.device
    assert torch.equal(ladj, torch.zeros(3, 5, dtype=torch.float64))
    assert not torch.allclose(y, x)  # a real transform, not the identity
    jac = torch.autograd.functional.jacobian(t._call, x[0, 0])
    assert abs(torch.linalg.slogdet(jac).logabsdet.item()) < 1e-12
    # a conditioned layer: zeros of the broadcast batch shape
    c = _perturbed(conditional_additive_coupling(4, 2)).condition(torch.randn(5, 2))
    x = torch.randn(4)
    assert torch.equal(c.log_abs_det_jacobian(x, c(x)), torch.zeros(5))


def test_deep_stack_round_trips_in_float32() -> None:
    """16 affine couplings with alternating masks and random weights: x -> y -> x to 1e-5.

    The weights move the stack well away from the identity (outputs of std ~1.2 and
    maxima of ~5-15 from N(0, 1) inputs, |log-det| ~0.6 per event), the regime of a
    flow trained on standardised data. (Much larger random weights send outputs to the
    thousands, where float32 rounding alone exceeds 1e-5.)"""
    torch.manual_seed(4)
    layers = []
    for i in range(16):
        t = masked_affine_coupling(8, mask=alternating_mask(8, flip=i % 2 == 1), hidden_dims=[32])
        with torch.no_grad():
            t.hypernet.layers[-1].weight.normal_(0.0, 0.05)
            t.hypernet.layers[-1].bias.normal_(0.0, 0.05)
        layers.append(t)
    x = torch.randn(256, 8)
    with torch.no_grad():
        y, ladj = x, torch.zeros(256)
        for t in layers:
            y_next = t._call(y)
            ladj = ladj + t.log_abs_det_jacobian(y, y_next)
            y = y_next
        x_back = y
        for t in reversed(layers):
            x_back = t._inverse(x_back)
    assert (y - x).abs().max() > 1.0 and ladj.abs().mean() > 0.3  # far from the identity
    assert (x_back - x).abs().max() < 1e-5


# ---------------------------------------------------------------------------
# costs and caching
# ---------------------------------------------------------------------------


class _Counting(torch.nn.Module):
    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net, self.calls = net, 0

    def forward(self, x: Tensor) -> object:
        self.calls += 1
        return self.net(x)


def test_one_network_pass_to_sample_and_one_to_score() -> None:
    torch.manual_seed(5)
    helper = _perturbed(masked_affine_coupling(4))
    net = _Counting(helper.hypernet)
    t = MaskedAffineCoupling(helper.mask, net)
    d = dist.TransformedDistribution(dist.Normal(torch.zeros(4), 1.0).to_event(1), [t])
    x = d.rsample((10,))
    assert net.calls == 1
    lp_cached = d.log_prob(x)
    assert net.calls == 1  # the sample's inverse and log-scale are both cached
    lp_fresh = d.log_prob(x.clone())
    assert net.calls == 2  # fresh data: one inverse pass, log-det reused
    assert torch.allclose(lp_cached, lp_fresh, atol=1e-5)


def test_log_scale_cache_is_tied_to_its_input() -> None:
    """A direct _call on other inputs must not leak its log-scale into the log-det of the
    cached pair."""
    torch.manual_seed(6)
    t = _perturbed(masked_affine_coupling(4)).double()
    x1 = torch.randn(3, 4, dtype=torch.float64)
    y1 = t(x1)
    expected = t.log_abs_det_jacobian(x1, y1)
    t._call(torch.randn(3, 4, dtype=torch.float64))
    assert torch.allclose(t.log_abs_det_jacobian(x1, y1), expected)
    t._inverse(torch.randn(3, 4, dtype=torch.float64))
    assert torch.allclose(t.log_abs_det_jacobian(x1, y1), expected)


# ---------------------------------------------------------------------------
# conditioning
# ---------------------------------------------------------------------------


def test_context_broadcasts_against_the_input_batch() -> None:
    torch.manual_seed(7)
    module = _perturbed(conditional_masked_affine_coupling(4, 2)).double()
    context = torch.randn(5, 2, dtype=torch.float64)
    x = torch.randn(3, 1, 4, dtype=torch.float64)
    t = module.condition(context)
    y = t(x)
    assert y.shape == (3, 5, 4)
    ladj = t.log_abs_det_jacobian(x, y)
    assert ladj.shape == (3, 5)
    for j in range(5):
        tj = module.condition(context[j])
        assert torch.allclose(y[:, j], tj(x[:, 0]))
        assert torch.allclose(ladj[:, j], tj.log_abs_det_jacobian(x[:, 0], tj(x[:, 0])))
    assert torch.allclose(t._inverse(y), x.expand(3, 5, 4))


def test_context_errors() -> None:
    module = conditional_masked_affine_coupling(4, 2)
    with pytest.raises(ValueError, match="context_dim=2"):
        module.condition(torch.randn(5, 3))
    with pytest.raises(ValueError, match="context"):
        module.condition(torch.tensor(1.0))


# ---------------------------------------------------------------------------
# masks and validation
# ---------------------------------------------------------------------------


def test_mask_constructors() -> None:
    assert half_mask(4).tolist() == [True, True, False, False]
    assert half_mask(5, flip=True).tolist() == [False, False, True, True, True]
    assert alternating_mask(4).tolist() == [True, False, True, False]
    assert alternating_mask(4, flip=True).tolist() == [False, True, False, True]
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    r = random_mask(9, g1)
    assert r.sum() == 4 and torch.equal(r, random_mask(9, g2))
    cb = checkerboard_mask(3, 4, 2)
    assert cb.shape == (2, 3, 4) and cb.dtype == torch.bool
    for i in range(3):
        for j in range(4):
            assert bool(cb[0, i, j]) == ((i + j) % 2 == 0) and cb[0, i, j] == cb[1, i, j]
    assert torch.equal(checkerboard_mask(3, 4, 2, flip=True), ~cb)
    ch = channel_half_mask(4, 2, 3)
    assert ch.shape == (4, 2, 3)
    assert ch[:2].all() and not ch[2:].any()
    assert torch.equal(channel_half_mask(4, 2, 3, flip=True), ~ch)


@pytest.mark.parametrize(
    ("mask", "match"),
    [
        (torch.tensor([1.0, 0.5, 0.0]), "binary"),
        (torch.tensor([1, 2, 0]), "binary"),
        (torch.ones(3), "all ones"),
        (torch.zeros(2, 2, 2), "all zeros"),
        (torch.tensor(True), "scalar"),
    ],
    ids=["fraction", "two", "all_ones", "all_zeros", "scalar"],
)
@pytest.mark.parametrize(
    "cls",
    [
        lambda m: MaskedAffineCoupling(m, lambda x: (x, x)),
        lambda m: AdditiveCoupling(m, lambda x: x),
        lambda m: ConditionalMaskedAffineCoupling(m, lambda x, c: (x, x)),
        lambda m: ConditionalAdditiveCoupling(m, lambda x, c: x),
    ],
    ids=["affine", "additive", "conditional_affine", "conditional_additive"],
)
def test_invalid_masks_are_rejected(cls, mask: Tensor, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        cls(mask)


def test_constructor_errors() -> None:
    with pytest.raises(ValueError, match="dim"):
        half_mask(1)
    with pytest.raises(ValueError, match="dim"):
        alternating_mask(1)
    with pytest.raises(ValueError, match="height"):
        checkerboard_mask(1, 1, 3)
    with pytest.raises(ValueError, match="channels"):
        channel_half_mask(1, 4, 4)
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        masked_affine_coupling(4, mask=half_mask(5))
    with pytest.raises(ValueError, match="input_dim"):
        additive_coupling(1)
    with pytest.raises(ValueError, match="hidden_dims"):
        masked_affine_coupling(4, hidden_dims=[])
    for bad in (0.0, -1.0, float("inf")):
        with pytest.raises(ValueError, match="scale_bound"):
            masked_affine_coupling(4, scale_bound=bad)


def test_shape_errors() -> None:
    t = masked_affine_coupling(4)
    with pytest.raises(ValueError, match=r"x must end with the event shape \(4,\)"):
        t(torch.randn(3, 5))
    with pytest.raises(ValueError, match="y must end"):
        t.inv(torch.randn(3))
    wrong = MaskedAffineCoupling(half_mask(4), lambda x: (x[..., :3], x))
    with pytest.raises(ValueError, match="shift"):
        wrong(torch.randn(4))
    single = MaskedAffineCoupling(half_mask(4), lambda x: x)
    with pytest.raises(ValueError, match="tuple"):
        single(torch.randn(4))
    image = AdditiveCoupling(checkerboard_mask(4, 4, 2), ConvHypernet(2, outputs=1))
    with pytest.raises(ValueError, match=r"\(2, 4, 4\)"):
        image(torch.randn(3, 4, 4))


def test_random_mask_is_saved_and_restored() -> None:
    t1 = masked_affine_coupling(8, mask=random_mask(8, torch.Generator().manual_seed(1)))
    t2 = masked_affine_coupling(8, mask=random_mask(8, torch.Generator().manual_seed(2)))
    assert not torch.equal(t1.mask, t2.mask)
    buffer = io.BytesIO()
    torch.save(t1.state_dict(), buffer)
    buffer.seek(0)
    t2.load_state_dict(torch.load(buffer, weights_only=True))
    assert torch.equal(t1.mask, t2.mask)
    assert t1.event_dim == 1
    assert MaskedAffineCoupling(checkerboard_mask(4, 4, 2), ConvHypernet(2)).event_dim == 3


# ---------------------------------------------------------------------------
# the dense hypernet
# ---------------------------------------------------------------------------


def test_coupling_mlp_computes_a_relu_mlp_of_input_and_context() -> None:
    net = CouplingMLP(3, [5, 4], num_outputs=2, context_dim=2).double()
    with torch.no_grad():
        for p in net.parameters():
            p.normal_()
    x, c = torch.randn(7, 3, dtype=torch.float64), torch.randn(7, 2, dtype=torch.float64)
    h = torch.cat([x, c], -1)
    linears = [m for m in net.layers if isinstance(m, nn.Linear)]
    for layer in linears[:-1]:
        h = torch.relu(h @ layer.weight.T + layer.bias)
    out = h @ linears[-1].weight.T + linears[-1].bias
    shift, raw = net(x, c)
    assert torch.equal(shift, out[:, :3]) and torch.equal(raw, out[:, 3:])


def test_coupling_mlp_starts_at_zero_and_returns_one_tensor_for_one_output() -> None:
    net = CouplingMLP(4, [8], num_outputs=1)
    out = net(torch.randn(2, 5, 4))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 5, 4)
    assert torch.equal(out, torch.zeros(2, 5, 4))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"input_dim": 0, "hidden_dims": [4]}, "input_dim"),
        ({"input_dim": 2, "hidden_dims": []}, "hidden_dims"),
        ({"input_dim": 2, "hidden_dims": [4, 0]}, "hidden_dims"),
        ({"input_dim": 2, "hidden_dims": [4], "num_outputs": 0}, "num_outputs"),
        ({"input_dim": 2, "hidden_dims": [4], "context_dim": 0}, "context_dim"),
    ],
)
def test_coupling_mlp_rejects_bad_sizes(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CouplingMLP(**kwargs)


def test_coupling_mlp_rejects_bad_calls() -> None:
    plain, conditional = CouplingMLP(2, [4]), CouplingMLP(2, [4], context_dim=3)
    with pytest.raises(ValueError, match="takes no context"):
        plain(torch.randn(2), torch.randn(3))
    with pytest.raises(ValueError, match="call it with a context"):
        conditional(torch.randn(2))
    with pytest.raises(ValueError, match=r"x must have shape batch \+ \(2,\)"):
        plain(torch.randn(5, 3))
    with pytest.raises(ValueError, match=r"context must have shape batch \+ \(3,\)"):
        conditional(torch.randn(5, 2), torch.randn(5, 4))
