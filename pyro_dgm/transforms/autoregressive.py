r"""Gaussian autoregressive transforms: Pyro's ``AffineAutoregressive`` with a dtype-safe inverse."""

from __future__ import annotations

from functools import partial

import torch
from pyro.distributions.transforms import AffineAutoregressive as _PyroAffineAutoregressive
from pyro.distributions.transforms import (
    ConditionalAffineAutoregressive as _PyroConditionalAffineAutoregressive,
)
from pyro.distributions.transforms.utils import clamp_preserve_gradients
from pyro.nn import AutoRegressiveNN, ConditionalAutoRegressiveNN
from torch import Tensor

__all__ = [
    "AffineAutoregressive",
    "ConditionalAffineAutoregressive",
    "ConditionedAffineAutoregressive",
    "affine_autoregressive",
    "conditional_affine_autoregressive",
]


class AffineAutoregressive(_PyroAffineAutoregressive):
    r"""Pyro's affine autoregressive transform (IAF direction), with an inverse that
    follows the input's dtype.

    .. math:: y_i = \mu_i(x_{<i}) + \sigma_i(x_{<i})\, x_i .

    The forward call (sampling, the generative direction) is one network pass;
    the inverse (scoring a value that is not cached) takes :math:`D` passes.
    MAF is the same layer used through ``.inv``: then scoring is one pass and
    sampling takes :math:`D`.

    Pyro's own ``_inverse`` starts from ``torch.zeros(...)`` in the *global*
    default dtype, so a float64 layer fails to invert unless the user changes
    that global. This subclass allocates in the dtype of ``y`` and changes
    nothing else; everything else is Pyro's.

    References:
        | Improved Variational Inference with Inverse Autoregressive Flow (Kingma et al., 2016)
        | https://arxiv.org/abs/1606.04934
        | Masked Autoregressive Flow for Density Estimation (Papamakarios et al., 2017)
        | https://arxiv.org/abs/1705.07057

    Arguments:
        autoregressive_nn: A MADE network (``pyro.nn.AutoRegressiveNN``) that returns
            :math:`(\mu, \log\sigma)` (or the pre-sigmoid scale when ``stable=True``).
        kwargs: Pyro's ``AffineAutoregressive`` options (``stable``, ``log_scale_min_clip``,
            ``log_scale_max_clip``, ``sigmoid_bias``).

    Example:
        >>> from pyro.nn import AutoRegressiveNN
        >>> t = AffineAutoregressive(AutoRegressiveNN(3, [8])).double()
        >>> x = torch.randn(5, 3, dtype=torch.float64)
        >>> y = t(x)
        >>> t.log_abs_det_jacobian(x, y).shape
        torch.Size([5])
        >>> torch.allclose(t.inv(y.clone()), x)  # not the cached y: D passes, in float64
        True
    """

    def _inverse(self, y: Tensor) -> Tensor:
        perm = self.arn.permutation
        x = [y.new_zeros(y.shape[:-1])] * y.size(-1)
        for idx in perm:
            mean, scale_param = self.arn(torch.stack(x, dim=-1))
            if self.stable:
                inverse_scale = 1 + torch.exp(-scale_param[..., idx] - self.sigmoid_bias)
                x[idx] = inverse_scale * y[..., idx] + (1 - inverse_scale) * mean[..., idx]
            else:
                log_scale = clamp_preserve_gradients(
                    scale_param[..., idx], self.log_scale_min_clip, self.log_scale_max_clip
                )
                x[idx] = (y[..., idx] - mean[..., idx]) * torch.exp(-log_scale)
        if self.stable:
            self._cached_log_scale = self.logsigmoid(scale_param + self.sigmoid_bias)
        else:
            self._cached_log_scale = clamp_preserve_gradients(
                scale_param, self.log_scale_min_clip, self.log_scale_max_clip
            )
        return torch.stack(x, dim=-1)

    # Pyro's __init__ binds ``self._inverse = self._inverse_stable`` when stable=True
    _inverse_stable = _inverse


