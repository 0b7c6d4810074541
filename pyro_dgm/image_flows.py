r"""The multi-scale image flows under their former names, kept for compatibility for
one release.

The flows now live in :mod:`pyro_dgm.flows` (``RealNVP`` is
:class:`~pyro_dgm.flows.MultiScaleRealNVP`, ``Glow`` is
:class:`~pyro_dgm.flows.MultiScaleGlow`, so that they no longer share their names
with the vector flows), the transforms they are built from in
:mod:`pyro_dgm.transforms.multiscale`.
"""

from .flows.image import MultiScaleFlow, MultiScaleGlow, MultiScaleRealNVP
from .transforms.multiscale import MultiScaleLevel, MultiScaleTransform, SplitPrior

RealNVP = MultiScaleRealNVP
Glow = MultiScaleGlow

__all__ = [
    "Glow",
    "MultiScaleFlow",
    "MultiScaleLevel",
    "MultiScaleTransform",
    "RealNVP",
    "SplitPrior",
]
