r"""Argument checks shared by every layer: one wording for each kind of bad input.

Every check raises a ``ValueError`` of the form ``"{name}: expected {what}, got {value!r}"``
(design.md: bad input, of any type, is a ``ValueError`` naming the argument, the
expected and the actual) and returns the value in its canonical type.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from numbers import Integral, Real
from typing import Any

import torch
from torch import nn

__all__ = [
    "check_choice",
    "check_int",
    "check_number",
    "check_shape",
    "module_dtype",
]


def _bounds(minimum: float | None, maximum: float | None) -> str:
    if minimum is not None and maximum is not None:
        return f" in [{minimum}, {maximum}]"
    if minimum is not None:
        return f" >= {minimum}"
    if maximum is not None:
        return f" <= {maximum}"
    return ""


def check_int(
    value: object, name: str, minimum: int | None = None, maximum: int | None = None
) -> int:
    """``value`` as an ``int``, if it is an integer (not a bool) within the bounds.

    Example:
        >>> check_int(3, "num_layers", 1)
        3
        >>> check_int(0, "num_layers", 1)
        Traceback (most recent call last):
            ...
        ValueError: num_layers: expected an int >= 1, got 0
    """
    ok = not isinstance(value, bool) and isinstance(value, Integral)
    ok = ok and (minimum is None or value >= minimum) and (maximum is None or value <= maximum)
    if not ok:
        raise ValueError(f"{name}: expected an int{_bounds(minimum, maximum)}, got {value!r}")
    return int(value)  # type: ignore[arg-type]


def check_number(
    value: object,
    name: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    positive: bool = False,
) -> float:
    """``value`` as a finite ``float`` (not a bool), within the bounds, ``> 0`` if ``positive``.

    Example:
        >>> check_number(0.5, "lr", positive=True)
        0.5
        >>> check_number(-1, "lr", positive=True)
        Traceback (most recent call last):
            ...
        ValueError: lr: expected a positive number, got -1
    """
    ok = not isinstance(value, bool) and isinstance(value, Real) and math.isfinite(value)
    ok = ok and (minimum is None or value >= minimum) and (maximum is None or value <= maximum)
    ok = ok and (not positive or value > 0)
    if not ok:
        what = "a positive number" if positive else "a finite number"
        raise ValueError(f"{name}: expected {what}{_bounds(minimum, maximum)}, got {value!r}")
    return float(value)  # type: ignore[arg-type]


def check_choice(value: object, name: str, choices: Iterable[Any]) -> Any:
    """``value`` if it is one of ``choices``.

    Example:
        >>> check_choice("lu", "parametrization", ("lu", "qr"))
        'lu'
    """
    options = list(choices)
    if value not in options:
        raise ValueError(f"{name}: expected one of {options}, got {value!r}")
    return value


def check_shape(shape: Sequence[int] | int, name: str, ndim: int | None = None) -> torch.Size:
    """A non-empty shape of positive sizes (of ``ndim`` dimensions, if given).

    Example:
        >>> check_shape((1, 8, 8), "event_shape", ndim=3)
        torch.Size([1, 8, 8])
        >>> check_shape(2, "event_shape")
        torch.Size([2])
    """
    sizes = (shape,) if isinstance(shape, Integral) else tuple(shape)
    ok = len(sizes) > 0 and all(
        not isinstance(s, bool) and isinstance(s, Integral) and s >= 1 for s in sizes
    )
    ok = ok and (ndim is None or len(sizes) == ndim)
    if not ok:
        what = (
            f"a shape of {ndim} positive sizes" if ndim else "a non-empty shape of positive sizes"
        )
        raise ValueError(f"{name}: expected {what}, got {shape!r}")
    return torch.Size(int(s) for s in sizes)


def module_dtype(module: nn.Module) -> torch.dtype:
    """The floating dtype of a module's first floating parameter or buffer (torch's
    default dtype for a module that has none).

    Example:
        >>> module_dtype(nn.Linear(2, 2).double())
        torch.float64
    """
    for tensor in itertools.chain(module.parameters(), module.buffers()):  # stops at the first
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.get_default_dtype()