class ConditionedAffineAutoregressive(AffineAutoregressive):
    r""":class:`AffineAutoregressive` bound to a context whose batch shape broadcasts
    against the values' batch shape, as everywhere else in torch.

    .. math:: y_i = \mu_i(x_{<i}, c) + \sigma_i(x_{<i}, c)\, x_i

    Pyro's ``ConditionalAutoRegressiveNN`` expands the context to the values'
    batch shape, so a context ``(B, C)`` fails against values ``(N, 1, D)``
    (vectorized particles, ``Predictive(parallel=True)``, a conditional flow as a
    likelihood whose context is a latent drawn per particle). Here the values
    are first expanded to the broadcast batch shape of both; nothing else changes.
    Costs are those of :class:`AffineAutoregressive`.

    Arguments:
        autoregressive_nn: A MADE network already bound to ``context``.
        context: The context it is bound to, with shape :math:`(*, C)`.
        kwargs: Pyro's ``AffineAutoregressive`` options.

    Example:
        >>> t = conditional_affine_autoregressive(2, context_dim=3).condition(torch.randn(4, 3))
        >>> type(t).__name__
        'ConditionedAffineAutoregressive'
        >>> t(torch.randn(6, 1, 2)).shape  # values (6, 1) against the context's (4,)
        torch.Size([6, 4, 2])
    """

    def __init__(self, autoregressive_nn: object, context: Tensor, **kwargs: object) -> None:
        super().__init__(autoregressive_nn, **kwargs)
        self._context_batch = context.shape[:-1]

    def _broadcast(self, value: Tensor) -> Tensor:
        try:
            batch = torch.broadcast_shapes(value.shape[:-1], self._context_batch)
        except RuntimeError as error:
            raise ValueError(
                f"value: expected a batch shape that broadcasts with the context's "
                f"{tuple(self._context_batch)}, got shape {tuple(value.shape)}"
            ) from error
        return value.expand(*batch, value.shape[-1])

    def _call(self, x: Tensor) -> Tensor:
        return super()._call(self._broadcast(x))

    def _call_stable(self, x: Tensor) -> Tensor:
        return super()._call_stable(self._broadcast(x))

    def _inverse(self, y: Tensor) -> Tensor:
        return super()._inverse(self._broadcast(y))

    # Pyro's __init__ binds ``self._inverse = self._inverse_stable`` when stable=True
    _inverse_stable = _inverse


class ConditionalAffineAutoregressive(_PyroConditionalAffineAutoregressive):
    r"""Pyro's conditional affine autoregressive transform; ``condition(context)``
    returns a dtype-safe :class:`ConditionedAffineAutoregressive` whose context
    broadcasts against the values.

    .. math:: y_i = \mu_i(x_{<i}, c) + \sigma_i(x_{<i}, c)\, x_i

    Arguments:
        autoregressive_nn: A ``pyro.nn.ConditionalAutoRegressiveNN``.
        kwargs: Pyro's ``AffineAutoregressive`` options.

    Example:
        >>> from pyro.nn import ConditionalAutoRegressiveNN
        >>> t = ConditionalAffineAutoregressive(ConditionalAutoRegressiveNN(2, 3, [8]))
        >>> t.condition(torch.randn(5, 3))(torch.randn(5, 2)).shape
        torch.Size([5, 2])
    """

    def condition(self, context: Tensor) -> ConditionedAffineAutoregressive:
        cond_nn = partial(self.nn, context=context)
        cond_nn.permutation = self.nn.permutation
        cond_nn.get_permutation = self.nn.get_permutation
        return ConditionedAffineAutoregressive(cond_nn, context, **self.kwargs)


def affine_autoregressive(
    input_dim: int, hidden_dims: list[int] | None = None, **kwargs: object
) -> AffineAutoregressive:
    """Build an :class:`AffineAutoregressive` on a MADE network (Pyro's defaults).

    Arguments:
        input_dim: The dimension :math:`D` of the values.
        hidden_dims: The MADE's hidden widths (default ``[3 D + 1]``).
        kwargs: Options of :class:`AffineAutoregressive`.

    Example:
        >>> import pyro.distributions as dist
        >>> iaf = affine_autoregressive(2, hidden_dims=[16])
        >>> base = dist.Normal(torch.zeros(2), 1.0).to_event(1)
        >>> flow = dist.TransformedDistribution(base, [iaf])  # IAF: one pass to sample
        >>> flow.log_prob(flow.sample((7,))).shape  # its samples score from the cache
        torch.Size([7])
    """
    hidden_dims = [3 * input_dim + 1] if hidden_dims is None else hidden_dims
    return AffineAutoregressive(AutoRegressiveNN(input_dim, hidden_dims), **kwargs)


def conditional_affine_autoregressive(
    input_dim: int, context_dim: int, hidden_dims: list[int] | None = None, **kwargs: object
) -> ConditionalAffineAutoregressive:
    """Build a :class:`ConditionalAffineAutoregressive` on a conditional MADE network.

    Arguments:
        input_dim: The dimension :math:`D` of the values.
        context_dim: The dimension :math:`C` of the context.
        hidden_dims: The MADE's hidden widths (default ``[10 D]``).
        kwargs: Options of :class:`AffineAutoregressive`.

    Example:
        >>> t = conditional_affine_autoregressive(2, context_dim=3, hidden_dims=[16])
        >>> x = torch.randn(5, 2)
        >>> t.condition(torch.randn(5, 3))(x).shape
        torch.Size([5, 2])
    """
    hidden_dims = [10 * input_dim] if hidden_dims is None else hidden_dims
    nn = ConditionalAutoRegressiveNN(input_dim, context_dim, hidden_dims)
    return ConditionalAffineAutoregressive(nn, **kwargs)
