r"""What :func:`~pyro_dgm.infer.fit` measured, epoch by epoch."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

__all__ = ["STOP_REASONS", "History"]

#: Why a run ended: its epochs ran out, early stopping, the time budget.
STOP_REASONS = ("epochs", "early_stopping", "max_seconds")


@dataclass
class History:
    """What :func:`~pyro_dgm.infer.fit` measured, one entry per epoch.

    Losses are per data point (nats for a log-likelihood model): the training loss
    of the minibatches averaged over the epoch (the objective that was minimised,
    see ``objective``), and the loss of the whole validation split at the end of
    the epoch (without gradients: a VAE's validation loss is its negative ELBO with
    the KL term at full weight).

    Attributes:
        epoch: Epoch numbers, starting at 1 and continuing across resumes.
        train_loss: Mean training loss per data point.
        validation_loss: Validation loss per data point (``nan`` without a validation split).
        seconds: Wall-clock seconds of training since the first epoch, cumulative.
        best_epoch: The epoch whose parameters were kept (lowest validation loss over
            the whole history, resumed calls included; the last epoch without validation).
        stopped_early: Whether early stopping ended the run.
        steps: Optimizer steps taken in total.
        objective: What the training loss is, e.g. ``"negative ELBO (Trace_ELBO)"``
            or a weighted ELBO during KL warm-up.
        stop_reason: Why the last call ended (one of :data:`STOP_REASONS`; empty while
            a call runs, so an interrupted run's checkpoint says it did not end).
        initial_train_loss: The loss of the parameters before the first epoch, on (up
            to 1024 of) the training points.
        initial_validation_loss: Their validation loss (``nan`` without validation).

    Example:
        >>> history = History(epoch=[1, 2], train_loss=[3.0, 2.5], validation_loss=[3.2, 2.9],
        ...                   best_epoch=2)
        >>> history.best_validation_loss
        2.9
        >>> History.from_dict(history.to_dict()) == history
        True
    """

    epoch: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    validation_loss: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    best_epoch: int = 0
    stopped_early: bool = False
    steps: int = 0
    objective: str = ""
    stop_reason: str = ""
    initial_train_loss: float = math.nan
    initial_validation_loss: float = math.nan

    @property
    def best_validation_loss(self) -> float:
        if self.best_epoch == 0:
            return math.nan
        return self.validation_loss[self.epoch.index(self.best_epoch)]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> History:
        """The history :meth:`to_dict` wrote (also one written before a field was added)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(state) - known)
        if unknown:
            raise ValueError(
                f"history: unknown fields {unknown}; expected some of {sorted(known)}"
            )
        return cls(**state)
