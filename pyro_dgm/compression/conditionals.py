r"""What a model must expose to be coded exactly: its conditionals, one coordinate at a time.

A distribution over :math:`\{0, \dots, L-1\}^D` is coded by the chain rule,

.. math:: -\log_2 P(y) = \sum_{d=1}^{D} -\log_2 P(y_d \mid y_{<d}),

each conditional quantized (:mod:`~pyro_dgm.compression.quantize`) and handed to the
entropy coder in the model's order. Two kinds of model give their conditionals:

* **sequential** models, :class:`LevelConditionals`: anything with ``num_levels``,
  ``event_shape``, ``generate(n, context, choose)`` and ``level_log_probs(params)``,
  as :class:`~pyro_dgm.distributions.PixelCNN` and :class:`~pyro_dgm.distributions.WaveNet`
  have them. ``generate`` visits the coordinates in its order and asks ``choose(params,
  position)`` for each value; the coder quantizes ``level_log_probs(params)`` and encodes
  the known value (encoding) or reads it from the stream (decoding). Encoder and decoder
  run the same loop, so they compute the same conditionals bit for bit;
* **factorized** distributions, whose coordinates are independent: a torch distribution
  with an enumerable discrete support :math:`\{0, \dots, L-1\}` and event shape ``()``,
  possibly wrapped in ``Independent`` (``.to_event(k)``): the discretized distributions,
  ``Bernoulli``, ``Categorical``, ``Binomial``. :func:`factorized_log_probs` scores every
  level of every coordinate in one call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor
from torch.distributions import Distribution, Independent

__all__ = ["LevelConditionals", "factorized_log_probs"]


@runtime_checkable
class LevelConditionals(Protocol):
    r"""The protocol of a sequential model that can be coded exactly.

    .. math:: -\log_2 P(y) = \sum_{d=1}^{D} -\log_2 P(y_d \mid y_{<d})

    Attributes:
        num_levels: :math:`L`; the values are :math:`\{0, \dots, L-1\}`.
        event_shape: The shape of one data point.

    Example:
        >>> from pyro_dgm.compression import code_lengths
        >>> class Uniform:  # three independent coordinates, each uniform over 4 levels
        ...     num_levels, event_shape = 4, torch.Size([3])
        ...     def generate(self, n, context, choose):
        ...         return torch.stack(
        ...             [torch.as_tensor(choose(torch.zeros(n, 4), (d,))) for d in range(3)], -1)
        ...     def level_log_probs(self, params):
        ...         return params.log_softmax(-1)
        >>> isinstance(Uniform(), LevelConditionals)
        True
        >>> code_lengths(Uniform(), torch.tensor([[0, 1, 3]]))  # 2 bits per coordinate
        tensor([6.], dtype=torch.float64)
    """

    num_levels: int
    event_shape: torch.Size

    def generate(
        self,
        n: int,
        context: Tensor | None,
        choose: Callable[[Tensor, tuple[int, ...]], Tensor],
    ) -> Tensor:
        """Visit the coordinates of ``n`` data points in the model's order, each once: call
        ``choose(params, position)`` (``params`` ``(n, ...)`` of the conditional, ``position``
        an index into ``event_shape``) for the ``n`` values ``(n,)``, condition on them, and
        return every value ``(n, *event_shape)``. It must be deterministic: the same
        values chosen give the same ``params``, bit for bit."""
        ...

    def level_log_probs(self, params: Tensor) -> Tensor:
        """``(n, L)`` log-probabilities of every level under the conditionals ``params``."""
        ...


def factorized_log_probs(d: Distribution) -> tuple[Tensor, int]:
    r"""Every level's log-mass at every coordinate of a factorized discrete distribution.

    .. math:: \ell_{i, v} = \log P(y_i = v), \qquad i \in \text{batch} \times \text{event},
        \quad v = 0, \dots, L-1.

    Arguments:
        d: A distribution whose coordinates are independent (see the module docstring).

    Returns:
        ``(log_probs, L)``, ``log_probs`` of shape ``(*d.batch_shape, *d.event_shape, L)``.

    Raises:
        ValueError: ``d`` is continuous, not factorized, or its support is not
            :math:`\{0, \dots, L-1\}`.

    Example:
        >>> import pyro.distributions as dist
        >>> d = dist.Bernoulli(probs=torch.tensor([0.25, 0.5])).to_event(1)
        >>> log_probs, num_levels = factorized_log_probs(d)
        >>> log_probs.exp(), num_levels
        (tensor([[0.7500, 0.2500],
                [0.5000, 0.5000]]), 2)
    """
    base = d
    while isinstance(base, Independent):
        base = base.base_dist
    name = type(d).__name__
    if base.event_shape != ():
        raise ValueError(
            f"model: a {name} with a multivariate base {type(base).__name__} (event shape "
            f"{tuple(base.event_shape)}) does not expose per-dimension conditionals; expected "
            "a distribution whose coordinates are independent, or a LevelConditionals model"
        )
    support = base.support
    if not getattr(support, "is_discrete", False) or not base.has_enumerate_support:
        raise ValueError(
            f"model: expected a discrete distribution over the levels {{0, ..., L-1}} with an "
            f"enumerable support, got {type(base).__name__} with support {support}"
        )
    with torch.no_grad():
        levels = base.enumerate_support(expand=False)
        num_levels = levels.shape[0]
        expected = torch.arange(num_levels, dtype=levels.dtype, device=levels.device)
        if levels.reshape(num_levels, -1)[:, 0].ne(expected).any():
            raise ValueError(
                f"model: the support of {type(base).__name__} is not {{0, ..., L-1}}: it "
                f"enumerates {levels.reshape(-1)[:8].tolist()}"
            )
        log_probs = base.log_prob(levels)  # (L, *batch)
    log_probs = log_probs.expand((num_levels, *base.batch_shape))
    return log_probs.movedim(0, -1), num_levels
