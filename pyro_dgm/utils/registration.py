r"""Parameter registration answered by :func:`~pyro_dgm.infer.fit` for the tensors it trains.

Pyro finds a pair's parameters by running it: every ``pyro.param`` (and every
tensor of a ``pyro.module``) is a message that Pyro's handlers pass along and
its traces record, at every step. :func:`~pyro_dgm.infer.fit` collects the
parameters once and steps them itself, so inside ``fit`` those messages only
cost time (for a small flow, a sizeable part of its step: benchmarks/README.md).
Here ``fit``'s handler answers them directly,
and pyro_dgm's own model/guide pairs skip the whole ``pyro.module`` loop while
that handler holds their tensors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import pyro
from pyro.params import param_with_module_name
from pyro.poutine.messenger import Messenger
from torch import Tensor, nn

try:  # Pyro's handler stack: private, so a Pyro without it only loses the shortcut
    from pyro.poutine.runtime import _PYRO_STACK
except ImportError:  # pragma: no cover
    _PYRO_STACK = None

if TYPE_CHECKING:  # typing.Self is Python >= 3.11; pyro_dgm supports 3.10
    from typing_extensions import Self

__all__ = ["CollectedParams", "answered_by_param_store", "register_module"]


class CollectedParams(Messenger):
    """Answers ``pyro.param`` for unconstrained parameters collected beforehand.

    Wraps a model or a guide (so it meets their ``param`` messages before any
    other handler), returns the very tensor the param store holds and stops the
    message there: traces no longer record those sites. Use it only with a loss
    that reads sample sites alone (``fit`` checks the ELBO's class): Pyro's
    ``SVI`` and its Jit ELBOs find the tensors to train by tracing param sites.

    Arguments:
        params: Parameter names and the unconstrained tensors the param store holds
            under them (tensors whose constrained value is the tensor itself).

    Example:
        >>> import torch
        >>> w = torch.zeros(2, requires_grad=True)
        >>> with CollectedParams({"w": w}):
        ...     pyro.param("w", torch.ones(2)) is w  # the collected tensor, untraced
        True
    """

    _active: ClassVar[list[CollectedParams]] = []

    def __init__(self, params: dict[str, Tensor]) -> None:
        super().__init__()
        self.params = params
        self._holds: dict[tuple[str, int], bool] = {}

    def __enter__(self) -> Self:
        entered = super().__enter__()
        CollectedParams._active.append(self)
        return entered

    def __exit__(self, *args: object) -> None:
        CollectedParams._active.remove(self)
        return super().__exit__(*args)

    def _pyro_param(self, msg: dict[str, Any]) -> None:
        value = self.params.get(msg["name"])
        if value is not None:
            msg["value"] = value
            msg["done"] = True
            msg["stop"] = True

    def holds(self, name: str, module: nn.Module) -> bool:
        """Whether every trainable tensor of ``module``, registered under ``name``, is
        one this handler answers for (worked out once per module)."""
        key = (name, id(module))
        known = self._holds.get(key)
        if known is None:
            known = all(
                self.params.get(param_with_module_name(name, param_name)) is p
                for param_name, p in module.named_parameters()
                if p.requires_grad
            )
            self._holds[key] = known
        return known

    @classmethod
    def innermost_holding(cls, name: str, module: nn.Module) -> bool:
        """Whether the innermost Pyro handler now running is a :class:`CollectedParams`
        that holds ``module``: then ``pyro.module(name, module)`` would only send it
        messages it answers, and no other handler would see them."""
        if not cls._active or not _PYRO_STACK or _PYRO_STACK[-1] is not cls._active[-1]:
            return False  # no fit handler, or another handler inside it
        return cls._active[-1].holds(name, module)


def register_module(name: str, module: nn.Module) -> nn.Module:
    """``pyro.module(name, module)``, skipped inside :func:`~pyro_dgm.infer.fit` when
    fit's handler is the innermost one and holds every tensor of the module.

    Everywhere else (``SVI``, ``Predictive``, any ``poutine`` handler) this is
    exactly ``pyro.module``. Skipping it changes nothing but time: the tensors
    are those the param store holds and ``fit`` steps.

    Example:
        >>> import torch
        >>> net = torch.nn.Linear(2, 1)
        >>> register_module("net", net) is net
        True
        >>> pyro.get_param_store()["net$$$weight"] is net.weight
        True
    """
    if CollectedParams.innermost_holding(name, module):
        return module
    return pyro.module(name, module)


def answered_by_param_store(fn: Callable) -> Callable:
    """``fn`` under a :class:`CollectedParams` of the param store's unconstrained tensors
    as they are now: its ``pyro.param`` calls get those very tensors, untraced, and
    pyro_dgm's models skip ``pyro.module``'s loop over their parameters in every pass
    (benchmarks/README.md, ``scoring_cost.py``). Only for code
    that reads sample sites alone, such as the importance-weighted estimators: traces of
    ``fn`` hold no param sites. Parameters not yet in the store go through Pyro as usual.

    Example:
        >>> import torch
        >>> w = pyro.param("answered_example", torch.zeros(2))
        >>> fn = answered_by_param_store(lambda: pyro.param("answered_example"))
        >>> fn() is pyro.param("answered_example")
        True
    """
    store = pyro.get_param_store()
    # a parameter without a constraint is its own constrained value
    plain = {name: value for name, value in store.named_parameters() if store[name] is value}
    return CollectedParams(plain)(fn)
