r"""The device of a ``pyro-dgm fit`` run (``--device``): its name checked, its default,
whether this machine has it, and the torch device each process of a torchrun group uses."""

from __future__ import annotations

import os

import torch

__all__ = [
    "DEVICE_TYPES",
    "check_available",
    "check_device_name",
    "default_device",
    "torch_device",
]

#: The kinds of device ``--device`` accepts (``cuda:N`` names one GPU).
DEVICE_TYPES = ("cpu", "cuda", "mps")


def check_device_name(value: object, name: str = "device") -> str:
    """``value`` as a canonical device name (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``)
    if it is one; whether this machine has it is :func:`check_available`'s question.

    Example:
        >>> check_device_name("cuda:1")
        'cuda:1'
        >>> check_device_name("gpu")
        Traceback (most recent call last):
            ...
        ValueError: device: expected 'cpu', 'cuda', 'cuda:N' or 'mps', got 'gpu'
    """
    expected = f"{name}: expected 'cpu', 'cuda', 'cuda:N' or 'mps', got {value!r}"
    if not isinstance(value, str):
        raise ValueError(expected)
    try:
        device = torch.device(value)
    except RuntimeError as error:
        raise ValueError(expected) from error
    if device.type not in DEVICE_TYPES:
        raise ValueError(expected)
    return str(device)


def default_device() -> str:
    """``"cuda"`` when ``torch.cuda.is_available()``, else ``"cpu"``.

    Example:
        >>> default_device() == ("cuda" if torch.cuda.is_available() else "cpu")
        True
    """
    return "cuda" if torch.cuda.is_available() else "cpu"


def check_available(device: str, flag: str = "--device") -> None:
    """Refuse a device this machine does not have, saying what it has instead.

    Example:
        >>> check_available("cpu")  # every machine has one
    """
    kind = torch.device(device)
    if kind.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"{flag} {device}: CUDA is not available on this machine "
                "(torch.cuda.is_available() is False); use --device cpu"
            )
        count = torch.cuda.device_count()
        if kind.index is not None and kind.index >= count:
            raise ValueError(f"{flag} {device}: this machine has {count} CUDA device(s)")
    if kind.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(
            f"{flag} {device}: MPS is not available on this machine "
            "(torch.backends.mps.is_available() is False); use --device cpu"
        )


def torch_device(device: str) -> torch.device:
    """The torch device of this process: ``"cuda"`` is the GPU of this process's
    ``LOCAL_RANK`` under torchrun (the first GPU otherwise).

    Example:
        >>> torch_device("cpu")
        device(type='cpu')
    """
    kind = torch.device(device)
    if kind.type == "cuda" and kind.index is None:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return kind
