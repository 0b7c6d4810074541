r"""Flow distributions: modules that own a base and transforms and return a Pyro
distribution when called, ``flow()`` or ``flow(context)``.

* :mod:`~pyro_dgm.flows.base`: :class:`Flow` (the module) and
  :class:`FlowDistribution` (the distribution it returns);
* :mod:`~pyro_dgm.flows.vector`: MAF, IAF, spline, RealNVP, NICE and Glow flows
  for vectors;
* :mod:`~pyro_dgm.flows.image`: the multi-scale RealNVP and Glow for images;
* :mod:`~pyro_dgm.flows.zuko`: any zuko flow.

.. code-block:: python

    flow = MAF(2)
    pyro.module("flow", flow)
    with pyro.plate("data", len(x)):
        pyro.sample("x", flow(), obs=x)
"""

from .base import Flow, FlowDistribution
from .image import MultiScaleFlow, MultiScaleGlow, MultiScaleRealNVP
from .vector import IAF, MAF, NICE, Glow, RealNVP, SplineFlow
from .zuko import ZukoFlow

__all__ = [
    "IAF",
    "MAF",
    "NICE",
    "Flow",
    "FlowDistribution",
    "Glow",
    "MultiScaleFlow",
    "MultiScaleGlow",
    "MultiScaleRealNVP",
    "RealNVP",
    "SplineFlow",
    "ZukoFlow",
]
