r"""Minibatch stochastic variational inference with validation and early stopping."""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyro
import torch
from pyro import poutine
from pyro.infer import ELBO, Trace_ELBO, TraceEnum_ELBO, TraceMeanField_ELBO
from pyro.infer.util import is_validation_enabled
from torch import Tensor
from tqdm import tqdm  # plain tqdm: tqdm.auto warns in notebooks without ipywidgets

from ..utils.registration import CollectedParams
from .checkpoint import load_checkpoint, save_checkpoint

__all__ = ["History", "NonFiniteLossError", "evaluate_loss", "fit"]


class NonFiniteLossError(FloatingPointError):
    """The loss or its gradient became NaN or infinite during :func:`fit`.

    The parameters have been restored to their values at the end of the last
    epoch whose every step was finite (or to their initial values).
    """


@dataclass
class History:
    """What :func:`fit` measured, one entry per epoch.

    Losses are per data point (nats for a log-likelihood model): the negative
    ELBO of the training minibatches averaged over the epoch, and the negative
    ELBO of the whole validation split at the end of the epoch.

    Attributes:
        epoch: Epoch numbers, starting at 1 and continuing across resumes.
        train_loss: Mean training loss per data point.
        validation_loss: Validation loss per data point (``nan`` without a validation split).
        seconds: Wall-clock seconds of training since the first epoch, cumulative.
        best_epoch: The epoch whose parameters were kept (lowest validation loss).
        stopped_early: Whether early stopping ended the run.
        steps: Optimizer steps taken in total.
    """

    epoch: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    validation_loss: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    best_epoch: int = 0
    stopped_early: bool = False
    steps: int = 0

    @property
    def best_validation_loss(self) -> float:
        if self.best_epoch == 0:
            return math.nan
        return self.validation_loss[self.epoch.index(self.best_epoch)]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> History:
        return cls(**state)


def _as_splits(data: Any, validation: Tensor | float | None) -> tuple[Tensor, Tensor | None]:
    """Training and validation tensors from a tensor or a :class:`~pyro_dgm.datasets.Dataset`."""
    if hasattr(data, "train") and hasattr(data, "validation"):
        if isinstance(validation, Tensor):
            return data.train, validation
        return data.train, (data.validation if validation is not None else None)
    if not isinstance(data, Tensor):
        raise ValueError(f"data must be a Tensor or a Dataset, got {type(data).__name__}")
    if data.dim() == 0 or len(data) == 0:
        raise ValueError(f"data must hold at least one data point, got shape {tuple(data.shape)}")
    if validation is None or isinstance(validation, Tensor):
        return data, validation
    if not 0.0 < validation < 1.0:
        raise ValueError(f"validation must be a Tensor, a fraction in (0, 1) or None, got {validation}")
    num_validation = max(1, round(validation * len(data)))
    if num_validation >= len(data):
        raise ValueError(f"validation fraction {validation} leaves no training data of {len(data)}")
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))
    return data[order[num_validation:]], data[order[:num_validation]]


def _check_finite_data(name: str, x: Tensor) -> None:
    if x.is_floating_point() and not torch.isfinite(x).all():
        bad = (~torch.isfinite(x)).nonzero()[:5].tolist()
        raise ValueError(f"{name} holds NaN or infinite values, e.g. at indices {bad}")


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


