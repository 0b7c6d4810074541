r"""A network's context bound once, for the conditioned copies of conditional layers."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["BoundContext", "bind_context"]


class BoundContext:
    """``hypernet(x_masked, context)`` with the context bound, as a function of
    ``x_masked`` alone.

    The batch dimensions of the input and of the context (``batch + (context_dim,)``)
    are broadcast against each other first, so the hypernet only meets equal batch
    shapes (Pyro's ``ConditionalDenseNN`` expands the context but cannot grow the input).

    Arguments:
        hypernet: A network called as ``hypernet(x, context)``.
        context: The context, with shape ``batch + (context_dim,)``.
        event_dim: The number of event dimensions of ``x``.

    Example:
        >>> net = BoundContext(lambda x, c: torch.cat([x, c], -1), torch.zeros(4, 1), 1)
        >>> net(torch.ones(3, 1, 2)).shape  # input batch (3, 1) against the context's (4,)
        torch.Size([3, 4, 3])
    """

    def __init__(self, hypernet: Callable[..., object], context: Tensor, event_dim: int) -> None:
        self.hypernet = hypernet
        self.context = context
        self.event_dim = event_dim

    def __call__(self, x: Tensor) -> object:
        split = x.dim() - self.event_dim
        batch = torch.broadcast_shapes(x.shape[:split], self.context.shape[:-1])
        x = x.expand(*batch, *x.shape[split:])
        context = self.context.expand(*batch, self.context.shape[-1])
        return self.hypernet(x, context)


def bind_context(hypernet: Callable[..., object], context: Tensor, event_dim: int) -> BoundContext:
    """Check a context (``batch + (context_dim,)``, the last size the network's
    ``context_dim`` if it has one) and bind it to the network.

    Arguments:
        hypernet: A network called as ``hypernet(x, context)``.
        context: The context, with shape ``batch + (context_dim,)``.
        event_dim: The number of event dimensions of the network's input.

    Example:
        >>> from pyro.nn import ConditionalDenseNN
        >>> net = ConditionalDenseNN(2, 3, [8], param_dims=[2])
        >>> bind_context(net, torch.zeros(5, 3), event_dim=1)(torch.zeros(5, 2)).shape
        torch.Size([5, 2])
        >>> bind_context(net, torch.zeros(5, 4), event_dim=1)
        Traceback (most recent call last):
        ...
        ValueError: context must have last dimension context_dim=3, got shape (5, 4)
    """
    if not isinstance(context, Tensor) or context.dim() < 1:
        raise ValueError(
            "context must be a tensor of shape batch_shape + (context_dim,), got "
            f"{tuple(context.shape) if isinstance(context, Tensor) else type(context).__name__}"
        )
    expected = getattr(hypernet, "context_dim", None)
    if isinstance(expected, int) and context.shape[-1] != expected:
        raise ValueError(
            f"context must have last dimension context_dim={expected}, "
            f"got shape {tuple(context.shape)}"
        )
    return BoundContext(hypernet, context, event_dim)
