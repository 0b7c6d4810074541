r"""Ready-made flows for vector data :math:`(D,)`: autoregressive (MAF, IAF, spline)
and coupling (RealNVP, NICE, Glow) flows, each a :class:`~pyro_dgm.flows.Flow` that
returns its distribution when called, ``flow()`` or ``flow(context)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pyro.distributions.transforms import SplineAutoregressive
from pyro.nn import AutoRegressiveNN, ConditionalAutoRegressiveNN
from torch import Tensor
from torch.distributions import Transform

from ..transforms.actnorm import ActNorm
from ..transforms.autoregressive import AffineAutoregressive, ConditionalAffineAutoregressive
from ..transforms.coupling import (
    additive_coupling,
    conditional_additive_coupling,
    conditional_masked_affine_coupling,
    half_mask,
    masked_affine_coupling,
)
from ..transforms.linear import InvertibleLinear
from .base import Flow

__all__ = ["IAF", "MAF", "NICE", "Glow", "RealNVP", "SplineFlow"]


def _orderings(input_dim: int, num_layers: int) -> list[Tensor]:
    """Alternate the autoregressive order between layers: 0..D-1, then D-1..0."""
    order = torch.arange(input_dim)
    return [order if i % 2 == 0 else order.flip(0) for i in range(num_layers)]


def _affine_layers(
    input_dim: int, num_layers: int, hidden_dims: Sequence[int] | None, context_dim: int | None
) -> list[Transform]:
    hidden = list(hidden_dims) if hidden_dims is not None else [max(32, 4 * input_dim)] * 2
    layers: list[Transform] = []
    for order in _orderings(input_dim, num_layers):
        if context_dim is None:
            arn = AutoRegressiveNN(input_dim, hidden, permutation=order)
            layers.append(AffineAutoregressive(arn))
        else:
            arn = ConditionalAutoRegressiveNN(input_dim, context_dim, hidden, permutation=order)
            layers.append(ConditionalAffineAutoregressive(arn))
    return layers


class _AffineAutoregressiveFlow(Flow):
    """Pyro's ``AffineAutoregressive`` layers, orders alternated; subclasses pick the direction."""

    inverted: bool

    def __init__(
        self,
        input_dim: int,
        num_layers: int = 5,
        hidden_dims: Sequence[int] | None = None,
        context_dim: int | None = None,
    ) -> None:
        layers = _affine_layers(input_dim, num_layers, hidden_dims, context_dim)
        if self.inverted:
            layers = [layer.inv for layer in reversed(layers)]
        super().__init__(layers, event_shape=(input_dim,))


class MAF(_AffineAutoregressiveFlow):
    r"""Masked autoregressive flow (Papamakarios et al., 2017): Pyro's
    ``AffineAutoregressive`` layers used through ``.inv``, orders alternated.

    .. math:: z_i = (x_i - \mu_i(x_{<i})) / \sigma_i(x_{<i})

    Scoring data (``log_prob``) is one network pass per layer; sampling takes
    :math:`D` sequential passes per layer. The natural choice for density
    estimation (forward KL). Layers use Pyro's log-scale parametrisation (clamped
    to [-5, 3] with gradients preserved), not its ``stable=True`` variant,
    whose sigmoid scale lies in (0, 1): it can only contract, so data wider
    than the base would be out of reach.

    References:
        | Masked Autoregressive Flow for Density Estimation (Papamakarios et al., 2017)
        | https://arxiv.org/abs/1705.07057

    Arguments:
        input_dim: The data dimension :math:`D`.
        num_layers: The number of autoregressive layers.
        hidden_dims: Hidden sizes of each MADE network.
        context_dim: The context size of a conditional flow, or ``None``.

    Example:
        >>> flow = MAF(3, num_layers=2, hidden_dims=[16], context_dim=2)
        >>> x, c = torch.randn(5, 3), torch.randn(5, 2)
        >>> flow(c).log_prob(x).shape  # one pass per layer
        torch.Size([5])
    """

    inverted = True


class IAF(_AffineAutoregressiveFlow):
    r"""Inverse autoregressive flow (Kingma et al., 2016): Pyro's
    ``AffineAutoregressive`` layers in their own direction, orders alternated.

    .. math:: x_i = \mu_i(z_{<i}) + \sigma_i(z_{<i})\, z_i

    Sampling (and scoring its own samples, through the cache) is one network
    pass per layer; scoring an arbitrary value takes :math:`D` sequential
    passes per layer. The natural choice for a guide or for reverse KL.

    References:
        | Improved Variational Inference with Inverse Autoregressive Flow (Kingma et al., 2016)
        | https://arxiv.org/abs/1606.04934

    Arguments:
        input_dim: The dimension :math:`D`.
        num_layers: The number of autoregressive layers.
        hidden_dims: Hidden sizes of each MADE network.
        context_dim: The context size of a conditional flow, or ``None``.

    Example:
        >>> q = IAF(3, num_layers=2, hidden_dims=[16])()
        >>> z = q.rsample((4,))  # one pass per layer
        >>> q.log_prob(z).shape  # its own samples score through the cache
        torch.Size([4])
    """

    inverted = False


