r"""Pyro distributions for deep generative models.

Discretized likelihoods over integer levels (PixelCNN++'s discretized logistic and its
mixture, and the discretization of any continuous base with a cdf), and autoregressive
distributions of integer images and sequences (PixelCNN, WaveNet-style causal convolutions):

.. math::
    \begin{aligned}
    \text{discretized}\quad & P(y) = F(y + \tfrac12) - F(y - \tfrac12),
        \qquad F(-\tfrac12) := 0,\ F(L - \tfrac12) := 1, \\
    \text{logistic mixture}\quad & P(y) = \textstyle\sum_{k=1}^K \pi_k
        \big[\sigma\big(\tfrac{y + 1/2 - \mu_k}{s_k}\big)
        - \sigma\big(\tfrac{y - 1/2 - \mu_k}{s_k}\big)\big], \\
    \text{autoregressive}\quad & P(y \mid c) = \textstyle\prod_{d=1}^{D}
        P(y_d \mid y_{<d}, c),
    \end{aligned}

over the levels :math:`y \in \{0, \dots, L-1\}` (the edge bins open). Every one is a
``TorchDistribution`` with the whole protocol (``sample``, ``log_prob``, ``expand``,
``to_event``, ``mask``, ``support``), so it is a likelihood in ``pyro.sample(...,
obs=y)`` and a decoder of a VAE.

Example:
    >>> import torch
    >>> d = DiscretizedLogistic(torch.tensor(2.0), torch.tensor(1.0), num_levels=5)
    >>> mass = d.log_prob(torch.arange(5.0)).exp()
    >>> torch.isclose(mass.sum(), torch.tensor(1.0))  # the edge bins are open
    tensor(True)

References:
    | PixelCNN++: Improving the PixelCNN with Discretized Logistic Mixture Likelihood
      and Other Modifications (Salimans et al., 2017)
    | https://arxiv.org/abs/1701.05517
    | Conditional Image Generation with PixelCNN Decoders (van den Oord et al., 2016)
    | https://arxiv.org/abs/1606.05328
"""

from .autoregressive import (
    OUTPUTS,
    AutoregressiveDistribution,
    AutoregressiveModule,
    PixelCNN,
    WaveNet,
)
from .discretized import Discretized, DiscretizedLogistic, DiscretizedLogisticMixture

__all__ = [
    "OUTPUTS",
    "AutoregressiveDistribution",
    "AutoregressiveModule",
    "Discretized",
    "DiscretizedLogistic",
    "DiscretizedLogisticMixture",
    "PixelCNN",
    "WaveNet",
]
