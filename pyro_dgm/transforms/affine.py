r"""Elementwise affine maps whose location and scale are computed from a context when
the map is applied: the Gaussian stage of an amortized posterior as a transform."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import torch
import torch.nn.functional as F
from pyro.distributions import ConditionalTransformModule, constraints
from pyro.nn import DenseNN
from torch import Tensor
from torch.distributions import Transform

from ..utils.checks import check_int, check_number
from ._events import real_event

__all__ = ["ConditionalAffine", "ConditionedAffine", "conditional_affine"]


class ConditionedAffine(Transform):
    r"""An elementwise affine map whose location and scale are computed each time the
    map is applied.

    .. math:: x = \mu + \sigma \odot z, \qquad z = (x - \mu) / \sigma, \qquad
        \log |\det J| = \textstyle\sum \log \sigma ,

    with :math:`(\mu, \sigma)` = ``params()``, the sum over the event. Pushing a
    standard normal through it gives :math:`\mathcal{N}(\mu, \operatorname{diag}\sigma^2)`,
    the Gaussian stage of a VAE posterior :math:`q(z_0 \mid x)`. Because the
    parameters are read at every call (not when the transform is built), a
    distribution that holds it follows its network's current parameters across
    optimizer steps, as the flow layers after it do. One pass of ``params`` per
    call each way; the log-det reuses the scale of the call that produced the pair.

    References:
        | Auto-Encoding Variational Bayes (Kingma & Welling, 2014)
        | https://arxiv.org/abs/1312.6114

    Arguments:
        params: A callable returning ``(loc, scale)``, each broadcastable to
            ``batch + event_shape``, with ``scale > 0``.
        event_dim: The event rank: 1 for vectors.

    Example:
        >>> t = ConditionedAffine(lambda: (torch.tensor([1.0, 2.0]), torch.tensor([0.5, 2.0])))
        >>> t(torch.ones(2))
        tensor([1.5000, 4.0000])
    """

    bijective = True
    sign = +1

    def __init__(self, params: Callable[[], tuple[Tensor, Tensor]], event_dim: int = 1) -> None:
        super().__init__(cache_size=1)
        self._params = params
        self._event_dim = check_int(event_dim, "event_dim", 0)
        self._constraint = real_event(self._event_dim)
        self._cached_log_scale: tuple[Tensor, Tensor, Tensor] | None = None

    @constraints.dependent_property(is_discrete=False)
    def domain(self) -> constraints.Constraint:
        return self._constraint

    @constraints.dependent_property(is_discrete=False)
    def codomain(self) -> constraints.Constraint:
        return self._constraint

    def _loc_log_scale(self) -> tuple[Tensor, Tensor]:
        loc, scale = self._params()
        return loc, torch.log(scale)

    def _call(self, z: Tensor) -> Tensor:
        loc, log_scale = self._loc_log_scale()
        x = loc + torch.exp(log_scale) * z
        self._cached_log_scale = (z, x, log_scale)
        return x

    def _inverse(self, x: Tensor) -> Tensor:
        loc, log_scale = self._loc_log_scale()
        z = (x - loc) * torch.exp(-log_scale)
        self._cached_log_scale = (z, x, log_scale)
        return z

    def log_abs_det_jacobian(self, z: Tensor, x: Tensor) -> Tensor:
        cached = self._cached_log_scale
        if cached is not None and cached[0] is z and cached[1] is x:
            log_scale = cached[2]
        else:
            log_scale = self._loc_log_scale()[1]
        shape = torch.broadcast_shapes(z.shape, x.shape, log_scale.shape)
        log_scale = log_scale.expand(shape)
        if self._event_dim:
            log_scale = log_scale.sum(dim=tuple(range(-self._event_dim, 0)))
        return log_scale


class ConditionalAffine(ConditionalTransformModule):
    r"""The conditional twin of :class:`ConditionedAffine`: a network maps the context
    :math:`c` to the location and the scale.

    .. math:: x = \mu(c) + \sigma(c) \odot z, \qquad (\mu, \tilde\sigma) = \mathrm{NN}(c),
        \quad \sigma = \operatorname{softplus}(\tilde\sigma) + \sigma_{\min} .

    The softplus keeps the scale positive without a hard clamp; :math:`\sigma_{\min}`
    keeps it away from zero. ``condition(c)`` returns a :class:`ConditionedAffine`
    that runs the network when it is applied. Costs: one network pass, then
    :math:`O(D)`, each way.

    References:
        | Auto-Encoding Variational Bayes (Kingma & Welling, 2014)
        | https://arxiv.org/abs/1312.6114

    Arguments:
        hypernet: Maps a context ``batch + (context_dim,)`` to ``(loc, raw_scale)``,
            each ``batch + (D,)`` (e.g. ``DenseNN(context_dim, hidden, [D, D])``).
        min_scale: :math:`\sigma_{\min} \ge 0`.

    Example:
        >>> t = conditional_affine(3, context_dim=2, hidden_dims=[8])
        >>> t.condition(torch.randn(4, 2))(torch.randn(4, 3)).shape
        torch.Size([4, 3])
    """

    bijective = True

    def __init__(
        self, hypernet: Callable[[Tensor], tuple[Tensor, Tensor]], min_scale: float = 1e-5
    ) -> None:
        super().__init__()
        self.hypernet = hypernet
        self.min_scale = check_number(min_scale, "min_scale", minimum=0.0)

    domain = real_event(1)
    codomain = real_event(1)

    def _loc_scale(self, context: Tensor) -> tuple[Tensor, Tensor]:
        loc, raw = self.hypernet(context)
        return loc, F.softplus(raw) + self.min_scale

    def condition(self, context: Tensor) -> ConditionedAffine:
        return ConditionedAffine(partial(self._loc_scale, context))


def conditional_affine(
    input_dim: int,
    context_dim: int,
    hidden_dims: Sequence[int] | None = None,
    min_scale: float = 1e-5,
) -> ConditionalAffine:
    r"""Build a :class:`ConditionalAffine` on a ``DenseNN`` hypernet.

    Arguments:
        input_dim: The event size :math:`D`.
        context_dim: The context size.
        hidden_dims: Hidden sizes of the hypernet; ``[10 * input_dim]`` by default
            (Pyro's conditional helpers).
        min_scale: The smallest scale :math:`\sigma_{\min}`.

    Example:
        >>> conditional_affine(4, context_dim=2).min_scale
        1e-05
    """
    d = check_int(input_dim, "input_dim", 1)
    c = check_int(context_dim, "context_dim", 1)
    hidden = list(hidden_dims) if hidden_dims is not None else [10 * d]
    return ConditionalAffine(DenseNN(c, hidden, param_dims=[d, d]), min_scale=min_scale)
