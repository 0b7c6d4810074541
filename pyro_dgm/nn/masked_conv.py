r"""Masked and causal convolutions for autoregressive models, and their generation caches.

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

What is here:

* :class:`MaskedConv2d`: the raster-masked convolution of PixelCNN (type A/B).
  Stacked alone it has the *blind spot* of the original PixelCNN.
* :class:`PixelCNNNetwork`: the gated PixelCNN of van den Oord et al. (2016b), a
  vertical stack (rows above) and a horizontal stack (the current row, to the
  left) joined in each :class:`GatedPixelCNNBlock`, so the receptive field is the
  whole causal past within its reach: no blind spot.
* :class:`CausalConv1d`: a dilated causal 1-D convolution (left padding only), type
  A/B at the current step; :class:`WaveNetNetwork` stacks them WaveNet style.
* :class:`PixelCNNCache` and :class:`WaveNetCache`: incremental generation. The
  naive sampler reruns the whole network for every position (:math:`D` full
  passes). The caches compute each activation once, when its inputs exist: a row
  of the vertical stack when the row above is complete, one position of the
  horizontal stack per pixel, and for WaveNet one time step per layer read from a
  ring buffer of its last :math:`(k-1)\,d` inputs (Ramachandran et al., 2017;
  Paine et al., 2016). The work of a whole sample is then about one full pass.

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

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "CausalConv1d",
    "GatedPixelCNNBlock",
    "MaskedConv2d",
    "PixelCNNCache",
    "PixelCNNNetwork",
    "WaveNetCache",
    "WaveNetNetwork",
    "channel_mask",
]


def _check_positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}: expected a positive int, got {value!r}")
    return value


def _check_mask_type(mask_type: object) -> str:
    if mask_type not in ("A", "B"):
        raise ValueError(f"mask_type: expected 'A' or 'B', got {mask_type!r}")
    return str(mask_type)


def _check_groups(name: str, channels: int, data_channels: int) -> None:
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
    _check_positive_int("data_channels", data_channels)
    _check_mask_type(mask_type)
    _check_groups("in_channels", _check_positive_int("in_channels", in_channels), data_channels)
    _check_groups("out_channels", _check_positive_int("out_channels", out_channels), data_channels)
    g_in = torch.arange(in_channels) % data_channels
    g_out = torch.arange(out_channels) % data_channels
    if mask_type == "A":
        return (g_in[None, :] < g_out[:, None]).float()
    return (g_in[None, :] <= g_out[:, None]).float()


def _gate(f: Tensor, dim: int = 1) -> Tensor:
    r"""The gated activation :math:`\tanh(a) \odot \sigma(b)` of ``f = [a, b]``."""
    a, b = f.chunk(2, dim=dim)
    return torch.tanh(a) * torch.sigmoid(b)


# ---------------------------------------------------------------------------
# 2-D
# ---------------------------------------------------------------------------



def _check_context(x: Tensor, context: Tensor | None, context_dim: int | None) -> None:
    """A context is given exactly when the network has one, with shape ``(N, context_dim)``."""
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
            if isinstance(k, bool) or not isinstance(k, int) or k < 1 or k % 2 == 0:
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


class GatedPixelCNNBlock(nn.Module):
    r"""One gated block of the conditional PixelCNN, with a vertical and a horizontal stack.

    .. math:: v' = \tanh(W_{v,f} * v + V_f c) \odot \sigma(W_{v,g} * v + V_g c), \\
        h' = h + W_{1\times1} \big[\tanh(W_{h,f} * h + U_f (W_v * v) + V'_f c)
        \odot \sigma(W_{h,g} * h + U_g (W_v * v) + V'_g c)\big].

    The vertical convolution (kernel :math:`(\lfloor k/2 \rfloor + 1) \times k`,
    padded above) sees the rows up to the current one of the previous vertical
    stack, whose rows are all strictly above the current pixel; the horizontal
    convolution (a :class:`MaskedConv2d` of kernel :math:`1 \times k`, type B) sees
    the current row up to the current pixel. The vertical features join the
    horizontal ones by a 1x1 convolution. The context :math:`c` (a class label's
    one-hot vector or a latent code) adds a learned bias to every gate.

    References:
        | Conditional Image Generation with PixelCNN Decoders (van den Oord et al., 2016)
        | https://arxiv.org/abs/1606.05328

    Arguments:
        channels: Feature maps :math:`F` of each stack (a multiple of ``data_channels``).
        kernel_size: The odd width :math:`k` of both convolutions.
        data_channels: :math:`C`, the channels of the data.
        context_dim: Size of the context vector, or ``None``.
    """

    def __init__(
        self,
        channels: int,
        kernel_size: int = 3,
        data_channels: int = 1,
        context_dim: int | None = None,
    ) -> None:
        super().__init__()
        _check_groups("channels", _check_positive_int("channels", channels), data_channels)
        half = kernel_size // 2
        self.kernel_size = kernel_size
        self.vertical = nn.Conv2d(channels, 2 * channels, (half + 1, kernel_size))
        self.vertical_to_horizontal = nn.Conv2d(2 * channels, 2 * channels, 1)
        self.horizontal = MaskedConv2d(
            channels, 2 * channels, (1, kernel_size), "B", data_channels
        )
        self.horizontal_out = MaskedConv2d(channels, channels, 1, "B", data_channels)
        self.condition = None if context_dim is None else nn.Linear(context_dim, 4 * channels)

    def forward(
        self, v: Tensor, h: Tensor, context: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        half = self.kernel_size // 2
        vf = self.vertical(F.pad(v, (half, half, half, 0)))
        hf = self.horizontal(h) + self.vertical_to_horizontal(vf)
        if self.condition is not None:
            cv, ch = self.condition(context)[..., None, None].chunk(2, dim=1)
            vf, hf = vf + cv, hf + ch
        return _gate(vf), h + self.horizontal_out(_gate(hf))


class PixelCNNNetwork(nn.Module):
    r"""The gated PixelCNN: parameters of every pixel's conditional in one pass.

    .. math:: \theta_{c,i,j} = \mathrm{net}(x_{\prec (c,i,j)}), \qquad
        \prec \ \text{the raster order, channels innermost}.

    An input layer (a vertical convolution of the image shifted down by one row,
    and a :class:`MaskedConv2d` of kernel :math:`1 \times k`, type A), then
    ``num_layers`` :class:`GatedPixelCNNBlock`, then two 1x1 type-B convolutions
    with ReLUs. The receptive field of pixel :math:`(i, j)` is exactly the rows
    :math:`i - r_v \dots i - 1` within :math:`\pm r_h` columns and the pixels
    :math:`j - r_h \dots j - 1` of its own row, with
    :math:`r_h = \lfloor k/2 \rfloor (N + 1)`, :math:`r_v = \lfloor k/2 \rfloor (N+1) + 1`
    for :math:`N` blocks: no blind spot. A pass costs
    :math:`O(N F^2 k^2 H W)`; :meth:`cache` generates a sample for about that
    cost in total, where the naive sampler pays it :math:`CHW` times.

    References:
        | Conditional Image Generation with PixelCNN Decoders (van den Oord et al., 2016)
        | https://arxiv.org/abs/1606.05328

    Arguments:
        data_channels: :math:`C`.
        out_features: :math:`P`, the parameters predicted per channel and pixel.
        hidden_channels: :math:`F`, feature maps per stack (a multiple of :math:`C`).
        num_layers: :math:`N \ge 1`, the gated blocks.
        kernel_size: The odd width :math:`k \ge 3` of the convolutions.
        context_dim: Size of the context vector, or ``None``.

    Example:
        >>> net = PixelCNNNetwork(1, out_features=4, hidden_channels=8, num_layers=2)
        >>> net(torch.zeros(2, 1, 5, 5)).shape
        torch.Size([2, 4, 1, 5, 5])
    """

    def __init__(
        self,
        data_channels: int,
        out_features: int,
        hidden_channels: int = 32,
        num_layers: int = 5,
        kernel_size: int = 3,
        context_dim: int | None = None,
    ) -> None:
        super().__init__()
        c = _check_positive_int("data_channels", data_channels)
        _check_positive_int("out_features", out_features)
        _check_positive_int("num_layers", num_layers)
        hid = _check_positive_int("hidden_channels", hidden_channels)
        _check_groups("hidden_channels", hid, c)
        if isinstance(kernel_size, bool) or not isinstance(kernel_size, int):
            raise ValueError(f"kernel_size: expected an odd int >= 3, got {kernel_size!r}")
        if kernel_size < 3 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size: expected an odd int >= 3, got {kernel_size}")
        if context_dim is not None:
            _check_positive_int("context_dim", context_dim)
        self.data_channels = c
        self.out_features = out_features
        self.hidden_channels = hid
        self.kernel_size = kernel_size
        self.context_dim = context_dim
        half = kernel_size // 2
        self.vertical_input = nn.Conv2d(c, hid, (half + 1, kernel_size))
        self.horizontal_input = MaskedConv2d(c, hid, (1, kernel_size), "A", c)
        self.blocks = nn.ModuleList(
            GatedPixelCNNBlock(hid, kernel_size, c, context_dim) for _ in range(num_layers)
        )
        self.output_hidden = MaskedConv2d(hid, hid, 1, "B", c)
        self.output = MaskedConv2d(hid, c * out_features, 1, "B", c)

    @property
    def receptive_field(self) -> tuple[int, int]:
        r"""``(rows above, columns either side)`` that a pixel's parameters can see."""
        half = self.kernel_size // 2
        n = len(self.blocks)
        return half * (n + 1) + 1, half * (n + 1)

    def _check_input(self, x: Tensor, context: Tensor | None) -> None:
        if x.dim() != 4 or x.shape[1] != self.data_channels:
            raise ValueError(
                f"x: expected shape (N, {self.data_channels}, H, W), got {tuple(x.shape)}"
            )
        _check_context(x, context, self.context_dim)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """Parameters ``(N, P, C, H, W)`` of every position, from inputs ``(N, C, H, W)``."""
        self._check_input(x, context)
        half = self.kernel_size // 2
        v = self.vertical_input(F.pad(x, (half, half, half + 1, 0))[:, :, :-1])
        h = self.horizontal_input(x)
        for block in self.blocks:
            v, h = block(v, h, context)
        out = self.output(F.relu(self.output_hidden(F.relu(h))))
        n, _, height, width = x.shape
        return out.view(n, self.out_features, self.data_channels, height, width)

    def cache(
        self, batch_size: int, height: int, width: int, context: Tensor | None = None
    ) -> PixelCNNCache:
        """A :class:`PixelCNNCache` to generate ``batch_size`` images incrementally."""
        return PixelCNNCache(self, batch_size, height, width, context)


class PixelCNNCache:
    r"""Incremental generation for :class:`PixelCNNNetwork` (no gradients).

    Holds the network input and, per layer, the vertical stack (rows so far) and the
    horizontal stack (the current row). Call :meth:`start_row` once row
    :math:`i - 1` is complete: it computes row :math:`i` of every vertical layer
    (one row-sized convolution per layer). Then, for each pixel in order,
    :meth:`pixel` computes the horizontal stack at that pixel only (one position per
    layer, from the last :math:`\lfloor k/2 \rfloor + 1` positions of the layer below)
    and returns its parameters; :meth:`write` stores the sampled value. With
    :math:`C > 1` channels, call :meth:`pixel` once per channel (it reads the
    channels written so far). The results equal those of the full network up to
    floating-point rounding.

    Arguments:
        net: The network.
        batch_size: Images generated together.
        height: :math:`H`.
        width: :math:`W`.
        context: ``(batch_size, context_dim)`` or ``None``.
    """

    def __init__(
        self,
        net: PixelCNNNetwork,
        batch_size: int,
        height: int,
        width: int,
        context: Tensor | None = None,
    ) -> None:
        ref = net.output.weight
        dtype, device = ref.dtype, ref.device
        n, c, hid = batch_size, net.data_channels, net.hidden_channels
        net._check_input(torch.empty(n, c, 0, 0, dtype=dtype, device=device), context)
        self.net = net
        self.half = half = net.kernel_size // 2
        self.height, self.width = height, width
        zeros = {"dtype": dtype, "device": device}
        with torch.no_grad():
            # input, padded: rows [-half-1, H), columns [-half, W + half)
            self.x = torch.zeros(n, c, height + half + 1, width + 2 * half, **zeros)
            # vertical stacks v_0..v_{N-1} (inputs of the blocks): rows [-half, H)
            self.v = [
                torch.zeros(n, hid, height + half, width + 2 * half, **zeros) for _ in net.blocks
            ]
            # horizontal stacks h_0..h_{N-1}, the current row: columns [-half, W)
            self.h = [torch.zeros(n, hid, width + half, **zeros) for _ in net.blocks]
            self.h_in = net.horizontal_input._left_taps()
            self.blocks = []
            for block in net.blocks:
                w_h, b_h = block.horizontal._left_taps()
                cond = None
                if block.condition is not None:
                    cond = block.condition(context).chunk(2, dim=1)
                self.blocks.append((block, w_h, b_h, block.horizontal_out._pointwise(), cond))
            self.out_hidden = net.output_hidden._pointwise()
            self.out = net.output._pointwise()
            self.row_terms: list[Tensor] = []

    @torch.no_grad()
    def start_row(self, i: int) -> None:
        """Compute row ``i`` of the vertical stacks (rows ``< i`` must be written)."""
        half, net = self.half, self.net
        v = net.vertical_input(self.x[:, :, i : i + half + 1])  # rows i-half-1 .. i-1
        self.row_terms = []
        for l, (block, _, b_h, _, cond) in enumerate(self.blocks):
            self.v[l][:, :, i + half, half : half + self.width] = v[:, :, 0]
            vf = block.vertical(self.v[l][:, :, i : i + half + 1])  # v_l rows i-half .. i
            term = block.vertical_to_horizontal(vf)[:, :, 0]  # (n, 2F, W)
            if b_h is not None:
                term = term + b_h[:, None]
            if cond is not None:
                vf = vf + cond[0][..., None, None]
                term = term + cond[1][..., None]
            self.row_terms.append(term)
            v = _gate(vf)

    @torch.no_grad()
    def pixel(self, i: int, j: int) -> Tensor:
        """Parameters ``(N, P, C)`` of pixel ``(i, j)`` from the values written so far."""
        half = self.half
        taps = self.x[:, :, i + half + 1, j : j + half + 1]  # columns j-half .. j
        w, b = self.h_in
        h = F.linear(taps.reshape(len(taps), -1), w, b)
        for l, (_, w_h, _, (w_o, b_o), _) in enumerate(self.blocks):
            buffer = self.h[l]
            buffer[:, :, half + j] = h
            hf = F.linear(buffer[:, :, j : j + half + 1].reshape(len(h), -1), w_h)
            h = h + F.linear(_gate(hf + self.row_terms[l][:, :, j]), w_o, b_o)
        out = F.linear(F.relu(F.linear(F.relu(h), *self.out_hidden)), *self.out)
        return out.view(len(out), self.net.out_features, self.net.data_channels)

    @torch.no_grad()
    def write(self, i: int, j: int, channel: int, value: Tensor) -> None:
        """Store the network input ``value`` ``(N,)`` at ``channel`` of pixel ``(i, j)``."""
        self.x[:, channel, i + self.half + 1, j + self.half] = value


# ---------------------------------------------------------------------------
# 1-D
# ---------------------------------------------------------------------------


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
        _check_positive_int("kernel_size", kernel_size)
        _check_positive_int("dilation", dilation)
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


class WaveNetNetwork(nn.Module):
    r"""A WaveNet-style stack of gated dilated causal convolutions.

    .. math:: z_l = \tanh(W_{l,f} *_{d_l} h_{l-1} + V_{l,f} c) \odot
        \sigma(W_{l,g} *_{d_l} h_{l-1} + V_{l,g} c), \quad
        h_l = h_{l-1} + R_l z_l, \quad s = \sum_l S_l z_l,

    then :math:`\theta = W_2\,\mathrm{ReLU}(W_1\,\mathrm{ReLU}(s))` (1x1, type B). The
    input layer is a :class:`CausalConv1d` of type A, so step :math:`t` sees the
    steps :math:`t - R \dots t - 1` (and the earlier channels of step :math:`t`),
    with the receptive field

    .. math:: R = (k - 1)\Big(1 + \sum_l d_l\Big).

    A pass costs :math:`O(L_{\text{layers}} F^2 k T)`; :meth:`cache` generates a
    sequence for about the same total, the naive sampler pays it :math:`CT` times.

    References:
        | WaveNet: A Generative Model for Raw Audio (van den Oord et al., 2016)
        | https://arxiv.org/abs/1609.03499

    Arguments:
        data_channels: :math:`C`.
        out_features: :math:`P`, the parameters predicted per channel and step.
        residual_channels: :math:`F` (a multiple of :math:`C`).
        dilations: :math:`d_l`, one per gated layer (e.g. ``1, 2, 4, ..., 512``).
        kernel_size: :math:`k \ge 2`.
        skip_channels: Width of the skip connections (default :math:`F`).
        context_dim: Size of the context vector, or ``None``.

    Example:
        >>> net = WaveNetNetwork(1, out_features=3, residual_channels=8, dilations=(1, 2, 4))
        >>> net(torch.zeros(2, 1, 20)).shape, net.receptive_field
        (torch.Size([2, 3, 1, 20]), 8)
    """

    def __init__(
        self,
        data_channels: int,
        out_features: int,
        residual_channels: int = 32,
        dilations: Sequence[int] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
        kernel_size: int = 2,
        skip_channels: int | None = None,
        context_dim: int | None = None,
    ) -> None:
        super().__init__()
        c = _check_positive_int("data_channels", data_channels)
        _check_positive_int("out_features", out_features)
        res = _check_positive_int("residual_channels", residual_channels)
        skip = _check_positive_int("skip_channels", skip_channels or res)
        _check_groups("residual_channels", res, c)
        _check_groups("skip_channels", skip, c)
        dilations = tuple(dilations)
        if not dilations:
            raise ValueError("dilations: expected at least one gated layer, got ()")
        if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 2:
            raise ValueError(f"kernel_size: expected an int >= 2, got {kernel_size!r}")
        if context_dim is not None:
            _check_positive_int("context_dim", context_dim)
        self.data_channels = c
        self.out_features = out_features
        self.context_dim = context_dim
        self.dilations = dilations
        self.input = CausalConv1d(c, res, kernel_size, 1, "A", c)
        self.dilated = nn.ModuleList(
            CausalConv1d(res, 2 * res, kernel_size, d, "B", c) for d in dilations
        )
        # the last layer's residual output would be unused: it has none
        self.residual = nn.ModuleList(CausalConv1d(res, res, 1, 1, "B", c) for _ in dilations[:-1])
        self.skip = nn.ModuleList(CausalConv1d(res, skip, 1, 1, "B", c) for _ in dilations)
        self.conditions = (
            None
            if context_dim is None
            else nn.ModuleList(nn.Linear(context_dim, 2 * res) for _ in dilations)
        )
        self.output_hidden = CausalConv1d(skip, skip, 1, 1, "B", c)
        self.output = CausalConv1d(skip, c * out_features, 1, 1, "B", c)

    @property
    def receptive_field(self) -> int:
        r""":math:`R`: step :math:`t`'s parameters see steps :math:`t-R, \dots, t-1`."""
        return self.input.receptive_field + sum(conv.receptive_field for conv in self.dilated)

    def _check_input(self, x: Tensor, context: Tensor | None) -> None:
        if x.dim() != 3 or x.shape[1] != self.data_channels:
            raise ValueError(
                f"x: expected shape (N, {self.data_channels}, T), got {tuple(x.shape)}"
            )
        _check_context(x, context, self.context_dim)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """Parameters ``(N, P, C, T)`` of every step, from inputs ``(N, C, T)``."""
        self._check_input(x, context)
        h = self.input(x)
        skip: Tensor | float = 0.0
        for l, conv in enumerate(self.dilated):
            f = conv(h)
            if self.conditions is not None:
                f = f + self.conditions[l](context)[..., None]
            z = _gate(f)
            skip = skip + self.skip[l](z)
            if l < len(self.residual):
                h = h + self.residual[l](z)
        out = self.output(F.relu(self.output_hidden(F.relu(skip))))
        return out.view(len(x), self.out_features, self.data_channels, x.shape[-1])

    def cache(self, batch_size: int, context: Tensor | None = None) -> WaveNetCache:
        """A :class:`WaveNetCache` to generate ``batch_size`` sequences step by step."""
        return WaveNetCache(self, batch_size, context)


class WaveNetCache:
    r"""Fast generation for :class:`WaveNetNetwork`: a ring buffer per causal layer.

    Each causal layer keeps its last :math:`(k-1)d` inputs in a ring buffer; a step
    reads the taps :math:`t - d, \dots, t - (k-1)d` from it, so it computes one
    position per layer (:math:`O(L F^2 k)` per step instead of a pass over the whole
    sequence). :meth:`step` returns the parameters ``(N, P, C)`` of the current step
    from its channels written so far (call it once per channel), and :meth:`commit`
    pushes the complete step (its input, and the layer inputs of the last
    :meth:`step`, which no longer depend on a missing channel) into the buffers.

    References:
        | Fast Wavenet Generation Algorithm (Paine et al., 2016)
        | https://arxiv.org/abs/1611.09482

    Arguments:
        net: The network.
        batch_size: Sequences generated together.
        context: ``(batch_size, context_dim)`` or ``None``.
    """

    def __init__(
        self, net: WaveNetNetwork, batch_size: int, context: Tensor | None = None
    ) -> None:
        ref = net.output.weight
        dtype, device = ref.dtype, ref.device
        n = batch_size
        net._check_input(torch.empty(n, net.data_channels, 0, dtype=dtype, device=device), context)
        self.net = net
        self.t = 0
        with torch.no_grad():
            self.layers = [net.input, *net.dilated]
            self.flat = [conv._flat() for conv in self.layers]
            self.buffers = [
                torch.zeros(n, conv.in_channels, conv.receptive_field, dtype=dtype, device=device)
                for conv in self.layers
            ]
            self.residual = [conv._flat() for conv in net.residual]
            self.skip = [conv._flat() for conv in net.skip]
            self.out_hidden = net.output_hidden._flat()
            self.out = net.output._flat()
            self.conditions = (
                None if net.conditions is None else [lin(context) for lin in net.conditions]
            )
        self._pending: list[Tensor] = []

    def _conv_step(self, index: int, x_t: Tensor) -> Tensor:
        conv, buffer = self.layers[index], self.buffers[index]
        k, d = conv.kernel_size[0], conv.dilation[0]
        span = buffer.shape[-1]
        taps = [buffer[:, :, (self.t - (k - 1 - u) * d) % span] for u in range(k - 1)]
        taps.append(x_t)
        return F.linear(torch.stack(taps, dim=-1).reshape(len(x_t), -1), *self.flat[index])

    @torch.no_grad()
    def step(self, x_t: Tensor) -> Tensor:
        """Parameters ``(N, P, C)`` of the current step; ``x_t`` ``(N, C)`` holds the
        network inputs of its channels written so far (the others are ignored)."""
        h = self._conv_step(0, x_t)
        self._pending = []
        skip: Tensor | float = 0.0
        for l in range(len(self.layers) - 1):
            self._pending.append(h)
            f = self._conv_step(l + 1, h)
            if self.conditions is not None:
                f = f + self.conditions[l]
            z = _gate(f)
            skip = skip + F.linear(z, *self.skip[l])
            if l < len(self.residual):
                h = h + F.linear(z, *self.residual[l])
        out = F.linear(F.relu(F.linear(F.relu(skip), *self.out_hidden)), *self.out)
        return out.view(len(out), self.net.out_features, self.net.data_channels)

    @torch.no_grad()
    def commit(self, x_t: Tensor) -> None:
        """Push the complete step ``x_t`` ``(N, C)`` (every channel written) and the
        layer inputs of the last :meth:`step` into the buffers; go to the next step."""
        if len(self._pending) != len(self.buffers) - 1:
            raise ValueError("commit: call step() for the current step first")
        for buffer, value in zip(self.buffers, [x_t, *self._pending], strict=True):
            buffer[:, :, self.t % buffer.shape[-1]] = value
        self.t += 1
        self._pending = []
