r"""Plain torch networks (no Pyro): convolutional coupling networks, masked and
causal convolutions. Transforms and distributions are built from them."""

from .conv import ConditionalCouplingConvNet, ConvResNet, CouplingConvNet

__all__ = ["ConditionalCouplingConvNet", "ConvResNet", "CouplingConvNet"]
