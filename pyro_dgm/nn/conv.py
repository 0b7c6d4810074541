r"""Convolutional residual networks for the coupling layers of image flows.

A coupling layer on images :math:`(C, H, W)` needs a network from the kept
part of the image to a shift and a log-scale of the same shape. RealNVP and
Glow use small residual convolutional networks whose last layer starts at
zero, so that every coupling starts as the identity (Dinh et al., 2017,
section 3.6; Kingma & Dhariwal, 2018, section 3.3). No batch normalisation:
a normalisation over the batch would make ``log_prob`` of one image depend on
the other images of its batch (and on ``train()``/``eval()``), which a density
must not do; the flows put ActNorm between layers instead.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..utils.checks import check_int, check_number

__all__ = ["ConditionalCouplingConvNet", "ConvResNet", "CouplingConvNet"]


class _ResidualBlock(nn.Module):
    """``x + conv3x3(dropout(relu(conv3x3(relu(x)))))`` at constant width (pre-activation;
    dropout between the two convolutions, as in wide residual networks and Flow++).

    The ReLU after a convolution and the residual sum run in place on the convolution's
    output (autograd keeps neither: a convolution's backward needs its input, a sum
    none), which saves a memory pass over each activation. ``x`` itself is never written."""

    def __init__(self, channels: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1),
        )
        self.dropout = dropout  # applied in forward: the state_dict keys do not depend on it

    def forward(self, x: Tensor) -> Tensor:
        if not self.dropout:
            return self.body(x).add_(x)
        h = self.body[2](self.body[1](self.body[0](x)))
        return self.body[3](F.dropout(h, self.dropout, self.training)).add_(x)


class ConvResNet(nn.Module):
    r"""A shape-preserving residual network on images: a 3x3 convolution to
    ``hidden_channels``, ``num_blocks`` residual blocks (two 3x3 convolutions
    each), a ReLU and a 3x3 convolution to ``out_channels`` whose weights and
    bias start at zero (the network outputs exactly zero at initialisation).

    Any number of batch dimensions is accepted: inputs ``batch + (C, H, W)``
    are flattened to one batch dimension for the convolutions and restored.

    Arguments:
        in_channels: Input channels.
        out_channels: Output channels.
        hidden_channels: Width of the residual blocks.
        num_blocks: Number of residual blocks (0 gives conv, ReLU, conv).
        dropout: The dropout probability inside each residual block (``train()`` mode
            only), a regulariser for small data.

    References:
        | Deep Residual Learning for Image Recognition (He et al., 2016)
        | https://arxiv.org/abs/1512.03385

    Example:
        >>> net = ConvResNet(2, 4, hidden_channels=8)
        >>> net(torch.randn(5, 3, 2, 6, 6)).abs().max().item()
        0.0
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        hidden_channels: int = 64,
        num_blocks: int = 2,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.in_channels = check_int(in_channels, "in_channels", 1)
        dropout = check_number(dropout, "dropout", minimum=0.0, maximum=0.999)
        self.out_channels = check_int(out_channels, "out_channels", 1)
        check_int(hidden_channels, "hidden_channels", 1)
        check_int(num_blocks, "num_blocks", 0)
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, hidden_channels, 3, padding=1),
            *[_ResidualBlock(hidden_channels, dropout) for _ in range(num_blocks)],
            nn.ReLU(inplace=True),  # on a convolution's or a block's own output
            nn.Conv2d(hidden_channels, out_channels, 3, padding=1),
        )
        last = self.net[-1]
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() < 3 or x.shape[-3] != self.in_channels:
            raise ValueError(
                f"x must have shape batch + ({self.in_channels}, H, W), got {tuple(x.shape)}"
            )
        batch = x.shape[:-3]
        out = self.net(x.reshape(-1, *x.shape[-3:]))
        return out.reshape(*batch, *out.shape[-3:])


