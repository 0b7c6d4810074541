r"""Ready-made flow distributions: modules that own a base and transforms and
return a Pyro distribution when called, ``flow()`` or ``flow(context)``.

.. code-block:: python

    flow = MAF(2)
    pyro.module("flow", flow)
    with pyro.plate("data", len(x)):
        pyro.sample("x", flow(), obs=x)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from pyro.distributions import (
    ConditionalTransformModule,
    Normal,
    TransformedDistribution,
)
from pyro.distributions.transforms import SplineAutoregressive
from pyro.nn import AutoRegressiveNN, ConditionalAutoRegressiveNN
from torch import Tensor, nn
from torch.distributions import Transform

from .transforms.autoregressive import AffineAutoregressive, ConditionalAffineAutoregressive

__all__ = ["IAF", "MAF", "Flow", "SplineFlow"]


def _modules_of(parts: Sequence[Transform]) -> Iterator[nn.Module]:
    """The modules holding the parameters of ``parts`` (also behind ``.inv``)."""
    for part in parts:
        if isinstance(part, nn.Module):
            yield part
        elif isinstance(getattr(part, "_inv", None), nn.Module):
            yield part._inv  # torch's _InverseTransform of a TransformModule


class Flow(nn.Module):
    r"""A normalizing flow: a standard normal base pushed through transforms.

    .. math:: x = g_K \circ \dots \circ g_1(z), \quad z \sim \mathcal{N}(0, I), \quad
        \log p(x) = \log \mathcal{N}(f(x)) + \log \left|\det \frac{\partial f(x)}{\partial x}\right|

    Each transform's forward call is the generative direction :math:`z \to x`;
    ``log_prob`` applies the inverses. Conditional transforms
    (``ConditionalTransformModule``) are conditioned on the context given to
    the call. The module owns every parameter and the base's buffers, so
    ``pyro.module``, ``.to(device)``, ``.double()`` and ``state_dict`` see them.

    Arguments:
        transforms: The layers, in generative order (applied to the base sample first to last).
        event_shape: The shape of one data point.

    Example:
        >>> flow = Flow([AffineAutoregressive(AutoRegressiveNN(2, [8]))], event_shape=(2,))
        >>> flow().sample((3,)).shape
        torch.Size([3, 2])
    """

    def __init__(self, transforms: Sequence[Transform], event_shape: Sequence[int] | int) -> None:
        super().__init__()
        shape = torch.Size([event_shape] if isinstance(event_shape, int) else event_shape)
        if len(shape) == 0 or any(s < 1 for s in shape):
            raise ValueError(f"event_shape must be a non-empty shape of positive sizes, got {shape}")
        self.event_shape = shape
        self.parts = list(transforms)
        self.layers = nn.ModuleList(_modules_of(self.parts))
        self.register_buffer("base_loc", torch.zeros(shape))
        self.register_buffer("base_scale", torch.ones(shape))

    @property
    def is_conditional(self) -> bool:
        return any(isinstance(p, ConditionalTransformModule) for p in self.parts)

    def forward(self, context: Tensor | None = None) -> TransformedDistribution:
        """The flow's distribution; with a context of shape ``batch + (context_dim,)``,
        its batch shape is ``batch``."""
        if self.is_conditional and context is None:
            raise ValueError(f"{type(self).__name__} is conditional: call it with a context")
        if not self.is_conditional and context is not None:
            raise ValueError(f"{type(self).__name__} takes no context, got one")
        base = Normal(self.base_loc, self.base_scale).to_event(len(self.event_shape))
        if context is not None:
            base = base.expand(context.shape[:-1])
        parts = [
            p.condition(context) if isinstance(p, ConditionalTransformModule) else p
            for p in self.parts
        ]
        return TransformedDistribution(base, parts)


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
            layers.append(AffineAutoregressive(arn, stable=True))
        else:
            arn = ConditionalAutoRegressiveNN(input_dim, context_dim, hidden, permutation=order)
            layers.append(ConditionalAffineAutoregressive(arn, stable=True))
    return layers


class MAF(Flow):
    r"""Masked autoregressive flow (Papamakarios et al., 2017): Pyro's
    ``AffineAutoregressive`` layers used through ``.inv``, orders alternated.

    .. math:: z_i = (x_i - \mu_i(x_{<i})) / \sigma_i(x_{<i})

    Scoring data (``log_prob``) is one network pass per layer; sampling takes
    :math:`D` sequential passes per layer. The natural choice for density
    estimation (forward KL). Layers use Pyro's numerically stable sigmoid scale.

    References:
        | Masked Autoregressive Flow for Density Estimation (Papamakarios et al., 2017)
        | https://arxiv.org/abs/1705.07057

    Arguments:
        input_dim: The data dimension :math:`D`.
        num_layers: The number of autoregressive layers.
        hidden_dims: Hidden sizes of each MADE network.
        context_dim: The context size of a conditional flow, or ``None``.
    """

    def __init__(
        self,
        input_dim: int,
        num_layers: int = 5,
        hidden_dims: Sequence[int] | None = None,
        context_dim: int | None = None,
    ) -> None:
        layers = _affine_layers(input_dim, num_layers, hidden_dims, context_dim)
        super().__init__([layer.inv for layer in reversed(layers)], event_shape=(input_dim,))


class IAF(Flow):
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
    """

    def __init__(
        self,
        input_dim: int,
        num_layers: int = 5,
        hidden_dims: Sequence[int] | None = None,
        context_dim: int | None = None,
    ) -> None:
        layers = _affine_layers(input_dim, num_layers, hidden_dims, context_dim)
        super().__init__(layers, event_shape=(input_dim,))


class SplineFlow(Flow):
    r"""Autoregressive rational-quadratic spline flow (Durkan et al., 2019) from
    Pyro's ``SplineAutoregressive`` layers, used through ``.inv`` so that
    scoring is one pass per layer (MAF direction), orders alternated.

    Each coordinate is mapped by a monotonic rational-quadratic spline on
    :math:`[-B, B]` (identity outside) whose knots depend on the previous ones.

    References:
        | Neural Spline Flows (Durkan et al., 2019)
        | https://arxiv.org/abs/1906.04032

    Arguments:
        input_dim: The data dimension :math:`D`.
        num_layers: The number of spline layers.
        hidden_dims: Hidden sizes of each MADE network.
        count_bins: Spline bins :math:`K`.
        bound: The half-width :math:`B` of the spline's interval.
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
