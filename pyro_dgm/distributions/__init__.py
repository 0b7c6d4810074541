r"""Pyro distributions for deep generative models.

Discretized likelihoods over integer levels (PixelCNN++'s discretized logistic and its
mixture, and the discretization of any continuous base with a cdf).
"""

from .discretized import Discretized, DiscretizedLogistic, DiscretizedLogisticMixture

__all__ = [
    "Discretized",
    "DiscretizedLogistic",
    "DiscretizedLogisticMixture",
]
