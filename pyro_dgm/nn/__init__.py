r"""Plain torch networks (no Pyro): dense and convolutional coupling networks,
masked and causal convolutions, PixelCNN and WaveNet networks with their generation
caches. Transforms and distributions are built from them."""

from .conv import ConditionalCouplingConvNet, ConvResNet, CouplingConvNet
from .dense import CouplingMLP
from .masked_conv import CausalConv1d, MaskedConv2d
from .pixelcnn import GatedPixelCNNBlock, PixelCNNCache, PixelCNNNetwork
from .wavenet import WaveNetCache, WaveNetNetwork

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
