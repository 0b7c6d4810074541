r"""The loss a model/guide pair is trained on, and the optimizer that steps its parameters."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any

import torch
from pyro import poutine
from pyro.infer import ELBO, Trace_ELBO, TraceEnum_ELBO, TraceMeanField_ELBO
from torch import Tensor

from ..utils.registration import CollectedParams
from .data import Batch, Data, as_batch, as_data

__all__ = ["Objective", "build_optimizer", "evaluate_loss", "multi_tensor"]


def _accepts_data_size(fn: Callable) -> bool:
    try:
        return "data_size" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _without_data_size(fn: Callable) -> Callable:
    def call(*args: Any, data_size: int | None = None, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    return call


# ELBOs whose differentiable_loss reads only the sample sites of the traces. Not
# their Jit* subclasses: those find their parameters by tracing param sites.
_PARAM_BLIND_LOSSES = (Trace_ELBO, TraceMeanField_ELBO, TraceEnum_ELBO)


class Objective:
    """The minibatch loss of a model/guide pair and the parameters it reaches.

    Pyro's ``SVI`` re-traces every parameter and goes through Pyro's optimizer
    wrappers on each step; here the parameters are collected once and stepped
    by one torch optimizer, and (for the ELBOs that only read sample sites) the
    pair's ``pyro.param`` calls are answered by
    :class:`~pyro_dgm.utils.registration.CollectedParams` instead of being traced
    again.

    Example:
        >>> from pyro.infer import Trace_ELBO
        >>> from pyro_dgm.flows import MAF
        >>> from pyro_dgm.models import FlowModel
        >>> pair = FlowModel(MAF(2, num_layers=1), name="objective_example")
        >>> x = torch.randn(8, 2)
        >>> objective = Objective(pair.model, pair.guide, Trace_ELBO(), data_size=8)
        >>> all(name.startswith("objective_example$$$") for name in objective.params(x))
        True
        >>> objective.step_loss(x).shape  # the minibatch loss, with a graph
        torch.Size([])
    """

    def __init__(self, model: Callable, guide: Callable, loss: ELBO, data_size: int) -> None:
        self.loss = loss
        scaled = _accepts_data_size(model)
        self.kwargs = {"data_size": data_size} if scaled else {}
        self.per_point = data_size if scaled else None
        self.model = model
        self.guide = (
            guide if not scaled or _accepts_data_size(guide) else _without_data_size(guide)
        )
        self.differentiable = hasattr(loss, "differentiable_loss")
        self.step_model, self.step_guide = self.model, self.guide

    def _run(self, fn: Callable, model: Callable, guide: Callable, batch: Batch | Tensor) -> Any:
        batch = as_batch(batch)
        return fn(model, guide, *batch.args, **batch.kwargs, **self.kwargs)

    def params(self, batch: Batch | Tensor) -> dict[str, Tensor]:
        """Run the pair once (creating lazy parameters) and collect what it reaches.

        From then on, the unconstrained ones are answered without tracing when the
        loss allows it (see :class:`~pyro_dgm.utils.registration.CollectedParams`)."""
        with poutine.trace(param_only=True) as tape:
            self._run(self.loss.loss, self.model, self.guide, batch)
        sites = tape.trace.nodes
        found = {name: site["value"].unconstrained() for name, site in sites.items()}
        if self.differentiable and type(self.loss) in _PARAM_BLIND_LOSSES:
            plain = {n: v for n, v in found.items() if sites[n]["value"] is v}
            self.step_model = CollectedParams(plain)(self.model)
            self.step_guide = CollectedParams(plain)(self.guide)
        return {name: found[name] for name in sorted(found)}

    def normalizer(self, batch: Batch | Tensor) -> int:
        # a model that scales its plate to the data size returns a full-data loss
        return self.per_point if self.per_point is not None else len(batch)

    def step_loss(self, batch: Batch | Tensor) -> Tensor:
        """Loss of one minibatch; gradients are in ``.grad`` afterwards."""
        if self.differentiable:
            value = self._run(
                self.loss.differentiable_loss, self.step_model, self.step_guide, batch
            )
            if torch.isfinite(value):
                value.backward()
            return value.detach()
        return torch.as_tensor(self._run(self.loss.loss_and_grads, self.model, self.guide, batch))

    @torch.no_grad()
    def batch_loss(self, batch: Batch | Tensor) -> float:
        """The loss of ``batch`` without gradients, summed over its points."""
        value = self._run(self.loss.loss, self.step_model, self.step_guide, batch)
        return float(value) * len(batch) / self.normalizer(batch)

    def loss_sums(self, batches: Iterable[Batch]) -> tuple[float, int]:
        """The summed loss of ``batches`` and their number of points (no gradients)."""
        total, count = 0.0, 0
        for batch in batches:
            total += self.batch_loss(batch)
            count += len(batch)
        return total, count

    def evaluate(self, data: Data | Batch, batch_size: int) -> float:
        """The loss per data point of ``data``, without gradients."""
        batches = [data] if isinstance(data, Batch) else data.batches(batch_size)
        total, count = self.loss_sums(batches)
        return total / count


def evaluate_loss(
    model: Callable,
    guide: Callable,
    data: Any,
    *,
    loss: ELBO | None = None,
    batch_size: int = 1024,
) -> float:
    """The loss per data point of a model/guide pair on ``data`` (no gradients).

    With the default ``Trace_ELBO`` this is the negative ELBO in nats; for a
    flow with an empty guide it is the exact negative log-likelihood. ``data`` is a
    tensor, a tuple ``(x, context, ...)`` or dict of tensors, or a DataLoader
    (:mod:`pyro_dgm.infer.data`).

    Raises:
        ValueError: For data that is empty or holds a NaN or an infinity (the rows are named).

    Example:
        >>> from pyro_dgm.flows import MAF
        >>> from pyro_dgm.models import FlowModel
        >>> pair = FlowModel(MAF(2, num_layers=1), name="evaluate_example")
        >>> loss = evaluate_loss(pair.model, pair.guide, torch.randn(100, 2))  # nats per point
        >>> isinstance(loss, float)
        True
    """
    data = as_data(data, "data")
    objective = Objective(model, guide, loss or Trace_ELBO(), len(data))
    return objective.evaluate(data, batch_size)


def multi_tensor(params: list[Tensor]) -> bool | None:
    """Whether torch's multi-tensor (``foreach``) kernels can step these parameters.

    torch uses them by default only on GPUs; on the CPU its one-tensor-at-a-time
    loops cost a small network a sizeable part of its step, for the same
    arithmetic (benchmarks/README.md).

    Example:
        >>> multi_tensor([torch.zeros(2, requires_grad=True)])  # CPU tensors: yes
        True
    """
    return True if all(p.device.type in ("cpu", "cuda") for p in params) else None


def build_optimizer(
    optimizer: Callable[..., torch.optim.Optimizer],
    params: list[Tensor],
    lr: float,
    weight_decay: float = 0.0,
) -> torch.optim.Optimizer:
    """``optimizer(params, lr=lr)`` (and ``weight_decay=``, when it is not 0); torch's own
    optimizer classes get ``foreach``.

    Example:
        >>> w = torch.zeros(3, requires_grad=True)
        >>> build_optimizer(torch.optim.Adam, [w], lr=1e-2).param_groups[0]["lr"]
        0.01
    """
    kwargs: dict[str, Any] = {"lr": lr}
    if weight_decay:
        kwargs["weight_decay"] = weight_decay
    builtin = isinstance(optimizer, type) and issubclass(optimizer, torch.optim.Optimizer)
    if builtin and "foreach" in inspect.signature(optimizer).parameters:
        kwargs["foreach"] = multi_tensor(params)
    try:
        return optimizer(params, **kwargs)
    except TypeError as error:
        if "weight_decay" not in kwargs:
            raise
        raise ValueError(
            f"weight_decay: the optimizer {getattr(optimizer, '__name__', optimizer)!r} "
            f"does not take it ({error}); pass a torch optimizer such as torch.optim.AdamW"
        ) from error
