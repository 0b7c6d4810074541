r"""Minibatch stochastic variational inference with validation, early stopping, a
guard against divergence, any device, and data-parallel training on torch.distributed."""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyro
import torch
from pyro.infer import ELBO, Trace_ELBO
from pyro.infer.util import is_validation_enabled
from torch import nn
from tqdm import tqdm  # plain tqdm: tqdm.auto warns in notebooks without ipywidgets

from ..utils.checks import check_number
from .data import Batch, Data, LoaderData, TensorData, training_data
from .distributed import ProcessGroup, process_group
from .errors import DistributedError, DivergenceError, NonFiniteLossError
from .history import History
from .objective import Objective, build_optimizer, evaluate_loss
from .run import TrainingRun

__all__ = [
    "DistributedError",
    "DivergenceError",
    "History",
    "NonFiniteLossError",
    "evaluate_loss",
    "fit",
]


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


def _owners(*fns: Callable) -> list[nn.Module]:
    """The modules whose methods ``fns`` are (a pair's ``model`` and ``guide``), once each."""
    found: list[nn.Module] = []
    for fn in fns:
        owner = getattr(fn, "__self__", None)
        if isinstance(owner, nn.Module) and all(owner is not m for m in found):
            found.append(owner)
    return found


def _device(device: torch.device | str | None, owners: list[nn.Module]) -> torch.device | None:
    """The device to train on: the one asked for (``"cuda"`` meaning this process's
    GPU under torchrun), else that of the pair's parameters, else ``None`` (leave the data
    where it is)."""
    if device is not None:
        device = torch.device(device)
        if device.type == "cuda" and device.index is None and torch.cuda.is_available():
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        return device
    for owner in owners:
        for tensor in itertools.chain(owner.parameters(), owner.buffers()):
            return tensor.device
    return None


def _distributed_loader(data: LoaderData, group: ProcessGroup) -> LoaderData:
    """A DataLoader re-built on a ``DistributedSampler``, so that each process takes its
    share of every epoch and all take the same number of steps."""
    from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

    loader = data.loader
    if not isinstance(loader, DataLoader):
        raise ValueError(
            f"{data.name}: under torch.distributed, expected tensors or a "
            f"torch.utils.data.DataLoader (re-built with a DistributedSampler), got "
            f"{type(loader).__name__}"
        )
    if isinstance(loader.sampler, DistributedSampler):
        return data
    sampler = DistributedSampler(
        loader.dataset,
        num_replicas=group.world,
        rank=group.rank,
        shuffle=isinstance(loader.sampler, RandomSampler),
    )
    rebuilt = DataLoader(
        loader.dataset,
        batch_size=loader.batch_size,
        sampler=sampler,
        num_workers=loader.num_workers,
        collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory,
        drop_last=loader.drop_last,
    )
    return LoaderData(rebuilt, data.name)


def _epoch_steps(
    train: Data,
    batch_size: int,
    epoch_seed: int,
    group: ProcessGroup,
    device: torch.device | None,
) -> Iterator[tuple[Batch, int]]:
    """This process's share of each global batch of one epoch, and that batch's size.

    In-memory data are shuffled with a generator seeded by ``epoch_seed`` (the same in
    every process), so that together the processes see the batches one process would."""
    if isinstance(train, TensorData):
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(epoch_seed))
        for chunk in order.split(batch_size):
            # a fresh tensor each step: torch's transform cache is keyed by identity
            yield train.batch_of(chunk[group.rank :: group.world]), len(chunk)
        return
    sampler = getattr(train.loader, "sampler", None)
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch_seed)
    for batch in train.batches():
        yield batch.to(device), len(batch) * group.world