class _Objective:
    """The minibatch loss of a model/guide pair and the parameters it reaches.

    Pyro's ``SVI`` re-traces every parameter and goes through Pyro's optimizer
    wrappers on each step; here the parameters are collected once and stepped
    by one torch optimizer, and (for the ELBOs that only read sample sites) the
    pair's ``pyro.param`` calls are answered by
    :class:`~pyro_dgm.utils.registration.CollectedParams` instead of being traced
    again (benchmarks/fit_overhead.py).
    """

    def __init__(self, model: Callable, guide: Callable, loss: ELBO, data_size: int) -> None:
        self.loss = loss
        scaled = _accepts_data_size(model)
        self.kwargs = {"data_size": data_size} if scaled else {}
        self.per_point = data_size if scaled else None
        self.model = model
        self.guide = guide if not scaled or _accepts_data_size(guide) else _without_data_size(guide)
        self.differentiable = hasattr(loss, "differentiable_loss")
        self.step_model, self.step_guide = self.model, self.guide

    def params(self, batch: Tensor) -> dict[str, Tensor]:
        """Run the pair once (creating lazy parameters) and collect what it reaches.

        From then on, the unconstrained ones are answered without tracing when the
        loss allows it (see :class:`~pyro_dgm.utils.registration.CollectedParams`)."""
        with poutine.trace(param_only=True) as tape:
            self.loss.loss(self.model, self.guide, batch, **self.kwargs)
        sites = tape.trace.nodes
        found = {name: site["value"].unconstrained() for name, site in sites.items()}
        if self.differentiable and type(self.loss) in _PARAM_BLIND_LOSSES:
            plain = {n: v for n, v in found.items() if sites[n]["value"] is v}
            self.step_model = CollectedParams(plain)(self.model)
            self.step_guide = CollectedParams(plain)(self.guide)
        return {name: found[name] for name in sorted(found)}

    def normalizer(self, batch: Tensor) -> int:
        # a model that scales its plate to the data size returns a full-data loss
        return self.per_point if self.per_point is not None else len(batch)

    def step_loss(self, batch: Tensor) -> Tensor:
        """Loss of one minibatch; gradients are in ``.grad`` afterwards."""
        if self.differentiable:
            value = self.loss.differentiable_loss(
                self.step_model, self.step_guide, batch, **self.kwargs
            )
            if torch.isfinite(value):
                value.backward()
            return value.detach()
        return torch.as_tensor(
            self.loss.loss_and_grads(self.model, self.guide, batch, **self.kwargs)
        )

    @torch.no_grad()
    def evaluate(self, data: Tensor, batch_size: int) -> float:
        total = 0.0
        for batch in data.split(batch_size):
            loss = self.loss.loss(self.step_model, self.step_guide, batch, **self.kwargs)
            total += float(loss) * len(batch) / self.normalizer(batch)
        return total / len(data)


def evaluate_loss(
    model: Callable,
    guide: Callable,
    data: Tensor,
    *,
    loss: ELBO | None = None,
    batch_size: int = 1024,
) -> float:
    """The loss per data point of a model/guide pair on ``data`` (no gradients).

    With the default ``Trace_ELBO`` this is the negative ELBO in nats; for a
    flow with an empty guide it is the exact negative log-likelihood.
    """
    objective = _Objective(model, guide, loss or Trace_ELBO(), len(data))
    return objective.evaluate(data, batch_size)


def _multi_tensor(params: list[Tensor]) -> bool | None:
    """Whether torch's multi-tensor (``foreach``) kernels can step these parameters.

    torch uses them by default only on GPUs; on the CPU its one-tensor-at-a-time
    loops cost a small network a fifth of its step: for the 30 tensors of a
    five-layer MAF, Adam's step took 0.72 ms with ``foreach=True`` against 1.14 ms
    without, and the gradient norm 0.13 ms against 0.18 ms (same arithmetic), in
    steps of about 5 ms."""
    return True if all(p.device.type in ("cpu", "cuda") for p in params) else None


def _build_optimizer(
    optimizer: Callable[..., torch.optim.Optimizer], params: list[Tensor], lr: float
) -> torch.optim.Optimizer:
    """``optimizer(params, lr=lr)``; torch's own optimizer classes get ``foreach``."""
    builtin = isinstance(optimizer, type) and issubclass(optimizer, torch.optim.Optimizer)
    if builtin and "foreach" in inspect.signature(optimizer).parameters:
        return optimizer(params, lr=lr, foreach=_multi_tensor(params))
    return optimizer(params, lr=lr)


def _snapshot(params: dict[str, Tensor]) -> dict[str, Tensor]:
    return {name: p.detach().clone() for name, p in params.items()}


def _restore(params: dict[str, Tensor], values: dict[str, Tensor]) -> None:
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(values[name])


