"""The constraint of unconstrained real events, built once per event rank."""

from __future__ import annotations

import functools

from pyro.distributions import constraints


@functools.cache
def real_event(event_dim: int) -> constraints.Constraint:
    """``constraints.independent(constraints.real, event_dim)`` (``real`` for rank 0).

    Constraints are immutable, so one object per rank is shared: torch's
    ``ComposeTransform`` asks every part for its ``domain`` and ``codomain``
    many times while a ``TransformedDistribution`` is built (once per
    ``flow()`` call, so once per training step).
    """
    if event_dim == 0:
        return constraints.real
    return constraints.independent(constraints.real, event_dim)
