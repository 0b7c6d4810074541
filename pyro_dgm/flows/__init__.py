r"""Flow distributions: modules that own a base and transforms and return a Pyro
distribution when called, ``flow()`` or ``flow(context)``.

A flow draws :math:`x = g(z; c)` with :math:`z \sim p_Z` (the standard normal) and
:math:`g = g_K \circ \dots \circ g_1` invertible, and scores data by the change of
variables through :math:`f = g^{-1}`:

.. math:: \log p(x \mid c) = \log p_Z\big(f(x; c)\big)
    + \log \left|\det \frac{\partial f(x; c)}{\partial x}\right| .

Which direction is one network pass decides what a flow is for: MAF, spline and
coupling flows score in one pass (density estimation, forward KL); IAF samples and
scores its own samples in one pass (guides, reverse KL); couplings are one pass both
ways.

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

Example:
    >>> import torch
    >>> flow = RealNVP(2, num_layers=2)
    >>> d = flow()
    >>> d.sample((3,)).shape, d.log_prob(torch.randn(3, 2)).shape
    (torch.Size([3, 2]), torch.Size([3]))

References:
    | Normalizing Flows for Probabilistic Modeling and Inference (Papamakarios et al., 2021)
    | https://arxiv.org/abs/1912.02762
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
