r"""Minibatch stochastic variational inference with validation, early stopping, and a
guard against divergence."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyro
import torch
from pyro.infer import ELBO, Trace_ELBO
from pyro.infer.util import is_validation_enabled
from torch import Tensor
from tqdm import tqdm  # plain tqdm: tqdm.auto warns in notebooks without ipywidgets

from ..utils.checks import check_number
from .checkpoint import load_checkpoint, save_checkpoint
from .data import training_splits
from .history import History
from .objective import Objective, build_optimizer, evaluate_loss, multi_tensor

__all__ = [
    "DivergenceError",
    "History",
    "NonFiniteLossError",
    "evaluate_loss",
    "fit",
]


class NonFiniteLossError(FloatingPointError):
    """The loss or its gradient became NaN or infinite during :func:`fit`.

    The parameters have been restored to their values at the end of the last
    epoch whose every step was finite (or to their initial values).
    """


class DivergenceError(FloatingPointError):
    """Training diverged during :func:`fit`: the monitored loss rose far above its best,
    or the pair produced values outside a distribution's support from finite data.

    The parameters have been restored to those of the best epoch (or to their
    initial values); the message names the epoch and what was restored.
    """


def _snapshot(params: dict[str, Tensor]) -> dict[str, Tensor]:
    return {name: p.detach().clone() for name, p in params.items()}


def _restore(params: dict[str, Tensor], values: dict[str, Tensor]) -> None:
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(values[name])


def _describe_objective(model: Callable, loss: ELBO) -> str:
    """What the training loss is: the pair's own word (``training_objective`` of the
    module whose method ``model`` is, e.g. a VAE during KL warm-up), else the ELBO's."""
    own = getattr(getattr(model, "__self__", None), "training_objective", None)
    return own if isinstance(own, str) else f"negative ELBO ({type(loss).__name__})"


@contextlib.contextmanager
def _pyro_validation() -> Iterator[Callable[[bool], None]]:
    """Yields a setter of Pyro's validation flag; the flag is restored on exit."""
    before = is_validation_enabled()
    try:
        yield lambda on: pyro.enable_validation(before and on)
    finally:
        pyro.enable_validation(before)


class _Guard:
    """One loss series, held to its lowest value and to the initial parameters' value."""

    def __init__(self, margin: float | None) -> None:
        self.margin = margin
        self.initial = math.nan
        self.lowest = math.inf

    def start(self, initial: float, earlier: list[float]) -> None:
        self.initial = initial
        finite = [v for v in (initial, *earlier) if math.isfinite(v)]
        self.lowest = min(finite, default=math.inf)

    def far_above(self, loss: float) -> bool:
        """Worse than the lowest by more than the margin, and worse than (or no better
        known than) the initial parameters."""
        if self.margin is None or not math.isfinite(self.lowest):
            return False
        return loss > self.lowest + self.margin and not loss <= self.initial

    def update(self, loss: float) -> bool:
        """Record ``loss``; whether it is the lowest so far."""
        if loss < self.lowest:
            self.lowest = loss
            return True
        return False


