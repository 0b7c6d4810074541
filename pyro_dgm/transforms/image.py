r"""Layers for image events :math:`(C, H, W)` (``event_dim = 3``): squeeze, Glow's
invertible 1x1 convolution, and coupling layers with convolutional hypernets.

ActNorm on images is :class:`~pyro_dgm.transforms.ActNorm` with ``event_dim=3``;
the logit pre-processing is :class:`~pyro_dgm.transforms.LogitTransform` with
``event_dim=3``; the coupling layers are the masked couplings of
:mod:`pyro_dgm.transforms.coupling` with a :class:`~pyro_dgm.nn.CouplingConvNet`
as hypernet (built by the helpers below).
"""

from __future__ import annotations

import torch
from pyro.distributions import constraints
from torch import Tensor
from torch.distributions import Transform

from ..nn.conv import ConditionalCouplingConvNet, CouplingConvNet
from .coupling import (
    AdditiveCoupling,
    ConditionalMaskedAffineCoupling,
    MaskedAffineCoupling,
    channel_half_mask,
    checkerboard_mask,
)
from .linear import InvertibleLinear

__all__ = [
    "InvertibleConv1x1",
    "Squeeze",
    "conditional_conv_affine_coupling",
    "conv_additive_coupling",
    "conv_affine_coupling",
    "image_mask",
    "invertible_conv1x1",
]

_IMAGE = constraints.independent(constraints.real, 3)


def _check_image(x: Tensor, name: str, channels: int | None = None) -> None:
    if x.dim() < 3 or (channels is not None and x.shape[-3] != channels):
        expected = f"({channels}, H, W)" if channels is not None else "(C, H, W)"
        raise ValueError(f"{name} must have shape batch + {expected}, got {tuple(x.shape)}")


