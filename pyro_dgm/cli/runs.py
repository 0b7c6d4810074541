r"""Run folders on disk: what they hold, how they are written, how a run is read back.

A run folder written by ``pyro-dgm fit`` holds

- ``config.json``: the resolved :class:`~pyro_dgm.cli.config.RunConfig`, written first;
- ``checkpoint.pt``: Pyro's parameters, the optimizer, the history and the best
  parameters (:func:`~pyro_dgm.infer.save_checkpoint`), written after every epoch;
- ``model.pt``: the pair's ``state_dict`` (parameters and buffers: ActNorm's
  ``initialized`` flags, the 1x1 convolutions' permutations), written after every
  epoch right after the checkpoint;
- ``metrics.json`` and the figures, written once training and evaluation are done:
  ``metrics.json`` marks a complete run.

The checkpoint is the authority on the parameters; ``model.pt`` supplies the buffers,
which are fixed once the pair has seen its first batch, so a ``model.pt`` of the
previous epoch (a Ctrl-C between the two writes) still completes the checkpoint.
A run is written into a hidden temporary folder beside its destination and renamed
into place when it ends (completed or interrupted after an epoch): the destination
only ever holds a whole run.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyro
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO
from torch import Tensor

from .. import datasets
from ..infer.checkpoint import Checkpoint, load_checkpoint, read_checkpoint
from .build import build_pair, load_data, resolve_config, split_args
from .config import RunConfig, from_legacy_namespace

__all__ = [
    "CHECKPOINT_FILE",
    "CONFIG_FILE",
    "METRICS_FILE",
    "MODEL_FILE",
    "LoadedRun",
    "Staging",
    "check_new_out",
    "free_default_out",
    "load_run",
    "load_state",
    "read_config",
    "save_figure",
    "save_state",
    "write_json",
]

CONFIG_FILE = "config.json"
CHECKPOINT_FILE = "checkpoint.pt"
MODEL_FILE = "model.pt"
METRICS_FILE = "metrics.json"
DIAGNOSTICS_FILE = "diagnostics.json"
INFERENCE_DATA_FILE = "inference_data.nc"
FIT_FIGURES = ("training_curve.png", "density.png", "samples.png")
EVALUATE_FIGURES = ("pareto_k.png", "elbo_surgery.png", "latent_scatter.png")
#: What a run's reports are made of: stale once the run trains on, so a resume drops them.
OUTPUT_FILES = frozenset(
    {METRICS_FILE, DIAGNOSTICS_FILE, INFERENCE_DATA_FILE, *FIT_FIGURES, *EVALUATE_FIGURES}
)
#: Every name pyro-dgm writes into a run folder.
RUN_FILES = OUTPUT_FILES | {CONFIG_FILE, CHECKPOINT_FILE, MODEL_FILE}


# -- files, written atomically -------------------------------------------------------------


def _write_atomic(path: Path, write: Callable[[Path], None], suffix: str = ".tmp") -> None:
    """``write(tmp)`` to a temporary file beside ``path``, then rename it to ``path``."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}{suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: Path, value: Any) -> None:
    """``value`` as indented JSON at ``path``, atomically.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "metrics.json"
        >>> write_json(path, {"test_nll_nats": 1.25})
        >>> json.loads(path.read_text())
        {'test_nll_nats': 1.25}
    """
    text = json.dumps(value, indent=2, default=float) + "\n"
    _write_atomic(path, lambda tmp: tmp.write_text(text))


def save_figure(fig: Any, path: Path, dpi: int = 120) -> None:
    """A matplotlib figure as a PNG at ``path``, atomically.

    Example:
        >>> import tempfile
        >>> from matplotlib.figure import Figure
        >>> path = Path(tempfile.mkdtemp()) / "empty.png"
        >>> save_figure(Figure(), path)
        >>> path.read_bytes()[1:4]
        b'PNG'
    """
    _write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi))


def save_state(module: torch.nn.Module, path: Path) -> None:
    """``module.state_dict()`` at ``path`` (loadable with ``weights_only=True``), atomically.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "model.pt"
        >>> save_state(torch.nn.Linear(2, 3), path)
        >>> torch.load(path, weights_only=True)["weight"].shape
        torch.Size([3, 2])
    """
    _write_atomic(path, lambda tmp: torch.save(module.state_dict(), tmp))


def save_with(path: Path, write: Callable[[Path], None], suffix: str) -> None:
    """Any writer ``write(tmp)`` (e.g. ArviZ's ``to_netcdf``), atomically; ``suffix`` is
    the temporary file's extension, for writers that read it."""
    _write_atomic(path, write, suffix)


