r"""The :class:`Dataset` container shared by every data set of pyro_dgm."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..utils.checks import check_int

__all__ = ["Dataset"]

_SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Dataset:
    r"""Three disjoint splits of one data set, with optional labels.

    Discrete data (images) stay integers: ``num_levels`` is then the number of
    values a coordinate can take, every value lies in :math:`\{0, \dots,
    \text{num\_levels} - 1\}`, and a model reports :math:`-\log_2 P(y) / D` bits
    per dimension on them. Continuous data (the 2-D toys) have
    ``num_levels=None``.

    The constructor checks what it is given (same event shape and dtype in the
    three splits, integer values in range for discrete data, one label per
    example) and raises ``ValueError`` otherwise; it copies nothing.

    Arguments:
        name: The name of the data set (``"digits"``, ``"moons"``, ...).
        train: The training examples, shape :math:`(N_\text{train}, *E)`.
        validation: The validation examples, shape :math:`(N_\text{val}, *E)`.
        test: The test examples, shape :math:`(N_\text{test}, *E)`.
        num_levels: For discrete data, the number of levels; ``None`` for
            continuous data.
        train_labels: Optional class labels of the training examples, shape
            :math:`(N_\text{train},)`. Likewise ``validation_labels`` and
            ``test_labels``.

    Example:
        >>> d = Dataset("tiny", torch.zeros(4, 2), torch.zeros(1, 2), torch.zeros(1, 2))
        >>> d.event_shape
        torch.Size([2])
    """

    name: str
    train: Tensor
    validation: Tensor
    test: Tensor
    num_levels: int | None = None
    train_labels: Tensor | None = None
    validation_labels: Tensor | None = None
    test_labels: Tensor | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise ValueError(f"name: expected a str, got {type(self.name).__name__}")
        tensors = [getattr(self, s) for s in _SPLITS]
        for split, t in zip(_SPLITS, tensors, strict=True):
            if not isinstance(t, Tensor):
                raise ValueError(f"{split}: expected a torch.Tensor, got {type(t).__name__}")
            if t.dim() < 1:
                raise ValueError(f"{split}: expected at least one dimension, got shape ()")
        event_shape = self.train.shape[1:]
        for split, t in zip(_SPLITS[1:], tensors[1:], strict=True):
            if t.shape[1:] != event_shape:
                raise ValueError(
                    f"{split}: expected event shape {tuple(event_shape)} (that of train), "
                    f"got {tuple(t.shape[1:])}"
                )
            if t.dtype != self.train.dtype:
                raise ValueError(
                    f"{split}: expected dtype {self.train.dtype} (that of train), got {t.dtype}"
                )
        if self.num_levels is not None:
            check_int(self.num_levels, "num_levels (or None)", 2)
            if self.train.is_floating_point() or self.train.is_complex():
                raise ValueError(
                    f"train: discrete data (num_levels={self.num_levels}) must have an "
                    f"integer dtype, got {self.train.dtype}"
                )
            for split, t in zip(_SPLITS, tensors, strict=True):
                if t.numel() == 0:
                    continue
                lo, hi = int(t.min()), int(t.max())
                if lo < 0 or hi >= self.num_levels:
                    raise ValueError(
                        f"{split}: expected values in [0, {self.num_levels - 1}] "
                        f"(num_levels={self.num_levels}), got values in [{lo}, {hi}]"
                    )
        for split, t in zip(_SPLITS, tensors, strict=True):
            labels = getattr(self, f"{split}_labels")
            if labels is None:
                continue
            if not isinstance(labels, Tensor):
                raise ValueError(
                    f"{split}_labels: expected a torch.Tensor or None, got {type(labels).__name__}"
                )
            if labels.shape != (t.shape[0],):
                raise ValueError(
                    f"{split}_labels: expected shape ({t.shape[0]},) (one label per example), "
                    f"got {tuple(labels.shape)}"
                )

    @property
    def event_shape(self) -> torch.Size:
        """The shape of one example, e.g. ``(1, 8, 8)`` for digits or ``(2,)`` for a toy."""
        return self.train.shape[1:]

    def __repr__(self) -> str:
        sizes = ", ".join(f"{s}={getattr(self, s).shape[0]}" for s in _SPLITS)
        labels = self.train_labels is not None
        return (
            f"Dataset(name={self.name!r}, {sizes}, event_shape={tuple(self.event_shape)}, "
            f"dtype={self.train.dtype}, num_levels={self.num_levels}, labels={labels})"
        )