class Squeeze(Transform):
    r"""RealNVP's squeeze: each :math:`2 \times 2` block of pixels becomes four
    channels (space to depth), :math:`(C, H, W) \to (4C, H/2, W/2)`.

    .. math:: y_{4c + 2a + b,\ i,\ j} = x_{c,\ 2i + a,\ 2j + b}, \qquad a, b \in \{0, 1\},
        \qquad \log |\det J| = 0 .

    A permutation of the entries, so volume preserving; the inverse is depth to
    space. The forward call is space to depth, as in the inference direction of a
    multi-scale flow; ``Squeeze().inv`` is its generative direction. Parameter
    free; costs one reshape and permute each way.

    References:
        | Density estimation using Real NVP (Dinh et al., 2017), section 3.6
        | https://arxiv.org/abs/1605.08803

    Example:
        >>> Squeeze()(torch.arange(4.0).reshape(1, 2, 2)).flatten()
        tensor([0., 1., 2., 3.])
        >>> Squeeze().forward_shape((3, 1, 8, 6))
        (3, 4, 4, 3)
    """

    domain = _IMAGE
    codomain = _IMAGE
    bijective = True

    def __init__(self, cache_size: int = 0) -> None:
        super().__init__(cache_size=cache_size)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Squeeze)

    def __hash__(self) -> int:
        return hash(Squeeze)

    def forward_shape(self, shape: tuple[int, ...] | torch.Size) -> tuple[int, ...]:
        if len(shape) < 3 or shape[-2] % 2 or shape[-1] % 2:
            raise ValueError(
                f"Squeeze needs an image shape (..., C, H, W) with even H and W, got {tuple(shape)}"
            )
        *batch, c, h, w = shape
        return (*batch, 4 * c, h // 2, w // 2)

    def inverse_shape(self, shape: tuple[int, ...] | torch.Size) -> tuple[int, ...]:
        if len(shape) < 3 or shape[-3] % 4:
            raise ValueError(
                "the inverse of Squeeze needs a shape (..., C, H, W) with C divisible by 4, "
                f"got {tuple(shape)}"
            )
        *batch, c, h, w = shape
        return (*batch, c // 4, 2 * h, 2 * w)

    def _call(self, x: Tensor) -> Tensor:
        _check_image(x, "x")
        out = self.forward_shape(x.shape)
        *batch, c, h, w = x.shape
        x = x.reshape(*batch, c, h // 2, 2, w // 2, 2)
        n = len(batch)
        # (c, i, a, j, b) -> (c, a, b, i, j)
        x = x.permute(*range(n), n, n + 2, n + 4, n + 1, n + 3)
        return x.reshape(out)

    def _inverse(self, y: Tensor) -> Tensor:
        _check_image(y, "y")
        out = self.inverse_shape(y.shape)
        *batch, c, h, w = y.shape
        n = len(batch)
        y = y.reshape(*batch, c // 4, 2, 2, h, w)
        # (c, a, b, i, j) -> (c, i, a, j, b)
        y = y.permute(*range(n), n, n + 3, n + 1, n + 4, n + 2)
        return y.reshape(out)

    def log_abs_det_jacobian(self, x: Tensor, y: Tensor) -> Tensor:
        return x.new_zeros(x.shape[:-3])


class InvertibleConv1x1(InvertibleLinear):
    r"""Glow's invertible 1x1 convolution: the same learnable invertible matrix
    :math:`W` (:math:`C \times C`) applied to the channels of every pixel.

    .. math:: y_{:, i, j} = W x_{:, i, j}, \qquad
        \log |\det J| = H W \log |\det W| ,

    with :math:`W = P L (U + \mathrm{diag}(\sigma \odot e^{\ell}))` (``"lu"``,
    log-det :math:`O(C)`) or :math:`W = Q R` (``"qr"``), the parametrizations of
    :class:`~pyro_dgm.transforms.InvertibleLinear`, whose factors, triangular
    solves (no dense inverse) and initialisation at a random rotation this class
    reuses over the channel dimension.

    Pyro's ``GeneralizedChannelPermute`` (re-exported by
    :mod:`pyro_dgm.transforms`, and in the shared test harness) is this layer
    with :math:`W = P L U` and :math:`U`'s diagonal stored directly. What it
    lacks, and this class adds: the sign-times-exponential diagonal, so that
    :math:`W` stays invertible whatever the optimizer does (a diagonal entry of
    :math:`U` that crosses zero makes Pyro's :math:`W` singular and its log-det
    :math:`-\infty`); the QR parametrization; and a forward pass that is one
    matrix product over channels rather than a broadcast product that
    materialises a :math:`C \times C \times H \times W` tensor per image.

    Arguments:
        channels: The number of channels :math:`C`.
        parametrization: ``"lu"`` or ``"qr"``.

    References:
        | Glow: Generative Flow with Invertible 1x1 Convolutions (Kingma et al., 2018)
        | https://arxiv.org/abs/1807.03039

    Example:
        >>> t = InvertibleConv1x1(4)
        >>> x = torch.randn(2, 4, 3, 3)
        >>> torch.allclose(t._inverse(t(x)), x, atol=1e-5)
        True
    """

    domain = _IMAGE
    codomain = _IMAGE

    def __init__(self, channels: int, parametrization: str = "lu") -> None:
        super().__init__(channels, parametrization=parametrization, bias=False)

    def extra_repr(self) -> str:
        return f"channels={self.input_dim}, parametrization={self.parametrization!r}"

    def _check(self, x: Tensor, name: str) -> None:
        _check_image(x, name, self.input_dim)

    def _call(self, x: Tensor) -> Tensor:
        self._check(x, "x")
        return torch.einsum("ij,...jhw->...ihw", self.weight, x)

    def _inverse(self, y: Tensor) -> Tensor:
        self._check(y, "y")
        return self.solve(y.movedim(-3, -1)).movedim(-1, -3)

    def log_abs_det_jacobian(self, x: Tensor, y: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        return (h * w * self.log_abs_det).expand(x.shape[:-3])


def invertible_conv1x1(channels: int, parametrization: str = "lu") -> InvertibleConv1x1:
    r"""Build an :class:`InvertibleConv1x1` (a random rotation at initialisation).

    Example:
        >>> invertible_conv1x1(3, "qr")(torch.randn(2, 3, 4, 4)).shape
        torch.Size([2, 3, 4, 4])
    """
    return InvertibleConv1x1(channels, parametrization=parametrization)


def image_mask(kind: str, event_shape: tuple[int, int, int], flip: bool = False) -> Tensor:
    r"""The RealNVP mask ``"checkerboard"`` or ``"channel"`` of shape ``event_shape``
    :math:`(C, H, W)` (``flip`` takes the complement).

    Example:
        >>> image_mask("channel", (2, 1, 2)).int().tolist()
        [[[1, 1]], [[0, 0]]]
    """
    if len(tuple(event_shape)) != 3:
        raise ValueError(f"event_shape must be (C, H, W), got {tuple(event_shape)}")
    c, h, w = event_shape
    if kind == "checkerboard":
        return checkerboard_mask(h, w, c, flip=flip)
    if kind == "channel":
        return channel_half_mask(c, h, w, flip=flip)
    raise ValueError(f"mask must be 'checkerboard' or 'channel', got {kind!r}")


def conv_affine_coupling(
    event_shape: tuple[int, int, int],
    mask: str | Tensor = "checkerboard",
    *,
    flip: bool = False,
    hidden_channels: int = 64,
    num_blocks: int = 2,
    scale_bound: float = 2.0,
    dropout: float = 0.0,
) -> MaskedAffineCoupling:
    r"""A RealNVP affine coupling on images: :class:`MaskedAffineCoupling` with a
    checkerboard or channel mask and a :class:`~pyro_dgm.nn.CouplingConvNet`
    hypernet whose last layer starts at zero (the coupling starts as the identity).

    Arguments:
        event_shape: The image shape :math:`(C, H, W)`.
        mask: ``"checkerboard"``, ``"channel"``, or a binary tensor of shape ``event_shape``.
        flip: Take the complement of a named mask.
        hidden_channels: Width of the residual network.
        num_blocks: Number of residual blocks.
        scale_bound: The smooth bound of the log-scale (see :class:`MaskedAffineCoupling`).
        dropout: Dropout probability inside the residual blocks (``train()`` mode only;
            the coupling stays exactly invertible in ``eval()`` mode).

    Example:
        >>> t = conv_affine_coupling((2, 4, 4), "channel", hidden_channels=8)
        >>> x = torch.randn(3, 2, 4, 4)
        >>> torch.equal(t(x), x)  # the identity at initialisation
        True
    """
    m = image_mask(mask, event_shape, flip) if isinstance(mask, str) else mask
    net = CouplingConvNet(torch.as_tensor(m).bool(), 2, hidden_channels, num_blocks, dropout)
    return MaskedAffineCoupling(m, net, scale_bound=scale_bound)


def conv_additive_coupling(
    event_shape: tuple[int, int, int],
    mask: str | Tensor = "checkerboard",
    *,
    flip: bool = False,
    hidden_channels: int = 64,
    num_blocks: int = 2,
    dropout: float = 0.0,
) -> AdditiveCoupling:
    r"""A NICE additive (volume-preserving) coupling on images, with a checkerboard
    or channel mask and a :class:`~pyro_dgm.nn.CouplingConvNet` shift network that
    starts at zero.

    Example:
        >>> t = conv_additive_coupling((1, 4, 4), hidden_channels=8)
        >>> t.log_abs_det_jacobian(torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 4, 4))
        tensor([0., 0.])
    """
    m = image_mask(mask, event_shape, flip) if isinstance(mask, str) else mask
    net = CouplingConvNet(torch.as_tensor(m).bool(), 1, hidden_channels, num_blocks, dropout)
    return AdditiveCoupling(m, net)


def conditional_conv_affine_coupling(
    event_shape: tuple[int, int, int],
    context_channels: int,
    mask: str | Tensor = "checkerboard",
    *,
    flip: bool = False,
    hidden_channels: int = 64,
    num_blocks: int = 2,
    scale_bound: float = 2.0,
) -> ConditionalMaskedAffineCoupling:
    r"""The conditional twin of :func:`conv_affine_coupling`: the context is a stack of
    ``context_channels`` images of the event's height and width, passed flattened
    (``batch + (context_channels * H * W,)``), that the hypernet
    (:class:`~pyro_dgm.nn.ConditionalCouplingConvNet`) sees pixel-aligned with the input.

    Example:
        >>> t = conditional_conv_affine_coupling((1, 4, 4), 2, hidden_channels=8)
        >>> x = torch.randn(3, 1, 4, 4)
        >>> torch.equal(t.condition(torch.randn(3, 32))(x), x)  # the identity at first
        True
    """
    m = image_mask(mask, event_shape, flip) if isinstance(mask, str) else mask
    net = ConditionalCouplingConvNet(
        torch.as_tensor(m).bool(), context_channels, 2, hidden_channels, num_blocks
    )
    return ConditionalMaskedAffineCoupling(m, net, scale_bound=scale_bound)
