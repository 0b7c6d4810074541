r"""Import zuko without letting it change torch's global settings.

When ``zuko.distributions`` is imported it sets, for the whole process,

* ``torch.distributions.Distribution._validate_args = False``: every torch and
  Pyro distribution then stops checking its arguments and values, whatever
  ``pyro.enable_validation`` says;
* ``Distribution.arg_constraints = {}``: distributions that declare none stop
  warning about it;
* ``torch.distributions.transforms._InverseTransform.__name__ = "Inverse"``;

and adds the method ``Transform.call_and_ladj`` (``(y, log|det J|)`` in one
call), which zuko's own classes call on every transform they hold.

:func:`import_zuko` imports zuko, puts the first three back as they were, and
gives zuko's own distribution classes the settings zuko chose for them (no
validation, empty ``arg_constraints`` where they declare none), so zuko works as
its authors wrote it and every other distribution keeps Pyro's validation. The
added method stays: it changes no existing behaviour and zuko needs it.
"""

from __future__ import annotations

import inspect
import sys
from types import ModuleType
from typing import Any

from torch.distributions import Distribution
from torch.distributions.transforms import _InverseTransform

__all__ = ["import_zuko"]

_MISSING = object()


def _saved(cls: type, name: str) -> Any:
    return cls.__dict__.get(name, _MISSING)


def _put_back(cls: type, name: str, value: Any) -> None:
    if value is _MISSING:
        if name in cls.__dict__:
            delattr(cls, name)
    else:
        setattr(cls, name, value)


def _contain(module: ModuleType) -> None:
    """zuko's choices for zuko's own distributions, on those classes alone."""
    for _, cls in inspect.getmembers(module, inspect.isclass):
        if not issubclass(cls, Distribution) or not cls.__module__.startswith("zuko"):
            continue
        cls._validate_args = False
        declared = any(
            "arg_constraints" in base.__dict__ for base in cls.__mro__ if base is not Distribution
        )
        if not declared:
            cls.arg_constraints = {}


def import_zuko() -> ModuleType:
    """``import zuko``, leaving torch's and Pyro's validation settings as they were.

    If zuko was imported before (by the user's own ``import zuko``), it is
    returned as it is: whatever that import changed was the user's choice.

    Example:
        >>> import pyro.distributions as dist
        >>> import torch
        >>> zuko = import_zuko()
        >>> try:
        ...     dist.Bernoulli(0.5).log_prob(torch.tensor(3.0))
        ... except ValueError:
        ...     print("3 is outside a Bernoulli's support")
        3 is outside a Bernoulli's support
    """
    if "zuko" in sys.modules:
        return sys.modules["zuko"]
    saved = {
        (Distribution, "_validate_args"): _saved(Distribution, "_validate_args"),
        (Distribution, "arg_constraints"): _saved(Distribution, "arg_constraints"),
        (_InverseTransform, "__name__"): _InverseTransform.__name__,
    }
    try:
        import zuko
        import zuko.distributions
    finally:
        for (cls, name), value in saved.items():
            _put_back(cls, name, value)
    _contain(zuko.distributions)
    return zuko
