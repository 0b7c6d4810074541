r"""The steps of one :func:`~pyro_dgm.infer.fit` call: resume, train an epoch, end it.

:class:`TrainingRun` holds what the steps share: the parameters, the optimizer, the
history, the snapshots it may restore, and the process group it trains in.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor, nn
from tqdm import tqdm  # plain tqdm: tqdm.auto warns in notebooks without ipywidgets

from ..utils.modes import evaluation_mode
from .checkpoint import load_checkpoint, save_checkpoint
from .data import Batch, Data, TensorData
from .distributed import ProcessGroup
from .errors import DivergenceError, NonFiniteLossError
from .history import History
from .objective import Objective, multi_tensor

__all__ = ["LossGuard", "TrainingRun"]


def _snapshot(params: dict[str, Tensor]) -> dict[str, Tensor]:
    return {name: p.detach().clone() for name, p in params.items()}


def _restore(params: dict[str, Tensor], values: dict[str, Tensor]) -> None:
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(values[name].to(p.device))


class LossGuard:
    """One loss series, held to its lowest value and to the initial parameters' value.

    Example:
        >>> guard = LossGuard(margin=2.0)
        >>> guard.start(initial=5.0, earlier=[])
        >>> guard.update(3.0), guard.far_above(4.0), guard.far_above(6.0)
        (True, False, True)
    """

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


class TrainingRun:
    """The state of one :func:`~pyro_dgm.infer.fit` call.

    Arguments:
        objective: The pair's loss.
        named: The parameters it trains, by name.
        optim: The optimizer over them.
        group: The processes training together (a group of one without ``torch.distributed``).
        clip_norm: Gradient norm clipping, or ``None``.
        lr: The learning rate (named in error messages).
        divergence_margin: Nats per dimension, or ``None``.
        num_dims: Dimensions of one data point.
        ema: The decay of an exponential moving average of the parameters (Polyak
            averaging), or ``None``: with it, validation, the best parameters and the
            parameters ``fit`` returns are the averaged ones.
        modules: The pair's modules, put in ``eval()`` mode while it is evaluated.

    Example:
        >>> from pyro.infer import Trace_ELBO
        >>> from pyro_dgm.flows import MAF
        >>> from pyro_dgm.infer.distributed import ProcessGroup
        >>> from pyro_dgm.infer.objective import Objective, build_optimizer
        >>> from pyro_dgm.models import FlowModel
        >>> pair = FlowModel(MAF(2, num_layers=1), name="run_example")
        >>> objective = Objective(pair.model, pair.guide, Trace_ELBO(), data_size=8)
        >>> named = objective.params(torch.randn(8, 2))
        >>> optim = build_optimizer(torch.optim.Adam, list(named.values()), lr=1e-3)
        >>> run = TrainingRun(objective, named, optim, ProcessGroup(), clip_norm=10.0, lr=1e-3,
        ...                   divergence_margin=1.0, num_dims=2)
        >>> run.epoch, run.history.epoch
        (1, [])
    """

    def __init__(
        self,
        objective: Objective,
        named: dict[str, Tensor],
        optim: torch.optim.Optimizer,
        group: ProcessGroup,
        clip_norm: float | None,
        lr: float,
        divergence_margin: float | None,
        num_dims: int,
        ema: float | None = None,
        modules: tuple[nn.Module, ...] = (),
    ) -> None:
        self.objective, self.named, self.optim, self.group = objective, named, optim, group
        self.ema, self.modules = ema, modules
        self.averaged = _snapshot(named) if ema is not None else None
        self.ema_updates = 0
        self.params = list(named.values())
        self.clip_norm, self.lr = clip_norm, lr
        self.foreach = multi_tensor(self.params)
        margin = None if divergence_margin is None else divergence_margin * num_dims
        self.train_guard, self.valid_guard = LossGuard(margin), LossGuard(margin)
        self.history = History()
        self.best = _snapshot(named)  # kept at the end (lowest validation loss)
        self.best_loss = math.inf
        self.lowest = self.best  # the lowest monitored loss, restored on divergence
        self.lowest_label = "the initial values"
        self.last_good = self.best  # the end of the last finished epoch

    @property
    def epoch(self) -> int:
        """The number of the epoch now running (or about to)."""
        return self.history.epoch[-1] + 1 if self.history.epoch else 1

    # -- resume -------------------------------------------------------------------------

    def resume(self, checkpoint: str | Path | None) -> None:
        """Continue from ``checkpoint`` if it exists: parameters, optimizer, history, best.
        The optimizer's moments resume; its learning rate is this call's."""
        if checkpoint is None or not Path(checkpoint).exists():
            return
        saved = load_checkpoint(checkpoint, params=self.named, optimizer=self.optim)
        for group in self.optim.param_groups:
            group["lr"] = self.lr
        if self.averaged is not None:
            start = saved.averaged_params if saved.averaged_params is not None else self.named
            self.averaged = _snapshot(start)
            self.ema_updates = saved.history.steps if saved.history is not None else 0
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

    # -- losses without gradients, summed over the processes ----------------------------

    @contextlib.contextmanager
    def evaluating(self) -> Iterator[None]:
        """The pair as it is evaluated: its modules in ``eval()`` mode (dropout off), and
        with ``ema``, the averaged parameters in place of the trained ones."""
        live = _snapshot(self.named) if self.averaged is not None else None
        with evaluation_mode(*self.modules):
            try:
                if self.averaged is not None:
                    _restore(self.named, self.averaged)
                yield
            finally:
                if live is not None:
                    _restore(self.named, live)

    def kept(self) -> dict[str, Tensor]:
        """The parameters an epoch would keep: the averaged ones with ``ema``."""
        return _snapshot(self.averaged if self.averaged is not None else self.named)

    def evaluate(self, batches: Iterator[Batch], where: str) -> float:
        """The loss per data point of ``batches`` (this process's share), over the group."""
        failed = 0.0
        try:
            with self.evaluating():
                total, count = self.objective.loss_sums(batches)
        except Exception:
            if self.group.active:
                self.group.sum([0.0, 0.0, 1.0])  # the others must not wait for this process
            raise
        total, count, failed = self.group.sum([total, float(count), failed])
        self.group.check(failed, where)
        return total / count

    def reference(self, train: Data, valid: Data | None, batch_size: int) -> None:
        """The losses of the initial parameters (before the first epoch ever), and the
        lowest of the whole history: what a diverging epoch exceeds."""
        history, group = self.history, self.group
        if not history.epoch:
            head = train.head(batch_size)
            share = head.map(lambda t: t[group.rank :: group.world]) if group.active else head
            history.initial_train_loss = self.evaluate(iter([share]), "the initial evaluation")
            if valid is not None:
                history.initial_validation_loss = self.validation_loss(valid, batch_size)
        self.train_guard.start(history.initial_train_loss, history.train_loss)
        if valid is not None:
            self.valid_guard.start(history.initial_validation_loss, history.validation_loss)

    def validation_loss(self, valid: Data, batch_size: int) -> float:
        """The validation loss, each process scoring its share (round robin over batches)."""
        group = self.group
        if isinstance(valid, TensorData):
            batches = valid.batches(batch_size, rank=group.rank, world=group.world)
        else:
            batches = (b for i, b in enumerate(valid.batches()) if i % group.world == group.rank)
        return self.evaluate(batches, "validation")

    # -- one epoch ----------------------------------------------------------------------

    def train_epoch(
        self, steps: Iterator[tuple[Batch, int]], bar: tqdm, deadline: float | None
    ) -> tuple[float, bool]:
        """One pass over the steps (this process's share of each global batch, and the
        global batch's size): the mean loss per point, and whether time ran out."""
        total, count = 0.0, 0
        for batch, global_size in steps:
            late = deadline is not None and time.perf_counter() > deadline
            loss_sum, points, out_of_time = self._step(batch, global_size, late)
            self.history.steps += 1
            total += loss_sum
            count += points
            bar.update()
            if out_of_time:
                return total / max(count, 1), True
        return total / max(count, 1), False

    def _step(self, batch: Batch, global_size: int, late: bool) -> tuple[float, int, bool]:
        """One optimizer step: the loss summed over the global batch, its points, and
        whether a process is past the time budget (checked before the step)."""
        objective, group = self.objective, self.group
        self.optim.zero_grad(set_to_none=True)
        error: Exception | None = None
        value = torch.zeros(())
        if len(batch):
            try:
                value = objective.step_loss(batch)
            except Exception as caught:  # noqa: BLE001 (raised below, once the others know)
                error = caught
        loss_sum = float(value) * len(batch) / objective.normalizer(batch) if len(batch) else 0.0
        if group.active:
            # this process's share of the global batch's gradient (see distributed.py)
            normalizer = objective.normalizer(batch) if len(batch) else 1
            global_normalizer = objective.per_point or global_size
            weight = (len(batch) / normalizer) / (global_size / global_normalizer)
            stats = [loss_sum, float(len(batch)), float(late), float(error is not None)]
            loss_sum, points, late_count, failed = group.step(self.params, weight, stats)
            self._raise(batch, error)
            group.check(failed, f"epoch {self.epoch}, step {self.history.steps + 1}")
            points, late = int(points), late_count > 0
        else:
            self._raise(batch, error)
            points = len(batch)
        grad_norm = (
            torch.nn.utils.clip_grad_norm_(self.params, self.clip_norm, foreach=self.foreach)
            if self.clip_norm is not None
            else torch.zeros(())
        )
        if not (math.isfinite(loss_sum) and torch.isfinite(grad_norm)):
            _restore(self.named, self.last_good)
            what = "loss" if not math.isfinite(loss_sum) else "gradient norm"
            raise NonFiniteLossError(
                f"the {what} became {loss_sum if what == 'loss' else float(grad_norm)} at "
                f"epoch {self.epoch}, step {self.history.steps + 1}; parameters restored to "
                f"{self._last_good_label()}. Try a smaller lr (now {self.lr}) or clip_norm "
                f"(now {self.clip_norm})."
            )
        self.optim.step()
        if self.averaged is not None:
            self._average()
        return loss_sum, points, late

    @torch.no_grad()
    def _average(self) -> None:
        """One step of the moving average, its decay warmed up as in TensorFlow's
        ``ExponentialMovingAverage``: :math:`\\min(d, (1 + t) / (10 + t))`."""
        self.ema_updates += 1
        t = self.ema_updates
        decay = min(self.ema, (1 + t) / (10 + t))
        for name, p in self.named.items():
            self.averaged[name].lerp_(p.detach(), 1.0 - decay)

    def _raise(self, batch: Batch, error: Exception | None) -> None:
        if error is None:
            return
        if isinstance(error, ValueError):
            self._invalid_values(batch, error)
        raise error

    def _last_good_label(self) -> str:
        epoch = self.epoch
        return f"the end of epoch {epoch - 1}" if epoch > 1 else "the initial values"

    def _invalid_values(self, batch: Batch, error: ValueError) -> None:
        """A ValueError inside a step: the data's fault, or the parameters'?

        The batch is scored again with the parameters of the last finished epoch. If
        they score it, the training steps since then produced the invalid values (a
        ``NaN`` reaching a distribution that Pyro's validation checks): that is
        divergence. Otherwise the error is the data's and is raised as it is."""
        current = _snapshot(self.named)
        _restore(self.named, self.last_good)
        try:
            self.objective.batch_loss(batch)
        except ValueError:
            _restore(self.named, current)
            return
        when = self._last_good_label()
        which = "the initial parameters" if self.epoch == 1 else f"the parameters of {when}"
        reason = " ".join(str(error).split())[:300]
        raise DivergenceError(
            f"training diverged at epoch {self.epoch}, step {self.history.steps + 1}: the "
            f"pair produced invalid values from a batch that {which} score (Pyro's "
            f"validation: {reason}); parameters restored to {when}. Try a smaller lr (now "
            f"{self.lr}) or clip_norm (now {self.clip_norm})."
        ) from error

    # -- end of an epoch ----------------------------------------------------------------

    def end_epoch(
        self, train_loss: float, valid_loss: float, seconds: float, validated: bool
    ) -> None:
        """Record the epoch, keep the best parameters, and stop a diverging run."""
        history = self.history
        epoch = self.epoch
        history.epoch.append(epoch)
        history.train_loss.append(train_loss)
        history.validation_loss.append(valid_loss)
        history.seconds.append(seconds)
        self.last_good = _snapshot(self.named)
        kept = self.kept() if self.averaged is not None else self.last_good
        if not validated or valid_loss < self.best_loss:
            self.best_loss, history.best_epoch = valid_loss, epoch
            self.best = kept
        # diverged: the training loss (and the validation loss, if any) far above its best
        train_far = self.train_guard.far_above(train_loss)
        if train_far and (not validated or self.valid_guard.far_above(valid_loss)):
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
            self.lowest, self.lowest_label = kept, f"epoch {epoch}"

    def restore_best(self) -> None:
        _restore(self.named, self.best)

    def save(self, checkpoint: str | Path | None) -> None:
        """Write the checkpoint (from the main process only)."""
        if checkpoint is not None and self.group.is_main:
            save_checkpoint(
                checkpoint,
                params=self.named,
                optimizer=self.optim,
                history=self.history,
                best_params=self.best,
                averaged_params=self.averaged,
            )
