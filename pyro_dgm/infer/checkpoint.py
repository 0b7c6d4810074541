r"""Checkpoints of Pyro parameters, optimizer state and training history.

A checkpoint is a plain dictionary of tensors, numbers and strings, written
with ``torch.save`` (atomically: a temporary file, then a rename) and read with
``torch.load(..., weights_only=True)``, so a checkpoint from a stranger can never
run code. Loading checks everything first (the file's structure; the names,
shapes and dtypes of the parameters and of the best parameters; the optimizer's
groups) and only then copies: a checkpoint that does not fit leaves every
parameter as it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyro
import torch
from torch import Tensor

from .history import History

__all__ = ["Checkpoint", "load_checkpoint", "read_checkpoint", "save_checkpoint"]

FORMAT = "pyro_dgm.checkpoint/1"


@dataclass
class Checkpoint:
    """What a checkpoint holds besides the optimizer state.

    Attributes:
        history: The training history, if one was saved.
        metadata: Free-form metadata.
        best_params: The parameters of the best validation epoch, if saved.
        averaged_params: The exponential moving average of the parameters (``fit``'s
            ``ema``), if saved.
        params: The saved parameters (filled by :func:`read_checkpoint`; ``None``
            from :func:`load_checkpoint`, which copies them into the given ones).

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "run.pt"
        >>> save_checkpoint(path, params={"w": torch.ones(2)}, metadata={"epochs": 3})
        >>> checkpoint = read_checkpoint(path)
        >>> checkpoint.params, checkpoint.metadata, checkpoint.history
        ({'w': tensor([1., 1.])}, {'epochs': 3}, None)
    """

    history: History | None
    metadata: dict[str, Any]
    best_params: dict[str, Tensor] | None
    params: dict[str, Tensor] | None = None
    averaged_params: dict[str, Tensor] | None = None


def _store_params() -> dict[str, Tensor]:
    return dict(pyro.get_param_store().named_parameters())


def save_checkpoint(
    path: str | Path,
    *,
    params: dict[str, Tensor] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    history: History | None = None,
    best_params: dict[str, Tensor] | None = None,
    metadata: dict[str, Any] | None = None,
    averaged_params: dict[str, Tensor] | None = None,
) -> None:
    """Write parameters (by default all of Pyro's param store, unconstrained),
    the optimizer state, the history and metadata to ``path``, atomically.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> save_checkpoint(folder / "run.pt", params={"w": torch.ones(2)})
        >>> sorted(p.name for p in folder.iterdir())  # no temporary file left behind
        ['run.pt']
    """
    params = _store_params() if params is None else params
    state = {
        "format": FORMAT,
        "params": {name: p.detach().cpu() for name, p in params.items()},
        "best_params": (
            None if best_params is None else {n: p.detach().cpu() for n, p in best_params.items()}
        ),
        "averaged_params": (
            None
            if averaged_params is None
            else {n: p.detach().cpu() for n, p in averaged_params.items()}
        ),
        "optimizer": None if optimizer is None else optimizer.state_dict(),
        "history": None if history is None else history.to_dict(),
        "metadata": metadata or {},
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def _tensor_dict(path: Path, state: dict[str, Any], key: str, optional: bool) -> Any:
    value = state.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, dict) or not all(
        isinstance(n, str) and isinstance(t, Tensor) for n, t in value.items()
    ):
        raise ValueError(
            f"path: checkpoint {path} is damaged: {key!r} should map names to tensors, "
            f"got {type(value).__name__}"
        )
    return value


def _read_state(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ValueError(f"path: expected a checkpoint file, got {path}, which does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated, tampered, not torch's: whatever torch raises
        reason = (str(error).strip().splitlines() or [""])[0]
        raise ValueError(
            f"path: {path} cannot be read as a checkpoint with torch.load(weights_only=True) "
            f"({type(error).__name__}: {reason})"
        ) from error
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path} is not a pyro_dgm checkpoint (expected format {FORMAT!r})")
    if not isinstance(state.get("metadata", {}), dict):
        raise ValueError(f"path: checkpoint {path} is damaged: 'metadata' is not a dict")
    if state.get("optimizer") is not None and not isinstance(state["optimizer"], dict):
        raise ValueError(f"path: checkpoint {path} is damaged: 'optimizer' is not a dict")
    return state


def _history(path: Path, state: dict[str, Any]) -> History | None:
    saved = state.get("history")
    if saved is None:
        return None
    try:
        if not isinstance(saved, dict):
            raise TypeError(f"a {type(saved).__name__}")
        return History.from_dict(saved)
    except (TypeError, ValueError) as error:
        raise ValueError(f"path: checkpoint {path} is damaged: its history is {error}") from error


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint without loading it anywhere: its parameters, best
    parameters, history and metadata (e.g. to look at the history before a resume).

    Raises:
        ValueError: If the file does not exist, cannot be read by
            ``torch.load(..., weights_only=True)`` (truncated, tampered, not torch's),
            or is not a pyro_dgm checkpoint; the message names the file.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "run.pt"
        >>> save_checkpoint(path, params={"w": torch.arange(3.0)}, history=History(epoch=[1]))
        >>> read_checkpoint(path).history.epoch
        [1]
    """
    path = Path(path)
    state = _read_state(path)
    return Checkpoint(
        history=_history(path, state),
        metadata=state.get("metadata", {}),
        best_params=_tensor_dict(path, state, "best_params", optional=True),
        params=_tensor_dict(path, state, "params", optional=False),
        averaged_params=_tensor_dict(path, state, "averaged_params", optional=True),
    )


def _check_match(
    path: Path, what: str, saved: dict[str, Tensor], params: dict[str, Tensor]
) -> None:
    missing, unexpected = sorted(set(params) - set(saved)), sorted(set(saved) - set(params))
    if missing or unexpected:
        raise ValueError(
            f"checkpoint {path} does not match the parameters: {what} missing {missing}, "
            f"unexpected {unexpected}"
        )
    wrong = [
        f"{name} has shape {tuple(saved[name].shape)} and dtype {saved[name].dtype}, "
        f"expected {tuple(p.shape)} and {p.dtype}"
        for name, p in params.items()
        if p.shape != saved[name].shape or p.dtype != saved[name].dtype
    ]
    if wrong:
        more = f" (and {len(wrong) - 3} more)" if len(wrong) > 3 else ""
        raise ValueError(
            f"checkpoint {path} does not match the parameters: {what} "
            f"{'; '.join(wrong[:3])}{more}; nothing was loaded"
        )


def load_checkpoint(
    path: str | Path,
    *,
    params: dict[str, Tensor] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
) -> Checkpoint:
    """Load a checkpoint into existing parameters (by default Pyro's param store).

    The parameters must already exist (run the model and guide once, as
    :func:`~pyro_dgm.infer.fit` does); their values are overwritten in place,
    on their own device. Everything is checked before anything is copied: the
    names, shapes and dtypes of the saved parameters and best parameters against
    ``params``, and the optimizer's parameter groups, so a checkpoint of another
    architecture raises and leaves every parameter untouched.

    Raises:
        ValueError: If the file cannot be read with ``weights_only=True`` or is not
            a pyro_dgm checkpoint, or its parameter names, shapes or dtypes differ
            from the ones given (the message names the file).

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "run.pt"
        >>> save_checkpoint(path, params={"w": torch.ones(2)})
        >>> w = torch.zeros(2)
        >>> _ = load_checkpoint(path, params={"w": w})  # copied into w, in place
        >>> w
        tensor([1., 1.])
        >>> load_checkpoint(path, params={"w": torch.zeros(3)})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: ...
    """
    path = Path(path)
    state = _read_state(path)
    params = _store_params() if params is None else params
    saved = _tensor_dict(path, state, "params", optional=False)
    best = _tensor_dict(path, state, "best_params", optional=True)
    averaged = _tensor_dict(path, state, "averaged_params", optional=True)
    history = _history(path, state)
    _check_match(path, "parameter", saved, params)
    if best is not None:
        _check_match(path, "best parameter", best, params)
    if averaged is not None:
        _check_match(path, "averaged parameter", averaged, params)
    if optimizer is not None and state.get("optimizer") is not None:
        try:  # torch checks the groups before it changes anything
            optimizer.load_state_dict(state["optimizer"])
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(
                f"checkpoint {path}: its optimizer state does not fit the optimizer ({error}); "
                "nothing was loaded"
            ) from error
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(saved[name])
    return Checkpoint(
        history=history,
        metadata=state.get("metadata", {}),
        best_params=best,
        averaged_params=averaged,
    )
