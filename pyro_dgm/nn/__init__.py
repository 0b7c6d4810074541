r"""Plain torch networks (no Pyro): dense and convolutional coupling networks,
masked and causal convolutions. Transforms and distributions are built from them."""

from .conv import ConditionalCouplingConvNet, ConvResNet, CouplingConvNet
from .dense import CouplingMLP
from .masked_conv import (
    CausalConv1d,
    GatedPixelCNNBlock,
    MaskedConv2d,
    PixelCNNCache,
    PixelCNNNetwork,
    WaveNetCache,
    WaveNetNetwork,
)

__all__ = [
    "CausalConv1d",
    "ConditionalCouplingConvNet",
    "ConvResNet",
    "CouplingConvNet",
    "CouplingMLP",
    "GatedPixelCNNBlock",
    "MaskedConv2d",
    "PixelCNNCache",
    "PixelCNNNetwork",
    "WaveNetCache",
    "WaveNetNetwork",
]
