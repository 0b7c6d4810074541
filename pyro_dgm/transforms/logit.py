r"""Logit and logistic maps for data in the unit box, as Pyro transforms: the logit
pre-processing of RealNVP, and the normal-to-logistic map of a dequantization noise flow."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Transform, constraints

from ._events import real_event

__all__ = ["LogitTransform", "NormalToLogisticTransform"]


class LogitTransform(Transform):
    r"""The sigmoid side of RealNVP's logit pre-processing: a parameter-free bijection
    from the real line onto a box slightly wider than :math:`[0, 1]`.

    In the generative direction (the forward call, :math:`v = g(z)`) and the
    inference direction (the inverse, what ``log_prob`` applies to data :math:`v`),

    .. math:: v = \frac{\sigma(z) - \alpha}{1 - 2\alpha}, \qquad
        z = \operatorname{logit}\big(\alpha + (1 - 2\alpha)\, v\big), \qquad
        \log\left|\frac{\partial v}{\partial z}\right|
        = \sum \big[\log\sigma(z) + \log\sigma(-z)\big] - \log(1 - 2\alpha),

    the sum running over the ``event_dim`` rightmost dimensions. The margin
    :math:`\alpha` keeps the logit of the edges :math:`v \in \{0, 1\}` finite
    (:math:`\pm\operatorname{logit}(\alpha)`); :math:`\alpha = 0` is the plain
    sigmoid, whose inverse is infinite at the edges. Dinh et al. use
    :math:`\alpha = 0.05` (their :math:`\operatorname{logit}(\alpha + (1-\alpha)v)`);
    the symmetric form above is that of MAF (Papamakarios et al.), which uses
    :math:`\alpha = 10^{-6}` on MNIST and :math:`0.05` on CIFAR-10.

    The codomain is the open interval :math:`(-\alpha/(1-2\alpha),\ (1-\alpha)/(1-2\alpha))`
    (declared closed, as torch's ``unit_interval`` is for the sigmoid, so that a
    value that rounds onto an edge still validates). Costs: one elementwise pass
    in each direction; the log-det is computed from :math:`z` with ``softplus``,
    accurate in both tails. Nothing is clamped: a value outside the codomain
    has a NaN inverse.

    A density :math:`p_Z` of the logits gives data in the box the density
    :math:`p_V(v) = p_Z(z) / |\partial v / \partial z|`; this is how a flow on the
    real line scores dequantized pixels (:class:`~pyro_dgm.models.UniformDequantization`).

    References:
        | Density estimation using Real NVP (Dinh et al., 2017), section 4.1
        | https://arxiv.org/abs/1605.08803
        | Masked Autoregressive Flow for Density Estimation (Papamakarios et al., 2017)
        | https://arxiv.org/abs/1705.07057

    Arguments:
        alpha: The margin :math:`\alpha \in [0, \frac12)`.
        event_dim: The number of rightmost dimensions that form one event (the
            log-det sums over them): 0 elementwise, 1 for vectors, 3 for images.
        cache_size: torch's cache size, 0 or 1.

    Example:
        >>> t = LogitTransform(alpha=0.05, event_dim=1)
        >>> v = torch.tensor([[0.0, 0.5, 1.0]])
        >>> t.inv(v)
        tensor([[-2.9444,  0.0000,  2.9444]])
        >>> t.log_abs_det_jacobian(t.inv(v), v).shape
        torch.Size([1])
    """

    bijective = True
    sign = +1

    def __init__(self, alpha: float = 0.05, event_dim: int = 0, cache_size: int = 0) -> None:
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
            raise ValueError(f"alpha must be a number in [0, 0.5), got {alpha!r}")
        if not 0.0 <= alpha < 0.5:
            raise ValueError(f"alpha must be in [0, 0.5), got {alpha}")
        if isinstance(event_dim, bool) or not isinstance(event_dim, int) or event_dim < 0:
            raise ValueError(f"event_dim must be an integer >= 0, got {event_dim!r}")
        super().__init__(cache_size=cache_size)
        self.alpha = float(alpha)
        self._event_dim = event_dim
        self._width = 1.0 - 2.0 * self.alpha
        self._log_width = math.log(self._width)

    def with_cache(self, cache_size: int = 1) -> LogitTransform:
        if self._cache_size == cache_size:
            return self
        return LogitTransform(self.alpha, self._event_dim, cache_size=cache_size)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, LogitTransform)
            and other.alpha == self.alpha
            and other._event_dim == self._event_dim
        )

    def __hash__(self) -> int:
        return hash((LogitTransform, self.alpha, self._event_dim))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(alpha={self.alpha}, event_dim={self._event_dim})"

    @constraints.dependent_property(is_discrete=False)
    def domain(self) -> constraints.Constraint:
        return real_event(self._event_dim)

    @constraints.dependent_property(is_discrete=False)
    def codomain(self) -> constraints.Constraint:
        lower = -self.alpha / self._width
        upper = (1.0 - self.alpha) / self._width
        box = constraints.unit_interval if self.alpha == 0 else constraints.interval(lower, upper)
        return box if self._event_dim == 0 else constraints.independent(box, self._event_dim)

    def _call(self, z: Tensor) -> Tensor:
        if self.alpha == 0:
            return torch.sigmoid(z)
        return (torch.sigmoid(z) - self.alpha) / self._width

    def _inverse(self, v: Tensor) -> Tensor:
        if self.alpha == 0:
            return torch.logit(v)
        return torch.logit(self.alpha + self._width * v)

    def log_abs_det_jacobian(self, z: Tensor, v: Tensor) -> Tensor:
        # log sigma(z) + log sigma(-z) = -softplus(-z) - softplus(z): finite in both tails
        ladj = -F.softplus(-z) - F.softplus(z) - self._log_width
        if self._event_dim:
            ladj = ladj.sum(dim=tuple(range(-self._event_dim, 0)))
        return ladj


class NormalToLogisticTransform(Transform):
    r"""The fixed elementwise map from a standard normal to a standard logistic variable.

    .. math:: z = \operatorname{logit}\Phi(\epsilon) = \log\Phi(\epsilon) - \log\Phi(-\epsilon),
        \qquad \log\left|\frac{dz}{d\epsilon}\right|
        = \log\varphi(\epsilon) - \log\Phi(\epsilon) - \log\Phi(-\epsilon) .

    Followed by a sigmoid, it gives :math:`\Phi(\epsilon)`, uniform on :math:`(0, 1)`:
    a noise flow over :math:`\epsilon \sim \mathcal{N}(0, I)` that starts with this
    map and then the identity is exactly the uniform dequantization guide
    (:func:`~pyro_dgm.models.dequantization_noise_flow`). Both directions are
    written through the lower tail (``log_ndtr``, and
    :math:`\Phi^{-1}(\sigma(-|z|))`), accurate for large :math:`|\epsilon|`.
    Parameter free; one elementwise pass each way.

    References:
        | Flow++: Improving Flow-Based Generative Models with Variational Dequantization
          and Architecture Design (Ho et al., 2019)
        | https://arxiv.org/abs/1902.00275

    Arguments:
        cache_size: torch's cache size, 0 or 1.

    Example:
        >>> t = NormalToLogisticTransform()
        >>> torch.sigmoid(t(torch.tensor([0.0, 1.0])))  # the normal cdf
        tensor([0.5000, 0.8413])
    """

    domain = constraints.real
    codomain = constraints.real
    bijective = True
    sign = +1

    def __init__(self, cache_size: int = 0) -> None:
        super().__init__(cache_size=cache_size)

    def with_cache(self, cache_size: int = 1) -> NormalToLogisticTransform:
        if self._cache_size == cache_size:
            return self
        return NormalToLogisticTransform(cache_size=cache_size)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NormalToLogisticTransform)

    def __hash__(self) -> int:
        return hash(NormalToLogisticTransform)

    def _call(self, eps: Tensor) -> Tensor:
        return torch.special.log_ndtr(eps) - torch.special.log_ndtr(-eps)

    def _inverse(self, z: Tensor) -> Tensor:
        lower = torch.special.ndtri(torch.sigmoid(-z.abs()))  # <= 0, from the lower tail
        return torch.where(z < 0, lower, -lower)

    def log_abs_det_jacobian(self, eps: Tensor, z: Tensor) -> Tensor:
        log_density = -0.5 * eps**2 - 0.5 * math.log(2 * math.pi)
        return log_density - torch.special.log_ndtr(eps) - torch.special.log_ndtr(-eps)
