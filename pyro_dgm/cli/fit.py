r"""``pyro-dgm fit``: the fit job, as named steps.

1. :func:`prepare`: seed, load the data, resolve the config, build the pair;
2. :class:`~pyro_dgm.cli.runs.Staging`: a hidden temporary folder beside the
   destination, holding ``config.json``;
3. :func:`train`: :func:`~pyro_dgm.infer.fit` with a checkpoint, and ``model.pt``
   rewritten after each epoch's checkpoint;
4. :func:`evaluate`: the test log-likelihood (exact, or the ELBO and the
   importance-weighted bound of a latent-variable pair);
5. :func:`report`: ``metrics.json`` and the figures;
6. publish: the temporary folder is renamed to the destination.

Ctrl-C during training publishes the run as it was at the end of its last complete
epoch (``pyro-dgm fit --resume DIR`` continues it, ``pyro-dgm evaluate DIR`` reads it);
before the first epoch ends it leaves nothing behind.

Under ``torchrun --nproc_per_node=N -m pyro_dgm.cli fit ...`` every process prepares the
same pair (same seed) and trains its share of each batch
(:func:`~pyro_dgm.infer.fit` on ``torch.distributed``); only rank 0 checks the
destination, writes the folder, evaluates, reports and publishes: the other ranks wait
for its go before training, never touch the folder, and return when training ends.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import platform
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyro
import torch

from .. import datasets, infer, models, plots
from .._version import __version__
from ..diagnostics import collapse_report
from ..infer.checkpoint import read_checkpoint
from ..infer.distributed import ProcessGroup, process_group
from ..utils.checks import check_int
from ..utils.modes import evaluation_mode
from ..utils.zuko_import import import_zuko
from .build import architecture, build_pair, load_data, resolve_config, run_name, split_args
from .config import RunConfig
from .devices import check_available, default_device, torch_device
from .errors import RunError
from .runs import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    METRICS_FILE,
    MODEL_FILE,
    OUTPUT_FILES,
    Staging,
    check_new_out,
    check_run_dir,
    free_default_out,
    load_run,
    save_figure,
    save_state,
    write_json,
)

__all__ = ["RunInterrupted", "fit_run", "prepare", "resume_run", "run_fit", "with_device"]

EXACT = "exact NLL (nats per point)"
NEGATIVE_ELBO = "negative ELBO (nats per point; an upper bound on the NLL)"


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a fit; ``out`` holds the run at the end of epoch ``epoch``
    (``out`` is ``None`` when no epoch had ended and nothing was written). A
    ``KeyboardInterrupt``, so that Ctrl-C still stops a script that calls the fit.

    Example:
        >>> error = RunInterrupted(Path("runs/x"), 3, 10)
        >>> isinstance(error, KeyboardInterrupt), str(error)[:53]
        (True, 'interrupted; runs/x holds the run at the end of epoch')
    """

    def __init__(self, out: Path | None, epoch: int, epochs: int) -> None:
        self.out, self.epoch, self.epochs = out, epoch, epochs
        if out is None:
            message = "interrupted before an epoch ended; nothing was written"
        else:
            message = (
                f"interrupted; {out} holds the run at the end of epoch {epoch} of {epochs}: "
                f"continue it with `pyro-dgm fit --resume {out}`, or look at it with "
                f"`pyro-dgm evaluate {out}`"
            )
        super().__init__(message)


class ReportFailed(RunError):
    """Training ended but the evaluation or report failed; the trained run is in ``out``."""


@dataclass
class Prepared:
    """A run ready to train: resolved config, data and pair."""

    config: RunConfig
    data: datasets.Dataset
    pair: Any


def _named(path: Path) -> Path:
    """``path``, absolute if it has no name of its own (``.``, ``..``): a run folder is
    renamed into place, so it needs one."""
    return path.resolve() if path.name in ("", "..") else path


