r"""Masked and causal convolutions: the layers of the autoregressive networks.

Plain torch, no Pyro. An autoregressive network predicts, at every position of an
integer array, the parameters of the conditional of that position given every
*earlier* position, all positions at once (one parallel pass):

.. math:: p(x) = \prod_d p(x_d \mid x_{<d}).

The order is the raster order with the channels innermost: for images
:math:`(C, H, W)` position :math:`(c, i, j)` comes after every pixel :math:`(i', j')`
with :math:`i' < i`, or :math:`i' = i, j' < j`, and after channels :math:`c' < c` of
its own pixel; for sequences :math:`(C, T)` position :math:`(c, t)` comes after every
earlier time step and after channels :math:`c' < c` of step :math:`t`.

**Channel groups.** Within a pixel (or a time step) the channel order is enforced as
in PixelCNN (van den Oord et al., 2016a): every feature map of a hidden layer
belongs to a group, channel :math:`k` to group :math:`k \bmod C` (so hidden widths
are multiples of :math:`C`, and ``chunk(2)`` of a gated activation keeps the
groups aligned). At the *current* position, a type ``"A"`` connection lets group
:math:`g` see only groups :math:`g' < g` (the first layer: a pixel never sees
itself), a type ``"B"`` connection groups :math:`g' \le g` (every later layer).
Connections to earlier positions are never masked. With :math:`C = 1`, type A
removes the current position and type B keeps it. See :func:`channel_mask`.

What is here: :class:`MaskedConv2d`, the raster-masked convolution of PixelCNN (type
A/B; stacked alone it has the *blind spot* of the original PixelCNN), and
:class:`CausalConv1d`, a dilated causal 1-D convolution (left padding only), type A/B
at the current step. The networks built from them, and their generation caches, are in
:mod:`pyro_dgm.nn.pixelcnn` and :mod:`pyro_dgm.nn.wavenet`.

References:
    | Pixel Recurrent Neural Networks (van den Oord et al., 2016a)
    | https://arxiv.org/abs/1601.06759
    | Conditional Image Generation with PixelCNN Decoders (van den Oord et al., 2016b)
    | https://arxiv.org/abs/1606.05328
    | WaveNet: A Generative Model for Raw Audio (van den Oord et al., 2016c)
    | https://arxiv.org/abs/1609.03499
    | Fast Wavenet Generation Algorithm (Paine et al., 2016)
    | https://arxiv.org/abs/1611.09482
    | Fast Generation for Convolutional Autoregressive Models (Ramachandran et al., 2017)
    | https://arxiv.org/abs/1704.06001
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..utils.checks import check_int

__all__ = [
    "CausalConv1d",
    "MaskedConv2d",
    "channel_mask",
    "check_context",
    "check_groups",
    "check_mask_type",
    "gated_activation",
]


def check_mask_type(mask_type: object) -> str:
    """``mask_type`` if it is ``"A"`` (the first, strict layer) or ``"B"``, else a
    ``ValueError`` naming it.

    Example:
        >>> check_mask_type("B")
        'B'
    """
    if mask_type not in ("A", "B"):
        raise ValueError(f"mask_type: expected 'A' or 'B', got {mask_type!r}")
    return str(mask_type)


def check_groups(name: str, channels: int, data_channels: int) -> None:
    """Refuse a channel count that is not a multiple of ``data_channels``: the feature
    maps come in one group per data channel (:func:`channel_mask`).

    Example:
        >>> check_groups("hidden_channels", 6, 3)  # two maps per colour channel: fine
        >>> check_groups("hidden_channels", 4, 3)
        Traceback (most recent call last):
        ...
        ValueError: hidden_channels: expected a multiple of data_channels=3 (one group of feature maps per data channel), got 4
    """
    if channels % data_channels:
        raise ValueError(
            f"{name}: expected a multiple of data_channels={data_channels} (one group of "
            f"feature maps per data channel), got {channels}"
        )


def channel_mask(
    in_channels: int, out_channels: int, data_channels: int, mask_type: str
) -> Tensor:
    r"""The mask of the connections between channels at the *current* position.

    Channel :math:`k` belongs to group :math:`k \bmod C`, :math:`C` = ``data_channels``.

    .. math:: M_{oi} = [g(i) < g(o)] \ \text{(type A)}, \qquad
        M_{oi} = [g(i) \le g(o)] \ \text{(type B)}.

    Arguments:
        in_channels: Input channels, a multiple of ``data_channels``.
        out_channels: Output channels, a multiple of ``data_channels``.
        data_channels: :math:`C`, the channels of the data (1 for grey images).
        mask_type: ``"A"`` (strict: the first layer) or ``"B"``.

    Returns:
        A float tensor of shape ``(out_channels, in_channels)`` of zeros and ones.

    Example:
        >>> channel_mask(3, 3, 3, "A")
        tensor([[0., 0., 0.],
                [1., 0., 0.],
                [1., 1., 0.]])
    """
    check_int(data_channels, "data_channels", 1)
    check_mask_type(mask_type)
    check_groups("in_channels", check_int(in_channels, "in_channels", 1), data_channels)
    check_groups("out_channels", check_int(out_channels, "out_channels", 1), data_channels)
    g_in = torch.arange(in_channels) % data_channels
    g_out = torch.arange(out_channels) % data_channels
    if mask_type == "A":
        return (g_in[None, :] < g_out[:, None]).float()
    return (g_in[None, :] <= g_out[:, None]).float()


def gated_activation(f: Tensor, dim: int = 1) -> Tensor:
    r"""The gated activation of ``f = [a, b]``, split in two along ``dim``:

    .. math:: \operatorname{gate}(f) = \tanh(a) \odot \sigma(b),

    the nonlinearity of the gated PixelCNN and of WaveNet.

    References:
        | Conditional Image Generation with PixelCNN Decoders (van den Oord et al., 2016)
        | https://arxiv.org/abs/1606.05328

    Example:
        >>> gated_activation(torch.zeros(2, 6, 4, 4)).shape  # 6 channels in, 3 out
        torch.Size([2, 3, 4, 4])
    """
    a, b = f.chunk(2, dim=dim)
    return torch.tanh(a) * torch.sigmoid(b)


def check_context(x: Tensor, context: Tensor | None, context_dim: int | None) -> None:
    """Refuse a context unless the network has one (``context_dim``), of shape
    ``(N, context_dim)`` for inputs ``x`` of batch size ``N``.

    Example:
        >>> check_context(torch.zeros(4, 1, 8, 8), torch.zeros(4, 10), 10)  # fine
        >>> check_context(torch.zeros(4, 1, 8, 8), None, 10)
        Traceback (most recent call last):
        ...
        ValueError: context: the network was built with context_dim=10, got context None
    """
    if (context is None) != (context_dim is None):
        raise ValueError(
            f"context: the network was built with context_dim={context_dim}, "
            f"got context {None if context is None else tuple(context.shape)}"
        )
    if context is not None and context.shape != (x.shape[0], context_dim):
        raise ValueError(
            f"context: expected shape ({x.shape[0]}, {context_dim}), got {tuple(context.shape)}"
        )


class MaskedConv2d(nn.Conv2d):
    r"""A 2-D convolution masked to the raster-scan past (PixelCNN, type A or B).

    The kernel (odd sizes :math:`k_h \times k_w`, centred on the output pixel) keeps
    every row above the centre, the taps left of the centre in its row, and at the
    centre the channel connections of :func:`channel_mask`:

    .. math:: y_{o,i,j} = b_o + \sum_{c,u,v} (W \odot M)_{o,c,u,v}\,
        x_{c,\,i+u-\lfloor k_h/2 \rfloor,\,j+v-\lfloor k_w/2 \rfloor}.

    Zero padding keeps the spatial size. A stack of these (type A first, then B)
    is causal but has the blind spot of the original PixelCNN; the gated
    :class:`PixelCNNNetwork` has none. Same cost as an unmasked convolution.

    References:
        | Pixel Recurrent Neural Networks (van den Oord et al., 2016)
        | https://arxiv.org/abs/1601.06759

    Arguments:
        in_channels: Input channels (a multiple of ``data_channels``).
        out_channels: Output channels (a multiple of ``data_channels``).
        kernel_size: An odd int, or a pair of odd ints :math:`(k_h, k_w)`.
        mask_type: ``"A"`` (excludes the current pixel's own group) or ``"B"``.
        data_channels: :math:`C`, the channels of the data.
        bias: Whether to add a bias.

    Example:
        >>> conv = MaskedConv2d(1, 4, 3, mask_type="A")
        >>> conv.mask[0, 0]
        tensor([[1., 1., 1.],
                [1., 0., 0.],
                [0., 0., 0.]])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int] = 3,
        mask_type: str = "B",
        data_channels: int = 1,
        bias: bool = True,
    ) -> None:
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
        for k in (kh, kw):
            if check_int(k, "kernel_size", 1) % 2 == 0:
                raise ValueError(f"kernel_size: expected odd positive ints, got {kernel_size!r}")
        centre = channel_mask(in_channels, out_channels, data_channels, mask_type)
        super().__init__(
            in_channels, out_channels, (kh, kw), padding=(kh // 2, kw // 2), bias=bias
        )
        self.mask_type = mask_type
        self.data_channels = data_channels
        mask = torch.zeros(out_channels, in_channels, kh, kw)
        mask[:, :, : kh // 2, :] = 1
        mask[:, :, kh // 2, : kw // 2] = 1
        mask[:, :, kh // 2, kw // 2] = centre
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, self.weight * self.mask, self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, mask_type={self.mask_type!r}"

    def _left_taps(self) -> tuple[Tensor, Tensor | None]:
        """For a ``(1, k)`` kernel: the masked weights of the taps at columns
        ``j - k//2, ..., j``, flattened to ``(out, in * (k//2 + 1))``, and the bias."""
        kw = self.kernel_size[1]
        w = (self.weight * self.mask)[:, :, 0, : kw // 2 + 1]
        return w.reshape(w.shape[0], -1), self.bias

    def _pointwise(self) -> tuple[Tensor, Tensor | None]:
        """For a 1x1 kernel: the masked weight ``(out, in)`` and the bias."""
        return (self.weight * self.mask)[:, :, 0, 0], self.bias


class CausalConv1d(nn.Conv1d):
    r"""A dilated causal 1-D convolution: output :math:`t` sees inputs :math:`\le t`.

    .. math:: y_{o,t} = b_o + \sum_{c} \sum_{u=0}^{k-1} (W \odot M)_{o,c,u}\,
        x_{c,\,t - (k-1-u)\,d},

    with zero inputs before the start (left padding :math:`(k-1)d` only). The taps at
    earlier steps are free; the tap at the current step (:math:`u = k-1`) carries the
    channel mask of :func:`channel_mask`: type ``"A"`` for the first layer (with one
    data channel it sees only :math:`t - d, t - 2d, \dots`), type ``"B"`` after.
    ``receptive_field`` is :math:`(k-1)d`, the earlier steps one layer reaches.
    A step of generation (:meth:`WaveNetNetwork.cache`) costs :math:`O(k F^2)`.

    References:
        | WaveNet: A Generative Model for Raw Audio (van den Oord et al., 2016)
        | https://arxiv.org/abs/1609.03499

    Arguments:
        in_channels: Input channels (a multiple of ``data_channels``).
        out_channels: Output channels (a multiple of ``data_channels``).
        kernel_size: :math:`k`.
        dilation: :math:`d`.
        mask_type: ``"A"`` or ``"B"``.
        data_channels: :math:`C`, the channels of the data.
        bias: Whether to add a bias.

    Example:
        >>> conv = CausalConv1d(1, 2, kernel_size=2, dilation=4)
        >>> conv(torch.zeros(3, 1, 10)).shape, conv.receptive_field
        (torch.Size([3, 2, 10]), 4)
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 2,
        dilation: int = 1,
        mask_type: str = "B",
        data_channels: int = 1,
        bias: bool = True,
    ) -> None:
        check_int(kernel_size, "kernel_size", 1)
        check_int(dilation, "dilation", 1)
        current = channel_mask(in_channels, out_channels, data_channels, mask_type)
        super().__init__(in_channels, out_channels, kernel_size, dilation=dilation, bias=bias)
        self.mask_type = mask_type
        self.data_channels = data_channels
        mask = torch.ones(out_channels, in_channels, kernel_size)
        mask[:, :, -1] = current
        self.register_buffer("mask", mask, persistent=False)

    @property
    def receptive_field(self) -> int:
        r"""The earlier steps one layer reaches, :math:`(k-1)d`."""
        return (self.kernel_size[0] - 1) * self.dilation[0]

    def forward(self, x: Tensor) -> Tensor:
        x = F.pad(x, (self.receptive_field, 0))
        return F.conv1d(x, self.weight * self.mask, self.bias, dilation=self.dilation)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, mask_type={self.mask_type!r}"

    def _flat(self) -> tuple[Tensor, Tensor | None]:
        """The masked weight flattened to ``(out, in * k)`` (taps innermost), and the bias."""
        w = self.weight * self.mask
        return w.reshape(w.shape[0], -1), self.bias
