r"""Why :func:`~pyro_dgm.infer.fit` stopped a run before its end."""

from __future__ import annotations

__all__ = ["DistributedError", "DivergenceError", "NonFiniteLossError"]


class NonFiniteLossError(FloatingPointError):
    """The loss or its gradient became NaN or infinite during :func:`~pyro_dgm.infer.fit`.

    The parameters have been restored to their values at the end of the last
    epoch whose every step was finite (or to their initial values).

    Example:
        >>> issubclass(NonFiniteLossError, FloatingPointError)  # so `except FloatingPointError` works
        True
    """


class DivergenceError(FloatingPointError):
    """Training diverged during :func:`~pyro_dgm.infer.fit`: its losses rose far above
    their best, or the pair produced values outside a distribution's support from
    finite data.

    The parameters have been restored to those of the best epoch (or to their
    initial values); the message names the epoch and what was restored.

    Example:
        >>> issubclass(DivergenceError, FloatingPointError)
        True
    """


class DistributedError(RuntimeError):
    """Another process of the ``torch.distributed`` group failed during
    :func:`~pyro_dgm.infer.fit`; this one stops instead of waiting for it.

    Example:
        >>> issubclass(DistributedError, RuntimeError)
        True
    """
