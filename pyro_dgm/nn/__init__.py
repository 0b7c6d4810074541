r"""Plain torch networks (no Pyro): convolutional coupling networks, masked and
causal convolutions. Transforms and distributions are built from them."""

from .conv import ConvResNet, CouplingConvNet

__all__ = ["ConvResNet", "CouplingConvNet"]
