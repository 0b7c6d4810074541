r"""The gated PixelCNN (van den Oord et al., 2016b) and its incremental generation cache.

A vertical stack (the rows above) and a horizontal stack (the current row, to the left)
of masked convolutions (:mod:`pyro_dgm.nn.masked_conv`), joined in every
:class:`GatedPixelCNNBlock`, see the whole causal past within their reach: no blind
spot. :class:`PixelCNNCache` computes each activation once, when its inputs exist (a
row of the vertical stack when the row above is complete, one position of the
horizontal stack per pixel), so a whole sample costs about one full pass
(Ramachandran et al., 2017) instead of one per pixel.

References:
    | Conditional Image Generation with PixelCNN Decoders (van den Oord et al., 2016b)
    | https://arxiv.org/abs/1606.05328
    | Fast Generation for Convolutional Autoregressive Models (Ramachandran et al., 2017)
    | https://arxiv.org/abs/1704.06001
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..utils.checks import check_int, check_number
from .masked_conv import MaskedConv2d, check_context, check_groups, gated_activation

__all__ = ["GatedPixelCNNBlock", "PixelCNNCache", "PixelCNNNetwork"]


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
        dropout: The dropout probability on the horizontal stack's gated features before
            the 1x1 convolution (``train()`` mode only). Dropping features position by
            position keeps the block causal.

    Example:
        >>> block = GatedPixelCNNBlock(4, context_dim=2)
        >>> v, h, c = torch.randn(1, 4, 5, 5), torch.randn(1, 4, 5, 5), torch.randn(1, 2)
        >>> v_out, h_out = block(v, h, c)
        >>> v_out.shape, h_out.shape
        (torch.Size([1, 4, 5, 5]), torch.Size([1, 4, 5, 5]))
        >>> h_later = h.clone()
        >>> h_later[..., 2, 3] += 1.0  # change pixel (2, 3): the pixels before it do not see it
        >>> torch.allclose(block(v, h_later, c)[1][..., 2, :3], h_out[..., 2, :3])
        True
    """

    def __init__(
        self,
        channels: int,
        kernel_size: int = 3,
        data_channels: int = 1,
        context_dim: int | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        check_groups("channels", check_int(channels, "channels", 1), data_channels)
        half = kernel_size // 2
        self.kernel_size = kernel_size
        self.dropout = check_number(dropout, "dropout", minimum=0.0, maximum=0.999)
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
        hz = F.dropout(gated_activation(hf), self.dropout, self.training and self.dropout > 0)
        return gated_activation(vf), h + self.horizontal_out(hz)


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
        dropout: The dropout probability inside each gated block (``train()`` mode only;
            :meth:`cache` computes the network as evaluated, without it).

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
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        c = check_int(data_channels, "data_channels", 1)
        check_int(out_features, "out_features", 1)
        check_int(num_layers, "num_layers", 1)
        hid = check_int(hidden_channels, "hidden_channels", 1)
        check_groups("hidden_channels", hid, c)
        if check_int(kernel_size, "kernel_size", 3) % 2 == 0:
            raise ValueError(f"kernel_size: expected an odd int >= 3, got {kernel_size}")
        if context_dim is not None:
            check_int(context_dim, "context_dim", 1)
        self.data_channels = c
        self.out_features = out_features
        self.hidden_channels = hid
        self.kernel_size = kernel_size
        self.context_dim = context_dim
        half = kernel_size // 2
        self.vertical_input = nn.Conv2d(c, hid, (half + 1, kernel_size))
        self.horizontal_input = MaskedConv2d(c, hid, (1, kernel_size), "A", c)
        self.blocks = nn.ModuleList(
            GatedPixelCNNBlock(hid, kernel_size, c, context_dim, dropout)
            for _ in range(num_layers)
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
        check_context(x, context, self.context_dim)

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

    Example:
        >>> net = PixelCNNNetwork(1, out_features=3, hidden_channels=4, num_layers=2)
        >>> x = torch.randint(0, 2, (2, 1, 3, 3)).float()  # the values generation will write
        >>> full = net(x)  # (N, P, C, H, W), every pixel in one pass
        >>> cache, same = net.cache(2, 3, 3), True
        >>> for i in range(3):
        ...     cache.start_row(i)
        ...     for j in range(3):
        ...         same &= torch.allclose(cache.pixel(i, j), full[..., i, j], atol=1e-5)
        ...         cache.write(i, j, 0, x[:, 0, i, j])
        >>> same
        True
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
            v = gated_activation(vf)

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
            h = h + F.linear(gated_activation(hf + self.row_terms[l][:, :, j]), w_o, b_o)
        out = F.linear(F.relu(F.linear(F.relu(h), *self.out_hidden)), *self.out)
        return out.view(len(out), self.net.out_features, self.net.data_channels)

    @torch.no_grad()
    def write(self, i: int, j: int, channel: int, value: Tensor) -> None:
        """Store the network input ``value`` ``(N,)`` at ``channel`` of pixel ``(i, j)``."""
        self.x[:, channel, i + self.half + 1, j + self.half] = value
