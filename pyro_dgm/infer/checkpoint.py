r"""Checkpoints of Pyro parameters, optimizer state and training history.

A checkpoint is a plain dictionary of tensors, numbers and strings, written
with ``torch.save`` and read with ``torch.load(..., weights_only=True)``, so a
checkpoint from a stranger can never run code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyro
import torch
from torch import Tensor

if TYPE_CHECKING:
    from .history import History

__all__ = ["Checkpoint", "load_checkpoint", "save_checkpoint"]

FORMAT = "pyro_dgm.checkpoint/1"


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` read besides the parameters."""

    history: History | None
    metadata: dict[str, Any]
    best_params: dict[str, Tensor] | None


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
) -> None:
    """Write parameters (by default all of Pyro's param store, unconstrained),
    the optimizer state, the history and metadata to ``path``, atomically."""
    params = _store_params() if params is None else params
    state = {
        "format": FORMAT,
        "params": {name: p.detach().cpu() for name, p in params.items()},
        "best_params": (
            None if best_params is None else {n: p.detach().cpu() for n, p in best_params.items()}
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


def load_checkpoint(
    path: str | Path,
    *,
    params: dict[str, Tensor] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
) -> Checkpoint:
    """Load a checkpoint into existing parameters (by default Pyro's param store).

    The parameters must already exist (run the model and guide once, as
    :func:`~pyro_dgm.infer.fit` does); their values are overwritten in place,
    on their own device and dtype.

    Raises:
        ValueError: If the file is not a pyro_dgm checkpoint, or its parameter
            names or shapes differ from the ones given.
    """
    from .history import History

    state = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path} is not a pyro_dgm checkpoint (expected format {FORMAT!r})")
    params = _store_params() if params is None else params
    saved = state["params"]
    missing, unexpected = sorted(set(params) - set(saved)), sorted(set(saved) - set(params))
    if missing or unexpected:
        raise ValueError(
            f"checkpoint {path} does not match the parameters: missing {missing}, "
            f"unexpected {unexpected}"
        )
    with torch.no_grad():
        for name, p in params.items():
            if p.shape != saved[name].shape:
                raise ValueError(
                    f"checkpoint {path}: parameter {name} has shape {tuple(saved[name].shape)}, "
                    f"expected {tuple(p.shape)}"
                )
            p.copy_(saved[name])
    if optimizer is not None and state["optimizer"] is not None:
        optimizer.load_state_dict(state["optimizer"])
    history = None if state["history"] is None else History.from_dict(state["history"])
    return Checkpoint(
        history=history, metadata=state["metadata"], best_params=state["best_params"]
    )