def _set_threads(threads: int | None) -> None:
    if threads is not None:
        torch.set_num_threads(check_int(threads, "threads", 1))


def prepare(config: RunConfig) -> Prepared:
    """Seed Pyro and torch, load the data, resolve the config and build the pair.

    Example:
        >>> ready = prepare(RunConfig(data="moons", model="maf", num_layers=1, hidden=8, device="cpu"))
        >>> type(ready.pair).__name__, len(ready.data.train)
        ('FlowModel', 10000)
    """
    pyro.clear_param_store()
    pyro.set_rng_seed(config.seed)
    data = load_data(config)
    config = resolve_config(config, data)
    data, pair = build_pair(config, data)
    return Prepared(config, data, pair)


def train(
    prepared: Prepared,
    folder: Path | None,
    *,
    epochs: int,
    progress: bool,
    checkpoint: Path | None = None,
) -> infer.History:
    """Train for up to ``epochs`` more epochs on ``config.device``, resuming from
    ``folder/checkpoint.pt`` if it exists; after each epoch's checkpoint,
    ``folder/model.pt`` gets the pair's whole state (parameters and buffers).

    A process of a torchrun group other than rank 0 has no ``folder``: it resumes from
    ``checkpoint`` (the run's own, read only) if given, and writes nothing."""
    on_epoch_end = None
    if folder is not None:
        model_file, checkpoint = folder / MODEL_FILE, folder / CHECKPOINT_FILE

        def on_epoch_end(history: infer.History) -> None:
            save_state(prepared.pair, model_file)

    config = prepared.config
    return infer.fit(
        prepared.pair.model,
        prepared.pair.guide,
        prepared.data,
        epochs=epochs,
        batch_size=config.batch_size,
        lr=config.lr,
        patience=config.patience,
        weight_decay=config.weight_decay,
        ema=config.ema or None,  # 0: no averaging
        max_seconds=config.max_seconds,
        checkpoint=checkpoint,
        progress=progress,
        device=config.device,
        on_epoch_end=on_epoch_end,
    )


def _pair_device(pair: Any) -> torch.device:
    """Where the pair's parameters are (where fit left them)."""
    for tensor in itertools.chain(pair.parameters(), pair.buffers()):
        return tensor.device
    return torch.device("cpu")