class _Run:
    """The state of one :func:`fit` call: parameters, optimizer, history and the
    snapshots it may restore."""

    def __init__(
        self,
        objective: Objective,
        named: dict[str, Tensor],
        optim: torch.optim.Optimizer,
        clip_norm: float | None,
        lr: float,
        divergence_margin: float | None,
        num_dims: int,
    ) -> None:
        self.objective, self.named, self.optim = objective, named, optim
        self.params = list(named.values())
        self.clip_norm, self.lr = clip_norm, lr
        self.foreach = multi_tensor(self.params)
        margin = None if divergence_margin is None else divergence_margin * num_dims
        self.train_guard, self.valid_guard = _Guard(margin), _Guard(margin)
        self.history = History()
        self.best = _snapshot(named)  # kept at the end (lowest validation loss)
        self.best_loss = math.inf
        self.lowest = self.best  # the lowest monitored loss, restored on divergence
        self.lowest_label = "the initial values"
        self.last_good = self.best  # the end of the last finished epoch

    # -- resume -------------------------------------------------------------------------

    def resume(self, checkpoint: str | Path | None) -> None:
        """Continue from ``checkpoint`` if it exists: parameters, optimizer, history, best."""
        if checkpoint is None or not Path(checkpoint).exists():
            return
        saved = load_checkpoint(checkpoint, params=self.named, optimizer=self.optim)
        for group in self.optim.param_groups:  # the moments resume; the lr is this call's
            group["lr"] = self.lr
        self.history = saved.history or self.history
        self.last_good = _snapshot(self.named)
        history = self.history
        if saved.best_params is not None:
            self.best = saved.best_params
        if history.best_epoch:
            self.best_loss = history.best_validation_loss
        monitored = history.validation_loss
        if not any(math.isfinite(v) for v in monitored):
            monitored = history.train_loss
        finite = [
            (v, e) for v, e in zip(monitored, history.epoch, strict=True) if math.isfinite(v)
        ]
        if finite:  # what a diverging epoch is restored to, over the whole history
            epoch = min(finite)[1]
            if epoch == history.best_epoch:
                self.lowest, self.lowest_label = self.best, f"epoch {epoch}"
            else:  # that epoch's parameters were not kept: the checkpoint's are the fallback
                self.lowest = self.last_good
                self.lowest_label = f"those of the checkpoint (epoch {history.epoch[-1]})"

    def reference(self, train: Tensor, valid: Tensor | None, batch_size: int) -> None:
        """The losses of the initial parameters (before the first epoch ever), and the
        lowest of the whole history: what a diverging epoch exceeds."""
        history = self.history
        if not history.epoch:
            history.initial_train_loss = self.objective.evaluate(train[:batch_size], batch_size)
            if valid is not None:
                history.initial_validation_loss = self.objective.evaluate(valid, batch_size)
        self.train_guard.start(history.initial_train_loss, history.train_loss)
        if valid is not None:
            self.valid_guard.start(history.initial_validation_loss, history.validation_loss)

    # -- one epoch ----------------------------------------------------------------------

    def train_epoch(
        self, train: Tensor, batch_size: int, bar: tqdm, deadline: float | None
    ) -> tuple[float, bool]:
        """One pass over ``train`` in random minibatches: the mean loss, and whether the
        time budget ran out."""
        total, count = torch.zeros(()), 0
        epoch = self.history.epoch[-1] + 1 if self.history.epoch else 1
        for idx in torch.randperm(len(train)).split(batch_size):
            batch = train[
                idx
            ]  # a fresh tensor each step: torch's transform cache is keyed by identity
            value = self._step(batch, epoch)
            self.history.steps += 1
            total += value * len(batch) / self.objective.normalizer(batch)
            count += len(batch)
            bar.update()
            if deadline is not None and time.perf_counter() > deadline:
                return float(total) / max(count, 1), True
        return float(total) / max(count, 1), False

    def _step(self, batch: Tensor, epoch: int) -> Tensor:
        self.optim.zero_grad(set_to_none=True)
        try:
            value = self.objective.step_loss(batch)
        except ValueError as error:
            self._invalid_values(batch, epoch, error)
            raise
        grad_norm = (
            torch.nn.utils.clip_grad_norm_(self.params, self.clip_norm, foreach=self.foreach)
            if self.clip_norm is not None
            else torch.zeros(())
        )
        if not (torch.isfinite(value) and torch.isfinite(grad_norm)):
            _restore(self.named, self.last_good)
            what = "loss" if not torch.isfinite(value) else "gradient norm"
            raise NonFiniteLossError(
                f"the {what} became {float(value if what == 'loss' else grad_norm)} at "
                f"epoch {epoch}, step {self.history.steps + 1}; parameters restored to "
                f"{self._last_good_label(epoch)}. Try a smaller lr (now {self.lr}) or "
                f"clip_norm (now {self.clip_norm})."
            )
        self.optim.step()
        return value

    @staticmethod
    def _last_good_label(epoch: int) -> str:
        return f"the end of epoch {epoch - 1}" if epoch > 1 else "the initial values"

    def _invalid_values(self, batch: Tensor, epoch: int, error: ValueError) -> None:
        """A ValueError inside a step: the data's fault, or the parameters'?

        The batch is scored again with the parameters of the last finished epoch. If
        they score it, the training steps since then produced the invalid values (a
        ``NaN`` reaching a distribution that Pyro's validation checks): that is
        divergence. Otherwise the error is the data's and is raised as it is."""
        current = _snapshot(self.named)
        _restore(self.named, self.last_good)
        try:
            with torch.no_grad():
                self.objective.loss.loss(
                    self.objective.step_model,
                    self.objective.step_guide,
                    batch,
                    **self.objective.kwargs,
                )
        except ValueError:
            _restore(self.named, current)
            return
        when = self._last_good_label(epoch)
        reason = " ".join(str(error).split())[:300]
        raise DivergenceError(
            f"training diverged at epoch {epoch}, step {self.history.steps + 1}: the pair "
            f"produced invalid values from a batch that the parameters of {when} score "
            f"(Pyro's validation: {reason}); parameters restored to {when}. Try a smaller lr "
            f"(now {self.lr}) or clip_norm (now {self.clip_norm})."
        ) from error

    # -- end of an epoch ----------------------------------------------------------------

    def end_epoch(
        self,
        train_loss: float,
        valid_loss: float,
        seconds: float,
        validated: bool,
    ) -> None:
        """Record the epoch, keep the best parameters, and stop a diverging run."""
        history = self.history
        epoch = history.epoch[-1] + 1 if history.epoch else 1
        history.epoch.append(epoch)
        history.train_loss.append(train_loss)
        history.validation_loss.append(valid_loss)
        history.seconds.append(seconds)
        self.last_good = _snapshot(self.named)
        if not validated or valid_loss < self.best_loss:
            self.best_loss, history.best_epoch = valid_loss, epoch
            self.best = self.last_good
        # diverged: the training loss (and the validation loss, if any) far above its best
        train_far = self.train_guard.far_above(train_loss)
        diverged = train_far and (not validated or self.valid_guard.far_above(valid_loss))
        if diverged:
            _restore(self.named, self.lowest)
            guard, which, loss = (
                (self.valid_guard, "validation", valid_loss)
                if validated
                else (self.train_guard, "training", train_loss)
            )
            raise DivergenceError(
                f"training diverged at epoch {epoch}: the {which} loss {loss:.6g} is more than "
                f"{guard.margin:.6g} nats per data point (divergence_margin per dimension) "
                f"above its best, {guard.lowest:.6g}, and above that of the initial "
                f"parameters, {guard.initial:.6g}"
                + (", and so is the training loss" if validated else "")
                + f"; parameters restored to {self.lowest_label}. Try a smaller lr (now "
                f"{self.lr}) or clip_norm (now {self.clip_norm})."
            )
        lowest_train = self.train_guard.update(train_loss)
        lowest_valid = validated and self.valid_guard.update(valid_loss)
        if lowest_valid or (not validated and lowest_train):
            self.lowest, self.lowest_label = self.last_good, f"epoch {epoch}"

    def save(self, checkpoint: str | Path | None) -> None:
        if checkpoint is not None:
            save_checkpoint(
                checkpoint,
                params=self.named,
                optimizer=self.optim,
                history=self.history,
                best_params=self.best,
            )


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
    divergence_margin: float | None = 1.0,
    on_epoch_end: Callable[[History], None] | None = None,
) -> History:
    r"""Train a Pyro model/guide pair by minibatch SVI.

    Every epoch visits the training data once in a random order, in minibatches
    passed as ``model(batch)`` and ``guide(batch)``; the loss is minimised with one
    torch optimizer over every parameter the pair registers (``pyro.param``,
    ``pyro.module``, ``PyroModule``), collected once before the first step. After
    each epoch the loss of the validation split is computed; the parameters of the
    best validation epoch are kept, and training stops after ``patience`` epochs
    without improvement.

    A run that diverges stops with :class:`DivergenceError`, the best parameters
    restored: when an epoch's training loss exceeds the lowest one so far by more
    than ``divergence_margin`` nats per dimension of a data point and exceeds the
    loss of the initial parameters, and so does its validation loss (if there is a
    validation split). A loss that grows without bound crosses both. One nat per
    dimension is wide (on 17-level digits, a third of the gap between uniform coding
    and a perfect model); overfitting, where the validation loss rises while the
    training loss falls, is early stopping's job, not divergence. A step whose model
    produces values outside a distribution's support (Pyro's validation: a NaN inside
    the flow) from data that the last epoch's parameters score is divergence too.

    A model whose signature has a ``data_size`` keyword receives the number of
    training points (and so does its guide, if it takes that keyword too), so that
    its data plate (``pyro.plate("data", size=data_size, subsample=...)``) scales
    the minibatch ELBO to the whole data set.

    Arguments:
        model: A Pyro model taking a minibatch.
        guide: Its guide (an empty function for a flow trained by maximum likelihood).
        data: A tensor of data points (first dimension), or a
            :class:`~pyro_dgm.datasets.Dataset` whose ``train`` and ``validation``
            splits are used.
        validation: A validation tensor, a fraction of ``data`` to hold out (for a
            tensor; drawn with ``seed``, the same split on every call without one), or
            ``None`` for no validation and no early stopping.
        epochs: The maximum number of epochs.
        batch_size: Minibatch size.
        loss: Any Pyro ELBO; ``Trace_ELBO()`` by default.
        lr: Learning rate.
        optimizer: A torch optimizer class (or factory) ``optimizer(params, lr=lr)``;
            torch's own classes are built with their multi-tensor (``foreach``) kernels.
        clip_norm: Gradient norm clipping, or ``None``.
        patience: Epochs without validation improvement before stopping, or ``None``.
        max_seconds: A wall-clock budget for training, checked after every step.
        checkpoint: A file: resumed from when it exists (parameters, optimizer
            state and history; the learning rate is this call's ``lr``), written at the
            end of every epoch.
        seed: Seeds torch and Pyro before training, and the held-out fraction, if given.
        progress: Show a tqdm progress bar with the running loss.
        validate: With Pyro's validation on (``pyro.enable_validation``, Pyro's
            default), ``"first_epoch"`` keeps it on for the first epoch of this call,
            which meets every training batch and the validation split once, and turns it
            off afterwards (the same shapes and supports are not checked again at every
            step); ``True`` keeps Pyro's setting for every epoch; ``False`` turns it off.
            Pyro's setting is restored when ``fit`` returns.
        divergence_margin: Nats per dimension of a data point by which an epoch's
            losses may exceed the lowest so far, or ``None`` for no check.
        on_epoch_end: Called with the history after every epoch, once that epoch's
            checkpoint (if any) is written, and once more at the end, when ``fit``
            has restored the best parameters and written the final checkpoint.

    Returns:
        The :class:`History` of the run (continued, when resumed).

    Raises:
        ValueError: For data that is empty, not finite (the rows are named), or of
            the wrong type, and for bad arguments.
        NonFiniteLossError: When the loss or a gradient becomes non-finite; the
            parameters of the last good epoch are restored first.
        DivergenceError: When training diverges; the best parameters are restored first.
    """
    if epochs < 0 or batch_size < 1:
        raise ValueError(f"epochs must be >= 0 and batch_size >= 1, got {epochs}, {batch_size}")
    if validate not in ("first_epoch", True, False):
        raise ValueError(f"validate must be 'first_epoch', True or False, got {validate!r}")
    if divergence_margin is not None:
        check_number(divergence_margin, "divergence_margin", positive=True)
    if seed is not None:
        pyro.set_rng_seed(seed)

    # the data, the objective and its parameters
    train, valid = training_splits(data, validation, seed)
    loss = loss or Trace_ELBO()
    objective = Objective(model, guide, loss, len(train))
    named = objective.params(train[:batch_size])
    if not named:
        raise ValueError(
            "the model and guide register no parameters: use pyro.module, pyro.param or a "
            "PyroModule so that fit has something to train"
        )
    optim = build_optimizer(optimizer, list(named.values()), lr)
    run = _Run(objective, named, optim, clip_norm, lr, divergence_margin, train[0].numel())

    # resume, or hold the first epoch to the initial parameters
    run.resume(checkpoint)
    history = run.history
    history.objective = _describe_objective(model, loss)
    eval_batch = max(batch_size, 1024)

    first_epoch = history.epoch[-1] + 1 if history.epoch else 1
    elapsed = history.seconds[-1] if history.seconds else 0.0
    bar = tqdm(
        total=epochs * math.ceil(len(train) / batch_size),
        disable=not progress,
        unit="step",
        leave=False,
    )
    history.stop_reason = ""  # running; an interrupted run's checkpoints say so
    with _pyro_validation() as set_validation, bar:
        set_validation(validate is not False)
        run.reference(train, valid, eval_batch)
        for epoch in range(first_epoch, first_epoch + epochs):
            set_validation(
                validate is True or (validate == "first_epoch" and epoch == first_epoch)
            )
            start = time.perf_counter()
            deadline = None if max_seconds is None else start + max_seconds - elapsed
            train_loss, out_of_time = run.train_epoch(train, batch_size, bar, deadline)
            valid_loss = objective.evaluate(valid, eval_batch) if valid is not None else math.nan
            elapsed += time.perf_counter() - start
            run.end_epoch(train_loss, valid_loss, elapsed, validated=valid is not None)
            bar.set_postfix(epoch=epoch, train=f"{train_loss:.4f}", valid=f"{valid_loss:.4f}")
            stale = epoch - history.best_epoch
            if patience is not None and valid is not None and stale >= patience:
                history.stopped_early, history.stop_reason = True, "early_stopping"
                break
            if out_of_time:
                history.stop_reason = "max_seconds"
                break
            run.save(checkpoint)
            if on_epoch_end is not None:
                on_epoch_end(history)
        else:
            history.stop_reason = "epochs"

    if valid is not None and history.best_epoch:
        _restore(named, run.best)
    run.save(checkpoint)
    if on_epoch_end is not None:
        on_epoch_end(history)
    return history