class CouplingConvNet(nn.Module):
    r"""The hypernet of an image coupling layer: ``x * mask`` to the parameters of
    the coupling, through a :class:`ConvResNet` that also sees the mask.

    The mask is appended to the input as ``C`` extra channels (RealNVP's reference
    code appends it too), so a translation-equivariant network still knows which pixels of a
    checkerboard it is predicting. For an affine coupling (``num_params=2``)
    the output is the tuple ``(shift, raw_scale)``; for an additive coupling
    (``num_params=1``) the shift alone; each of the event's shape
    :math:`(C, H, W)`, exactly zero at initialisation.

    Arguments:
        mask: The coupling's binary mask, of shape :math:`(C, H, W)`.
        num_params: 2 (affine) or 1 (additive).
        hidden_channels: Width of the residual network.
        num_blocks: Number of residual blocks.
        dropout: The dropout probability inside the residual blocks (``train()`` only).

    Example:
        >>> from pyro_dgm.transforms import checkerboard_mask
        >>> net = CouplingConvNet(checkerboard_mask(4, 4, 2), hidden_channels=8)
        >>> [p.shape for p in net(torch.randn(3, 2, 4, 4))]
        [torch.Size([3, 2, 4, 4]), torch.Size([3, 2, 4, 4])]
    """

    def __init__(
        self,
        mask: Tensor,
        num_params: int = 2,
        hidden_channels: int = 64,
        num_blocks: int = 2,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if not isinstance(mask, Tensor) or mask.dim() != 3:
            raise ValueError(
                "mask must be a tensor of shape (C, H, W), got "
                f"{tuple(mask.shape) if isinstance(mask, Tensor) else type(mask).__name__}"
            )
        if num_params not in (1, 2):
            raise ValueError(f"num_params must be 1 (additive) or 2 (affine), got {num_params!r}")
        channels = mask.shape[0]
        self.num_params = num_params
        self.register_buffer("mask", mask.to(torch.get_default_dtype()))
        self.resnet = ConvResNet(
            2 * channels, num_params * channels, hidden_channels, num_blocks, dropout
        )

    def forward(self, x_masked: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        mask = self.mask.to(x_masked.dtype).expand(*x_masked.shape[:-3], -1, -1, -1)
        out = self.resnet(torch.cat([x_masked, mask], dim=-3))
        if self.num_params == 1:
            return out
        shift, raw_scale = out.chunk(2, dim=-3)
        return shift, raw_scale


class ConditionalCouplingConvNet(CouplingConvNet):
    r"""The hypernet of a conditional image coupling: like :class:`CouplingConvNet`,
    with a context that is itself a stack of images aligned with the event.

    The context arrives flattened, of shape ``batch + (K * H * W,)`` (the
    ``context_dim`` convention of Pyro's conditional transforms), and is reshaped to
    ``K`` channels of the event's height and width and appended to the input, so each
    pixel's parameters see the context at that pixel and around it (Flow++'s
    conditional couplings for variational dequantization condition on the data this
    way).

    Arguments:
        mask: The coupling's binary mask, of shape :math:`(C, H, W)`.
        context_channels: :math:`K`, the channels of the context.
        num_params: 2 (affine) or 1 (additive).
        hidden_channels: Width of the residual network.
        num_blocks: Number of residual blocks.

    Example:
        >>> from pyro_dgm.transforms import checkerboard_mask
        >>> net = ConditionalCouplingConvNet(checkerboard_mask(4, 4), 3, hidden_channels=8)
        >>> net.context_dim
        48
        >>> [p.shape for p in net(torch.randn(2, 1, 4, 4), torch.randn(2, 48))]
        [torch.Size([2, 1, 4, 4]), torch.Size([2, 1, 4, 4])]
    """

    def __init__(
        self,
        mask: Tensor,
        context_channels: int,
        num_params: int = 2,
        hidden_channels: int = 64,
        num_blocks: int = 2,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(mask, num_params, hidden_channels, num_blocks, dropout)
        self.context_channels = check_int(context_channels, "context_channels", 1)
        channels, height, width = mask.shape
        self.context_shape = (context_channels, height, width)
        self.context_dim = context_channels * height * width
        self.resnet = ConvResNet(
            2 * channels + context_channels,
            num_params * channels,
            hidden_channels,
            num_blocks,
            dropout,
        )

    def forward(self, x_masked: Tensor, context: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        if context.shape[-1] != self.context_dim:
            raise ValueError(
                f"context must have last dimension {self.context_dim} "
                f"(= {' x '.join(map(str, self.context_shape))}), got {tuple(context.shape)}"
            )
        context = context.reshape(*context.shape[:-1], *self.context_shape)
        mask = self.mask.to(x_masked.dtype).expand(*x_masked.shape[:-3], -1, -1, -1)
        out = self.resnet(torch.cat([x_masked, mask, context.to(x_masked.dtype)], dim=-3))
        if self.num_params == 1:
            return out
        shift, raw_scale = out.chunk(2, dim=-3)
        return shift, raw_scale