def fit(
    model: Callable,
    guide: Callable,
    data: Any,
    *,
    validation: Any = 0.1,
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
    weight_decay: float = 0.0,
    ema: float | None = None,
    device: torch.device | str | None = None,
    on_epoch_end: Callable[[History], None] | None = None,
) -> History:
    r"""Train a Pyro model/guide pair by minibatch SVI.

    Every epoch visits the training data once in a random order, in minibatches
    passed as ``model(x)`` and ``guide(x)`` (``model(x, context)`` for a batch
    ``(x, context)``, ``model(**batch)`` for a dict); the loss is minimised with one
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

    *Devices.* With ``device`` the pair's modules (the modules whose methods ``model``
    and ``guide`` are) and in-memory data move there once; batches of a DataLoader
    move as they come. Without it, batches go where the pair's parameters are.

    *Several processes.* Launched by ``torchrun --nproc_per_node=N`` (one or several
    hosts), the same call trains data-parallel on ``torch.distributed`` (NCCL for
    CUDA devices, gloo otherwise; :mod:`pyro_dgm.infer.distributed`): every process
    takes its share of each global batch of ``batch_size`` points (a DataLoader is
    re-built on a ``DistributedSampler``), the gradients are summed in one bucketed
    ``all_reduce`` per step, so that the parameters stay identical in every process
    and equal, up to rounding, to one process's on the same global batches;
    validation, early stopping, divergence and the time budget decide the same in
    every process; only rank 0 shows progress, writes checkpoints and calls
    ``on_epoch_end``. A process that fails makes the others stop with
    :class:`DistributedError` instead of waiting.

    Arguments:
        model: A Pyro model taking a minibatch.
        guide: Its guide (an empty function for a flow trained by maximum likelihood).
        data: A tensor of data points (first dimension); a tuple ``(x, context, ...)``
            or dict of tensors of one length; a :class:`~pyro_dgm.datasets.Dataset`
            (its ``train`` and ``validation`` splits, with their contexts if it has
            them); or a ``torch.utils.data.DataLoader`` (or another re-iterable) of
            such batches.
        validation: Validation data in any of those forms, a fraction of in-memory
            ``data`` to hold out (drawn with ``seed``; the same split on every call
            without one), or ``None`` for no validation and no early stopping.
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
        weight_decay: Passed to the optimizer (``torch.optim.AdamW`` decouples it from
            the gradient, Loshchilov & Hutter, 2019; Adam adds it to the gradient).
        ema: The decay :math:`d` of an exponential moving average of the parameters
            (Polyak averaging, as the image-flow literature evaluates), e.g. ``0.999``:
            :math:`\bar\theta \leftarrow d\,\bar\theta + (1 - d)\,\theta` after every step
            (:math:`d` warmed up as :math:`\min(d, (1+t)/(10+t))`). Validation, the best
            epoch's parameters and those ``fit`` leaves in place are the averaged ones;
            ``None``: no averaging. The pair's modules are evaluated in ``eval()`` mode
            either way (dropout off).
        device: Where to train, e.g. ``"cuda"`` (this process's GPU under torchrun)
            or ``"cpu"``; ``None``: where the pair's parameters are.
        on_epoch_end: Called (by rank 0) with the history after every epoch, once that
            epoch's checkpoint (if any) is written, and once more at the end, when
            ``fit`` has restored the best parameters and written the final checkpoint.

    Returns:
        The :class:`History` of the run (continued, when resumed).

    Raises:
        ValueError: For data that is empty, not finite (the rows are named), or of
            the wrong type, and for bad arguments.
        NonFiniteLossError: When the loss or a gradient becomes non-finite; the
            parameters of the last good epoch are restored first.
        DivergenceError: When training diverges; the best parameters are restored first.
        DistributedError: When another process of the group failed.

    Example:
        >>> from pyro_dgm.flows import MAF
        >>> from pyro_dgm.models import FlowModel
        >>> pair = FlowModel(MAF(2, num_layers=2), name="fit_example")
        >>> history = fit(pair.model, pair.guide, torch.randn(200, 2), epochs=3, progress=False,
        ...               seed=0)
        >>> history.epoch, history.stop_reason, history.best_epoch in (1, 2, 3)
        ([1, 2, 3], 'epochs', True)
    """
    if epochs < 0 or batch_size < 1:
        raise ValueError(f"epochs must be >= 0 and batch_size >= 1, got {epochs}, {batch_size}")
    if validate not in ("first_epoch", True, False):
        raise ValueError(f"validate must be 'first_epoch', True or False, got {validate!r}")
    if divergence_margin is not None:
        check_number(divergence_margin, "divergence_margin", positive=True)
    check_number(weight_decay, "weight_decay", minimum=0.0)
    if ema is not None:
        check_number(ema, "ema", minimum=0.0, maximum=1.0)
        if ema == 1.0:
            raise ValueError(
                "ema: expected a decay in [0, 1), got 1.0 (the average would never move)"
            )
    owners = _owners(model, guide)
    device = _device(device, owners)
    group = process_group(device)
    if seed is not None:
        pyro.set_rng_seed(seed)

    # the data: checked, split, on the device, sharded per process
    train, valid = training_data(data, validation, seed)
    if device is not None:
        for owner in owners:
            owner.to(device)
        train = train.to(device) if isinstance(train, TensorData) else train
        valid = valid.to(device) if isinstance(valid, TensorData) else valid
    if isinstance(train, LoaderData) and group.active:
        train = _distributed_loader(train, group)
    first = train.head(batch_size).to(device)
    data_size = len(train) if isinstance(train, TensorData) else int(group.sum([len(train)])[0])

    # the objective, its parameters (the same in every process) and the optimizer
    loss = loss or Trace_ELBO()
    objective = Objective(model, guide, loss, data_size)
    named = objective.params(first)
    if not named:
        raise ValueError(
            "the model and guide register no parameters: use pyro.module, pyro.param or a "
            "PyroModule so that fit has something to train"
        )
    group.broadcast([*named.values(), *(b for m in owners for b in m.buffers())])
    optim = build_optimizer(optimizer, list(named.values()), lr, weight_decay)
    run = TrainingRun(
        objective,
        named,
        optim,
        group,
        clip_norm,
        lr,
        divergence_margin,
        first.x[0].numel(),
        ema=ema,
        modules=tuple(owners),
    )

    # resume, or hold the first epoch to the initial parameters
    run.resume(checkpoint)
    history = run.history
    history.objective = _describe_objective(model, loss)
    eval_batch = max(batch_size, 1024)
    base_seed = group.broadcast_int(
        seed if seed is not None else int(torch.randint(2**31 - 1, ()).item())
    )
    steps = train.num_batches(batch_size)
    bar = tqdm(
        total=None if steps is None else epochs * steps,
        disable=not progress or not group.is_main,
        unit="step",
        leave=False,
    )
    elapsed = history.seconds[-1] if history.seconds else 0.0
    history.stop_reason = ""  # running; an interrupted run's checkpoints say so
    with _pyro_validation() as set_validation, bar:
        set_validation(validate is not False)
        run.reference(train, valid, eval_batch)
        first_epoch = run.epoch
        for epoch in range(first_epoch, first_epoch + epochs):
            set_validation(
                validate is True or (validate == "first_epoch" and epoch == first_epoch)
            )
            start = time.perf_counter()
            deadline = None if max_seconds is None else start + max_seconds - elapsed
            epoch_steps = _epoch_steps(train, batch_size, base_seed + epoch, group, device)
            train_loss, out_of_time = run.train_epoch(epoch_steps, bar, deadline)
            valid_loss = run.validation_loss(valid, eval_batch) if valid is not None else math.nan
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
            if on_epoch_end is not None and group.is_main:
                on_epoch_end(history)
        else:
            history.stop_reason = "epochs"

    if history.best_epoch and (valid is not None or ema is not None):
        run.restore_best()  # the best epoch's, or without validation the averaged ones
    run.save(checkpoint)
    if on_epoch_end is not None and group.is_main:
        on_epoch_end(history)
    return history
