r"""A WaveNet-style stack of dilated causal convolutions and its incremental generation cache.

:class:`WaveNetNetwork` stacks gated :class:`~pyro_dgm.nn.masked_conv.CausalConv1d`
layers with doubling dilations; :class:`WaveNetCache` generates one time step per
layer from a ring buffer of each layer's last :math:`(k-1)\,d` inputs (Paine et al.,
2016), so a whole sample costs about one full pass instead of one per step.

References:
    | WaveNet: A Generative Model for Raw Audio (van den Oord et al., 2016c)
    | https://arxiv.org/abs/1609.03499
    | Fast Wavenet Generation Algorithm (Paine et al., 2016)
    | https://arxiv.org/abs/1611.09482
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..utils.checks import check_int, check_number
from .masked_conv import CausalConv1d, check_context, check_groups, gated_activation

__all__ = ["WaveNetCache", "WaveNetNetwork"]


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
        dropout: The dropout probability on each layer's gated features :math:`z_l`
            before the residual and skip convolutions (``train()`` mode only; step by step,
            so the network stays causal; :meth:`cache` computes the network as evaluated,
            without it).

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
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        c = check_int(data_channels, "data_channels", 1)
        check_int(out_features, "out_features", 1)
        res = check_int(residual_channels, "residual_channels", 1)
        self.dropout = check_number(dropout, "dropout", minimum=0.0, maximum=0.999)
        skip = check_int(skip_channels or res, "skip_channels", 1)
        check_groups("residual_channels", res, c)
        check_groups("skip_channels", skip, c)
        dilations = tuple(dilations)
        if not dilations:
            raise ValueError("dilations: expected at least one gated layer, got ()")
        check_int(kernel_size, "kernel_size", 2)
        if context_dim is not None:
            check_int(context_dim, "context_dim", 1)
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
        check_context(x, context, self.context_dim)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """Parameters ``(N, P, C, T)`` of every step, from inputs ``(N, C, T)``."""
        self._check_input(x, context)
        h = self.input(x)
        skip: Tensor | float = 0.0
        for l, conv in enumerate(self.dilated):
            f = conv(h)
            if self.conditions is not None:
                f = f + self.conditions[l](context)[..., None]
            z = F.dropout(gated_activation(f), self.dropout, self.training and self.dropout > 0)
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

    Example:
        >>> net = WaveNetNetwork(1, out_features=3, residual_channels=4, dilations=(1, 2))
        >>> x = torch.randn(2, 1, 6)  # the values generation will write
        >>> full = net(x)  # (N, P, C, T), every step in one pass
        >>> cache, same = net.cache(2), True
        >>> for t in range(6):
        ...     same &= torch.allclose(cache.step(x[:, :, t]), full[..., t], atol=1e-5)
        ...     cache.commit(x[:, :, t])
        >>> same
        True
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
            z = gated_activation(f)
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