def fit(
    model: Callable,
    guide: Callable,
    data: Any,
    *,
    validation: Tensor | float | None = 0.1,
    epochs: int = 100,
    batch_size: int = 256,
    loss: ELBO | None = None,
    lr: float = 1e-3,
    optimizer: Callable[..., torch.optim.Optimizer] = torch.optim.Adam,
    clip_norm: float | None = 10.0,
    patience: int | None = 10,
    max_seconds: float | None = None,
    checkpoint: str | Path | None = None,
    seed: int | None = None,
    progress: bool = True,
    validate: str | bool = "first_epoch",
    on_epoch_end: Callable[[History], None] | None = None,
) -> History:
    r"""Train a Pyro model/guide pair by minibatch SVI.

    Every epoch visits the training data once in a random order, in
    minibatches passed as ``model(batch)`` and ``guide(batch)``; the loss is
    minimised with one torch optimizer over every parameter the pair
    registers (``pyro.param``, ``pyro.module``, ``PyroModule``). After each
    epoch the loss of the validation split is computed; the parameters of the
    best validation epoch are kept, and training stops after ``patience``
    epochs without improvement.

    The parameters are collected once, before the first step. With
    ``Trace_ELBO``, ``TraceMeanField_ELBO`` or ``TraceEnum_ELBO`` (the default is
    ``Trace_ELBO``), the pair's later ``pyro.param`` calls for those tensors are
    answered without being traced again, and modules registered with
    :func:`~pyro_dgm.infer.register_module` (as pyro_dgm's own pairs do) skip the
    registration loop: about a tenth of a small flow's step
    (:mod:`pyro_dgm.utils.registration`).

    A model whose signature has a ``data_size`` keyword receives the number of
    training points (and so does its guide, if it takes that keyword too), so
    that its data plate (``pyro.plate("data", size=data_size, subsample=...)``)
    scales the minibatch ELBO to the whole data set.

    Arguments:
        model: A Pyro model taking a minibatch.
        guide: Its guide (an empty function for a flow trained by maximum likelihood).
        data: A tensor of data points (first dimension), or a
            :class:`~pyro_dgm.datasets.Dataset` whose ``train`` and
            ``validation`` splits are used.
        validation: A validation tensor, a fraction of ``data`` to hold out
            (for a tensor), or ``None`` for no validation and no early stopping.
        epochs: The maximum number of epochs.
        batch_size: Minibatch size.
        loss: Any Pyro ELBO; ``Trace_ELBO()`` by default.
        lr: Learning rate.
        optimizer: A torch optimizer class (or factory) ``optimizer(params, lr=lr)``.
            torch's own optimizer classes are built with ``foreach=True`` (their
            multi-tensor kernels, which torch picks by default only on GPUs; the
            same arithmetic, a fraction of a small network's step faster on CPU).
        clip_norm: Gradient norm clipping, or ``None``.
        patience: Epochs without validation improvement before stopping, or ``None``.
        max_seconds: A wall-clock budget for training, checked after every step.
        checkpoint: A file: resumed from when it exists (parameters, optimizer
            state and history), written at the end of every epoch.
        seed: Seeds torch and Pyro before training, if given.
        progress: Show a tqdm progress bar with the running loss.
        validate: When Pyro's validation is on (``pyro.enable_validation``, Pyro's
            default), ``"first_epoch"`` keeps it on for the first epoch of this call,
            which meets every training batch and the validation split once, and turns
            it off afterwards: the same data and shapes are not checked again at
            every step, which costs a sizeable part of a small network's step
            (benchmarks/fit_overhead.py). A loss that turns non-finite later still
            raises :class:`NonFiniteLossError`. ``True`` keeps Pyro's setting for
            every epoch; ``False`` turns validation off from the start. Pyro's global
            setting is restored when ``fit`` returns.
        on_epoch_end: Called with the history after every epoch, once that epoch's
            checkpoint (if any) is written, and once more at the end when ``fit``
            restores the best parameters and writes the final checkpoint.

    Returns:
        The :class:`History` of the run (continued, when resumed).

    Raises:
        ValueError: For data that is empty, not finite, or of the wrong type.
        NonFiniteLossError: When the loss or a gradient becomes non-finite; the
            parameters of the last good epoch are restored first.
    """
    if epochs < 0 or batch_size < 1:
        raise ValueError(f"epochs must be >= 0 and batch_size >= 1, got {epochs}, {batch_size}")
    if validate not in ("first_epoch", True, False):
        raise ValueError(f"validate must be 'first_epoch', True or False, got {validate!r}")
    pyro_validation = is_validation_enabled()
    if seed is not None:
        pyro.set_rng_seed(seed)
    train, valid = _as_splits(data, validation)
    _check_finite_data("data", train)
    if valid is not None:
        _check_finite_data("validation", valid)
    objective = _Objective(model, guide, loss or Trace_ELBO(), len(train))

    named = objective.params(train[:batch_size])
    params = list(named.values())
    if not params:
        raise ValueError(
            "the model and guide register no parameters: use pyro.module, pyro.param or a "
            "PyroModule so that fit has something to train"
        )
    optim = _build_optimizer(optimizer, params, lr)
    foreach = _multi_tensor(params)
    history, best = History(), _snapshot(named)
    if checkpoint is not None and Path(checkpoint).exists():
        saved = load_checkpoint(checkpoint, params=named, optimizer=optim)
        history = saved.history or history
        best = saved.best_params or _snapshot(named)
    best_loss = history.best_validation_loss if history.best_epoch else math.inf
    last_good = _snapshot(named)
    elapsed = history.seconds[-1] if history.seconds else 0.0
    first_epoch = history.epoch[-1] + 1 if history.epoch else 1
    steps_per_epoch = math.ceil(len(train) / batch_size)
    bar = tqdm(total=epochs * steps_per_epoch, disable=not progress, unit="step", leave=False)
    out_of_time = False

    try:
        for epoch in range(first_epoch, first_epoch + epochs):
            pyro.enable_validation(
                pyro_validation and (validate is True or (validate and epoch == first_epoch))
            )
            start = time.perf_counter()
            total, count = torch.zeros(()), 0
            for idx in torch.randperm(len(train)).split(batch_size):
                batch = train[idx]  # a fresh tensor each step: torch's transform cache is keyed by identity
                optim.zero_grad(set_to_none=True)
                value = objective.step_loss(batch)
                grad_norm = (
                    torch.nn.utils.clip_grad_norm_(params, clip_norm, foreach=foreach)
                    if clip_norm is not None
                    else torch.zeros(())
                )
                if not (torch.isfinite(value) and torch.isfinite(grad_norm)):
                    _restore(named, last_good)
                    bar.close()
                    what = "loss" if not torch.isfinite(value) else "gradient norm"
                    raise NonFiniteLossError(
                        f"the {what} became {float(value if what == 'loss' else grad_norm)} at "
                        f"epoch {epoch}, step {history.steps + 1}; parameters restored to the end of "
                        f"epoch {epoch - 1}. Try a smaller lr (now {lr}) or clip_norm (now {clip_norm})."
                    )
                optim.step()
                history.steps += 1
                total += value * len(batch) / objective.normalizer(batch)
                count += len(batch)
                bar.update()
                if max_seconds is not None and elapsed + time.perf_counter() - start > max_seconds:
                    out_of_time = True
                    break
            train_loss = float(total) / max(count, 1)
            last_good = _snapshot(named)
            valid_loss = objective.evaluate(valid, max(batch_size, 1024)) if valid is not None else math.nan
            elapsed += time.perf_counter() - start
            history.epoch.append(epoch)
            history.train_loss.append(train_loss)
            history.validation_loss.append(valid_loss)
            history.seconds.append(elapsed)
            improved = valid is None or valid_loss < best_loss
            if improved:
                best_loss, history.best_epoch = valid_loss, epoch
                best = _snapshot(named)
            bar.set_postfix(epoch=epoch, train=f"{train_loss:.4f}", valid=f"{valid_loss:.4f}")
            stale = epoch - history.best_epoch
            stop = patience is not None and valid is not None and stale >= patience
            if stop:
                history.stopped_early = True
            if stop or out_of_time:
                break
            if checkpoint is not None:
                save_checkpoint(
                    checkpoint, params=named, optimizer=optim, history=history, best_params=best
                )
            if on_epoch_end is not None:
                on_epoch_end(history)
    finally:
        pyro.enable_validation(pyro_validation)
    bar.close()

    if valid is not None and history.best_epoch:
        _restore(named, best)
    if checkpoint is not None:
        save_checkpoint(checkpoint, params=named, optimizer=optim, history=history, best_params=best)
    if on_epoch_end is not None:
        on_epoch_end(history)
    return history
