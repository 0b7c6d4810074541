r"""Normalizing-flow layers as Pyro ``TransformModule``\ s.

Every layer is a bijection whose forward call is the generative direction
:math:`x = g(z)` and whose inverse is the inference direction :math:`z = f(x) =
g^{-1}(x)`; a stack of them scores data by the change of variables

.. math:: \log p(x) = \log p_Z\big(f(x)\big)
    + \sum_{k=1}^K \log \left|\det \frac{\partial f_k}{\partial h_{k-1}}\right|,
    \qquad h_0 = x, \quad h_k = f_k(h_{k-1}) .

The families differ in how the Jacobian stays cheap: couplings (NICE, RealNVP)
change one part of :math:`x` given the other, so it is triangular,
:math:`y_a = x_a,\ y_b = x_b \odot e^{s(x_a)} + t(x_a)`; RevNet blocks are two
additive couplings (:math:`\log|\det J| = 0`); autoregressive layers
(MAF, IAF) make :math:`y_i` depend on :math:`x_{\le i}` only; ActNorm, 1x1
convolutions and invertible linear maps are elementwise or :math:`C \times C`;
Sylvester flows use :math:`\det(I + AB) = \det(I + BA)`. Conditional layers take a
context :math:`c` (``condition(c)``), and memory-saving stacks rebuild activations
instead of keeping them.

Pyro's own layers are re-exported here so that one namespace holds every layer
a pyro_dgm flow is built from; pyro_dgm adds only what Pyro lacks or gets wrong.

Example:
    >>> import pyro.distributions as dist
    >>> import torch
    >>> layers = [actnorm(2), masked_affine_coupling(2, half_mask(2)), permute(2)]
    >>> base = dist.Normal(torch.zeros(2), 1.0).to_event(1)
    >>> flow = dist.TransformedDistribution(base, layers)
    >>> flow.log_prob(torch.randn(5, 2)).shape
    torch.Size([5])

References:
    | Normalizing Flows for Probabilistic Modeling and Inference (Papamakarios et al., 2021)
    | https://arxiv.org/abs/1912.02762
"""

from pyro.distributions.transforms import (
    AffineCoupling,
    BatchNorm,
    ConditionalAffineCoupling,
    ConditionalPlanar,
    ConditionalRadial,
    ConditionalSpline,
    ConditionalSplineAutoregressive,
    GeneralizedChannelPermute,
    Householder,
    Permute,
    Planar,
    Radial,
    Spline,
    SplineAutoregressive,
    SplineCoupling,
    Sylvester,
    affine_coupling,
    batchnorm,
    conditional_affine_coupling,
    conditional_planar,
    conditional_radial,
    generalized_channel_permute,
    householder,
    iterated,
    permute,
    planar,
    radial,
    spline,
    spline_autoregressive,
    spline_coupling,
)
from pyro.distributions.transforms import sylvester as _pyro_sylvester

from ._bounds import soft_bound
from .actnorm import ActNorm, actnorm
from .affine import ConditionalAffine, ConditionedAffine, conditional_affine
from .autoregressive import (
    AffineAutoregressive,
    ConditionalAffineAutoregressive,
    ConditionedAffineAutoregressive,
    affine_autoregressive,
    conditional_affine_autoregressive,
)
from .coupling import (
    AdditiveCoupling,
    ConditionalAdditiveCoupling,
    ConditionalMaskedAffineCoupling,
    MaskedAffineCoupling,
    additive_coupling,
    alternating_mask,
    channel_half_mask,
    channel_mask,  # the former name of channel_half_mask, kept for one release
    checkerboard_mask,
    conditional_additive_coupling,
    conditional_masked_affine_coupling,
    half_mask,
    masked_affine_coupling,
    random_mask,
)
from .image import (
    InvertibleConv1x1,
    Squeeze,
    conditional_conv_affine_coupling,
    conv_additive_coupling,
    conv_affine_coupling,
    image_mask,
    invertible_conv1x1,
)
from .linear import InvertibleLinear, invertible_linear
from .logit import LogitTransform, NormalToLogisticTransform
from .multiscale import MultiScaleLevel, MultiScaleTransform, SplitPrior
from .reversible import (
    ConditionalMemorySavingStack,
    ConditionedMemorySavingStack,
    MemorySavingStack,
    ReconstructionError,
    ReconstructionWarning,
    memory_saving,
    relative_drift,
)
from .revnet import (
    ConditionalRevNetBlock,
    InvertibleDownsampling,
    RevNetBlock,
    conditional_conv_revnet_block,
    conditional_revnet_block,
    conv_revnet_block,
    invertible_downsampling,
    revnet_block,
)
from .sylvester import ConditionalSylvester, ConditionedSylvester, conditional_sylvester
from .zuko import ConditionalZukoTransform, ConditionedZukoTransform, ZukoTransform, zuko_transform

