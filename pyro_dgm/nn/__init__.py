r"""Plain torch networks (no Pyro): dense and convolutional coupling networks,
masked and causal convolutions, PixelCNN and WaveNet networks with their generation
caches. Transforms and distributions are built from them.

Two kinds of network, by what their outputs may see:

.. math::
    \begin{aligned}
    \text{coupling}\quad & (t, \tilde s) = \mathrm{NN}(x_a, c),
        \qquad \mathrm{NN} \equiv 0 \text{ at initialisation}, \\
    \text{autoregressive}\quad & \theta_d = \mathrm{net}(x_{<d}, c)
        \quad \text{for every } d \text{ in one pass,} \qquad
        p(x) = \textstyle\prod_d p(x_d \mid \theta_d).
    \end{aligned}

The coupling networks (:class:`CouplingMLP`, :class:`CouplingConvNet`) see only the
kept part :math:`x_a` and start at zero, so the coupling they drive starts as the
identity (Kingma & Dhariwal, 2018). The autoregressive networks mask their
connections (:class:`MaskedConv2d`, :class:`CausalConv1d`) so that position :math:`d`
sees only the positions before it in raster order, channels innermost; their caches
(:class:`PixelCNNCache`, :class:`WaveNetCache`) compute each activation once during
generation (Ramachandran et al., 2017).

Example:
    >>> import torch
    >>> net = CausalConv1d(1, 4, kernel_size=2, mask_type="A")
    >>> x = torch.randn(1, 1, 6)
    >>> x_later = x.clone()
    >>> x_later[..., 3] += 1.0  # change step 3: steps 0..3 do not see it
    >>> torch.allclose(net(x_later)[..., :4], net(x)[..., :4])
    True

References:
    | Conditional Image Generation with PixelCNN Decoders (van den Oord et al., 2016)
    | https://arxiv.org/abs/1606.05328
    | Glow: Generative Flow with Invertible 1x1 Convolutions (Kingma & Dhariwal, 2018)
    | https://arxiv.org/abs/1807.03039
    | Fast Generation for Convolutional Autoregressive Models (Ramachandran et al., 2017)
    | https://arxiv.org/abs/1704.06001
"""

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
