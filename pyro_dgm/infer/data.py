r"""The data step of training and evaluation: checks and the training/validation split."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["check_data", "training_splits"]

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
        raise ValueError(f"{name}: expected a Tensor or a Dataset, got {type(x).__name__}")
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


def training_splits(
    data: Any, validation: Tensor | float | None, seed: int | None
) -> tuple[Tensor, Tensor | None]:
    """The training and validation tensors of ``fit``, each checked.

    Arguments:
        data: A tensor, or a :class:`~pyro_dgm.datasets.Dataset` (its ``train`` and
            ``validation`` splits).
        validation: A validation tensor; a fraction of a tensor ``data`` to hold out (drawn
            with ``seed``, or :data:`SPLIT_SEED` when ``seed`` is ``None``); ``None`` for no
            validation.
        seed: The seed of the held-out fraction.
    """
    if hasattr(data, "train") and hasattr(data, "validation"):
        train = check_data(data.train, "data.train")
        if validation is None:
            return train, None
        if isinstance(validation, Tensor):
            return train, check_data(validation, "validation")
        if len(data.validation) == 0:
            raise ValueError(
                "data.validation: expected at least one data point, got an empty split; "
                "pass validation=None to train without validation (and without early stopping)"
            )
        return train, check_data(data.validation, "data.validation")
    data = check_data(data, "data")
    if validation is None:
        return data, None
    if isinstance(validation, Tensor):
        return data, check_data(validation, "validation")
    if isinstance(validation, bool) or not isinstance(validation, float | int):
        raise ValueError(
            f"validation: expected a Tensor, a fraction in (0, 1) or None, got {validation!r}"
        )
    if not 0.0 < validation < 1.0:
        raise ValueError(
            f"validation: expected a Tensor, a fraction in (0, 1) or None, got {validation}"
        )
    num_validation = max(1, round(validation * len(data)))
    if num_validation >= len(data):
        raise ValueError(
            f"validation: a fraction of {validation} of {len(data)} data points leaves no "
            "training data"
        )
    generator = torch.Generator().manual_seed(SPLIT_SEED if seed is None else seed)
    order = torch.randperm(len(data), generator=generator)
    return data[order[num_validation:]], data[order[:num_validation]]