class SplineFlow(Flow):
    r"""Autoregressive rational-quadratic spline flow (Durkan et al., 2019) from
    Pyro's ``SplineAutoregressive`` layers, used through ``.inv`` so that
    scoring is one pass per layer (MAF direction), orders alternated.

    Each coordinate is mapped by a monotonic rational-quadratic spline on
    :math:`[-B, B]` (identity outside) whose knots depend on the previous ones: in
    bin :math:`k`, with :math:`\xi = (x_i - x^{(k)}) / w_k` and the bin's slope
    :math:`s_k = h_k / w_k`,

    .. math:: z_i = y^{(k)} + \frac{h_k \big(s_k \xi^2 + \delta_k \xi (1 - \xi)\big)}
        {s_k + (\delta_{k+1} + \delta_k - 2 s_k)\, \xi (1 - \xi)},

    the widths :math:`w`, heights :math:`h` and knot derivatives :math:`\delta`
    given by a MADE network of :math:`x_{<i}`.

    References:
        | Neural Spline Flows (Durkan et al., 2019)
        | https://arxiv.org/abs/1906.04032

    Arguments:
        input_dim: The data dimension :math:`D`.
        num_layers: The number of spline layers.
        hidden_dims: Hidden sizes of each MADE network.
        count_bins: Spline bins :math:`K`.
        bound: The half-width :math:`B` of the spline's interval.

    Example:
        >>> flow = SplineFlow(2, num_layers=2, hidden_dims=[16], count_bins=4)
        >>> flow().log_prob(torch.randn(5, 2)).shape
        torch.Size([5])
    """

    def __init__(
        self,
        input_dim: int,
        num_layers: int = 4,
        hidden_dims: Sequence[int] | None = None,
        count_bins: int = 8,
        bound: float = 5.0,
    ) -> None:
        hidden = list(hidden_dims) if hidden_dims is not None else [max(32, 4 * input_dim)] * 2
        layers = []
        for order in _orderings(input_dim, num_layers):
            param_dims = [count_bins, count_bins, count_bins - 1, count_bins]
            arn = AutoRegressiveNN(input_dim, hidden, param_dims=param_dims, permutation=order)
            layers.append(SplineAutoregressive(input_dim, arn, count_bins=count_bins, bound=bound))
        super().__init__([layer.inv for layer in reversed(layers)], event_shape=(input_dim,))


def _hidden(input_dim: int, hidden_dims: Sequence[int] | None) -> list[int]:
    return list(hidden_dims) if hidden_dims is not None else [max(32, 4 * input_dim)] * 2


def _coupling(
    kind: str,
    input_dim: int,
    mask: Tensor,
    hidden_dims: list[int],
    context_dim: int | None,
) -> Transform:
    if kind == "affine":
        if context_dim is None:
            return masked_affine_coupling(input_dim, mask, hidden_dims)
        return conditional_masked_affine_coupling(input_dim, context_dim, mask, hidden_dims)
    if context_dim is None:
        return additive_coupling(input_dim, mask, hidden_dims)
    return conditional_additive_coupling(input_dim, context_dim, mask, hidden_dims)


def _alternating_couplings(
    kind: str,
    input_dim: int,
    num_layers: int,
    hidden_dims: Sequence[int] | None,
    context_dim: int | None,
) -> list[Transform]:
    """Couplings whose half masks alternate between layers, in inference order."""
    hidden = _hidden(input_dim, hidden_dims)
    return [
        _coupling(kind, input_dim, half_mask(input_dim, flip=i % 2 == 1), hidden, context_dim)
        for i in range(num_layers)
    ]


def _generative_order(inference_order: list[Transform]) -> list[Transform]:
    """Layers listed as they meet the data (scoring) are applied in reverse to sample."""
    return list(reversed(inference_order))


