"""Masked and causal convolutions: causality by autograd, exact receptive fields, caches."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from pyro_dgm.nn import CausalConv1d, MaskedConv2d, PixelCNNNetwork, WaveNetNetwork
from pyro_dgm.nn.masked_conv import channel_mask

# ---------------------------------------------------------------------------
# helpers: which inputs each predicted position depends on
# ---------------------------------------------------------------------------


def _dependencies(
    net: nn.Module, event_shape: tuple[int, ...], num_params: int, trials: int = 3
) -> Tensor:
    """Boolean ``(D, D)``: output position (C-major flat index) depends on input position.

    Every parameter predicted at a position is weighted by a random coefficient and
    summed, then the Jacobian is taken in float64 (exact zeros stay exact zeros). A
    dependency counts if it shows at any of ``trials`` random inputs (a ReLU that is
    dead at one input can hide it there)."""
    coefficients = torch.randn(num_params, *event_shape, dtype=torch.float64)

    def f(x_flat: Tensor) -> Tensor:
        out = net(x_flat.reshape(1, *event_shape)).reshape(num_params, *event_shape)
        return (out * coefficients).sum(0).reshape(-1)

    found = None
    for _ in range(trials):
        x = 2 * torch.randn(1, *event_shape, dtype=torch.float64)
        jac = torch.autograd.functional.jacobian(f, x.reshape(-1), vectorize=True) != 0
        found = jac if found is None else found | jac
    return found


def _raster_rank(event_shape: tuple[int, ...]) -> Tensor:
    """Rank of each position (C-major flat index) in the raster order, channels innermost."""
    c = event_shape[0]
    spatial = torch.tensor(event_shape[1:]).prod().item()
    channel = torch.arange(c)[:, None]
    place = torch.arange(spatial)[None, :]
    return (place * c + channel).reshape(-1)


def _assert_causal(dep: Tensor, event_shape: tuple[int, ...], strict: bool = True) -> None:
    rank = _raster_rank(event_shape)
    later = rank[None, :] >= rank[:, None] if strict else rank[None, :] > rank[:, None]
    leaks = dep & later
    assert not leaks.any(), f"{int(leaks.sum())} dependencies on the present or future"
    assert dep.any(), "no dependency at all: the check would be vacuous"


class _MaskedStack(nn.Module):
    """A plain PixelCNN-style stack: type A, then type B layers, output (1, P, C, H, W)."""

    def __init__(self, c: int, depth: int, kernel: int, num_params: int = 2) -> None:
        super().__init__()
        hidden = 4 * c
        layers: list[nn.Module] = [MaskedConv2d(c, hidden, kernel, "A", c)]
        for _ in range(depth - 1):
            layers += [nn.Tanh(), MaskedConv2d(hidden, hidden, kernel, "B", c)]
        layers += [nn.Tanh(), MaskedConv2d(hidden, c * num_params, 1, "B", c)]
        self.net = nn.Sequential(*layers)
        self.c, self.p = c, num_params

    def forward(self, x: Tensor) -> Tensor:
        out = self.net(x)
        return out.view(len(x), self.p, self.c, *x.shape[2:])


class _CausalStack(nn.Module):
    def __init__(self, c: int, dilations: tuple[int, ...], kernel: int, p: int = 2) -> None:
        super().__init__()
        hidden = 4 * c
        layers: list[nn.Module] = [CausalConv1d(c, hidden, kernel, 1, "A", c)]
        for d in dilations:
            layers += [nn.Tanh(), CausalConv1d(hidden, hidden, kernel, d, "B", c)]
        layers += [nn.Tanh(), CausalConv1d(hidden, c * p, 1, 1, "B", c)]
        self.net = nn.Sequential(*layers)
        self.c, self.p = c, p

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).view(len(x), self.p, self.c, x.shape[-1])


# ---------------------------------------------------------------------------
# masks
# ---------------------------------------------------------------------------


def test_channel_mask_groups() -> None:
    a = channel_mask(6, 6, 3, "A")
    b = channel_mask(6, 6, 3, "B")
    g = torch.arange(6) % 3
    assert torch.equal(a, (g[None] < g[:, None]).float())
    assert torch.equal(b, (g[None] <= g[:, None]).float())
    assert channel_mask(2, 2, 1, "A").sum() == 0 and channel_mask(2, 2, 1, "B").all()


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: channel_mask(4, 6, 3, "A"), "in_channels"),
        (lambda: channel_mask(3, 4, 3, "B"), "out_channels"),
        (lambda: channel_mask(3, 3, 3, "C"), "mask_type"),
        (lambda: MaskedConv2d(1, 2, 4), "kernel_size"),
        (lambda: CausalConv1d(1, 2, 0), "kernel_size"),
        (lambda: PixelCNNNetwork(3, 2, hidden_channels=8), "hidden_channels"),
        (lambda: PixelCNNNetwork(1, 2, kernel_size=4), "kernel_size"),
        (lambda: WaveNetNetwork(2, 2, residual_channels=5), "residual_channels"),
        (lambda: WaveNetNetwork(1, 2, dilations=()), "dilations"),
    ],
)
def test_bad_arguments(call: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()


# ---------------------------------------------------------------------------
# causality, every mask type and several depths, C = 1 and C = 3
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("c", [1, 3])
@pytest.mark.parametrize(("depth", "kernel"), [(1, 3), (2, 3), (3, 5)])
def test_masked_conv_stack_is_causal(c: int, depth: int, kernel: int) -> None:
    shape = (c, 4, 5)
    net = _MaskedStack(c, depth, kernel).double()
    dep = _dependencies(net, shape, 2)
    _assert_causal(dep, shape)
    # the pixel to the left and the one above are seen (channels: all of them)
    rank = _raster_rank(shape)
    flat = torch.arange(dep.shape[0]).reshape(shape)
    assert dep[flat[0, 2, 2], flat[:, 2, 1]].all() and dep[flat[0, 2, 2], flat[:, 1, 2]].all()
    if c > 1:  # within the pixel: channel 2 sees channels 0 and 1, channel 0 sees neither
        assert dep[flat[2, 2, 2], flat[:2, 2, 2]].all()
        assert not dep[flat[0, 2, 2], flat[:, 2, 2]].any()
    assert rank.max() == dep.shape[0] - 1


@pytest.mark.parametrize("c", [1, 3])
def test_type_b_alone_sees_the_present_not_the_future(c: int) -> None:
    shape = (c, 3, 4)
    conv = MaskedConv2d(c, 2 * c, 3, "B", c).double()

    def net(x: Tensor) -> Tensor:
        return conv(x).view(len(x), 2, c, *x.shape[2:])

    dep = _dependencies(net, shape, 2)
    _assert_causal(dep, shape, strict=False)
    assert dep.diagonal().all()  # type B keeps the current position itself


@pytest.mark.parametrize("c", [1, 3])
@pytest.mark.parametrize(("dilations", "kernel"), [((), 2), ((1, 2), 2), ((1, 2, 4), 3)])
def test_causal_conv_stack_is_causal(c: int, dilations: tuple[int, ...], kernel: int) -> None:
    shape = (c, 14)
    net = _CausalStack(c, dilations, kernel).double()
    _assert_causal(_dependencies(net, shape, 2), shape)


def _pixelcnn_expected(shape: tuple[int, int, int], rv: int, rh: int) -> Tensor:
    c, height, width = shape
    idx = torch.stack(
        torch.meshgrid(torch.arange(c), torch.arange(height), torch.arange(width), indexing="ij"),
        -1,
    ).reshape(-1, 3)
    oc, oi, oj = (idx[:, k][:, None] for k in range(3))
    ic, ii, ij = (idx[:, k][None, :] for k in range(3))
    above = (ii < oi) & (ii >= oi - rv) & ((ij - oj).abs() <= rh)
    left = (ii == oi) & (ij < oj) & (ij >= oj - rh)
    own = (ii == oi) & (ij == oj) & (ic < oc)
    return above | left | own


@pytest.mark.parametrize("c", [1, 3])
@pytest.mark.parametrize(("num_layers", "kernel"), [(1, 3), (2, 3), (3, 3), (1, 5)])
def test_gated_pixelcnn_receptive_field_is_exact(c: int, num_layers: int, kernel: int) -> None:
    """Causal, and no blind spot: the dependencies are exactly the documented field."""
    shape = (c, 7, 9)
    net = PixelCNNNetwork(c, 2, hidden_channels=6 * c, num_layers=num_layers, kernel_size=kernel)
    net = net.double()
    dep = _dependencies(net, shape, 2)
    _assert_causal(dep, shape)
    rv, rh = net.receptive_field
    assert torch.equal(dep, _pixelcnn_expected(shape, rv, rh))


def test_gated_pixelcnn_sees_the_whole_past_when_deep_enough() -> None:
    shape = (1, 4, 4)
    net = PixelCNNNetwork(1, 2, hidden_channels=6, num_layers=3).double()
    dep = _dependencies(net, shape, 2)
    rank = _raster_rank(shape)
    assert torch.equal(dep, rank[None, :] < rank[:, None])  # every earlier pixel, no blind spot


@pytest.mark.parametrize("c", [1, 3])
@pytest.mark.parametrize(("dilations", "kernel"), [((1,), 2), ((1, 2, 4), 2), ((1, 2), 3)])
def test_wavenet_receptive_field_is_exact(c: int, dilations: tuple[int, ...], kernel: int) -> None:
    shape = (c, 12)
    net = WaveNetNetwork(c, 2, residual_channels=6 * c, dilations=dilations, kernel_size=kernel)
    net = net.double()
    dep = _dependencies(net, shape, 2)
    _assert_causal(dep, shape)
    r = net.receptive_field
    assert r == (kernel - 1) * (1 + sum(dilations))
    t = torch.arange(12).repeat(c)  # C-major flat index -> time, channel
    ch = torch.arange(c).repeat_interleave(12)
    expected = ((t[None] < t[:, None]) & (t[None] >= t[:, None] - r)) | (
        (t[None] == t[:, None]) & (ch[None] < ch[:, None])
    )
    assert torch.equal(dep, expected)


# ---------------------------------------------------------------------------
# caches reproduce the parallel pass
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(("c", "context_dim"), [(1, None), (3, None), (2, 4)])
def test_pixelcnn_cache_matches_network(c: int, context_dim: int | None) -> None:
    n, height, width = 2, 5, 6
    net = PixelCNNNetwork(c, 3, hidden_channels=4 * c, num_layers=2, context_dim=context_dim)
    net = net.double()
    x = torch.randn(n, c, height, width, dtype=torch.float64)
    context = None if context_dim is None else torch.randn(n, context_dim, dtype=torch.float64)
    full = net(x, context).detach()
    cache = net.cache(n, height, width, context)
    for i in range(height):
        cache.start_row(i)
        for j in range(width):
            for k in range(c):  # as the sampler does: one channel at a time
                params = cache.pixel(i, j)
                assert torch.allclose(params[:, :, k], full[:, :, k, i, j], atol=1e-12)
                cache.write(i, j, k, x[:, k, i, j])


@pytest.mark.parametrize(("c", "kernel", "context_dim"), [(1, 2, None), (2, 3, None), (1, 2, 3)])
def test_wavenet_cache_matches_network(c: int, kernel: int, context_dim: int | None) -> None:
    n, length = 2, 20
    net = WaveNetNetwork(
        c,
        3,
        residual_channels=4 * c,
        dilations=(1, 2, 4, 1),
        kernel_size=kernel,
        context_dim=context_dim,
    ).double()
    x = torch.randn(n, c, length, dtype=torch.float64)
    context = None if context_dim is None else torch.randn(n, context_dim, dtype=torch.float64)
    full = net(x, context).detach()
    cache = net.cache(n, context)
    for t in range(length):
        x_t = torch.zeros(n, c, dtype=torch.float64)
        for k in range(c):
            params = cache.step(x_t)
            assert torch.allclose(params[:, :, k], full[:, :, k, t], atol=1e-12)
            x_t[:, k] = x[:, k, t]
        cache.commit(x_t)
    with pytest.raises(ValueError, match="commit"):
        cache.commit(x_t)


def test_network_input_checks() -> None:
    net = PixelCNNNetwork(1, 2, hidden_channels=4, num_layers=1, context_dim=3)
    with pytest.raises(ValueError, match="x"):
        net(torch.zeros(2, 2, 4, 4), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="context"):
        net(torch.zeros(2, 1, 4, 4))
    with pytest.raises(ValueError, match="context"):
        net(torch.zeros(2, 1, 4, 4), torch.zeros(3, 3))
