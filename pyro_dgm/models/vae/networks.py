r"""Encoders and decoders of the VAE: MLPs for vectors, small convolutional nets for images.

An *encoder* maps a batch of (normalized, floating) data ``(N, *event_shape)`` to a
context :math:`h` of shape ``(N, context_dim)``; the posterior heads of
:mod:`.posteriors` turn :math:`h` into :math:`q(z \mid x)`. A *decoder* maps
latents ``(..., latent_dim)`` with any batch dimensions on the left to the
likelihood's parameters ``(..., *output_shape)``: under importance sampling the
latents carry a particle dimension as well as the data dimension.

Plain torch modules (no Pyro): the VAE registers them through ``pyro.module``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ...utils.checks import check_shape

__all__ = ["ConvDecoder", "ConvEncoder", "MLPDecoder", "MLPEncoder"]


def _dims(values: Sequence[int], name: str) -> list[int]:
    return list(check_shape(values, name))


def _mlp(sizes: list[int], final_activation: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if final_activation or i < len(sizes) - 2:
            layers.append(nn.ELU())
    return nn.Sequential(*layers)


def _check_input(x: Tensor, shape: torch.Size, owner: str) -> None:
    if x.dim() < len(shape) or x.shape[x.dim() - len(shape) :] != shape:
        raise ValueError(
            f"{owner}: input must have shape (..., {', '.join(map(str, shape))}), "
            f"got {tuple(x.shape)}"
        )


class MLPEncoder(nn.Module):
    r"""A multilayer perceptron from flattened data to the context :math:`h`.

    .. math:: h = \mathrm{ELU}(W_L \cdots \mathrm{ELU}(W_1 \operatorname{vec}(x) + b_1)
        \cdots + b_L)

    Arguments:
        input_shape: The shape of one data point (flattened inside).
        hidden_dims: Layer sizes; the last is ``context_dim``.

    Example:
        >>> MLPEncoder((1, 8, 8), hidden_dims=(32, 16))(torch.rand(5, 1, 8, 8)).shape
        torch.Size([5, 16])
    """

    def __init__(self, input_shape: Sequence[int] | int, hidden_dims: Sequence[int] = (128, 128)):
        super().__init__()
        self.input_shape = check_shape(input_shape, "input_shape")
        dims = _dims(hidden_dims, "hidden_dims")
        self.context_dim = dims[-1]
        self.net = _mlp([math.prod(self.input_shape), *dims], final_activation=True)

    def forward(self, x: Tensor) -> Tensor:
        _check_input(x, self.input_shape, type(self).__name__)
        return self.net(x.flatten(x.dim() - len(self.input_shape)))


class MLPDecoder(nn.Module):
    r"""A multilayer perceptron from latents to the likelihood's parameters.

    .. math:: \eta = W_{L+1} \mathrm{ELU}(\cdots \mathrm{ELU}(W_1 z + b_1) \cdots) + b_{L+1}

    Arguments:
        latent_dim: The latent dimension.
        output_shape: The shape of the parameters of one data point, e.g.
            ``(P * D,)`` for a likelihood with ``P`` parameters per coordinate.
        hidden_dims: Hidden layer sizes.

    Example:
        >>> decoder = MLPDecoder(2, (6,), hidden_dims=(16,))
        >>> decoder(torch.randn(10, 5, 2)).shape  # particles x data points x latent
        torch.Size([10, 5, 6])
    """

    def __init__(
        self,
        latent_dim: int,
        output_shape: Sequence[int] | int,
        hidden_dims: Sequence[int] = (128, 128),
    ) -> None:
        super().__init__()
        self.latent_dim = check_shape(latent_dim, "latent_dim", ndim=1)[0]
        self.output_shape = check_shape(output_shape, "output_shape")
        sizes = [self.latent_dim, *_dims(hidden_dims, "hidden_dims"), math.prod(self.output_shape)]
        self.net = _mlp(sizes, final_activation=False)

    def forward(self, z: Tensor) -> Tensor:
        _check_input(z, torch.Size([self.latent_dim]), type(self).__name__)
        return self.net(z).unflatten(-1, self.output_shape)


def _num_stages(height: int, width: int, max_stages: int = 2) -> int:
    """Stride-2 stages that divide the image exactly (8x8 -> 2x2, 28x28 -> 7x7)."""
    stages = 0
    while stages < max_stages and height % 2 == 0 and width % 2 == 0 and min(height, width) > 2:
        height, width, stages = height // 2, width // 2, stages + 1
    return stages


class ConvEncoder(nn.Module):
    r"""A small convolutional encoder for images ``(C, H, W)``.

    A 3x3 convolution, then up to two stride-2 4x4 convolutions (each halving
    the resolution and doubling the channels, as long as :math:`H, W` are even:
    8x8 digits go to 2x2, 28x28 MNIST to 7x7), then a dense layer to the
    context :math:`h`. ELU activations throughout.

    Arguments:
        image_shape: ``(C, H, W)``.
        channels: Channels of the first convolution.
        context_dim: The size of :math:`h`.

    Example:
        >>> ConvEncoder((1, 8, 8), channels=4, context_dim=16)(torch.rand(5, 1, 8, 8)).shape
        torch.Size([5, 16])
    """

    def __init__(
        self, image_shape: Sequence[int], channels: int = 32, context_dim: int = 128
    ) -> None:
        super().__init__()
        self.input_shape = check_shape(image_shape, "image_shape", ndim=3)
        c, h, w = self.input_shape
        channels = _dims([channels], "channels")[0]
        self.context_dim = _dims([context_dim], "context_dim")[0]
        stages = _num_stages(h, w)
        layers: list[nn.Module] = [nn.Conv2d(c, channels, 3, padding=1), nn.ELU()]
        for _ in range(stages):
            layers += [nn.Conv2d(channels, 2 * channels, 4, stride=2, padding=1), nn.ELU()]
            channels, h, w = 2 * channels, h // 2, w // 2
        layers += [nn.Flatten(), nn.Linear(channels * h * w, self.context_dim), nn.ELU()]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        _check_input(x, self.input_shape, type(self).__name__)
        batch = x.shape[:-3]
        return self.net(x.reshape(-1, *self.input_shape)).reshape(*batch, self.context_dim)


class ConvDecoder(nn.Module):
    r"""A small convolutional decoder from latents to per-pixel parameters ``(P * C, H, W)``.

    The mirror of :class:`ConvEncoder`: a dense layer to a coarse grid, up to
    two stride-2 transposed convolutions (each doubling the resolution, halving
    the channels), then a 3x3 convolution to the ``output_shape[0]`` parameter
    channels. Latents may carry any batch dimensions on the left.

    Arguments:
        latent_dim: The latent dimension.
        output_shape: ``(P * C, H, W)``, the likelihood's parameters of one image.
        channels: Channels of the last hidden layer (the coarse grid has
            ``channels * 2**stages``).

    Example:
        >>> ConvDecoder(3, (2, 8, 8), channels=4)(torch.randn(7, 5, 3)).shape
        torch.Size([7, 5, 2, 8, 8])
    """

    def __init__(self, latent_dim: int, output_shape: Sequence[int], channels: int = 32) -> None:
        super().__init__()
        self.latent_dim = check_shape(latent_dim, "latent_dim", ndim=1)[0]
        self.output_shape = check_shape(output_shape, "output_shape", ndim=3)
        out_channels, h, w = self.output_shape
        channels = _dims([channels], "channels")[0]
        stages = _num_stages(h, w)
        top = channels * 2**stages
        self._grid = (top, h // 2**stages, w // 2**stages)
        self.dense = nn.Sequential(nn.Linear(self.latent_dim, math.prod(self._grid)), nn.ELU())
        layers: list[nn.Module] = []
        width = top
        for _ in range(stages):
            layers += [nn.ConvTranspose2d(width, width // 2, 4, stride=2, padding=1), nn.ELU()]
            width //= 2
        layers.append(nn.Conv2d(width, out_channels, 3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        _check_input(z, torch.Size([self.latent_dim]), type(self).__name__)
        batch = z.shape[:-1]
        grid = self.dense(z.reshape(-1, self.latent_dim)).reshape(-1, *self._grid)
        return self.net(grid).reshape(*batch, *self.output_shape)
