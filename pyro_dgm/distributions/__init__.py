r"""Pyro distributions for deep generative models.

Discretized likelihoods over integer levels (PixelCNN++'s discretized logistic and its
mixture, and the discretization of any continuous base with a cdf), and autoregressive
distributions of integer images and sequences (PixelCNN, WaveNet-style causal convolutions).
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