def _on(device: torch.device, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    return tuple(a.to(device) for a in args)


def evaluate(prepared: Prepared) -> tuple[infer.LogLikelihood, dict[str, infer.LogLikelihood]]:
    """The test log-likelihood to report, and every bound computed (for a latent-variable
    pair the importance-weighted bound with ``num_samples`` draws and the ELBO of the same
    draws; else the exact value), with the pair in ``eval()`` mode (no dropout) and left in
    the mode it was in."""
    pair, data = prepared.pair, prepared.data
    points = _on(_pair_device(pair), split_args(data, "test"))  # (x,) or (x, context)
    with evaluation_mode(pair):
        pointwise = infer.importance_log_likelihood(
            pair.model, pair.guide, points, num_samples=prepared.config.num_samples or 1
        )
    test = pointwise.summary()
    if pointwise.bound == "exact":  # no latent variable: one draw was scored
        return test, {test.bound: test}
    elbo = pointwise.elbo()
    return test, {elbo.bound: elbo, test.bound: test}


def _versions() -> dict[str, str]:
    return {
        "pyro_dgm": __version__,
        "pyro": pyro.__version__,
        "torch": torch.__version__,
        "zuko": import_zuko().__version__,
        "python": platform.python_version(),
    }


def _entropy(name: str) -> float | None:
    name = datasets.ALIASES.get(name, name)
    return datasets.toy_entropy(name) if name in datasets.TOY_NAMES else None


def _training_objective(history: infer.History) -> str:
    """What the training loss was (fit's own word: a weighted ELBO during KL warm-up)."""
    return f"{history.objective}, nats per point averaged over the epoch's minibatches"


def _by_class(x: torch.Tensor, labels: torch.Tensor, k: int, n: int) -> torch.Tensor:
    """The first ``n`` points of each of ``k`` classes, ``(k, n, ...)``; a class with
    fewer points is filled up with zeros (a blank image)."""
    rows = torch.zeros(k, n, *x.shape[1:], dtype=torch.float32)
    for c in range(k):
        chosen = x[labels == c][:n]
        rows[c, : len(chosen)] = chosen.float()
    return rows


def _class_samples(pair: Any, k: int, n: int) -> torch.Tensor:
    """``n`` samples given each of the ``k`` one-hot contexts, ``(k, n, ...)``, on the CPU."""
    device = _pair_device(pair)
    context = torch.eye(k, device=device)
    if isinstance(pair, (models.VAE, models.AutoregressiveModel, models.FlowModel)):
        drawn = pair.sample(n, context)
    else:  # pragma: no cover (resolve_config refuses other conditional pairs)
        raise ValueError(f"a conditional {type(pair).__name__} cannot be sampled per class")
    return drawn.transpose(0, 1).float().cpu()


def _class_figures(prepared: Prepared, title: str) -> dict[str, Any]:
    """The samples of a conditional run: one row (panel) per class."""
    pair, data = prepared.pair, prepared.data
    k = data.context_shape[0]
    labels = data.test_labels
    if data.num_levels is not None and len(data.event_shape) == 3:
        samples = _class_samples(pair, k, 10)
        return {
            "samples.png": plots.class_image_samples_figure(
                _by_class(data.test, labels, k, 10),
                samples,
                num_levels=data.num_levels,
                labels=("test data, a row per class", "samples given each class"),
                title=title,
            )
        }
    if data.num_levels is not None and len(data.event_shape) == 2:
        return {
            "samples.png": plots.class_sequence_samples_figure(
                _by_class(data.test, labels, k, 2), _class_samples(pair, k, 2), title=title
            )
        }
    if tuple(data.event_shape) == (2,):
        n = -(-len(data.test) // k)
        samples = _class_samples(pair, k, n)
        return {
            "samples.png": plots.class_points_figure(
                data.test,
                labels,
                samples.reshape(-1, 2),
                torch.arange(k).repeat_interleave(n),
                title=title,
            )
        }
    return {}


def _figures(prepared: Prepared, history: infer.History, title: str) -> dict[str, Any]:
    pair, data = prepared.pair, prepared.data
    figures = {"training_curve.png": plots.training_curve_figure(history, title=title)}
    if prepared.config.conditional:
        with torch.no_grad(), evaluation_mode(pair):
            return figures | _class_figures(prepared, title)
    with torch.no_grad(), evaluation_mode(pair):
        if data.num_levels is not None and len(data.event_shape) == 3:
            if isinstance(pair, (models.VAE, models.AutoregressiveModel)):
                samples, label = pair.sample(36), "samples"
            else:  # a dequantized flow draws some pixels just outside [0, L): the nearest level
                samples, label = pair.sample(36, outside="nearest"), "samples (nearest level)"
            figures["samples.png"] = plots.image_samples_figure(
                data.test[:36],
                samples,
                num_levels=data.num_levels,
                labels=("test data", label),
                title=title,
            )
        if data.num_levels is not None and len(data.event_shape) == 2:  # sequences (C, T)
            figures["samples.png"] = plots.sequence_samples_figure(
                data.test[:3], pair.sample(3), title=title
            )
        if tuple(data.event_shape) == (2,):
            density = isinstance(pair, models.FlowModel)
            samples = pair.sample(len(data.test))
            device = _pair_device(pair)
            log_prob = (lambda g: pair.flow().log_prob(g.to(device)).cpu()) if density else None
            name = "density.png" if density else "samples.png"
            figures[name] = plots.density_samples_figure(
                data.test, samples, log_prob=log_prob, title=title
            )
    return figures


def report(
    prepared: Prepared,
    folder: Path,
    history: infer.History,
    test: infer.LogLikelihood,
    bounds: dict[str, infer.LogLikelihood],
    *,
    train_seconds: float,
    resumed_from_epoch: int | None,
    world_size: int = 1,
) -> dict[str, Any]:
    """Write the figures and then ``metrics.json`` (which marks the run complete) into
    ``folder``; return the metrics."""
    config, data, pair = prepared.config, prepared.data, prepared.pair
    discrete = data.num_levels is not None
    validation_is = EXACT if test.bound == "exact" else NEGATIVE_ELBO
    given = " of x given its label, log p(x | c)" if config.conditional else ""
    test_is = (
        EXACT
        if test.bound == "exact"
        else f"negative {test.bound} bound (nats per point; an upper bound on the NLL)"
    )
    metrics: dict[str, Any] = {
        "command": "fit",
        "data": config.data,
        "model": config.model,
        "conditional": config.conditional,
        "num_classes": data.context_shape[0] if config.conditional else None,
        "dequantization": config.dequantization,
        "vae": (
            {"prior": config.prior, "posterior": config.posterior, "likelihood": config.likelihood}
            if config.model == "vae"
            else None
        ),
        "config": config.to_dict(),
        "architecture": architecture(config, data),
        "num_parameters": sum(p.numel() for p in pair.parameters()),
        "num_train": len(data.train),
        "num_validation": len(data.validation),
        "num_test": len(data.test),
        "test_nll_nats": -test.nats,
        "test_nll_stderr": test.stderr,
        "bound": test.bound,
        "test_nll_is": test_is + given,
        "test_bits_per_dim": test.bits_per_dim if discrete else None,
        "bounds": {
            name: {"nll_nats": -b.nats, "stderr": b.stderr, "bits_per_dim": b.bits_per_dim}
            for name, b in bounds.items()
        },
        # H(x) bounds -log p(x), not -log p(x | c): no floor for a conditional run
        "data_entropy_nats": None if config.conditional else _entropy(config.data),
        "epochs_run": len(history.epoch),
        "best_epoch": history.best_epoch,
        "best_validation_loss": history.best_validation_loss,
        "validation_loss_is": validation_is + given,
        "training_loss_is": _training_objective(history),
        "stopped_early": history.stopped_early,
        # "early_stopping", "max_seconds" (the time budget ended the run) or "epochs"
        "stop_reason": history.stop_reason,
        "resumed_from_epoch": resumed_from_epoch,
        "train_seconds": train_seconds,
        "device": config.device,
        "world_size": world_size,
        "threads": torch.get_num_threads(),
        "seed": config.seed,
        "versions": _versions(),
    }
    if config.model == "vae":  # posterior collapse is never silent: recorded and warned
        test_points = _on(_pair_device(pair), split_args(data, "test"))
        metrics["active_units"], metrics["posterior_collapse"] = collapse_report(
            pair, *test_points
        )
    on = f"on {data.name}, given the label" if config.conditional else f"on {data.name}"
    title = f"{config.model} {on}: test NLL {-test.nats:.3f} nats ({test.bound})"
    if discrete:
        on = on.replace(data.name, config.data, 1)
        title = f"{config.model} {on}: {test.bits_per_dim:.3f} bits/dim ({test.bound})"
    figures = _figures(prepared, history, title)
    for name, fig in figures.items():
        save_figure(fig, folder / name)
    metrics["figures"] = list(figures)
    write_json(folder / METRICS_FILE, metrics)
    return metrics


def _last_epoch(checkpoint: Path) -> int:
    """The last epoch a checkpoint file holds (0 for none)."""
    if not checkpoint.exists():
        return 0
    history = read_checkpoint(checkpoint).history
    return history.epoch[-1] if history is not None and history.epoch else 0


def _run(
    prepared: Prepared,
    staging: Staging,
    *,
    epochs: int,
    done: int,
    progress: bool,
    world_size: int = 1,
) -> dict[str, Any]:
    """Train, evaluate, report and publish; on Ctrl-C publish the run as its last
    complete epoch left it (or nothing, if no epoch of this call ended)."""
    total = prepared.config.epochs
    start = time.perf_counter()
    try:
        history = train(prepared, staging.path, epochs=epochs, progress=progress)
    except KeyboardInterrupt:
        last = _last_epoch(staging.path / CHECKPOINT_FILE)
        if last <= done:  # no epoch of this call ended: the destination stays as it was
            staging.discard()
            raise RunInterrupted(None, done, total) from None
        if not (staging.path / MODEL_FILE).exists():  # buffers are fixed after the first batch
            save_state(prepared.pair, staging.path / MODEL_FILE)
        staging.publish()
        raise RunInterrupted(staging.out, last, total) from None
    except BaseException:
        staging.discard()
        raise
    seconds = time.perf_counter() - start
    try:
        test, bounds = evaluate(prepared)
        metrics = report(
            prepared,
            staging.path,
            history,
            test,
            bounds,
            train_seconds=seconds,
            resumed_from_epoch=done or None,
            world_size=world_size,
        )
    except KeyboardInterrupt:
        staging.publish()
        raise RunInterrupted(staging.out, len(history.epoch), total) from None
    except Exception as error:
        staging.publish()
        raise ReportFailed(
            f"training ended but the report failed ({type(error).__name__}: {error}); the "
            f"trained run is in {staging.out}: `pyro-dgm fit --resume {staging.out}` "
            "writes its report"
        ) from error
    staging.publish()
    return metrics | {"out": str(staging.out)}


def with_device(config: RunConfig, device: str | None = None) -> RunConfig:
    """The config with its device: ``device`` if given, else the config's, else
    ``"cuda"`` when CUDA is available and ``"cpu"`` otherwise; refused when this machine
    lacks it.

    Example:
        >>> with_device(RunConfig(), "cpu").device
        'cpu'
    """
    config = config.replace(device=device or config.device or default_device())
    check_available(config.device)
    return config


def _group(config: RunConfig) -> ProcessGroup:
    """This process's torchrun group (joined from the environment), or a group of one."""
    return process_group(torch_device(config.device))


def _rank0_prepares(group: ProcessGroup, prepare_folder: Any) -> Any:
    """Rank 0 prepares the run folder, then tells the others whether to train (so that
    they stop, rather than wait, when it fails)."""
    try:
        result = prepare_folder()
    except BaseException:
        group.broadcast_int(0)
        raise
    group.broadcast_int(1)
    return result


def _train_as_other_rank(
    prepared: Prepared, group: ProcessGroup, *, epochs: int, checkpoint: Path | None
) -> None:
    """A rank other than 0: wait for rank 0's go, train, write nothing."""
    if not group.broadcast_int(0):
        raise RunError(
            f"rank {group.rank} of {group.world}: rank 0 could not prepare the run folder "
            "(its error says why); this process stops without training"
        )
    train(prepared, None, epochs=epochs, progress=False, checkpoint=checkpoint)


def fit_run(
    config: RunConfig,
    out: str | Path | None = None,
    *,
    overwrite: bool = False,
    progress: bool = True,
    threads: int | None = None,
) -> dict[str, Any] | None:
    """Fit a new run and write its folder; return its metrics (with ``"out"``).

    Under torchrun only rank 0 writes the folder and returns the metrics; the other
    ranks train with it and return ``None``.

    Arguments:
        config: The run's settings (``config.device`` ``None``: CUDA if available).
        out: The run folder; by default ``runs/DATA-MODEL`` (numbered ``-2``, ``-3``,
            ... when taken).
        overwrite: Replace the run already in ``out`` (a folder of pyro-dgm's own
            files only).
        progress: Show a progress bar.
        threads: torch's threads.

    Raises:
        ValueError: For bad settings, a device this machine lacks, or an ``out`` that
            is a file or a non-empty folder (without ``overwrite``); nothing is written then.
        RunInterrupted: On Ctrl-C.

    Example:
        >>> import tempfile
        >>> out = Path(tempfile.mkdtemp()) / "moons-maf"
        >>> config = RunConfig(data="moons", model="maf", epochs=1, num_layers=1, hidden=8, device="cpu")
        >>> metrics = fit_run(config, out, progress=False)
        >>> metrics["epochs_run"], sorted(p.name for p in out.iterdir())
        (1, ['checkpoint.pt', 'config.json', 'density.png', 'metrics.json', 'model.pt', 'training_curve.png'])
    """
    _set_threads(threads)
    config = with_device(config)
    prepared = prepare(config)
    group = _group(prepared.config)
    epochs = prepared.config.epochs
    if not group.is_main:
        _train_as_other_rank(prepared, group, epochs=epochs, checkpoint=None)
        return None

    def prepare_folder() -> Staging:
        if out is None:
            target = free_default_out(Path("runs") / run_name(prepared.config, prepared.data))
        else:
            target = _named(Path(out))
            check_new_out(target, overwrite)
        staging = Staging.create(target)
        try:
            (staging.path / CONFIG_FILE).write_text(prepared.config.to_json())
        except BaseException:
            staging.discard()
            raise
        return staging

    staging = _rank0_prepares(group, prepare_folder)
    return _run(
        prepared, staging, epochs=epochs, done=0, progress=progress, world_size=group.world
    )


def resume_run(
    run_dir: str | Path,
    *,
    epochs: int | None = None,
    max_seconds: float | None = None,
    progress: bool = True,
    threads: int | None = None,
    device: str | None = None,
) -> dict[str, Any] | None:
    """Continue the run in ``run_dir`` with its own settings (``config.json``) up to its
    ``epochs`` (or a new total ``epochs``), then evaluate and report it; a run whose
    training ended but whose report is missing just gets its report. ``device``
    moves the run (e.g. from a GPU to ``"cpu"``); the config records it.

    Under torchrun (any number of processes, whatever the run was trained with) only
    rank 0 writes; the other ranks read the run, train with it and return ``None``.

    ``model.pt`` is loaded before the pair meets any data (ActNorm keeps its values);
    the VAE's KL warm-up continues from the steps taken; the minibatches are drawn
    from the seed plus the epochs done.

    Raises:
        ValueError: For a folder that is not a run, files torch cannot read, or a run
            that is complete (unless ``epochs`` is larger than the epochs it ran).
        RunInterrupted: On Ctrl-C.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> out = Path(tempfile.mkdtemp()) / "moons-maf"  # a one-epoch run of a small flow
        >>> config = RunConfig(data="moons", model="maf", epochs=1, num_layers=1, hidden=8, device="cpu")
        >>> _ = fit_run(config, out, progress=False)
        >>> resume_run(out, epochs=2, progress=False)["epochs_run"]  # one more epoch
        2
    """
    _set_threads(threads)
    run_dir = _named(Path(run_dir))
    check_run_dir(run_dir, "--resume")
    run = load_run(run_dir, "--resume", parameters=False)
    config = run.config
    changes = {"epochs": epochs, "max_seconds": max_seconds}
    config = config.replace(**{k: v for k, v in changes.items() if v is not None})
    config = with_device(config, device)
    history = run.checkpoint.history if run.checkpoint is not None else None
    done = len(history.epoch) if history is not None else 0
    out_of_time = (
        config.max_seconds is not None
        and history is not None
        and bool(history.seconds)
        and history.seconds[-1] >= config.max_seconds
    )
    finished = history is not None and (history.stopped_early or done >= config.epochs)
    finished = finished or out_of_time
    if finished and run.complete:
        if history.stopped_early:
            how = (
                f"stopped early: no validation improvement in {config.patience} epochs after "
                f"epoch {history.best_epoch}; there is nothing to resume"
            )
        elif out_of_time:
            how = f"its --max-seconds {config.max_seconds} are spent; pass a larger one"
        else:
            how = f"ran {done} of {config.epochs} epochs; pass --epochs N with N > {done}"
        raise ValueError(f"--resume: {run_dir} is complete ({how})")
    if history is not None and isinstance(run.pair, models.VAE):
        run.pair.num_steps = history.steps  # the KL warm-up continues where it stopped
    pyro.set_rng_seed(config.seed + done)
    prepared = Prepared(config, run.data, run.pair)
    remaining = 0 if finished else config.epochs - done
    group = _group(config)
    if not group.is_main:  # the run's own checkpoint, read only (rank 0 copies it)
        checkpoint = run_dir / CHECKPOINT_FILE
        checkpoint = checkpoint if checkpoint.exists() else None
        _train_as_other_rank(prepared, group, epochs=remaining, checkpoint=checkpoint)
        return None
    staging = _rank0_prepares(group, lambda: _copy_run(run_dir, config))
    return _run(
        prepared, staging, epochs=remaining, done=done, progress=progress, world_size=group.world
    )


def _copy_run(run_dir: Path, config: RunConfig) -> Staging:
    """A staging folder holding the run so far, less its reports, with ``config``."""
    staging = Staging.create(run_dir)
    try:
        for entry in run_dir.iterdir():
            if entry.name in OUTPUT_FILES or entry.name == CONFIG_FILE:
                continue  # reports of the run so far: stale once it trains on
            if entry.name.endswith(".tmp"):
                continue
            if entry.is_dir():
                shutil.copytree(entry, staging.path / entry.name)
            else:
                shutil.copy2(entry, staging.path / entry.name)
        (staging.path / CONFIG_FILE).write_text(config.to_json())
        if (staging.path / CHECKPOINT_FILE).exists():
            read_checkpoint(staging.path / CHECKPOINT_FILE)  # the copy is whole
    except BaseException:
        staging.discard()
        raise
    return staging


def run_fit(args: argparse.Namespace) -> dict[str, Any] | None:
    """Run ``pyro-dgm fit`` from its parsed command line and return the metrics it wrote
    (with ``"out"``; ``None`` on a torchrun rank other than 0). The namespace holds the
    :class:`RunConfig` settings that were given, and ``out``, ``overwrite``, ``resume``,
    ``quiet``, ``threads``.

    Example:
        >>> from pyro_dgm.cli import build_parser
        >>> args = build_parser().parse_args(["fit", "--resume", "/no/such/run"])
        >>> run_fit(args)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: ...
    """
    names = {field.name for field in dataclasses.fields(RunConfig)}
    given = {k: v for k, v in vars(args).items() if k in names}
    progress = not getattr(args, "quiet", False)
    threads = getattr(args, "threads", None)
    resume = getattr(args, "resume", None)
    if resume is not None:
        allowed = {"epochs", "max_seconds", "device"}
        extra = sorted(set(given) - allowed)
        if extra or getattr(args, "out", None) is not None or getattr(args, "overwrite", False):
            flags = [f"--{n.replace('_', '-')}" for n in extra]
            flags += ["--out"] * (getattr(args, "out", None) is not None)
            flags += ["--overwrite"] * bool(getattr(args, "overwrite", False))
            raise ValueError(
                f"--resume: the run continues with the settings in {Path(resume) / CONFIG_FILE}; "
                f"{', '.join(flags)} cannot be changed (only --epochs, --max-seconds and "
                "--device can)"
            )
        return resume_run(
            resume,
            epochs=given.get("epochs"),
            max_seconds=given.get("max_seconds"),
            progress=progress,
            threads=threads,
            device=given.get("device"),
        )
    return fit_run(
        RunConfig(**given),
        getattr(args, "out", None),
        overwrite=getattr(args, "overwrite", False),
        progress=progress,
        threads=threads,
    )
