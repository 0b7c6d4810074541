r"""pyro_dgm: deep generative models as native Pyro pieces.

Normalizing flows as Pyro ``TransformModule``\ s and distributions, discretized
likelihoods, dequantization as a guide over noise, VAEs as model/guide pairs,
and the training loop, metrics and diagnostics around them.

The plotting module (matplotlib) is not imported here, so that
``import pyro_dgm`` stays fast: import it as ``pyro_dgm.plots``.
"""

from . import diagnostics, distributions, flows, image_flows, infer, models, nn, transforms
from ._version import __version__

__all__ = [
    "__version__",
    "diagnostics",
    "distributions",
    "flows",
    "image_flows",
    "infer",
    "models",
    "nn",
    "transforms",
]