# importing the submodule .sylvester bound the package attribute ``sylvester`` to it;
# the name exported is Pyro's helper (the submodule stays importable by its path)
sylvester = _pyro_sylvester

__all__ = [
    "ActNorm",
    "AdditiveCoupling",
    "AffineAutoregressive",
    "AffineCoupling",
    "BatchNorm",
    "ConditionalAdditiveCoupling",
    "ConditionalAffine",
    "ConditionalAffineAutoregressive",
    "ConditionalAffineCoupling",
    "ConditionalMaskedAffineCoupling",
    "ConditionalMemorySavingStack",
    "ConditionalPlanar",
    "ConditionalRadial",
    "ConditionalRevNetBlock",
    "ConditionalSpline",
    "ConditionalSplineAutoregressive",
    "ConditionalSylvester",
    "ConditionalZukoTransform",
    "ConditionedAffine",
    "ConditionedAffineAutoregressive",
    "ConditionedMemorySavingStack",
    "ConditionedSylvester",
    "ConditionedZukoTransform",
    "GeneralizedChannelPermute",
    "Householder",
    "InvertibleConv1x1",
    "InvertibleDownsampling",
    "InvertibleLinear",
    "LogitTransform",
    "MaskedAffineCoupling",
    "MemorySavingStack",
    "MultiScaleLevel",
    "MultiScaleTransform",
    "NormalToLogisticTransform",
    "Permute",
    "Planar",
    "Radial",
    "ReconstructionError",
    "ReconstructionWarning",
    "RevNetBlock",
    "Spline",
    "SplineAutoregressive",
    "SplineCoupling",
    "SplitPrior",
    "Squeeze",
    "Sylvester",
    "ZukoTransform",
    "actnorm",
    "additive_coupling",
    "affine_autoregressive",
    "affine_coupling",
    "alternating_mask",
    "batchnorm",
    "channel_half_mask",
    "channel_mask",
    "checkerboard_mask",
    "conditional_additive_coupling",
    "conditional_affine",
    "conditional_affine_autoregressive",
    "conditional_affine_coupling",
    "conditional_conv_affine_coupling",
    "conditional_conv_revnet_block",
    "conditional_masked_affine_coupling",
    "conditional_planar",
    "conditional_radial",
    "conditional_revnet_block",
    "conditional_sylvester",
    "conv_additive_coupling",
    "conv_affine_coupling",
    "conv_revnet_block",
    "generalized_channel_permute",
    "half_mask",
    "householder",
    "image_mask",
    "invertible_conv1x1",
    "invertible_downsampling",
    "invertible_linear",
    "iterated",
    "masked_affine_coupling",
    "memory_saving",
    "permute",
    "planar",
    "radial",
    "random_mask",
    "relative_drift",
    "revnet_block",
    "soft_bound",
    "spline",
    "spline_autoregressive",
    "spline_coupling",
    "sylvester",
    "zuko_transform",
]
