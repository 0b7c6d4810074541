r"""The data step of training and evaluation: what a batch is, where batches come from,
and the training/validation split.

A batch reaches a model/guide pair as ``model(*args, **kwargs)``: a tensor ``x`` as
``model(x)``, a tuple ``(x, context)`` as ``model(x, context)``, a dict as
``model(**batch)``. Data come as in-memory tensors (:class:`TensorData`: split, shuffled
and sharded here) or as a ``torch.utils.data.DataLoader`` or any other re-iterable of
batches (:class:`LoaderData`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "Batch",
    "LoaderData",
    "TensorData",
    "as_batch",
    "as_data",
    "check_data",
    "training_data",
    "training_splits",
]

#: The seed of the validation split when ``fit`` is given none: the same split on every
#: call, so that a resumed run validates on the points it validated on before.
SPLIT_SEED = 0


def check_data(x: object, name: str) -> Tensor:
    """``x`` if it is a tensor of at least one data point with only finite values.

    The message names the rows (indices along the first dimension of ``x``, as the
    caller passed it) that hold a NaN or an infinity.

    Example:
        >>> check_data(torch.tensor([[0.0, 1.0], [float("nan"), 2.0]]), "data")
        Traceback (most recent call last):
            ...
        ValueError: data: expected finite values, got NaN or infinity in rows [1] (of 2)
    """
    if not isinstance(x, Tensor):
        raise ValueError(
            f"{name}: expected a Tensor, a tuple or dict of tensors, a Dataset or a DataLoader, "
            f"got {type(x).__name__}"
        )
    if x.dim() == 0 or len(x) == 0:
        raise ValueError(f"{name}: expected at least one data point, got shape {tuple(x.shape)}")
    if x.is_floating_point() or x.is_complex():
        bad = ~torch.isfinite(x.reshape(len(x), -1)).all(-1)
        if bad.any():
            rows = bad.nonzero().flatten().tolist()
            shown = ", ".join(map(str, rows[:10])) + (", ..." if len(rows) > 10 else "")
            raise ValueError(
                f"{name}: expected finite values, got NaN or infinity in rows [{shown}] "
                f"(of {len(x)})"
            )
    return x


class Batch:
    """One minibatch as the pair takes it: ``model(*args, **kwargs)``.

    Its size is the length of its first tensor (the data ``x``); every other tensor is
    passed along as it is (a context, labels).

    Example:
        >>> batch = Batch((torch.zeros(4, 2), torch.ones(4, 3)), {})
        >>> len(batch), batch.x.shape
        (4, torch.Size([4, 2]))
        >>> batch.call(lambda x, context: context.shape)  # model(x, context)
        torch.Size([4, 3])
    """

    __slots__ = ("args", "kwargs")

    def __init__(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.args, self.kwargs = args, kwargs

    @property
    def x(self) -> Tensor:
        """The data: the first positional tensor, or the ``"x"`` entry (else the first)."""
        if self.args:
            return self.args[0]
        return self.kwargs["x"] if "x" in self.kwargs else next(iter(self.kwargs.values()))

    def __len__(self) -> int:
        return len(self.x)

    def call(self, fn: Callable, **extra: Any) -> Any:
        return fn(*self.args, **self.kwargs, **extra)

    def map(self, fn: Callable[[Tensor], Tensor]) -> Batch:
        """The batch with ``fn`` applied to each of its tensors."""
        args = tuple(fn(a) if isinstance(a, Tensor) else a for a in self.args)
        kwargs = {k: fn(v) if isinstance(v, Tensor) else v for k, v in self.kwargs.items()}
        return Batch(args, kwargs)

    def to(self, device: torch.device | str | None) -> Batch:
        if device is None:
            return self
        return self.map(lambda t: t.to(device, non_blocking=True))


def as_batch(item: Any) -> Batch:
    """A :class:`Batch` from a tensor, a tuple or list ``(x, context, ...)`` or a dict.

    Example:
        >>> as_batch({"x": torch.zeros(3, 2)}).x.shape
        torch.Size([3, 2])
    """
    if isinstance(item, Batch):
        return item
    if isinstance(item, Tensor):
        return Batch((item,), {})
    if isinstance(item, tuple | list) and item and isinstance(item[0], Tensor):
        return Batch(tuple(item), {})
    if isinstance(item, dict) and item and all(isinstance(k, str) for k in item):
        return Batch((), dict(item))
    raise ValueError(
        "batch: expected a tensor x, a tuple (x, context, ...) or a dict of tensors, "
        f"got {type(item).__name__}"
    )


class TensorData:
    """In-memory data: aligned tensors along their first dimension, ``(x, *context)`` or
    a dict of them, checked once, batched by index.

    Arguments:
        args: The positional tensors; the first is the data ``x``.
        kwargs: Tensors passed by keyword.
        name: How error messages name the data.

    Example:
        >>> data = TensorData((torch.randn(10, 2), torch.randn(10, 3)))  # (x, context)
        >>> [len(b) for b in data.batches(4)]
        [4, 4, 2]
        >>> TensorData((torch.randn(10, 2), torch.randn(9, 3)))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: data: expected tensors of one length along the first dimension ...
    """

    def __init__(
        self, args: tuple[Tensor, ...], kwargs: dict[str, Tensor] | None = None, name: str = "data"
    ) -> None:
        kwargs = kwargs or {}
        named = [(f"{name}[{i}]" if len(args) > 1 else name, t) for i, t in enumerate(args)]
        named += [(f"{name}[{k!r}]", t) for k, t in kwargs.items()]
        if not named:
            raise ValueError(f"{name}: expected at least one tensor, got none")
        for label, t in named:
            check_data(t, label)
        sizes = {label: len(t) for label, t in named}
        if len(set(sizes.values())) > 1:
            raise ValueError(
                f"{name}: expected tensors of one length along the first dimension (one row per "
                f"data point), got {sizes}"
            )
        self.args, self.kwargs, self.name = tuple(args), dict(kwargs), name
        self._length = len(named[0][1])

    def __len__(self) -> int:
        return self._length

    @property
    def x(self) -> Tensor:
        return self.batch_of(slice(None)).x

    def batch_of(self, index: Tensor | slice) -> Batch:
        return Batch(
            tuple(t[index] for t in self.args), {k: t[index] for k, t in self.kwargs.items()}
        )

    def take(self, index: Tensor) -> TensorData:
        batch = self.batch_of(index)
        return TensorData(batch.args, batch.kwargs, self.name)

    def to(self, device: torch.device | str | None) -> TensorData:
        if device is None:
            return self
        batch = self.batch_of(slice(None)).to(device)
        return TensorData(batch.args, batch.kwargs, self.name)

    def head(self, n: int) -> Batch:
        return self.batch_of(slice(0, n))

    def batches(
        self,
        batch_size: int,
        order: Tensor | None = None,
        rank: int = 0,
        world: int = 1,
    ) -> Iterator[Batch]:
        """Batches of ``batch_size`` points in ``order`` (all points in turn, without);
        with ``world > 1`` processes, this process's share of each batch: positions
        ``rank, rank + world, ...``, so that every process takes the same number of steps
        and together they see the batches a single process would."""
        index = torch.arange(len(self)) if order is None else order
        for chunk in index.split(batch_size):
            yield self.batch_of(chunk[rank::world])

    def num_batches(self, batch_size: int) -> int:
        return -(-len(self) // batch_size)


class LoaderData:
    """Data that come in batches: a ``torch.utils.data.DataLoader`` or any iterable that
    can be iterated again for every epoch (not a one-shot generator).

    Each item is a tensor ``x``, a tuple ``(x, context, ...)`` or a dict of tensors.

    Example:
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> data = LoaderData(DataLoader(TensorDataset(torch.randn(10, 2)), batch_size=4))
        >>> len(data), [len(b) for b in data.batches()]
        (10, [4, 4, 2])
    """

    def __init__(self, loader: Iterable, name: str = "data") -> None:
        if iter(loader) is loader:
            raise ValueError(
                f"{name}: expected a DataLoader or another iterable that can be iterated once "
                f"per epoch, got a one-shot iterator ({type(loader).__name__})"
            )
        self.loader, self.name = loader, name
        self._length: int | None = None

    def __len__(self) -> int:
        """The number of data points (counted on a first pass when the loader cannot say)."""
        if self._length is None:
            dataset = getattr(self.loader, "dataset", None)
            sampler = getattr(self.loader, "sampler", None)
            try:
                self._length = len(sampler) if sampler is not None else len(dataset)
            except TypeError:
                self._length = sum(len(as_batch(item)) for item in self.loader)
        return self._length

    def head(self, n: int) -> Batch:
        first = as_batch(next(iter(self.loader)))
        return first.map(lambda t: t[:n])

    def batches(self, batch_size: int | None = None, **_: Any) -> Iterator[Batch]:
        for item in self.loader:
            batch = as_batch(item)
            if len(batch):
                yield batch

    def num_batches(self, batch_size: int | None = None) -> int | None:
        try:
            return len(self.loader)
        except TypeError:
            return None


Data = TensorData | LoaderData


def as_data(data: Any, name: str = "data") -> Data:
    """:class:`TensorData` from a tensor, a tuple of tensors or a dict of tensors;
    :class:`LoaderData` from a DataLoader or another re-iterable of batches.

    Example:
        >>> type(as_data(torch.zeros(5, 2))).__name__, type(as_data([torch.zeros(5, 2)] * 2)).__name__
        ('TensorData', 'TensorData')
    """
    if isinstance(data, TensorData | LoaderData):
        return data
    if isinstance(data, Tensor):
        return TensorData((data,), {}, name)
    if isinstance(data, tuple | list) and data and all(isinstance(t, Tensor) for t in data):
        return TensorData(tuple(data), {}, name)
    if isinstance(data, dict) and data and all(isinstance(t, Tensor) for t in data.values()):
        return TensorData((), dict(data), name)
    if isinstance(data, Iterable) and not isinstance(data, str | bytes | tuple | list | dict):
        return LoaderData(data, name)
    check_data(data, name)  # raises, naming what was expected
    raise AssertionError  # pragma: no cover


def _dataset_split(dataset: Any, split: str) -> Data:
    """A :class:`~pyro_dgm.datasets.Dataset` split, with its context if it has one."""
    x = getattr(dataset, split)
    context = getattr(dataset, f"{split}_context", None)
    name = f"data.{split}"
    if len(x) == 0:
        raise ValueError(
            f"{name}: expected at least one data point, got an empty split"
            + (
                "; pass validation=None to train without validation (and without early stopping)"
                if split == "validation"
                else ""
            )
        )
    return TensorData((x,) if context is None else (x, context), {}, name)


def training_data(data: Any, validation: Any, seed: int | None) -> tuple[Data, Data | None]:
    """The training and validation data of ``fit``, each checked.

    Arguments:
        data: A tensor, a tuple ``(x, context, ...)`` or dict of tensors, a
            :class:`~pyro_dgm.datasets.Dataset` (its ``train`` and ``validation``
            splits, with their contexts if it has them), or a DataLoader.
        validation: Validation data in any of those forms (a Dataset's own split when
            ``data`` is a Dataset); a fraction of in-memory ``data`` to hold out (drawn
            with ``seed``, or :data:`SPLIT_SEED` when ``seed`` is ``None``); ``None`` for
            no validation.
        seed: The seed of the held-out fraction.

    Example:
        >>> train, valid = training_data(torch.randn(100, 2), 0.2, seed=0)
        >>> len(train), len(valid)
        (80, 20)
    """
    if hasattr(data, "train") and hasattr(data, "validation"):
        train = _dataset_split(data, "train")
        if validation is None:
            return train, None
        if isinstance(validation, float | int) and not isinstance(validation, bool):
            return train, _dataset_split(data, "validation")
        return train, as_data(validation, "validation")
    train = as_data(data, "data")
    if validation is None:
        return train, None
    if not isinstance(validation, float | int) or isinstance(validation, bool):
        return train, as_data(validation, "validation")
    if not 0.0 < validation < 1.0:
        raise ValueError(
            f"validation: expected validation data, a fraction in (0, 1) or None, got {validation}"
        )
    if not isinstance(train, TensorData):
        raise ValueError(
            "validation: a fraction is held out of in-memory data only; for a DataLoader, pass "
            "the validation data (another DataLoader) or None"
        )
    num_validation = max(1, round(validation * len(train)))
    if num_validation >= len(train):
        raise ValueError(
            f"validation: a fraction of {validation} of {len(train)} data points leaves no "
            "training data"
        )
    generator = torch.Generator().manual_seed(SPLIT_SEED if seed is None else seed)
    order = torch.randperm(len(train), generator=generator)
    return train.take(order[num_validation:]), train.take(order[:num_validation])


def training_splits(
    data: Any, validation: Tensor | float | None, seed: int | None
) -> tuple[Tensor, Tensor | None]:
    """:func:`training_data` for tensor data: the training and validation tensors.

    Example:
        >>> train, valid = training_splits(torch.randn(10, 2), None, seed=0)
        >>> train.shape, valid
        (torch.Size([10, 2]), None)
    """
    train, valid = training_data(data, validation, seed)
    return train.x, None if valid is None else valid.x