class RealNVP(Flow):
    r"""RealNVP for vectors (Dinh et al., 2017): affine couplings with half masks
    that alternate between layers, each starting as the identity.

    .. math:: y = m \odot x + (1 - m) \odot \left(x \odot e^{s(m \odot x)} + t(m \odot x)\right)

    One network pass per layer in both directions (sampling and scoring).

    References:
        | Density estimation using Real NVP (Dinh et al., 2017)
        | https://arxiv.org/abs/1605.08803

    Arguments:
        input_dim: The data dimension :math:`D \ge 2`.
        num_layers: The number of couplings.
        hidden_dims: Hidden sizes of each coupling network.
        context_dim: The context size of a conditional flow, or ``None``.

    Example:
        >>> import pyro.distributions as dist
        >>> flow = RealNVP(3, num_layers=2, hidden_dims=[16])
        >>> x = torch.randn(5, 3)
        >>> normal = dist.Normal(0.0, 1.0).expand([3]).to_event(1)
        >>> torch.allclose(flow().log_prob(x), normal.log_prob(x))  # the identity at first
        True
    """

    def __init__(
        self,
        input_dim: int,
        num_layers: int = 6,
        hidden_dims: Sequence[int] | None = None,
        context_dim: int | None = None,
    ) -> None:
        layers = _alternating_couplings("affine", input_dim, num_layers, hidden_dims, context_dim)
        super().__init__(_generative_order(layers), event_shape=(input_dim,))


class NICE(Flow):
    r"""NICE (Dinh et al., 2014): volume-preserving additive couplings with
    alternating half masks, then a learned diagonal scaling.

    .. math:: y = x + (1 - m) \odot t(m \odot x), \qquad \log|\det J| = 0

    NICE's final scaling layer :math:`x \mapsto e^{s} \odot x` is an
    :class:`~pyro_dgm.transforms.ActNorm` here (the same map, plus a shift and a
    data-dependent initialisation). One network pass per layer both ways.

    References:
        | NICE: Non-linear Independent Components Estimation (Dinh et al., 2014)
        | https://arxiv.org/abs/1410.8516

    Arguments:
        input_dim: The data dimension :math:`D \ge 2`.
        num_layers: The number of additive couplings.
        hidden_dims: Hidden sizes of each coupling network.
        context_dim: The context size of a conditional flow, or ``None``.

    Example:
        >>> flow = NICE(4, num_layers=2, hidden_dims=[16])
        >>> x = torch.randn(5, 4)
        >>> flow().log_prob(x).shape  # the first batch scored initialises the ActNorm
        torch.Size([5])
        >>> bool(flow.parts[0].initialized)  # generative order: the ActNorm first
        True
    """

    def __init__(
        self,
        input_dim: int,
        num_layers: int = 6,
        hidden_dims: Sequence[int] | None = None,
        context_dim: int | None = None,
    ) -> None:
        layers = _alternating_couplings(
            "additive", input_dim, num_layers, hidden_dims, context_dim
        )
        layers.append(ActNorm(input_dim))  # NICE's diagonal scaling, last before the base
        super().__init__(_generative_order(layers), event_shape=(input_dim,))


class Glow(Flow):
    r"""Glow's step for vectors (Kingma & Dhariwal, 2018), repeated: ActNorm,
    an invertible linear map (LU or QR), then an affine coupling.

    Listed in the order the steps meet the data when scoring:

    .. math:: \text{step}(x) = \mathrm{coupling}(W\, \mathrm{actnorm}(x))

    The learned linear map mixes the coordinates before each split. The coupling's
    half mask also alternates from step to step (Glow keeps one split for
    images): a linear map that starts, or ends up, close to a permutation of the
    previous step's would otherwise leave the same coordinates untransformed twice
    in a row. One pass per layer both ways; ActNorm initialises itself on the
    first batch it scores.

    References:
        | Glow: Generative Flow with Invertible 1x1 Convolutions (Kingma & Dhariwal, 2018)
        | https://arxiv.org/abs/1807.03039

    Arguments:
        input_dim: The data dimension :math:`D \ge 2`.
        num_steps: The number of steps.
        hidden_dims: Hidden sizes of each coupling network.
        context_dim: The context size of a conditional flow (couplings only), or ``None``.
        parametrization: ``"lu"`` or ``"qr"`` for the linear maps.

    Example:
        >>> flow = Glow(3, num_steps=2, hidden_dims=[16], parametrization="qr")
        >>> len(flow.parts)  # ActNorm, linear map, coupling per step
        6
        >>> flow().sample((4,)).shape
        torch.Size([4, 3])
    """

    def __init__(
        self,
        input_dim: int,
        num_steps: int = 4,
        hidden_dims: Sequence[int] | None = None,
        context_dim: int | None = None,
        parametrization: str = "lu",
    ) -> None:
        hidden = _hidden(input_dim, hidden_dims)
        layers: list[Transform] = []
        for step in range(num_steps):
            layers.append(ActNorm(input_dim))
            layers.append(InvertibleLinear(input_dim, parametrization))
            mask = half_mask(input_dim, flip=step % 2 == 1)
            layers.append(_coupling("affine", input_dim, mask, hidden, context_dim))
        super().__init__(_generative_order(layers), event_shape=(input_dim,))
