r"""The :class:`Dataset` container shared by every data set of pyro_dgm: three splits,
with optional labels and contexts."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..utils.checks import check_choice, check_int

__all__ = ["Dataset"]

_SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Dataset:
    r"""Three disjoint splits of one data set, with optional labels and contexts.

    Discrete data (images) stay integers: ``num_levels`` is then the number of
    values a coordinate can take, every value lies in :math:`\{0, \dots,
    \text{num\_levels} - 1\}`, and a model reports :math:`-\log_2 P(y) / D` bits
    per dimension on them. Continuous data (the 2-D toys) have
    ``num_levels=None``.

    The constructor checks what it is given (same event shape and dtype in the
    three splits, integer values in range for discrete data, one label and one
    context row per example) and raises ``ValueError`` otherwise; it copies nothing.

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
        train_context: Optional context of the training examples, one row each,
            shape :math:`(N_\text{train}, *K)`, passed to a conditional model as
            ``model(x, context)`` by :func:`~pyro_dgm.infer.fit` (e.g. one-hot labels:
            :meth:`with_label_context`). Likewise ``validation_context`` and
            ``test_context``: the three are given together, or none.

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
    train_context: Tensor | None = None
    validation_context: Tensor | None = None
    test_context: Tensor | None = None

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
        self._check_contexts(tensors)

    def _check_contexts(self, tensors: list[Tensor]) -> None:
        contexts = [getattr(self, f"{split}_context") for split in _SPLITS]
        given = [c is not None for c in contexts]
        if any(given) and not all(given):
            names = [f"{s}_context" for s, g in zip(_SPLITS, given, strict=True) if not g]
            raise ValueError(
                f"{', '.join(names)}: expected a context for every split (or for none), got None"
            )
        if not any(given):
            return
        for split, t, context in zip(_SPLITS, tensors, contexts, strict=True):
            name = f"{split}_context"
            if not isinstance(context, Tensor):
                raise ValueError(
                    f"{name}: expected a torch.Tensor or None, got {type(context).__name__}"
                )
            if context.dim() < 1 or context.shape[0] != t.shape[0]:
                raise ValueError(
                    f"{name}: expected {t.shape[0]} rows (one context per example), "
                    f"got shape {tuple(context.shape)}"
                )
            if context.shape[1:] != contexts[0].shape[1:] or context.dtype != contexts[0].dtype:
                raise ValueError(
                    f"{name}: expected rows of shape {tuple(contexts[0].shape[1:])} and dtype "
                    f"{contexts[0].dtype} (those of train_context), got "
                    f"{tuple(context.shape[1:])} and {context.dtype}"
                )
            if context.is_floating_point() and not torch.isfinite(context).all():
                raise ValueError(f"{name}: expected finite values, got NaN or infinity")

    @property
    def has_context(self) -> bool:
        """Whether the splits carry a context (``train_context`` is not ``None``)."""
        return self.train_context is not None

    @property
    def context_shape(self) -> torch.Size | None:
        """The shape of one example's context (``(10,)`` for one-hot digit labels), or
        ``None`` without a context."""
        return None if self.train_context is None else self.train_context.shape[1:]

    @property
    def num_classes(self) -> int | None:
        """The number of classes of integer labels, one more than the largest label of
        any split (``None`` without labels)."""
        labels = [getattr(self, f"{s}_labels") for s in _SPLITS]
        if labels[0] is None:
            return None
        values = [y for y in labels if y is not None and y.numel()]
        return 1 + max(int(y.max()) for y in values) if values else 0

    def split(self, name: str) -> Tensor | tuple[Tensor, Tensor]:
        """The examples of split ``name``, as a batch for a model: ``x``, or
        ``(x, context)`` when the data set has a context (what
        :func:`~pyro_dgm.infer.log_likelihood` and friends take)."""
        check_choice(name, "split", _SPLITS)
        x, context = getattr(self, name), getattr(self, f"{name}_context")
        return x if context is None else (x, context)

    def with_label_context(
        self, num_classes: int | None = None, dtype: torch.dtype = torch.float32
    ) -> Dataset:
        r"""The same splits with the one-hot encoded labels as their context, for a
        class-conditional model :math:`p(x \mid c)`:

        .. math:: c_k = \mathbb{1}[y = k], \quad k = 0, \dots, K - 1 .

        Arguments:
            num_classes: :math:`K`; by default :attr:`num_classes` (one more than the
                largest label: 10 for digits and MNIST).
            dtype: The floating dtype of the context.

        Returns:
            A :class:`Dataset` with ``train_context`` etc. of shape :math:`(N, K)`
            (the labels are kept).

        Raises:
            ValueError: If the data set has no labels, labels are not integers in
                :math:`\{0, \dots, K - 1\}`, or ``num_classes`` is too small.

        Example:
            >>> y = torch.tensor([0, 2])
            >>> d = Dataset("t", torch.zeros(2, 1), torch.zeros(2, 1), torch.zeros(2, 1),
            ...             train_labels=y, validation_labels=y, test_labels=y)
            >>> d.with_label_context().train_context
            tensor([[1., 0., 0.],
                    [0., 0., 1.]])
        """
        labels = {s: getattr(self, f"{s}_labels") for s in _SPLITS}
        missing = [f"{s}_labels" for s, y in labels.items() if y is None]
        if missing:
            raise ValueError(
                f"{', '.join(missing)}: a label context needs the labels of every split, "
                f"got None (data set {self.name!r})"
            )
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise ValueError(f"dtype: expected a floating torch.dtype, got {dtype!r}")
        for split, y in labels.items():
            if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
                raise ValueError(f"{split}_labels: expected integer labels, got dtype {y.dtype}")
            if y.numel() and int(y.min()) < 0:
                raise ValueError(
                    f"{split}_labels: expected labels >= 0, got a label {int(y.min())}"
                )
        largest = max((int(y.max()) for y in labels.values() if y.numel()), default=-1)
        k = largest + 1 if num_classes is None else num_classes
        check_int(k, f"num_classes (more than the largest label, {largest})", max(largest + 1, 1))
        contexts = {f"{s}_context": F.one_hot(y.long(), k).to(dtype) for s, y in labels.items()}
        return dataclasses.replace(self, **contexts)

    @property
    def event_shape(self) -> torch.Size:
        """The shape of one example, e.g. ``(1, 8, 8)`` for digits or ``(2,)`` for a toy."""
        return self.train.shape[1:]

    def __repr__(self) -> str:
        sizes = ", ".join(f"{s}={getattr(self, s).shape[0]}" for s in _SPLITS)
        labels = self.train_labels is not None
        context = "" if self.context_shape is None else f", context={tuple(self.context_shape)}"
        return (
            f"Dataset(name={self.name!r}, {sizes}, event_shape={tuple(self.event_shape)}, "
            f"dtype={self.train.dtype}, num_levels={self.num_levels}, labels={labels}"
            f"{context})"
        )
