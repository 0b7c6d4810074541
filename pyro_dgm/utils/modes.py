"""A module in ``eval()`` mode for a block, whatever mode it trained in."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn

__all__ = ["evaluation_mode"]


@contextlib.contextmanager
def evaluation_mode(*modules: nn.Module) -> Iterator[None]:
    """The ``modules`` and every submodule in ``eval()`` mode inside the block (dropout off,
    so that a flow is the bijection it is scored and sampled as); each one's own mode
    is restored on exit. :func:`~pyro_dgm.infer.fit` leaves a pair in the mode it found
    it (``train()`` for a new module), so scores and samples after training need this.

    Example:
        >>> net = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5))
        >>> with evaluation_mode(net):
        ...     net[1].training
        False
        >>> net[1].training
        True
    """
    modes = [(m, m.training) for module in modules for m in module.modules()]
    try:
        for module in modules:
            module.eval()
        yield
    finally:
        for m, mode in modes:
            m.train(mode)