def load_state(path: Path) -> dict[str, Tensor]:
    """A ``state_dict`` saved by :func:`save_state`, read with ``weights_only=True``.

    Raises:
        ValueError: If torch cannot read the file (truncated, tampered) or it is not
            a ``state_dict``; the message names the file.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "model.pt"
        >>> save_state(torch.nn.Linear(2, 3), path)
        >>> sorted(load_state(path))
        ['bias', 'weight']
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # whatever torch raises for a file it cannot read
        reason = (str(error).strip().splitlines() or [""])[0]
        raise ValueError(
            f"{path} cannot be read with torch.load(weights_only=True) "
            f"({type(error).__name__}: {reason})"
        ) from error
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()
    ):
        raise ValueError(f"{path} is not a state_dict (names to tensors) of a model/guide pair")
    return state


# -- the destination of a run --------------------------------------------------------------


def _ours(entry: Path) -> bool:
    """Whether a folder entry is one pyro-dgm writes (or a temporary file of one)."""
    return entry.is_file() and (entry.name in RUN_FILES or entry.name.endswith(".tmp"))


def _check_parents(out: Path, flag: str) -> None:
    for parent in out.parents:
        if parent.exists() and not parent.is_dir():
            raise ValueError(f"{flag}: expected a folder path, but {parent} is a file")


def check_new_out(out: Path, overwrite: bool, flag: str = "--out") -> None:
    """Refuse a destination that is a file, or a folder holding anything (unless
    ``overwrite``, and then only a folder of pyro-dgm's own files).

    Example:
        >>> import tempfile
        >>> out = Path(tempfile.mkdtemp())
        >>> (out / "notes.txt").write_text("mine")
        4
        >>> check_new_out(out, overwrite=False)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: --out: ... is not empty (it holds notes.txt); ...
    """
    _check_parents(out, flag)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{flag}: expected a folder, got {out}, which is a file")
    if not out.is_dir():
        return
    entries = sorted(out.iterdir())
    if not entries:
        return
    if not overwrite:
        names = ", ".join(e.name for e in entries[:4]) + (", ..." if len(entries) > 4 else "")
        raise ValueError(
            f"{flag}: {out} is not empty (it holds {names}); choose another folder, "
            f"pass --overwrite to replace the run in it, or --resume {out} to continue it"
        )
    foreign = [e.name for e in entries if not _ours(e)]
    if foreign:
        raise ValueError(
            f"{flag}: {out} holds files that pyro-dgm did not write ({', '.join(foreign[:4])}); "
            "--overwrite replaces a run folder, not other files: choose another folder"
        )


def free_default_out(base: Path) -> Path:
    """``base`` if it is free (absent or empty), else the first free ``base-2``, ``base-3``...

    Example:
        >>> import tempfile
        >>> base = Path(tempfile.mkdtemp()) / "moons-spline"
        >>> free_default_out(base).name  # absent: free
        'moons-spline'
        >>> base.mkdir()
        >>> write_json(base / "metrics.json", {})  # taken
        >>> free_default_out(base).name
        'moons-spline-2'
    """
    candidate, number = base, 1
    while candidate.exists() and (not candidate.is_dir() or any(candidate.iterdir())):
        number += 1
        candidate = base.with_name(f"{base.name}-{number}")
    return candidate


@dataclass
class Staging:
    """The hidden temporary folder a run is written into, beside its destination ``out``.

    :meth:`publish` renames it to ``out`` (moving a previous ``out`` aside first and
    deleting it after); :meth:`discard` deletes it, and the parent folders it created.

    Example:
        >>> import tempfile
        >>> out = Path(tempfile.mkdtemp()) / "run"
        >>> staging = Staging.create(out)  # a hidden folder beside out
        >>> write_json(staging.path / "metrics.json", {"epochs_run": 1})
        >>> staging.publish()  # renamed into place
        >>> sorted(p.name for p in out.iterdir())
        ['metrics.json']
    """

    out: Path
    path: Path
    created: list[Path]

    @classmethod
    def create(cls, out: Path) -> Staging:
        missing = [p for p in (out.parent, *out.parent.parents) if not p.exists()]
        out.parent.mkdir(parents=True, exist_ok=True)
        path = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.partial")
        path.mkdir()  # mkdir, not mkdtemp: the run folder gets the usual permissions
        return cls(out=out, path=path, created=missing)

    def publish(self) -> None:
        old = None
        if self.out.exists():
            old = self.out.with_name(f".{self.out.name}.{uuid.uuid4().hex[:8]}.old")
            self.out.rename(old)
        self.path.rename(self.out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def discard(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        for folder in self.created:  # deepest first
            try:
                folder.rmdir()
            except OSError:
                break


# -- reading a run back --------------------------------------------------------------------


def check_run_dir(run_dir: Path, flag: str) -> None:
    """Refuse a path that is not a folder."""
    if not run_dir.is_dir():
        state = "is a file" if run_dir.exists() else "does not exist"
        raise ValueError(
            f"{flag}: expected a folder written by pyro-dgm fit ({CONFIG_FILE}, "
            f"{CHECKPOINT_FILE}, {MODEL_FILE}; {METRICS_FILE} once complete), got {run_dir}, "
            f"which {state}"
        )


def read_config(run_dir: Path) -> tuple[RunConfig, bool]:
    """The run's config, and whether it came from an older version's ``metrics.json``
    (whose settings must be resolved with ``drop_unused=True``).

    Raises:
        ValueError: For a folder without a config, or a partial, unknown or mistyped
            one; the message names the file.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from pyro_dgm.cli.config import RunConfig
        >>> from pyro_dgm.cli.fit import fit_run
        >>> out = Path(tempfile.mkdtemp()) / "moons-maf"  # a one-epoch run of a small flow
        >>> config = RunConfig(data="moons", model="maf", epochs=1, num_layers=1, hidden=8, device="cpu")
        >>> _ = fit_run(config, out, progress=False)
        >>> config, legacy = read_config(out)
        >>> config.model, legacy
        ('maf', False)
    """
    config_file, metrics_file = run_dir / CONFIG_FILE, run_dir / METRICS_FILE
    if config_file.is_file():
        return RunConfig.from_json(config_file.read_text(), source=str(config_file)), False
    if metrics_file.is_file():
        try:
            metrics = json.loads(metrics_file.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{metrics_file}: not valid JSON ({error})") from error
        if isinstance(metrics, dict) and isinstance(metrics.get("config"), dict):
            return from_legacy_namespace(metrics["config"], f"{metrics_file} (config)"), True
        raise ValueError(f"{metrics_file} has no 'config' (not written by pyro-dgm fit?)")
    raise ValueError(
        f"run_dir: {run_dir} has no {CONFIG_FILE} (expected a folder written by pyro-dgm fit)"
    )


@dataclass
class LoadedRun:
    """A run folder read back: its config (resolved), data, pair and checkpoint.

    Attributes:
        config: The resolved config.
        data: The data the pair models (binarized for a Bernoulli VAE).
        pair: The model/guide pair, with ``model.pt`` loaded (buffers and parameters).
        checkpoint: The checkpoint as read (``None`` before the first epoch ended).
        complete: Whether the run finished (``metrics.json`` exists).

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from pyro_dgm.cli.config import RunConfig
        >>> from pyro_dgm.cli.fit import fit_run
        >>> out = Path(tempfile.mkdtemp()) / "moons-maf"  # a one-epoch run of a small flow
        >>> config = RunConfig(data="moons", model="maf", epochs=1, num_layers=1, hidden=8, device="cpu")
        >>> _ = fit_run(config, out, progress=False)
        >>> run = load_run(out)
        >>> run.complete, type(run.pair).__name__, run.checkpoint.history.epoch
        (True, 'FlowModel', [1])
    """

    config: RunConfig
    data: datasets.Dataset
    pair: Any
    checkpoint: Checkpoint | None
    complete: bool


def load_run(run_dir: Path, flag: str = "run_dir", *, parameters: bool = True) -> LoadedRun:
    """Rebuild a run's pair and load its state, in the order that keeps it: ``model.pt``
    first (so that ActNorm layers know they are initialized and keep their values),
    then one pass over a training batch to create Pyro's parameters, then the
    checkpoint's parameters (``parameters=True``; a resume lets :func:`~pyro_dgm.infer.fit`
    load the checkpoint itself).

    Raises:
        ValueError: For a missing folder or config, a ``model.pt`` or ``checkpoint.pt``
            that torch cannot read or that does not fit the rebuilt pair.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from pyro_dgm.cli.config import RunConfig
        >>> from pyro_dgm.cli.fit import fit_run
        >>> out = Path(tempfile.mkdtemp()) / "moons-maf"  # a one-epoch run of a small flow
        >>> config = RunConfig(data="moons", model="maf", epochs=1, num_layers=1, hidden=8, device="cpu")
        >>> _ = fit_run(config, out, progress=False)
        >>> run = load_run(out)
        >>> run.config.model, run.data.name
        ('maf', 'two_moons')
    """
    check_run_dir(run_dir, flag)
    config, legacy = read_config(run_dir)
    data = load_data(config)
    config = resolve_config(config, data, drop_unused=legacy)
    pyro.clear_param_store()
    pyro.set_rng_seed(config.seed)  # as fit did: the same random initial buffers
    data, pair = build_pair(config, data)
    checkpoint_file, model_file = run_dir / CHECKPOINT_FILE, run_dir / MODEL_FILE
    checkpoint = read_checkpoint(checkpoint_file) if checkpoint_file.exists() else None
    if model_file.exists():
        try:
            pair.load_state_dict(load_state(model_file))
        except RuntimeError as error:
            raise ValueError(
                f"{model_file} does not fit the pair its config describes: "
                f"{str(error).splitlines()[0]}"
            ) from error
    elif checkpoint is not None:
        raise ValueError(
            f"{run_dir} has {CHECKPOINT_FILE} but no {MODEL_FILE} (the pair's buffers); "
            "it was not written by pyro-dgm fit"
        )
    if parameters:
        if checkpoint is None:
            raise ValueError(
                f"{flag}: {run_dir} has no {CHECKPOINT_FILE}: no epoch of its training ended"
            )
        with torch.no_grad(), poutine.trace(param_only=True) as tape:
            Trace_ELBO().loss(
                pair.model, pair.guide, *split_args(data, "train", config.batch_size)
            )
        named = {name: site["value"].unconstrained() for name, site in tape.trace.nodes.items()}
        load_checkpoint(checkpoint_file, params=named)
    return LoadedRun(
        config=config,
        data=data,
        pair=pair,
        checkpoint=checkpoint,
        complete=(run_dir / METRICS_FILE).is_file(),
    )
