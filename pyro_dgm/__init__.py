r"""pyro_dgm: deep generative models as native Pyro pieces.

Normalizing flows as Pyro ``TransformModule``\ s and distributions, discretized
likelihoods, dequantization as a guide over noise, VAEs as model/guide pairs,
and the training loop, metrics and diagnostics around them.

The diagnostics (ArviZ) and plotting (matplotlib) modules are not imported here,
so that ``import pyro_dgm`` stays fast: import them as ``pyro_dgm.diagnostics``
and ``pyro_dgm.plots``.
"""

__version__ = "0.1.0"

from . import transforms

__all__ = ["__version__", "transforms"]
